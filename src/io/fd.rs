//! Parking a greenlet on readiness of a raw file descriptor greenhub does not own.
//!
//! [`wait_fd`] is the one primitive: "park the current greenlet until descriptor `fd` is readable
//! and/or writable, or `deadline` passes". It is what the public [`wait_readable`](super::wait_readable) /
//! [`wait_writable`](super::wait_writable) are built on, and what a libc interposition layer needs
//! for `read`/`write`/`poll` on descriptors it did not create.
//!
//! # A one-shot registration per wait
//!
//! ```text
//! wait_fd(fd, interest, deadline)
//!   no hub on this thread        -> poll(2) on the fd: blocks the OS thread (nothing else to run)
//!   register fd with the hub for one interest (rt/io.rs), EPOLL_CTL_ADD fd (edge-triggered; ADD reports current readiness)
//!       EEXIST (fd already in this hub's epoll: a net socket, an AsyncFd, another wait)
//!                                -> dup the fd, register the duplicate instead (see below)
//!       EPERM (regular file, directory: epoll refuses what is always ready)
//!                                -> return Ok(()) at once
//!   queue this greenlet's Waiter on the slot, park with the deadline
//!   EPOLL_CTL_DEL, remove the slot, close the duplicate: also when the park unwinds (kill)
//! ```
//!
//! The registration is not cached between waits: greenhub does not own the descriptor, and a
//! descriptor closed behind its back and reused for another file would keep a registration that
//! no longer names anything (the kernel drops a closed descriptor's epoll entry by itself, so a
//! cached entry would simply never fire again — a hang). Two `epoll_ctl` calls per park is the
//! price; a descriptor waited on in a loop should be wrapped in an [`AsyncFd`](super::AsyncFd),
//! which registers once.
//!
//! **`EEXIST`.** mio (epoll) refuses to add the same descriptor to one epoll instance twice. The
//! interest list is keyed by the pair (open file, descriptor number), so a `dup` of the descriptor
//! names the same open file under a new number and can be added beside the existing entry: it
//! sees the same readiness. Costs one `fcntl(F_DUPFD_CLOEXEC)` and one `close` per such wait.
//!
//! **For a libc interposition layer** (`read`/`write`/`accept`/`poll` on descriptors the program
//! made): try the call non-blocking; on `EAGAIN` call `wait_fd(fd, Interest::READABLE or
//! WRITABLE, deadline)` and retry; `Err(TimedOut)` maps to the call's own timeout. `wait_fd` with
//! `READABLE | WRITABLE` returns when either is ready (re-check with `poll(2)`, timeout 0, to
//! learn which). It is a blocking point like any other: timeout scopes end it, kills unwind from
//! it. It does not pass the fairness point ([`fair_point`]): every call parks.
//!
//! Readiness may be spurious (a hang-up or error wakes both directions; a registration reports a
//! state that another reader consumes first): callers retry their operation and wait again on
//! `WouldBlock`, as with any readiness API.

// Only this file and `pipe()` call libc directly; each block names what it relies on.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::Interest;

use crate::rt::{existing_hub, Hub, WaitOn, Wake};

/// Parks the running greenlet until `fd` is ready for `interest` (readable, writable, or either
/// when both are given), `deadline` passes, or an enclosing timeout scope expires. On a thread
/// without a hub it blocks the thread in `poll(2)`.
///
/// Returns `Ok(())` when readiness was reported (possibly spuriously: retry the operation), and
/// at once for descriptors epoll cannot watch because they are always ready (regular files).
///
/// # Errors
/// `TimedOut` when `deadline` passes ("timed out waiting for a file descriptor") or an enclosing
/// timeout scope expires; `EBADF` and other `epoll_ctl`/`poll` errors; the "killed" error for a
/// greenlet whose kill is already unwinding (a kill otherwise unwinds from here).
///
/// # Panics
/// Inside the hub context (a hub callback).
pub(crate) fn wait_fd(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let Some(hub) = existing_hub() else {
        return poll_fd(fd, interest, deadline);
    };
    hub.current_core("wait for a file descriptor");
    let Some(reg) = OneShot::register(hub, fd, interest)? else {
        return Ok(()); // always ready
    };
    let wake = reg.park(deadline);
    drop(reg);
    match wake {
        Wake::Woken => Ok(()),
        Wake::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out waiting for a file descriptor",
        )),
        Wake::ScopeExpired => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "an enclosing greenhub timeout expired while waiting for a file descriptor",
        )),
        Wake::Killed | Wake::Deadlock => Err(crate::reactor::killed()),
    }
}

/// How long a greenlet may keep finding its descriptors ready, without the hub loop running in
/// between, before [`fair_point`] sends it through the hub.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_millis(1);

