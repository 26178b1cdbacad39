//! TcpListener / TcpStream: echo at scale, timeouts, half-close, resets, sharing, errors.

mod support;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::{TcpListener, TcpStream};
use support::*;

/// Accepts forever on `l`, echoing each connection in its own greenlet.
fn serve_echo(l: TcpListener) {
    loop {
        let (s, _) = l.accept().expect("accept");
        hub::spawn(move || {
            if let Err(e) = echo(s) {
                eprintln!("server handler: {e}");
            }
        });
    }
}

/// Connects, writes `msg` from a second greenlet (so neither side's buffers can fill up and
/// deadlock), half-closes, reads everything back.
fn round_trip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut w = s.try_clone().unwrap();
    let msg = msg.to_vec();
    let msg_len = msg.len();
    let writer = hub::spawn(move || {
        w.write_all(&msg).expect("write");
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut back = Vec::new();
    if let Err(e) = s.read_to_end(&mut back) {
        panic!("read after {} of {} bytes: {e}", back.len(), msg_len);
    }
    writer.join().expect("writer");
    back
}

#[test]
fn echo_1000_concurrent_connections_one_hub() {
    raise_nofile();
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = hub::spawn(move || serve_echo(l));
        let ok = Rc::new(Cell::new(0));
        let clients: Vec<_> = (0..1000)
            .map(|i| {
                let ok = ok.clone();
                hub::spawn(move || {
                    // Every 100th message is large enough to fill socket buffers both ways.
                    let len = if i % 100 == 0 { 300_000 } else { 64 + i % 500 };
                    let msg = message(i, len);
                    let back = round_trip(addr, &msg);
                    assert!(
                        back == msg,
                        "client {i}: echo differs ({} bytes)",
                        back.len()
                    );
                    ok.set(ok.get() + 1);
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client greenlet");
        }
        assert_eq!(ok.get(), 1000);
        server.kill();
    });
}

#[test]
fn echo_server_on_another_threads_hub() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // The listener has not blocked yet, so it may move to the server thread.
    let server = std::thread::spawn(move || {
        hub::run(move || {
            let handlers: Vec<_> = (0..100)
                .map(|_| {
                    let (s, _) = l.accept().unwrap();
                    hub::spawn(move || echo(s).unwrap())
                })
                .collect();
            handlers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        })
    });
    let total = hub::run(move || {
        let clients: Vec<_> = (0..100)
            .map(|i| {
                hub::spawn(move || {
                    let msg = message(i, 1000 + i);
                    assert_eq!(round_trip(addr, &msg), msg);
                    msg.len() as u64
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum::<u64>()
    });
    assert_eq!(server.join().unwrap(), total);
}

/// A connected pair on this hub (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn read_timeout_gives_would_block_after_the_timeout() {
    hub::run(|| {
        let (mut c, _s) = pair();
        assert_eq!(c.read_timeout().unwrap(), None);
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(50)));
        let t0 = Instant::now();
        let e = c.read(&mut [0u8; 16]).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert!(
            took >= Duration::from_millis(50) && took < SLACK,
            "{took:?}"
        );
        // Zero is rejected as std rejects it; None clears.
        let e = c.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        c.set_read_timeout(None).unwrap();
        assert_eq!(c.read_timeout().unwrap(), None);
    });
}

#[test]
fn write_timeout_gives_would_block_when_the_peer_does_not_read() {
    hub::run(|| {
        let (mut c, _s) = pair();
        c.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let t0 = Instant::now();
        let mut last_write = Instant::now();
        let mut written = 0usize;
        let e = loop {
            match c.write(&chunk) {
                Ok(n) => {
                    written += n;
                    last_write = Instant::now();
                }
                Err(e) => break e,
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "never filled");
        };
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        let waited = last_write.elapsed();
        assert!(written > 0);
        assert!(
            waited >= Duration::from_millis(50) && waited < SLACK,
            "{waited:?}"
        );
        assert!(c.set_write_timeout(Some(Duration::ZERO)).is_err());
    });
}

#[test]
fn half_close_peer_reads_eof_and_still_writes_back() {
    hub::run(|| {
        let (mut c, s) = pair();
        let server = hub::spawn(move || {
            let mut s = s;
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // ends only at the client's FIN
            s.write_all(b"got: ").unwrap();
            s.write_all(&got).unwrap();
        });
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "got: hello");
        server.join().unwrap();
        // Writing after our own shutdown is an error, not a signal.
        assert!(c.write(b"x").is_err());
    });
}

#[test]
fn peer_reset_mid_write_is_an_io_error_not_sigpipe() {
    const NAME: &str = "peer_reset_mid_write_is_an_io_error_not_sigpipe";
    if !is_child(NAME) {
        assert_child_ok(&run_child(NAME));
        return;
    }
    // Child: restore the default SIGPIPE action (kill the process), as in a C host.
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    hub::run(|| {
        let (mut c, s) = pair();
        let resetter = hub::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut s = s;
            s.read_exact(&mut buf).unwrap(); // the write is under way
            set_linger_zero(s.as_raw_fd());
            drop(s); // RST
        });
        let chunk = vec![1u8; 256 * 1024];
        let mut errors = Vec::new();
        let mut written = 0;
        for _ in 0..200 {
            match c.write(&chunk) {
                Ok(n) => written += n,
                Err(e) => {
                    errors.push(e.kind());
                    if errors.len() >= 3 {
                        break; // keep writing after the first error: EPIPE territory
                    }
                }
            }
        }
        resetter.join().unwrap();
        assert!(written >= 1024, "the reset came before the first write");
        assert!(!errors.is_empty(), "the writes never failed");
        for k in &errors {
            assert!(
                matches!(k, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "{errors:?}"
            );
        }
        // Vectored writes take the same path.
        let e = c
            .write_vectored(&[std::io::IoSlice::new(b"a"), std::io::IoSlice::new(b"b")])
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ));
    });
}

