//! The mailbox: the one way another OS thread reaches into a hub.
//!
//! # Design
//!
//! A hub and everything on it (`Rc`s, cores, waiters, wait lists) belong to its thread and are
//! never touched from another one (invariant 5). What crosses threads is a **message** pushed onto
//! the hub's [`Shared`] queue, which the hub itself drains on its own stack, in the hub context,
//! once per loop iteration:
//!
//! ```text
//!  thread B                                   hub A's thread
//!  ────────                                   ──────────────
//!  lock queue; push Msg; unlock
//!  if notified.swap(true) == false:           loop {
//!      remote_pending = true                      ...
//!      waker.wake()        ── eventfd ──►         poll_io (woken, or polls because remote_pending)
//!                                                 notified = false; take the queue; run each Msg:
//!                                                   Msg::Run(job)      -> job() (e.g. spawn f)
//!                                                   Msg::Wake(key,seq) -> slots[key].waiter.wake()
//!                                             }
//! ```
//!
//! - **Coalescing.** `notified` is a compare-and-swap flag: only the push that flips it from false
//!   to true pays for the `eventfd` write; a burst of pushes before the hub drains costs one wake-up.
//!   The hub clears the flag *before* taking the queue, so a push that lands after the take sees the
//!   flag clear and wakes the hub again: no message is ever left behind.
//! - **Waking one greenlet.** A greenlet that waits for another thread registers a `Blocker` (`crate::remote::blocker`): a
//!   slot in this hub's local slab holding its [`Waiter`] for the current park, named from outside by
//!   a `(key, seq)` pair — a [`RemoteWake`], which is `Send + Sync`. Another thread calls
//!   `Notifier::notify`, which sends `Msg::Wake(key, seq)`; the hub wakes the waiter if the slot
//!   still has that `seq` and the waiter's park is still in progress (stale wake-ups are ignored, as
//!   everywhere in greenhub). From the hub's own thread a notification wakes the slot directly.
//! - **"Something can still arrive."** A live `Blocker` counts in [`Mailbox::remote_sources`], so a main
//!   greenlet waiting for another thread is not reported as a deadlock; a message pushed but not yet
//!   drained (`notified` set) keeps the loop polling too.
//! - **Plain threads.** Outside a hub the same waits block the OS thread: `Blocker` (`crate::remote::blocker`) then uses
//!   `std::thread::park` and the notifier unparks.
//! - **Teardown.** When the hub is torn down its queue is closed: later pushes are refused and
//!   pending messages are dropped, so a job's destructors run (a `Handle::spawn` job dropped unrun
//!   reports its greenlet as killed) and nobody waits forever.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use slab::Slab;

use super::hub::Hub;
use super::task::{panic_message, TaskRef, Waiter, Wake};

/// A job another thread asks a hub to run on its own stack.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// What another thread sends a hub.
pub(crate) enum Msg {
    /// Run this on the hub's stack.
    Run(Job),
    /// Wake the greenlet in slot `.0` if the slot still has sequence number `.1`.
    Wake(usize, u64),
}

/// The part of a hub that other threads may touch: its message queue and its waker.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// A wake-up is on its way (or the hub has not drained since the last one).
    notified: AtomicBool,
    waker: Arc<mio::Waker>,
    /// The hub's `remote_pending`: tells the loop that a poll is worth a syscall.
    pending: Arc<AtomicBool>,
    /// `waker.wake()` calls made, for tests and diagnostics.
    wakeups: AtomicU64,
}

struct Queue {
    msgs: Vec<Msg>,
    /// The hub was torn down: nothing will ever drain this queue again.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock can only come from an allocation failure; the queue is
        // still consistent, so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` and wakes the hub (once per burst). Gives the message back if the hub is gone.
    pub(crate) fn push(&self, msg: Msg) -> Result<(), Msg> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(msg);
            }
            q.msgs.push(msg);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.pending.store(true, Ordering::Release);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.waker.wake() {
                tracing::error!("greenhub: cannot wake a hub from another thread: {e}");
            }
        }
        Ok(())
    }

    /// Whether the hub has been torn down: pushes are refused from then on.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many times other threads have woken the hub's poller.
    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }
}

/// A slot of [`Mailbox::slots`]: a greenlet waiting for another thread.
struct Slot {
    seq: u64,
    /// The waiter for the current park; `None` between parks.
    waiter: Option<Waiter>,
}

/// The hub-local side of the mailbox: owned by `Hub`, touched only on its thread.
pub(crate) struct Mailbox {
    shared: Arc<Shared>,
    slots: RefCell<Slab<Slot>>,
    next_seq: Cell<u64>,
    /// Sources of events from other threads that may still deliver: live slots (greenlets waiting
    /// for another thread). With any, an idle loop blocks in poll instead of reporting a
    /// deadlock.
    remote_sources: Cell<usize>,
    /// Greenlets spawned through a `Handle` and not finished, by remote id: what a remote kill
    /// looks up. Each entry removes itself when its greenlet ends.
    spawned: RefCell<HashMap<u64, TaskRef>>,
}

