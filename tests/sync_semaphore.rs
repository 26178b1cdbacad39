//! Semaphore and BoundedSemaphore.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::sync::{BoundedSemaphore, Semaphore};
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
