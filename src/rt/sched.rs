//! The scheduler: the hub loop, the ready queue, park and wake, kill requests, and the two switch
//! sites.
//!
//! ```text
//! loop {
//!     run hub callbacks
//!     resume up to BUDGET ready greenlets (FIFO), so I/O and timers are never starved
//!     poll mio (io.rs): timeout 0 if anything is ready, else until the next timer, else forever;
//!               skipped when nothing is registered and nothing is ready to arrive
//!     run what other threads sent (mailbox.rs)
//!     fire expired timers
//!     with nothing ready, no timer, no I/O waiter and nothing pending from other threads,
//!     the main greenlet waits for something that can never come: wake it with Deadlock
//! }
//! ```
//!
//! A switch is greenlet → hub → greenlet: [`Hub::switch_to_hub`] from a greenlet that blocks,
//! yields or finishes, and `Hub::resume` from the loop. Resuming a worker first makes it the
//! occupant of the shared stack (`slicing.rs`). The shortcuts: a yield, a finished worker, or
//! the main greenlet parking, whose successor in the ready queue needs no copying switches
//! straight to it (`switch_direct`, `finish_direct`, `park_main`), doing the loop's bookkeeping
//! itself.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::time::{Duration, Instant};

use super::context;
use super::hub::Hub;
use super::stacks;
use super::stats::add;
use super::task::{panic_message, Core, KillSignal, Kind, State, TaskRef, WaitOn, Waiter, Wake};
use super::warn::{warn_at, Warning};
use crate::sys::switch as arch;

/// Ready greenlets resumed per loop iteration before I/O and timers get their turn.
const BUDGET: usize = 61;

/// Capacity the ready queue keeps when it empties (more is a burst's, given back).
const READY_KEEP: usize = 4096;

impl Hub {
    /// Debug builds: a worker about to switch away runs on its own stack region.
    #[inline(always)]
    fn debug_assert_on_own_region(&self, core: &Core) {
        #[cfg(debug_assertions)]
        if core.kind == Kind::Worker {
            let here = arch::approximate_sp();
            debug_assert!(
                self.in_own_region(core, here),
                "greenhub: {} is running off its stack region ({here:#x})",
                core.describe()
            );
        }
        #[cfg(not(debug_assertions))]
        let _ = core;
    }

    /// Switches from the running greenlet to the hub context; returns when the hub resumes it.
    pub(super) fn switch_to_hub(&self, core: &Core) {
        self.debug_assert_on_own_region(core);
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
    /// Returns why it woke. A kill unwinds from here (the payload is private). While the thread is
    /// panicking (this greenlet is unwinding a kill or a panic: a destructor blocks) it does not
    /// switch at all and returns `Wake::Killed` at once, so the caller gives up waiting: no other
    /// greenlet may run while this thread's panic count is raised, or it would see
    /// `std::thread::panicking()` and std would take its panics for double panics.
    /// Inside a timeout scope the park also ends at the scope's deadline, returning
    /// `Wake::ScopeExpired` (see `crate::timeout`).
    ///
    /// # Panics
    /// Inside the hub, or in the main greenlet when nothing can ever wake it.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn park(&self, on: WaitOn, deadline: Option<Instant>) -> Wake {
        // The caller's location is needed only for this check: the park itself is not
        // `track_caller`, so no `Location` is kept in the parked frames (their bytes are what a
        // parked greenlet costs).
        let core = self.current_core("block");
        self.park_core(core, on, deadline)
    }

    /// [`park`](Self::park) once the caller is known to be a greenlet.
    ///
    /// Always inlined: out of line (which the branch to `park_main` made the compiler choose) its
    /// frame joined every parked worker's slice (+48 B in `sleep`, +64 B in `Event::wait`).
    #[inline(always)]
    fn park_core(&self, core: &Core, on: WaitOn, deadline: Option<Instant>) -> Wake {
        if core.kill.get() || std::thread::panicking() {
            return self.interrupt(core);
        }
        // Only what is live across the switch stays in this frame: a parked greenlet's memory is
        // mostly its stack slice, so the setup and the aftermath live in out-of-line helpers whose
        // frames are gone while we are parked.
        // `on` is not kept across the switch: `arm_park` stores it in the core (`waiting_on`),
        // where `end_park` finds it for a deadlock report.
        self.arm_park(core, on, deadline);
        if core.kind == Kind::Main {
            self.park_main(core);
        } else {
            self.switch_to_hub(core);
        }
        self.end_park(core)
    }

