//! Thread pool offload — the runtime's "release the GIL" (gevent's `threadpool`).
//!
//! [`unblock`] runs blocking or CPU-heavy work on a bounded pool of OS threads while only the
//! calling greenlet parks; the hub runs every other greenlet meanwhile. The pool is process-wide
//! and lazy: threads are started when jobs arrive and no thread is idle, up to
//! [`max_threads`](Config::max_threads) (default: twice the number of cores); a thread that stays
//! idle for [`idle_timeout`](Config::idle_timeout) (default 10 s) exits. Jobs beyond the limit
//! wait in a FIFO queue.
//!
//! ```
//! use greenhub::{hub, threadpool};
//!
//! let n = hub::run(|| {
//!     // A blocking call: only this greenlet waits for it.
//!     threadpool::unblock(|| { std::thread::sleep(std::time::Duration::from_millis(5)); 7 })
//! });
//! assert_eq!(n, 7);
//! ```
//!
//! The job's completion wakes the parked greenlet through its hub's cross-thread queue (see
//! `rt/mailbox.rs`): one message per job, coalesced into one wake-up per burst.
//!
//! # Caveats
//! - A job cannot be cancelled: if the waiting greenlet is killed or its timeout scope expires, the
//!   job still runs to the end on its pool thread and its result is dropped there.
//! - Timeout scopes ([`crate::timeout()`]) bound the wait of `unblock` as of every blocking call;
//!   having no error to return, it unwinds to the enclosing `timeout()`, which returns
//!   `Err(Elapsed)` (see [`unblock`]).
//! - A job that blocks forever holds one pool thread forever.

#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::blocker::{Blocker, Notifier};
use crate::rt::{existing_hub, ScopeSignal, Wake};

type Job = Box<dyn FnOnce() + Send>;

/// Pool settings, applied with [`configure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    max_threads: usize,
    idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            max_threads: (2 * cores).max(2),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The defaults: twice the number of cores, 10 s idle timeout.
    pub fn new() -> Config {
        Config::default()
    }

    /// The most threads the pool runs at once (at least 1).
    pub fn max_threads(mut self, n: usize) -> Config {
        self.max_threads = n.max(1);
        self
    }

    /// How long a thread waits for a job before it exits.
    pub fn idle_timeout(mut self, d: Duration) -> Config {
        self.idle_timeout = d;
        self
    }
}

struct Pool {
    state: Mutex<State>,
    /// Signalled when a job is queued (and on reconfiguration).
    work: Condvar,
}

struct State {
    config: Config,
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State {
            config: Config::default(),
            jobs: VecDeque::new(),
            threads: 0,
            idle: 0,
        }),
        work: Condvar::new(),
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and catch their panics: the state is never left half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&'static self, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.idle > 0 {
            self.work.notify_one();
            return;
        }
        if st.threads < st.config.max_threads {
            st.threads += 1;
            let spawned = thread::Builder::new()
                .name("greenhub-pool".into())
                .spawn(move || self.worker());
            if let Err(e) = spawned {
                st.threads -= 1;
                tracing::error!("greenhub: cannot start a thread pool thread: {e}");
                if st.threads == 0 {
                    // Nobody would ever run the job: run it here rather than hang its waiter.
                    let job = st.jobs.pop_back().expect("just pushed");
                    drop(st);
                    job();
                }
            }
        }
    }

    fn worker(&'static self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job(); // catches its own panics
                st = self.lock();
                continue;
            }
            if st.threads > st.config.max_threads {
                break; // the pool was shrunk
            }
            st.idle += 1;
            let timeout = st.config.idle_timeout;
            let (guard, res) = self
                .work
                .wait_timeout(st, timeout)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if res.timed_out() && st.jobs.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }
}

/// Replaces the pool's settings. Running threads above a lowered limit exit when they next go idle;
/// a changed idle timeout applies from each thread's next wait.
pub fn configure(config: Config) {
    let p = pool();
    p.lock().config = config;
    p.work.notify_all();
}

/// The pool's current settings.
pub fn config() -> Config {
    pool().lock().config
}

/// Threads currently in the pool (running a job or idle).
pub fn threads() -> usize {
    pool().lock().threads
}

