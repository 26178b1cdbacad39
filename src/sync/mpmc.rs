//! Multi-producer multi-consumer channels **across threads** (crossbeam-channel inside).
//!
//! Unlike the rest of [`crate::sync`], these are `Send` and `Sync`: the ends may live on any
//! threads and hubs. A blocking `send`/`recv` parks only the calling greenlet when called inside a
//! hub, and blocks the OS thread outside one.
//!
//! ```
//! use greenhub::{hub, sync::mpmc};
//!
//! let (tx, rx) = mpmc::bounded(16);
//! let producer = std::thread::spawn(move || {
//!     for i in 0..100u32 {
//!         tx.send(i).unwrap(); // a plain thread: blocks it when full
//!     }
//! });
//! let sum = hub::run(move || {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv() { // parks only this greenlet
//!         sum += v;
//!     }
//!     sum
//! });
//! assert_eq!(sum, 4950);
//! producer.join().unwrap();
//! ```
//!
//! # How a parked greenlet is woken
//!
//! The values travel through a crossbeam channel, used only with its non-blocking calls. Beside it
//! each channel keeps two wait lists (receivers waiting for a value, senders waiting for room) of
//! cross-thread notifiers (`handoff::Notifier`: a wake token for a greenlet's hub, or a thread to
//! unpark). A waiter **registers, then re-checks** the channel, then parks, so a value sent between
//! the check and the park is never missed: the sender finds the registration and notifies it.
//!
//! - Each successful send notifies one waiting receiver; each successful receive one waiting
//!   sender (bounded channels). The list counts its entries in an atomic, so with nobody waiting
//!   a send or receive costs no lock beyond crossbeam's.
//! - A waiter that was notified but leaves (timed out, killed, or took a different value) passes
//!   the notification on to the next waiter if the channel still has what that one waits for, so
//!   no value is left with a parked receiver unaware of it.
//! - When the last sender (or receiver) is dropped every waiter of the other side is woken and sees
//!   the disconnection.
//!
//! # Timeouts
//!
//! Every blocking call observes the enclosing timeout scopes of [`crate::timeout()`]. The
//! `_timeout` variants give up at their own deadline or the scope's, returning their `Timeout`
//! error. The plain `send`/`recv`/`select` have no timeout error: when a scope expires they return
//! their only error (`SendError` with the value given back, `RecvError`) although the channel is
//! still connected, and the scope reports the expiry (`timeout()` returns `Err(Elapsed)`). A
//! greenlet that is unwinding (a kill or a panic) cannot wait: its plain `recv`/`send` return the
//! same error at once.
//!
//! `bounded(0)` is a rendezvous channel: a one-slot channel whose `send` returns only once a
//! receiver took the value (a sender whose wait ends first takes its value back).
//!
//! # Deadlock detection
//!
//! A greenlet parked on one of these channels waits for "something from another thread", which
//! the hub cannot see: such a wait keeps the hub polling instead of being reported as "would block
//! forever". A cycle through mpmc channels inside one hub therefore hangs rather than panics;
//! use the hub-local [`Channel`](crate::sync::Channel) / [`Queue`](crate::sync::Queue) between
//! greenlets of one hub.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

pub use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use crate::remote::blocker::{Blocker, Notifier};
use crate::rt::Wake;

/// One side's waiters.
struct Waiters {
    list: Mutex<VecDeque<(u64, Notifier)>>,
    /// `list.len()`, readable without the lock.
    len: AtomicUsize,
}

