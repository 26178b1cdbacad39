//! The hub: `hub::run`, one hub per thread, `Config`, teardown at thread exit, clear panics for
//! blocking inside the hub or after it is gone, and unjoined panics reported through tracing.

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use greenhub::greenlet::Builder;
use greenhub::hub;
use support::panic_message;

mod support;

#[test]
fn run_resumes_the_panic_of_its_function() {
    let r = panic::catch_unwind(|| hub::run(|| panic!("inside run")));
    assert_eq!(panic_message(&*r.unwrap_err()), "inside run");
    // The hub is still usable afterwards.
    assert_eq!(hub::run(|| 5), 5);
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
            o.borrow_mut().push(panic_message(&*r.unwrap_err()));
            let r = panic::catch_unwind(AssertUnwindSafe(|| v.kill()));
            o.borrow_mut().push(panic_message(&*r.unwrap_err()));
            let r = panic::catch_unwind(AssertUnwindSafe(hub::yield_now));
            o.borrow_mut().push(panic_message(&*r.unwrap_err()));
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
    let m = panic_message(&*r.unwrap_err());
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
                .map(|p| panic_message(&*p))
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

#[test]
fn yields_run_greenlets_round_robin_through_growth_and_wrap_around() {
    // The ready queue is a ring that starts at 16 slots and doubles: 16 greenlets fill it with
    // main (17 entries: a growth), then a burst of 40 more spawned while the front has moved
    // (a growth with the live range wrapped), then everyone yields in turn. Each turn must be
    // FIFO: every round visits the greenlets in spawn order.
    let order = hub::run(|| {
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        let spawn = |i: usize, handles: &mut Vec<_>| {
            let o = order.clone();
            handles.push(hub::spawn(move || {
                for round in 0..3 {
                    o.borrow_mut().push((round, i));
                    hub::yield_now();
                }
            }));
        };
        for i in 0..16 {
            spawn(i, &mut handles);
        }
        hub::yield_now(); // round 0 of the first 16 runs; the front has moved on
        for i in 16..56 {
            spawn(i, &mut handles);
        }
        for h in handles {
            h.join().unwrap();
        }
        Rc::try_unwrap(order).unwrap().into_inner()
    });
    let mut expected: Vec<(usize, usize)> = (0..16).map(|i| (0, i)).collect();
    // Main yielded behind the first 16 and spawned the rest after their first turn: the first
    // 16 run their round 1 before the newcomers' round 0, and so on, each group in order.
    expected.extend((0..16).map(|i| (1, i)));
    expected.extend((16..56).map(|i| (0, i)));
    expected.extend((0..16).map(|i| (2, i)));
    expected.extend((16..56).map(|i| (1, i)));
    expected.extend((16..56).map(|i| (2, i)));
    assert_eq!(order, expected);
}
