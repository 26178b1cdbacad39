//! [`Event`]: a flag greenlets wait for (gevent's `Event`).

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};

/// A flag that greenlets wait for: [`set`](Event::set) wakes every waiter at once, and waits after
/// that return immediately until [`clear`](Event::clear).
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::Event};
///
/// hub::run(|| {
///     let ready = Rc::new(Event::new());
///     let r = ready.clone();
///     let waiter = hub::spawn(move || r.wait().is_ok());
///     ready.set();
///     assert!(waiter.join().unwrap());
/// });
/// ```
#[derive(Default)]
pub struct Event {
    flag: Cell<bool>,
    waiters: WaitList<()>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.flag.get())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every waiting greenlet (in the order they started waiting). Usable
    /// from inside the hub (a callback).
    pub fn set(&self) {
        self.flag.set(true);
        self.waiters.notify_all();
    }

    /// Resets the flag. Greenlets already woken by `set` still return successfully.
    pub fn clear(&self) {
        self.flag.set(false);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag.get()
    }

    /// Waits until the flag is set. Returns at once if it is.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when nothing can ever set the event (a deadlock).
    #[track_caller]
    pub fn wait(&self) -> Result<(), TimedOut> {
        self.wait_deadline(None)
    }

    /// Waits at most `timeout` for the flag; returns whether it was set (gevent's
    /// `wait(timeout)`). An enclosing timeout scope that expires first also makes it return false.
    ///
    /// # Panics
    /// As [`wait`](Event::wait).
    #[track_caller]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout)).is_ok()
    }

    /// Waits until the flag is set or `deadline` passes.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`wait`](Event::wait).
    #[track_caller]
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        if self.flag.get() {
            return Ok(());
        }
        let out = waitlist::wait(&self.waiters, None, &"an Event", deadline, |_| {});
        if out.notified || self.flag.get() {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }

    /// Greenlets waiting now.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// The wait list, for multi-waits (`pool::wait_any`).
    pub(crate) fn wait_list(&self) -> &WaitList<()> {
        &self.waiters
    }
}
