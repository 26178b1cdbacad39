//! I/O slots: the readiness and waiters of every descriptor registered with this hub's `mio`
//! poll, and the dispatch of the events the poll reports.
//!
//! mio is edge-triggered: an event arrives when readiness *changes*. [`Hub::poll_io`] turns each
//! event into "ready" bits and wakes the waiters of that direction; a greenlet that finds the
//! operation would block clears the bit and queues its waiter ([`Hub::io_arm`]) before it parks,
//! with no switch in between, so no edge is lost.
//!
//! # A slot, and who may touch it
//!
//! ```text
//!   Registered (reactor.rs, any thread)        Hub::io: IoSlots (hub thread only)
//!   ┌──────────────────────────┐                ┌─────────────────────────────────┐
//!   │ IoHandle { owner, slot ──┼──────┐         │ live: Slab<*IoSlot>  (ownership) │
//!   │        hub, key, fd,     │      │         │ doomed: freed after the dispatch │
//!   │            remote }      │      ▼         │ zombies: freed with the hub      │
//!   └──────────────────────────┘   ┌────────────┴───┐                             │
//!                                  │ IoSlot (heap)  │  ready bits, reader, writer, │
//!        mio token = its address ─▶│                │  more (a Vec, rare)          │
//!        (or key, see Naming)      └────────────────┘                              │
//! ```
//!
//! Each slot is a `Box` of its own, owned by the hub (`IoSlots::live`), so its address is stable
//! and can be the mio token: dispatch goes from the event to the slot with no lookup. A socket's
//! [`IoHandle`] keeps the same address and reads the slot directly ([`IoHandle::slot`]): the
//! readiness a read or write checks before its syscall is one load away, with no thread-local
//! hub lookup, no `RefCell` and no slab. The handle is `Send` (a socket is); the slot is not
//! (`Cell`s), so the handle hands out `&IoSlot` only on the thread of the hub that made it, while
//! that hub lives (the thread-local `IO_OWNER`), and the hub with it ([`IoHandle::hub`]).
//!
//! One waiter per direction sits in a `Cell` (`reader` and `reader_gen`, `writer`); a second
//! waiter on the same direction (two greenlets reading clones of one socket, a `poll` over one
//! descriptor twice) goes to `more`, a `Vec` that allocates only then. Dispatch takes the one waiter out (no `Vec` to
//! drain), and arming puts one in (no `retain`).
//!
//! # When a slot is freed: a stale event must never reach freed memory
//!
//! A slot is removed from `live` (so `hub::stats().io_registrations` drops) when its registration
//! is undone, and its memory is freed only when no event can name it any more:
//!
//! - The epoll entry is deleted first (`EPOLL_CTL_DEL`), on the hub's thread or, for a socket
//!   dropped elsewhere, on the other thread through a second handle on the epoll set
//!   ([`IoRemote`]); after that no later `epoll_wait` reports the token.
//! - The batch of events being dispatched may still hold it (a greenlet's result dropped during
//!   the dispatch owned the socket; an earlier event of the batch woke a waiter whose last
//!   reference owned it). So while [`Hub::poll_io`] dispatches, removed slots wait in `doomed`,
//!   marked dead (later events of the batch skip them), and are freed when the batch is done.
//! - A remote deregistration frees the slot through a message the hub runs after its dispatch
//!   (the other thread's `EPOLL_CTL_DEL` may race with an `epoll_wait` already returning the
//!   token). Until that message runs the slot stays live and owned by the hub.
//! - If `EPOLL_CTL_DEL` fails, the entry may still be in the kernel (the descriptor was closed or
//!   replaced behind greenhub's back while the open file lives on elsewhere), so a slot whose
//!   address is its token becomes a **zombie**: dead, never freed while the hub polls, freed with
//!   the hub.
//! - The hub frees what is left when it is dropped (thread exit), after its last poll.
//!
//! **Naming.** An address token is only as sound as the promise that the entry is deleted while
//! the descriptor still names its file: true for a socket that owns its descriptor (greenhub's
//! `net` types, `Registered::owning`), not for a descriptor that code outside greenhub may close
//! or replace (an `AsyncFd`'s inner value, `io::wait_fd`'s caller's descriptor, `monkey`'s C
//! code). Those are named by index (`Naming::Index`: token `key << 1 | 1`, looked up in `live`
//! during dispatch), so a stale event finds an empty or reused slot (a spurious wake-up every
//! caller tolerates), never freed memory. Slot addresses are even (the `Box` is aligned), so the
//! low bit tells the two apart; the waker's token (`usize::MAX`) is checked first.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use slab::Slab;

use super::hub::{existing_hub, Hub};
use super::mailbox::{Msg, Shared};
use super::stats::add;
use super::task::{TaskRef, WaitOn, Waiter, Wake};

/// mio token of the hub's waker.
pub(super) const WAKER_TOKEN: Token = Token(usize::MAX);

