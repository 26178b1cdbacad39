//! Unix signals, waited for cooperatively (tokio's `tokio::signal::unix`, gevent's
//! `gevent.signal_handler`).
//!
//! ```no_run
//! use greenhub::{hub, signal::{self, SignalKind}};
//!
//! hub::run(|| {
//!     let mut term = signal::signal(SignalKind::terminate())?; // from now on, SIGTERM is counted
//!     hub::spawn(|| { /* serve ... */ });
//!     term.recv()?; // parks this greenlet only, until a SIGTERM arrives
//!     println!("shutting down");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! - [`signal`] makes a [`Signal`] listener: a reusable receiver that **counts** deliveries, so
//!   none is lost between two calls of [`Signal::recv`] (each `recv` consumes one delivery;
//!   [`Signal::pending`] says how many are waiting). Any number of listeners, on any number of
//!   hubs (threads), may listen to the same signal: each sees every delivery.
//! - [`wait`] / [`wait_any`] wait once (a listener made and dropped around the wait).
//! - [`signal_handler`] runs a function in a new greenlet at every delivery (gevent's
//!   `signal_handler`), until the returned [`SignalHandler`] is cancelled or dropped.
//!
//! # How a delivery reaches the hubs
//!
//! ```text
//!  any thread, in the signal handler           each hub with listeners
//!  ─────────────────────────────────           ───────────────────────
//!  COUNT[signo] += 1        (atomic)            epoll: a dup of the eventfd per listener
//!  write(eventfd, 1)        (async-signal-safe) ── edge ──► wake the listener's greenlet
//!  call the previous handler, if it was one                 it compares COUNT[signo] with the
//!                                                           deliveries it has consumed
//! ```
//!
//! The handler does only async-signal-safe things: an atomic add, one `write(2)` to an `eventfd`,
//! a call of the handler installed before ours, and saving/restoring `errno`. No locks, no
//! allocation, no greenlet switch.
//!
//! **Why a handler and an eventfd, not `signalfd`.** A `signalfd` only receives signals that are
//! *blocked* in every thread of the process; otherwise the kernel delivers them to a thread's
//! default action (terminating the process) or handler instead. Blocking them means changing the
//! signal mask of every thread — including threads greenhub did not start and threads that exist
//! before greenhub is used — and children inherit a blocked mask across `exec`, which breaks
//! programs that expect default dispositions. A `sigaction` handler needs none of that, coexists
//! with handlers installed before it (it chains to them) and is undone by restoring the previous
//! disposition. The eventfd is the self-pipe: one per process, never read (its counter just grows),
//! written once per delivery. Every write raises an edge in every epoll instance that watches it,
//! so each listener registers its own duplicate of the descriptor (epoll keys its interest list
//! by descriptor and open file, so duplicates coexist even in one hub's poll) and all of them
//! wake. The counters, not the eventfd, carry the information: a listener wakes, compares, and
//! parks again if nothing of its own arrived.
//!
//! # What is counted (the coalescing rule)
//!
//! The count is the number of times the kernel **ran the handler** for that signal. The kernel
//! merges a standard signal (1–31) sent while an instance of it is already pending (sent, not yet
//! delivered) into that one instance, so a burst sent from another process or thread may be
//! counted fewer times than it was sent. A signal a thread sends to itself (`raise`,
//! `pthread_kill(pthread_self())`) while not blocking it is delivered before the call returns, so
//! such sends are each counted. Real-time signals (`SIGRTMIN..=SIGRTMAX`) queue (up to
//! `RLIMIT_SIGPENDING`) and are each counted. Deliveries before a listener was made are not
//! counted for it.
//!
//! # Dispositions
//!
//! The first listener of a signal installs greenhub's handler (`SA_SIGINFO | SA_RESTART |
//! SA_ONSTACK`), remembering the previous disposition; while a listener exists, the signal's
//! default action (e.g. terminating on `SIGTERM`) does not happen. A previous *handler* is called
//! after ours on every delivery (with ours's signal mask; `SIG_DFL`/`SIG_IGN` are not "called").
//! When the last listener of a signal is dropped, the previous disposition is restored — unless
//! someone installed another handler on top of ours meanwhile; then ours stays installed, counting
//! for nobody and chaining to its predecessor, so neither handler is lost.
//!
//! The synchronous fault signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`) cannot be listened to:
//! their handler must not return to the faulting instruction, and greenhub's stack-overflow
//! reporter owns `SIGSEGV`/`SIGBUS`. `SIGKILL` and `SIGSTOP` cannot be caught at all.
//!
//! Linux only (the `eventfd`).

