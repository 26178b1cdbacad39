//! The wait list every primitive of [`crate::sync`] (and `pool`) parks greenlets on.
//!
//! # Shape
//!
//! ```text
//!   entries: Vec<Entry>   one entry per parked greenlet, owned by that greenlet's wait, 24 bytes
//!                         for a value-less list: { task, gen, prev, next, flags, value: Option<P> }
//!   head, tail            a doubly linked FIFO through the queued entries (`prev`/`next` are
//!                         indices into `entries`)
//!   free                  vacant entries, linked through `next`
//! ```
//!
//! Everything lives on the heap (invariant 1): a suspended waiter's stack is never touched. An entry
//! is created by the waiting greenlet and **removed only by it** (through [`Registration`], whose
//! `Drop` runs even when a kill unwinds out of the park), so a value in transit to or from a waiter
//! always has exactly one owner:
//!
//! - *getter style* (semaphore permits, queue getters): the entry starts empty; a notifier
//!   [`hands`](WaitList::hand) a value into the first pending entry and wakes it.
//! - *putter style* (queue putters, lock requests): the entry starts with a value; a notifier
//!   [`takes`](WaitList::take) it from the first pending entry and wakes it.
//!
//! Notifiers only consider entries whose waiter is still pending (parked in the park it was made
//! for). A waiter that already woke for another reason — its timeout, a kill, another list in a
//! multi-wait — is unlinked from the FIFO and skipped, and the value goes to the next one: no lost
//! wake-up, no double delivery, no wake of a dead greenlet. A waiter that was handed a value and is
//! then killed before it runs gives the value back in its `Registration`'s `Drop` (the primitive
//! passes it on).
//!
//! The owner's [`Ticket`] is neither `Copy` nor `Clone`, so an entry is removed once; the removal
//! still checks that the entry is occupied and made for the ticket's park, so a mistake there finds
//! nothing rather than another greenlet's entry of a different park.

#![deny(unsafe_code)]

use std::cell::RefCell;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant;

use crate::rt::{current_hub, TaskRef, WaitOn, Waiter, Wake};

/// No entry (end of a chain).
const NIL: u32 = u32::MAX;
/// `Entry::flags`: still linked in the FIFO and eligible for a notification.
const QUEUED: u8 = 1;
/// `Entry::flags`: a notifier handed or took `value` and woke the waiter.
const NOTIFIED: u8 = 2;
/// Entries an empty list keeps room for.
const KEEP: usize = 64;

/// A waiter's entry, its `Waiter` split into its two fields so the links and flags fill what would
/// be the waiter's padding (24 bytes for `P = ()`, against 40 for a slab entry plus a FIFO pair).
struct Entry<P> {
    /// `None`: a vacant entry, on the free chain through `next`.
    task: Option<TaskRef>,
    /// The park the waiter was made for.
    gen: u32,
    prev: u32,
    next: u32,
    flags: u8,
    value: Option<P>,
}

struct Inner<P> {
    entries: Vec<Entry<P>>,
    head: u32,
    tail: u32,
    /// First vacant entry.
    free: u32,
    /// Entries with `QUEUED` set (those linked between `head` and `tail`).
    queued: usize,
    /// Occupied entries.
    occupied: usize,
}

/// A FIFO of parked greenlets with an optional value slot each. See the module docs.
pub(crate) struct WaitList<P> {
    inner: RefCell<Inner<P>>,
    /// Spells out what the `Rc` inside `Waiter` already implies: a wait list, and so every
    /// primitive built on it, is `!Send` and `!Sync` (it belongs to one hub's greenlets).
    _hub_local: PhantomData<Rc<()>>,
}

/// Identifies the entry of one wait, for [`WaitList::remove`]. Single use: not `Copy`.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// The entry's index plus one, so an `Option<Ticket>` is one word.
    slot: NonZeroU32,
    gen: u32,
}

/// What the owner of an entry finds when it removes it.
pub(crate) struct Removed<P> {
    /// A notifier handed or took the value (the wait succeeded).
    pub(crate) notified: bool,
    /// The value left in the entry: the handed one (getter style), or the owner's own one that
    /// nobody took (putter style).
    pub(crate) value: Option<P>,
}

impl<P> Default for WaitList<P> {
    fn default() -> Self {
        WaitList::new()
    }
}

impl<P> Inner<P> {
    /// Unlinks the queued entry at `i` from the FIFO.
    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let e = &mut self.entries[i as usize];
            debug_assert!(e.flags & QUEUED != 0);
            e.flags &= !QUEUED;
            (e.prev, e.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.entries[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.entries[n as usize].prev = prev,
        }
        self.queued -= 1;
    }

