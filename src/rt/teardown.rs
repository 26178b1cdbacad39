//! Teardown: killing what is left when `hub::run` returns, and freeing the hub at thread exit.
//!
//! # `hub::run`: every destructor runs
//!
//! `hub::run(f)` kills every greenlet still alive when `f` returns ([`Hub::kill_all`]) and runs
//! them until they have unwound, with the thread fully alive. Greenlets that refuse to die (code
//! that catches every kill and keeps going) are abandoned after [`KILL_ROUNDS`] rounds with a
//! warning naming them.
//!
//! # Thread exit: nothing is resumed
//!
//! Without `hub::run`, a thread-local guard frees the hub when the thread exits (and the main
//! thread's at process exit). By then other thread-locals may already be destroyed: they are
//! destroyed last-registered-first, the guard is registered when the hub is created, and a
//! thread-local first touched after that is destroyed *before* the guard runs. A parked greenlet may
//! be suspended inside `KEY.with(|v| ..)` holding a reference to such a value; resuming it — to
//! unwind it, as `hub::run` does — would return into freed memory. No hook runs earlier at thread
//! exit for every kind of thread, so the guard resumes nothing:
//!
//! - a greenlet that never started has its closure dropped (plain destructors, on the thread's own
//!   stack, with the hub already unreachable: a destructor that tries to block or spawn gets the
//!   "torn down" panic, which is caught and reported);
//! - a started greenlet is **abandoned**: marked finished and never resumed; its control block,
//!   stack slice and everything its stack owns are deliberately leaked (kept reachable from a
//!   process-global list, so leak checkers see them as still reachable, not lost), because its frames
//!   may refer to any of it; the hub's stacks stay mapped too (the occupant's frames are there).
//!   Its destructors do not run; a warning names it (`warn.rs`).
//!
//! That is sound (leaking is safe; only running the greenlet could touch freed memory), and
//! `hub::run` / `Runtime` are the way to have every destructor run. If the thread exits while a
//! worker or the hub context runs (`std::process::exit` from a greenlet), the guard may be running
//! on the very stack it would unmap: then the whole hub is leaked the same way.

use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Mutex;

use super::hub::{Hub, CURRENT, TORN_DOWN};
use super::task::{Kind, TaskRef};
use super::warn::{warn_at, Warning};

/// Rounds of kill-and-run at teardown before survivors are abandoned.
const KILL_ROUNDS: usize = 64;

thread_local! {
    /// Its destructor tears the hub down at thread exit. Registered when the hub is created.
    static TEARDOWN: TeardownGuard = const { TeardownGuard };
}

/// What thread-exit teardown leaked on purpose (addresses of boxed `TaskRef`s and of whole
/// hubs), kept so the memory stays reachable. Never read.
static GRAVEYARD: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn bury(addr: usize) {
    GRAVEYARD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(addr);
}

/// Registers the thread-exit guard (touching a thread-local with a destructor registers it).
///
/// # Errors
/// If the thread is already exiting: a hub created now could never be torn down.
pub(super) fn arm() -> io::Result<()> {
    TEARDOWN.try_with(|_| ()).map_err(|_| {
        io::Error::other("the thread is exiting: a hub created now could never be torn down")
    })
}

struct TeardownGuard;

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let p = CURRENT.with(Cell::get);
        if p.is_null() {
            return;
        }
        // From here on nothing can reach the hub: a destructor that blocks or spawns gets the
        // "torn down" panic instead of a switch.
        TORN_DOWN.with(|t| t.set(true));
        CURRENT.with(|c| c.set(ptr::null()));
        // SAFETY: `p` came from CURRENT, which points at this thread's boxed hub until the
        // `Box::from_raw` below (invariant 7: only teardown frees it).
        let hub = unsafe { &*p };
        if !ptr::eq(hub.current.get(), hub.main.core()) {
            // The thread is exiting from a worker or the hub context (`process::exit` there): we
            // may be running on the shared or the hub stack. Resume nothing, free nothing.
            warn_at!(Warning::Abandoned, error, {}
                "greenhub: the thread exited from inside a greenlet or the hub; its hub and its {} \
                 greenlet(s) are abandoned without running their destructors (use hub::run to \
                 have every destructor run)",
                hub.live.borrow().len()
            );
            bury(p as usize);
            return;
        }
        let abandoned = hub.abandon_at_exit();
        // The main greenlet's greenlet-local values, on the thread's own stack (they are values;
        // resuming nothing, this runs no greenlet).
        super::context::finish_main(hub.main.core());
        // SAFETY: `p` came from Box::into_raw in `Hub::install`. No worker will ever be resumed:
        // the unstarted were dropped, the started abandoned and leaked with everything they own
        // (`abandon_at_exit`); the hub context is suspended and never resumed again; CURRENT no
        // longer hands the pointer out. So nothing that runs refers to the hub (invariants 4, 7).
        let hub = unsafe { Box::from_raw(p.cast_mut()) };
        if abandoned {
            // The occupant's live frames are on the shared stack: keep the stacks mapped (only
            // their touched pages cost memory), so what those frames own stays where its
            // pointers are — leaked, not freed under them. The guard slot is released.
            let Hub {
                overflow,
                stacks,
                hub_stack,
                ..
            } = *hub;
            drop(overflow);
            // Buried, not forgotten: the region table (and the occupants' handles in it) stays
            // reachable, so nothing is freed under the abandoned frames and leak checkers see it
            // as kept on purpose.
            bury(Box::into_raw(Box::new((stacks, hub_stack))) as usize);
        } else {
            drop(hub);
        }
    }
}

