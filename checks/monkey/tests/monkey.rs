//! The `monkey` feature: unmodified blocking code (std::net, std::thread::sleep, ureq, libcurl)
//! parks only its greenlet; outside greenlets every call behaves exactly as without greenhub.
//!
//! In `checks/monkey`, which builds greenhub with the feature: `cargo test -p greenhub-monkey-checks`.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::cell::Cell;
use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;
use support::*;

/// A greenlet ticking every millisecond (through `hub::sleep`, independent of the monkey layer):
/// it proves the hub kept running while other greenlets sat in blocking calls.
struct Ticker {
    ticks: Rc<Cell<u64>>,
    /// The longest time between two ticks: a blocking call on the hub shows up here.
    max_gap: Rc<Cell<Duration>>,
    g: greenhub::Greenlet<()>,
}

impl Ticker {
    fn start() -> Ticker {
        let ticks = Rc::new(Cell::new(0));
        let max_gap = Rc::new(Cell::new(Duration::ZERO));
        let (t, m) = (ticks.clone(), max_gap.clone());
        let g = hub::spawn(move || {
            let mut last = Instant::now();
            loop {
                hub::sleep(Duration::from_millis(1));
                t.set(t.get() + 1);
                let now = Instant::now();
                m.set(m.get().max(now - last));
                last = now;
            }
        });
        Ticker { ticks, max_gap, g }
    }

    fn stop(self) -> u64 {
        self.g.kill();
        eprintln!(
            "ticker: {} ticks, longest gap {:?}",
            self.ticks.get(),
            self.max_gap.get()
        );
        self.ticks.get()
    }
}

/// CPU time of the calling thread (to tell computing from blocking).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn the_definitions_are_linked_and_reached_by_std_and_by_shared_libraries() {
    assert!(
        greenhub::monkey::is_active(),
        "std's read did not reach greenhub's"
    );
    // The linker exports a definition that overrides one of a shared library on the link line
    // (libc.so.6 here), so the dynamic linker's global lookup finds greenhub's.
    assert!(greenhub::monkey::is_exported());
    for name in [
        c"recv",
        c"send",
        c"poll",
        c"connect",
        c"nanosleep",
        c"getaddrinfo",
    ] {
        // SAFETY: dlsym only reads the NUL-terminated name.
        let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: as above.
        let libc_own = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        assert!(!global.is_null() && !libc_own.is_null());
        assert_ne!(
            global, libc_own,
            "{name:?} resolves to libc's for shared libraries"
        );
    }
}

