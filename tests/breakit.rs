//! Regression tests for the break-it findings of issue 11 (items 2, 3, 6, 8, 9, 10, 12). Each one
//! failed before its fix; the ones whose failure was a hang or an abort run in a child process with
//! a time bound. (Item 1 is `tests/thread_exit.rs` and `tests/exit_main_thread.rs`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::process::Output;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::sync::{Event, Mutex};
use greenhub::GreenletError;
use support::{assert_child_ok, child_command, is_child, panic_message, run_child_within};

mod support;

/// Counts the bytes allocated and not yet freed, for item 6.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Re-runs this binary with only `test` as the child, with `env`, bounded by `limit`.
fn run_child(test: &str, env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = child_command(test);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_child_within(cmd, test, limit)
}

const BOUND: Duration = Duration::from_secs(60);

// ---- item 2: the panic count is per OS thread ----------------------------------------------

/// How long the wait in `WaitsInDrop` took, in ms, and whether it timed out (returned false).
static DROP_WAIT_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static DROP_WAIT_SET: AtomicBool = AtomicBool::new(true);

/// A destructor that blocks: it runs while its greenlet unwinds a panic.
struct WaitsInDrop(Rc<Event>);

impl Drop for WaitsInDrop {
    fn drop(&mut self) {
        let t0 = Instant::now();
        let set = self.0.wait_timeout(Duration::from_secs(10));
        DROP_WAIT_SET.store(set, Ordering::SeqCst);
        DROP_WAIT_MS.store(t0.elapsed().as_millis() as u64, Ordering::SeqCst);
    }
}

#[test]
fn a_wait_while_unwinding_a_panic_returns_at_once_and_others_stay_killable() {
    const NAME: &str = "a_wait_while_unwinding_a_panic_returns_at_once_and_others_stay_killable";
    if is_child(NAME) {
        hub::run(|| {
            let b = hub::spawn(|| loop {
                hub::sleep(Duration::from_millis(1));
            });
            let ev = Rc::new(Event::new());
            let w = WaitsInDrop(ev.clone());
            let a = hub::spawn(move || {
                let _w = w;
                panic!("A panics");
            });
            hub::yield_now(); // B parks; A panics and its destructor waits
            b.kill(); // before the fix: B's sleep returned at once forever (the count was A's)
            assert!(matches!(b.join(), Err(GreenletError::Killed)));
            match a.join() {
                Err(GreenletError::Panicked(p)) => assert_eq!(panic_message(&*p), "A panics"),
                other => panic!("A: {other:?}"),
            }
        });
        assert!(
            !DROP_WAIT_SET.load(Ordering::SeqCst),
            "the wait reports that it did not get the event"
        );
        let ms = DROP_WAIT_MS.load(Ordering::SeqCst);
        assert!(ms < 1000, "the wait during unwinding blocked {ms} ms");
        return;
    }
    assert_child_ok(&run_child(NAME, &[], BOUND));
}

#[test]
fn join_and_sleep_while_unwinding_return_at_once_without_switching() {
    const NAME: &str = "join_and_sleep_while_unwinding_return_at_once_without_switching";
    if !is_child(NAME) {
        assert_child_ok(&run_child(NAME, &[], BOUND));
        return;
    }
    hub::run(|| {
        let ran = Rc::new(Cell::new(false));
        let r = ran.clone();
        let _other = hub::spawn(move || r.set(true));
        struct Blocks(Rc<Cell<bool>>);
        impl Drop for Blocks {
            fn drop(&mut self) {
                let t0 = Instant::now();
                hub::sleep(Duration::from_secs(5));
                hub::yield_now();
                let _ = hub::spawn(|| ()).join();
                assert!(t0.elapsed() < Duration::from_secs(1));
                // Nothing else ran while this greenlet unwound: it never switched away.
                assert!(!self.0.get(), "another greenlet ran during the unwinding");
            }
        }
        let b = Blocks(ran.clone());
        let r = panic::catch_unwind(AssertUnwindSafe(move || {
            let _b = b;
            panic!("main unwinds");
        }));
        assert!(r.is_err());
        hub::yield_now();
        assert!(
            ran.get(),
            "the other greenlet runs once the unwinding is over"
        );
    });
}

