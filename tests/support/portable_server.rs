// A thread-per-connection line server written against std::net, included verbatim by
// tests/net_portable.rs into two modules: one whose `use` lines name std::net and
// std::thread::spawn, one whose `use` lines name greenhub::net and greenhub::hub::spawn.
// Nothing else differs. (No `use` of the swapped names here: the including module provides them.)

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

/// Binds the server's listener on an ephemeral loopback port.
pub fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Serves `connections` connections, each on its own thread (or greenlet); returns the number
/// of lines answered.
pub fn serve(listener: TcpListener, connections: usize) -> usize {
    let mut workers = Vec::new();
    for stream in listener.incoming().take(connections) {
        let stream = stream.unwrap();
        workers.push(spawn(move || handle(stream)));
    }
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

/// Answers each line with the line upper-cased, until the client closes.
fn handle(stream: TcpStream) -> usize {
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    let mut line = String::new();
    let mut answered = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            return answered;
        }
        writer.write_all(line.to_uppercase().as_bytes()).unwrap();
        answered += 1;
    }
}
