//! Idle memory: resident bytes per parked greenlet and per idle echo connection, beside tokio
//! tasks, may coroutines and OS threads.
//!
//! `cargo bench -p greenhub-bench --bench idle_memory` (a few minutes; `GREENHUB_BENCH_QUICK=1` for
//! 10,000 only).
//!
//! Every measurement runs in a fresh child process (the bench binary itself, started with
//! `GREENHUB_IDLE` set), so one peer's allocator state never colours another's, and a peer that
//! dies at some count (out of memory maps, threads, descriptors) reports that instead of taking the
//! run down. The child reads its resident set from `/proc/self/statm` (resident pages × page size)
//! once its runtime is up and again after N waiters are parked and have settled for 1 s; the
//! difference over N is the figure. The "resident set" here is `VmRSS + VmPTE` from
//! `/proc/self/status`: page tables count too. Other kernel memory (socket buffers, thread
//! structs) is not counted.
//!
//! For idle echo connections the connecting side lives in yet another process (`GREENHUB_IDLE_CLIENT`),
//! so only the server's memory is measured.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The greenhub echo handlers, shared with the other benchmark so both measure the same code.
#[path = "common/handlers.rs"]
mod handlers;
use handlers::{greenhub_echo_heap, greenhub_echo_stack};

/// The helpers shared with the tests (descriptor limit, child processes).
#[path = "../../tests/support/mod.rs"]
mod support;
use support::{raise_nofile, self_command};

/// How long waiters sit parked before the second reading (long enough for greenhub to slice
/// the greenlets of idle stack regions to the heap: 500 ms, see src/rt/stacks.rs).
const SETTLE: Duration = Duration::from_millis(1000);
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

fn rss_bytes() -> u64 {
    // Resident pages plus page tables (VmPTE): many stack regions cost page-table pages that the
    // resident set does not show.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:") + kib("VmPTE:")) * 1024
}

/// What a child reports: `RESULT before after reached extra...`.
fn report(before: u64, after: u64, reached: usize, extra: &str) {
    println!("RESULT {before} {after} {reached} {extra}");
    io::stdout().flush().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Parked waiters, one child per (peer, count).

fn idle_greenhub(n: usize) {
    idle_greenhub_parked(n, false)
}

/// `n` greenlets parked in `Event::wait` (`sleep = false`) or in `hub::sleep` of an hour.
fn idle_greenhub_parked(n: usize, sleep: bool) {
    use greenhub::{hub, sync::Event};
    use std::cell::Cell;
    use std::rc::Rc;
    hub::run(move || {
        // Warm the hub: its stacks are mapped, its first switch done.
        hub::spawn(|| ()).join().unwrap();
        let before = rss_bytes();
        let ev = Rc::new(Event::new());
        let started = Rc::new(Cell::new(0usize));
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let (e, s) = (ev.clone(), started.clone());
            // One closure per kind, so neither's frame holds the other's inlined code.
            handles.push(if sleep {
                drop(e);
                hub::spawn(move || {
                    s.set(s.get() + 1);
                    hub::sleep(Duration::from_secs(3600));
                })
            } else {
                hub::spawn(move || {
                    s.set(s.get() + 1);
                    let _ = e.wait();
                })
            });
        }
        while started.get() < n {
            hub::sleep(Duration::from_millis(1));
        }
        hub::sleep(SETTLE);
        let after = rss_bytes();
        let st = hub::stats();
        report(
            before,
            after,
            n,
            &format!(
                "{} {} {} {}",
                st.slice_bytes_reserved,
                st.live,
                st.bytes_copied,
                st.slice_saves + st.slice_restores
            ),
        );
        // Skip tearing a million greenlets down.
        std::process::exit(0);
    });
}

fn idle_tokio(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async {}).await.unwrap();
        let before = rss_bytes();
        let notify = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let (nt, s) = (notify.clone(), started.clone());
            handles.push(tokio::spawn(async move {
                s.fetch_add(1, Ordering::Relaxed);
                nt.notified().await;
            }));
        }
        while started.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(SETTLE).await;
        report(before, rss_bytes(), n, "");
        std::process::exit(0);
    });
}

fn idle_may(n: usize) {
    may::config().set_workers(1);
    // SAFETY (for each `may::coroutine::spawn`): the coroutines only touch atomics and may's own
    // blocking primitive; no thread-locals are held across a yield.
    unsafe { may::coroutine::spawn(|| ()) }.join().unwrap();
    let before = rss_bytes();
    let flag = Arc::new(may::sync::SyncFlag::new());
    let started = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (f, s) = (flag.clone(), started.clone());
        // SAFETY: see above.
        let h = unsafe {
            may::coroutine::Builder::new().spawn(move || {
                s.fetch_add(1, Ordering::Relaxed);
                f.wait();
            })
        };
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                report(before, rss_bytes(), i, &format!("spawn failed: {e}"));
                std::process::exit(0);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(SETTLE);
    report(before, rss_bytes(), started.load(Ordering::Relaxed), "");
    std::process::exit(0);
}

