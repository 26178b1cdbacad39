//! Echo-server benchmark: greenhub beside what users would pick instead.
//!
//! `cargo bench -p greenhub-bench --bench echo` (full: ~15 min) or
//! `GREENHUB_BENCH_QUICK=1 cargo bench -p greenhub-bench --bench echo` (smoke run, < 1 min). See BENCHMARKS.md for the tables and what each number means.
//!
//! # Shape of one measurement
//!
//! ```text
//!  this process (pinned to CPU 0)               child process (pinned to CPU 1)
//!  ┌────────────────────────────┐               ┌──────────────────────────────────────┐
//!  │ server thread of one peer  │ <-- N TCP --> │ mio load client: each connection     │
//!  │ (greenhub, tokio, may, ...)│    loopback   │ sends `size` bytes, waits for all of │
//!  │ main thread: waits on pipe │               │ them back, records the round trip in │
//!  └────────────────────────────┘               │ an hdrhistogram, sends again         │
//!                                               └──────────────────────────────────────┘
//! ```
//!
//! The load client runs in a child process (the bench binary itself, started with
//! `GREENHUB_ECHO_CLIENT` set) rather than a thread: 10,000 connections need 20,000 descriptors on
//! loopback and the hard `RLIMIT_NOFILE` here is 20,000; and with the client out of the process,
//! the server's CPU time is simply the process's CPU time (every server thread, whatever the peer
//! spawns: may's workers, one thread per connection) during the measured window. The child prints
//! `START` when its warm-up ends and `STOP` when the measured window ends; the parent samples
//! `CLOCK_PROCESS_CPUTIME_ID` at each.
//!
//! Fairness: every peer gets a listener made the same way (backlog 4096), `TCP_NODELAY` on accepted
//! sockets, reads of up to 4096 bytes and writes back what it read; the same client; the same
//! warm-up; peers run in interleaved rounds (A B C ... A B C ...) per cell, and the tables show the
//! median and the spread (min–max) over rounds.
//!
//! Environment: `GREENHUB_BENCH_QUICK=1` (0.3 s per cell, 1 round, 50 connections × 64 B);
//! `GREENHUB_BENCH_SECS`, `GREENHUB_BENCH_ROUNDS`, `GREENHUB_BENCH_CONNS=1,50`,
//! `GREENHUB_BENCH_SIZES=64,4096`, `GREENHUB_BENCH_PEERS=greenhub-stack,tokio` override the plan
//! (the last is handy under `valgrind --tool=callgrind`, which follows only this process).
//!
//! `cargo bench --features monkey --bench echo` adds the peer `std-monkey`: the std::net
//! thread-per-connection server with `hub::spawn` in place of `thread::spawn`, made cooperative by
//! libc interposition. With the feature every peer's system calls go through greenhub's
//! pass-through definitions, so compare peers within one such run.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::FromRawFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

const BUF: usize = 4096;
const BACKLOG: i32 = 4096;

// ---------------------------------------------------------------------------------------------
// Small OS helpers.

fn pin_to_cpu(cpu: usize) {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; pid 0 = caller.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time of this whole process (every thread), in nanoseconds.
fn process_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes the local timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// A loopback listener with backlog 4096, made the same way for every peer.
fn listener() -> StdListener {
    // SAFETY: socket/setsockopt/bind/listen on a descriptor we own; the sockaddr is a local; the fd
    // is handed to StdListener, which owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let r = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(r == 0, "bind: {}", io::Error::last_os_error());
        assert!(
            libc::listen(fd, BACKLOG) == 0,
            "listen: {}",
            io::Error::last_os_error()
        );
        StdListener::from_raw_fd(fd)
    }
}

// ---------------------------------------------------------------------------------------------
// The servers. Each `start_*` runs the server on a new thread and returns its handle; `stop` sets
// the flag and makes one connection so the accept loop sees it, then joins.

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Option<greenhub::hub::Stats>>,
    /// greenhub only: a control connection to the server's main greenlet. `S` snapshots
    /// `hub::stats()`, `E` snapshots again and returns the difference (the measured window's
    /// counters), `Q` stops the server.
    control: Option<StdStream>,
}

