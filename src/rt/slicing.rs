//! Slicing: making a worker the occupant of the shared stack, copying the previous occupant's live
//! slice out and the incoming worker's back in. Runs only in the hub context, on the hub's own
//! stack (invariant 8), so the bytes being overwritten belong to nobody running.
//!
//! ```text
//!   shared stack                       heap
//!   ┌──────────────────┐ top           ┌─────────────────────┐
//!   │ B's live frames  │  save ──────► │ B.slice ([B.sp,top)) │
//!   ├──────────────────┤ B.sp          └─────────────────────┘
//!   │ ...              │               ┌─────────────────────┐
//!   │                  │ ◄──── restore │ A.slice ([A.sp,top)) │   then A is the occupant
//!   └──────────────────┘               └─────────────────────┘
//! ```
//!
//! Resuming the occupant again copies nothing (the lazy path); a worker that has never run gets a
//! fresh frame at the top instead of a restore.

use std::ptr;
use std::rc::Rc;

use super::hub::{Hub, WORKER_ENTRY};
use super::stats::{add, size_bucket};
use super::task::{Core, Task};
use crate::sys::switch as arch;

impl Hub {
    /// needed. Runs on the hub's stack.
    #[inline]
    pub(super) fn make_occupant(&self, task: &Rc<dyn Task>, core: &Core) {
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
                !oc.is_finished(),
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
                .set(unsafe { arch::init_frame(top, WORKER_ENTRY, 0) });
            core.started.set(true);
        }
        self.occupant.set(Some(task.clone()));
        self.occupant_core.set(core);
    }
}
