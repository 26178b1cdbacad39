//! UdpSocket: round trips, connected mode, peeking, timeouts, options.

mod support;

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::UdpSocket;
use support::SLACK;

#[test]
fn round_trip_between_two_greenlets() {
    hub::run(|| {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        // The server parks in recv_from before anything is sent.
        let echo = hub::spawn(move || {
            let mut buf = [0u8; 1500];
            for _ in 0..10 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                server.send_to(&buf[..n], from).unwrap();
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 1500];
        for i in 0..10u8 {
            let msg = [i; 100];
            assert_eq!(client.send_to(&msg, addr).unwrap(), 100);
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buf[..n], &msg);
        }
        echo.join().unwrap();
    });
}

#[test]
fn connected_send_recv_and_peek() {
    hub::run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        a.send(b"one").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.peek(&mut buf).unwrap(), 3);
        let (n, from) = b.peek_from(&mut buf).unwrap();
        assert_eq!((n, from), (3, a.local_addr().unwrap()));
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        // Resolution of a name for send_to (on the helper thread).
        let port = b.local_addr().unwrap().port();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"named", ("localhost", port)).unwrap();
        let _ = c;
    });
}

#[test]
fn read_timeout_and_nonblocking() {
    hub::run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t0 = Instant::now();
        let e = s.recv_from(&mut [0u8; 8]).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert!(
            took >= Duration::from_millis(50) && took < SLACK,
            "{took:?}"
        );
        assert!(s.set_write_timeout(Some(Duration::ZERO)).is_err());
        s.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            s.recv(&mut [0u8; 8]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        assert!(t0.elapsed() < Duration::from_millis(40));
    });
}

#[test]
fn options_match_std() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_broadcast(true).unwrap();
    assert!(s.broadcast().unwrap());
    s.set_multicast_loop_v4(false).unwrap();
    assert!(!s.multicast_loop_v4().unwrap());
    s.set_multicast_ttl_v4(7).unwrap();
    assert_eq!(s.multicast_ttl_v4().unwrap(), 7);
    s.set_ttl(33).unwrap();
    assert_eq!(s.ttl().unwrap(), 33);
    assert!(s.take_error().unwrap().is_none());
    // Joining a group may be refused in a sandbox without multicast routes; it must not panic.
    let _ = s.join_multicast_v4(&Ipv4Addr::new(239, 1, 2, 3), &Ipv4Addr::UNSPECIFIED);
    let std_sock: std::net::UdpSocket = s.into();
    assert!(std_sock.broadcast().unwrap());
    let back = UdpSocket::from(std_sock);
    assert_eq!(back.ttl().unwrap(), 33);
}
