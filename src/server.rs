//! [`StreamServer`]: gevent's `StreamServer` — accept connections and run a handler greenlet for
//! each.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use greenhub::server::StreamServer;
//!
//! let server = StreamServer::bind("127.0.0.1:7000", |mut stream, _peer| {
//!     let mut buf = [0u8; 4096];
//!     while let Ok(n) = stream.read(&mut buf) {
//!         if n == 0 || stream.write_all(&buf[..n]).is_err() {
//!             break;
//!         }
//!     }
//! })?;
//! server.serve_forever()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The accept loop is a greenlet of its own. It never busy-loops and never dies of a transient
//! error: when the process runs out of descriptors (`EMFILE`/`ENFILE`) it sleeps (5 ms, doubling
//! to 1 s), says so through `tracing::warn!` once per episode and then at most every 10 s, and
//! resumes accepting when descriptors come back; the pending connections wait in the listen
//! queue meanwhile.

#![deny(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::greenlet::{Builder, Greenlet};
use crate::hub::{self, Handle, RemoteGreenlet};
use crate::net::{TcpListener, TcpStream, ToSocketAddrs};
use crate::rt::{current_hub, warn_at, KillSignal, WaitOn, Waiter, Wake, Warning};
use crate::runtime::Runtime;

mod graceful;
pub use graceful::StopReport;

/// The first pause after running out of descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between accept attempts while out of descriptors.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning per this interval while descriptors stay exhausted.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A TCP server that spawns a handler greenlet per accepted connection (gevent's `StreamServer`).
///
/// - The handler is `Fn(TcpStream, SocketAddr)`, shared by all connections (an `Rc`); state shared
///   between connections goes in `Rc<RefCell<..>>` captured by it — every greenlet runs on this
///   thread, one at a time.
/// - Accepted sockets get `TCP_NODELAY` by default (request/response protocols want their small
///   writes sent at once); turn it off with [`set_nodelay(false)`](StreamServer::set_nodelay).
/// - [`set_max_connections`](StreamServer::set_max_connections) caps the live handlers: at the
///   cap the server stops accepting (connections wait in the listen queue) until one finishes.
/// - [`set_idle_timeout`](StreamServer::set_idle_timeout) bounds how long a connection may sit
///   without moving a byte: a server facing the internet wants it, or a client that connects and
///   never sends (or never reads) holds a descriptor and a greenlet forever.
/// - A handler that panics is logged through `tracing::error!`; the server keeps serving.
/// - [`start`](StreamServer::start) runs the accept loop in the background;
///   [`serve_forever`](StreamServer::serve_forever) runs it and waits;
///   [`stop`](StreamServer::stop) stops accepting, closes the listener, gives the handlers a grace
///   period and kills the rest.
///
/// `StreamServer` is a cheap handle (`Clone`); the server keeps running while its accept loop
/// runs, even if every handle is dropped. It belongs to the thread that created it (`!Send`).
///
/// # Examples
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use greenhub::{hub, net::TcpStream, server::StreamServer};
///
/// hub::run(|| {
///     let server = StreamServer::bind("127.0.0.1:0", |mut s, _peer| {
///         let mut buf = [0; 64];
///         while let Ok(n @ 1..) = s.read(&mut buf) {
///             if s.write_all(&buf[..n]).is_err() {
///                 break;
///             }
///         }
///     })
///     .unwrap();
///     let addr = server.local_addr().unwrap();
///     server.start().unwrap();
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"ping").unwrap();
///     let mut back = [0; 4];
///     c.read_exact(&mut back).unwrap();
///     assert_eq!(&back, b"ping");
///     server.stop(Duration::from_millis(100));
/// });
/// ```
#[derive(Clone)]
pub struct StreamServer {
    inner: Rc<Inner>,
}

