//! Faults against StreamServer and the echo handler: clients that reset mid-message, slowloris
//! clients, one 100 MB message, a handler that panics on every 10th connection, and a kill storm
//! over 10,000 parked greenlets. In each, everything else keeps being served and nothing leaks:
//! the server's connection count and the hub's live-greenlet count return to where they started.

mod support;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::TcpStream;
use greenhub::server::StreamServer;
use greenhub::sync::Event;
use greenhub::GreenletError;
use support::*;

/// Outcomes of handler runs, shared by the handler closure and the test.
#[derive(Default)]
struct Tally {
    clean: Cell<usize>,
    errors: Cell<usize>,
}

fn counting_echo_server(tally: Rc<Tally>) -> StreamServer {
    StreamServer::bind("127.0.0.1:0", move |mut s, _| match echo(&mut s) {
        Ok(_) => tally.clean.set(tally.clean.get() + 1),
        Err(_) => tally.errors.set(tally.errors.get() + 1),
    })
    .unwrap()
}

#[test]
fn clients_resetting_mid_message_cost_nothing_and_others_are_served() {
    hub::run(|| {
        let live0 = hub::stats().live;
        let tally = Rc::new(Tally::default());
        let server = counting_echo_server(tally.clone());
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        const RESETTERS: usize = 200;
        let resetters: Vec<_> = (0..RESETTERS)
            .map(|i| {
                hub::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    // Half a message, sometimes after reading part of the echo, then RST.
                    let msg = message(i, 20_000);
                    c.write_all(&msg[..10_000]).unwrap();
                    if i % 2 == 0 {
                        let mut first = [0u8; 100];
                        c.read_exact(&mut first).unwrap();
                        assert_eq!(&first[..], &msg[..100]);
                    }
                    set_linger_zero(c.as_raw_fd());
                    drop(c);
                })
            })
            .collect();
        // Well-behaved clients interleaved with the resets.
        let good: Vec<_> = (0..50)
            .map(|i| hub::spawn(move || ask(addr, &message(i, 5000 + i)) == message(i, 5000 + i)))
            .collect();
        for r in resetters {
            r.join().unwrap();
        }
        let served = good
            .into_iter()
            .filter_map(|g| g.join().ok())
            .filter(|&ok| ok)
            .count();
        assert_eq!(served, 50);
        assert!(
            eventually_within(SLACK * 5, || server.connections() == 0),
            "handlers of reset connections are still alive: {}",
            server.connections()
        );
        // Every handler ended: 50 clean, and each reset connection cleanly or with an error.
        assert_eq!(tally.clean.get() + tally.errors.get(), RESETTERS + 50);
        assert!(tally.clean.get() >= 50);
        // And the server still serves.
        assert_eq!(ask(addr, b"still there"), b"still there");
        server.stop(Duration::from_secs(1));
        assert!(eventually_within(SLACK, || hub::stats().live == live0));
    });
}

