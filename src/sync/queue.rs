//! [`Queue`] (FIFO, LIFO, priority; bounded or not), [`JoinableQueue`] and [`Channel`].

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};

/// The order in which a [`Queue`] hands out its items.
///
/// Implemented by [`Fifo`] (the default), [`Lifo`] and [`Priority`]; implement it to make a
/// queue with another discipline.
pub trait Order<T>: Default {
    /// Stores an item.
    fn push(&mut self, item: T);
    /// Takes the next item to hand out.
    fn pop(&mut self) -> Option<T>;
    /// Puts back an item that `pop` returned, so that it is the next one `pop` returns (used when
    /// the greenlet it was handed to is killed before it could take it).
    fn unpop(&mut self, item: T);
    /// Items stored.
    fn len(&self) -> usize;
    /// Whether no item is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out (gevent's `Queue`).
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out (gevent's `LifoQueue`).
pub struct Lifo<T>(Vec<T>);

/// Greatest item first, by `Ord`, as `std::collections::BinaryHeap` (gevent's `PriorityQueue`
/// hands out the *lowest* first: wrap items in `std::cmp::Reverse` for that order). Equal items
/// come out in no particular order.
pub struct Priority<T: Ord>(BinaryHeap<T>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority(BinaryHeap::new())
    }
}

impl<T> Order<T> for Fifo<T> {
    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn unpop(&mut self, item: T) {
        self.0.push_front(item);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Order<T> for Lifo<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn unpop(&mut self, item: T) {
        self.0.push(item);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Order<T> for Priority<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn unpop(&mut self, item: T) {
        self.0.push(item);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A put that could not complete: the queue was (and stayed) full. Carries the item back.
///
/// Returned by `try_put` at once, by `put_timeout` when the time ran out, and by `put` when an
/// enclosing timeout scope expired.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue is full")
    }
}

impl<T> std::error::Error for Full<T> {}

impl<T> From<Full<T>> for TimedOut {
    fn from(_: Full<T>) -> TimedOut {
        TimedOut
    }
}

/// A queue of items between greenlets: bounded or unbounded, FIFO by default, LIFO with
/// [`Queue::lifo`], by priority with [`Queue::priority`] (gevent's `Queue`, `LifoQueue`,
/// `PriorityQueue`).
///
/// [`get`](Queue::get) parks while the queue is empty; [`put`](Queue::put) parks while a bounded
/// queue is full. Items go to waiting getters directly and waiting putters' items go into the queue
/// as space frees up, both in FIFO order of the waiters. gevent's `put_nowait`/`get_nowait` are
/// [`try_put`](Queue::try_put)/[`try_get`](Queue::try_get); `put(timeout=)`/`get(timeout=)` are
/// [`put_timeout`](Queue::put_timeout)/[`get_timeout`](Queue::get_timeout).
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::Queue};
///
/// hub::run(|| {
///     let q = Rc::new(Queue::bounded(2));
///     let producer = {
///         let q = q.clone();
///         hub::spawn(move || {
///             for i in 0..10 {
///                 q.put(i).unwrap(); // parks while two items are queued
///             }
///         })
///     };
///     let got: Vec<u32> = (0..10).map(|_| q.get().unwrap()).collect();
///     producer.join().unwrap();
///     assert_eq!(got, (0..10).collect::<Vec<_>>());
/// });
/// ```
pub struct Queue<T, O: Order<T> = Fifo<T>> {
    items: RefCell<O>,
    /// `None`: unbounded. `Some(0)`: no storage at all, every put waits for a getter (a
    /// [`Channel`]).
    capacity: Option<usize>,
    /// Getter-style: items are handed into their entries. Pending getters imply `items` is empty.
    getters: WaitList<T>,
    /// Putter-style: each entry holds the item its greenlet wants to put.
    putters: WaitList<T>,
}

/// A queue that hands out the last item put first.
pub type LifoQueue<T> = Queue<T, Lifo<T>>;

/// A queue that hands out the greatest item first.
pub type PriorityQueue<T> = Queue<T, Priority<T>>;

impl<T, O: Order<T>> fmt::Debug for Queue<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("getters", &self.getters.len())
            .field("putters", &self.putters.len())
            .finish()
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<T> Queue<T> {
    /// An unbounded FIFO queue.
    pub fn new() -> Queue<T> {
        Queue::with_order(None)
    }

    /// A FIFO queue holding at most `capacity` items; `bounded(0)` stores nothing (every put
    /// waits for a getter, as a [`Channel`]).
    pub fn bounded(capacity: usize) -> Queue<T> {
        Queue::with_order(Some(capacity))
    }
}

impl<T> Queue<T, Lifo<T>> {
    /// An unbounded LIFO queue.
    pub fn lifo() -> LifoQueue<T> {
        Queue::with_order(None)
    }

