//! The hub's stack regions, and the policy that binds greenlets to them.
//!
//! # Why many regions
//!
//! With one shared stack every switch between two workers copies both live slices, and every
//! parked worker's addresses hold somebody else's bytes: a pointer into a parked greenlet's stack
//! held elsewhere (a scoped thread borrowing its locals, a pinned intrusive node) then reads or
//! writes another greenlet's bytes. Both problems go away for the greenlets that *run*, if each of
//! them has addresses nobody else uses. A hub therefore keeps a pool of regions (each a
//! [`Stack`]: the configured size, a guard page below), and binds every worker to one region when
//! it first runs. A started greenlet never changes region: its slice holds absolute addresses.
//! Several greenlets may be bound to one region; then they share it exactly as all workers shared
//! the single stack before — the occupant's bytes are in place, the others' are heap slices, and
//! resuming a non-occupant copies (`slicing.rs`).
//!
//! # The policy (binding at first run)
//!
//! A worker about to run for the first time gets, in this order:
//!
//! 1. an **exclusive** region if it asked for one ([`Builder::exclusive_stack`], or every greenlet
//!    under [`Config::exclusive_stacks`]): a free region or a new one, never given to anybody else
//!    while it lives — so its addresses are never shared (see the façade docs for what that makes
//!    sound);
//! 2. a **free** region (no live greenlet bound to it), the most recently freed first (its pages
//!    are warm);
//! 3. a **new** region, while the hub has fewer than `max_stacks` (default
//!    [`DEFAULT_MAX_STACKS`]) and the process is within its mapping budget;
//! 4. a **cold** region: the first, in a clock sweep of at most [`SWEEP`] regions, whose greenlets
//!    have not been resumed in the last `8 × regions` switches (at least [`COLD_MIN_SWITCHES`]) —
//!    its occupant is parked and has been for a while, so one eviction makes room and the
//!    newcomer then runs without copying for as long as the old occupant sleeps;
//! 5. failing that, the region under the clock hand: the load is spread evenly and the region's
//!    greenlets share it.
//!
//! So greenlets that run keep their own region while the hub has at most `max_stacks` of them,
//! and greenlets that wait pile up in regions as heap slices: a million idle greenlets cost their
//! slices plus `max_stacks` regions' touched pages, not a million regions.
//!
//! # Memory, and the limits it keeps inside
//!
//! - Address space: `max_stacks × (stack size + a page)`; 1024 × 8 MiB = 8 GiB of reservation
//!   (`MAP_NORESERVE`), nothing on a 47-bit address space.
//! - Mappings: a region is two VMAs (the guard splits it). The process maps at most
//!   `vm.max_map_count / 4` regions in all hubs together (half the map count, read once from
//!   `/proc/sys/vm/max_map_count`, default 65530), so a program keeps the other half; a hub
//!   that reaches the budget shares instead of mapping (exclusive requests then panic, clearly).
//! - RSS and page tables: a region costs the pages its greenlets touched plus one page-table page
//!   (`VmPTE`, 4 KiB per 2 MiB of touched address space); for 1024 regions with a few pages each,
//!   about 16 MiB at most per hub, whatever the number of greenlets.
//! - Giving back: when the hub is about to block in `epoll_wait`, every free region beyond the
//!   [`WARM_SPARES`] most recently freed has its pages dropped with `madvise(MADV_DONTNEED)`
//!   (7–14 µs each here, so never on the switch path), and RSS returns to its baseline after a
//!   burst. And a region none of whose greenlets ran for [`COLD_AFTER`] (500 ms; looked for every
//!   [`MARK_EVERY`], 100 ms, at most) has its occupant's live slice copied to the heap and its
//!   pages dropped too: a greenlet that waits long costs its slice (hundreds of bytes), not the
//!   pages of a region (8–12 KiB with the page-table page). Exclusive regions are never touched. (The kernel keeps the page-table pages of a released range; they are reused when the
//!   region is.)
//!
//! [`Builder::exclusive_stack`]: crate::greenlet::Builder::exclusive_stack
//! [`Config::exclusive_stacks`]: crate::hub::Config::exclusive_stacks

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::task::Core;
use crate::stack::Stack;

