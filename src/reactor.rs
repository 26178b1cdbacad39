//! The reactor: how a socket call that would block becomes a park on the hub.
//!
//! Every `net` type wraps a non-blocking std socket in a [`Registered`], shared by its clones
//! through an `Arc`. A blocking-style call goes like this:
//!
//! ```text
//! loop {
//!     registered with this thread's hub, blocking mode, and the slot's bits say not ready
//!                             -> park at once (streams only: stream_read / stream_write)
//!     try the operation                       (optimistic: most reads find data, most writes room)
//!     Ok / a real error       -> return it    (a short stream transfer marks the slot drained)
//!     EINTR                   -> try again
//!     WouldBlock, non-blocking mode -> return WouldBlock (no parking)
//!     WouldBlock              -> register with this thread's hub on first use (rt/io.rs: a slot
//!                                on the heap, its address the mio token), clear the slot's
//!                                readiness bit for this direction, put a Waiter for this
//!                                greenlet in the slot's cell for it, park with the socket's
//!                                deadline; poll_io sets the bit and wakes the waiter when the
//!                                next edge arrives; retry
//! }
//! ```
//!
//! mio is edge-triggered: an event arrives when readiness *changes*. The sequence above never loses
//! one: between the `WouldBlock` and the park nothing switches (one greenlet runs at a time), so any
//! data arriving after the failed attempt produces an edge the hub has not yet collected, and a
//! socket registered for the first time reports its current readiness at once (`EPOLL_CTL_ADD`).
//!
//! Waiters live in the socket's I/O slot on the heap (one per direction, the rare others in a
//! list beside them), never on the waiting greenlet's stack (invariant 1). A stale waiter (timed
//! out, killed) is replaced by the next one, so a socket read with a short timeout in a loop does
//! not grow anything.
//!
//! # Ownership by one hub
//!
//! A registration belongs to one `mio::Poll`, and so to one hub and its thread: the first thread
//! whose greenlet waits on a socket owns it from then on. The socket types are `Send` (like std's)
//! so they can be handed to another thread *before* their first blocking use; a blocking call from
//! a greenlet of any other thread later returns an `io::Error` saying so. Calls that complete
//! without waiting work from anywhere, as the underlying syscalls do.
//!
//! # Teardown
//!
//! The registration (an `rt::IoHandle`) is undone (deregistered and its slot removed) when the
//! last clone drops, or when the socket is converted back to std, before the descriptor closes or
//! is handed over. On the hub's thread that is done directly. On another thread (a socket moved there before its
//! first wait, or converted to std there) the epoll entry is removed at once through a second
//! handle on the hub's epoll set, and the slot by a message the hub runs itself
//! (`rt::IoRemote`): the kernel drops an epoll entry only when the open file description is
//! released, so a socket converted to std, or `dup`ed, would otherwise stay watched by the hub —
//! and wrapping it again there would fail with `EEXIST`. After the hub is gone only the epoll
//! entry is removed (the slots went with the hub).

#![deny(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) use crate::rt::Dir;
use crate::rt::{current_hub, IoHandle, IoSlot, Naming, Wake, SHORT_READ_RULE};
use crate::sys::socket::Errno;

/// The error a wait for I/O ends with when it was not woken by readiness.
#[cold]
#[inline(never)]
fn wake_error(wake: Wake, dir: Dir, on_timeout: OnTimeout) -> io::Error {
    match wake {
        Wake::TimedOut => match on_timeout {
            OnTimeout::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                match dir {
                    Dir::Read => "the socket's read timeout expired",
                    Dir::Write => "the socket's write timeout expired",
                },
            ),
            OnTimeout::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        },
        Wake::ScopeExpired => io::Error::new(
            io::ErrorKind::TimedOut,
            "an enclosing greenhub timeout expired while waiting for I/O",
        ),
        Wake::Killed | Wake::Deadlock | Wake::Woken => killed(),
    }
}

/// What a socket timeout turns into when it expires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OnTimeout {
    /// `set_read_timeout`/`set_write_timeout`: `WouldBlock`, as std returns on Unix.
    WouldBlock,
    /// `connect_timeout`: `TimedOut`, as std returns.
    TimedOut,
}

