//! A multi-hub runtime: N OS threads, one hub each, fed through [`Handle`]s.
//!
//! ```
//! use greenhub::runtime::Runtime;
//!
//! let rt = Runtime::builder().threads(2).build()?;
//! let gs: Vec<_> = (0..10u64).map(|i| rt.spawn(move || i * i)).collect(); // round-robin
//! let sum: u64 = gs.into_iter().map(|g| g.join().unwrap()).sum();
//! assert_eq!(sum, 285);
//! assert_eq!(rt.block_on(|| "on hub 0"), "on hub 0");
//! drop(rt); // stops every hub: kills what still runs (destructors run) and joins the threads
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A started greenlet never changes thread (invariant 2): work is placed on a hub when it is
//! spawned and stays there. Each hub thread runs `hub::run` around a greenlet that waits for the
//! stop signal (a [`crate::sync::mpmc`] channel), so the hub lives, idle in `epoll_wait`,
//! until the `Runtime` is dropped.
//!
//! # Shutdown
//!
//! Dropping the `Runtime` disconnects the stop channel of every hub. Each hub then ends its `run`:
//! every greenlet still alive is killed and unwound (destructors run, on its own hub thread), jobs
//! sent but not started are dropped (their join handles report `Killed`), and the thread exits;
//! `drop` joins every thread. A greenlet that blocks its OS thread without ever returning to the
//! hub (an endless loop, a blocking syscall) keeps `drop` waiting.

#![deny(unsafe_code)]

use std::fmt;
use std::io;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::greenlet::GreenletError;
use crate::hub::{self, Config, Handle, RemoteGreenlet};
use crate::sync::mpmc;

/// Configures a [`Runtime`].
#[derive(Clone, Debug)]
pub struct Builder {
    threads: usize,
    name: String,
    config: Config,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            name: "greenhub-hub".into(),
            config: Config::default(),
        }
    }
}

impl Builder {
    /// Hub threads to run (default: one per core; at least 1).
    pub fn threads(mut self, n: usize) -> Builder {
        self.threads = n.max(1);
        self
    }

    /// Name prefix of the hub threads (`"{name}-{i}"`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        self.name = name.into();
        self
    }

    /// Hub settings (stack sizes, monitor) for every hub thread.
    pub fn hub_config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// Starts the hub threads.
    ///
    /// # Errors
    /// If a thread cannot be started or its hub cannot be created (the threads already started
    /// are stopped again).
    pub fn build(self) -> io::Result<Runtime> {
        let mut rt = Runtime {
            hubs: Vec::with_capacity(self.threads),
            next: AtomicUsize::new(0),
        };
        for i in 0..self.threads {
            let (ready_tx, ready_rx) = mpsc::channel::<io::Result<Handle>>();
            let (stop_tx, stop_rx) = mpmc::bounded::<()>(1);
            let config = self.config.clone();
            let thread = thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || {
                    if let Err(e) = config.install() {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    hub::run(move || {
                        let _ = ready_tx.send(Ok(hub::handle()));
                        // Err(RecvError) once the Runtime drops the sender: time to stop.
                        let _ = stop_rx.recv();
                    });
                })?;
            let handle = match ready_rx.recv() {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                Err(_) => {
                    let _ = thread.join();
                    return Err(io::Error::other(
                        "greenhub: a hub thread died while starting",
                    ));
                }
            };
            rt.hubs.push(HubThread {
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            });
        }
        Ok(rt)
    }
}

struct HubThread {
    handle: Handle,
    /// Dropped to stop the hub.
    stop: Option<mpmc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// N hub threads. See the module docs. `Send + Sync`: share it by reference or `Arc`.
pub struct Runtime {
    hubs: Vec<HubThread>,
    next: AtomicUsize,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("threads", &self.hubs.len())
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults (one hub per core).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with one hub per core.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub fn new() -> io::Result<Runtime> {
        Builder::default().build()
    }

    /// Number of hub threads.
    pub fn threads(&self) -> usize {
        self.hubs.len()
    }

    /// The handle of hub `i`.
    ///
    /// # Panics
    /// If `i >= self.threads()`.
    #[track_caller]
    pub fn handle(&self, i: usize) -> &Handle {
        &self.hubs[i].handle
    }

    /// Spawns `f` on the next hub, round-robin.
    pub fn spawn<F, T>(&self, f: F) -> RemoteGreenlet<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.hubs.len();
        self.hubs[i].handle.spawn(f)
    }

    /// Runs `f` as a greenlet on hub 0 and waits for its value (blocking the calling thread, or
    /// parking the calling greenlet if called from one).
    ///
    /// # Panics
    /// Resumes `f`'s panic; panics if `f` was killed (the runtime is shutting down).
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.hubs[0].handle.spawn(f).join() {
            Ok(v) => v,
            Err(GreenletError::Panicked(p)) => panic::resume_unwind(p),
            Err(e) => panic!("greenhub: Runtime::block_on: {e}"),
        }
    }

    /// Stops every hub and joins the threads (what `drop` does).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Signal every hub first, so they wind down in parallel, then join them.
        for h in &mut self.hubs {
            drop(h.stop.take());
        }
        for h in &mut self.hubs {
            if let Some(t) = h.thread.take() {
                if t.thread().id() == thread::current().id() {
                    // Dropped from a greenlet of this very hub: it stops once that greenlet
                    // returns; joining here would wait for ourselves.
                    continue;
                }
                if t.join().is_err() {
                    tracing::error!("greenhub: a Runtime hub thread panicked");
                }
            }
        }
    }
}
