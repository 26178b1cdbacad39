//! The pidfd, and the reaper: one background thread that collects the exit status of children
//! whose `Child` was dropped first, so none is left a zombie.
//!
//! ```text
//! Child::drop (not reaped yet) ─► ORPHANS.push(child, pidfd); start the thread if none runs,
//!                                 else write its eventfd
//! reaper thread: loop {
//!     try_wait every orphan; forget the reaped ones
//!     none left -> mark "not running" (under the lock) and exit
//!     poll(2) the orphans' pidfds + the eventfd; without pidfds, at most 50 ms
//! }
//! ```
//!
//! The thread blocks only in `poll(2)`; it runs only while an orphan is alive.

// pidfd_open, eventfd and poll are libc calls; each block says what it relies on.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// `pidfd_open(pid, 0)`, or `None` where the kernel has none (before 5.3), a filter forbids it,
/// or `GREENHUB_NO_PIDFD` is set (to exercise the fallback).
pub(super) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    if std::env::var_os("GREENHUB_NO_PIDFD").is_some() {
        return None;
    }
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes two integers and returns a fresh descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = libc::c_int::try_from(fd).ok()?;
    // SAFETY: a fresh descriptor owned by nobody else. pidfds are close-on-exec by default.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct Orphan {
    child: std::process::Child,
    pidfd: Option<OwnedFd>,
}

struct State {
    orphans: Vec<Orphan>,
    running: bool,
}

fn state() -> MutexGuard<'static, State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        Mutex::new(State {
            orphans: Vec::new(),
            running: false,
        })
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

/// The eventfd that tells the reaper thread a new orphan arrived.
fn wake_fd() -> Option<libc::c_int> {
    static FD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    FD.get_or_init(|| {
        // SAFETY: eventfd takes no pointers; a valid result is a fresh descriptor we adopt.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        // SAFETY: fresh and owned by nobody else.
        (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
}

/// Hands a child that is still running to the reaper.
pub(super) fn adopt(child: std::process::Child, pidfd: Option<OwnedFd>) {
    let mut st = state();
    st.orphans.push(Orphan { child, pidfd });
    if st.running {
        if let Some(fd) = wake_fd() {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local to our eventfd.
            unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
        }
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("greenhub-reaper".into())
        .spawn(reap_loop);
    match spawned {
        Ok(_) => st.running = true,
        Err(e) => tracing::error!(
            "greenhub: cannot start the child reaper thread ({e}); {} dropped child process(es) \
             will be reaped at the next attempt",
            st.orphans.len()
        ),
    }
}

fn reap_loop() {
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut all_pidfds = true;
        {
            let mut st = state();
            st.orphans
                .retain_mut(|o| matches!(o.child.try_wait(), Ok(None)));
            if st.orphans.is_empty() {
                st.running = false;
                return;
            }
            for o in &st.orphans {
                match &o.pidfd {
                    Some(fd) => fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    }),
                    None => all_pidfds = false,
                }
            }
            // The pidfds stay open while we poll: only this thread removes orphans.
        }
        if let Some(fd) = wake_fd() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        } else {
            all_pidfds = false;
        }
        let timeout = if all_pidfds { -1 } else { 50 };
        // SAFETY: `fds` is a valid array of pollfds for the call; the descriptors in it stay open
        // (orphans are removed only by this thread, above).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if let Some(fd) = wake_fd() {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a local; non-blocking.
            unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
        }
    }
}