/// What every registration asks for: both directions, and on Linux urgent data too (`EPOLLPRI`,
/// which only marks the slot: see [`URGENT`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
const INTERESTS: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const INTERESTS: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// Whether a short read may mark the read direction not ready on this platform: only where the
/// poll reports urgent data ([`URGENT`]).
pub(crate) const SHORT_READ_RULE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Which readiness an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// How a registration's mio token names its slot (module docs, "Naming").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Naming {
    /// The token is the slot's address. Only for a descriptor owned by the registered object,
    /// which deregisters before closing it and never lets it be replaced.
    Address,
    /// The token is `key << 1 | 1`, looked up in `IoSlots::live`: for descriptors that may be
    /// closed or replaced behind greenhub's back.
    Index,
}

// The readiness bits of `IoSlot::ready`.
/// Readable since the last edge (or not yet known otherwise).
const READABLE: u8 = 1 << 0;
/// Writable since the last edge.
const WRITABLE: u8 = 1 << 1;
/// The read half hung up or the socket errored: final (no edge will follow), so a read must
/// always try the syscall (see `Registered::stream_write`).
const READ_CLOSED: u8 = 1 << 2;
/// The same for the write half.
const WRITE_CLOSED: u8 = 1 << 3;
/// The poll reported urgent data (`EPOLLPRI`: a TCP urgent mark) at least once. Sticky: a read
/// stops short at the mark with in-band data behind it, so from then on a short read proves
/// nothing (see `Registered::stream_read`).
const URGENT: u8 = 1 << 4;
/// `more` holds waiters.
const MORE: u8 = 1 << 5;
/// Deregistered: events still in the batch being dispatched (or, for a zombie, from an epoll
/// entry the kernel kept) are ignored.
const DEAD: u8 = 1 << 6;
/// `writer` holds a waiter. The dispatch of an event reporting the socket writable looks at
/// `writer` only then, so a socket that never waits to write keeps that cell out of the cache.
const WRITER: u8 = 1 << 7;

/// The waiters beyond the first of a direction, with the direction each waits for.
type Overflow = Vec<(Dir, Waiter)>;

/// An I/O registration's readiness and waiters. Lives in its own `Box`, owned by `IoSlots`; see
/// the module docs for who may reach it and when it is freed.
///
/// `repr(C)`, the hot fields first: a round trip on a socket touches the readiness bits and the
/// read waiter (the dispatch, the transfer's check, the next park), and those are the first 16
/// bytes, which malloc's 16-byte alignment keeps inside one cache line. So the read waiter is
/// split into its fields, with the bits in its padding, and `writer` is looked at only when
/// [`WRITER`] says one is queued (epoll reports a socket writable in nearly every event). With
/// the compiler's order a round trip touched two lines of the slot three times in four
/// (BENCHMARKS.md, "Fourth pass").
#[repr(C)]
pub(crate) struct IoSlot {
    /// The read waiter's greenlet (at most one here; the rare others in `more`).
    reader: Cell<Option<TaskRef>>,
    /// The read waiter's park generation (meaningful while `reader` is `Some`).
    reader_gen: Cell<u32>,
    /// The bits above.
    ready: Cell<u8>,
    naming: Naming,
    /// The waiter of the write direction; `Some` only while [`WRITER`] is set.
    writer: Cell<Option<Waiter>>,
    /// Further waiters, when a direction has two at once. Allocated only then (one pointer in
    /// the slot otherwise); taken out while it is worked on.
    more: Cell<Option<Box<Overflow>>>,
}

impl IoSlot {
    /// Whether a `dir` transfer should try its syscall: `dir` was ready at the last edge (or
    /// nothing says otherwise yet), or the direction is closed (final: no edge will follow, so
    /// the call must try and report).
    #[inline(always)]
    pub(crate) fn may_try(&self, dir: Dir) -> bool {
        let mask = match dir {
            Dir::Read => READABLE | READ_CLOSED,
            Dir::Write => WRITABLE | WRITE_CLOSED,
        };
        self.ready.get() & mask != 0
    }

    /// Records that `dir` is not ready until the next edge (a short transfer proved the queue
    /// drained: `Registered::stream_read` / `stream_write`) — for reading, unless the poll ever
    /// reported urgent data (then a short read proves nothing).
    #[inline(always)]
    pub(crate) fn mark_drained(&self, dir: Dir) {
        let bits = self.ready.get();
        match dir {
            Dir::Read if bits & URGENT == 0 => self.ready.set(bits & !READABLE),
            Dir::Read => {}
            Dir::Write => self.ready.set(bits & !WRITABLE),
        }
    }

    fn new(naming: Naming, ready: bool) -> IoSlot {
        IoSlot {
            reader: Cell::new(None),
            reader_gen: Cell::new(0),
            ready: Cell::new(if ready { READABLE | WRITABLE } else { 0 }),
            naming,
            writer: Cell::new(None),
            more: Cell::new(None),
        }
    }

    /// Puts `w` in `dir`'s cell; returns what was there.
    #[inline(always)]
    fn put_waiter(&self, dir: Dir, w: Waiter) -> Option<Waiter> {
        match dir {
            Dir::Read => {
                let gen = self.reader_gen.replace(w.gen);
                let task = self.reader.replace(Some(w.task))?;
                Some(Waiter { task, gen })
            }
            Dir::Write => {
                self.ready.set(self.ready.get() | WRITER);
                self.writer.replace(Some(w))
            }
        }
    }