impl Waiters {
    fn new() -> Waiters {
        Waiters {
            list: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(u64, Notifier)>> {
        // Nothing panics while the lock is held (notifying happens after it is released).
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or re-adds) waiter `id`.
    fn register(&self, id: u64, n: &Notifier) {
        let mut l = self.lock();
        if !l.iter().any(|(i, _)| *i == id) {
            l.push_back((id, n.clone()));
            self.len.store(l.len(), Ordering::SeqCst);
        }
    }

    /// Removes waiter `id`; `false` if it was no longer there (it was notified).
    fn leave(&self, id: u64) -> bool {
        let mut l = self.lock();
        let before = l.len();
        l.retain(|(i, _)| *i != id);
        self.len.store(l.len(), Ordering::SeqCst);
        l.len() != before
    }

    fn notify_one(&self) {
        if self.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        let n = {
            let mut l = self.lock();
            let n = l.pop_front();
            self.len.store(l.len(), Ordering::SeqCst);
            n
        };
        if let Some((_, n)) = n {
            n.notify();
        }
    }

    fn notify_all(&self) {
        let all = {
            let mut l = self.lock();
            self.len.store(0, Ordering::SeqCst);
            std::mem::take(&mut *l)
        };
        for (_, n) in all {
            n.notify();
        }
    }
}

/// What the two ends share besides the crossbeam channel.
struct Chan {
    receivers_waiting: Waiters,
    senders_waiting: Waiters,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// `Some` for a rendezvous channel (`bounded(0)`).
    rendezvous: Option<Rendezvous>,
}

/// The hand-over of a rendezvous channel (`bounded(0)`): a one-slot crossbeam channel whose
/// `send` returns only once a receiver took the value.
///
/// Each value put in the slot gets a ticket (`sent` after the put); each value taken out counts in
/// `taken`. Both happen under `lock`, so the slot holds the value of ticket `taken + 1` whenever
/// `taken < sent`: a sender whose ticket is above `taken` knows its value is still in the slot and
/// can take it back (through its `back` receiver) when its wait ends without a receiver — a
/// timeout, a scope, a kill, or every receiver gone. A value taken back counts in `taken` too.
struct Rendezvous {
    lock: Mutex<()>,
    sent: AtomicU64,
    taken: AtomicU64,
}

impl Rendezvous {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static NEXT_WAITER: AtomicU64 = AtomicU64::new(1);

/// A registration in one wait list for the duration of one blocking call. Leaving after having
/// been notified passes the notification on when `more()` says there is still something for the
/// next waiter.
struct Registration<'a> {
    waiters: &'a Waiters,
    id: u64,
    more: &'a dyn Fn() -> bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.waiters.leave(self.id) && (self.more)() {
            self.waiters.notify_one();
        }
    }
}

/// Creates a channel holding at most `cap` values; `send` waits for room when it is full.
///
/// `bounded(0)` is a rendezvous channel: `send` returns once a receiver has taken the value (and a
/// `send_timeout` that expires first takes its value back); `try_send` succeeds only while a
/// receiver is waiting.
///
/// ```
/// use greenhub::{hub, sync::mpmc};
///
/// let (tx, rx) = mpmc::bounded::<u32>(0);
/// let t = std::thread::spawn(move || rx.recv().unwrap());
/// hub::run(move || tx.send(7).unwrap()); // returns once the thread has it
/// assert_eq!(t.join().unwrap(), 7);
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    if cap == 0 {
        let (tx, rx) = cb::bounded(1);
        let back = rx.clone();
        let rv = Rendezvous {
            lock: Mutex::new(()),
            sent: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        };
        let (mut s, r) = pair(tx, rx, Some(rv));
        s.back = Some(back);
        return (s, r);
    }
    let (tx, rx) = cb::bounded(cap);
    pair(tx, rx, None)
}

/// Creates a channel of unlimited capacity; `send` never waits.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = cb::unbounded();
    pair(tx, rx, None)
}

fn pair<T>(
    tx: cb::Sender<T>,
    rx: cb::Receiver<T>,
    rendezvous: Option<Rendezvous>,
) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        receivers_waiting: Waiters::new(),
        senders_waiting: Waiters::new(),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        rendezvous,
    });
    (
        Sender {
            tx: Some(tx),
            back: None,
            chan: chan.clone(),
        },
        Receiver { rx: Some(rx), chan },
    )
}

/// The sending end: `Send + Sync + Clone`. Dropping the last one disconnects the channel.
pub struct Sender<T> {
    /// `Some` until drop, which drops it *before* waking the receivers, so they see the
    /// disconnection.
    tx: Option<cb::Sender<T>>,
    /// Rendezvous channels only: takes a value back out of the slot (see [`Rendezvous`]). It keeps
    /// crossbeam's receiving side alive, so disconnection is read from `chan.receivers`.
    back: Option<cb::Receiver<T>>,
    chan: Arc<Chan>,
}

/// The receiving end: `Send + Sync + Clone`. Dropping the last one disconnects the channel.
pub struct Receiver<T> {
    rx: Option<cb::Receiver<T>>,
    chan: Arc<Chan>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("len", &self.len()).finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::SeqCst);
        Sender {
            tx: self.tx.clone(),
            back: self.back.clone(),
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            rx: self.rx.clone(),
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if self.chan.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.chan.receivers_waiting.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        drop(self.rx.take());
        if self.chan.receivers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.chan.senders_waiting.notify_all();
        }
    }
}