/// Default most regions a hub maps for greenlets that may share (exclusive ones come on top).
pub(crate) const DEFAULT_MAX_STACKS: usize = 1024;
/// Free regions whose pages are kept when the hub goes idle (the most recently freed).
pub(super) const WARM_SPARES: usize = 4;
/// Regions a cold sweep examines at most.
pub(super) const SWEEP: usize = 16;
/// A region is cold when not resumed in the last `max(8 × regions, this)` switches.
pub(super) const COLD_MIN_SWITCHES: u64 = 4096;
/// A region none of whose greenlets ran for this long has its occupant sliced to the heap and
/// its pages dropped when the hub is about to block.
pub(super) const COLD_AFTER: Duration = Duration::from_millis(500);
/// How often (at most) the hub looks for such regions.
pub(super) const MARK_EVERY: Duration = Duration::from_millis(100);

/// Regions mapped by every hub of the process, against [`budget`].
static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Most regions the whole process maps: a quarter of `vm.max_map_count` (each region is two VMAs).
fn budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(65_530);
        (count / 4).max(64)
    })
}

/// Pages of cache colour: the span of addresses over which a cache with 2,048 sets of 64-byte
/// lines (1 MiB 8-way, 2 MiB 16-way, ...) indexes its sets, divided into pages.
const COLORS: usize = 32;
const PAGE: usize = 4096;
/// What each region maps above its top so the top can sit at any colour: virtual space only
/// (never touched, so no memory and no page tables), inside the region's one mapping.
const COLOR_SPAN: usize = COLORS * PAGE;

/// How far below the top of its mapping region `i`'s top sits, so the hot frames at the tops of
/// different regions fall in different cache sets:
/// - within the page, one of 64 lines (13 is coprime to 64, so consecutive regions use all of them):
///   this spreads the sets of caches indexed inside a page (L1s);
/// - and the page's colour: `(i + i / 64) % 32`, whatever address the mapping got. With the
///   mappings' own spacing alone (`size` + a guard page, a multiple of the page) region `i` and
///   `i + 64` had the same colour and line, and at 1,000 regions sixteen tops shared each set of an
///   8-way cache indexed by address bits 6-16 (callgrind's simulated LL at 1 MiB: 6.5 misses per
///   echo round trip, 1.6 with the colours); now at most five do.
///
/// Costs up to `COLOR_SPAN` of address space per region, nothing else.
fn top_offset(i: usize, map_top: usize) -> usize {
    let line = i * 13 % 64;
    let color = (i + i / 64) % COLORS;
    let have = map_top / PAGE % COLORS;
    let pages = (have + COLORS - color) % COLORS;
    pages * PAGE + line * 64
}

/// One stack region.
pub(super) struct Region {
    stack: Stack,
    /// Where workers start: the mapping's top lowered by [`top_offset`], so the hot frames of
    /// different regions fall in different cache sets.
    pub(super) top: *mut u8,
    /// The core of the worker whose bytes are in the region; null if none. Not an owning
    /// handle (no reference count to move on every binding and eviction): the occupant is
    /// always a started, unfinished worker, which `Hub::live` owns, and `retire` unbinds it
    /// here before `live` lets go of it (invariant 9). Read with [`Region::occupant`].
    pub(super) occupant_core: Cell<*const Core>,
    /// Live (started, unfinished) greenlets bound here.
    bound: Cell<usize>,
    /// Bound to an exclusive greenlet: given to nobody else while it lives.
    exclusive: Cell<bool>,
    /// The hub's switch count at the last resume of a greenlet bound here.
    pub(super) last_resume: Cell<u64>,
    /// Pages may be present (not released since it was last used).
    committed: Cell<bool>,
    /// Start of the guard page (published as `Hub::running_guard` while a greenlet bound here
    /// runs).
    pub(super) guard: usize,
}

