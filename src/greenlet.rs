//! Greenlets: spawned closures that run on the hub's shared stack and switch at blocking points.
//!
//! # States
//!
//! A greenlet's `Core` moves through these states; the hub is the only code that moves it, and
//! always on the hub's thread (invariant 5 in ARCHITECTURE.md):
//!
//! ```text
//!            spawn                     resume                   park / yield_now
//!   (new) ─────────► Ready ───────────────────────► Running ─────────────────────► Parked or Ready
//!            spawn_later                                │                              │
//!   (new) ─────────► Parked ── timer ──► Ready          │ closure returns, panics,     │ wake (gen matches),
//!                                                       ▼ or unwinds from a kill       │ timer, kill
//!                                                    Finished ◄──── kill before start ─┘
//! ```
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
//! alive while wait lists, timers and handles refer to it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::hub::{self, Hub, WaitOn, Wake};
use crate::stack::Slice;

/// Where a greenlet is in its life. See the module docs for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In the hub's ready queue.
    Ready,
    /// Executing; exactly one greenlet per hub at a time.
    Running,
    /// Suspended until a [`Waiter`] for its current `gen` wakes it (or a timer, or a kill).
    Parked,
    /// The closure returned, panicked or was killed; the stack slice is gone.
    Finished,
}

/// Whether a core belongs to a worker (runs on the shared stack) or to the thread's main greenlet
/// (runs on the thread's own stack and is never copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Worker,
}

/// The control block of a greenlet: everything the hub needs, on the heap (invariant 1).
pub(crate) struct Core {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) kind: Kind,
    pub(crate) state: Cell<State>,
    /// The closure has been entered (a worker's frame exists on the shared stack or in `slice`).
    pub(crate) started: Cell<bool>,
    /// Saved stack pointer while not running. Written only by the switch.
    pub(crate) sp: Cell<*mut u8>,
    /// The heap copy of `[sp, top)` while another worker occupies the shared stack.
    pub(crate) slice: RefCell<Slice>,
    /// Number of the current (or next) park; see [`Waiter`].
    pub(crate) gen: Cell<u32>,
    /// Why the last park ended.
    pub(crate) wake: Cell<Wake>,
    /// What the greenlet is parked on, for diagnostics.
    pub(crate) waiting_on: Cell<WaitOn>,
    /// A kill was requested. Never cleared.
    pub(crate) kill: Cell<bool>,
    /// Key in the hub's `live` table.
    pub(crate) live_key: Cell<usize>,
    /// The first greenlet waiting for this one to finish (nearly always the only one: kept inline
    /// so a join allocates nothing).
    joiner: Cell<Option<Waiter>>,
    /// Any further joiners.
    more_joiners: RefCell<Vec<Waiter>>,
    /// The `Greenlet` handle was dropped: nobody will take the result.
    pub(crate) detached: Cell<bool>,
    /// Active timeout scopes (`timeout`, `Timeout`), innermost last. `Hub::park` bounds every park
    /// by the earliest deadline here and marks the scope whose deadline ended it. Entries are
    /// removed by id (a `Timeout` guard may be dropped out of order). Never borrowed across a park.
    pub(crate) scopes: RefCell<Vec<Scope>>,
    /// context: greenlet-local values and the saved tracing span stack, allocated on first use
    /// (src/context.rs). `None` for a greenlet that uses neither.
    pub(crate) context: crate::context::Slot,
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
            state: Cell::new(State::Running),
            started: Cell::new(kind == Kind::Main),
            sp: Cell::new(std::ptr::null_mut()),
            slice: RefCell::new(Slice::default()),
            gen: Cell::new(0),
            wake: Cell::new(Wake::Woken),
            waiting_on: Cell::new(WaitOn::Nothing),
            kill: Cell::new(false),
            live_key: Cell::new(usize::MAX),
            joiner: Cell::new(None),
            more_joiners: RefCell::new(Vec::new()),
            detached: Cell::new(false),
            scopes: RefCell::new(Vec::new()),
            context: crate::context::Slot::default(),
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

/// A greenlet as the hub sees it: a core and a closure, type-erased.
pub(crate) trait Task {
    fn core(&self) -> &Core;
    /// Runs the closure on the greenlet's own stack, catching every panic (invariant 3).
    fn run(&self);
    /// Drops the closure without running it (a kill before start) and records `Killed`.
    fn discard(&self);
}