    /// The main greenlet's switch away from a park: straight to the next ready greenlet when
    /// the hub is in its ready loop and resuming that one copies nothing — including a fresh
    /// worker entered in a free region (main runs on no region) — else to the hub. Only main:
    /// this frame stays on the parked stack, and main's is never copied, while a worker's frames
    /// are what a parked worker costs.
    #[inline(never)]
    fn park_main(&self, core: &Core) {
        let budget = self.budget.get();
        if budget > 0 && self.direct_allowed() {
            if let Some(next) = self.direct_successor(true) {
                // What `entered_hub` does for a greenlet that parked: drop the running handle
                // (main is owned by `Hub::main` as well, so it is never the last).
                drop(self.running.take());
                // SAFETY: `core.sp` is a cell of main's core, owned by `Hub::main`; `next` was
                // just checked with budget > 0 (invariants 1, 3, 9).
                unsafe { self.enter_successor(self.ready.pop(), next, budget, core.sp.as_ptr()) };
                return;
            }
        }
        self.switch_to_hub(core);
    }

    /// Starts a park: the timer for the nearest of `deadline` and the enclosing timeout scopes'
    /// deadlines, and the state change. What `end_park` needs to know about the timer is kept in
    /// the core (`timed`, `by_scope`), not in the parked frame.
    #[inline(never)]
    fn arm_park(&self, core: &Core, on: WaitOn, deadline: Option<Instant>) {
        if deadline.is_none() && core.cold_if_any().is_none() {
            // The common park (a join, a wait on an event or a socket): no deadline, and no
            // cold fields, so no timeout scope either. Nothing to arm, so this stays a leaf
            // without the timer path's register saves. `timed` and `by_scope` as below
            // without a timer (a `spawn_later` start leaves `timed` set).
            core.timed.set(false);
            core.by_scope.set(false);
            core.park();
            core.waiting_on.set(on);
            core.wake.set(Wake::Woken);
            return;
        }
        self.arm_timed_park(core, on, deadline);
    }

    /// `arm_park` with a deadline or timeout scopes to consider.
    #[inline(never)]
    fn arm_timed_park(&self, core: &Core, on: WaitOn, deadline: Option<Instant>) {
        let gen = core.gen.get();
        // Timeout scopes: the earliest enclosing scope deadline bounds this park too. `by_scope`
        // remembers that it, not the caller's own deadline, is the one the timer carries (ties go
        // to the caller's own deadline). Most greenlets have no scope (no cold fields at all).
        let nearest_scope = core
            .cold_if_any()
            .and_then(|c| c.scopes.borrow().iter().map(|s| s.deadline).min());
        let (deadline, by_scope) = match (deadline, nearest_scope) {
            (Some(own), Some(scope)) if scope < own => (Some(scope), true),
            (None, Some(scope)) => (Some(scope), true),
            (own, _) => (own, false),
        };
        if let Some(d) = deadline {
            let task = self.running_task();
            self.timers.borrow_mut().insert(d, task, gen);
        }
        core.timed.set(deadline.is_some());
        core.by_scope.set(by_scope);
        core.park();
        core.waiting_on.set(on);
        core.wake.set(Wake::Woken);
    }

    /// Ends a park: marks its timer stale if something else ended it, and turns the wake reason
    /// into the caller's answer.
    #[inline(never)]
    fn end_park(&self, core: &Core) -> Wake {
        if !core.timed.get() && !core.kill.get() && core.wake.get() == Wake::Woken {
            // Woken, with no timer to forget and no kill or deadlock to report: a leaf, as in
            // `arm_park`.
            core.gen.set(core.gen.get().wrapping_add(1));
            core.waiting_on.set(WaitOn::Nothing);
            return Wake::Woken;
        }
        self.end_other_park(core)
    }

