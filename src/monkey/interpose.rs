//! The libc entry points greenhub defines under the `monkey` feature.
//!
//! Each function is `#[no_mangle] extern "C"` with libc's exact C signature. It first asks
//! [`cooperative`]: outside a greenlet (no hub on this thread, the hub context, unwinding, or a
//! call made by the monkey layer itself) it is the real system call and nothing else. Inside a
//! greenlet it emulates the blocking call with non-blocking attempts and parks between them (see
//! the module docs of `crate::monkey` for the rules per call).
//!
//! None of these functions may unwind: they are `extern "C"` (an unwind out of them aborts) and
//! their callers may be C. Kills are caught in `wait::park`; nothing else here panics.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::time::{Duration, Instant};

use libc::{
    addrinfo, iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timespec,
};

use super::sys::{self, errno, fail, set_errno};
use super::wait::{self, Want};
use super::{cooperative, Busy};
use crate::rt::{Hub, Kind, WaitOn, Wake};

/// Largest iovec count the kernel accepts (`UIO_MAXIOV`, `IOV_MAX`).
const IOV_MAX: c_int = 1024;

/// A descriptor number no process can have open (the kernel's hard maximum, `nr_open`, is at
/// most 2^30): `is_active` reads from it through std and sees whether the call reached us.
pub(crate) const PROBE_FD: c_int = c_int::MAX - 1;

static PROBE_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether std's `read` reaches the `read` defined below (see `monkey::is_active`).
pub(crate) fn probe() -> bool {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: PROBE_FD is never an open descriptor, so the File owns nothing; ManuallyDrop keeps
    // it from ever being closed; the read fails with EBADF.
    let f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(PROBE_FD) });
    let _ = (&*f).read(&mut [0u8; 1]);
    PROBE_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the dynamic linker's global lookup of `read` — what a shared library loaded by this
/// program binds to — finds the `read` below (see `monkey::is_exported`).
pub(crate) fn exported() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"read".as_ptr()) };
    std::ptr::eq(p.cast_const(), read as *const c_void)
}

// ---------------------------------------------------------------------------------------------
// The blocking emulation shared by every call.

/// Per-call state of a blocking emulation: the program's mode and the call's deadline, read once
/// at the first `EAGAIN` (a blocking call's timeout runs from its start, as the kernel's does).
struct Call {
    fd: c_int,
    write: bool,
    /// `None` until the first wait; then `Some(deadline)`.
    deadline: Option<Option<Instant>>,
    nonblocking: Option<bool>,
}

/// What a wait for readiness ended with.
enum Waited {
    /// Try again.
    Again,
    /// Return `-1` with this errno.
    Fail(c_int),
    /// The descriptor cannot be waited on here: make the real (blocking) call.
    Fallback,
}

impl Call {
    fn new(fd: c_int, write: bool) -> Call {
        Call {
            fd,
            write,
            deadline: None,
            nonblocking: None,
        }
    }

    /// The program itself made the descriptor non-blocking (`O_NONBLOCK` in its status flags:
    /// `fcntl(F_SETFL)`, `ioctl(FIONBIO)`, `SOCK_NONBLOCK`; greenhub never leaves it changed).
    fn nonblocking(&mut self) -> bool {
        let fd = self.fd;
        *self
            .nonblocking
            .get_or_insert_with(|| sys::status_flags(fd).is_none_or(|f| f & libc::O_NONBLOCK != 0))
    }

    /// Parks until the descriptor may be ready; `timeout_errno` is what an expired
    /// `SO_RCVTIMEO`/`SO_SNDTIMEO` turns into.
    fn wait(&mut self, hub: &'static Hub, timeout_errno: c_int) -> Waited {
        if self.nonblocking() {
            return Waited::Fail(libc::EAGAIN);
        }
        let (fd, write) = (self.fd, self.write);
        let deadline = *self.deadline.get_or_insert_with(|| {
            let opt = if write {
                libc::SO_SNDTIMEO
            } else {
                libc::SO_RCVTIMEO
            };
            sys::socket_timeout(fd, opt).and_then(|t| Instant::now().checked_add(t))
        });
        match wait::wait_one(hub, fd, write, deadline) {
            Ok(Wake::Woken) => Waited::Again,
            Ok(Wake::TimedOut) => Waited::Fail(timeout_errno),
            Ok(Wake::ScopeExpired) => Waited::Fail(libc::ETIMEDOUT),
            Ok(Wake::Killed | Wake::Deadlock) => Waited::Fail(libc::ECANCELED),
            Err(_) => Waited::Fallback,
        }
    }

    /// Runs the non-blocking `attempt` until it stops failing with `EAGAIN`, parking between
    /// tries. `Err(())`: fall back to the real blocking call.
    fn until_ready(
        &mut self,
        hub: &'static Hub,
        mut attempt: impl FnMut() -> ssize_t,
    ) -> Result<ssize_t, ()> {
        loop {
            let r = attempt();
            if r >= 0 || errno() != libc::EAGAIN {
                return Ok(r);
            }
            match self.wait(hub, libc::EAGAIN) {
                Waited::Again => {}
                Waited::Fail(e) => return Ok(fail(e)),
                Waited::Fallback => return Err(()),
            }
        }
    }
}

