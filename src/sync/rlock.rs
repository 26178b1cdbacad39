//! [`RLock`]: a lock the owning greenlet may take again (gevent's `gevent.lock.RLock`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};
use crate::rt::{current_hub, TaskRef};

/// A reentrant lock: the greenlet that holds it may acquire it again without blocking; it is
/// released when every acquisition has been released (gevent's `RLock`, Python's
/// `threading.RLock`).
///
/// Ownership belongs to a **greenlet**, not to the thread: two greenlets of one hub exclude each
/// other exactly as two threads would with a `threading.RLock`. Waiters get the lock one at a time
/// in the order they asked (FIFO; the last release hands it to the longest waiter, nobody barges
/// in), as with [`Mutex`](super::Mutex).
///
/// Two ways to use it:
///
/// - [`lock`](RLock::lock) returns an [`RLockGuard`] (Python's `with lock:`): dropping it releases
///   that one acquisition. A guard gives shared access (`&T`) only, because the owner may hold
///   several guards at once; put a `RefCell` inside for mutation (as with `std`'s reentrant lock).
///   A greenlet that panics or is killed while holding guards releases them as its destructors
///   run.
/// - [`acquire`](RLock::acquire) / [`release`](RLock::release), gevent's explicit pair. `release`
///   by a greenlet that does not own the lock panics (gevent raises `RuntimeError: cannot release
///   un-acquired lock`). An explicit acquisition is not a destructor: a greenlet that finishes or
///   is killed without releasing it leaves the lock held, and the next greenlet that tries to take
///   it panics, naming the dead owner (greenlets already parked in [`lock`](RLock::lock) wait on
///   until killed or timed out; the main greenlet gets the deadlock report). Prefer guards.
///
/// No poisoning: the data stays as the unwinding left it. Like every primitive of this module it
/// belongs to one hub's greenlets (`!Send`, `!Sync`):
///
/// ```compile_fail
/// let l = greenhub::sync::RLock::new(());
/// std::thread::spawn(move || l.try_acquire()); // RLock is !Send
/// ```
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use greenhub::{hub, sync::RLock};
///
/// fn add(log: &RLock<RefCell<Vec<u32>>>, v: u32) {
///     let g = log.lock().unwrap(); // reentrant: the caller may already hold it
///     g.borrow_mut().push(v);
/// }
///
/// hub::run(|| {
///     let log = Rc::new(RLock::new(RefCell::new(Vec::new())));
///     let g = log.lock().unwrap();
///     add(&log, 1); // takes it a second time, does not deadlock
///     assert_eq!(log.count(), 1);
///     let log2 = log.clone();
///     let other = hub::spawn(move || add(&log2, 2)); // parks until we release
///     hub::yield_now();
///     assert!(!other.is_finished());
///     drop(g);
///     other.join().unwrap();
///     assert_eq!(*log.lock().unwrap().borrow(), [1, 2]);
/// });
/// ```
pub struct RLock<T: ?Sized = ()> {
    /// Held, or being handed to a waiter that has not run yet (then `owner` is `None`).
    locked: Cell<bool>,
    /// The owning greenlet's task while it holds the lock. Kept as the task (not only the id) so a
    /// dead owner can be named and detected.
    owner: RefCell<Option<TaskRef>>,
    /// The owner's acquisitions not yet released.
    count: Cell<usize>,
    waiters: WaitList<()>,
    data: T,
}

impl<T: ?Sized> fmt::Debug for RLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.locked.get())
            .field("owner", &self.owner.borrow().as_ref().map(|t| t.core().id))
            .field("count", &self.count.get())
            .field("waiters", &self.waiters.len())
            .finish_non_exhaustive()
    }
}

impl<T: Default> Default for RLock<T> {
    fn default() -> Self {
        RLock::new(T::default())
    }
}

