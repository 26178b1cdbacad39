//! Teardown: killing what is left when `hub::run` returns or the thread exits, and freeing the hub.
//!
//! `hub::run(f)` kills every greenlet still alive when `f` returns ([`Hub::kill_all`]). At thread
//! exit a thread-local guard does the same without `run`, then frees the hub (rt invariant 7: the
//! hub outlives every frame that refers to it). Greenlets that refuse to die (a destructor that
//! blocks forever and swallows every kill) are abandoned after [`KILL_ROUNDS`] rounds with an error
//! naming them.

use std::cell::Cell;
use std::io;
use std::ptr;
use std::rc::Rc;

use super::hub::{Hub, CURRENT, TORN_DOWN};
use super::task::{Kind, Task};

/// Rounds of kill-and-run at teardown before survivors are abandoned.
const KILL_ROUNDS: usize = 64;

thread_local! {
    /// Its destructor tears the hub down at thread exit. Registered when the hub is created.
    static TEARDOWN: TeardownGuard = const { TeardownGuard };
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
        // SAFETY: a non-null CURRENT points at the boxed hub of this thread, alive until the
        // `Box::from_raw` below (invariant 7: only teardown frees it).
        let hub = unsafe { &*p };
        hub.kill_all();
        // The main greenlet's greenlet-local values, on the thread's own stack.
        super::context::finish_main(hub.main.core());
        TORN_DOWN.with(|t| t.set(true));
        CURRENT.with(|c| c.set(ptr::null()));
        // SAFETY: `p` came from Box::into_raw in `Hub::install`; every worker has been killed and
        // unwound (or abandoned, never to be resumed), the hub context is suspended and never
        // resumed again, and CURRENT no longer hands the pointer out, so nothing refers to it
        // (invariants 4 and 7).
        drop(unsafe { Box::from_raw(p.cast_mut()) });
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
                t.core().abandon();
            }
        }
        self.tearing_down.set(false);
    }
}