/// One blocking transfer: returns as soon as `attempt` moves anything (a read, a datagram).
/// Out of line, so the pass-through path of the callers stays a check and a system call.
#[inline(never)]
fn single(
    hub: &'static Hub,
    fd: c_int,
    write: bool,
    attempt: impl FnMut() -> ssize_t,
    fallback: impl FnOnce() -> ssize_t,
) -> ssize_t {
    let _busy = Busy::enter();
    Call::new(fd, write)
        .until_ready(hub, attempt)
        .unwrap_or_else(|()| fallback())
}

/// A blocking stream transfer of `total` bytes that is complete only when all moved (a blocking
/// `send`, or `recv` with `MSG_WAITALL`): `attempt(done)` moves some of the rest. Stops early, as
/// the kernel does, at end of file (a read of 0), at an error or timeout (returning the count if
/// any bytes moved), and on a descriptor the program made non-blocking (after the first transfer).
#[inline(never)]
fn all(
    hub: &'static Hub,
    fd: c_int,
    write: bool,
    total: usize,
    mut attempt: impl FnMut(usize) -> ssize_t,
    mut fallback: impl FnMut(usize) -> ssize_t,
) -> ssize_t {
    let _busy = Busy::enter();
    let mut call = Call::new(fd, write);
    let mut done = 0usize;
    loop {
        let r = match call.until_ready(hub, || attempt(done)) {
            Ok(r) => r,
            Err(()) => fallback(done),
        };
        if r < 0 {
            return if done > 0 { done as ssize_t } else { r };
        }
        done += r as usize;
        if done >= total || r == 0 || call.nonblocking() {
            return done as ssize_t;
        }
    }
}

/// Runs `f` out of line: the cooperative half of a hot entry point, so that its pass-through half
/// compiles to the checks and the system call alone (no spills for the closures below).
#[inline(never)]
fn outline<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `iov` with its first `skip` bytes dropped.
fn advanced(iov: &[iovec], mut skip: usize) -> Vec<iovec> {
    let mut out = Vec::with_capacity(iov.len());
    for v in iov {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        out.push(iovec {
            // SAFETY (pointer arithmetic only): `skip < iov_len`, inside the caller's buffer.
            iov_base: v.iov_base.cast::<u8>().wrapping_add(skip).cast(),
            iov_len: v.iov_len - skip,
        });
        skip = 0;
    }
    out
}

fn iov_total(iov: &[iovec]) -> usize {
    iov.iter().fold(0usize, |a, v| a.saturating_add(v.iov_len))
}

/// The caller's iovec array as a slice.
///
/// # Safety
/// `iov` points at `n` valid iovecs (the caller's readv/writev contract) and `0 < n <= IOV_MAX`.
unsafe fn iov_slice<'a>(iov: *const iovec, n: c_int) -> &'a [iovec] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(iov, n as usize) }
}

/// Standard input, output and error always pass through, even when they are sockets (a
/// service's stdout connected to a log daemon's stream socket): std guards them with a lock
/// that is re-entrant per *thread*, so a greenlet parked inside `println!` would let another
/// greenlet of the same thread into the same `RefCell` and panic it.
#[inline(always)]
fn is_stdio(fd: c_int) -> bool {
    (0..=2).contains(&fd)
}

fn is_main(hub: &'static Hub) -> bool {
    hub.current_core("sleep").kind == Kind::Main
}

/// Sleeps the running greenlet (`hub::sleep`). A timeout scope that expires, or a kill, ends the
/// sleep early (as `hub::sleep` does; the kill stays pending).
fn sleep_for(hub: &'static Hub, dur: Duration) {
    let _busy = Busy::enter();
    if dur.is_zero() {
        super::set_busy(false);
        let _ = panic::catch_unwind(AssertUnwindSafe(|| hub.yield_now()));
        return;
    }
    let Some(at) = Instant::now().checked_add(dur) else {
        wait::park(hub, WaitOn::Sleep, None);
        return;
    };
    while Instant::now() < at {
        if wait::park(hub, WaitOn::Sleep, Some(at)) != Wake::Woken {
            return;
        }
    }
}

/// A `timespec` as a duration, or `None` if it is invalid (`EINVAL` for nanosleep).
fn duration_of(ts: &timespec) -> Option<Duration> {
    (ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec))
        .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Milliseconds left until `deadline` for a real `poll`, rounded up; -1 for none.
fn remaining_ms(deadline: Option<Instant>) -> c_int {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_nanos().div_ceil(1_000_000);
            ms.min(c_int::MAX as u128) as c_int
        }
    }
}

/// A zero-timeout `poll` of one descriptor: the events it reports (0: not ready), or -1.
fn poll_now(fd: c_int, events: i16) -> i32 {
    let mut p = pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack.
    match unsafe { sys::poll(&mut p, 1, 0) } {
        r if r < 0 => -1,
        _ => i32::from(p.revents),
    }
}

// ---------------------------------------------------------------------------------------------
// Stream and datagram I/O.

