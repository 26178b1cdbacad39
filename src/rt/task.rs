//! The greenlet control block ([`Core`]), its states and their named transitions, and the
//! [`Waiter`] token every wait list holds.
//!
//! # States
//!
//! ```text
//!                 schedule_new                run                       park
//!   New ────────────────────────► Ready ─────────────► Running ─────────────────────► Parked
//!    │                              ▲  ▲                 │  │  yield_now                 │
//!    │ schedule_new (spawn_later)   │  └─────────────────┘  │ (make_ready)               │
//!    └──────────────► Parked        │        make_ready     │                            │
//!                                   └──── make_ready ───────┼──── wake / timer / kill ───┘
//!                                                           │ finish (closure returned,
//!                                                           ▼ panicked or unwound a kill)
//!   New / Ready / Parked, not started ─── finish ──────► Finished
//!   Ready / Parked, started ─────────── abandon ───────► Finished   (teardown survivors, or a
//!                                                                     kill under panic=abort)
//! ```
//!
//! Every transition is a method of [`Core`] that debug-asserts the state it leaves; nothing else
//! writes `state`. The main greenlet is created `Running` (it is the thread that runs) and never
//! finishes.
//!
//! - `started` says whether the closure has been entered. A greenlet killed before it started never
//!   runs: its closure is dropped where `kill` was called.
//! - `gen` counts parks. A `Waiter` remembers the `gen` of the park it may end; waking with a stale
//!   `gen` (the greenlet has moved on) does nothing, so wait lists, timers and I/O registrations may
//!   hold stale waiters safely and never wake a greenlet for somebody else's reason.
//! - `kill` is set once and never cleared: a greenlet that swallows the kill payload with
//!   `catch_unwind` is killed again at its next blocking point.
//!
//! Every unfinished worker is owned by the hub's `live` table, so a parked greenlet's `Core` stays
//! alive while wait lists, timers and handles refer to it ([invariant 9](super#invariants)).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::timer::TimerKey;
use crate::stack::Slice;

/// [`Core::region`] of a greenlet not bound to a stack region (not started, or the main greenlet).
pub(crate) const NO_REGION: u32 = u32::MAX;

/// Where a greenlet is in its life. See the module docs for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Built, not yet handed to the hub.
    New,
    /// In the hub's ready queue.
    Ready,
    /// Executing; exactly one greenlet per hub at a time.
    Running,
    /// Suspended until a [`Waiter`] for its current `gen` wakes it (or a timer, or a kill).
    Parked,
    /// The closure returned, panicked or was killed, or the greenlet was abandoned; the stack
    /// slice is gone.
    Finished,
}

/// Whether a core belongs to a worker (runs on a hub stack) or to the thread's main greenlet
/// (runs on the thread's own stack and is never copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Worker,
}

