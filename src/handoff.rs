//! Cross-thread handoff: the one way another OS thread reaches into a hub.
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
//! - **Waking one greenlet.** A greenlet that waits for another thread registers a [`Blocker`]: a
//!   slot in this hub's local slab holding its [`Waiter`] for the current park, named from outside by
//!   a `(key, seq)` pair — a [`RemoteWake`], which is `Send + Sync`. Another thread calls
//!   [`Notifier::notify`], which sends `Msg::Wake(key, seq)`; the hub wakes the waiter if the slot
//!   still has that `seq` and the waiter's park is still in progress (stale wake-ups are ignored, as
//!   everywhere in greenhub). From the hub's own thread a notification wakes the slot directly.
//! - **"Something can still arrive."** A live `Blocker` counts in `Hub::remote_sources`, so a main
//!   greenlet waiting for another thread is not reported as a deadlock; a message pushed but not yet
//!   drained (`notified` set) keeps the loop polling too.
//! - **Plain threads.** Outside a hub the same waits block the OS thread: [`Blocker`] then uses
//!   `std::thread::park` and the notifier unparks.
//! - **Teardown.** When the hub is torn down its queue is closed: later pushes are refused and
//!   pending messages are dropped, so a job's destructors run (a `Handle::spawn` job dropped unrun
//!   reports its greenlet as killed) and nobody waits forever.

#![deny(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::greenlet::{panic_message, Core, GreenletError, KillSignal, Scope, Waiter};
use crate::hub::{self, existing_hub, Builder, Greenlet, Hub, WaitOn, Wake};

/// A job another thread asks a hub to run on its own stack.
type Job = Box<dyn FnOnce() + Send>;

enum Msg {
    Run(Job),
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
    fn push(&self, msg: Msg) -> Result<(), Msg> {
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
}

/// A slot of [`HubRemote::slots`]: a greenlet waiting for another thread.
struct Slot {
    seq: u64,
    /// The waiter for the current park; `None` between parks.
    waiter: Option<Waiter>,
}

/// The hub-local side of the handoff: owned by `Hub`, touched only on its thread.
pub(crate) struct HubRemote {
    pub(crate) shared: Arc<Shared>,
    slots: RefCell<Slab<Slot>>,
    next_seq: Cell<u64>,
    /// Greenlets spawned through a `Handle` and not finished, by remote id: what a remote kill
    /// looks up. Each entry removes itself when its greenlet ends.
    spawned: RefCell<HashMap<u64, Greenlet<()>>>,
}

impl HubRemote {
    pub(crate) fn new(waker: Arc<mio::Waker>, pending: Arc<AtomicBool>) -> HubRemote {
        HubRemote {
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
            spawned: RefCell::new(HashMap::new()),
        }
    }

    /// Whether a message may be waiting in the queue (cheap: one atomic load).
    pub(crate) fn has_pending(&self) -> bool {
        self.shared.notified.load(Ordering::Acquire)
    }

