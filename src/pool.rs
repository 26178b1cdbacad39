//! Groups of greenlets and waits over several objects (gevent's `gevent.pool` and
//! `joinall`/`killall`/`wait`/`iwait`).
//!
//! | gevent | greenhub |
//! | --- | --- |
//! | `Group()`, `group.spawn`, `group.add`, `group.join`, `group.kill`, `len(group)` | [`Group::new`], [`Group::spawn`], [`Group::add`], [`Group::join`], [`Group::kill`], [`Group::len`] |
//! | `Pool(size)`, `pool.spawn` (waits for a free slot), `pool.free_count()` | [`Pool::new`], [`Pool::spawn`], [`Pool::free_count`] |
//! | `group.map(f, items)`, `group.imap_unordered(f, items)` | [`Group::map`], [`Group::imap_unordered`] (and on [`Pool`]) |
//! | `gevent.joinall`, `gevent.killall` | [`joinall`], [`killall`] |
//! | `gevent.wait(objects, count=1)`, `gevent.iwait(objects)` | [`wait_any`], [`iwait`] |
//!
//! [`wait_any`] and [`iwait`] take anything [`Waitable`]: greenlets, [`Event`]s and
//! [`AsyncResult`]s, mixed in one slice as `&dyn Waitable`.
//!
//! ```
//! use std::time::Duration;
//! use greenhub::{hub, pool::Pool};
//!
//! hub::run(|| {
//!     let pool = Pool::new(3); // at most three run at once
//!     let squares = pool
//!         .map(1..=10u64, |i| {
//!             hub::sleep(Duration::from_millis(1));
//!             i * i
//!         })
//!         .unwrap();
//!     assert_eq!(squares.iter().sum::<u64>(), 385);
//! });
//! ```

#![deny(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::greenlet::{Greenlet, GreenletError};
use crate::hub;
use crate::rt::{current_hub, WaitOn, Wake};
use crate::rt::{TaskRef, Waiter};
use crate::sync::{deadline_after, AsyncResult, Event, Queue, Semaphore, TimedOut};

mod private {
    use crate::rt::Waiter;
    use crate::sync::waitlist::Ticket;

    /// The running greenlet's waiter for its next park, as [`Sealed::subscribe`] receives it.
    pub struct Token(pub(crate) Waiter);

    /// How to take a subscription back.
    pub struct Sub(pub(crate) SubKind);

    pub(crate) enum SubKind {
        /// An entry in a `WaitList`.
        List(Ticket),
        /// An entry in a greenlet's joiners: (greenlet id of the waiter, its park generation).
        Joiner(u64, u32),
    }

    /// The crate-private half of `Waitable`: users can name the trait but not implement it.
    pub trait Sealed {
        /// Whether a wait would return at once.
        fn ready(&self) -> bool;
        /// Puts `token`'s waiter where this object's readiness will wake it.
        fn subscribe(&self, token: &Token) -> Sub;
        /// Takes the subscription back (it may have fired or gone stale).
        fn unsubscribe(&self, sub: Sub);
    }
}

use private::{Sealed, Sub, SubKind, Token};

/// Something [`wait_any`] and [`iwait`] can wait for: a [`Greenlet`] (ready when finished), an
/// [`Event`] (ready when set) or an [`AsyncResult`] (ready when set). Sealed.
pub trait Waitable: Sealed {
    /// Whether waiting for it would return at once.
    fn is_ready(&self) -> bool {
        self.ready()
    }
}

impl<T: 'static> Sealed for Greenlet<T> {
    fn ready(&self) -> bool {
        self.is_finished()
    }
    fn subscribe(&self, token: &Token) -> Sub {
        subscribe_task(self.core(), token)
    }
    fn unsubscribe(&self, sub: Sub) {
        unsubscribe_task(self.core(), sub);
    }
}
impl<T: 'static> Waitable for Greenlet<T> {}

fn subscribe_task(core: &crate::rt::Core, token: &Token) -> Sub {
    let w: &Waiter = &token.0;
    core.add_joiner(w.clone());
    Sub(SubKind::Joiner(w.core().id, w.gen))
}

fn unsubscribe_task(core: &crate::rt::Core, sub: Sub) {
    if let Sub(SubKind::Joiner(id, gen)) = sub {
        core.remove_joiners(|w| w.core().id == id && w.gen == gen);
    }
}

