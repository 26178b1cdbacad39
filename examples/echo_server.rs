//! An echo server: one greenlet per connection, plain blocking-style code.
//!
//! ```text
//! cargo run --release --example echo_server [-- --addr 127.0.0.1:7000] [--heap-buffer]
//! ```
//!
//! Each handler reads into a `[u8; 4096]` on its own stack, as natural Rust code would. That
//! buffer is part of the greenlet's live stack slice, so it is copied whenever the hub switches
//! between two connection greenlets; `echo_client` measures what that costs.
use std::io::{Read, Write};
use std::net::SocketAddr;

use greenhub::net::TcpStream;
use greenhub::server::StreamServer;

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
    let mut addr = String::from("127.0.0.1:7000");
    let mut heap = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .expect("--addr needs a value, e.g. 0.0.0.0:7000")
            }
            "--heap-buffer" => heap = true,
            "-h" | "--help" => {
                println!("usage: echo_server [--addr HOST:PORT] [--heap-buffer]   (default 127.0.0.1:7000)");
                return Ok(());
            }
            other => panic!("unknown argument {other:?}; try --help"),
        }
    }
    let server = if heap {
        StreamServer::bind(addr.as_str(), handle_heap)?
    } else {
        StreamServer::bind(addr.as_str(), handle)?
    };
    println!("echo server listening on {}", server.local_addr()?);
    server.serve_forever()
}