impl Server {
    fn command(&mut self, c: u8) {
        if let Some(s) = &mut self.control {
            s.write_all(&[c]).unwrap();
        }
    }

    fn stop(mut self) -> Option<greenhub::hub::Stats> {
        self.stop.store(true, Ordering::SeqCst);
        if self.control.is_some() {
            self.command(b'Q');
        } else {
            let _ = StdStream::connect(self.addr);
        }
        self.thread.join().expect("server thread panicked")
    }
}

fn spawn_server(
    name: &str,
    body: impl FnOnce(StdListener, Arc<AtomicBool>) -> Option<greenhub::hub::Stats> + Send + 'static,
) -> Server {
    let l = listener();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = thread::Builder::new()
        .name(name.into())
        .spawn(move || body(l, s))
        .unwrap();
    Server {
        addr,
        stop,
        thread,
        control: None,
    }
}

fn greenhub_server(heap_buffer: bool) -> Server {
    use greenhub::server::StreamServer;
    let control = StdListener::bind("127.0.0.1:0").unwrap();
    let control_addr = control.local_addr().unwrap();
    let mut server = spawn_server("greenhub", move |l, _stop| {
        greenhub::hub::run(move || {
            let handler = move |s: greenhub::net::TcpStream, _| {
                if heap_buffer {
                    greenhub_echo_heap(s)
                } else {
                    greenhub_echo_stack(s)
                }
            };
            let srv = StreamServer::new(greenhub::net::TcpListener::from(l), handler).unwrap();
            srv.start().unwrap();
            let control = greenhub::net::TcpListener::from(control);
            let (mut c, _) = control.accept().unwrap();
            let mut before = greenhub::hub::stats();
            let mut window = None;
            let mut cmd = [0u8; 1];
            while c.read_exact(&mut cmd).is_ok() {
                match cmd[0] {
                    b'S' => before = greenhub::hub::stats(),
                    b'E' => window = Some(stats_delta(&before, &greenhub::hub::stats())),
                    _ => break,
                }
            }
            srv.stop(Duration::ZERO);
            window
        })
    });
    server.control = Some(StdStream::connect(control_addr).unwrap());
    server
}

fn stats_delta(a: &greenhub::hub::Stats, b: &greenhub::hub::Stats) -> greenhub::hub::Stats {
    let mut d = *b;
    d.switches -= a.switches;
    d.slice_saves -= a.slice_saves;
    d.slice_restores -= a.slice_restores;
    d.bytes_copied -= a.bytes_copied;
    d.ticks -= a.ticks;
    d.polls -= a.polls;
    for (x, y) in d
        .slice_size_histogram
        .iter_mut()
        .zip(a.slice_size_histogram)
    {
        *x -= y;
    }
    d
}

fn tokio_server() -> Server {
    spawn_server("tokio", |l, stop| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async move {
            l.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let mut buf = [0u8; BUF];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        None
    })
}

