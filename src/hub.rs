//! The hub: one per OS thread, a greenlet with its own stack that runs the event loop and decides
//! which greenlet runs next.
//!
//! # Why the thread state is shaped like this
//!
//! Every hub thread has three kinds of stack (ARCHITECTURE.md has the diagram):
//!
//! - the **main greenlet** runs on the thread's own stack and is never copied;
//! - the **hub** runs on a dedicated mmap'd stack: the loop below, the timers, the `mio` poll, and
//!   the copying of stack slices — which is why the copying is safe: nothing the hub needs lives in
//!   the region it overwrites;
//! - **workers** all run on one shared stack. The one whose bytes are there is the *occupant*; the
//!   others live as heap slices (`stack::Slice`) until the hub resumes them.
//!
//! Every switch goes through the hub: a greenlet that blocks switches to the hub context, which picks
//! the next ready greenlet, makes it the occupant if it is a worker (evicting and restoring slices
//! only if it is not already the occupant) and switches to it. A switch never happens from a signal
//! handler and never from inside the hub's own stack except to resume a greenlet.
//!
//! The hub lives in a `Box` whose address a `const` thread-local holds; it is created on first use
//! and torn down by a thread-local destructor at thread exit, after every live greenlet has been
//! killed and unwound. `Hub` is reachable only through `current_hub`, so it never leaves its
//! thread.
//!
//! # The loop
//!
//! ```text
//! loop {
//!     run hub callbacks
//!     resume up to BUDGET ready greenlets (FIFO), so I/O and timers are never starved
//!     poll mio: timeout 0 if anything is ready, else until the next timer, else forever;
//!               skipped when nothing is registered and nothing is ready to arrive
//!     mark I/O readiness and wake the greenlets waiting for it
//!     fire expired timers
//!     with nothing ready, no timer, no I/O waiter and nothing pending from other threads,
//!     the main greenlet waits for something that can never come: wake it with Deadlock
//! }
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::arch;
use crate::greenlet::{Core, KillSignal, Kind, State, Task, Waiter};
use crate::stack::Stack;
use crate::timer::Timers;

pub use crate::greenlet::{Builder, Greenlet, GreenletError};
pub use crate::handoff::{handle, Handle, RemoteGreenlet};
pub use crate::monitor::{
    enable_monitor, run_info, GreenletInfo, GreenletState, DEFAULT_MAX_BLOCKING_TIME,
};

/// Why a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A waiter woke it (event set, I/O ready, greenlet finished, ...).
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// It is being killed (seen only by code already unwinding from the kill).
    Killed,
    /// Main greenlet only: nothing can ever wake it.
    Deadlock,
    /// The deadline of an enclosing timeout scope (`timeout`, `Timeout`) passed: the blocking call
    /// returns its timeout error (`io::ErrorKind::TimedOut` for I/O) so `?` carries it to the scope.
    ScopeExpired,
}

/// What a parked greenlet waits for, for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitOn {
    Nothing,
    Start,
    Sleep,
    Join(u64),
    Io(usize),
    Sync(&'static str),
}

impl fmt::Display for WaitOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitOn::Nothing => f.write_str("nothing"),
            WaitOn::Start => f.write_str("its start time"),
            WaitOn::Sleep => f.write_str("a sleep"),
            WaitOn::Join(id) => write!(f, "greenlet {id} to finish"),
            WaitOn::Io(token) => write!(f, "I/O readiness on registration {token}"),
            WaitOn::Sync(what) => f.write_str(what),
        }
    }
}

/// Counters kept by the hub, read with [`stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Context switches (either direction, hub included).
    pub switches: u64,
    /// Slices copied from the shared stack to the heap (evictions).
    pub slice_saves: u64,
    /// Slices copied from the heap back to the shared stack.
    pub slice_restores: u64,
    /// Bytes copied by saves and restores together.
    pub bytes_copied: u64,
    /// Greenlets spawned on this hub.
    pub spawned: u64,
    /// Greenlets that finished (returned, panicked or were killed).
    pub finished: u64,
    /// Greenlets spawned and not finished.
    pub live: u64,
    /// Heap bytes reserved by the slice buffers of live greenlets.
    pub slice_bytes_reserved: u64,
    /// Iterations of the hub loop.
    pub ticks: u64,
    /// Calls to `epoll_wait` (or its equivalent).
    pub polls: u64,
    /// Slice saves by size: entry `k` counts saves of `2^k ..= 2^(k+1) - 1` bytes (entry 0 also
    /// counts empty ones, the last everything from 32 KiB up).
    pub slice_size_histogram: [u64; 16],
}

/// Ready greenlets resumed per loop iteration before I/O and timers get their turn.
const BUDGET: usize = 61;
/// mio token of the hub's waker.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);
/// Default usable bytes of the shared stack (only touched pages cost memory).
pub const DEFAULT_STACK_SIZE: usize = 8 << 20;
/// Default usable bytes of the hub's own stack.
pub const DEFAULT_HUB_STACK_SIZE: usize = 1 << 20;
/// Rounds of kill-and-run at teardown before survivors are abandoned.
const KILL_ROUNDS: usize = 64;

