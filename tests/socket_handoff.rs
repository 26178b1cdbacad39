//! Issue 11 item 7: a socket registered on one hub, converted to std on another thread and sent
//! back must work again, leaving no stale registration (neither an I/O slot in the hub nor an
//! entry in its epoll set). Its own test binary: the epoll check reads this process's
//! `/proc/self/fdinfo`, which other tests' hubs would disturb.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use greenhub::hub;
use greenhub::net::unix::UnixStream;
use greenhub::net::{TcpListener, TcpStream};

/// Whether an epoll set of this process watches descriptor `fd` (Linux `fdinfo`: one `tfd:` line
/// per watched descriptor; a hub's set may be open under two descriptors).
fn watched(fd: i32) -> bool {
    let mut n = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let info_path = format!("/proc/self/fdinfo/{}", e.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info_path) else {
            continue;
        };
        n += info
            .lines()
            .filter(|l| {
                l.strip_prefix("tfd:")
                    .and_then(|r| r.split_whitespace().next())
                    .is_some_and(|t| t.parse::<i32>() == Ok(fd))
            })
            .count();
    }
    n > 0
}

/// Reads `want` bytes with a 2 s read timeout (a stale registration made this fail at once
/// with `File exists`; a lost edge would time out).
fn read_n(s: &mut impl Read, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("read after the round trip through another thread failed: {e}"));
    got
}

#[test]
fn a_tcp_stream_sent_to_another_thread_as_std_and_back_works_and_leaves_nothing() {
    hub::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let before = hub::stats().io_registrations;
        // Register `s` with this hub: its first read parks.
        let mut c2 = c.try_clone().unwrap();
        let g = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            c2.write_all(b"1").unwrap();
        });
        assert_eq!(read_n(&mut s, 1), b"1");
        g.join().unwrap();
        assert_eq!(hub::stats().io_registrations, before + 1);
        let fd = s.as_raw_fd();
        assert!(watched(fd));

        // To another thread, into std there, and back.
        let back: std::net::TcpStream = std::thread::spawn(move || std::net::TcpStream::from(s))
            .join()
            .unwrap();
        assert_eq!(back.as_raw_fd(), fd);
        assert!(
            !watched(fd),
            "converted to std: no epoll set may still watch it"
        );
        hub::sleep(Duration::from_millis(20)); // the hub runs the slot's reclaim message
        assert_eq!(
            hub::stats().io_registrations,
            before,
            "the stale I/O slot is reclaimed"
        );

        let mut s = TcpStream::from(back);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut c3 = c.try_clone().unwrap();
        let g = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            c3.write_all(b"2").unwrap();
        });
        assert_eq!(read_n(&mut s, 1), b"2");
        g.join().unwrap();
        s.write_all(b"pong").unwrap();
        assert_eq!(read_n(&mut c, 4), b"pong");
        assert!(watched(fd));
        assert_eq!(hub::stats().io_registrations, before + 1);
        drop(s);
        assert!(!watched(fd));
        assert_eq!(hub::stats().io_registrations, before);
    });
}

/// The same for a socket merely dropped on another thread while a `dup` keeps its file open:
/// the kernel removes an epoll entry only when the file closes, so the drop must deregister.
#[test]
fn a_unix_stream_dropped_on_another_thread_is_deregistered_from_its_hub() {
    hub::run(|| {
        let (a, mut b) = UnixStream::pair().unwrap();
        let before = hub::stats().io_registrations;
        let mut a2 = a.try_clone().unwrap();
        let g = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            a2.write_all(b"x").unwrap();
        });
        assert_eq!(read_n(&mut b, 1), b"x");
        g.join().unwrap();
        let fd = b.as_raw_fd();
        // A dup keeps the open file description (and so any epoll entry) alive.
        let dup = b.as_fd().try_clone_to_owned().unwrap();
        assert!(watched(fd));
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert!(!watched(fd), "the dropped socket's entry is gone");
        hub::sleep(Duration::from_millis(20));
        assert_eq!(hub::stats().io_registrations, before);
        drop(dup);
        drop(a);
    });
}