/// The typed side of a task, for `Greenlet<T>`.
trait Joinable<T>: Task {
    fn take(&self) -> Option<Result<T, GreenletError>>;
    fn has_unjoined_panic(&self) -> bool;
}

/// The payload a kill unwinds with. Private: user code can catch it but not forge it.
pub(crate) struct KillSignal;

enum Stage<F, T> {
    Pending(F),
    Running,
    Done(Result<T, GreenletError>),
    Taken,
}

/// One allocation per greenlet: the core and the closure's stage side by side.
struct TaskCell<F, T> {
    core: Core,
    stage: RefCell<Stage<F, T>>,
}

impl<F: FnOnce() -> T, T> Task for TaskCell<F, T> {
    fn core(&self) -> &Core {
        &self.core
    }

    fn run(&self) {
        let f = match std::mem::replace(&mut *self.stage.borrow_mut(), Stage::Running) {
            Stage::Pending(f) => f,
            _ => unreachable!("greenhub: {} started twice", self.core.describe()),
        };
        let mut outcome = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            Err(p) if p.is::<KillSignal>() => Err(GreenletError::Killed),
            Err(p) => Err(GreenletError::Panicked(p)),
        };
        // context: drop the greenlet-local values here, on this greenlet's own stack.
        crate::context::finish(&self.core, &mut outcome);
        if self.core.detached.get() {
            // Nobody will join: drop the value here, on this greenlet's own stack, and say so if
            // it was a panic.
            report_unjoined(&self.core, &outcome);
            *self.stage.borrow_mut() = Stage::Taken;
            drop(outcome);
        } else {
            *self.stage.borrow_mut() = Stage::Done(outcome);
        }
    }

    fn discard(&self) {
        let old = std::mem::replace(
            &mut *self.stage.borrow_mut(),
            Stage::Done(Err(GreenletError::Killed)),
        );
        drop(old);
    }
}

impl<F: FnOnce() -> T, T> Joinable<T> for TaskCell<F, T> {
    fn take(&self) -> Option<Result<T, GreenletError>> {
        let mut stage = self.stage.borrow_mut();
        match std::mem::replace(&mut *stage, Stage::Taken) {
            Stage::Done(r) => Some(r),
            // Abandoned under panic=abort: it never finished its closure.
            Stage::Running if self.core.state.get() == State::Finished => {
                Some(Err(GreenletError::Killed))
            }
            other => {
                *stage = other;
                None
            }
        }
    }

    fn has_unjoined_panic(&self) -> bool {
        matches!(
            &*self.stage.borrow(),
            Stage::Done(Err(GreenletError::Panicked(_)))
        )
    }
}

fn report_unjoined<T>(core: &Core, outcome: &Result<T, GreenletError>) {
    if let Err(GreenletError::Panicked(p)) = outcome {
        report_unjoined_panic(core, &**p);
    }
}

/// Out of line and cold: the formatting would otherwise sit in every greenlet's entry frame, which
/// is part of every parked greenlet's stack slice.
#[cold]
#[inline(never)]
fn report_unjoined_panic(core: &Core, p: &(dyn Any + Send)) {
    tracing::error!(
        greenlet.id = core.id,
        greenlet.name = core.name.as_deref().unwrap_or(""),
        "{} panicked and nobody joined it: {}",
        core.describe(),
        panic_message(p)
    );
}

/// The message of a panic payload, if it is a string.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

/// Why a greenlet produced no value.
pub enum GreenletError {
    /// The closure panicked; the payload is what `panic!` was given, as from
    /// [`std::thread::JoinHandle::join`].
    Panicked(Box<dyn Any + Send + 'static>),
    /// The greenlet was killed (or, for a join made from a greenlet whose own kill is unwinding, the
    /// join was interrupted).
    Killed,
    /// [`Greenlet::join_timeout`] gave up, or an enclosing timeout scope (`greenhub::timeout`)
    /// expired during a join; the greenlet is still running (and, after `join_timeout`, can be
    /// joined again).
    TimedOut,
}

impl fmt::Debug for GreenletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreenletError::Panicked(p) => f
                .debug_tuple("Panicked")
                .field(&panic_message(&**p))
                .finish(),
            GreenletError::Killed => f.write_str("Killed"),
            GreenletError::TimedOut => f.write_str("TimedOut"),
        }
    }
}