/// How a wait ended without success.
enum Gave {
    Up,
    /// The greenlet's kill is unwinding: it cannot wait.
    Killed,
}

/// Parks on `blocker` once; `Ok` to re-check, `Err` to give up.
fn park_once(
    blocker: &Blocker,
    on: &'static &'static str,
    deadline: Option<Instant>,
    scoped: bool,
) -> Result<(), Gave> {
    let wake = if scoped {
        blocker.park(on, deadline)
    } else {
        blocker.park_unscoped(on, deadline)
    };
    match wake {
        Wake::Woken => Ok(()),
        Wake::TimedOut | Wake::ScopeExpired => Err(Gave::Up),
        Wake::Killed | Wake::Deadlock => Err(Gave::Killed),
    }
}

impl<T> Sender<T> {
    fn tx(&self) -> &cb::Sender<T> {
        self.tx.as_ref().expect("present until drop")
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Disconnected`], with the value.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.chan.rendezvous.is_some() {
            if self.chan.receivers_waiting.len.load(Ordering::SeqCst) == 0 {
                return Err(if self.chan.receivers.load(Ordering::SeqCst) == 0 {
                    TrySendError::Disconnected(value)
                } else {
                    TrySendError::Full(value)
                });
            }
            return self.put(value).map(drop);
        }
        self.tx().try_send(value)?;
        self.chan.receivers_waiting.notify_one();
        Ok(())
    }

    /// Sends `value`, waiting for room if the channel is bounded and full (parking only the
    /// calling greenlet, or blocking the thread outside a hub). Not interrupted by timeout scopes.
    ///
    /// # Errors
    /// [`SendError`] with the value if every receiver is gone, or if an enclosing timeout scope
    /// expires first (see the module's *Timeouts*).
    ///
    /// # Panics
    /// Inside a hub callback.
    #[track_caller]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.send_deadline(value, None, true) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Disconnected(v) | SendTimeoutError::Timeout(v)) => {
                Err(SendError(v))
            }
        }
    }

    /// Like [`send`](Self::send), giving up after `timeout` (or when an enclosing timeout scope
    /// expires).
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`], with the value.
    ///
    /// # Panics
    /// Inside a hub callback.
    #[track_caller]
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, Instant::now().checked_add(timeout), true)
    }

    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
        scoped: bool,
    ) -> Result<(), SendTimeoutError<T>> {
        if self.chan.rendezvous.is_some() {
            return self.send_rendezvous(value, deadline, scoped);
        }
        let mut value = match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Full(v)) => v,
        };
        let blocker = Blocker::new();
        let notifier = blocker.notifier();
        let more = || !self.tx().is_full();
        let reg = Registration {
            waiters: &self.chan.senders_waiting,
            id: NEXT_WAITER.fetch_add(1, Ordering::Relaxed),
            more: &more,
        };
        loop {
            reg.waiters.register(reg.id, &notifier);
            value = match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(v)) => {
                    return Err(SendTimeoutError::Disconnected(v))
                }
                Err(TrySendError::Full(v)) => v,
            };
            match park_once(&blocker, &"room in an mpmc channel", deadline, scoped) {
                Ok(()) => {}
                Err(Gave::Up) => return Err(SendTimeoutError::Timeout(value)),
                Err(Gave::Killed) => return Err(SendTimeoutError::Disconnected(value)),
            }
        }
    }

    /// Values in the channel.
    pub fn len(&self) -> usize {
        self.tx().len()
    }

    /// Whether the channel holds no value.
    pub fn is_empty(&self) -> bool {
        self.tx().is_empty()
    }

    /// Whether a bounded channel is at capacity.
    pub fn is_full(&self) -> bool {
        self.chan.rendezvous.is_some() || self.tx().is_full()
    }

    /// The capacity (`None` for unbounded, 0 for a rendezvous channel).
    pub fn capacity(&self) -> Option<usize> {
        if self.chan.rendezvous.is_some() {
            return Some(0);
        }
        self.tx().capacity()
    }
}

/// The rendezvous side of a sender (see `Rendezvous`).
impl<T> Sender<T> {
    fn rv(&self) -> &Rendezvous {
        self.chan.rendezvous.as_ref().expect("a rendezvous channel")
    }