/// An I/O registration's readiness and waiters; the net types build on this.
pub(crate) struct IoSlot {
    pub(crate) readable: Cell<bool>,
    pub(crate) writable: Cell<bool>,
    /// The read half hung up or the socket errored: final (no edge will follow), so a read must
    /// always try the syscall (see `Registered::stream_io`).
    pub(crate) read_closed: Cell<bool>,
    /// The same for the write half.
    pub(crate) write_closed: Cell<bool>,
    pub(crate) readers: RefCell<Vec<Waiter>>,
    pub(crate) writers: RefCell<Vec<Waiter>>,
}

/// The per-thread hub. See the module docs.
pub(crate) struct Hub {
    /// The guard pages of `shared` and `_hub_stack` in the overflow handler's table. First field:
    /// dropped (deregistered) before the stacks are unmapped.
    overflow: crate::overflow::Registration,
    /// The stack every worker runs on.
    shared: Stack,
    /// The hub context's own stack. Kept only so it stays mapped.
    _hub_stack: Stack,
    /// The hub context's saved stack pointer while a greenlet runs.
    hub_sp: Cell<*mut u8>,
    /// The thread's main greenlet.
    main: Rc<dyn Task>,
    /// Core of the running greenlet; null while the hub context runs. Points into the task owned
    /// by `running`.
    current: Cell<*const Core>,
    /// Owns the running greenlet (main or worker) while it runs. A `Cell` (take/set), not a
    /// `RefCell`: this is touched twice per switch.
    running: Cell<Option<Rc<dyn Task>>>,
    /// The worker whose bytes are on the shared stack.
    occupant: Cell<Option<Rc<dyn Task>>>,
    /// The occupant's core, for the pointer comparison on the lazy path; null if none.
    occupant_core: Cell<*const Core>,
    /// FIFO of greenlets to resume.
    ready: RefCell<VecDeque<Rc<dyn Task>>>,
    /// Resumes left in the current loop iteration (see `yield_now`'s fast path).
    budget: Cell<usize>,
    /// The greenlet that just switched to the hub yielded: put it back in the ready queue.
    requeue: Cell<bool>,
    /// Functions to run on the hub's stack at the next iteration.
    callbacks: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    /// Every spawned, unfinished worker. Owning them here keeps parked cores alive.
    live: RefCell<Slab<Rc<dyn Task>>>,
    timers: RefCell<Timers<Waiter>>,
    poll: RefCell<mio::Poll>,
    events: RefCell<mio::Events>,
    /// Set by other threads before they wake this hub through `remote`'s waker; tells the loop a
    /// poll is worth a syscall.
    remote_pending: Arc<AtomicBool>,
    /// Sources of events from other threads that may still deliver: live `handoff::Blocker`s
    /// (greenlets waiting for another thread). Maintained by `handoff`.
    pub(crate) remote_sources: Cell<usize>,
    /// Cross-thread handoff: the queue other threads push jobs and wake-ups onto, and the slots of
    /// greenlets waiting for them (src/handoff.rs). Drained by the loop after each poll.
    pub(crate) remote: crate::handoff::HubRemote,
    /// monitor: set when the blocked-hub monitor watches this hub; published to on every switch
    /// (src/monitor.rs).
    pub(crate) beacon: std::cell::OnceCell<Arc<crate::monitor::Beacon>>,
    /// I/O registrations by mio token.
    pub(crate) io: RefCell<Slab<IoSlot>>,
    /// Greenlets parked on I/O: with any, an empty loop blocks in poll instead of deadlocking.
    pub(crate) io_waiters: Cell<usize>,
    counters: Counters,
    tearing_down: Cell<bool>,
}

/// Hub settings: stack sizes. The hub is created on first use with the defaults (or the
/// `GREENHUB_STACK_SIZE` / `GREENHUB_HUB_STACK_SIZE` environment variables, in bytes with an
/// optional `k` or `m` suffix); build one explicitly to choose.
#[derive(Clone, Debug)]
pub struct Config {
    stack_size: usize,
    hub_stack_size: usize,
    /// monitor: the blocked-hub limit, if the monitor should watch this hub.
    monitor: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: env_size("GREENHUB_STACK_SIZE").unwrap_or(DEFAULT_STACK_SIZE),
            hub_stack_size: env_size("GREENHUB_HUB_STACK_SIZE").unwrap_or(DEFAULT_HUB_STACK_SIZE),
            monitor: None,
        }
    }
}

fn env_size(var: &str) -> Option<usize> {
    let v = std::env::var(var).ok()?;
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = match v.as_bytes().last()? {
        b'k' => (&v[..v.len() - 1], 1 << 10),
        b'm' => (&v[..v.len() - 1], 1 << 20),
        _ => (&v[..], 1),
    };
    match num.trim().parse::<usize>() {
        Ok(n) => n.checked_mul(mult),
        Err(_) => {
            tracing::warn!(
                "greenhub: ignoring {var}={v:?}: expected bytes, optionally with a k or m suffix"
            );
            None
        }
    }
}

impl Config {
    /// The defaults (see the type's docs).
    pub fn new() -> Config {
        Config::default()
    }

    /// Usable bytes of the shared stack all workers run on: the deepest a greenlet may go.
    pub fn stack_size(mut self, bytes: usize) -> Config {
        self.stack_size = bytes;
        self
    }

    /// Usable bytes of the hub's own stack.
    pub fn hub_stack_size(mut self, bytes: usize) -> Config {
        self.hub_stack_size = bytes;
        self
    }

