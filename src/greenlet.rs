//! Greenlets: spawned closures that run on a hub stack and switch at blocking points.
//!
//! [`Greenlet`] is the typed handle (join, kill), [`Builder`] configures a spawn, and `TaskCell`
//! is the one allocation per greenlet: the control block (`rt::Core`, whose states are
//! documented in `rt/task.rs`) and the closure's stage side by side.

#![deny(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::rt::{
    context, current_hub, panic_message, warn_at, Core, Hub, KillSignal, Kind, Start, Task,
    TaskRef, WaitOn, Wake, Warning,
};

/// Where a greenlet's closure is in its life. The outcomes are variants of their own rather than
/// one `Done(Result<T, GreenletError>)`, and a panic's payload is boxed once more (one word, not
/// two), which makes the stage (kept for the greenlet's whole life) 16 bytes for a closure of one
/// word and a `()` result instead of 32: the rare panic pays an allocation instead.
enum Stage<F, T> {
    Pending(F),
    Running,
    Value(T),
    Panicked(Box<Box<dyn Any + Send + 'static>>),
    Killed,
    Taken,
}

impl<F, T> Stage<F, T> {
    fn done(outcome: Result<T, GreenletError>) -> Self {
        match outcome {
            Ok(v) => Stage::Value(v),
            Err(GreenletError::Panicked(p)) => Stage::Panicked(Box::new(p)),
            Err(_) => Stage::Killed,
        }
    }
}

/// What a greenlet runs: the closure's stage. With the core in front of it (`rt::TaskRef`), the
/// one allocation per greenlet. A `Cell` moved in and out with `replace`: no borrow flag, and no
/// borrow is ever held while user code (a closure, a destructor) runs.
struct TaskCell<F, T> {
    stage: Cell<Stage<F, T>>,
}

impl<F: FnOnce() -> T, T: 'static> Task for TaskCell<F, T> {
    /// Only the closure's call is in this frame, which stays on the greenlet's stack (and so in
    /// its slice) for its whole life: taking the closure and recording the outcome run in
    /// out-of-line helpers whose frames are gone while the closure runs.
    fn run(&self, core: &Core) {
        let result = panic::catch_unwind(AssertUnwindSafe(|| (self.take_closure(core))()));
        self.finish_run(core, result);
    }

    fn discard(&self) {
        let old = self.stage.replace(Stage::Killed);
        drop(old);
    }

    fn take_into(&self, core: &Core, out: &mut dyn Any) {
        match out.downcast_mut::<Option<Result<T, GreenletError>>>() {
            Some(slot) => *slot = self.take(core),
            None => unreachable!(
                "greenhub: the result of {} was asked for as another type",
                core.describe()
            ),
        }
    }

    fn drop_outcome(&self, core: &Core) {
        if let Some(r) = self.take(core) {
            report_unjoined(core, &r);
            drop_detached(core, r);
        }
    }
}

impl<F: FnOnce() -> T, T> TaskCell<F, T> {
    #[inline(never)]
    fn take_closure(&self, core: &Core) -> F {
        match self.stage.replace(Stage::Running) {
            Stage::Pending(f) => f,
            _ => unreachable!("greenhub: {} started twice", core.describe()),
        }
    }

    /// Records how the closure ended, on the greenlet's own stack.
    #[inline(never)]
    fn finish_run(&self, core: &Core, result: Result<T, Box<dyn Any + Send>>) {
        // The common end: a value, somebody may join, and no cold fields (so no greenlet-locals
        // to drop): just keep the value.
        let result = match result {
            Ok(v) if !core.detached.get() && !core.has_cold() => {
                self.stage.set(Stage::Value(v));
                return;
            }
            r => r,
        };
        self.finish_other_run(core, result);
    }

