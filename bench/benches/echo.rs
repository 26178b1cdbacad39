//! Echo-server benchmark: greenhub beside what users would pick instead.
//!
//! `cargo bench -p greenhub-bench --bench echo` (full: ~15 min) or
//! `GREENHUB_BENCH_QUICK=1 cargo bench -p greenhub-bench --bench echo` (smoke run, < 1 min; also
//! what runs without `--bench`, as under `cargo test --benches`). See BENCHMARKS.md for the tables and what each number means.
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
//! (see also the callgrind mode below).
//!
//! # Callgrind mode
//!
//! `GREENHUB_BENCH_CALLGRIND=1 cargo bench -p greenhub-bench --bench echo` (about 2 min) counts
//! instructions, system calls and simulated cache misses per round trip instead of timing: each
//! cell runs in a process of its own under `valgrind --tool=callgrind` (this binary again, with
//! `GREENHUB_ECHO_CALLGRIND_CELL`); the client stays native. At START that process zeroes every
//! thread's counters, at STOP it dumps them (monitor commands `zero` and `dump window`, see
//! `common/callgrind.rs`) and sends the client the two instants, and the client counts the round
//! trips it completed between them. The driver reads the server threads' dumps (every thread but
//! the main one) and prints one row per cell. Setup, accepts, spawns and warm-up are outside the
//! window, so the figures repeat to within 0.3 % run to run.
//!
//! Under callgrind the server runs some 50x slower than the native client, which would then
//! answer every echo before the server's next read: a server that reads again after writing
//! (greenhub, and every peer after a full 4 KiB read) would find the next message waiting, and
//! whether it did would change from run to run (greenhub at 1,000 connections swung between 427
//! and 889 instructions per round trip). So in this mode each connection waits a think time
//! (`GREENHUB_BENCH_THINK_US`, 200 µs) after an echo before sending the next message: every
//! server parks once per round trip, as it does natively, while the slowed server still has the
//! other connections' messages queued. Overrides: `GREENHUB_BENCH_SECS` (window, 2),
//! `GREENHUB_BENCH_WARM_SECS` (1), `GREENHUB_BENCH_ROUNDS` (2), `GREENHUB_BENCH_CONNS` (50,1000),
//! `GREENHUB_BENCH_SIZES` (64,4096), `GREENHUB_BENCH_PEERS` (the four single-threaded servers),
//! `GREENHUB_BENCH_LL` (simulated last-level cache, `1048576,8,64`), and for analysis only
//! `GREENHUB_BENCH_VALGRIND_ARGS` (more valgrind options, such as `--dump-instr=yes`: greenlet
//! switches confuse callgrind's call tree, so per-instruction costs are the way to see where
//! misses fall). The dumps stay under `target/release/callgrind-echo/` for `callgrind_annotate`.
//!
//! `cargo bench --features monkey --bench echo` adds the peer `std-monkey`: the std::net
//! thread-per-connection server with `hub::spawn` in place of `thread::spawn`, made cooperative by
//! libc interposition. With the feature every peer's system calls go through greenhub's
//! pass-through definitions, so compare peers within one such run.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The greenhub echo handlers, shared with the other benchmark so both measure the same code.
#[path = "common/handlers.rs"]
mod handlers;
use handlers::{greenhub_echo_heap, greenhub_echo_stack};