/// The std::net thread-per-connection echo server, with `std::thread::spawn` -> `hub::spawn`.
/// `accepted` is told of each connection (the test's load generator paces its connects by it).
fn std_echo_server(listener: TcpListener, connections: usize, accepted: impl Fn()) {
    for stream in listener.incoming().take(connections) {
        let mut stream = stream.unwrap();
        accepted();
        hub::spawn(move || {
            let mut buf = vec![0u8; 2048];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) => panic!("echo server read: {e}"),
                    Ok(n) => {
                        if let Err(e) = stream.write_all(&buf[..n]) {
                            panic!("echo server write: {e}");
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn std_echo_server_serves_1000_concurrent_connections_on_one_hub() {
    raise_nofile();
    const N: usize = 1000;
    const LEN: usize = 3000;
    let start = Instant::now();
    let (ok, max_open) = hub::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // std's listen backlog is 128, and every client runs on this same hub: a client may
        // start connecting only while fewer than 64 connections wait to be accepted, or the
        // kernel's accept queue overflows (a load generator's pacing, not the server's).
        let slots: Rc<greenhub::sync::Queue<()>> = Rc::new(greenhub::sync::Queue::new());
        for _ in 0..64 {
            slots.put(()).unwrap();
        }
        let freed = slots.clone();
        let server =
            hub::spawn(move || std_echo_server(listener, N, move || freed.put(()).unwrap()));
        let connected = Rc::new(Cell::new(0usize));
        let max_open = Rc::new(Cell::new(0usize));
        let all_in = Rc::new(greenhub::sync::Event::new());
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let (connected, max_open, all_in, slots) = (
                    connected.clone(),
                    max_open.clone(),
                    all_in.clone(),
                    slots.clone(),
                );
                hub::spawn(move || {
                    slots.get().unwrap();
                    let mut c = TcpStream::connect(addr).unwrap();
                    connected.set(connected.get() + 1);
                    max_open.set(max_open.get().max(connected.get()));
                    if connected.get() == N {
                        all_in.set();
                    }
                    // Every connection is open at once before any traffic.
                    all_in.wait().unwrap();
                    let msg = message(i, LEN);
                    c.write_all(&msg).unwrap();
                    c.shutdown(Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    c.read_to_end(&mut back).unwrap();
                    connected.set(connected.get() - 1);
                    back == msg
                })
            })
            .collect();
        let ok = clients
            .into_iter()
            .map(|g| g.join().unwrap())
            .filter(|&same| same)
            .count();
        server.join().unwrap();
        (ok, max_open.get())
    });
    let took = start.elapsed();
    eprintln!("1000 std::net echo connections on one hub: {took:?}");
    assert_eq!(ok, N, "every echo came back intact");
    assert_eq!(max_open, N, "all connections were open at once");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn thread_sleep_in_1000_greenlets_takes_about_one_sleep() {
    let (took, ticks) = hub::run(|| {
        let ticker = Ticker::start();
        let start = Instant::now();
        let sleepers: Vec<_> = (0..1000)
            .map(|_| hub::spawn(|| std::thread::sleep(Duration::from_millis(50))))
            .collect();
        for g in sleepers {
            g.join().unwrap();
        }
        let took = start.elapsed();
        (took, ticker.stop())
    });
    eprintln!("1000 x std::thread::sleep(50 ms): {took:?}, ticker ticked {ticks} times");
    assert!(
        took >= Duration::from_millis(50),
        "slept too little: {took:?}"
    );
    assert!(
        took < Duration::from_millis(50) + SLACK / 4,
        "sleeps were serial: {took:?}"
    );
    assert!(ticks >= 10, "the hub stalled: {ticks} ticks in {took:?}");
}

#[test]
fn thread_sleep_on_a_plain_thread_still_blocks_the_thread() {
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    assert!(start.elapsed() >= Duration::from_millis(20));
}

/// An HTTP/1.1 server on its own thread and hub (greenhub's own net types, not the monkey layer)
/// that answers every request after `delay`, keeping connections alive. Returns its address.
fn slow_http_server(delay: Duration) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        hub::run(move || {
            let l = greenhub::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let Ok((mut s, _)) = l.accept() else { return };
                hub::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            hub::sleep(delay);
                            let body = b"hello from the slow server";
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                                body.len()
                            );
                            if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        })
    });
    rx.recv().unwrap()
}

#[test]
fn ureq_default_agent_in_100_greenlets_runs_concurrently() {
    let addr = slow_http_server(Duration::from_millis(50));
    let url = format!("http://{addr}/");
    let cpu0 = thread_cpu();
    let (took, ticks, bodies) = hub::run(move || {
        let ticker = Ticker::start();
        let start = Instant::now();
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let url = url.clone();
                hub::spawn(move || {
                    let mut bodies = Vec::new();
                    for _ in 0..2 {
                        let mut resp = ureq::get(&url).call().unwrap();
                        bodies.push(resp.body_mut().read_to_string().unwrap());
                    }
                    bodies
                })
            })
            .collect();
        let bodies: Vec<String> = clients
            .into_iter()
            .flat_map(|g| g.join().unwrap())
            .collect();
        let took = start.elapsed();
        (took, ticker.stop(), bodies)
    });
    eprintln!(
        "100 greenlets x 2 ureq GETs (50 ms each): {took:?}, ticker ticked {ticks} times, \
         this thread's CPU {:?}",
        thread_cpu() - cpu0
    );
    assert_eq!(bodies.len(), 200);
    assert!(bodies.iter().all(|b| b == "hello from the slow server"));
    // Serial would be 200 x 50 ms = 10 s. Release runs in about 0.2 s; an unoptimised ureq spends
    // a few ms of CPU per request, hence the debug bound.
    let bound = Duration::from_secs(if cfg!(debug_assertions) { 3 } else { 1 });
    assert!(took < bound, "not concurrent: {took:?} (serial is 10 s)");
    // Each `ureq::get` builds a use-once agent: in a debug build the first burst of greenlets
    // (61 per hub iteration) computes for a few hundred ms before any of them blocks, so the
    // ticker only proves the hub ran between requests; the total proves they overlapped.
    assert!(ticks >= 5, "the hub stalled: {ticks} ticks in {took:?}");
}