impl<T> RLock<T> {
    /// An unlocked reentrant lock holding `value` (`RLock::new(())` for a plain lock).
    pub fn new(value: T) -> RLock<T> {
        RLock {
            locked: Cell::new(false),
            owner: RefCell::new(None),
            count: Cell::new(0),
            waiters: WaitList::new(),
            data: value,
        }
    }

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.data
    }
}

/// The running greenlet's id and task.
///
/// # Panics
/// Inside the hub context.
#[track_caller]
fn me(doing: &str) -> (u64, TaskRef) {
    let hub = current_hub();
    let id = hub.current_core(doing).id;
    (id, hub.current_waiter().task)
}

impl<T: ?Sized> RLock<T> {
    /// Whether some greenlet holds the lock.
    pub fn is_locked(&self) -> bool {
        self.locked.get()
    }

    /// Whether the calling greenlet holds the lock (gevent's `_is_owned`).
    ///
    /// # Panics
    /// Inside the hub.
    #[track_caller]
    pub fn is_owned(&self) -> bool {
        let (id, _) = me("ask who owns an RLock");
        self.owner_id() == Some(id)
    }

    /// How many acquisitions the owner has not released yet (0 when free).
    pub fn count(&self) -> usize {
        self.count.get()
    }

    fn owner_id(&self) -> Option<u64> {
        self.owner.borrow().as_ref().map(|t| t.core().id)
    }

    /// The fast path shared by every acquire: a reentrant acquisition by the owner, or the free
    /// lock taken by a caller nobody waits ahead of. `None` if the caller must wait.
    #[track_caller]
    fn try_take(&self, id: u64, task: &TaskRef) -> Option<()> {
        if self.locked.get() {
            let owner = self.owner.borrow();
            match owner.as_ref() {
                Some(o) if o.core().id == id => {
                    self.count.set(self.count.get() + 1);
                    return Some(());
                }
                Some(o) if o.core().is_finished() => panic!(
                    "greenhub: this RLock is held by {}, which finished without releasing it \
                     (an RLock::acquire without its release)",
                    o.core().describe()
                ),
                _ => return None,
            }
        }
        if self.waiters.has_pending() {
            return None;
        }
        self.take_ownership(task.clone());
        Some(())
    }

    fn take_ownership(&self, task: TaskRef) {
        self.locked.set(true);
        *self.owner.borrow_mut() = Some(task);
        self.count.set(1);
    }

    /// Waits in the FIFO for the lock; on success the caller owns it with a count of 1.
    fn wait_for(&self, task: TaskRef, deadline: Option<Instant>) -> Result<(), TimedOut> {
        // Ownership handed to us while a kill unwinds us out of the park goes to the next waiter.
        let out = waitlist::wait(&self.waiters, None, &"an RLock", deadline, |r| {
            if r.notified {
                self.hand_on();
            }
        });
        if out.notified {
            self.take_ownership(task);
            Ok(())
        } else {
            Err(TimedOut)
        }
    }

    #[track_caller]
    fn acquire_deadline_inner(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        let (id, task) = me("acquire an RLock");
        if self.try_take(id, &task).is_some() {
            return Ok(());
        }
        self.wait_for(task, deadline)
    }

