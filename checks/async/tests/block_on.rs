//! hub::block_on: async code on a greenlet, parking only that greenlet, woken from any thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use greenhub::hub;
use tokio::sync::Notify;

/// A future that returns Ready once `done` is set, counting its polls and publishing its waker.
struct Flag {
    done: Arc<AtomicBool>,
    polls: Rc<Cell<u32>>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Future for Flag {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls.set(self.polls.get() + 1);
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.done.load(Ordering::SeqCst) {
            Poll::Ready(self.polls.get())
        } else {
            Poll::Pending
        }
    }
}

/// Greenlets that fill the shared stack with big arrays across switches, checking them each time:
/// while they run, the parked greenlet's addresses hold their bytes.
fn smash_the_stack(n: u8) -> Vec<hub::Greenlet<()>> {
    (0..n)
        .map(|i| {
            hub::spawn(move || {
                let mut buf = [i; 64 * 1024];
                for round in 0..3u8 {
                    buf.iter_mut().for_each(|b| *b = i ^ round);
                    black_box(&mut buf);
                    hub::yield_now();
                    assert!(buf.iter().all(|&b| b == i ^ round), "stack bytes changed");
                }
            })
        })
        .collect()
}

#[test]
fn a_tokio_notify_awaited_through_block_on_survives_other_greenlets_on_the_stack() {
    // One shared stack region, so the waiter's addresses really are run over while it is parked.
    std::thread::spawn(notify_survives_others_on_one_region)
        .join()
        .unwrap();
}

fn notify_survives_others_on_one_region() {
    hub::Config::new().max_stacks(1).install().unwrap();
    hub::run(|| {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        let polled = Rc::new(Cell::new(false));
        let p2 = polled.clone();
        let waiter = hub::spawn(move || {
            let big = [7u8; 16 * 1024]; // a deep frame of our own, so our slice is large
            black_box(&big);
            let got = hub::block_on(async move {
                let notified = n.notified(); // the intrusive waiter node, inside the boxed future
                p2.set(true);
                notified.await;
                big[100] as u32 + 1
            });
            black_box(&big);
            got
        });
        hub::yield_now(); // the waiter polls once: its node is registered in `notify`
        assert!(polled.get());
        let saves = hub::stats().slice_saves;
        for g in smash_the_stack(4) {
            g.join().unwrap();
        }
        assert!(
            hub::stats().slice_saves > saves,
            "the waiter's slice was never copied away: the test proves nothing"
        );
        // notify_waiters wakes only registered nodes: a node lost or overwritten would hang here.
        notify.notify_waiters();
        assert_eq!(waiter.join_timeout(Duration::from_secs(10)).unwrap(), 8);
    });
}

#[test]
fn woken_from_another_os_thread() {
    hub::run(|| {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        let waiter = hub::spawn(move || hub::block_on(async move { n.notified().await }));
        let ticker = hub::spawn(|| {
            let mut ticks = 0;
            for _ in 0..5 {
                hub::sleep(Duration::from_millis(2));
                ticks += 1;
            }
            ticks
        });
        hub::yield_now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            notify.notify_waiters();
        });
        waiter.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            ticker.join().unwrap(),
            5,
            "the hub kept running other greenlets"
        );
        t.join().unwrap();
    });
}

#[test]
fn many_wakes_from_this_hub_are_coalesced_into_one_poll() {
    hub::run(|| {
        let done = Arc::new(AtomicBool::new(false));
        let polls = Rc::new(Cell::new(0));
        let waker = Arc::new(Mutex::new(None));
        let fut = Flag {
            done: done.clone(),
            polls: polls.clone(),
            waker: waker.clone(),
        };
        let g = hub::spawn(move || hub::block_on(fut));
        hub::yield_now();
        assert_eq!(polls.get(), 1);
        let w = waker.lock().unwrap().clone().unwrap();
        for _ in 0..1000 {
            w.wake_by_ref();
        }
        hub::yield_now(); // the woken greenlet polls (still Pending) and parks again
        assert_eq!(polls.get(), 2, "1000 wakes while parked made one poll");
        done.store(true, Ordering::SeqCst);
        w.wake();
        assert_eq!(g.join().unwrap(), 3);
    });
}

