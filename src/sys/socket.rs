//! The few socket calls std does not offer in the form greenhub needs, made on the raw descriptor.
//!
//! Stream reads and writes ([`recv`], [`recv_vectored`], [`send`], [`send_vectored`]) are raw
//! system calls on Linux x86_64/aarch64 (`syscall.rs` says why) and report [`Errno`]s.
//!
//! Stream writes go through `send`/`sendmsg` with `MSG_NOSIGNAL`: writing to a connection the peer
//! has reset must return `EPIPE`, never raise `SIGPIPE` — Rust binaries ignore that signal, but a
//! library cannot count on running in one (a C host, `#[unix_sigpipe]`, a test harness that resets
//! it). std's own `write_vectored` and `UnixStream::write` use `writev`/`write`, which do raise it.

#![allow(unsafe_code)] // raw socket syscalls; each block says why it is sound

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// Suppresses SIGPIPE per call where the platform can (elsewhere the process-wide ignore that
/// Rust's runtime installs is what protects us).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const NOSIGNAL: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
const NOSIGNAL: libc::c_int = 0;

/// The error number of a failed hot-path call ([`recv`], [`send`], ...): a plain integer, so a
/// caller can test for `EAGAIN` or `EINTR` without building an `io::Error` (which it makes only
/// for an error it returns, with `io::Error::from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) i32);

impl Errno {
    /// `EAGAIN`/`EWOULDBLOCK`: the operation would block.
    #[inline]
    pub(crate) fn is_would_block(self) -> bool {
        self.0 == libc::EAGAIN || self.0 == libc::EWOULDBLOCK
    }

    /// `EINTR`: a signal interrupted the call; try again.
    #[inline]
    pub(crate) fn is_interrupted(self) -> bool {
        self.0 == libc::EINTR
    }
}

impl From<Errno> for io::Error {
    #[inline]
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.0)
    }
}

/// A raw system call's result: `-4095..=-1` is `-errno` (see `syscall.rs`).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[inline(always)]
fn raw_result(n: isize) -> Result<usize, Errno> {
    if n < 0 {
        Err(Errno(-n as i32))
    } else {
        Ok(n as usize)
    }
}

/// A libc call's result: `-1` means look at `errno`.
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[inline(always)]
fn libc_result(n: isize) -> Result<usize, Errno> {
    if n < 0 {
        Err(Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, 0)`: a socket read (for a stream socket the same as `read(2)`). One raw system
/// call on Linux x86_64/aarch64, libc elsewhere.
///
/// The hot calls take the descriptor as a number (the caller, a `Registered` socket, owns it and
/// keeps it open): memory safety does not depend on it, and it spares a call to std's `as_fd`
/// per transfer.
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let a = [
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
            0, // no source address
            0,
        ];
        // SAFETY: recvfrom writes at most `buf.len()` bytes into `buf`, which is borrowed mutably
        // for the call; null address pointers mean no address is written; a wrong `fd` costs an
        // error (EBADF), not memory safety.
        raw_result(unsafe { super::syscall::syscall6(libc::SYS_recvfrom, a) })
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
        libc_result(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
    }
}

/// `readv(fd, bufs)` over the first [`IOV_MAX`] buffers, as std's `read_vectored` passes them.
#[inline]
pub(crate) fn recv_vectored(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> Result<usize, Errno> {
    let n = bufs.len().min(IOV_MAX);
    // std documents IoSliceMut as ABI-compatible with `struct iovec` on Unix.
    let iov = bufs.as_mut_ptr();
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let a = [fd as usize, iov as usize, n, 0, 0, 0];
        // SAFETY: `iov` points at `n` valid iovecs, each describing a live, mutably borrowed
        // slice the kernel may fill, for the duration of the call; a wrong `fd` costs an error,
        // not memory safety.
        raw_result(unsafe { super::syscall::syscall6(libc::SYS_readv, a) })
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        // SAFETY: as above.
        libc_result(unsafe { libc::readv(fd, iov.cast(), n as libc::c_int) })
    }
}

/// `send(fd, buf, MSG_NOSIGNAL)`. One raw system call on Linux x86_64/aarch64, libc elsewhere.
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let a = [
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            NOSIGNAL as usize,
            0, // no destination address
            0,
        ];
        // SAFETY: sendto reads at most `buf.len()` bytes from `buf`, borrowed for the call; a null
        // address with length 0 means none; a wrong `fd` costs an error, not memory safety.
        raw_result(unsafe { super::syscall::syscall6(libc::SYS_sendto, a) })
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
        libc_result(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), NOSIGNAL) })
    }
}

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The most buffers one vectored call takes (`IOV_MAX`/`UIO_MAXIOV`: 1,024 on Linux; the
/// kernel rejects more with `EINVAL`, so callers pass at most this many, as std's `readv` does).
pub(crate) const IOV_MAX: usize = 1024;

/// `sendmsg(fd, bufs, MSG_NOSIGNAL)`: a vectored write that cannot raise SIGPIPE. Passes the
/// first [`IOV_MAX`] buffers.
#[inline]
pub(crate) fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> Result<usize, Errno> {
    let bufs = &bufs[..bufs.len().min(IOV_MAX)];
    // SAFETY: msghdr is a plain C struct of integers and pointers; all-zero is a valid value (no
    // name, no control data, empty iovec list).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // std documents IoSlice as ABI-compatible with `struct iovec` on Unix; sendmsg only reads it.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len() as _;
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let a = [
            fd as usize,
            &msg as *const libc::msghdr as usize,
            NOSIGNAL as usize,
            0,
            0,
            0,
        ];
        // SAFETY: `msg` points at `bufs.len()` valid iovecs, each describing a live borrowed
        // slice, for the duration of the call (sendmsg only reads them); `fd` is borrowed, so it
        // stays open.
        raw_result(unsafe { super::syscall::syscall6(libc::SYS_sendmsg, a) })
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        // SAFETY: as above.
        libc_result(unsafe { libc::sendmsg(fd, &msg, NOSIGNAL) })
    }
}

/// `listen(fd, backlog)` again on a listening socket: Linux and the BSDs adjust the queue length
/// (the kernel caps it at `somaxconn`).
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed (so open) descriptor; no memory is passed.
    let r = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    check(r as isize).map(drop)
}

/// A TCP listener bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT` set before `bind`, so
/// several listeners (one per hub) can share the port and the kernel spreads connections over
/// them. Blocking mode, close-on-exec, backlog 1024.
pub(crate) fn reuseport_listener(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall with integer arguments; returns a fresh descriptor or -1.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd as isize)?;
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: `one` is a live c_int for the call and the length says so; `owned` keeps the
        // descriptor open.
        let r = unsafe {
            libc::setsockopt(
                owned.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        check(r as isize)?;
    }
    let r = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain integers; all-zero is valid (then filled in).
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            // SAFETY: `sa` is a valid sockaddr_in for the call and the length matches it.
            unsafe {
                libc::bind(
                    owned.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain integers; all-zero is valid (then filled in).
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            sa.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            // SAFETY: `sa` is a valid sockaddr_in6 for the call and the length matches it.
            unsafe {
                libc::bind(
                    owned.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    check(r as isize)?;
    listen(owned.as_fd(), 1024)?;
    Ok(std::net::TcpListener::from(owned))
}
