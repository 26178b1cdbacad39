//! The reactor: how a socket call that would block becomes a park on the hub.
//!
//! Every `net` type wraps a non-blocking std socket in a [`Registered`], shared by its clones
//! through an `Arc`. A blocking-style call goes like this:
//!
//! ```text
//! loop {
//!     try the operation                       (optimistic: most reads find data, most writes room)
//!     Ok / a real error       -> return it
//!     EINTR                   -> try again
//!     WouldBlock, non-blocking mode -> return WouldBlock (no parking)
//!     WouldBlock              -> register with this thread's hub on first use (slab token = index
//!                                in hub.io), clear the slot's readiness flag for this direction,
//!                                put a Waiter for this greenlet in the slot's list, park with the
//!                                socket's deadline; poll_io marks the flag and wakes the list
//!                                when the next edge arrives; retry
//! }
//! ```
//!
//! mio is edge-triggered: an event arrives when readiness *changes*. The sequence above never loses
//! one: between the `WouldBlock` and the park nothing switches (one greenlet runs at a time), so any
//! data arriving after the failed attempt produces an edge the hub has not yet collected, and a
//! socket registered for the first time reports its current readiness at once (`EPOLL_CTL_ADD`).
//!
//! Waiters live in the hub's slab (`IoSlot::readers` / `writers`), never on the waiting greenlet's
//! stack (invariant 1). Stale waiters (timed out, killed) are pruned each time a new one is added,
//! so a socket read with a short timeout in a loop does not grow its list.
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
//! The registration is undone (deregistered and its slot removed) when the last clone drops, or
//! when the socket is converted back to std, before the descriptor closes or is handed over. On
//! the hub's thread that is done directly. On another thread (a socket moved there before its
//! first wait, or converted to std there) the epoll entry is removed at once through a second
//! handle on the hub's epoll set, and the slot by a message the hub runs itself
//! (`rt::IoRemote`): the kernel drops an epoll entry only when the open file description is
//! released, so a socket converted to std, or `dup`ed, would otherwise stay watched by the hub —
//! and wrapping it again there would fail with `EEXIST`. After the hub is gone only the epoll
//! entry is removed (the slots went with the hub).

#![deny(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub(crate) use crate::rt::Dir;
use crate::rt::{current_hub, existing_hub, Hub, IoRemote, Wake};

/// A process-unique id of this thread's hub (threads have exactly one hub in their life).
fn hub_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        // `const` and destructor-free: readable during thread-local teardown.
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// A live registration: undone when dropped, on any thread, before the descriptor closes
/// (`Registered` declares `reg` before `io`).
struct Reg {
    hub: u64,
    token: usize,
    fd: RawFd,
    /// Undoes it from another thread (or after the hub is gone).
    remote: Arc<IoRemote>,
}

impl Drop for Reg {
    fn drop(&mut self) {
        if hub_id() == self.hub {
            if let Some(hub) = existing_hub() {
                hub.io_deregister(self.fd, self.token);
                return;
            }
        }
        // Another thread (or this hub is gone): the descriptor may stay open (converted to std,
        // or `dup`ed), and the kernel would keep its entry in the hub's epoll set.
        self.remote.deregister(self.fd, self.token);
    }
}

impl std::fmt::Debug for Reg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reg")
            .field("hub", &self.hub)
            .field("token", &self.token)
            .finish()
    }
}

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
/// Shared by a socket's clones through an `Arc`, so they see one readiness state and one waiter
/// list, and the descriptor closes when the last clone drops.
#[derive(Debug)]
pub(crate) struct Registered<S: AsRawFd> {
    /// Declared before `io`: fields drop in order, so deregistration precedes the close.
    reg: OnceLock<Reg>,
    io: S,
    /// `set_nonblocking(true)`: return `WouldBlock` instead of parking. (The descriptor itself is
    /// always `O_NONBLOCK`.)
    nonblocking: AtomicBool,
    /// Nanoseconds; 0 = no timeout (a zero timeout is rejected when set).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

impl<S: AsRawFd> Registered<S> {
    /// Wraps `io`, whose descriptor must already be in non-blocking mode.
    pub(crate) fn new(io: S) -> Registered<S> {
        Registered {
            reg: OnceLock::new(),
            io,
            nonblocking: AtomicBool::new(false),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
        }
    }

    /// The socket, for calls that never block.
    pub(crate) fn get(&self) -> &S {
        &self.io
    }

