//! Helpers shared by the integration tests and by bench/benches/echo.rs and idle_memory.rs (which
//! include this file with `#[path]`): one copy of each.
//!
//! - child processes: [`is_child`], [`child_command`], [`run_child`], [`assert_child_ok`] (a test
//!   re-runs its own binary, through `GREENHUB_TEST_RUNNER` when set);
//! - [`panic_message`] of a caught panic;
//! - [`eventually`] / [`eventually_within`]: poll a condition from a greenlet; [`DropCounter`];
//! - descriptor limits: [`raise_nofile`], [`set_nofile`];
//! - sockets: [`echo`], [`ask`], [`message`], [`set_linger_zero`]; the [`SLACK`] bound;
//! - stack regions: [`with_max_stacks`] (a hub with few regions), [`stack_churners`].
#![allow(dead_code)] // each test binary uses a different subset

use std::any::Any;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::process::{Command, Output};
use std::rc::Rc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Child processes

/// Env var telling a re-executed test binary that it is the child run of the test it names.
pub const CHILD_ENV: &str = "GREENHUB_TEST_CHILD";

/// Whether this process is the child run of `test`.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == test)
}

/// A command that runs this test binary again: directly, or through the program named by
/// `GREENHUB_TEST_RUNNER` (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu` when the tests themselves
/// run under user-mode emulation, where a binary of the other architecture cannot exec itself).
pub fn self_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("GREENHUB_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(parts).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// [`self_command`] set up to run only `test` (exactly), marked as the child; add environment
/// before running it.
pub fn child_command(test: &str) -> Command {
    let mut cmd = self_command();
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    cmd
}

/// Re-runs this test binary with only `test`, marked as the child; returns its output.
pub fn run_child(test: &str) -> Output {
    child_command(test).output().expect("spawn the test binary")
}

/// Runs `cmd` (a [`child_command`] with its environment added) and returns its output; kills it
/// and fails, naming `test`, if it runs longer than `limit` (a hang is then a failure, not a
/// stuck test run).
pub fn run_child_within(mut cmd: Command, test: &str, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped (the waiting
            // thread is still blocked in wait).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the child {test} hung (killed after {limit:?})");
        }
    }
}

/// Asserts a child run passed, showing its output if not; returns its stderr.
pub fn assert_child_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stderr
}

// ---------------------------------------------------------------------------------------------
// Panics and polling

/// The message of a caught panic (`&str` or `String` payload), or `"<non-string panic>"`.
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

/// Generous upper bound for "it happened promptly" on a loaded 2-core machine.
pub const SLACK: Duration = Duration::from_secs(2);

/// Polls `cond` every few ms (sleeping this greenlet in between) for up to `limit`; true if it
/// became true.
pub fn eventually_within(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            return false;
        }
        greenhub::hub::sleep(Duration::from_millis(2));
    }
    true
}

/// [`eventually_within`] [`SLACK`].
pub fn eventually(cond: impl Fn() -> bool) -> bool {
    eventually_within(SLACK, cond)
}

/// Counts its drops in a shared cell: proof that a killed greenlet's destructors ran.
pub struct DropCounter(pub Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptor limits

/// Raises the soft descriptor limit to the hard one; returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass; no other memory is touched.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0
            && lim.rlim_cur < lim.rlim_max
            && libc::setrlimit(
                libc::RLIMIT_NOFILE,
                &libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                },
            ) == 0
        {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur // rlim_t is u64 on Linux
}

/// Sets the soft descriptor limit to `n`.
pub fn set_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise_nofile`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets

/// Echoes everything until EOF (generic over std and greenhub streams); returns the bytes echoed.
/// The 4 KiB buffer is on the stack, as in examples/echo_server.rs.
pub fn echo<S: Read + Write>(mut s: S) -> io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A message unique to `i`, `len` bytes long.
pub fn message(i: usize, len: usize) -> Vec<u8> {
    let tag = format!("<{i}>");
    tag.bytes().cycle().take(len).collect()
}

/// Sets SO_LINGER {on, 0}: closing then sends RST instead of FIN.
pub fn set_linger_zero(fd: std::os::fd::RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from `&l`, which lives for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

/// Connects to `addr` (a greenhub socket: parks only this greenlet), sends `msg`, half-closes, and
/// returns everything the server sent back.
pub fn ask(addr: std::net::SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut c = greenhub::net::TcpStream::connect(addr).unwrap();
    c.write_all(msg).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    back
}

// ---------------------------------------------------------------------------------------------
// Stack regions

/// Runs `f` on a fresh thread whose hub has at most `max_stacks` shared regions.
pub fn with_max_stacks<T: Send + 'static>(
    max_stacks: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        greenhub::hub::Config::new()
            .max_stacks(max_stacks)
            .install()
            .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Greenlets that fill a big stack array with their own byte, yield many times, and check it:
/// they run over whatever region they are bound to.
pub fn stack_churners(n: u8, rounds: usize, ok: &Rc<Cell<bool>>) -> Vec<greenhub::Greenlet<()>> {
    (0..n)
        .map(|k| {
            let ok = ok.clone();
            greenhub::hub::spawn(move || {
                let mut buf = [k; 16 * 1024];
                for i in 0..rounds {
                    std::hint::black_box(&mut buf);
                    greenhub::hub::yield_now();
                    if buf.iter().any(|&b| b != k) {
                        ok.set(false);
                    }
                    buf[i % buf.len()] = k;
                }
            })
        })
        .collect()
}
