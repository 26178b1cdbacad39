//! Waiting for another thread: a [`Blocker`] parks the calling greenlet (or, outside any hub,
//! the OS thread) until a [`Notifier`] — `Send + Sync`, usable from anywhere — wakes it.
//!
//! A greenlet's blocker is a wake-up slot in its hub's mailbox (`rt/mailbox.rs`), named from
//! outside by `(key, seq)`: a notification from another thread becomes a message the hub drains
//! on its own stack; from the hub's own thread it wakes the slot directly. A stale notification
//! (the slot has moved on) does nothing, so waiters re-check their condition and loop. A live
//! blocker counts as a remote source, so a main greenlet waiting for another thread is not
//! reported as a deadlock.

#![deny(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::thread::Thread;
use std::time::Instant;

use crate::rt::{existing_hub, Core, Hub, RemoteWake, Scope, WaitOn, Wake};

/// Wakes a greenlet parked on some hub, or a plain thread blocked outside any hub. `Send + Sync`.
#[derive(Clone)]
pub(crate) enum Notifier {
    Greenlet(RemoteWake),
    Thread(Thread),
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notifier::Greenlet(r) => write!(f, "Notifier::Greenlet({}, {})", r.key, r.seq),
            Notifier::Thread(t) => write!(f, "Notifier::Thread({:?})", t.id()),
        }
    }
}

impl Notifier {
    /// Wakes the waiter if it is still waiting (a spurious wake-up otherwise: waiters re-check).
    pub(crate) fn notify(&self) {
        match self {
            Notifier::Thread(t) => t.unpark(),
            Notifier::Greenlet(r) => r.wake(),
        }
    }
}

/// Where a wait for another thread blocks: the running greenlet (parks only it) or, outside any
/// hub, the OS thread. Hub-local (`!Send`); make one per wait, on the waiter's stack — it holds
/// only a slot key, no pointer into the stack is handed out (invariant 1).
pub(crate) struct Blocker {
    kind: BlockerKind,
    _not_send: PhantomData<*const ()>,
}

enum BlockerKind {
    Greenlet {
        hub: &'static Hub,
        key: usize,
        seq: u64,
    },
    Thread,
}

impl Blocker {
    /// A blocker for the caller: its greenlet if this thread has a hub, else the thread.
    ///
    /// # Panics
    /// Inside the hub context (a callback or a destructor the hub runs), where blocking would stop
    /// the loop.
    pub(crate) fn new() -> Blocker {
        let kind = match existing_hub() {
            None => BlockerKind::Thread,
            Some(hub) => {
                hub.current_core("wait for another thread");
                let (key, seq) = hub.mailbox().open_slot();
                BlockerKind::Greenlet { hub, key, seq }
            }
        };
        Blocker {
            kind,
            _not_send: PhantomData,
        }
    }

    /// What another thread uses to wake this blocker.
    pub(crate) fn notifier(&self) -> Notifier {
        match &self.kind {
            BlockerKind::Greenlet { hub, key, seq } => Notifier::Greenlet(RemoteWake {
                shared: hub.mailbox().shared().clone(),
                key: *key,
                seq: *seq,
            }),
            BlockerKind::Thread => Notifier::Thread(std::thread::current()),
        }
    }

    /// Blocks until notified (possibly spuriously: re-check and loop) or `deadline`. A greenlet
    /// parks and sees every `Wake` (kills unwind from here, timeout scopes end the park with
    /// `ScopeExpired`); a thread returns `Woken` or `TimedOut`.
    pub(crate) fn park(&self, on: &'static &'static str, deadline: Option<Instant>) -> Wake {
        match &self.kind {
            BlockerKind::Greenlet { hub, key, .. } => {
                hub.mailbox().arm_slot(*key, hub.current_waiter());
                hub.park(WaitOn::Sync(on), deadline)
            }
            BlockerKind::Thread => match deadline {
                None => {
                    std::thread::park();
                    Wake::Woken
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Wake::TimedOut;
                    }
                    std::thread::park_timeout(d - now);
                    if Instant::now() >= d {
                        Wake::TimedOut
                    } else {
                        Wake::Woken
                    }
                }
            },
        }
    }
}

impl Blocker {
    /// Like [`park`](Self::park), but the caller's timeout scopes do not bound this park (they are
    /// set aside for it and put back after): for waits that have no timeout error to return.
    pub(crate) fn park_unscoped(
        &self,
        on: &'static &'static str,
        deadline: Option<Instant>,
    ) -> Wake {
        let BlockerKind::Greenlet { hub, .. } = self.kind else {
            return self.park(on, deadline);
        };
        let core = hub.current_core("wait for another thread");
        let scopes = match core.cold_if_any() {
            Some(c) => std::mem::take(&mut *c.scopes.borrow_mut()),
            None => Vec::new(),
        };
        /// Puts the scopes back however the park ends (a kill unwinds through here).
        struct Restore<'a>(&'a Core, Option<Vec<Scope>>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                if let Some(s) = self.1.take().filter(|s| !s.is_empty()) {
                    let mut mine = self.0.cold().scopes.borrow_mut();
                    let newer = std::mem::replace(&mut *mine, s);
                    mine.extend(newer);
                }
            }
        }
        let _restore = Restore(core, Some(scopes));
        self.park(on, deadline)
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        if let BlockerKind::Greenlet { hub, key, .. } = self.kind {
            // After teardown the hub (and its slab) is gone; there is nothing to undo.
            if existing_hub().is_some() {
                hub.mailbox().close_slot(key);
            }
        }
    }
}