#[test]
fn libcurl_statically_linked_is_cooperative() {
    let addr = slow_http_server(Duration::from_millis(50));
    let url = format!("http://{addr}/");
    let (took, ticks, bodies) = hub::run(move || {
        let ticker = Ticker::start();
        let start = Instant::now();
        let clients: Vec<_> = (0..20)
            .map(|_| {
                let url = url.clone();
                hub::spawn(move || {
                    let mut easy = curl::easy::Easy::new();
                    easy.url(&url).unwrap();
                    let mut body = Vec::new();
                    {
                        let mut t = easy.transfer();
                        t.write_function(|d| {
                            body.extend_from_slice(d);
                            Ok(d.len())
                        })
                        .unwrap();
                        t.perform().unwrap();
                    }
                    assert_eq!(easy.response_code().unwrap(), 200);
                    String::from_utf8(body).unwrap()
                })
            })
            .collect();
        let bodies: Vec<String> = clients.into_iter().map(|g| g.join().unwrap()).collect();
        let took = start.elapsed();
        (took, ticker.stop(), bodies)
    });
    eprintln!("20 greenlets x libcurl GET (50 ms each): {took:?}, ticker ticked {ticks} times");
    assert!(bodies.iter().all(|b| b == "hello from the slow server"));
    assert!(
        took < Duration::from_millis(600),
        "libcurl ran serially: {took:?} (serial is 1 s)"
    );
    assert!(ticks >= 10, "the hub stalled: {ticks} ticks in {took:?}");
}

#[test]
fn getaddrinfo_in_a_greenlet_runs_on_the_thread_pool() {
    use std::net::ToSocketAddrs;
    let (addrs, ticks) = hub::run(|| {
        let ticker = Ticker::start();
        let addrs: Vec<SocketAddr> = ("localhost", 80).to_socket_addrs().unwrap().collect();
        hub::sleep(Duration::from_millis(5));
        (addrs, ticker.stop())
    });
    assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    assert!(
        greenhub::threadpool::threads() >= 1,
        "the lookup did not use the pool"
    );
    assert!(ticks >= 1);
}

#[test]
fn a_timeout_scope_bounds_a_std_read() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let start = Instant::now();
        let r = greenhub::timeout(Duration::from_millis(30), || c.read(&mut [0u8; 16]));
        assert!(r.is_err(), "the scope expired");
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(start.elapsed() < SLACK);
    });
}

#[test]
fn a_timeout_scope_error_reaches_the_caller_as_timed_out() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let _scope = greenhub::Timeout::start(Duration::from_millis(20));
        let e = c.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    });
}

#[test]
fn killing_a_greenlet_parked_in_std_read_ends_the_read_with_an_error() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _peer = hub::spawn(move || l.accept().map(|(s, _)| s));
        let reader = hub::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.read(&mut [0u8; 16])
        });
        hub::sleep(Duration::from_millis(10));
        reader.kill();
        // No unwind crosses the extern "C" read: it returned ECANCELED, and the greenlet's own
        // code decided what to do with that (here: return it).
        match reader.join() {
            Ok(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}"),
            other => panic!("expected the read to fail with ECANCELED, got {other:?}"),
        }
    });
}

#[test]
fn a_killed_greenlet_fails_every_further_interposed_wait_at_once() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _peer = hub::spawn(move || l.accept().map(|(s, _)| s));
        let g = hub::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            let mut errors = Vec::new();
            for _ in 0..3 {
                errors.push(c.read(&mut [0u8; 16]).unwrap_err().raw_os_error());
            }
            let start = Instant::now();
            std::thread::sleep(Duration::from_secs(5)); // returns at once: killed
            (errors, start.elapsed())
        });
        hub::sleep(Duration::from_millis(10));
        g.kill();
        let (errors, slept) = g.join().unwrap();
        assert_eq!(errors, vec![Some(libc::ECANCELED); 3]);
        assert!(
            slept < Duration::from_secs(1),
            "slept {slept:?} after the kill"
        );
    });
}

