//! StreamServer: serving, the concurrency cap, stop with grace, nodelay, panics, and running out
//! of descriptors.

mod support;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::{TcpListener, TcpStream};
use greenhub::server::StreamServer;
use support::*;

fn echo_server() -> StreamServer {
    StreamServer::bind("127.0.0.1:0", |s, _| {
        let _ = echo(s);
    })
    .unwrap()
}

#[test]
fn serves_many_connections_and_stops() {
    hub::run(|| {
        let server = echo_server();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        assert!(server.is_started());
        let clients: Vec<_> = (0..200)
            .map(|i| hub::spawn(move || ask(addr, &message(i, 100 + i)) == message(i, 100 + i)))
            .collect();
        let ok = clients
            .into_iter()
            .filter_map(|c| c.join().ok())
            .filter(|&ok| ok)
            .count();
        assert_eq!(ok, 200);
        server.stop(Duration::from_secs(1));
        assert!(!server.is_started());
        // The listener is closed.
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(server.start().is_err());
    });
}

#[test]
fn serve_forever_returns_after_stop_from_another_greenlet() {
    hub::run(|| {
        let server = echo_server();
        let addr = server.local_addr().unwrap();
        let s2 = server.clone();
        let stopper = hub::spawn(move || {
            assert_eq!(ask(addr, b"hi"), b"hi");
            s2.stop(Duration::from_millis(100));
        });
        server.serve_forever().unwrap();
        stopper.join().unwrap();
    });
}

#[test]
fn max_connections_caps_live_handlers() {
    hub::run(|| {
        let live = Rc::new(Cell::new(0usize));
        let peak = Rc::new(Cell::new(0usize));
        let served = Rc::new(Cell::new(0usize));
        let (l2, p2, s2) = (live.clone(), peak.clone(), served.clone());
        let server = StreamServer::bind("127.0.0.1:0", move |mut s, _| {
            l2.set(l2.get() + 1);
            p2.set(p2.get().max(l2.get()));
            // Hold the slot until the client says goodbye.
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            l2.set(l2.get() - 1);
            s2.set(s2.get() + 1);
        })
        .unwrap();
        server.set_max_connections(Some(2));
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let conns: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert!(eventually(|| server.connections() == 2));
        hub::sleep(Duration::from_millis(50)); // time to (wrongly) accept a third
        assert_eq!(server.connections(), 2, "the cap was not applied");
        assert_eq!(live.get(), 2);
        // Finishing connections one at a time lets the others in, never more than 2 at once.
        for mut c in conns {
            c.write_all(b"x").unwrap();
            hub::sleep(Duration::from_millis(20));
        }
        assert!(eventually(|| served.get() == 5), "served {}", served.get());
        assert_eq!(peak.get(), 2);
        server.stop(Duration::ZERO);
    });
}

#[test]
fn stop_waits_for_grace_then_kills() {
    hub::run(|| {
        let finished = Rc::new(Cell::new(0));
        let unwound = Rc::new(Cell::new(0));
        struct OnDrop(Rc<Cell<i32>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let (f2, u2) = (finished.clone(), unwound.clone());
        let server = StreamServer::bind("127.0.0.1:0", move |mut s, _| {
            let _d = OnDrop(u2.clone());
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            if b[0] == b'q' {
                hub::sleep(Duration::from_millis(20)); // quick: inside the grace period
            } else {
                hub::sleep(Duration::from_secs(3600)); // slow: killed after the grace period
            }
            f2.set(f2.get() + 1);
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let mut quick = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        quick.write_all(b"q").unwrap();
        slow.write_all(b"s").unwrap();
        assert!(eventually(|| server.connections() == 2));
        let t0 = Instant::now();
        server.stop(Duration::from_millis(200));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < SLACK,
            "{took:?}"
        );
        assert_eq!(
            finished.get(),
            1,
            "the quick handler should finish normally"
        );
        assert_eq!(unwound.get(), 2, "both handlers' destructors ran");
        assert_eq!(server.connections(), 0);
    });
}

#[test]
fn nodelay_is_on_by_default_and_configurable() {
    hub::run(|| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s2 = seen.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |s, _| {
            s2.borrow_mut().push(s.nodelay().unwrap());
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        let _ = c.read(&mut [0u8; 1]); // EOF once the handler returns
        server.set_nodelay(false);
        let mut c = TcpStream::connect(addr).unwrap();
        let _ = c.read(&mut [0u8; 1]);
        assert_eq!(*seen.borrow(), vec![true, false]);
        server.stop(Duration::ZERO);
    });
}

#[test]
fn a_panicking_handler_does_not_stop_the_server() {
    hub::run(|| {
        let server = StreamServer::bind("127.0.0.1:0", |mut s, _| {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            if b[0] == b'!' {
                panic!("handler bug (expected by the test)");
            }
            s.write_all(&b).unwrap();
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let mut bad = TcpStream::connect(addr).unwrap();
        bad.write_all(b"!").unwrap();
        let mut rest = Vec::new();
        let _ = bad.read_to_end(&mut rest); // EOF or reset: the handler died
        assert_eq!(ask(addr, b"k"), b"k");
        assert!(server.is_started());
        server.stop(Duration::ZERO);
    });
}

#[test]
fn keeps_serving_after_running_out_of_descriptors() {
    const NAME: &str = "keeps_serving_after_running_out_of_descriptors";
    if !is_child(NAME) {
        let out = run_child(NAME);
        assert_child_ok(&out);
        let log = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            log.matches("backing off").count(),
            1,
            "expected exactly one warning in the interval:\n{log}"
        );
        return;
    }
    tracing_subscriber::fmt().with_ansi(false).init();
    hub::run(|| {
        let server = echo_server();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        hub::yield_now(); // the accept loop parks on the listener
                          // Lower the limit, then take every descriptor left.
        let open_now = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(64) as u64;
        set_nofile(open_now + 32);
        let mut hogs = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => hogs.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    break;
                }
            }
        }
        // Room for exactly our client socket: the server's accept then fails with EMFILE.
        drop(hogs.pop());
        let mut c = TcpStream::connect(addr).unwrap();
        let ticks = hub::stats().ticks;
        hub::sleep(Duration::from_millis(300));
        let spent = hub::stats().ticks - ticks;
        assert!(
            spent < 100,
            "the accept loop spun: {spent} hub iterations in 300 ms"
        );
        assert_eq!(server.connections(), 0);
        // Descriptors come back: the queued connection is served.
        drop(hogs);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        // And new ones too.
        assert_eq!(ask(addr, b"again"), b"again");
        server.stop(Duration::ZERO);
    });
}