    /// Puts `value` in the slot if it is free; returns its ticket.
    fn put(&self, value: T) -> Result<u64, TrySendError<T>> {
        if self.chan.receivers.load(Ordering::SeqCst) == 0 {
            return Err(TrySendError::Disconnected(value));
        }
        let ticket = {
            let _g = self.rv().lock();
            self.tx().try_send(value)?;
            self.rv().sent.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.chan.receivers_waiting.notify_one();
        Ok(ticket)
    }

    /// Takes the value of `ticket` back if no receiver took it yet.
    fn take_back(&self, ticket: u64) -> Option<T> {
        let rv = self.rv();
        let _g = rv.lock();
        if rv.taken.load(Ordering::SeqCst) >= ticket {
            return None;
        }
        // Under the lock, `taken < ticket` means the slot holds exactly our value.
        let v = self.back.as_ref().expect("rendezvous").try_recv().ok()?;
        rv.taken.fetch_add(1, Ordering::SeqCst);
        drop(_g);
        // Another sender may be waiting for the slot we just freed.
        self.chan.senders_waiting.notify_all();
        Some(v)
    }

    /// `send_deadline` of a rendezvous channel: waits for the slot, then for a receiver to take
    /// the value; a wait that ends first takes the value back and returns it in the error.
    fn send_rendezvous(
        &self,
        value: T,
        deadline: Option<Instant>,
        scoped: bool,
    ) -> Result<(), SendTimeoutError<T>> {
        let blocker = Blocker::new();
        let notifier = blocker.notifier();
        let no_pass_on = || false; // receivers wake every waiting sender (notify_all)
        let reg = Registration {
            waiters: &self.chan.senders_waiting,
            id: NEXT_WAITER.fetch_add(1, Ordering::Relaxed),
            more: &no_pass_on,
        };
        let mut value = value;
        let ticket = loop {
            value = match self.put(value) {
                Ok(t) => break t,
                Err(TrySendError::Disconnected(v)) => {
                    return Err(SendTimeoutError::Disconnected(v))
                }
                Err(TrySendError::Full(v)) => v,
            };
            reg.waiters.register(reg.id, &notifier);
            value = match self.put(value) {
                Ok(t) => break t,
                Err(TrySendError::Disconnected(v)) => {
                    return Err(SendTimeoutError::Disconnected(v))
                }
                Err(TrySendError::Full(v)) => v,
            };
            match park_once(&blocker, &"room in an mpmc channel", deadline, scoped) {
                Ok(()) => {}
                Err(Gave::Up) => return Err(SendTimeoutError::Timeout(value)),
                Err(Gave::Killed) => return Err(SendTimeoutError::Disconnected(value)),
            }
        };
        let taken = || self.rv().taken.load(Ordering::SeqCst) >= ticket;
        let gone = || self.chan.receivers.load(Ordering::SeqCst) == 0;
        loop {
            if taken() {
                return Ok(());
            }
            reg.waiters.register(reg.id, &notifier);
            if taken() {
                return Ok(());
            }
            let gave = if gone() {
                Gave::Killed
            } else {
                match park_once(&blocker, &"a receiver of an mpmc channel", deadline, scoped) {
                    Ok(()) => continue,
                    Err(g) => g,
                }
            };
            return match (self.take_back(ticket), gave) {
                (None, _) => Ok(()), // a receiver got it after all
                (Some(v), Gave::Up) => Err(SendTimeoutError::Timeout(v)),
                (Some(v), Gave::Killed) => Err(SendTimeoutError::Disconnected(v)),
            };
        }
    }
}

impl<T> Receiver<T> {
    fn rx(&self) -> &cb::Receiver<T> {
        self.rx.as_ref().expect("present until drop")
    }

