//! [`Semaphore`] and [`BoundedSemaphore`] (gevent's `gevent.lock`).

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};

/// A counting semaphore: [`acquire`](Semaphore::acquire) takes a permit, parking the greenlet while
/// none is free; [`release`](Semaphore::release) returns one, handing it straight to the longest
/// waiting greenlet (FIFO, no barging).
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::Semaphore};
///
/// hub::run(|| {
///     let sem = Rc::new(Semaphore::new(2));
///     let workers: Vec<_> = (0..5)
///         .map(|_| {
///             let sem = sem.clone();
///             hub::spawn(move || {
///                 let _permit = sem.access().unwrap(); // at most two hold one at a time
///                 hub::yield_now();
///             })
///         })
///         .collect();
///     for w in workers {
///         w.join().unwrap();
///     }
///     assert_eq!(sem.available(), 2);
/// });
/// ```
pub struct Semaphore {
    permits: Cell<usize>,
    /// `Some(initial)` for a [`BoundedSemaphore`].
    bound: Option<usize>,
    waiters: WaitList<()>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.permits.get())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl Default for Semaphore {
    /// One permit, as gevent's `Semaphore()`: a lock.
    fn default() -> Self {
        Semaphore::new(1)
    }
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            permits: Cell::new(permits),
            bound: None,
            waiters: WaitList::new(),
        }
    }

    /// Free permits now.
    pub fn available(&self) -> usize {
        self.permits.get()
    }

    /// Whether no permit is free (gevent's `locked`).
    pub fn is_locked(&self) -> bool {
        self.permits.get() == 0
    }

    /// Greenlets waiting for a permit.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Takes a permit if one is free and nobody waits for one (gevent's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        let n = self.permits.get();
        if n > 0 && !self.waiters.has_pending() {
            self.permits.set(n - 1);
            true
        } else {
            false
        }
    }

    /// Takes a permit, parking until one is handed over.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill); no permit is held then.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when no permit can ever come (a deadlock).
    #[track_caller]
    pub fn acquire(&self) -> Result<(), TimedOut> {
        self.acquire_deadline(None)
    }

    /// Takes a permit, waiting at most `timeout`; returns whether it got one.
    ///
    /// # Panics
    /// As [`acquire`](Semaphore::acquire).
    #[track_caller]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_deadline(deadline_after(timeout)).is_ok()
    }

    /// Takes a permit, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`acquire`](Semaphore::acquire).
    #[track_caller]
    pub fn acquire_deadline(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        if self.try_acquire() {
            return Ok(());
        }
        // A permit handed to us while a kill unwinds us out of the park goes to the next waiter.
        let out = waitlist::wait(&self.waiters, None, &"a Semaphore", deadline, |r| {
            if r.notified {
                self.release_unchecked();
            }
        });
        if out.notified {
            Ok(())
        } else {
            Err(TimedOut)
        }
    }

    /// Takes a permit and returns a guard that releases it when dropped (gevent's `with sem:`).
    ///
    /// # Errors
    /// As [`acquire`](Semaphore::acquire).
    ///
    /// # Panics
    /// As [`acquire`](Semaphore::acquire).
    #[track_caller]
    pub fn access(&self) -> Result<SemaphoreGuard<'_>, TimedOut> {
        self.acquire()?;
        Ok(SemaphoreGuard { sem: self })
    }

    /// Like [`access`](Semaphore::access), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if no permit came in time.
    ///
    /// # Panics
    /// As [`acquire`](Semaphore::acquire).
    #[track_caller]
    pub fn access_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, TimedOut> {
        self.acquire_deadline(deadline_after(timeout))?;
        Ok(SemaphoreGuard { sem: self })
    }

    /// Returns a permit: hands it to the longest-waiting greenlet, or adds it to the free ones.
    /// Usable from inside the hub.
    ///
    /// # Panics
    /// For a [`BoundedSemaphore`], when it would raise the free permits above the initial count
    /// (more releases than acquires).
    #[track_caller]
    pub fn release(&self) {
        if let Some(bound) = self.bound {
            assert!(
                self.permits.get() < bound,
                "greenhub: BoundedSemaphore released too many times (it already has all {bound} \
                 permits it started with)"
            );
        }
        self.release_unchecked();
    }

    fn release_unchecked(&self) {
        if self.waiters.hand(()).is_err() {
            self.permits.set(self.permits.get() + 1);
        }
    }
}

/// Holds a permit of a [`Semaphore`]; dropping it releases the permit.
#[must_use = "the permit is released when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.sem.release_unchecked();
    }
}

/// A [`Semaphore`] that panics when released more often than acquired (gevent's
/// `BoundedSemaphore`). Derefs to [`Semaphore`] for everything else.
///
/// ```should_panic
/// let sem = greenhub::sync::BoundedSemaphore::new(1);
/// sem.release(); // panics: it already holds its one permit
/// ```
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.inner.permits.get())
            .field("bound", &self.inner.bound)
            .finish()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `permits` free permits, which is also the most it may hold.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            inner: Semaphore {
                permits: Cell::new(permits),
                bound: Some(permits),
                waiters: WaitList::new(),
            },
        }
    }
}

impl Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.inner
    }
}
