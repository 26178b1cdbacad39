//! The hub: one per OS thread, a greenlet with its own stack that runs the event loop and decides
//! which greenlet runs next. This module is its public face: spawning, sleeping, yielding,
//! running a program to completion, settings and counters, and (re-exported here, where a gevent
//! user looks for them) handles for other threads and the blocked-hub monitor.
//!
//! The machinery is in `src/rt/` (the loop in `rt/sched.rs`, the slicing in `rt/slicing.rs`);
//! ARCHITECTURE.md has the map.
//!
//! # Misuse
//!
//! Every blocking call here and in the rest of the crate (sleeping, joining, socket I/O, waiting
//! on a primitive) panics, naming the caller's line, when made
//! - **inside the hub** — a hub callback ([`run_callback`]) or a destructor the hub runs — where
//!   blocking would stop the loop that wakes everyone;
//! - **after this thread's hub was torn down**, in a thread-local destructor at thread exit.
//!
//! # Errors from the OS
//!
//! Where a function of this crate returns `io::Result`, an `Err` not described in its own
//! `# Errors` section is the operating system's error for the syscall it makes, unchanged (as
//! std's are).

use std::io;
use std::panic;
use std::time::{Duration, Instant};

use crate::rt::{self, current_hub, Hub, Kind, Settings, WaitOn, Wake};

pub use crate::block_on::block_on;
pub use crate::greenlet::{Builder, Greenlet, GreenletError};
pub use crate::monitor::{
    enable_monitor, run_info, GreenletInfo, GreenletState, DEFAULT_MAX_BLOCKING_TIME,
};
pub use crate::remote::handle::{handle, Handle, RemoteGreenlet};

/// Default most stack regions per hub for greenlets that may share them ([`Config::max_stacks`]).
pub const DEFAULT_MAX_STACKS: usize = rt::DEFAULT_MAX_STACKS;
/// Default usable bytes of every stack region (only touched pages cost memory).
pub const DEFAULT_STACK_SIZE: usize = rt::config::DEFAULT_STACK_SIZE;
/// Default usable bytes of the hub's own stack.
pub const DEFAULT_HUB_STACK_SIZE: usize = rt::config::DEFAULT_HUB_STACK_SIZE;