struct Inner {
    /// `None` once stopped (the listener is closed).
    listener: RefCell<Option<TcpListener>>,
    addr: SocketAddr,
    handler: Rc<dyn Fn(TcpStream, SocketAddr)>,
    max_connections: Cell<Option<usize>>,
    nodelay: Cell<bool>,
    idle_timeout: Cell<Option<Duration>>,
    /// Live handler greenlets, for `stop` to kill. Each removes itself when it finishes.
    handlers: RefCell<Slab<Greenlet<()>>>,
    /// The accept loop, once started.
    accept_loop: RefCell<Option<Greenlet<()>>>,
    /// What the accept loop ended with, once it has (`Ok` when stopped).
    outcome: RefCell<Option<io::Result<()>>>,
    /// The accept loop has ended (its outcome may have been taken already).
    loop_ended: Cell<bool>,
    stopped: Cell<bool>,
    /// Greenlets waiting for a handler to finish (the accept loop at the cap, `stop`).
    handler_done: RefCell<Vec<Waiter>>,
    /// Greenlets waiting for the accept loop to end (`serve_forever`).
    loop_done: RefCell<Vec<Waiter>>,
}

impl fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.inner.addr)
            .field("connections", &self.connections())
            .field("max_connections", &self.inner.max_connections.get())
            .field("stopped", &self.inner.stopped.get())
            .finish()
    }
}

