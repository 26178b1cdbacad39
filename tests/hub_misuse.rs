//! Deadlocks and misuse have one clear outcome each:
//!
//! - the main greenlet waiting for something nothing can deliver panics with "would block forever
//!   waiting for <what>", naming a join, an Event, a Queue get or an endless sleep;
//! - joining a killed greenlet returns `Err(Killed)`, before or after it started, however often;
//! - killing twice (or killing a finished greenlet) is a no-op: destructors run once;
//! - a destructor that blocks (sleep, Event wait, Queue get, join) while its greenlet is killed at
//!   `hub::run`'s teardown gets an early return — the sleep returns at once, the waits return their
//!   timeout error — and the thread exits; at thread exit without `hub::run` nothing is resumed.

use std::cell::Cell;
use std::panic;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenhub::hub::{self, Builder};
use greenhub::sync::{Event, Queue};
use greenhub::GreenletError;
use support::{panic_message, DropCounter};

mod support;

/// Runs `f` on a fresh thread (so it gets a fresh hub, torn down at exit) and returns its panic
/// message.
fn panic_message_of(f: impl FnOnce() + Send + 'static) -> String {
    let r = std::thread::spawn(f).join();
    panic_message(&*r.expect_err("the thread should have panicked"))
}

fn assert_deadlock_names(m: &str, what: &str) {
    assert!(
        m.contains("would block forever"),
        "not a deadlock report: {m}"
    );
    assert!(
        m.contains("the main greenlet"),
        "does not say who waits: {m}"
    );
    assert!(
        m.contains(&format!("waiting for {what}")),
        "does not name {what:?}: {m}"
    );
}

#[test]
fn deadlock_in_join_names_the_greenlet() {
    let (tx, rx) = std::sync::mpsc::channel();
    let m = panic_message_of(move || {
        let stuck = Rc::new(Event::new());
        let s = stuck.clone();
        let g = Builder::new().name("stuck").spawn(move || s.wait().is_ok());
        tx.send(g.id()).unwrap();
        let _ = g.join();
    });
    let id = rx.recv().unwrap();
    assert_deadlock_names(&m, &format!("greenlet {id} to finish"));
}

#[test]
fn deadlock_in_event_wait_names_the_event() {
    let m = panic_message_of(|| {
        let _ = Event::new().wait();
    });
    assert_deadlock_names(&m, "an Event");
}

#[test]
fn deadlock_in_queue_get_names_the_queue() {
    let m = panic_message_of(|| {
        let q: Queue<u32> = Queue::new();
        let _ = q.get();
    });
    assert_deadlock_names(&m, "a Queue (get)");
}

#[test]
fn deadlock_in_endless_sleep_names_the_sleep() {
    let m = panic_message_of(|| hub::sleep(Duration::MAX));
    assert_deadlock_names(&m, "a sleep");
}

#[test]
fn a_deadlock_panic_is_recoverable_and_the_hub_goes_on() {
    // The panic unwinds the main greenlet's wait; the hub is intact and serves the next call.
    std::thread::spawn(|| {
        let r = panic::catch_unwind(|| {
            let _ = Event::new().wait();
        });
        assert!(r.is_err());
        assert_eq!(hub::spawn(|| 7).join().unwrap(), 7);
        hub::sleep(Duration::from_millis(1));
    })
    .join()
    .unwrap();
}

#[test]
fn joining_a_killed_greenlet_is_err_killed() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        // Killed before it started: the closure is dropped unrun.
        let d = DropCounter(drops.clone());
        let g = hub::spawn(move || {
            let _d = d;
            1
        });
        g.kill();
        assert!(g.is_finished());
        assert!(matches!(
            g.join_timeout(Duration::from_millis(1)),
            Err(GreenletError::Killed)
        ));
        // join_timeout took the outcome; a second join says so clearly.
        let again = panic::catch_unwind(panic::AssertUnwindSafe(|| g.join()));
        assert!(panic_message(&*again.unwrap_err()).contains("already taken"));
        // Killed while parked.
        let d = DropCounter(drops.clone());
        let g = hub::spawn(move || {
            let _d = d;
            hub::sleep(Duration::from_secs(60));
            2
        });
        hub::yield_now();
        assert!(g.is_started());
        g.kill();
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
        // Killed with kill_nowait, joined afterwards.
        let d = DropCounter(drops.clone());
        let g = hub::spawn(move || {
            let _d = d;
            hub::sleep(Duration::from_secs(60));
            3
        });
        hub::yield_now();
        g.kill_nowait();
        assert!(
            !g.is_finished(),
            "kill_nowait does not wait for the unwinding"
        );
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
        assert_eq!(drops.get(), 3);
    });
}

