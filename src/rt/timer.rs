//! Deadlines: for `sleep`, `spawn_later`, `join_timeout`, socket timeouts and timeout scopes.
//!
//! A binary min-heap of `(deadline, sequence, key)` over a slab that owns each pending timer's
//! action. Costs, with n pending timers:
//!
//! | operation | cost |
//! | --- | --- |
//! | [`Timers::insert`] | O(log n): one heap push, one slab insert |
//! | [`Timers::cancel`] | O(1): the slab entry is removed; its heap entry becomes stale and is skipped when it surfaces |
//! | [`Timers::pop_expired`] | O(log n) per fired or stale entry |
//! | [`Timers::next_deadline`] | O(1), plus O(log n) for each stale entry it discards on the way |
//!
//! Cancelled timers leave stale heap entries behind (socket timeouts are mostly cancelled, so this is
//! the common case). When stale entries outnumber live ones and the heap holds more than a few
//! thousand, the heap is rebuilt from the slab in O(n), which keeps memory proportional to the live
//! timers and the amortised cost of a cancel O(1). A million pending deadlines cost about 72 bytes
//! each with a waiter as the action (32 in the heap, 40 in the slab) and 20 comparisons per insert or fire.
//!
//! Timers with equal deadlines fire in insertion order (the sequence number breaks ties).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::Instant;

use slab::Slab;

/// Identifies a pending timer, for [`Timers::cancel`]. Stale keys (fired or cancelled timers, or
/// slab slots reused since) are recognised by their sequence number and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    /// Sequence numbers start at 1, so `Option<TimerKey>` is two words (it lives in a parked
    /// greenlet's frame).
    seq: NonZeroU64,
}

/// A pending timer's slab entry. Its deadline is only in the heap (the rebuild filters the heap
/// itself), so each pending timer pays for it once.
struct Pending<A> {
    seq: u64,
    action: A,
}

/// A queue of deadlines, each carrying an action of type `A` handed back when it expires.
pub(crate) struct Timers<A> {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Slab<Pending<A>>,
    next_seq: u64,
}

/// Below this many heap entries a rebuild is not worth it.
const COMPACT_FLOOR: usize = 4096;

impl<A> Timers<A> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            slots: Slab::new(),
            next_seq: 1,
        }
    }

    /// Pending (not cancelled, not fired) timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no timer is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a timer that expires at `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, action: A) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.slots.insert(Pending { seq, action });
        self.heap.push(Reverse((deadline, seq, slot)));
        TimerKey {
            slot,
            seq: NonZeroU64::new(seq).expect("greenhub: timer sequence numbers start at 1"),
        }
    }

    /// Cancels a pending timer and returns its action; `None` if it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<A> {
        match self.slots.get(key.slot) {
            Some(p) if p.seq == key.seq.get() => {}
            _ => return None,
        }
        let action = self.slots.remove(key.slot).action;
        if self.slots.is_empty() && self.slots.capacity() > COMPACT_FLOOR {
            // Nothing pending: give back the memory of a burst (a million cancelled delayed
            // spawns), which the slab and the heap would otherwise keep for the hub's life.
            self.slots = Slab::new();
            self.heap = BinaryHeap::new();
        } else if self.heap.len() > COMPACT_FLOOR && self.heap.len() > 2 * self.slots.len() {
            self.compact();
        }
        Some(action)
    }

    /// Rebuilds the heap without its stale entries. O(n).
    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap
            .retain(|&Reverse((_, seq, slot))| matches!(slots.get(slot), Some(p) if p.seq == seq));
        self.heap.shrink_to_fit();
    }

    /// Whether a heap entry still names a pending timer.
    fn is_live(&self, seq: u64, slot: usize) -> bool {
        matches!(self.slots.get(slot), Some(p) if p.seq == seq)
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq, slot))) = self.heap.peek() {
            if self.is_live(seq, slot) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the action of the earliest timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<A> {
        while let Some(&Reverse((deadline, seq, slot))) = self.heap.peek() {
            if !self.is_live(seq, slot) {
                self.heap.pop();
                continue;
            }
            if deadline > now {
                return None;
            }
            self.heap.pop();
            return Some(self.slots.remove(slot).action);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let mut t = Timers::new();
        let now = Instant::now();
        t.insert(now + Duration::from_millis(3), 'c');
        t.insert(now + Duration::from_millis(1), 'a');
        t.insert(now + Duration::from_millis(3), 'd');
        t.insert(now + Duration::from_millis(2), 'b');
        assert_eq!(t.pop_expired(now), None);
        let later = now + Duration::from_millis(10);
        let fired: String = std::iter::from_fn(|| t.pop_expired(later)).collect();
        assert_eq!(fired, "abcd");
        assert!(t.is_empty());
    }

    #[test]
    fn cancel_is_exact_and_idempotent() {
        let mut t = Timers::new();
        let now = Instant::now();
        let a = t.insert(now, 1);
        let b = t.insert(now, 2);
        assert_eq!(t.cancel(a), Some(1));
        assert_eq!(t.cancel(a), None);
        // The slot of `a` is reused; the stale key must not cancel the new timer.
        let c = t.insert(now, 3);
        assert_eq!(t.cancel(a), None);
        assert_eq!(t.pop_expired(now), Some(2));
        assert_eq!(t.pop_expired(now), Some(3));
        assert_eq!(t.cancel(b), None);
        assert_eq!(t.cancel(c), None);
    }

    #[test]
    fn compaction_bounds_stale_entries() {
        let mut t = Timers::new();
        let now = Instant::now();
        let keys: Vec<_> = (0..100_000u64)
            .map(|i| t.insert(now + Duration::from_nanos(i), i))
            .collect();
        for k in &keys[..99_000] {
            t.cancel(*k);
        }
        assert_eq!(t.len(), 1_000);
        assert!(
            t.heap.len() <= 2 * COMPACT_FLOOR.max(2 * t.len()),
            "heap kept {} entries",
            t.heap.len()
        );
        let fired: Vec<u64> =
            std::iter::from_fn(|| t.pop_expired(now + Duration::from_secs(1))).collect();
        assert_eq!(fired, (99_000..100_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_million_pending_deadlines() {
        let mut t = Timers::new();
        let now = Instant::now();
        let mut x = 7u64;
        let mut keys = Vec::with_capacity(1_000_000);
        for i in 0..1_000_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            keys.push(t.insert(now + Duration::from_nanos(x >> 40), i));
        }
        assert_eq!(t.len(), 1_000_000);
        // Cancel every other one; the rest fire in deadline order.
        for k in keys.iter().step_by(2) {
            assert!(t.cancel(*k).is_some());
        }
        assert_eq!(t.len(), 500_000);
        let end = now + Duration::from_secs(1 << 30);
        let mut last = None;
        let mut fired = 0;
        while let Some(d) = t.next_deadline() {
            assert!(last.is_none_or(|l| l <= d), "deadlines out of order");
            last = Some(d);
            let i = t.pop_expired(end).expect("an expired timer");
            assert_eq!(i % 2, 1, "a cancelled timer fired");
            fired += 1;
        }
        assert_eq!(fired, 500_000);
        assert!(t.is_empty());
    }
}
