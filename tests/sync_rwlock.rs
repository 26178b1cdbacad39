//! RwLock: readers share, writers exclude, FIFO; timed-out and killed waiters leave the queue.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use greenhub::hub;
use greenhub::sync::RwLock;

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