    /// Runs every queued message. Hub context only (called by the loop).
    pub(crate) fn drain(&self, hub: &Hub) {
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

    fn wake_slot(&self, hub: &Hub, key: usize, seq: u64) {
        let w = match self.slots.borrow().get(key) {
            Some(s) if s.seq == seq => s.waiter.clone(),
            _ => None,
        };
        if let Some(w) = w {
            hub.wake(&w, Wake::Woken);
        }
    }
}

impl Drop for HubRemote {
    /// The hub is being torn down: refuse further messages and drop the pending ones (their
    /// destructors report to whoever waits on them).
    fn drop(&mut self) {
        // Every greenlet is finished or abandoned by now; the handles are plain memory.
        self.spawned.get_mut().clear();
        let msgs = {
            let mut q = self.shared.lock();
            q.closed = true;
            std::mem::take(&mut q.msgs)
        };
        drop(msgs);
    }
}

/// Names one [`Blocker`] slot of one hub from any thread.
#[derive(Clone)]
pub(crate) struct RemoteWake {
    shared: Arc<Shared>,
    key: usize,
    seq: u64,
}

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
            Notifier::Greenlet(r) => {
                // On the waiter's own hub thread: wake directly, no queue, no syscall.
                if let Some(hub) = existing_hub() {
                    if Arc::ptr_eq(&hub.remote.shared, &r.shared) {
                        hub.remote.wake_slot(hub, r.key, r.seq);
                        return;
                    }
                }
                // A closed hub has no greenlet left to wake.
                let _ = r.shared.push(Msg::Wake(r.key, r.seq));
            }
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
                let seq = hub.remote.next_seq.get();
                hub.remote.next_seq.set(seq + 1);
                let key = hub
                    .remote
                    .slots
                    .borrow_mut()
                    .insert(Slot { seq, waiter: None });
                hub.remote_sources.set(hub.remote_sources.get() + 1);
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
                shared: hub.remote.shared.clone(),
                key: *key,
                seq: *seq,
            }),
            BlockerKind::Thread => Notifier::Thread(std::thread::current()),
        }
    }

    /// Blocks until notified (possibly spuriously: re-check and loop) or `deadline`. A greenlet
    /// parks and sees every `Wake` (kills unwind from here, timeout scopes end the park with
    /// `ScopeExpired`); a thread returns `Woken` or `TimedOut`.
    pub(crate) fn park(&self, on: &'static str, deadline: Option<Instant>) -> Wake {
        match &self.kind {
            BlockerKind::Greenlet { hub, key, .. } => {
                let w = hub.current_waiter();
                if let Some(s) = hub.remote.slots.borrow_mut().get_mut(*key) {
                    s.waiter = Some(w);
                }
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
    pub(crate) fn park_unscoped(&self, on: &'static str, deadline: Option<Instant>) -> Wake {
        let BlockerKind::Greenlet { hub, .. } = self.kind else {
            return self.park(on, deadline);
        };
        let core = hub.current_core("wait for another thread");
        let scopes = std::mem::take(&mut *core.scopes.borrow_mut());
        /// Puts the scopes back however the park ends (a kill unwinds through here).
        struct Restore<'a>(&'a Core, Option<Vec<Scope>>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                if let Some(s) = self.1.take() {
                    let mut mine = self.0.scopes.borrow_mut();
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
                drop(hub.remote.slots.borrow_mut().try_remove(key));
                hub.remote_sources.set(hub.remote_sources.get() - 1);
            }
        }
    }
}

/// A `Send + Sync` handle to a hub, for other threads: spawn greenlets on it.
///
/// Get one with [`handle`] on the hub's thread. Jobs sent through it wake the hub through its
/// `mio::Waker`, coalesced: a burst of spawns costs about one wake-up. After the hub is torn down
/// (its thread exited) a spawn still returns a join handle, which reports
/// [`GreenletError::Killed`].
///
/// ```
/// use greenhub::{hub, sync::mpmc};
///
/// let (tx, rx) = std::sync::mpsc::channel();
/// let (stop_tx, stop_rx) = mpmc::bounded::<()>(1);
/// let t = std::thread::spawn(move || {
///     hub::run(move || {
///         tx.send(hub::handle()).unwrap();
///         let _ = stop_rx.recv(); // keep the hub alive until `stop_tx` is dropped
///     })
/// });
/// let h = rx.recv().unwrap();
/// let g = h.spawn(|| 6 * 7);
/// assert_eq!(g.join().unwrap(), 42); // blocks this thread only
/// drop(stop_tx);
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A [`Handle`] to this thread's hub (created on first use).
///
/// # Panics
/// After this thread's hub was torn down.
pub fn handle() -> Handle {
    Handle {
        shared: hub::current_hub().remote.shared.clone(),
    }
}

impl Handle {
    /// Spawns a greenlet running `f` on the handle's hub; returns a join handle usable from any
    /// thread or hub.
    pub fn spawn<F, T>(&self, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(None, f)
    }

    /// Like [`spawn`](Self::spawn), naming the greenlet (the name shows in diagnostics, the
    /// monitor's reports and `hub::run_info`).
    pub fn spawn_named<F, T>(&self, name: impl Into<String>, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(Some(name.into()), f)
    }

    fn spawn_inner<F, T>(&self, name: Option<String>, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(JoinSlot {
            state: Mutex::new(JoinState {
                result: None,
                taken: false,
                waiters: Vec::new(),
            }),
        });
        let completer = Completer {
            slot: Some(slot.clone()),
        };
        let job: Job = Box::new(move || {
            // Hub context: spawn the greenlet, which starts at the next loop iteration.
            let builder = match name {
                Some(n) => Builder::new().name(n),
                None => Builder::new(),
            };
            let g = builder.spawn(move || {
                /// Forgets the greenlet's entry however it ends.
                struct Forget(u64);
                impl Drop for Forget {
                    fn drop(&mut self) {
                        if let Some(hub) = existing_hub() {
                            let g = hub.remote.spawned.borrow_mut().remove(&self.0);
                            drop(g);
                        }
                    }
                }
                let _forget = Forget(id);
                let completer = completer;
                match panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(v) => completer.complete(Ok(v)),
                    Err(p) if p.is::<KillSignal>() => {
                        completer.complete(Err(GreenletError::Killed));
                        panic::resume_unwind(p);
                    }
                    Err(p) => completer.complete(Err(GreenletError::Panicked(p))),
                }
            });
            if let Some(hub) = existing_hub() {
                hub.remote.spawned.borrow_mut().insert(id, g);
            }
        });
        // Refused (the hub is gone): dropping the job drops the completer, which reports Killed.
        drop(self.shared.push(Msg::Run(job)));
        RemoteGreenlet {
            slot,
            id,
            hub: self.shared.clone(),
        }
    }

    /// Runs `f` on the hub's own stack at its next loop iteration (like [`hub::run_callback`],
    /// from any thread). `f` must not block. Returns `false` if the hub is gone (`f` is dropped).
    pub fn run_callback<F>(&self, f: F) -> bool
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.push(Msg::Run(Box::new(f))).is_ok()
    }

    /// Whether the hub has been torn down (its thread exited): spawns are refused from then on.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// How many times other threads have woken this hub's poller (`mio::Waker::wake` calls).
    /// Bursts are coalesced, so this grows much slower than the number of jobs sent.
    pub fn wakeups(&self) -> u64 {
        self.shared.wakeups.load(Ordering::Relaxed)
    }

    /// Whether both handles name the same hub.
    pub fn same_hub(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

struct JoinSlot<T> {
    state: Mutex<JoinState<T>>,
}

struct JoinState<T> {
    result: Option<Result<T, GreenletError>>,
    taken: bool,
    waiters: Vec<(u64, Notifier)>,
}

impl<T> JoinSlot<T> {
    fn lock(&self) -> MutexGuard<'_, JoinState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reports a remote greenlet's outcome; reports `Killed` if dropped before that (the job was never
/// run, or the greenlet was killed before it started).
struct Completer<T> {
    slot: Option<Arc<JoinSlot<T>>>,
}

impl<T> Completer<T> {
    fn complete(mut self, r: Result<T, GreenletError>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, r);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, Err(GreenletError::Killed));
        }
    }
}

