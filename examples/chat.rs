//! A line-based chat: every line a client sends goes to every other client. The room is shared
//! state in an `Rc<RefCell<..>>` — safe without locks because all greenlets run on this thread,
//! one at a time.
//!
//! ```text
//! cargo run --example chat [-- --addr 127.0.0.1:7001]
//! nc 127.0.0.1 7001        (in two or more terminals)
//! ```
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use greenhub::net::TcpStream;
use greenhub::server::StreamServer;

/// Who is connected: an id per connection and a handle to write to it.
#[derive(Default)]
struct Room {
    next_id: u64,
    members: HashMap<u64, (SocketAddr, TcpStream)>,
}

/// Sends `line` to everyone but `from`. The member list is copied out first: never hold a
/// `RefCell` borrow across a call that may block (another greenlet would find it borrowed).
fn broadcast(room: &RefCell<Room>, from: u64, line: &str) {
    let targets: Vec<(u64, TcpStream)> = room
        .borrow()
        .members
        .iter()
        .filter(|(id, _)| **id != from)
        .filter_map(|(id, (_, s))| s.try_clone().ok().map(|s| (*id, s)))
        .collect();
    for (id, mut s) in targets {
        // A member that cannot take a line within the write timeout is dropped.
        if s.write_all(line.as_bytes()).is_err() {
            room.borrow_mut().members.remove(&id);
        }
    }
}

fn handle(room: &RefCell<Room>, stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let id = {
        let mut r = room.borrow_mut();
        r.next_id += 1;
        let id = r.next_id;
        r.members.insert(id, (peer, stream.try_clone()?));
        id
    };
    (&stream)
        .write_all(format!("welcome {peer}; {} here\n", room.borrow().members.len()).as_bytes())?;
    broadcast(room, id, &format!("* {peer} joined\n"));
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    while reader.read_line(&mut line)? > 0 {
        broadcast(room, id, &format!("[{peer}] {line}"));
        line.clear();
    }
    room.borrow_mut().members.remove(&id);
    broadcast(room, id, &format!("* {peer} left\n"));
    Ok(())
}

fn main() -> std::io::Result<()> {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    let mut addr = String::from("127.0.0.1:7001");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().expect("--addr needs a value"),
            other => panic!("unknown argument {other:?} (usage: chat [--addr HOST:PORT])"),
        }
    }
    let room = Rc::new(RefCell::new(Room::default()));
    let server = StreamServer::bind(addr.as_str(), move |stream, peer| {
        if let Err(e) = handle(&room, stream, peer) {
            eprintln!("{peer}: {e}");
        }
    })?;
    println!("chat listening on {}", server.local_addr()?);
    server.serve_forever()
}
