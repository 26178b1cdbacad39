//! The real system calls behind the interposed libc functions, made with `syscall(2)`.
//!
//! Nothing here may call a libc function that greenhub defines under `monkey` (`read`, `poll`,
//! `close`, ...): with the feature on, those names resolve to greenhub's own definitions, so
//! calling them from here would recurse. Every call is the system-call instruction itself
//! (`raw6`), async-signal-safe, returning `-1` with `errno` set on failure exactly as the libc
//! wrappers of these calls do.
//!
//! The argument conventions are the kernel's: on x86_64 and aarch64 Linux every argument is one
//! register, so pointers and integers are passed as they come. `recv`/`send` have no system call
//! of their own on either target (glibc implements them with `recvfrom`/`sendto`), `accept` is
//! `accept4` with no flags, and aarch64 has no `poll` or `dup2` system call (glibc uses `ppoll` and
//! `dup3` there; so does this file).

use std::os::raw::{c_int, c_long, c_void};

use libc::{iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timespec};

/// The calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno cell, valid for the thread's
    // life (it lives in the thread control block, not in Rust thread-local storage).
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// `-1` with `errno` set to `e`: how a libc wrapper reports failure.
#[inline]
pub(crate) fn fail(e: c_int) -> ssize_t {
    set_errno(e);
    -1
}

/// One system call with up to six arguments, by the target's system-call instruction; a result
/// in `-4095..=-1` is an error: `errno` is set to its negation and `-1` returned, exactly what
/// glibc's wrappers do. (Inline, not `libc::syscall`: that is a variadic call through the PLT that
/// shuffles seven registers, a third of a pass-through call's instructions.)
macro_rules! sys {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        let mut args = [0usize; 6];
        let mut _i = 0;
        $( args[_i] = $arg as usize; _i += 1; )*
        raw6($nr as usize, args)
    }};
}

/// The system call `nr` with six argument registers.
///
/// # Safety
/// The call's own contract: the kernel may read and write the memory the arguments name.
#[inline(always)]
unsafe fn raw6(nr: usize, a: [usize; 6]) -> c_long {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the x86_64 Linux system-call convention: number in rax, arguments in rdi, rsi, rdx,
    // r10, r8, r9, result in rax; the instruction clobbers rcx and r11. Memory is not declared
    // untouched: the kernel reads and writes what the arguments point at.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the aarch64 Linux convention: number in x8, arguments in x0-x5, result in x0.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        set_errno(-ret as c_int);
        return -1;
    }
    ret as c_long
}

/// `read(2)`.
///
/// # Safety
/// `buf` is valid for writes of `count` bytes (the caller's `read` contract).
pub(crate) unsafe fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    // SAFETY: the caller's contract; the kernel checks the rest.
    unsafe { sys!(libc::SYS_read, fd, buf, count) as ssize_t }
}

/// `write(2)`.
///
/// # Safety
/// `buf` is valid for reads of `count` bytes.
pub(crate) unsafe fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_write, fd, buf, count) as ssize_t }
}

/// `readv(2)`.
///
/// # Safety
/// `iov` points at `iovcnt` valid `iovec`s describing writable memory.
pub(crate) unsafe fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_readv, fd, iov, iovcnt) as ssize_t }
}

/// `writev(2)`.
///
/// # Safety
/// `iov` points at `iovcnt` valid `iovec`s describing readable memory.
pub(crate) unsafe fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_writev, fd, iov, iovcnt) as ssize_t }
}

/// `recvfrom(2)` (and `recv`, with null address arguments).
///
/// # Safety
/// `buf` is writable for `len` bytes; `addr`/`addrlen` are null or valid as recvfrom(2) requires.
pub(crate) unsafe fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_recvfrom, fd, buf, len, flags, addr, addrlen) as ssize_t }
}

/// `sendto(2)` (and `send`, with a null address).
///
/// # Safety
/// `buf` is readable for `len` bytes; `addr` is null or valid for `addrlen` bytes.
pub(crate) unsafe fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_sendto, fd, buf, len, flags, addr, addrlen) as ssize_t }
}