    /// Takes `dir`'s waiter out of its cell.
    #[inline(always)]
    fn take_waiter(&self, dir: Dir) -> Option<Waiter> {
        match dir {
            Dir::Read => {
                let task = self.reader.take()?;
                Some(Waiter {
                    task,
                    gen: self.reader_gen.get(),
                })
            }
            Dir::Write => {
                self.ready.set(self.ready.get() & !WRITER);
                self.writer.take()
            }
        }
    }

    /// Queues `w` for `dir`: in the direction's cell, unless another greenlet's park is waiting
    /// there (then in `more`). A stale waiter it displaces is discarded through [`discard`].
    #[inline(always)]
    fn queue(&self, hub: &Hub, dir: Dir, w: Waiter) {
        // The usual case: the last wake took the waiter out, and this is one swap.
        if let Some(old) = self.put_waiter(dir, w) {
            self.displaced(hub, dir, old);
        }
    }

    /// `old` was in `dir`'s cell when a new waiter took its place.
    #[cold]
    #[inline(never)]
    fn displaced(&self, hub: &Hub, dir: Dir, old: Waiter) {
        if old.is_pending() {
            // Another greenlet waits there: it keeps the cell, the newcomer goes to `more`.
            if let Some(new) = self.put_waiter(dir, old) {
                self.queue_more(hub, dir, new);
            }
        } else {
            discard(hub, old);
        }
    }

    #[cold]
    #[inline(never)]
    fn queue_more(&self, hub: &Hub, dir: Dir, w: Waiter) {
        let mut more = self.more.take().unwrap_or_default();
        // Stale waiters (timed out, killed) are pruned here, so a socket read with a short
        // timeout in a loop beside a reader that waits for good does not grow the list.
        let mut stale = Vec::new();
        let mut i = 0;
        while i < more.len() {
            if more[i].1.is_pending() {
                i += 1;
            } else {
                stale.push(more.swap_remove(i).1);
            }
        }
        more.push((dir, w));
        self.more.set(Some(more));
        self.ready.set(self.ready.get() | MORE);
        for w in stale {
            discard(hub, w);
        }
    }