/// Counters kept by the hub, read with [`stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Context switches (either direction, hub included).
    pub switches: u64,
    /// Slices copied from the shared stack to the heap (evictions).
    pub slice_saves: u64,
    /// Slices copied from the heap back to the shared stack.
    pub slice_restores: u64,
    /// Bytes copied by saves and restores together.
    pub bytes_copied: u64,
    /// Greenlets spawned on this hub.
    pub spawned: u64,
    /// Greenlets that finished (returned, panicked or were killed).
    pub finished: u64,
    /// Greenlets spawned and not finished.
    pub live: u64,
    /// Heap bytes reserved by the slice buffers of live greenlets.
    pub slice_bytes_reserved: u64,
    /// Iterations of the hub loop.
    pub ticks: u64,
    /// Calls to `epoll_wait` (or its equivalent).
    pub polls: u64,
    /// Sockets registered with this hub's poller now (one per socket that has waited here and
    /// not been dropped or converted back to std since).
    pub io_registrations: u64,
    /// Slice saves by size: entry `k` counts saves of `2^k ..= 2^(k+1) - 1` bytes (entry 0 also
    /// counts empty ones, the last everything from 32 KiB up).
    pub slice_size_histogram: [u64; 16],
    /// Stack regions the hub has mapped (see [`Config::max_stacks`]).
    pub stacks: u64,
    /// Times the pages of a free stack region were given back to the kernel.
    pub stack_releases: u64,
}
/// Hub settings: stack sizes, and whether the blocked-hub monitor watches it. The hub is created
/// on first use with the defaults (or the `GREENHUB_STACK_SIZE` / `GREENHUB_HUB_STACK_SIZE`
/// environment variables, in bytes with an optional `k` or `m` suffix); build one explicitly to
/// choose.
///
/// ```
/// std::thread::spawn(|| {
///     greenhub::hub::Config::new().stack_size(256 << 10).install().unwrap();
///     greenhub::hub::run(|| 1 + 1)
/// })
/// .join()
/// .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    stack_size: Option<usize>,
    hub_stack_size: Option<usize>,
    max_stacks: usize,
    exclusive_stacks: bool,
    monitor: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The defaults (see the type's docs).
    pub fn new() -> Config {
        Config {
            stack_size: None,
            hub_stack_size: None,
            max_stacks: DEFAULT_MAX_STACKS,
            exclusive_stacks: false,
            monitor: None,
        }
    }

    /// Usable bytes of every stack region workers run on: the deepest a greenlet may go.
    pub fn stack_size(mut self, bytes: usize) -> Config {
        self.stack_size = Some(bytes);
        self
    }

    /// Usable bytes of the hub's own stack.
    pub fn hub_stack_size(mut self, bytes: usize) -> Config {
        self.hub_stack_size = Some(bytes);
        self
    }

    /// Most stack regions the hub maps for greenlets that may share them (default
    /// [`DEFAULT_MAX_STACKS`]; at least 1). Greenlets that run get a region of their own while
    /// there are at most this many of them; beyond it, new greenlets share regions with parked
    /// ones, whose stack slices are then copied to the heap (see "Stacks" in the crate docs).
    /// Exclusive greenlets come on top.
    pub fn max_stacks(mut self, n: usize) -> Config {
        self.max_stacks = n.max(1);
        self
    }

    /// Gives every greenlet of this hub an exclusive stack region, as
    /// [`Builder::exclusive_stack`] does for one: no greenlet's addresses are ever shared, so no
    /// stack is ever copied (the fully sound mode; see "Stacks" in the crate docs). Costs a
    /// region — the pages the greenlet touched plus a page-table page, a few KiB at least — per
    /// live greenlet, and at most about `vm.max_map_count / 4` greenlets can be alive in the
    /// process; a spawn beyond that panics when the greenlet first runs.
    pub fn exclusive_stacks(mut self) -> Config {
        self.exclusive_stacks = true;
        self
    }

    /// Has the blocked-hub monitor watch this hub: a greenlet that holds the hub longer than
    /// `limit` without blocking is reported (see [`enable_monitor`]; gevent's
    /// `max_blocking_time`, default [`DEFAULT_MAX_BLOCKING_TIME`]).
    pub fn monitor(mut self, limit: Duration) -> Config {
        self.monitor = Some(limit);
        self
    }

    /// Creates this thread's hub with these settings.
    ///
    /// # Errors
    /// `AlreadyExists` if the thread already has a hub (or had one that was torn down);
    /// `InvalidInput` if a size comes from a malformed environment variable (the message names
    /// it); the OS error if the stacks cannot be mapped or the poller created.
    pub fn install(self) -> io::Result<()> {
        if rt::has_hub() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this thread already has a greenhub hub",
            ));
        }
        let env = match (self.stack_size, self.hub_stack_size) {
            (Some(s), Some(h)) => (s, h),
            _ => {
                let env = Settings::from_env()?;
                (env.stack_size, env.hub_stack_size)
            }
        };
        let settings = Settings {
            stack_size: self.stack_size.unwrap_or(env.0),
            hub_stack_size: self.hub_stack_size.unwrap_or(env.1),
            max_stacks: self.max_stacks,
            exclusive_stacks: self.exclusive_stacks,
        };
        Hub::install(&settings)?;
        if let Some(limit) = self.monitor {
            enable_monitor(limit);
        }
        Ok(())
    }
}

/// Spawns a greenlet running `f` on this thread's hub. It starts when the caller next blocks or
/// yields; the returned handle joins or kills it (dropping it detaches the greenlet).
///
/// # Panics
/// After this thread's hub was torn down (in a thread-local destructor at thread exit).
///
/// # Examples
/// ```
/// use greenhub::hub;
///
/// hub::run(|| {
///     let g = hub::spawn(|| 6 * 7);
///     assert_eq!(g.join().unwrap(), 42);
/// });
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn(f)
}

/// Spawns a greenlet that runs inside `span` (`Builder::new().span(span).spawn(f)`): the span is
/// entered each time the greenlet runs and exited each time it switches away, like a future
/// wrapped in tracing's `Instrument::instrument`.
///
/// # Panics
/// After this thread's hub was torn down.
///
/// # Examples
/// ```
/// use greenhub::hub;
///
/// let g = hub::spawn_instrumented(tracing::info_span!("job", n = 1), || {
///     hub::yield_now();
///     tracing::info!("logged inside job{{n=1}}");
///     42
/// });
/// assert_eq!(g.join().unwrap(), 42);
/// ```
#[track_caller]
pub fn spawn_instrumented<F, T>(span: tracing::Span, f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().span(span).spawn(f)
}

/// Spawns a greenlet that starts after `delay` (gevent's `spawn_later`).
///
/// # Panics
/// As [`spawn`].
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn_later(delay, f)
}

