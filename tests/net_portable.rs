//! The port-from-std story, checked: one thread-per-connection server source, compiled once
//! against std::net + std::thread::spawn and once against greenhub::net + greenhub::hub::spawn
//! (only the `use` lines differ), passes the same client checks.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream as StdStream};

mod with_std {
    use std::net::{TcpListener, TcpStream};
    use std::thread::spawn;
    include!("support/portable_server.rs");
}

mod with_greenhub {
    use greenhub::hub::spawn;
    use greenhub::net::{TcpListener, TcpStream};
    include!("support/portable_server.rs");
}

const CLIENTS: usize = 20;
const LINES: usize = 50;

/// Plain std clients on OS threads, the same for both servers: every answer must be the
/// upper-cased line, in order.
fn run_clients(addr: SocketAddr) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                std::thread::spawn(move || {
                    let s = StdStream::connect(addr).unwrap();
                    let mut reader = BufReader::new(&s);
                    let mut writer = &s;
                    let mut answer = String::new();
                    for i in 0..LINES {
                        let line = format!("client {c} line {i}\n");
                        writer.write_all(line.as_bytes()).unwrap();
                        answer.clear();
                        reader.read_line(&mut answer).unwrap();
                        assert_eq!(answer, line.to_uppercase());
                    }
                    LINES
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    })
}

#[test]
fn the_std_version_passes() {
    let (listener, addr) = with_std::bind();
    let clients = run_clients(addr);
    let answered = with_std::serve(listener, CLIENTS);
    assert_eq!(clients.join().unwrap(), CLIENTS * LINES);
    assert_eq!(answered, CLIENTS * LINES);
}

#[test]
fn the_greenhub_version_passes_the_same_checks() {
    let (listener, addr) = with_greenhub::bind();
    let clients = run_clients(addr);
    let answered = greenhub::hub::run(move || with_greenhub::serve(listener, CLIENTS));
    assert_eq!(clients.join().unwrap(), CLIENTS * LINES);
    assert_eq!(answered, CLIENTS * LINES);
    // All of it ran on this thread's hub: one greenlet per connection.
    assert!(greenhub::hub::stats().spawned > CLIENTS as u64);
}