/// `read(2)`: on a socket, in a greenlet, `recv(MSG_DONTWAIT)` and park until readable (the two
/// are the same call on a socket); anything else passes through.
///
/// # Safety
/// read(2)'s contract: `buf` is writable for `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| !is_stdio(fd)) else {
        // SAFETY: read(2)'s contract, passed on.
        let r = unsafe { sys::read(fd, buf, count) };
        if r < 0 && fd == PROBE_FD {
            PROBE_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        return r;
    };
    outline(move || {
        // A zero-length read of a socket returns 0 at once; a zero-length recv might not.
        if count == 0 {
            // SAFETY: read(2)'s contract.
            return unsafe { sys::read(fd, buf, count) };
        }
        let r = single(
            hub,
            fd,
            false,
            // SAFETY: read(2)'s contract: `buf` is writable for `count` bytes.
            || unsafe {
                sys::recvfrom(
                    fd,
                    buf,
                    count,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            },
            // SAFETY: as above.
            || unsafe { sys::read(fd, buf, count) },
        );
        if r < 0 && errno() == libc::ENOTSOCK {
            // SAFETY: as above.
            return unsafe { sys::read(fd, buf, count) };
        }
        r
    })
}

/// `write(2)`: on a socket, in a greenlet, `send(MSG_DONTWAIT)` until every byte is queued (a
/// blocking write to a stream socket transfers all unless interrupted); else passes through.
///
/// # Safety
/// write(2)'s contract: `buf` is readable for `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| !is_stdio(fd)) else {
        // SAFETY: write(2)'s contract.
        return unsafe { sys::write(fd, buf, count) };
    };
    outline(move || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        let r = all(
            hub,
            fd,
            true,
            count,
            // SAFETY: write(2)'s contract; `done < count`, so the rest is inside `buf`.
            |done| unsafe {
                sys::sendto(
                    fd,
                    at(done),
                    count - done,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            },
            // SAFETY: as above.
            |done| unsafe { sys::write(fd, at(done), count - done) },
        );
        if r < 0 && errno() == libc::ENOTSOCK {
            // SAFETY: as above.
            return unsafe { sys::write(fd, buf, count) };
        }
        r
    })
}

/// `readv(2)`: on a socket, in a greenlet, `recvmsg(MSG_DONTWAIT)`; else passes through.
///
/// # Safety
/// readv(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| !is_stdio(fd)) else {
        // SAFETY: readv(2)'s contract.
        return unsafe { sys::readv(fd, iov, iovcnt) };
    };
    outline(move || {
        // Out-of-range counts get readv's own error (recvmsg's would differ); empty reads return 0.
        // SAFETY: readv(2)'s contract, count checked.
        if !(1..=IOV_MAX).contains(&iovcnt) || iov_total(unsafe { iov_slice(iov, iovcnt) }) == 0 {
            // SAFETY: readv(2)'s contract.
            return unsafe { sys::readv(fd, iov, iovcnt) };
        }
        // SAFETY: all-zero is a valid msghdr (null name and control).
        let mut msg: msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.cast_mut();
        msg.msg_iovlen = iovcnt as _;
        let r = single(
            hub,
            fd,
            false,
            // SAFETY: `msg` describes the caller's buffers (readv's contract).
            || unsafe { sys::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) },
            // SAFETY: readv(2)'s contract.
            || unsafe { sys::readv(fd, iov, iovcnt) },
        );
        if r < 0 && errno() == libc::ENOTSOCK {
            // SAFETY: readv(2)'s contract.
            return unsafe { sys::readv(fd, iov, iovcnt) };
        }
        r
    })
}

/// `writev(2)`: on a socket, in a greenlet, `sendmsg(MSG_DONTWAIT)` until all is queued; else
/// passes through.
///
/// # Safety
/// writev(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| !is_stdio(fd)) else {
        // SAFETY: writev(2)'s contract.
        return unsafe { sys::writev(fd, iov, iovcnt) };
    };
    outline(move || {
        if !(1..=IOV_MAX).contains(&iovcnt) {
            // SAFETY: writev(2)'s contract.
            return unsafe { sys::writev(fd, iov, iovcnt) };
        }
        // SAFETY: writev(2)'s contract, count checked.
        let vecs = unsafe { iov_slice(iov, iovcnt) };
        let total = iov_total(vecs);
        let send = |done: usize, dontwait: bool| {
            let rest;
            // SAFETY: all-zero is a valid msghdr.
            let mut msg: msghdr = unsafe { std::mem::zeroed() };
            if done == 0 {
                msg.msg_iov = iov.cast_mut();
                msg.msg_iovlen = iovcnt as _;
            } else {
                rest = advanced(vecs, done);
                msg.msg_iov = rest.as_ptr().cast_mut();
                msg.msg_iovlen = rest.len() as _;
            }
            let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: `msg` describes (the rest of) the caller's buffers.
            unsafe { sys::sendmsg(fd, &msg, flags) }
        };
        let r = all(hub, fd, true, total, |d| send(d, true), |d| send(d, false));
        if r < 0 && errno() == libc::ENOTSOCK {
            // SAFETY: writev(2)'s contract.
            return unsafe { sys::writev(fd, iov, iovcnt) };
        }
        r
    })
}

/// `recv(2)`: in a greenlet, without `MSG_DONTWAIT`, parks until data (or, with `MSG_WAITALL` on
/// a stream, until `len` bytes or end of file).
///
/// # Safety
/// recv(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: recv(2)'s contract; null address arguments.
    unsafe { recvfrom(fd, buf, len, flags, ptr::null_mut(), ptr::null_mut()) }
}