impl StreamServer {
    /// Binds a listener to `addr` and makes a server for it (not started yet).
    ///
    /// # Errors
    /// As [`TcpListener::bind`].
    pub fn bind<A, F>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) + 'static,
    {
        StreamServer::new(TcpListener::bind(addr)?, handler)
    }

    /// Makes a server that accepts on an existing listener (not started yet). The server puts
    /// the listener in parking mode (`set_nonblocking(false)`, shared with its clones): the
    /// accept loop must wait for connections, not spin on `WouldBlock`.
    ///
    /// # Errors
    /// If the listener's local address cannot be read (it is not bound).
    pub fn new<F>(listener: TcpListener, handler: F) -> io::Result<StreamServer>
    where
        F: Fn(TcpStream, SocketAddr) + 'static,
    {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(false)?;
        Ok(StreamServer {
            inner: Rc::new(Inner {
                listener: RefCell::new(Some(listener)),
                addr,
                handler: Rc::new(handler),
                max_connections: Cell::new(None),
                nodelay: Cell::new(true),
                idle_timeout: Cell::new(None),
                handlers: RefCell::new(Slab::new()),
                accept_loop: RefCell::new(None),
                outcome: RefCell::new(None),
                loop_ended: Cell::new(false),
                stopped: Cell::new(false),
                handler_done: RefCell::new(Vec::new()),
                loop_done: RefCell::new(Vec::new()),
            }),
        })
    }

    /// The address the server listens on (still answered after `stop`).
    ///
    /// # Errors
    /// None today; the `Result` matches the socket types' `local_addr`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.addr)
    }

    /// Caps the number of live handlers (`None`: no cap, the default). At the cap the accept loop
    /// waits for a handler to finish before accepting again.
    pub fn set_max_connections(&self, limit: Option<usize>) {
        self.inner.max_connections.set(limit);
        wake_all(&self.inner.handler_done); // a raised cap may let the loop go on
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default: `true`).
    pub fn set_nodelay(&self, nodelay: bool) {
        self.inner.nodelay.set(nodelay);
    }

    /// Sets the idle timeout of each connection accepted from now on (`None`, the default: none).
    /// It becomes the accepted stream's read and write timeout
    /// ([`TcpStream::set_read_timeout`], [`TcpStream::set_write_timeout`]) before the handler
    /// runs: a read that waits longer than `timeout` for a byte, or a write that waits longer for
    /// room, returns `ErrorKind::WouldBlock`, so a handler that stops at the first error (`?`)
    /// closes the connection. The handler may change both for its own stream.
    ///
    /// Per operation, not per connection, on purpose: a timeout scope around the whole handler
    /// would also cut a busy keep-alive connection. What it does not bound is a client that
    /// trickles one byte per interval; a protocol with framed requests should also put a
    /// deadline on reading each request head ([`crate::timeout::timeout`]; the `http_hello`
    /// example does both).
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration, as std's socket timeouts.
    ///
    /// # Examples
    /// ```
    /// use std::io::Read;
    /// use std::time::{Duration, Instant};
    /// use greenhub::{hub, net::TcpStream, server::StreamServer};
    ///
    /// hub::run(|| {
    ///     let server = StreamServer::bind("127.0.0.1:0", |mut s, _peer| {
    ///         let mut buf = [0; 64];
    ///         while let Ok(1..) = s.read(&mut buf) {} // ends with the timeout's error
    ///     })
    ///     .unwrap();
    ///     server.set_idle_timeout(Some(Duration::from_millis(50))).unwrap();
    ///     server.start().unwrap();
    ///     let start = Instant::now();
    ///     let mut silent = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(silent.read(&mut buf).unwrap(), 0); // the server closed it
    ///     assert!(start.elapsed() >= Duration::from_millis(50));
    ///     server.stop(Duration::ZERO);
    /// });
    /// ```
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        self.inner.idle_timeout.set(timeout);
        Ok(())
    }

    /// The idle timeout given to accepted connections (see
    /// [`set_idle_timeout`](Self::set_idle_timeout)).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.inner.idle_timeout.get()
    }

    /// Live handler greenlets.
    pub fn connections(&self) -> usize {
        self.inner.handlers.borrow().len()
    }

    /// Whether the accept loop has been started (and not yet ended).
    pub fn is_started(&self) -> bool {
        self.inner
            .accept_loop
            .borrow()
            .as_ref()
            .is_some_and(|g| !g.is_finished())
    }

    /// Starts the accept loop in a greenlet of its own and returns at once. Starting a started
    /// server does nothing.
    ///
    /// # Errors
    /// `InvalidInput` if the server was stopped.
    pub fn start(&self) -> io::Result<()> {
        if self.inner.stopped.get() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this StreamServer was stopped; make a new one",
            ));
        }
        if self.inner.accept_loop.borrow().is_some() {
            return Ok(());
        }
        let listener = self
            .inner
            .listener
            .borrow()
            .as_ref()
            .expect("a server that is not stopped has its listener")
            .try_clone()?;
        let inner = self.inner.clone();
        let g = Builder::new()
            .name(format!("StreamServer {}", self.inner.addr))
            .spawn(move || accept_loop(inner, listener));
        *self.inner.accept_loop.borrow_mut() = Some(g);
        Ok(())
    }

    /// Starts the server if needed and waits until it stops: `Ok` after [`stop`](Self::stop),
    /// or the error that ended the accept loop.
    ///
    /// # Errors
    /// `InvalidInput` if the server was already stopped; a non-transient accept error (the
    /// listener was closed under it, ...).
    pub fn serve_forever(&self) -> io::Result<()> {
        self.start()?;
        loop {
            if let Some(r) = self.inner.outcome.borrow_mut().take() {
                return r;
            }
            if self.inner.stopped.get() || self.inner.loop_ended.get() {
                return Ok(());
            }
            match park_on(&self.inner.loop_done, &"a StreamServer to stop", None) {
                Wake::Woken | Wake::TimedOut => {}
                Wake::Killed | Wake::Deadlock => return Err(crate::reactor::killed()),
                Wake::ScopeExpired => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "an enclosing greenhub timeout expired in serve_forever",
                    ))
                }
            }
        }
    }

    /// Stops accepting and closes the listener, waits up to `grace` for the handlers to finish,
    /// then kills those still running and waits for them to unwind. Called from a handler, it
    /// neither waits for nor kills that handler. Stopping a stopped server does nothing (and
    /// reports zeros).
    ///
    /// Returns how many handlers were running when it began and finished within `grace`
    /// (`drained`) and how many were killed. To stop on `SIGINT`/`SIGTERM`, see
    /// [`serve_until_signal`](Self::serve_until_signal).
    ///
    /// # Panics
    /// Inside the hub (it blocks).
    #[track_caller]
    pub fn stop(&self, grace: Duration) -> StopReport {
        let inner = &self.inner;
        if !self.close(true) {
            return StopReport::default();
        }
        let me = crate::greenlet::current_id();
        let others = || {
            inner
                .handlers
                .borrow()
                .iter()
                .filter(|(_, g)| g.id() != me)
                .count()
        };
        let open = others();
        let deadline = Instant::now().checked_add(grace);
        while others() > 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match park_on(
                &inner.handler_done,
                &"StreamServer handlers to finish",
                deadline,
            ) {
                Wake::Woken => {}
                _ => break,
            }
        }
        let victims: Vec<Greenlet<()>> = {
            let mut hs = inner.handlers.borrow_mut();
            let keys: Vec<usize> = hs
                .iter()
                .filter(|(_, g)| g.id() != me)
                .map(|(k, _)| k)
                .collect();
            keys.into_iter().map(|k| hs.remove(k)).collect()
        };
        for g in &victims {
            g.kill_nowait();
        }
        for g in &victims {
            g.kill();
        }
        StopReport {
            drained: open - victims.len(),
            killed: victims.len(),
        }
    }

    /// Stops accepting: marks the server stopped, kills the accept loop (waiting for it if
    /// `wait`), closes the listener. Returns false if it was already stopped.
    fn close(&self, wait: bool) -> bool {
        let inner = &self.inner;
        if inner.stopped.replace(true) {
            return false;
        }
        let accept = inner.accept_loop.borrow_mut().take();
        if let Some(g) = &accept {
            if wait {
                g.kill();
            } else {
                g.kill_nowait();
            }
        }
        drop(inner.listener.borrow_mut().take());
        wake_all(&inner.loop_done);
        true
    }
}

