//! The per-thread hub: its state, its creation, and how code finds it.
//!
//! # Why the thread state is shaped like this
//!
//! Every hub thread has three kinds of stack (ARCHITECTURE.md has the diagram):
//!
//! - the **main greenlet** runs on the thread's own stack and is never copied;
//! - the **hub context** runs on a dedicated mmap'd stack: the loop (`sched.rs`), the timers, the
//!   `mio` poll (`io.rs`), and the copying of stack slices (`slicing.rs`) — which is why the copying
//!   is safe: nothing the hub needs lives in the region it overwrites;
//! - **workers** run on the hub's stack regions (`stacks.rs`): each is bound to one region when it
//!   first runs. The worker whose bytes are in a region is its *occupant*; other workers bound to
//!   the same region live as heap slices (`stack::Slice`) until the hub resumes them.
//!
//! The hub lives in a `Box` whose address a `const` thread-local holds; it is created on first use
//! and torn down by a thread-local destructor at thread exit (`teardown.rs`), after every live
//! greenlet has been killed and unwound. `Hub` is reachable only through [`current_hub`], so it
//! never leaves its thread.
//!
//! The fields are `pub(super)`: the files of `rt/` are one module split by topic, and nothing
//! outside `rt/` touches a field; it calls the methods.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::beacon::Beacon;
use super::config::Settings;
use super::guard;
use super::io::{IoRemote, IoSlots, WAKER_TOKEN};
use super::live::Live;
use super::mailbox::Mailbox;
use super::sched::ReadyQueue;
use super::stacks::Stacks;
use super::stats::Counters;
use super::task::{Core, Kind, Task, TaskHead, TaskRef, Waiter};
use super::timer::Timers;
use crate::stack::Stack;
use crate::sys::switch as arch;

/// The per-thread hub. See the module docs.
pub(crate) struct Hub {
    /// The guard page of `hub_stack` in the overflow handler's table (workers' guard pages are
    /// found through their cores). First field: dropped (deregistered) before the stacks are
    /// unmapped.
    pub(super) overflow: guard::Registration,
    /// The stack regions workers run on, and the policy binding them (`stacks.rs`).
    pub(super) stacks: Stacks,
    /// Every greenlet gets an exclusive region (`Config::exclusive_stacks`).
    pub(super) all_exclusive: bool,
    /// The hub context's own stack. Kept only so it stays mapped.
    pub(super) hub_stack: Stack,
    /// The hub context's saved stack pointer while a greenlet runs.
    pub(super) hub_sp: Cell<*mut u8>,
    /// Where a finished worker that leaves its stack for good stores its stack pointer (never
    /// read: nothing switches back to it; its own cell may be freed by then).
    pub(super) dead_sp: Cell<*mut u8>,
    /// The thread's main greenlet.
    pub(super) main: TaskRef,
    /// Core of the running greenlet; null while the hub context runs. Points into the task owned
    /// by `running`. Read by the overflow handler (`guard.rs`).
    pub(super) current: Cell<*const Core>,
    /// Start of the guard page of the stack region the running (or last resumed) worker is bound
    /// to, for the overflow handler (`guard.rs`), which reads it on this thread. Written by
    /// `make_occupant` before every resume of a worker, so a control block need not keep it.
    pub(super) running_guard: Cell<usize>,
    /// Owns the running greenlet (main or worker) while it runs. A `Cell` (take/set), not a
    /// `RefCell`: this is touched twice per switch.
    pub(super) running: Cell<Option<TaskRef>>,
    /// FIFO of greenlets to resume.
    pub(super) ready: ReadyQueue,
    /// Resumes left in the current loop iteration (see `yield_now`'s fast path).
    pub(super) budget: Cell<usize>,
    /// The greenlet that just switched to the hub yielded: put it back in the ready queue.
    pub(super) requeue: Cell<bool>,
    /// Functions to run on the hub's stack at the next iteration.
    pub(super) callbacks: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    /// Every spawned, unfinished worker. Owning them here keeps parked cores alive.
    pub(super) live: RefCell<Live>,
    pub(super) timers: RefCell<Timers<TaskRef>>,
    pub(super) poll: RefCell<mio::Poll>,
    pub(super) events: RefCell<mio::Events>,
    /// Set by other threads before they wake this hub through the mailbox's waker; tells the loop
    /// a poll is worth a syscall.
    pub(super) remote_pending: Arc<AtomicBool>,
    /// The cross-thread mailbox: the queue other threads push jobs and wake-ups onto, and the
    /// slots of greenlets waiting for them (`mailbox.rs`). Drained by the loop after each poll.
    pub(super) mailbox: Mailbox,
    /// Set when the blocked-hub monitor watches this hub; published to on every switch
    /// (`beacon.rs`).
    pub(super) beacon: OnceCell<Arc<Beacon>>,
    /// I/O registrations by mio token (`io.rs`).
    pub(super) io: IoSlots,
    /// What another thread needs to undo a registration (`io.rs`). Made with the hub, not at the
    /// first registration: that one may come when the process is out of descriptors, and its
    /// `dup` would then fail a socket's first wait with `EMFILE`.
    pub(super) io_remote: Arc<IoRemote>,
    /// Greenlets parked on I/O: with any, an empty loop blocks in poll instead of deadlocking.
    pub(super) io_waiters: Cell<usize>,
    pub(super) counters: Counters,
    pub(super) tearing_down: Cell<bool>,
}

