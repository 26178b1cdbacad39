//! An echo server: one greenlet per connection, plain blocking-style code.
//!
//! ```text
//! cargo run --release --example echo_server [-- --addr 127.0.0.1:7000] [--heap-buffer]
//!     [--threads N [--reuseport]]
//! ```
//!
//! `--threads N` serves on N hubs (one OS thread each) with `server::MultiServer`: one acceptor
//! handing each connection to the next hub by default, or with `--reuseport` one `SO_REUSEPORT`
//! listener per hub.
//!
//! Each handler reads into a `[u8; 4096]` on its own stack, as natural Rust code would. That
//! buffer is part of the greenlet's live stack slice, so it is copied whenever the hub switches
//! between two connection greenlets; `echo_client` measures what that costs.
use std::io::{Read, Write};
use std::net::SocketAddr;

use greenhub::net::TcpStream;
use greenhub::server::{Distribution, MultiServer, StreamServer};

fn handle(mut stream: TcpStream, _peer: SocketAddr) {
    let mut buf = [0u8; 4096];
    echo(&mut stream, &mut buf);
}

/// The same loop with the buffer on the heap: nothing but a few words of the greenlet's stack is
/// live, so switches copy next to nothing (`--heap-buffer`).
fn handle_heap(mut stream: TcpStream, _peer: SocketAddr) {
    let mut buf = vec![0u8; 4096];
    echo(&mut stream, &mut buf);
}

fn echo(stream: &mut TcpStream, buf: &mut [u8]) {
    loop {
        match stream.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    let mut addr = String::from("127.0.0.1:7000");
    let mut heap = false;
    let mut threads: Option<usize> = None;
    let mut distribution = Distribution::Handoff;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .expect("--addr needs a value, e.g. 0.0.0.0:7000")
            }
            "--heap-buffer" => heap = true,
            "--threads" => {
                threads = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .expect("--threads needs a number"),
                )
            }
            "--handoff" => distribution = Distribution::Handoff,
            "--reuseport" => distribution = Distribution::ReusePort,
            "-h" | "--help" => {
                println!(
                    "usage: echo_server [--addr HOST:PORT] [--heap-buffer] [--threads N [--reuseport]]   \
                     (default 127.0.0.1:7000, one hub)"
                );
                return Ok(());
            }
            other => panic!("unknown argument {other:?}; try --help"),
        }
    }
    if let Some(n) = threads {
        let builder = MultiServer::builder().threads(n).distribution(distribution);
        let server = if heap {
            builder.bind(addr.as_str(), handle_heap)?
        } else {
            builder.bind(addr.as_str(), handle)?
        };
        println!(
            "echo server listening on {} with {n} hubs ({distribution:?})",
            server.local_addr()
        );
        return server.serve_forever();
    }
    let server = if heap {
        StreamServer::bind(addr.as_str(), handle_heap)?
    } else {
        StreamServer::bind(addr.as_str(), handle)?
    };
    println!("echo server listening on {}", server.local_addr()?);
    server.serve_forever()
}