/// `recvfrom(2)`: as [`recv`], filling the source address.
///
/// # Safety
/// recvfrom(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| flags & libc::MSG_DONTWAIT == 0) else {
        // SAFETY: recvfrom(2)'s contract.
        return unsafe { sys::recvfrom(fd, buf, len, flags, addr, addrlen) };
    };
    outline(move || {
        let nb = flags | libc::MSG_DONTWAIT;
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        if flags & libc::MSG_WAITALL != 0 && flags & libc::MSG_PEEK == 0 && sys::is_stream(fd) {
            return all(
                hub,
                fd,
                false,
                len,
                // SAFETY: recvfrom(2)'s contract; `done < len`.
                |done| unsafe { sys::recvfrom(fd, at(done), len - done, nb, addr, addrlen) },
                // SAFETY: as above.
                |done| unsafe { sys::recvfrom(fd, at(done), len - done, flags, addr, addrlen) },
            );
        }
        single(
            hub,
            fd,
            false,
            // SAFETY: recvfrom(2)'s contract.
            || unsafe { sys::recvfrom(fd, buf, len, nb, addr, addrlen) },
            // SAFETY: recvfrom(2)'s contract.
            || unsafe { sys::recvfrom(fd, buf, len, flags, addr, addrlen) },
        )
    })
}

/// `recvmsg(2)`: in a greenlet, without `MSG_DONTWAIT`, parks until data. (`MSG_WAITALL` passes
/// through: gathering into a vector across calls is not emulated.)
///
/// # Safety
/// recvmsg(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let coop = cooperative()
        .filter(|_| flags & (libc::MSG_DONTWAIT | libc::MSG_WAITALL) == 0 && !msg.is_null());
    let Some(hub) = coop else {
        // SAFETY: recvmsg(2)'s contract.
        return unsafe { sys::recvmsg(fd, msg, flags) };
    };
    single(
        hub,
        fd,
        false,
        // SAFETY: recvmsg(2)'s contract; a failed attempt leaves `msg` as it was.
        || unsafe { sys::recvmsg(fd, msg, flags | libc::MSG_DONTWAIT) },
        // SAFETY: recvmsg(2)'s contract.
        || unsafe { sys::recvmsg(fd, msg, flags) },
    )
}

/// `send(2)`: in a greenlet, without `MSG_DONTWAIT`, parks until every byte is queued.
///
/// # Safety
/// send(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: send(2)'s contract; no address.
    unsafe { sendto(fd, buf, len, flags, ptr::null(), 0) }
}

/// `sendto(2)`: as [`send`], to an address.
///
/// # Safety
/// sendto(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    let Some(hub) = cooperative().filter(|_| flags & libc::MSG_DONTWAIT == 0) else {
        // SAFETY: sendto(2)'s contract.
        return unsafe { sys::sendto(fd, buf, len, flags, addr, addrlen) };
    };
    outline(move || {
        let at = |done: usize| buf.cast::<u8>().wrapping_add(done).cast::<c_void>();
        all(
            hub,
            fd,
            true,
            len,
            // SAFETY: sendto(2)'s contract; `done < len`.
            |done| unsafe {
                sys::sendto(
                    fd,
                    at(done),
                    len - done,
                    flags | libc::MSG_DONTWAIT,
                    addr,
                    addrlen,
                )
            },
            // SAFETY: as above.
            |done| unsafe { sys::sendto(fd, at(done), len - done, flags, addr, addrlen) },
        )
    })
}

/// `sendmsg(2)`: in a greenlet, without `MSG_DONTWAIT`, parks until all is queued (ancillary
/// data goes with the first part only, as the kernel sends it).
///
/// # Safety
/// sendmsg(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let coop = cooperative().filter(|_| flags & libc::MSG_DONTWAIT == 0 && !msg.is_null());
    let Some(hub) = coop else {
        // SAFETY: sendmsg(2)'s contract.
        return unsafe { sys::sendmsg(fd, msg, flags) };
    };
    // SAFETY: sendmsg(2)'s contract: `msg` is valid.
    let m = unsafe { &*msg };
    let n = m.msg_iovlen;
    if n == 0 || n > IOV_MAX as usize {
        // SAFETY: sendmsg(2)'s contract.
        return unsafe { sys::sendmsg(fd, msg, flags) };
    }
    // SAFETY: sendmsg(2)'s contract, count checked.
    let vecs = unsafe { iov_slice(m.msg_iov, n as c_int) };
    let total = iov_total(vecs);
    let send = |done: usize, f: c_int| {
        if done == 0 {
            // SAFETY: sendmsg(2)'s contract.
            return unsafe { sys::sendmsg(fd, msg, f) };
        }
        let rest = advanced(vecs, done);
        // SAFETY: a bitwise copy of the caller's header; only plain fields are changed.
        let mut m2: msghdr = unsafe { ptr::read(msg) };
        m2.msg_iov = rest.as_ptr().cast_mut();
        m2.msg_iovlen = rest.len() as _;
        m2.msg_control = ptr::null_mut();
        m2.msg_controllen = 0;
        // SAFETY: `m2` describes the rest of the caller's buffers.
        unsafe { sys::sendmsg(fd, &m2, f) }
    };
    all(
        hub,
        fd,
        true,
        total,
        |d| send(d, flags | libc::MSG_DONTWAIT),
        |d| send(d, flags),
    )
}

// ---------------------------------------------------------------------------------------------
// Connections.