thread_local! {
    /// This thread's hub, or null. A `const` Cell of a raw pointer has no destructor, so it stays
    /// readable while other thread-locals are being destroyed (teardown needs that).
    pub(super) static CURRENT: Cell<*const Hub> = const { Cell::new(ptr::null()) };
    /// The hub was torn down (the thread is exiting); using it again is a clear panic.
    pub(super) static TORN_DOWN: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread has (or had) a hub.
pub(crate) fn has_hub() -> bool {
    !CURRENT.with(Cell::get).is_null() || TORN_DOWN.with(Cell::get)
}

/// This thread's hub, created on first use.
///
/// # Panics
/// If the hub was torn down (the thread is exiting) or cannot be created.
#[track_caller]
pub(crate) fn current_hub() -> &'static Hub {
    let p = CURRENT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: a non-null CURRENT points at this thread's live hub, which is freed only by the
        // teardown guard after every frame that could hold this reference has unwound
        // (invariant 7).
        return unsafe { &*p };
    }
    first_use()
}

#[cold]
#[track_caller]
fn first_use() -> &'static Hub {
    if TORN_DOWN.with(Cell::get) {
        panic!(
            "greenhub: this thread's hub has already been torn down (the thread is exiting); \
             greenlets cannot be spawned, joined or waited for any more"
        );
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => panic!("greenhub: cannot create this thread's hub: {e}"),
    };
    match Hub::install(&settings) {
        Ok(h) => h,
        Err(e) => panic!("greenhub: cannot create this thread's hub: {e}"),
    }
}

/// This thread's hub if it exists and is not torn down; never creates one. For destructors (a
/// socket dropped during thread exit must not resurrect or touch a dead hub).
pub(crate) fn existing_hub() -> Option<&'static Hub> {
    let p = CURRENT.with(Cell::get);
    // SAFETY: as in `current_hub`: a non-null CURRENT points at this thread's live hub.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The main greenlet's body: nothing to run.
struct MainTask;

impl Task for MainTask {
    fn run(&self, _core: &Core) {
        unreachable!("greenhub: the main greenlet is never started by the hub")
    }
    fn discard(&self) {}
    fn take_into(&self, _core: &Core, _out: &mut dyn std::any::Any) {
        unreachable!("greenhub: the main greenlet has no handle to join it with")
    }
    fn drop_outcome(&self, _core: &Core) {}
}