impl Sealed for Event {
    fn ready(&self) -> bool {
        self.is_set()
    }
    fn subscribe(&self, token: &Token) -> Sub {
        Sub(SubKind::List(self.wait_list().push(token.0.clone(), None)))
    }
    fn unsubscribe(&self, sub: Sub) {
        if let Sub(SubKind::List(t)) = sub {
            self.wait_list().remove(t);
        }
    }
}
impl Waitable for Event {}

impl<T, E> Sealed for AsyncResult<T, E> {
    fn ready(&self) -> bool {
        AsyncResult::ready(self)
    }
    fn subscribe(&self, token: &Token) -> Sub {
        Sub(SubKind::List(self.wait_list().push(token.0.clone(), None)))
    }
    fn unsubscribe(&self, sub: Sub) {
        if let Sub(SubKind::List(t)) = sub {
            self.wait_list().remove(t);
        }
    }
}
impl<T, E> Waitable for AsyncResult<T, E> {}

/// A group member, type-erased.
struct Member(TaskRef);

impl Sealed for Member {
    fn ready(&self) -> bool {
        self.0.core().is_finished()
    }
    fn subscribe(&self, token: &Token) -> Sub {
        subscribe_task(self.0.core(), token)
    }
    fn unsubscribe(&self, sub: Sub) {
        unsubscribe_task(self.0.core(), sub);
    }
}
impl Waitable for Member {}

/// Takes every subscription back, also when a kill unwinds out of the park.
struct Subscriptions<'a> {
    objects: &'a [&'a dyn Waitable],
    subs: Vec<(usize, Sub)>,
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        for (i, sub) in self.subs.drain(..) {
            self.objects[i].unsubscribe(sub);
        }
    }
}

/// Parks until one of `objects` not `skip`ped is ready; returns its index.
fn wait_first(
    objects: &[&dyn Waitable],
    skip: &[bool],
    deadline: Option<Instant>,
) -> Result<usize, TimedOut> {
    let candidates = || (0..objects.len()).filter(|&i| !skip.get(i).copied().unwrap_or(false));
    let hub = current_hub();
    loop {
        if let Some(i) = candidates().find(|&i| objects[i].ready()) {
            return Ok(i);
        }
        if candidates().next().is_none() {
            return Err(TimedOut);
        }
        let token = Token(hub.current_waiter());
        let subs = Subscriptions {
            objects,
            subs: candidates()
                .map(|i| (i, objects[i].subscribe(&token)))
                .collect(),
        };
        drop(token);
        let wake = hub.park(WaitOn::Sync(&"any of several objects"), deadline);
        drop(subs);
        if wake != Wake::Woken {
            return candidates().find(|&i| objects[i].ready()).ok_or(TimedOut);
        }
    }
}

/// Waits until one of `objects` is ready and returns its index (the first ready one in slice
/// order if several are) — gevent's `wait(objects, count=1)`.
///
/// ```
/// use greenhub::{hub, pool::{wait_any, Waitable}, sync::Event};
///
/// hub::run(|| {
///     let never = Event::new();
///     let g = hub::spawn(|| 1);
///     let objs: [&dyn Waitable; 2] = [&never, &g];
///     assert_eq!(wait_any(&objs), Ok(1));
/// });
/// ```
///
/// # Errors
/// [`TimedOut`] if an enclosing timeout scope expires first, or `objects` is empty.
///
/// # Panics
/// Inside the hub; in the main greenlet when none can ever become ready (a deadlock).
#[track_caller]
pub fn wait_any(objects: &[&dyn Waitable]) -> Result<usize, TimedOut> {
    wait_first(objects, &[], None)
}

/// Like [`wait_any`], waiting at most `timeout`; `None` if none became ready in time.
///
/// # Panics
/// As [`wait_any`].
#[track_caller]
pub fn wait_any_timeout(objects: &[&dyn Waitable], timeout: Duration) -> Option<usize> {
    wait_first(objects, &[], deadline_after(timeout)).ok()
}