// The handler, `sigaction` and the eventfd are libc calls; each block says what it relies on.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::greenlet::Greenlet;
use crate::hub;
use crate::reactor::{Dir, OnTimeout, Registered};

/// Signal numbers 1..NSIG are tracked (Linux: 64 signals).
const NSIG: usize = 65;

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the arrays
const ZERO_U64: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_USIZE: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_I32: AtomicI32 = AtomicI32::new(0);

/// Deliveries per signal since the process started listening to it (never reset).
static COUNTS: [AtomicU64; NSIG] = [ZERO_U64; NSIG];
/// The previous disposition's handler (`sa_sigaction`), for chaining; read by the handler.
static PREV_HANDLER: [AtomicUsize; NSIG] = [ZERO_USIZE; NSIG];
/// The previous disposition's `sa_flags`.
static PREV_FLAGS: [AtomicI32; NSIG] = [ZERO_I32; NSIG];
/// The eventfd the handler writes, or -1 before the first listener. Never closed once set.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// A kind of signal: which signal a listener receives (tokio's `SignalKind`).
///
/// # Examples
///
/// ```
/// use greenhub::signal::SignalKind;
/// assert_eq!(SignalKind::terminate().as_raw_value(), libc::SIGTERM);
/// assert_eq!(SignalKind::from_raw(libc::SIGINT), SignalKind::interrupt());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// Any signal by number (`libc::SIGUSR1`, `libc::SIGRTMIN() + 1`, ...). Whether it may be
    /// listened to is checked by [`signal`].
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }
    /// The signal number.
    pub const fn as_raw_value(&self) -> libc::c_int {
        self.0
    }
    /// `SIGALRM`.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }
    /// `SIGCHLD`. (greenhub's [`crate::process`] does not need it: listening is the program's
    /// choice.)
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }
    /// `SIGHUP`.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }
    /// `SIGINT` (Ctrl-C).
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }
    /// `SIGIO`.
    pub const fn io() -> SignalKind {
        SignalKind(libc::SIGIO)
    }
    /// `SIGPIPE`.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }
    /// `SIGQUIT`.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }
    /// `SIGTERM`.
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }
    /// `SIGUSR1`.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }
    /// `SIGUSR2`.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }
    /// `SIGWINCH`.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }

    fn name(&self) -> Option<&'static str> {
        Some(match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGIO => "SIGIO",
            _ => return None,
        })
    }
}

impl fmt::Debug for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "SignalKind({n})"),
            None => write!(f, "SignalKind({})", self.0),
        }
    }
}

impl From<libc::c_int> for SignalKind {
    fn from(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }
}

/// Install bookkeeping, touched only outside the handler.
struct Registry {
    listeners: [usize; NSIG],
    installed: [bool; NSIG],
    /// The disposition found when ours was installed, to restore.
    prev: [Option<libc::sigaction>; NSIG],
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            listeners: [0; NSIG],
            installed: [false; NSIG],
            prev: [None; NSIG],
        })
    })
}

/// The handler. Async-signal-safe: atomics, `write(2)`, the previous handler, `errno`.
extern "C" fn on_signal(signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno cell, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    if let Ok(i) = usize::try_from(signo) {
        if i < NSIG {
            COUNTS[i].fetch_add(1, Ordering::SeqCst);
            let fd = WAKE_FD.load(Ordering::Acquire);
            if fd >= 0 {
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a local; `fd` is the eventfd, never closed once
                // published. Failure (a full counter, impossible in practice) loses only a wake-up.
                unsafe { libc::write(fd, ptr::addr_of!(one).cast(), 8) };
            }
            let h = PREV_HANDLER[i].load(Ordering::Acquire);
            if h != libc::SIG_DFL && h != libc::SIG_IGN && h != libc::SIG_ERR {
                if PREV_FLAGS[i].load(Ordering::Acquire) & libc::SA_SIGINFO != 0 {
                    // SAFETY: `h` is the handler the kernel held for this signal before ours, with
                    // SA_SIGINFO, so it has this signature; it gets the kernel's own arguments.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                        unsafe { mem::transmute(h) };
                    f(signo, info, ctx);
                } else {
                    // SAFETY: without SA_SIGINFO the previous handler takes the number only.
                    let f: extern "C" fn(libc::c_int) = unsafe { mem::transmute(h) };
                    f(signo);
                }
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The process's wake-up eventfd, created on first use.
fn wake_fd() -> io::Result<libc::c_int> {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = FD.get() {
        return Ok(fd.as_raw_fd());
    }
    // SAFETY: eventfd takes no pointers; a valid result is a fresh descriptor we adopt.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Called with the registry lock held, so only one thread gets here first.
    let fd = FD.get_or_init(|| fd);
    WAKE_FD.store(fd.as_raw_fd(), Ordering::Release);
    Ok(fd.as_raw_fd())
}

fn check(kind: SignalKind) -> io::Result<usize> {
    let n = kind.0;
    let forbidden = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGKILL,
        libc::SIGSTOP,
    ];
    if forbidden.contains(&n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "greenhub::signal cannot listen to signal {n}: SIGKILL and SIGSTOP cannot be \
                 caught, and the fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE) must not be \
                 handled by returning (SIGSEGV/SIGBUS report greenlet stack overflows)"
            ),
        ));
    }
    match usize::try_from(n) {
        Ok(i) if (1..NSIG).contains(&i) => Ok(i),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("greenhub::signal: {n} is not a signal number"),
        )),
    }
}

