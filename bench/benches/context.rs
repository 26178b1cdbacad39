//! What per-greenlet context costs: a greenlet-local access, and a switch with and without a
//! tracing subscriber and spans.
//!
//! `cargo bench --bench context` prints nanoseconds per operation for every mode. For instruction
//! counts (steadier than time on a shared machine) run one mode under callgrind at two sizes and
//! take the difference per operation, as BENCHMARKS.md does:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/context-* local 100000
//! ```
//!
//! Modes (`MODE N`):
//! - `local`: N accesses `X.with(|x| x.set(x.get() + 1))` to a `greenlet_local!` `Cell<u64>`, from
//!   a worker greenlet;
//! - `tls`: the same with `thread_local!`, for comparison;
//! - `switch`: two greenlets alternate N times through the hub (N yields each), no subscriber;
//! - `switch-sub`: the same with tracing-subscriber's `Registry` as the thread's default
//!   subscriber, no span entered;
//! - `switch-span`: the same, each greenlet holding an entered span across its yields (so every
//!   switch exits one span and enters another);
//! - `slice`: prints the heap bytes reserved per parked greenlet's stack slice, N greenlets parked
//!   in `sleep` (what a greenlet that never touches its context costs on its stack).

use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use greenhub::{greenlet_local, hub};

greenlet_local! {
    static LOCAL: Cell<u64> = Cell::new(0);
}

thread_local! {
    static TLS: Cell<u64> = const { Cell::new(0) };
}

fn local(n: u64) -> u64 {
    hub::spawn(move || {
        LOCAL.with(|_| ()); // initialised outside the loop
        for _ in 0..n {
            LOCAL.with(|x| x.set(black_box(x.get()) + 1));
        }
        LOCAL.with(Cell::get)
    })
    .join()
    .unwrap()
}

fn tls(n: u64) -> u64 {
    hub::spawn(move || {
        for _ in 0..n {
            TLS.with(|x| x.set(black_box(x.get()) + 1));
        }
        TLS.with(Cell::get)
    })
    .join()
    .unwrap()
}

fn switch(n: u64, with_span: bool) -> u64 {
    let gs: Vec<_> = (0..2)
        .map(|i| {
            hub::spawn(move || {
                let _g = with_span.then(|| tracing::info_span!("g", i).entered());
                for _ in 0..n {
                    hub::yield_now();
                }
                n
            })
        })
        .collect();
    gs.into_iter().map(|g| g.join().unwrap()).sum()
}

/// Heap bytes per parked greenlet's saved slice, with N greenlets parked in `sleep` (prints it).
fn slice(n: u64) -> u64 {
    let gs: Vec<_> = (0..n)
        .map(|_| hub::spawn(|| hub::sleep(std::time::Duration::from_millis(50))))
        .collect();
    hub::sleep(std::time::Duration::from_millis(10)); // all started and parked
    let per = hub::stats().slice_bytes_reserved / n;
    println!("slice bytes reserved per parked greenlet: {per}");
    for g in gs {
        g.join().unwrap();
    }
    per
}

fn run(mode: &str, n: u64) -> u64 {
    match mode {
        "local" => local(n),
        "tls" => tls(n),
        "switch" => switch(n, false),
        "slice" => slice(n),
        "switch-sub" | "switch-span" => {
            use tracing_subscriber::layer::SubscriberExt;
            // A Registry with a layer that enables everything (the Registry alone enables
            // nothing, so spans would be disabled).
            let sub =
                tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::TRACE);
            tracing::subscriber::with_default(sub, || switch(n, mode == "switch-span"))
        }
        _ => panic!("unknown mode {mode}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [mode, n] = &args[..] {
        let n: u64 = n.parse().expect("N");
        black_box(hub::run({
            let mode = mode.clone();
            move || run(&mode, n)
        }));
        return;
    }
    for mode in ["local", "tls", "switch", "switch-sub", "switch-span"] {
        let n = 1_000_000;
        let t = Instant::now();
        let m = mode.to_owned();
        black_box(hub::run(move || run(&m, n)));
        let per = t.elapsed().as_nanos() as f64 / n as f64;
        let what = if mode.starts_with("switch") {
            "ns per yield pair"
        } else {
            "ns per access"
        };
        println!("{mode:12} {per:8.1} {what}");
    }
}
