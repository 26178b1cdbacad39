//! `threadpool::unblock`: offloading keeps the hub responsive; panics come back; sizing.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use greenhub::{hub, threadpool};

#[test]
fn unblock_under_load_keeps_a_ticking_greenlet_responsive() {
    // Every configure in this binary uses the same short idle timeout: tests may run in parallel.
    threadpool::configure(
        threadpool::Config::new()
            .max_threads(8)
            .idle_timeout(Duration::from_millis(50)),
    );
    let (max_gap, total) = hub::run(|| {
        let done = Rc::new(Cell::new(false));
        let d2 = done.clone();
        let ticker = hub::spawn(move || {
            let mut last = Instant::now();
            let mut max_gap = Duration::ZERO;
            while !d2.get() {
                hub::sleep(Duration::from_millis(5));
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
            }
            max_gap
        });
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..100u64)
            .map(|i| {
                let running = running.clone();
                let peak = peak.clone();
                hub::spawn(move || {
                    threadpool::unblock(move || {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                })
            })
            .collect();
        let total: u64 = jobs.into_iter().map(|g| g.join().unwrap()).sum();
        assert!(peak.load(Ordering::SeqCst) <= 8, "pool exceeded its size");
        done.set(true);
        (ticker.join().unwrap(), total)
    });
    assert_eq!(total, 99 * 100 / 2);
    assert!(
        max_gap < Duration::from_millis(500),
        "ticker stalled for {max_gap:?}"
    );
}

#[test]
fn a_panic_in_the_job_resumes_in_the_caller() {
    let r = hub::run(|| {
        std::panic::catch_unwind(|| threadpool::unblock(|| -> u8 { panic!("pool boom") }))
            .map_err(|p| p.downcast_ref::<&str>().copied())
    });
    assert_eq!(r, Err(Some("pool boom")));
}

#[test]
fn outside_a_hub_the_job_runs_inline() {
    let me = thread::current().id();
    let t = thread::spawn(move || threadpool::unblock(move || thread::current().id() != me))
        .join()
        .unwrap();
    assert!(t, "ran on the spawned thread itself");
}

#[test]
fn unblock_timeout_gives_up_and_timeout_scopes_interrupt_unblock() {
    hub::run(|| {
        let start = Instant::now();
        let r = threadpool::unblock_timeout(Duration::from_millis(30), || {
            thread::sleep(Duration::from_secs(3));
            1
        });
        assert_eq!(r, None);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(2));
        let r = greenhub::timeout(Duration::from_millis(10), || {
            threadpool::unblock(|| {
                thread::sleep(Duration::from_millis(60));
                2
            })
        });
        // The scope's deadline passed while unblock waited: the wait ends there (issue 11, item 12;
        // the job runs on and its result is dropped).
        assert!(r.is_err());
    });
}

#[test]
fn idle_threads_retire() {
    threadpool::configure(
        threadpool::Config::new()
            .max_threads(4)
            .idle_timeout(Duration::from_millis(50)),
    );
    hub::run(|| {
        let gs: Vec<_> = (0..4)
            .map(|_| {
                hub::spawn(|| {
                    threadpool::unblock(|| {
                        thread::sleep(Duration::from_millis(20));
                        threadpool::threads()
                    })
                })
            })
            .collect();
        for g in gs {
            assert!(
                g.join().unwrap() >= 1,
                "the job did not run on a pool thread"
            );
        }
    });
    let start = Instant::now();
    while threadpool::threads() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pool threads never retired"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn host_names_resolve_on_the_pool() {
    let addrs = hub::run(|| {
        let l = greenhub::net::TcpListener::bind("localhost:0").unwrap();
        l.local_addr().unwrap()
    });
    assert!(addrs.ip().is_loopback());
}