/// `connect(2)`: in a greenlet, on a socket in blocking mode, the connect is started in
/// non-blocking mode (the flag is set for that one system call and restored at once) and the
/// greenlet parks until it completes; `SO_SNDTIMEO` ends the wait with `EINPROGRESS`, as Linux's
/// blocking connect does.
///
/// # Safety
/// connect(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let coop = cooperative().and_then(|h| Some((h, sys::status_flags(fd)?)));
    let Some((hub, flags)) = coop.filter(|&(_, f)| f & libc::O_NONBLOCK == 0) else {
        // SAFETY: connect(2)'s contract.
        return unsafe { sys::connect(fd, addr, len) };
    };
    let _busy = Busy::enter();
    if sys::set_status_flags(fd, flags | libc::O_NONBLOCK) != 0 {
        // SAFETY: connect(2)'s contract.
        return unsafe { sys::connect(fd, addr, len) };
    }
    // SAFETY: connect(2)'s contract.
    let r = unsafe { sys::connect(fd, addr, len) };
    let e = errno();
    sys::set_status_flags(fd, flags);
    set_errno(e);
    if r == 0 {
        return 0;
    }
    match e {
        libc::EINPROGRESS => {}
        // A Unix socket whose listener's backlog is full: a blocking connect would wait for
        // room, which readiness cannot tell; block as libc would.
        // SAFETY: connect(2)'s contract.
        libc::EAGAIN => return unsafe { sys::connect(fd, addr, len) },
        _ => return -1,
    }
    let deadline =
        sys::socket_timeout(fd, libc::SO_SNDTIMEO).and_then(|t| Instant::now().checked_add(t));
    let done = |revents: i32| {
        if revents == 0 {
            return None;
        }
        Some(match sys::socket_error(fd) {
            0 => 0,
            err => fail(err) as c_int,
        })
    };
    let out = libc::POLLOUT;
    loop {
        match wait::wait_one(hub, fd, true, deadline) {
            Ok(Wake::Woken) => {
                if let Some(r) = done(poll_now(fd, out)) {
                    return r;
                }
            }
            Ok(Wake::TimedOut) => {
                return done(poll_now(fd, out)).unwrap_or_else(|| fail(libc::EINPROGRESS) as c_int)
            }
            Ok(Wake::ScopeExpired) => return fail(libc::ETIMEDOUT) as c_int,
            Ok(_) => return fail(libc::ECANCELED) as c_int,
            Err(_) => {
                let mut p = pollfd {
                    fd,
                    events: out,
                    revents: 0,
                };
                // SAFETY: one pollfd on our stack.
                let n = unsafe { sys::poll(&mut p, 1, remaining_ms(deadline)) };
                return done(if n > 0 { i32::from(p.revents) } else { 0 })
                    .unwrap_or_else(|| fail(libc::EINPROGRESS) as c_int);
            }
        }
    }
}

/// `accept(2)`.
///
/// # Safety
/// accept(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: accept(2)'s contract.
    unsafe { accept4(fd, addr, len, 0) }
}

/// `accept4(2)`: in a greenlet, on a listener in blocking mode, parks until a connection is
/// pending (a zero-timeout `poll` tells; the listener's flags are never changed) and then accepts.
///
/// # Safety
/// accept4(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: accept4(2)'s contract.
    let real = || unsafe { sys::accept4(fd, addr, len, flags) };
    let Some(hub) = cooperative() else {
        return real();
    };
    let _busy = Busy::enter();
    let mut call = Call::new(fd, false);
    loop {
        // Ready, or an error / invalid descriptor (POLLNVAL, POLLHUP, POLLERR): accept reports it.
        if poll_now(fd, libc::POLLIN) != 0 {
            return real();
        }
        match call.wait(hub, libc::EAGAIN) {
            Waited::Again => {}
            Waited::Fail(libc::EAGAIN) if call.nonblocking() => return real(),
            Waited::Fail(e) => return fail(e) as c_int,
            Waited::Fallback => return real(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// poll and the sleeps.

/// `poll(2)`: in a greenlet, a zero-timeout poll first; if nothing is ready, the greenlet parks on
/// every descriptor at once and polls again when one wakes it, until `timeout` (ms) passes.
///
/// # Safety
/// poll(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let Some(hub) = cooperative() else {
        // SAFETY: poll(2)'s contract.
        return unsafe { sys::poll(fds, nfds, timeout) };
    };
    // SAFETY: poll(2)'s contract.
    let now = || unsafe { sys::poll(fds, nfds, 0) };
    let r = now();
    if r != 0 || timeout == 0 {
        return r;
    }
    let _busy = Busy::enter();
    let deadline = if timeout < 0 {
        None
    } else {
        Instant::now().checked_add(Duration::from_millis(timeout as u64))
    };
    if nfds == 0 && deadline.is_none() && is_main(hub) {
        // Waiting for nothing, forever, in the main greenlet: that is no park (it would be a
        // deadlock report); do what libc does.
        // SAFETY: poll(2)'s contract.
        return unsafe { sys::poll(fds, nfds, timeout) };
    }
    let pfds: &[pollfd] = if nfds == 0 {
        &[]
    } else {
        // SAFETY: the zero-timeout poll above succeeded, so the kernel read `nfds` pollfds at
        // `fds` (poll(2)'s contract makes them valid and aligned).
        unsafe { std::slice::from_raw_parts(fds, nfds as usize) }
    };
    let wants: Vec<Want> = pfds
        .iter()
        .filter(|p| p.fd >= 0)
        .map(|p| Want {
            fd: p.fd,
            read: p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0,
            write: p.events & (libc::POLLOUT | libc::POLLWRBAND) != 0,
        })
        .collect();
    loop {
        match wait::wait(hub, &wants, deadline) {
            Ok(Wake::Woken) => {
                let r = now();
                if r != 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                    return r;
                }
            }
            Ok(Wake::TimedOut) => return now(),
            Ok(Wake::ScopeExpired) => return fail(libc::ETIMEDOUT) as c_int,
            Ok(_) => return fail(libc::ECANCELED) as c_int,
            // SAFETY: poll(2)'s contract.
            Err(_) => return unsafe { sys::poll(fds, nfds, remaining_ms(deadline)) },
        }
    }
}