#[test]
fn poll_on_a_pipe_parks_only_the_greenlet() {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let ticks = hub::run(move || {
        let ticker = Ticker::start();
        let writer = hub::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            // SAFETY: one byte from a live buffer to our pipe.
            assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
        });
        let mut p = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on our stack.
        let n = unsafe { libc::poll(&mut p, 1, 5_000) };
        assert_eq!(n, 1);
        assert_ne!(p.revents & libc::POLLIN, 0);
        writer.join().unwrap();
        // A poll that times out returns 0 after about its timeout.
        p.revents = 0;
        let mut b = [0u8; 1];
        // SAFETY: one byte into a live buffer.
        assert_eq!(unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) }, 1);
        let start = Instant::now();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 20) }, 0);
        assert!(start.elapsed() >= Duration::from_millis(20));
        ticker.stop()
    });
    assert!(ticks >= 10, "the hub stalled: {ticks}");
    // SAFETY: our own descriptors, closed once.
    unsafe {
        libc::close(r);
        libc::close(w);
    }
}

#[test]
fn a_large_blocking_write_completes_in_full_across_many_parks() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reader = hub::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let big = message(7, 8 << 20);
        let c = TcpStream::connect(addr).unwrap();
        // One write(2) call of 8 MiB: libc's blocking write queues it all before returning.
        // SAFETY: the buffer is live and readable for its length.
        let n = unsafe { libc::write(c.as_raw_fd(), big.as_ptr().cast(), big.len()) };
        assert_eq!(n as usize, big.len());
        c.shutdown(Shutdown::Write).unwrap();
        assert!(reader.join().unwrap() == big);
    });
}

// ---------------------------------------------------------------------------------------------
// Pass-through: cases ported from std's own net tests (library/std/src/net/*/tests.rs), run on a
// plain thread (no hub: every call is the real system call) and in a greenlet (emulated). Both
// must give std's results.

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

fn case_read_timeout() {
    let (mut c, mut s) = pair();
    let t = Duration::from_millis(60);
    c.set_read_timeout(Some(t)).unwrap();
    assert_eq!(c.read_timeout().unwrap(), Some(t));
    s.write_all(b"hi").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).unwrap(), 2);
    let start = Instant::now();
    let e = c.read(&mut buf).unwrap_err();
    assert!(
        e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut,
        "{e:?}"
    );
    assert!(start.elapsed() >= t, "returned after {:?}", start.elapsed());
    assert!(start.elapsed() < t + SLACK);
    assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
}

fn case_write_timeout() {
    let (mut c, _s) = pair();
    let t = Duration::from_millis(60);
    c.set_write_timeout(Some(t)).unwrap();
    let chunk = vec![0u8; 1 << 16];
    let start = Instant::now();
    // Nobody reads: the buffers fill and a write times out (after moving 0 bytes or some).
    let e = loop {
        match c.write(&chunk) {
            Ok(n) => assert!(n > 0 && start.elapsed() < SLACK * 5, "writes never blocked"),
            Err(e) => break e,
        }
    };
    assert!(
        e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut,
        "{e:?}"
    );
}

fn case_nonblocking() {
    let (mut c, mut s) = pair();
    c.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let e = c.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(start.elapsed() < Duration::from_millis(500));
    s.write_all(b"abc").unwrap();
    let mut buf = [0u8; 8];
    let n = loop {
        match c.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[..n], b"abc");
    c.set_nonblocking(false).unwrap();
    s.write_all(b"d").unwrap();
    assert_eq!(c.read(&mut buf).unwrap(), 1);
}

fn case_eof() {
    let (mut c, s) = pair();
    drop(s);
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf).unwrap(), 0);
    assert_eq!(c.read(&mut buf).unwrap(), 0);
}

fn case_reset() {
    let (mut c, s) = pair();
    set_linger_zero(s.as_raw_fd());
    drop(s);
    let e = c.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}