impl fmt::Display for GreenletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreenletError::Panicked(p) => write!(f, "greenlet panicked: {}", panic_message(&**p)),
            GreenletError::Killed => f.write_str("greenlet was killed"),
            GreenletError::TimedOut => f.write_str("timed out waiting for the greenlet"),
        }
    }
}

impl std::error::Error for GreenletError {}

/// A handle to a spawned greenlet: join it for its value, or kill it.
///
/// Dropping the handle detaches the greenlet: it runs on, and a panic it ends with is reported
/// through `tracing`. The handle is `!Send`: a greenlet belongs to the hub of the thread that
/// spawned it, and its stack slice holds addresses of that hub's shared stack.
///
/// ```compile_fail
/// let g = greenhub::hub::spawn(|| 1);
/// std::thread::spawn(move || g.join()); // Greenlet is !Send
/// ```
pub struct Greenlet<T> {
    task: Rc<dyn Joinable<T>>,
}

impl<T> fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.task.core();
        f.debug_struct("Greenlet")
            .field("id", &core.id)
            .field("name", &core.name)
            .field("state", &core.state.get())
            .finish()
    }
}

impl<T: 'static> Greenlet<T> {
    /// The greenlet's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.task.core().id
    }

    /// The name given with [`Builder::name`].
    pub fn name(&self) -> Option<&str> {
        self.task.core().name.as_deref()
    }

    /// Whether the greenlet has finished (returned, panicked or been killed).
    pub fn is_finished(&self) -> bool {
        self.task.core().state.get() == State::Finished
    }

    /// Whether the greenlet's closure has been entered.
    pub fn is_started(&self) -> bool {
        self.task.core().started.get()
    }

    /// The control block, for crate-private waits that must not consume the handle (`pool::iwait`
    /// registers in `joiners` and removes its entry itself).
    pub(crate) fn core(&self) -> &Core {
        self.task.core()
    }

    /// The type-erased task, for `pool::Group`, which tracks greenlets of any value type.
    pub(crate) fn as_task(&self) -> Rc<dyn Task> {
        self.task.clone()
    }

    /// Waits, parking only the calling greenlet, until the greenlet finishes; returns its value.
    ///
    /// # Errors
    /// [`GreenletError::Panicked`] with the panic payload, or [`GreenletError::Killed`];
    /// [`GreenletError::TimedOut`] if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// If called from the greenlet itself, from inside the hub, after this thread's hub was torn
    /// down, or if nothing can ever finish the greenlet while the main greenlet waits (a deadlock).
    pub fn join(self) -> Result<T, GreenletError> {
        self.wait_until(None)?;
        self.take_result()
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`GreenletError::TimedOut`],
    /// leaving the greenlet running and joinable.
    ///
    /// # Panics
    /// As [`join`](Self::join), and if the result was already taken by an earlier
    /// `join_timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<T, GreenletError> {
        self.wait_until(Instant::now().checked_add(timeout))?;
        self.take_result()
    }

    fn take_result(&self) -> Result<T, GreenletError> {
        match self.task.take() {
            Some(r) => r,
            None if self.is_finished() => {
                panic!(
                    "greenhub: the result of greenlet {} was already taken by an earlier join",
                    self.id()
                )
            }
            // Our wait was cut short by a kill of the joining greenlet while it unwinds.
            None => Err(GreenletError::Killed),
        }
    }

    /// Parks the caller until the greenlet finishes (`Ok`), `deadline` or an enclosing timeout
    /// scope's deadline passes (`TimedOut`), or the caller's own kill interrupts the wait while it
    /// unwinds (`Killed`).
    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), GreenletError> {
        let core = self.task.core();
        if core.state.get() == State::Finished {
            return Ok(());
        }
        let hub = hub::current_hub();
        let me = hub.current_core("join a greenlet");
        if std::ptr::eq(me, core) {
            panic!(
                "greenhub: {} tried to join itself, which would wait forever",
                core.describe()
            );
        }
        loop {
            core.add_joiner(hub.current_waiter());
            let wake = hub.park(WaitOn::Join(core.id), deadline);
            if core.state.get() == State::Finished {
                return Ok(());
            }
            // Timed out or interrupted: take our stale entry out of the joiners.
            let my_id = me.id;
            core.remove_joiners(|w| w.core().id == my_id);
            match wake {
                Wake::TimedOut | Wake::ScopeExpired => return Err(GreenletError::TimedOut),
                Wake::Killed => return Err(GreenletError::Killed),
                Wake::Woken | Wake::Deadlock => {}
            }
        }
    }

    /// Kills the greenlet and waits for it to finish unwinding (gevent's `kill(block=True)`).
    ///
    /// A greenlet that has not started is simply dropped. A started one is resumed with a kill
    /// request: its blocking call unwinds, running every destructor on its stack, and it finishes
    /// as [`GreenletError::Killed`]. Killing a finished greenlet does nothing. A greenlet that kills
    /// itself unwinds at once.
    ///
    /// Inside an expired timeout scope (`greenhub::timeout`) it requests the kill and returns
    /// without waiting for the unwinding to finish.
    ///
    /// # Panics
    /// From inside the hub (this call blocks), after the hub was torn down, or as [`join`](Self::join)
    /// when nothing can finish the unwinding.
    pub fn kill(&self) {
        let hub = hub::current_hub();
        hub.current_core("kill a greenlet and wait for it");
        self.kill_nowait();
        // An error means our own wait was cut short (a timeout scope, or our own kill): the kill
        // request stands either way.
        let _ = self.wait_until(None);
    }

    /// Requests the kill without waiting for the greenlet to finish (gevent's `kill(block=False)`).
    /// Usable from inside the hub.
    pub fn kill_nowait(&self) {
        hub::current_hub().request_kill(&self.as_task());
    }
}