#[test]
fn slowloris_clients_time_out_while_others_are_served() {
    const READ_TIMEOUT: Duration = Duration::from_secs(3);
    const SLOW: usize = 20;
    const FAST: usize = 100;
    hub::run(|| {
        let timed_out = Rc::new(Cell::new(0usize));
        let t = timed_out.clone();
        // A line server: reads until '\n' with a read timeout, answers the line.
        let server = StreamServer::bind("127.0.0.1:0", move |mut s, _| {
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            let mut line = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        line.extend_from_slice(&buf[..n]);
                        if line.ends_with(b"\n") {
                            let _ = s.write_all(&line);
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        t.set(t.get() + 1);
                        return;
                    }
                    Err(_) => return,
                }
            }
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        // Slowloris: a few bytes, then silence, holding the connection open.
        let slow: Vec<_> = (0..SLOW)
            .map(|_| {
                hub::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.write_all(b"GET / HT").unwrap();
                    let t0 = Instant::now();
                    let mut rest = Vec::new();
                    // The server gives up and closes: EOF, no answer.
                    let _ = c.read_to_end(&mut rest);
                    (rest.len(), t0.elapsed())
                })
            })
            .collect();
        hub::sleep(Duration::from_millis(20));
        let fast: Vec<_> = (0..FAST)
            .map(|i| {
                hub::spawn(move || {
                    let line = format!("hello {i}\n");
                    ask(addr, line.as_bytes()) == line.as_bytes()
                })
            })
            .collect();
        let served = fast
            .into_iter()
            .filter_map(|g| g.join().ok())
            .filter(|&ok| ok)
            .count();
        assert_eq!(served, FAST);
        // All fast clients were served while every slow one was still being waited for.
        assert_eq!(
            timed_out.get(),
            0,
            "slow clients timed out before the fast ones were served"
        );
        for g in slow {
            let (n, waited) = g.join().unwrap();
            assert_eq!(n, 0, "a slowloris client got an answer");
            assert!(
                waited >= READ_TIMEOUT - Duration::from_millis(100),
                "closed early: {waited:?}"
            );
            assert!(waited < READ_TIMEOUT + SLACK * 3, "closed late: {waited:?}");
        }
        assert_eq!(timed_out.get(), SLOW);
        assert!(eventually_within(SLACK, || server.connections() == 0));
        server.stop(Duration::ZERO);
    });
}

/// Chunk `i` of the big message: a fixed pseudo-random MiB with `i` in its first 8 bytes.
fn chunk(base: &[u8], i: u64) -> Vec<u8> {
    let mut c = base.to_vec();
    c[..8].copy_from_slice(&i.to_le_bytes());
    c
}

#[test]
fn one_100_mb_message_is_echoed_intact() {
    const MIB: usize = 1 << 20;
    const CHUNKS: u64 = 100;
    hub::run(|| {
        let tally = Rc::new(Tally::default());
        let server = counting_echo_server(tally.clone());
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let base: Rc<Vec<u8>> = Rc::new(
            (0..MIB)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        );
        let c = TcpStream::connect(addr).unwrap();
        let mut w = c.try_clone().unwrap();
        let b = base.clone();
        let writer = hub::spawn(move || {
            let mut sum = 0u64;
            for i in 0..CHUNKS {
                let ch = chunk(&b, i);
                sum = checksum(sum, &ch);
                w.write_all(&ch).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
            sum
        });
        let mut r = c;
        let mut got = vec![0u8; MIB];
        let mut sum = 0u64;
        for i in 0..CHUNKS {
            r.read_exact(&mut got).unwrap();
            assert!(got == chunk(&base, i), "chunk {i} came back different");
            sum = checksum(sum, &got);
        }
        let mut tail = [0u8; 16];
        assert_eq!(r.read(&mut tail).unwrap(), 0, "bytes beyond 100 MiB");
        assert_eq!(writer.join().unwrap(), sum, "checksums differ");
        drop(r);
        assert!(eventually_within(SLACK, || server.connections() == 0));
        assert_eq!(tally.clean.get(), 1);
        server.stop(Duration::ZERO);
    });
}

/// A cheap order-sensitive checksum over 8-byte words.
fn checksum(mut sum: u64, bytes: &[u8]) -> u64 {
    for w in bytes.chunks_exact(8) {
        sum = sum.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap());
    }
    sum
}

