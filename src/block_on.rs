//! `hub::block_on`: async code from a greenlet. The future is polled on the calling greenlet; between
//! polls only that greenlet parks, and the future's waker, callable from any thread, wakes it
//! through the cross-thread handoff (`src/handoff.rs`).
//!
//! # Why the future lives on the heap
//!
//! A parked worker's stack slice may be copied to the heap and its addresses handed to another
//! worker (invariant 1). Async primitives such as tokio's `Notify`, `event-listener` or a
//! `futures` channel link a node *inside the pinned future* into a list that other code writes
//! to when it notifies. Pinned on the greenlet's stack, that node would be overwritten by the next
//! occupant while the greenlet is parked and the notifier would write into someone else's frame.
//! `block_on` therefore boxes the future (`Box::pin`) before the first poll: the node stays at one
//! heap address for the future's whole life, whoever occupies the shared stack.
//!
//! # Wake-ups
//!
//! ```text
//!   waker.wake() (any thread, any number of times)
//!       notified.swap(true) was false? ── no ──► nothing (a poll is already due)
//!                    │ yes
//!                    ▼
//!       Notifier::notify: same hub thread -> wake the greenlet directly;
//!                         other thread    -> Msg::Wake onto the hub's queue (+ coalesced eventfd)
//!   the greenlet: notified.store(false); poll; Pending -> park until `notified` is set
//! ```
//!
//! The flag is cleared before each poll, so a wake that lands during the poll makes the greenlet
//! poll again instead of parking; at most one message per poll is ever queued, however often the
//! waker is called.

#![deny(unsafe_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake as StdWake, Waker};
use std::thread::Thread;
use std::time::Duration;

use crate::remote::blocker::{Blocker, Notifier};
use crate::rt::{existing_hub, Wake};

/// The waker's shared state.
struct Signal {
    /// A wake-up came since the greenlet last cleared it (before its latest poll).
    notified: AtomicBool,
    /// Wakes the parked greenlet (or, outside any hub, the blocked thread).
    notifier: Notifier,
    /// Set when the greenlet can no longer park (a destructor running during its kill): wakes
    /// then unpark this thread instead.
    fallback: OnceLock<Thread>,
}

impl StdWake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            match self.fallback.get() {
                Some(t) => t.unpark(),
                None => self.notifier.notify(),
            }
        }
    }
}

/// Runs `future` to completion on the calling greenlet and returns its output. Between polls only
/// the calling greenlet parks; every other greenlet of the hub runs meanwhile.
///
/// The future is moved to the heap first (see the module docs of `src/block_on.rs`: a stack slice
/// can be copied away while the greenlet is parked, so nothing pinned may live on it). Its waker
/// is `Send + Sync` and may be called from any thread, any number of times; calls are coalesced
/// (one pending wake-up at most per poll). No async runtime is involved: use futures that need
/// none (`async-channel`, `futures` combinators, tokio's `sync` primitives, `event-listener`),
/// not ones that need a tokio reactor or timer (`tokio::net`, `tokio::time`).
///
/// Outside any hub (a thread that never used greenhub) it blocks the thread between polls.
///
/// A future that never completes parks the greenlet for good. Since its waker may be called from
/// any thread, the hub cannot tell that apart from a slow wake-up: a main greenlet waiting in
/// `block_on` is never reported as a deadlock.
///
/// Timeout scopes ([`crate::timeout()`]) do not interrupt it (there is no error it could
/// return); bound the future itself (e.g. race it against a timer future) instead. A kill does:
/// the future is dropped as the greenlet unwinds. Called from a destructor while the greenlet's
/// kill is unwinding (when it can no longer park), it blocks the OS thread between polls: a future
/// that waits for another greenlet of the same hub would then never finish.
///
/// # Panics
/// Inside the hub context (a hub callback, or a destructor the hub runs); if the future panics
/// (the panic propagates, the future is dropped).
///
/// # Examples
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::task::{Poll, Waker};
/// use greenhub::hub;
///
/// // A one-shot flag set by another thread: (done, the waker to call).
/// let shared = Arc::new(Mutex::new((false, None::<Waker>)));
/// let s = shared.clone();
/// let waiter = hub::spawn(move || {
///     hub::block_on(std::future::poll_fn(|cx| {
///         let mut st = s.lock().unwrap();
///         if st.0 {
///             Poll::Ready("set")
///         } else {
///             st.1 = Some(cx.waker().clone());
///             Poll::Pending // parks only this greenlet
///         }
///     }))
/// });
/// hub::yield_now(); // the waiter polls once and parks
/// std::thread::spawn(move || {
///     let mut st = shared.lock().unwrap();
///     st.0 = true;
///     if let Some(w) = st.1.take() {
///         w.wake(); // woken from another thread
///     }
/// });
/// assert_eq!(waiter.join().unwrap(), "set");
/// ```
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    if let Some(hub) = existing_hub() {
        hub.current_core("block on a future");
    }
    let mut future = Box::pin(future);
    let blocker = Blocker::new();
    let signal = Arc::new(Signal {
        notified: AtomicBool::new(false),
        notifier: blocker.notifier(),
        fallback: OnceLock::new(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        // Cleared before the poll: a wake during the poll sets it again and we poll once more.
        signal.notified.store(false, Ordering::Release);
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        while !signal.notified.load(Ordering::Acquire) {
            if signal.fallback.get().is_some() {
                std::thread::park_timeout(Duration::from_millis(10));
                continue;
            }
            match blocker.park_unscoped(&"a future (hub::block_on)", None) {
                Wake::Woken | Wake::TimedOut | Wake::ScopeExpired => {}
                Wake::Killed | Wake::Deadlock => {
                    // Our kill is unwinding (a destructor called us): parking returns at once
                    // from now on. Take the wake-ups on this thread instead.
                    let _ = signal.fallback.set(std::thread::current());
                }
            }
        }
    }
}
