//! Core operations in a loop, for callgrind instruction counts (repeatable on noisy machines):
//!
//! ```sh
//! cargo bench -p greenhub-bench --bench core_ops --no-run
//! B=$(ls -t target/release/deps/core_ops-* | grep -v '\.d$' | head -1)
//! for n in 10000 110000; do valgrind --tool=callgrind $B spawn $n; done   # (I(110k) - I(10k)) / 100k
//! ```
//!
//! Modes: `spawn` (spawn + join of a trivial greenlet from main), `yield` (main and a worker
//! yielding to each other through the hub: four switches per operation), `pair4k` (two greenlets
//! alternating with a live `[u8; 4096]`), `slice N` (prints the slice bytes of N greenlets parked in
//! `Event::wait` on a hub with one stack region). Without arguments (as `cargo bench` runs it) it
//! does a short run of each.

use std::hint::black_box;
use std::time::Duration;

use greenhub::hub;

fn run(mode: &str, n: u64) {
    match mode {
        "spawn" => {
            for i in 0..n {
                let g = hub::spawn(move || black_box(i));
                black_box(g.join().unwrap());
            }
        }
        "yield" => {
            let g = hub::spawn(move || {
                for _ in 0..n {
                    hub::yield_now()
                }
            });
            for _ in 0..n {
                hub::yield_now()
            }
            g.join().unwrap();
        }
        "pair4k" => {
            let f = move || {
                let mut b = [0u8; 4096];
                for i in 0..n {
                    b[i as usize % 4096] = i as u8;
                    black_box(&mut b);
                    hub::yield_now();
                }
                b[7]
            };
            let (a, c) = (hub::spawn(f), hub::spawn(f));
            a.join().unwrap();
            c.join().unwrap();
        }
        "slice" => {
            std::thread::spawn(move || {
                hub::Config::new().max_stacks(1).install().unwrap();
                let ev = std::rc::Rc::new(greenhub::sync::Event::new());
                let gs: Vec<_> = (0..n)
                    .map(|_| {
                        let e = ev.clone();
                        hub::spawn(move || {
                            let _ = e.wait();
                        })
                    })
                    .collect();
                hub::sleep(Duration::from_millis(10));
                let s = hub::stats();
                println!(
                    "slice bytes per parked greenlet: {}",
                    s.slice_bytes_reserved / s.live.max(1)
                );
                ev.set();
                for g in gs {
                    g.join().unwrap();
                }
            })
            .join()
            .unwrap();
        }
        other => panic!("unknown mode {other}: spawn, yield, pair4k or slice"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(mode) if mode != "--bench" => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
            run(mode, n);
        }
        _ => {
            for mode in ["spawn", "yield", "pair4k", "slice"] {
                run(mode, 1_000);
            }
        }
    }
}