fn case_peek() {
    let (mut c, mut s) = pair();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    for _ in 0..3 {
        let n = c.peek(&mut buf).unwrap();
        assert!(n > 0 && buf[..n] == b"hello"[..n]);
    }
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

fn case_vectored() {
    let (mut c, mut s) = pair();
    let n = s
        .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cde")])
        .unwrap();
    assert_eq!(n, 5);
    let (mut a, mut b) = ([0u8; 2], [0u8; 8]);
    let mut got = 0;
    while got < 5 {
        let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        got += c.read_vectored(&mut bufs).unwrap();
    }
    assert_eq!(&a, b"ab");
    assert_eq!(&b[..3], b"cde");
}

fn case_connect_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = TcpStream::connect(addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    let e = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    assert!(TcpStream::connect_timeout(&addr, Duration::ZERO).is_err());
}

fn case_connect_timeout_succeeds() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect_timeout(&l.local_addr().unwrap(), Duration::from_secs(5)).unwrap();
    assert_eq!(c.peer_addr().unwrap(), l.local_addr().unwrap());
}

fn case_write_after_peer_reset() {
    let (mut c, s) = pair();
    set_linger_zero(s.as_raw_fd());
    drop(s);
    let start = Instant::now();
    let e = loop {
        match c.write(&[0u8; 1024]) {
            Ok(n) => assert!(n > 0 && start.elapsed() < SLACK, "writes kept succeeding"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
        "{e:?}"
    );
}

fn case_udp() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(40))).unwrap();
    let start = Instant::now();
    let e = b.recv_from(&mut [0u8; 8]).unwrap_err();
    assert!(
        e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut,
        "{e:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(40));
    a.send_to(b"dgram", b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"dgram"[..], a.local_addr().unwrap()));
    a.send_to(b"peek", b.local_addr().unwrap()).unwrap();
    let (n, _) = b.peek_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"peek");
    assert_eq!(b.recv(&mut buf).unwrap(), 4);
}

fn case_file_read() {
    let mut f = std::fs::File::open("/proc/self/stat").unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert!(s.contains(' '));
}

const CASES: &[(&str, fn())] = &[
    ("read_timeout", case_read_timeout),
    ("write_timeout", case_write_timeout),
    ("nonblocking", case_nonblocking),
    ("eof", case_eof),
    ("reset", case_reset),
    ("peek", case_peek),
    ("vectored", case_vectored),
    ("connect_refused", case_connect_refused),
    ("connect_timeout_succeeds", case_connect_timeout_succeeds),
    ("write_after_peer_reset", case_write_after_peer_reset),
    ("udp", case_udp),
    ("file_read", case_file_read),
];

