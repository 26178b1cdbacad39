//! [`RwLock`]: many readers or one writer, parking the greenlets that wait.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

/// A reader-writer lock between greenlets, owning the data it protects (like
/// `std::sync::RwLock`). Guards may be held across blocking points, as with [`Mutex`](super::Mutex).
///
/// Fairness is strictly FIFO over readers and writers together: a reader that arrives while a
/// writer waits queues behind it (writers never starve), and when the lock frees up, the waiters at
/// the front get it — one writer, or every reader up to the next waiting writer. Not reentrant; no
/// poisoning (a killed holder's guard releases the lock while it unwinds).
///
/// ```
/// use greenhub::{hub, sync::RwLock};
///
/// hub::run(|| {
///     let lock = RwLock::new(5);
///     {
///         let a = lock.read().unwrap();
///         let b = lock.read().unwrap();
///         assert_eq!(*a + *b, 10);
///     }
///     *lock.write().unwrap() += 1;
///     assert_eq!(*lock.read().unwrap(), 6);
/// });
/// ```
pub struct RwLock<T: ?Sized> {
    readers: Cell<usize>,
    writer: Cell<bool>,
    /// Putter-style entries carrying the requested mode; granting takes it.
    waiters: WaitList<Mode>,
    data: RefCell<T>,
}

impl<T: ?Sized> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("readers", &self.readers.get())
            .field("writer", &self.writer.get())
            .field("waiters", &self.waiters.len())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            readers: Cell::new(0),
            writer: Cell::new(false),
            waiters: WaitList::new(),
            data: RefCell::new(value),
        }
    }

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Takes a read lock if no writer holds or waits for the lock.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        if !self.writer.get() && !self.waiters.has_pending() {
            self.readers.set(self.readers.get() + 1);
            Some(self.read_guard())
        } else {
            None
        }
    }

    /// Takes the write lock if nobody holds or waits for the lock.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if !self.writer.get() && self.readers.get() == 0 && !self.waiters.has_pending() {
            self.writer.set(true);
            Some(self.write_guard())
        } else {
            None
        }
    }

    /// Takes a read lock, parking while a writer holds the lock or waits ahead of us.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when the lock can never be granted (a deadlock).
    #[track_caller]
    pub fn read(&self) -> Result<RwLockReadGuard<'_, T>, TimedOut> {
        self.read_deadline(None)
    }

    /// Takes a read lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if the lock did not come in time.
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    #[track_caller]
    pub fn read_timeout(&self, timeout: Duration) -> Result<RwLockReadGuard<'_, T>, TimedOut> {
        self.read_deadline(deadline_after(timeout))
    }

    /// Takes a read lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    #[track_caller]
    pub fn read_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RwLockReadGuard<'_, T>, TimedOut> {
        if let Some(g) = self.try_read() {
            return Ok(g);
        }
        if self.wait(Mode::Read, deadline) {
            Ok(self.read_guard())
        } else {
            Err(TimedOut)
        }
    }

    /// Takes the write lock, parking while anybody holds the lock or waits ahead of us.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    #[track_caller]
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, T>, TimedOut> {
        self.write_deadline(None)
    }

    /// Takes the write lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if the lock did not come in time.
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    #[track_caller]
    pub fn write_timeout(&self, timeout: Duration) -> Result<RwLockWriteGuard<'_, T>, TimedOut> {
        self.write_deadline(deadline_after(timeout))
    }

    /// Takes the write lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    #[track_caller]
    pub fn write_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RwLockWriteGuard<'_, T>, TimedOut> {
        if let Some(g) = self.try_write() {
            return Ok(g);
        }
        if self.wait(Mode::Write, deadline) {
            Ok(self.write_guard())
        } else {
            Err(TimedOut)
        }
    }

    /// Mutable access without locking: `&mut self` proves nobody else holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Parks until `mode` is granted (true) or the wait ends otherwise (false).
    fn wait(&self, mode: Mode, deadline: Option<Instant>) -> bool {
        let what = match mode {
            Mode::Read => &"an RwLock (read)",
            Mode::Write => &"an RwLock (write)",
        };
        // A grant made to us while a kill unwinds us out of the park is released again; a wait that
        // ends without a grant may have been what held the waiters behind it back (a writer at the
        // front blocks later readers), so it lets the lock grant again.
        let out = waitlist::wait(&self.waiters, Some(mode), what, deadline, |r| {
            if r.notified {
                self.release(mode);
            } else {
                self.grant();
            }
        });
        if !out.notified {
            self.grant();
        }
        out.notified
    }

    fn release(&self, mode: Mode) {
        match mode {
            Mode::Read => self.readers.set(self.readers.get() - 1),
            Mode::Write => self.writer.set(false),
        }
        self.grant();
    }

    /// Grants the lock to the waiters at the front: one writer, or readers up to the next writer.
    fn grant(&self) {
        while !self.writer.get() {
            match self.waiters.peek(|m| m.copied()) {
                Some(Some(Mode::Read)) => {
                    self.waiters.take();
                    self.readers.set(self.readers.get() + 1);
                }
                Some(Some(Mode::Write)) if self.readers.get() == 0 => {
                    self.waiters.take();
                    self.writer.set(true);
                }
                _ => break,
            }
        }
    }

    fn read_guard(&self) -> RwLockReadGuard<'_, T> {
        let data = self
            .data
            .try_borrow()
            .expect("greenhub: RwLock data borrowed mutably without the write lock");
        RwLockReadGuard {
            lock: self,
            data: Some(data),
        }
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, T> {
        let data = self
            .data
            .try_borrow_mut()
            .expect("greenhub: RwLock data borrowed without holding the lock");
        RwLockWriteGuard {
            lock: self,
            data: Some(data),
        }
    }
}

/// Shared access to an [`RwLock`]'s data; dropping it releases the read lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    data: Option<Ref<'a, T>>,
}

/// Exclusive access to an [`RwLock`]'s data; dropping it releases the write lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    data: Option<RefMut<'a, T>>,
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_deref().expect("guard used after drop")
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data.as_deref().expect("guard used after drop")
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data.as_deref_mut().expect("guard used after drop")
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.data.take());
        self.lock.release(Mode::Read);
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.data.take());
        self.lock.release(Mode::Write);
    }
}
