//! Any file descriptor, cooperatively: wait for readiness, wrap a descriptor, make a pipe.
//!
//! The `net` types cover sockets greenhub creates. Everything else a program meets — pipes,
//! `eventfd`, `inotify`, `timerfd`, a socket a C library opened, a terminal — is a file
//! descriptor that would block the whole hub if read in blocking mode. This module parks only the
//! calling greenlet on such descriptors, the way gevent's `gevent.socket.wait_read` and tokio's
//! `AsyncFd` do:
//!
//! - [`wait_readable`] / [`wait_writable`]: park until a descriptor is ready (gevent's
//!   `wait_read` / `wait_write`): one-shot, for a descriptor greenhub does not own. Each call
//!   registers and deregisters it (two `epoll_ctl`s); a descriptor already registered with the
//!   hub (an `AsyncFd`, a `net` socket) is waited on through a duplicate, so both work.
//! - [`AsyncFd`]: owns a **non-blocking** descriptor (any `T: AsRawFd`), registers it with the
//!   hub once, and runs an operation until it stops returning `WouldBlock`, parking between
//!   tries ([`AsyncFd::read_with`], [`AsyncFd::write_with`]); it implements `Read`/`Write` when
//!   the wrapped type does.
//! - [`pipe`]: a pipe whose two ends ([`PipeReader`], [`PipeWriter`]) implement `Read`/`Write`
//!   and park only their caller (std's `std::io::pipe`, cooperative).
//!
//! ```
//! use std::io::{Read, Write};
//! use greenhub::{hub, io};
//!
//! hub::run(|| {
//!     let (mut r, mut w) = io::pipe().unwrap();
//!     let writer = hub::spawn(move || w.write_all(b"hello").unwrap());
//!     let mut s = String::new();
//!     r.read_to_string(&mut s).unwrap(); // parks this greenlet until the writer ran and closed
//!     writer.join().unwrap();
//!     assert_eq!(s, "hello");
//! });
//! ```
//!
//! **Fairness.** A descriptor that is always ready (a pipe from a child writing as fast as it
//! can) would let its reader run without ever parking, holding the hub. So an `AsyncFd`
//! operation (and a pipe's) first checks how long the hub loop has not run while this thread kept
//! finding descriptors ready; past 1 ms it parks once, with an immediate deadline, so other
//! greenlets and timers get their turn (tokio's cooperative budget, measured in time). Code that
//! parks on its own never pays for it.
//!
//! Like the `net` types, a registration belongs to the hub of the thread whose greenlet first
//! waited on it: an `AsyncFd` or pipe end may be moved to another thread before its first blocking
//! call, not after. On a thread that never used greenhub, the waits block the thread in
//! `poll(2)` (`wait_readable`) or through the thread's hub (the others), as ordinary blocking
//! calls would.

#![deny(unsafe_code)]

pub(crate) mod fd;

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use mio::Interest;

use crate::reactor::{Dir, Registered};

/// Parks the calling greenlet until `fd` is readable (data, end of file, a hang-up or an error
/// to collect), `timeout` passes, or an enclosing timeout scope expires (gevent's `wait_read`).
///
/// `fd` is anything with a descriptor: a `File`, a std socket, a raw `RawFd` number. It need not
/// be non-blocking — but the read that follows should be, or a spurious wake-up blocks the hub.
/// Readiness is a hint: retry the operation and wait again on `WouldBlock`. Regular files are
/// always ready (epoll refuses them; this returns at once).
///
/// # Errors
/// `TimedOut` when `timeout` passes or an enclosing scope expires; `EBADF` for a closed
/// descriptor; other `epoll_ctl` errors.
///
/// # Panics
/// Inside the hub (a hub callback).
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// use greenhub::{hub, io};
///
/// hub::run(|| {
///     // std sockets: blocking mode, not registered with the hub.
///     let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
///     // Nothing written yet: the wait times out, parking only this greenlet.
///     let e = io::wait_readable(&r, Some(Duration::from_millis(10))).unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
///     w.write_all(b"x").unwrap();
///     io::wait_readable(&r, None).unwrap();
/// });
/// ```
#[doc(alias = "wait_read")]
#[track_caller]
pub fn wait_readable<F: AsRawFd + ?Sized>(fd: &F, timeout: Option<Duration>) -> io::Result<()> {
    fd::wait_fd(
        fd.as_raw_fd(),
        Interest::READABLE,
        fd::deadline_after(timeout),
    )
}