/// `select(2)`: as [`poll`], for the descriptors of the three sets (libcurl waits with it). On
/// return `timeout` holds the time left, as Linux's select leaves it.
///
/// # Safety
/// select(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut libc::fd_set,
    writefds: *mut libc::fd_set,
    exceptfds: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let coop = cooperative().filter(|_| (0..=libc::FD_SETSIZE as c_int).contains(&nfds));
    let Some(hub) = coop else {
        // SAFETY: select(2)'s contract.
        return unsafe { sys::select(nfds, readfds, writefds, exceptfds, timeout) };
    };
    // SAFETY: non-null sets and timeout are valid (the contract); copies are plain data.
    let load = |p: *mut libc::fd_set| (!p.is_null()).then(|| unsafe { ptr::read(p) });
    let orig = [load(readfds), load(writefds), load(exceptfds)];
    // SAFETY: as above.
    let tv = (!timeout.is_null()).then(|| unsafe { ptr::read(timeout) });
    let deadline = match tv {
        None => None,
        Some(t) if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) => {
            return fail(libc::EINVAL) as c_int
        }
        Some(t) => {
            Instant::now().checked_add(Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000))
        }
    };
    // A zero-timeout select on fresh copies; results go back to the caller's sets.
    let now = || {
        let mut sets = orig;
        let mut zero = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let p = |s: &mut Option<libc::fd_set>| s.as_mut().map_or(ptr::null_mut(), |s| s as *mut _);
        let (r, w, e) = {
            let [a, b, c] = &mut sets;
            (p(a), p(b), p(c))
        };
        // SAFETY: our own copies and timeval.
        let n = unsafe { sys::select(nfds, r, w, e, &mut zero) };
        if n >= 0 {
            for (dst, src) in [readfds, writefds, exceptfds].into_iter().zip(sets) {
                if let Some(src) = src {
                    // SAFETY: the caller's non-null set (the contract).
                    unsafe { ptr::write(dst, src) };
                }
            }
            if !timeout.is_null() {
                let left = deadline.map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                // SAFETY: the caller's timeval (the contract).
                unsafe {
                    ptr::write(
                        timeout,
                        libc::timeval {
                            tv_sec: left.as_secs() as libc::time_t,
                            tv_usec: left.subsec_micros() as libc::suseconds_t,
                        },
                    )
                };
            }
        }
        n
    };
    let r = now();
    if r != 0 || tv.is_some_and(|t| t.tv_sec == 0 && t.tv_usec == 0) {
        return r;
    }
    let _busy = Busy::enter();
    let isset = |s: &Option<libc::fd_set>, fd: c_int| {
        // SAFETY: the sets are our copies; fds are below nfds <= FD_SETSIZE.
        s.as_ref().is_some_and(|s| unsafe { libc::FD_ISSET(fd, s) })
    };
    let wants: Vec<Want> = (0..nfds)
        .filter_map(|fd| {
            let read = isset(&orig[0], fd) || isset(&orig[2], fd);
            let write = isset(&orig[1], fd);
            (read || write).then_some(Want { fd, read, write })
        })
        .collect();
    if wants.is_empty() && deadline.is_none() && is_main(hub) {
        // SAFETY: select(2)'s contract.
        return unsafe { sys::select(nfds, readfds, writefds, exceptfds, timeout) };
    }
    loop {
        match wait::wait(hub, &wants, deadline) {
            Ok(Wake::Woken) => {
                let r = now();
                if r != 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                    return r;
                }
            }
            Ok(Wake::TimedOut) => return now(),
            Ok(Wake::ScopeExpired) => return fail(libc::ETIMEDOUT) as c_int,
            Ok(_) => return fail(libc::ECANCELED) as c_int,
            Err(_) => {
                let mut left = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 0,
                };
                let tp = match deadline {
                    None => ptr::null_mut(),
                    Some(d) => {
                        let l = d.saturating_duration_since(Instant::now());
                        left.tv_sec = l.as_secs() as libc::time_t;
                        left.tv_usec = l.subsec_micros() as libc::suseconds_t;
                        &mut left as *mut libc::timeval
                    }
                };
                // SAFETY: select(2)'s contract; `left` lives for the call.
                return unsafe { sys::select(nfds, readfds, writefds, exceptfds, tp) };
            }
        }
    }
}