/// A non-blocking socket plus its (lazy) registration with a hub and its std-style settings.
/// Shared by a socket's clones through an `Arc`, so they see one readiness state and one set of
/// waiters, and the descriptor closes when the last clone drops.
///
/// `repr(C)`, for the cache: a transfer and its park read the registration's hot end (the
/// handle's owner, slot, hub and key, then the `OnceLock`'s state, which today's std keeps
/// after the value), then `mode` and `fd`, so those are adjacent (48 bytes); the timeouts are
/// read only when `mode` says one was ever set. In the compiler's order a round trip at 1,000 connections
/// touched about 2.2 lines of the allocation (BENCHMARKS.md, "Fourth pass").
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Registered<S: AsRawFd> {
    /// Declared before `io`: fields drop in order, so deregistration precedes the close.
    reg: OnceLock<IoHandle>,
    /// [`NONBLOCKING`], [`HAD_READ_TIMEOUT`], [`HAD_WRITE_TIMEOUT`].
    mode: AtomicU8,
    /// How the registration's mio token names its slot (`rt/io.rs`, "Naming").
    naming: Naming,
    /// `io`'s descriptor, read once: `io` owns it and never changes it.
    fd: RawFd,
    /// Nanoseconds; 0 = no timeout (a zero timeout is rejected when set).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    io: S,
}

/// `Registered::mode`: `set_nonblocking(true)`, return `WouldBlock` instead of parking. (The
/// descriptor itself is always `O_NONBLOCK`.)
const NONBLOCKING: u8 = 1 << 0;
/// `Registered::mode`: a read timeout was set at some point (never cleared, so a reader that
/// sees it clear needs no load of the timeout, whatever setters race with it).
const HAD_READ_TIMEOUT: u8 = 1 << 1;
/// The same for the write timeout.
const HAD_WRITE_TIMEOUT: u8 = 1 << 2;

impl<S: AsRawFd> Registered<S> {
    /// Wraps `io`, whose descriptor must already be in non-blocking mode, for a descriptor that
    /// code outside greenhub may close or replace (an `AsyncFd`'s value, a `dup` kept for a
    /// signal or a child): its registration is named by index.
    pub(crate) fn new(io: S) -> Registered<S> {
        Registered::with_naming(io, Naming::Index)
    }

    /// Wraps a socket that owns its descriptor (a std socket: nothing but dropping it closes the
    /// descriptor, and `Registered` deregisters before that), so its mio token can be its slot's
    /// address.
    pub(crate) fn owning(io: S) -> Registered<S> {
        Registered::with_naming(io, Naming::Address)
    }

    fn with_naming(io: S, naming: Naming) -> Registered<S> {
        Registered {
            reg: OnceLock::new(),
            fd: io.as_raw_fd(),
            io,
            mode: AtomicU8::new(0),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            naming,
        }
    }

    /// The socket, for calls that never block.
    pub(crate) fn get(&self) -> &S {
        &self.io
    }

    /// Undoes the registration and gives the socket back, with the mode the user asked for
    /// (blocking unless `set_nonblocking(true)` was called) applied to the descriptor by `restore`.
    pub(crate) fn into_inner(self, restore: impl FnOnce(&S, bool) -> io::Result<()>) -> S {
        let Registered { reg, io, mode, .. } = self;
        drop(reg);
        // Best effort: a descriptor whose flags cannot be changed is unusable anyway.
        let _ = restore(&io, mode.load(Ordering::Relaxed) & NONBLOCKING != 0);
        io
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        if on {
            self.mode.fetch_or(NONBLOCKING, Ordering::Relaxed);
        } else {
            self.mode.fetch_and(!NONBLOCKING, Ordering::Relaxed);
        }
    }

    /// Whether `set_nonblocking(true)` is in effect.
    #[inline(always)]
    pub(crate) fn is_nonblocking(&self) -> bool {
        self.mode.load(Ordering::Relaxed) & NONBLOCKING != 0
    }

    pub(crate) fn set_timeout(&self, dir: Dir, dur: Option<Duration>) -> io::Result<()> {
        let nanos = match dur {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            None => 0,
        };
        let (cell, had) = self.timeout_cell(dir);
        cell.store(nanos, Ordering::Relaxed);
        if nanos != 0 {
            self.mode.fetch_or(had, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Dir) -> Option<Duration> {
        let (cell, had) = self.timeout_cell(dir);
        if self.mode.load(Ordering::Relaxed) & had == 0 {
            return None;
        }
        match cell.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    fn timeout_cell(&self, dir: Dir) -> (&AtomicU64, u8) {
        match dir {
            Dir::Read => (&self.read_timeout, HAD_READ_TIMEOUT),
            Dir::Write => (&self.write_timeout, HAD_WRITE_TIMEOUT),
        }
    }

    /// This socket's I/O slot, if it is registered with the running thread's hub.
    #[inline(always)]
    fn local_slot(&self) -> Option<&IoSlot> {
        self.reg.get()?.slot()
    }

    /// Runs `op` until it does not return `WouldBlock`, parking on `dir` readiness between tries,
    /// with the socket's timeout for that direction.
    pub(crate) fn io<R>(&self, dir: Dir, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.io_loop(dir, None, OnTimeout::WouldBlock, op)
    }

    /// [`Registered::io`] with an explicit deadline and timeout error.
    pub(crate) fn io_deadline<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        on_timeout: OnTimeout,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io_loop(dir, Some(deadline), on_timeout, op)
    }

    /// The loop of [`Registered::io`]: `deadline` is `None` until the socket's own timeout is
    /// read, at the first wait.
    fn io_loop<R>(
        &self,
        dir: Dir,
        mut deadline: Option<Option<Instant>>,
        on_timeout: OnTimeout,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.is_nonblocking() => {}
                r => return r,
            }
            self.wait_ready(dir, &mut deadline, on_timeout)?;
        }
    }

