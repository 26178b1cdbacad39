//! greenhub::signal. Signals are process-wide: every test here uses its own signal number, so the
//! tests do not disturb each other even when the harness runs them in parallel, and no other test
//! binary is affected (each is its own process).

use std::cell::Cell;
use std::mem;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::signal::{self, signal, signal_handler, Signal, SignalKind};

fn raise(sig: libc::c_int) {
    // SAFETY: raise takes no pointers; every test raises only signals it listens to.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn kill_self(sig: libc::c_int) {
    // SAFETY: kill takes no pointers; every test sends only signals it listens to.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
}

fn rt(n: libc::c_int) -> libc::c_int {
    libc::SIGRTMIN() + n
}

/// The current disposition's handler address.
fn disposition(sig: libc::c_int) -> usize {
    // SAFETY: a zeroed sigaction is valid for the kernel to fill; null new action only reads.
    unsafe {
        let mut old: libc::sigaction = mem::zeroed();
        assert_eq!(libc::sigaction(sig, ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

/// One trial: 1,000 busy greenlets, a waiter parked on SIGUSR1, a signal sent from another
/// thread 100 ms later. Returns (signal-to-wake latency, busy steps made while the waiter waited).
fn one_wake_among_1000_busy_greenlets(sig: &mut Signal) -> (Duration, u64) {
    let sent_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let s2 = sent_at.clone();
    let stop = Rc::new(Cell::new(false));
    let work = Rc::new(Cell::new(0u64));
    let busy: Vec<_> = (0..1000)
        .map(|_| {
            let (stop, work) = (stop.clone(), work.clone());
            hub::spawn(move || {
                while !stop.get() {
                    work.set(work.get() + 1);
                    hub::yield_now();
                }
            })
        })
        .collect();
    let w0 = work.get();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        *s2.lock().unwrap() = Some(Instant::now());
        kill_self(libc::SIGUSR1);
    });
    sig.recv().unwrap(); // this greenlet is the parked waiter
    let woke = Instant::now();
    let done = work.get() - w0;
    let sent = sent_at.lock().unwrap().expect("sent before the wake");
    stop.set(true);
    for g in busy {
        g.join().unwrap();
    }
    sender.join().unwrap();
    (woke.saturating_duration_since(sent), done)
}

#[test]
fn a_signal_wakes_a_parked_waiter_within_10ms_while_1000_greenlets_run() {
    hub::run(|| {
        let mut sig = signal(SignalKind::user_defined1()).unwrap();
        // On a loaded machine the kernel may preempt this process between the signal and the
        // wake-up for longer than 10 ms (seen at load average 10 on 2 cores), whatever greenhub
        // does; so the best of three trials must make it. A design that polled for signals, or
        // that had to wait for the busy greenlets to block, would miss it every time.
        let mut best = Duration::MAX;
        for trial in 1..=3 {
            let (lag, done) = one_wake_among_1000_busy_greenlets(&mut sig);
            eprintln!(
                "trial {trial}: signal to wake-up {lag:?}; busy greenlet steps meanwhile {done}"
            );
            assert!(
                done >= 10_000,
                "the 1,000 busy greenlets made only {done} steps while the waiter was parked"
            );
            best = best.min(lag);
            if best < Duration::from_millis(10) {
                break;
            }
        }
        assert!(
            best < Duration::from_millis(10),
            "the waiter woke {best:?} after the signal, at best"
        );
    });
}

#[test]
fn two_listeners_on_two_hubs_both_see_it() {
    let ready = Arc::new(Barrier::new(3));
    let hubs: Vec<_> = (0..2)
        .map(|_| {
            let ready = ready.clone();
            std::thread::spawn(move || {
                hub::run(move || {
                    let mut sig = signal(SignalKind::user_defined2()).unwrap();
                    ready.wait(); // blocks this hub's thread: nothing else runs on it yet
                    sig.recv_timeout(Duration::from_secs(5))
                })
            })
        })
        .collect();
    ready.wait();
    kill_self(libc::SIGUSR2);
    for h in hubs {
        assert_eq!(h.join().unwrap().unwrap(), SignalKind::user_defined2());
    }
}

#[test]
fn a_burst_of_100_signals_is_counted_not_lost() {
    hub::run(|| {
        // Raised by this thread to itself: each is delivered before raise returns, so the kernel
        // has nothing to coalesce and every one must be counted.
        let mut winch = signal(SignalKind::window_change()).unwrap();
        for _ in 0..100 {
            raise(libc::SIGWINCH);
        }
        assert_eq!(winch.pending(), 100);
        for _ in 0..100 {
            assert_eq!(
                winch.recv_timeout(Duration::from_secs(1)).unwrap(),
                SignalKind::window_change()
            );
        }
        assert_eq!(winch.try_recv(), None);

        // A real-time signal queues: 100 sent from another thread are 100 deliveries.
        let rt2 = SignalKind::from_raw(rt(2));
        let mut queued = signal(rt2).unwrap();
        std::thread::spawn(|| {
            for _ in 0..100 {
                kill_self(rt(2));
            }
        })
        .join()
        .unwrap();
        let mut got = 0;
        while got < 100 {
            queued.recv_timeout(Duration::from_secs(5)).unwrap();
            got += 1;
        }
        assert_eq!(queued.pending(), 0);

        // A standard signal sent in a burst from another thread may be coalesced by the kernel
        // while one is pending, never counted more often than sent.
        let mut usr = signal(SignalKind::from_raw(libc::SIGURG)).unwrap();
        std::thread::spawn(|| {
            for _ in 0..100 {
                kill_self(libc::SIGURG);
            }
        })
        .join()
        .unwrap();
        usr.recv_timeout(Duration::from_secs(5)).unwrap();
        let n = 1 + usr.pending();
        assert!((1..=100).contains(&n), "{n} counted for 100 sent");
    });
}

static PREV_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn previous_handler(_: libc::c_int) {
    PREV_CALLS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn chains_to_the_previous_handler_and_dropping_the_last_listener_restores_it() {
    let sig = rt(3);
    // SAFETY: installs a plain handler that only does an atomic add.
    unsafe {
        let mut act: libc::sigaction = mem::zeroed();
        act.sa_sigaction = previous_handler as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(libc::sigaction(sig, &act, ptr::null_mut()), 0);
    }
    let prev = disposition(sig);
    hub::run(move || {
        let a = signal(SignalKind::from_raw(sig)).unwrap();
        let mut b = signal(SignalKind::from_raw(sig)).unwrap();
        assert_ne!(disposition(sig), prev, "greenhub's handler is installed");
        raise(sig);
        assert_eq!(
            PREV_CALLS.load(Ordering::SeqCst),
            1,
            "the previous handler was chained"
        );
        assert_eq!(a.pending(), 1);
        drop(a);
        assert_ne!(disposition(sig), prev, "one listener is left");
        raise(sig);
        assert_eq!(b.recv().unwrap().as_raw_value(), sig);
        assert_eq!(b.pending(), 1);
        drop(b);
        assert_eq!(
            disposition(sig),
            prev,
            "the last drop restores the previous handler"
        );
        raise(sig);
        assert_eq!(PREV_CALLS.load(Ordering::SeqCst), 3);
    });
    // A default disposition comes back as the default, too.
    assert_eq!(disposition(libc::SIGCONT), libc::SIG_DFL);
    let s = signal(SignalKind::from_raw(libc::SIGCONT)).unwrap();
    assert_ne!(disposition(libc::SIGCONT), libc::SIG_DFL);
    drop(s);
    assert_eq!(disposition(libc::SIGCONT), libc::SIG_DFL);
}

#[test]
fn fault_and_uncatchable_signals_are_refused() {
    for s in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGKILL,
        libc::SIGSTOP,
        0,
        65,
        -1,
    ] {
        let e = signal(SignalKind::from_raw(s)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "signal {s}");
    }
    assert!(Signal::new(&[]).is_err());
    // Listening to other signals leaves the overflow reporter's SIGSEGV/SIGBUS handlers alone.
    hub::run(|| {
        let (segv, bus) = (disposition(libc::SIGSEGV), disposition(libc::SIGBUS));
        let s = signal(SignalKind::from_raw(rt(9))).unwrap();
        assert_eq!(
            (disposition(libc::SIGSEGV), disposition(libc::SIGBUS)),
            (segv, bus)
        );
        drop(s);
        assert_eq!(
            (disposition(libc::SIGSEGV), disposition(libc::SIGBUS)),
            (segv, bus)
        );
        assert_ne!(segv, libc::SIG_DFL, "a hub installs the overflow reporter");
    });
    // A refused kind in a list installs nothing for the others.
    let before = disposition(rt(5));
    assert!(Signal::new(&[
        SignalKind::from_raw(rt(5)),
        SignalKind::from_raw(libc::SIGKILL)
    ])
    .is_err());
    assert_eq!(disposition(rt(5)), before);
}

#[test]
fn recv_times_out_and_honours_timeout_scopes() {
    hub::run(|| {
        let mut s = signal(SignalKind::from_raw(rt(4))).unwrap();
        let t0 = Instant::now();
        let e = s.recv_timeout(Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let r = greenhub::timeout(Duration::from_millis(20), || s.recv());
        assert!(r.is_err(), "the scope expired");
        // Still usable afterwards.
        raise(rt(4));
        s.recv_timeout(Duration::from_secs(1)).unwrap();
    });
}

#[test]
fn one_listener_for_several_kinds_and_wait_any() {
    hub::run(|| {
        let (a, b) = (SignalKind::from_raw(rt(6)), SignalKind::from_raw(rt(7)));
        let mut s = Signal::new(&[a, b]).unwrap();
        raise(rt(7));
        assert_eq!(s.recv().unwrap(), b);
        let w = hub::spawn(move || signal::wait_any(&[a, b]));
        hub::sleep(Duration::from_millis(10));
        raise(rt(6));
        assert_eq!(w.join().unwrap().unwrap(), a);
        assert_eq!(s.recv().unwrap(), a, "the long-lived listener saw it too");
    });
}

#[test]
fn signal_handler_runs_a_greenlet_per_delivery_until_cancelled() {
    hub::run(|| {
        let sig = rt(8);
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let handler =
            signal_handler(SignalKind::from_raw(sig), move || h.set(h.get() + 1)).unwrap();
        hub::sleep(Duration::from_millis(5));
        for _ in 0..3 {
            raise(sig);
        }
        let t0 = Instant::now();
        while hits.get() < 3 && t0.elapsed() < Duration::from_secs(5) {
            hub::sleep(Duration::from_millis(1));
        }
        assert_eq!(hits.get(), 3);
        let before = disposition(sig);
        handler.cancel();
        assert_ne!(
            disposition(sig),
            before,
            "cancel dropped the listener and restored SIG_DFL"
        );
        assert_eq!(disposition(sig), libc::SIG_DFL);
    });
}