// ---- item 3: a caught kill never yielded again ---------------------------------------------

#[test]
fn a_greenlet_catching_its_kill_still_lets_others_run_and_dies_when_it_stops() {
    const NAME: &str = "a_greenlet_catching_its_kill_still_lets_others_run_and_dies_when_it_stops";
    if is_child(NAME) {
        hub::run(|| {
            let stop = Rc::new(Cell::new(false));
            let spins = Rc::new(Cell::new(0u64));
            let (st, sp) = (stop.clone(), spins.clone());
            let victim = hub::spawn(move || {
                while !st.get() {
                    let _ = panic::catch_unwind(|| hub::sleep(Duration::from_millis(1)));
                    sp.set(sp.get() + 1);
                    if sp.get() > 200_000 {
                        return "starved everybody";
                    }
                }
                hub::sleep(Duration::from_millis(1)); // stops catching: dies here
                "survived"
            });
            let other = hub::spawn(|| {
                for _ in 0..10 {
                    hub::sleep(Duration::from_millis(1));
                }
            });
            hub::yield_now();
            victim.kill_nowait();
            other.join().unwrap(); // before the fix: the victim never let it run again
            assert!(spins.get() > 0, "the victim kept running too");
            stop.set(true);
            assert!(matches!(victim.join(), Err(GreenletError::Killed)));
        });
        return;
    }
    assert_child_ok(&run_child(NAME, &[], BOUND));
}

#[test]
fn hub_run_returns_when_a_greenlet_catches_every_kill() {
    const NAME: &str = "hub_run_returns_when_a_greenlet_catches_every_kill";
    if is_child(NAME) {
        let t0 = Instant::now();
        hub::run(|| {
            hub::spawn(|| loop {
                let _ = panic::catch_unwind(|| hub::sleep(Duration::from_millis(1)));
            });
            hub::yield_now();
        });
        assert!(t0.elapsed() < Duration::from_secs(20));
        return;
    }
    let err = assert_child_ok(&run_child(NAME, &[], BOUND));
    assert!(
        err.contains("would not die") && err.contains("abandoned"),
        "no warning about the greenlet that would not die:\n{err}"
    );
}

#[test]
fn a_region_whose_occupant_was_abandoned_is_reused_safely() {
    // The survivor of `hub::run`'s kill rounds is abandoned while it occupies the only region;
    // its control block is freed once its last handle goes. The region must stop naming it,
    // or the next greenlet bound there would save the slice of freed memory.
    const NAME: &str = "a_region_whose_occupant_was_abandoned_is_reused_safely";
    if is_child(NAME) {
        hub::Config::new().max_stacks(1).install().unwrap();
        hub::run(|| {
            hub::spawn(|| loop {
                let _ = panic::catch_unwind(|| hub::sleep(Duration::from_millis(1)));
            });
            hub::yield_now();
        });
        hub::run(|| {
            for i in 0..50u64 {
                let g = hub::spawn(move || {
                    hub::sleep(Duration::from_micros(10));
                    i
                });
                assert_eq!(g.join().unwrap(), i);
            }
        });
        return;
    }
    assert_child_ok(&run_child(NAME, &[], BOUND));
}

// ---- item 6: killed delayed greenlets were held until their deadline ------------------------