    /// Has the blocked-hub monitor watch this hub: a greenlet that holds the hub longer than
    /// `limit` without blocking is reported through `tracing::warn!` (see [`enable_monitor`];
    /// gevent's `max_blocking_time`, default [`DEFAULT_MAX_BLOCKING_TIME`]).
    pub fn monitor(mut self, limit: Duration) -> Config {
        self.monitor = Some(limit);
        self
    }

    /// Creates this thread's hub with these settings.
    ///
    /// # Errors
    /// `AlreadyExists` if the thread already has a hub (or had one that was torn down); the OS error
    /// if the stacks cannot be mapped or the poller created.
    pub fn install(self) -> io::Result<()> {
        if !CURRENT.with(Cell::get).is_null() || TORN_DOWN.with(Cell::get) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this thread already has a greenhub hub",
            ));
        }
        Hub::install(&self)?;
        if let Some(limit) = self.monitor {
            crate::monitor::enable_monitor(limit);
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's hub, or null. A `const` Cell of a raw pointer has no destructor, so it stays
    /// readable while other thread-locals are being destroyed (teardown needs that).
    static CURRENT: Cell<*const Hub> = const { Cell::new(ptr::null()) };
    /// The hub was torn down (the thread is exiting); using it again is a clear panic.
    static TORN_DOWN: Cell<bool> = const { Cell::new(false) };
    /// Its destructor tears the hub down at thread exit. Registered when the hub is created.
    static TEARDOWN: TeardownGuard = const { TeardownGuard };
}

struct TeardownGuard;

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let p = CURRENT.with(Cell::get);
        if p.is_null() {
            return;
        }
        // SAFETY: a non-null CURRENT points at the boxed hub of this thread, alive until the
        // `Box::from_raw` below (invariant 7 in ARCHITECTURE.md: only teardown frees it).
        let hub = unsafe { &*p };
        hub.kill_all();
        TORN_DOWN.with(|t| t.set(true));
        CURRENT.with(|c| c.set(ptr::null()));
        // SAFETY: `p` came from Box::into_raw in `install`; every worker has been killed and
        // unwound (or abandoned, never to be resumed), the hub context is suspended and never
        // resumed again, and CURRENT no longer hands the pointer out, so nothing refers to it
        // (invariants 4 and 7).
        drop(unsafe { Box::from_raw(p.cast_mut()) });
    }
}

/// This thread's hub, created on first use.
///
/// # Panics
/// If the hub was torn down (the thread is exiting) or cannot be created.
pub(crate) fn current_hub() -> &'static Hub {
    let p = CURRENT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: a non-null CURRENT points at this thread's live hub, which is freed only by the
        // teardown guard after every frame that could hold this reference has unwound
        // (invariant 7).
        return unsafe { &*p };
    }
    if TORN_DOWN.with(Cell::get) {
        panic!(
            "greenhub: this thread's hub has already been torn down (the thread is exiting); \
             greenlets cannot be spawned, joined or waited for any more"
        );
    }
    match Hub::install(&Config::default()) {
        Ok(h) => h,
        Err(e) => panic!("greenhub: cannot create this thread's hub: {e}"),
    }
}

/// This thread's hub if it exists and is not torn down; never creates one. For destructors (a
/// socket dropped during thread exit must not resurrect or touch a dead hub).
pub(crate) fn existing_hub() -> Option<&'static Hub> {
    let p = CURRENT.with(Cell::get);
    // SAFETY: as in `current_hub`: a non-null CURRENT points at this thread's live hub.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The main greenlet's task: a core and nothing to run.
struct MainTask {
    core: Core,
}

impl Task for MainTask {
    fn core(&self) -> &Core {
        &self.core
    }
    fn run(&self) {
        unreachable!("greenhub: the main greenlet is never started by the hub")
    }
    fn discard(&self) {}
}