    /// Undoes the registration and gives the socket back, with the mode the user asked for
    /// (blocking unless `set_nonblocking(true)` was called) applied to the descriptor by `restore`.
    pub(crate) fn into_inner(self, restore: impl FnOnce(&S, bool) -> io::Result<()>) -> S {
        let Registered {
            reg,
            io,
            nonblocking,
            ..
        } = self;
        drop(reg);
        // Best effort: a descriptor whose flags cannot be changed is unusable anyway.
        let _ = restore(&io, nonblocking.load(Ordering::Relaxed));
        io
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// Whether `set_nonblocking(true)` is in effect.
    pub(crate) fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
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
        self.timeout_cell(dir).store(nanos, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Dir) -> Option<Duration> {
        match self.timeout_cell(dir).load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    fn timeout_cell(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Read => &self.read_timeout,
            Dir::Write => &self.write_timeout,
        }
    }

    /// Runs `op` until it does not return `WouldBlock`, parking on `dir` readiness between tries,
    /// with the socket's timeout for that direction.
    pub(crate) fn io<R>(&self, dir: Dir, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        let deadline = self
            .timeout(dir)
            .and_then(|t| Instant::now().checked_add(t));
        self.io_deadline(dir, deadline, OnTimeout::WouldBlock, op)
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
    /// then a write always tries (the `*_closed` flags of the I/O slot). The two caps that make a
    /// write short with room left are excluded: more than `IOV_MAX` buffers (`len` counts only the
    /// ones passed) and the per-call byte cap (`MAX_RW_COUNT`, just under 2 GiB: a `len` of 1 GiB or
    /// more never marks).
    ///
    /// Reads have their own, narrower rule: [`Registered::stream_read`].
    pub(crate) fn stream_write(
        &self,
        len: usize,
        mut op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut skip = self.known_not_ready(Dir::Write);
        let r = self.io(Dir::Write, |s| {
            if std::mem::take(&mut skip) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            op(s)
        });
        if let Ok(n) = r {
            if 0 < n && n < len && len < 1 << 30 {
                self.mark_not_ready(Dir::Write);
            }
        }
        r
    }

    /// [`Registered::io`] for a TCP stream's `read` (and `read_vectored`), where `len` is how many
    /// bytes the one syscall can take (over at most [`IOV_MAX`](crate::sys::socket::IOV_MAX)
    /// buffers, as std's `readv` passes them).
    ///
    /// A short read proves only that the in-band queue was empty *up to a boundary*, so the rule
    /// of [`Registered::stream_write`] holds for reads only where no boundary can have data behind
    /// it. On a Unix stream socket it never holds (a read stops after a segment carrying
    /// descriptors, `SCM_RIGHTS`, and between segments of different writers), so `UnixStream`
    /// does not use this. On Linux TCP (`tcp_recvmsg`) a read that copied something stops early
    /// only when the receive queue (and the socket backlog) ran out, at a FIN or an error — both
    /// reported once and final, hence the `*_closed` flags that make a read always try — or at
    /// the urgent mark. Urgent data is the one boundary with data behind it: it makes the poll
    /// report `EPOLLPRI`, which marks the slot for good (`IoSlot::urgent`), and a slot so marked
    /// is never marked "drained". If the urgent data arrived after the hub's last poll, its edge
    /// is still pending and the park that follows collects it. Outside Linux, where the poll does
    /// not report urgent data, the rule is off. Not covered: a socket the user switched to
    /// kernel TLS (`TCP_ULP`), whose reads stop at record boundaries.
    ///
    /// In an echo loop this saves one `recv` (the one that would say `EAGAIN`) per round trip.
    pub(crate) fn stream_read(
        &self,
        len: usize,
        mut op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if !crate::rt::SHORT_READ_RULE {
            return self.io(Dir::Read, op);
        }
        let mut skip = self.known_not_ready(Dir::Read);
        let r = self.io(Dir::Read, |s| {
            if std::mem::take(&mut skip) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            op(s)
        });
        if let Ok(n) = r {
            if 0 < n && n < len && len < 1 << 30 {
                self.mark_not_ready(Dir::Read);
            }
        }
        r
    }

    /// This socket is registered with this thread's hub, in blocking mode, and the last transfer
    /// of `dir` showed it not ready with no readiness edge since.
    fn known_not_ready(&self, dir: Dir) -> bool {
        let Some(r) = self.reg.get() else {
            return false;
        };
        if r.hub != hub_id() || self.nonblocking.load(Ordering::Relaxed) {
            return false;
        }
        existing_hub().is_some_and(|hub| hub.io_known_not_ready(r.token, dir))
    }

    /// Records that `dir` is not ready until the next edge (see [`Registered::stream_write`],
    /// [`Registered::stream_read`]).
    fn mark_not_ready(&self, dir: Dir) {
        let Some(r) = self.reg.get() else {
            return; // unregistered: the first park's registration reports the real state
        };
        if r.hub != hub_id() {
            return;
        }
        if let Some(hub) = existing_hub() {
            hub.io_mark_not_ready(r.token, dir);
        }
    }

    /// [`Registered::io`] with an explicit deadline and timeout error.
    pub(crate) fn io_deadline<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        on_timeout: OnTimeout,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        && !self.nonblocking.load(Ordering::Relaxed) => {}
                r => return r,
            }
            self.wait_ready(dir, deadline, on_timeout)?;
        }
    }

    /// Parks until `dir` may be ready again, `deadline` passes, or the greenlet is killed.
    ///
    /// Out of line, and split so that only a few words are live across the park: a parked
    /// greenlet's stack slice is copied on every switch to another greenlet and kept while it is
    /// idle, so the registration and the error construction run in helpers whose frames are gone
    /// by the time it parks.
    #[inline(never)]
    fn wait_ready(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        on_timeout: OnTimeout,
    ) -> io::Result<()> {
        let (hub, token) = self.arm_wait(dir)?;
        match hub.io_park(token, deadline) {
            Wake::Woken => Ok(()),
            other => Err(wake_error(other, dir, on_timeout)),
        }
    }

    /// Registers on first use, clears `dir`'s readiness and queues this greenlet's waiter.
    #[inline(never)]
    fn arm_wait(&self, dir: Dir) -> io::Result<(&'static Hub, usize)> {
        let (hub, token) = self.register()?;
        hub.io_arm_wait(token, dir);
        Ok((hub, token))
    }

    /// This socket's token in the current hub, registering it on first use.
    fn register(&self) -> io::Result<(&'static Hub, usize)> {
        let me = hub_id();
        if let Some(r) = self.reg.get() {
            return if r.hub == me {
                Ok((current_hub(), r.token))
            } else {
                Err(foreign())
            };
        }
        let hub = current_hub();
        let fd = self.io.as_raw_fd();
        let (token, remote) = hub.io_register(fd)?;
        match self.reg.set(Reg {
            hub: me,
            token,
            fd,
            remote,
        }) {
            Ok(()) => Ok((hub, token)),
            Err(ours) => {
                // Another thread registered it concurrently: undo ours (on our poll only).
                drop(ours);
                Err(foreign())
            }
        }
    }
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