/// Counts one more listener of signal `i`, installing our handler for the first.
fn add_listener(i: usize) -> io::Result<()> {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if !reg.installed[i] {
        wake_fd()?;
        let signo = i as libc::c_int;
        // SAFETY: a zeroed sigaction is a valid value for the kernel to fill in.
        let mut old: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`.
        if unsafe { libc::sigaction(signo, ptr::null(), &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Published before ours is installed, so the first delivery already chains.
        PREV_FLAGS[i].store(old.sa_flags, Ordering::Release);
        PREV_HANDLER[i].store(old.sa_sigaction, Ordering::Release);
        // SAFETY: zeroed is "no flags, empty mask"; we fill in the handler and flags.
        let mut new: libc::sigaction = unsafe { mem::zeroed() };
        new.sa_sigaction = on_signal as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        // SAFETY: `new.sa_mask` is a valid sigset to empty.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: a zeroed sigaction is a valid value for the kernel to fill in.
        let mut again: libc::sigaction = unsafe { mem::zeroed() };
        // SAFETY: `new` is fully initialised; `again` receives what was current (normally `old`).
        if unsafe { libc::sigaction(signo, &new, &mut again) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if again.sa_sigaction != old.sa_sigaction {
            // Someone installed a handler between our read and our install: chain to that one.
            PREV_FLAGS[i].store(again.sa_flags, Ordering::Release);
            PREV_HANDLER[i].store(again.sa_sigaction, Ordering::Release);
            old = again;
        }
        reg.prev[i] = Some(old);
        reg.installed[i] = true;
    }
    reg.listeners[i] += 1;
    Ok(())
}

/// Uncounts a listener of signal `i`; the last one restores the previous disposition.
fn remove_listener(i: usize) {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    reg.listeners[i] -= 1;
    if reg.listeners[i] > 0 || !reg.installed[i] {
        return;
    }
    let signo = i as libc::c_int;
    // SAFETY: as in `add_listener`.
    let mut cur: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: reads the current disposition only.
    if unsafe { libc::sigaction(signo, ptr::null(), &mut cur) } != 0 {
        return;
    }
    if cur.sa_sigaction != on_signal as *const () as usize {
        // Another handler was installed on top of ours and may chain to it: keep ours.
        return;
    }
    if let Some(prev) = reg.prev[i] {
        // SAFETY: `prev` was read from the kernel for this signal.
        if unsafe { libc::sigaction(signo, &prev, ptr::null_mut()) } == 0 {
            reg.installed[i] = false;
            reg.prev[i] = None;
        }
    }
}

/// A listener for one or more signals: counts their deliveries from its creation on and parks
/// the calling greenlet in [`recv`](Self::recv) until one is there (tokio's `Signal`).
///
/// Made by [`signal`] (or [`Signal::new`] for several kinds). `Send`: it may be made on one
/// thread and moved to another before its first `recv`; it then belongs to the hub of the thread
/// that first parked on it. Dropping the last listener of a signal restores the signal's previous
/// disposition (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use greenhub::{hub, signal::{signal, SignalKind}};
///
/// hub::run(|| {
///     let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
///     // SAFETY: raise sends a signal we now handle to this thread; no memory is involved.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     unsafe { libc::raise(libc::SIGUSR1) };
///     assert_eq!(usr1.pending(), 2); // counted, not coalesced
///     usr1.recv().unwrap();
///     usr1.recv().unwrap();
///     assert_eq!(usr1.try_recv(), None);
/// });
/// ```
pub struct Signal {
    /// The kinds listened to, with the count of deliveries consumed (or skipped) so far.
    kinds: Vec<(SignalKind, u64)>,
    /// A duplicate of the process's eventfd, registered with this hub's poll.
    reg: Registered<OwnedFd>,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("kinds", &self.kinds.iter().map(|k| k.0).collect::<Vec<_>>())
            .field("pending", &self.pending())
            .finish()
    }
}

/// Starts listening to `kind` (tokio's `signal(SignalKind)`): from now on its deliveries are
/// counted for the returned listener.
///
/// # Errors
/// `InvalidInput` for a signal that cannot be listened to (`SIGKILL`, `SIGSTOP`, `SIGSEGV`,
/// `SIGBUS`, `SIGILL`, `SIGFPE`, numbers out of range); the OS error of `sigaction`, `eventfd` or
/// `fcntl`.
///
/// # Examples
/// See [`Signal`].
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    Signal::new(&[kind])
}

