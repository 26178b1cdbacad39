//! Greenlet-local values (gevent's `gevent.local.local`, tokio's `task_local!`): declared with
//! [`greenlet_local!`](crate::greenlet_local), each greenlet sees its own value.
//!
//! ```
//! use std::cell::Cell;
//! use greenhub::{greenlet_local, hub};
//!
//! greenlet_local! {
//!     static REQUESTS: Cell<u32> = Cell::new(0);
//! }
//!
//! hub::run(|| {
//!     let gs: Vec<_> = (1..=3)
//!         .map(|n| hub::spawn(move || {
//!             for _ in 0..n {
//!                 REQUESTS.with(|r| r.set(r.get() + 1));
//!                 hub::yield_now(); // the others run, each with its own counter
//!             }
//!             REQUESTS.with(Cell::get)
//!         }))
//!         .collect();
//!     let counts: Vec<u32> = gs.into_iter().map(|g| g.join().unwrap()).collect();
//!     assert_eq!(counts, [1, 2, 3]);
//!     assert_eq!(REQUESTS.with(Cell::get), 0); // hub::run's own greenlet never counted
//! });
//! ```
//!
//! # Life of a value
//!
//! - **Lazy.** A greenlet's value is made by the initialiser on its first access from that
//!   greenlet (the main greenlet included). The initialiser runs on the greenlet's stack and may
//!   block or use other greenlet-locals.
//! - **Dropped when the greenlet finishes**: after its closure returns, panics or unwinds from a
//!   kill, on the greenlet's own stack, before anyone joining it is woken. A destructor may block;
//!   one that panics makes the greenlet's join report that panic (if it had succeeded). Values of
//!   one greenlet are dropped in the order their keys were first used in the process.
//! - **Main greenlet**: its values live until the hub is torn down (at thread exit), and are dropped
//!   then, on the thread's own stack, after every worker has unwound.
//! - **Abandoned greenlets** (teardown gave up killing them) drop their values with their control
//!   block, wherever its last reference goes.
//! - During or after the drop, [`LocalKey::try_with`] returns [`AccessError`] (and
//!   [`LocalKey::with`] panics), as `thread_local!` does.
//!
//! # Cost
//!
//! A greenlet that never touches a greenlet-local pays one pointer in its control block (the
//! context slot, `None`), and nothing per switch. The first access by a greenlet allocates its
//! context (a small box, shared with its tracing span context) and a vector slot per key index up
//! to the key's; then one `Rc` per value. An access is: the hub's thread-local pointer, the running
//! greenlet's control block, a take/put-back of the context box, an index, an `Rc` clone and drop
//! (no atomics), and the type check of the downcast (BENCHMARKS.md, "greenlet-local access", has
//! the instruction count).
//!
//! Greenlet-locals are per greenlet; `thread_local!` values are per OS thread, so all the greenlets
//! of a hub share them (ARCHITECTURE.md, "What is per greenlet, what is per thread").

#![deny(unsafe_code)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Declares greenlet-local statics, with the syntax of `thread_local!`.
///
/// Each `static NAME: T = init;` becomes a [`LocalKey<T>`]; `NAME.with(|v| ..)` gives the running
/// greenlet's value, made by `init` on the greenlet's first access. See [the module
/// docs](crate::local) for when values are made and dropped, and what an access costs.
///
/// ```
/// use std::cell::RefCell;
/// use greenhub::{greenlet_local, hub};
///
/// greenlet_local! {
///     /// The request id the running greenlet serves.
///     pub static REQUEST_ID: RefCell<Option<u64>> = RefCell::new(None);
///     static SEEN: RefCell<Vec<&'static str>> = RefCell::new(Vec::new());
/// }
///
/// let g = hub::spawn(|| {
///     REQUEST_ID.with(|id| *id.borrow_mut() = Some(7));
///     hub::yield_now();
///     REQUEST_ID.with(|id| *id.borrow())
/// });
/// assert_eq!(REQUEST_ID.with(|id| *id.borrow()), None); // the main greenlet's own value
/// assert_eq!(g.join().unwrap(), Some(7));
/// SEEN.with(|s| s.borrow_mut().push("main"));
/// ```
#[macro_export]
macro_rules! greenlet_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::greenlet_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::greenlet_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::local::LocalKey<$t> = {
            fn __greenhub_init() -> $t {
                $init
            }
            $crate::local::LocalKey::new(__greenhub_init)
        };
    };
}

/// A greenlet-local key, declared with [`greenlet_local!`](crate::greenlet_local) (the
/// counterpart of `std::thread::LocalKey`).
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// 1 + this key's slot in every greenlet's context, assigned on first use; 0 until then.
    index: AtomicUsize,
}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

/// Slots handed out to keys so far, process-wide.
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// A greenlet-local value was used while (or after) its greenlet's values were being dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError;

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("greenlet-local value used during or after its greenlet's teardown")
    }
}

