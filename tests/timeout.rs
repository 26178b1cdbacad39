//! Timeout scopes: `timeout`, `timeout_at`, the `Timeout` guard.

use std::time::{Duration, Instant};

use greenhub::sync::{Event, Queue, Semaphore, TimedOut};
use greenhub::timeout::{timeout, timeout_at, Elapsed, Timeout};
use greenhub::{hub, GreenletError};

fn slack(e: Duration, at_least: Duration) {
    assert!(e >= at_least && e < Duration::from_secs(2), "{e:?}");
}

#[test]
fn sleep_is_cut_short_by_the_scope() {
    hub::run(|| {
        let t = Instant::now();
        let r = timeout(Duration::from_millis(50), || {
            hub::sleep(Duration::from_secs(10))
        });
        assert_eq!(r, Err(Elapsed));
        slack(t.elapsed(), Duration::from_millis(50));
    });
}

#[test]
fn finishing_in_time_returns_the_value() {
    hub::run(|| {
        assert_eq!(timeout(Duration::from_secs(5), || 7), Ok(7));
        let r = timeout(Duration::from_secs(5), || {
            hub::sleep(Duration::from_millis(1));
            8
        });
        assert_eq!(r, Ok(8));
        // The scope ended: later waits are not bounded by it.
        let t = Instant::now();
        hub::sleep(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn works_in_the_main_greenlet_without_run() {
    let ev = Event::new();
    assert_eq!(
        timeout(Duration::from_millis(10), || ev.wait()),
        Err(Elapsed)
    );
}

#[test]
fn every_sync_wait_observes_the_scope() {
    hub::run(|| {
        let ev = Event::new();
        let sem = Semaphore::new(0);
        let q: Queue<u32> = Queue::bounded(1);
        q.put(1).unwrap();
        let scope = Timeout::start(Duration::from_millis(20));
        assert_eq!(ev.wait(), Err(TimedOut));
        assert!(scope.expired());
        // Once expired, every blocking call in the scope fails at once.
        let t = Instant::now();
        assert_eq!(sem.acquire(), Err(TimedOut));
        assert!(q.put(2).is_err());
        assert!(!ev.wait_timeout(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(scope);
        assert_eq!(q.get(), Ok(1));
    });
}

#[test]
fn question_mark_carries_the_error_to_the_scope() {
    hub::run(|| {
        let q: Queue<u32> = Queue::new();
        let r = timeout(Duration::from_millis(20), || -> Result<u32, TimedOut> {
            let a = q.get()?;
            Ok(a + 1)
        });
        assert_eq!(r, Err(Elapsed));
        let io: std::io::Error = Elapsed.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    });
}

#[test]
fn join_inside_a_scope_times_out() {
    hub::run(|| {
        let g = hub::spawn(|| hub::sleep(Duration::from_secs(60)));
        let r = timeout(Duration::from_millis(20), || {
            g.join_timeout(Duration::from_secs(60))
        });
        assert_eq!(r.unwrap_err(), Elapsed);
        let r = timeout(Duration::from_millis(20), || g.join());
        assert_eq!(r.unwrap_err(), Elapsed);
    });
}

#[test]
fn join_returns_timed_out_when_the_scope_expires() {
    hub::run(|| {
        let g = hub::spawn(|| hub::sleep(Duration::from_secs(60)));
        let _scope = Timeout::start(Duration::from_millis(10));
        assert!(matches!(g.join(), Err(GreenletError::TimedOut)));
    });
}

#[test]
fn nested_outer_fires_first() {
    hub::run(|| {
        let ev = Event::new();
        let t = Instant::now();
        let outer = timeout(Duration::from_millis(30), || {
            timeout(Duration::from_secs(10), || ev.wait())
        });
        // The inner scope did not expire: it returned Ok(f's error); the outer one did.
        assert_eq!(outer, Err(Elapsed));
        slack(t.elapsed(), Duration::from_millis(30));
        let outer = Timeout::start(Duration::from_millis(20));
        let inner = Timeout::start(Duration::from_secs(10));
        let _ = ev.wait();
        assert!(outer.expired());
        assert!(!inner.expired());
    });
}

#[test]
fn nested_inner_fires_first() {
    hub::run(|| {
        let ev = Event::new();
        let r = timeout(Duration::from_secs(10), || {
            let inner = timeout(Duration::from_millis(20), || ev.wait());
            assert_eq!(inner, Err(Elapsed));
            // The outer scope is still alive and unexpired: waits work again.
            hub::sleep(Duration::from_millis(5));
            "outer finished"
        });
        assert_eq!(r, Ok("outer finished"));
    });
}

#[test]
fn guard_dropped_out_of_order_closes_its_own_scope() {
    hub::run(|| {
        let a = Timeout::start(Duration::from_millis(20));
        let b = Timeout::start(Duration::from_secs(10));
        drop(a); // the earlier deadline goes away
        let t = Instant::now();
        hub::sleep(Duration::from_millis(40));
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert!(!b.expired());
        drop(b);
    });
}

#[test]
fn a_computation_that_never_blocks_is_not_interrupted() {
    hub::run(|| {
        let r = timeout(Duration::from_millis(5), || {
            // Computes without any blocking point (a spin: under the `monkey` feature
            // `thread::sleep` would be a cooperative sleep, which the scope does interrupt).
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            1
        });
        assert_eq!(r, Ok(1));
    });
}

#[test]
fn scopes_belong_to_their_greenlet() {
    hub::run(|| {
        let scope = Timeout::start(Duration::from_millis(10));
        let child = hub::spawn(|| {
            let t = Instant::now();
            hub::sleep(Duration::from_millis(40));
            t.elapsed()
        });
        assert!(matches!(
            child.join_timeout(Duration::from_secs(10)),
            Err(GreenletError::TimedOut)
        ));
        assert!(scope.expired());
        drop(scope);
        // The child was not bounded by our scope: it slept its whole 40 ms.
        let slept = child.join().unwrap();
        slack(slept, Duration::from_millis(40));
    });
}

#[test]
fn timeout_at_uses_an_absolute_deadline() {
    hub::run(|| {
        let at = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            timeout_at(at, || hub::sleep(Duration::from_secs(5))),
            Err(Elapsed)
        );
        assert!(Instant::now() >= at);
    });
}

#[test]
fn killing_a_greenlet_inside_a_scope() {
    hub::run(|| {
        let g = hub::spawn(|| {
            timeout(Duration::from_secs(30), || {
                hub::sleep(Duration::from_secs(30))
            })
        });
        hub::yield_now();
        g.kill();
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
    });
}

#[test]
fn lock_wait_in_a_scope_times_out_and_leaves_the_queue() {
    hub::run(|| {
        let m = greenhub::sync::Mutex::new(0);
        let g = m.lock().unwrap();
        let r = timeout(Duration::from_millis(20), || m.lock().map(|_| ()));
        assert_eq!(r, Err(Elapsed));
        drop(g);
        assert!(!m.is_locked(), "nobody stale was handed the lock");
        *m.lock().unwrap() += 1;
    });
}