fn idle_threads(n: usize) {
    let before = rss_bytes();
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let mut spawned = 0;
    let mut error = String::new();
    for _ in 0..n {
        let (p, s) = (pair.clone(), started.clone());
        match thread::Builder::new().spawn(move || {
            s.fetch_add(1, Ordering::Relaxed);
            let (m, cv) = &*p;
            let mut go = m.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
        }) {
            Ok(_) => spawned += 1,
            Err(e) => {
                error = format!("spawn failed after {spawned}: {e}");
                break;
            }
        }
    }
    while started.load(Ordering::Relaxed) < spawned {
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(SETTLE);
    report(before, rss_bytes(), spawned, &error);
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// Idle echo connections: a server here, the clients in another process.

/// Starts the client process for `n` connections to `addr`; returns it and a flag set when it has
/// connected them all (or has given up: then it says how many it made on stderr).
fn start_clients(addr: SocketAddr, n: usize) -> (std::process::Child, Arc<AtomicUsize>) {
    let mut child = self_command()
        .env("GREENHUB_IDLE_CLIENT", format!("{addr};{n}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let connected = Arc::new(AtomicUsize::new(usize::MAX));
    let c = connected.clone();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(k) = line.strip_prefix("CONNECTED ") {
                c.store(k.trim().parse().unwrap(), Ordering::SeqCst);
            }
        }
    });
    (child, connected)
}

fn client_main(spec: &str) {
    raise_nofile();
    let (addr, n) = spec.split_once(';').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = n.parse().unwrap();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        match StdStream::connect(addr) {
            Ok(s) => conns.push(s),
            Err(e) => {
                eprintln!("idle client: connection {i} failed: {e}");
                break;
            }
        }
    }
    println!("CONNECTED {}", conns.len());
    io::stdout().flush().unwrap();
    // Hold them until the parent closes our stdin.
    let _ = io::stdin().read(&mut [0u8; 1]);
}

fn idle_echo_greenhub(n: usize, heap_buffer: bool) {
    use greenhub::{hub, server::StreamServer};
    hub::run(move || {
        let srv = StreamServer::bind("127.0.0.1:0", move |s: greenhub::net::TcpStream, _| {
            if heap_buffer {
                greenhub_echo_heap(s)
            } else {
                greenhub_echo_stack(s)
            }
        })
        .unwrap();
        srv.start().unwrap();
        hub::sleep(Duration::from_millis(10));
        let before = rss_bytes();
        let (mut child, connected) = start_clients(srv.local_addr().unwrap(), n);
        let mut target = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            hub::sleep(Duration::from_millis(10));
            let k = connected.load(Ordering::SeqCst);
            if k != usize::MAX {
                target = k;
            }
            if srv.connections() >= target {
                break;
            }
        }
        hub::sleep(SETTLE);
        let after = rss_bytes();
        let st = hub::stats();
        let reached = srv.connections();
        drop(child.stdin.take());
        let _ = child.wait();
        report(
            before,
            after,
            reached,
            &format!(
                "{} {} {} {}",
                st.slice_bytes_reserved,
                st.live,
                st.bytes_copied,
                st.slice_saves + st.slice_restores
            ),
        );
        std::process::exit(0);
    });
}

fn idle_echo_tokio(n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let live = Arc::new(AtomicUsize::new(0));
        let lv = live.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                lv.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 || s.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let before = rss_bytes();
        let (mut child, connected) = start_clients(addr, n);
        let mut target = usize::MAX;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let k = connected.load(Ordering::SeqCst);
            if k != usize::MAX {
                target = k;
            }
            if live.load(Ordering::Relaxed) >= target {
                break;
            }
        }
        tokio::time::sleep(SETTLE).await;
        let after = rss_bytes();
        let reached = live.load(Ordering::Relaxed);
        drop(child.stdin.take());
        let _ = child.wait();
        report(before, after, reached, "");
        std::process::exit(0);
    });
}

