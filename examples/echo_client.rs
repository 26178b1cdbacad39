//! Load generator for `echo_server`: N connections, each a greenlet on one hub, sending a message
//! and waiting for its echo, over and over.
//!
//! ```text
//! cargo run --release --example echo_client -- --connections 50 --size 64 --duration 5
//! ```
//!
//! Prints round trips per second and the p50/p99 round-trip latency (from a sorted sample of every
//! round trip).
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::TcpStream;

struct Args {
    addr: String,
    connections: usize,
    size: usize,
    duration: Duration,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:7000".into(),
        connections: 50,
        size: 64,
        duration: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value; try --help"))
        };
        match flag.as_str() {
            "--addr" => a.addr = value(),
            "--connections" => a.connections = value().parse().expect("--connections N"),
            "--size" => a.size = value().parse().expect("--size BYTES"),
            "--duration" => {
                a.duration = Duration::from_secs_f64(value().parse().expect("--duration SECS"))
            }
            "-h" | "--help" => {
                println!(
                    "usage: echo_client [--addr HOST:PORT] [--connections N] [--size BYTES] \
                     [--duration SECS]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?}; try --help"),
        }
    }
    a
}

/// One connection's loop: returns the latency of every round trip, in nanoseconds.
fn client(addr: String, size: usize, until: Instant) -> std::io::Result<Vec<u64>> {
    let mut s = TcpStream::connect(addr.as_str())?;
    s.set_nodelay(true)?;
    let msg = vec![b'x'; size];
    let mut back = vec![0u8; size];
    let mut samples = Vec::with_capacity(1 << 16);
    while Instant::now() < until {
        let t0 = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        samples.push(t0.elapsed().as_nanos() as u64);
    }
    Ok(samples)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted[i])
}

fn main() {
    // greenhub's runtime warnings (blocked hub, accept back-off, detached panics) go to tracing.
    tracing_subscriber::fmt::init();
    let args = parse_args();
    let Args {
        addr,
        connections,
        size,
        duration,
    } = args;
    println!("{connections} connections to {addr}, {size}-byte messages, {duration:?}");
    let started = Instant::now();
    let until = started + duration;
    let (mut samples, errors) = hub::run(move || {
        let clients: Vec<_> = (0..connections)
            .map(|_| {
                let addr = addr.clone();
                hub::spawn(move || client(addr, size, until))
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for c in clients {
            match c.join() {
                Ok(Ok(s)) => all.extend(s),
                Ok(Err(e)) => {
                    errors += 1;
                    eprintln!("connection failed: {e}");
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("client greenlet failed: {e}");
                }
            }
        }
        (all, errors)
    });
    let elapsed = started.elapsed();
    samples.sort_unstable();
    let n = samples.len();
    println!(
        "{n} round trips in {elapsed:.2?}: {:.0} round trips/s, {:.1} MB/s each way",
        n as f64 / elapsed.as_secs_f64(),
        (n * size) as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "latency p50 {:?}  p99 {:?}  max {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0)
    );
    if errors > 0 {
        println!("{errors} connection(s) failed");
        std::process::exit(1);
    }
}