    /// Unlinks stale entries at the front; returns the index of the first pending one, still
    /// linked.
    fn front_pending(&mut self) -> Option<u32> {
        while self.head != NIL {
            let i = self.head;
            let e = &self.entries[i as usize];
            let pending = e
                .task
                .as_ref()
                .is_some_and(|t| t.core().is_parked_in(e.gen));
            if pending {
                return Some(i);
            }
            self.unlink(i);
        }
        None
    }

    /// Unlinks the entry at `i` (the front) as notified, and returns its waiter.
    fn notify_front(&mut self, i: u32) -> Waiter {
        self.unlink(i);
        let e = &mut self.entries[i as usize];
        e.flags |= NOTIFIED;
        Waiter {
            task: e
                .task
                .clone()
                .expect("a queued wait-list entry is occupied"),
            gen: e.gen,
        }
    }
}

impl<P> WaitList<P> {
    pub(crate) fn new() -> Self {
        WaitList {
            inner: RefCell::new(Inner {
                entries: Vec::new(),
                head: NIL,
                tail: NIL,
                free: NIL,
                queued: 0,
                occupied: 0,
            }),
            _hub_local: PhantomData,
        }
    }

    /// Queued entries, stale ones (whose waiter woke for another reason but has not run yet)
    /// included.
    pub(crate) fn len(&self) -> usize {
        self.inner.borrow().queued
    }

    /// Appends an entry for `waiter`, optionally carrying the owner's `value`.
    pub(crate) fn push(&self, waiter: Waiter, value: Option<P>) -> Ticket {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let entry = Entry {
            task: Some(waiter.task),
            gen: waiter.gen,
            prev: inner.tail,
            next: NIL,
            flags: QUEUED,
            value,
        };
        let i = match inner.free {
            NIL => {
                let i = u32::try_from(inner.entries.len())
                    .ok()
                    .filter(|&i| i < NIL - 1)
                    .expect("greenhub: more than 2^32 - 2 waiters on one wait list");
                inner.entries.push(entry);
                i
            }
            i => {
                let slot = &mut inner.entries[i as usize];
                inner.free = slot.next;
                *slot = entry;
                i
            }
        };
        match inner.tail {
            NIL => inner.head = i,
            t => inner.entries[t as usize].next = i,
        }
        inner.tail = i;
        inner.queued += 1;
        inner.occupied += 1;
        Ticket {
            slot: NonZeroU32::new(i + 1).expect("wait-list indices stay below u32::MAX - 1"),
            gen: waiter.gen,
        }
    }

    /// Removes the entry of `ticket` (owner only) and reports what it holds.
    pub(crate) fn remove(&self, ticket: Ticket) -> Removed<P> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let i = ticket.slot.get() - 1;
        match inner.entries.get(i as usize) {
            Some(e) if e.task.is_some() && e.gen == ticket.gen => {}
            _ => {
                debug_assert!(false, "a wait-list ticket found no entry");
                return Removed {
                    notified: false,
                    value: None,
                };
            }
        }
        if inner.entries[i as usize].flags & QUEUED != 0 {
            inner.unlink(i);
        }
        let e = &mut inner.entries[i as usize];
        let removed = Removed {
            notified: e.flags & NOTIFIED != 0,
            value: e.value.take(),
        };
        e.task = None;
        e.flags = 0;
        e.next = inner.free;
        inner.free = i;
        inner.occupied -= 1;
        if inner.occupied == 0 {
            // Nothing waits: start the free chain afresh, and give a burst's storage back.
            inner.free = NIL;
            if inner.entries.capacity() > KEEP {
                inner.entries = Vec::new();
            } else {
                inner.entries.clear();
            }
        }
        removed
    }

    /// Whether some queued waiter is still pending (stale fronts are unlinked on the way).
    pub(crate) fn has_pending(&self) -> bool {
        self.inner.borrow_mut().front_pending().is_some()
    }

    /// Runs `f` on the value of the first pending entry (putter style), without unlinking it.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(Option<&P>) -> R) -> Option<R> {
        let mut inner = self.inner.borrow_mut();
        let i = inner.front_pending()?;
        Some(f(inner.entries[i as usize].value.as_ref()))
    }

    /// Getter style: hands `value` to the first pending waiter and wakes it, or gives it back.
    pub(crate) fn hand(&self, value: P) -> Result<(), P> {
        let waiter = {
            let mut inner = self.inner.borrow_mut();
            let Some(i) = inner.front_pending() else {
                return Err(value);
            };
            inner.entries[i as usize].value = Some(value);
            inner.notify_front(i)
        };
        let woke = waiter.wake();
        debug_assert!(woke, "a pending waiter refused its wake");
        Ok(())
    }

    /// Putter style: takes the value of the first pending waiter and wakes it. `None` if nobody
    /// waits.
    pub(crate) fn take(&self) -> Option<P> {
        let (waiter, value) = {
            let mut inner = self.inner.borrow_mut();
            let i = inner.front_pending()?;
            let value = inner.entries[i as usize].value.take();
            (inner.notify_front(i), value)
        };
        let woke = waiter.wake();
        debug_assert!(woke, "a pending waiter refused its wake");
        value
    }

    /// Wakes the first pending waiter with no value (the entry's own value, if any, stays).
    /// Returns whether one was woken.
    pub(crate) fn notify_one(&self) -> bool {
        let waiter = {
            let mut inner = self.inner.borrow_mut();
            let Some(i) = inner.front_pending() else {
                return false;
            };
            inner.notify_front(i)
        };
        waiter.wake()
    }

    /// Wakes every pending waiter with no value, in FIFO order; returns how many.
    pub(crate) fn notify_all(&self) -> usize {
        let mut woken = 0;
        while self.notify_one() {
            woken += 1;
        }
        woken
    }
}

