//! A keep-alive HTTP/1.1 "Hello, world!" server in plain blocking std::io style: a
//! `BufReader<&TcpStream>` for the requests, `&TcpStream` for the answers, `httparse` for the
//! request head. One greenlet per connection.
//!
//! ```text
//! cargo run --release --example http_hello [-- --addr 127.0.0.1:8080]
//! curl -v http://127.0.0.1:8080/
//! wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//! ```
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;

use greenhub::net::TcpStream;
use greenhub::server::StreamServer;

const BODY: &str = "Hello, world!";
/// Request heads longer than this are refused.
const MAX_HEAD: usize = 16 * 1024;

/// Reads one request head (up to and including the blank line) into `head`; false at EOF.
fn read_head(reader: &mut impl BufRead, head: &mut Vec<u8>) -> io::Result<bool> {
    head.clear();
    loop {
        let start = head.len();
        if reader.read_until(b'\n', head)? == 0 {
            return Ok(false);
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                head.clear(); // a stray blank line between requests
                continue;
            }
            return Ok(true);
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

fn serve(stream: &TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut writer = stream;
    let mut head = Vec::new();
    while read_head(&mut reader, &mut head)? {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            writer.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let http11 = req.version == Some(1);
        let mut keep_alive = http11;
        let mut body_len = 0u64;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            }
        }
        // Skip any request body so the next request starts where it should.
        io::copy(&mut (&mut reader).take(body_len), &mut io::sink())?;
        let connection = match (http11, keep_alive) {
            (true, false) => "Connection: close\r\n",
            (false, true) => "Connection: keep-alive\r\n",
            _ => "",
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n{BODY}",
            BODY.len()
        );
        writer.write_all(response.as_bytes())?;
        if !keep_alive {
            return Ok(());
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    let mut addr = String::from("127.0.0.1:8080");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            other => panic!("unknown argument {other:?} (usage: http_hello [--addr HOST:PORT])"),
        }
    }
    let server = StreamServer::bind(addr.as_str(), |stream: TcpStream, _peer: SocketAddr| {
        let _ = serve(&stream);
    })?;
    println!("http_hello listening on http://{}/", server.local_addr()?);
    server.serve_forever()
}
