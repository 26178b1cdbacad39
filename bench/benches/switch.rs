//! Switch costs of greenhub beside its peers, measured in one run.
//!
//! `cargo bench -p greenhub-bench --bench switch` (about 40 s; `GREENHUB_BENCH_QUICK=1` for a ~5 s
//! smoke run).
//!
//! Every row is nanoseconds per operation: the median of several rounds, each round timing a loop
//! of many operations, with the fastest and slowest round beside it. Rows are grouped by the work
//! they do; the last column is each row's time over the greenhub row of its group (2.0x = twice as
//! slow as greenhub, 0.5x = twice as fast). BENCHMARKS.md says what each operation includes.
//!
//! Groups:
//! 1. **yield round trip**: a greenlet gives the hub its turn and is resumed; nothing else is
//!    ready, so the worker stays the occupant of its stack region and nothing is copied (the lazy
//!    path). Peers: corosensei resume + suspend, may `yield_now` with one worker, tokio
//!    `yield_now().await` in a spawned task of a current-thread runtime.
//! 2. **alternating yields with a live stack array** of 256 B, 1 KiB, 4 KiB: two greenlets take
//!    turns. By default each has a stack region of its own, so nothing is copied; the "on one
//!    region" row runs them on a hub with `max_stacks(1)`, so every yield evicts one slice to the
//!    heap and restores the other (the cost of slicing). The bytes copied per yield come from
//!    `hub::stats()`. Peers run the same two-task loop with the same arrays (their stacks or
//!    futures are never copied).
//! 3. **spawn + join** of a trivial greenlet from the main greenlet. Peers: corosensei create +
//!    resume to completion (on a reused stack), may `go!` + `join` from inside a coroutine, tokio
//!    `spawn` + `.await`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use greenhub::hub;

/// How long to run: rounds per row and the target duration of one round.
struct Plan {
    rounds: usize,
    round: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("GREENHUB_BENCH_QUICK").is_some_and(|v| v != "0") {
            Plan {
                rounds: 7,
                round: Duration::from_millis(25),
            }
        } else {
            Plan {
                rounds: 9,
                round: Duration::from_millis(150),
            }
        }
    }
}

/// One measured row.
struct Row {
    group: &'static str,
    name: String,
    median: f64,
    min: f64,
    max: f64,
    note: String,
}

/// Runs `body(iters)` (which performs `iters` operations and returns the time they took): first to
/// find an `iters` that fills a round, then `plan.rounds` times. Returns ns per operation:
/// (median, min, max).
fn measure(plan: &Plan, mut body: impl FnMut(u64) -> Duration) -> (f64, f64, f64) {
    let mut iters = 64u64;
    loop {
        let t = body(iters);
        if t >= plan.round / 8 || iters >= 1 << 30 {
            let per = t.as_secs_f64() / iters as f64;
            iters = ((plan.round.as_secs_f64() / per.max(1e-12)) as u64).clamp(64, 1 << 32);
            break;
        }
        iters *= 4;
    }
    let mut per_op: Vec<f64> = (0..plan.rounds)
        .map(|_| body(iters).as_nanos() as f64 / iters as f64)
        .collect();
    per_op.sort_by(f64::total_cmp);
    (
        per_op[per_op.len() / 2],
        per_op[0],
        per_op[per_op.len() - 1],
    )
}

fn row(
    rows: &mut Vec<Row>,
    plan: &Plan,
    group: &'static str,
    name: impl Into<String>,
    body: impl FnMut(u64) -> Duration,
) {
    let name = name.into();
    let (median, min, max) = measure(plan, body);
    eprintln!("  {group:<28} {name:<44} {median:>9.1} ns");
    rows.push(Row {
        group,
        name,
        median,
        min,
        max,
        note: String::new(),
    });
}

// ---------------------------------------------------------------------------------------------
// greenhub

/// A worker greenlet yields `n` times; the main greenlet waits in `join` meanwhile.
fn gh_worker_yield(n: u64) -> Duration {
    hub::spawn(move || {
        let t = Instant::now();
        for _ in 0..n {
            hub::yield_now();
        }
        t.elapsed()
    })
    .join()
    .expect("the yielding greenlet failed")
}

