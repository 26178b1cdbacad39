//! I/O slots: the readiness and waiters of every descriptor registered with this hub's `mio`
//! poll, and the dispatch of the events the poll reports.
//!
//! A registration's mio token is its index in `Hub::io`. The façade (`crate::reactor`) calls the
//! `io_*` methods below; nothing outside `rt/` sees a slot.
//!
//! mio is edge-triggered: an event arrives when readiness *changes*. [`Hub::poll_io`] turns each
//! event into "ready" flags and wakes the waiters of that direction; a greenlet that finds the
//! operation would block clears the flag and queues its waiter ([`Hub::io_arm_wait`]) before it
//! parks, with no switch in between, so no edge is lost.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::hub::{existing_hub, Hub};
use super::mailbox::{Msg, Shared};
use super::stats::add;
use super::task::{WaitOn, Waiter, Wake};

/// mio token of the hub's waker.
pub(super) const WAKER_TOKEN: Token = Token(usize::MAX);

/// What every registration asks for: both directions, and on Linux urgent data too (`EPOLLPRI`,
/// which only marks the slot: see `IoSlot::urgent`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const INTERESTS: Interest = Interest::READABLE
    .add(Interest::WRITABLE)
    .add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const INTERESTS: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// Whether a short read may mark the read direction not ready on this platform: only where the
/// poll reports urgent data (`IoSlot::urgent`).
pub(crate) const SHORT_READ_RULE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Which readiness an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// An I/O registration's readiness and waiters.
pub(super) struct IoSlot {
    readable: Cell<bool>,
    writable: Cell<bool>,
    /// The read half hung up or the socket errored: final (no edge will follow), so a read must
    /// always try the syscall (see `Registered::stream_write`).
    read_closed: Cell<bool>,
    /// The same for the write half.
    write_closed: Cell<bool>,
    /// The poll reported urgent data (`EPOLLPRI`: a TCP urgent mark) at least once. Sticky: a
    /// read stops short at the mark with in-band data behind it, so from then on a short read
    /// proves nothing (see `Registered::stream_read`).
    urgent: Cell<bool>,
    readers: RefCell<Vec<Waiter>>,
    writers: RefCell<Vec<Waiter>>,
}

/// What a thread other than the hub's needs to undo one of its registrations: a second handle on
/// the hub's epoll set (a `dup` of its descriptor, made once per hub) and the hub's mailbox.
///
/// The epoll entry must go before the socket's descriptor closes, or while it stays open (a
/// socket converted back to std, or a `dup` elsewhere): the kernel drops an entry only when the
/// open file description is released, so a stale entry would keep reporting events to the hub
/// and make the next `EPOLL_CTL_ADD` of that descriptor fail with `EEXIST`. epoll sets are
/// thread-safe, so the other thread removes the entry itself, synchronously; the slot (hub-local
/// memory) is removed by a message the hub runs on its own thread. Its token cannot be reused
/// before that message runs, since the slot stays occupied until then.
pub(crate) struct IoRemote {
    registry: mio::Registry,
    shared: Arc<Shared>,
}

impl IoRemote {
    /// Undoes registration `token` of `fd` from any thread, or after its hub is gone (then only
    /// the epoll entry is removed: the slot went with the hub). Call before `fd` closes.
    pub(crate) fn deregister(&self, fd: RawFd, token: usize) {
        // ENOENT (never added) or EBADF (the hub's epoll is gone) are both "nothing to undo".
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        let reclaim = move || {
            if let Some(hub) = existing_hub() {
                let slot = hub.io.borrow_mut().try_remove(token);
                drop(slot); // after the borrow ends: its stale waiters may own sockets
            }
        };
        // Refused only once the hub is torn down, and its slab with it.
        let _ = self.shared.push(Msg::Run(Box::new(reclaim)));
    }
}

impl IoSlot {
    /// A slot with no waiters, ready both ways or not at all.
    fn new(ready: bool) -> IoSlot {
        IoSlot {
            readable: Cell::new(ready),
            writable: Cell::new(ready),
            read_closed: Cell::new(false),
            write_closed: Cell::new(false),
            urgent: Cell::new(false),
            readers: RefCell::default(),
            writers: RefCell::default(),
        }
    }
}

/// Counts this greenlet in `hub.io_waiters` while it is parked on I/O; a drop guard so a kill
/// unwinding out of `park` still uncounts it.
struct IoWaitGuard<'a>(&'a Hub);

impl<'a> IoWaitGuard<'a> {
    fn new(hub: &'a Hub) -> IoWaitGuard<'a> {
        hub.io_waiters.set(hub.io_waiters.get() + 1);
        IoWaitGuard(hub)
    }
}

impl Drop for IoWaitGuard<'_> {
    fn drop(&mut self) {
        self.0.io_waiters.set(self.0.io_waiters.get() - 1);
    }
}