#[test]
fn killing_unstarted_delayed_greenlets_frees_them_at_once() {
    const NAME: &str = "killing_unstarted_delayed_greenlets_frees_them_at_once";
    if is_child(NAME) {
        const N: usize = 100_000;
        hub::run(|| {
            let base = hub::stats().live; // hub::run's own greenlet
            let before = LIVE_BYTES.load(Ordering::SeqCst);
            let gs: Vec<_> = (0..N)
                .map(|i| {
                    let payload = [i as u8; 64];
                    hub::spawn_later(Duration::from_secs(3600), move || payload[0])
                })
                .collect();
            let peak = LIVE_BYTES.load(Ordering::SeqCst);
            assert_eq!(hub::stats().live, base + N as u64);
            for g in &gs {
                g.kill();
            }
            drop(gs);
            assert_eq!(hub::stats().live, base);
            let after = LIVE_BYTES.load(Ordering::SeqCst);
            let grown = peak - before;
            let kept = after.saturating_sub(before);
            eprintln!("before {before} peak {peak} after {after}");
            assert!(
                kept < grown / 10,
                "killing {N} delayed greenlets kept {kept} of the {grown} bytes they took"
            );
        });
        return;
    }
    assert_child_ok(&run_child(NAME, &[], BOUND));
}

// ---- item 8: a detached greenlet whose result panics when dropped --------------------------

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the result's destructor panics");
    }
}

#[test]
fn a_detached_result_that_panics_when_dropped_is_reported_not_an_abort() {
    const NAME: &str = "a_detached_result_that_panics_when_dropped_is_reported_not_an_abort";
    if is_child(NAME) {
        hub::run(|| {
            let g = hub::Builder::new()
                .name("bad-result")
                .spawn(|| PanicsOnDrop);
            drop(g); // detached before it runs: the result is dropped in the greenlet
            let h = hub::spawn(|| PanicsOnDrop);
            hub::yield_now();
            assert!(h.is_finished());
            drop(h); // finished, then detached: dropped here, on the dropper's stack
            hub::sleep(Duration::from_millis(1));
        });
        return;
    }
    let err = assert_child_ok(&run_child(NAME, &[], BOUND));
    assert!(
        err.contains("(bad-result)'s result panicked when dropped")
            && err.contains("the result's destructor panics"),
        "no report of the panicking result:\n{err}"
    );
}

// ---- item 9: errors a user can read --------------------------------------------------------

#[test]
fn spawn_later_with_duration_max_saturates() {
    hub::run(|| {
        let g = hub::spawn_later(Duration::MAX, || 1);
        hub::sleep(Duration::from_millis(2));
        assert!(!g.is_started());
        assert!(matches!(
            g.join_timeout(Duration::from_millis(5)),
            Err(GreenletError::TimedOut)
        ));
        g.kill();
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
    });
}

#[test]
fn a_bad_stack_size_in_the_environment_is_an_error_at_hub_creation() {
    const NAME: &str = "a_bad_stack_size_in_the_environment_is_an_error_at_hub_creation";
    if is_child(NAME) {
        let value = std::env::var("GREENHUB_STACK_SIZE").unwrap();
        let e = hub::Config::new().install().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        let m = e.to_string();
        assert!(
            m.contains("GREENHUB_STACK_SIZE") && m.contains(value.trim()),
            "{m}"
        );
        // Implicit creation (first use) fails the same way, as a panic naming the variable.
        let p = panic::catch_unwind(|| hub::spawn(|| ()).id()).unwrap_err();
        let m = panic_message(&*p);
        assert!(
            m.contains("GREENHUB_STACK_SIZE") && m.contains("cannot create"),
            "{m}"
        );
        return;
    }
    for v in ["abc", "-5", "1g", "8mb", "99999999999999m"] {
        assert_child_ok(&run_child(NAME, &[("GREENHUB_STACK_SIZE", v)], BOUND));
    }
}

#[test]
fn a_socket_of_another_hub_is_an_invalid_input_error() {
    let sock = greenhub::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut buf = [0u8; 8];
    // This thread's hub registers the socket while the read waits.
    assert!(sock.recv(&mut buf).is_err());
    let e = std::thread::spawn(move || sock.recv(&mut buf).unwrap_err())
        .join()
        .unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("another thread"), "{e}");
}