    /// [`Registered::io`] for a stream socket's `write` (and `write_vectored`), where `len` is how
    /// many bytes the one syscall can take: the buffers' total over at most
    /// [`IOV_MAX`](crate::sys::socket::IOV_MAX) of them, as `send_vectored` passes them.
    ///
    /// A write that moves fewer bytes than that (`0 < n < len`) marks the direction not ready, as
    /// a `WouldBlock` would have marked it; the next write then parks at once instead of spending
    /// a syscall to learn `WouldBlock`. Why that is right for a TCP or Unix stream send (Linux):
    /// `tcp_sendmsg` and `unix_stream_sendmsg` copy until the send buffer is full — exactly the
    /// condition that makes a write that copied nothing return `EAGAIN` — and then return the
    /// partial count; the kernel promises an `EPOLLOUT` edge when room frees up after that
    /// (`sk_stream_write_space`, `unix_write_space`), the same promise the `WouldBlock` path
    /// parks on. Their other early exits are a hang-up or an error during the call, which make an
    /// edge of their own, and a hang-up or error already reported is final (no edge follows), so
    /// then a write always tries (the `*_CLOSED` bits of the I/O slot). The two caps that make a
    /// write short with room left are excluded: more than `IOV_MAX` buffers (`len` counts only the
    /// ones passed) and the per-call byte cap (`MAX_RW_COUNT`, just under 2 GiB: a `len` of 1 GiB or
    /// more never marks).
    ///
    /// The readiness is read before the syscall, straight from the slot (`IoSlot::may_try`): a
    /// write the bits already know would block parks without building an `io::Error`, and `op`
    /// reports a plain [`Errno`].
    ///
    /// Reads have their own, narrower rule: [`Registered::stream_read`].
    #[inline]
    pub(crate) fn stream_write(
        &self,
        len: usize,
        op: impl FnMut(RawFd) -> Result<usize, Errno>,
    ) -> io::Result<usize> {
        self.stream(Dir::Write, len, true, op)
    }

    /// [`Registered::io`] for a stream's `read` (and `read_vectored`), where `len` is how many
    /// bytes the one syscall can take (over at most [`IOV_MAX`](crate::sys::socket::IOV_MAX)
    /// buffers, as `recv_vectored` passes them). With `short_reads` (TCP) the short-read rule
    /// below applies; without (Unix streams), every read tries its syscall, as
    /// [`Registered::io`].
    ///
    /// A short read proves only that the in-band queue was empty *up to a boundary*, so the rule
    /// of [`Registered::stream_write`] holds for reads only where no boundary can have data behind
    /// it. On a Unix stream socket it never holds (a read stops after a segment carrying
    /// descriptors, `SCM_RIGHTS`, and between segments of different writers), so `UnixStream`
    /// passes `short_reads: false`. On Linux TCP (`tcp_recvmsg`) a read that copied something
    /// stops early only when the receive queue (and the socket backlog) ran out, at a FIN or an
    /// error — both reported once and final, hence the `*_CLOSED` bits that make a read always
    /// try — or at the urgent mark. Urgent data is the one boundary with data behind it: it makes
    /// the poll report `EPOLLPRI`, which marks the slot for good (`URGENT` in `rt/io.rs`), and a
    /// slot so marked is never marked "drained". If the urgent data arrived after the hub's last
    /// poll, its edge is still pending and the park that follows collects it. Outside Linux,
    /// where the poll does not report urgent data, the rule is off. Not covered: a socket the
    /// user switched to kernel TLS (`TCP_ULP`), whose reads stop at record boundaries.
    ///
    /// In an echo loop this saves one `recv` (the one that would say `EAGAIN`) per round trip.
    #[inline]
    pub(crate) fn stream_read(
        &self,
        len: usize,
        short_reads: bool,
        op: impl FnMut(RawFd) -> Result<usize, Errno>,
    ) -> io::Result<usize> {
        self.stream(Dir::Read, len, short_reads && SHORT_READ_RULE, op)
    }