    /// `end_park` for a park that armed a timer, or ended otherwise than by a waiter.
    #[inline(never)]
    fn end_other_park(&self, core: &Core) -> Wake {
        core.gen.set(core.gen.get().wrapping_add(1));
        let on = core.waiting_on.replace(WaitOn::Nothing);
        let wake = core.wake.get();
        if core.timed.replace(false) && wake != Wake::TimedOut {
            self.forget_timer();
        }
        match wake {
            Wake::Deadlock => deadlock_panic(&self.deadlock_chain(on), core),
            _ if core.kill.get() => self.interrupt(core),
            Wake::TimedOut if core.by_scope.get() => {
                // The scope deadline fired: record which scope(s) it was, so each can tell whether
                // the expiry was its own: the earliest one, which is the one the timer carried
                // (the greenlet itself pushes and pops its scopes, and it was parked), if it has
                // passed (a scope dropped meanwhile by somebody else leaves the rest alone unless
                // their own deadline has passed too).
                let now = Instant::now();
                let mut scopes = core.cold().scopes.borrow_mut();
                let nearest = scopes
                    .iter()
                    .map(|s| s.deadline)
                    .min()
                    .filter(|d| *d <= now);
                for s in scopes.iter_mut() {
                    if Some(s.deadline) == nearest {
                        s.fired = true;
                    }
                }
                Wake::ScopeExpired
            }
            w => w,
        }
    }

    /// A park that armed a timer ended otherwise: its entry is stale (see `timer.rs`). Stale
    /// greenlet handles the rebuild let go of are dropped after the borrow.
    fn forget_timer(&self) {
        let dead = {
            let mut t = self.timers.borrow_mut();
            t.forget();
            t.take_dead()
        };
        drop(dead);
    }

    /// Puts the running greenlet at the back of the ready queue and lets the others run.
    #[track_caller]
    pub(crate) fn yield_now(&self) {
        let core = self.current_core("yield");
        if core.kill.get() || std::thread::panicking() {
            self.interrupt(core);
            return;
        }
        self.give_turn(core);
        if core.kill.get() {
            self.interrupt(core);
        }
    }

