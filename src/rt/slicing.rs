//! Slicing: making a worker the occupant of its stack region, copying the region's previous
//! occupant's live slice out and the incoming worker's back in. (Which region a worker is bound to
//! is `stacks.rs`'s policy; with a region of its own, a worker is always the occupant and nothing
//! is copied.) Runs only in the hub context, on the hub's own
//! stack (invariant 8), so the bytes being overwritten belong to nobody running.
//!
//! ```text
//!   one region                         heap
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
use std::time::Instant;

use super::hub::{Hub, WORKER_ENTRY};
use super::stats::{add, size_bucket};
use super::task::{Core, NO_REGION};
use crate::sys::switch as arch;

impl Hub {
    /// Makes `task` (a worker) the occupant of its stack region — binding it to one first if it
    /// has never run — evicting and restoring slices as needed. Runs on the hub's stack.
    #[inline]
    pub(super) fn make_occupant(&self, core: &Core) {
        if !self.enter_in_place(core) {
            self.evict_and_enter(core);
        }
    }

    /// The lazy path of `make_occupant`: if worker `core` is the occupant of its region (its
    /// bytes are still in place), records the resume (the region's clock, the guard page the
    /// overflow handler reads) and returns true; otherwise changes nothing and returns false.
    /// Copies nothing, so any context may call it (the direct yield does, from a greenlet).
    #[inline(always)]
    pub(super) fn enter_in_place(&self, core: &Core) -> bool {
        let i = core.region.get();
        if i == NO_REGION {
            return false;
        }
        let regions = self.stacks.regions();
        let r = &regions[i as usize];
        if !ptr::eq(r.occupant_core.get(), core) {
            return false;
        }
        r.last_resume.set(self.counters.switches.get());
        self.running_guard.set(r.guard);
        true
    }

    /// The slow path of `make_occupant`: bind a new worker to a region, copy the region's occupant
    /// out and `core`'s worker in.
    #[inline(never)]
    fn evict_and_enter(&self, core: &Core) {
        self.bind(core);
        let regions = self.stacks.regions();
        let r = &regions[core.region.get() as usize];
        r.last_resume.set(self.counters.switches.get());
        self.running_guard.set(r.guard);
        let top = r.top;
        if let Some(oc) = r.occupant() {
            debug_assert!(
                !oc.is_finished(),
                "a finished greenlet still occupies the stack"
            );
            debug_assert!(r.contains(oc.sp.get() as usize));
            // SAFETY: the occupant is suspended (only the hub context runs) and alive (`live`
            // owns it, invariant 9), its live slice is [sp, top) of this region, and we run on
            // the hub's stack (invariants 1 and 8).
            let n = unsafe { oc.slice.save(oc.sp.get(), top) };
            add(&self.counters.slice_saves, 1);
            add(&self.counters.slice_sizes[size_bucket(n)], 1);
            add(&self.counters.bytes_copied, n as u64);
        }
        if core.started.get() {
            debug_assert!(r.contains(core.sp.get() as usize));
            // SAFETY: the slice was saved from [sp, top) of this same region (a greenlet never
            // changes region); the previous occupant's bytes were just saved (or it finished), so
            // nothing uses those addresses; we run on the hub's stack (invariants 1 and 8).
            let n = unsafe { core.slice.restore(core.sp.get()) };
            add(&self.counters.slice_restores, 1);
            add(&self.counters.bytes_copied, n as u64);
        } else {
            // SAFETY: `top` is 64-byte aligned below the region's page-aligned top, and nothing
            // occupies the region now (its occupant, if any, was just saved) (invariant 8).
            core.sp
                .set(unsafe { arch::init_frame(top, WORKER_ENTRY, 0) });
            core.started.set(true);
        }
        r.occupant_core.set(core);
    }

    /// Binds a worker that has never run to a stack region (`stacks.rs`'s policy), if it is not
    /// bound yet.
    ///
    /// # Panics
    /// If no region can be had (see `Stacks::assign`).
    fn bind(&self, core: &Core) {
        if core.region.get() == NO_REGION {
            let exclusive = core.exclusive.get() || self.all_exclusive;
            match self.stacks.assign(exclusive, self.counters.switches.get()) {
                Ok((i, _guard)) => core.region.set(i),
                Err(e) => panic!("greenhub: no stack region for {}: {e}", core.describe()),
            }
        }
    }

    /// `make_occupant` for a worker that has never run, when a free region is at hand: binds it
    /// there, writes its fresh frame and makes it the occupant, copying nothing, and returns
    /// true; changes nothing and returns false without a free region. Any context but one
    /// running on a free region may call it (the direct switches do, from a greenlet; a
    /// finished worker, whose region may be free again, must not).
    pub(super) fn enter_fresh_in_place(&self, core: &Core) -> bool {
        if core.started.get() || core.region.get() != NO_REGION || !self.stacks.has_free() {
            return false;
        }
        self.bind(core); // from the free list: cannot fail, maps nothing
        let regions = self.stacks.regions();
        let r = &regions[core.region.get() as usize];
        debug_assert!(r.occupant().is_none(), "a free region has an occupant");
        r.last_resume.set(self.counters.switches.get());
        self.running_guard.set(r.guard);
        // SAFETY: `top` is 64-byte aligned below the region's page-aligned top; the region was
        // free (nobody bound to it, so no occupant's bytes and nobody running there: the caller
        // does not run on a free region), so the frame overwrites nothing in use (invariant 8).
        core.sp
            .set(unsafe { arch::init_frame(r.top, WORKER_ENTRY, 0) });
        core.started.set(true);
        r.occupant_core.set(core);
        true
    }

    /// A finished worker leaves its region: its bytes there are dead (nothing needs saving), and
    /// the region is free once nobody else is bound to it.
    pub(super) fn leave_region(&self, core: &Core) {
        let i = core.region.get();
        if i != NO_REGION {
            self.stacks.unbind(i, core);
        }
    }

    /// An abandoned worker (it will never run again) stops being its region's occupant, so the
    /// region stops naming a control block nobody may own any more; it stays bound (an
    /// exclusive region is still given to nobody else), as an abandoned greenlet's region always
    /// did. Its bytes there are dead.
    pub(super) fn vacate_region(&self, core: &Core) {
        let i = core.region.get();
        if i != NO_REGION {
            self.stacks.vacate(i, core);
        }
    }

    /// About to block: slices the occupants of regions idle for `stacks::COLD_AFTER` to the heap
    /// and drops those regions' pages (see `stacks.rs`). Hub context only.
    pub(super) fn evict_cold_regions(&self) {
        let Some(threshold) = self
            .stacks
            .cold_mark(Instant::now(), self.counters.switches.get())
        else {
            return;
        };
        self.stacks.evict_cold(threshold, |r, oc| {
            debug_assert!(r.contains(oc.sp.get() as usize));
            // SAFETY: the occupant is suspended (only the hub context runs) and alive (`live`
            // owns it, invariant 9), its live slice is [sp, top) of this region, and we run on
            // the hub's stack (invariants 1 and 8).
            let n = unsafe { oc.slice.save(oc.sp.get(), r.top) };
            add(&self.counters.slice_saves, 1);
            add(&self.counters.slice_sizes[size_bucket(n)], 1);
            add(&self.counters.bytes_copied, n as u64);
        });
    }

    /// Whether `sp` lies in the stack region of the running worker `core` (debug checks).
    #[cfg(debug_assertions)]
    pub(super) fn in_own_region(&self, core: &Core, sp: usize) -> bool {
        let i = core.region.get();
        i != NO_REGION && self.stacks.regions()[i as usize].contains(sp)
    }
}