fn may_server() -> Server {
    spawn_server("may", |l, stop| {
        use std::os::fd::IntoRawFd;
        // SAFETY: the descriptor comes from a listener we own and give up here.
        let l = unsafe { may::net::TcpListener::from_raw_fd(l.into_raw_fd()) };
        // SAFETY: may's `go!` is unsafe because a coroutine must not use thread-locals across
        // yields or block the thread; the accept loop and handlers only do may I/O.
        let acceptor = unsafe {
            may::coroutine::spawn(move || loop {
                let Ok((mut s, _)) = l.accept() else {
                    continue;
                };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let _ = s.set_nodelay(true);
                may::coroutine::spawn(move || {
                    let mut buf = [0u8; BUF];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            })
        };
        let _ = acceptor.join();
        None
    })
}

fn mio_server() -> Server {
    spawn_server("mio", |l, stop| {
        use mio::{Events, Interest, Poll, Token};
        struct Conn {
            s: mio::net::TcpStream,
            pending: Vec<u8>,
        }
        l.set_nonblocking(true).unwrap();
        let mut l = mio::net::TcpListener::from_std(l);
        let mut poll = Poll::new().unwrap();
        const LISTENER: Token = Token(usize::MAX);
        poll.registry()
            .register(&mut l, LISTENER, Interest::READABLE)
            .unwrap();
        let mut conns: slab::Slab<Conn> = slab::Slab::new();
        let mut events = Events::with_capacity(1024);
        let mut buf = [0u8; BUF];
        'outer: loop {
            poll.poll(&mut events, None).unwrap();
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    loop {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                if stop.load(Ordering::SeqCst) {
                                    break 'outer;
                                }
                                let _ = s.set_nodelay(true);
                                let e = conns.vacant_entry();
                                poll.registry()
                                    .register(
                                        &mut s,
                                        Token(e.key()),
                                        Interest::READABLE | Interest::WRITABLE,
                                    )
                                    .unwrap();
                                e.insert(Conn {
                                    s,
                                    pending: Vec::new(),
                                });
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    }
                    continue;
                }
                let key = ev.token().0;
                let Some(c) = conns.get_mut(key) else {
                    continue;
                };
                let mut dead = false;
                // Flush what an earlier write left over.
                while !c.pending.is_empty() {
                    match c.s.write(&c.pending) {
                        Ok(n) => drop(c.pending.drain(..n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            dead = true;
                            break;
                        }
                    }
                }
                // Edge-triggered: read until drained, echoing each chunk.
                while !dead && c.pending.is_empty() {
                    match c.s.read(&mut buf) {
                        Ok(0) => dead = true,
                        Ok(n) => {
                            let mut off = 0;
                            while off < n {
                                match c.s.write(&buf[off..n]) {
                                    Ok(w) => off += w,
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                        c.pending.extend_from_slice(&buf[off..n]);
                                        break;
                                    }
                                    Err(_) => {
                                        dead = true;
                                        break;
                                    }
                                }
                            }
                            // A short read drained the queue: the next arrival makes a new edge,
                            // so skip the read that would only say WouldBlock (tokio does the same).
                            if n < BUF {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => dead = true,
                    }
                }
                if dead {
                    let mut c = conns.remove(key);
                    let _ = poll.registry().deregister(&mut c.s);
                }
            }
        }
        None
    })
}

fn threads_server() -> Server {
    spawn_server("threads", |l, stop| {
        let mut handlers = Vec::new();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let _ = s.set_nodelay(true);
            let h = thread::Builder::new().spawn(move || {
                let mut buf = [0u8; BUF];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            match h {
                Ok(h) => handlers.push(h),
                Err(e) => eprintln!("threads: cannot spawn a thread: {e}"),
            }
        }
        for h in handlers {
            let _ = h.join();
        }
        None
    })
}

/// The std::net thread-per-connection server of `threads_server` with `thread::spawn` ->
/// `hub::spawn`, made cooperative by the `monkey` feature (libc interposition).
#[cfg(feature = "monkey")]
fn std_monkey_server() -> Server {
    spawn_server("std-monkey", |l, stop| {
        assert!(greenhub::monkey::is_active());
        greenhub::hub::run(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let _ = s.set_nodelay(true);
                greenhub::hub::spawn(move || {
                    let mut buf = vec![0u8; BUF];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        None
    })
}

const PEERS: &[&str] = &[
    "greenhub-stack",
    "greenhub-heap",
    "tokio-ct",
    "may-1w",
    "mio-loop",
    "threads",
    #[cfg(feature = "monkey")]
    "std-monkey",
];

fn start_peer(name: &str) -> Server {
    match name {
        "greenhub-stack" => greenhub_server(false),
        "greenhub-heap" => greenhub_server(true),
        "tokio-ct" => tokio_server(),
        "may-1w" => may_server(),
        "mio-loop" => mio_server(),
        "threads" => threads_server(),
        #[cfg(feature = "monkey")]
        "std-monkey" => std_monkey_server(),
        _ => panic!("unknown peer {name}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The load client (child process).

struct ClientConn {
    s: mio::net::TcpStream,
    sent_at: Instant,
    written: usize,
    received: usize,
}

fn client_main(spec: &str) {
    pin_to_cpu(1);
    raise_nofile();
    let parts: Vec<&str> = spec.split(';').collect();
    let addr: SocketAddr = parts[0].parse().unwrap();
    let conns: usize = parts[1].parse().unwrap();
    let size: usize = parts[2].parse().unwrap();
    let warm = Duration::from_millis(parts[3].parse().unwrap());
    let run = Duration::from_millis(parts[4].parse().unwrap());
    let msg = vec![0x5au8; size];
    let mut poll = mio::Poll::new().unwrap();
    let mut cs: Vec<ClientConn> = Vec::with_capacity(conns);
    for i in 0..conns {
        let s = loop {
            match StdStream::connect(addr) {
                Ok(s) => break s,
                Err(e) => {
                    eprintln!("client: connect {i}: {e}; retrying");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        };
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut s = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(
                &mut s,
                mio::Token(i),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .unwrap();
        cs.push(ClientConn {
            s,
            sent_at: Instant::now(),
            written: 0,
            received: 0,
        });
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let mut buf = vec![0u8; BUF.max(size)];
    let mut events = mio::Events::with_capacity(4096);
    let mut out = io::stdout().lock();
    // Send the first message on every connection.
    let start = Instant::now();
    for c in cs.iter_mut() {
        c.sent_at = start;
        send_some(c, &msg);
    }
    let warm_end = start + warm;
    let mut measuring = false;
    let mut measure_start = warm_end;
    let mut end = warm_end + run;
    let mut warm_rts = 0u64;
    let mut rts = 0u64;
    loop {
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            measure_start = now;
            end = now + run;
            writeln!(out, "START").unwrap();
            out.flush().unwrap();
        }
        if measuring && now >= end {
            break;
        }
        let timeout = if measuring { end - now } else { warm_end - now };
        poll.poll(&mut events, Some(timeout)).unwrap();
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if c.written < size {
                send_some(c, &msg);
                if c.written < size {
                    continue;
                }
            }
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => panic!("client: the server closed a connection"),
                    Ok(n) => {
                        c.received += n;
                        assert!(c.received <= size, "client: echoed more than was sent");
                        if c.received == size {
                            let t = Instant::now();
                            if measuring {
                                hist.saturating_record((t - c.sent_at).as_nanos().max(1) as u64);
                                rts += 1;
                            } else {
                                warm_rts += 1;
                            }
                            c.received = 0;
                            c.written = 0;
                            c.sent_at = t;
                            send_some(c, &msg);
                            if c.written < size {
                                break;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("client: read: {e}"),
                }
            }
        }
    }
    let elapsed = measure_start.elapsed();
    writeln!(out, "STOP").unwrap();
    out.flush().unwrap();
    drop(cs);
    writeln!(
        out,
        "RESULT {warm_rts} {rts} {} {} {} {}",
        elapsed.as_nanos(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999)
    )
    .unwrap();
    out.flush().unwrap();
}

fn send_some(c: &mut ClientConn, msg: &[u8]) {
    while c.written < msg.len() {
        match c.s.write(&msg[c.written..]) {
            Ok(n) => c.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("client: write: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

#[derive(Clone, Copy, Debug)]
struct Sample {
    rts_per_s: f64,
    cpu_us_per_rt: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

struct CellRun {
    sample: Sample,
    total_rts: u64,
    /// Round trips including the warm-up (for instruction counts per round trip).
    all_rts: u64,
    stats: Option<greenhub::hub::Stats>,
}

fn run_cell(peer: &str, conns: usize, size: usize, warm: Duration, run: Duration) -> CellRun {
    let mut server = start_peer(peer);
    let spec = format!(
        "{};{};{};{};{}",
        server.addr,
        conns,
        size,
        warm.as_millis(),
        run.as_millis()
    );
    let mut child = self_command()
        .env("GREENHUB_ECHO_CLIENT", spec)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start the client process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut cpu0 = 0;
    let mut cpu1 = 0;
    let mut result = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        match line.split_whitespace().next() {
            Some("START") => {
                cpu0 = process_cpu_ns();
                server.command(b'S');
            }
            Some("STOP") => {
                cpu1 = process_cpu_ns();
                server.command(b'E');
            }
            Some("RESULT") => result = Some(line),
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let stats = server.stop();
    let result = result.unwrap_or_else(|| panic!("{peer}: the client failed ({status})"));
    let f: Vec<f64> = result
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (warm_rts, rts, ns) = (f[0], f[1], f[2]);
    CellRun {
        sample: Sample {
            rts_per_s: rts / (ns / 1e9),
            cpu_us_per_rt: (cpu1 - cpu0) as f64 / 1e3 / rts.max(1.0),
            p50_us: f[3] / 1e3,
            p99_us: f[4] / 1e3,
            p999_us: f[5] / 1e3,
        },
        total_rts: rts as u64,
        all_rts: (warm_rts + rts) as u64,
        stats,
    }
}

fn env_list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn fmt_n(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 10_000.0 {
        format!("{:.1}k", x / 1e3)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn main() {
    if let Ok(spec) = std::env::var("GREENHUB_ECHO_CLIENT") {
        client_main(&spec);
        return;
    }
    // cargo bench passes `--bench`; a test run (`cargo test --benches`) passes nothing useful
    // either way: only run when asked to bench, or always when run directly.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    may::config().set_workers(1);
    let nofile = raise_nofile();
    pin_to_cpu(0);
    let quick = std::env::var("GREENHUB_BENCH_QUICK").is_ok_and(|v| v == "1");
    let secs: f64 = std::env::var("GREENHUB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.3 } else { 3.0 });
    let rounds: usize = std::env::var("GREENHUB_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let conns: Vec<usize> = env_list("GREENHUB_BENCH_CONNS")
        .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
        .unwrap_or(if quick {
            vec![50]
        } else {
            vec![1, 50, 1000, 10_000]
        });
    let sizes: Vec<usize> = env_list("GREENHUB_BENCH_SIZES")
        .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
        .unwrap_or(if quick { vec![64] } else { vec![64, 4096] });
    let peers: Vec<String> = env_list("GREENHUB_BENCH_PEERS")
        .unwrap_or_else(|| PEERS.iter().map(|s| s.to_string()).collect());
    let run = Duration::from_secs_f64(secs);
    let warm = Duration::from_secs_f64((secs / 6.0).clamp(0.1, 0.5));
    eprintln!(
        "echo: {} s per cell after {} ms warm-up, {rounds} round(s), conns {conns:?}, sizes \
         {sizes:?}, RLIMIT_NOFILE {nofile}",
        secs,
        warm.as_millis()
    );
    // results[(size, conns, peer)] = samples
    let mut results: HashMap<(usize, usize, String), Vec<Sample>> = HashMap::new();
    let mut copies: Copies = HashMap::new();
    for &size in &sizes {
        for &n in &conns {
            for round in 0..rounds {
                for peer in &peers {
                    // 2 descriptors per connection live in two processes: n each, plus slack.
                    if n as u64 + 64 > nofile {
                        eprintln!("  skip {peer} at {n} connections: RLIMIT_NOFILE is {nofile}");
                        continue;
                    }
                    let r = run_cell(peer, n, size, warm, run);
                    let s = r.sample;
                    eprintln!(
                        "  {size:>5} B {n:>6} conns round {round} {peer:<15} {:>9.0} rt/s {:>7.2} \
                         µs/rt p50 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} µs ({} rt with warm-up)",
                        s.rts_per_s, s.cpu_us_per_rt, s.p50_us, s.p99_us, s.p999_us, r.all_rts
                    );
                    if let Some(st) = r.stats {
                        copies
                            .entry((size, n, peer.clone()))
                            .or_default()
                            .push((r.total_rts, st));
                    }
                    results.entry((size, n, peer.clone())).or_default().push(s);
                }
            }
        }
    }
    // Servers that linger (may's global worker) must not bill the others: show what the process
    // burns while idle.
    let c0 = process_cpu_ns();
    thread::sleep(Duration::from_secs(1));
    eprintln!(
        "echo: this process used {:.1} ms of CPU in 1 s idle after the run (background cost of \
         lingering runtimes; it is included in every window)",
        (process_cpu_ns() - c0) as f64 / 1e6
    );
    print_tables(&results, &copies, &sizes, &conns, &peers);
}

/// hub::stats() of the measured windows, by (size, conns, peer): (round trips, counters) per round.
type Copies = HashMap<(usize, usize, String), Vec<(u64, greenhub::hub::Stats)>>;

fn print_tables(
    results: &HashMap<(usize, usize, String), Vec<Sample>>,
    copies: &Copies,
    sizes: &[usize],
    conns: &[usize],
    peers: &[String],
) {
    let mut out = String::new();
    for &size in sizes {
        out += &format!(
            "\n### {} messages\n\n| conns | server | round trips/s (median, min–max) | ratio to greenhub-stack | server µs/rt (median, min–max) | p50 µs | p99 µs | p99.9 µs |\n|---:|---|---|---:|---|---:|---:|---:|\n",
            if size >= 1024 { format!("{} KiB", size / 1024) } else { format!("{size} B") }
        );
        for &n in conns {
            let base = results
                .get(&(size, n, "greenhub-stack".to_string()))
                .map(|v| median(v.iter().map(|s| s.rts_per_s).collect()));
            for peer in peers {
                let Some(v) = results.get(&(size, n, peer.clone())) else {
                    out += &format!("| {n} | {peer} | skipped | | | | | |\n");
                    continue;
                };
                let rts: Vec<f64> = v.iter().map(|s| s.rts_per_s).collect();
                let cpu: Vec<f64> = v.iter().map(|s| s.cpu_us_per_rt).collect();
                let m = median(rts.clone());
                let (lo, hi) = spread(&rts);
                let (clo, chi) = spread(&cpu);
                let ratio = base.map_or("".to_string(), |b| format!("{:.2}", m / b));
                out += &format!(
                    "| {n} | {peer} | {} ({}–{}) | {ratio} | {:.2} ({:.2}–{:.2}) | {} | {} | {} |\n",
                    fmt_n(m),
                    fmt_n(lo),
                    fmt_n(hi),
                    median(cpu.clone()),
                    clo,
                    chi,
                    fmt_n(median(v.iter().map(|s| s.p50_us).collect())),
                    fmt_n(median(v.iter().map(|s| s.p99_us).collect())),
                    fmt_n(median(v.iter().map(|s| s.p999_us).collect())),
                );
            }
        }
    }
    out += "\n### Stack bytes copied by greenhub (hub::stats() over the measured windows of all rounds)\n\n| size | conns | server | round trips | switches/rt | slice saves/rt | avg slice B | bytes copied/rt | polls/rt | slice saves by size (2^k ≤ B < 2^(k+1): count) |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---|\n";
    for &size in sizes {
        for (&n, peer) in conns
            .iter()
            .flat_map(|n| ["greenhub-stack", "greenhub-heap"].map(move |p| (n, p)))
        {
            let Some(v) = copies.get(&(size, n, peer.to_string())) else {
                continue;
            };
            // Sum over rounds.
            let mut rts = 0u64;
            let mut st = greenhub::hub::Stats::default();
            for (r, s) in v {
                rts += r;
                st.switches += s.switches;
                st.slice_saves += s.slice_saves;
                st.slice_restores += s.slice_restores;
                st.bytes_copied += s.bytes_copied;
                st.polls += s.polls;
                for (a, b) in st
                    .slice_size_histogram
                    .iter_mut()
                    .zip(s.slice_size_histogram)
                {
                    *a += b;
                }
            }
            let rt = rts.max(1) as f64;
            let hist: Vec<String> = st
                .slice_size_histogram
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(k, c)| format!("2^{k}: {c}"))
                .collect();
            out += &format!(
                "| {size} | {n} | {peer} | {rts} | {:.2} | {:.3} | {:.0} | {:.0} | {:.3} | {} |\n",
                st.switches as f64 / rt,
                st.slice_saves as f64 / rt,
                st.bytes_copied as f64 / (st.slice_saves + st.slice_restores).max(1) as f64,
                st.bytes_copied as f64 / rt,
                st.polls as f64 / rt,
                hist.join(", ")
            );
        }
    }
    println!("{out}");
}
