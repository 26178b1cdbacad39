//! `TcpListener` and `TcpStream`: std's API, parking the greenlet instead of the thread.

#![deny(unsafe_code)]

use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{each_addr, ToSocketAddrs};
use crate::reactor::{Dir, OnTimeout, Registered};

/// A TCP connection (std's [`TcpStream`](std::net::TcpStream)) whose blocking calls park only the
/// calling greenlet.
///
/// Reads and writes are available on `TcpStream` and on `&TcpStream`, so one stream can be read
/// and written through shared references, e.g. a `BufReader<&TcpStream>` beside writes.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use greenhub::net::TcpStream;
///
/// let mut s = TcpStream::connect("127.0.0.1:7000")?;
/// s.write_all(b"ping")?;
/// let mut buf = [0u8; 4];
/// s.read_exact(&mut buf)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpStream {
    inner: Arc<Registered<net::TcpStream>>,
}

socket_common!(TcpStream, net::TcpStream);
socket_timeouts!(TcpStream);
stream_io!(TcpStream, net::TcpStream, short_reads: true);

impl TcpStream {
    /// Opens a connection to `addr`, trying each address it resolves to in turn (as std). Host
    /// names are resolved on a helper thread; only the calling greenlet waits.
    ///
    /// # Errors
    /// The last address's error (`ConnectionRefused`, ...), a resolution error, or
    /// `InvalidInput` if `addr` resolves to nothing.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(&addr, |a| TcpStream::connect_deadline(a, None))
    }

    /// Opens a connection to `addr`, giving up after `timeout`.
    ///
    /// # Errors
    /// `InvalidInput` for a zero timeout (as std), `TimedOut` when it expires, or the connection
    /// error.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_deadline(*addr, Instant::now().checked_add(timeout))
    }

    fn connect_deadline(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        // mio's connect is the non-blocking socket + connect std lacks; it answers EINPROGRESS.
        let s = TcpStream::wrap(mio::net::TcpStream::connect(addr)?.into());
        // Writable means the handshake finished, one way or the other.
        s.inner
            .io_deadline(Dir::Write, deadline, OnTimeout::TimedOut, |s| {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })?;
        Ok(s)
    }

    /// The remote address.
    ///
    /// # Errors
    /// `NotConnected` if the connection is gone, or the OS error.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// Shuts down the read half, the write half or both. After `Shutdown::Write` the peer reads
    /// end-of-file and can still send to us.
    ///
    /// # Errors
    /// The OS error (`NotConnected`, ...).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    /// Reads without removing the data from the receive queue; parks until some arrives.
    ///
    /// # Errors
    /// As [`Read::read`](std::io::Read::read).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Dir::Read, |s| s.peek(buf))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get().nodelay()
    }

    /// Sets the IP time-to-live of outgoing packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing packets.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }
}

/// The listen queue length (capped by the kernel's `somaxconn`).
const BACKLOG: i32 = 1024;

/// A TCP listening socket (std's [`TcpListener`](std::net::TcpListener)) whose `accept` parks only
/// the calling greenlet.
///
/// Bound with `SO_REUSEADDR` (as std does on Unix) and a backlog of 1024 rather than std's 128:
/// one hub accepts for thousands of greenlets and sees connection bursts a thread-per-connection
/// server rarely would (a burst beyond the backlog gets SYN cookies and, on loopback, resets).
///
/// # Examples
/// ```
/// use std::io::{Read, Write};
/// use greenhub::{hub, net::{TcpListener, TcpStream}};
///
/// hub::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let server = hub::spawn(move || {
///         let (mut s, _) = listener.accept().unwrap(); // parks only this greenlet
///         let mut buf = [0; 5];
///         s.read_exact(&mut buf).unwrap();
///         s.write_all(&buf).unwrap();
///     });
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"hello").unwrap();
///     let mut back = [0; 5];
///     c.read_exact(&mut back).unwrap();
///     assert_eq!(&back, b"hello");
///     server.join().unwrap();
/// });
/// ```
pub struct TcpListener {
    inner: Arc<Registered<net::TcpListener>>,
}

socket_common!(TcpListener, net::TcpListener);

impl TcpListener {
    /// Binds to `addr` (the first address it resolves to that binds, as std).
    ///
    /// # Errors
    /// `AddrInUse`, `AddrNotAvailable`, a resolution error, or `InvalidInput` if `addr` resolves
    /// to nothing.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(&addr, |a| {
            let l: net::TcpListener = mio::net::TcpListener::bind(a)?.into();
            crate::sys::socket::listen(l.as_fd(), BACKLOG)?;
            Ok(TcpListener::wrap(l))
        })
    }

    /// The local address (with the port the OS chose when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    /// The OS error: `EMFILE`/`ENFILE` (out of descriptors; the pending connection stays queued),
    /// `ConnectionAborted`, ...; `WouldBlock` in non-blocking mode. An `EMFILE`, `ENFILE`,
    /// `ENOBUFS` or `ENOMEM` is returned after a short sleep (1 ms, doubling to 100 ms while
    /// they repeat), so that a loop that just retries lets the greenlets that would free
    /// descriptors run (not in non-blocking mode).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = match self.inner.io(Dir::Read, |l| l.accept()) {
            Ok(r) => {
                super::accept::succeeded();
                r
            }
            Err(e) => return Err(super::accept::failed(e, self.inner.is_nonblocking())),
        };
        // std's accept4 sets only CLOEXEC; one ioctl makes the new socket non-blocking.
        s.set_nonblocking(true)?;
        Ok((TcpStream::wrap(s), a))
    }

    /// An endless iterator of [`accept`](TcpListener::accept)ed streams (errors included), as std.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// Sets the IP time-to-live of outgoing packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing packets.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }
}

/// The iterator of [`TcpListener::incoming`]: never ends; yields each accepted stream or error.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}