/// The control block of a greenlet: everything the hub needs, on the heap
/// ([invariant 1](super#invariants)).
///
/// Every field is a `Cell`/`RefCell` touched only on the hub's thread
/// ([invariant 5](super#invariants)); the notes say *who* writes each one and *when*. "The hub"
/// means code in `rt/` running in either the hub context or the greenlet that calls into it.
pub(crate) struct Core {
    /// Process-unique; fixed at creation. Read by anyone (diagnostics, the overflow handler).
    pub(crate) id: u64,
    /// Fixed at creation. Read by anyone (diagnostics, the overflow handler, the monitor).
    pub(crate) name: Option<Box<str>>,
    /// Fixed at creation.
    pub(crate) kind: Kind,
    /// Written only by the transition methods below.
    state: Cell<State>,
    /// Set once by the slicing code when it writes the worker's first frame (main: always true).
    pub(crate) started: Cell<bool>,
    /// Asked for a stack region of its own (`Builder::exclusive_stack`). Set by the builder
    /// before the greenlet is scheduled; read when it first runs.
    pub(crate) exclusive: Cell<bool>,
    /// Index of the stack region it is bound to (`stacks.rs`), [`NO_REGION`] until it first runs.
    /// Set once by the slicing code; never changes after (its slice holds absolute addresses).
    pub(crate) region: Cell<u32>,
    /// Start of that region's guard page (0 until bound), for the overflow handler, which reads
    /// it on this thread without touching the hub's tables. Set with `region`.
    pub(crate) stack_guard: Cell<usize>,
    /// Saved stack pointer while not running. Written only by the switch (and the fresh frame the
    /// slicing code makes); read by the hub before resuming.
    pub(crate) sp: Cell<*mut u8>,
    /// The heap copy of `[sp, top)` while another worker occupies the shared stack. Only the
    /// slicing code on the hub's stack touches it ([invariant 8](super#invariants)); released by
    /// `retire`.
    pub(crate) slice: RefCell<Slice>,
    /// Number of the current (or next) park; see [`Waiter`]. Bumped by `end_park` only.
    pub(crate) gen: Cell<u32>,
    /// Why the last park ended. Written by `Hub::wake` (with the `Ready` transition) and reset
    /// by `arm_park`; read by `end_park`.
    pub(crate) wake: Cell<Wake>,
    /// What the greenlet is parked on, for diagnostics. Set by `arm_park`, cleared by `end_park`.
    pub(crate) waiting_on: Cell<WaitOn>,
    /// A kill was requested. Set by `Hub::request_kill`; never cleared.
    pub(crate) kill: Cell<bool>,
    /// The kill payload was thrown at least once (so a blocking point reached again caught it:
    /// it yields before throwing again). Set by `Hub::interrupt`; never cleared.
    pub(crate) kill_delivered: Cell<bool>,
    /// The timer that starts a `spawn_later` greenlet, so a kill before the start cancels it.
    /// Set by `schedule_new`, taken by `request_kill`.
    pub(crate) start_timer: Cell<Option<TimerKey>>,
    /// Key in the hub's `live` table. Set once by `schedule_new`.
    pub(crate) live_key: Cell<usize>,
    /// The first greenlet waiting for this one to finish (nearly always the only one: kept inline
    /// so a join allocates nothing). Added to by joiners, drained by `retire`.
    joiner: Cell<Option<Waiter>>,
    /// Any further joiners.
    more_joiners: RefCell<Vec<Waiter>>,
    /// The `Greenlet` handle was dropped: nobody will take the result. Set by the handle's drop.
    pub(crate) detached: Cell<bool>,
    /// Greenlet-local values and the saved tracing span stack, allocated on first use
    /// (`context.rs`); `None` for a greenlet that uses neither. Touched by the greenlet itself
    /// (locals), the switch hooks in `sched.rs` (spans) and the drop hooks.
    pub(crate) context: super::context::Slot,
    /// Active timeout scopes (`timeout`, `Timeout`), innermost last. Pushed and removed (by id: a
    /// `Timeout` guard may be dropped out of order) by the running greenlet itself; `arm_park`
    /// bounds every park by the earliest deadline here and `end_park` marks the scope whose
    /// deadline ended it. Never borrowed across a park.
    pub(crate) scopes: RefCell<Vec<Scope>>,
}

/// One active timeout scope of a greenlet; see [`Core::scopes`].
pub(crate) struct Scope {
    pub(crate) id: u64,
    pub(crate) deadline: Instant,
    /// A park ended because this scope's deadline passed.
    pub(crate) fired: bool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Core {
    pub(crate) fn new(kind: Kind, name: Option<Box<str>>) -> Core {
        Core {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            kind,
            state: Cell::new(if kind == Kind::Main {
                State::Running
            } else {
                State::New
            }),
            started: Cell::new(kind == Kind::Main),
            exclusive: Cell::new(false),
            region: Cell::new(NO_REGION),
            stack_guard: Cell::new(0),
            sp: Cell::new(std::ptr::null_mut()),
            slice: RefCell::new(Slice::default()),
            gen: Cell::new(0),
            wake: Cell::new(Wake::Woken),
            waiting_on: Cell::new(WaitOn::Nothing),
            kill: Cell::new(false),
            kill_delivered: Cell::new(false),
            start_timer: Cell::new(None),
            live_key: Cell::new(usize::MAX),
            joiner: Cell::new(None),
            more_joiners: RefCell::new(Vec::new()),
            detached: Cell::new(false),
            context: super::context::Slot::default(),
            scopes: RefCell::new(Vec::new()),
        }
    }

    /// Adds a waiter to wake when this greenlet finishes.
    pub(crate) fn add_joiner(&self, w: Waiter) {
        match self.joiner.take() {
            None => self.joiner.set(Some(w)),
            Some(first) => {
                self.joiner.set(Some(first));
                self.more_joiners.borrow_mut().push(w);
            }
        }
    }

    /// Removes the joiner entries for which `stale` is true (their wait timed out or was
    /// interrupted).
    pub(crate) fn remove_joiners(&self, stale: impl Fn(&Waiter) -> bool) {
        if let Some(first) = self.joiner.take() {
            if !stale(&first) {
                self.joiner.set(Some(first));
            }
        }
        self.more_joiners.borrow_mut().retain(|w| !stale(w));
    }

    /// Takes every joiner, to wake them.
    pub(crate) fn take_joiners(&self) -> (Option<Waiter>, Vec<Waiter>) {
        (
            self.joiner.take(),
            std::mem::take(&mut *self.more_joiners.borrow_mut()),
        )
    }

    /// "greenlet 7 (name)" or "greenlet 7", for messages.
    pub(crate) fn describe(&self) -> String {
        match (&self.name, self.kind) {
            (_, Kind::Main) => format!("the main greenlet (id {})", self.id),
            (Some(n), _) => format!("greenlet {} ({})", self.id, n),
            (None, _) => format!("greenlet {}", self.id),
        }
    }
}

/// The named state transitions. Each debug-asserts the state it leaves, so a transition the
/// diagram in the module docs does not have is caught in tests.
impl Core {
    /// The current state.
    #[inline(always)]
    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// Whether the greenlet is finished (returned, panicked, killed or abandoned).
    #[inline(always)]
    pub(crate) fn is_finished(&self) -> bool {
        self.state.get() == State::Finished
    }