impl Hub {
    /// Kills every live worker and runs them until they have unwound. Main greenlet only.
    pub(crate) fn kill_all(&self) {
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
            let victims: Vec<TaskRef> = self.live.borrow().iter().cloned().collect();
            if victims.is_empty() {
                break;
            }
            for v in &victims {
                self.request_kill(v);
            }
            // Let the killed run and unwind; they are all ready now, ahead of us. A killed greenlet
            // unwinds in one go (nothing switches away while unwinding), so one pass is enough for
            // all but those that catch the kill; each of those yields once per blocking point
            // (`sched.rs`), so the bound keeps a catch-all loop from holding teardown for long.
            let bound = 2 * victims.len() + 16;
            drop(victims);
            let mut spins = 0;
            while !self.ready.is_empty() && spins < bound {
                self.yield_now();
                spins += 1;
            }
        }
        let survivors: Vec<String> = self
            .live
            .borrow()
            .iter()
            .map(|t| t.core().describe())
            .collect();
        if !survivors.is_empty() {
            warn_at!(Warning::Abandoned, error, {}
                "greenhub: {} greenlet(s) would not die after {KILL_ROUNDS} kills and are abandoned \
                 without running their destructors: {}",
                survivors.len(),
                survivors.join(", ")
            );
            let abandoned: Vec<TaskRef> = self.live.borrow_mut().drain();
            for t in &abandoned {
                t.core().abandon();
                // Its region names it as occupant without owning it; it will never run again.
                self.vacate_region(t.core());
            }
        }
        self.tearing_down.set(false);
    }
}

impl Hub {
    /// Thread-exit teardown (see the module docs): drops the closures of greenlets that never
    /// started, abandons and leaks the started ones without resuming them, and warns about those.
    /// Called with the hub already unreachable through `CURRENT`, from the main greenlet. Returns
    /// whether it abandoned any.
    fn abandon_at_exit(&self) -> bool {
        let tasks: Vec<TaskRef> = self.live.borrow_mut().drain();
        let mut abandoned = Vec::new();
        for t in tasks {
            let core = t.core();
            debug_assert!(core.kind == Kind::Worker);
            if core.is_finished() {
                continue;
            }
            if !core.started.get() {
                core.kill.set(true);
                core.finish();
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| t.discard())) {
                    warn_at!(Warning::Abandoned, error, {}
                        "greenhub: dropping the closure of {} (never started) at thread exit \
                         panicked: {}",
                        core.describe(),
                        super::task::panic_message(&*p)
                    );
                }
                continue;
            }
            core.abandon();
            abandoned.push(core.describe());
            // Leaked on purpose: its frames may refer to anything it owns (module docs).
            bury(Box::into_raw(Box::new(t)) as usize);
        }
        if !abandoned.is_empty() {
            warn_at!(Warning::Abandoned, warn, {}
                "greenhub: the thread exited without hub::run with {} greenlet(s) still alive: {}; \
                 they are abandoned, not resumed (a thread-local they borrow may already be \
                 destroyed), so their destructors do not run and their memory is leaked. Run the \
                 thread's work inside hub::run (or a Runtime) to have every greenlet killed and \
                 unwound first",
                abandoned.len(),
                abandoned.join(", ")
            );
        }
        !abandoned.is_empty()
    }
}