impl Region {
    /// The occupant's core, if any.
    #[inline(always)]
    pub(super) fn occupant(&self) -> Option<&Core> {
        let p = self.occupant_core.get();
        // SAFETY: a non-null `occupant_core` names a started, unfinished worker, owned by the
        // hub's `live` table until `retire` has cleared it here (see the field; invariant 9), and
        // the reference does not outlive this borrow of the region, which only the hub's thread
        // holds, across no switch (invariant 5).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Whether `addr` lies in the usable part of this region.
    pub(super) fn contains(&self, addr: usize) -> bool {
        self.stack.contains(addr)
    }
}

/// The pool. Touched only on the hub's thread (invariant 5).
pub(super) struct Stacks {
    regions: RefCell<Vec<Region>>,
    /// Regions with nothing bound, most recently freed last.
    free: RefCell<Vec<u32>>,
    /// Free regions at the bottom of `free` that were already released.
    released_free: Cell<usize>,
    /// The clock hand of the cold sweep.
    hand: Cell<usize>,
    size: usize,
    max: usize,
    /// Regions mapped by this hub (returned to the process budget on drop).
    mapped: Cell<usize>,
    /// `madvise` releases made, for the stats.
    pub(super) releases: Cell<u64>,
    /// `(when, switch count)` recorded at idle points, every [`MARK_EVERY`] at most, trimmed to
    /// what [`COLD_AFTER`] needs (see `cold_mark`).
    marks: RefCell<VecDeque<(Instant, u64)>>,
    /// Some occupied region may become cold: the hub bounds its poll by [`MARK_EVERY`] so the
    /// eviction happens even if nothing else wakes it. Set by every binding, recomputed by each
    /// sweep.
    pub(super) cold_pending: Cell<bool>,
}

impl Stacks {
    /// A pool with region 0 mapped.
    ///
    /// # Errors
    /// The OS error if region 0 cannot be mapped.
    pub(super) fn new(size: usize, max: usize) -> io::Result<Stacks> {
        let s = Stacks {
            regions: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            released_free: Cell::new(0),
            hand: Cell::new(0),
            size,
            max: max.max(1),
            mapped: Cell::new(0),
            releases: Cell::new(0),
            marks: RefCell::new(VecDeque::new()),
            cold_pending: Cell::new(false),
        };
        let i = s.map()?;
        s.free.borrow_mut().push(i);
        Ok(s)
    }

    /// The regions, to read (hold the borrow only across code that cannot switch).
    #[inline(always)]
    pub(super) fn regions(&self) -> std::cell::Ref<'_, Vec<Region>> {
        self.regions.borrow()
    }

    /// Regions mapped now.
    pub(super) fn len(&self) -> usize {
        self.regions.borrow().len()
    }