    /// Applies one poll event: sets the bits and wakes the waiters of each direction it reports.
    #[inline(always)]
    fn dispatch(&self, hub: &Hub, ev: &mio::event::Event) {
        let mut bits = self.ready.get();
        if bits & DEAD != 0 {
            return;
        }
        // What this event adds: a hang-up or an error is final and wakes both ways.
        let mut add = 0;
        if ev.is_readable() {
            add |= READABLE;
        }
        if ev.is_writable() {
            add |= WRITABLE;
        }
        if ev.is_priority() {
            add |= URGENT;
        }
        if ev.is_read_closed() {
            add |= READABLE | READ_CLOSED;
        }
        if ev.is_write_closed() {
            add |= WRITABLE | WRITE_CLOSED;
        }
        if ev.is_error() {
            add |= READABLE | READ_CLOSED | WRITABLE | WRITE_CLOSED;
        }
        let read = add & READABLE != 0;
        let write = add & WRITABLE != 0;
        bits |= add;
        self.ready.set(bits);
        // Each waiter is dropped right after its wake: that may drop the last handle of a
        // finished greenlet and, with it, a socket — even this one, which is then only marked
        // dead until the batch is done.
        if read {
            if let Some(w) = self.take_waiter(Dir::Read) {
                hub.wake_owned(w, Wake::Woken);
            }
        }
        if write && bits & WRITER != 0 {
            if let Some(w) = self.take_waiter(Dir::Write) {
                hub.wake_owned(w, Wake::Woken);
            }
        }
        if bits & MORE != 0 && (read || write) {
            self.wake_more(hub, read, write);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_more(&self, hub: &Hub, read: bool, write: bool) {
        let Some(mut list) = self.more.take() else {
            return;
        };
        // Runs no greenlet; dropping a woken waiter may run destructors, none of which can queue
        // a waiter (that needs a greenlet), so nothing joins `more` meanwhile.
        list.retain(|(dir, w)| {
            let hit = match dir {
                Dir::Read => read,
                Dir::Write => write,
            };
            if hit {
                hub.wake(w, Wake::Woken);
            }
            !hit
        });
        if let Some(mut joined) = self.more.take() {
            list.append(&mut joined);
        }
        if list.is_empty() {
            self.ready.set(self.ready.get() & !MORE);
        } else {
            self.more.set(Some(list));
        }
    }

    /// Takes every waiter out (for a slot being forgotten: they are woken to find it gone).
    #[cfg(feature = "monkey")]
    fn take_waiters(&self) -> Vec<Waiter> {
        let mut all: Vec<Waiter> = self.take_waiter(Dir::Read).into_iter().collect();
        all.extend(self.take_waiter(Dir::Write));
        all.extend(
            self.more
                .take()
                .into_iter()
                .flat_map(|m| m.into_iter().map(|(_, w)| w)),
        );
        self.ready.set(self.ready.get() & !MORE);
        all
    }
}

/// Drops a waiter that no park will use any more, without running a greenlet's destructors here.
///
/// A waiter of the running greenlet (its own earlier park: a timed-out read, a `poll` woken by
/// another descriptor) is dropped at once: the greenlet is alive, so that is a decrement. Any
/// other may hold the last handle on a finished greenlet, whose result may own anything, so its
/// drop is left to the hub's next iteration: it must not run here, between this greenlet's
/// "would block" and its park, where a destructor that blocked would switch away and lose the
/// edge this greenlet is about to wait for.
fn discard(hub: &Hub, w: Waiter) {
    if hub
        .running_core()
        .is_some_and(|c| std::ptr::eq(c, w.core()))
    {
        drop(w);
    } else {
        hub.run_callback(Box::new(move || drop(w)));
    }
}

thread_local! {
    /// The id of this thread's `IoSlots` while it lives; its bitwise complement once it is gone
    /// (the hub was torn down); 0 before. `const` and destructor-free: readable during
    /// thread-local teardown.
    static IO_OWNER: Cell<u64> = const { Cell::new(0) };
}

/// Every slot of one hub, and when each is freed (module docs).
pub(super) struct IoSlots {
    /// Process-unique, never 0 (see `IO_OWNER`).
    id: u64,
    /// The registered slots, by key. The only owner of their boxes until they are removed.
    live: RefCell<Slab<NonNull<IoSlot>>>,
    /// [`Hub::poll_io`] is dispatching a batch of events: removed slots wait in `doomed`.
    dispatching: Cell<bool>,
    /// Removed during the dispatch; freed when it ends.
    doomed: RefCell<Vec<NonNull<IoSlot>>>,
    /// Address-named slots whose `EPOLL_CTL_DEL` failed; freed with the hub.
    zombies: RefCell<Vec<NonNull<IoSlot>>>,
}

impl IoSlots {
    /// The slots of this thread's hub (made once per thread, by `Hub::install`).
    pub(super) fn new() -> IoSlots {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        IO_OWNER.with(|o| o.set(id));
        IoSlots {
            id,
            live: RefCell::new(Slab::new()),
            dispatching: Cell::new(false),
            doomed: RefCell::new(Vec::new()),
            zombies: RefCell::new(Vec::new()),
        }
    }

    fn insert(&self, naming: Naming, ready: bool) -> (usize, NonNull<IoSlot>) {
        let mut live = self.live.borrow_mut();
        let entry = live.vacant_entry();
        let key = entry.key();
        let slot = NonNull::from(Box::leak(Box::new(IoSlot::new(naming, ready))));
        entry.insert(slot);
        (key, slot)
    }

    fn token(key: usize, slot: NonNull<IoSlot>, naming: Naming) -> Token {
        match naming {
            Naming::Address => Token(slot.as_ptr() as usize),
            Naming::Index => Token(key << 1 | 1),
        }
    }

    /// The live slot with `key`.
    fn get(&self, key: usize) -> Option<NonNull<IoSlot>> {
        self.live.borrow().get(key).copied()
    }

    fn len(&self) -> usize {
        self.live.borrow().len()
    }

    /// Removes the slot `key` if it is `slot` (else does nothing: already gone); `deleted` says
    /// whether its epoll entry is known gone. Returns whether it was live.
    fn remove(&self, key: usize, slot: NonNull<IoSlot>, deleted: bool) -> bool {
        {
            let mut live = self.live.borrow_mut();
            if live.get(key) != Some(&slot) {
                return false;
            }
            live.remove(key);
        }
        // SAFETY: `slot` was live: its box is allocated until this function hands it on.
        let s = unsafe { slot.as_ref() };
        s.ready.set(s.ready.get() | DEAD);
        if !deleted && s.naming == Naming::Address {
            self.zombies.borrow_mut().push(slot);
        } else if self.dispatching.get() {
            self.doomed.borrow_mut().push(slot);
        } else {
            // SAFETY: removed from `live` and not dispatching, with its epoll entry gone (or
            // index-named, so no event reaches it without `live`): nothing refers to it.
            unsafe { free(slot) };
        }
        true
    }

    /// Frees the slots removed during the dispatch that just ended.
    fn free_doomed(&self) {
        loop {
            // One at a time, with no borrow held: a slot's destructors (its waiters' greenlets)
            // may remove more.
            let Some(slot) = self.doomed.borrow_mut().pop() else {
                break;
            };
            // SAFETY: in `doomed`, so removed from `live` with its epoll entry gone (or
            // index-named), and the batch that might name it is done.
            unsafe { free(slot) };
        }
    }
}

/// Frees a slot (dropping its waiters).
///
/// # Safety
/// `slot` came from `IoSlots::insert`, is in no `IoSlots` list and no reference to it is alive.
unsafe fn free(slot: NonNull<IoSlot>) {
    // SAFETY: the caller's contract: the box is ours to drop, once.
    drop(unsafe { Box::from_raw(slot.as_ptr()) });
}

impl Drop for IoSlots {
    fn drop(&mut self) {
        // From here on no handle hands out a slot (`IoHandle::slot`), and a dropped handle takes
        // the remote path, which touches none of this.
        IO_OWNER.with(|o| o.set(!self.id));
        let live = std::mem::take(&mut *self.live.borrow_mut());
        let rest: Vec<NonNull<IoSlot>> = live
            .into_iter()
            .map(|(_, s)| s)
            .chain(self.doomed.take())
            .chain(self.zombies.take())
            .collect();
        for slot in rest {
            // SAFETY: the hub is being dropped (thread exit) after its last poll: no event will
            // be dispatched again, no handle reaches a slot (IO_OWNER changed above), and each
            // slot is in exactly one list, taken out above.
            unsafe { free(slot) };
        }
    }
}

/// A registration made by [`Hub::io_register`]: the socket's way to its slot, and what undoes
/// the registration when dropped (on any thread, before the descriptor closes).
///
/// `repr(C)`, the cold fields first: a socket keeps its handle in a `OnceLock`, whose state
/// today's std keeps after the value, and a transfer reads that state, `owner`, `slot`, `hub`
/// and `key`, which are thus adjacent (see `Registered`).
#[repr(C)]
pub(crate) struct IoHandle {
    /// Undoes it from another thread (or after the hub is gone).
    remote: Arc<IoRemote>,
    fd: RawFd,
    /// `IoSlots::id` of the hub that made it.
    owner: u64,
    /// The slot (dereferenced only on the owner's thread, see [`IoHandle::slot`]).
    slot: NonNull<IoSlot>,
    /// The hub whose `IoSlots` is `owner` (dereferenced only with the slot, see
    /// [`IoHandle::hub`]). Kept here, beside the slot pointer the socket reads anyway, rather
    /// than in the slot, so the slot's hot bytes fit one cache line.
    hub: NonNull<Hub>,
    key: usize,
}

impl IoHandle {
    /// The slot, if the running thread's hub made this registration and still lives.
    #[inline(always)]
    pub(crate) fn slot(&self) -> Option<&IoSlot> {
        if IO_OWNER.with(Cell::get) != self.owner {
            return None;
        }
        // SAFETY: IO_OWNER equals `owner` only on the thread of the `IoSlots` that made this
        // handle, while it lives (ids are process-unique and never 0; its drop changes IO_OWNER
        // before it frees anything). That `IoSlots` removes this slot only through this handle's
        // drop (`Hub::io_release`, or the remote message); so the slot is allocated for as long
        // as `&self` is borrowed. `IoSlot` is `!Sync`, so the reference stays on this thread.
        Some(unsafe { self.slot.as_ref() })
    }

    /// The hub that owns `slot` (the one [`IoHandle::slot`] returned: call it only after that
    /// returned `Some`, which proves that hub lives on this thread).
    #[inline(always)]
    pub(crate) fn hub(&self, slot: &IoSlot) -> &Hub {
        debug_assert!(std::ptr::eq(slot, self.slot.as_ptr()));
        // SAFETY: `slot` came from `self.slot()` (the caller's contract, checked in debug
        // builds), so IO_OWNER equals `owner` on this thread: the `IoSlots` that made this handle
        // lives, and it is a field of the hub `self.hub` points at, which is therefore alive too
        // (its box is freed only by teardown, after its `IoSlots` is dropped: invariant 7) and
        // outlives the borrow of `slot`. `Hub` is `!Sync`: the reference stays on this thread.
        unsafe { self.hub.as_ref() }
    }

    /// Whether the running thread's hub made this registration and has been torn down since.
    pub(crate) fn owner_torn_down(&self) -> bool {
        IO_OWNER.with(Cell::get) == !self.owner
    }

    /// The slot's key, for [`Hub::io_park`]'s deadlock report.
    pub(crate) fn key(&self) -> usize {
        self.key
    }
}

// SAFETY: the handle's only non-`Send`/`Sync` field is the slot pointer, which is dereferenced
// only through `IoHandle::slot`, on the thread of the hub that owns the slot (and whose `Cell`s
// are therefore never touched from two threads); elsewhere it is an integer passed back to that
// hub (`IoRemote::deregister`).
unsafe impl Send for IoHandle {}
// SAFETY: as for `Send`: `&IoHandle` gives another thread nothing but integers.
unsafe impl Sync for IoHandle {}

impl Drop for IoHandle {
    fn drop(&mut self) {
        if IO_OWNER.with(Cell::get) == self.owner {
            if let Some(hub) = existing_hub() {
                hub.io_release(self.fd, self.key, self.slot);
                return;
            }
        }
        // Another thread (or this hub is going away): the descriptor may stay open (converted to
        // std, or `dup`ed), and the kernel would keep its entry in the hub's epoll set.
        self.remote
            .deregister(self.fd, self.key, self.slot.as_ptr() as usize);
    }
}

impl std::fmt::Debug for IoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoHandle")
            .field("hub", &self.owner)
            .field("key", &self.key)
            .finish()
    }
}

