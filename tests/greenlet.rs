//! Greenlets: spawn and join, names and states, panics, kill and destructors, join timeouts.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use greenhub::greenlet::Builder;
use greenhub::{hub, GreenletError};
use support::{panic_message, DropCounter};

mod support;

#[test]
fn join_returns_values_in_any_order() {
    hub::run(|| {
        let gs: Vec<_> = (0..100u32).map(|i| hub::spawn(move || i * 2)).collect();
        for (i, g) in gs.into_iter().enumerate().rev() {
            assert_eq!(g.join().unwrap(), i as u32 * 2);
        }
    });
}

#[test]
fn names_ids_and_states() {
    hub::run(|| {
        let g = Builder::new()
            .name("worker-7")
            .spawn(greenhub::greenlet::current_id);
        assert_eq!(g.name(), Some("worker-7"));
        assert!(!g.is_started());
        assert!(!g.is_finished());
        let id = g.id();
        let other = hub::spawn(|| ());
        assert_ne!(id, other.id());
        hub::yield_now();
        assert!(g.is_finished());
        assert_eq!(
            g.join().unwrap(),
            id,
            "current_id inside a greenlet is its own id"
        );
        assert_ne!(greenhub::greenlet::current_id(), id);
    });
}

#[test]
fn panic_is_isolated_and_returned_by_join() {
    hub::run(|| {
        let finished = Rc::new(Cell::new(0));
        let others: Vec<_> = (0..10)
            .map(|_| {
                let f = finished.clone();
                hub::spawn(move || {
                    hub::yield_now();
                    f.set(f.get() + 1);
                })
            })
            .collect();
        let bad = hub::spawn(|| -> u32 {
            hub::yield_now();
            panic!("boom {}", 42)
        });
        for g in others {
            g.join().unwrap();
        }
        assert_eq!(finished.get(), 10);
        match bad.join() {
            Err(GreenletError::Panicked(p)) => assert_eq!(panic_message(&*p), "boom 42"),
            other => panic!("expected the panic back, got {other:?}"),
        }
    });
}

#[test]
fn kill_never_started_drops_the_closure_without_running_it() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let ran = Rc::new(Cell::new(false));
        let (d, r) = (DropCounter(drops.clone()), ran.clone());
        let g = hub::spawn(move || {
            let _d = d;
            r.set(true);
        });
        g.kill();
        assert!(g.is_finished());
        assert!(!ran.get());
        assert_eq!(drops.get(), 1);
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
    });
}

#[test]
fn kill_parked_and_sleeping_greenlets_runs_their_destructors() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let after = Rc::new(Cell::new(0));
        let mut gs = Vec::new();
        for i in 0..20 {
            let (d, a) = (DropCounter(drops.clone()), after.clone());
            gs.push(hub::spawn(move || {
                let _outer = d;
                let _inner = DropCounter(a.clone());
                if i % 2 == 0 {
                    hub::sleep(Duration::from_secs(3600));
                } else {
                    hub::sleep(Duration::MAX); // parked with no deadline at all
                }
                a.set(1000); // never reached
            }));
        }
        hub::yield_now(); // everyone is parked now
        for g in &gs {
            assert!(g.is_started() && !g.is_finished());
        }
        for g in &gs {
            g.kill();
            assert!(g.is_finished());
        }
        assert_eq!(drops.get(), 20);
        assert_eq!(
            after.get(),
            20,
            "inner destructors ran, the code after the sleep did not"
        );
        for g in gs {
            assert!(matches!(g.join(), Err(GreenletError::Killed)));
        }
    });
}

#[test]
fn kill_unwinds_nested_spawned_greenlets_at_run_end() {
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    hub::run(move || {
        // Greenlets spawning greenlets, all left parked; run() must kill all of them.
        fn nest(depth: u32, drops: Rc<Cell<usize>>) {
            let _d = DropCounter(drops.clone());
            if depth > 0 {
                let child = drops.clone();
                hub::spawn(move || nest(depth - 1, child));
            }
            hub::sleep(Duration::from_secs(3600));
        }
        let dd = d.clone();
        hub::spawn(move || nest(5, dd));
        hub::sleep(Duration::from_millis(5));
        assert_eq!(d.get(), 0);
    });
    assert_eq!(
        drops.get(),
        6,
        "all six nested greenlets were killed and unwound when run returned"
    );
}