    /// The blocking point of a killed greenlet, or any blocking point while the thread is
    /// panicking. Unwinding (a kill's or a panic's), or the main greenlet: returns `Wake::Killed`
    /// without switching (see `park`). Otherwise throws the kill payload — after yielding once
    /// through the hub if it was thrown before: the greenlet caught it and blocks again, and
    /// without the yield a loop that catches every kill would never let anybody else run.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn interrupt(&self, core: &Core) -> Wake {
        if std::thread::panicking() || core.kind == Kind::Main {
            return Wake::Killed;
        }
        if core.kill_delivered.replace(true) {
            self.give_turn(core);
        }
        panic::resume_unwind(Box::new(KillSignal))
    }

    /// Lets every other ready greenlet (and, every BUDGET turns, I/O and timers) run before the
    /// running one continues; the body of `yield_now`.
    fn give_turn(&self, core: &Core) {
        // The fast path. The hub is in the middle of an iteration with `budget` resumes left; with
        // nothing else ready and no callback queued, it would pop this very greenlet next and
        // resume it, copying nothing. So skip both switches and charge the resume to the budget:
        // I/O and timers still get their turn after BUDGET resumes, exactly as on the slow path.
        let budget = self.budget.get();
        if budget > 0 {
            if self.ready.is_empty() {
                if self.callbacks.borrow().is_empty() {
                    self.budget.set(budget - 1);
                    return;
                }
            } else if self.switch_direct(core, budget) {
                return;
            }
        }
        core.make_ready();
        self.requeue.set(true);
        self.switch_to_hub(core);
    }

    /// The direct path of `give_turn`: with `budget` resumes left in the hub's current iteration
    /// and another greenlet at the front of the ready queue, the hub would put the yielding
    /// greenlet at the back, pop that one, charge the budget and resume it. When resuming it
    /// copies nothing (it is main, or the occupant of its region), do exactly that here and
    /// switch straight to it: one switch instead of two, and the hub's loop is none the wiser
    /// (it finds `running`/`current` naming whoever switches to it next). Returns false, having
    /// changed nothing, when the hub must do it: the front greenlet needs a copy, a fresh frame
    /// or a region (only the hub context slices, invariant 8), is not ready (a stale entry the
    /// loop skips), or a monitor or a tracing dispatcher wants the switch hooks run in the hub
    /// context.
    ///
    /// Inlined into `yield_now` (no park reaches it, so parked greenlets' frames do not carry
    /// it): out of line it cost a call and a second set of register saves, and its own frame
    /// made a yielding greenlet's slice 32 B larger (496 vs 464 B with a live `[u8; 256]`).
    #[inline(always)]
    fn switch_direct(&self, core: &Core, budget: usize) -> bool {
        if !self.direct_allowed() {
            return false;
        }
        // A yielding worker occupies its region, so that one is not free: fresh workers too.
        let Some(next) = self.direct_successor(true) else {
            return false;
        };
        self.debug_assert_on_own_region(core);
        // From here on, what `entered_hub` and the loop would do, in their order.
        let Some(me) = self.running.take() else {
            no_running()
        };
        core.make_ready();
        // `next` out of the front, the yielder to the back.
        let task = self.ready.rotate(me);
        // SAFETY: `core.sp` is a cell of the yielding greenlet's core, which the ready queue now
        // owns (or `main`), so it outlives the switch back; `task` is `next`, just checked by
        // `direct_successor` and taken from the front (invariants 1, 3, 9).
        unsafe { self.enter_successor(task, next, budget, core.sp.as_ptr()) };
        true
    }

    /// Whether a greenlet may switch straight to another one: not while a monitor or a tracing
    /// dispatcher wants the switch hooks run in the hub context.
    #[inline(always)]
    fn direct_allowed(&self) -> bool {
        self.beacon.get().is_none() && !tracing::dispatcher::has_been_set()
    }

    /// The front of the ready queue, if the loop would resume it next and resuming it copies
    /// nothing: it is Ready (not a stale entry the loop skips) and main or the occupant of its
    /// region (then its resume is recorded, as `make_occupant` does). `None` if a slice copy, a
    /// fresh frame or a region is needed: only the hub context does those (invariant 8).
    ///
    /// With `fresh`, a worker that has never run is entered too when a free region is at hand
    /// (`enter_fresh_in_place`); not for a caller that may run on a free region itself.
    #[inline(always)]
    fn direct_successor(&self, fresh: bool) -> Option<*const Core> {
        let next = self.ready.front_core()?;
        // SAFETY: the ready queue owns the handle `next` was read from (invariant 9); nothing here
        // drops it.
        let n = unsafe { &*next };
        let ok = n.state() == State::Ready
            && (n.kind == Kind::Main
                || self.enter_in_place(n)
                || (fresh && self.enter_fresh_in_place(n)));
        ok.then_some(next)
    }

    /// Resumes `next`, just taken from the front of the ready queue as `task` (by `pop` or
    /// `rotate`), as the loop would (charges the `budget` of the iteration, marks it running,
    /// publishes it in `running`/`current`), and switches to it from the running context, whose
    /// stack pointer goes to `*save_sp`.
    ///
    /// # Safety
    /// `next` was returned by `direct_successor`, and `task` (its handle) taken from the queue's
    /// front right after; `budget` is the hub's current budget (non-zero); `save_sp` is valid for
    /// a write and stays so until the switch back reads it (or forever, if nothing ever switches
    /// back).
    #[inline(always)]
    unsafe fn enter_successor(
        &self,
        task: Option<TaskRef>,
        next: *const Core,
        budget: usize,
        save_sp: *mut *mut u8,
    ) {
        let Some(task) = task else {
            unreachable!("greenhub: the ready queue emptied under a direct switch")
        };
        debug_assert!(ptr::eq(task.core(), next));
        let n = task.core();
        self.budget.set(budget - 1);
        n.run();
        let sp = n.sp.get();
        self.running.set(Some(task));
        self.current.set(next);
        add(&self.counters.switches, 1);
        // SAFETY: `save_sp` is the caller's to vouch for. `sp` was stored by `next`'s last switch
        // and its bytes are in place: it is main (its own stack, never copied) or the occupant
        // of its region (`direct_successor`), which is not the region we run on (we occupy ours,
        // or left it for good, and `next` was Ready while we ran). Nothing is copied, so
        // invariant 8 holds; nothing unwinds across the switch; `running` owns `next` now
        // (invariants 1, 3, 9).
        unsafe { arch::switch(save_sp, sp, 0) };
    }

    /// The end of a worker whose closure is done (called by its entry, on its own stack): marks
    /// it finished and leaves its stack for good. Without a monitor or a tracing dispatcher it
    /// retires itself here — what the hub would do on its arrival — and switches straight to the
    /// next ready greenlet when that copies nothing (else to the hub): one switch instead of
    /// two. Its region is unbound by then, which is fine: nothing runs there before the switch,
    /// and the next occupant is made by the hub after it.
    pub(super) fn finish_running(&self) -> ! {
        let core = self.current_core("finish");
        core.finish();
        if self.direct_allowed() {
            self.finish_direct();
        }
        self.switch_to_hub(core);
        unreachable!("greenhub: a finished greenlet was resumed");
    }

    /// `finish_running`'s direct path. Takes no `&Core`: dropping the running handle below may
    /// free the control block.
    #[inline(never)]
    fn finish_direct(&self) -> ! {
        let Some(task) = self.running.take() else {
            no_running()
        };
        self.retire(&task);
        // Possibly the last handle (a detached greenlet): its closure and outcome are gone
        // already (`TaskCell::run` dropped an outcome nobody will take), and with no dispatcher
        // its spans are none, so freeing it runs no user code, and nothing below touches it.
        drop(task);
        let budget = self.budget.get();
        // Not `fresh`: our own region may be the free one it would be given.
        let next = if budget > 0 {
            self.direct_successor(false)
        } else {
            None
        };
        match next {
            // SAFETY: `next` was just checked, with budget > 0; the finished greenlet's stack
            // pointer goes to a cell of the hub, which lives on (invariant 7), and is never read
            // back: nothing switches to a finished greenlet.
            Some(next) => unsafe {
                self.enter_successor(self.ready.pop(), next, budget, self.dead_sp.as_ptr())
            },
            None => {
                // The hub's arrival bookkeeping finds nobody to requeue or retire.
                self.current.set(ptr::null());
                add(&self.counters.switches, 1);
                // SAFETY: as in `enter_successor` for the saved stack pointer; `hub_sp` was
                // stored by the hub context's own last switch, on a stack that is never copied
                // (invariants 1, 3, 7, 8).
                unsafe { arch::switch(self.dead_sp.as_ptr(), self.hub_sp.get(), 0) };
            }
        }
        unreachable!("greenhub: a finished greenlet was resumed");
    }

    /// Wakes `w`'s greenlet if it is still in the park `w` was made for; returns whether it did.
    pub(crate) fn wake(&self, w: &Waiter, why: Wake) -> bool {
        // Checked first so a stale waiter costs no clone.
        w.is_pending() && self.wake_owned(w.clone(), why)
    }

    /// [`wake`](Self::wake) for a waiter the caller is done with: its handle moves into the
    /// ready queue instead of being cloned there and dropped here. A waiter that is not pending
    /// is dropped (which may run destructors: it can be the last handle of a finished greenlet).
    #[inline]
    pub(crate) fn wake_owned(&self, w: Waiter, why: Wake) -> bool {
        if !w.is_pending() {
            return false;
        }
        let core = w.core();
        core.make_ready();
        core.wake.set(why);
        self.ready.push(w.task);
        true
    }

    /// Registers a freshly built worker: ready now, or parked until `start`.
    pub(crate) fn schedule_new(&self, task: TaskRef, start: Start) {
        let core = task.core();
        core.live_key
            .set(self.live.borrow_mut().insert(task.clone()));
        add(&self.counters.spawned, 1);
        match start {
            Start::Now => {
                core.make_ready();
                self.ready.push(task);
            }
            Start::Never => {
                // A delay past the end of time: parked with no timer, as `sleep(Duration::MAX)`.
                core.park();
                core.waiting_on.set(WaitOn::Start);
            }
            Start::At(at) => {
                core.park();
                core.waiting_on.set(WaitOn::Start);
                let gen = core.gen.get();
                self.timers.borrow_mut().insert(at, task.clone(), gen);
                core.timed.set(true);
            }
        }
    }

    /// Asks a greenlet to die. See `Greenlet::kill` for the semantics.
    pub(crate) fn request_kill(&self, task: &TaskRef) {
        let core = task.core();
        if core.kind == Kind::Main {
            return;
        }
        match core.state() {
            State::Finished => {}
            _ if !core.started.get() => {
                // A `spawn_later` greenlet still waiting for its start: its timer entry goes
                // stale with the state change (its handle holds only the control block once the
                // closure is discarded below, and the heap is rebuilt when stale entries pile up).
                let timed = core.state() == State::Parked && core.timed.replace(false);
                core.kill.set(true);
                core.finish();
                if timed {
                    self.forget_timer();
                }
                // The closure's destructors run here, on the caller's stack.
                task.discard();
                self.retire(task);
            }
            State::Running => {
                core.kill.set(true);
                self.interrupt(core);
            }
            _ if cfg!(panic = "abort") => {
                warn_at!(Warning::Abandoned, warn, { greenlet.id = core.id, }
                    "greenhub: {} cannot be unwound under panic=abort; its stack is abandoned and the \
                     destructors on it will not run",
                    core.describe()
                );
                core.kill.set(true);
                core.abandon();
                self.retire(task);
            }
            State::Ready => core.kill.set(true),
            State::Parked | State::New => {
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
    pub(crate) fn retire(&self, task: &TaskRef) {
        let core = task.core();
        self.leave_region(core);
        core.slice.release();
        let removed = self.live.borrow_mut().try_remove(core.live_key.get());
        debug_assert!(
            removed.is_some(),
            "greenhub: {} retired twice",
            core.describe()
        );
        add(&self.counters.finished, 1);
        let (first, more) = core.take_joiners();
        if let Some(w) = first {
            self.wake_owned(w, Wake::Woken);
        }
        if more {
            self.wake_more_joiners(core);
        }
        drop(removed);
    }

    /// The rest of `retire`'s wake-ups: the joiners after the first.
    #[inline(never)]
    fn wake_more_joiners(&self, core: &Core) {
        for w in core.take_more_joiners() {
            self.wake_owned(w, Wake::Woken);
        }
    }

    /// Makes `task` (a worker) the occupant of the shared stack, evicting and restoring slices as
    /// Runs `task` until it switches back to the hub. Hub context only.
    #[inline]
    pub(super) fn resume(&self, task: TaskRef, core: *const Core) {
        // SAFETY: `core` is `task.core()`; `task` keeps it alive until it is moved into `running`,
        // which keeps it alive until we take it back out below (invariant 9).
        let c = unsafe { &*core };
        if c.kind == Kind::Worker {
            self.make_occupant(c);
        }
        c.run();
        let sp = c.sp.get();
        // monitor: publish who holds the hub (a few relaxed stores; only when monitored).
        if let Some(b) = self.beacon.get() {
            b.entering(c);
        }
        // Re-enter the greenlet's tracing spans (one atomic load without a subscriber).
        context::resuming(c);
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
    #[inline(always)]
    pub(super) fn entered_hub(&self) {
        if let Some(b) = self.beacon.get() {
            b.left(); // monitor: the loop holds the hub again
        }
        let core = self.current.replace(ptr::null());
        let Some(task) = self.running.take() else {
            return;
        };
        // SAFETY: `current` and `running` are set together: `core` is the core of the task just
        // taken from `running`, which `task` keeps alive for this whole function (invariant 9).
        let c = unsafe { &*core };
        // Exit and save the tracing spans of the greenlet that switched away.
        context::switched_out(c);
        if self.requeue.replace(false) {
            // It yielded: move it to the back of the queue (no refcount traffic).
            self.ready.push(task);
            return;
        }
        if c.is_finished() {
            self.retire(&task);
        }
    }

    /// The loop. Never returns; the hub context is abandoned at teardown.
    pub(super) fn run_loop(&self) -> ! {
        loop {
            add(&self.counters.ticks, 1);
            self.run_callbacks();
            self.budget.set(BUDGET);
            while self.budget.get() > 0 {
                let Some(task) = self.ready.pop() else {
                    break;
                };
                self.budget.set(self.budget.get() - 1);
                let core: *const Core = task.core();
                // SAFETY: `task` owns the core (invariant 9).
                if unsafe { &*core }.state() == State::Ready {
                    self.resume(task, core);
                }
            }
            self.budget.set(0);
            let busy = !self.ready.is_empty() || !self.callbacks.borrow().is_empty();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else if let Some(at) = self.next_deadline() {
                Some(at.saturating_duration_since(Instant::now()))
            } else if self.io_waiters.get() > 0
                || self.mailbox.has_remote_sources()
                // handoff: a message pushed by another thread is on its way
                || self.mailbox.has_pending()
            {
                None
            } else {
                self.report_deadlock();
                continue;
            };
            let mut timeout = timeout;
            if !busy {
                // About to block: give back the pages of stack regions nobody uses (one compare
                // when there are none), and slice the greenlets of long-idle regions to the heap
                // (see stacks.rs); wake up in time for that while some region may still go cold.
                self.stacks.release_idle();
                self.evict_cold_regions();
                self.ready.shrink_if_empty();
                if self.stacks.cold_pending.get() {
                    let cap = stacks::MARK_EVERY;
                    timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
                }
            }
            self.poll_io(timeout);
            // handoff: run what other threads sent (spawns, wake-ups); one atomic load if nothing.
            self.mailbox.drain(self);
            self.fire_timers();
        }
    }

    /// What the main greenlet waits on, followed from greenlet to greenlet: "greenlet 2 to finish,
    /// which waits for a Mutex held by the same greenlet". For the deadlock report.
    #[cold]
    fn deadlock_chain(&self, on: WaitOn) -> String {
        use std::fmt::Write;
        let mut out = on.to_string();
        let mut seen = Vec::new();
        let mut next = on;
        for _ in 0..16 {
            let id = match next {
                WaitOn::Join(id) => id,
                WaitOn::Held(holder) if holder != 0 => holder,
                _ => break,
            };
            if seen.contains(&id) {
                out.push_str(" (a cycle)");
                break;
            }
            seen.push(id);
            let Some(what) = self
                .live
                .borrow()
                .iter()
                .find(|t| t.core().id == id)
                .map(|t| t.core().waiting_on.get())
            else {
                break;
            };
            match (next, what) {
                (WaitOn::Held(..), _) => {
                    let _ = write!(out, "; greenlet {id} waits for ");
                }
                _ => out.push_str(", which waits for "),
            }
            match what {
                WaitOn::Held(holder) if holder == id => {
                    out.push_str("a Mutex held by the same greenlet");
                    break;
                }
                w => {
                    let _ = write!(out, "{w}");
                }
            }
            next = what;
        }
        out
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

    /// The earliest current timer's deadline (stale handles dropped after the borrow).
    fn next_deadline(&self) -> Option<Instant> {
        let (at, dead) = {
            let mut t = self.timers.borrow_mut();
            (t.next_deadline(), t.take_dead())
        };
        drop(dead);
        at
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let (fired, dead) = {
                let mut t = self.timers.borrow_mut();
                (t.pop_expired(now), t.take_dead())
            };
            drop(dead);
            let Some((task, gen)) = fired else {
                break;
            };
            self.wake_owned(Waiter { task, gen }, Wake::TimedOut);
        }
    }

    fn run_callbacks(&self) {
        let n = self.callbacks.borrow().len();
        for _ in 0..n {
            let Some(f) = self.callbacks.borrow_mut().pop_front() else {
                break;
            };
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(f)) {
                warn_at!(Warning::Runtime, error, {}
                    "greenhub: a hub callback panicked: {}", panic_message(&*p));
            }
        }
    }
}

/// The FIFO of greenlets to resume, touched on every wake and every resume: a ring of handles
/// whose capacity is a power of two (an index wraps with a mask), in an `UnsafeCell` (no
/// `RefCell` borrow flag). A yield takes the front and puts the yielder at the back in one
/// [`rotate`](Self::rotate), which never grows the ring. Handles are moved in and out of their
/// slots as plain reads and writes, with no `Option` to test or drop: `VecDeque` spent about 32
/// instructions per direct yield on `front`, `pop_front` and `push_back`, a ring of
/// `Option<TaskRef>` 39.
#[derive(Default)]
pub(crate) struct ReadyQueue(UnsafeCell<Ring>);

/// The ring's storage. Invariant: `slots` is empty or a power of two long, `mask` is its length
/// minus one (wrapping), `head < slots.len()` (or 0), `len <= slots.len()`, and exactly the
/// slots of the live range `head .. head + len` (wrapping) are initialized.
struct Ring {
    slots: Box<[MaybeUninit<TaskRef>]>,
    mask: usize,
    head: usize,
    len: usize,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            slots: Box::new([]),
            mask: usize::MAX,
            head: 0,
            len: 0,
        }
    }
}