#[test]
fn try_clone_lets_two_greenlets_read_and_write_one_socket() {
    hub::run(|| {
        let (c, s) = pair();
        let server = hub::spawn(move || echo(s).unwrap());
        let reader_half = c.try_clone().unwrap();
        assert_eq!(reader_half.as_raw_fd(), c.as_raw_fd());
        const N: usize = 2000;
        // The reader starts first and parks on the shared registration.
        let reader = hub::spawn(move || {
            let mut r = reader_half;
            let mut line = [0u8; 8];
            for i in 0..N {
                r.read_exact(&mut line).unwrap();
                assert_eq!(&line, format!("{i:07}\n").as_bytes());
            }
            N
        });
        let writer = hub::spawn(move || {
            let mut w = c;
            for i in 0..N {
                w.write_all(format!("{i:07}\n").as_bytes()).unwrap();
                if i % 100 == 0 {
                    hub::yield_now();
                }
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), N);
        assert_eq!(server.join().unwrap(), 8 * N as u64);
    });
}

#[test]
fn two_greenlets_reading_clones_of_one_socket_are_both_woken() {
    hub::run(|| {
        let (mut c, s) = pair();
        // Both park on the read direction of one registration: the second waiter of a direction
        // is the rare case the I/O slot keeps beside its one waiter cell.
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut r = s.try_clone().unwrap();
                hub::spawn(move || {
                    let mut b = [0u8; 1];
                    r.read_exact(&mut b).unwrap();
                    b[0]
                })
            })
            .collect();
        hub::sleep(Duration::from_millis(20)); // both are parked now
        c.write_all(b"a").unwrap();
        hub::sleep(Duration::from_millis(20));
        c.write_all(b"b").unwrap();
        let mut got: Vec<u8> = readers.into_iter().map(|g| g.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, b"ab");
    });
}

