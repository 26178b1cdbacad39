//! Unix domain sockets: std's [`std::os::unix::net`] API, parking the greenlet instead of the
//! thread. Addresses are std's [`SocketAddr`].

#![deny(unsafe_code)]

use std::io;
use std::net::Shutdown;
use std::os::unix::net;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::reactor::{Dir, Registered};

pub use std::os::unix::net::SocketAddr;

/// A Unix stream connection (std's [`UnixStream`](std::os::unix::net::UnixStream)) whose blocking
/// calls park only the calling greenlet. Readable and writable through `&UnixStream` too.
pub struct UnixStream {
    inner: Arc<Registered<net::UnixStream>>,
}

socket_common!(UnixStream, net::UnixStream);
socket_timeouts!(UnixStream);
stream_io!(UnixStream, std::os::unix::net::UnixStream, short_reads: false);

impl UnixStream {
    /// Connects to the socket at `path`. A listener whose backlog is full makes a non-blocking
    /// Unix connect fail with `EAGAIN` rather than wait; this retries with a growing sleep (1 ms
    /// to 50 ms), parking only the caller, as a blocking std connect would wait.
    ///
    /// # Errors
    /// `NotFound`, `ConnectionRefused`, or the OS error.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let mut backoff = Duration::from_millis(1);
        loop {
            match mio::net::UnixStream::connect(path.as_ref()) {
                Ok(s) => return Ok(UnixStream::wrap(s.into())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if std::thread::panicking() {
                        return Err(crate::reactor::killed());
                    }
                    crate::hub::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A pair of connected, unnamed sockets.
    ///
    /// # Errors
    /// The OS error (out of descriptors, ...).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::wrap(a.into()), UnixStream::wrap(b.into())))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// Shuts down the read half, the write half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }
}

/// A Unix stream listener (std's [`UnixListener`](std::os::unix::net::UnixListener)) whose
/// `accept` parks only the calling greenlet.
pub struct UnixListener {
    inner: Arc<Registered<net::UnixListener>>,
}

socket_common!(UnixListener, net::UnixListener);

impl UnixListener {
    /// Creates a listener bound to `path` (which must not exist yet, as with std).
    ///
    /// # Errors
    /// `AddrInUse` if `path` exists, or the OS error.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Ok(UnixListener::wrap(
            mio::net::UnixListener::bind(path)?.into(),
        ))
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// # Errors
    /// The OS error (`EMFILE`, ...); `WouldBlock` in non-blocking mode. Out of descriptors or
    /// memory, it sleeps first, as [`TcpListener::accept`](crate::net::TcpListener::accept).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = match self.inner.io(Dir::Read, |l| l.accept()) {
            Ok(r) => {
                super::accept::succeeded();
                r
            }
            Err(e) => return Err(super::accept::failed(e, self.inner.is_nonblocking())),
        };
        s.set_nonblocking(true)?;
        Ok((UnixStream::wrap(s), a))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// An endless iterator of accepted streams (errors included), as std.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }
}

/// The iterator of [`UnixListener::incoming`]: never ends; yields each accepted stream or error.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A Unix datagram socket (std's [`UnixDatagram`](std::os::unix::net::UnixDatagram)) whose
/// blocking calls park only the calling greenlet.
pub struct UnixDatagram {
    inner: Arc<Registered<net::UnixDatagram>>,
}

socket_common!(UnixDatagram, net::UnixDatagram);
socket_timeouts!(UnixDatagram);

impl UnixDatagram {
    /// Creates a socket bound to `path`.
    ///
    /// # Errors
    /// `AddrInUse` if `path` exists, or the OS error.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram::wrap(
            mio::net::UnixDatagram::bind(path)?.into(),
        ))
    }

    /// Creates a socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram::wrap(
            mio::net::UnixDatagram::unbound()?.into(),
        ))
    }

    /// A pair of connected, unnamed sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = mio::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::wrap(a.into()), UnixDatagram::wrap(b.into())))
    }

    /// Sets the default destination and the only source datagrams are accepted from.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.inner.get().connect(path)
    }

    /// Sends `buf` to the socket at `path`.
    ///
    /// # Errors
    /// `WouldBlock` when the write timeout expires or in non-blocking mode.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner.io(Dir::Write, |s| s.send_to(buf, path))
    }

    /// Receives one datagram and its sender's address.
    ///
    /// # Errors
    /// `WouldBlock` when the read timeout expires or in non-blocking mode.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Dir::Read, |s| s.recv_from(buf))
    }

    /// Sends `buf` to the connected peer.
    ///
    /// # Errors
    /// `NotConnected`, or as `send_to`.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.io(Dir::Write, |s| s.send(buf))
    }

    /// Receives one datagram from the connected peer.
    ///
    /// # Errors
    /// As `recv_from`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Dir::Read, |s| s.recv(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` if not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// Shuts down the read half, the write half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }
}
