//! Park the running greenlet until raw descriptors are ready: the monkey layer's own, crate-internal
//! wait on a file descriptor it does not own (issue 15 builds the public one; the two are to be
//! merged).
//!
//! # Registrations
//!
//! A descriptor is registered with the hub's `mio::Poll` the first time a greenlet of that hub
//! waits on it (`SourceFd`, readable and writable, edge-triggered, like the reactor's sockets), and
//! stays registered; a per-thread table maps the descriptor number to its I/O slot in `hub.io`
//! (the slot holds the readiness flags and the waiters; `poll_io` wakes them as for any socket).
//!
//! epoll keys a registration by the pair (descriptor number, open file description), and it lasts
//! until that pair is removed with `EPOLL_CTL_DEL` or the file description is released — closing
//! one of several duplicates of a descriptor does *not* remove it. So:
//!
//! - `close`, `dup2` and `dup3` (interposed) call [`forget`] before the real call: it deregisters
//!   the descriptor while it still names its file, removes the slot and wakes its waiters (they
//!   retry and get `EBADF`, as a thread blocked in `read` on a descriptor closed under it would
//!   not — a thread would block on, and that is no behaviour to keep).
//! - Descriptors can also be closed where interposition does not reach (glibc's own `fclose`, a raw
//!   `syscall(SYS_close)`), and their numbers reused. So every wait re-registers: `EPOLL_CTL_ADD`
//!   with the table's token answers `EEXIST` when the registration is still there for this very
//!   file (the usual case, one cheap system call per park), or succeeds when the number now names
//!   another file — then the same slot serves the new file. A stale registration of the old file
//!   (kept alive by a duplicate elsewhere) can still deliver events under that token: they wake
//!   the waiter spuriously, and every caller re-checks readiness with a non-blocking call after a
//!   wake, so a spurious wake costs a retry, never a wrong answer.
//! - `EEXIST` for a descriptor missing from the table means another part of greenhub registered
//!   it (a `greenhub::net` socket in this hub's poll): the wait fails and the caller falls back to
//!   the real blocking call. (Those sockets are non-blocking, so only `poll` can get here.)
//!
//! Regular files cannot be registered (`EPERM`): the wait fails and the caller passes the call
//! through (such files are always ready anyway).
//!
//! Readiness after a wait is never trusted: the caller retries the operation. Before parking, the
//! caller has just seen the descriptor not ready (an `EAGAIN`, or a zero-timeout `poll`) and
//! nothing switches between that and the park, so any later change is an edge that wakes it.

#![deny(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use crate::rt::{existing_hub, Dir, Hub, WaitOn, Wake};

/// What one descriptor is waited for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    pub(crate) fd: RawFd,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

thread_local! {
    /// Descriptor number -> 1 + its slot's token in this thread's hub (0: not registered by us).
    /// `const` so first use allocates nothing; it has a destructor, so it is reached only through
    /// `try_with` (interposed calls may run during thread-local destruction).
    static TOKENS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn table_get(fd: RawFd) -> Option<Option<usize>> {
    TOKENS
        .try_with(|t| {
            let t = t.try_borrow().ok()?;
            Some(t.get(fd as usize).copied().unwrap_or(0).checked_sub(1))
        })
        .ok()
        .flatten()
}

fn table_set(fd: RawFd, token: Option<usize>) {
    let _ = TOKENS.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            let i = fd as usize;
            if t.len() <= i {
                if token.is_none() {
                    return;
                }
                t.resize(i + 1, 0);
            }
            t[i] = token.map_or(0, |k| k + 1);
        }
    });
}

/// This descriptor's slot token in `hub`, (re-)registering it as the module docs describe.
fn register(hub: &'static Hub, fd: RawFd) -> io::Result<usize> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let known = table_get(fd).ok_or_else(|| io::Error::other("thread is exiting"))?;
    let known = known.filter(|&k| hub.io_is_live(k));
    let token = hub.io_register_known(fd, known)?;
    table_set(fd, Some(token));
    Ok(token)
}

/// Parks the running greenlet until one of `wants` may be ready, `deadline` passes, an enclosing
/// timeout scope expires, or the greenlet is killed (`Wake::Killed`: the kill does not unwind from
/// here, see [`park`]).
///
/// # Errors
/// A descriptor cannot be registered (a regular file, one registered elsewhere in greenhub, a
/// closed one): the caller should fall back to the real call.
pub(crate) fn wait(
    hub: &'static Hub,
    wants: &[Want],
    deadline: Option<Instant>,
) -> io::Result<Wake> {
    let mut first = None;
    for w in wants {
        let token = register(hub, w.fd)?;
        first.get_or_insert(token);
        // A want of neither direction still wakes on hang-up or error, which wake readers.
        if w.read || !w.write {
            hub.io_arm_wait(token, Dir::Read);
        }
        if w.write {
            hub.io_arm_wait(token, Dir::Write);
        }
    }
    Ok(match first {
        Some(token) => caught(|| hub.io_park(token, deadline)),
        None => park(hub, WaitOn::Sleep, deadline),
    })
}

/// [`wait`] for one descriptor and direction.
pub(crate) fn wait_one(
    hub: &'static Hub,
    fd: RawFd,
    write: bool,
    deadline: Option<Instant>,
) -> io::Result<Wake> {
    wait(
        hub,
        &[Want {
            fd,
            read: !write,
            write,
        }],
        deadline,
    )
}

/// `hub.park`, with the kill caught: an interposed libc function is `extern "C"`, and unwinding
/// out of it would abort the process (or cross C frames), so a kill ends the park with
/// `Wake::Killed` instead and the caller returns an error (`ECANCELED`). The greenlet's kill flag
/// stays set: its next greenhub-native blocking call unwinds as usual, and every later interposed
/// call fails at once.
pub(crate) fn park(hub: &'static Hub, on: WaitOn, deadline: Option<Instant>) -> Wake {
    caught(|| hub.park(on, deadline))
}

/// Runs a park with the kill caught (see [`park`]).
fn caught(park: impl FnOnce() -> Wake) -> Wake {
    super::set_busy(false);
    let r = panic::catch_unwind(AssertUnwindSafe(park));
    super::set_busy(true);
    r.unwrap_or(Wake::Killed)
}

/// Drops this thread's registration of `fd`, if any (before a close or a dup over it): the epoll
/// entry is deleted while the descriptor still names its file, the slot removed and its waiters
/// woken. Any context of a hub thread (greenlet or hub); never panics.
pub(crate) fn forget(fd: RawFd) {
    let Some(Some(token)) = table_get(fd) else {
        return;
    };
    table_set(fd, None);
    let Some(hub) = existing_hub() else {
        return;
    };
    let _ = panic::catch_unwind(AssertUnwindSafe(|| hub.io_forget(fd, token)));
}