/// `recvmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` as recvmsg(2) requires.
pub(crate) unsafe fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_recvmsg, fd, msg, flags) as ssize_t }
}

/// `sendmsg(2)`.
///
/// # Safety
/// `msg` is a valid `msghdr` as sendmsg(2) requires.
pub(crate) unsafe fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_sendmsg, fd, msg, flags) as ssize_t }
}

/// `connect(2)`.
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub(crate) unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_connect, fd, addr, len) as c_int }
}

/// `accept4(2)` (and `accept`, with no flags).
///
/// # Safety
/// `addr`/`len` are null or valid as accept(2) requires.
pub(crate) unsafe fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_accept4, fd, addr, len, flags) as c_int }
}

/// `poll(2)`: `SYS_poll` on x86_64, `SYS_ppoll` (which aarch64 has instead) elsewhere.
///
/// # Safety
/// `fds` points at `nfds` valid `pollfd`s (or `nfds` is 0).
pub(crate) unsafe fn poll(fds: *mut pollfd, nfds: nfds_t, timeout_ms: c_int) -> c_int {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller's contract.
        unsafe { sys!(libc::SYS_poll, fds, nfds, timeout_ms) as c_int }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let ts = timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) as libc::c_long) * 1_000_000,
        };
        let tsp: *const timespec = if timeout_ms < 0 {
            std::ptr::null()
        } else {
            &ts
        };
        let no_mask: *const libc::sigset_t = std::ptr::null();
        // SAFETY: the caller's contract; `ts` outlives the call; a null mask keeps the thread's
        // signal mask, as poll does.
        unsafe { sys!(libc::SYS_ppoll, fds, nfds, tsp, no_mask, 8usize) as c_int }
    }
}

/// `select(2)`: `SYS_select` on x86_64, `SYS_pselect6` (which aarch64 has instead) elsewhere;
/// `timeout` is updated with the time left on x86_64 only, as the kernels do.
///
/// # Safety
/// The sets are null or valid `fd_set`s; `timeout` is null or valid.
pub(crate) unsafe fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller's contract.
        unsafe { sys!(libc::SYS_select, nfds, r, w, e, timeout) as c_int }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let ts = (!timeout.is_null()).then(|| {
            // SAFETY: non-null and valid by the contract.
            let tv = unsafe { &*timeout };
            timespec {
                tv_sec: tv.tv_sec,
                tv_nsec: tv.tv_usec as libc::c_long * 1000,
            }
        });
        let tsp: *const timespec = ts.as_ref().map_or(std::ptr::null(), |t| t);
        let no_mask: *const c_void = std::ptr::null();
        // SAFETY: the caller's contract; `ts` outlives the call; no signal mask change.
        unsafe { sys!(libc::SYS_pselect6, nfds, r, w, e, tsp, no_mask) as c_int }
    }
}

/// `epoll_wait(2)`, as `epoll_pwait` with no signal mask (what aarch64 has, and what glibc
/// calls on every target).
///
/// # Safety
/// `events` is writable for `max` entries.
pub(crate) unsafe fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout_ms: c_int,
) -> c_int {
    let no_mask: *const c_void = std::ptr::null();
    // SAFETY: the caller's contract; a null mask keeps the thread's signal mask.
    unsafe {
        sys!(
            libc::SYS_epoll_pwait,
            epfd,
            events,
            max,
            timeout_ms,
            no_mask,
            8usize
        ) as c_int
    }
}

/// `nanosleep(2)`.
///
/// # Safety
/// `req` is readable and `rem` null or writable, as nanosleep(2) requires.
pub(crate) unsafe fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sys!(libc::SYS_nanosleep, req, rem) as c_int }
}