#[test]
fn swallowing_the_kill_does_not_save_a_greenlet() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let caught = Rc::new(Cell::new(0));
        let (d, c) = (drops.clone(), caught.clone());
        let g = hub::spawn(move || {
            let _d = DropCounter(d);
            // Stubborn code: catches the kill and goes back to sleep.
            let r = panic::catch_unwind(AssertUnwindSafe(|| hub::sleep(Duration::from_secs(3600))));
            if r.is_err() {
                c.set(c.get() + 1);
            }
            hub::sleep(Duration::from_secs(3600)); // killed again here
            c.set(c.get() + 100); // never reached
        });
        hub::yield_now();
        g.kill();
        assert!(g.is_finished());
        assert_eq!(
            caught.get(),
            1,
            "the kill was caught once and delivered again at the next blocking point"
        );
        assert_eq!(drops.get(), 1);
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
    });
}

#[test]
fn kill_self_unwinds_at_once() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let went_on = Rc::new(Cell::new(false));
        let cell: Rc<std::cell::RefCell<Option<greenhub::Greenlet<()>>>> =
            Rc::new(std::cell::RefCell::new(None));
        let (d, c, w) = (drops.clone(), cell.clone(), went_on.clone());
        let g = hub::spawn(move || {
            let _d = DropCounter(d);
            hub::yield_now();
            let me = c.borrow_mut().take().unwrap();
            me.kill_nowait();
            w.set(true);
        });
        *cell.borrow_mut() = Some(g);
        hub::yield_now();
        hub::yield_now();
        assert!(cell.borrow().is_none(), "the greenlet took its own handle");
        assert!(
            !went_on.get(),
            "a greenlet that kills itself does not run on"
        );
        assert_eq!(drops.get(), 1);
        assert_eq!(
            hub::stats().live,
            1,
            "only the greenlet running this closure is left"
        );
    });
}

#[test]
fn join_timeout_gives_up_and_can_retry() {
    hub::run(|| {
        let g = hub::spawn(|| {
            hub::sleep(Duration::from_millis(60));
            7
        });
        let t0 = std::time::Instant::now();
        assert!(matches!(
            g.join_timeout(Duration::from_millis(10)),
            Err(GreenletError::TimedOut)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(10));
        assert!(!g.is_finished());
        assert_eq!(g.join_timeout(Duration::from_secs(5)).unwrap(), 7);
        let again =
            panic::catch_unwind(AssertUnwindSafe(|| g.join_timeout(Duration::from_secs(1))));
        assert!(panic_message(&*again.unwrap_err()).contains("already taken"));
    });
}

#[test]
fn join_self_message() {
    // A greenlet joining itself through a shared handle panics with a message that says so.
    let msg = hub::run(|| {
        let cell: Rc<std::cell::RefCell<Option<greenhub::Greenlet<()>>>> =
            Rc::new(std::cell::RefCell::new(None));
        let c = cell.clone();
        let out = Rc::new(std::cell::RefCell::new(String::new()));
        let o = out.clone();
        let g = hub::spawn(move || {
            hub::yield_now();
            let guard = c.borrow();
            let me = guard.as_ref().unwrap();
            let r =
                panic::catch_unwind(AssertUnwindSafe(|| me.join_timeout(Duration::from_secs(1))));
            *o.borrow_mut() = panic_message(&*r.unwrap_err());
        });
        let id = g.id();
        *cell.borrow_mut() = Some(g);
        hub::sleep(Duration::from_millis(1));
        let m = out.borrow().clone();
        (id, m)
    });
    assert!(msg.1.contains("tried to join itself"), "got {:?}", msg.1);
    assert!(msg.1.contains(&format!("greenlet {}", msg.0)));
}