impl Hub {
    fn install(config: &Config) -> io::Result<&'static Hub> {
        if TEARDOWN.try_with(|_| ()).is_err() {
            return Err(io::Error::other(
                "the thread is exiting: a hub created now could never be torn down",
            ));
        }
        let shared = Stack::new(config.stack_size)?;
        let hub_stack = Stack::new(config.hub_stack_size)?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER_TOKEN)?);
        let remote_pending = Arc::new(AtomicBool::new(false));
        // SAFETY: the hub stack is fresh, so its top FRAME_BYTES are unused (invariant 8); its top
        // is page aligned.
        let hub_sp = unsafe { arch::init_frame(hub_stack.top(), hub_entry, 0) };
        let main: Rc<dyn Task> = Rc::new(MainTask {
            core: Core::new(Kind::Main, None),
        });
        let mut hub = Box::new(Hub {
            overflow: crate::overflow::Registration::none(),
            shared,
            _hub_stack: hub_stack,
            hub_sp: Cell::new(hub_sp),
            current: Cell::new(main.core()),
            running: Cell::new(Some(main.clone())),
            main,
            occupant: Cell::new(None),
            occupant_core: Cell::new(ptr::null()),
            ready: RefCell::new(VecDeque::new()),
            budget: Cell::new(0),
            requeue: Cell::new(false),
            callbacks: RefCell::new(VecDeque::new()),
            live: RefCell::new(Slab::new()),
            timers: RefCell::new(Timers::new()),
            poll: RefCell::new(poll),
            events: RefCell::new(mio::Events::with_capacity(1024)),
            remote: crate::handoff::HubRemote::new(waker, remote_pending.clone()),
            remote_pending,
            beacon: std::cell::OnceCell::new(),
            remote_sources: Cell::new(0),
            io: RefCell::new(Slab::new()),
            io_waiters: Cell::new(0),
            counters: Counters::default(),
            tearing_down: Cell::new(false),
        });
        // `current` lives in the box, so its address is stable from here on.
        hub.overflow = crate::overflow::register(&hub.shared, &hub._hub_stack, &hub.current);
        let p: *const Hub = Box::into_raw(hub);
        CURRENT.with(|c| c.set(p));
        // SAFETY: just leaked from a Box; freed only by TeardownGuard (invariant 7).
        Ok(unsafe { &*p })
    }

    /// A clone of the running greenlet's task.
    fn running_task(&self) -> Rc<dyn Task> {
        let t = self
            .running
            .take()
            .expect("greenhub: no greenlet is running");
        let c = t.clone();
        self.running.set(Some(t));
        c
    }

    /// The running greenlet's core.
    ///
    /// # Panics
    /// Inside the hub context (a callback, or a destructor the hub runs), where blocking or
    /// switching would deadlock the loop; `doing` says what was attempted.
    pub(crate) fn current_core(&self, doing: &str) -> &Core {
        let p = self.current.get();
        if p.is_null() {
            panic!(
                "greenhub: cannot {doing} inside the hub (a hub callback or a destructor the hub runs); \
                 blocking or switching there would stop the loop that wakes everyone"
            );
        }
        // SAFETY: non-null `current` points at the core of the task owned by `running`, which stays
        // owned there while that greenlet runs (invariant 9).
        unsafe { &*p }
    }

    /// monkey: a greenlet (the main one or a worker) is running, not the hub context.
    #[cfg(feature = "monkey")]
    #[inline]
    pub(crate) fn in_greenlet(&self) -> bool {
        !self.current.get().is_null()
    }

    /// A waiter for the running greenlet's next (or current) park.
    pub(crate) fn current_waiter(&self) -> Waiter {
        let task = self.running_task();
        let gen = task.core().gen.get();
        Waiter { task, gen }
    }

    /// Switches from the running greenlet to the hub context; returns when the hub resumes it.
    fn switch_to_hub(&self, core: &Core) {
        #[cfg(debug_assertions)]
        if core.kind == Kind::Worker {
            let sp = arch::approximate_sp();
            debug_assert!(
                self.shared.contains(sp),
                "greenhub: {} is running off the shared stack ({sp:#x})",
                core.describe()
            );
        }
        add(&self.counters.switches, 1);
        // SAFETY: `core.sp` is a heap cell that outlives the switch back (the core is owned by
        // `live` or is main's); `hub_sp` was stored by the hub context's own last switch or made by
        // init_frame, and the hub stack is never copied or shared, so its bytes are in place
        // (invariants 1, 8, 9); nothing unwinds across it (invariant 3).
        unsafe { arch::switch(core.sp.as_ptr(), self.hub_sp.get(), 0) };
    }

    /// Suspends the running greenlet until a waiter for this park, `deadline`, or a kill wakes it.
    ///
    /// Before parking, the caller puts `current_waiter()` wherever the event will come from.
    /// Returns why it woke. A kill unwinds from here (the payload is private) unless the greenlet is
    /// already unwinding, in which case `Wake::Killed` is returned and the caller gives up waiting.
    /// Inside a timeout scope the park also ends at the scope's deadline, returning
    /// `Wake::ScopeExpired` (see `crate::timeout`).
    ///
    /// # Panics
    /// Inside the hub, or in the main greenlet when nothing can ever wake it.
    pub(crate) fn park(&self, on: WaitOn, deadline: Option<Instant>) -> Wake {
        let core = self.current_core("block");
        if core.kill.get() {
            return deliver_kill(core);
        }
        // Only what is live across the switch stays in this frame: a parked greenlet's memory is
        // mostly its stack slice, so the setup and the aftermath live in out-of-line helpers whose
        // frames are gone while we are parked.
        let armed = self.arm_park(core, on, deadline);
        self.switch_to_hub(core);
        self.end_park(core, on, armed)
    }

    /// Starts a park: the timer for the nearest of `deadline` and the enclosing timeout scopes'
    /// deadlines, and the state change.
    #[inline(never)]
    fn arm_park(&self, core: &Core, on: WaitOn, deadline: Option<Instant>) -> Armed {
        let gen = core.gen.get();
        // Timeout scopes: the earliest enclosing scope deadline bounds this park too. `by_scope`
        // remembers that it, not the caller's own deadline, is the one the timer carries (ties go
        // to the caller's own deadline).
        let nearest_scope = core.scopes.borrow().iter().map(|s| s.deadline).min();
        let (deadline, by_scope) = match (deadline, nearest_scope) {
            (Some(own), Some(scope)) if scope < own => (Some(scope), true),
            (None, Some(scope)) => (Some(scope), true),
            (own, _) => (own, false),
        };
        let timer = deadline.map(|d| {
            let task = self.running_task();
            self.timers.borrow_mut().insert(d, Waiter { task, gen })
        });
        core.state.set(State::Parked);
        core.waiting_on.set(on);
        core.wake.set(Wake::Woken);
        Armed {
            timer,
            deadline: if by_scope { deadline } else { None },
        }
    }

    /// Ends a park: cancels its timer and turns the wake reason into the caller's answer.
    #[inline(never)]
    fn end_park(&self, core: &Core, on: WaitOn, armed: Armed) -> Wake {
        core.gen.set(core.gen.get().wrapping_add(1));
        core.waiting_on.set(WaitOn::Nothing);
        if let Some(key) = armed.timer {
            self.timers.borrow_mut().cancel(key);
        }
        match core.wake.get() {
            Wake::Deadlock => deadlock_panic(core, on),
            _ if core.kill.get() => deliver_kill(core),
            Wake::TimedOut if armed.deadline.is_some() => {
                // The scope deadline fired: record which scope(s) it was, so each can tell whether
                // the expiry was its own.
                for s in core.scopes.borrow_mut().iter_mut() {
                    if Some(s.deadline) == armed.deadline {
                        s.fired = true;
                    }
                }
                Wake::ScopeExpired
            }
            w => w,
        }
    }

    /// Puts the running greenlet at the back of the ready queue and lets the others run.
    pub(crate) fn yield_now(&self) {
        let core = self.current_core("yield");
        if core.kill.get() {
            deliver_kill(core);
            return;
        }
        // The fast path. The hub is in the middle of an iteration with `budget` resumes left; with
        // nothing else ready and no callback queued, it would pop this very greenlet next and
        // resume it, copying nothing. So skip both switches and charge the resume to the budget:
        // I/O and timers still get their turn after BUDGET resumes, exactly as on the slow path.
        let budget = self.budget.get();
        if budget > 0 && self.ready.borrow().is_empty() && self.callbacks.borrow().is_empty() {
            self.budget.set(budget - 1);
            return;
        }
        core.state.set(State::Ready);
        self.requeue.set(true);
        self.switch_to_hub(core);
        if core.kill.get() {
            deliver_kill(core);
        }
    }

    /// Wakes `w`'s greenlet if it is still in the park `w` was made for; returns whether it did.
    pub(crate) fn wake(&self, w: &Waiter, why: Wake) -> bool {
        if !w.is_pending() {
            return false;
        }
        let core = w.core();
        core.state.set(State::Ready);
        core.wake.set(why);
        self.ready.borrow_mut().push_back(w.task.clone());
        true
    }

    /// Registers a freshly built worker: ready now, or parked until `start`.
    pub(crate) fn schedule_new(&self, task: Rc<dyn Task>, start: Option<Instant>) {
        let core = task.core();
        core.live_key
            .set(self.live.borrow_mut().insert(task.clone()));
        add(&self.counters.spawned, 1);
        match start {
            None => {
                core.state.set(State::Ready);
                self.ready.borrow_mut().push_back(task);
            }
            Some(at) => {
                core.state.set(State::Parked);
                core.waiting_on.set(WaitOn::Start);
                let gen = core.gen.get();
                self.timers.borrow_mut().insert(at, Waiter { task, gen });
            }
        }
    }

    /// Asks a greenlet to die. See `Greenlet::kill` for the semantics.
    pub(crate) fn request_kill(&self, task: &Rc<dyn Task>) {
        let core = task.core();
        if core.kind == Kind::Main {
            return;
        }
        match core.state.get() {
            State::Finished => {}
            _ if !core.started.get() => {
                core.kill.set(true);
                core.state.set(State::Finished);
                // The closure's destructors run here, on the caller's stack.
                task.discard();
                self.retire(task);
            }
            State::Running => {
                core.kill.set(true);
                deliver_kill(core);
            }
            _ if cfg!(panic = "abort") => {
                tracing::warn!(
                    greenlet.id = core.id,
                    "greenhub: {} cannot be unwound under panic=abort; its stack is abandoned and the \
                     destructors on it will not run",
                    core.describe()
                );
                core.kill.set(true);
                core.state.set(State::Finished);
                self.retire(task);
            }
            State::Ready => core.kill.set(true),
            State::Parked => {
                core.kill.set(true);
                let w = Waiter {
                    task: task.clone(),
                    gen: core.gen.get(),
                };
                self.wake(&w, Wake::Killed);
            }
        }
    }

    /// Forgets a finished worker: frees its slice, removes it from `live`, wakes its joiners.
    fn retire(&self, task: &Rc<dyn Task>) {
        let core = task.core();
        if ptr::eq(self.occupant_core.get(), core) {
            // Its bytes on the shared stack are dead; nothing needs saving.
            self.occupant_core.set(ptr::null());
            drop(self.occupant.take());
        }
        core.slice.borrow_mut().release();
        let removed = self.live.borrow_mut().try_remove(core.live_key.get());
        debug_assert!(
            removed.is_some(),
            "greenhub: {} retired twice",
            core.describe()
        );
        add(&self.counters.finished, 1);
        let (first, more) = core.take_joiners();
        for w in first.iter().chain(more.iter()) {
            self.wake(w, Wake::Woken);
        }
        drop(removed);
    }

    /// Makes `task` (a worker) the occupant of the shared stack, evicting and restoring slices as
    /// needed. Runs on the hub's stack.
    #[inline]
    fn make_occupant(&self, task: &Rc<dyn Task>, core: &Core) {
        if ptr::eq(self.occupant_core.get(), core) {
            return; // the lazy path: its bytes are still in place
        }
        self.evict_and_enter(task, core);
    }

    /// The slow path of `make_occupant`: copy the occupant out and `task` in.
    #[inline(never)]
    fn evict_and_enter(&self, task: &Rc<dyn Task>, core: &Core) {
        let top = self.shared.top();
        if let Some(old) = self.occupant.take() {
            let oc = old.core();
            debug_assert!(
                oc.state.get() != State::Finished,
                "a finished greenlet still occupies the stack"
            );
            debug_assert!(self.shared.contains(oc.sp.get() as usize));
            // SAFETY: `old` is suspended (only the hub context runs), its live slice is [sp, top) on
            // the shared stack, and we run on the hub's stack (invariants 1 and 8).
            let n = unsafe { oc.slice.borrow_mut().save(oc.sp.get(), top) };
            add(&self.counters.slice_saves, 1);
            add(&self.counters.slice_sizes[size_bucket(n)], 1);
            add(&self.counters.bytes_copied, n as u64);
        }
        if core.started.get() {
            debug_assert!(self.shared.contains(core.sp.get() as usize));
            // SAFETY: the slice was saved from [sp, top) of this same shared stack; the previous
            // occupant's bytes were just saved (or it finished), so nothing uses those addresses;
            // we run on the hub's stack (invariants 1 and 8).
            let n = unsafe { core.slice.borrow().restore(core.sp.get()) };
            add(&self.counters.slice_restores, 1);
            add(&self.counters.bytes_copied, n as u64);
        } else {
            // SAFETY: the shared stack's top is page aligned and nothing occupies it now (invariant 8).
            core.sp
                .set(unsafe { arch::init_frame(top, worker_entry, 0) });
            core.started.set(true);
        }
        self.occupant.set(Some(task.clone()));
        self.occupant_core.set(core);
    }

    /// Runs `task` until it switches back to the hub. Hub context only.
    #[inline]
    fn resume(&self, task: Rc<dyn Task>, core: *const Core) {
        // SAFETY: `core` is `task.core()`; `task` keeps it alive until it is moved into `running`,
        // which keeps it alive until we take it back out below (invariant 9).
        let c = unsafe { &*core };
        if c.kind == Kind::Worker {
            self.make_occupant(&task, c);
        }
        c.state.set(State::Running);
        let sp = c.sp.get();
        // monitor: publish who holds the hub (a few relaxed stores; only when monitored).
        if let Some(b) = self.beacon.get() {
            b.entering(c);
        }
        self.running.set(Some(task));
        self.current.set(core);
        add(&self.counters.switches, 1);
        // SAFETY: `sp` was stored by this greenlet's last switch or made by init_frame, and its
        // bytes are in place (main's own stack, or make_occupant just restored the worker); the
        // hub's saved sp goes to a cell of the hub, which outlives the switch back. The hub's frame
        // holds no owned values across this switch (`task` is in `running`), so abandoning the hub
        // context at teardown leaks nothing (invariants 1, 3, 7, 8).
        unsafe { arch::switch(self.hub_sp.as_ptr(), sp, 0) };
        self.entered_hub();
    }

    /// Bookkeeping at every arrival in the hub context: nobody runs now; retire the greenlet that
    /// switched here if it finished.
    #[inline]
    fn entered_hub(&self) {
        if let Some(b) = self.beacon.get() {
            b.left(); // monitor: the loop holds the hub again
        }
        let core = self.current.replace(ptr::null());
        let Some(task) = self.running.take() else {
            return;
        };
        if self.requeue.replace(false) {
            // It yielded: move it to the back of the queue (no refcount traffic).
            self.ready.borrow_mut().push_back(task);
            return;
        }
        // SAFETY: `current` named the core of the task just taken from `running` (invariant 9).
        if !core.is_null() && unsafe { &*core }.state.get() == State::Finished {
            self.retire(&task);
        }
    }

    /// The loop. Never returns; the hub context is abandoned at teardown.
    fn run_loop(&self) -> ! {
        loop {
            add(&self.counters.ticks, 1);
            self.run_callbacks();
            self.budget.set(BUDGET);
            while self.budget.get() > 0 {
                let Some(task) = self.ready.borrow_mut().pop_front() else {
                    break;
                };
                self.budget.set(self.budget.get() - 1);
                let core: *const Core = task.core();
                // SAFETY: `task` owns the core (invariant 9).
                if unsafe { &*core }.state.get() == State::Ready {
                    self.resume(task, core);
                }
            }
            self.budget.set(0);
            let busy = !self.ready.borrow().is_empty() || !self.callbacks.borrow().is_empty();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else if let Some(at) = self.timers.borrow_mut().next_deadline() {
                Some(at.saturating_duration_since(Instant::now()))
            } else if self.io_waiters.get() > 0
                || self.remote_sources.get() > 0
                // handoff: a message pushed by another thread is on its way
                || self.remote.has_pending()
            {
                None
            } else {
                self.report_deadlock();
                continue;
            };
            self.poll_io(timeout);
            // handoff: run what other threads sent (spawns, wake-ups); one atomic load if nothing.
            self.remote.drain(self);
            self.fire_timers();
        }
    }

    /// Nothing can ever wake anybody: the main greenlet must be waiting; wake it with the news.
    fn report_deadlock(&self) {
        let main = self.main.core();
        let w = Waiter {
            task: self.main.clone(),
            gen: main.gen.get(),
        };
        if !self.wake(&w, Wake::Deadlock) {
            // Unreachable by construction: the hub runs only when main is parked or ready.
            eprintln!("greenhub: the hub has nothing to run and the main greenlet is not waiting; aborting");
            std::process::abort();
        }
    }

    fn poll_io(&self, timeout: Option<Duration>) {
        let remote = self.remote_pending.swap(false, Ordering::Acquire);
        if timeout == Some(Duration::ZERO) && !remote && self.io.borrow().is_empty() {
            return; // nothing could be reported: spare the syscall
        }
        add(&self.counters.polls, 1);
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("greenhub: polling for I/O failed: {e}"),
        }
        let io = self.io.borrow();
        for ev in events.iter() {
            if ev.token() == WAKER_TOKEN {
                continue; // the loop drains the remote queue right after this poll (handoff)
            }
            let Some(slot) = io.get(ev.token().0) else {
                continue;
            };
            if ev.is_read_closed() || ev.is_error() {
                slot.read_closed.set(true);
            }
            if ev.is_write_closed() || ev.is_error() {
                slot.write_closed.set(true);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                slot.readable.set(true);
                for w in slot.readers.borrow_mut().drain(..) {
                    self.wake(&w, Wake::Woken);
                }
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                slot.writable.set(true);
                for w in slot.writers.borrow_mut().drain(..) {
                    self.wake(&w, Wake::Woken);
                }
            }
        }
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let Some(w) = self.timers.borrow_mut().pop_expired(now) else {
                break;
            };
            self.wake(&w, Wake::TimedOut);
        }
    }

    fn run_callbacks(&self) {
        let n = self.callbacks.borrow().len();
        for _ in 0..n {
            let Some(f) = self.callbacks.borrow_mut().pop_front() else {
                break;
            };
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(f)) {
                tracing::error!(
                    "greenhub: a hub callback panicked: {}",
                    crate::greenlet::panic_message(&*p)
                );
            }
        }
    }

    /// Kills every live worker and runs them until they have unwound. Main greenlet only.
    fn kill_all(&self) {
        let main = self.current_core("kill every greenlet");
        assert!(
            main.kind == Kind::Main,
            "greenhub: only the thread's main greenlet can tear the hub down, not {}",
            main.describe()
        );
        if self.tearing_down.replace(true) {
            return;
        }
        for _ in 0..KILL_ROUNDS {
            let victims: Vec<Rc<dyn Task>> =
                self.live.borrow().iter().map(|(_, t)| t.clone()).collect();
            if victims.is_empty() {
                break;
            }
            for v in &victims {
                self.request_kill(v);
            }
            drop(victims);
            // Let the killed run and unwind; they are all ready now, ahead of us.
            let mut spins = 0;
            while !self.ready.borrow().is_empty() && spins < 1_000_000 {
                self.yield_now();
                spins += 1;
            }
        }
        let survivors: Vec<String> = self
            .live
            .borrow()
            .iter()
            .map(|(_, t)| t.core().describe())
            .collect();
        if !survivors.is_empty() {
            tracing::error!(
                "greenhub: {} greenlet(s) would not die after {KILL_ROUNDS} kills and are abandoned \
                 without running their destructors: {}",
                survivors.len(),
                survivors.join(", ")
            );
            let abandoned: Vec<Rc<dyn Task>> = self.live.borrow_mut().drain().collect();
            for t in &abandoned {
                t.core().state.set(State::Finished);
            }
        }
        self.tearing_down.set(false);
    }

    /// The main greenlet and every spawned, unfinished worker (for `monitor::run_info`).
    pub(crate) fn all_tasks(&self) -> Vec<Rc<dyn Task>> {
        let mut v = vec![self.main.clone()];
        v.extend(self.live.borrow().iter().map(|(_, t)| t.clone()));
        v
    }

    /// The mio registry, for registering I/O sources with this hub.
    pub(crate) fn with_registry<R>(&self, f: impl FnOnce(&mio::Registry) -> R) -> R {
        f(self.poll.borrow().registry())
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let mut s = Stats {
            switches: c.switches.get(),
            slice_saves: c.slice_saves.get(),
            slice_restores: c.slice_restores.get(),
            bytes_copied: c.bytes_copied.get(),
            spawned: c.spawned.get(),
            finished: c.finished.get(),
            live: c.spawned.get() - c.finished.get(),
            slice_bytes_reserved: 0,
            ticks: c.ticks.get(),
            polls: c.polls.get(),
            slice_size_histogram: std::array::from_fn(|k| c.slice_sizes[k].get()),
        };
        s.slice_bytes_reserved = self
            .live
            .borrow()
            .iter()
            .map(|(_, t)| t.core().slice.borrow().capacity() as u64)
            .sum();
        s
    }
}

