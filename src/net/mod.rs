//! Sockets with `std::net`'s API whose blocking calls park only the calling greenlet.
//!
//! gevent makes Python's `socket` cooperative by monkey-patching it; Rust has no monkey-patching,
//! so greenhub mirrors the std types instead, with the same names, signatures and error kinds.
//! Porting a thread-per-connection std program is a change of `use` lines and of `thread::spawn`
//! to [`hub::spawn`](crate::hub::spawn):
//!
//! ```no_run
//! // was: use std::net::{TcpListener, TcpStream}; use std::thread::spawn;
//! use greenhub::net::{TcpListener, TcpStream};
//! use greenhub::hub::spawn;
//! use std::io::{Read, Write};
//!
//! fn handle(mut s: TcpStream) -> std::io::Result<()> {
//!     let mut buf = [0u8; 4096];
//!     loop {
//!         let n = s.read(&mut buf)?;
//!         if n == 0 {
//!             return Ok(());
//!         }
//!         s.write_all(&buf[..n])?;
//!     }
//! }
//!
//! let listener = TcpListener::bind("127.0.0.1:7000")?;
//! for stream in listener.incoming() {
//!     let stream = stream?;
//!     spawn(move || handle(stream));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A call that would block (an `accept` with no pending connection, a `read` with no data, a
//! `write` into a full buffer, a `connect` in progress) parks the calling greenlet until the hub's
//! `mio` poll reports the socket ready; every other greenlet of the thread runs meanwhile. Code that
//! runs outside any spawned greenlet (plain `main`) is the thread's main greenlet and blocks the
//! same way, so these types also work as drop-in std sockets in ordinary code.
//!
//! # What differs from std
//!
//! - **A socket belongs to one hub.** Its registration lives in the `mio::Poll` of the hub of the
//!   thread whose greenlet first waited on it. The types are `Send` like std's, so a socket may be
//!   created on one thread and handed to another before its first blocking call; after that, a
//!   call that would block on any other thread returns an `io::Error` saying so.
//! - **[`ToSocketAddrs`] is greenhub's own trait**, implemented for the same types as std's.
//!   Address literals resolve at once; host names are resolved on a helper thread so DNS never
//!   stalls the hub (only the caller waits).
//! - **Timeouts are kept by the hub**, not the kernel: `set_read_timeout` and friends validate and
//!   report like std's (a zero duration is `InvalidInput`; expiry is `ErrorKind::WouldBlock`, as
//!   std returns on Unix), but `SO_RCVTIMEO` on the descriptor is not set. An enclosing greenhub
//!   timeout scope that expires makes the call return `ErrorKind::TimedOut`.
//! - **`try_clone` shares, it does not `dup`.** Clones share one descriptor, one registration and
//!   one set of settings (as `dup`'d std sockets share theirs); the descriptor closes when the last
//!   clone drops, and `as_raw_fd` returns the same number for all of them.
//! - **Writes never raise `SIGPIPE`**: stream writes use `send`/`sendmsg` with `MSG_NOSIGNAL`, so a
//!   peer reset surfaces as an `io::Error` (`BrokenPipe` or `ConnectionReset`).
//! - The descriptors are always `O_NONBLOCK` underneath; `set_nonblocking(true)` makes the calls
//!   return `WouldBlock` instead of parking. Converting back to a std type (`From`, `IntoRawFd`)
//!   restores blocking mode unless other clones still share the socket (then the std socket is a
//!   `dup` that stays non-blocking, because the flag is shared with those clones).
//! - A greenlet killed while parked on I/O unwinds out of the call; code that blocks while already
//!   unwinding from a kill (a destructor) gets an `io::Error` instead.
//!
//! # Errors
//!
//! Every `io::Result` here carries the OS error of the underlying syscall, unchanged, except
//! where a method's docs say more (timeouts, non-blocking mode, the other thread's hub).
//!
//! # Panics
//!
//! A call that would block panics, naming the caller, inside the hub (a hub callback or a
//! destructor the hub runs) and after this thread's hub was torn down (see
//! [`hub`](crate::hub#misuse)). Calls that complete without waiting work anywhere.

#![deny(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

#[macro_use]
mod common;
mod accept;
mod lookup;
mod tcp;
mod udp;
pub mod unix;