/// `clock_nanosleep(2)`, returning the error number (not setting `errno`), as libc's does.
///
/// # Safety
/// As [`nanosleep`].
pub(crate) unsafe fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let saved = errno();
    // SAFETY: the caller's contract.
    let r = unsafe { sys!(libc::SYS_clock_nanosleep, clock, flags, req, rem) };
    if r == -1 {
        let e = errno();
        set_errno(saved);
        e
    } else {
        0
    }
}

/// `close(2)`.
pub(crate) fn close(fd: c_int) -> c_int {
    // SAFETY: close has no memory arguments; closing a descriptor the program names is what the
    // caller asked for.
    unsafe { sys!(libc::SYS_close, fd) as c_int }
}

/// `dup2(2)`: `SYS_dup2` on x86_64; elsewhere `dup3`, with the same-descriptor case checked as
/// glibc does (dup3 rejects it, dup2 returns it if it is open).
pub(crate) fn dup2(old: c_int, new: c_int) -> c_int {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: no memory arguments.
        unsafe { sys!(libc::SYS_dup2, old, new) as c_int }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        if old == new {
            // SAFETY: no memory arguments.
            return if unsafe { sys!(libc::SYS_fcntl, old, libc::F_GETFD) } == -1 {
                -1
            } else {
                new
            };
        }
        dup3(old, new, 0)
    }
}

/// `dup3(2)`.
pub(crate) fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: no memory arguments.
    unsafe { sys!(libc::SYS_dup3, old, new, flags) as c_int }
}

/// The descriptor's file status flags (`fcntl(F_GETFL)`), or `None` if it is not open.
pub(crate) fn status_flags(fd: c_int) -> Option<c_int> {
    // SAFETY: F_GETFL takes no third argument and touches no memory.
    let r = unsafe { sys!(libc::SYS_fcntl, fd, libc::F_GETFL) };
    (r != -1).then_some(r as c_int)
}

/// `fcntl(F_SETFL, flags)`.
pub(crate) fn set_status_flags(fd: c_int, flags: c_int) -> c_int {
    // SAFETY: F_SETFL takes an integer and touches no memory.
    unsafe { sys!(libc::SYS_fcntl, fd, libc::F_SETFL, flags as c_long) as c_int }
}

/// An integer or `timeval` socket option (`getsockopt(SOL_SOCKET, opt)`), as raw bytes in `out`.
fn getsockopt<T>(fd: c_int, opt: c_int, out: &mut T) -> bool {
    let mut len = std::mem::size_of::<T>() as socklen_t;
    // SAFETY: `out` is writable for `len` bytes and `len` is a valid in/out length.
    let r = unsafe {
        sys!(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            opt,
            out as *mut T,
            &mut len as *mut socklen_t,
        )
    };
    r == 0
}

/// `SO_RCVTIMEO` or `SO_SNDTIMEO` as a duration; `None` when unset (zero) or unreadable.
pub(crate) fn socket_timeout(fd: c_int, opt: c_int) -> Option<std::time::Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    if !getsockopt(fd, opt, &mut tv) || (tv.tv_sec == 0 && tv.tv_usec == 0) {
        return None;
    }
    Some(std::time::Duration::new(
        tv.tv_sec.max(0) as u64,
        (tv.tv_usec.clamp(0, 999_999) as u32) * 1000,
    ))
}

/// `SO_ERROR` (reading it clears it), or the errno of the failed query.
pub(crate) fn socket_error(fd: c_int) -> c_int {
    let mut e: c_int = 0;
    if getsockopt(fd, libc::SO_ERROR, &mut e) {
        e
    } else {
        errno()
    }
}

/// `SO_TYPE == SOCK_STREAM`.
pub(crate) fn is_stream(fd: c_int) -> bool {
    let mut t: c_int = 0;
    getsockopt(fd, libc::SO_TYPE, &mut t) && t == libc::SOCK_STREAM
}

/// `clock_gettime(2)` (the vDSO through libc: not interposed).
pub(crate) fn clock_now(clock: libc::clockid_t) -> Option<timespec> {
    let mut ts = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable.
    (unsafe { libc::clock_gettime(clock, &mut ts) } == 0).then_some(ts)
}