    /// `finish_run` for a panic, a kill, a detached greenlet or one with cold fields.
    #[inline(never)]
    fn finish_other_run(&self, core: &Core, result: Result<T, Box<dyn Any + Send>>) {
        let mut outcome = match result {
            Ok(v) => Ok(v),
            Err(p) if p.is::<KillSignal>() => Err(GreenletError::Killed),
            Err(p) => Err(GreenletError::Panicked(p)),
        };
        // Drop the greenlet-local values here, on this greenlet's own stack; a destructor that
        // panics turns a successful outcome into that panic (or Killed, if it blocked while the
        // greenlet was being killed).
        if let Some(p) = context::drop_locals(core) {
            if outcome.is_ok() {
                outcome = Err(if p.is::<KillSignal>() {
                    GreenletError::Killed
                } else {
                    GreenletError::Panicked(p)
                });
            }
        }
        if core.detached.get() {
            // Nobody will join: drop the value here, on this greenlet's own stack, and say so if
            // it was a panic.
            report_unjoined(core, &outcome);
            self.stage.set(Stage::Taken);
            drop_detached(core, outcome);
        } else {
            self.stage.set(Stage::done(outcome));
        }
    }
}

impl<F: FnOnce() -> T, T> TaskCell<F, T> {
    /// Moves the outcome out if the greenlet has finished (`Greenlet::join`, through
    /// `Task::take_into`).
    fn take(&self, core: &Core) -> Option<Result<T, GreenletError>> {
        match self.stage.replace(Stage::Taken) {
            Stage::Value(v) => Some(Ok(v)),
            Stage::Panicked(p) => Some(Err(GreenletError::Panicked(*p))),
            Stage::Killed => Some(Err(GreenletError::Killed)),
            // Abandoned under panic=abort: it never finished its closure.
            Stage::Running if core.is_finished() => Some(Err(GreenletError::Killed)),
            other => {
                // Not finished (or already taken): put it back; dropping `Taken` would be a no-op
                // anyway, but a pending closure or a running stage must stay.
                drop(self.stage.replace(other));
                None
            }
        }
    }
}

fn report_unjoined<T>(core: &Core, outcome: &Result<T, GreenletError>) {
    if let Err(GreenletError::Panicked(p)) = outcome {
        report_unjoined_panic(core, &**p);
    }
}

/// Drops the outcome nobody will take, catching a panic of its destructor (the greenlet's entry
/// has no frame left to catch it, and a panic escaping there could only abort) and reporting it
/// like a detached greenlet's panic.
fn drop_detached<T>(core: &Core, outcome: Result<T, GreenletError>) {
    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(move || drop(outcome))) {
        report_drop_panic(core, &*p);
        // The payload's own destructor may panic too: that one is dropped unreported.
        if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(p))) {
            std::mem::forget(again);
        }
    }
}

#[cold]
#[inline(never)]
fn report_drop_panic(core: &Core, p: &(dyn Any + Send)) {
    warn_at!(Warning::DetachedPanic, error,
        { greenlet.id = core.id, greenlet.name = core.name().unwrap_or(""), }
        "greenhub: {}'s result panicked when dropped, and nobody joined it: {}",
        core.describe(),
        panic_message(p)
    );
}

/// Out of line and cold: the formatting would otherwise sit in every greenlet's entry frame, which
/// is part of every parked greenlet's stack slice.
#[cold]
#[inline(never)]
fn report_unjoined_panic(core: &Core, p: &(dyn Any + Send)) {
    warn_at!(Warning::DetachedPanic, error,
        { greenlet.id = core.id, greenlet.name = core.name().unwrap_or(""), }
        "greenhub: {} panicked and nobody joined it: {}",
        core.describe(),
        panic_message(p)
    );
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
    /// A `TaskCell<F, T>` for some `F`: only `spawn_at` makes one.
    task: TaskRef,
    _result: PhantomData<T>,
}