/// What `arm_park` hands to `end_park` across the switch.
struct Armed {
    timer: Option<crate::timer::TimerKey>,
    /// The scope deadline the timer carries, when a scope's (not the caller's own) deadline won.
    deadline: Option<Instant>,
}

#[cold]
#[inline(never)]
fn deadlock_panic(core: &Core, on: WaitOn) -> ! {
    panic!(
        "greenhub: {} would block forever waiting for {on}: no greenlet is ready, no timer is \
         pending, no greenlet waits for I/O and nothing can arrive from another thread",
        core.describe()
    )
}

/// Unwinds the running greenlet with the kill payload, or — if it is already unwinding (a destructor
/// blocking during the kill) — returns `Wake::Killed` so the blocking call gives up instead.
fn deliver_kill(core: &Core) -> Wake {
    if std::thread::panicking() || core.kind == Kind::Main {
        return Wake::Killed;
    }
    panic::resume_unwind(Box::new(KillSignal))
}

/// The hub's counters: separate cells so a bump is one add, not a copy of `Stats`.
#[derive(Default)]
struct Counters {
    switches: Cell<u64>,
    slice_saves: Cell<u64>,
    slice_restores: Cell<u64>,
    bytes_copied: Cell<u64>,
    spawned: Cell<u64>,
    finished: Cell<u64>,
    ticks: Cell<u64>,
    polls: Cell<u64>,
    slice_sizes: [Cell<u64>; 16],
}

