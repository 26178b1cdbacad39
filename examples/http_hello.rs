//! A keep-alive HTTP/1.1 "Hello, world!" server in plain blocking std::io style: a
//! `BufReader<&TcpStream>` for the requests, `&TcpStream` for the answers, `httparse` for the
//! request head. One greenlet per connection. The handler (`support/http.rs`) is written to be
//! copied: bounded heads, strict request framing, time limits.
//!
//! ```text
//! cargo run --release --example http_hello [-- --addr 127.0.0.1:8080]
//! curl -v http://127.0.0.1:8080/
//! wrk -t1 -c50 -d5s http://127.0.0.1:8080/
//! ```
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use greenhub::net::TcpStream;
use greenhub::server::StreamServer;

/// The handler: request framing, limits, keep-alive (shared with `tests/http_hello.rs`).
#[path = "support/http.rs"]
mod http;

/// A connection that moves no byte for this long is closed (the server's idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Each request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> io::Result<()> {
    // greenhub reports through `tracing` (an unjoined greenlet's panic, a monitor warning):
    // print those events on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut addr = String::from("127.0.0.1:8080");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            other => panic!("unknown argument {other:?} (usage: http_hello [--addr HOST:PORT])"),
        }
    }
    let server = StreamServer::bind(addr.as_str(), |stream: TcpStream, _peer: SocketAddr| {
        let _ = http::serve(&stream, HEAD_TIMEOUT);
    })?;
    server.set_idle_timeout(Some(IDLE_TIMEOUT))?;
    println!("http_hello listening on http://{}/", server.local_addr()?);
    server.serve_forever()
}
