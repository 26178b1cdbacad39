//! Coordination between the greenlets of one hub: events, results, semaphores, locks, queues and
//! channels. Blocking in any of them parks only the calling greenlet; the hub runs the others.
//!
//! # gevent → greenhub
//!
//! | gevent | greenhub |
//! | --- | --- |
//! | `gevent.event.Event` (`set`, `clear`, `is_set`, `wait(timeout)`) | [`Event`] (`set`, `clear`, `is_set`, `wait`, `wait_timeout`) |
//! | `gevent.event.AsyncResult` (`set`, `set_exception`, `get`, `get(timeout)`, `ready`) | [`AsyncResult`] (`set`, `set_error`, `get`, `get_timeout`, `ready`) |
//! | `gevent.lock.Semaphore`, `BoundedSemaphore` (`acquire`, `acquire(blocking=False)`, `acquire(timeout)`, `release`, `with sem:`) | [`Semaphore`], [`BoundedSemaphore`] (`acquire`, `try_acquire`, `acquire_timeout`, `release`, `access`) |
//! | `gevent.lock.RLock` (`acquire`, `acquire(blocking=False)`, `acquire(timeout)`, `release`, `_is_owned`, `with lock:`) | [`RLock`] (`acquire`, `try_acquire`, `acquire_timeout`, `release`, `is_owned`, `lock`) |
//! | `threading.Lock` | [`Mutex`] (not reentrant: data-owning, like `std::sync::Mutex`) |
//! | — | [`RwLock`] |
//! | `gevent.queue.Queue` (`put`, `get`, `put_nowait`, `get_nowait`, `put(timeout)`, `get(timeout)`, `qsize`, `full`, `empty`) | [`Queue`] (`put`, `get`, `try_put`, `try_get`, `put_timeout`, `get_timeout`, `len`, `is_full`, `is_empty`) |
//! | `gevent.queue.JoinableQueue` (`task_done`, `join`) | [`JoinableQueue`] (`task_done`, `join`, `join_timeout`) |
//! | `gevent.queue.PriorityQueue`, `LifoQueue` | [`PriorityQueue`], [`LifoQueue`] |
//! | `gevent.queue.Channel` | [`Channel`] |
//!
//! # Timeouts
//!
//! Every wait has a `_timeout` form, and every wait also observes the enclosing timeout scopes of
//! [`crate::timeout`](mod@crate::timeout): when a scope's deadline ends the wait, it returns [`TimedOut`] (or the
//! primitive's own timeout error), so `?` carries it out to the scope.
//!
//! # Fairness and wake order
//!
//! Waiters are served first come, first served: one wait list per condition, FIFO. Permits, items
//! and lock ownership are **handed** to the first waiter rather than left for whoever runs next, so
//! a greenlet that never blocks cannot barge ahead of one that waits. A waiter whose wait ended for
//! another reason (timeout, kill) is skipped and what it would have received goes to the next
//! waiter; a greenlet killed while waiting leaves every list it was on.
//!
//! # Single-threaded by construction (the GIL)
//!
//! A hub runs one greenlet at a time and switches only at blocking points, so these primitives need
//! no atomics: they are built from `Cell` and `RefCell`, and they are `!Send` and `!Sync` — the
//! compiler, not documentation, keeps them on their hub's thread. Share them between greenlets with
//! `Rc`. To talk to another thread, use the cross-thread channels of [`mpmc`] instead (the one
//! module here whose types are `Send`).
//!
//! ```compile_fail
//! let ev = greenhub::sync::Event::new();
//! std::thread::spawn(move || ev.set()); // Event is !Send
//! ```
//!
//! ```compile_fail
//! let q = greenhub::sync::Queue::<u32>::new();
//! std::thread::spawn(move || q.try_put(1)); // Queue is !Send
//! ```
//!
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! shared(&greenhub::sync::Event::new()); // Event is !Sync
//! ```
//!
//! # Panics
//!
//! Every blocking method (each says so in its own `# Panics`) panics, naming the caller, inside
//! the hub and after this thread's hub was torn down (see [`hub`](crate::hub#misuse)).

#![deny(unsafe_code)]

use std::fmt;
use std::io;

mod async_result;
mod event;
pub mod mpmc;
mod mutex;
mod queue;
mod rlock;
mod rwlock;
mod semaphore;
pub(crate) mod waitlist;

pub use async_result::{AsyncResult, GetError};
pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use queue::{
    Channel, Fifo, Full, JoinableQueue, Lifo, LifoQueue, Order, Priority, PriorityQueue, Queue,
};
pub use rlock::{RLock, RLockGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

/// A wait gave up: its own timeout, or the deadline of an enclosing timeout scope, passed first (or
/// the waiting greenlet is unwinding from a kill and cannot wait any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting")
    }
}

impl std::error::Error for TimedOut {}

impl From<TimedOut> for io::Error {
    fn from(_: TimedOut) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, TimedOut)
    }
}

/// `Instant::now() + d`, or `None` (no deadline) when that is not representable.
pub(crate) fn deadline_after(d: std::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(d)
}