impl Hub {
    /// Creates this thread's hub with `settings`.
    ///
    /// # Errors
    /// `AlreadyExists` if the thread has (or had) a hub; the OS error if the stacks cannot be
    /// mapped or the poller created; an error if the thread is exiting.
    pub(crate) fn install(settings: &Settings) -> io::Result<&'static Hub> {
        if has_hub() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this thread already has a greenhub hub",
            ));
        }
        super::teardown::arm()?;
        // Panics in workers name the greenlet (installed once per process).
        super::panic_report::install();
        let stacks = Stacks::new(settings.stack_size, settings.max_stacks)?;
        let hub_stack = Stack::new(settings.hub_stack_size)?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER_TOKEN)?);
        let remote_pending = Arc::new(AtomicBool::new(false));
        let mailbox = Mailbox::new(waker, remote_pending.clone());
        let io_remote = Arc::new(IoRemote::new(poll.registry(), mailbox.shared().clone())?);
        // SAFETY: the hub stack is fresh, so its top FRAME_BYTES are unused (invariant 8); its top
        // is page aligned.
        let hub_sp = unsafe { arch::init_frame(hub_stack.top(), hub_entry, 0) };
        let main = TaskRef::new(Core::new(Kind::Main, None), MainTask);
        let mut hub = Box::new(Hub {
            overflow: guard::Registration::none(),
            stacks,
            all_exclusive: settings.exclusive_stacks,
            hub_stack,
            hub_sp: Cell::new(hub_sp),
            dead_sp: Cell::new(ptr::null_mut()),
            current: Cell::new(main.core()),
            running_guard: Cell::new(0),
            running: Cell::new(Some(main.clone())),
            main,
            ready: ReadyQueue::default(),
            budget: Cell::new(0),
            requeue: Cell::new(false),
            callbacks: RefCell::new(VecDeque::new()),
            live: RefCell::new(Live::default()),
            timers: RefCell::new(Timers::new()),
            poll: RefCell::new(poll),
            events: RefCell::new(mio::Events::with_capacity(1024)),
            mailbox,
            remote_pending,
            beacon: OnceCell::new(),
            io: IoSlots::new(),
            io_remote,
            io_waiters: Cell::new(0),
            counters: Counters::default(),
            tearing_down: Cell::new(false),
        });
        // `current` lives in the box, so its address is stable from here on.
        hub.overflow = guard::register(
            settings.stack_size,
            &hub.hub_stack,
            &hub.current,
            &hub.running_guard,
        );
        let p: *const Hub = Box::into_raw(hub);
        CURRENT.with(|c| c.set(p));
        // SAFETY: just leaked from a Box; freed only by the teardown guard (invariant 7).
        Ok(unsafe { &*p })
    }

    /// A clone of the running greenlet's task.
    #[track_caller]
    pub(crate) fn running_task(&self) -> TaskRef {
        // SAFETY: `running` is written only at the switch sites (`resume` and `entered_hub` in the
        // hub context, `switch_direct` just before it switches), never while this shared borrow
        // lives: cloning a `TaskRef` runs no code that could switch or reach the hub (invariant 5:
        // one thread).
        let running = unsafe { &*self.running.as_ptr() };
        match running {
            Some(t) => t.clone(),
            None => no_running_panic(),
        }
    }

    /// The running greenlet's core.
    ///
    /// # Panics
    /// Inside the hub context (a callback, or a destructor the hub runs), where blocking or
    /// switching would deadlock the loop; `doing` says what was attempted.
    #[track_caller]
    pub(crate) fn current_core(&self, doing: &str) -> &Core {
        let p = self.current.get();
        if p.is_null() {
            in_hub_panic(doing);
        }
        // SAFETY: non-null `current` points at the core of the task owned by `running`, which stays
        // owned there while that greenlet runs (invariant 9).
        unsafe { &*p }
    }

    /// The running greenlet's core, or `None` in the hub context. Never panics (the panic hook
    /// calls it).
    pub(crate) fn running_core(&self) -> Option<&Core> {
        let p = self.current.get();
        // SAFETY: as in `current_core`: non-null `current` names the core owned by `running`
        // (invariant 9).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The running greenlet's id; `None` inside the hub context. Never panics.
    pub(crate) fn running_id(&self) -> Option<u64> {
        self.running_core().map(|c| c.id)
    }

    /// Whether a greenlet (not the hub context) is running.
    #[cfg(feature = "monkey")]
    pub(crate) fn in_greenlet(&self) -> bool {
        !self.current.get().is_null()
    }

    /// A waiter for the running greenlet's next (or current) park.
    #[track_caller]
    pub(crate) fn current_waiter(&self) -> Waiter {
        let task = self.running_task();
        let gen = task.core().gen.get();
        Waiter { task, gen }
    }

    /// The main greenlet and every spawned, unfinished worker (for `monitor::run_info`).
    pub(crate) fn all_tasks(&self) -> Vec<TaskRef> {
        let mut v = vec![self.main.clone()];
        v.extend(self.live.borrow().iter().cloned());
        v
    }

    /// The cross-thread mailbox of this hub.
    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// Has the blocked-hub monitor watch this hub: the beacon is created by `make` the first time
    /// and published to on every switch from then on. Returns it.
    pub(crate) fn beacon(&self, make: impl FnOnce() -> Arc<Beacon>) -> &Arc<Beacon> {
        self.beacon.get_or_init(make)
    }

    /// Schedules `f` to run on the hub's own stack at the next loop iteration.
    pub(crate) fn run_callback(&self, f: Box<dyn FnOnce()>) {
        self.callbacks.borrow_mut().push_back(f);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn no_running_panic() -> ! {
    panic!("greenhub: no greenlet is running")
}

#[cold]
#[inline(never)]
#[track_caller]
fn in_hub_panic(doing: &str) -> ! {
    panic!(
        "greenhub: cannot {doing} inside the hub (a hub callback or a destructor the hub runs); \
         blocking or switching there would stop the loop that wakes everyone"
    )
}

/// Where every worker starts, at the top of its stack region, called by the trampoline.
extern "C" fn worker_entry(_value: usize, _arg: usize) -> ! {
    // Panics are caught inside `run` (invariant 3), so nothing unwinds into the trampoline.
    run_running();
    current_hub().finish_running()
}

/// Runs the running worker's closure. Holds nothing across the call (the body's `run` can be a
/// tail call), so the frames under a parked greenlet's own are only the entry's few words.
#[inline(never)]
fn run_running() {
    let hub = current_hub();
    // SAFETY: `running` is written only at the switch sites (`resume`, `entered_hub`,
    // `switch_direct`); while this worker runs it holds this worker's task. The task itself stays alive until the worker has
    // finished and switched away for good: `live` owns every unfinished worker and `retire`
    // removes it only after that (invariant 9), so the reference outlives the call.
    let task: &TaskHead = match unsafe { &*hub.running.as_ptr() } {
        Some(t) => {
            let p: *const TaskHead = &**t;
            // SAFETY: see above; detached from the `running` borrow on purpose.
            unsafe { &*p }
        }
        None => no_running_panic(),
    };
    task.run()
}

/// The entry of a fresh worker frame (used by `slicing.rs`).
pub(super) const WORKER_ENTRY: arch::Entry = worker_entry;

/// Where the hub context starts, on the hub's stack, called by the trampoline.
extern "C" fn hub_entry(_value: usize, _arg: usize) -> ! {
    let hub = current_hub();
    // The first arrival (from whichever greenlet blocked first) did not come through `resume`.
    hub.entered_hub();
    let _ = panic::catch_unwind(AssertUnwindSafe(|| hub.run_loop()));
    // Only a panic gets here: a bug in greenhub, or a tracing subscriber that panicked in the hub.
    eprintln!(
        "greenhub: the hub's loop panicked; no greenlet of this thread can run any more: aborting"
    );
    std::process::abort();
}
