//! Graceful stop on a signal: the echo_server example (a child process), and
//! `StreamServer::serve_until_signal` in process.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The echo_server example next to this test binary (`cargo test` builds the examples), started
/// through GREENHUB_TEST_RUNNER when set.
fn echo_server(args: &[&str]) -> (Child, SocketAddr, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("echo_server"))
        .unwrap();
    assert!(
        example.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or `cargo build --example \
         echo_server` first",
        example.display()
    );
    let runner = std::env::var("GREENHUB_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    let mut cmd = match parts.next() {
        Some(p) => {
            let mut c = Command::new(p);
            c.args(parts).arg(&example);
            c
        }
        None => Command::new(&example),
    };
    let mut child = cmd
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr, out)
}

fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

fn sigterm(child: &Child) {
    // SAFETY: kill takes no pointers; the pid is our live child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

/// Waits up to 10 s for the child to exit.
fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("echo_server did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn drains_open_connections(extra: &[&str]) {
    let mut args = vec!["--grace", "10"];
    args.extend_from_slice(extra);
    let (mut child, addr, mut out) = echo_server(&args);
    let mut conns: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        echo_once(c, format!("hello {i}").as_bytes());
    }
    sigterm(&child);
    // The listener closes; the open connections are still served during the grace period.
    let t0 = Instant::now();
    // Probes that connect before the listener closes may be accepted (and drained) too.
    let mut probes = 0;
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Ok(_) if t0.elapsed() < Duration::from_secs(5) => {
                probes += 1;
                std::thread::sleep(Duration::from_millis(10))
            }
            r => panic!("the listener should close after SIGTERM: {r:?}"),
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before draining"
    );
    for (i, c) in conns.iter_mut().enumerate() {
        echo_once(c, format!("still served {i}").as_bytes());
    }
    drop(conns); // the handlers see end of file and finish
    let status = exit_status(&mut child);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(
        status.success(),
        "echo_server exited with {status}; said {rest:?}"
    );
    let drained: usize = rest
        .split("drained ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("echo_server said {rest:?}"));
    assert!(
        (3..=3 + probes).contains(&drained) && rest.contains("killed 0"),
        "echo_server said {rest:?} ({probes} probe connection(s) were made)"
    );
}

#[test]
fn echo_server_drains_open_connections_and_exits_0_on_sigterm() {
    drains_open_connections(&[]);
}

#[test]
fn echo_server_on_two_hubs_drains_open_connections_and_exits_0_on_sigterm() {
    drains_open_connections(&["--threads", "2"]);
}

#[test]
fn echo_server_on_two_reuseport_hubs_drains_and_exits_0_on_sigterm() {
    drains_open_connections(&["--threads", "2", "--reuseport"]);
}

#[test]
fn echo_server_kills_connections_still_open_after_the_grace_period() {
    let (mut child, addr, mut out) = echo_server(&["--grace", "0.2"]);
    let mut conns: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for c in &mut conns {
        echo_once(c, b"x");
    }
    let t0 = Instant::now();
    sigterm(&child);
    let status = exit_status(&mut child);
    let took = t0.elapsed();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(
        status.success(),
        "echo_server exited with {status}; said {rest:?}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "exited after {took:?}, before the grace"
    );
    assert!(
        rest.contains("drained 0 connection(s), killed 2"),
        "said {rest:?}"
    );
    // The killed handlers' sockets were closed.
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
}

#[test]
fn serve_until_signal_returns_the_report_and_restores_the_disposition() {
    use greenhub::{hub, server::StreamServer, signal::SignalKind};
    let sig = libc::SIGRTMIN() + 1;
    hub::run(move || {
        let server = StreamServer::bind("127.0.0.1:0", |s, _| {
            let _ = support::echo(s);
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        let client = hub::spawn(move || {
            let mut c = greenhub::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"ab").unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).unwrap();
            hub::sleep(Duration::from_millis(30)); // keep the connection open past the signal
                                                   // SAFETY: raise sends a signal the server handles now.
            unsafe { libc::raise(sig) };
            hub::sleep(Duration::from_millis(30));
            drop(c);
        });
        let report = server
            .serve_until_signal(&[SignalKind::from_raw(sig)], Duration::from_secs(5))
            .unwrap();
        assert_eq!(report.drained, 1);
        assert_eq!(report.killed, 0);
        client.join().unwrap();
        // SAFETY: reads the current disposition only.
        let disp = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            old.sa_sigaction
        };
        assert_eq!(disp, libc::SIG_DFL, "the listener was dropped");
    });
}