#[test]
fn a_reader_timing_out_in_a_loop_beside_one_that_waits_leaves_it_its_wake_up() {
    hub::run(|| {
        let (mut c, s) = pair();
        let mut patient = s.try_clone().unwrap();
        let waiter = hub::spawn(move || {
            let mut b = [0u8; 1];
            patient.read_exact(&mut b).unwrap();
            b[0]
        });
        // (Not `set_read_timeout`: clones share that setting, as `dup`ed std sockets do.)
        let mut hasty = s.try_clone().unwrap();
        let timeouts = hub::spawn(move || {
            let mut n = 0;
            for _ in 0..50 {
                let r = greenhub::timeout::timeout(Duration::from_millis(1), || {
                    hasty.read(&mut [0u8; 1])
                });
                match r {
                    Ok(Err(e)) if e.kind() == ErrorKind::TimedOut => n += 1,
                    Err(_) => n += 1,
                    other => panic!("{other:?}"),
                }
            }
            n
        });
        assert_eq!(timeouts.join().unwrap(), 50);
        c.write_all(b"z").unwrap();
        assert_eq!(waiter.join().unwrap(), b'z');
        // And the other way round: a waiter that arrives after a timed-out one displaces it.
        let mut late = s.try_clone().unwrap();
        let waiter = hub::spawn(move || {
            let mut b = [0u8; 1];
            late.read_exact(&mut b).unwrap();
            b[0]
        });
        hub::sleep(Duration::from_millis(20));
        c.write_all(b"y").unwrap();
        assert_eq!(waiter.join().unwrap(), b'y');
    });
}

