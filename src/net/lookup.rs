//! `lookup_host`: name resolution that parks only the caller.

use std::io;
use std::net::SocketAddr;

use super::ToSocketAddrs;

/// Resolves `addr` to socket addresses, with the meaning of std's
/// [`ToSocketAddrs::to_socket_addrs`](std::net::ToSocketAddrs::to_socket_addrs) (tokio's
/// `net::lookup_host`): `"host:port"`, `("host", port)`, address literals, ...
///
/// Literals are parsed on the spot. A host name is looked up with the system resolver
/// (`getaddrinfo`, so `/etc/hosts`, DNS and `nsswitch.conf` apply as for std) on a
/// [`threadpool`](crate::threadpool) thread while only the calling greenlet parks. An enclosing
/// timeout scope ([`crate::timeout()`]) ends the wait with `TimedOut`; the lookup itself cannot be
/// cancelled and finishes unobserved on its pool thread. Outside any hub the lookup runs on the
/// calling thread.
///
/// # Errors
/// The resolver's error (an unknown host, an invalid port, ...); `TimedOut` when an enclosing
/// timeout scope expires first.
///
/// # Panics
/// Inside the hub (a hub callback).
///
/// # Examples
///
/// ```
/// use greenhub::{hub, net};
///
/// let addrs: Vec<_> = hub::run(|| net::lookup_host("localhost:80")).unwrap().collect();
/// assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
/// ```
#[track_caller]
pub fn lookup_host<A: ToSocketAddrs>(addr: A) -> io::Result<std::vec::IntoIter<SocketAddr>> {
    super::resolve(&addr).map(Vec::into_iter)
}