#[test]
fn double_kill_and_killing_the_finished_are_no_ops() {
    hub::run(|| {
        let drops = Rc::new(Cell::new(0));
        let d = DropCounter(drops.clone());
        let g = hub::spawn(move || {
            let _d = d;
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        g.kill();
        g.kill();
        g.kill_nowait();
        assert_eq!(drops.get(), 1);
        assert!(matches!(g.join(), Err(GreenletError::Killed)));

        let g = hub::spawn(|| 5);
        g.kill_nowait();
        g.kill_nowait(); // killed before start twice
        assert!(matches!(g.join(), Err(GreenletError::Killed)));

        let g = hub::spawn(|| 6);
        hub::yield_now();
        assert!(g.is_finished());
        g.kill(); // finished: nothing to do, the value is kept
        g.kill_nowait();
        assert_eq!(g.join().unwrap(), 6);
    });
}

/// What each blocking destructor saw: (what, returned early, how long it blocked).
type Log = Arc<Mutex<Vec<(&'static str, bool, Duration)>>>;

/// A value whose destructor blocks in the way `kind` says.
struct BlocksInDrop {
    kind: &'static str,
    log: Log,
    ev: Rc<Event>,
}

impl Drop for BlocksInDrop {
    fn drop(&mut self) {
        let t0 = Instant::now();
        let early = match self.kind {
            "sleep" => {
                hub::sleep(Duration::from_secs(30));
                t0.elapsed() < Duration::from_secs(30)
            }
            "event" => self.ev.wait().is_err(),
            "queue" => Queue::<u8>::new().get().is_err(),
            "join" => {
                let ev = self.ev.clone();
                let other = hub::spawn(move || {
                    let _ = ev.wait();
                });
                matches!(other.join(), Err(GreenletError::Killed))
            }
            _ => unreachable!(),
        };
        self.log
            .lock()
            .unwrap()
            .push((self.kind, early, t0.elapsed()));
    }
}

const KINDS: [&str; 4] = ["sleep", "event", "queue", "join"];

fn spawn_blockers(log: &Log) -> Vec<greenhub::Greenlet<()>> {
    let ev = Rc::new(Event::new());
    KINDS
        .iter()
        .map(|&kind| {
            let b = BlocksInDrop {
                kind,
                log: log.clone(),
                ev: ev.clone(),
            };
            hub::spawn(move || {
                let _b = b;
                hub::sleep(Duration::from_secs(60));
            })
        })
        .collect()
}

fn assert_all_returned_early(log: &Log) {
    let log = log.lock().unwrap();
    let mut kinds: Vec<_> = log.iter().map(|e| e.0).collect();
    kinds.sort_unstable();
    let mut want = KINDS.to_vec();
    want.sort_unstable();
    assert_eq!(kinds, want, "every blocking destructor ran exactly once");
    for (kind, early, took) in log.iter() {
        assert!(early, "the {kind} in a destructor did not return early");
        assert!(
            *took < Duration::from_secs(5),
            "the {kind} blocked {took:?}"
        );
    }
}

#[test]
fn blocking_in_a_destructor_during_run_teardown_returns_early() {
    let log: Log = Arc::default();
    let l = log.clone();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        hub::run(move || {
            // Detached: hub::run's teardown kills them.
            drop(spawn_blockers(&l));
            hub::yield_now();
        });
        assert_eq!(hub::stats().live, 0);
    })
    .join()
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_all_returned_early(&log);
}

#[test]
fn blocking_destructors_are_not_run_at_thread_exit_without_run() {
    // No hub::run: thread exit abandons the parked greenlets without resuming them (a thread-local
    // they borrow may be gone), so their blocking destructors never run and the thread exits.
    let log: Log = Arc::default();
    let l = log.clone();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        drop(spawn_blockers(&l));
        hub::yield_now();
    })
    .join()
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
}

#[test]
fn blocking_in_a_destructor_during_an_explicit_kill_returns_early() {
    let log: Log = Arc::default();
    let l = log.clone();
    hub::run(move || {
        let gs = spawn_blockers(&l);
        hub::yield_now();
        for g in &gs {
            g.kill();
        }
        for g in gs {
            assert!(matches!(g.join(), Err(GreenletError::Killed)));
        }
    });
    assert_all_returned_early(&log);
}
