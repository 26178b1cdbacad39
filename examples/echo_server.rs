//! An echo server: one greenlet per connection, plain blocking-style code.
//!
//! ```text
//! cargo run --release --example echo_server [-- --addr 127.0.0.1:7000]
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
    loop {
        match stream.read(&mut buf) {
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
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .expect("--addr needs a value, e.g. 0.0.0.0:7000")
            }
            "-h" | "--help" => {
                println!("usage: echo_server [--addr HOST:PORT]   (default 127.0.0.1:7000)");
                return Ok(());
            }
            other => panic!("unknown argument {other:?}; try --help"),
        }
    }
    let server = StreamServer::bind(addr.as_str(), handle)?;
    println!("echo server listening on {}", server.local_addr()?);
    server.serve_forever()
}
