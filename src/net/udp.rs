//! `UdpSocket`: std's API, parking the greenlet instead of the thread.

#![deny(unsafe_code)]

use std::io;
use std::net::{self, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::net::{each_addr, first_addr, ToSocketAddrs};
use crate::reactor::{Dir, Registered};

/// A UDP socket (std's [`UdpSocket`](std::net::UdpSocket)) whose blocking calls park only the
/// calling greenlet.
///
/// ```no_run
/// use greenhub::net::UdpSocket;
///
/// let sock = UdpSocket::bind("127.0.0.1:0")?;
/// sock.send_to(b"hello", "127.0.0.1:9000")?;
/// let mut buf = [0u8; 1500];
/// let (n, from) = sock.recv_from(&mut buf)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UdpSocket {
    inner: Arc<Registered<net::UdpSocket>>,
}

socket_common!(UdpSocket, net::UdpSocket);
socket_timeouts!(UdpSocket);

impl UdpSocket {
    /// Binds to `addr` (the first address it resolves to that binds, as std).
    ///
    /// # Errors
    /// `AddrInUse`, `AddrNotAvailable`, a resolution error, or `InvalidInput` if `addr` resolves
    /// to nothing.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr(&addr, |a| {
            Ok(UdpSocket::wrap(mio::net::UdpSocket::bind(a)?.into()))
        })
    }

    /// Receives one datagram; returns its length and sender. Excess bytes of a datagram longer
    /// than `buf` are discarded.
    ///
    /// # Errors
    /// `WouldBlock` when the read timeout expires or in non-blocking mode.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Dir::Read, |s| s.recv_from(buf))
    }

    /// As [`recv_from`](UdpSocket::recv_from), leaving the datagram queued.
    ///
    /// # Errors
    /// As `recv_from`.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.io(Dir::Read, |s| s.peek_from(buf))
    }

    /// Sends `buf` to the first address `addr` resolves to (as std).
    ///
    /// # Errors
    /// Besides the OS error: a resolution error, or `InvalidInput` if `addr` resolves to nothing.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = first_addr(&addr)?;
        self.inner.io(Dir::Write, |s| s.send_to(buf, to))
    }

    /// Sets the default destination and the only source datagrams are accepted from (the first
    /// address `addr` resolves to that works, as std).
    ///
    /// # Errors
    /// Besides the OS error: a resolution error, or `InvalidInput` if `addr` resolves to nothing.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&addr, |a| self.inner.get().connect(a))
    }

    /// Sends `buf` to the connected address.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](UdpSocket::connect), or the OS error.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.io(Dir::Write, |s| s.send(buf))
    }

    /// Receives one datagram from the connected address.
    ///
    /// # Errors
    /// The OS error (`ConnectionRefused` after an ICMP port unreachable, ...).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Dir::Read, |s| s.recv(buf))
    }

    /// As [`recv`](UdpSocket::recv), leaving the datagram queued.
    ///
    /// # Errors
    /// As `recv`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.io(Dir::Read, |s| s.peek(buf))
    }

    /// The connected address.
    ///
    /// # Errors
    /// `NotConnected` if not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, broadcast: bool) -> io::Result<()> {
        self.inner.get().set_broadcast(broadcast)
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.get().broadcast()
    }

    /// Sets `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.inner.get().set_multicast_loop_v4(on)
    }

    /// Whether `IP_MULTICAST_LOOP` is set.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.inner.get().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_multicast_ttl_v4(ttl)
    }

    /// The `IP_MULTICAST_TTL` value.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.inner.get().multicast_ttl_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.inner.get().set_multicast_loop_v6(on)
    }

    /// Whether `IPV6_MULTICAST_LOOP` is set.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.inner.get().multicast_loop_v6()
    }

    /// Joins an IPv4 multicast group on `interface` (`UNSPECIFIED`: the default one).
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.inner.get().join_multicast_v4(multiaddr, interface)
    }

    /// Joins an IPv6 multicast group on interface index `interface` (0: the default one).
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.get().join_multicast_v6(multiaddr, interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.inner.get().leave_multicast_v4(multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.get().leave_multicast_v6(multiaddr, interface)
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