impl std::error::Error for AccessError {}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            index: AtomicUsize::new(0),
        }
    }

    /// This key's slot index, assigned on first use.
    #[inline]
    fn index(&self) -> usize {
        match self.index.load(Ordering::Relaxed) {
            0 => self.assign_index(),
            i => i - 1,
        }
    }

    #[cold]
    fn assign_index(&self) -> usize {
        let mine = NEXT_INDEX.fetch_add(1, Ordering::Relaxed) + 1;
        match self
            .index
            .compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => mine - 1,
            // Another thread assigned one first; ours stays unused.
            Err(theirs) => theirs - 1,
        }
    }

    /// Runs `f` with the running greenlet's value, making it first if this greenlet has none.
    ///
    /// `f` may block: other greenlets run meanwhile and see their own values.
    ///
    /// # Panics
    /// If the greenlet's values are being (or have been) dropped (see
    /// [`try_with`](Self::try_with)); inside the hub context (a hub callback, or a destructor the
    /// hub runs), which is no greenlet; after this thread's hub was torn down; and if the
    /// initialiser panics.
    ///
    /// # Examples
    /// ```
    /// use std::cell::Cell;
    /// greenhub::greenlet_local!(static DEPTH: Cell<u32> = Cell::new(0));
    ///
    /// DEPTH.with(|d| d.set(d.get() + 1));
    /// assert_eq!(DEPTH.with(Cell::get), 1);
    /// ```
    #[track_caller]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!("greenhub: {e}"),
        }
    }

    /// Like [`with`](Self::with), but returns [`AccessError`] instead of panicking when the running
    /// greenlet's values are being dropped or were dropped (a destructor of one greenlet-local
    /// using another; the main greenlet's teardown).
    ///
    /// # Errors
    /// [`AccessError`] as described.
    ///
    /// # Panics
    /// Inside the hub context, after this thread's hub was torn down, and if the initialiser
    /// panics.
    #[track_caller]
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        let index = self.index();
        let hub = crate::rt::current_hub();
        let core = hub.current_core("use a greenlet-local value");
        let found = core
            .context_with(true, |c| {
                if c.destroyed {
                    return Err(AccessError);
                }
                Ok(c.locals.get(index).and_then(Clone::clone))
            })
            .expect("created on demand")?;
        let value = match found {
            Some(v) => v,
            None => self.initialise(core, index)?,
        };
        let value = value
            .downcast_ref::<T>()
            .expect("greenhub: a greenlet-local slot holds another type");
        Ok(f(value))
    }

    /// Makes the running greenlet's value and stores it (unless the initialiser itself stored
    /// one, by using this key: then that one wins and ours is dropped).
    #[cold]
    #[inline(never)]
    fn initialise(&self, core: &crate::rt::Core, index: usize) -> Result<Rc<dyn Any>, AccessError> {
        let fresh: Rc<dyn Any> = Rc::new((self.init)());
        // Stored, or already there (then `fresh` is dropped below, outside the context box).
        let kept = core
            .context_with(true, |c| {
                if c.destroyed {
                    return Err(AccessError);
                }
                if c.locals.len() <= index {
                    c.locals.resize_with(index + 1, || None);
                }
                Ok(c.locals[index].get_or_insert_with(|| fresh.clone()).clone())
            })
            .expect("created on demand");
        let extra = fresh;
        drop(extra);
        kept
    }
}

/// Shortcuts for a `Cell` value, as `std::thread::LocalKey<Cell<T>>` has (each makes the value
/// first, with the initialiser, if the greenlet has none yet).
impl<T: 'static> LocalKey<Cell<T>> {
    /// The running greenlet's value (a copy).
    ///
    /// # Panics
    /// As [`with`](LocalKey::with).
    ///
    /// # Examples
    /// ```
    /// use std::cell::Cell;
    /// greenhub::greenlet_local!(static HITS: Cell<u32> = Cell::new(0));
    ///
    /// HITS.set(HITS.get() + 1);
    /// assert_eq!(HITS.replace(10), 1);
    /// assert_eq!(HITS.take(), 10);
    /// assert_eq!(HITS.get(), 0);
    /// ```
    #[track_caller]
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(Cell::get)
    }

    /// Sets the running greenlet's value.
    ///
    /// # Panics
    /// As [`with`](LocalKey::with).
    #[track_caller]
    pub fn set(&'static self, value: T) {
        self.with(|c| c.set(value));
    }

    /// Replaces the running greenlet's value, returning the old one.
    ///
    /// # Panics
    /// As [`with`](LocalKey::with).
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }

    /// Takes the running greenlet's value, leaving `T::default()`.
    ///
    /// # Panics
    /// As [`with`](LocalKey::with).
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(Cell::take)
    }
}

/// Shortcuts for a `RefCell` value, as `std::thread::LocalKey<RefCell<T>>` has.
impl<T: 'static> LocalKey<RefCell<T>> {
    /// Runs `f` with a shared borrow of the running greenlet's value.
    ///
    /// # Panics
    /// As [`with`](LocalKey::with), and if the value is mutably borrowed.
    ///
    /// # Examples
    /// ```
    /// use std::cell::RefCell;
    /// greenhub::greenlet_local!(static LOG: RefCell<Vec<u32>> = RefCell::new(Vec::new()));
    ///
    /// LOG.with_borrow_mut(|v| v.push(1));
    /// assert_eq!(LOG.with_borrow(|v| v.len()), 1);
    /// assert_eq!(LOG.take(), [1]);
    /// ```
    #[track_caller]
    pub fn with_borrow<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        self.with(|c| f(&c.borrow()))
    }

    /// Runs `f` with a mutable borrow of the running greenlet's value.
    ///
    /// # Panics
    /// As [`with`](LocalKey::with), and if the value is borrowed.
    #[track_caller]
    pub fn with_borrow_mut<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with(|c| f(&mut c.borrow_mut()))
    }

    /// Sets the running greenlet's value.
    ///
    /// # Panics
    /// As [`with_borrow_mut`](Self::with_borrow_mut).
    #[track_caller]
    pub fn set(&'static self, value: T) {
        self.with(|c| *c.borrow_mut() = value);
    }

    /// Replaces the running greenlet's value, returning the old one.
    ///
    /// # Panics
    /// As [`with_borrow_mut`](Self::with_borrow_mut).
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }

    /// Takes the running greenlet's value, leaving `T::default()`.
    ///
    /// # Panics
    /// As [`with_borrow_mut`](Self::with_borrow_mut).
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(|c| c.take())
    }
}