impl<T> Drop for Greenlet<T> {
    fn drop(&mut self) {
        let core = self.task.core();
        core.detached.set(true);
        if core.state.get() == State::Finished {
            if self.task.has_unjoined_panic() {
                if let Some(r) = self.task.take() {
                    report_unjoined(core, &r);
                }
            } else {
                drop(self.task.take());
            }
        }
    }
}

/// A waiter: "wake greenlet G if it is still in the park numbered `gen`". Lives on the heap, in wait
/// lists, timers and I/O registrations; never on a waiter's stack (invariant 1).
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
        hub::current_hub().wake(self, Wake::Woken)
    }
}

/// Configures a greenlet before spawning it (std's `thread::Builder`).
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<Box<str>>,
    /// context: the span the greenlet runs in (`Builder::span`).
    span: Option<tracing::Span>,
}

impl Builder {
    /// A builder with no name.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the greenlet; the name appears in diagnostics (deadlocks, panics, overflow).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into().into_boxed_str());
        self
    }

    /// Runs the greenlet inside `span`: the hub enters it each time the greenlet is resumed and
    /// exits it each time the greenlet switches away, so every event the greenlet logs is inside
    /// `span` and no event of another greenlet is (the `Instrument` of async runtimes, for a
    /// greenlet; see also [`hub::spawn_instrumented`]).
    ///
    /// # Examples
    /// ```
    /// use greenhub::hub;
    ///
    /// let span = tracing::info_span!("conn", id = 7);
    /// let g = hub::Builder::new().span(span).spawn(|| {
    ///     tracing::info!("inside conn{{id=7}}, across every blocking point");
    ///     hub::yield_now();
    ///     tracing::info!("still inside");
    /// });
    /// g.join().unwrap();
    /// ```
    pub fn span(mut self, span: tracing::Span) -> Builder {
        self.span = Some(span);
        self
    }

    /// Spawns the greenlet on this thread's hub; it runs once the caller blocks or yields.
    ///
    /// # Panics
    /// After this thread's hub was torn down.
    pub fn spawn<F, T>(self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn_at(None, f)
    }

    /// Spawns the greenlet to start after `delay` (gevent's `spawn_later`).
    pub fn spawn_later<F, T>(self, delay: Duration, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn_at(Some(Instant::now() + delay), f)
    }

    fn spawn_at<F, T>(self, start: Option<Instant>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let hub: &Hub = hub::current_hub();
        let task = Rc::new(TaskCell {
            core: Core::new(Kind::Worker, self.name),
            stage: RefCell::new(Stage::Pending(f)),
        });
        if let Some(span) = self.span {
            crate::context::set_span(&task.core, span); // context: entered at its first resume
        }
        hub.schedule_new(task.clone(), start);
        Greenlet { task }
    }
}

/// The running greenlet's id (the main greenlet has one too).
///
/// # Panics
/// From inside the hub.
pub fn current_id() -> u64 {
    hub::current_hub()
        .current_core("ask for the current greenlet")
        .id
}
