//! Group, Pool, joinall, killall, wait_any, iwait.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use greenhub::pool::{iwait, joinall, killall, wait_any, wait_any_timeout, Group, Pool, Waitable};
use greenhub::sync::{AsyncResult, Event};
use greenhub::timeout::timeout;
use greenhub::{hub, GreenletError};

#[test]
fn pool_of_ten_never_runs_eleven() {
    let (max, ran) = hub::run(|| {
        let pool = Pool::new(10);
        let inside = Rc::new(Cell::new(0u32));
        let max = Rc::new(Cell::new(0u32));
        let ran = Rc::new(Cell::new(0u32));
        for i in 0..100u64 {
            let (inside, max, ran) = (inside.clone(), max.clone(), ran.clone());
            pool.spawn(move || {
                inside.set(inside.get() + 1);
                max.set(max.get().max(inside.get()));
                hub::sleep(Duration::from_micros(100 * (i % 7)));
                hub::yield_now();
                inside.set(inside.get() - 1);
                ran.set(ran.get() + 1);
            })
            .unwrap();
            assert!(pool.len() <= 10);
        }
        pool.join().unwrap();
        assert_eq!(pool.free_count(), 10);
        assert!(pool.is_empty());
        (max.get(), ran.get())
    });
    assert_eq!(max, 10);
    assert_eq!(ran, 100);
}

#[test]
fn pool_slots_come_back_from_killed_and_unstarted_greenlets() {
    hub::run(|| {
        let pool = Pool::new(2);
        let a = pool.spawn(|| hub::sleep(Duration::from_secs(60))).unwrap();
        hub::yield_now(); // a started
        let b = pool.spawn(|| hub::sleep(Duration::from_secs(60))).unwrap(); // not started
        assert_eq!(pool.free_count(), 0);
        assert!(pool.try_spawn(|| ()).is_err());
        b.kill();
        assert_eq!(pool.free_count(), 1);
        a.kill();
        assert_eq!(pool.free_count(), 2);
        let c = pool.try_spawn(|| 3).map_err(|_| ()).unwrap();
        assert_eq!(c.join().unwrap(), 3);
    });
}

#[test]
fn pool_spawn_in_an_expired_scope_fails() {
    hub::run(|| {
        let pool = Pool::new(1);
        let _busy = pool.spawn(|| hub::sleep(Duration::from_secs(60))).unwrap();
        let r = timeout(Duration::from_millis(20), || pool.spawn(|| ()).is_err());
        assert!(r.is_err());
        pool.kill();
        assert_eq!(pool.free_count(), 1);
    });
}

#[test]
fn map_keeps_order_imap_unordered_yields_all() {
    hub::run(|| {
        let pool = Pool::new(4);
        let out = pool
            .map(0..20u64, |i| {
                hub::sleep(Duration::from_micros(200 * (20 - i)));
                i * 2
            })
            .unwrap();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());

        let inside = Rc::new(Cell::new(0));
        let max = Rc::new(Cell::new(0));
        let (i2, m2) = (inside.clone(), max.clone());
        let got: Vec<u64> = pool
            .imap_unordered(0..30u64, move |i| {
                i2.set(i2.get() + 1);
                m2.set(m2.get().max(i2.get()));
                hub::sleep(Duration::from_micros(100 * (i % 5)));
                i2.set(i2.get() - 1);
                i
            })
            .map(Result::unwrap)
            .collect();
        assert!(max.get() <= 4);
        let set: HashSet<u64> = got.iter().copied().collect();
        assert_eq!(got.len(), 30);
        assert_eq!(set, (0..30).collect());

        let group = Group::new();
        let order: Vec<u64> = group
            .imap_unordered([30u64, 1, 15], |ms| {
                hub::sleep(Duration::from_millis(ms));
                ms
            })
            .map(Result::unwrap)
            .collect();
        assert_eq!(order, [1, 15, 30]);
    });
}

#[test]
fn map_reports_a_panic_and_kills_the_rest() {
    hub::run(|| {
        let group = Group::new();
        let r = group.map(0..5, |i| {
            if i == 1 {
                panic!("boom {i}");
            }
            hub::sleep(Duration::from_secs(60));
            i
        });
        assert!(matches!(r, Err(GreenletError::Panicked(_))));
        assert!(group.is_empty(), "the others were killed");
    });
}