/// The outcome of a job, with the waiter to notify; shared by the job and the waiting caller.
struct Slot<T> {
    state: Mutex<(Option<thread::Result<T>>, Option<Notifier>)>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, (Option<thread::Result<T>>, Option<Notifier>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`run_parked`] ended without the job's result.
pub(crate) enum Interrupted {
    /// The caller's own deadline passed.
    TimedOut,
    /// An enclosing timeout scope expired.
    ScopeExpired,
}

/// Runs `f` on the pool and parks the caller until it finishes; the panic of `f`, if any, comes
/// back as `Ok(Err(payload))`. The wait ends early at `deadline` (`Err(TimedOut)`) and, with
/// `honour_scopes`, when an enclosing timeout scope expires (`Err(ScopeExpired)`); the job then
/// finishes unobserved.
pub(crate) fn run_parked<F, T>(
    f: F,
    deadline: Option<Instant>,
    honour_scopes: bool,
) -> Result<thread::Result<T>, Interrupted>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let blocker = Blocker::new();
    let slot = Arc::new(Slot {
        state: Mutex::new((None, Some(blocker.notifier()))),
    });
    let job_slot = slot.clone();
    pool().submit(Box::new(move || {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        let n = {
            let mut st = job_slot.lock();
            st.0 = Some(r);
            st.1.take()
        };
        if let Some(n) = n {
            n.notify();
        }
    }));
    loop {
        if let Some(r) = slot.lock().0.take() {
            return Ok(r);
        }
        let wake = if honour_scopes {
            blocker.park(&"a thread pool job", deadline)
        } else {
            blocker.park_unscoped(&"a thread pool job", deadline)
        };
        match wake {
            Wake::Woken => {}
            Wake::TimedOut => {
                if let Some(r) = slot.lock().0.take() {
                    return Ok(r);
                }
                return Err(Interrupted::TimedOut);
            }
            Wake::ScopeExpired => return Err(Interrupted::ScopeExpired),
            Wake::Killed | Wake::Deadlock => {
                // A destructor of a greenlet whose kill is unwinding called us: it cannot park any
                // more, and a second panic would abort. The job is on another thread and will
                // finish: wait for it by blocking this thread (rare; the hub stalls meanwhile).
                loop {
                    if let Some(r) = slot.lock().0.take() {
                        return Ok(r);
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Interrupted::TimedOut);
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Runs `f` on a pool thread; only the calling greenlet waits (every other greenlet of its hub
/// runs meanwhile). Returns `f`'s value. Outside any hub (a thread that never used greenhub)
/// `f` simply runs on the calling thread.
///
/// # Panics
/// Resumes `f`'s panic in the caller. Panics inside a hub callback (it would block the hub).
///
/// # Kills and timeout scopes
/// A kill of the waiting greenlet unwinds from here as from any blocking call. An enclosing timeout
/// scope ([`crate::timeout()`]) bounds the wait too: `unblock` has no error to return, so when the
/// scope expires it unwinds with a private payload that the enclosing
/// [`timeout`](crate::timeout())/[`timeout_at`](crate::timeout::timeout_at) turns into
/// `Err(Elapsed)` (under a bare [`Timeout`](crate::timeout::Timeout) guard nothing catches it and
/// the greenlet ends as panicked, saying so).
///
/// **Either way the job keeps running**: a pool thread cannot be interrupted, so a greenlet killed
/// (or timed out) while waiting leaves `f` running to completion on its pool thread, and its result
/// (or panic) is dropped there. Make `f` bounded, or give it its own way to stop (a flag, a
/// channel), if it must not outlive the caller.
///
/// # Examples
/// ```
/// use greenhub::{hub, threadpool};
///
/// hub::run(|| {
///     // CPU work on a pool thread; the hub's other greenlets keep running meanwhile.
///     let ticker = hub::spawn(|| hub::yield_now());
///     let n = threadpool::unblock(|| (1..=1_000u64).sum::<u64>());
///     assert_eq!(n, 500_500);
///     ticker.join().unwrap();
/// });
/// ```
#[track_caller]
pub fn unblock<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if existing_hub().is_none() {
        return f();
    }
    match run_parked(f, None, true) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => panic::resume_unwind(p),
        // The scope expired (there is no deadline of our own): see "Kills and timeout scopes".
        Err(_) => panic::resume_unwind(Box::new(ScopeSignal)),
    }
}

/// Like [`unblock`], but gives up waiting after `timeout`, or when an enclosing timeout scope
/// expires, and returns `None`; the job keeps running and its result is dropped. Outside any hub
/// `f` runs inline and is never timed out.
///
/// # Panics
/// As [`unblock`].
#[track_caller]
pub fn unblock_timeout<F, T>(timeout: Duration, f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if existing_hub().is_none() {
        return Some(f());
    }
    match run_parked(f, Instant::now().checked_add(timeout), true) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(p)) => panic::resume_unwind(p),
        Err(_) => None,
    }
}