/// Parks the running greenlet on `list` until woken or `deadline`.
fn park_on(
    list: &RefCell<Vec<Waiter>>,
    what: &'static &'static str,
    deadline: Option<Instant>,
) -> Wake {
    let hub = current_hub();
    hub.current_core("wait");
    {
        let mut l = list.borrow_mut();
        l.retain(Waiter::is_pending);
        l.push(hub.current_waiter());
    }
    hub.park(WaitOn::Sync(what), deadline)
}

fn wake_all(list: &RefCell<Vec<Waiter>>) {
    let ws = std::mem::take(&mut *list.borrow_mut());
    for w in ws {
        w.wake();
    }
}

/// Whether an accept error means "out of descriptors or kernel memory": back off and retry.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an accept error concerns only the one connection being accepted: just go on.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::TimedOut
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::EHOSTUNREACH | libc::ENETUNREACH)
    )
}

/// Marks the accept loop's end for `serve_forever`, however it ends (error, stop's kill).
struct LoopExit(Rc<Inner>);

impl Drop for LoopExit {
    fn drop(&mut self) {
        self.0.loop_ended.set(true);
        wake_all(&self.0.loop_done);
    }
}

fn accept_loop(inner: Rc<Inner>, listener: TcpListener) {
    let _exit = LoopExit(inner.clone());
    let mut backoff = BACKOFF_MIN;
    let mut exhausted_since: Option<Instant> = None;
    let mut last_warning: Option<Instant> = None;
    loop {
        while inner
            .max_connections
            .get()
            .is_some_and(|max| inner.handlers.borrow().len() >= max)
        {
            park_on(&inner.handler_done, &"a StreamServer connection slot", None);
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Some(since) = exhausted_since.take() {
                    tracing::info!(
                        "greenhub StreamServer {}: accepting again after {:?} out of descriptors",
                        inner.addr,
                        since.elapsed()
                    );
                }
                backoff = BACKOFF_MIN;
                configure(&stream, inner.nodelay.get(), inner.idle_timeout.get());
                spawn_handler(&inner, stream, peer);
            }
            Err(e) if is_exhaustion(&e) => {
                let now = Instant::now();
                exhausted_since.get_or_insert(now);
                if last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    last_warning = Some(now);
                    warn_at!(Warning::AcceptBackoff, warn, {}
                        "greenhub StreamServer {}: accept failed ({e}); backing off up to {:?} \
                         between attempts until descriptors are freed",
                        inner.addr,
                        BACKOFF_MAX
                    );
                }
                hub::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                tracing::error!(
                    "greenhub StreamServer {}: accept failed, the server stops: {e}",
                    inner.addr
                );
                *inner.outcome.borrow_mut() = Some(Err(e));
                return;
            }
        }
    }
}