/// Yields the indices of `objects` as they become ready, each once (gevent's `iwait`); the ones
/// ready already come first, in slice order.
///
/// The iterator ends when every object has been yielded, or early when an enclosing timeout scope
/// expires ([`Iwait::timed_out`] tells which).
///
/// Each step subscribes to every object not yet yielded, so a full iteration over n objects costs
/// O(n²) bookkeeping; for many greenlets prefer a [`Group`] or `imap_unordered`, which are linear.
///
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, pool::{iwait, Waitable}};
///
/// hub::run(|| {
///     let slow = hub::spawn(|| hub::sleep(Duration::from_millis(20)));
///     let fast = hub::spawn(|| hub::sleep(Duration::from_millis(1)));
///     let objs: [&dyn Waitable; 2] = [&slow, &fast];
///     assert_eq!(iwait(&objs).collect::<Vec<_>>(), [1, 0]);
/// });
/// ```
///
/// # Panics
/// `next` panics as [`wait_any`].
#[track_caller]
pub fn iwait<'a>(objects: &'a [&'a dyn Waitable]) -> Iwait<'a> {
    Iwait {
        objects,
        done: vec![false; objects.len()],
        left: objects.len(),
        timed_out: false,
    }
}

/// The iterator of [`iwait`].
pub struct Iwait<'a> {
    objects: &'a [&'a dyn Waitable],
    done: Vec<bool>,
    left: usize,
    timed_out: bool,
}

impl fmt::Debug for Iwait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iwait")
            .field("left", &self.left)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

impl Iwait<'_> {
    /// Whether the iteration ended because an enclosing timeout scope expired.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl Iterator for Iwait<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        match wait_first(self.objects, &self.done, None) {
            Ok(i) => {
                self.done[i] = true;
                self.left -= 1;
                Some(i)
            }
            Err(TimedOut) => {
                self.timed_out = true;
                None
            }
        }
    }
}

/// Joins every greenlet, in order, and returns their results (gevent's `joinall`).
///
/// # Panics
/// As [`Greenlet::join`].
#[track_caller]
pub fn joinall<T: 'static>(
    greenlets: impl IntoIterator<Item = Greenlet<T>>,
) -> Vec<Result<T, GreenletError>> {
    greenlets.into_iter().map(Greenlet::join).collect()
}

/// Kills every greenlet and waits until all have finished unwinding (gevent's `killall`). The
/// kills are all requested before the first wait, so the greenlets unwind together.
///
/// # Panics
/// As [`Greenlet::kill`].
#[track_caller]
pub fn killall<'a, T: 'static>(greenlets: impl IntoIterator<Item = &'a Greenlet<T>>) {
    let mut gs: Vec<&Greenlet<T>> = greenlets.into_iter().collect();
    // The caller, if listed, goes last: killing itself unwinds at once.
    let me = current_hub()
        .current_core("kill greenlets and wait for them")
        .id;
    gs.sort_by_key(|g| g.id() == me);
    for g in &gs {
        g.kill_nowait();
    }
    for g in &gs {
        g.kill();
    }
}