#[test]
fn a_deadlock_report_in_hub_run_names_the_whole_chain() {
    let r = std::thread::spawn(|| {
        hub::run(|| {
            let m = Mutex::new(());
            let _held = m.lock().unwrap();
            let _again = m.lock(); // waits for itself
        })
    })
    .join();
    let m = panic_message(&*r.unwrap_err());
    assert!(m.contains("would block forever"), "{m}");
    assert!(m.contains("the main greenlet"), "{m}");
    assert!(
        m.contains("which waits for a Mutex"),
        "the report does not follow the chain to the Mutex: {m}"
    );
    assert!(
        m.contains("held by the same greenlet"),
        "the report does not say who holds the Mutex: {m}"
    );
}

// ---- item 10: warnings nobody saw ----------------------------------------------------------

#[test]
fn without_a_subscriber_runtime_warnings_reach_stderr_once_per_kind_per_second() {
    const NAME: &str =
        "without_a_subscriber_runtime_warnings_reach_stderr_once_per_kind_per_second";
    if is_child(NAME) {
        panic::set_hook(Box::new(|_| {})); // only greenhub's own lines on stderr
        hub::run(|| {
            hub::enable_monitor(Duration::from_millis(20));
            let t0 = Instant::now();
            for _ in 0..20 {
                drop(hub::spawn(|| panic!("detached boom")));
            }
            hub::yield_now();
            // Holds the hub without blocking: the monitor reports it.
            hub::spawn(|| std::thread::sleep(Duration::from_millis(300)))
                .join()
                .unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "the burst took too long"
            );
        });
        return;
    }
    let err = assert_child_ok(&run_child(NAME, &[], BOUND));
    assert_eq!(
        err.matches("panicked and nobody joined it: detached boom")
            .count(),
        1,
        "20 detached panics within a second print one line:\n{err}"
    );
    assert!(
        err.contains("greenhub monitor: greenlet") && err.contains("without blocking"),
        "the monitor's report is not on stderr:\n{err}"
    );
}

// ---- item 12: timeout scopes in mpmc, select and unblock ------------------------------------

/// Runs `f` under a 30 ms `timeout` and asserts the scope expired promptly (before the fix these
/// calls ignored scopes and waited the 2 s until the other thread delivered).
fn assert_scope_ends<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> T) {
    let t0 = Instant::now();
    let r = greenhub::timeout(Duration::from_millis(30), f);
    assert!(r.is_err(), "{what}: the scope did not expire: {r:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{what} ignored the scope ({:?})",
        t0.elapsed()
    );
}

