//! `sync::mpmc`: cross-thread channels that park greenlets and block plain threads.

use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::sync::mpmc::{self, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

/// Messages sent in the cross-hub test (1,000,000 in debug builds too).
const MESSAGES: u64 = 1_000_000;

#[test]
fn messages_across_two_hubs_each_exactly_once() {
    let (tx, rx) = mpmc::bounded::<u64>(1024);
    let rx2 = rx.clone();
    // Two producer greenlets on hub A, two consumer greenlets on hub B.
    let producer = thread::spawn(move || {
        hub::run(move || {
            let half = MESSAGES / 2;
            let gs: Vec<_> = (0..2u64)
                .map(|k| {
                    let tx = tx.clone();
                    hub::spawn(move || {
                        for i in k * half..(k + 1) * half {
                            tx.send(i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            for g in gs {
                g.join().unwrap();
            }
        })
    });
    let consumer = thread::spawn(move || {
        hub::run(move || {
            let gs: Vec<_> = [rx, rx2]
                .into_iter()
                .map(|rx| {
                    hub::spawn(move || {
                        let (mut n, mut sum, mut xor) = (0u64, 0u64, 0u64);
                        while let Ok(v) = rx.recv() {
                            n += 1;
                            sum += v;
                            xor ^= v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        }
                        (n, sum, xor)
                    })
                })
                .collect();
            gs.into_iter().fold((0, 0, 0), |acc, g| {
                let (n, s, x) = g.join().unwrap();
                (acc.0 + n, acc.1 + s, acc.2 ^ x)
            })
        })
    });
    producer.join().unwrap();
    let (n, sum, xor) = consumer.join().unwrap();
    let want_xor = (0..MESSAGES).fold(0u64, |a, v| a ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    assert_eq!(n, MESSAGES);
    assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
    assert_eq!(xor, want_xor);
}

#[test]
fn a_receiving_greenlet_parks_only_itself() {
    let (tx, rx) = mpmc::unbounded::<u32>();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        tx.send(7).unwrap();
    });
    let ticks = hub::run(move || {
        let ticker = hub::spawn(|| {
            let mut n = 0u32;
            loop {
                hub::sleep(Duration::from_millis(5));
                n += 1;
                if n == 1_000_000 {
                    return n;
                }
            }
        });
        assert_eq!(rx.recv().unwrap(), 7);
        let finished = ticker.is_finished();
        ticker.kill();
        finished
    });
    assert!(!ticks);
    sender.join().unwrap();
}

#[test]
fn disconnection_wakes_parked_receivers_and_senders() {
    let (tx, rx) = mpmc::unbounded::<u32>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        drop(tx);
    });
    hub::run(move || {
        let gs: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                hub::spawn(move || rx.recv())
            })
            .collect();
        for g in gs {
            assert_eq!(g.join().unwrap(), Err(mpmc::RecvError));
        }
    });
    t.join().unwrap();

    let (tx, rx) = mpmc::bounded::<u32>(1);
    tx.send(1).unwrap();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        drop(rx);
    });
    hub::run(move || assert_eq!(tx.send(2), Err(mpmc::SendError(2))));
    t.join().unwrap();
}