/// A set of greenlets to join or kill together (gevent's `pool.Group`). Finished greenlets leave
/// the group by themselves.
///
/// ```
/// use greenhub::{hub, pool::Group};
///
/// hub::run(|| {
///     let group = Group::new();
///     for i in 0..5 {
///         group.spawn(move || hub::sleep(std::time::Duration::from_millis(i)));
///     }
///     assert_eq!(group.len(), 5);
///     group.join().unwrap();
///     assert!(group.is_empty());
/// });
/// ```
#[derive(Default)]
pub struct Group {
    members: RefCell<Vec<Member>>,
    /// `add` prunes finished members once `members` reaches this length (amortised O(1) adds).
    prune_at: Cell<usize>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group::default()
    }

    fn prune(&self) {
        let mut members = self.members.borrow_mut();
        members.retain(|m| !m.ready());
        self.prune_at.set((2 * members.len()).max(32));
    }

    /// Unfinished greenlets in the group.
    pub fn len(&self) -> usize {
        self.prune();
        self.members.borrow().len()
    }

    /// Whether every greenlet of the group has finished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spawns `f` as a greenlet of the group.
    ///
    /// # Panics
    /// As [`hub::spawn`].
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let g = hub::spawn(f);
        self.add(&g);
        g
    }

    /// Adds a greenlet spawned elsewhere (a finished one is ignored).
    pub fn add<T: 'static>(&self, g: &Greenlet<T>) {
        if self.members.borrow().len() >= self.prune_at.get() {
            self.prune();
        }
        if !g.is_finished() {
            self.members.borrow_mut().push(Member(g.as_task()));
        }
    }

    /// Whether `g` is an unfinished member of the group.
    pub fn contains<T: 'static>(&self, g: &Greenlet<T>) -> bool {
        let id = g.id();
        self.members
            .borrow()
            .iter()
            .any(|m| m.0.core().id == id && !m.ready())
    }

    /// Waits until every greenlet of the group has finished (including ones spawned meanwhile).
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when a member can never finish (a deadlock).
    #[track_caller]
    pub fn join(&self) -> Result<(), TimedOut> {
        self.join_deadline(None)
    }

    /// Like [`join`](Group::join), waiting at most `timeout`; returns whether the group emptied.
    ///
    /// # Panics
    /// As [`join`](Group::join).
    #[track_caller]
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_deadline(deadline_after(timeout)).is_ok()
    }

    fn join_deadline(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        loop {
            self.prune();
            let snapshot: Vec<Member> = self
                .members
                .borrow()
                .iter()
                .map(|m| Member(m.0.clone()))
                .collect();
            if snapshot.is_empty() {
                return Ok(());
            }
            for m in &snapshot {
                wait_first(&[m], &[], deadline)?;
            }
        }
    }

    /// Kills every greenlet of the group and waits until they have finished unwinding.
    ///
    /// # Panics
    /// As [`Greenlet::kill`].
    #[track_caller]
    pub fn kill(&self) {
        let hub = current_hub();
        let me = hub.current_core("kill a group and wait for it").id;
        self.prune();
        let mut victims: Vec<TaskRef> = self.members.borrow().iter().map(|m| m.0.clone()).collect();
        // A member killing its own group goes last: killing itself unwinds at once.
        victims.sort_by_key(|v| v.core().id == me);
        for v in &victims {
            hub.request_kill(v);
        }
        for v in victims {
            // Our own wait can only be cut short by a scope or by our own kill; give up then.
            if wait_first(&[&Member(v)], &[], None).is_err() {
                break;
            }
        }
        self.prune();
    }

    /// Runs `f` on every item, each in its own greenlet of the group, and returns the results in
    /// the items' order (gevent's `map`).
    ///
    /// # Errors
    /// The first error in item order ([`GreenletError::Panicked`] with the payload, `Killed`, or
    /// `TimedOut` when an enclosing scope expires); the greenlets still running are killed.
    ///
    /// # Panics
    /// As [`Greenlet::join`].
    #[track_caller]
    pub fn map<I, F, R>(&self, items: I, f: F) -> Result<Vec<R>, GreenletError>
    where
        I: IntoIterator,
        I::Item: 'static,
        F: Fn(I::Item) -> R + 'static,
        R: 'static,
    {
        map_ordered(items, f, |job| Ok(self.spawn(job)))
    }

    /// Runs `f` on every item, each in its own greenlet of the group, and yields the results as
    /// they finish (gevent's `imap_unordered`). Greenlets still running when the iterator is
    /// dropped are killed.
    pub fn imap_unordered<I, F, R>(&self, items: I, f: F) -> ImapUnordered<'_, I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: 'static,
        F: Fn(I::Item) -> R + 'static,
        R: 'static,
    {
        ImapUnordered::new(Spawner::Group(self), items.into_iter(), f)
    }
}

