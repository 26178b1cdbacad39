//! `runtime::Runtime` and the multi-hub `server::MultiServer`.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use greenhub::hub;
use greenhub::runtime::Runtime;
use greenhub::server::{Distribution, MultiServer};
use greenhub::GreenletError;

#[test]
fn spawn_round_robins_over_the_hubs() {
    let rt = Runtime::builder().threads(3).build().unwrap();
    let gs: Vec<_> = (0..30)
        .map(|_| rt.spawn(|| thread::current().id()))
        .collect();
    let threads: HashSet<_> = gs.into_iter().map(|g| g.join().unwrap()).collect();
    assert_eq!(threads.len(), 3);
    assert!(!threads.contains(&thread::current().id()));
    assert_eq!(rt.block_on(|| 2 + 2), 4);
}

#[test]
fn block_on_resumes_a_panic() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| -> u8 { panic!("block_on boom") })
    }));
    assert_eq!(
        r.unwrap_err().downcast_ref::<&str>().copied(),
        Some("block_on boom")
    );
}

#[test]
fn dropping_a_runtime_kills_everything_and_runs_all_destructors() {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().threads(4).build().unwrap();
    let mut gs = Vec::new();
    for _ in 0..100 {
        let g = Guard(dropped.clone());
        let started = started.clone();
        gs.push(rt.spawn(move || {
            let _g = g;
            started.fetch_add(1, Ordering::SeqCst);
            hub::sleep(Duration::from_secs(3600)); // parked forever
        }));
    }
    while started.load(Ordering::SeqCst) < 100 {
        thread::sleep(Duration::from_millis(1));
    }
    // Some more that may or may not have started when the runtime goes away.
    for _ in 0..100 {
        let g = Guard(dropped.clone());
        gs.push(rt.spawn(move || {
            let _g = g;
            hub::sleep(Duration::from_secs(3600));
        }));
    }
    drop(rt);
    assert_eq!(dropped.load(Ordering::SeqCst), 200);
    for g in gs {
        assert!(matches!(g.join(), Err(GreenletError::Killed)));
    }
}

fn echo(s: greenhub::net::TcpStream, _peer: std::net::SocketAddr) {
    let _ = support::echo(s);
}

fn multi_echo_with(dist: Distribution) {
    support::raise_nofile();
    let hubs_seen = Arc::new(Mutex::new(HashSet::new()));
    let seen = hubs_seen.clone();
    let server = MultiServer::builder()
        .threads(4)
        .distribution(dist)
        .bind("127.0.0.1:0", move |s, p| {
            seen.lock().unwrap().insert(thread::current().id());
            echo(s, p)
        })
        .unwrap();
    let addr = server.local_addr();
    // 1,000 connections from one client hub, each a greenlet doing three round trips.
    let ok = hub::run(move || {
        let gs: Vec<_> = (0..1000u32)
            .map(|i| {
                hub::spawn(move || -> std::io::Result<bool> {
                    let mut s = greenhub::net::TcpStream::connect(addr)?;
                    let mut good = true;
                    for round in 0..3u32 {
                        let msg = format!("conn {i} round {round}\n");
                        s.write_all(msg.as_bytes())?;
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back)?;
                        good &= back == msg.as_bytes();
                    }
                    Ok(good)
                })
            })
            .collect();
        gs.into_iter()
            .map(|g| g.join().unwrap().unwrap())
            .filter(|&b| b)
            .count()
    });
    assert_eq!(ok, 1000);
    assert!(
        hubs_seen.lock().unwrap().len() >= 2,
        "connections were not spread over the hubs"
    );
    server.stop();
}

#[test]
fn multi_hub_echo_with_1000_connections_reuseport() {
    multi_echo_with(Distribution::ReusePort);
}

#[test]
fn multi_hub_echo_with_1000_connections_handoff() {
    multi_echo_with(Distribution::Handoff);
}
