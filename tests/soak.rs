//! Soak: many greenlets and many connections, in waves; afterwards memory, descriptors and live
//! greenlets are back where they were.
//!
//! Sizes (release / debug — CI runs both):
//! - greenlets: 100 waves of 10,000 = 1,000,000 / 20 waves of 5,000 = 100,000;
//! - connections: 100 waves of 1,000 = 100,000 / 20 waves of 500 = 10,000, each opened, echoed and
//!   closed on loopback (greenhub StreamServer, greenhub clients on the same hub).
//!
//! Tolerances: RSS (`/proc/self/statm`) within +8 MiB of its value after the first wave (the first
//! wave grows the allocator's pools, slabs and the touched part of the shared stack once); the open
//! descriptor count (`/proc/self/fd`) exactly what it was before the first wave; `hub::stats().live`
//! back to 0 after every wave.
//!
//! The connections spread over 16 loopback destination addresses (127.0.0.1–127.0.0.16, one server
//! bound to 0.0.0.0): the client closes first, so each connection leaves a TIME_WAIT entry for 60 s
//! that pins its ephemeral port *for that destination*; 100,000 connections to one address would
//! exhaust the ~28,000 ports of the default range.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use greenhub::hub;
use greenhub::net::TcpStream;
use greenhub::server::StreamServer;
use support::*;

const RSS_SLACK: u64 = 8 << 20;

/// RSS and the descriptor count are process-wide: the two soaks must not overlap (plain `cargo
/// test` runs a binary's tests on several threads).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

fn open_fds() -> usize {
    // The directory handle read_dir holds is counted too, the same way every time.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn sizes(release: (usize, usize), debug: (usize, usize)) -> (usize, usize) {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

#[test]
fn a_million_greenlets_in_waves_leave_nothing_behind() {
    let _serial = one_at_a_time();
    let (waves, per_wave) = sizes((100, 10_000), (20, 5_000));
    // A thread of our own: its hub is fresh and its stats are ours alone.
    std::thread::spawn(move || {
        let t0 = Instant::now();
        hub::yield_now(); // creates the hub: its poller and waker descriptors are the baseline
        let fds0 = open_fds();
        let mut rss_after_first = 0;
        let mut total = 0u64;
        for wave in 0..waves {
            let gs: Vec<_> = (0..per_wave)
                .map(|i| {
                    hub::spawn(move || {
                        // Some stack in use across a switch, so slices are saved and restored.
                        let buf = std::hint::black_box([i as u8; 256]);
                        hub::yield_now();
                        if i % 3 == 0 {
                            hub::sleep(Duration::from_micros(1));
                        }
                        u64::from(buf[i % 256])
                    })
                })
                .collect();
            for (i, g) in gs.into_iter().enumerate() {
                assert_eq!(g.join().unwrap(), (i % 256) as u64);
                total += 1;
            }
            assert_eq!(hub::stats().live, 0, "wave {wave}: greenlets left alive");
            if wave == 0 {
                rss_after_first = rss_bytes();
            }
        }
        let rss = rss_bytes();
        assert_eq!(total, (waves * per_wave) as u64);
        assert_eq!(hub::stats().spawned, total);
        assert!(
            rss <= rss_after_first + RSS_SLACK,
            "RSS grew from {} KiB after the first wave to {} KiB",
            rss_after_first >> 10,
            rss >> 10
        );
        assert_eq!(open_fds(), fds0, "descriptors leaked");
        eprintln!(
            "soak: {total} greenlets in {waves} waves in {:?}; RSS after wave 1 {} KiB, at the end \
             {} KiB",
            t0.elapsed(),
            rss_after_first >> 10,
            rss >> 10
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_hundred_thousand_connections_in_waves_leave_nothing_behind() {
    let _serial = one_at_a_time();
    let (waves, per_wave) = sizes((100, 1_000), (20, 500));
    raise_nofile();
    std::thread::spawn(move || {
        hub::run(move || {
            let t0 = Instant::now();
            let server = StreamServer::bind("0.0.0.0:0", |s, _| {
                let _ = echo(s);
            })
            .unwrap();
            let port = server.local_addr().unwrap().port();
            server.start().unwrap();
            let live0 = hub::stats().live; // the accept loop and this greenlet
                                           // Let the accept loop park once: a hub's first registration opens its second handle
                                           // on the epoll set (for other threads' deregistrations), a descriptor that stays.
            hub::sleep(Duration::from_millis(10));
            let fds0 = open_fds();
            let mut rss_after_first = 0;
            let mut echoed = 0usize;
            for wave in 0..waves {
                let ip = Ipv4Addr::new(127, 0, 0, 1 + (wave % 16) as u8);
                let addr = SocketAddr::from((ip, port));
                let clients: Vec<_> = (0..per_wave)
                    .map(|i| {
                        hub::spawn(move || {
                            let msg = message(wave * per_wave + i, 64 + i % 200);
                            let mut c = TcpStream::connect(addr).unwrap();
                            c.write_all(&msg).unwrap();
                            c.shutdown(Shutdown::Write).unwrap();
                            let mut back = Vec::with_capacity(msg.len());
                            c.read_to_end(&mut back).unwrap();
                            back == msg
                        })
                    })
                    .collect();
                for c in clients {
                    assert!(c.join().unwrap(), "wave {wave}: a wrong echo");
                    echoed += 1;
                }
                // The handlers end once they read EOF; wait for them to be gone.
                let t = Instant::now();
                while server.connections() > 0 || hub::stats().live > live0 {
                    assert!(t.elapsed() < SLACK * 5, "wave {wave}: handlers left alive");
                    hub::sleep(Duration::from_millis(1));
                }
                if wave == 0 {
                    rss_after_first = rss_bytes();
                }
            }
            let rss = rss_bytes();
            assert_eq!(echoed, waves * per_wave);
            assert_eq!(open_fds(), fds0, "descriptors leaked");
            assert!(
                rss <= rss_after_first + RSS_SLACK,
                "RSS grew from {} KiB after the first wave to {} KiB",
                rss_after_first >> 10,
                rss >> 10
            );
            server.stop(Duration::ZERO);
            eprintln!(
                "soak: {echoed} connections in {waves} waves in {:?}; RSS after wave 1 {} KiB, \
                 at the end {} KiB",
                t0.elapsed(),
                rss_after_first >> 10,
                rss >> 10
            );
        });
        assert_eq!(hub::stats().live, 0);
    })
    .join()
    .unwrap();
}