/// Releases a pool slot when dropped: when the greenlet holding it finishes, or when its closure is
/// dropped unrun (killed before it started).
struct Slot(Rc<Semaphore>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A [`Group`] that runs at most `size` greenlets at a time (gevent's `pool.Pool`):
/// [`spawn`](Pool::spawn) parks the caller until a slot is free.
///
/// ```
/// use greenhub::{hub, pool::Pool};
///
/// hub::run(|| {
///     let pool = Pool::new(2);
///     let a = pool.spawn(|| hub::sleep(std::time::Duration::from_millis(5))).unwrap();
///     let _b = pool.spawn(|| ()).unwrap();
///     assert_eq!(pool.free_count(), 0);
///     a.join().unwrap();
///     pool.join().unwrap();
///     assert_eq!(pool.free_count(), 2);
/// });
/// ```
pub struct Pool {
    group: Group,
    slots: Rc<Semaphore>,
    size: usize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("len", &self.len())
            .field("free", &self.free_count())
            .finish()
    }
}

impl Pool {
    /// A pool of `size` slots.
    ///
    /// # Panics
    /// If `size` is 0 (nothing could ever run).
    #[track_caller]
    pub fn new(size: usize) -> Pool {
        assert!(size > 0, "greenhub: a Pool needs at least one slot");
        Pool {
            group: Group::new(),
            slots: Rc::new(Semaphore::new(size)),
            size,
        }
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Free slots now (gevent's `free_count`).
    pub fn free_count(&self) -> usize {
        self.slots.available()
    }

    /// Unfinished greenlets of the pool.
    pub fn len(&self) -> usize {
        self.group.len()
    }

    /// Whether every greenlet of the pool has finished.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    /// Spawns `f` in the pool, parking the caller until a slot is free (slots are granted FIFO).
    /// The slot is held until the greenlet finishes.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires while waiting for a slot (`f` is dropped).
    ///
    /// # Panics
    /// As [`hub::spawn`]; inside the hub or in a deadlocked main greenlet when the pool is full.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Result<Greenlet<T>, TimedOut>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.slots.acquire()?;
        Ok(self.spawn_in_slot(f))
    }

    /// Spawns `f` if a slot is free now; gives `f` back otherwise.
    ///
    /// # Errors
    /// `Err(f)` when the pool is full.
    pub fn try_spawn<F, T>(&self, f: F) -> Result<Greenlet<T>, F>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.slots.try_acquire() {
            Ok(self.spawn_in_slot(f))
        } else {
            Err(f)
        }
    }

    fn spawn_in_slot<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let slot = Slot(self.slots.clone());
        self.group.spawn(move || {
            let _slot = slot;
            f()
        })
    }

    /// Adds a greenlet spawned elsewhere to the pool's group (it takes no slot).
    pub fn add<T: 'static>(&self, g: &Greenlet<T>) {
        self.group.add(g);
    }

    /// As [`Group::join`].
    ///
    /// # Errors
    /// As [`Group::join`].
    ///
    /// # Panics
    /// As [`Group::join`].
    #[track_caller]
    pub fn join(&self) -> Result<(), TimedOut> {
        self.group.join()
    }

    /// As [`Group::join_timeout`].
    ///
    /// # Panics
    /// As [`Group::join`].
    #[track_caller]
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.group.join_timeout(timeout)
    }

    /// As [`Group::kill`]; the slots come back as the greenlets finish.
    ///
    /// # Panics
    /// As [`Greenlet::kill`].
    #[track_caller]
    pub fn kill(&self) {
        self.group.kill();
    }

    /// As [`Group::map`], running at most `size` at a time.
    ///
    /// # Errors
    /// As [`Group::map`].
    ///
    /// # Panics
    /// As [`Greenlet::join`].
    #[track_caller]
    pub fn map<I, F, R>(&self, items: I, f: F) -> Result<Vec<R>, GreenletError>
    where
        I: IntoIterator,
        I::Item: 'static,
        F: Fn(I::Item) -> R + 'static,
        R: 'static,
    {
        map_ordered(items, f, |job| self.spawn(job))
    }

    /// As [`Group::imap_unordered`], running at most `size` at a time; items are taken from the
    /// iterator only as slots free up.
    pub fn imap_unordered<I, F, R>(&self, items: I, f: F) -> ImapUnordered<'_, I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: 'static,
        F: Fn(I::Item) -> R + 'static,
        R: 'static,
    {
        ImapUnordered::new(Spawner::Pool(self), items.into_iter(), f)
    }
}

type Job<R> = Box<dyn FnOnce() -> R>;

fn map_ordered<I, F, R>(
    items: I,
    f: F,
    spawn: impl Fn(Job<R>) -> Result<Greenlet<R>, TimedOut>,
) -> Result<Vec<R>, GreenletError>
where
    I: IntoIterator,
    I::Item: 'static,
    F: Fn(I::Item) -> R + 'static,
    R: 'static,
{
    let f = Rc::new(f);
    // Set by the first job that panics or is killed (with its index), so the in-order joins below
    // stop waiting for slower greenlets ahead of it.
    let failed = Rc::new(Event::new());
    let first_failed = Rc::new(Cell::new(None::<usize>));
    let mut running = Vec::new();
    for (idx, item) in items.into_iter().enumerate() {
        let (f, failed, first_failed) = (f.clone(), failed.clone(), first_failed.clone());
        let job = move || match panic::catch_unwind(AssertUnwindSafe(|| f(item))) {
            Ok(v) => v,
            Err(p) => {
                if first_failed.get().is_none() {
                    first_failed.set(Some(idx));
                }
                failed.set();
                panic::resume_unwind(p) // the greenlet ends as it would have (panicked/killed)
            }
        };
        match spawn(Box::new(job)) {
            Ok(g) => running.push(g),
            Err(TimedOut) => {
                killall(&running);
                return Err(GreenletError::TimedOut);
            }
        }
    }
    let mut out = Vec::with_capacity(running.len());
    let mut rest = running.into_iter();
    while let Some(g) = rest.next() {
        let objs: [&dyn Waitable; 2] = [&g, &*failed];
        let error = match wait_first(&objs, &[], None) {
            Ok(0) => match g.join() {
                Ok(v) => {
                    out.push(v);
                    continue;
                }
                Err(e) => e,
            },
            Ok(_) => {
                // Some job failed: report the first one that did. Every job before `g` succeeded,
                // so it is `g` or one after it.
                let mut pending: Vec<_> = std::iter::once(g).chain(rest.by_ref()).collect();
                let i = first_failed.get().map_or(0, |idx| idx - out.len());
                let culprit = pending.remove(i);
                killall(&pending);
                match culprit.join() {
                    Ok(_) => GreenletError::Killed,
                    Err(e) => e,
                }
            }
            Err(TimedOut) => GreenletError::TimedOut,
        };
        let rest: Vec<_> = rest.collect();
        killall(&rest);
        return Err(error);
    }
    Ok(out)
}

