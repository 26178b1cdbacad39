//! Issue 11 item 4: a read or write that moves fewer bytes than asked must never make the next
//! call park while the kernel still holds data (or room) for it. Each test first lets the hub
//! collect the socket's readiness edge, then does the short transfer, then the next call with a
//! 2 s timeout: a wrong "not ready" mark makes that call park with no edge to come, and time out.

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use greenhub::hub;
use greenhub::net::unix::UnixStream;
use greenhub::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(2);

/// A connected pair on this hub (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Registers `s` for reading (a first read that parks until `peer` sends one byte), so that
/// the hub collects the edges of what arrives later.
fn register_reader(s: &mut impl Read, peer: &TcpStream) {
    let mut p = peer.try_clone().unwrap();
    let g = hub::spawn(move || {
        hub::sleep(Duration::from_millis(20));
        p.write_all(b"s").unwrap();
    });
    let mut one = [0u8; 1];
    assert_eq!(s.read(&mut one).unwrap(), 1);
    g.join().unwrap();
}

/// `read_vectored` over 4,000 one-byte buffers stops at IOV_MAX (1,024) buffers with 2,976 bytes
/// still queued: the next read must get them.
#[test]
fn read_vectored_over_iov_max_leaves_the_rest_readable() {
    hub::run(|| {
        let (mut c, mut s) = pair();
        register_reader(&mut s, &c);
        c.write_all(&[5u8; 4000]).unwrap();
        hub::sleep(Duration::from_millis(100)); // the hub collects the readable edge
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut store = vec![[0u8; 1]; 4000];
        let mut bufs: Vec<IoSliceMut<'_>> = store.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = s.read_vectored(&mut bufs).unwrap();
        assert!(n <= 1024, "the kernel stops at IOV_MAX buffers, read {n}");
        let mut rest = vec![0u8; 4000];
        let m = s
            .read(&mut rest)
            .expect("the queued rest is readable at once");
        assert!(m > 0);
        let mut total = n + m;
        while total < 4000 {
            total += s.read(&mut rest).unwrap();
        }
        assert_eq!(total, 4000);
    });
}

/// `write_vectored` over 4,000 one-byte buffers sends at most IOV_MAX of them; the send buffer
/// still has room, so the next write must not park. (A Unix pair: a TCP send on loopback gets an
/// acknowledgement whose edge would hide the bug; a Unix socket gets no edge until the peer reads.)
#[test]
fn write_vectored_over_iov_max_leaves_the_socket_writable() {
    hub::run(|| {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.set_write_timeout(Some(BOUND)).unwrap();
        // Register `a` (both directions): park once in a read until `b` writes a byte.
        let mut b2 = b.try_clone().unwrap();
        let g = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            b2.write_all(b"s").unwrap();
        });
        let mut one = [0u8; 1];
        assert_eq!(a.read(&mut one).unwrap(), 1);
        g.join().unwrap();
        let bytes = vec![3u8; 4000];
        let bufs: Vec<IoSlice<'_>> = bytes.chunks(1).map(IoSlice::new).collect();
        let n = a.write_vectored(&bufs).unwrap();
        assert!(0 < n && n <= 1024, "wrote {n}");
        hub::sleep(Duration::from_millis(50));
        let m = a
            .write(&bytes[n..])
            .expect("room is left: the write goes through");
        assert!(m > 0);
        drop(b);
    });
}

/// TCP urgent data makes a boundary: `hello`, `!` sent with MSG_OOB, then `world`. A read stops
/// at the urgent mark after `hello`; `world` is queued and the next read must return it (std's
/// does). With `hub_polls_first`, the hub collects the event (urgent data included) before the
/// first read; without, the read comes first and the event is still pending.
fn urgent_mark_case(hub_polls_first: bool) {
    hub::run(move || {
        let (c, mut s) = pair();
        c.set_nodelay(true).unwrap();
        register_reader(&mut s, &c);
        let send = |buf: &[u8], flags| {
            // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is open (`c` lives).
            let r = unsafe { libc::send(c.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
            assert_eq!(r, buf.len() as isize, "send");
        };
        send(b"hello", 0);
        send(b"!", libc::MSG_OOB);
        send(b"world", 0);
        if hub_polls_first {
            hub::sleep(Duration::from_millis(100)); // everything arrives; the hub sees the edge
        } else {
            std::thread::sleep(Duration::from_millis(100)); // arrives; the hub does not poll
        }
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 10 {
            match s.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    panic!("read timed out with data queued; got {got:?} so far")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        assert_eq!(got, b"helloworld", "the urgent byte is out of band");
    });
}

#[test]
fn a_read_stopped_at_the_urgent_mark_does_not_hide_the_rest() {
    urgent_mark_case(true);
}

#[test]
fn a_read_stopped_at_an_urgent_mark_the_hub_has_not_seen_does_not_hide_the_rest() {
    urgent_mark_case(false);
}

/// A short TCP read still saves the next read's syscall when nothing makes a boundary: the
/// second read parks without trying, yet returns what arrives later.
#[test]
fn a_short_tcp_read_then_a_later_arrival_is_read() {
    hub::run(|| {
        let (mut c, mut s) = pair();
        register_reader(&mut s, &c);
        c.write_all(b"abc").unwrap();
        hub::sleep(Duration::from_millis(50));
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).unwrap(), 3);
        let mut c2 = c.try_clone().unwrap();
        let later = hub::spawn(move || {
            hub::sleep(Duration::from_millis(50));
            c2.write_all(b"def").unwrap();
        });
        assert_eq!(s.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"def");
        later.join().unwrap();
    });
}

/// Sends `data` on `fd` with one descriptor (`pass`) attached as SCM_RIGHTS.
fn send_with_fd(fd: i32, data: &[u8], pass: i32) {
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid, then filled with live buffers. The cmsg
    // macros address inside `control`, which is CMSG_SPACE bytes long for one int.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&pass as *const i32).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<i32>(),
        );
        let r = libc::sendmsg(fd, &msg, 0);
        assert_eq!(r, data.len() as isize, "sendmsg");
    }
}

/// A Unix stream read stops after a segment that carries SCM_RIGHTS: `ab`, `cd` with a
/// descriptor, `ef`; a read returns `abcd`, and `ef` must follow at once.
#[test]
fn a_unix_read_stopped_at_passed_descriptors_does_not_hide_the_rest() {
    hub::run(|| {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        // Register `b` for reading: park once until `a` writes a byte.
        let mut a2 = a.try_clone().unwrap();
        let g = hub::spawn(move || {
            hub::sleep(Duration::from_millis(20));
            a2.write_all(b"s").unwrap();
        });
        let mut one = [0u8; 1];
        assert_eq!(b.read(&mut one).unwrap(), 1);
        g.join().unwrap();

        a.write_all(b"ab").unwrap();
        send_with_fd(a.as_raw_fd(), b"cd", a.as_raw_fd()); // passes a duplicate of `a`
        a.write_all(b"ef").unwrap();
        hub::sleep(Duration::from_millis(100)); // the hub collects the edge
        b.set_read_timeout(Some(BOUND)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 6 {
            match b.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    panic!("read timed out with data queued; got {got:?} so far")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        assert_eq!(got, b"abcdef");
    });
}
