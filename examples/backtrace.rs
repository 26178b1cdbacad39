//! Checks the unwind info (CFI) of the context switch: a backtrace captured inside a worker greenlet
//! (after its slice was evicted to the heap and restored) and one captured on the hub's own stack
//! must walk their stack without crashing and end at `greenhub_v0_trampoline`, whose return-address
//! column is undefined. Exits non-zero if either does not.
//!
//! `cargo run --example backtrace` (add `--target aarch64-unknown-linux-gnu` and a qemu runner for
//! the aarch64 switch; see .ci/aarch64-qemu).

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::rc::Rc;

use greenhub::hub;

/// The symbol of each numbered frame of a rendered backtrace, innermost first.
fn frame_symbols(bt: &Backtrace) -> Vec<String> {
    bt.to_string()
        .lines()
        .filter_map(|line| {
            let (num, sym) = line.trim_start().split_once(": ")?;
            num.parse::<usize>().ok()?;
            Some(sym.trim().to_string())
        })
        .collect()
}

/// Prints the frames and says whether the walk reached `must_contain` and ended at the trampoline.
fn check(what: &str, bt: &Backtrace, must_contain: &str) -> bool {
    let frames = frame_symbols(bt);
    println!("--- {what}: {} frames", frames.len());
    for (i, f) in frames.iter().enumerate() {
        println!("  {i:2}: {f}");
    }
    let last_is_trampoline = frames
        .last()
        .is_some_and(|f| f.contains("greenhub_v0_trampoline"));
    let has_entry = frames.iter().any(|f| f.contains(must_contain));
    let ok = last_is_trampoline && has_entry;
    println!(
        "{what}: {} (ends at the trampoline: {last_is_trampoline}, passes {must_contain}: {has_entry})",
        if ok { "ok" } else { "FAILED" }
    );
    ok
}

#[inline(never)]
fn deep(n: u32) -> Backtrace {
    if n == 0 {
        Backtrace::force_capture()
    } else {
        let bt = deep(n - 1);
        std::hint::black_box(&bt);
        bt
    }
}

fn main() {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    // A worker whose slice is evicted and restored before it captures: a second worker takes the
    // shared stack in between.
    let a = hub::spawn(|| {
        hub::yield_now();
        hub::yield_now();
        deep(3)
    });
    let b = hub::spawn(|| {
        hub::yield_now();
        hub::yield_now();
    });
    let worker_bt = a.join().expect("the capturing greenlet failed");
    b.join().expect("the other greenlet failed");
    let stats = hub::stats();
    println!(
        "slices saved {} / restored {} before the capture completed",
        stats.slice_saves, stats.slice_restores
    );

    // A capture on the hub's own stack, from a hub callback.
    let hub_bt: Rc<RefCell<Option<Backtrace>>> = Rc::default();
    let slot = hub_bt.clone();
    hub::run_callback(move || *slot.borrow_mut() = Some(deep(2)));
    // Callbacks run at the start of the hub's next loop iteration, which may take a few yields.
    for _ in 0..1000 {
        if hub_bt.borrow().is_some() {
            break;
        }
        hub::yield_now();
    }
    let hub_bt = hub_bt
        .borrow_mut()
        .take()
        .expect("the hub callback did not run");

    let ok_worker = check("worker greenlet", &worker_bt, "worker_entry");
    let ok_hub = check("hub callback", &hub_bt, "hub_entry");
    if !(ok_worker && ok_hub && stats.slice_saves > 0) {
        eprintln!("backtrace check FAILED");
        std::process::exit(1);
    }
    println!("backtrace check ok");
}
