//! greenlet_local!: one value per greenlet, made lazily, dropped when the greenlet finishes, is
//! killed, or its hub is torn down.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenhub::greenlet::current_id;
use greenhub::local::AccessError;
use greenhub::{greenlet_local, hub};

#[test]
fn each_greenlet_sees_its_own_value_across_switches() {
    greenlet_local! {
        static NAME: RefCell<String> = RefCell::new(String::new());
    }
    hub::run(|| {
        let gs: Vec<_> = (0..4)
            .map(|i| {
                hub::spawn(move || {
                    NAME.with(|n| *n.borrow_mut() = format!("g{i}"));
                    let mut seen = Vec::new();
                    for _ in 0..3 {
                        hub::yield_now(); // the others write theirs meanwhile
                        seen.push(NAME.with(|n| n.borrow().clone()));
                    }
                    seen
                })
            })
            .collect();
        for (i, g) in gs.into_iter().enumerate() {
            assert_eq!(g.join().unwrap(), vec![format!("g{i}"); 3]);
        }
        assert_eq!(
            NAME.with(|n| n.borrow().clone()),
            "",
            "run's greenlet has its own"
        );
    });
}

#[test]
fn initialised_lazily_once_per_greenlet_that_uses_it() {
    static INITS: AtomicUsize = AtomicUsize::new(0);
    greenlet_local! {
        static V: u32 = { INITS.fetch_add(1, Ordering::SeqCst); 5 };
    }
    hub::run(|| {
        let users: Vec<_> = (0..3)
            .map(|_| hub::spawn(|| V.with(|v| *v) + V.with(|v| *v)))
            .collect();
        let idle: Vec<_> = (0..10).map(|_| hub::spawn(hub::yield_now)).collect();
        for g in users {
            assert_eq!(g.join().unwrap(), 10);
        }
        for g in idle {
            g.join().unwrap();
        }
        assert_eq!(
            INITS.load(Ordering::SeqCst),
            3,
            "one init per greenlet that used it"
        );
    });
}

#[test]
fn the_main_greenlet_has_its_own_value() {
    greenlet_local! {
        static N: Cell<u32> = Cell::new(0);
    }
    // No hub::run: this is the thread's main greenlet.
    N.with(|n| n.set(41));
    let g = hub::spawn(|| N.with(Cell::get));
    assert_eq!(g.join().unwrap(), 0);
    N.with(|n| n.set(n.get() + 1));
    assert_eq!(N.with(Cell::get), 42);
}

/// Records, on drop, which greenlet was running.
struct Witness(Arc<Mutex<Vec<(String, u64)>>>, String);

impl Drop for Witness {
    fn drop(&mut self) {
        let id = std::panic::catch_unwind(current_id).unwrap_or(0);
        self.0.lock().unwrap().push((self.1.clone(), id));
    }
}

greenlet_local! {
    static WITNESS: RefCell<Option<Witness>> = RefCell::new(None);
}

fn arm(log: &Arc<Mutex<Vec<(String, u64)>>>, name: &str) {
    WITNESS.with(|w| *w.borrow_mut() = Some(Witness(log.clone(), name.to_owned())));
}

#[test]
fn dropped_when_the_greenlet_finishes_on_its_own_stack_before_join_returns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    hub::run(move || {
        let l3 = l2.clone();
        let g = hub::spawn(move || {
            arm(&l3, "worker");
            current_id()
        });
        let id = g.id();
        assert_eq!(g.join().unwrap(), id);
        assert_eq!(*l2.lock().unwrap(), [("worker".to_owned(), id)]);
    });
}

#[test]
fn dropped_when_the_greenlet_is_killed_or_panics() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    hub::run(move || {
        let l3 = l2.clone();
        let victim = hub::spawn(move || {
            arm(&l3, "killed");
            hub::sleep(Duration::from_secs(60));
        });
        let l4 = l2.clone();
        let panicker = hub::spawn(move || {
            arm(&l4, "panicked");
            hub::yield_now();
            panic!("boom");
        });
        hub::yield_now();
        let (vid, pid) = (victim.id(), panicker.id());
        victim.kill();
        assert!(panicker.join().is_err());
        let mut got = l2.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [("killed".to_owned(), vid), ("panicked".to_owned(), pid)],
            "each destructor ran on its own greenlet"
        );
    });
}