impl<T> fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.task.core();
        f.debug_struct("Greenlet")
            .field("id", &core.id)
            .field("name", &core.name())
            .field("state", &core.state())
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
        self.task.core().name()
    }

    /// Whether the greenlet has finished (returned, panicked or been killed).
    pub fn is_finished(&self) -> bool {
        self.task.core().is_finished()
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
    pub(crate) fn as_task(&self) -> TaskRef {
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
    #[track_caller]
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
    #[track_caller]
    pub fn join_timeout(&self, timeout: Duration) -> Result<T, GreenletError> {
        self.wait_until(Instant::now().checked_add(timeout))?;
        self.take_result()
    }

    /// The outcome, moved out, if the greenlet has finished and nobody took it yet.
    fn take_outcome(&self) -> Option<Result<T, GreenletError>> {
        let mut out: Option<Result<T, GreenletError>> = None;
        self.task.take_into(&mut out);
        out
    }

    fn take_result(&self) -> Result<T, GreenletError> {
        match self.take_outcome() {
            Some(r) => {
                // Nothing is left for the handle's drop to drop (or report): saying so here
                // spares it a call into the body (a join's drop follows at once).
                self.task.core().detached.set(true);
                r
            }
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
        if core.is_finished() {
            return Ok(());
        }
        let hub = current_hub();
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
            if core.is_finished() {
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
    #[track_caller]
    pub fn kill(&self) {
        let hub = current_hub();
        hub.current_core("kill a greenlet and wait for it");
        self.kill_nowait();
        // An error means our own wait was cut short (a timeout scope, or our own kill): the kill
        // request stands either way.
        let _ = self.wait_until(None);
    }

    /// Requests the kill without waiting for the greenlet to finish (gevent's `kill(block=False)`).
    /// Usable from inside the hub.
    pub fn kill_nowait(&self) {
        current_hub().request_kill(&self.as_task());
    }
}

impl<T> Drop for Greenlet<T> {
    fn drop(&mut self) {
        let core = self.task.core();
        // Already set when a join took the outcome: then there is nothing to drop.
        if !core.detached.replace(true) && core.is_finished() {
            // Dropped here, on the dropper's stack, with a panic it ended with reported.
            self.task.drop_outcome();
        }
    }
}

/// Configures a greenlet before spawning it (std's `thread::Builder`).
#[derive(Debug, Default)]
pub struct Builder {
    name: Option<Box<str>>,
    exclusive: bool,
    /// The span the greenlet runs in (`Builder::span`).
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
    /// greenlet; see also [`spawn_instrumented`](crate::hub::spawn_instrumented)).
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

    /// Gives the greenlet a stack region of its own for its whole life: its addresses are never
    /// shared with another greenlet, so its stack is never copied away while it is parked.
    ///
    /// That is what makes it sound to lend the greenlet's stack to something that outlives a
    /// blocking call: `&mut` locals borrowed by `std::thread::scope` threads (or rayon/crossbeam
    /// scopes) while the greenlet blocks on greenhub, or a pinned intrusive node on its stack
    /// (`std::pin::pin!(tokio::sync::Notify::notified())`, `event-listener`) that a notifier
    /// writes while the greenlet is parked. Without it, another greenlet may later be bound to
    /// the same region and run over those addresses (see "Stacks" in the crate docs).
    ///
    /// Costs a region per live exclusive greenlet (the pages it touched plus a page-table page);
    /// [`Config::exclusive_stacks`](crate::hub::Config::exclusive_stacks) makes every greenlet
    /// exclusive.
    pub fn exclusive_stack(mut self) -> Builder {
        self.exclusive = true;
        self
    }

    /// Spawns the greenlet on this thread's hub; it runs once the caller blocks or yields.
    ///
    /// # Panics
    /// After this thread's hub was torn down.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn_at(Start::Now, f)
    }

    /// Spawns the greenlet to start after `delay` (gevent's `spawn_later`). A delay too large for
    /// an `Instant` (`Duration::MAX`) saturates, as [`hub::sleep`](crate::hub::sleep) does: the
    /// greenlet never starts unless killed (which drops its closure). Killing a greenlet that has
    /// not started frees it, and its timer, at once.
    ///
    /// # Panics
    /// After this thread's hub was torn down.
    #[track_caller]
    pub fn spawn_later<F, T>(self, delay: Duration, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        // Saturates as `hub::sleep` does: a delay past the end of time never starts by itself.
        let start = Instant::now()
            .checked_add(delay)
            .map_or(Start::Never, Start::At);
        self.spawn_at(start, f)
    }

    fn spawn_at<F, T>(self, start: Start, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let hub: &Hub = current_hub();
        let task = TaskRef::new(
            Core::new(Kind::Worker, self.name),
            TaskCell {
                stage: Cell::new(Stage::Pending(f)),
            },
        );
        task.core.exclusive.set(self.exclusive);
        if let Some(span) = self.span {
            context::set_span(&task.core, span); // entered at its first resume
        }
        hub.schedule_new(task.clone(), start);
        Greenlet {
            task,
            _result: PhantomData,
        }
    }
}

/// The running greenlet's id (the main greenlet has one too).
///
/// # Panics
/// From inside the hub.
#[track_caller]
pub fn current_id() -> u64 {
    current_hub()
        .current_core("ask for the current greenlet")
        .id
}