    /// The loop of [`Registered::stream_read`] and [`Registered::stream_write`]. With `rule`, the
    /// slot's readiness is checked before the syscall and a short transfer marks it drained.
    ///
    /// The fast path — a registered socket of this thread's hub, ready, in blocking mode — is
    /// straight-line: one load of the registration, one thread-local compare, one load of the
    /// readiness bits, the syscall, and (for a short transfer) one store.
    #[inline(always)]
    fn stream(
        &self,
        dir: Dir,
        len: usize,
        rule: bool,
        mut op: impl FnMut(RawFd) -> Result<usize, Errno>,
    ) -> io::Result<usize> {
        let mut deadline = None;
        loop {
            let blocking = !self.is_nonblocking();
            let slot = self.local_slot();
            if rule && blocking {
                if let Some(slot) = slot {
                    if !slot.may_try(dir) {
                        self.wait_ready(dir, &mut deadline, OnTimeout::WouldBlock)?;
                        continue;
                    }
                }
            }
            match op(self.fd) {
                Ok(n) => {
                    if rule && 0 < n && n < len && len < 1 << 30 {
                        // Unregistered (or another thread's): the first park's registration
                        // reports the real state.
                        if let Some(slot) = slot {
                            slot.mark_drained(dir);
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.is_interrupted() => {}
                Err(e) if e.is_would_block() && blocking => {
                    self.wait_ready(dir, &mut deadline, OnTimeout::WouldBlock)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Parks until `dir` may be ready again, the deadline passes, or the greenlet is killed:
    /// registers on first use, clears `dir`'s readiness, queues this greenlet's waiter, parks.
    /// `deadline` is `None` until the socket's own timeout is read here, once per call (so a
    /// spurious wake-up does not restart it).
    ///
    /// Out of line: a parked greenlet's stack slice is copied on every switch to another greenlet
    /// and kept while it is idle, so the transfer loops keep only this call (a few words live
    /// across the park) and the rare paths (registration, errors) are out of line again.
    #[inline(never)]
    fn wait_ready(
        &self,
        dir: Dir,
        deadline: &mut Option<Option<Instant>>,
        on_timeout: OnTimeout,
    ) -> io::Result<()> {
        let at = match *deadline {
            Some(at) => at,
            None => *deadline.insert(self.deadline(dir)),
        };
        let handle = match self.reg.get() {
            Some(h) => h,
            None => self.register()?,
        };
        let Some(slot) = handle.slot() else {
            return Err(not_here(handle));
        };
        let hub = handle.hub(slot);
        hub.io_arm(slot, dir);
        match hub.io_park(handle.key(), at) {
            Wake::Woken => Ok(()),
            other => Err(wake_error(other, dir, on_timeout)),
        }
    }

    /// The deadline of a wait that starts now, from the socket's timeout for `dir`.
    fn deadline(&self, dir: Dir) -> Option<Instant> {
        self.timeout(dir)
            .and_then(|t| Instant::now().checked_add(t))
    }

    /// Registers this socket with the running thread's hub (its first wait).
    #[cold]
    fn register(&self) -> io::Result<&IoHandle> {
        let hub = current_hub();
        let handle = hub.io_register(self.fd, self.naming)?;
        if let Err(ours) = self.reg.set(handle) {
            // Another thread registered it concurrently: undo ours (on our poll only).
            drop(ours);
        }
        self.reg.get().ok_or_else(foreign)
    }
}

/// Why a registered socket cannot wait on this thread: it belongs to another thread's hub (the
/// error), or this thread's hub was torn down (the "torn down" panic, as any blocking call gets).
#[cold]
#[inline(never)]
#[track_caller]
fn not_here(handle: &IoHandle) -> io::Error {
    if handle.owner_torn_down() {
        current_hub(); // panics: this thread's hub is gone
    }
    foreign()
}

/// The error of a greenlet killed while parked on I/O (seen only by code already unwinding).
pub(crate) fn killed() -> io::Error {
    io::Error::other("greenlet killed while waiting for I/O")
}

/// The error of a socket used on a thread other than its hub's. `InvalidInput`: the call's input
/// (the socket) is wrong for this thread — no OS error, nothing to retry — and callers can match
/// it; the kinds I/O loops retry on (`Interrupted`, `WouldBlock`) would spin.
fn foreign() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "greenhub: this socket belongs to the hub of another thread (a socket belongs to the \
         thread whose greenlet first waited on it; move it between threads only before that)",
    )
}