#[test]
fn try_and_timeout_variants() {
    let (tx, rx) = mpmc::bounded::<u32>(1);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(1).unwrap();
    assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    hub::run(move || {
        let start = Instant::now();
        assert_eq!(
            tx.send_timeout(3, Duration::from_millis(30)),
            Err(SendTimeoutError::Timeout(3))
        );
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(2));
        assert_eq!(rx.recv_timeout(Duration::from_millis(30)), Ok(1));
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
        // A timeout scope bounds the _timeout variants too.
        let r = greenhub::timeout(Duration::from_millis(20), || {
            rx.recv_timeout(Duration::from_secs(30))
        });
        assert_eq!(r, Err(greenhub::Elapsed));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn plain_threads_block_and_greenlets_park_on_the_same_channel() {
    let (tx, rx) = mpmc::bounded::<u64>(4);
    let (done_tx, done_rx) = std_mpsc::channel();
    // A plain thread receiver and a greenlet receiver share the channel.
    let rx2 = rx.clone();
    let plain = thread::spawn(move || rx2.iter().sum::<u64>());
    let hub_side = thread::spawn(move || {
        let s = hub::run(move || rx.iter().sum::<u64>());
        done_tx.send(()).unwrap();
        s
    });
    for i in 0..10_000u64 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let total = plain.join().unwrap() + hub_side.join().unwrap();
    done_rx.recv().unwrap();
    assert_eq!(total, 10_000 * 9_999 / 2);
}

#[test]
fn select_returns_the_index_and_value() {
    let (tx1, rx1) = mpmc::unbounded::<&'static str>();
    let (tx2, rx2) = mpmc::unbounded::<&'static str>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        tx2.send("two").unwrap();
        thread::sleep(Duration::from_millis(30));
        tx1.send("one").unwrap();
    });
    hub::run(move || {
        assert_eq!(mpmc::select(&[&rx1, &rx2]), Ok((1, "two")));
        assert_eq!(mpmc::select(&[&rx1, &rx2]), Ok((0, "one")));
        assert_eq!(
            mpmc::select_timeout(&[&rx1, &rx2], Duration::from_millis(200)),
            Err(RecvTimeoutError::Disconnected),
            "both senders are gone once the thread ends"
        );
    });
    t.join().unwrap();
}

#[test]
fn bounded_zero_is_a_rendezvous_between_a_thread_and_a_greenlet() {
    // A plain thread's send blocks until the greenlet has taken the value (no buffering).
    let (tx, rx) = mpmc::bounded::<u32>(0);
    let (done_tx, done_rx) = std_mpsc::channel();
    let t = thread::spawn(move || {
        for i in 0..50 {
            tx.send(i).unwrap();
            let _ = done_tx.send(i); // after the hand-over (the hub may be done by the last)
        }
    });
    hub::run(move || {
        for i in 0..50 {
            hub::sleep(Duration::from_millis(1));
            // The thread cannot be further than the value we are about to take.
            assert!(done_rx.try_iter().all(|d| d < i));
            assert_eq!(rx.recv().unwrap(), i);
        }
    });
    t.join().unwrap();
}

#[test]
fn ends_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<mpmc::Sender<String>>();
    check::<mpmc::Receiver<String>>();
}

#[test]
fn greenlets_of_one_hub_ping_pong_through_mpmc() {
    let (a_tx, a_rx) = mpmc::bounded::<u32>(1);
    let (b_tx, b_rx) = mpmc::bounded::<u32>(1);
    let last = hub::run(move || {
        let pong = hub::spawn(move || {
            while let Ok(v) = a_rx.recv() {
                if b_tx.send(v + 1).is_err() {
                    break;
                }
            }
        });
        let mut v = 0;
        for _ in 0..10_000 {
            a_tx.send(v).unwrap();
            v = b_rx.recv().unwrap();
        }
        drop(a_tx);
        pong.join().unwrap();
        v
    });
    assert_eq!(last, 10_000);
}

#[test]
fn a_notified_receiver_killed_before_it_runs_passes_the_value_on() {
    let (tx, rx) = mpmc::unbounded::<u32>();
    let got = hub::run(move || {
        let rx_a = rx.clone();
        let a = hub::spawn(move || rx_a.recv());
        let b = hub::spawn(move || rx.recv());
        hub::yield_now(); // both park, A first in the wait list
        tx.send(42).unwrap(); // notifies A (same hub: woken at once, not yet run)
        a.kill(); // A unwinds without taking the value: the notification must go on to B
        assert!(a.join().is_err());
        b.join_timeout(Duration::from_secs(5))
            .expect("B was never told about the value")
    });
    assert_eq!(got, Ok(42));
}