fn finish<T>(slot: &JoinSlot<T>, r: Result<T, GreenletError>) {
    let waiters = {
        let mut st = slot.lock();
        st.result = Some(r);
        std::mem::take(&mut st.waiters)
    };
    for (_, n) in waiters {
        n.notify();
    }
}

static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);

/// The join handle of a greenlet spawned through a [`Handle`]: `Send`, joinable from a greenlet on
/// any hub (parks only that greenlet) or from a plain thread (blocks it). Dropping it detaches the
/// greenlet.
pub struct RemoteGreenlet<T> {
    slot: Arc<JoinSlot<T>>,
    /// Key in the hub's `HubRemote::spawned`.
    id: u64,
    hub: Arc<Shared>,
}

impl<T> fmt::Debug for RemoteGreenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteGreenlet")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> RemoteGreenlet<T> {
    /// Whether the greenlet has finished (returned, panicked, or was killed or never run).
    pub fn is_finished(&self) -> bool {
        let st = self.slot.lock();
        st.result.is_some() || st.taken
    }

    /// Asks the greenlet's hub to kill it (gevent's `kill(block=False)`) and returns at once;
    /// [`join`](Self::join) then waits for it to finish unwinding and reports
    /// [`GreenletError::Killed`] (unless it finished first). A greenlet not yet started is
    /// dropped without running.
    pub fn kill(&self) {
        let id = self.id;
        let _ = self.hub.push(Msg::Run(Box::new(move || {
            if let Some(hub) = existing_hub() {
                let g = hub.remote.spawned.borrow_mut().remove(&id);
                if let Some(g) = g {
                    g.kill_nowait();
                }
            }
        })));
    }

    /// Waits until the greenlet finishes; returns its value.
    ///
    /// # Errors
    /// [`GreenletError::Panicked`] with the payload, [`GreenletError::Killed`] if it was killed
    /// (its hub shut down), [`GreenletError::TimedOut`] if an enclosing timeout scope of the
    /// joining greenlet expires first.
    ///
    /// # Panics
    /// Inside a hub callback.
    pub fn join(self) -> Result<T, GreenletError> {
        self.wait(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`GreenletError::TimedOut`]; the
    /// handle stays joinable.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    ///
    /// # Panics
    /// As [`join`](Self::join), and if the result was already taken.
    pub fn join_timeout(&self, timeout: Duration) -> Result<T, GreenletError> {
        self.wait(Instant::now().checked_add(timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<T, GreenletError> {
        let me = NEXT_WAIT.fetch_add(1, Ordering::Relaxed);
        let mut blocker: Option<Blocker> = None;
        loop {
            {
                let mut st = self.slot.lock();
                if let Some(r) = st.result.take() {
                    st.taken = true;
                    return r;
                }
                assert!(
                    !st.taken,
                    "greenhub: the result of this remote greenlet was already taken"
                );
                let b = blocker.get_or_insert_with(Blocker::new);
                st.waiters.retain(|(id, _)| *id != me);
                st.waiters.push((me, b.notifier()));
            }
            let b = blocker.as_ref().expect("made above");
            let wake = b.park("a greenlet on another hub to finish", deadline);
            let give_up = match wake {
                Wake::Woken => None,
                Wake::TimedOut | Wake::ScopeExpired => Some(GreenletError::TimedOut),
                Wake::Killed | Wake::Deadlock => Some(GreenletError::Killed),
            };
            if let Some(e) = give_up {
                let mut st = self.slot.lock();
                if let Some(r) = st.result.take() {
                    st.taken = true;
                    return r;
                }
                st.waiters.retain(|(id, _)| *id != me);
                return Err(e);
            }
        }
    }
}
