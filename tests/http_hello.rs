//! Issue 11 item 11: the `http_hello` example's handler against hostile clients, with raw bytes.
//! The handler is the example's own module (`examples/support/http.rs`), run on a
//! `StreamServer` here as the example runs it. Every read of a client has a time bound, so a
//! server that never answers fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::TcpStream;
use greenhub::server::StreamServer;

#[path = "../examples/support/http.rs"]
mod http;

/// How long a client waits for the server's answer (or its close) before the test fails.
const CLIENT_WAIT: Duration = Duration::from_secs(4);

/// Starts the example's handler on a fresh server with these time limits.
fn start(idle: Duration, head: Duration) -> (StreamServer, SocketAddr) {
    let server = StreamServer::bind("127.0.0.1:0", move |s: TcpStream, _| {
        let _ = http::serve(&s, head);
    })
    .unwrap();
    server.set_idle_timeout(Some(idle)).unwrap();
    server.start().unwrap();
    let addr = server.local_addr().unwrap();
    (server, addr)
}

/// The default limits of these tests: generous, so only the test that is about time hits them.
fn start_default() -> (StreamServer, SocketAddr) {
    start(Duration::from_secs(30), Duration::from_secs(30))
}

/// What the server sent, and whether it closed the connection within [`CLIENT_WAIT`].
struct Answer {
    bytes: Vec<u8>,
    closed: bool,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status lines of the responses, in order (a body here never contains "HTTP/1.1 ").
    fn statuses(&self) -> Vec<String> {
        self.text()
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.split("\r\n").next().unwrap_or("").to_string())
            .filter(|status| !status.starts_with("100"))
            .collect()
    }
}

/// Reads until the server closes or [`CLIENT_WAIT`] passes.
fn collect(c: &mut TcpStream) -> Answer {
    let deadline = Instant::now() + CLIENT_WAIT;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Answer {
                bytes,
                closed: false,
            };
        }
        c.set_read_timeout(Some(left)).unwrap();
        match c.read(&mut buf) {
            Ok(0) => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Answer {
                    bytes,
                    closed: false,
                }
            }
            // A reset after the answer (the server closed with our unread bytes queued).
            Err(_) => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
        }
    }
}

/// Sends `raw` on a new connection and collects the answer.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(raw).unwrap();
    collect(&mut c)
}

#[test]
fn a_plain_keep_alive_exchange_works() {
    hub::run(|| {
        let (server, addr) = start_default();
        let a = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(a.statuses(), ["200 OK", "200 OK"], "{}", a.text());
        assert!(a.text().ends_with(http::BODY));
        assert!(a.closed);
        server.stop(Duration::ZERO);
    });
}

/// One header line that never ends: refused once it passes MAX_HEAD bytes (before: read whole,
/// without bound, and never answered).
#[test]
fn an_endless_header_line_is_refused_at_the_head_limit() {
    hub::run(|| {
        let (server, addr) = start_default();
        let mut c = TcpStream::connect(addr).unwrap();
        let w = c.try_clone().unwrap();
        let writer = hub::spawn(move || {
            let mut w = w;
            let _ = w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ");
            let chunk = [b'a'; 64 * 1024];
            let mut sent = 0usize;
            // 1 MiB, or until the server closes on us.
            while sent < (1 << 20) {
                match w.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        });
        let a = collect(&mut c);
        assert_eq!(
            a.statuses(),
            ["431 Request Header Fields Too Large"],
            "{}",
            a.text()
        );
        assert!(a.closed);
        drop(c);
        writer.join().unwrap();
        server.stop(Duration::ZERO);
    });
}

/// `Content-Length: abc` (and other values that are not one decimal number) is 400 and the
/// connection closes; before, it counted as 0 and the body was answered as a second request.
#[test]
fn a_malformed_content_length_is_400_not_a_second_request() {
    hub::run(|| {
        let (server, addr) = start_default();
        for bad in ["abc", "-1", "+5", "0x10", "5, 6", "1 2", ""] {
            let raw = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
            );
            let a = exchange(addr, raw.as_bytes());
            assert_eq!(a.statuses(), ["400 Bad Request"], "{bad:?}: {}", a.text());
            assert!(a.text().contains("Connection: close"));
            assert!(a.closed, "{bad:?}: the connection closes");
        }
        // A repeated identical value is one value.
        let a = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert_eq!(a.statuses(), ["200 OK"], "{}", a.text());
        server.stop(Duration::ZERO);
    });
}