#[test]
fn connect_errors_are_io_errors() {
    hub::run(|| {
        // A closed port.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        // Malformed addresses.
        assert!(TcpStream::connect("not an address").is_err());
        assert!(TcpStream::connect("127.0.0.1:99999").is_err());
        assert!(TcpStream::connect("127.0.0.1").is_err());
        // A name that cannot resolve (the lookup runs on a helper thread).
        let e = TcpStream::connect("no.such.host.invalid:80").unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Other, "unexpected: {e}");
        // connect_timeout: zero is rejected as std does.
        let a: SocketAddr = ([127, 0, 0, 1], port).into();
        let e = TcpStream::connect_timeout(&a, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn connect_resolves_localhost_names() {
    hub::run(|| {
        let l = TcpListener::bind("localhost:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let acceptor = hub::spawn(move || l.accept().map(|_| ()).is_ok());
        let s = TcpStream::connect(format!("localhost:{port}")).unwrap();
        assert!(s.peer_addr().unwrap().ip().is_loopback());
        assert!(acceptor.join().unwrap());
    });
}

#[test]
fn nonblocking_mode_returns_would_block_without_parking() {
    hub::run(|| {
        let (c, _s) = pair();
        c.set_nonblocking(true).unwrap();
        let before = hub::stats().switches;
        let e = (&c).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(hub::stats().switches, before, "a non-blocking call parked");
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        assert_eq!(
            (&c).read(&mut [0u8; 8]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert!(
            hub::stats().switches > before,
            "a blocking call did not park"
        );
    });
}

#[test]
fn options_and_std_conversions() {
    hub::run(|| {
        let (c, mut s) = pair();
        c.set_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        c.set_ttl(42).unwrap();
        assert_eq!(c.ttl().unwrap(), 42);
        assert!(c.take_error().unwrap().is_none());
        assert_eq!(c.peer_addr().unwrap(), s.local_addr().unwrap());
        // Peek leaves the data in place.
        (&c).write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        assert_eq!(s.peek(&mut buf).unwrap(), 3);
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        // To std and back: the std stream blocks again, ours parks again.
        let std_c: std::net::TcpStream = c.into();
        let mut std_c2 = std_c.try_clone().unwrap();
        std_c2.write_all(b"xyz").unwrap();
        let back = TcpStream::from(std_c);
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"xyz");
        s.write_all(b"123").unwrap();
        let mut back = back;
        back.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"123");
    });
}

#[test]
fn a_socket_registered_on_one_hub_errors_on_another_thread() {
    let (c, _s) = hub::run(|| {
        let (c, s) = pair();
        c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        // Registers with this thread's hub.
        assert_eq!(
            (&c).read(&mut [0u8; 1]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        (c, s)
    });
    let e = std::thread::spawn(move || (&c).read(&mut [0u8; 1]).unwrap_err())
        .join()
        .unwrap();
    assert!(e.to_string().contains("another thread"), "{e}");
}

#[test]
fn shutdown_from_another_greenlet_wakes_a_parked_reader() {
    hub::run(|| {
        let (c, _s) = pair();
        let c2 = c.try_clone().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reader = hub::spawn(move || {
            let t0 = Instant::now();
            let r = (&c).read(&mut [0u8; 8]).map_err(|e| e.kind());
            (r, t0.elapsed())
        });
        hub::sleep(Duration::from_millis(20)); // the reader parks
        c2.shutdown(Shutdown::Both).unwrap();
        let (r, took) = reader.join().unwrap();
        assert_eq!(r, Ok(0));
        assert!(
            took < Duration::from_secs(4),
            "woken by the timeout, not the shutdown"
        );
    });
}

#[test]
fn killing_a_greenlet_parked_on_io_uncounts_it() {
    // If the kill leaked the I/O-waiter count, the hub would think I/O may still arrive and the
    // final sleep would hang in epoll instead of being reported as a deadlock.
    let (c, _s) = pair();
    let reader = hub::spawn(move || {
        let _ = (&c).read(&mut [0u8; 8]);
        unreachable!("nothing is ever sent");
    });
    hub::sleep(Duration::from_millis(10));
    reader.kill();
    assert!(reader.is_finished());
    let r = std::panic::catch_unwind(|| hub::sleep(Duration::MAX));
    let msg =
        panic_message(&*r.expect_err("a forever-sleep with nothing else alive must be a deadlock"));
    assert!(msg.contains("would block forever"), "{msg}");
}

#[test]
fn std_sockets_convert_in_and_register_lazily() {
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    let l = TcpListener::from(std_l);
    hub::run(move || {
        let client = hub::spawn(move || {
            let mut s = TcpStream::from(std::net::TcpStream::connect(addr).unwrap());
            s.write_all(b"from std").unwrap();
        });
        let (mut s, peer) = l.accept().unwrap();
        assert!(peer.ip().is_loopback());
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "from std");
        client.join().unwrap();
        let raw = {
            use std::os::fd::IntoRawFd;
            s.into_raw_fd()
        };
        // SAFETY: `raw` was just released by into_raw_fd and is owned by nobody else.
        let back = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        assert!(back.peer_addr().is_ok());
    });
}

#[test]
fn socket_types_are_send_and_sync_like_std() {
    fn check<T: Send + Sync>() {}
    check::<TcpStream>();
    check::<TcpListener>();
    check::<greenhub::net::UdpSocket>();
    check::<greenhub::net::unix::UnixStream>();
    check::<greenhub::net::unix::UnixListener>();
    check::<greenhub::net::unix::UnixDatagram>();
}

#[test]
fn connect_tries_each_address_like_std() {
    hub::run(|| {
        let closed: SocketAddr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let addrs = [closed, open];
        let s = TcpStream::connect(&addrs[..]).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open);
        let s = TcpStream::connect((String::from("127.0.0.1"), open.port())).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open);
        let s = TcpStream::connect(open.to_string()).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open);
        let e = TcpStream::connect(&[][..]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

/// A short read marks the socket "drained" and the next read parks without a syscall; but when
/// the peer's last bytes and its FIN arrive in one event, no edge follows, so the next read must
/// still try and see end-of-file (regression: it parked forever).
#[test]
fn eof_arriving_with_the_last_bytes_is_seen_after_a_short_read() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = hub::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            // Let the server park in read (registering its socket) first.
            hub::sleep(Duration::from_millis(50));
            c.write_all(&[7u8; 100]).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            c
        });
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(
            s.read(&mut buf).unwrap(),
            100,
            "the bytes, in one short read"
        );
        let eof = s.read(&mut buf);
        assert!(
            matches!(eof, Ok(0)),
            "expected end-of-file after the short read, got {eof:?}"
        );
        drop(client.join().unwrap());
    });
}

/// Writes and reads after short transfers keep working both ways with a full send buffer.
#[test]
fn short_writes_then_parks_until_room() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reader = hub::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Let the writer fill the buffers and hit a short write first.
            hub::sleep(Duration::from_millis(50));
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all.len()
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let big = vec![1u8; 8 << 20];
        c.write_all(&big).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), big.len());
    });
}