/// The `slice_size_histogram` entry for a save of `n` bytes: floor(log2 n), capped at 15.
#[inline(always)]
fn size_bucket(n: usize) -> usize {
    (usize::BITS - 1).saturating_sub(n.leading_zeros()).min(15) as usize
}

#[inline(always)]
fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Where every worker starts, on the shared stack, called by the trampoline.
extern "C" fn worker_entry(_value: usize, _arg: usize) -> ! {
    let hub = current_hub();
    {
        let task = hub.running_task();
        // Panics are caught inside `run` (invariant 3), so nothing unwinds into the trampoline.
        task.run();
    }
    let core = hub.current_core("finish");
    core.state.set(State::Finished);
    hub.switch_to_hub(core);
    unreachable!("greenhub: a finished greenlet was resumed");
}

/// Where the hub context starts, on the hub's stack, called by the trampoline.
extern "C" fn hub_entry(_value: usize, _arg: usize) -> ! {
    let hub = current_hub();
    // The first arrival (from whichever greenlet blocked first) did not come through `resume`.
    hub.entered_hub();
    let _ = panic::catch_unwind(AssertUnwindSafe(|| hub.run_loop()));
    // Only a panic gets here: a bug in greenhub, or a tracing subscriber that panicked in the hub.
    eprintln!(
        "greenhub: the hub's loop panicked; no greenlet of this thread can run any more: aborting"
    );
    std::process::abort();
}