/// Fairness for descriptors that stay ready: called before each operation of an `AsyncFd` (pipes,
/// child pipes). A reader of a fast producer (a child writing as fast as it can) may find data on
/// every read and never park, which would hold the hub — no timer, no other greenlet would run
/// until the stream ends. So when the hub loop has not run for [`HOLD_LIMIT`] while this thread
/// kept finding descriptors ready, the caller parks once with an immediate deadline: the loop runs
/// other ready greenlets, polls and fires timers, then resumes it (tokio's cooperative budget,
/// measured in time instead of operations). Costs one `Instant::now()` per operation; a caller
/// that parks on its own never pays the trip.
///
/// # Errors
/// `TimedOut` when the trip finds an enclosing timeout scope expired (it is a blocking point).
pub(crate) fn fair_point() -> io::Result<()> {
    thread_local! {
        /// (the hub's loop iteration count, when this thread was first seen in it).
        static STREAK: Cell<(u64, Option<Instant>)> = const { Cell::new((u64::MAX, None)) };
    }
    let Some(hub) = existing_hub() else {
        return Ok(());
    };
    let (ticks, in_greenlet) = hub.loop_ticks();
    if !in_greenlet {
        return Ok(()); // a hub callback: cannot park, and holds the loop only briefly
    }
    let now = Instant::now();
    let Ok((seen, since)) = STREAK.try_with(Cell::get) else {
        return Ok(()); // thread-local teardown
    };
    match since {
        Some(t) if seen == ticks => {
            if now.duration_since(t) < HOLD_LIMIT {
                return Ok(());
            }
        }
        _ => {
            let _ = STREAK.try_with(|s| s.set((ticks, Some(now))));
            return Ok(());
        }
    }
    let wake = hub.park(WaitOn::Sleep, Some(now));
    let _ = STREAK.try_with(|s| s.set((hub.loop_ticks().0, Some(Instant::now()))));
    match wake {
        Wake::ScopeExpired => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "an enclosing greenhub timeout expired during I/O",
        )),
        Wake::Killed | Wake::Deadlock => Err(crate::reactor::killed()),
        Wake::Woken | Wake::TimedOut => Ok(()),
    }
}

/// A registration for one wait; undone on drop (also when a kill unwinds through the park).
struct OneShot {
    hub: &'static Hub,
    token: usize,
    /// The descriptor registered: the caller's, or `dup` when that was already registered.
    fd: RawFd,
    _dup: Option<OwnedFd>,
}

impl OneShot {
    /// Registers `fd` with `hub`'s poll and queues the running greenlet's waiter; `None` if the
    /// descriptor is of a kind epoll refuses because it is always ready.
    #[inline(never)]
    fn register(hub: &'static Hub, fd: RawFd, interest: Interest) -> io::Result<Option<OneShot>> {
        let mut dup = None;
        let mut registered = fd;
        let mut r = hub.io_register_for(fd, interest);
        if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EEXIST)) {
            let d = dup_fd(fd)?;
            registered = d.as_raw_fd();
            r = hub.io_register_for(registered, interest);
            dup = Some(d);
        }
        let token = match r {
            Ok(token) => token,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(None),
            Err(e) => return Err(e),
        };
        hub.io_queue_waiter(token, interest);
        Ok(Some(OneShot {
            hub,
            token,
            fd: registered,
            _dup: dup,
        }))
    }

    /// Parks until the slot's readiness wakes us, the deadline, a scope or a kill.
    fn park(&self, deadline: Option<Instant>) -> Wake {
        self.hub.io_park(self.token, deadline)
    }
}

impl Drop for OneShot {
    fn drop(&mut self) {
        if existing_hub().is_none() {
            return; // torn down: the epoll instance is gone
        }
        self.hub.io_deregister(self.fd, self.token);
        // `_dup` closes after the deregistration.
    }
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) reads no memory of ours; a valid result is a fresh descriptor
    // that nobody else owns, so adopting it is sound.
    unsafe {
        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if d < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(d))
    }
}

/// `wait_fd` for a thread without a hub: `poll(2)`, retried on `EINTR`.
fn poll_fd(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let mut events = 0;
    if interest.is_readable() {
        events |= libc::POLLIN;
    }
    if interest.is_writable() {
        events |= libc::POLLOUT;
    }
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder still waits.
                let ms = left.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd that lives for the call.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for a file descriptor",
                ));
            }
            continue;
        }
        if p.revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        return Ok(());
    }
}

/// The deadline `timeout` from now (`None`: no deadline; an overflowing one: none either).
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Whether `fd` has `O_NONBLOCK` set.
pub(crate) fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: F_GETFL reads no memory of ours.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl & libc::O_NONBLOCK != 0)
}

/// Sets or clears `O_NONBLOCK` on `fd` (the flag belongs to the open file description: shared by
/// every duplicate of it).
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL read and write no memory of ours.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 {
            return Err(io::Error::last_os_error());
        }
        let new = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        if new != fl && libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pipe with both ends non-blocking and close-on-exec: `(read end, write end)`.
pub(crate) fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass; on success both are fresh and
    // owned by nobody else, so adopting them is sound.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}