impl Signal {
    /// A listener for every kind in `kinds` (a delivery of any of them is received).
    ///
    /// # Errors
    /// As [`signal`]; `InvalidInput` for an empty list.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::signal::{Signal, SignalKind};
    /// let s = Signal::new(&[SignalKind::interrupt(), SignalKind::terminate()]).unwrap();
    /// assert_eq!(s.pending(), 0);
    /// ```
    pub fn new(kinds: &[SignalKind]) -> io::Result<Signal> {
        if kinds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "greenhub::signal: a listener needs at least one signal",
            ));
        }
        let idx: Vec<usize> = kinds.iter().map(|&k| check(k)).collect::<io::Result<_>>()?;
        let mut added = Vec::new();
        /// Undoes the listeners added so far if a later one fails.
        struct Undo<'a>(&'a mut Vec<usize>);
        impl Drop for Undo<'_> {
            fn drop(&mut self) {
                for &i in self.0.iter() {
                    remove_listener(i);
                }
            }
        }
        let undo = Undo(&mut added);
        for &i in &idx {
            add_listener(i)?;
            undo.0.push(i);
        }
        let dup = crate::io::fd::dup_fd(wake_fd()?)?;
        std::mem::forget(undo);
        // Snapshot after installing: deliveries from here on are ours.
        let kinds = kinds
            .iter()
            .zip(&idx)
            .map(|(&k, &i)| (k, COUNTS[i].load(Ordering::SeqCst)))
            .collect();
        Ok(Signal {
            kinds,
            reg: Registered::new(dup),
        })
    }

    /// Takes one counted delivery, if any: which kind it was.
    fn take(kinds: &mut [(SignalKind, u64)]) -> Option<SignalKind> {
        for (k, seen) in kinds.iter_mut() {
            let now = COUNTS[k.0 as usize].load(Ordering::SeqCst);
            if now > *seen {
                *seen += 1;
                return Some(*k);
            }
        }
        None
    }

    /// Parks the calling greenlet until a delivery not yet received is there, consumes it and
    /// returns its kind (returns at once if one is pending). Deliveries are counted, so each
    /// `recv` takes one: none is lost between calls.
    ///
    /// # Errors
    /// `TimedOut` when an enclosing timeout scope expires; an error if the listener belongs to
    /// another thread's hub; the "killed" error in a greenlet whose kill is unwinding.
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    /// See [`Signal`].
    #[track_caller]
    pub fn recv(&mut self) -> io::Result<SignalKind> {
        let Signal { kinds, reg } = self;
        reg.io(Dir::Read, |_| {
            Self::take(kinds).ok_or_else(|| io::ErrorKind::WouldBlock.into())
        })
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    /// `TimedOut` when `timeout` passes or an enclosing scope expires; as [`recv`](Self::recv).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use greenhub::signal::{signal, SignalKind};
    /// let mut s = signal(SignalKind::user_defined2()).unwrap();
    /// let e = s.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    /// ```
    #[track_caller]
    pub fn recv_timeout(&mut self, timeout: Duration) -> io::Result<SignalKind> {
        let deadline = crate::io::fd::deadline_after(Some(timeout));
        let Signal { kinds, reg } = self;
        reg.io_deadline(Dir::Read, deadline, OnTimeout::WouldBlock, |_| {
            Self::take(kinds).ok_or_else(|| io::ErrorKind::WouldBlock.into())
        })
        .map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for a signal")
            } else {
                e
            }
        })
    }

    /// Consumes one pending delivery without waiting.
    ///
    /// # Examples
    /// See [`Signal`].
    pub fn try_recv(&mut self) -> Option<SignalKind> {
        Self::take(&mut self.kinds)
    }

    /// Deliveries counted and not yet received.
    ///
    /// # Examples
    /// See [`Signal`].
    pub fn pending(&self) -> u64 {
        self.kinds
            .iter()
            .map(|(k, seen)| COUNTS[k.0 as usize].load(Ordering::SeqCst) - seen)
            .sum()
    }

    /// The kinds this listener receives.
    pub fn kinds(&self) -> impl Iterator<Item = SignalKind> + '_ {
        self.kinds.iter().map(|(k, _)| *k)
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        for (k, _) in &self.kinds {
            remove_listener(k.0 as usize);
        }
    }
}