/// Spawns a greenlet running `f` on this thread's hub. It starts when the caller next blocks or
/// yields; the returned handle joins or kills it (dropping it detaches the greenlet).
///
/// # Panics
/// After this thread's hub was torn down (in a thread-local destructor at thread exit).
pub fn spawn<F, T>(f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn(f)
}

/// Spawns a greenlet that starts after `delay` (gevent's `spawn_later`).
pub fn spawn_later<F, T>(delay: Duration, f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn_later(delay, f)
}

/// Parks the calling greenlet for `dur` (other greenlets run meanwhile). A zero duration yields,
/// like gevent's `sleep(0)`. It returns early when an enclosing timeout scope
/// ([`crate::timeout()`]) expires, and in a greenlet whose kill is unwinding.
///
/// # Panics
/// Inside the hub.
pub fn sleep(dur: Duration) {
    if dur.is_zero() {
        return yield_now();
    }
    match Instant::now().checked_add(dur) {
        Some(at) => sleep_until(at),
        None => {
            // "Forever": park with no deadline; only a kill (or a deadlock report) ends it.
            current_hub().park(WaitOn::Sleep, None);
        }
    }
}

/// Parks the calling greenlet until `deadline`.
pub fn sleep_until(deadline: Instant) {
    let hub = current_hub();
    loop {
        if Instant::now() >= deadline {
            return hub.yield_now();
        }
        match hub.park(WaitOn::Sleep, Some(deadline)) {
            Wake::TimedOut | Wake::Killed | Wake::Deadlock | Wake::ScopeExpired => return,
            Wake::Woken => {}
        }
    }
}