/// Main and one worker take turns: `n` yields in all, each a real round trip through the hub (two
/// switches: to the hub, to the other side) with no copying, since main is never copied and the
/// worker stays the occupant of its stack region.
fn gh_through_hub(n: u64) -> Duration {
    let half = n.div_ceil(2);
    let t = Instant::now();
    let g = hub::spawn(move || {
        for _ in 0..half {
            hub::yield_now();
        }
    });
    while !g.is_finished() {
        hub::yield_now();
    }
    let el = t.elapsed();
    g.join().expect("the yielding greenlet failed");
    el
}

/// The main greenlet yields `n` times, alone.
fn gh_main_yield(n: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        hub::yield_now();
    }
    t.elapsed()
}

/// `n` yields alternating between two greenlets, each keeping an `[u8; N]` live across its yields.
fn gh_pair<const N: usize>(n: u64) -> Duration {
    let half = n.div_ceil(2);
    let t = Instant::now();
    let a = hub::spawn(move || yield_with_array::<N>(half));
    let b = hub::spawn(move || yield_with_array::<N>(half));
    a.join().expect("greenlet a failed");
    b.join().expect("greenlet b failed");
    t.elapsed()
}

/// [`gh_pair`] on a thread of its own whose hub has one stack region (`max_stacks(1)`), so the two
/// greenlets share it and every switch between them copies both live slices: the cost of slicing.
fn gh_pair_sliced<const N: usize>(n: u64) -> Duration {
    gh_on_one_region(move || gh_pair::<N>(n))
}

/// Runs `f` on a fresh thread whose hub has a single stack region.
fn gh_on_one_region<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        hub::Config::new()
            .max_stacks(1)
            .install()
            .expect("a fresh thread has no hub");
        f()
    })
    .join()
    .expect("the benchmark thread panicked")
}

/// Yields `n` times with a live `[u8; N]` in this frame (black_box keeps it on the stack and live).
#[inline(never)]
fn yield_with_array<const N: usize>(n: u64) -> u8 {
    let mut buf = [0u8; N];
    let mut acc = 0u8;
    for i in 0..n {
        buf[(i as usize) % N] = i as u8;
        black_box(&mut buf);
        hub::yield_now();
        acc = acc.wrapping_add(black_box(&buf)[N - 1]);
    }
    acc
}

/// Runs `body(n)` (`n` yields) and says how many bytes the hub copied per yield and per slice copy,
/// from `hub::stats()`: the proof of which path (lazy or sliced) a row measured.
fn copied_per_yield(n: u64, body: impl FnOnce(u64) -> Duration) -> String {
    let before = hub::stats();
    body(n);
    let after = hub::stats();
    let bytes = after.bytes_copied - before.bytes_copied;
    let copies =
        (after.slice_saves - before.slice_saves) + (after.slice_restores - before.slice_restores);
    if copies == 0 {
        return format!("{bytes} B copied in {n} yields");
    }
    format!(
        "{:.0} B copied/yield, slice {:.0} B",
        bytes as f64 / n as f64,
        bytes as f64 / copies as f64
    )
}

