//! Timers: sleep, sleep_until and spawn_later wake in deadline order and never early.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;

/// A small deterministic generator, so a failure reproduces.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn ten_thousand_sleepers_wake_in_deadline_order() {
    hub::run(|| {
        let mut rng = 42;
        // Every deadline lies after all 10,000 greenlets have parked, so the order is the timers'.
        let base = Instant::now() + Duration::from_millis(300);
        let woke = Rc::new(RefCell::new(Vec::with_capacity(10_000)));
        let gs: Vec<_> = (0..10_000)
            .map(|_| {
                let deadline = base + Duration::from_micros(lcg(&mut rng) % 200_000);
                let w = woke.clone();
                hub::spawn(move || {
                    hub::sleep_until(deadline);
                    let now = Instant::now();
                    assert!(now >= deadline, "woke {:?} early", deadline - now);
                    w.borrow_mut().push(deadline);
                })
            })
            .collect();
        for g in gs {
            g.join().unwrap();
        }
        let woke = woke.borrow();
        assert_eq!(woke.len(), 10_000);
        let out_of_order = woke.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!(out_of_order, 0, "greenlets woke out of deadline order");
    });
}

#[test]
fn sleep_never_returns_early_and_others_run_meanwhile() {
    hub::run(|| {
        let ticks = Rc::new(RefCell::new(0u32));
        let t = ticks.clone();
        let ticker = hub::spawn(move || {
            for _ in 0..5 {
                hub::sleep(Duration::from_millis(2));
                *t.borrow_mut() += 1;
            }
        });
        let t0 = Instant::now();
        hub::sleep(Duration::from_millis(30));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert_eq!(*ticks.borrow(), 5, "the ticker ran while main slept");
        ticker.join().unwrap();
    });
}

#[test]
fn spawn_later_starts_in_order_and_not_before_its_delay() {
    hub::run(|| {
        let order = Rc::new(RefCell::new(Vec::new()));
        let t0 = Instant::now();
        let gs: Vec<_> = [30u64, 10, 20, 0]
            .into_iter()
            .map(|ms| {
                let o = order.clone();
                hub::spawn_later(Duration::from_millis(ms), move || {
                    assert!(t0.elapsed() >= Duration::from_millis(ms));
                    o.borrow_mut().push(ms);
                })
            })
            .collect();
        assert!(gs.iter().all(|g| !g.is_started()));
        for g in gs {
            g.join().unwrap();
        }
        assert_eq!(*order.borrow(), vec![0, 10, 20, 30]);
    });
}

#[test]
fn killing_a_spawn_later_greenlet_before_it_starts() {
    hub::run(|| {
        let ran = Rc::new(RefCell::new(false));
        let r = ran.clone();
        let g = hub::spawn_later(Duration::from_millis(20), move || *r.borrow_mut() = true);
        g.kill();
        hub::sleep(Duration::from_millis(40));
        assert!(!*ran.borrow());
        assert!(g.is_finished());
    });
}

#[test]
fn sleep_zero_yields() {
    hub::run(|| {
        let flag = Rc::new(RefCell::new(false));
        let f = flag.clone();
        let _g = hub::spawn(move || *f.borrow_mut() = true);
        hub::sleep(Duration::ZERO);
        assert!(*flag.borrow(), "sleep(0) let the ready greenlet run");
    });
}