pub use lookup::lookup_host;
pub use std::net::Shutdown;
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

mod sealed {
    /// How an address argument becomes socket addresses: at once, or by a lookup.
    pub enum Plan {
        One(std::net::SocketAddr),
        Ready(Vec<std::net::SocketAddr>),
        Str(String),
        HostPort(String, u16),
    }

    /// Keeps [`super::ToSocketAddrs`] implemented only here, for std's set of types.
    pub trait Sealed {
        fn plan(&self) -> Plan;
    }
}

use sealed::Plan;

/// A value that names one or more socket addresses: greenhub's counterpart of
/// [`std::net::ToSocketAddrs`], implemented for the same types (`SocketAddr`, `(IpAddr, u16)`,
/// `(&str, u16)`, `"host:port"` strings, `&[SocketAddr]`, references to these, ...).
///
/// It is a separate (sealed) trait because resolving a host name must not block the hub: literals
/// are parsed on the spot, and names are looked up on a helper thread while the calling greenlet
/// parks. Code that names the trait (`A: ToSocketAddrs`) ports by importing this one.
pub trait ToSocketAddrs: sealed::Sealed {}

impl<T: sealed::Sealed + ?Sized> ToSocketAddrs for T {}

macro_rules! literal_impl {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn plan(&self) -> Plan {
                Plan::One(SocketAddr::from(*self))
            }
        }
    )*};
}

literal_impl!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl sealed::Sealed for [SocketAddr] {
    fn plan(&self) -> Plan {
        Plan::Ready(self.to_vec())
    }
}

impl sealed::Sealed for str {
    fn plan(&self) -> Plan {
        match self.parse::<SocketAddr>() {
            Ok(a) => Plan::One(a),
            Err(_) => Plan::Str(self.to_owned()),
        }
    }
}

impl sealed::Sealed for String {
    fn plan(&self) -> Plan {
        self.as_str().plan()
    }
}

impl sealed::Sealed for (&str, u16) {
    fn plan(&self) -> Plan {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Plan::One(SocketAddr::new(ip, self.1)),
            Err(_) => Plan::HostPort(self.0.to_owned(), self.1),
        }
    }
}

impl sealed::Sealed for (String, u16) {
    fn plan(&self) -> Plan {
        (self.0.as_str(), self.1).plan()
    }
}

impl<T: sealed::Sealed + ?Sized> sealed::Sealed for &T {
    fn plan(&self) -> Plan {
        (**self).plan()
    }
}

/// Resolves `addr`, looking names up on a helper thread (only the calling greenlet waits).
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Vec<SocketAddr>> {
    match addr.plan() {
        Plan::One(a) => Ok(vec![a]),
        Plan::Ready(v) => Ok(v),
        Plan::Str(s) => lookup(move || std::net::ToSocketAddrs::to_socket_addrs(&s)),
        Plan::HostPort(h, p) => lookup(move || std::net::ToSocketAddrs::to_socket_addrs(&(&*h, p))),
    }
}

/// Runs a blocking `getaddrinfo` on the thread pool (`threadpool`); only the calling greenlet
/// waits, woken by the pool thread when the answer is in. An enclosing timeout scope ends the
/// wait with `TimedOut` (the lookup finishes unobserved). Outside any hub it runs inline.
fn lookup<I>(f: impl FnOnce() -> io::Result<I> + Send + 'static) -> io::Result<Vec<SocketAddr>>
where
    I: Iterator<Item = SocketAddr>,
{
    let f = move || f().map(Iterator::collect::<Vec<_>>);
    if crate::rt::existing_hub().is_none() {
        return f();
    }
    match crate::remote::threadpool::run_parked(f, None, true) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "an enclosing greenhub timeout expired during a host name lookup",
        )),
    }
}

/// The first address `addr` names (what std's `send_to` uses); no allocation for literals.
pub(crate) fn first_addr<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<SocketAddr> {
    let first = match addr.plan() {
        Plan::One(a) => Some(a),
        _ => resolve(addr)?.into_iter().next(),
    };
    first.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))
}

/// Tries `f` on each address in turn, as std does; returns the first success or the last error.
pub(crate) fn each_addr<A: ToSocketAddrs + ?Sized, T>(
    addr: &A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}