fn gh_spawn_join(n: u64) -> Duration {
    let t = Instant::now();
    for i in 0..n {
        let g = hub::spawn(move || black_box(i));
        black_box(g.join().expect("the trivial greenlet failed"));
    }
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// corosensei

fn coro_round_trip(n: u64) -> Duration {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co = Coroutine::new(|y: &corosensei::Yielder<(), ()>, ()| loop {
        y.suspend(());
    });
    let t = Instant::now();
    for _ in 0..n {
        if let CoroutineResult::Return(()) = co.resume(()) {
            unreachable!()
        }
    }
    t.elapsed()
}

fn coro_create_run(n: u64) -> Duration {
    use corosensei::stack::DefaultStack;
    use corosensei::{Coroutine, CoroutineResult};
    let mut stack = DefaultStack::new(64 * 1024).expect("corosensei stack");
    let t = Instant::now();
    for i in 0..n {
        let mut co = Coroutine::with_stack(stack, move |_: &corosensei::Yielder<(), ()>, ()| {
            black_box(i)
        });
        match co.resume(()) {
            CoroutineResult::Return(v) => {
                black_box(v);
            }
            CoroutineResult::Yield(()) => unreachable!(),
        }
        stack = co.into_stack(); // the finished coroutine gives its stack back for the next one
    }
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// may (one worker thread)

fn may_yield(n: u64) -> Duration {
    may::go!(move || {
        let t = Instant::now();
        for _ in 0..n {
            may::coroutine::yield_now();
        }
        t.elapsed()
    })
    .join()
    .expect("may coroutine failed")
}

fn may_pair<const N: usize>(n: u64) -> Duration {
    let half = n.div_ceil(2);
    let t = Instant::now();
    let a = may::go!(move || may_yield_with_array::<N>(half));
    let b = may::go!(move || may_yield_with_array::<N>(half));
    a.join().expect("may coroutine a failed");
    b.join().expect("may coroutine b failed");
    t.elapsed()
}

#[inline(never)]
fn may_yield_with_array<const N: usize>(n: u64) -> u8 {
    let mut buf = [0u8; N];
    let mut acc = 0u8;
    for i in 0..n {
        buf[(i as usize) % N] = i as u8;
        black_box(&mut buf);
        may::coroutine::yield_now();
        acc = acc.wrapping_add(black_box(&buf)[N - 1]);
    }
    acc
}

fn may_spawn_join(n: u64) -> Duration {
    may::go!(move || {
        let t = Instant::now();
        for i in 0..n {
            let h = may::go!(move || black_box(i));
            black_box(h.join().expect("may coroutine failed"));
        }
        t.elapsed()
    })
    .join()
    .expect("may coroutine failed")
}

// ---------------------------------------------------------------------------------------------
// tokio (current-thread runtime)

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn tokio_yield(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let t = Instant::now();
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
            t.elapsed()
        })
        .await
        .expect("tokio task failed")
    })
}

fn tokio_pair<const N: usize>(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    let half = n.div_ceil(2);
    rt.block_on(async move {
        let t = Instant::now();
        let a = tokio::spawn(tokio_yield_with_array::<N>(half));
        let b = tokio::spawn(tokio_yield_with_array::<N>(half));
        a.await.expect("tokio task a failed");
        b.await.expect("tokio task b failed");
        t.elapsed()
    })
}

async fn tokio_yield_with_array<const N: usize>(n: u64) -> u8 {
    let mut buf = [0u8; N];
    let mut acc = 0u8;
    for i in 0..n {
        buf[(i as usize) % N] = i as u8;
        black_box(&mut buf);
        tokio::task::yield_now().await;
        acc = acc.wrapping_add(black_box(&buf)[N - 1]);
    }
    acc
}