    /// A LIFO queue holding at most `capacity` items.
    pub fn lifo_bounded(capacity: usize) -> LifoQueue<T> {
        Queue::with_order(Some(capacity))
    }
}

impl<T: Ord> Queue<T, Priority<T>> {
    /// An unbounded priority queue (greatest item first).
    pub fn priority() -> PriorityQueue<T> {
        Queue::with_order(None)
    }

    /// A priority queue holding at most `capacity` items.
    pub fn priority_bounded(capacity: usize) -> PriorityQueue<T> {
        Queue::with_order(Some(capacity))
    }
}

impl<T, O: Order<T>> Queue<T, O> {
    /// A queue with order `O` and the given capacity (`None`: unbounded).
    pub fn with_order(capacity: Option<usize>) -> Queue<T, O> {
        Queue {
            items: RefCell::new(O::default()),
            capacity,
            getters: WaitList::new(),
            putters: WaitList::new(),
        }
    }

    /// Items in the queue (gevent's `qsize`); items held by waiting putters are not counted.
    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// Whether the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a put would have to wait for space (always false when unbounded).
    pub fn is_full(&self) -> bool {
        self.capacity.is_some_and(|c| self.len() >= c)
    }

    /// The capacity given at construction (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Greenlets waiting in `get`.
    pub fn getters(&self) -> usize {
        self.getters.len()
    }

    /// Greenlets waiting in `put`.
    pub fn putters(&self) -> usize {
        self.putters.len()
    }

    /// Puts `item` without waiting (gevent's `put_nowait`): hands it to a waiting getter, or stores
    /// it if there is room and no putter is waiting ahead.
    ///
    /// # Errors
    /// [`Full`] with the item if it would have to wait.
    pub fn try_put(&self, item: T) -> Result<(), Full<T>> {
        let item = match self.getters.hand(item) {
            Ok(()) => return Ok(()),
            Err(item) => item,
        };
        if !self.is_full() && !self.putters.has_pending() {
            self.items.borrow_mut().push(item);
            Ok(())
        } else {
            Err(Full(item))
        }
    }