impl Mailbox {
    pub(super) fn new(waker: Arc<mio::Waker>, pending: Arc<AtomicBool>) -> Mailbox {
        Mailbox {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    msgs: Vec::new(),
                    closed: false,
                }),
                notified: AtomicBool::new(false),
                waker,
                pending,
                wakeups: AtomicU64::new(0),
            }),
            slots: RefCell::new(Slab::new()),
            next_seq: Cell::new(1),
            remote_sources: Cell::new(0),
            spawned: RefCell::new(HashMap::new()),
        }
    }

    /// The queue other threads push onto.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether a message may be waiting in the queue (cheap: one atomic load).
    pub(super) fn has_pending(&self) -> bool {
        self.shared.notified.load(Ordering::Acquire)
    }

    /// Whether something from another thread may still arrive (a slot is live).
    pub(super) fn has_remote_sources(&self) -> bool {
        self.remote_sources.get() > 0
    }

    /// Opens a wake-up slot for a greenlet about to wait for another thread; returns its key and
    /// sequence number, which name it from any thread ([`RemoteWake`]). Counts as a remote source
    /// until [`close_slot`](Self::close_slot).
    pub(crate) fn open_slot(&self) -> (usize, u64) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let key = self.slots.borrow_mut().insert(Slot { seq, waiter: None });
        self.remote_sources.set(self.remote_sources.get() + 1);
        (key, seq)
    }

    /// Puts the waiter of the coming park into slot `key`.
    pub(crate) fn arm_slot(&self, key: usize, w: Waiter) {
        if let Some(s) = self.slots.borrow_mut().get_mut(key) {
            s.waiter = Some(w);
        }
    }

    /// Closes slot `key` (the wait is over).
    pub(crate) fn close_slot(&self, key: usize) {
        drop(self.slots.borrow_mut().try_remove(key));
        self.remote_sources.set(self.remote_sources.get() - 1);
    }

    /// Wakes the greenlet in slot `key` if the slot still has `seq`.
    pub(crate) fn wake_slot(&self, hub: &Hub, key: usize, seq: u64) {
        let w = match self.slots.borrow().get(key) {
            Some(s) if s.seq == seq => s.waiter.clone(),
            _ => None,
        };
        if let Some(w) = w {
            hub.wake_owned(w, Wake::Woken);
        }
    }

    /// Remembers a greenlet spawned from another thread under its remote id.
    pub(crate) fn remember(&self, id: u64, task: TaskRef) {
        self.spawned.borrow_mut().insert(id, task);
    }

    /// Forgets (and returns) the greenlet spawned under remote id `id`.
    pub(crate) fn forget(&self, id: u64) -> Option<TaskRef> {
        self.spawned.borrow_mut().remove(&id)
    }

    /// Runs every queued message. Hub context only (called by the loop).
    pub(super) fn drain(&self, hub: &Hub) {
        if !self.has_pending() {
            return;
        }
        // Clear first, then take: a push after the take sees the flag clear and wakes us again.
        self.shared.notified.store(false, Ordering::Release);
        let msgs = std::mem::take(&mut self.shared.lock().msgs);
        for msg in msgs {
            match msg {
                Msg::Wake(key, seq) => self.wake_slot(hub, key, seq),
                Msg::Run(job) => {
                    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(job)) {
                        tracing::error!(
                            "greenhub: a job sent from another thread panicked on the hub: {}",
                            panic_message(&*p)
                        );
                    }
                }
            }
        }
    }
}

impl Drop for Mailbox {
    /// The hub is being torn down: refuse further messages and drop the pending ones (their
    /// destructors report to whoever waits on them).
    fn drop(&mut self) {
        // Every greenlet is finished or abandoned by now; the tasks are plain memory.
        self.spawned.get_mut().clear();
        let msgs = {
            let mut q = self.shared.lock();
            q.closed = true;
            std::mem::take(&mut q.msgs)
        };
        drop(msgs);
    }
}

/// Names one wake-up slot of one hub from any thread.
#[derive(Clone)]
pub(crate) struct RemoteWake {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: usize,
    pub(crate) seq: u64,
}

impl RemoteWake {
    /// Wakes the slot's greenlet if it still waits: directly when called on its own hub's thread
    /// (no queue, no syscall), else through the queue.
    pub(crate) fn wake(&self) {
        if let Some(hub) = super::hub::existing_hub() {
            if Arc::ptr_eq(hub.mailbox.shared(), &self.shared) {
                hub.mailbox.wake_slot(hub, self.key, self.seq);
                return;
            }
        }
        // A closed hub has no greenlet left to wake.
        let _ = self.shared.push(Msg::Wake(self.key, self.seq));
    }
}
