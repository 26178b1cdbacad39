//! sync::RLock: reentrancy by the owning greenlet, exclusion of the others, FIFO hand-off, misuse,
//! kills and timeouts.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::sync::RLock;
use greenhub::{hub, timeout};

#[test]
fn owner_reacquires_without_blocking_and_count_tracks_it() {
    hub::run(|| {
        let l = RLock::new(());
        let a = l.lock().unwrap();
        let b = l.lock().unwrap();
        assert!(l.try_lock().is_some());
        assert_eq!(l.count(), 2);
        assert!(l.is_owned());
        drop(a);
        assert!(l.is_locked());
        drop(b);
        assert!(!l.is_locked());
        assert_eq!(l.count(), 0);
        assert!(!l.is_owned());
    });
}

#[test]
fn other_greenlets_wait_until_the_last_release_then_fifo() {
    hub::run(|| {
        let l = Rc::new(RLock::new(RefCell::new(Vec::new())));
        let outer = l.lock().unwrap();
        let inner = l.lock().unwrap();
        let gs: Vec<_> = (0..3)
            .map(|i| {
                let l = l.clone();
                hub::spawn(move || {
                    let g = l.lock().unwrap();
                    let g2 = l.lock().unwrap(); // reentrant inside the waiter too
                    g.borrow_mut().push(i);
                    hub::sleep(Duration::from_millis(1)); // hold it across a blocking point
                    g2.borrow_mut().push(i);
                })
            })
            .collect();
        hub::yield_now();
        drop(inner);
        hub::yield_now();
        assert!(l.lock().is_ok(), "the owner re-enters while others wait");
        assert!(
            l.lock().unwrap().borrow().is_empty(),
            "nobody got in while one acquisition was still held"
        );
        drop(outer);
        for g in gs {
            g.join().unwrap();
        }
        assert_eq!(*l.lock().unwrap().borrow(), [0, 0, 1, 1, 2, 2]);
    });
}

#[test]
fn try_lock_fails_for_others_and_does_not_barge_past_waiters() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let g = l.lock().unwrap();
        let l2 = l.clone();
        let other = hub::spawn(move || l2.try_lock().is_some());
        assert!(!other.join().unwrap());
        let l3 = l.clone();
        let waiter = hub::spawn(move || drop(l3.lock().unwrap()));
        hub::yield_now();
        drop(g); // handed to the waiter, which has not run yet
        assert!(l.is_locked());
        assert!(
            l.try_lock().is_none(),
            "barged past the waiter it was handed to"
        );
        waiter.join().unwrap();
        assert!(!l.is_locked());
    });
}

#[test]
fn explicit_acquire_release_count() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        l.acquire().unwrap();
        assert!(l.try_acquire());
        assert_eq!(l.count(), 2);
        let l2 = l.clone();
        let other = hub::spawn(move || l2.acquire_timeout(Duration::from_millis(20)));
        assert!(other.join().unwrap().is_err());
        l.release();
        assert!(l.is_locked());
        l.release();
        assert!(!l.is_locked());
    });
}

#[test]
fn release_by_a_non_owner_panics() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let err = panic::catch_unwind(AssertUnwindSafe(|| l.release())).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("cannot release un-acquired lock"), "{msg}");
        assert!(msg.contains("not locked"), "{msg}");

        l.acquire().unwrap();
        let l2 = l.clone();
        let other = hub::spawn(move || l2.release());
        let err = other.join().unwrap_err().to_string();
        assert!(err.contains("does not own the lock"), "{err}");
        assert!(
            err.contains(&format!(
                "held by greenlet {}",
                greenhub::greenlet::current_id()
            )),
            "{err}"
        );
        assert_eq!(l.count(), 1, "a refused release changed the count");
        l.release();
    });
}

#[test]
fn an_owner_that_finished_without_release_is_named() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let l2 = l.clone();
        hub::Builder::new()
            .name("forgetful")
            .spawn(move || l2.acquire().unwrap())
            .join()
            .unwrap();
        let err = panic::catch_unwind(AssertUnwindSafe(|| l.try_acquire())).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("(forgetful), which finished"), "{msg}");
    });
}

#[test]
fn killing_the_holder_releases_every_acquisition() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let l2 = l.clone();
        let holder = hub::spawn(move || {
            let _a = l2.lock().unwrap();
            let _b = l2.lock().unwrap();
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        assert_eq!(l.count(), 2);
        let l3 = l.clone();
        let waiter = hub::spawn(move || l3.lock().map(|_| ()).is_ok());
        hub::yield_now();
        holder.kill();
        assert!(waiter.join().unwrap());
        assert!(!l.is_locked());
    });
}

#[test]
fn lock_handed_to_a_killed_waiter_is_passed_on() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let g = l.lock().unwrap();
        let (l2, l3) = (l.clone(), l.clone());
        let doomed = hub::spawn(move || drop(l2.lock().unwrap()));
        let next = hub::spawn(move || {
            let _g = l3.lock().unwrap();
            l3.is_owned()
        });
        hub::yield_now();
        drop(g); // handed to `doomed`, which has not run yet
        doomed.kill();
        assert!(next.join().unwrap(), "the lock went to the next waiter");
        assert!(!l.is_locked());
    });
}

#[test]
fn killing_a_waiter_leaves_the_queue() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let g = l.lock().unwrap();
        let l2 = l.clone();
        let waiter = hub::spawn(move || drop(l2.lock().unwrap()));
        hub::yield_now();
        waiter.kill();
        drop(g);
        assert!(!l.is_locked(), "the lock was handed to the dead waiter");
    });
}

#[test]
fn lock_timeout_and_timeout_scope() {
    hub::run(|| {
        let l = Rc::new(RLock::new(()));
        let _g = l.lock().unwrap();
        let l2 = l.clone();
        let other = hub::spawn(move || {
            let t = Instant::now();
            let own = l2.lock_timeout(Duration::from_millis(20)).is_err();
            let waited = t.elapsed();
            let scoped = timeout(Duration::from_millis(20), || l2.lock().map(|_| ()));
            (own, waited, scoped.is_err())
        });
        let (own, waited, scoped) = other.join().unwrap();
        assert!(own && waited >= Duration::from_millis(20));
        assert!(scoped, "the timeout scope did not end the wait");
        assert_eq!(l.count(), 1);
    });
}