    /// Puts `item`, parking while the queue is full.
    ///
    /// # Errors
    /// [`Full`] with the item if an enclosing timeout scope expires first (or the greenlet is
    /// unwinding from a kill).
    ///
    /// # Panics
    /// Inside the hub when the queue is full; in the main greenlet when no getter can ever make
    /// room (a deadlock).
    #[track_caller]
    pub fn put(&self, item: T) -> Result<(), Full<T>> {
        self.put_deadline(item, None)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Full`] with the item if there was no room in time.
    ///
    /// # Panics
    /// As [`put`](Queue::put).
    #[track_caller]
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.put_deadline(item, deadline_after(timeout))
    }

    /// Puts `item`, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`Full`] with the item if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`put`](Queue::put).
    #[track_caller]
    pub fn put_deadline(&self, item: T, deadline: Option<Instant>) -> Result<(), Full<T>> {
        let item = match self.try_put(item) {
            Ok(()) => return Ok(()),
            Err(Full(item)) => item,
        };
        // Our item waits in our entry; a getter (or `refill`) takes it from there. If a kill
        // unwinds us first, the item is dropped with the entry.
        let out = waitlist::wait(
            &self.putters,
            Some(item),
            &"a Queue (put)",
            deadline,
            |_| {},
        );
        if out.notified {
            Ok(())
        } else {
            Err(Full(out.value.expect("an untaken put lost its item")))
        }
    }

    /// Takes the next item without waiting (gevent's `get_nowait`); `None` if there is none.
    pub fn try_get(&self) -> Option<T> {
        let item = self.items.borrow_mut().pop();
        match item {
            Some(item) => {
                self.refill();
                Some(item)
            }
            // With nothing stored, a putter can only be waiting on a zero-capacity queue.
            None => self.putters.take(),
        }
    }

    /// Takes the next item, parking while the queue is empty.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first (or the greenlet is unwinding from
    /// a kill).
    ///
    /// # Panics
    /// Inside the hub when the queue is empty; in the main greenlet when no item can ever come (a
    /// deadlock).
    #[track_caller]
    pub fn get(&self) -> Result<T, TimedOut> {
        self.get_deadline(None)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if no item came in time.
    ///
    /// # Panics
    /// As [`get`](Queue::get).
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TimedOut> {
        self.get_deadline(deadline_after(timeout))
    }

    /// Takes the next item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`TimedOut`] if the deadline (or an enclosing scope's) passes first.
    ///
    /// # Panics
    /// As [`get`](Queue::get).
    #[track_caller]
    pub fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, TimedOut> {
        if let Some(item) = self.try_get() {
            return Ok(item);
        }
        // An item handed to us while a kill unwinds us out of the park goes back to the front.
        let out = waitlist::wait(&self.getters, None, &"a Queue (get)", deadline, |r| {
            if let Some(item) = r.value {
                self.put_back(item);
            }
        });
        match out.value {
            Some(item) => Ok(item),
            None => Err(TimedOut),
        }
    }

    /// Moves waiting putters' items into the room that a get made.
    fn refill(&self) {
        while !self.is_full() {
            let Some(item) = self.putters.take() else {
                break;
            };
            self.items.borrow_mut().push(item);
        }
    }

    /// Returns an item that was handed to a getter that could not take it: to the next getter, or
    /// to the front of the queue (a bounded queue may exceed its capacity by it until the next get).
    fn put_back(&self, item: T) {
        if let Err(item) = self.getters.hand(item) {
            self.items.borrow_mut().unpop(item);
        }
    }
}

/// A FIFO [`Queue`] that also counts unfinished tasks (gevent's `JoinableQueue`): every put adds
/// one, [`task_done`](JoinableQueue::task_done) removes one, and [`join`](JoinableQueue::join) waits
/// until none is left.
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::JoinableQueue};
///
/// hub::run(|| {
///     let q = Rc::new(JoinableQueue::new());
///     let worker = {
///         let q = q.clone();
///         hub::spawn(move || loop {
///             let _job: u32 = q.get().unwrap();
///             q.task_done();
///         })
///     };
///     for i in 0..5 {
///         q.put(i).unwrap();
///     }
///     q.join().unwrap();
///     assert_eq!(q.unfinished(), 0);
///     worker.kill();
/// });
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    unfinished: Cell<usize>,
    joiners: WaitList<()>,
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished.get())
            .finish()
    }
}

impl<T> Default for JoinableQueue<T> {
    fn default() -> Self {
        JoinableQueue::new()
    }
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> JoinableQueue<T> {
        JoinableQueue::from_queue(Queue::new())
    }

    /// A joinable queue holding at most `capacity` items.
    pub fn bounded(capacity: usize) -> JoinableQueue<T> {
        JoinableQueue::from_queue(Queue::bounded(capacity))
    }

    fn from_queue(queue: Queue<T>) -> JoinableQueue<T> {
        JoinableQueue {
            queue,
            unfinished: Cell::new(0),
            joiners: WaitList::new(),
        }
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.unfinished.get()
    }

    /// Items in the queue.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn count<E>(&self, r: Result<(), E>) -> Result<(), E> {
        if r.is_ok() {
            self.unfinished.set(self.unfinished.get() + 1);
        }
        r
    }

    /// As [`Queue::try_put`]; a put item counts as unfinished.
    ///
    /// # Errors
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), Full<T>> {
        self.count(self.queue.try_put(item))
    }

    /// As [`Queue::put`]; a put item counts as unfinished.
    ///
    /// # Errors
    /// As [`Queue::put`].
    ///
    /// # Panics
    /// As [`Queue::put`].
    #[track_caller]
    pub fn put(&self, item: T) -> Result<(), Full<T>> {
        self.count(self.queue.put(item))
    }

    /// As [`Queue::put_timeout`]; a put item counts as unfinished.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`].
    ///
    /// # Panics
    /// As [`Queue::put`].
    #[track_caller]
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.count(self.queue.put_timeout(item, timeout))
    }

    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Option<T> {
        self.queue.try_get()
    }

