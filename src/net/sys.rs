//! The few socket calls std does not offer in the form greenhub needs, made on the raw descriptor.
//!
//! Stream writes go through `send`/`sendmsg` with `MSG_NOSIGNAL`: writing to a connection the peer
//! has reset must return `EPIPE`, never raise `SIGPIPE` — Rust binaries ignore that signal, but a
//! library cannot count on running in one (a C host, `#[unix_sigpipe]`, a test harness that resets
//! it). std's own `write_vectored` and `UnixStream::write` use `writev`/`write`, which do raise it.

#![allow(unsafe_code)] // raw socket syscalls; each block says why it is sound

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

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

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call; `fd` is borrowed, so it
    // stays open for the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), NOSIGNAL) };
    check(n)
}

/// `sendmsg(fd, bufs, MSG_NOSIGNAL)`: a vectored write that cannot raise SIGPIPE.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // At most IOV_MAX (1024 on Linux) buffers per call, as std's writev does.
    let bufs = &bufs[..bufs.len().min(1024)];
    // SAFETY: msghdr is a plain C struct of integers and pointers; all-zero is a valid value (no
    // name, no control data, empty iovec list).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // std documents IoSlice as ABI-compatible with `struct iovec` on Unix; sendmsg only reads it.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs.len()` valid iovecs, each describing a live borrowed slice,
    // for the duration of the call; `fd` is borrowed, so it stays open.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, NOSIGNAL) };
    check(n)
}

/// `listen(fd, backlog)` again on a listening socket: Linux and the BSDs adjust the queue length
/// (the kernel caps it at `somaxconn`).
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed (so open) descriptor; no memory is passed.
    let r = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    check(r as isize).map(drop)
}
