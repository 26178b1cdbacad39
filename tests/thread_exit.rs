//! A thread that exits without `hub::run` never resumes a greenlet (issue 11, item 1).
//!
//! Thread-locals are destroyed last-registered-first and the hub's teardown guard is registered
//! when the hub is created, so a thread-local first touched later is already gone when the guard
//! runs. A greenlet parked inside `Q.with(|q| q.get())` on such a `Q` must therefore not be resumed
//! (before the fix teardown killed it, and its unwinding returned into the freed queue: glibc
//! `tcache_thread_shutdown(): unaligned tcache chunk detected`, memcheck "Invalid read ... in
//! WaitList::remove"). It is abandoned instead, with a warning on stderr (no tracing subscriber is
//! installed here) naming it. Each scenario runs in a child process with a time bound; `.ci/valgrind`
//! runs this binary with `--trace-children=yes`, so the children run under memcheck too.
//!
//! The main-thread-at-process-exit case is `tests/exit_main_thread.rs` (it needs its own `main`).

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::sync::Queue;
use support::{assert_child_ok, child_command, is_child, run_child_within};

mod support;

/// Re-runs this binary with only `test` as the child, bounded by `limit`.
fn run_child(test: &str, limit: Duration) -> Output {
    run_child_within(child_command(test), test, limit)
}

/// Set when `Q` is destroyed.
static Q_GONE: AtomicBool = AtomicBool::new(false);
/// Set if a greenlet ran again after `Q` was destroyed.
static RESUMED_AFTER_Q_GONE: AtomicBool = AtomicBool::new(false);
/// Destructors of values on the abandoned greenlet's stack that ran.
static STACK_DROPS: AtomicUsize = AtomicUsize::new(0);
/// Destructors of closures that never started.
static CLOSURE_DROPS: AtomicUsize = AtomicUsize::new(0);

struct Tracked(Queue<u32>);

impl Drop for Tracked {
    fn drop(&mut self) {
        Q_GONE.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    static Q: Tracked = Tracked(Queue::new());
}

/// On a parked greenlet's stack: records whether it ran again after `Q` was destroyed.
struct OnStack;

impl Drop for OnStack {
    fn drop(&mut self) {
        if Q_GONE.load(Ordering::SeqCst) {
            RESUMED_AFTER_Q_GONE.store(true, Ordering::SeqCst);
        }
        STACK_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

struct InClosure;

impl Drop for InClosure {
    fn drop(&mut self) {
        CLOSURE_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn thread_exit_never_resumes_a_greenlet_parked_in_a_thread_local() {
    const NAME: &str = "thread_exit_never_resumes_a_greenlet_parked_in_a_thread_local";
    if is_child(NAME) {
        std::thread::spawn(|| {
            // The hub (and its teardown guard) first, then Q: Q is destroyed before the guard.
            hub::yield_now();
            Q.with(|_| ());
            hub::Builder::new().name("borrows-Q").spawn(|| {
                let _s = OnStack;
                Q.with(|q| q.0.get().ok())
            });
            let c = InClosure;
            hub::spawn(move || drop(c)); // never started: its closure is dropped at exit
            hub::sleep(Duration::from_millis(5)); // the first parks inside Q.with
        })
        .join()
        .unwrap();
        assert!(Q_GONE.load(Ordering::SeqCst), "Q was destroyed");
        assert!(
            !RESUMED_AFTER_Q_GONE.load(Ordering::SeqCst),
            "a greenlet was resumed after the thread-local it borrows was destroyed"
        );
        assert_eq!(
            STACK_DROPS.load(Ordering::SeqCst),
            0,
            "the abandoned greenlet's stack is not unwound"
        );
        assert_eq!(
            CLOSURE_DROPS.load(Ordering::SeqCst),
            1,
            "an unstarted closure is dropped"
        );
        return;
    }
    let err = assert_child_ok(&run_child(NAME, Duration::from_secs(60)));
    assert!(
        err.contains("abandoned") && err.contains("(borrows-Q)") && err.contains("hub::run"),
        "no abandonment warning naming the greenlet on stderr:\n{err}"
    );
}

#[test]
fn hub_run_still_unwinds_every_greenlet_before_the_thread_exits() {
    // The documented way to have every destructor run: the same program inside hub::run.
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let t0 = Instant::now();
    std::thread::spawn(|| {
        hub::run(|| {
            for _ in 0..10 {
                hub::spawn(|| {
                    let _c = Counted;
                    hub::sleep(Duration::from_secs(3600));
                });
            }
            hub::yield_now();
        });
        assert_eq!(hub::stats().live, 0);
    })
    .join()
    .unwrap();
    assert_eq!(DROPS.load(Ordering::SeqCst), 10);
    assert!(t0.elapsed() < Duration::from_secs(10));
}
