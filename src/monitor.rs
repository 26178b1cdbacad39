//! The blocked-hub monitor (gevent's `max_blocking_time`) and [`run_info`].
//!
//! One greenlet runs per hub at a time and is never preempted (the runtime's GIL), so a greenlet
//! that computes for a long time without a blocking point stalls every other greenlet of its hub.
//! The monitor notices: when enabled for a hub ([`enable_monitor`], or
//! [`Config::monitor`](crate::hub::Config::monitor)), the hub publishes on every switch a counter
//! and the id (and, for named greenlets, a copy of the name) of the greenlet it resumes, into a
//! small shared beacon (`rt/beacon.rs`). One process-wide monitor thread samples every beacon; when a hub's
//! counter has not moved for longer than its limit while a greenlet (not the hub's own loop, which
//! may legitimately sleep in `epoll_wait`) holds it, the monitor reports through
//! `tracing::warn!` — once per stall — the greenlet's id and name and how long it has held the hub.
//!
//! Cost while enabled: three relaxed atomic stores per switch, plus a `try_lock` and a short copy
//! when the resumed greenlet has a name. No stack is captured and the hub is never interrupted:
//! the report says *who*, not *where*.
//!
//! ```
//! use std::time::Duration;
//! use greenhub::hub;
//!
//! hub::enable_monitor(Duration::from_millis(100));
//! hub::run(|| {
//!     let g = hub::Builder::new().name("cruncher").spawn(|| (0..1_000u64).sum::<u64>());
//!     for info in hub::run_info() {
//!         println!("{} {:?} {:?} {:?}", info.id, info.name, info.state, info.parked_on);
//!     }
//!     g.join().unwrap();
//! });
//! ```

#![deny(unsafe_code)]

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::rt::{current_hub, warn_at, Beacon, Kind, State, WaitOn, Warning};

/// gevent's default `max_blocking_time`.
pub const DEFAULT_MAX_BLOCKING_TIME: Duration = Duration::from_millis(100);

/// Every beacon the monitor thread samples.
fn registry() -> &'static Mutex<Vec<Weak<Beacon>>> {
    static REG: OnceLock<Mutex<Vec<Weak<Beacon>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(Vec::new()))
}

/// Starts monitoring this thread's hub (created on first use) with `limit`; calling it again
/// changes the limit.
///
/// # Panics
/// After this thread's hub was torn down, or if the monitor thread cannot be started.
#[track_caller]
pub fn enable_monitor(limit: Duration) {
    let hub = current_hub();
    let beacon = hub.beacon(|| {
        let b = Arc::new(Beacon::new());
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&b));
        b
    });
    let ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX).max(1);
    beacon.limit_ns.store(ns, Ordering::Relaxed);
    start_thread();
}

fn start_thread() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("greenhub-monitor".into())
            .spawn(monitor_loop)
            .expect("greenhub: cannot start the monitor thread");
    });
}

/// The monitor's view of one beacon.
struct Watch {
    beacon: Weak<Beacon>,
    switches: u64,
    since: Instant,
    reported: bool,
}

fn monitor_loop() {
    let mut watches: Vec<Watch> = Vec::new();
    loop {
        // Pick up new beacons; forget hubs that are gone.
        {
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            reg.retain(|w| w.strong_count() > 0);
            for w in reg.iter() {
                if !watches.iter().any(|x| x.beacon.ptr_eq(w)) {
                    watches.push(Watch {
                        beacon: w.clone(),
                        switches: u64::MAX,
                        since: Instant::now(),
                        reported: false,
                    });
                }
            }
        }
        watches.retain(|w| w.beacon.strong_count() > 0);
        let mut period = Duration::from_millis(50);
        let now = Instant::now();
        for w in &mut watches {
            let Some(b) = w.beacon.upgrade() else {
                continue;
            };
            let limit = Duration::from_nanos(b.limit_ns.load(Ordering::Relaxed));
            period = period.min(limit / 4).max(Duration::from_millis(1));
            let s = b.switches.load(Ordering::Relaxed);
            if s != w.switches {
                w.switches = s;
                w.since = now;
                w.reported = false;
                continue;
            }
            let id = b.running.load(Ordering::Relaxed);
            let held = now.duration_since(w.since);
            if id != 0 && !w.reported && held >= limit {
                w.reported = true;
                let name = {
                    let n = b.name.lock().unwrap_or_else(|e| e.into_inner());
                    (n.0 == id).then(|| n.1.clone())
                };
                warn_at!(Warning::Blocked, warn,
                    {
                        greenlet.id = id,
                        greenlet.name = name.as_deref().unwrap_or(""),
                        hub.thread = %b.thread,
                    }
                    "greenhub monitor: greenlet {id}{} has held its hub (thread {}) for {held:?} \
                     without blocking (limit {limit:?}); every other greenlet of that hub is \
                     stalled",
                    name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                    b.thread,
                );
            }
        }
        std::thread::sleep(period);
    }
}

/// A greenlet's state, as [`run_info`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GreenletState {
    /// Spawned, not started yet (waiting for its first turn or its start time).
    NotStarted,
    /// In the ready queue.
    Ready,
    /// Running now (the caller of `run_info`).
    Running,
    /// Parked (see [`GreenletInfo::parked_on`]).
    Parked,
    /// Finished (not normally listed).
    Finished,
}

/// One greenlet of this hub, as [`run_info`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreenletInfo {
    /// The greenlet's id.
    pub id: u64,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Whether it is the thread's main greenlet.
    pub is_main: bool,
    /// Where it is in its life.
    pub state: GreenletState,
    /// What it is parked on ("a sleep", "greenlet 7 to finish", "I/O readiness on
    /// registration 3", ...), if parked.
    pub parked_on: Option<String>,
}

impl fmt::Display for GreenletInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "greenlet {}", self.id)?;
        if let Some(n) = &self.name {
            write!(f, " ({n})")?;
        }
        if self.is_main {
            f.write_str(" [main]")?;
        }
        write!(f, ": {:?}", self.state)?;
        if let Some(p) = &self.parked_on {
            write!(f, " on {p}")?;
        }
        Ok(())
    }
}

/// Every greenlet of this thread's hub — the main greenlet first, then every spawned, unfinished
/// one — with its id, name, state and what it is parked on.
///
/// # Panics
/// After this thread's hub was torn down.
#[track_caller]
pub fn run_info() -> Vec<GreenletInfo> {
    current_hub()
        .all_tasks()
        .iter()
        .map(|t| {
            let c = t.core();
            let state = match c.state() {
                State::Finished => GreenletState::Finished,
                State::Running => GreenletState::Running,
                _ if !c.started.get() => GreenletState::NotStarted,
                State::Ready | State::New => GreenletState::Ready,
                State::Parked => GreenletState::Parked,
            };
            let on = c.waiting_on.get();
            GreenletInfo {
                id: c.id,
                name: c.name().map(str::to_owned),
                is_main: c.kind == Kind::Main,
                state,
                parked_on: (c.state() == State::Parked && on != WaitOn::Nothing)
                    .then(|| on.to_string()),
            }
        })
        .collect()
}