/// Parks the calling greenlet until `fd` is writable, `timeout` passes, or an enclosing timeout
/// scope expires (gevent's `wait_write`). See [`wait_readable`].
///
/// # Errors
/// As [`wait_readable`].
///
/// # Panics
/// Inside the hub (a hub callback).
///
/// # Examples
///
/// ```
/// use greenhub::{hub, io};
///
/// hub::run(|| {
///     let (_r, w) = std::os::unix::net::UnixStream::pair().unwrap();
///     io::wait_writable(&w, None).unwrap(); // an empty socket buffer has room
/// });
/// ```
#[doc(alias = "wait_write")]
#[track_caller]
pub fn wait_writable<F: AsRawFd + ?Sized>(fd: &F, timeout: Option<Duration>) -> io::Result<()> {
    fd::wait_fd(
        fd.as_raw_fd(),
        Interest::WRITABLE,
        fd::deadline_after(timeout),
    )
}

/// A descriptor number, for the registration: it owns nothing (the `AsyncFd` owns the `T`).
#[derive(Debug)]
struct Num(RawFd);

impl AsRawFd for Num {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A non-blocking descriptor registered with the hub once, whose operations park the calling
/// greenlet while they would block: the role of tokio's `AsyncFd` (and of smol's `Async`), with
/// blocking-style methods instead of futures.
///
/// Wrap anything that has a descriptor (`T: AsRawFd`): an `eventfd`, `inotify` or `timerfd` in an
/// `OwnedFd`, a `File` opened with `O_NONBLOCK`, a socket a C library created. The descriptor must
/// already be in non-blocking mode ([`new`](Self::new) checks): greenhub relies on the operation
/// returning `WouldBlock` to know when to park. [`read_with`](Self::read_with) /
/// [`write_with`](Self::write_with) run a closure until it returns something other than
/// `WouldBlock` (or `Interrupted`), parking on readiness in between; `AsyncFd<T>` implements
/// `Read` and `Write` when `T` does (and `&AsyncFd<T>` when `&T` does).
///
/// The registration is undone when the `AsyncFd` drops (before `T` drops and closes the
/// descriptor) or by [`into_inner`](Self::into_inner). The `AsyncFd` is `Send` when `T` is, and
/// belongs to the hub of the first thread that parks on it.
///
/// # Examples
///
/// An `eventfd` greenhub did not create, waited on by one greenlet while another signals it:
///
/// ```
/// use std::os::fd::{FromRawFd, OwnedFd};
/// use greenhub::{hub, io::AsyncFd};
///
/// // SAFETY: eventfd returns a fresh descriptor that we adopt at once.
/// let efd = unsafe {
///     let fd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
///     assert!(fd >= 0);
///     OwnedFd::from_raw_fd(fd)
/// };
/// hub::run(move || {
///     let efd = std::rc::Rc::new(AsyncFd::new(efd).unwrap());
///     let e2 = efd.clone();
///     hub::spawn(move || {
///         let one = 1u64.to_ne_bytes();
///         e2.write_with(|fd| write_fd(fd, &one)).unwrap();
///     });
///     let mut buf = [0u8; 8];
///     let n = efd.read_with(|fd| read_fd(fd, &mut buf)).unwrap(); // parks until written
///     assert_eq!((n, u64::from_ne_bytes(buf)), (8, 1));
/// });
///
/// fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
///     use std::os::fd::AsRawFd;
///     // SAFETY: `buf` is valid for writes of its length for the call.
///     let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
///     if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
/// }
/// fn write_fd(fd: &OwnedFd, buf: &[u8]) -> std::io::Result<usize> {
///     use std::os::fd::AsRawFd;
///     // SAFETY: `buf` is valid for reads of its length for the call.
///     let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
///     if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
/// }
/// ```
pub struct AsyncFd<T: AsRawFd> {
    /// Declared before `inner`: the registration is undone before the descriptor closes.
    reg: Registered<Num>,
    inner: T,
}

impl<T: AsRawFd> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("fd", &self.inner.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl<T: AsRawFd> AsyncFd<T> {
    /// Wraps `inner`, whose descriptor must be in non-blocking mode. It is registered with the
    /// hub at the first operation that would block.
    ///
    /// # Errors
    /// `InvalidInput` if the descriptor is in blocking mode (set `O_NONBLOCK` first, e.g.
    /// `fcntl(fd, F_SETFL, flags | O_NONBLOCK)`, or `set_nonblocking(true)` on std sockets); the
    /// `fcntl` error for an invalid descriptor. The value is dropped in both cases.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::io::AsyncFd;
    ///
    /// let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap(); // blocking mode
    /// let e = AsyncFd::new(r).unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn new(inner: T) -> io::Result<AsyncFd<T>> {
        let raw = inner.as_raw_fd();
        if !fd::is_nonblocking(raw)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "greenhub::io::AsyncFd needs a descriptor in non-blocking mode (set O_NONBLOCK \
                 first); a blocking read would stall every greenlet of the hub",
            ));
        }
        Ok(AsyncFd {
            reg: Registered::new(Num(raw)),
            inner,
        })
    }

    /// The wrapped value.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// let fd = greenhub::io::AsyncFd::new(a).unwrap();
    /// assert!(fd.get_ref().peer_addr().is_ok());
    /// ```
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped value, mutably. Do not replace its descriptor: the registration names it.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Undoes the registration and gives the value back (still in non-blocking mode).
    pub fn into_inner(self) -> T {
        let AsyncFd { reg, inner } = self;
        drop(reg);
        inner
    }

    /// Runs `op` until it returns something other than `WouldBlock` or `Interrupted`, parking
    /// the calling greenlet until the descriptor is readable between tries; returns `op`'s
    /// result. The read timeout ([`set_read_timeout`](Self::set_read_timeout)) bounds the wait.
    ///
    /// # Errors
    /// `op`'s error; `WouldBlock` when the read timeout passes, `TimedOut` when an enclosing
    /// timeout scope expires; an error if the descriptor belongs to another thread's hub.
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    /// See [`AsyncFd`].
    #[track_caller]
    pub fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        fd::fair_point()?;
        let inner = &self.inner;
        self.reg.io(Dir::Read, |_| op(inner))
    }

    /// [`read_with`](Self::read_with) with mutable access to the value.
    ///
    /// # Errors
    /// As [`read_with`](Self::read_with).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    #[track_caller]
    pub fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        fd::fair_point()?;
        let AsyncFd { reg, inner } = self;
        reg.io(Dir::Read, |_| op(inner))
    }

    /// Runs `op` until it returns something other than `WouldBlock` or `Interrupted`, parking
    /// until the descriptor is writable between tries.
    ///
    /// # Errors
    /// As [`read_with`](Self::read_with), with the write timeout.
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    #[track_caller]
    pub fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        fd::fair_point()?;
        let inner = &self.inner;
        self.reg.io(Dir::Write, |_| op(inner))
    }

    /// [`write_with`](Self::write_with) with mutable access to the value.
    ///
    /// # Errors
    /// As [`write_with`](Self::write_with).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    #[track_caller]
    pub fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        fd::fair_point()?;
        let AsyncFd { reg, inner } = self;
        reg.io(Dir::Write, |_| op(inner))
    }

    /// Bounds every later read wait (`None`: no bound, the default); expiry returns
    /// `WouldBlock`, as a std socket's read timeout does.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        self.reg.set_timeout(Dir::Read, dur)
    }

    /// Bounds every later write wait; see [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration.
    pub fn set_write_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
        self.reg.set_timeout(Dir::Write, dur)
    }
}