    /// As [`Queue::get`].
    ///
    /// # Errors
    /// As [`Queue::get`].
    ///
    /// # Panics
    /// As [`Queue::get`].
    #[track_caller]
    pub fn get(&self) -> Result<T, TimedOut> {
        self.queue.get()
    }

    /// As [`Queue::get_timeout`].
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    ///
    /// # Panics
    /// As [`Queue::get`].
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TimedOut> {
        self.queue.get_timeout(timeout)
    }

    /// Marks one item as processed; when none is left unfinished, wakes every `join`.
    ///
    /// # Panics
    /// If called more times than items were put.
    #[track_caller]
    pub fn task_done(&self) {
        let n = self.unfinished.get();
        assert!(
            n > 0,
            "greenhub: JoinableQueue::task_done called more times than items were put"
        );
        self.unfinished.set(n - 1);
        if n == 1 {
            self.joiners.notify_all();
        }
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when the count can never reach zero (a deadlock).
    #[track_caller]
    pub fn join(&self) -> Result<(), TimedOut> {
        self.join_deadline(None)
    }

    /// Waits at most `timeout` until every item put has been marked done; returns whether they
    /// were.
    ///
    /// # Panics
    /// As [`join`](JoinableQueue::join).
    #[track_caller]
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_deadline(deadline_after(timeout)).is_ok()
    }

    fn join_deadline(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        while self.unfinished.get() > 0 {
            let out = waitlist::wait(&self.joiners, None, &"a JoinableQueue", deadline, |_| {});
            if !out.notified && self.unfinished.get() > 0 {
                return Err(TimedOut);
            }
        }
        Ok(())
    }
}

/// A rendezvous channel (gevent's `Channel`): it stores nothing, so [`put`](Channel::put) parks
/// until a getter takes the item and [`get`](Channel::get) parks until a putter offers one.
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::Channel};
///
/// hub::run(|| {
///     let ch = Rc::new(Channel::new());
///     let c = ch.clone();
///     let putter = hub::spawn(move || c.put("hello").unwrap()); // returns once taken
///     assert_eq!(ch.get().unwrap(), "hello");
///     putter.join().unwrap();
/// });
/// ```
pub struct Channel<T> {
    queue: Queue<T>,
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("getters", &self.queue.getters())
            .field("putters", &self.queue.putters())
            .finish()
    }
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Channel::new()
    }
}

impl<T> Channel<T> {
    /// A new channel.
    pub fn new() -> Channel<T> {
        Channel {
            queue: Queue::bounded(0),
        }
    }

    /// Hands `item` to a waiting getter, parking until one takes it.
    ///
    /// # Errors
    /// [`Full`] with the item if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when no getter can ever come (a deadlock).
    #[track_caller]
    pub fn put(&self, item: T) -> Result<(), Full<T>> {
        self.queue.put(item)
    }

    /// Like [`put`](Channel::put), waiting at most `timeout` for a getter.
    ///
    /// # Errors
    /// [`Full`] with the item if no getter took it in time.
    ///
    /// # Panics
    /// As [`put`](Channel::put).
    #[track_caller]
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.queue.put_timeout(item, timeout)
    }

    /// Hands `item` to a getter that is already waiting (gevent's `put_nowait`).
    ///
    /// # Errors
    /// [`Full`] with the item if no getter is waiting.
    pub fn try_put(&self, item: T) -> Result<(), Full<T>> {
        self.queue.try_put(item)
    }

    /// Takes an item from a putter, parking until one offers it.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when no putter can ever come (a deadlock).
    #[track_caller]
    pub fn get(&self) -> Result<T, TimedOut> {
        self.queue.get()
    }

    /// Like [`get`](Channel::get), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] if no putter came in time.
    ///
    /// # Panics
    /// As [`get`](Channel::get).
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TimedOut> {
        self.queue.get_timeout(timeout)
    }

    /// Takes an item from a putter that is already waiting (gevent's `get_nowait`).
    pub fn try_get(&self) -> Option<T> {
        self.queue.try_get()
    }

    /// Greenlets waiting in `get`.
    pub fn getters(&self) -> usize {
        self.queue.getters()
    }

    /// Greenlets waiting in `put`.
    pub fn putters(&self) -> usize {
        self.queue.putters()
    }
}