enum Spawner<'a> {
    Group(&'a Group),
    Pool(&'a Pool),
}

/// Reports a job's sequence number to its iterator when dropped: when the job returns, panics or
/// is killed, and when its closure is dropped unrun (killed before it started).
struct Finished {
    done: Rc<Queue<u64>>,
    seq: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        // Unbounded: never waits, never fails.
        let _ = self.done.try_put(self.seq);
    }
}

/// The iterator of [`Group::imap_unordered`] and [`Pool::imap_unordered`]: yields each greenlet's
/// result as it finishes.
///
/// `next` parks the calling greenlet. It ends early (returns `None`) if an enclosing timeout
/// scope expires; the greenlets still running are killed when the iterator is dropped.
pub struct ImapUnordered<'a, I: Iterator, F, R: 'static> {
    spawner: Spawner<'a>,
    items: I,
    f: Rc<F>,
    /// Our greenlets by sequence number, until their result is yielded.
    running: HashMap<u64, Greenlet<R>>,
    /// Sequence numbers of finished jobs, in completion order.
    done: Rc<Queue<u64>>,
    next_seq: u64,
    exhausted: bool,
}

impl<I: Iterator, F, R: 'static> fmt::Debug for ImapUnordered<'_, I, F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("running", &self.running.len())
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<'a, I, F, R> ImapUnordered<'a, I, F, R>
where
    I: Iterator,
    I::Item: 'static,
    F: Fn(I::Item) -> R + 'static,
    R: 'static,
{
    fn new(spawner: Spawner<'a>, items: I, f: F) -> Self {
        ImapUnordered {
            spawner,
            items,
            f: Rc::new(f),
            running: HashMap::new(),
            done: Rc::new(Queue::new()),
            next_seq: 0,
            exhausted: false,
        }
    }

    fn job(&mut self, item: I::Item) -> (u64, impl FnOnce() -> R + 'static) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let f = self.f.clone();
        let finished = Finished {
            done: self.done.clone(),
            seq,
        };
        (seq, move || {
            let _finished = finished;
            f(item)
        })
    }

    /// Starts greenlets for as many items as may run now; blocks for a slot only when nothing of
    /// ours is running. Returns false if a scope expired while waiting for a slot.
    fn fill(&mut self) -> bool {
        while !self.exhausted {
            if let Spawner::Pool(p) = self.spawner {
                if p.free_count() == 0 && !self.running.is_empty() {
                    break;
                }
            }
            let Some(item) = self.items.next() else {
                self.exhausted = true;
                break;
            };
            let (seq, job) = self.job(item);
            let g = match self.spawner {
                Spawner::Group(g) => g.spawn(job),
                Spawner::Pool(p) => match p.spawn(job) {
                    Ok(g) => g,
                    Err(TimedOut) => return false,
                },
            };
            self.running.insert(seq, g);
        }
        true
    }
}

impl<I, F, R> Iterator for ImapUnordered<'_, I, F, R>
where
    I: Iterator,
    I::Item: 'static,
    F: Fn(I::Item) -> R + 'static,
    R: 'static,
{
    type Item = Result<R, GreenletError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.fill() || self.running.is_empty() {
            return None;
        }
        let seq = self.done.get().ok()?;
        let g = self
            .running
            .remove(&seq)
            .expect("greenhub: imap_unordered lost track of a greenlet");
        // It reported from its last destructor: the join returns at once or after its last step.
        Some(g.join())
    }
}

impl<I: Iterator, F, R: 'static> Drop for ImapUnordered<'_, I, F, R> {
    fn drop(&mut self) {
        for g in self.running.values() {
            g.kill_nowait();
        }
    }
}