#[test]
fn std_socket_cases_pass_on_a_plain_thread() {
    std::thread::spawn(|| {
        for (name, case) in CASES {
            eprintln!("plain thread: {name}");
            case();
        }
        assert!(
            greenhub::hub::stats().spawned == 0,
            "nothing here used a hub"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn std_socket_cases_pass_in_a_greenlet_while_the_hub_keeps_running() {
    hub::run(|| {
        let ticker = Ticker::start();
        for (name, case) in CASES {
            eprintln!("greenlet: {name}");
            case();
        }
        let ticks = ticker.stop();
        assert!(ticks >= 50, "the hub stalled during the timeouts: {ticks}");
    });
}

/// Writes `byte` to `s` after a short sleep, from another greenlet; returns `s` when joined.
fn write_later(mut s: TcpStream, byte: u8) -> greenhub::Greenlet<TcpStream> {
    hub::spawn(move || {
        hub::sleep(Duration::from_millis(5));
        s.write_all(&[byte]).unwrap();
        s
    })
}

/// One byte read with libc's `read` (greenhub's) on a raw descriptor: parks until it arrives.
fn read_byte(fd: i32) -> u8 {
    let mut b = 0u8;
    // A lost registration would park forever: the scope turns that into a failure.
    let _scope = greenhub::Timeout::start(SLACK);
    // SAFETY: one byte into a live local.
    let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
    assert_eq!(n, 1, "{}", std::io::Error::last_os_error());
    b
}

#[test]
fn registrations_follow_close_dup_and_dup2_and_survive_unseen_closes() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conn = || {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            (c, s)
        };
        for round in 0..3u8 {
            // A read parks, registering the descriptor; the numbers repeat in every round.
            let (c, s) = conn();
            let w = write_later(s, round);
            assert_eq!(read_byte(c.as_raw_fd()), round);
            // A duplicate, then the original closed (close deregisters it first): the
            // duplicate's own wait still works.
            let d = c.try_clone().unwrap();
            drop(c);
            let w = write_later(w.join().unwrap(), 10 + round);
            assert_eq!(read_byte(d.as_raw_fd()), 10 + round);
            drop(w.join().unwrap());
            // dup2 over a registered descriptor: it now names another connection's socket.
            let (c2, s2) = conn();
            // SAFETY: both descriptors are open; `d`'s number is replaced, and `d` still owns it.
            assert_eq!(
                unsafe { libc::dup2(c2.as_raw_fd(), d.as_raw_fd()) },
                d.as_raw_fd()
            );
            let w = write_later(s2, 20 + round);
            assert_eq!(read_byte(d.as_raw_fd()), 20 + round);
            let keep = (w.join().unwrap(), c2); // so the next socket takes `d`'s number
                                                // A close greenhub does not see, the number reused for another socket: a raw dup3
                                                // (no hook runs) replaces `d`'s file under its registered number at once.
            let fd = d.as_raw_fd();
            std::mem::forget(d);
            let (c3, s3) = conn();
            // SAFETY: `fd` is ours (forgotten above); dup3 atomically makes it name c3's socket.
            let r = unsafe { libc::syscall(libc::SYS_dup3, c3.as_raw_fd(), fd, 0) };
            assert_eq!(r, fd as libc::c_long);
            let w = write_later(s3, 30 + round);
            assert_eq!(read_byte(fd), 30 + round);
            // SAFETY: closed once; c3 keeps its own descriptor.
            assert_eq!(unsafe { libc::close(fd) }, 0);
            drop(c3);
            drop((w.join().unwrap(), keep));
        }
    });
}

#[test]
fn recv_waitall_gathers_every_byte_across_parks() {
    hub::run(|| {
        let (c, s) = pair();
        let w = hub::spawn(move || {
            let mut s = s;
            for chunk in [&b"ab"[..], b"cd", b"ef"] {
                hub::sleep(Duration::from_millis(3));
                s.write_all(chunk).unwrap();
            }
            s
        });
        let mut buf = [0u8; 6];
        // SAFETY: the buffer is live and writable for its length.
        let n = unsafe {
            libc::recv(
                c.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_WAITALL,
            )
        };
        assert_eq!(n, 6);
        assert_eq!(&buf, b"abcdef");
        drop(w.join().unwrap());
    });
}

#[test]
fn the_main_greenlet_cooperates_too() {
    std::thread::spawn(|| {
        let (mut c, s) = pair();
        // This thread's hub exists once a greenlet is spawned; its main greenlet then parks in
        // std's read while the writer runs.
        let w = hub::spawn(move || {
            let mut s = s;
            hub::sleep(Duration::from_millis(10));
            s.write_all(b"!").unwrap();
        });
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"!");
        w.join().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn hub_callbacks_and_threads_without_a_hub_pass_through() {
    // A plain thread: a read with a timeout blocks the thread itself and times out as std says.
    std::thread::spawn(|| {
        let (mut c, _s) = pair();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let start = Instant::now();
        let e = c.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(20));
    })
    .join()
    .unwrap();
    // The hub context (a callback): the same; the loop itself waits (nothing may park there).
    hub::run(|| {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        hub::run_callback(move || {
            let (mut c, _s) = pair();
            c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let start = Instant::now();
            let e = c.read(&mut [0u8; 1]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            assert!(start.elapsed() >= Duration::from_millis(20));
            d.set(true);
        });
        hub::sleep(Duration::from_millis(1));
        assert!(done.get());
    });
}

static BEFORE_MAIN_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs before `main` (and before std's runtime set-up): interposed calls must work there.
extern "C" fn before_main() {
    // SAFETY: plain calls with valid (or deliberately invalid, for EBADF) arguments.
    let ok = unsafe {
        let slept = libc::usleep(1) == 0;
        let bad = libc::read(-1, std::ptr::null_mut(), 0) == -1
            && *libc::__errno_location() == libc::EBADF;
        let polled = libc::poll(std::ptr::null_mut(), 0, 0) == 0;
        slept && bad && polled
    };
    BEFORE_MAIN_OK.store(ok, std::sync::atomic::Ordering::SeqCst);
}

#[used]
#[link_section = ".init_array"]
static BEFORE_MAIN: extern "C" fn() = before_main;

#[test]
fn interposed_calls_work_before_main() {
    assert!(BEFORE_MAIN_OK.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn hub_run_teardown_ends_greenlets_parked_in_interposed_calls() {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        hub::run(move || {
            let (c, s) = pair();
            // Parked in std's read (nobody writes) and in thread::sleep when run's closure
            // returns; run's teardown kills both: the calls return (ECANCELED / early) and the
            // greenlets end. (A thread that exits without hub::run abandons them instead: thread
            // exit resumes no greenlet.)
            let reader = hub::spawn(move || {
                let mut c = c;
                let r = c.read(&mut [0u8; 1]);
                let _ = tx.send(r.map_err(|e| e.raw_os_error()));
            });
            let sleeper = hub::spawn(|| std::thread::sleep(Duration::from_secs(30)));
            hub::sleep(Duration::from_millis(10));
            drop((reader, sleeper));
            s // returned, so the peer stays open past the teardown (no EOF for the reader)
        })
    });
    let start = Instant::now();
    let _peer = t.join().unwrap();
    assert!(start.elapsed() < SLACK, "teardown waited for the sleep");
    assert_eq!(rx.recv_timeout(SLACK).unwrap(), Err(Some(libc::ECANCELED)));
}

#[test]
fn epoll_wait_on_the_programs_own_epoll_parks_only_the_greenlet() {
    hub::run(|| {
        let ticker = Ticker::start();
        let (c, s) = pair();
        // SAFETY: plain epoll calls on descriptors this test owns; the event struct is live.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 7,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.as_raw_fd(), &mut ev) },
            0
        );
        let w = write_later(s, b'e');
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let start = Instant::now();
        // SAFETY: `out` is writable for 4 events.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, 5_000) };
        assert_eq!(n, 1);
        assert_eq!({ out[0].u64 }, 7);
        assert!(start.elapsed() < SLACK);
        let _peer = w.join().unwrap(); // kept open: its close would make `c` readable (EOF)
                                       // A timeout returns 0 after about the timeout, cooperatively.
        let mut b = [0u8; 1];
        (&c).read_exact(&mut b).unwrap();
        let start = Instant::now();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, 20) }, 0);
        assert!(start.elapsed() >= Duration::from_millis(20));
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(ep) };
        let ticks = ticker.stop();
        assert!(ticks >= 5, "the hub stalled: {ticks}");
    });
}

