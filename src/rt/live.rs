//! The hub's table of unfinished workers (`Hub::live`): what keeps a parked greenlet's control
//! block alive, one word per greenlet.
//!
//! A `Slab<TaskRef>` costs 16 bytes an entry (the vacant variant's link needs its own word beside
//! the pointer). Here an occupied slot is an `Option<TaskRef>` (8 bytes: the pointer's niche), and
//! vacant slots are kept on a separate stack of `u32` indices, which only vacancies use. When the
//! table empties, a burst's storage is given back.

#![deny(unsafe_code)]

use super::task::TaskRef;

/// Slots an empty table keeps room for.
const KEEP: usize = 256;

pub(crate) struct Live<T = TaskRef> {
    slots: Vec<Option<T>>,
    /// Indices of the vacant slots.
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Live<T> {
    fn default() -> Self {
        Live {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Live<T> {
    /// Stores `task`; returns its key.
    ///
    /// # Panics
    /// Past 2^32 - 1 live greenlets on one hub (each costs hundreds of bytes: far beyond memory).
    pub(crate) fn insert(&mut self, task: T) -> u32 {
        self.len += 1;
        if let Some(k) = self.free.pop() {
            debug_assert!(self.slots[k as usize].is_none());
            self.slots[k as usize] = Some(task);
            return k;
        }
        let k = u32::try_from(self.slots.len())
            .ok()
            .filter(|&k| k != u32::MAX)
            .expect("greenhub: more than 4 billion live greenlets on one hub");
        self.slots.push(Some(task));
        k
    }

    /// Removes and returns the task under `key`, if there is one.
    pub(crate) fn try_remove(&mut self, key: u32) -> Option<T> {
        let t = self.slots.get_mut(key as usize)?.take()?;
        self.len -= 1;
        if self.len == 0 && self.slots.capacity() > KEEP {
            // The end of a burst: give its storage back. A small table keeps its vacancies
            // instead (clearing them on every emptying cost a spawn + join 30 instructions).
            self.clear_storage();
        } else {
            self.free.push(key);
        }
        Some(t)
    }

    fn clear_storage(&mut self) {
        if self.slots.capacity() > KEEP {
            self.slots = Vec::new();
            self.free = Vec::new();
        } else {
            self.slots.clear();
            self.free.clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }

    /// Takes every task out, in key order.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let out: Vec<T> = self.slots.drain(..).flatten().collect();
        self.len = 0;
        self.clear_storage();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Live, KEEP};

    #[test]
    fn slots_are_one_word_and_an_emptied_table_gives_its_storage_back() {
        assert_eq!(
            std::mem::size_of::<Option<super::TaskRef>>(),
            std::mem::size_of::<usize>()
        );
        let mut live: Live<Box<usize>> = Live::default();
        let keys: Vec<u32> = (0..1000).map(|i| live.insert(Box::new(i))).collect();
        assert_eq!(live.len(), 1000);
        // Vacate half, then insert again: the vacated keys are reused, the table does not grow.
        for &k in keys.iter().step_by(2) {
            assert!(live.try_remove(k).is_some());
            assert!(
                live.try_remove(k).is_none(),
                "a key removed twice found something"
            );
        }
        let cap = live.slots.capacity();
        let again: Vec<u32> = (0..500).map(|i| live.insert(Box::new(i))).collect();
        assert_eq!(live.len(), 1000);
        assert_eq!(live.slots.capacity(), cap);
        assert!(live.free.is_empty());
        let mut reused = again.clone();
        reused.sort_unstable();
        assert_eq!(reused, keys.iter().copied().step_by(2).collect::<Vec<_>>());
        assert_eq!(live.iter().count(), 1000);
        for k in keys.iter().skip(1).step_by(2).chain(&again) {
            assert!(live.try_remove(*k).is_some());
        }
        assert_eq!(live.len(), 0);
        assert_eq!(live.iter().count(), 0);
        assert_eq!(
            live.slots.capacity(),
            0,
            "a burst's slots are kept after it ended"
        );
        // A small table keeps its room.
        let k = live.insert(Box::new(7));
        assert_eq!(*live.try_remove(k).unwrap(), 7);
        assert!(live.slots.capacity() > 0 && live.slots.capacity() <= KEEP);
        let ks: Vec<u32> = (0..10).map(|i| live.insert(Box::new(i))).collect();
        assert_eq!(ks, (0..10).collect::<Vec<_>>());
        assert_eq!(live.drain().len(), 10);
        assert_eq!(live.len(), 0);
    }
}
