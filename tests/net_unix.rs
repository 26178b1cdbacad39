//! Unix domain sockets: stream and datagram round trips, pairs, timeouts.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::unix::{UnixDatagram, UnixListener, UnixStream};
use support::*;

/// A fresh socket path under the temp dir, unique to this process and `tag`.
fn sock_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("greenhub-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn stream_round_trip_through_a_listener() {
    let path = sock_path("stream");
    let p2 = path.clone();
    hub::run(move || {
        let l = UnixListener::bind(&p2).unwrap();
        let server = hub::spawn(move || {
            let handlers: Vec<_> = l
                .incoming()
                .take(20)
                .map(|s| hub::spawn(move || echo(s.unwrap()).unwrap()))
                .collect();
            handlers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        let clients: Vec<_> = (0..20)
            .map(|i| {
                let p = p2.clone();
                hub::spawn(move || {
                    let mut c = UnixStream::connect(&p).unwrap();
                    let msg = message(i, 10_000);
                    let mut w = c.try_clone().unwrap();
                    let m2 = msg.clone();
                    let writer = hub::spawn(move || {
                        w.write_all(&m2).unwrap();
                        w.shutdown(Shutdown::Write).unwrap();
                    });
                    let mut back = Vec::new();
                    c.read_to_end(&mut back).unwrap();
                    writer.join().unwrap();
                    assert_eq!(back, msg);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        assert_eq!(server.join().unwrap(), 20 * 10_000);
    });
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn stream_pair_and_read_timeout() {
    hub::run(|| {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t0 = Instant::now();
        assert_eq!(b.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < SLACK,
            "{took:?}"
        );
        // A closed peer's writes fail with an error, not SIGPIPE.
        drop(b);
        let mut failed = false;
        for _ in 0..100 {
            if a.write(&[0u8; 4096]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    });
}

#[test]
fn datagram_round_trips() {
    let (pa, pb) = (sock_path("dgram-a"), sock_path("dgram-b"));
    let (pa2, pb2) = (pa.clone(), pb.clone());
    hub::run(move || {
        let a = UnixDatagram::bind(&pa2).unwrap();
        let b = UnixDatagram::bind(&pb2).unwrap();
        let receiver = hub::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(from.as_pathname(), Some(pa2.as_path()));
            b.send_to(&buf[..n], from.as_pathname().unwrap()).unwrap();
        });
        a.send_to(b"datagram", &pb2).unwrap();
        let mut buf = [0u8; 64];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"datagram");
        receiver.join().unwrap();

        let (x, y) = UnixDatagram::pair().unwrap();
        x.send(b"paired").unwrap();
        assert_eq!(y.recv(&mut buf).unwrap(), 6);
        y.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(y.recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);

        let u = UnixDatagram::unbound().unwrap();
        u.connect(&pb2).unwrap_err(); // b is gone: refused
    });
    std::fs::remove_file(&pa).unwrap();
    std::fs::remove_file(&pb).unwrap();
}
