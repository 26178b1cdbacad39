//! Stack overflow is diagnosed, not silent: each test re-runs this binary as a child that overflows
//! a stack on purpose and checks how the child died and what it wrote.
//!
//! - a worker greenlet overflowing the shared stack: SIGABRT and
//!   "greenlet <id> (<name>) overflowed its <N> KiB stack", N from `GREENHUB_STACK_SIZE` or
//!   `hub::Config::stack_size`;
//! - the hub context overflowing its own stack (a deep hub callback): SIGABRT and "the hub overflowed
//!   its <N> KiB stack";
//! - the main greenlet of a hub thread and a plain thread overflowing their native stacks: Rust's own
//!   "has overflowed its stack" report (our handler chains to Rust's);
//! - a fault that is no overflow (a wild read): still SIGSEGV, the default outcome.

use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use greenhub::hub;

use support::{child_command, is_child};

mod support;

/// Re-runs this binary with only `test`, marked as the child, with the stack-size variables of the
/// parent removed and `env` added.
fn run_child(test: &str, env: &[(&str, &str)]) -> Output {
    child_command(test)
        .env_remove("GREENHUB_STACK_SIZE")
        .env_remove("GREENHUB_HUB_STACK_SIZE")
        .envs(env.iter().copied())
        .output()
        .expect("spawn the test binary")
}

/// In the child: no core file for the crash we are about to cause.
fn no_core_dumps() {
    let lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass and touches no other memory.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
}

/// Recurses until the stack runs out (the frame is kept alive by using `buf` after the call).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 512]);
    if n == 0 {
        return 0;
    }
    recurse(n - 1).wrapping_add(u64::from(buf[(n % 512) as usize]))
}

/// Runs the child of `test` (see `run_child`), asserts it died by signal `sig` and returns its
/// stderr.
fn child_killed_by(test: &str, env: &[(&str, &str)], sig: i32) -> String {
    let out = run_child(test, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(sig),
        "child should die by signal {sig}, got {:?}\n--- stdout\n{}\n--- stderr\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    stderr
}

/// The id the child printed as "ID=<n>".
fn child_id(err: &str) -> u64 {
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("ID="))
        .unwrap_or_else(|| panic!("child printed no id:\n{err}"));
    line.trim().parse().unwrap()
}

/// Runs the child of `name` and checks that it aborted with the overflow report of the greenlet
/// it printed as `ID=…`: `label` is `" (its name)"` or empty, `kib` the stack size reported.
/// Returns the child's stderr.
fn assert_overflow_reported(name: &str, env: &[(&str, &str)], label: &str, kib: usize) -> String {
    let err = child_killed_by(name, env, libc::SIGABRT);
    let id = child_id(&err);
    let want = format!("greenlet {id}{label} overflowed its {kib} KiB stack");
    assert!(err.contains(&want), "expected {want:?} in:\n{err}");
    err
}

#[test]
fn worker_overflow_names_the_greenlet_and_env_stack_size() {
    const NAME: &str = "worker_overflow_names_the_greenlet_and_env_stack_size";
    if is_child(NAME) {
        no_core_dumps();
        hub::run(|| {
            let g = hub::Builder::new()
                .name("deep-diver")
                .spawn(|| recurse(u64::MAX));
            eprintln!("ID={}", g.id());
            let _ = g.join();
        });
        unreachable!("the overflow should have aborted the process");
    }
    let err = assert_overflow_reported(
        NAME,
        &[("GREENHUB_STACK_SIZE", "256k")],
        " (deep-diver)",
        256,
    );
    assert!(
        !err.contains("has overflowed its stack"),
        "Rust's handler also ran:\n{err}"
    );
}

#[test]
fn worker_overflow_with_builder_stack_size_unnamed() {
    const NAME: &str = "worker_overflow_with_builder_stack_size_unnamed";
    if is_child(NAME) {
        no_core_dumps();
        hub::Config::new().stack_size(128 * 1024).install().unwrap();
        // A few other greenlets, parked with slices of their own, so the overflowing one is not
        // alone on the hub.
        let sleepers: Vec<_> = (0..3)
            .map(|_| hub::spawn(|| hub::sleep(std::time::Duration::from_secs(60))))
            .collect();
        hub::yield_now();
        let g = hub::spawn(|| recurse(u64::MAX));
        eprintln!("ID={}", g.id());
        let _ = g.join();
        drop(sleepers);
        unreachable!("the overflow should have aborted the process");
    }
    // The builder wins over the environment variable; an unnamed greenlet is named by id only.
    assert_overflow_reported(NAME, &[("GREENHUB_STACK_SIZE", "4m")], "", 128);
}

#[test]
fn hub_context_overflow_is_reported_as_the_hubs() {
    const NAME: &str = "hub_context_overflow_is_reported_as_the_hubs";
    if is_child(NAME) {
        no_core_dumps();
        hub::Config::new()
            .hub_stack_size(64 * 1024)
            .install()
            .unwrap();
        hub::run_callback(|| {
            std::hint::black_box(recurse(u64::MAX));
        });
        hub::yield_now();
        unreachable!("the overflow should have aborted the process");
    }
    let err = child_killed_by(NAME, &[], libc::SIGABRT);
    assert!(
        err.contains("greenhub: the hub overflowed its 64 KiB stack"),
        "unexpected stderr:\n{err}"
    );
}