    /// Takes a value if one is there now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] when it is empty and every
    /// sender is gone.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if let Some(rv) = &self.chan.rendezvous {
            let v = {
                let _g = rv.lock();
                let v = self.rx().try_recv()?;
                rv.taken.fetch_add(1, Ordering::SeqCst);
                v
            };
            // Wake the sender waiting for this hand-over (and those waiting for the slot).
            self.chan.senders_waiting.notify_all();
            return Ok(v);
        }
        let v = self.rx().try_recv()?;
        self.chan.senders_waiting.notify_one();
        Ok(v)
    }

    /// Takes a value, waiting for one (parking only the calling greenlet, or blocking the thread
    /// outside a hub). Not interrupted by timeout scopes.
    ///
    /// # Errors
    /// [`RecvError`] when the channel is empty and every sender is gone, or if an enclosing
    /// timeout scope expires first (see the module's *Timeouts*).
    ///
    /// # Panics
    /// Inside a hub callback.
    #[track_caller]
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None, true).map_err(|_| RecvError)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` (or when an enclosing timeout scope
    /// expires).
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    ///
    /// # Panics
    /// Inside a hub callback.
    #[track_caller]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Instant::now().checked_add(timeout), true)
    }

    fn recv_deadline(
        &self,
        deadline: Option<Instant>,
        scoped: bool,
    ) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        match select_deadline(std::slice::from_ref(&self), deadline, scoped) {
            Ok((_, v)) => Ok(v),
            Err(e) => Err(e),
        }
    }

    /// An iterator of received values that ends when the channel is disconnected.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Values in the channel.
    pub fn len(&self) -> usize {
        self.rx().len()
    }

    /// Whether the channel holds no value.
    pub fn is_empty(&self) -> bool {
        self.rx().is_empty()
    }

    /// The capacity (`None` for unbounded).
    pub fn capacity(&self) -> Option<usize> {
        if self.chan.rendezvous.is_some() {
            return Some(0);
        }
        self.rx().capacity()
    }
}

/// Waits for a value from any of `receivers`; returns the index of the receiver it came from and
/// the value. Receivers are checked in order, so an earlier one wins when several are ready; a
/// disconnected receiver is skipped while others may still deliver. Not interrupted by timeout
/// scopes.
///
/// # Errors
/// [`RecvError`] when every receiver is disconnected (or `receivers` is empty), or if an
/// enclosing timeout scope expires first.
///
/// # Panics
/// Inside a hub callback.
#[track_caller]
pub fn select<T>(receivers: &[&Receiver<T>]) -> Result<(usize, T), RecvError> {
    select_deadline(receivers, None, true).map_err(|_| RecvError)
}

/// Like [`select`], giving up after `timeout` (or when an enclosing timeout scope expires).
///
/// # Errors
/// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Disconnected`] when every receiver is
/// disconnected.
///
/// # Panics
/// Inside a hub callback.
#[track_caller]
pub fn select_timeout<T>(
    receivers: &[&Receiver<T>],
    timeout: Duration,
) -> Result<(usize, T), RecvTimeoutError> {
    select_deadline(receivers, Instant::now().checked_add(timeout), true)
}

/// Checks every receiver once: a value, or whether all are disconnected.
fn try_select<T>(receivers: &[&Receiver<T>]) -> Result<(usize, T), TryRecvError> {
    let mut all_gone = true;
    for (i, r) in receivers.iter().enumerate() {
        match r.try_recv() {
            Ok(v) => return Ok((i, v)),
            Err(TryRecvError::Empty) => all_gone = false,
            Err(TryRecvError::Disconnected) => {}
        }
    }
    Err(if all_gone {
        TryRecvError::Disconnected
    } else {
        TryRecvError::Empty
    })
}

fn select_deadline<T>(
    receivers: &[&Receiver<T>],
    deadline: Option<Instant>,
    scoped: bool,
) -> Result<(usize, T), RecvTimeoutError> {
    match try_select(receivers) {
        Ok(r) => return Ok(r),
        Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
        Err(TryRecvError::Empty) => {}
    }
    let blocker = Blocker::new();
    let notifier = blocker.notifier();
    let id = NEXT_WAITER.fetch_add(1, Ordering::Relaxed);
    let mores: Vec<_> = receivers
        .iter()
        .map(|r| move || !r.rx().is_empty())
        .collect();
    let regs: Vec<Registration<'_>> = receivers
        .iter()
        .zip(&mores)
        .map(|(r, more)| Registration {
            waiters: &r.chan.receivers_waiting,
            id,
            more,
        })
        .collect();
    loop {
        for reg in &regs {
            reg.waiters.register(id, &notifier);
        }
        match try_select(receivers) {
            Ok(r) => return Ok(r),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        match park_once(&blocker, &"a value from an mpmc channel", deadline, scoped) {
            Ok(()) => {}
            Err(Gave::Up) => return Err(RecvTimeoutError::Timeout),
            Err(Gave::Killed) => return Err(RecvTimeoutError::Disconnected),
        }
    }
}