/// Parks the calling greenlet for `dur` (other greenlets run meanwhile). A zero duration yields,
/// like gevent's `sleep(0)`. It returns early when an enclosing timeout scope
/// ([`crate::timeout()`]) expires, and in a greenlet whose kill is unwinding.
///
/// # Panics
/// Inside the hub (a hub callback or a destructor the hub runs), after this thread's hub was torn
/// down, or in the main greenlet when `dur` is endless and nothing else can ever run (a
/// deadlock).
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use greenhub::hub;
///
/// hub::run(|| {
///     let t = Instant::now();
///     let a = hub::spawn(|| hub::sleep(Duration::from_millis(20)));
///     let b = hub::spawn(|| hub::sleep(Duration::from_millis(20)));
///     a.join().unwrap();
///     b.join().unwrap();
///     assert!(t.elapsed() < Duration::from_millis(200)); // they slept side by side
/// });
/// ```
#[track_caller]
pub fn sleep(dur: Duration) {
    if dur.is_zero() {
        return yield_now();
    }
    match Instant::now().checked_add(dur) {
        Some(at) => sleep_until(at),
        None => {
            // "Forever": park with no deadline; only a kill (or a deadlock report) ends it.
            current_hub().park(WaitOn::Sleep, None);
        }
    }
}

/// Parks the calling greenlet until `deadline`.
///
/// # Panics
/// As [`sleep`].
#[track_caller]
pub fn sleep_until(deadline: Instant) {
    let hub = current_hub();
    loop {
        if Instant::now() >= deadline {
            return hub.yield_now();
        }
        match hub.park(WaitOn::Sleep, Some(deadline)) {
            Wake::TimedOut | Wake::Killed | Wake::Deadlock | Wake::ScopeExpired => return,
            Wake::Woken => {}
        }
    }
}

/// Lets every other ready greenlet run, then resumes the caller (gevent's `sleep(0)`).
///
/// With nobody else ready and no hub callback queued, it returns at once without switching: the
/// hub would have resumed the caller next anyway. Such yields still count against the hub's
/// per-iteration budget, so a greenlet spinning on `yield_now` lets I/O and timers run every 61
/// yields, as it would through the hub.
///
/// # Panics
/// Inside the hub.
#[track_caller]
pub fn yield_now() {
    current_hub().yield_now();
}

/// Runs `f` as a greenlet until it returns, then kills every greenlet still alive on this hub and
/// waits for them to unwind; returns `f`'s value. A panic in `f` is resumed in the caller.
///
/// # Panics
/// If called from a worker greenlet (only the thread's main greenlet may tear the hub's greenlets
/// down), if `f` panics or is killed, or if `f` waits for something that can never happen.
///
/// # Examples
/// ```
/// use greenhub::hub;
///
/// let sum = hub::run(|| {
///     let gs: Vec<_> = (1..=3u32).map(|i| hub::spawn(move || i * 10)).collect();
///     gs.into_iter().map(|g| g.join().unwrap()).sum::<u32>()
/// });
/// assert_eq!(sum, 60);
/// ```
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let hub = current_hub();
    let me = hub.current_core("run a greenlet to completion");
    assert!(
        me.kind == Kind::Main,
        "greenhub: hub::run must be called from the thread's main greenlet, not {}",
        me.describe()
    );
    // The join's own panic (a deadlock report) is caught first and re-raised after the teardown:
    // killing the rest while this thread is panicking could not run them (nothing switches away
    // while the thread's panic count is raised; rt/sched.rs `park`).
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| spawn(f).join()));
    hub.kill_all();
    match result {
        Ok(Ok(v)) => v,
        Ok(Err(GreenletError::Panicked(p))) | Err(p) => panic::resume_unwind(p),
        Ok(Err(e)) => panic!("greenhub: hub::run: {e}"),
    }
}

/// Schedules `f` to run on the hub's own stack at the next loop iteration (gevent's
/// `loop.run_callback`). `f` must not block: blocking there panics (and the panic is reported
/// through `tracing`, not propagated).
pub fn run_callback(f: impl FnOnce() + 'static) {
    current_hub().run_callback(Box::new(f));
}

/// This thread's hub counters.
pub fn stats() -> Stats {
    let hub = current_hub();
    let c = hub.counters();
    Stats {
        switches: c.switches.get(),
        slice_saves: c.slice_saves.get(),
        slice_restores: c.slice_restores.get(),
        bytes_copied: c.bytes_copied.get(),
        spawned: c.spawned.get(),
        finished: c.finished.get(),
        live: c.spawned.get() - c.finished.get(),
        slice_bytes_reserved: hub.slice_bytes_reserved(),
        ticks: c.ticks.get(),
        polls: c.polls.get(),
        io_registrations: hub.io_registrations() as u64,
        slice_size_histogram: std::array::from_fn(|k| c.slice_sizes[k].get()),
        stacks: hub.stack_regions() as u64,
        stack_releases: hub.stack_releases(),
    }
}