/// Client requests to callgrind and its dump files.
#[path = "common/callgrind.rs"]
mod callgrind;

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
            // A signal (under valgrind: SIGCHLD when the client exits) may interrupt the wait.
            match poll.poll(&mut events, None) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r.unwrap(),
            }
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
    /// Echo received, next message not yet due (callgrind mode's think time).
    thinking: bool,
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
    // Callgrind mode (`1`): after STOP keep the load on until the parent sends the marks of its
    // counter window on stdin (see `callgrind_cell`), and count the round trips completed inside.
    let marked = parts.get(5) == Some(&"1");
    // Think time: how long each connection waits after an echo before sending the next message.
    let think = Duration::from_micros(parts.get(6).map_or(0, |s| s.parse().unwrap()));
    let mut due: std::collections::VecDeque<(Instant, usize)> = Default::default();
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
            thinking: false,
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
    // Callgrind mode: CLOCK_MONOTONIC of every round trip completed after START, and the marks.
    let mut done_at: Vec<u64> = Vec::new();
    let mut stopped = false;
    let mut marks = Marks::default();
    let mut elapsed = Duration::ZERO;
    loop {
        let now = Instant::now();
        if !measuring && now >= warm_end {
            measuring = true;
            measure_start = now;
            end = now + run;
            writeln!(out, "START").unwrap();
            out.flush().unwrap();
        }
        if measuring && !stopped && now >= end {
            stopped = true;
            elapsed = measure_start.elapsed();
            writeln!(out, "STOP").unwrap();
            out.flush().unwrap();
            if !marked {
                break;
            }
            marks.listen();
        }
        if stopped && marks.poll() {
            break;
        }
        // Messages whose think time is over (the queue is in due order: one think time for all).
        while let Some(&(at, i)) = due.front() {
            if at > now {
                break;
            }
            due.pop_front();
            let c = &mut cs[i];
            c.thinking = false;
            c.sent_at = now;
            send_some(c, &msg);
        }
        let mut timeout = if stopped {
            Duration::from_millis(1)
        } else if measuring {
            end - now
        } else {
            warm_end - now
        };
        if let Some(&(at, _)) = due.front() {
            timeout = timeout.min(at - now);
        }
        match poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        }
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if c.written < size && !c.thinking {
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
                            if measuring && !stopped {
                                hist.saturating_record((t - c.sent_at).as_nanos().max(1) as u64);
                                rts += 1;
                            } else if !measuring {
                                warm_rts += 1;
                            }
                            if marked && measuring {
                                done_at.push(monotonic_ns());
                            }
                            c.received = 0;
                            c.written = 0;
                            c.sent_at = t;
                            if !think.is_zero() {
                                c.thinking = true;
                                due.push_back((t + think, ev.token().0));
                                break;
                            }
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
    drop(cs);
    let (t0, t1) = (marks.zeroed, marks.dumped);
    let window_rts = done_at.iter().filter(|&&t| t0 <= t && t <= t1).count();
    writeln!(
        out,
        "RESULT {warm_rts} {rts} {} {} {} {} {window_rts} {}",
        elapsed.as_nanos(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        t1.saturating_sub(t0)
    )
    .unwrap();
    out.flush().unwrap();
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for the whole machine, so the client (native) and
/// the parent (under valgrind) can compare their instants.
fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes the local timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// The client's end of the callgrind window: the parent writes `MARKS <zeroed> <dumped>\n` (its
/// `monotonic_ns` right after zeroing the counters and right before dumping them) to the client's
/// stdin once the dump is written.
#[derive(Default)]
struct Marks {
    line: Vec<u8>,
    zeroed: u64,
    dumped: u64,
}

impl Marks {
    /// Makes stdin (the parent's pipe) non-blocking, so the load loop can poll it.
    fn listen(&mut self) {
        // SAFETY: fcntl on descriptor 0, which this process owns for its lifetime; only the
        // O_NONBLOCK status flag changes.
        unsafe {
            let fl = libc::fcntl(0, libc::F_GETFL);
            assert!(fl >= 0, "client: stdin: {}", io::Error::last_os_error());
            libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }

    /// Reads what stdin has; true once the marks line is complete.
    fn poll(&mut self) -> bool {
        let mut buf = [0u8; 128];
        loop {
            // SAFETY: read(2) into a local buffer of the length given.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                let e = io::Error::last_os_error();
                assert!(
                    n < 0,
                    "client: the parent closed stdin before sending the marks"
                );
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ),
                    "client: stdin: {e}"
                );
                return false;
            }
            self.line.extend_from_slice(&buf[..n as usize]);
            if self.line.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.line);
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|x| x.parse().expect("client: bad MARKS line"))
                    .collect();
                (self.zeroed, self.dumped) = (f[0], f[1]);
                return true;
            }
        }
    }
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
    /// Callgrind mode: round trips completed between the zero and the dump of the counters.
    window_rts: u64,
    /// Callgrind mode: nanoseconds between the zero and the dump.
    window_ns: u64,
}

