//! Graceful stop on a signal: stop accepting, let the handlers finish within a grace period, kill
//! the rest.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{MultiServer, StreamServer};
use crate::greenlet::Builder;
use crate::hub;
use crate::signal::{Signal, SignalKind};

/// What a stop did to the connections that were being handled when it began.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, server::{StopReport, StreamServer}};
///
/// hub::run(|| {
///     let server = StreamServer::bind("127.0.0.1:0", |_s, _peer| {}).unwrap();
///     server.start().unwrap();
///     let report = server.stop(Duration::from_secs(1));
///     assert_eq!(report, StopReport { drained: 0, killed: 0 });
/// });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Handlers that finished on their own within the grace period.
    pub drained: usize,
    /// Handlers still running when the grace period ended, killed (their destructors ran).
    pub killed: usize,
}

/// Counts the handlers of a `MultiServer` running on any hub.
#[derive(Debug, Default)]
pub(super) struct Drain {
    live: AtomicUsize,
}

impl Drain {
    /// Runs a handler, counted as live until it returns, panics or is killed.
    pub(super) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        let _done = Done(&self.live);
        f()
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

/// Stops a hub's `StreamServer` from accepting when its `serve_forever` greenlet is killed (a
/// `MultiServer` graceful stop), leaving its handlers running.
pub(super) struct CloseOnDrop(pub(super) StreamServer);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(false);
    }
}

impl StreamServer {
    /// Serves (like [`serve_forever`](Self::serve_forever)) until one of `signals` arrives, then
    /// stops gracefully: stops accepting and closes the listener, lets the running handlers
    /// finish within `grace`, kills the rest ([`stop`](Self::stop)), and returns what happened to
    /// them. The signals are listened to from this call on (their default action — terminating
    /// the process — does not happen meanwhile) and get their previous disposition back when it
    /// returns.
    ///
    /// If the server stops otherwise first (a [`stop`](Self::stop) from another greenlet), this
    /// returns that outcome with an empty report.
    ///
    /// # Errors
    /// As [`signal`](crate::signal::signal) and [`serve_forever`](Self::serve_forever).
    ///
    /// # Panics
    /// Inside the hub (it blocks).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use greenhub::{hub, server::StreamServer, signal::SignalKind};
    ///
    /// hub::run(|| {
    ///     let server = StreamServer::bind("127.0.0.1:0", |_s, _peer| {}).unwrap();
    ///     hub::spawn(|| {
    ///         hub::sleep(Duration::from_millis(10));
    ///         // SAFETY: raise sends a signal the server now handles to this thread.
    ///         unsafe { libc::raise(libc::SIGUSR2) };
    ///     });
    ///     let report = server
    ///         .serve_until_signal(&[SignalKind::user_defined2()], Duration::from_secs(5))
    ///         .unwrap();
    ///     assert_eq!(report.killed, 0);
    /// });
    /// ```
    pub fn serve_until_signal(
        &self,
        signals: &[SignalKind],
        grace: Duration,
    ) -> io::Result<StopReport> {
        let mut sig = Signal::new(signals)?;
        self.start()?;
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        let me = self.clone();
        let watcher = Builder::new()
            .name(format!("StreamServer {} signal watcher", self.inner.addr))
            .spawn(move || {
                let kind = sig.recv().ok()?;
                f.set(true);
                tracing::info!(
                    "greenhub StreamServer {}: {kind:?} received; stopping (grace {grace:?})",
                    me.inner.addr
                );
                Some(me.stop(grace))
            });
        /// Kills the watcher (dropping the listener) however this call ends.
        struct Watcher(Option<crate::Greenlet<Option<StopReport>>>);
        impl Drop for Watcher {
            fn drop(&mut self) {
                if let Some(g) = self.0.take() {
                    g.kill_nowait();
                }
            }
        }
        let mut watcher = Watcher(Some(watcher));
        let served = self.serve_forever();
        if fired.get() {
            // serve_forever returned because the watcher is stopping us: wait for the drain.
            let g = watcher.0.take().expect("the watcher is joined once");
            return match g.join() {
                Ok(r) => Ok(r.unwrap_or_default()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
        }
        served.map(|()| StopReport::default())
    }
}

impl MultiServer {
    /// Serves until one of `signals` arrives, then stops gracefully: stops accepting on every hub,
    /// lets the running handlers finish within `grace`, then stops every hub (killing what still
    /// runs) and joins their threads. The calling thread waits (parks, if it is a greenlet).
    /// The signals are listened to from this call on.
    ///
    /// An accept loop that fails before the signal is logged and the other hubs serve on.
    ///
    /// # Errors
    /// As [`signal`](crate::signal::signal); `TimedOut` if an enclosing timeout scope expires
    /// while waiting for the signal (the server is stopped then too).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use greenhub::{server::MultiServer, signal::SignalKind};
    ///
    /// let server = MultiServer::builder().threads(2).bind("127.0.0.1:0", |_s, _peer| {}).unwrap();
    /// std::thread::spawn(|| {
    ///     std::thread::sleep(Duration::from_millis(50));
    ///     // SAFETY: kill takes no pointers; the server handles this signal now.
    ///     unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
    /// });
    /// let report = server
    ///     .serve_until_signal(&[SignalKind::user_defined1()], Duration::from_secs(5))
    ///     .unwrap();
    /// assert_eq!(report.killed, 0);
    /// ```
    pub fn serve_until_signal(
        self,
        signals: &[SignalKind],
        grace: Duration,
    ) -> io::Result<StopReport> {
        let mut sig = Signal::new(signals)?;
        let received = sig.recv();
        if let Ok(kind) = &received {
            tracing::info!(
                "greenhub MultiServer {}: {kind:?} received; stopping (grace {grace:?})",
                self.addr
            );
        }
        // Stop accepting everywhere: killing an accept loop closes its listener.
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|e| e.into_inner()));
        for g in &loops {
            g.kill();
        }
        for g in loops {
            if let Ok(Err(e)) = g.join() {
                tracing::error!(
                    "greenhub MultiServer {}: an accept loop had failed: {e}",
                    self.addr
                );
            }
        }
        let open = self.drain.live();
        let deadline = Instant::now().checked_add(grace);
        while self.drain.live() > 0 {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            let nap = deadline.map_or(Duration::from_millis(5), |d| {
                (d - now).min(Duration::from_millis(5))
            });
            hub::sleep(nap);
        }
        let killed = self.drain.live().min(open);
        drop(self); // stops every hub: the remaining handlers are killed and unwound
        received?;
        Ok(StopReport {
            drained: open - killed,
            killed,
        })
    }
}