/// What a thread other than the hub's needs to undo one of its registrations: a second handle on
/// the hub's epoll set (a `dup` of its descriptor, made once per hub) and the hub's mailbox.
///
/// The epoll entry must go before the socket's descriptor closes, or while it stays open (a
/// socket converted back to std, or a `dup` elsewhere): the kernel drops an entry only when the
/// open file description is released, so a stale entry would keep reporting events to the hub
/// and make the next `EPOLL_CTL_ADD` of that descriptor fail with `EEXIST`. epoll sets are
/// thread-safe, so the other thread removes the entry itself, synchronously; the slot (hub-local
/// memory) is removed by a message the hub runs on its own thread, after any dispatch that might
/// still name it. The slot stays live until then.
pub(crate) struct IoRemote {
    registry: mio::Registry,
    shared: Arc<Shared>,
}

impl IoRemote {
    /// A second handle on the hub's epoll set (a `dup` of its descriptor) and the hub's mailbox.
    ///
    /// # Errors
    /// The error of the `dup` (out of descriptors).
    pub(super) fn new(registry: &mio::Registry, shared: Arc<Shared>) -> io::Result<IoRemote> {
        Ok(IoRemote {
            registry: registry.try_clone()?,
            shared,
        })
    }

    /// Undoes registration `key` (slot address `slot`) of `fd` from any thread, or after its
    /// hub is gone (then only the epoll entry is removed: the slot went with the hub). Call
    /// before `fd` closes.
    fn deregister(&self, fd: RawFd, key: usize, slot: usize) {
        // ENOENT (never added) or EBADF (the hub's epoll is gone, or the descriptor) leave the
        // entry's fate unknown: the slot then stays a zombie (address-named) until the hub goes.
        let deleted = self.registry.deregister(&mut SourceFd(&fd)).is_ok();
        let reclaim = move || {
            if let Some(hub) = existing_hub() {
                if let Some(slot) = NonNull::new(slot as *mut IoSlot) {
                    hub.io.remove(key, slot, deleted);
                }
            }
        };
        // Refused only once the hub is torn down, and its slots with it.
        let _ = self.shared.push(Msg::Run(Box::new(reclaim)));
    }
}