extern "C" {
    fn __read_chk(fd: i32, buf: *mut libc::c_void, nbytes: usize, buflen: usize) -> isize;
}

#[test]
fn fortified_read_is_reached_too() {
    hub::run(|| {
        let (c, s) = pair();
        let w = write_later(s, b'f');
        let mut b = [0u8; 4];
        // SAFETY: `b` is writable for its 4 bytes, and we say so.
        let n = unsafe { __read_chk(c.as_raw_fd(), b.as_mut_ptr().cast(), 4, 4) };
        assert_eq!((n, b[0]), (1, b'f'));
        drop(w.join().unwrap());
    });
}

#[test]
fn poll_on_several_descriptors_parks_on_all_of_them() {
    let mut pipes = [[0i32; 2]; 3];
    for p in &mut pipes {
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    }
    hub::run(move || {
        let ticker = Ticker::start();
        // Only the last pipe gets a byte, from another greenlet, later.
        let w = pipes[2][1];
        let writer = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            // SAFETY: one byte from a live buffer to our pipe.
            assert_eq!(unsafe { libc::write(w, b"z".as_ptr().cast(), 1) }, 1);
        });
        let mut fds: Vec<libc::pollfd> = pipes
            .iter()
            .map(|p| libc::pollfd {
                fd: p[0],
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let start = Instant::now();
        // SAFETY: `fds` is a live array of 3 pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, 5_000) };
        assert!(start.elapsed() >= Duration::from_millis(15));
        assert_eq!(n, 1);
        assert_eq!(
            fds.iter().map(|p| p.revents).collect::<Vec<_>>(),
            [0, 0, libc::POLLIN]
        );
        writer.join().unwrap();
        let ticks = ticker.stop();
        assert!(ticks >= 5, "the hub stalled: {ticks}");
    });
    for p in pipes {
        // SAFETY: our own descriptors, closed once.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