#[test]
fn takes_an_existing_listener() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = StreamServer::new(l, |s, _| {
            let _ = echo(s);
        })
        .unwrap();
        assert_eq!(server.local_addr().unwrap(), addr);
        server.start().unwrap();
        assert_eq!(ask(addr, b"abc"), b"abc");
        server.stop(Duration::ZERO);
    });
}

/// `set_idle_timeout` (and `MultiBuilder::idle_timeout`) close connections that move no byte;
/// a zero duration is refused as std refuses it.
#[test]
fn idle_timeout_closes_silent_connections_on_both_servers() {
    use greenhub::server::{Distribution, MultiServer};
    let handler = |mut s: TcpStream, _| {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    };
    // Connects, gets one echo (a busy connection is not cut), then stays silent: the server must
    // close it within the slack.
    fn silent_client(addr: std::net::SocketAddr) -> Duration {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(SLACK * 2)).unwrap();
        // From before the request: the server's idle wait starts after it has echoed, so the
        // close comes at least `idle` after this (timed from the echo's arrival instead, the
        // wait looks shorter by however late this thread woke up for it).
        let t0 = Instant::now();
        c.write_all(b"hi").unwrap();
        let mut back = [0u8; 2];
        c.read_exact(&mut back).unwrap();
        let mut buf = [0u8; 1];
        let n = c
            .read(&mut buf)
            .expect("closed by the server, not by our timeout");
        assert_eq!(n, 0);
        t0.elapsed()
    }
    let idle = Duration::from_millis(100);
    let waited = hub::run(move || {
        let server = StreamServer::bind("127.0.0.1:0", handler).unwrap();
        assert_eq!(
            server
                .set_idle_timeout(Some(Duration::ZERO))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        server.set_idle_timeout(Some(idle)).unwrap();
        assert_eq!(server.idle_timeout(), Some(idle));
        server.start().unwrap();
        let addr = server.local_addr().unwrap();
        let waited = greenhub::threadpool::unblock(move || silent_client(addr));
        server.stop(Duration::ZERO);
        waited
    });
    assert!(waited >= idle && waited < SLACK, "{waited:?}");
    for d in [Distribution::Handoff, Distribution::ReusePort] {
        let server = MultiServer::builder()
            .threads(2)
            .distribution(d)
            .idle_timeout(Some(idle))
            .bind("127.0.0.1:0", handler)
            .unwrap();
        for _ in 0..4 {
            let waited = silent_client(server.local_addr());
            assert!(waited >= idle && waited < SLACK, "{d:?}: {waited:?}");
        }
        server.stop();
    }
    let zero = MultiServer::builder()
        .idle_timeout(Some(Duration::ZERO))
        .bind("127.0.0.1:0", handler);
    assert_eq!(zero.err().unwrap().kind(), ErrorKind::InvalidInput);
}
