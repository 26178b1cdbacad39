//! The wait list every primitive of [`crate::sync`] (and `pool`) parks greenlets on.
//!
//! # Shape
//!
//! ```text
//!   order: VecDeque<(key, seq)>   (two u32) FIFO of queued entries; may hold stale pairs, skipped lazily
//!   slab:  Slab<Entry>            one entry per parked greenlet, owned by that greenlet's wait:
//!                                 { waiter, seq, queued, notified, value: Option<P> }
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
//! Notifiers only consider entries whose [`Waiter`] is still pending (parked in the park it was
//! made for). A waiter that already woke for another reason — its timeout, a kill, another list in
//! a multi-wait — is unlinked from the FIFO and skipped, and the value goes to the next one: no
//! lost wake-up, no double delivery, no wake of a dead greenlet. A waiter that was handed a value
//! and is then killed before it runs gives the value back in its `Registration`'s `Drop` (the
//! primitive passes it on).

#![deny(unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant;

use slab::Slab;

use crate::rt::Waiter;
use crate::rt::{current_hub, WaitOn, Wake};

struct Entry<P> {
    waiter: Waiter,
    /// Wraps after 2^32 pushes on one list; a stale `order` pair can only be mistaken for a live
    /// one if it survived that many pushes, and the rebuild in `remove` bounds stale pairs by the
    /// live entries, so that would take billions of waiters at once.
    seq: u32,
    /// Still in `order` and eligible for a notification.
    queued: bool,
    /// A notifier handed or took `value` and woke the waiter.
    notified: bool,
    value: Option<P>,
}

struct Inner<P> {
    slab: Slab<Entry<P>>,
    /// `(slab key, seq)`, 8 bytes a pair.
    order: VecDeque<(u32, u32)>,
    next_seq: u32,
    /// Entries with `queued` set.
    queued: usize,
}

/// A FIFO of parked greenlets with an optional value slot each. See the module docs.
pub(crate) struct WaitList<P> {
    inner: RefCell<Inner<P>>,
    /// Spells out what the `Rc` inside `Waiter` already implies: a wait list, and so every
    /// primitive built on it, is `!Send` and `!Sync` (it belongs to one hub's greenlets).
    _hub_local: PhantomData<Rc<()>>,
}

/// Identifies the entry of one wait, for [`WaitList::remove`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    key: u32,
    /// Never 0 (sequence numbers skip it), so an `Option<Ticket>` is one word.
    seq: NonZeroU32,
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

impl<P> WaitList<P> {
    pub(crate) fn new() -> Self {
        WaitList {
            inner: RefCell::new(Inner {
                slab: Slab::new(),
                order: VecDeque::new(),
                next_seq: 1,
                queued: 0,
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
        let seq = inner.next_seq;
        inner.next_seq = seq.wrapping_add(1).max(1);
        let key = inner.slab.insert(Entry {
            waiter,
            seq,
            queued: true,
            notified: false,
            value,
        });
        let key = u32::try_from(key).expect("greenhub: more than 2^32 waiters on one wait list");
        inner.order.push_back((key, seq));
        inner.queued += 1;
        Ticket {
            key,
            seq: NonZeroU32::new(seq).expect("greenhub: wait-list sequence numbers skip 0"),
        }
    }

    /// Removes the entry of `ticket` (owner only) and reports what it holds. Idempotent: a second
    /// call finds nothing.
    pub(crate) fn remove(&self, ticket: Ticket) -> Removed<P> {
        let mut inner = self.inner.borrow_mut();
        match inner.slab.get(ticket.key as usize) {
            Some(e) if e.seq == ticket.seq.get() => {}
            _ => {
                return Removed {
                    notified: false,
                    value: None,
                }
            }
        }
        let e = inner.slab.remove(ticket.key as usize);
        if e.queued {
            inner.queued -= 1;
        }
        // Keep stale pairs in `order` bounded by the live entries.
        if inner.order.len() > 64 && inner.order.len() > 2 * inner.slab.len() {
            let Inner { slab, order, .. } = &mut *inner;
            order.retain(|&(k, s)| slab.get(k as usize).is_some_and(|e| e.seq == s && e.queued));
        }
        Removed {
            notified: e.notified,
            value: e.value,
        }
    }

    /// Unlinks stale entries at the front; returns the key of the first pending one, still linked.
    fn front_pending(inner: &mut Inner<P>) -> Option<usize> {
        while let Some(&(key, seq)) = inner.order.front() {
            let key = key as usize;
            let live = match inner.slab.get(key) {
                Some(e) if e.seq == seq && e.queued => e.waiter.is_pending(),
                _ => {
                    inner.order.pop_front();
                    continue;
                }
            };
            if live {
                return Some(key);
            }
            inner.order.pop_front();
            inner.slab[key].queued = false;
            inner.queued -= 1;
        }
        None
    }

    /// Unlinks the entry at `key` (the front) as notified, and returns its waiter.
    fn notify_front(inner: &mut Inner<P>, key: usize) -> Waiter {
        inner.order.pop_front();
        inner.queued -= 1;
        let e = &mut inner.slab[key];
        e.queued = false;
        e.notified = true;
        e.waiter.clone()
    }

    /// Whether some queued waiter is still pending (stale fronts are unlinked on the way).
    pub(crate) fn has_pending(&self) -> bool {
        Self::front_pending(&mut self.inner.borrow_mut()).is_some()
    }

    /// Runs `f` on the value of the first pending entry (putter style), without unlinking it.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(Option<&P>) -> R) -> Option<R> {
        let mut inner = self.inner.borrow_mut();
        let key = Self::front_pending(&mut inner)?;
        Some(f(inner.slab[key].value.as_ref()))
    }

    /// Getter style: hands `value` to the first pending waiter and wakes it, or gives it back.
    pub(crate) fn hand(&self, value: P) -> Result<(), P> {
        let waiter = {
            let mut inner = self.inner.borrow_mut();
            let Some(key) = Self::front_pending(&mut inner) else {
                return Err(value);
            };
            inner.slab[key].value = Some(value);
            Self::notify_front(&mut inner, key)
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
            let key = Self::front_pending(&mut inner)?;
            let value = inner.slab[key].value.take();
            (Self::notify_front(&mut inner, key), value)
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
            let Some(key) = Self::front_pending(&mut inner) else {
                return false;
            };
            Self::notify_front(&mut inner, key)
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