#[test]
fn a_handler_panicking_on_every_10th_connection_spares_the_others() {
    const CLIENTS: usize = 200;
    hub::run(|| {
        let live0 = hub::stats().live;
        let accepted = Rc::new(Cell::new(0usize));
        let a = accepted.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |mut s, _| {
            let n = a.get();
            a.set(n + 1);
            if n % 10 == 9 {
                panic!("handler {n} fails on purpose");
            }
            let _ = echo(&mut s);
        })
        .unwrap();
        let addr = server.local_addr().unwrap();
        server.start().unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                hub::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    let msg = message(i, 1000);
                    // The write may fail if the handler already panicked and closed.
                    let _ = c.write_all(&msg);
                    let _ = c.shutdown(Shutdown::Write);
                    let mut back = Vec::new();
                    let _ = c.read_to_end(&mut back);
                    back == msg
                })
            })
            .collect();
        let served = clients
            .into_iter()
            .filter_map(|g| g.join().ok())
            .filter(|&ok| ok)
            .count();
        assert_eq!(accepted.get(), CLIENTS);
        assert_eq!(
            served,
            CLIENTS - CLIENTS / 10,
            "exactly the panicking tenth is not served"
        );
        assert!(eventually_within(SLACK, || server.connections() == 0));
        server.stop(Duration::ZERO);
        assert!(eventually_within(SLACK, || hub::stats().live == live0));
    });
}

#[test]
fn kill_storm_runs_every_destructor_and_loses_no_wakeup() {
    const N: usize = 10_000;
    hub::run(|| {
        let live0 = hub::stats().live;
        let drops = Rc::new(Cell::new(0usize));
        let finished = Rc::new(Cell::new(0usize));
        let go = Rc::new(Event::new());
        let gs: Vec<_> = (0..N)
            .map(|i| {
                let (d, f, go) = (drops.clone(), finished.clone(), go.clone());
                hub::spawn(move || {
                    let _guard = DropCounter(d);
                    // Some wait with a deadline far away, some without, some behind a sleep.
                    match i % 3 {
                        0 => go.wait().unwrap(),
                        1 => assert!(go.wait_timeout(Duration::from_secs(600))),
                        _ => {
                            hub::sleep(Duration::from_micros((i % 7) as u64));
                            go.wait().unwrap();
                        }
                    }
                    f.set(f.get() + 1);
                    i
                })
            })
            .collect();
        hub::yield_now(); // every greenlet runs to its park
                          // Pick half at random (xorshift), kill them at random moments: between kills the storm
                          // yields or sleeps a little so the victims are parked, ready, or mid-unwinding.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut order: Vec<usize> = (0..N).collect();
        for i in (1..N).rev() {
            order.swap(i, (rnd() % (i as u64 + 1)) as usize);
        }
        let victims = &order[..N / 2];
        // 0: survivor; 1: killed while all were parked (must die); 2: killed after the event was
        // set (it may have finished first: then the kill is a no-op).
        let mut killed = vec![0u8; N];
        for (k, &v) in victims.iter().enumerate() {
            killed[v] = if go.is_set() { 2 } else { 1 };
            if k == N * 2 / 5 {
                // Most of the storm happened with everyone parked; now wake the survivors and
                // keep killing while the rest of the victims are woken-but-not-yet-run.
                go.set();
            }
            match rnd() % 8 {
                0 => gs[v].kill(),
                1 => hub::yield_now(),
                2 => hub::sleep(Duration::from_micros(rnd() % 200)),
                _ => {}
            }
            gs[v].kill_nowait();
        }
        let (mut survived, mut late_finished) = (0, 0);
        for (i, g) in gs.into_iter().enumerate() {
            match g.join() {
                Ok(v) => {
                    assert_ne!(
                        killed[i], 1,
                        "greenlet {i} was killed while parked but finished"
                    );
                    assert_eq!(v, i);
                    if killed[i] == 0 {
                        survived += 1;
                    } else {
                        late_finished += 1;
                    }
                }
                Err(GreenletError::Killed) => {
                    assert_ne!(killed[i], 0, "greenlet {i} died unkilled")
                }
                Err(e) => panic!("greenlet {i}: {e}"),
            }
        }
        assert_eq!(survived, N / 2, "a surviving greenlet lost its wake-up");
        assert_eq!(finished.get(), N / 2 + late_finished);
        assert_eq!(drops.get(), N, "a destructor did not run");
        assert_eq!(hub::stats().live, live0);
    });
}