/// Waits once for `kind`: parks the calling greenlet until it is delivered.
///
/// The listener exists only during the call, so a delivery before the call is not seen, and
/// between calls the signal has its previous disposition (by default `SIGTERM` and `SIGINT`
/// terminate the process). For a loop, keep a [`Signal`].
///
/// # Errors
/// As [`signal`] and [`Signal::recv`].
///
/// # Panics
/// Inside the hub (a hub callback).
///
/// # Examples
///
/// ```
/// use greenhub::{hub, signal::{self, SignalKind}};
///
/// hub::run(|| {
///     let waiter = hub::spawn(|| signal::wait(SignalKind::hangup()));
///     hub::sleep(std::time::Duration::from_millis(5)); // let it start listening
///     // SAFETY: raise sends a signal the waiter handles to this thread.
///     unsafe { libc::raise(libc::SIGHUP) };
///     waiter.join().unwrap().unwrap();
/// });
/// ```
#[track_caller]
pub fn wait(kind: SignalKind) -> io::Result<()> {
    signal(kind)?.recv().map(drop)
}

/// Waits once for any of `kinds`; returns the one delivered. See [`wait`].
///
/// # Errors
/// As [`Signal::new`] and [`Signal::recv`].
///
/// # Panics
/// Inside the hub (a hub callback).
///
/// # Examples
///
/// ```no_run
/// use greenhub::signal::{self, SignalKind};
/// let got = signal::wait_any(&[SignalKind::interrupt(), SignalKind::terminate()])?;
/// println!("stopping on {got:?}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[track_caller]
pub fn wait_any(kinds: &[SignalKind]) -> io::Result<SignalKind> {
    Signal::new(kinds)?.recv()
}

/// A running [`signal_handler`]: cancel it (or drop it) to stop handling.
///
/// # Examples
/// See [`signal_handler`].
#[derive(Debug)]
pub struct SignalHandler {
    kind: SignalKind,
    greenlet: Option<Greenlet<()>>,
}

/// Runs `handler` in a new greenlet of this hub at every delivery of `kind` (gevent's
/// `gevent.signal_handler(signum, handler)`), until the returned [`SignalHandler`] is cancelled or
/// dropped. The signal is listened to from this call on.
///
/// # Errors
/// As [`signal`].
///
/// # Panics
/// After this thread's hub was torn down.
///
/// # Examples
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use greenhub::{hub, signal::{signal_handler, SignalKind}};
///
/// hub::run(|| {
///     let hits = Rc::new(Cell::new(0));
///     let h = hits.clone();
///     let handler = signal_handler(SignalKind::user_defined1(), move || h.set(h.get() + 1)).unwrap();
///     // SAFETY: raise sends a signal we now handle to this thread.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     while hits.get() == 0 {
///         hub::sleep(Duration::from_millis(1));
///     }
///     handler.cancel();
/// });
/// ```
pub fn signal_handler<F>(kind: SignalKind, handler: F) -> io::Result<SignalHandler>
where
    F: Fn() + 'static,
{
    let mut sig = signal(kind)?;
    let handler = Rc::new(handler);
    let g = crate::greenlet::Builder::new()
        .name(format!("signal_handler {kind:?}"))
        .spawn(move || {
            while sig.recv().is_ok() {
                let h = handler.clone();
                drop(hub::spawn(move || h()));
            }
        });
    Ok(SignalHandler {
        kind,
        greenlet: Some(g),
    })
}

impl SignalHandler {
    /// The signal handled.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Stops handling: kills the listening greenlet and waits for it, so when this returns the
    /// listener is gone (and, if it was the last one, the previous disposition is back).
    /// Greenlets already spawned for earlier deliveries run on.
    ///
    /// # Panics
    /// Inside the hub (it blocks).
    pub fn cancel(mut self) {
        if let Some(g) = self.greenlet.take() {
            g.kill();
        }
    }
}

impl Drop for SignalHandler {
    /// Like [`cancel`](Self::cancel) without waiting: the listener goes when its greenlet unwinds.
    fn drop(&mut self) {
        if let Some(g) = self.greenlet.take() {
            g.kill_nowait();
        }
    }
}
