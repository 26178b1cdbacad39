//! Mutex: serialises across blocking points, hands the lock on past killed and timed-out
//! waiters.

use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::sync::Mutex;

#[test]
fn mutex_held_across_blocking_points_serialises() {
    hub::run(|| {
        let m = Rc::new(Mutex::new(Vec::new()));
        let gs: Vec<_> = (0..5)
            .map(|i| {
                let m = m.clone();
                hub::spawn(move || {
                    let mut g = m.lock().unwrap();
                    g.push(i);
                    hub::sleep(Duration::from_millis(1));
                    g.push(i);
                })
            })
            .collect();
        for g in gs {
            g.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        assert!(!m.is_locked());
    });
}

#[test]
fn killing_the_lock_holder_releases_the_lock() {
    hub::run(|| {
        let m = Rc::new(Mutex::new(0));
        let m2 = m.clone();
        let holder = hub::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g += 1;
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        let m3 = m.clone();
        let waiter = hub::spawn(move || *m3.lock().unwrap() + 10);
        hub::yield_now();
        holder.kill();
        assert_eq!(waiter.join().unwrap(), 11);
        assert!(!m.is_locked());
    });
}

#[test]
fn killing_a_lock_waiter_leaves_the_queue() {
    hub::run(|| {
        let m = Rc::new(Mutex::new(()));
        let g = m.lock().unwrap();
        let m2 = m.clone();
        let waiter = hub::spawn(move || drop(m2.lock().unwrap()));
        hub::yield_now();
        waiter.kill();
        drop(g);
        assert!(!m.is_locked(), "the lock was not handed to the dead waiter");
        assert!(m.try_lock().is_some());
    });
}

#[test]
fn lock_handed_to_a_killed_waiter_is_released() {
    hub::run(|| {
        let m = Rc::new(Mutex::new(()));
        let g = m.lock().unwrap();
        let m2 = m.clone();
        let waiter = hub::spawn(move || drop(m2.lock().unwrap()));
        hub::yield_now();
        drop(g); // handed to the waiter, which has not run yet
        waiter.kill();
        assert!(!m.is_locked());
    });
}

#[test]
fn mutex_lock_timeout() {
    hub::run(|| {
        let m = Mutex::new(1);
        let _g = m.lock().unwrap();
        let t = Instant::now();
        assert!(m.lock_timeout(Duration::from_millis(30)).is_err());
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
}