/// `epoll_wait(2)` on an epoll instance of the program's own (a mio- or epoll-based library
/// used from a greenlet): in a greenlet, a zero-timeout wait first; if nothing is ready, the
/// greenlet parks until the epoll descriptor itself becomes readable (epoll instances can be
/// watched by epoll) or the timeout passes, then waits with a zero timeout again. The hub's own
/// poll runs in the hub context and is never affected.
///
/// # Safety
/// epoll_wait(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
) -> c_int {
    let Some(hub) = cooperative() else {
        // SAFETY: epoll_wait(2)'s contract.
        return unsafe { sys::epoll_wait(epfd, events, maxevents, timeout) };
    };
    // SAFETY: epoll_wait(2)'s contract.
    let now = || unsafe { sys::epoll_wait(epfd, events, maxevents, 0) };
    let r = now();
    if r != 0 || timeout == 0 {
        return r;
    }
    let _busy = Busy::enter();
    let deadline = if timeout < 0 {
        None
    } else {
        Instant::now().checked_add(Duration::from_millis(timeout as u64))
    };
    let want = [Want {
        fd: epfd,
        read: true,
        write: false,
    }];
    loop {
        match wait::wait(hub, &want, deadline) {
            Ok(Wake::Woken) => {
                let r = now();
                if r != 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                    return r;
                }
            }
            Ok(Wake::TimedOut) => return now(),
            Ok(Wake::ScopeExpired) => return fail(libc::ETIMEDOUT) as c_int,
            Ok(_) => return fail(libc::ECANCELED) as c_int,
            Err(_) => {
                // SAFETY: epoll_wait(2)'s contract.
                return unsafe { sys::epoll_wait(epfd, events, maxevents, remaining_ms(deadline)) };
            }
        }
    }
}

// The `_FORTIFY_SOURCE` entry points: C code built with fortification (as distributions build
// their libraries) calls these instead of `read`, `recv`, `recvfrom`, `poll`. Each makes glibc's
// check and then is the plain function.

extern "C" {
    /// glibc's "buffer overflow detected" abort.
    fn __chk_fail() -> !;
}

/// `__read_chk`: `read` with the destination's size checked.
///
/// # Safety
/// read(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    nbytes: size_t,
    buflen: size_t,
) -> ssize_t {
    if nbytes > buflen {
        // SAFETY: glibc's abort, no arguments.
        unsafe { __chk_fail() }
    }
    // SAFETY: read(2)'s contract.
    unsafe { read(fd, buf, nbytes) }
}

/// `__recv_chk`: `recv` with the destination's size checked.
///
/// # Safety
/// recv(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen {
        // SAFETY: glibc's abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: recv(2)'s contract.
    unsafe { recv(fd, buf, len, flags) }
}

/// `__recvfrom_chk`: `recvfrom` with the destination's size checked.
///
/// # Safety
/// recvfrom(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen {
        // SAFETY: glibc's abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: recvfrom(2)'s contract.
    unsafe { recvfrom(fd, buf, len, flags, addr, addrlen) }
}

/// `__poll_chk`: `poll` with the array's size checked.
///
/// # Safety
/// poll(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if fdslen / std::mem::size_of::<pollfd>() < nfds as usize {
        // SAFETY: glibc's abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: poll(2)'s contract.
    unsafe { poll(fds, nfds, timeout) }
}

/// `nanosleep(2)`: in a greenlet, `hub::sleep` (`rem` is left alone: the sleep is never
/// interrupted by a signal).
///
/// # Safety
/// nanosleep(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    let coop = cooperative().filter(|_| !req.is_null());
    let Some(hub) = coop else {
        // SAFETY: nanosleep(2)'s contract.
        return unsafe { sys::nanosleep(req, rem) };
    };
    // SAFETY: non-null, and nanosleep's contract makes it readable.
    let Some(d) = duration_of(unsafe { &*req }) else {
        return fail(libc::EINVAL) as c_int;
    };
    sleep_for(hub, d);
    0
}

/// `clock_nanosleep(2)` on `CLOCK_MONOTONIC`, `CLOCK_REALTIME` or `CLOCK_BOOTTIME` (relative or
/// `TIMER_ABSTIME`): in a greenlet, `hub::sleep`. Other clocks pass through. Returns the error
/// number, as libc's does.
///
/// # Safety
/// clock_nanosleep(2)'s contract.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let clocks = [
        libc::CLOCK_MONOTONIC,
        libc::CLOCK_REALTIME,
        libc::CLOCK_BOOTTIME,
    ];
    let coop = cooperative().filter(|_| !req.is_null() && clocks.contains(&clock));
    let Some(hub) = coop else {
        // SAFETY: clock_nanosleep(2)'s contract.
        return unsafe { sys::clock_nanosleep(clock, flags, req, rem) };
    };
    // SAFETY: non-null, readable by the contract.
    let req = unsafe { &*req };
    let Some(d) = duration_of(req) else {
        return libc::EINVAL;
    };
    let d = if flags & libc::TIMER_ABSTIME != 0 {
        let Some(now) = sys::clock_now(clock).and_then(|n| duration_of(&n)) else {
            // SAFETY: clock_nanosleep(2)'s contract.
            return unsafe { sys::clock_nanosleep(clock, flags, req, rem) };
        };
        d.saturating_sub(now)
    } else {
        d
    };
    sleep_for(hub, d);
    0
}

/// `usleep(3)`: in a greenlet, `hub::sleep`.
#[no_mangle]
pub extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    let d = Duration::from_micros(u64::from(usec));
    if let Some(hub) = cooperative() {
        sleep_for(hub, d);
        return 0;
    }
    let ts = timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    };
    // SAFETY: `ts` is valid; no remainder wanted.
    unsafe { sys::nanosleep(&ts, ptr::null_mut()) }
}