#[test]
fn a_waker_called_many_times_from_other_threads_finishes_with_bounded_polls() {
    hub::run(|| {
        let done = Arc::new(AtomicBool::new(false));
        let polls = Rc::new(Cell::new(0));
        let waker = Arc::new(Mutex::new(None));
        let fut = Flag {
            done: done.clone(),
            polls: polls.clone(),
            waker: waker.clone(),
        };
        let g = hub::spawn(move || hub::block_on(fut));
        hub::yield_now();
        let w = waker.lock().unwrap().clone().unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (w, wakes, done) = (w.clone(), wakes.clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..30_000 {
                        if i == 29_999 {
                            done.store(true, Ordering::SeqCst);
                        }
                        w.wake_by_ref();
                        wakes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let total = g.join_timeout(Duration::from_secs(30)).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let wakes = wakes.load(Ordering::Relaxed);
        assert_eq!(wakes, 90_000);
        assert!(
            (total as usize) <= wakes + 1,
            "more polls ({total}) than wakes ({wakes})"
        );
        drop(w);
    });
}

#[test]
fn runtime_agnostic_async_code_channels_and_combinators() {
    hub::run(|| {
        let (tx, rx) = async_channel::bounded::<u32>(1);
        let producer = std::thread::spawn(move || {
            for i in 0..100 {
                futures_lite::future::block_on(tx.send(i)).unwrap(); // back-pressure on a thread
            }
        });
        let log = Rc::new(RefCell::new(Vec::new()));
        let l2 = log.clone();
        let other = hub::spawn(move || {
            for i in 0..10 {
                l2.borrow_mut().push(i);
                hub::sleep(Duration::from_millis(1));
            }
        });
        let sum = hub::block_on(async {
            let mut sum = 0;
            while let Ok(v) = rx.recv().await {
                sum += v;
            }
            sum
        });
        assert_eq!(sum, (0..100).sum::<u32>());
        let (a, b) = hub::block_on(futures_lite::future::zip(
            async { 1 },
            futures_lite::future::ready(2),
        ));
        assert_eq!((a, b), (1, 2));
        producer.join().unwrap();
        other.join().unwrap();
        assert_eq!(log.borrow().len(), 10);
    });
}

#[test]
fn only_the_caller_parks_and_a_kill_drops_the_future() {
    struct Dropped(Rc<Cell<bool>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    hub::run(|| {
        let dropped = Rc::new(Cell::new(false));
        let d = Dropped(dropped.clone());
        let stuck = hub::spawn(move || {
            hub::block_on(async move {
                let _d = d;
                std::future::pending::<()>().await
            })
        });
        let t = Instant::now();
        hub::sleep(Duration::from_millis(5)); // we run although `stuck` never finishes
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!stuck.is_finished());
        stuck.kill();
        assert!(
            dropped.get(),
            "the future was dropped as the greenlet unwound"
        );
    });
}

#[test]
fn outside_a_greenlet_context_on_a_plain_thread() {
    let v = std::thread::spawn(|| {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            n.notify_one();
        });
        hub::block_on(async move {
            notify.notified().await;
            3
        })
        .max(t.join().map(|_| 0).unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(v, 3);
}

#[test]
fn a_destructor_running_during_a_kill_can_still_block_on_a_future_from_another_thread() {
    struct AwaitOnDrop(Arc<Notify>, Arc<AtomicBool>);
    impl Drop for AwaitOnDrop {
        fn drop(&mut self) {
            // We are unwinding from a kill: parking is over for this greenlet, so block_on
            // blocks the thread and takes its wake-ups there.
            let n = self.0.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                n.notify_one();
            });
            hub::block_on(self.0.notified());
            t.join().unwrap();
            self.1.store(true, Ordering::SeqCst);
        }
    }
    hub::run(|| {
        let done = Arc::new(AtomicBool::new(false));
        let guard = AwaitOnDrop(Arc::new(Notify::new()), done.clone());
        let victim = hub::spawn(move || {
            let _g = guard;
            hub::sleep(Duration::from_secs(60));
        });
        hub::yield_now();
        victim.kill();
        assert!(
            done.load(Ordering::SeqCst),
            "the destructor's block_on finished"
        );
    });
}