#[test]
fn group_join_kill_len() {
    hub::run(|| {
        let group = Group::new();
        let drops = Rc::new(Cell::new(0));
        struct D(Rc<Cell<u32>>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        for _ in 0..5 {
            let d = D(drops.clone());
            group.spawn(move || {
                let _d = d;
                hub::sleep(Duration::from_secs(60));
            });
        }
        hub::yield_now();
        assert_eq!(group.len(), 5);
        assert!(!group.join_timeout(Duration::from_millis(10)));
        group.kill();
        assert_eq!(drops.get(), 5, "every destructor ran");
        assert!(group.is_empty());
        group.join().unwrap();
        let outside = hub::spawn(|| 1);
        group.add(&outside);
        assert!(group.contains(&outside));
        group.join().unwrap();
        assert_eq!(outside.join().unwrap(), 1);
    });
}

#[test]
fn joinall_and_killall() {
    hub::run(|| {
        let gs: Vec<_> = (0..5).map(|i| hub::spawn(move || i)).collect();
        let rs: Vec<_> = joinall(gs).into_iter().map(Result::unwrap).collect();
        assert_eq!(rs, [0, 1, 2, 3, 4]);
        let gs: Vec<_> = (0..5)
            .map(|_| hub::spawn(|| hub::sleep(Duration::from_secs(60))))
            .collect();
        hub::yield_now();
        killall(&gs);
        assert!(gs.iter().all(|g| g.is_finished()));
    });
}

#[test]
fn wait_any_over_events_results_and_greenlets() {
    hub::run(|| {
        let ev = Rc::new(Event::new());
        let res: Rc<AsyncResult<u8, ()>> = Rc::new(AsyncResult::new());
        let g = hub::spawn(|| hub::sleep(Duration::from_millis(50)));
        let r2 = res.clone();
        hub::spawn(move || {
            hub::sleep(Duration::from_millis(5));
            r2.set(1);
        });
        let objs: [&dyn Waitable; 3] = [&*ev, &*res, &g];
        assert_eq!(wait_any(&objs), Ok(1));
        assert_eq!(wait_any(&objs), Ok(1), "ready objects return at once");
        let objs2: [&dyn Waitable; 2] = [&*ev, &g];
        assert_eq!(wait_any_timeout(&objs2, Duration::from_millis(1)), None);
        assert_eq!(ev.waiters(), 0, "subscriptions are taken back");
        assert_eq!(wait_any(&objs2), Ok(1));
        assert!(g.is_finished());
        assert!(objs2[1].is_ready());
    });
}

#[test]
fn iwait_yields_in_completion_order_and_stops_at_a_scope() {
    hub::run(|| {
        let evs: Vec<Rc<Event>> = (0..4).map(|_| Rc::new(Event::new())).collect();
        let order = Rc::new(RefCell::new(Vec::new()));
        // Completion order 1, 2, 0, each set only once the previous one was yielded (timers 10 ms
        // apart could fire in one batch on a loaded machine, and then index order would show).
        let (evs2, seen) = (evs.clone(), order.clone());
        hub::spawn(move || {
            for (k, i) in [1usize, 2, 0].into_iter().enumerate() {
                hub::sleep(Duration::from_millis(5));
                evs2[i].set();
                while seen.borrow().len() <= k {
                    hub::sleep(Duration::from_millis(1));
                }
            }
        });
        let objs: Vec<&dyn Waitable> = evs.iter().map(|e| &**e as &dyn Waitable).collect();
        let r = timeout(Duration::from_millis(200), || {
            let mut it = iwait(&objs);
            for i in it.by_ref() {
                order.borrow_mut().push(i);
            }
            it.timed_out()
        });
        assert_eq!(r, Err(greenhub::Elapsed), "event 3 is never set");
        assert_eq!(*order.borrow(), [1, 2, 0]);
    });
}

#[test]
fn killed_multi_waiter_leaves_every_list() {
    hub::run(|| {
        let a = Rc::new(Event::new());
        let b = Rc::new(Event::new());
        let (a2, b2) = (a.clone(), b.clone());
        let g = hub::spawn(move || {
            let objs: [&dyn Waitable; 2] = [&*a2, &*b2];
            wait_any(&objs)
        });
        hub::yield_now();
        assert_eq!((a.waiters(), b.waiters()), (1, 1));
        g.kill();
        assert_eq!((a.waiters(), b.waiters()), (0, 0));
    });
}

#[test]
fn large_group_map_imap_and_join_stay_linear() {
    hub::run(|| {
        let group = Group::new();
        let out = group.map(0..20_000u64, |i| i + 1).unwrap();
        assert_eq!(out.len(), 20_000);
        assert_eq!(out[19_999], 20_000);
        let sum: u64 = group
            .imap_unordered(0..20_000u64, |i| {
                hub::yield_now();
                i
            })
            .map(Result::unwrap)
            .sum();
        assert_eq!(sum, 20_000 * 19_999 / 2);
        for _ in 0..20_000 {
            group.spawn(hub::yield_now);
        }
        group.join().unwrap();
        assert!(group.is_empty());
    });
}

#[test]
fn imap_unordered_reports_panics_and_kills_the_rest_when_dropped() {
    hub::run(|| {
        let pool = Pool::new(3);
        let mut it = pool.imap_unordered(0..10u32, |i| {
            if i == 0 {
                panic!("job 0 fails");
            }
            hub::sleep(Duration::from_secs(60));
            i
        });
        assert!(matches!(it.next(), Some(Err(GreenletError::Panicked(_)))));
        drop(it);
        pool.join().unwrap(); // the sleepers were killed
        assert_eq!(pool.free_count(), 3);
    });
}

#[test]
fn a_member_killing_its_own_group_kills_everyone() {
    hub::run(|| {
        let group = Rc::new(Group::new());
        let g2 = group.clone();
        let killer = group.spawn(move || {
            hub::yield_now();
            g2.kill();
        });
        let others: Vec<_> = (0..3)
            .map(|_| group.spawn(|| hub::sleep(Duration::from_secs(60))))
            .collect();
        assert!(matches!(killer.join(), Err(GreenletError::Killed)));
        for g in others {
            assert!(matches!(g.join(), Err(GreenletError::Killed)));
        }
        assert!(group.is_empty());
    });
}