impl<T: AsRawFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<T: AsRawFd + AsFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsRawFd + Read> Read for AsyncFd<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with_mut(|t| t.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_with_mut(|t| t.read_vectored(bufs))
    }
}

impl<T: AsRawFd + Write> Write for AsyncFd<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with_mut(|t| t.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with_mut(|t| t.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_with_mut(|t| t.flush())
    }
}

impl<'a, T: AsRawFd> Read for &'a AsyncFd<T>
where
    &'a T: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        fd::fair_point()?;
        let this: &'a AsyncFd<T> = self;
        this.reg.io(Dir::Read, |_| {
            let mut inner: &'a T = &this.inner;
            inner.read(buf)
        })
    }
}

impl<'a, T: AsRawFd> Write for &'a AsyncFd<T>
where
    &'a T: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        fd::fair_point()?;
        let this: &'a AsyncFd<T> = self;
        this.reg.io(Dir::Write, |_| {
            let mut inner: &'a T = &this.inner;
            inner.write(buf)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Makes a pipe: bytes written to the [`PipeWriter`] come out of the [`PipeReader`]. Both ends
/// park only their calling greenlet (std's `std::io::pipe`, cooperative). Both descriptors are
/// close-on-exec and non-blocking underneath.
///
/// Reading returns `Ok(0)` once every writer is closed; writing after the reader is closed fails
/// with `BrokenPipe` (Rust programs ignore `SIGPIPE` by default).
///
/// # Errors
/// The `pipe2` error (`EMFILE`, ...).
///
/// # Examples
/// See the [module docs](self).
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let (r, w) = fd::nonblocking_pipe()?;
    Ok((PipeReader::adopt(r), PipeWriter::adopt(w)))
}

/// The read end of a pipe ([`pipe`], or a child's stdout/stderr in [`crate::process`]).
/// Implements `Read` (also for `&PipeReader`); a read parks only the calling greenlet.
///
/// Converts from an `OwnedFd` (`TryFrom`, which puts the descriptor in non-blocking mode) and
/// into one (`From`, which restores blocking mode, e.g. to hand it to a child process).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// let (mut r, mut w) = greenhub::io::pipe().unwrap();
/// w.write_all(b"ab").unwrap();
/// drop(w);
/// let mut v = Vec::new();
/// r.read_to_end(&mut v).unwrap();
/// assert_eq!(v, b"ab");
/// ```
#[derive(Debug)]
pub struct PipeReader(AsyncFd<File>);

/// The write end of a pipe ([`pipe`], or a child's stdin in [`crate::process`]). Implements
/// `Write` (also for `&PipeWriter`); a write into a full pipe parks only the calling greenlet.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// let (_r, mut w) = greenhub::io::pipe().unwrap();
/// assert_eq!(w.write(b"x").unwrap(), 1);
/// ```
#[derive(Debug)]
pub struct PipeWriter(AsyncFd<File>);

macro_rules! pipe_end {
    ($t:ident) => {
        impl $t {
            /// Wraps a descriptor already in non-blocking mode.
            pub(crate) fn adopt(fd: OwnedFd) -> $t {
                $t(AsyncFd {
                    reg: Registered::new(Num(fd.as_raw_fd())),
                    inner: File::from(fd),
                })
            }

            /// Bounds later waits of this end (`None`: no bound, the default); expiry returns
            /// `WouldBlock`.
            ///
            /// # Errors
            /// `InvalidInput` for a zero duration.
            pub fn set_timeout(&self, dur: Option<Duration>) -> io::Result<()> {
                self.0.set_read_timeout(dur)?;
                self.0.set_write_timeout(dur)
            }
        }

        impl TryFrom<OwnedFd> for $t {
            type Error = io::Error;

            /// Adopts a pipe end (or any stream descriptor), putting it in non-blocking mode.
            fn try_from(fd: OwnedFd) -> io::Result<$t> {
                fd::set_nonblocking(fd.as_raw_fd(), true)?;
                Ok($t::adopt(fd))
            }
        }

        impl From<$t> for OwnedFd {
            /// Gives the descriptor back in blocking mode (ready to hand to a child process).
            fn from(p: $t) -> OwnedFd {
                let fd = OwnedFd::from(p.0.into_inner());
                // Best effort: a descriptor whose flags cannot be changed is unusable anyway.
                let _ = fd::set_nonblocking(fd.as_raw_fd(), false);
                fd
            }
        }

        impl From<$t> for std::process::Stdio {
            /// Hands this end to a child process (in blocking mode, as children expect).
            fn from(p: $t) -> std::process::Stdio {
                std::process::Stdio::from(OwnedFd::from(p))
            }
        }

        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }
    };
}

pipe_end!(PipeReader);
pipe_end!(PipeWriter);

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
