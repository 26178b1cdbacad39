//! Greenlet lifecycle: join, panics, kill, destructors, teardown and misuse.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenhub::greenlet::Builder;
use greenhub::{hub, GreenletError};

/// Counts its drops.
struct DropCounter(Rc<Cell<usize>>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The message of a caught panic.
fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

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
            Err(GreenletError::Panicked(p)) => assert_eq!(message(&*p), "boom 42"),
            other => panic!("expected the panic back, got {other:?}"),
        }
    });
}

#[test]
fn run_resumes_the_panic_of_its_function() {
    let r = panic::catch_unwind(|| hub::run(|| panic!("inside run")));
    assert_eq!(message(&*r.unwrap_err()), "inside run");
    // The hub is still usable afterwards.
    assert_eq!(hub::run(|| 5), 5);
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
        assert!(message(&*again.unwrap_err()).contains("already taken"));
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
            *o.borrow_mut() = message(&*r.unwrap_err());
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

#[test]
fn blocking_or_killing_inside_the_hub_panics_clearly() {
    let seen = hub::run(|| {
        let out = Rc::new(std::cell::RefCell::new(Vec::new()));
        let victim = Rc::new(hub::spawn(|| hub::sleep(Duration::from_secs(3600))));
        hub::yield_now();
        let (o, v) = (out.clone(), victim.clone());
        hub::run_callback(move || {
            let r = panic::catch_unwind(AssertUnwindSafe(|| hub::sleep(Duration::from_millis(1))));
            o.borrow_mut().push(message(&*r.unwrap_err()));
            let r = panic::catch_unwind(AssertUnwindSafe(|| v.kill()));
            o.borrow_mut().push(message(&*r.unwrap_err()));
            let r = panic::catch_unwind(AssertUnwindSafe(hub::yield_now));
            o.borrow_mut().push(message(&*r.unwrap_err()));
        });
        hub::sleep(Duration::from_millis(5));
        assert!(!victim.is_finished(), "the refused kill did not happen");
        let seen = out.borrow().clone();
        seen
    });
    assert_eq!(seen.len(), 3);
    for m in &seen {
        assert!(m.contains("inside the hub"), "unclear message: {m}");
    }
}

#[test]
fn main_waiting_forever_is_a_clear_deadlock_panic() {
    let r = panic::catch_unwind(|| {
        hub::run(|| {
            let g = Builder::new()
                .name("sleeper")
                .spawn(|| hub::sleep(Duration::MAX));
            g.join().ok();
        })
    });
    let m = message(&*r.unwrap_err());
    assert!(m.contains("would block forever"), "{m}");
    assert!(m.contains("to finish"), "says what it waited for: {m}");
}

#[test]
fn teardown_at_thread_exit_abandons_the_started_and_drops_the_unstarted() {
    // Without hub::run, thread exit resumes nothing (a parked greenlet may borrow a thread-local
    // that is already destroyed; tests/thread_exit.rs): the started are abandoned with their
    // destructors unrun, the closures of the unstarted are dropped.
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    std::thread::spawn(|| {
        for i in 0..50 {
            hub::spawn(move || {
                let _c = Counted;
                hub::sleep(Duration::from_secs(3600 + i));
            });
        }
        hub::yield_now(); // the 50 park
        let c = Counted;
        let _never = hub::spawn_later(Duration::from_secs(3600), move || drop(c));
    })
    .join()
    .unwrap();
    assert_eq!(
        DROPS.load(Ordering::SeqCst),
        1,
        "only the unstarted closure's capture is dropped at thread exit"
    );
}

#[test]
fn use_after_the_hub_is_gone_panics_clearly() {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    struct Late(std::sync::mpsc::Sender<String>);
    impl Drop for Late {
        fn drop(&mut self) {
            let r = panic::catch_unwind(|| {
                hub::spawn(|| ());
            });
            let m = r
                .err()
                .map(|p| message(&*p))
                .unwrap_or_else(|| "no panic".into());
            self.0.send(m).unwrap();
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    std::thread::spawn(move || {
        // Registered before the hub exists, so destroyed after it (destructors run in reverse).
        LATE.with(|l| *l.borrow_mut() = Some(Late(tx)));
        hub::run(hub::yield_now);
    })
    .join()
    .unwrap();
    let m = rx.recv().unwrap();
    assert!(m.contains("torn down"), "{m}");
}

#[test]
fn hubs_are_per_thread() {
    let counts = Arc::new(AtomicUsize::new(0));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let c = counts.clone();
            std::thread::spawn(move || {
                hub::run(move || {
                    let gs: Vec<_> = (0..100)
                        .map(|_| {
                            let c = c.clone();
                            hub::spawn(move || {
                                hub::yield_now();
                                c.fetch_add(1, Ordering::SeqCst);
                            })
                        })
                        .collect();
                    for g in gs {
                        g.join().unwrap();
                    }
                    hub::stats().spawned
                })
            })
        })
        .collect();
    for t in ts {
        assert!(t.join().unwrap() >= 101);
    }
    assert_eq!(counts.load(Ordering::SeqCst), 400);
}

#[test]
fn config_install_refuses_a_second_hub() {
    std::thread::spawn(|| {
        hub::Config::new()
            .stack_size(256 << 10)
            .hub_stack_size(128 << 10)
            .install()
            .unwrap();
        let e = hub::Config::new().install().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(hub::run(|| hub::spawn(|| 3).join().unwrap()), 3);
    })
    .join()
    .unwrap();
}

/// A tracing writer that appends to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_nobody_joins_is_reported_through_tracing() {
    let cap = Capture::default();
    let sink = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        hub::run(|| {
            // Detached before it runs: reported when it finishes.
            drop(
                Builder::new()
                    .name("doomed")
                    .spawn(|| panic!("lost panic one")),
            );
            // Finished before its handle is dropped: reported at the drop.
            let g = hub::spawn(|| panic!("lost panic two"));
            hub::yield_now();
            assert!(g.is_finished());
            drop(g);
            // Joined: not reported, the joiner got it.
            let joined = hub::spawn(|| panic!("joined panic"));
            assert!(joined.join().is_err());
        });
    });
    let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("(doomed) panicked and nobody joined it: lost panic one"),
        "{out}"
    );
    assert!(
        out.contains("panicked and nobody joined it: lost panic two"),
        "{out}"
    );
    assert!(
        !out.contains("joined panic"),
        "a joined panic is the joiner's, not the log's: {out}"
    );
}