/// Counts this greenlet in `hub.io_waiters` while it is parked on I/O; a drop guard so a kill
/// unwinding out of `park` still uncounts it.
struct IoWaitGuard<'a>(&'a Hub);

impl<'a> IoWaitGuard<'a> {
    fn new(hub: &'a Hub) -> IoWaitGuard<'a> {
        hub.io_waiters.set(hub.io_waiters.get() + 1);
        IoWaitGuard(hub)
    }
}

impl Drop for IoWaitGuard<'_> {
    fn drop(&mut self) {
        self.0.io_waiters.set(self.0.io_waiters.get() - 1);
    }
}

impl Hub {
    /// Registers `fd` for both directions, its token named as `naming` says; returns the handle
    /// that reaches the slot and undoes the registration. A fresh registration counts as ready
    /// both ways (the first attempt tells).
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`AlreadyExists` with a message when the descriptor is already
    /// in this poll: two owners of one descriptor).
    pub(crate) fn io_register(&self, fd: RawFd, naming: Naming) -> io::Result<IoHandle> {
        let remote = self.io_remote.clone();
        let (key, slot) = self.io.insert(naming, true);
        let registered = self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            IoSlots::token(key, slot, naming),
            INTERESTS,
        );
        if let Err(e) = registered {
            self.io.remove(key, slot, true);
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "greenhub: descriptor {fd} is already registered with this hub: two \
                         socket objects own one descriptor (from_raw_fd of a descriptor that \
                         is still owned?)"
                    ),
                ));
            }
            return Err(e);
        }
        Ok(IoHandle {
            owner: self.io.id,
            slot,
            hub: NonNull::from(self),
            key,
            fd,
            remote,
        })
    }

    /// Undoes an [`IoHandle`]'s registration on the hub's thread (its drop).
    fn io_release(&self, fd: RawFd, key: usize, slot: NonNull<IoSlot>) {
        let deleted = self
            .poll
            .borrow()
            .registry()
            .deregister(&mut SourceFd(&fd))
            .is_ok();
        self.io.remove(key, slot, deleted);
    }

    /// How many descriptors are registered (live I/O slots), for `hub::stats()`.
    pub(crate) fn io_registrations(&self) -> usize {
        self.io.len()
    }

    /// Registers `fd` for `interest` only, not ready until an edge says so (a one-shot wait on a
    /// descriptor somebody else reads: `io::wait_readable`); returns its key. Index-named: the
    /// descriptor is not ours.
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`EEXIST`: already in this poll; `EPERM`: a regular file).
    pub(crate) fn io_register_for(&self, fd: RawFd, interest: Interest) -> io::Result<usize> {
        let (key, slot) = self.io.insert(Naming::Index, false);
        let registered = self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            IoSlots::token(key, slot, Naming::Index),
            interest,
        );
        if let Err(e) = registered {
            self.io.remove(key, slot, true);
            return Err(e);
        }
        Ok(key)
    }

    /// The live slot `key`.
    ///
    /// # Panics
    /// If there is none.
    #[track_caller]
    fn io_slot(&self, key: usize) -> &IoSlot {
        let slot = self
            .io
            .get(key)
            .expect("greenhub: a live registration's I/O slot is missing");
        // SAFETY: live, so allocated; the caller is a greenlet (checked by the callers) that uses
        // the reference before it can switch, and only a deregistration frees a live slot, which
        // the callers (who hold the registration) do not start meanwhile.
        unsafe { &*slot.as_ptr() }
    }

    /// Queues the running greenlet's waiter on slot `key` for `interest`, leaving the readiness
    /// bits alone; then [`io_park`](Self::io_park).
    ///
    /// # Panics
    /// Inside the hub context, or if `key` is not a live registration.
    #[track_caller]
    pub(crate) fn io_queue_waiter(&self, key: usize, interest: Interest) {
        self.current_core("wait for I/O");
        let slot = self.io_slot(key);
        if interest.is_readable() {
            slot.queue(self, Dir::Read, self.current_waiter());
        }
        if interest.is_writable() {
            slot.queue(self, Dir::Write, self.current_waiter());
        }
    }

    /// Whether `key` names a live I/O slot of this hub (never panics: for `monkey`, which may run
    /// inside the hub's own dispatch).
    #[cfg(feature = "monkey")]
    pub(crate) fn io_is_live(&self, key: usize) -> bool {
        self.io.live.try_borrow().is_ok_and(|l| l.contains(key))
    }

    /// (Re-)registers `fd` for both directions, for a caller that keeps its own fd → key table
    /// (`monkey`): with `known`, a key this caller registered `fd` under before, an `EEXIST`
    /// means the registration is still there (and still for the same open file) and the key is
    /// returned; without, a new slot is made. A registration that fails removes a new slot.
    /// Index-named: C code may close or replace the descriptor where interposition cannot see.
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`EPERM` for a regular file, `EEXIST` if somebody else in
    /// greenhub registered the descriptor), or "I/O slots busy" inside the hub's own dispatch.
    #[cfg(feature = "monkey")]
    pub(crate) fn io_register_known(&self, fd: RawFd, known: Option<usize>) -> io::Result<usize> {
        let (key, new) = match known {
            Some(k) => (k, None),
            None => {
                if self.io.live.try_borrow_mut().is_err() {
                    return Err(io::Error::other("I/O slots busy"));
                }
                let (key, slot) = self.io.insert(Naming::Index, true);
                (key, Some(slot))
            }
        };
        let r = self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            Token(key << 1 | 1),
            INTERESTS,
        );
        match r {
            Ok(()) => Ok(key),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && known.is_some() => Ok(key),
            Err(e) => {
                if let Some(slot) = new {
                    self.io.remove(key, slot, true);
                }
                Err(e)
            }
        }
    }

    /// Drops a registration made with [`io_register_known`](Self::io_register_known) (before the
    /// descriptor closes): deletes the epoll entry, removes the slot and wakes its waiters (they
    /// retry and find the descriptor gone). Never panics, also inside the hub's own dispatch.
    #[cfg(feature = "monkey")]
    pub(crate) fn io_forget(&self, fd: RawFd, key: usize) {
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        let Some(slot) = self
            .io
            .live
            .try_borrow()
            .ok()
            .and_then(|l| l.get(key).copied())
        else {
            return;
        };
        // SAFETY: live, so allocated; used before the removal below hands it on.
        let waiters = unsafe { slot.as_ref() }.take_waiters();
        // Index-named: a stale event finds no slot, so the epoll result does not matter.
        self.io.remove(key, slot, true);
        for w in &waiters {
            self.wake(w, Wake::Woken);
        }
    }

    /// Undoes [`io_register_for`](Self::io_register_for). Call before the descriptor closes.
    pub(crate) fn io_deregister(&self, fd: RawFd, key: usize) {
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        if let Some(slot) = self.io.get(key) {
            // Index-named: a stale event finds no slot, so the epoll result does not matter.
            self.io.remove(key, slot, true);
        }
    }

    /// Clears `dir`'s readiness on `slot` and queues the running greenlet's waiter there; then
    /// [`io_park`](Self::io_park) — with no switch in between.
    ///
    /// # Panics
    /// Inside the hub context.
    #[track_caller]
    #[inline]
    pub(crate) fn io_arm(&self, slot: &IoSlot, dir: Dir) {
        self.current_core("wait for I/O");
        let w = self.current_waiter();
        let flag = match dir {
            Dir::Read => READABLE,
            Dir::Write => WRITABLE,
        };
        slot.ready.set(slot.ready.get() & !flag);
        slot.queue(self, dir, w);
    }

    /// [`io_arm`](Self::io_arm) on slot `key` (`monkey`).
    ///
    /// # Panics
    /// Inside the hub context, or if `key` is not a live registration.
    #[track_caller]
    #[cfg(feature = "monkey")]
    pub(crate) fn io_arm_wait(&self, key: usize, dir: Dir) {
        self.current_core("wait for I/O");
        self.io_arm(self.io_slot(key), dir);
    }

    /// Parks the running greenlet, counted as an I/O waiter (so the loop blocks in poll rather
    /// than report a deadlock), until a readiness edge, `deadline` or a kill. `key` names the
    /// registration in a deadlock report. Inlined into its callers' one out-of-line wait frame
    /// (`Registered::wait_ready`): one frame fewer live across the park.
    #[inline]
    pub(crate) fn io_park(&self, key: usize, deadline: Option<Instant>) -> Wake {
        let _guard = IoWaitGuard::new(self);
        self.park(WaitOn::Io(key), deadline)
    }

    pub(super) fn poll_io(&self, timeout: Option<Duration>) {
        let remote = self.remote_pending.swap(false, Ordering::Acquire);
        if timeout == Some(Duration::ZERO) && !remote && self.io.len() == 0 {
            return; // nothing could be reported: spare the syscall
        }
        add(&self.counters.polls, 1);
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("greenhub: polling for I/O failed: {e}"),
        }
        self.io.dispatching.set(true);
        for ev in events.iter() {
            let token = ev.token().0;
            if token == WAKER_TOKEN.0 {
                continue; // the loop drains the remote queue right after this poll (handoff)
            }
            let slot = if token & 1 == 0 {
                // SAFETY: an even token other than the waker's is the address of an
                // address-named slot this hub registered; such a slot is freed only after its
                // epoll entry is deleted and outside a dispatch (or with the hub), and this event
                // was collected before that deletion: the slot is allocated (perhaps dead, then
                // `dispatch` skips it) for the whole batch (module docs).
                unsafe { &*(token as *const IoSlot) }
            } else {
                let Some(slot) = self.io.get(token >> 1) else {
                    continue; // a stale event of a slot already removed
                };
                // SAFETY: live when looked up; removed slots are not freed before the batch ends.
                unsafe { &*slot.as_ptr() }
            };
            slot.dispatch(self, ev);
        }
        self.io.dispatching.set(false);
        drop(events);
        self.io.free_doomed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use crate::rt::current_hub;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn an_io_slot_keeps_its_round_trip_fields_in_its_first_16_bytes() {
        use std::mem::{offset_of, size_of};
        // What a read round trip touches: the bits and the read waiter. 16 bytes at the start
        // of a 16-aligned allocation never straddle a cache line.
        for end in [
            offset_of!(IoSlot, reader) + size_of::<Option<TaskRef>>(),
            offset_of!(IoSlot, reader_gen) + size_of::<u32>(),
            offset_of!(IoSlot, ready) + 1,
        ] {
            assert!(end <= 16, "a hot field of IoSlot ends at byte {end}");
        }
        // The rest: the write waiter and the overflow pointer (the hub is in the handle).
        assert_eq!(
            size_of::<IoSlot>(),
            16 + size_of::<Option<Waiter>>() + 8,
            "IoSlot grew"
        );
    }

    #[test]
    fn a_slot_removed_during_a_dispatch_is_freed_when_the_batch_ends() {
        let hub = current_hub();
        let (a, _b) = pair();
        let before = hub.io_registrations();
        let handle = hub.io_register(a.as_raw_fd(), Naming::Address).unwrap();
        assert_eq!(hub.io_registrations(), before + 1);
        let slot = handle.slot;
        hub.io.dispatching.set(true);
        drop(handle);
        assert_eq!(
            hub.io_registrations(),
            before,
            "removed from the count at once"
        );
        assert_eq!(hub.io.doomed.borrow().as_slice(), &[slot]);
        // SAFETY: in `doomed`, so still allocated until `free_doomed`.
        assert!(unsafe { slot.as_ref() }.ready.get() & DEAD != 0);
        hub.io.dispatching.set(false);
        hub.io.free_doomed();
        assert!(hub.io.doomed.borrow().is_empty());
    }

    #[test]
    fn a_slot_whose_epoll_entry_may_outlive_it_stays_a_zombie_and_its_events_are_skipped() {
        let hub = current_hub();
        let (a, mut b) = pair();
        let before = hub.io_registrations();
        let handle = hub.io_register(a.as_raw_fd(), Naming::Address).unwrap();
        let token = handle.slot.as_ptr() as usize;
        // Close the registered number behind the handle's back while a duplicate keeps the file
        // open: the kernel keeps the epoll entry (keyed by file and number), and EPOLL_CTL_DEL by
        // number now fails.
        let keep = a.try_clone().unwrap();
        let fd = a.as_raw_fd();
        std::mem::forget(a);
        // SAFETY: `fd` is the descriptor `a` owned; `a` was forgotten, so nothing else closes it.
        assert_eq!(unsafe { libc::close(fd) }, 0);
        drop(handle);
        assert_eq!(hub.io_registrations(), before);
        assert_eq!(hub.io.zombies.borrow().len(), 1);
        // The stale entry still reports readiness under the zombie's address: dispatch must find
        // it allocated and dead (valgrind or a sanitizer would flag a freed one).
        b.write_all(b"x").unwrap();
        hub.poll_io(Some(Duration::from_millis(50)));
        assert!(
            hub.events.borrow().iter().any(|e| e.token().0 == token),
            "the kernel reported the deregistered entry"
        );
        assert_eq!(hub.io.zombies.borrow().len(), 1);
        drop(keep);
    }

    #[test]
    fn an_index_named_slot_is_freed_at_once_and_a_stale_event_finds_nothing() {
        let hub = current_hub();
        let (a, mut b) = pair();
        let key = hub
            .io_register_for(a.as_raw_fd(), Interest::READABLE)
            .unwrap();
        let keep = a.try_clone().unwrap();
        let fd = a.as_raw_fd();
        std::mem::forget(a);
        // SAFETY: as in the zombie test.
        assert_eq!(unsafe { libc::close(fd) }, 0);
        hub.io_deregister(fd, key);
        assert!(hub.io.get(key).is_none());
        assert!(hub.io.zombies.borrow().is_empty());
        b.write_all(b"x").unwrap();
        hub.poll_io(Some(Duration::from_millis(50)));
        drop(keep);
    }
}
