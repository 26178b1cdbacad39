//! Timeouts as scopes (gevent's `Timeout` and `with_timeout`).
//!
//! [`timeout`] runs a closure under a deadline; a [`Timeout`] guard opens a scope that lasts until
//! the guard is dropped. Inside a scope **every blocking point** of the running greenlet observes
//! the deadline — `hub::sleep`, the waits of [`crate::sync`], `Greenlet::join`, socket I/O —
//! because the hub bounds every park by the earliest active scope deadline. When that deadline
//! passes, the blocking call returns its timeout error: [`TimedOut`](crate::sync::TimedOut) from
//! the sync primitives, `io::ErrorKind::TimedOut` from sockets, `GreenletError::TimedOut` from
//! `join`; `sleep` just returns early. `?` then carries the error out to the scope.
//!
//! ```
//! use std::time::Duration;
//! use greenhub::{hub, sync::Event, timeout};
//!
//! hub::run(|| {
//!     let never = Event::new();
//!     let r = timeout::timeout(Duration::from_millis(20), || never.wait());
//!     assert!(r.is_err()); // our own scope expired: Err(Elapsed)
//! });
//! ```
//!
//! # How expiry is decided
//!
//! A scope *expires* when a park of its greenlet ends because the scope's deadline passed. A scope
//! whose deadline passes while its greenlet computes without blocking has not expired (there was
//! no blocking point to interrupt, as in gevent); once a scope has expired, every later blocking
//! call inside it fails at once, until the scope ends.
//!
//! Nested scopes: the earliest deadline wins, and only the scope that owns that deadline is marked
//! expired (scopes with exactly the same deadline are marked together). An inner `timeout` whose
//! enclosing scope fired therefore returns `Ok(f's result)` — `f` saw the timeout error — and the
//! outer `timeout` returns `Err(Elapsed)`.
//!
//! Scopes belong to one greenlet: a scope opened in one greenlet does not bound the greenlets it
//! spawns.

#![deny(unsafe_code)]

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::rt::current_hub;
use crate::rt::{Scope, ScopeSignal, TaskRef};

/// The error of [`timeout`]: the scope's own deadline passed while the closure was blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(_: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, Elapsed)
    }
}

/// Runs `f` in a timeout scope of `dur` (gevent's `with_timeout`).
///
/// # Errors
/// `Err(Elapsed)` if and only if this scope's own deadline ended a blocking call made by `f`; `f`'s
/// value (usually an error that call returned) is then dropped. If an *enclosing* scope expired
/// first, this returns `Ok` with whatever `f` returned.
///
/// # Panics
/// Inside the hub (a scope belongs to a greenlet).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, timeout};
///
/// hub::run(|| {
///     let slow = timeout(Duration::from_millis(10), || hub::sleep(Duration::from_secs(10)));
///     assert!(slow.is_err());
///     let fast = timeout(Duration::from_secs(10), || 7);
///     assert_eq!(fast.unwrap(), 7);
/// });
/// ```
#[track_caller]
pub fn timeout<T>(dur: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let scope = Timeout::start(dur);
    finish(&scope, f)
}

/// Like [`timeout`], with an absolute deadline.
///
/// # Errors
/// As [`timeout`].
///
/// # Panics
/// Inside the hub.
#[track_caller]
pub fn timeout_at<T>(deadline: Instant, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let scope = Timeout::start_at(deadline);
    finish(&scope, f)
}

/// Runs `f` inside `scope`. A blocking call that has no error to return (`threadpool::unblock`)
/// unwinds with a private payload when a scope expires; this scope, if it is the one that expired,
/// turns that into `Err(Elapsed)`. Everything else unwinds on unchanged.
fn finish<T>(scope: &Timeout, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let value = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) if p.is::<ScopeSignal>() && scope.expired() => return Err(Elapsed),
        Err(p) => panic::resume_unwind(p),
    };
    if scope.expired() {
        Err(Elapsed)
    } else {
        Ok(value)
    }
}

static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

/// A timeout scope of the running greenlet, open until the guard is dropped (gevent's `Timeout`).
///
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, sync::Queue, timeout::Timeout};
///
/// hub::run(|| {
///     let q: Queue<u32> = Queue::new();
///     let scope = Timeout::start(Duration::from_millis(20));
///     assert!(q.get().is_err()); // the scope's deadline ends the wait
///     assert!(scope.expired());
/// });
/// ```
///
/// The guard is `!Send`; dropping it in another greenlet still closes the scope of the greenlet
/// that opened it.
///
/// Leaking the guard (`mem::forget`) leaves the scope open for the rest of the greenlet's life:
/// once its deadline passes, every blocking call of that greenlet times out at once.
#[must_use = "the scope ends when the guard is dropped"]
pub struct Timeout {
    task: TaskRef,
    id: u64,
    deadline: Instant,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.deadline)
            .field("expired", &self.expired())
            .finish()
    }
}

impl Timeout {
    /// Opens a scope that expires `dur` from now. A duration too large to represent means no
    /// deadline in practice (about a century).
    ///
    /// # Panics
    /// Inside the hub.
    #[track_caller]
    pub fn start(dur: Duration) -> Timeout {
        let now = Instant::now();
        let deadline = now
            .checked_add(dur)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        Timeout::start_at(deadline)
    }

    /// Opens a scope that expires at `deadline`.
    ///
    /// # Panics
    /// Inside the hub.
    #[track_caller]
    pub fn start_at(deadline: Instant) -> Timeout {
        let hub = current_hub();
        hub.current_core("open a timeout scope");
        let task = hub.current_waiter().task;
        let id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
        task.core().cold().scopes.borrow_mut().push(Scope {
            id,
            deadline,
            fired: false,
        });
        Timeout { task, id, deadline }
    }

    /// The scope's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether this scope's own deadline has ended a blocking call (see the module docs).
    pub fn expired(&self) -> bool {
        self.task
            .core()
            .cold_if_any()
            .is_some_and(|c| c.scopes.borrow().iter().any(|s| s.id == self.id && s.fired))
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        let Some(cold) = self.task.core().cold_if_any() else {
            return;
        };
        let mut scopes = cold.scopes.borrow_mut();
        if let Some(i) = scopes.iter().rposition(|s| s.id == self.id) {
            scopes.remove(i);
        }
    }
}