impl Ring {
    /// The slot `i` places behind the front (wrapping: `i = slots.len()` is the front's).
    ///
    /// # Safety
    /// The ring has at least one slot.
    #[inline(always)]
    unsafe fn at(&mut self, i: usize) -> *mut TaskRef {
        let k = (self.head + i) & self.mask;
        debug_assert!(k < self.slots.len());
        // SAFETY: with at least one slot (the caller's promise), `mask` is the length minus one,
        // a power of two minus one, so `k` is in bounds.
        unsafe { self.slots.get_unchecked_mut(k).as_mut_ptr() }
    }

    /// Doubles the ring (from empty: 16 slots), keeping the order, the front at index 0.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let mut slots = Box::new_uninit_slice(cap);
        for (i, new) in slots.iter_mut().take(self.len).enumerate() {
            // SAFETY: `i < len`, so the ring has slots and slot `i` is in the live range,
            // initialized; it is moved out once, and the old storage is freed without dropping
            // its slots.
            new.write(unsafe { self.at(i).read() });
        }
        self.slots = slots;
        self.mask = cap - 1;
        self.head = 0;
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        while self.len > 0 {
            // SAFETY: the front of a non-empty live range is initialized; it leaves the range
            // before it is dropped.
            let t = unsafe { self.at(0).read() };
            self.head = (self.head + 1) & self.mask;
            self.len -= 1;
            drop(t);
        }
    }
}

