//! `hub::Handle`: remote spawns, joins across hubs and threads, coalesced wake-ups, teardown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use greenhub::hub::{self, Handle};
use greenhub::sync::mpmc;
use greenhub::GreenletError;

/// Starts a hub thread that runs until `stop` is dropped; returns its handle.
fn hub_thread() -> (Handle, mpmc::Sender<()>, thread::JoinHandle<()>) {
    let (htx, hrx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpmc::bounded::<()>(1);
    let t = thread::spawn(move || {
        hub::run(move || {
            htx.send(hub::handle()).unwrap();
            // A remote wait: the hub idles in epoll_wait, not reported as a deadlock.
            let _ = stop_rx.recv();
        })
    });
    (hrx.recv().unwrap(), stop_tx, t)
}

#[test]
fn four_hubs_thousand_spawns_each_joined_from_a_fifth_thread() {
    let hubs: Vec<_> = (0..4).map(|_| hub_thread()).collect();
    let handles: Vec<Handle> = hubs.iter().map(|h| h.0.clone()).collect();
    let joiner = thread::spawn(move || {
        let mut gs = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            for j in 0..1000u64 {
                gs.push(h.spawn(move || {
                    hub::yield_now();
                    (i as u64) * 1000 + j
                }));
            }
        }
        gs.into_iter().map(|g| g.join().unwrap()).sum::<u64>()
    });
    let sum = joiner.join().unwrap();
    let n = 4000u64;
    assert_eq!(sum, n * (n - 1) / 2);
    for (_, stop, t) in hubs {
        drop(stop);
        t.join().unwrap();
    }
}

#[test]
fn join_from_a_greenlet_on_another_hub_parks_only_it() {
    let (h, stop, t) = hub_thread();
    let ticks = hub::run(move || {
        let remote = h.spawn(|| {
            hub::sleep(Duration::from_millis(100));
            "done"
        });
        let ticker = hub::spawn(|| {
            let mut n = 0;
            while n < 1000 {
                hub::sleep(Duration::from_millis(5));
                n += 1;
            }
            n
        });
        assert_eq!(remote.join().unwrap(), "done");
        let ticks_so_far = ticker.is_finished();
        ticker.kill();
        ticks_so_far
    });
    assert!(!ticks);
    drop(stop);
    t.join().unwrap();
}

#[test]
fn a_panic_comes_back_to_the_joiner() {
    let (h, stop, t) = hub_thread();
    let g = h.spawn(|| -> u32 { panic!("remote boom") });
    match g.join() {
        Err(GreenletError::Panicked(p)) => {
            assert_eq!(p.downcast_ref::<&str>().copied(), Some("remote boom"))
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    drop(stop);
    t.join().unwrap();
}

#[test]
fn a_burst_of_remote_spawns_costs_about_one_wakeup() {
    let (htx, hrx) = mpsc::channel();
    let sent = Arc::new(AtomicBool::new(false));
    let sent2 = sent.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let t = thread::spawn(move || {
        hub::run(move || {
            htx.send(hub::handle()).unwrap();
            // Hold the hub (its loop does not run) until the whole burst has been sent.
            while !sent2.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            hub::sleep(Duration::from_millis(20));
        })
    });
    let h: Handle = hrx.recv().unwrap();
    let before = h.wakeups();
    let gs: Vec<_> = (0..1000)
        .map(|_| {
            let ran = ran.clone();
            h.spawn(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    sent.store(true, Ordering::SeqCst);
    for g in gs {
        g.join().unwrap(); // a plain thread: joins unpark it, they never wake the hub
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1000);
    assert_eq!(
        h.wakeups() - before,
        1,
        "1000 spawns sent while the hub was busy must cost exactly one wake-up"
    );
    t.join().unwrap();
}

#[test]
fn join_timeout_then_join() {
    let (h, stop, t) = hub_thread();
    let g = h.spawn(|| {
        hub::sleep(Duration::from_millis(150));
        5
    });
    let start = Instant::now();
    assert!(matches!(
        g.join_timeout(Duration::from_millis(30)),
        Err(GreenletError::TimedOut)
    ));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(2));
    assert_eq!(g.join().unwrap(), 5);
    drop(stop);
    t.join().unwrap();
}

#[test]
fn spawns_on_a_dead_hub_report_killed_and_drop_their_closure() {
    let (h, stop, t) = hub_thread();
    drop(stop);
    t.join().unwrap();
    assert!(h.is_closed());
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let f = Flag(dropped.clone());
    let g = h.spawn(move || drop(f));
    assert!(matches!(g.join(), Err(GreenletError::Killed)));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_main_greenlet_waiting_on_a_remote_join_is_not_a_deadlock() {
    // The main greenlet's hub has nothing else to do while it waits: the remote wait must keep it
    // polling instead of reporting "would block forever".
    let (h, stop, t) = hub_thread();
    hub::run(move || {
        let g = h.spawn(|| {
            hub::sleep(Duration::from_millis(50));
            1
        });
        assert_eq!(g.join().unwrap(), 1);
    });
    drop(stop);
    t.join().unwrap();
}

#[test]
fn a_remote_kill_unwinds_the_greenlet_and_join_reports_it() {
    let (h, stop, t) = hub_thread();
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let f = Flag(dropped.clone());
    let g = h.spawn(move || {
        let _f = f;
        started_tx.send(()).unwrap();
        hub::sleep(Duration::from_secs(3600));
    });
    started_rx.recv().unwrap();
    g.kill();
    assert!(matches!(g.join(), Err(GreenletError::Killed)));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // Killing a finished greenlet does nothing.
    let done = h.spawn(|| 3);
    while !done.is_finished() {
        thread::sleep(Duration::from_millis(1));
    }
    done.kill();
    assert_eq!(done.join().unwrap(), 3);
    drop(stop);
    t.join().unwrap();
}

#[test]
fn spawn_named_names_the_greenlet() {
    let (h, stop, t) = hub_thread();
    let g = h.spawn_named("remote-worker", || {
        hub::run_info()
            .iter()
            .any(|i| i.name.as_deref() == Some("remote-worker"))
    });
    assert!(g.join().unwrap());
    drop(stop);
    t.join().unwrap();
}
