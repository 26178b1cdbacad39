//! [`Mutex`]: a lock that parks the greenlet waiting for it.

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};
use crate::rt::{existing_hub, WaitOn};

/// Mutual exclusion between greenlets, owning the data it protects (like `std::sync::Mutex`).
///
/// Between blocking points a greenlet already runs alone (the hub's GIL), so a plain `RefCell`
/// suffices for updates that do not block. A `Mutex` is for critical sections that **do** block —
/// a guard may be held across `sleep`, socket I/O or other waits. While it is held, every other
/// greenlet calling [`lock`](Mutex::lock) parks; they get the lock one at a time, in the order they
/// asked (FIFO: the unlocking greenlet hands it to the longest waiter, nobody barges in).
///
/// Not reentrant: locking it again from the greenlet that holds it parks that greenlet for ever
/// (the main greenlet gets a deadlock panic). No poisoning: a greenlet that panics or is killed
/// while holding the guard releases the lock as its destructors run, and the data stays as the
/// unwinding left it.
///
/// ```
/// use std::{rc::Rc, time::Duration};
/// use greenhub::{hub, sync::Mutex};
///
/// hub::run(|| {
///     let log = Rc::new(Mutex::new(Vec::new()));
///     let gs: Vec<_> = (0..3)
///         .map(|i| {
///             let log = log.clone();
///             hub::spawn(move || {
///                 let mut g = log.lock().unwrap();
///                 g.push(i);
///                 hub::sleep(Duration::from_millis(1)); // others wait for the lock meanwhile
///                 g.push(i);
///             })
///         })
///         .collect();
///     for g in gs {
///         g.join().unwrap();
///     }
///     assert_eq!(*log.lock().unwrap(), [0, 0, 1, 1, 2, 2]);
/// });
/// ```
pub struct Mutex<T: ?Sized> {
    locked: Cell<bool>,
    /// Id of the greenlet holding the lock (0: none, or taken inside the hub), for deadlock
    /// reports.
    holder: Cell<u64>,
    waiters: WaitList<()>,
    data: RefCell<T>,
}

impl<T: ?Sized> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("locked", &self.locked.get())
            .field("waiters", &self.waiters.len())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            locked: Cell::new(false),
            holder: Cell::new(0),
            waiters: WaitList::new(),
            data: RefCell::new(value),
        }
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Whether some greenlet holds the lock.
    pub fn is_locked(&self) -> bool {
        self.locked.get()
    }

    /// Takes the lock if it is free and nobody waits for it.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if !self.locked.get() && !self.waiters.has_pending() {
            self.locked.set(true);
            Some(self.guard())
        } else {
            None
        }
    }

    /// Takes the lock, parking until it is handed over.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when the lock can never be released (a deadlock).
    #[track_caller]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, TimedOut> {
        self.lock_deadline(None)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if the lock did not come in time.
    ///
    /// # Panics
    /// As [`lock`](Mutex::lock).
    #[track_caller]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, TimedOut> {
        self.lock_deadline(deadline_after(timeout))
    }

    /// Takes the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`lock`](Mutex::lock).
    #[track_caller]
    pub fn lock_deadline(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, T>, TimedOut> {
        if let Some(g) = self.try_lock() {
            return Ok(g);
        }
        // Ownership handed to us while a kill unwinds us out of the park goes to the next waiter.
        let on = WaitOn::Held(self.holder.get());
        let out = waitlist::wait_on(&self.waiters, None, on, deadline, |r| {
            if r.notified {
                self.unlock();
            }
        });
        if out.notified {
            Ok(self.guard())
        } else {
            Err(TimedOut)
        }
    }

    /// Mutable access without locking: `&mut self` proves nobody else holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn guard(&self) -> MutexGuard<'_, T> {
        let data = self
            .data
            .try_borrow_mut()
            .expect("greenhub: Mutex data borrowed without holding the lock");
        self.holder
            .set(existing_hub().and_then(|h| h.running_id()).unwrap_or(0));
        MutexGuard {
            lock: self,
            data: Some(data),
        }
    }

    /// Hands the lock to the longest waiter, or frees it.
    fn unlock(&self) {
        if self.waiters.hand(()).is_err() {
            self.locked.set(false);
        }
    }
}

/// Holds a [`Mutex`]; dereferences to the data; dropping it unlocks (handing the lock to the next
/// waiter).
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    /// `Some` until `drop`, which releases the borrow before handing the lock on.
    data: Option<RefMut<'a, T>>,
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_deref().expect("guard used after drop")
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_deref_mut().expect("guard used after drop")
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.data.take());
        self.lock.holder.set(0);
        self.lock.unlock();
    }
}