impl ReadyQueue {
    #[inline(always)]
    pub(super) fn push(&self, task: TaskRef) {
        // SAFETY: the `&mut` lives for this block only and nothing in it can reach the queue
        // again: growing allocates and moves handles but drops none (a global allocator is
        // `unsafe impl` and must not call back into the runtime), and the hub is one thread's
        // (invariant 5). After growing, `len < slots.len()`: the slot written is outside the
        // live range (uninitialized) and joins it.
        unsafe {
            let r = &mut *self.0.get();
            if r.len == r.slots.len() {
                r.grow();
            }
            r.at(r.len).write(task);
            r.len += 1;
        }
    }

    /// Takes the front and puts `back` behind the rest: what a yield does, without the
    /// capacity check (the front's slot is free by then). If the queue is empty (callers check
    /// the front first), `back` is queued and `None` returned: the handle is never dropped here,
    /// since it may be the running greenlet's last.
    #[inline(always)]
    pub(super) fn rotate(&self, back: TaskRef) -> Option<TaskRef> {
        if self.is_empty() {
            self.push(back);
            return None;
        }
        // SAFETY: as in `push`. The queue is not empty, so the ring has slots. The front
        // (initialized) is moved out, and `back` written into the slot just behind the rest,
        // which is the front's own slot when the ring is full: either way a slot outside the live
        // range once the front has left it.
        unsafe {
            let r = &mut *self.0.get();
            let front = r.at(0).read();
            r.at(r.len).write(back);
            r.head = (r.head + 1) & r.mask;
            Some(front)
        }
    }

