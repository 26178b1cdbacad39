//! Semaphore, BoundedSemaphore, Mutex, RwLock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::sync::{BoundedSemaphore, Mutex, RwLock, Semaphore};
use greenhub::{hub, GreenletError};

#[test]
fn at_most_n_hold_a_permit_and_fifo_order() {
    hub::run(|| {
        let sem = Rc::new(Semaphore::new(3));
        let inside = Rc::new(Cell::new(0u32));
        let max = Rc::new(Cell::new(0u32));
        let order = Rc::new(RefCell::new(Vec::new()));
        let gs: Vec<_> = (0..20)
            .map(|i| {
                let (sem, inside, max, order) =
                    (sem.clone(), inside.clone(), max.clone(), order.clone());
                hub::spawn(move || {
                    let _p = sem.access().unwrap();
                    order.borrow_mut().push(i);
                    inside.set(inside.get() + 1);
                    max.set(max.get().max(inside.get()));
                    hub::sleep(Duration::from_millis(1));
                    inside.set(inside.get() - 1);
                })
            })
            .collect();
        for g in gs {
            g.join().unwrap();
        }
        assert_eq!(max.get(), 3);
        assert_eq!(*order.borrow(), (0..20).collect::<Vec<_>>(), "FIFO");
        assert_eq!(sem.available(), 3);
    });
}

#[test]
fn try_acquire_does_not_barge_past_waiters() {
    hub::run(|| {
        let sem = Rc::new(Semaphore::new(0));
        let s = sem.clone();
        let w = hub::spawn(move || s.acquire().unwrap());
        hub::yield_now();
        sem.release(); // handed to the waiter, not left for try_acquire
        assert!(!sem.try_acquire());
        w.join().unwrap();
        assert_eq!(sem.available(), 0);
        sem.release();
        assert!(sem.try_acquire());
    });
}

#[test]
fn acquire_timeout_times_out_and_leaves_the_list() {
    hub::run(|| {
        let sem = Semaphore::new(0);
        let t = Instant::now();
        assert!(!sem.acquire_timeout(Duration::from_millis(50)));
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(50) && e < Duration::from_secs(2),
            "{e:?}"
        );
        assert_eq!(sem.waiters(), 0);
        sem.release();
        assert_eq!(sem.available(), 1);
    });
}

#[test]
fn permit_released_to_a_timed_out_waiter_passes_on() {
    hub::run(|| {
        let sem = Rc::new(Semaphore::new(0));
        let s = sem.clone();
        let timed = hub::spawn(move || s.acquire_timeout(Duration::from_millis(10)));
        let s = sem.clone();
        let patient = hub::spawn(move || s.acquire().unwrap());
        let s = sem.clone();
        let releaser = hub::spawn(move || {
            hub::sleep(Duration::from_millis(5));
            s.release();
        });
        hub::yield_now();
        // Past both deadlines: the releaser runs while `timed` has timed out but not resumed.
        std::thread::sleep(Duration::from_millis(30));
        releaser.join().unwrap();
        patient.join().unwrap();
        assert!(!timed.join().unwrap(), "the timed-out waiter got nothing");
        assert_eq!(
            sem.available(),
            0,
            "the one permit went to the patient waiter"
        );
    });
}

#[test]
fn permit_handed_to_a_killed_waiter_is_passed_on() {
    hub::run(|| {
        let sem = Rc::new(Semaphore::new(0));
        let s = sem.clone();
        let victim = hub::spawn(move || s.acquire().unwrap());
        hub::yield_now();
        sem.release(); // handed to the victim, which has not run yet
        victim.kill();
        assert!(matches!(victim.join(), Err(GreenletError::Killed)));
        assert_eq!(sem.available(), 1, "the permit came back");
    });
}

#[test]
#[should_panic(expected = "BoundedSemaphore released too many times")]
fn bounded_semaphore_panics_on_extra_release() {
    let sem = BoundedSemaphore::new(2);
    assert!(sem.try_acquire());
    sem.release();
    sem.release();
}

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

#[test]
fn rwlock_readers_share_writers_exclude_and_fifo() {
    hub::run(|| {
        let l = Rc::new(RwLock::new(0));
        let log = Rc::new(RefCell::new(Vec::new()));
        let r1 = l.read().unwrap();
        let r2 = l.read().unwrap();
        assert!(l.try_write().is_none());
        let (l2, log2) = (l.clone(), log.clone());
        let writer = hub::spawn(move || {
            let mut w = l2.write().unwrap();
            *w += 1;
            log2.borrow_mut().push("w");
            hub::sleep(Duration::from_millis(1));
        });
        hub::yield_now();
        // A reader arriving after a waiting writer queues behind it.
        assert!(l.try_read().is_none());
        let (l3, log3) = (l.clone(), log.clone());
        let reader = hub::spawn(move || {
            let r = l3.read().unwrap();
            log3.borrow_mut().push("r");
            *r
        });
        hub::yield_now();
        drop(r1);
        drop(r2);
        assert_eq!(reader.join().unwrap(), 1);
        writer.join().unwrap();
        assert_eq!(*log.borrow(), ["w", "r"]);
        assert_eq!(*l.read().unwrap(), 1);
    });
}

#[test]
fn rwlock_writer_that_times_out_lets_readers_behind_it_in() {
    hub::run(|| {
        let l = Rc::new(RwLock::new(()));
        let r = l.read().unwrap();
        let l2 = l.clone();
        let writer = hub::spawn(move || l2.write_timeout(Duration::from_millis(20)).is_ok());
        hub::yield_now();
        let l3 = l.clone();
        let reader = hub::spawn(move || l3.read().map(|_| ()).is_ok());
        assert!(!writer.join().unwrap());
        assert!(
            reader.join().unwrap(),
            "reader got in while the first read is still held"
        );
        drop(r);
    });
}

#[test]
fn killing_an_rwlock_holder_and_waiter() {
    hub::run(|| {
        let l = Rc::new(RwLock::new(0));
        let l2 = l.clone();
        let holder = hub::spawn(move || {
            let _w = l2.write().unwrap();
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        let l3 = l.clone();
        let waiter = hub::spawn(move || drop(l3.read().unwrap()));
        hub::yield_now();
        waiter.kill();
        holder.kill();
        assert!(l.try_write().is_some());
    });
}
