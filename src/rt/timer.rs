//! Deadlines: for `sleep`, `spawn_later`, `join_timeout`, socket timeouts and timeout scopes.
//!
//! A binary min-heap of `(deadline, sequence, gen, greenlet)`. Every timer belongs to one park of
//! one greenlet (the greenlet parks with a deadline, or waits for its `spawn_later` start), and a
//! greenlet parks on at most one deadline at a time, so a timer needs no key and no table of its
//! own: it is *current* while its greenlet is still parked in the park numbered `gen`
//! ([`TimerTarget::is_current`]), and stale from the moment that park ends for any other reason
//! (woken, killed, the greenlet finished). Nothing is removed when a park ends: the owner only
//! counts the entry stale ([`Timers::forget`]), and stale entries are dropped when they surface or
//! when the heap is rebuilt. Costs, with n entries in the heap:
//!
//! | operation | cost |
//! | --- | --- |
//! | [`Timers::insert`] | O(log n): one heap push |
//! | [`Timers::forget`] (the park ended otherwise) | O(1), plus a rebuild when stale entries are more than half the heap (amortised O(1)) |
//! | [`Timers::pop_expired`] | O(log n) per fired or stale entry |
//! | [`Timers::next_deadline`] | O(1), plus O(log n) for each stale entry it discards on the way |
//!
//! A pending timer costs its 32-byte heap entry and nothing else: the deadline is stored as
//! nanoseconds since the hub's epoch (8 bytes instead of an `Instant`'s 16), next to a 32-bit
//! sequence number, the park number and the greenlet's handle. The rebuild keeps the heap within
//! twice the current timers (plus a small floor), so a stale entry's handle keeps a finished
//! greenlet's control block (never its closure or its result: those are dropped when it
//! finishes, or is killed before it starts) only until then.
//!
//! Timers with equal deadlines fire in insertion order (the sequence number breaks ties; it wraps
//! after 2^32 insertions, which can only reorder timers due at the same nanosecond).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a timer wakes: it says whether the park the timer was armed for is still in progress.
pub(crate) trait TimerTarget {
    /// Whether the park numbered `gen` is still in progress (the timer is current).
    fn is_current(&self, gen: u32) -> bool;
    /// Whether dropping this handle would free the target (its drop is then deferred until the
    /// caller has released its borrow of the timers: see [`Timers::take_dead`]).
    fn is_last(&self) -> bool;
}

/// One heap entry. Ordered so that `BinaryHeap` (a max-heap) pops the earliest deadline first,
/// then the lowest sequence number.
struct Entry<T> {
    at: u64,
    seq: u32,
    gen: u32,
    target: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the max of the heap is the earliest deadline (then the oldest insertion).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A queue of deadlines, each for one park of one target.
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Entry<T>>,
    /// Deadlines are stored as nanoseconds since this instant (earlier ones as 0: already due).
    epoch: Instant,
    next_seq: u32,
    /// Entries in the heap known to be stale (their park ended without them): counted by
    /// `forget`, uncounted when they surface, reset by a rebuild. An estimate, never below the
    /// truth by more than the entries whose park was ended by a wake the owner has not yet seen.
    stale: usize,
    /// Last handles of stale entries, dropped by the caller outside its borrow of the timers
    /// ([`take_dead`](Self::take_dead)).
    dead: Vec<T>,
}

/// Below this many heap entries a rebuild is not worth it.
const COMPACT_FLOOR: usize = 64;

/// Capacity the heap keeps when it empties (more is a burst's, given back).
const KEEP: usize = 4096;