/// Applies the server's socket settings to an accepted stream (best effort: a socket whose
/// options cannot be set is already broken, and its handler will see that).
fn configure(stream: &TcpStream, nodelay: bool, idle_timeout: Option<Duration>) {
    if nodelay {
        let _ = stream.set_nodelay(true);
    }
    if idle_timeout.is_some() {
        let _ = stream.set_read_timeout(idle_timeout);
        let _ = stream.set_write_timeout(idle_timeout);
    }
}

/// Removes a handler from the live set and wakes whoever waits for a free slot, however the
/// handler ends (return, panic, kill).
struct HandlerExit {
    inner: Rc<Inner>,
    key: usize,
}

impl Drop for HandlerExit {
    fn drop(&mut self) {
        // `stop` may have taken the entry already.
        let handle = self.inner.handlers.borrow_mut().try_remove(self.key);
        drop(handle);
        wake_all(&self.inner.handler_done);
    }
}

fn spawn_handler(inner: &Rc<Inner>, stream: TcpStream, peer: SocketAddr) {
    let mut handlers = inner.handlers.borrow_mut();
    let entry = handlers.vacant_entry();
    let exit = HandlerExit {
        inner: inner.clone(),
        key: entry.key(),
    };
    // This closure's frame stays on the greenlet's stack (and so in its slice) while the
    // connection lives: it reaches the handler through `exit`'s `Rc` rather than a clone of its
    // own, and the panic path is out of line.
    let g = hub::spawn(move || {
        let exit = exit;
        let run = AssertUnwindSafe(|| (exit.inner.handler)(stream, peer));
        if let Err(p) = panic::catch_unwind(run) {
            handler_panicked(peer, p);
        }
    });
    entry.insert(g);
}

/// A handler's panic: a kill keeps unwinding the greenlet; anything else is reported.
#[cold]
#[inline(never)]
fn handler_panicked(peer: SocketAddr, p: Box<dyn std::any::Any + Send>) {
    if p.is::<KillSignal>() {
        panic::resume_unwind(p);
    }
    report_handler_panic(peer, &*p);
}

/// How a [`MultiServer`] spreads connections over its hubs.
///
/// Measured with `echo_server --threads 2` against `echo_client` (64-byte echoes, 10/100/1,000
/// connections, on a loaded 2-core machine): `Handoff` was faster in 7 of 9 runs — by 15–40 % with
/// 10 and 1,000 connections, mixed at 100 — because round-robin places long-lived connections
/// evenly while the kernel's `SO_REUSEPORT` hash may put 7 of 10 on one hub. Connection churn
/// (connect, one echo, close) ran at the same rate either way. So `Handoff` is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Distribution {
    /// One listener, accepted on hub 0, each accepted connection handed to the next hub
    /// round-robin (through its [`crate::hub::Handle`]) before any greenlet touches it.
    /// The default.
    #[default]
    Handoff,
    /// One listener per hub, all bound to the same port with `SO_REUSEPORT`; the kernel spreads
    /// incoming connections over them (by a hash of the addresses) and each hub accepts its own:
    /// no cross-thread hop per connection, and no single acceptor.
    ReusePort,
}