/// Lets every other ready greenlet run, then resumes the caller (gevent's `sleep(0)`).
///
/// With nobody else ready and no hub callback queued, it returns at once without switching: the
/// hub would have resumed the caller next anyway. Such yields still count against the hub's
/// per-iteration budget, so a greenlet spinning on `yield_now` lets I/O and timers run every 61
/// yields, as it would through the hub.
///
/// # Panics
/// Inside the hub.
pub fn yield_now() {
    current_hub().yield_now();
}

/// Runs `f` as a greenlet until it returns, then kills every greenlet still alive on this hub and
/// waits for them to unwind; returns `f`'s value. A panic in `f` is resumed in the caller.
///
/// # Panics
/// If called from a worker greenlet (only the thread's main greenlet may tear the hub's greenlets
/// down), if `f` panics or is killed, or if `f` waits for something that can never happen.
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let hub = current_hub();
    let me = hub.current_core("run a greenlet to completion");
    assert!(
        me.kind == Kind::Main,
        "greenhub: hub::run must be called from the thread's main greenlet, not {}",
        me.describe()
    );
    struct KillRest(&'static Hub);
    impl Drop for KillRest {
        fn drop(&mut self) {
            self.0.kill_all();
        }
    }
    let guard = KillRest(hub);
    let result = spawn(f).join();
    drop(guard);
    match result {
        Ok(v) => v,
        Err(GreenletError::Panicked(p)) => panic::resume_unwind(p),
        Err(e) => panic!("greenhub: hub::run: {e}"),
    }
}

/// Schedules `f` to run on the hub's own stack at the next loop iteration (gevent's
/// `loop.run_callback`). `f` must not block: blocking there panics (and the panic is reported
/// through `tracing`, not propagated).
pub fn run_callback(f: impl FnOnce() + 'static) {
    current_hub().callbacks.borrow_mut().push_back(Box::new(f));
}

/// This thread's hub counters.
pub fn stats() -> Stats {
    current_hub().stats()
}
