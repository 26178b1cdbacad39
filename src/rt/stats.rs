//! The hub's counters (read by `hub::stats()`): separate cells, so a bump is one add.

use std::cell::Cell;

/// The hub's counters: separate cells so a bump is one add, not a copy of `Stats`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) switches: Cell<u64>,
    pub(crate) slice_saves: Cell<u64>,
    pub(crate) slice_restores: Cell<u64>,
    pub(crate) bytes_copied: Cell<u64>,
    pub(crate) spawned: Cell<u64>,
    pub(crate) finished: Cell<u64>,
    pub(crate) ticks: Cell<u64>,
    pub(crate) polls: Cell<u64>,
    pub(crate) slice_sizes: [Cell<u64>; 16],
}

/// The `slice_size_histogram` entry for a save of `n` bytes: floor(log2 n), capped at 15.
#[inline(always)]
pub(super) fn size_bucket(n: usize) -> usize {
    (usize::BITS - 1).saturating_sub(n.leading_zeros()).min(15) as usize
}

#[inline(always)]
pub(super) fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl super::hub::Hub {
    /// The counters, for `hub::stats()`.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Iterations of the loop so far, and whether a greenlet (not the hub context) is running:
    /// what `io::fd::fair_point` needs to tell a greenlet that has held the hub since the loop
    /// last ran.
    pub(crate) fn loop_ticks(&self) -> (u64, bool) {
        (self.counters.ticks.get(), !self.current.get().is_null())
    }

    /// Stack regions mapped.
    pub(crate) fn stack_regions(&self) -> usize {
        self.stacks.len()
    }

    /// Stack regions whose pages were given back.
    pub(crate) fn stack_releases(&self) -> u64 {
        self.stacks.releases.get()
    }

    /// Heap bytes reserved by the slice buffers of live greenlets.
    pub(crate) fn slice_bytes_reserved(&self) -> u64 {
        self.live
            .borrow()
            .iter()
            .map(|t| t.core().slice.capacity() as u64)
            .sum()
    }
}