    /// The core of the greenlet at the front, without taking it.
    #[inline(always)]
    pub(super) fn front_core(&self) -> Option<*const Core> {
        // SAFETY: as in `push`; a read of the initialized front slot of a non-empty range.
        unsafe {
            let r = &mut *self.0.get();
            if r.len == 0 {
                return None;
            }
            Some((*r.at(0)).core() as *const Core)
        }
    }

    #[inline(always)]
    pub(super) fn pop(&self) -> Option<TaskRef> {
        // SAFETY: as in `push`: the initialized front is moved out and leaves the live range;
        // nothing is dropped.
        unsafe {
            let r = &mut *self.0.get();
            if r.len == 0 {
                return None;
            }
            let t = r.at(0).read();
            r.head = (r.head + 1) & r.mask;
            r.len -= 1;
            Some(t)
        }
    }

    /// Gives back the memory of a burst (a million greenlets spawned at once leave a million
    /// slots of capacity behind) once the queue is empty again.
    pub(super) fn shrink_if_empty(&self) {
        // SAFETY: as in `push`; the ring dropped is empty (its drop runs no handle's).
        let r = unsafe { &mut *self.0.get() };
        if r.len == 0 && r.slots.len() > READY_KEEP {
            *r = Ring::default();
        }
    }

    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        // SAFETY: as in `push`; a shared read.
        unsafe { (*self.0.get()).len == 0 }
    }
}

/// When a new worker starts (`Hub::schedule_new`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// At once (`spawn`).
    Now,
    /// At a deadline (`spawn_later`).
    At(Instant),
    /// Never by itself: the delay does not fit in an `Instant` (only a kill ends it).
    Never,
}

#[cold]
#[inline(never)]
fn no_running() -> ! {
    unreachable!("greenhub: a greenlet runs but the hub does not hold its handle")
}

#[cold]
#[inline(never)]
fn deadlock_panic(chain: &str, core: &Core) -> ! {
    panic!(
        "greenhub: {} would block forever waiting for {chain}: no greenlet is ready, no timer is \
         pending, no greenlet waits for I/O and nothing can arrive from another thread",
        core.describe()
    )
}
