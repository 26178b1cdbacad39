//! Issue 11 item 5: the naive accept loop `for s in listener.incoming() { let Ok(s) = s else {
//! continue }; hub::spawn(..) }` must recover when the process runs out of descriptors: an
//! `EMFILE` from `accept` lets the handlers (which close descriptors) run before it returns.
//!
//! The server runs in a child process with a low `RLIMIT_NOFILE`; this process runs 400 clients
//! on threads, each with a read timeout, and kills the child at the deadline. Before the fix the
//! accept loop spun on `EMFILE` without ever switching and no client was answered.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::TcpListener;
use support::*;

const CLIENTS: usize = 400;
const NAME: &str = "naive_accept_loop_recovers_from_emfile";

/// The child: a naive server under a 40-descriptor limit. Exits once every client is served.
fn serve() {
    set_nofile(40);
    hub::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        let served = std::rc::Rc::new(std::cell::Cell::new(0usize));
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let served = served.clone();
            hub::spawn(move || {
                let mut req = [0u8; 5];
                if s.read_exact(&mut req).is_ok() && s.write_all(b"pong\n").is_ok() {
                    served.set(served.get() + 1);
                    if served.get() == CLIENTS {
                        println!("SERVED {CLIENTS}");
                        std::io::stdout().flush().unwrap();
                        // `_exit`, not `process::exit`: glibc's exit runs this thread's
                        // thread-local destructors, the hub's teardown among them, from inside a
                        // greenlet.
                        // SAFETY: ends the process at once; nothing is used afterwards.
                        unsafe { libc::_exit(0) };
                    }
                }
            });
        }
    });
}

#[test]
fn naive_accept_loop_recovers_from_emfile() {
    if is_child(NAME) {
        serve();
        return;
    }
    raise_nofile();
    let mut child = self_command()
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, NAME)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child server");
    // A watchdog: whatever hangs, the child dies after 60 s (the pipe then ends, so every read
    // below returns). It kills only while the child is unreaped, so the pid is still ours.
    let reaped = Arc::new(Mutex::new(false));
    {
        let (reaped, pid) = (reaped.clone(), child.id() as libc::pid_t);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            let reaped = reaped.lock().unwrap();
            if !*reaped {
                // SAFETY: plain syscall; `pid` is our unreaped child (a zombie at worst).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The harness prints "test NAME ... " without a newline first, so look inside the line.
    let port: u16 = loop {
        let line = lines.next().expect("the child printed its port").unwrap();
        if let Some((_, p)) = line.split_once("PORT ") {
            break p.trim().parse().unwrap();
        }
    };
    // All clients connect first (the kernel completes the handshakes into the listen queue), then
    // all send at once: the server accepts far more than its 40 descriptors allow.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || -> Result<(), String> {
                    // A refused or reset handshake is the kernel's business, not the server's:
                    // retry it (the server's livelock shows as no answer, below).
                    let c = (0..3)
                        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)))
                        .find_map(Result::ok)
                        .ok_or("connect failed 3 times");
                    barrier.wait(); // reached even if the connect failed, so nobody waits forever
                    let mut c = c?;
                    let stage = |what: &'static str| move |e: io::Error| format!("{what}: {e}");
                    c.set_read_timeout(Some(Duration::from_secs(10)))
                        .map_err(stage("set_read_timeout"))?;
                    c.write_all(b"ping\n").map_err(stage("write"))?;
                    let mut back = Vec::new();
                    c.read_to_end(&mut back).map_err(stage("read"))?; // timed out: never answered
                    if back == b"pong\n" {
                        Ok(())
                    } else {
                        Err(format!("answered {back:?}"))
                    }
                })
                .unwrap()
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|c| c.join().unwrap().err())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let mut r = reaped.lock().unwrap();
        if let Some(st) = child.try_wait().unwrap() {
            *r = true;
            break Some(st);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            *r = true;
            break None;
        }
        drop(r);
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients not answered, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        status.is_some_and(|s| s.success()) && rest.iter().any(|l| l.contains("SERVED")),
        "the child served all and exited: {status:?}, {rest:?}"
    );
}

const FIRST_WAIT: &str = "a_first_wait_while_out_of_descriptors_works";

/// The child: a socket's first wait (the hub's first registration) comes while the process has
/// no descriptor left. It needs none: the hub made what it needs when it was created.
fn first_wait_while_out_of_descriptors() {
    set_nofile(64);
    hub::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The connection is queued already: this accept does not wait, so nothing is registered.
        let (mut server_side, _) = listener.accept().unwrap();
        let mut hog = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hog.push(f);
        }
        assert!(
            std::fs::File::open("/dev/null").is_err(),
            "out of descriptors"
        );
        let reader = hub::spawn(move || {
            let mut b = [0u8; 4];
            server_side.read_exact(&mut b).map(|()| b)
        });
        hub::sleep(Duration::from_millis(20)); // the reader parks: the hub's first registration
        (&client).write_all(b"ping").unwrap();
        let got = reader.join().unwrap();
        drop(hog);
        assert_eq!(got.unwrap(), *b"ping");
    });
}

#[test]
fn a_first_wait_while_out_of_descriptors_works() {
    if is_child(FIRST_WAIT) {
        first_wait_while_out_of_descriptors();
        return;
    }
    let out = run_child_within(
        child_command(FIRST_WAIT),
        FIRST_WAIT,
        Duration::from_secs(60),
    );
    assert_child_ok(&out);
}