/// `sleep(3)`: in a greenlet, `hub::sleep`; returns the unslept seconds, as glibc's does.
#[no_mangle]
pub extern "C" fn sleep(secs: c_uint) -> c_uint {
    if let Some(hub) = cooperative() {
        sleep_for(hub, Duration::from_secs(u64::from(secs)));
        return 0;
    }
    let saved = errno();
    let mut ts = timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let p: *mut timespec = &mut ts;
    // SAFETY: `ts` is valid for reading and writing (req and rem may alias, as glibc's do).
    if unsafe { sys::nanosleep(p, p) } < 0 {
        return ts.tv_sec as c_uint;
    }
    set_errno(saved);
    0
}

// ---------------------------------------------------------------------------------------------
// Descriptor bookkeeping.

/// `close(2)`: forgets this thread's hub registration of `fd` first (see `wait`).
#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    wait::forget(fd);
    sys::close(fd)
}

/// `dup2(2)`: `new` is closed implicitly, so its registration is forgotten first.
#[no_mangle]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old != new {
        wait::forget(new);
    }
    sys::dup2(old, new)
}

/// `dup3(2)`: as [`dup2`].
#[no_mangle]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new {
        wait::forget(new);
    }
    sys::dup3(old, new, flags)
}

// ---------------------------------------------------------------------------------------------
// Name lookup.

type GetAddrInfo = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const addrinfo,
    *mut *mut addrinfo,
) -> c_int;

/// libc's own `getaddrinfo`, found with `dlsym(RTLD_NEXT)` (no system call does its job).
fn real_getaddrinfo() -> Option<GetAddrInfo> {
    static REAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *REAL.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name only reads.
        unsafe { libc::dlsym(libc::RTLD_NEXT, c"getaddrinfo".as_ptr()) as usize }
    });
    // SAFETY: a non-null result of dlsym for "getaddrinfo" is libc's function of that C
    // signature.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, GetAddrInfo>(p) })
}

/// A result list owned by a pool job until the waiting greenlet takes it; freed if nobody does.
struct AiList(usize);

impl Drop for AiList {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: a list returned by getaddrinfo and not handed out.
            unsafe { libc::freeaddrinfo(self.0 as *mut addrinfo) };
        }
    }
}

/// `getaddrinfo(3)`: in a greenlet, libc's runs on the thread pool and only this greenlet waits
/// (glibc's resolver uses its internal socket functions, which interposition cannot reach). The
/// arguments are copied for the pool thread: they may live on this greenlet's stack, which other
/// greenlets overwrite while it is parked (invariant 1).
///
/// # Safety
/// getaddrinfo(3)'s contract.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let Some(real) = real_getaddrinfo() else {
        set_errno(libc::ENOSYS);
        return libc::EAI_SYSTEM;
    };
    if cooperative().is_none() || res.is_null() {
        // SAFETY: getaddrinfo(3)'s contract, passed on.
        return unsafe { real(node, service, hints, res) };
    }
    let _busy = Busy::enter();
    // SAFETY: non-null strings are NUL-terminated (the contract).
    let own =
        |s: *const c_char| (!s.is_null()).then(|| CString::from(unsafe { CStr::from_ptr(s) }));
    let (node_c, service_c) = (own(node), own(service));
    // SAFETY: non-null hints are readable (the contract). Only these four fields may be set.
    let h = (!hints.is_null()).then(|| unsafe {
        let h = &*hints;
        (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol)
    });
    let job = move || {
        // SAFETY: all-zero is a valid addrinfo (null pointers).
        let mut hints: addrinfo = unsafe { std::mem::zeroed() };
        if let Some((f, fam, st, p)) = h {
            (
                hints.ai_flags,
                hints.ai_family,
                hints.ai_socktype,
                hints.ai_protocol,
            ) = (f, fam, st, p);
        }
        let mut out: *mut addrinfo = ptr::null_mut();
        let c = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        // SAFETY: every pointer is to memory this job owns, alive for the call.
        let r = unsafe {
            real(
                c(&node_c),
                c(&service_c),
                if h.is_some() { &hints } else { ptr::null() },
                &mut out,
            )
        };
        (r, errno(), AiList(out as usize))
    };
    super::set_busy(false);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        crate::remote::threadpool::run_parked(job, None, true)
    }));
    super::set_busy(true);
    match outcome {
        Ok(Ok(Ok((r, e, mut list)))) => {
            // SAFETY: `res` is non-null and writable (the contract); we are running again, so
            // the caller's stack holds its own bytes.
            unsafe { *res = std::mem::take(&mut list.0) as *mut addrinfo };
            if r == libc::EAI_SYSTEM {
                set_errno(e);
            }
            r
        }
        Ok(Err(
            crate::remote::threadpool::Interrupted::ScopeExpired
            | crate::remote::threadpool::Interrupted::TimedOut,
        )) => {
            set_errno(libc::ETIMEDOUT);
            libc::EAI_SYSTEM
        }
        Ok(Ok(Err(_panic))) => {
            set_errno(libc::EIO);
            libc::EAI_SYSTEM
        }
        Err(_kill) => {
            set_errno(libc::ECANCELED);
            libc::EAI_SYSTEM
        }
    }
}