#[test]
fn plain_mpmc_calls_select_and_unblock_observe_timeout_scopes() {
    use greenhub::sync::mpmc;
    use greenhub::threadpool;
    const NAME: &str = "plain_mpmc_calls_select_and_unblock_observe_timeout_scopes";
    if !is_child(NAME) {
        // Before the fix the plain send below waited forever (a hang: bounded here).
        assert_child_ok(&run_child(NAME, &[], BOUND));
        return;
    }
    hub::run(|| {
        let (tx, rx) = mpmc::bounded::<u32>(1);
        let (tx2, rx2) = mpmc::bounded::<u32>(1);
        let feeder = {
            let (tx, tx2) = (tx.clone(), tx2.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                drop((tx, tx2));
            })
        };
        assert_scope_ends("recv", || rx.recv());
        assert_scope_ends("select", || mpmc::select(&[&rx, &rx2]));
        tx.send(1).unwrap(); // full now
        assert_scope_ends("send", || tx.send(2));
        assert_scope_ends("unblock", || {
            threadpool::unblock(|| std::thread::sleep(Duration::from_secs(2)))
        });
        let t0 = Instant::now();
        let r = greenhub::timeout(Duration::from_millis(30), || {
            threadpool::unblock_timeout(Duration::from_secs(10), || {
                std::thread::sleep(Duration::from_secs(2))
            })
        });
        assert!(matches!(r, Err(_) | Ok(None)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(1500));
        // Under a bare guard nothing catches unblock's unwinding: the greenlet ends, saying why.
        let g = hub::spawn(|| {
            let _scope = greenhub::timeout::Timeout::start(Duration::from_millis(10));
            threadpool::unblock(|| std::thread::sleep(Duration::from_millis(500)));
        });
        match g.join() {
            Err(e @ GreenletError::Panicked(_)) => {
                assert!(format!("{e}").contains("timeout scope expired"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        drop((tx, tx2, rx2));
        feeder.join().unwrap();
    });
}

// ---- item 12: aarch64 switches FPCR --------------------------------------------------------

/// Each greenlet keeps its own FPCR (rounding mode), as each keeps its MXCSR on x86_64
/// (`tests/switch.rs`). Runs only on aarch64 (natively or under `.ci/aarch64-qemu`).
#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use greenhub::hub;

    /// FPCR.RMode (bits 23:22) = 0b11: round towards zero.
    const ROUND_TOWARDS_ZERO: u64 = 0b11 << 22;

    fn fpcr() -> u64 {
        let v: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { core::arch::asm!("mrs {}, fpcr", out(reg) v) };
        v
    }

    fn set_fpcr(v: u64) {
        // SAFETY: writes only the float control register, which the test restores.
        unsafe { core::arch::asm!("msr fpcr, {}", in(reg) v) };
    }

    #[test]
    fn fpcr_is_per_greenlet() {
        hub::run(|| {
            let main_before = fpcr();
            let g = hub::spawn(|| {
                set_fpcr(fpcr() | ROUND_TOWARDS_ZERO);
                hub::yield_now(); // main runs with its own FPCR meanwhile
                let mine = fpcr();
                set_fpcr(mine & !ROUND_TOWARDS_ZERO);
                mine
            });
            hub::yield_now();
            assert_eq!(fpcr(), main_before, "the greenlet's FPCR leaked into main");
            let theirs = g.join().unwrap();
            assert_eq!(theirs & ROUND_TOWARDS_ZERO, ROUND_TOWARDS_ZERO);
            assert_eq!(fpcr(), main_before);
        });
    }
}

// ---- item 12: mpmc::bounded(0) is a rendezvous channel ------------------------------------

#[test]
fn a_zero_capacity_mpmc_channel_is_a_rendezvous() {
    use greenhub::sync::mpmc::{self, SendTimeoutError, TryRecvError, TrySendError};
    hub::run(|| {
        let (tx, rx) = mpmc::bounded::<u32>(0); // before the fix: a panic
        assert_eq!(tx.capacity(), Some(0));
        // Nobody receives: try_send refuses, send_timeout gives the value back and leaves nothing.
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
        match tx.send_timeout(2, Duration::from_millis(20)) {
            Err(SendTimeoutError::Timeout(2)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        // send returns only once a receiver (another thread, 50 ms later) has the value: it blocks
        // at least until the receiver calls recv. (Comparing the two threads' clocks after the
        // handoff would race: the receiver can be preempted between recv and reading the time.)
        let rx2 = rx.clone();
        let start = Instant::now(); // before the thread exists, so its sleep is inside `blocked`
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            rx2.recv().unwrap()
        });
        tx.send(3).unwrap();
        let blocked = start.elapsed();
        assert_eq!(t.join().unwrap(), 3);
        assert!(
            blocked >= Duration::from_millis(50),
            "send returned after {blocked:?}, before the receiver came"
        );
        // Between greenlets: every value arrives, in order.
        let tx2 = tx.clone();
        let producer = hub::spawn(move || {
            for i in 0..100 {
                tx2.send(i).unwrap();
            }
        });
        let got: Vec<u32> = (0..100).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        producer.join().unwrap();
        // The receivers go away while a sender waits for one: it gets its value back.
        let waiting = hub::spawn(move || tx.send(9));
        hub::yield_now();
        drop(rx);
        match waiting.join().unwrap() {
            Err(mpmc::SendError(9)) => {}
            other => panic!("{other:?}"),
        }
    });
}
