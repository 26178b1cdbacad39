//! Queue (FIFO, LIFO, priority), JoinableQueue, Channel.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::sync::{Channel, Full, JoinableQueue, Queue, TimedOut};
use greenhub::{hub, GreenletError};

#[test]
fn hundred_producers_hundred_consumers_bounded_exactly_once() {
    const PER: u32 = 50;
    let seen = hub::run(|| {
        let q = Rc::new(Queue::bounded(7));
        let max_len = Rc::new(Cell::new(0));
        let producers: Vec<_> = (0..100u32)
            .map(|p| {
                let (q, max_len) = (q.clone(), max_len.clone());
                hub::spawn(move || {
                    for i in 0..PER {
                        q.put(p * PER + i).unwrap();
                        max_len.set(max_len.get().max(q.len()));
                        if i % 7 == 0 {
                            hub::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..100u32)
            .map(|_| {
                let q = q.clone();
                hub::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..PER {
                        got.push(q.get().unwrap());
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u32> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert!(max_len.get() <= 7, "bounded: saw {}", max_len.get());
        assert!(q.is_empty());
        all.sort_unstable();
        all
    });
    assert_eq!(seen, (0..100 * PER).collect::<Vec<_>>());
}

#[test]
fn per_producer_order_is_kept() {
    hub::run(|| {
        let q = Rc::new(Queue::bounded(2));
        let q2 = q.clone();
        let p = hub::spawn(move || {
            for i in 0..100 {
                q2.put(i).unwrap();
            }
        });
        let got: Vec<i32> = (0..100).map(|_| q.get().unwrap()).collect();
        p.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn try_forms_and_capacity() {
    hub::run(|| {
        let q = Queue::bounded(2);
        assert_eq!(q.try_get(), None);
        q.try_put(1).unwrap();
        q.try_put(2).unwrap();
        assert!(q.is_full());
        assert_eq!(q.try_put(3), Err(Full(3)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_get(), Some(1));
        assert_eq!(q.try_get(), Some(2));
        assert!(q.is_empty());
        let u: Queue<u8> = Queue::new();
        for i in 0..200 {
            u.try_put(i).unwrap();
        }
        assert_eq!(u.capacity(), None);
        assert!(!u.is_full());
    });
}

#[test]
fn get_and_put_timeouts() {
    hub::run(|| {
        let q = Queue::bounded(1);
        let t = Instant::now();
        assert_eq!(q.get_timeout(Duration::from_millis(40)), Err(TimedOut));
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(40) && e < Duration::from_secs(2),
            "{e:?}"
        );
        q.put(1).unwrap();
        let t = Instant::now();
        let r = q.put_timeout(2, Duration::from_millis(40));
        assert_eq!(r.map_err(Full::into_inner), Err(2), "the item comes back");
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert_eq!(q.putters(), 0);
        assert_eq!(q.getters(), 0);
        assert_eq!(q.get().unwrap(), 1);
    });
}

#[test]
fn lifo_and_priority_orders() {
    hub::run(|| {
        let l = Queue::lifo();
        for i in 0..5 {
            l.put(i).unwrap();
        }
        let got: Vec<_> = (0..5).map(|_| l.get().unwrap()).collect();
        assert_eq!(got, [4, 3, 2, 1, 0]);
        let p = Queue::priority();
        for i in [3, 1, 4, 1, 5, 9, 2, 6] {
            p.put(i).unwrap();
        }
        let got: Vec<_> = (0..8).map(|_| p.get().unwrap()).collect();
        assert_eq!(got, [9, 6, 5, 4, 3, 2, 1, 1]);
        let lowest = Queue::priority();
        for i in [3, 1, 2] {
            lowest.put(std::cmp::Reverse(i)).unwrap();
        }
        assert_eq!(lowest.get().unwrap().0, 1);
    });
}

#[test]
fn getters_are_served_fifo() {
    hub::run(|| {
        let q = Rc::new(Queue::new());
        let order = Rc::new(RefCell::new(Vec::new()));
        let gs: Vec<_> = (0..10)
            .map(|i| {
                let (q, order) = (q.clone(), order.clone());
                hub::spawn(move || {
                    let v: i32 = q.get().unwrap();
                    order.borrow_mut().push((i, v));
                })
            })
            .collect();
        hub::yield_now();
        for v in 0..10 {
            q.put(v * 10).unwrap();
        }
        for g in gs {
            g.join().unwrap();
        }
        assert_eq!(
            *order.borrow(),
            (0..10).map(|i| (i, i * 10)).collect::<Vec<_>>()
        );
    });
}

#[test]
fn item_handed_to_a_killed_getter_goes_back_to_the_front() {
    hub::run(|| {
        let q = Rc::new(Queue::new());
        let q2 = q.clone();
        let victim = hub::spawn(move || q2.get().unwrap());
        hub::yield_now();
        q.put("first").unwrap(); // handed to the victim
        q.put("second").unwrap();
        victim.kill();
        assert!(matches!(victim.join(), Err(GreenletError::Killed)));
        assert_eq!(q.try_get(), Some("first"));
        assert_eq!(q.try_get(), Some("second"));
    });
}

#[test]
fn item_put_while_the_getter_timed_out_goes_to_the_next_getter() {
    hub::run(|| {
        let q = Rc::new(Queue::new());
        let q2 = q.clone();
        let timed = hub::spawn(move || q2.get_timeout(Duration::from_millis(10)));
        let q3 = q.clone();
        let patient = hub::spawn(move || q3.get().unwrap());
        let q4 = q.clone();
        let putter = hub::spawn(move || {
            hub::sleep(Duration::from_millis(5));
            q4.put(7).unwrap();
        });
        hub::yield_now();
        std::thread::sleep(Duration::from_millis(30));
        putter.join().unwrap();
        assert_eq!(timed.join().unwrap(), Err(TimedOut));
        assert_eq!(patient.join().unwrap(), 7);
        assert!(q.is_empty());
    });
}

#[test]
fn killed_putter_drops_its_item_and_leaves_the_list() {
    struct Counted(Rc<Cell<u32>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let q = Rc::new(Queue::bounded(1));
        q.put(Counted(drops.clone())).map_err(|_| ()).unwrap();
        let (q2, d2) = (q.clone(), drops.clone());
        let putter = hub::spawn(move || q2.put(Counted(d2)).map_err(|_| ()));
        hub::yield_now();
        assert_eq!(q.putters(), 1);
        putter.kill();
        assert_eq!(
            drops.get(),
            1,
            "the waiting item was dropped with the putter"
        );
        assert_eq!(q.putters(), 0);
        drop(q.try_get());
        assert_eq!(drops.get(), 2);
        assert!(q.is_empty());
    });
}

#[test]
fn joinable_queue_join_waits_for_task_done() {
    hub::run(|| {
        let q = Rc::new(JoinableQueue::new());
        let done = Rc::new(Cell::new(0));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (q, done) = (q.clone(), done.clone());
                hub::spawn(move || loop {
                    let _: u32 = q.get().unwrap();
                    hub::sleep(Duration::from_millis(1));
                    done.set(done.get() + 1);
                    q.task_done();
                })
            })
            .collect();
        for i in 0..20 {
            q.put(i).unwrap();
        }
        assert!(!q.join_timeout(Duration::ZERO));
        q.join().unwrap();
        assert_eq!(done.get(), 20);
        assert_eq!(q.unfinished(), 0);
        for w in &workers {
            w.kill();
        }
    });
}

#[test]
#[should_panic(expected = "task_done called more times")]
fn joinable_queue_task_done_too_often_panics() {
    let q: JoinableQueue<u8> = JoinableQueue::new();
    q.task_done();
}

#[test]
fn channel_is_a_rendezvous() {
    hub::run(|| {
        let ch = Rc::new(Channel::new());
        assert_eq!(ch.try_put(1), Err(Full(1)), "nobody is waiting");
        assert_eq!(ch.try_get(), None);
        let taken = Rc::new(Cell::new(false));
        let (c, t) = (ch.clone(), taken.clone());
        let putter = hub::spawn(move || {
            c.put(5).unwrap();
            assert!(t.get(), "put returned only after the get");
        });
        hub::yield_now();
        assert_eq!(ch.putters(), 1);
        taken.set(true);
        assert_eq!(ch.get().unwrap(), 5);
        putter.join().unwrap();
        let c = ch.clone();
        let getter = hub::spawn(move || c.get().unwrap());
        hub::yield_now();
        ch.try_put(9).unwrap();
        assert_eq!(getter.join().unwrap(), 9);
        assert_eq!(
            ch.put_timeout(3, Duration::from_millis(10))
                .map_err(Full::into_inner),
            Err(3)
        );
        assert_eq!(ch.get_timeout(Duration::from_millis(10)), Err(TimedOut));
    });
}

#[test]
fn many_timed_out_getters_are_skipped_and_fifo_holds() {
    hub::run(|| {
        let q = Rc::new(Queue::new());
        let order = Rc::new(RefCell::new(Vec::new()));
        let gs: Vec<_> = (0..300u32)
            .map(|i| {
                let (q, order) = (q.clone(), order.clone());
                hub::spawn(move || {
                    if i % 3 == 0 {
                        let v: u32 = q.get().unwrap();
                        order.borrow_mut().push((i, v));
                    } else {
                        assert_eq!(q.get_timeout(Duration::from_millis(1)), Err(TimedOut));
                    }
                })
            })
            .collect();
        // The timed getters give up and take their entries out of the list. Under load they may
        // not all have run 20 ms later, so wait for it (bounded): what matters is that they leave.
        let t0 = std::time::Instant::now();
        hub::sleep(Duration::from_millis(20));
        while q.getters() != 100 && t0.elapsed() < Duration::from_secs(10) {
            hub::sleep(Duration::from_millis(5));
        }
        assert_eq!(q.getters(), 100, "the timed-out getters left the wait list");
        for v in 0..100 {
            q.put(v).unwrap();
        }
        for g in gs {
            g.join().unwrap();
        }
        let expected: Vec<(u32, u32)> = (0..100).map(|k| (3 * k, k)).collect();
        assert_eq!(
            *order.borrow(),
            expected,
            "patient getters served in arrival order"
        );
    });
}