    #[inline(always)]
    fn leave(&self, ok: bool, to: State) {
        debug_assert!(
            ok,
            "greenhub: {} cannot go from {:?} to {:?}",
            self.describe(),
            self.state.get(),
            to
        );
        self.state.set(to);
    }

    /// New (spawned), Parked (woken) or Running (yielding) → Ready.
    #[inline(always)]
    pub(crate) fn make_ready(&self) {
        let s = self.state.get();
        self.leave(
            matches!(s, State::New | State::Parked | State::Running),
            State::Ready,
        );
    }

    /// Ready → Running: the hub is about to switch to it.
    #[inline(always)]
    pub(crate) fn run(&self) {
        self.leave(self.state.get() == State::Ready, State::Running);
    }

    /// Running → Parked (a blocking call), or New → Parked (`spawn_later`: waiting to start).
    #[inline(always)]
    pub(crate) fn park(&self) {
        let s = self.state.get();
        self.leave(matches!(s, State::Running | State::New), State::Parked);
    }

    /// Running → Finished (the closure is done), or a greenlet that never started → Finished (a
    /// kill before start).
    #[inline(always)]
    pub(crate) fn finish(&self) {
        let s = self.state.get();
        self.leave(
            s == State::Running || (!self.started.get() && s != State::Finished),
            State::Finished,
        );
    }

    /// A started greenlet that is not running → Finished without unwinding it: its destructors
    /// will not run (teardown survivors, kills under `panic = "abort"`).
    pub(crate) fn abandon(&self) {
        let s = self.state.get();
        self.leave(
            self.started.get() && matches!(s, State::Ready | State::Parked),
            State::Finished,
        );
    }
}

/// A greenlet as the hub sees it: a core and a closure, type-erased.
pub(crate) trait Task {
    fn core(&self) -> &Core;
    /// Runs the closure on the greenlet's own stack, catching every panic ([invariant 3](super#invariants)).
    fn run(&self);
    /// Drops the closure without running it (a kill before start) and records `Killed`.
    fn discard(&self);
}

/// The payload a kill unwinds with. Private: user code can catch it but not forge it.
pub(crate) struct KillSignal;

/// The payload a blocking call with no error to return (`threadpool::unblock`) unwinds with when an
/// enclosing timeout scope expires; `timeout()` turns it into `Err(Elapsed)`. Private.
pub(crate) struct ScopeSignal;

/// What [`panic_message`] says for a [`ScopeSignal`] nobody caught.
pub(crate) const SCOPE_SIGNAL_MESSAGE: &str =
    "greenhub: a timeout scope expired during a blocking \
     call that has no error to return (threadpool::unblock); only timeout()/timeout_at() turn \
     that into Err(Elapsed)";

/// A waiter: "wake greenlet G if it is still in the park numbered `gen`". Lives on the heap, in wait
/// lists, timers and I/O registrations; never on a waiter's stack ([invariant 1](super#invariants)).
#[derive(Clone)]
pub(crate) struct Waiter {
    pub(crate) task: Rc<dyn Task>,
    pub(crate) gen: u32,
}

impl Waiter {
    pub(crate) fn core(&self) -> &Core {
        self.task.core()
    }

    /// Whether the park this waiter was made for is still in progress.
    pub(crate) fn is_pending(&self) -> bool {
        let c = self.task.core();
        c.state.get() == State::Parked && c.gen.get() == self.gen
    }

    /// Wakes the greenlet if it is still in that park; returns whether it did.
    pub(crate) fn wake(&self) -> bool {
        super::hub::current_hub().wake(self, Wake::Woken)
    }
}

/// The message of a panic payload, if it is a string.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else if p.is::<ScopeSignal>() {
        SCOPE_SIGNAL_MESSAGE
    } else {
        "<non-string panic payload>"
    }
}

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
    /// A `Mutex` held by the greenlet with this id (0: unknown). (One variant per lock kind, not
    /// a name: a parked greenlet keeps its `WaitOn` in its frames, so it stays two words.)
    Held(u64),
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
            WaitOn::Held(0) => f.write_str("a Mutex"),
            WaitOn::Held(holder) => write!(f, "a Mutex held by greenlet {holder}"),
        }
    }
}