    /// Maps one more region and returns its index.
    fn map(&self) -> io::Result<u32> {
        if MAPPED.fetch_add(1, Ordering::Relaxed) >= budget() {
            MAPPED.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "the process has mapped its budget of {} greenlet stacks (a quarter of \
                     vm.max_map_count)",
                    budget()
                ),
            ));
        }
        let mapped = self.size.checked_add(COLOR_SPAN).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a greenlet stack of {} bytes cannot be mapped", self.size),
            )
        });
        let stack = match mapped.and_then(Stack::new) {
            Ok(s) => s,
            Err(e) => {
                MAPPED.fetch_sub(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.mapped.set(self.mapped.get() + 1);
        let mut regions = self.regions.borrow_mut();
        let i = regions.len();
        let top = stack
            .top()
            .wrapping_sub(top_offset(i, stack.top() as usize));
        let guard = stack.guard().start;
        regions.push(Region {
            guard,
            stack,
            top,
            occupant_core: Cell::new(ptr::null()),
            bound: Cell::new(0),
            exclusive: Cell::new(false),
            last_resume: Cell::new(0),
            committed: Cell::new(true),
        });
        Ok(i as u32)
    }

    /// Chooses the region a worker about to start runs in, following the policy in the module
    /// docs, and binds it there; `now` is the hub's switch count. Returns the region's index and
    /// the start of its guard page.
    ///
    /// # Errors
    /// Only when no region can be had at all: an exclusive request with no free region and no
    /// mapping left, or every region held by exclusive greenlets and no mapping left.
    #[inline]
    pub(super) fn assign(&self, exclusive: bool, now: u64) -> io::Result<(u32, usize)> {
        // The fast path (a spawn after a finish): the most recently freed region, one borrow each.
        let free = self.free.borrow_mut().pop();
        let i = match free {
            Some(i) => {
                let left = self.free.borrow().len();
                if self.released_free.get() > left {
                    self.released_free.set(left);
                }
                i
            }
            None => self.assign_slow(exclusive, now)?,
        };
        let regions = self.regions.borrow();
        let r = &regions[i as usize];
        r.committed.set(true);
        r.bound.set(r.bound.get() + 1);
        r.exclusive.set(exclusive);
        r.last_resume.set(now);
        self.cold_pending.set(true);
        Ok((i, r.guard))
    }

    /// Whether `assign` would take a free region (its fast path: no mapping, no sharing).
    #[inline(always)]
    pub(super) fn has_free(&self) -> bool {
        !self.free.borrow().is_empty()
    }

    /// Steps 1 (exclusive, nothing free), 3, 4 and 5 of the policy.
    #[cold]
    #[inline(never)]
    fn assign_slow(&self, exclusive: bool, now: u64) -> io::Result<u32> {
        if exclusive {
            return self.map();
        }
        if self.len() < self.max {
            return match self.map() {
                Ok(i) => Ok(i),
                Err(e) => self.sweep(now).ok_or(e),
            };
        }
        match self.sweep(now) {
            Some(i) => Ok(i),
            None => self.map(), // every region is exclusive: one more, over the cap
        }
    }

    /// Steps 4 and 5 of the policy: a cold region, else the first hot one under the clock hand;
    /// `None` if every region examined is exclusive.
    fn sweep(&self, now: u64) -> Option<u32> {
        let regions = self.regions.borrow();
        let n = regions.len();
        let cold_after = (8 * n as u64).max(COLD_MIN_SWITCHES);
        let mut fallback = None;
        let mut examined = 0;
        for _ in 0..n {
            let i = self.hand.get() % n;
            self.hand.set(i + 1);
            let r = &regions[i];
            if r.exclusive.get() {
                continue; // never shared, and not counted against the sweep
            }
            if now.saturating_sub(r.last_resume.get()) >= cold_after {
                return Some(i as u32);
            }
            fallback.get_or_insert(i as u32);
            examined += 1;
            if examined == SWEEP {
                break;
            }
        }
        // No cold region: share the first hot one, and start the next sweep just after it, so
        // successive newcomers spread over the regions instead of piling into one.
        if let Some(i) = fallback {
            self.hand.set(i as usize + 1);
        }
        fallback
    }

    /// Worker `core`, bound to region `i`, finished: its bytes there are dead (nothing needs
    /// saving), and the region is free once nobody else is bound to it.
    #[inline]
    pub(super) fn unbind(&self, i: u32, core: &Core) {
        let regions = self.regions.borrow();
        let r = &regions[i as usize];
        if ptr::eq(r.occupant_core.get(), core) {
            r.occupant_core.set(ptr::null());
        }
        let bound = r.bound.get() - 1;
        r.bound.set(bound);
        r.exclusive.set(false);
        drop(regions);
        if bound == 0 {
            self.free.borrow_mut().push(i);
        }
    }

    /// Region `i` stops naming `core` as its occupant (see `Hub::vacate_region`).
    pub(super) fn vacate(&self, i: u32, core: &Core) {
        let regions = self.regions.borrow();
        let r = &regions[i as usize];
        if ptr::eq(r.occupant_core.get(), core) {
            r.occupant_core.set(ptr::null());
        }
    }

    /// Drops the pages of the free regions beyond the [`WARM_SPARES`] most recently freed. Called
    /// when the hub is about to block.
    pub(super) fn release_idle(&self) {
        let free = self.free.borrow();
        let keep_from = free.len().saturating_sub(WARM_SPARES);
        if self.released_free.get() >= keep_from {
            return; // nothing new to release: one compare on the idle path
        }
        let regions = self.regions.borrow();
        for &i in &free[self.released_free.get()..keep_from] {
            let r = &regions[i as usize];
            if r.committed.replace(false) {
                r.stack.release();
                self.releases.set(self.releases.get() + 1);
            }
        }
        self.released_free.set(keep_from);
    }

    /// Called when the hub is about to block: every [`MARK_EVERY`] at most, records `(now,
    /// switches)` and returns the switch count of the newest mark at least [`COLD_AFTER`] old —
    /// regions last resumed before it have been idle that long — or `None` (most calls: nothing
    /// to do, a clock read and a compare).
    pub(super) fn cold_mark(&self, now: Instant, switches: u64) -> Option<u64> {
        let mut marks = self.marks.borrow_mut();
        if marks
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) < MARK_EVERY)
        {
            return None;
        }
        marks.push_back((now, switches));
        while marks.len() >= 2 && now.duration_since(marks[1].0) >= COLD_AFTER {
            marks.pop_front();
        }
        let &(t, s) = marks.front()?;
        (now.duration_since(t) >= COLD_AFTER).then_some(s)
    }

    /// Regions (not exclusive, with pages) whose greenlets were last resumed before switch
    /// `threshold`: their occupant, if any, is handed to `save` to slice and stops being the
    /// occupant, and their pages are dropped.
    pub(super) fn evict_cold(&self, threshold: u64, mut save: impl FnMut(&Region, &Core)) {
        let regions = self.regions.borrow();
        let mut pending = false;
        for r in regions.iter() {
            if r.exclusive.get() || r.bound.get() == 0 || !r.committed.get() {
                continue; // never shared / the free list's business / already released
            }
            if r.last_resume.get() >= threshold {
                pending = true; // resumed recently: it runs, or may go cold later
                continue;
            }
            if let Some(old) = r.occupant() {
                save(r, old);
                r.occupant_core.set(ptr::null());
            }
            r.committed.set(false);
            r.stack.release();
            self.releases.set(self.releases.get() + 1);
        }
        self.cold_pending.set(pending);
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        MAPPED.fetch_sub(self.mapped.get(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{top_offset, COLOR_SPAN, PAGE};

    /// The most region tops (each with its hot 8 lines below it) that share one set of a cache of
    /// 2,048 sets indexed by address bits 6-16, for mappings spaced `stride` apart.
    fn worst_set_load(
        regions: usize,
        stride: usize,
        offset: impl Fn(usize, usize) -> usize,
    ) -> u32 {
        let mut load = vec![0u32; 2048];
        let first_top = 0x7f00_0000_0000usize;
        for i in 0..regions {
            let map_top = first_top - i * stride;
            let top = map_top - offset(i, map_top);
            for line in 1..=8 {
                load[(top / 64 - line) % 2048] += 1;
            }
        }
        load.into_iter().max().unwrap()
    }

    #[test]
    fn region_tops_spread_over_the_sets_whatever_the_mappings_spacing() {
        let line_only = |i: usize, _| i * 13 % 64 * 64;
        for stride in [
            8 << 20 | PAGE,
            (256 << 10) + PAGE,
            3 * PAGE + COLOR_SPAN,
            1 << 30,
        ] {
            for off in [0, 5 * PAGE] {
                let stride = stride + off;
                assert!(
                    worst_set_load(1000, stride, top_offset) <= 5,
                    "stride {stride}: {}",
                    worst_set_load(1000, stride, top_offset)
                );
            }
        }
        // What the line offset alone gave with 8 MiB stacks: sixteen tops in one 8-way set.
        assert_eq!(worst_set_load(1000, 8 << 20 | PAGE, line_only), 16);
        for i in 0..4096 {
            for map_top in [0x7f00_0000_0000usize, 0x7f00_0001_3000] {
                let o = top_offset(i, map_top);
                assert!(
                    o < COLOR_SPAN,
                    "the offset stays inside the span mapped for it"
                );
                assert_eq!(
                    o % PAGE,
                    i * 13 % 64 * 64,
                    "L1 sets: the line within the page"
                );
                assert_eq!((map_top - o) % 16, 0, "the top stays 16-byte aligned");
            }
        }
    }
}