#[test]
fn main_greenlet_overflow_gets_rusts_report() {
    const NAME: &str = "main_greenlet_overflow_gets_rusts_report";
    if is_child(NAME) {
        no_core_dumps();
        // This thread has a hub (and the greenhub handler is installed); the main greenlet runs on
        // the thread's own stack, whose guard page Rust's handler knows.
        hub::spawn(|| 1).join().unwrap();
        std::hint::black_box(recurse(u64::MAX));
        unreachable!("the overflow should have aborted the process");
    }
    let err = child_killed_by(NAME, &[], libc::SIGABRT);
    assert!(
        err.contains(&format!("thread '{NAME}'")) && err.contains("has overflowed its stack"),
        "expected Rust's report in:\n{err}"
    );
    assert!(
        !err.contains("greenhub:"),
        "greenhub claimed a thread-stack overflow:\n{err}"
    );
}

#[test]
fn plain_thread_overflow_gets_rusts_report() {
    const NAME: &str = "plain_thread_overflow_gets_rusts_report";
    if is_child(NAME) {
        no_core_dumps();
        hub::spawn(|| 1).join().unwrap(); // installs greenhub's handler in the process
        std::thread::Builder::new()
            .name("plain".into())
            .stack_size(256 * 1024)
            .spawn(|| std::hint::black_box(recurse(u64::MAX)))
            .unwrap()
            .join()
            .unwrap();
        unreachable!("the overflow should have aborted the process");
    }
    let err = child_killed_by(NAME, &[], libc::SIGABRT);
    assert!(
        err.contains("thread 'plain'") && err.contains("has overflowed its stack"),
        "expected Rust's report in:\n{err}"
    );
    assert!(
        !err.contains("greenhub:"),
        "greenhub claimed a thread-stack overflow:\n{err}"
    );
}

#[test]
fn a_fault_that_is_no_overflow_still_dies_by_sigsegv() {
    const NAME: &str = "a_fault_that_is_no_overflow_still_dies_by_sigsegv";
    if is_child(NAME) {
        no_core_dumps();
        hub::run(|| {
            hub::spawn(|| {
                // SAFETY: deliberately unsound: reading an unmapped address to cause a SIGSEGV
                // that is not a stack overflow. The process dies before the value is used.
                let v = unsafe { std::ptr::read_volatile(16 as *const u64) };
                std::hint::black_box(v);
            })
            .join()
        })
        .unwrap();
        unreachable!("the wild read should have killed the process");
    }
    let err = child_killed_by(NAME, &[], libc::SIGSEGV);
    assert!(
        !err.contains("overflow"),
        "a wild read was reported as an overflow:\n{err}"
    );
}

#[test]
fn hubs_on_many_threads_register_and_release_their_guards() {
    // More hubs over the process's life than the table has slots: each thread's hub frees its slot
    // at teardown, so later hubs still get one (checked by overflowing in a late hub).
    const NAME: &str = "hubs_on_many_threads_register_and_release_their_guards";
    if is_child(NAME) {
        no_core_dumps();
        for _ in 0..300 {
            std::thread::spawn(|| hub::spawn(|| 1).join().unwrap())
                .join()
                .unwrap();
        }
        std::thread::spawn(|| {
            let g = hub::Builder::new().name("late").spawn(|| recurse(u64::MAX));
            eprintln!("ID={}", g.id());
            let _ = g.join();
        })
        .join()
        .unwrap();
        unreachable!("the overflow should have aborted the process");
    }
    assert_overflow_reported(NAME, &[("GREENHUB_STACK_SIZE", "1m")], " (late)", 1024);
}

#[test]
fn a_thread_without_an_alternate_signal_stack_gets_one() {
    // A thread that has no sigaltstack (as threads made by C code may) still gets the report: the
    // hub maps an alternate stack of its own for the handler to run on.
    const NAME: &str = "a_thread_without_an_alternate_signal_stack_gets_one";
    if is_child(NAME) {
        no_core_dumps();
        std::thread::spawn(|| {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling this thread's alternate signal stack touches no Rust memory
            // (Rust's runtime unmaps its own at thread exit either way).
            assert_eq!(unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) }, 0);
            let g = hub::Builder::new()
                .name("no-altstack")
                .spawn(|| recurse(u64::MAX));
            eprintln!("ID={}", g.id());
            let _ = g.join();
        })
        .join()
        .unwrap();
        unreachable!("the overflow should have aborted the process");
    }
    assert_overflow_reported(
        NAME,
        &[("GREENHUB_STACK_SIZE", "512k")],
        " (no-altstack)",
        512,
    );
}

#[test]
fn a_hub_installs_an_alternate_signal_stack_where_none_was() {
    // The hub installs one on a thread that has none, and uninstalls and unmaps it at the
    // thread-exit teardown; 50 threads in a row exercise both (a stale or double unmap would
    // crash this process).
    for _ in 0..50 {
        std::thread::spawn(|| {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: as in the test above.
            assert_eq!(unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) }, 0);
            assert_eq!(hub::spawn(|| 3).join().unwrap(), 3);
            let mut cur: libc::stack_t = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: 0,
                ss_size: 0,
            };
            // SAFETY: reads the current alternate stack into `cur`.
            assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) }, 0);
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0, "the hub installed one");
        })
        .join()
        .unwrap();
    }
}