/// Configures a [`MultiServer`].
#[derive(Clone, Debug)]
pub struct MultiBuilder {
    threads: usize,
    distribution: Distribution,
    nodelay: bool,
    idle_timeout: Option<Duration>,
}

impl MultiBuilder {
    /// Hub threads (default: one per core).
    pub fn threads(mut self, n: usize) -> MultiBuilder {
        self.threads = n.max(1);
        self
    }

    /// How connections are spread over the hubs (default [`Distribution::Handoff`]).
    pub fn distribution(mut self, d: Distribution) -> MultiBuilder {
        self.distribution = d;
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY` (default `true`).
    pub fn nodelay(mut self, on: bool) -> MultiBuilder {
        self.nodelay = on;
        self
    }

    /// Each connection's idle timeout (default `None`), as
    /// [`StreamServer::set_idle_timeout`]; a zero duration makes [`bind`](Self::bind) fail with
    /// `InvalidInput`.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> MultiBuilder {
        self.idle_timeout = timeout;
        self
    }

    /// Binds to the first address `addr` resolves to and starts serving on every hub: `handler`
    /// runs in a greenlet per connection, on the hub the connection was given to.
    ///
    /// # Errors
    /// A resolution or bind error; a hub thread that cannot start; `InvalidInput` for a zero
    /// idle timeout.
    pub fn bind<A, F>(self, addr: A, handler: F) -> io::Result<MultiServer>
    where
        A: std::net::ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any addresses",
            )
        })?;
        let drain = Arc::new(graceful::Drain::default());
        let d = drain.clone();
        let handler: Arc<dyn Fn(TcpStream, SocketAddr) + Send + Sync> =
            Arc::new(move |s, p| d.run(|| handler(s, p)));
        let runtime = Runtime::builder()
            .threads(self.threads)
            .thread_name("greenhub-server")
            .build()?;
        let (nodelay, idle) = (self.nodelay, self.idle_timeout);
        let mut loops = Vec::new();
        let local = match self.distribution {
            Distribution::ReusePort => {
                let first = crate::sys::socket::reuseport_listener(addr)?;
                let local = first.local_addr()?;
                let mut listeners = vec![first];
                for _ in 1..runtime.threads() {
                    listeners.push(crate::sys::socket::reuseport_listener(local)?);
                }
                for (i, l) in listeners.into_iter().enumerate() {
                    let handler = handler.clone();
                    loops.push(runtime.handle(i).spawn(move || {
                        let server =
                            StreamServer::new(TcpListener::from(l), move |s, p| handler(s, p))?;
                        server.set_nodelay(nodelay);
                        server.set_idle_timeout(idle)?;
                        // Killed by a graceful stop: stop accepting, leave the handlers running.
                        let _close = graceful::CloseOnDrop(server.clone());
                        server.serve_forever()
                    }));
                }
                local
            }
            Distribution::Handoff => {
                let l = std::net::TcpListener::bind(addr)?;
                let local = l.local_addr()?;
                let handles: Vec<Handle> = (0..runtime.threads())
                    .map(|i| runtime.handle(i).clone())
                    .collect();
                loops.push(runtime.handle(0).spawn(move || {
                    handoff_accept_loop(TcpListener::from(l), handles, handler, (nodelay, idle))
                }));
                local
            }
        };
        Ok(MultiServer {
            addr: local,
            loops: Mutex::new(loops),
            runtime,
            drain,
        })
    }
}

/// The accept loop of [`Distribution::Handoff`]: accept on hub 0, hand the still untouched socket
/// (it registers with a hub only at its first blocking call) to the next hub.
fn handoff_accept_loop(
    listener: TcpListener,
    hubs: Vec<Handle>,
    handler: Arc<dyn Fn(TcpStream, SocketAddr) + Send + Sync>,
    (nodelay, idle_timeout): (bool, Option<Duration>),
) -> io::Result<()> {
    listener.set_nonblocking(false)?;
    let mut next = 0usize;
    let mut backoff = BACKOFF_MIN;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                configure(&stream, nodelay, idle_timeout);
                let handler = handler.clone();
                let run = move || run_handler(&*handler, stream, peer);
                let i = next;
                next = (next + 1) % hubs.len();
                if i == 0 {
                    // Hub 0 is this one: spawn directly, no cross-thread hop.
                    drop(hub::spawn(run));
                } else {
                    drop(hubs[i].spawn(run));
                }
            }
            Err(e) if is_exhaustion(&e) => {
                warn_at!(Warning::AcceptBackoff, warn, {}
                    "greenhub MultiServer: accept failed ({e}); backing off");
                hub::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs a connection handler, logging its panic (a kill keeps unwinding).
fn run_handler(
    handler: &(dyn Fn(TcpStream, SocketAddr) + Send + Sync),
    s: TcpStream,
    peer: SocketAddr,
) {
    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| handler(s, peer))) {
        multi_handler_panicked(peer, p);
    }
}

/// Out of line, as [`handler_panicked`]: the connection's frame stays small.
#[cold]
#[inline(never)]
fn multi_handler_panicked(peer: SocketAddr, p: Box<dyn std::any::Any + Send>) {
    if p.is::<KillSignal>() {
        panic::resume_unwind(p);
    }
    warn_at!(Warning::DetachedPanic, error, {}
        "greenhub MultiServer: the handler for {peer} panicked: {}",
        crate::rt::panic_message(&*p)
    );
}

/// A TCP server on several hubs (one OS thread each): gevent's `StreamServer` scaled over cores.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use greenhub::server::MultiServer;
///
/// let server = MultiServer::builder().threads(4).bind("127.0.0.1:7000", |mut s, _peer| {
///     let mut buf = vec![0u8; 4096];
///     while let Ok(n) = s.read(&mut buf) {
///         if n == 0 || s.write_all(&buf[..n]).is_err() {
///             break;
///         }
///     }
/// })?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The handler is `Fn + Send + Sync` (it runs on every hub); per-connection state lives in the
/// handler's greenlet as usual. Dropping the server (or [`stop`](MultiServer::stop)) stops every
/// hub: accept loops and handlers are killed and unwound.
pub struct MultiServer {
    addr: SocketAddr,
    loops: Mutex<Vec<RemoteGreenlet<io::Result<()>>>>,
    runtime: Runtime,
    /// Handlers running on any hub (for a graceful stop).
    drain: Arc<graceful::Drain>,
}

impl fmt::Debug for MultiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiServer")
            .field("addr", &self.addr)
            .field("threads", &self.runtime.threads())
            .finish()
    }
}

impl MultiServer {
    /// A builder: one hub per core, [`Distribution::Handoff`], `TCP_NODELAY` on.
    pub fn builder() -> MultiBuilder {
        MultiBuilder {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            distribution: Distribution::default(),
            nodelay: true,
            idle_timeout: None,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of hub threads.
    pub fn threads(&self) -> usize {
        self.runtime.threads()
    }

    /// Waits until an accept loop ends (only an accept error ends one) and returns its error;
    /// the server keeps running on the other hubs until dropped.
    ///
    /// # Errors
    /// The accept error that ended a loop.
    pub fn serve_forever(&self) -> io::Result<()> {
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|e| e.into_inner()));
        for g in loops {
            match g.join() {
                Ok(r) => r?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        Ok(())
    }

    /// Stops every hub: kills the accept loops and the handlers (their destructors run) and joins
    /// the threads.
    pub fn stop(self) {
        drop(self);
    }
}

/// Out of line and cold: its formatting would otherwise sit in every handler's frame, which is
/// part of every parked connection's stack slice.
#[cold]
#[inline(never)]
fn report_handler_panic(peer: SocketAddr, p: &(dyn std::any::Any + Send)) {
    warn_at!(Warning::DetachedPanic, error, {}
        "greenhub StreamServer: the handler for {peer} panicked: {}",
        crate::rt::panic_message(p)
    );
}