    /// Takes the lock without waiting if it is free (and nobody waits for it) or the caller
    /// already owns it.
    ///
    /// # Panics
    /// Inside the hub; if the lock is held by a greenlet that finished without releasing it.
    #[track_caller]
    pub fn try_lock(&self) -> Option<RLockGuard<'_, T>> {
        let (id, task) = me("acquire an RLock");
        self.try_take(id, &task).map(|()| RLockGuard { lock: self })
    }

    /// Takes the lock (again, if the caller owns it), parking until it is handed over.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// Inside the hub; if the lock is held by a greenlet that finished without releasing it; in
    /// the main greenlet when the lock can never be released (a deadlock).
    #[track_caller]
    pub fn lock(&self) -> Result<RLockGuard<'_, T>, TimedOut> {
        self.lock_deadline(None)
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if the lock did not come in time.
    ///
    /// # Panics
    /// As [`lock`](RLock::lock).
    #[track_caller]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_, T>, TimedOut> {
        self.lock_deadline(deadline_after(timeout))
    }

    /// Takes the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`lock`](RLock::lock).
    #[track_caller]
    pub fn lock_deadline(&self, deadline: Option<Instant>) -> Result<RLockGuard<'_, T>, TimedOut> {
        self.acquire_deadline_inner(deadline)?;
        Ok(RLockGuard { lock: self })
    }

    /// gevent's `acquire()`: takes the lock (again, if the caller owns it) without a guard; pair
    /// it with [`release`](RLock::release).
    ///
    /// # Errors
    /// As [`lock`](RLock::lock).
    ///
    /// # Panics
    /// As [`lock`](RLock::lock).
    ///
    /// # Examples
    /// ```
    /// use greenhub::{hub, sync::RLock};
    ///
    /// hub::run(|| {
    ///     let l = RLock::new(());
    ///     l.acquire().unwrap();
    ///     l.acquire().unwrap();
    ///     assert_eq!(l.count(), 2);
    ///     l.release();
    ///     l.release();
    ///     assert!(!l.is_locked());
    /// });
    /// ```
    #[track_caller]
    pub fn acquire(&self) -> Result<(), TimedOut> {
        self.acquire_deadline_inner(None)
    }

    /// gevent's `acquire(blocking=False)`: whether the lock was taken.
    ///
    /// # Panics
    /// As [`try_lock`](RLock::try_lock).
    #[track_caller]
    pub fn try_acquire(&self) -> bool {
        let (id, task) = me("acquire an RLock");
        self.try_take(id, &task).is_some()
    }

    /// gevent's `acquire(timeout=...)`.
    ///
    /// # Errors
    /// [`TimedOut`] if the lock did not come in time.
    ///
    /// # Panics
    /// As [`lock`](RLock::lock).
    #[track_caller]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.acquire_deadline_inner(deadline_after(timeout))
    }

    /// gevent's `release()`: releases one explicit acquisition of the calling greenlet; the last
    /// one hands the lock to the longest waiter.
    ///
    /// # Panics
    /// If the calling greenlet does not own the lock ("cannot release un-acquired lock", as in
    /// gevent), and inside the hub.
    #[track_caller]
    pub fn release(&self) {
        let (id, _) = me("release an RLock");
        if self.owner_id() != Some(id) {
            let who = match self.owner.borrow().as_ref() {
                Some(o) => format!("it is held by {}", o.core().describe()),
                None if self.locked.get() => "it is being handed to a waiter".to_owned(),
                None => "it is not locked".to_owned(),
            };
            panic!(
                "greenhub: RLock::release by greenlet {id}, which does not own the lock (cannot \
                 release un-acquired lock): {who}"
            );
        }
        self.release_one();
    }

    /// Releases one acquisition (the owner's, whoever drops the guard).
    fn release_one(&self) {
        let n = self.count.get();
        debug_assert!(n > 0, "greenhub: RLock released more often than acquired");
        self.count.set(n - 1);
        if n == 1 {
            let old = self.owner.borrow_mut().take();
            drop(old);
            self.hand_on();
        }
    }

    /// Hands the free lock to the longest waiter, or marks it unlocked.
    fn hand_on(&self) {
        if self.waiters.hand(()).is_err() {
            self.locked.set(false);
        }
    }
}

/// One acquisition of an [`RLock`]; dereferences to the data (shared access); dropping it releases
/// that acquisition (handing the lock to the next waiter when it was the last one).
///
/// The guard is the acquisition: dropping it releases it whichever greenlet drops it (a guard can
/// reach another greenlet only through shared state such as an `Rc<RefCell<Option<..>>>`).
#[must_use = "the acquisition is released when the guard is dropped"]
pub struct RLockGuard<'a, T: ?Sized> {
    lock: &'a RLock<T>,
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized> Deref for RLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lock.data
    }
}

impl<T: ?Sized> Drop for RLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release_one();
    }
}