fn child_main(spec: &str) {
    let (peer, n) = spec.split_once(';').unwrap();
    let n: usize = n.parse().unwrap();
    match peer {
        "greenhub" => idle_greenhub(n),
        "greenhub-sleep" => idle_greenhub_parked(n, true),
        "tokio" => idle_tokio(n),
        "may" => idle_may(n),
        "threads" => idle_threads(n),
        "echo-greenhub-stack" => {
            raise_nofile();
            idle_echo_greenhub(n, false)
        }
        "echo-greenhub-heap" => {
            raise_nofile();
            idle_echo_greenhub(n, true)
        }
        "echo-tokio" => {
            raise_nofile();
            idle_echo_tokio(n)
        }
        _ => panic!("unknown peer {peer}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

fn run_child(peer: &str, n: usize) -> Result<(u64, u64, usize, String), String> {
    let mut child = self_command()
        .env("GREENHUB_IDLE", format!("{peer};{n}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let pid = child.id();
    let d = done.clone();
    thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < CHILD_TIMEOUT {
            if d.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: kill(2) on our own child's pid; at worst the child already exited.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    done.store(true, Ordering::SeqCst);
    let Some(line) = out.lines().find(|l| l.starts_with("RESULT ")) else {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("{status}: {last}"));
    };
    let mut f = line.splitn(5, ' ').skip(1);
    let before = f.next().unwrap().parse().unwrap();
    let after = f.next().unwrap().parse().unwrap();
    let reached = f.next().unwrap().parse().unwrap();
    Ok((before, after, reached, f.next().unwrap_or("").to_string()))
}

fn main() {
    if let Ok(spec) = std::env::var("GREENHUB_IDLE_CLIENT") {
        return client_main(&spec);
    }
    if let Ok(spec) = std::env::var("GREENHUB_IDLE") {
        return child_main(&spec);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, or the binary run by
    // hand) the quick plan runs: a smoke test of every peer, not the full tables.
    let quick = std::env::var("GREENHUB_BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench");
    let counts: Vec<usize> = if quick {
        vec![10_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    let nofile = raise_nofile() as usize;
    // The server process holds one descriptor per connection plus a few; the clients are elsewhere.
    let max_conns = nofile.saturating_sub(100);
    let map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default();
    eprintln!(
        "idle_memory: counts {counts:?}; RLIMIT_NOFILE {nofile}; vm.max_map_count {}",
        map_count.trim()
    );
    let mut out = String::from(
        "\n### Idle waiters (RSS growth / count)\n\n| waiter | count | reached | RSS before | RSS after | bytes per waiter | notes |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    let mut rows = Vec::new();
    for peer in ["greenhub", "greenhub-sleep", "tokio", "may", "threads"] {
        for &n in &counts {
            rows.push((peer.to_string(), n));
        }
    }
    let mut conn_counts: Vec<usize> = if quick {
        vec![1_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    for c in conn_counts.iter_mut() {
        *c = (*c).min(max_conns);
    }
    conn_counts.dedup();
    for peer in ["echo-greenhub-stack", "echo-greenhub-heap", "echo-tokio"] {
        for &n in &conn_counts {
            rows.push((peer.to_string(), n));
        }
    }
    let mut last_peer = String::new();
    for (peer, n) in rows {
        if peer.starts_with("echo") && !last_peer.starts_with("echo") {
            out += "\n### Idle echo connections (server RSS growth / connection; clients in another process)\n\n| server | connections asked | reached | RSS before | RSS after | bytes per connection | notes |\n|---|---:|---:|---:|---:|---:|---|\n";
        }
        last_peer = peer.clone();
        let t0 = Instant::now();
        let r = run_child(&peer, n);
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok((before, after, reached, extra)) => {
                let per = (after.saturating_sub(before)) as f64 / reached.max(1) as f64;
                let mut notes = String::new();
                let ex: Vec<&str> = extra.split_whitespace().collect();
                if peer.contains("greenhub") && ex.len() == 4 {
                    let f: Vec<f64> = ex.iter().map(|x| x.parse().unwrap()).collect();
                    let sl = f[0] / f[1].max(1.0);
                    notes = format!(
                        "slice_bytes_reserved/live = {sl:.0} B (average slice copied: {:.0} B); \
                         the rest, {:.0} B, is the control block, waiter, I/O slot and allocator \
                         overhead",
                        f[2] / f[3].max(1.0),
                        per - sl
                    );
                } else if !extra.trim().is_empty() {
                    notes = extra.trim().to_string();
                }
                if peer.starts_with("echo") && n == max_conns && n < 1_000_000 && !quick {
                    notes += &format!(
                        " (the most this machine allows: one descriptor per connection, hard \
                         RLIMIT_NOFILE {nofile}; 100,000 and 1,000,000 are out of reach)"
                    );
                }
                if reached < n {
                    notes += &format!(" (only {reached} of {n} reached)");
                }
                eprintln!(
                    "  {peer:<20} {n:>8}: reached {reached}, {per:.0} B each ({secs:.1} s) {notes}"
                );
                out += &format!(
                    "| {peer} | {n} | {reached} | {:.1} MiB | {:.1} MiB | {per:.0} | {notes} |\n",
                    before as f64 / (1 << 20) as f64,
                    after as f64 / (1 << 20) as f64
                );
            }
            Err(why) => {
                eprintln!("  {peer:<20} {n:>8}: failed: {why}");
                out += &format!("| {peer} | {n} | failed | | | | {why} |\n");
            }
        }
    }
    println!("{out}");
}