/// How the parent marks the measured window it is told of by the client's START and STOP.
#[derive(Clone, Copy, PartialEq)]
enum Window {
    /// Process CPU time and `hub::stats()` snapshots (the timed bench).
    Timed,
    /// Zero every thread's callgrind counters at START, dump them at STOP, and tell the client
    /// the two instants so it counts the round trips completed between them. The client waits
    /// `think` after each echo before it sends the next message.
    Callgrind { think: Duration },
}

fn run_cell(
    peer: &str,
    conns: usize,
    size: usize,
    warm: Duration,
    run: Duration,
    window: Window,
) -> CellRun {
    let mut server = start_peer(peer);
    let spec = format!(
        "{};{};{};{};{};{};{}",
        server.addr,
        conns,
        size,
        warm.as_millis(),
        run.as_millis(),
        u8::from(window != Window::Timed),
        match window {
            Window::Timed => 0,
            Window::Callgrind { think } => think.as_micros(),
        }
    );
    let mut child = self_command()
        .env("GREENHUB_ECHO_CLIENT", spec)
        .stdout(Stdio::piped())
        .stdin(match window {
            Window::Timed => Stdio::null(),
            Window::Callgrind { .. } => Stdio::piped(),
        })
        .spawn()
        .expect("cannot start the client process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut cpu0 = 0;
    let mut cpu1 = 0;
    let mut zeroed = 0;
    let mut result = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        match (line.split_whitespace().next(), window) {
            (Some("START"), Window::Timed) => {
                cpu0 = process_cpu_ns();
                server.command(b'S');
            }
            (Some("STOP"), Window::Timed) => {
                cpu1 = process_cpu_ns();
                server.command(b'E');
            }
            // No control commands here: the window holds only the server's own work.
            (Some("START"), Window::Callgrind { .. }) => {
                callgrind::zero_all_threads();
                zeroed = monotonic_ns();
            }
            (Some("STOP"), Window::Callgrind { .. }) => {
                let dumped = monotonic_ns();
                callgrind::dump_all_threads(c"window");
                let mut stdin = child.stdin.take().unwrap();
                // A client that died is reported below (no RESULT).
                let _ = writeln!(stdin, "MARKS {zeroed} {dumped}");
            }
            (Some("RESULT"), _) => result = Some(line),
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
        window_rts: f[6] as u64,
        window_ns: f[7] as u64,
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

// ---------------------------------------------------------------------------------------------
// Callgrind mode: instructions, system calls and cache misses per round trip.

/// The peers, connection counts and sizes of the callgrind table unless overridden.
const CALLGRIND_PEERS: &[&str] = &["greenhub-stack", "greenhub-heap", "tokio-ct", "mio-loop"];

/// What one callgrind run of a cell measured: the server threads' counters over the window.
#[derive(Clone, Copy, Default)]
struct Counts {
    rts: u64,
    ir: u64,
    syscalls: u64,
    ll_misses: u64,
    d1_misses: u64,
    threads: usize,
}

impl Counts {
    fn per_rt(&self, x: u64) -> f64 {
        x as f64 / self.rts.max(1) as f64
    }
}

fn env_f64(var: &str, default: f64) -> f64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `GREENHUB_BENCH_CALLGRIND=1`: runs every cell in a process of its own under
/// `valgrind --tool=callgrind` (this binary again, with `GREENHUB_ECHO_CALLGRIND_CELL`), reads the
/// window's dump files and prints the table of BENCHMARKS.md "Instructions per round trip".
fn callgrind_main() {
    match std::process::Command::new("valgrind")
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => eprintln!(
            "echo (callgrind): {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => panic!("GREENHUB_BENCH_CALLGRIND=1: `valgrind --version` failed: {}", o.status),
        Err(e) => panic!(
            "GREENHUB_BENCH_CALLGRIND=1 needs valgrind on PATH (e.g. `apt-get install valgrind`): {e}"
        ),
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/echo-* -> target/<profile>/callgrind-echo
    let out = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("callgrind-echo");
    let _ = std::fs::remove_dir_all(&out);
    let secs = env_f64("GREENHUB_BENCH_SECS", 2.0);
    let warm = env_f64("GREENHUB_BENCH_WARM_SECS", 1.0);
    let rounds = env_f64("GREENHUB_BENCH_ROUNDS", 2.0) as usize;
    let think_us = env_f64("GREENHUB_BENCH_THINK_US", 200.0) as u64;
    let conns: Vec<usize> = env_list("GREENHUB_BENCH_CONNS")
        .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
        .unwrap_or(vec![50, 1000]);
    let sizes: Vec<usize> = env_list("GREENHUB_BENCH_SIZES")
        .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
        .unwrap_or(vec![64, 4096]);
    let peers: Vec<String> = env_list("GREENHUB_BENCH_PEERS")
        .unwrap_or_else(|| CALLGRIND_PEERS.iter().map(|s| s.to_string()).collect());
    eprintln!(
        "echo (callgrind): {warm} s warm-up + {secs} s window per cell, {rounds} round(s), conns \
         {conns:?}, sizes {sizes:?}, client think time {think_us} µs; dumps under {}",
        out.display()
    );
    let mut results: HashMap<(usize, usize, String), Vec<Counts>> = HashMap::new();
    let mut desc = Vec::new();
    for round in 0..rounds {
        for &size in &sizes {
            for &n in &conns {
                for peer in &peers {
                    let dir = out.join(format!("{peer}-{n}x{size}-r{round}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    let spec = format!(
                        "{peer};{n};{size};{};{};{think_us}",
                        (warm * 1e3) as u64,
                        (secs * 1e3) as u64
                    );
                    let (c, d) = callgrind_run(&exe, &dir, &spec);
                    eprintln!(
                        "  {size:>5} B {n:>5} conns round {round} {peer:<15} {:>7} rt  Ir/rt \
                         {:>7.1}  syscalls/rt {:>5.2}  LL/rt {:>6.3}  D1/rt {:>6.2}  ({} thread(s))",
                        c.rts,
                        c.per_rt(c.ir),
                        c.per_rt(c.syscalls),
                        c.per_rt(c.ll_misses),
                        c.per_rt(c.d1_misses),
                        c.threads
                    );
                    desc = d;
                    results.entry((size, n, peer.clone())).or_default().push(c);
                }
            }
        }
    }
    let mut t = String::from(
        "\n| size | conns | server | rt in window (each run) | Ir/rt | Ir/rt spread | syscalls/rt \
         | LL miss/rt | D1 miss/rt |\n|---:|---:|---|---|---:|---:|---:|---:|---:|\n",
    );
    for &size in &sizes {
        for &n in &conns {
            for peer in &peers {
                let Some(v) = results.get(&(size, n, peer.clone())) else {
                    continue;
                };
                let ir: Vec<f64> = v.iter().map(|c| c.per_rt(c.ir)).collect();
                let (lo, hi) = spread(&ir);
                let mean =
                    |f: &dyn Fn(&Counts) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
                let m = mean(&|c| c.per_rt(c.ir));
                let rts: Vec<String> = v.iter().map(|c| c.rts.to_string()).collect();
                t += &format!(
                    "| {size} | {n} | {peer} | {} | {m:.0} | {:.1} % | {:.2} | {:.3} | {:.2} |\n",
                    rts.join(", "),
                    (hi - lo) / m * 100.0,
                    mean(&|c| c.per_rt(c.syscalls)),
                    mean(&|c| c.per_rt(c.ll_misses)),
                    mean(&|c| c.per_rt(c.d1_misses)),
                );
            }
        }
    }
    t += &format!("\ncallgrind cache simulation: {}\n", desc.join("; "));
    println!("{t}");
}

/// One cell under callgrind, in `dir`: the server threads' counters over the window, and the
/// cache geometry (`desc:` lines) callgrind simulated.
fn callgrind_run(exe: &Path, dir: &Path, spec: &str) -> (Counts, Vec<String>) {
    let log = dir.join("valgrind.log");
    let o = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--cache-sim=yes",
            "--collect-systime=yes",
            "--separate-threads=yes",
            // A fixed geometry (this machine's L1s and L2), not the host's CPUID, so runs on other
            // machines compare: a VM reported its L3 as 320 MiB direct-mapped.
            "--I1=32768,8,64",
            "--D1=32768,8,64",
        ])
        .arg(format!(
            "--LL={}",
            std::env::var("GREENHUB_BENCH_LL").unwrap_or("1048576,8,64".into())
        ))
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join("callgrind.out").display()
        ))
        .arg(format!("--log-file={}", log.display()))
        // For analysis (e.g. `--dump-instr=yes` to see which instructions miss); not for figures.
        .args(
            std::env::var("GREENHUB_BENCH_VALGRIND_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .arg(exe)
        .env("GREENHUB_ECHO_CALLGRIND_CELL", spec)
        .current_dir(dir)
        .env_remove("GREENHUB_BENCH_CALLGRIND")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot start valgrind");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let cell = stdout.lines().find_map(|l| l.strip_prefix("CELL "));
    let (Some(cell), true) = (cell, o.status.success()) else {
        panic!(
            "callgrind run of {spec} failed ({}); valgrind's log: {}\n{stdout}",
            o.status,
            log.display()
        );
    };
    let f: Vec<u64> = cell
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let mut c = Counts {
        rts: f[0],
        ..Counts::default()
    };
    let mut desc = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        // callgrind.out is left empty with --separate-threads: the dumps are callgrind.out.N-TT
        // (N-th dump, thread TT) and callgrind.out-TT (at exit).
        if !name.starts_with("callgrind.out") || file_len(&path) == 0 {
            continue;
        }
        let d = callgrind::parse_dump(&path).unwrap();
        // Thread 1 is this process's main thread, which only relays START and STOP: every other
        // thread is the server's (one for the four single-threaded peers).
        if d.trigger != "dump window" || d.thread == 1 {
            continue;
        }
        assert!(
            d.thread != 0,
            "{}: no thread: line (--separate-threads?)",
            path.display()
        );
        c.threads += 1;
        c.ir += d.get("Ir");
        c.syscalls += d.get("sysCount");
        c.ll_misses += d.get("DLmr") + d.get("DLmw") + d.get("ILmr");
        c.d1_misses += d.get("D1mr") + d.get("D1mw");
        desc = d
            .desc
            .into_iter()
            .filter(|l| l.contains("cache:"))
            .collect();
    }
    assert!(
        c.threads > 0 && c.rts > 0,
        "callgrind run of {spec}: no window dump of a server thread in {} ({} rt)",
        dir.display(),
        c.rts
    );
    (c, desc)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The process the callgrind driver starts under valgrind: one cell, then `CELL <window rt>
/// <window ns> <client-timed rt>` on stdout.
fn callgrind_cell(spec: &str) {
    assert!(
        callgrind::running_on_valgrind(),
        "GREENHUB_ECHO_CALLGRIND_CELL is set but this is not running under valgrind: use \
         GREENHUB_BENCH_CALLGRIND=1, which starts it"
    );
    let f: Vec<&str> = spec.split(';').collect();
    let ms = |s: &str| Duration::from_millis(s.parse().unwrap());
    may::config().set_workers(1);
    raise_nofile();
    pin_to_cpu(0);
    let r = run_cell(
        f[0],
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        ms(f[3]),
        ms(f[4]),
        Window::Callgrind {
            think: Duration::from_micros(f[5].parse().unwrap()),
        },
    );
    println!("CELL {} {} {}", r.window_rts, r.window_ns, r.total_rts);
}

fn main() {
    if let Ok(spec) = std::env::var("GREENHUB_ECHO_CLIENT") {
        client_main(&spec);
        return;
    }
    if let Ok(spec) = std::env::var("GREENHUB_ECHO_CALLGRIND_CELL") {
        callgrind_cell(&spec);
        return;
    }
    if std::env::var("GREENHUB_BENCH_CALLGRIND").is_ok_and(|v| v == "1") {
        callgrind_main();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    may::config().set_workers(1);
    let nofile = raise_nofile();
    pin_to_cpu(0);
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`, or the binary run by
    // hand) the quick plan runs: a smoke test of every peer, not the full tables.
    let quick = std::env::var("GREENHUB_BENCH_QUICK").is_ok_and(|v| v == "1")
        || !std::env::args().any(|a| a == "--bench");
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
                    let r = run_cell(peer, n, size, warm, run, Window::Timed);
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