#[test]
fn at_thread_exit_the_main_greenlets_values_drop_and_a_parked_workers_are_abandoned() {
    // Thread exit without hub::run resumes no greenlet (a parked one may borrow a thread-local
    // that is already destroyed): its greenlet-local values are leaked with it, never dropped on
    // a stack that is gone. The main greenlet's values are plain values: they drop, after the hub
    // is torn down (so `current_id` there panics and the witness records 0).
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    std::thread::spawn(move || {
        arm(&l2, "main");
        let l3 = l2.clone();
        let parked = hub::spawn(move || {
            arm(&l3, "parked");
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        drop(parked); // detached, still parked when the thread exits
        assert!(l2.lock().unwrap().is_empty());
    })
    .join()
    .unwrap();
    let got = log.lock().unwrap().clone();
    assert_eq!(got, [("main".to_owned(), 0)]);
}

#[test]
fn under_hub_run_workers_values_drop_when_they_are_killed_at_the_end() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let parked_id = std::thread::spawn(move || {
        hub::run(move || {
            let l3 = l2.clone();
            let parked = hub::spawn(move || {
                arm(&l3, "parked");
                hub::sleep(Duration::from_secs(60));
            });
            hub::yield_now();
            parked.id() // still parked when run's closure returns: run kills it
        })
    })
    .join()
    .unwrap();
    let got = log.lock().unwrap().clone();
    assert_eq!(
        got,
        [("parked".to_owned(), parked_id)],
        "dropped on its own greenlet"
    );
}

#[test]
fn access_during_destruction_is_an_error_not_a_fresh_value() {
    greenlet_local! {
        static OTHER: Cell<u32> = Cell::new(1);
        static PROBE: Probe = Probe;
    }
    static RESULT: Mutex<Option<Result<u32, AccessError>>> = Mutex::new(None);
    struct Probe;
    impl Drop for Probe {
        fn drop(&mut self) {
            *RESULT.lock().unwrap() = Some(OTHER.try_with(Cell::get));
        }
    }
    hub::run(|| {
        hub::spawn(|| {
            PROBE.with(|_| ());
            OTHER.with(|o| o.set(2));
        })
        .join()
        .unwrap();
        assert_eq!(*RESULT.lock().unwrap(), Some(Err(AccessError)));
    });
}

#[test]
fn a_panicking_destructor_fails_the_join() {
    struct Bad;
    impl Drop for Bad {
        fn drop(&mut self) {
            panic!("bad destructor");
        }
    }
    greenlet_local! {
        static BAD: Bad = Bad;
    }
    hub::run(|| {
        let err = hub::spawn(|| BAD.with(|_| 7)).join().unwrap_err();
        assert!(err.to_string().contains("bad destructor"), "{err}");
    });
}

#[test]
fn initialiser_and_closure_may_block_and_nest() {
    greenlet_local! {
        static BASE: u64 = { hub::sleep(Duration::from_millis(2)); current_id() };
        static DERIVED: u64 = BASE.with(|b| b * 10);
    }
    hub::run(|| {
        let gs: Vec<_> = (0..3)
            .map(|_| {
                hub::spawn(|| {
                    DERIVED.with(|d| {
                        hub::sleep(Duration::from_millis(1)); // blocking inside `with`
                        BASE.with(|b| (*d, *b))
                    })
                })
            })
            .collect();
        for g in gs {
            let id = g.id();
            assert_eq!(g.join().unwrap(), (id * 10, id));
        }
    });
}

#[test]
fn inside_the_hub_context_it_panics_clearly() {
    greenlet_local! {
        static X: u8 = 0;
    }
    let msg = Arc::new(Mutex::new(String::new()));
    let m2 = msg.clone();
    hub::run(move || {
        hub::run_callback(move || {
            let e = std::panic::catch_unwind(|| X.with(|_| ())).unwrap_err();
            *m2.lock().unwrap() = e.downcast_ref::<String>().cloned().unwrap_or_default();
        });
        hub::sleep(Duration::from_millis(5)); // the loop runs the callback meanwhile
    });
    let msg = msg.lock().unwrap();
    assert!(msg.contains("inside the hub"), "{msg}");
}

#[test]
fn cell_and_refcell_shortcuts_act_on_the_running_greenlets_value() {
    greenlet_local! {
        static COUNT: Cell<u32> = Cell::new(0);
        static ITEMS: RefCell<Vec<u64>> = RefCell::new(Vec::new());
    }
    hub::run(|| {
        COUNT.set(5);
        ITEMS.with_borrow_mut(|v| v.push(current_id()));
        let g = hub::spawn(|| {
            COUNT.set(COUNT.get() + 1);
            ITEMS.set(vec![current_id()]);
            hub::yield_now();
            (COUNT.replace(9), ITEMS.take())
        });
        let id = g.id();
        hub::yield_now();
        assert_eq!(COUNT.get(), 5);
        assert_eq!(g.join().unwrap(), (1, vec![id]));
        assert_eq!(ITEMS.with_borrow(|v| v.clone()), [current_id()]);
        assert_eq!(COUNT.take(), 5);
    });
}