/// A chunked body is decoded and skipped: a request inside it is never answered.
#[test]
fn a_chunked_body_is_skipped_not_parsed_as_a_request() {
    hub::run(|| {
        let (server, addr) = start_default();
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x};ext=1\r\n{smuggled}\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n\
             GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            smuggled.len()
        );
        let a = exchange(addr, raw.as_bytes());
        assert_eq!(a.statuses(), ["200 OK", "200 OK"], "{}", a.text());
        assert!(a.closed);

        // Framings the handler cannot (or must not) read close the connection.
        for (head, status) in [
            ("Transfer-Encoding: gzip", "501 Not Implemented"),
            ("Transfer-Encoding: gzip, chunked", "501 Not Implemented"),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 3",
                "400 Bad Request",
            ),
        ] {
            let raw = format!(
                "POST / HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"
            );
            let a = exchange(addr, raw.as_bytes());
            assert_eq!(a.statuses(), [status], "{head:?}: {}", a.text());
            assert!(a.closed, "{head:?}");
        }
        // A malformed chunk size.
        let a = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        );
        assert_eq!(a.statuses(), ["400 Bad Request"], "{}", a.text());
        server.stop(Duration::ZERO);
    });
}

/// HTTP/1.0 closes after the answer, and says so, unless the client asked for keep-alive.
#[test]
fn http_1_0_gets_connection_close_unless_it_asks_for_keep_alive() {
    hub::run(|| {
        let (server, addr) = start_default();
        let a = exchange(addr, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(a.statuses(), ["200 OK"], "{}", a.text());
        assert!(
            a.text().contains("\r\nConnection: close\r\n"),
            "{}",
            a.text()
        );
        assert!(a.closed);

        let a = exchange(
            addr,
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        );
        assert_eq!(a.statuses(), ["200 OK", "200 OK"], "{}", a.text());
        let text = a.text();
        let (first, second) = text.split_at(text.rfind("HTTP/1.1 200").unwrap());
        assert!(first.contains("Connection: keep-alive"), "{text}");
        assert!(second.contains("Connection: close"), "{text}");
        assert!(a.closed);
        server.stop(Duration::ZERO);
    });
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut raw = String::from("GET / HTTP/1.1\r\n");
    for i in 0..n {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw.into_bytes()
}

/// 40 header fields (a browser behind a proxy sends that) are fine; past the limit it is 431.
#[test]
fn a_realistic_number_of_headers_is_accepted_and_too_many_is_431() {
    hub::run(|| {
        let (server, addr) = start_default();
        for n in [40, http::MAX_HEADERS - 1] {
            let a = exchange(addr, &with_headers(n));
            assert_eq!(a.statuses(), ["200 OK"], "{n} headers: {}", a.text());
        }
        let a = exchange(addr, &with_headers(http::MAX_HEADERS + 1));
        assert_eq!(
            a.statuses(),
            ["431 Request Header Fields Too Large"],
            "{}",
            a.text()
        );
        assert!(a.closed);
        server.stop(Duration::ZERO);
    });
}

/// A client that trickles its head a line at a time is cut off by the head timeout (408), even
/// though it never stays idle long enough for the idle timeout.
#[test]
fn a_trickled_request_head_is_cut_off_by_the_head_timeout() {
    hub::run(|| {
        let (server, addr) = start(Duration::from_secs(5), Duration::from_millis(300));
        let start = Instant::now();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let w = c.try_clone().unwrap();
        let trickle = hub::spawn(move || {
            let mut w = w;
            for i in 0..40 {
                hub::sleep(Duration::from_millis(50));
                if w.write_all(format!("X-{i}: y\r\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
        let a = collect(&mut c);
        assert!(a.closed, "the server closed the trickling client");
        assert_eq!(a.statuses(), ["408 Request Timeout"], "{}", a.text());
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(c);
        trickle.join().unwrap();
        server.stop(Duration::ZERO);
    });
}

/// Connections that send part of a request and then nothing are closed by the server's idle
/// timeout, all of them (before: 3,000 such were held for as long as the clients liked).
#[test]
fn partial_requests_are_closed_by_the_idle_timeout() {
    hub::run(|| {
        let (server, addr) = start(Duration::from_millis(200), Duration::from_secs(30));
        let start = Instant::now();
        let clients: Vec<_> = (0..50)
            .map(|_| {
                hub::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
                    collect(&mut c).closed
                })
            })
            .collect();
        for c in clients {
            assert!(c.join().unwrap(), "an idle partial request was closed");
        }
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(server.connections(), 0);
        server.stop(Duration::ZERO);
    });
}