impl Hub {
    /// Registers `fd` for both directions; returns its token and what undoes the registration
    /// from another thread. A fresh registration counts as ready both ways (the first attempt
    /// tells).
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`AlreadyExists` with a message when the descriptor is already
    /// in this poll: two owners of one descriptor); the error of the first registration's `dup`
    /// of the epoll descriptor (out of descriptors).
    pub(crate) fn io_register(&self, fd: RawFd) -> io::Result<(usize, Arc<IoRemote>)> {
        let remote = match self.io_remote.get() {
            Some(r) => r.clone(),
            None => {
                let registry = self.poll.borrow().registry().try_clone()?;
                let shared = self.mailbox.shared().clone();
                let r = Arc::new(IoRemote { registry, shared });
                self.io_remote.get_or_init(|| r).clone()
            }
        };
        let token = self.io.borrow_mut().insert(IoSlot::new(true));
        let registered =
            self.poll
                .borrow()
                .registry()
                .register(&mut SourceFd(&fd), Token(token), INTERESTS);
        if let Err(e) = registered {
            self.io.borrow_mut().remove(token);
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "greenhub: descriptor {fd} is already registered with this hub: two \
                         socket objects own one descriptor (from_raw_fd of a descriptor that \
                         is still owned?)"
                    ),
                ));
            }
            return Err(e);
        }
        Ok((token, remote))
    }

    /// How many descriptors are registered (live I/O slots), for `hub::stats()`.
    pub(crate) fn io_registrations(&self) -> usize {
        self.io.borrow().len()
    }

    /// Registers `fd` for `interest` only, not ready until an edge says so (a one-shot wait on a
    /// descriptor somebody else reads: `io::wait_readable`); returns its token.
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`EEXIST`: already in this poll; `EPERM`: a regular file).
    pub(crate) fn io_register_for(&self, fd: RawFd, interest: Interest) -> io::Result<usize> {
        let token = self.io.borrow_mut().insert(IoSlot::new(false));
        let registered =
            self.poll
                .borrow()
                .registry()
                .register(&mut SourceFd(&fd), Token(token), interest);
        if let Err(e) = registered {
            self.io.borrow_mut().remove(token);
            return Err(e);
        }
        Ok(token)
    }

    /// Queues the running greenlet's waiter on `token` for `interest`, leaving the readiness
    /// flags alone; then [`io_park`](Self::io_park).
    ///
    /// # Panics
    /// Inside the hub context, or if `token` is not a live registration.
    #[track_caller]
    pub(crate) fn io_queue_waiter(&self, token: usize, interest: Interest) {
        self.current_core("wait for I/O");
        let io = self.io.borrow();
        let slot = io
            .get(token)
            .expect("greenhub: a live registration's I/O slot is missing");
        let w = self.current_waiter();
        if interest.is_readable() {
            slot.readers.borrow_mut().push(w.clone());
        }
        if interest.is_writable() {
            slot.writers.borrow_mut().push(w);
        }
    }

    /// Whether `token` names a live I/O slot of this hub (never panics: for `monkey`, which may run
    /// inside the hub's own dispatch).
    #[cfg(feature = "monkey")]
    pub(crate) fn io_is_live(&self, token: usize) -> bool {
        self.io.try_borrow().is_ok_and(|io| io.contains(token))
    }

    /// (Re-)registers `fd` for both directions, for a caller that keeps its own fd → token table
    /// (`monkey`): with `known`, a token this caller registered `fd` under before, an `EEXIST`
    /// means the registration is still there (and still for the same open file) and the token is
    /// returned; without, a new slot is made. A registration that fails removes a new slot.
    ///
    /// # Errors
    /// The error of `epoll_ctl` (`EPERM` for a regular file, `EEXIST` if somebody else in
    /// greenhub registered the descriptor), or "I/O slots busy" inside the hub's own dispatch.
    #[cfg(feature = "monkey")]
    pub(crate) fn io_register_known(&self, fd: RawFd, known: Option<usize>) -> io::Result<usize> {
        let token = match known {
            Some(k) => k,
            None => self
                .io
                .try_borrow_mut()
                .map_err(|_| io::Error::other("I/O slots busy"))?
                .insert(IoSlot::new(true)),
        };
        let r = self
            .poll
            .borrow()
            .registry()
            .register(&mut SourceFd(&fd), Token(token), INTERESTS);
        match r {
            Ok(()) => Ok(token),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && known.is_some() => Ok(token),
            Err(e) => {
                if known.is_none() {
                    if let Ok(mut io) = self.io.try_borrow_mut() {
                        io.try_remove(token);
                    }
                }
                Err(e)
            }
        }
    }

    /// Drops a registration made with [`io_register_known`](Self::io_register_known) (before the
    /// descriptor closes): deletes the epoll entry, removes the slot and wakes its waiters (they
    /// retry and find the descriptor gone). Never panics; inside the hub's own dispatch the slot
    /// stays until the hub goes away (a few words).
    #[cfg(feature = "monkey")]
    pub(crate) fn io_forget(&self, fd: RawFd, token: usize) {
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        let slot = match self.io.try_borrow_mut() {
            Ok(mut io) => io.try_remove(token),
            Err(_) => None,
        };
        if let Some(slot) = slot {
            for w in slot
                .readers
                .into_inner()
                .into_iter()
                .chain(slot.writers.into_inner())
            {
                self.wake(&w, Wake::Woken);
            }
        }
    }

    /// Undoes [`io_register`](Self::io_register). Call before the descriptor closes.
    pub(crate) fn io_deregister(&'static self, fd: RawFd, token: usize) {
        let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
        match self.io.try_borrow_mut() {
            Ok(mut io) => drop(io.try_remove(token)),
            // Dropped from inside poll_io (a Waiter held the last handle to a finished greenlet
            // whose result owned this socket): remove the slot at the next loop iteration.
            Err(_) => self.run_callback(Box::new(move || {
                drop(self.io.borrow_mut().try_remove(token))
            })),
        }
    }

    /// Whether the last transfer of `dir` on `token` showed it not ready, with no readiness edge
    /// since (a hang-up or error already reported is final: then a call must try).
    pub(crate) fn io_known_not_ready(&self, token: usize, dir: Dir) -> bool {
        self.io.borrow().get(token).is_some_and(|slot| match dir {
            Dir::Read => !slot.readable.get() && !slot.read_closed.get(),
            Dir::Write => !slot.writable.get() && !slot.write_closed.get(),
        })
    }

    /// Records that `dir` on `token` is not ready until the next edge — for reading, unless the
    /// poll ever reported urgent data on it (then a short read proves nothing).
    pub(crate) fn io_mark_not_ready(&self, token: usize, dir: Dir) {
        if let Some(slot) = self.io.borrow().get(token) {
            match dir {
                Dir::Read if !slot.urgent.get() => slot.readable.set(false),
                Dir::Read => {}
                Dir::Write => slot.writable.set(false),
            }
        }
    }

    /// Clears `dir`'s readiness on `token` and queues the running greenlet's waiter there; then
    /// [`io_park`](Self::io_park) — with no switch in between.
    ///
    /// # Panics
    /// Inside the hub context, or if `token` is not a live registration.
    #[track_caller]
    pub(crate) fn io_arm_wait(&self, token: usize, dir: Dir) {
        self.current_core("wait for I/O");
        let io = self.io.borrow();
        let slot = io
            .get(token)
            .expect("greenhub: a live socket's I/O slot is missing");
        let (flag, list) = match dir {
            Dir::Read => (&slot.readable, &slot.readers),
            Dir::Write => (&slot.writable, &slot.writers),
        };
        flag.set(false);
        let mut list = list.borrow_mut();
        // Stale waiters (timed out, killed) are pruned here, so a read with a short timeout in a
        // loop does not grow the list.
        list.retain(Waiter::is_pending);
        list.push(self.current_waiter());
    }

    /// Parks the running greenlet, counted as an I/O waiter (so the loop blocks in poll rather
    /// than report a deadlock), until a readiness edge, `deadline` or a kill.
    pub(crate) fn io_park(&self, token: usize, deadline: Option<Instant>) -> Wake {
        let _guard = IoWaitGuard::new(self);
        self.park(WaitOn::Io(token), deadline)
    }

    pub(super) fn poll_io(&self, timeout: Option<Duration>) {
        let remote = self.remote_pending.swap(false, Ordering::Acquire);
        if timeout == Some(Duration::ZERO) && !remote && self.io.borrow().is_empty() {
            return; // nothing could be reported: spare the syscall
        }
        add(&self.counters.polls, 1);
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("greenhub: polling for I/O failed: {e}"),
        }
        let io = self.io.borrow();
        for ev in events.iter() {
            if ev.token() == WAKER_TOKEN {
                continue; // the loop drains the remote queue right after this poll (handoff)
            }
            let Some(slot) = io.get(ev.token().0) else {
                continue;
            };
            if ev.is_priority() {
                slot.urgent.set(true);
            }
            if ev.is_read_closed() || ev.is_error() {
                slot.read_closed.set(true);
            }
            if ev.is_write_closed() || ev.is_error() {
                slot.write_closed.set(true);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                slot.readable.set(true);
                for w in slot.readers.borrow_mut().drain(..) {
                    self.wake(&w, Wake::Woken);
                }
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                slot.writable.set(true);
                for w in slot.writers.borrow_mut().drain(..) {
                    self.wake(&w, Wake::Woken);
                }
            }
        }
    }
}
