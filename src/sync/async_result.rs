//! [`AsyncResult`]: a value or an error that greenlets wait for (gevent's `AsyncResult`).

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

use super::waitlist::{self, WaitList};
use super::{deadline_after, TimedOut};

/// Why [`AsyncResult::get`] returned no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetError<E> {
    /// The result was set to this error with [`AsyncResult::set_error`].
    Failed(E),
    /// Nothing was set in time (the `_timeout` form's own timeout, or an enclosing timeout
    /// scope), or the greenlet is unwinding from a kill.
    TimedOut,
}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Failed(e) => write!(f, "the result is an error: {e}"),
            GetError::TimedOut => f.write_str("timed out waiting for the result"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GetError<E> {}

impl<E> From<TimedOut> for GetError<E> {
    fn from(_: TimedOut) -> Self {
        GetError::TimedOut
    }
}

/// A one-shot result that greenlets wait for: [`set`](AsyncResult::set) stores a value (or
/// [`set_error`](AsyncResult::set_error) an error, gevent's `set_exception`) and wakes every
/// waiter; [`get`](AsyncResult::get) returns a **clone** of it to each, as often as asked. For a
/// value that is not `Clone`, store an `Rc<T>`. Setting again replaces the result (as in gevent).
///
/// ```
/// use std::rc::Rc;
/// use greenhub::{hub, sync::{AsyncResult, GetError}};
///
/// hub::run(|| {
///     let r: Rc<AsyncResult<u32, String>> = Rc::new(AsyncResult::new());
///     let r2 = r.clone();
///     hub::spawn(move || r2.set(42));
///     assert_eq!(r.get(), Ok(42));
///     let e: AsyncResult<u32, String> = AsyncResult::new();
///     e.set_error("no".to_string());
///     assert_eq!(e.get(), Err(GetError::Failed("no".to_string())));
/// });
/// ```
pub struct AsyncResult<T, E> {
    result: RefCell<Option<Result<T, E>>>,
    waiters: WaitList<()>,
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl<T, E> Default for AsyncResult<T, E> {
    fn default() -> Self {
        AsyncResult::new()
    }
}

impl<T, E> AsyncResult<T, E> {
    /// An empty result.
    pub fn new() -> Self {
        AsyncResult {
            result: RefCell::new(None),
            waiters: WaitList::new(),
        }
    }

    /// Stores `value` and wakes every waiter. Usable from inside the hub.
    pub fn set(&self, value: T) {
        self.store(Ok(value));
    }

    /// Stores `error` and wakes every waiter (gevent's `set_exception`).
    pub fn set_error(&self, error: E) {
        self.store(Err(error));
    }

    fn store(&self, r: Result<T, E>) {
        let old = self.result.borrow_mut().replace(r);
        drop(old);
        self.waiters.notify_all();
    }

    /// Whether a value or an error has been set.
    pub fn ready(&self) -> bool {
        self.result.borrow().is_some()
    }

    /// Whether a value (not an error) has been set.
    pub fn successful(&self) -> bool {
        matches!(*self.result.borrow(), Some(Ok(_)))
    }

    /// Waits until the result is set, without taking it.
    ///
    /// # Errors
    /// [`TimedOut`] if an enclosing timeout scope expires first.
    ///
    /// # Panics
    /// Inside the hub; in the main greenlet when nothing can ever set it (a deadlock).
    #[track_caller]
    pub fn wait(&self) -> Result<(), TimedOut> {
        self.wait_deadline(None)
    }

    /// The wait list, for multi-waits (`pool::wait_any`).
    pub(crate) fn wait_list(&self) -> &WaitList<()> {
        &self.waiters
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        while !self.ready() {
            let out = waitlist::wait(&self.waiters, None, &"an AsyncResult", deadline, |_| {});
            if !out.notified && !self.ready() {
                return Err(TimedOut);
            }
        }
        Ok(())
    }
}

impl<T: Clone, E: Clone> AsyncResult<T, E> {
    /// The result if it is set, without waiting (gevent's `get(block=False)`).
    pub fn try_get(&self) -> Option<Result<T, E>> {
        self.result.borrow().clone()
    }

    /// Waits until the result is set and returns a clone of it.
    ///
    /// # Errors
    /// [`GetError::Failed`] with the error that was set; [`GetError::TimedOut`] if an enclosing
    /// timeout scope expires first.
    ///
    /// # Panics
    /// As [`wait`](AsyncResult::wait).
    #[track_caller]
    pub fn get(&self) -> Result<T, GetError<E>> {
        self.get_deadline(None)
    }

    /// Like [`get`](AsyncResult::get), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get`](AsyncResult::get); `TimedOut` if nothing was set in time.
    ///
    /// # Panics
    /// As [`wait`](AsyncResult::wait).
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError<E>> {
        self.get_deadline(deadline_after(timeout))
    }

    /// Like [`get`](AsyncResult::get), waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`get`](AsyncResult::get).
    ///
    /// # Panics
    /// As [`wait`](AsyncResult::wait).
    #[track_caller]
    pub fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, GetError<E>> {
        self.wait_deadline(deadline)?;
        match self.try_get() {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(GetError::Failed(e)),
            None => Err(GetError::TimedOut),
        }
    }
}