impl<T: TimerTarget> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            epoch: Instant::now(),
            next_seq: 0,
            stale: 0,
            dead: Vec::new(),
        }
    }

    /// Entries in the heap, current or stale.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether the heap holds nothing at all (no timer, not even a stale one).
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// `t` as nanoseconds since the epoch: 0 for earlier instants, saturating after 584 years.
    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.epoch) {
            Some(d) => d
                .as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(d.subsec_nanos())),
            None => 0,
        }
    }

    /// Adds a timer that expires at `deadline` for the park numbered `gen` of `target`.
    pub(crate) fn insert(&mut self, deadline: Instant, target: T, gen: u32) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let at = self.nanos(deadline);
        self.heap.push(Entry {
            at,
            seq,
            gen,
            target,
        });
    }

    /// The park a timer was armed for ended without the timer (the greenlet was woken, killed, or
    /// killed before its delayed start): its entry is stale. Rebuilds the heap when stale entries
    /// are more than half of it.
    pub(crate) fn forget(&mut self) {
        self.stale += 1;
        if self.heap.len() > COMPACT_FLOOR && self.stale > self.heap.len() / 2 {
            self.compact();
        }
    }

    /// Rebuilds the heap without its stale entries. O(n).
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.heap).into_vec();
        let mut keep = Vec::with_capacity(old.len() / 2 + 1);
        for e in old {
            if e.target.is_current(e.gen) {
                keep.push(e);
            } else if e.target.is_last() {
                self.dead.push(e.target);
            }
        }
        self.heap = BinaryHeap::from(keep);
        self.stale = 0;
        if self.heap.capacity() > KEEP && self.heap.capacity() / 4 > self.heap.len() {
            // A burst (a million cancelled delayed spawns) is over: give its memory back.
            self.heap.shrink_to(self.heap.len().max(KEEP));
        }
    }

    /// Drops the earliest entry, which the caller found stale.
    fn pop_stale(&mut self) {
        if let Some(e) = self.heap.pop() {
            if e.target.is_last() {
                self.dead.push(e.target);
            }
        }
        self.stale = self.stale.saturating_sub(1);
        if self.heap.is_empty() && self.heap.capacity() > KEEP {
            self.heap = BinaryHeap::new();
        }
    }

    /// The last handles of stale entries dropped since the last call, for the caller to drop once
    /// it no longer borrows the timers (dropping a greenlet's last handle must not happen inside
    /// that borrow). Allocates nothing when there are none.
    pub(crate) fn take_dead(&mut self) -> Vec<T> {
        if self.dead.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut self.dead)
        }
    }

    /// The earliest current deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(e) = self.heap.peek() {
            if e.target.is_current(e.gen) {
                return Some(self.epoch + Duration::from_nanos(e.at));
            }
            self.pop_stale();
        }
        None
    }

    /// Removes and returns the target (and park number) of the earliest current timer whose
    /// deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(T, u32)> {
        let now = self.nanos(now);
        while let Some(e) = self.heap.peek() {
            if !e.target.is_current(e.gen) {
                self.pop_stale();
                continue;
            }
            if e.at > now {
                return None;
            }
            let e = self.heap.pop().expect("greenhub: the heap had a top entry");
            if self.heap.is_empty() && self.heap.capacity() > KEEP {
                self.heap = BinaryHeap::new();
            }
            return Some((e.target, e.gen));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A test target: a label and the number of its owner's current park (`u32::MAX`: not parked).
    #[derive(Clone)]
    struct T(char, Rc<Cell<u32>>);

    impl TimerTarget for T {
        fn is_current(&self, gen: u32) -> bool {
            self.1.get() == gen
        }
        fn is_last(&self) -> bool {
            Rc::strong_count(&self.1) == 1
        }
    }

    fn parked(c: char) -> T {
        T(c, Rc::new(Cell::new(0)))
    }

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let mut t = Timers::new();
        let now = Instant::now();
        t.insert(now + Duration::from_millis(3), parked('c'), 0);
        t.insert(now + Duration::from_millis(1), parked('a'), 0);
        t.insert(now + Duration::from_millis(3), parked('d'), 0);
        t.insert(now + Duration::from_millis(2), parked('b'), 0);
        assert!(t.pop_expired(now).is_none());
        let later = now + Duration::from_millis(10);
        let fired: String = std::iter::from_fn(|| t.pop_expired(later).map(|(x, _)| x.0)).collect();
        assert_eq!(fired, "abcd");
        assert!(t.is_empty());
    }

    #[test]
    fn never_early_to_the_nanosecond() {
        let mut t = Timers::new();
        let at = Instant::now() + Duration::from_millis(5);
        t.insert(at, parked('a'), 0);
        assert!(t.pop_expired(at - Duration::from_nanos(1)).is_none());
        assert_eq!(t.next_deadline(), Some(at));
        assert!(t.pop_expired(at).is_some());
    }

    #[test]
    fn a_deadline_before_the_epoch_is_due_at_once() {
        let early = Instant::now();
        let mut t = Timers::new();
        t.insert(early, parked('a'), 0);
        assert!(t.pop_expired(Instant::now()).is_some());
    }

    #[test]
    fn stale_entries_never_fire_and_are_dropped_outside() {
        let mut t = Timers::new();
        let now = Instant::now();
        let a = parked('a');
        let b = parked('b');
        t.insert(now, a.clone(), 0);
        t.insert(now, b.clone(), 0);
        // a's park ends otherwise (its number moves on), and a new park of a arms a new timer.
        a.1.set(1);
        t.forget();
        t.insert(now + Duration::from_millis(1), a.clone(), 1);
        let fired: Vec<(char, u32)> =
            std::iter::from_fn(|| t.pop_expired(now + Duration::from_secs(1)))
                .map(|(x, g)| (x.0, g))
                .collect();
        assert_eq!(fired, [('b', 0), ('a', 1)]);
        // The stale entry was not the last handle (we hold `a`), so nothing was deferred.
        assert!(t.take_dead().is_empty());
        // An entry whose owner is gone is handed back to be dropped by the caller.
        let c = parked('c');
        t.insert(now, c.clone(), 0);
        c.1.set(u32::MAX);
        drop(c);
        assert!(t.pop_expired(now).is_none());
        assert_eq!(t.take_dead().len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn rebuilds_bound_stale_entries() {
        let mut t = Timers::new();
        let now = Instant::now();
        let targets: Vec<T> = (0..100_000u64)
            .map(|i| {
                let x = parked('x');
                t.insert(now + Duration::from_nanos(i), x.clone(), 0);
                x
            })
            .collect();
        for x in &targets[..99_000] {
            x.1.set(u32::MAX);
            t.forget();
        }
        assert!(
            t.len() <= 2 * 1_000 + COMPACT_FLOOR,
            "heap kept {} entries",
            t.len()
        );
        let fired = std::iter::from_fn(|| t.pop_expired(now + Duration::from_secs(1))).count();
        assert_eq!(fired, 1_000);
        assert!(t.is_empty());
    }

    #[test]
    fn a_million_pending_deadlines() {
        let mut t = Timers::new();
        let now = Instant::now();
        let mut x = 7u64;
        let mut targets = Vec::with_capacity(1_000_000);
        for i in 0..1_000_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let tg = T(if i % 2 == 0 { 'e' } else { 'o' }, Rc::new(Cell::new(0)));
            t.insert(now + Duration::from_nanos(x >> 40), tg.clone(), 0);
            targets.push(tg);
        }
        // Every other park ends otherwise; the rest fire in deadline order.
        for tg in targets.iter().step_by(2) {
            tg.1.set(1);
            t.forget();
        }
        let end = now + Duration::from_secs(1 << 30);
        let mut last = None;
        let mut fired = 0;
        while let Some(d) = t.next_deadline() {
            assert!(last.is_none_or(|l| l <= d), "deadlines out of order");
            last = Some(d);
            let (tg, _) = t.pop_expired(end).expect("an expired timer");
            assert_eq!(tg.0, 'o', "a stale timer fired");
            fired += 1;
        }
        assert_eq!(fired, 500_000);
        assert!(t.is_empty());
    }
}