/// The result of one [`wait`].
pub(crate) struct Outcome<P> {
    /// Whether a notifier handed or took the value.
    pub(crate) notified: bool,
    /// See [`Removed::value`].
    pub(crate) value: Option<P>,
}

/// Removes its entry when dropped — on the normal path and when a kill unwinds out of the park —
/// and hands anything a notifier left in it to `give_back`.
pub(crate) struct Registration<'a, P, F: FnMut(Removed<P>)> {
    list: &'a WaitList<P>,
    ticket: Option<Ticket>,
    give_back: F,
}

impl<P, F: FnMut(Removed<P>)> Registration<'_, P, F> {
    /// Removes the entry and returns what it holds, disarming the guard.
    pub(crate) fn finish(mut self) -> Removed<P> {
        let t = self.ticket.take().expect("registration finished twice");
        self.list.remove(t)
    }
}

impl<P, F: FnMut(Removed<P>)> Drop for Registration<'_, P, F> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let removed = self.list.remove(t);
            (self.give_back)(removed);
        }
    }
}

/// Registers the running greenlet in `list` (with `value`, putter style) and returns the guard.
/// Pair with `hub.park` for waits that register in several lists (`pool::wait_any`).
#[track_caller]
pub(crate) fn register<P, F: FnMut(Removed<P>)>(
    list: &WaitList<P>,
    value: Option<P>,
    give_back: F,
) -> Registration<'_, P, F> {
    let ticket = list.push(current_hub().current_waiter(), value);
    Registration {
        list,
        ticket: Some(ticket),
        give_back,
    }
}

/// Parks the running greenlet in `list` until a notifier wakes it, `deadline` (or an enclosing
/// timeout scope's deadline) passes, or — while its kill is unwinding — it is interrupted. A kill
/// of a normally parked greenlet unwinds from here; the entry is removed and `give_back` receives
/// what a notifier left in it (so a permit or item handed to a dying greenlet is passed on).
///
/// A notification wins over a timeout that races it: if the entry was notified, `notified` is true
/// whatever `wake` says.
#[track_caller]
pub(crate) fn wait<P, F: FnMut(Removed<P>)>(
    list: &WaitList<P>,
    value: Option<P>,
    what: &'static &'static str,
    deadline: Option<Instant>,
    give_back: F,
) -> Outcome<P> {
    wait_on(list, value, WaitOn::Sync(what), deadline, give_back)
}

/// [`wait`], saying more than a name about what it waits on (a lock's holder, for deadlock
/// reports).
#[track_caller]
pub(crate) fn wait_on<P, F: FnMut(Removed<P>)>(
    list: &WaitList<P>,
    value: Option<P>,
    on: WaitOn,
    deadline: Option<Instant>,
    give_back: F,
) -> Outcome<P> {
    let hub = current_hub();
    let mut give_back = give_back;
    let mut value = value;
    loop {
        let reg = register(list, value.take(), &mut give_back);
        let wake = hub.park(on, deadline);
        let removed = reg.finish();
        if removed.notified || wake != Wake::Woken {
            return Outcome {
                notified: removed.notified,
                value: removed.value,
            };
        }
        // Woken without a notification (spurious): wait again, with our value.
        value = removed.value;
    }
}