fn tokio_spawn_await(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    rt.block_on(async move {
        let t = Instant::now();
        for i in 0..n {
            let h = tokio::spawn(async move { black_box(i) });
            black_box(h.await.expect("tokio task failed"));
        }
        t.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let plan = Plan::from_env();
    may::config().set_workers(1);
    let rt = tokio_rt();
    let mut rows = Vec::new();
    let started = Instant::now();
    eprintln!(
        "greenhub switch benchmark: {} rounds of ~{:?} per row",
        plan.rounds, plan.round
    );

    const G1: &str = "1 yield round trip";
    row(
        &mut rows,
        &plan,
        G1,
        "greenhub worker yield_now (lazy)",
        gh_worker_yield,
    );
    rows.last_mut().expect("a row").note = "nobody else ready: the fast path, no switch; "
        .to_string()
        + &copied_per_yield(10_000, gh_worker_yield);
    row(
        &mut rows,
        &plan,
        G1,
        "greenhub main<->worker yield_now (via hub)",
        gh_through_hub,
    );
    rows.last_mut().expect("a row").note =
        "two switches per yield; ".to_string() + &copied_per_yield(10_000, gh_through_hub);
    row(
        &mut rows,
        &plan,
        G1,
        "greenhub main-greenlet yield_now",
        gh_main_yield,
    );
    row(
        &mut rows,
        &plan,
        G1,
        "corosensei resume+suspend",
        coro_round_trip,
    );
    row(&mut rows, &plan, G1, "may yield_now (1 worker)", may_yield);
    row(
        &mut rows,
        &plan,
        G1,
        "tokio yield_now().await (current_thread)",
        |n| tokio_yield(&rt, n),
    );

    macro_rules! pair_group {
        ($group:expr, $n:literal) => {
            row(
                &mut rows,
                &plan,
                $group,
                format!("greenhub 2 greenlets, [u8; {}] live", $n),
                gh_pair::<$n>,
            );
            let bytes = copied_per_yield(10_000, gh_pair::<$n>);
            rows.last_mut().expect("a row").note = bytes;
            row(
                &mut rows,
                &plan,
                $group,
                format!("greenhub 2 greenlets on one region, [u8; {}] live", $n),
                gh_pair_sliced::<$n>,
            );
            let bytes = gh_on_one_region(|| copied_per_yield(10_000, gh_pair::<$n>));
            rows.last_mut().expect("a row").note = bytes;
            row(
                &mut rows,
                &plan,
                $group,
                format!("may 2 coroutines, [u8; {}] live", $n),
                may_pair::<$n>,
            );
            row(
                &mut rows,
                &plan,
                $group,
                format!("tokio 2 tasks, [u8; {}] live", $n),
                |n| tokio_pair::<$n>(&rt, n),
            );
        };
    }
    pair_group!("2 alternating yield, 256 B", 256);
    pair_group!("2 alternating yield, 1 KiB", 1024);
    pair_group!("2 alternating yield, 4 KiB", 4096);

    const G3: &str = "3 spawn + join";
    row(
        &mut rows,
        &plan,
        G3,
        "greenhub spawn + join (from main)",
        gh_spawn_join,
    );
    row(
        &mut rows,
        &plan,
        G3,
        "corosensei create + run (reused stack)",
        coro_create_run,
    );
    row(
        &mut rows,
        &plan,
        G3,
        "may go! + join (in a coroutine)",
        may_spawn_join,
    );
    row(&mut rows, &plan, G3, "tokio spawn + await", |n| {
        tokio_spawn_await(&rt, n)
    });

    print_table(&rows);
    println!(
        "\n{} rounds per row; ns per operation (per yield in group 2); total run {:.1} s",
        plan.rounds,
        started.elapsed().as_secs_f64()
    );
    print_targets(&rows);
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| {:<28} | {:<44} | {:>9} | {:>9} | {:>9} | {:>8} | note",
        "group", "implementation", "median ns", "min ns", "max ns", "ratio"
    );
    println!(
        "|{:-<30}|{:-<46}|{:->11}|{:->11}|{:->11}|{:->10}|------",
        "", "", "", "", "", ""
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.group == r.group && b.name.starts_with("greenhub"))
            .map(|b| b.median)
            .unwrap_or(f64::NAN);
        println!(
            "| {:<28} | {:<44} | {:>9.1} | {:>9.1} | {:>9.1} | {:>7.2}x | {}",
            r.group,
            r.name,
            r.median,
            r.min,
            r.max,
            r.median / base,
            r.note
        );
    }
}

fn print_targets(rows: &[Row]) {
    let get = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.median)
            .unwrap_or(f64::NAN)
    };
    let targets = [
        (
            "lazy yield round trip",
            get("greenhub worker yield_now (lazy)"),
            15.0,
        ),
        (
            "  ... through the hub",
            get("greenhub main<->worker yield_now (via hub)"),
            15.0,
        ),
        (
            "switch, 4 KiB live",
            get("greenhub 2 greenlets, [u8; 4096] live"),
            40.0,
        ),
        (
            "sliced switch at 1 KiB",
            get("greenhub 2 greenlets on one region, [u8; 1024] live"),
            150.0,
        ),
        (
            "spawn + join",
            get("greenhub spawn + join (from main)"),
            100.0,
        ),
    ];
    println!("\ntargets (reported, not asserted):");
    for (what, got, target) in targets {
        let verdict = if got <= target { "met" } else { "MISSED" };
        println!("  {what:<24} {got:>8.1} ns  target <= {target:.0} ns  {verdict}");
    }
}
