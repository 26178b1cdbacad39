//! The greenlet control block ([`Core`]), its states and their named transitions, and the
//! [`Waiter`] token every wait list holds.
//!
//! # States
//!
//! ```text
//!                 schedule_new                run                       park
//!   New ────────────────────────► Ready ─────────────► Running ─────────────────────► Parked
//!    │                              ▲  ▲                 │  │  yield_now                 │
//!    │ schedule_new (spawn_later)   │  └─────────────────┘  │ (make_ready)               │
//!    └──────────────► Parked        │        make_ready     │                            │
//!                                   └──── make_ready ───────┼──── wake / timer / kill ───┘
//!                                                           │ finish (closure returned,
//!                                                           ▼ panicked or unwound a kill)
//!   New / Ready / Parked, not started ─── finish ──────► Finished
//!   Ready / Parked, started ─────────── abandon ───────► Finished   (teardown survivors, or a
//!                                                                     kill under panic=abort)
//! ```
//!
//! Every transition is a method of [`Core`] that debug-asserts the state it leaves; nothing else
//! writes `state`. The main greenlet is created `Running` (it is the thread that runs) and never
//! finishes.
//!
//! - `started` says whether the closure has been entered. A greenlet killed before it started never
//!   runs: its closure is dropped where `kill` was called.
//! - `gen` counts parks. A `Waiter` remembers the `gen` of the park it may end; waking with a stale
//!   `gen` (the greenlet has moved on) does nothing, so wait lists, timers and I/O registrations may
//!   hold stale waiters safely and never wake a greenlet for somebody else's reason.
//! - `kill` is set once and never cleared: a greenlet that swallows the kill payload with
//!   `catch_unwind` is killed again at its next blocking point.
//!
//! Every unfinished worker is owned by the hub's `live` table, so a parked greenlet's `Core` stays
//! alive while wait lists, timers and handles refer to it ([invariant 9](super#invariants)).

use std::alloc::Layout;
use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::timer::TimerTarget;
use crate::stack::Slice;

/// [`Core::region`] of a greenlet not bound to a stack region (not started, or the main greenlet).
pub(crate) const NO_REGION: u32 = u32::MAX;

/// Where a greenlet is in its life. See the module docs for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Built, not yet handed to the hub.
    New,
    /// In the hub's ready queue.
    Ready,
    /// Executing; exactly one greenlet per hub at a time.
    Running,
    /// Suspended until a [`Waiter`] for its current `gen` wakes it (or a timer, or a kill).
    Parked,
    /// The closure returned, panicked or was killed, or the greenlet was abandoned; the stack
    /// slice is gone.
    Finished,
}

/// Whether a core belongs to a worker (runs on a hub stack) or to the thread's main greenlet
/// (runs on the thread's own stack and is never copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Worker,
}

/// The control block of a greenlet: everything the hub needs, on the heap
/// ([invariant 1](super#invariants)).
///
/// Every field is a `Cell`/`RefCell` touched only on the hub's thread
/// ([invariant 5](super#invariants)); the notes say *who* writes each one and *when*. "The hub"
/// means code in `rt/` running in either the hub context or the greenlet that calls into it.
///
/// `repr(C)`, the fields a park, a wake and a resume touch first (`sp` to `started`: 39 bytes,
/// which with the reference count in front of the core stay in one cache line when the
/// allocation starts in the first half of a line), the rest after. Under the compiler's order
/// they were spread over 100 bytes: about one more D1 miss per echo round trip at 1,000
/// connections (BENCHMARKS.md, "Fourth pass").
#[repr(C)]
pub(crate) struct Core {
    /// Saved stack pointer while not running. Written only by the switch (and the fresh frame the
    /// slicing code makes); read by the hub before resuming.
    pub(crate) sp: Cell<*mut u8>,
    /// What the greenlet is parked on, for diagnostics. Set by `arm_park`, cleared by `end_park`.
    pub(crate) waiting_on: WaitCell,
    /// The rarely used fields, allocated on first use (see [`Cold`]): a greenlet that has no
    /// name, no second joiner, no timeout scope and no delayed start never allocates it.
    cold: OnceCell<Box<Cold>>,
    /// Index of the stack region it is bound to (`stacks.rs`), [`NO_REGION`] until it first runs.
    /// Set once by the slicing code; never changes after (its slice holds absolute addresses).
    pub(crate) region: Cell<u32>,
    /// Number of the current (or next) park; see [`Waiter`]. Bumped by `end_park` only.
    pub(crate) gen: Cell<u32>,
    /// Written only by the transition methods below.
    state: Cell<State>,
    /// Fixed at creation.
    pub(crate) kind: Kind,
    /// Why the last park ended. Written by `Hub::wake` (with the `Ready` transition) and reset
    /// by `arm_park`; read by `end_park`.
    pub(crate) wake: Cell<Wake>,
    /// A kill was requested. Set by `Hub::request_kill`; never cleared.
    pub(crate) kill: Cell<bool>,
    /// The current park (or the wait for a `spawn_later` start) armed a timer, which is in the
    /// hub's heap until it fires or surfaces stale. Set by `arm_park`/`schedule_new`, cleared by
    /// `end_park` (which tells the heap when the park ended otherwise) and a kill before start.
    pub(crate) timed: Cell<bool>,
    /// The current park's timer carries the earliest enclosing timeout scope's deadline, not the
    /// caller's own. Set by `arm_park`, read by `end_park`.
    pub(crate) by_scope: Cell<bool>,
    /// Set once by the slicing code when it writes the worker's first frame (main: always true).
    pub(crate) started: Cell<bool>,
    /// Process-unique; fixed at creation. Read by anyone (diagnostics, the overflow handler).
    pub(crate) id: u64,
    /// The heap copy of `[sp, top)` while another worker occupies the shared stack. Only the
    /// slicing code on the hub's stack touches it ([invariant 8](super#invariants)); released by
    /// `retire`.
    pub(crate) slice: Slice,
    /// The first greenlet waiting for this one to finish (nearly always the only one: kept inline
    /// so a join allocates nothing). Added to by joiners, drained by `retire`; any further joiners
    /// are in [`Cold::more_joiners`].
    joiner: Cell<Option<Waiter>>,
    /// Key in the hub's `live` table. Set once by `schedule_new`.
    pub(crate) live_key: Cell<u32>,
    /// Asked for a stack region of its own (`Builder::exclusive_stack`). Set by the builder
    /// before the greenlet is scheduled; read when it first runs.
    pub(crate) exclusive: Cell<bool>,
    /// The kill payload was thrown at least once (so a blocking point reached again caught it:
    /// it yields before throwing again). Set by `Hub::interrupt`; never cleared.
    pub(crate) kill_delivered: Cell<bool>,
    /// Nobody will take the result: the `Greenlet` handle was dropped, or a join took the result
    /// already. Set by the handle's drop and by a join that took the outcome.
    pub(crate) detached: Cell<bool>,
}

/// The fields of a [`Core`] most greenlets never use, out of line so that a parked greenlet's
/// control block stays small.
#[derive(Default)]
pub(crate) struct Cold {
    /// Fixed at creation. Read by anyone (diagnostics, the overflow handler, the monitor).
    pub(crate) name: Option<Box<str>>,
    /// Joiners after the first.
    more_joiners: RefCell<Vec<Waiter>>,
    /// Greenlet-local values and the saved tracing span stack (`context.rs`), allocated on first
    /// use. Touched by the greenlet itself (locals), the switch hooks in `sched.rs` (spans) and
    /// the drop hooks, through [`Core::context_with`].
    context: super::context::Slot,
    /// Active timeout scopes (`timeout`, `Timeout`), innermost last. Pushed and removed (by id: a
    /// `Timeout` guard may be dropped out of order) by the running greenlet itself; `arm_park`
    /// bounds every park by the earliest deadline here and `end_park` marks the scope whose
    /// deadline ended it. Never borrowed across a park.
    pub(crate) scopes: RefCell<Vec<Scope>>,
}

/// One active timeout scope of a greenlet; see [`Cold::scopes`].
pub(crate) struct Scope {
    pub(crate) id: u64,
    pub(crate) deadline: Instant,
    /// A park ended because this scope's deadline passed.
    pub(crate) fired: bool,
}

/// Greenlet ids are handed out in blocks of [`ID_BLOCK`] per thread, so a spawn touches no shared
/// cache line: the global counter moves once per block.
static NEXT_ID_BLOCK: AtomicU64 = AtomicU64::new(1);
const ID_BLOCK: u64 = 1024;

thread_local! {
    /// The next id of this thread's block and the end of the block (`next == end`: take a new one).
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A process-unique greenlet id (never 0).
fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_ID_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

impl Core {
    #[inline(always)]
    pub(crate) fn new(kind: Kind, name: Option<Box<str>>) -> Core {
        Core {
            id: next_id(),
            sp: Cell::new(std::ptr::null_mut()),
            slice: Slice::default(),
            joiner: Cell::new(None),
            waiting_on: WaitCell::new(),
            // The name is fixed at creation, so a named greenlet gets its cold fields now.
            cold: match name {
                Some(name) => OnceCell::from(Box::new(Cold {
                    name: Some(name),
                    ..Cold::default()
                })),
                None => OnceCell::new(),
            },
            live_key: Cell::new(u32::MAX),
            region: Cell::new(NO_REGION),
            gen: Cell::new(0),
            state: Cell::new(if kind == Kind::Main {
                State::Running
            } else {
                State::New
            }),
            kind,
            wake: Cell::new(Wake::Woken),
            started: Cell::new(kind == Kind::Main),
            exclusive: Cell::new(false),
            kill: Cell::new(false),
            kill_delivered: Cell::new(false),
            detached: Cell::new(false),
            timed: Cell::new(false),
            by_scope: Cell::new(false),
        }
    }

    /// The cold fields, allocated now if they were not.
    pub(crate) fn cold(&self) -> &Cold {
        self.cold.get_or_init(Box::default)
    }

    /// Whether the cold fields were allocated (a name, greenlet-locals, spans, a second joiner,
    /// a timeout scope).
    #[inline(always)]
    pub(crate) fn has_cold(&self) -> bool {
        self.cold.get().is_some()
    }

    /// The cold fields if allocated.
    #[inline(always)]
    pub(crate) fn cold_if_any(&self) -> Option<&Cold> {
        self.cold.get().map(|b| &**b)
    }

    /// Runs `f` on the greenlet's context (locals, spans), allocating it (and the cold fields) if
    /// `create`; `None` if it has none and `create` is false. See `context::Slot::with` for
    /// what `f` must not do.
    #[inline]
    pub(crate) fn context_with<R>(
        &self,
        create: bool,
        f: impl FnOnce(&mut super::context::Context) -> R,
    ) -> Option<R> {
        let slot = if create {
            &self.cold().context
        } else {
            &self.cold_if_any()?.context
        };
        slot.with(create, f)
    }

    /// The greenlet's name, if it was given one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.cold_if_any().and_then(|c| c.name.as_deref())
    }

    /// Adds a waiter to wake when this greenlet finishes.
    pub(crate) fn add_joiner(&self, w: Waiter) {
        match self.joiner.take() {
            None => self.joiner.set(Some(w)),
            Some(first) => {
                self.joiner.set(Some(first));
                self.cold().more_joiners.borrow_mut().push(w);
            }
        }
    }

    /// Removes the joiner entries for which `stale` is true (their wait timed out or was
    /// interrupted).
    pub(crate) fn remove_joiners(&self, stale: impl Fn(&Waiter) -> bool) {
        if let Some(first) = self.joiner.take() {
            if !stale(&first) {
                self.joiner.set(Some(first));
            }
        }
        if let Some(c) = self.cold_if_any() {
            c.more_joiners.borrow_mut().retain(|w| !stale(w));
        }
    }

    /// Takes every joiner, to wake them: the first, and whether there may be more (then
    /// [`take_more_joiners`](Self::take_more_joiners) has them). Split so that the common case,
    /// one joiner and no cold fields, builds no `Vec` and no iterator chain.
    #[inline(always)]
    pub(crate) fn take_joiners(&self) -> (Option<Waiter>, bool) {
        (self.joiner.take(), self.cold_if_any().is_some())
    }

    /// The joiners after the first (see [`take_joiners`](Self::take_joiners)).
    pub(crate) fn take_more_joiners(&self) -> Vec<Waiter> {
        self.cold_if_any()
            .map(|c| std::mem::take(&mut *c.more_joiners.borrow_mut()))
            .unwrap_or_default()
    }

    /// "greenlet 7 (name)" or "greenlet 7", for messages.
    pub(crate) fn describe(&self) -> String {
        match (self.name(), self.kind) {
            (_, Kind::Main) => format!("the main greenlet (id {})", self.id),
            (Some(n), _) => format!("greenlet {} ({})", self.id, n),
            (None, _) => format!("greenlet {}", self.id),
        }
    }
}

/// The named state transitions. Each debug-asserts the state it leaves, so a transition the
/// diagram in the module docs does not have is caught in tests.
impl Core {
    /// The current state.
    #[inline(always)]
    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// Whether the greenlet is parked in the park numbered `gen` (a waiter made for it is
    /// pending).
    #[inline(always)]
    pub(crate) fn is_parked_in(&self, gen: u32) -> bool {
        self.state.get() == State::Parked && self.gen.get() == gen
    }

    /// Whether the greenlet is finished (returned, panicked, killed or abandoned).
    #[inline(always)]
    pub(crate) fn is_finished(&self) -> bool {
        self.state.get() == State::Finished
    }

    #[inline(always)]
    fn leave(&self, ok: bool, to: State) {
        debug_assert!(
            ok,
            "greenhub: {} cannot go from {:?} to {:?}",
            self.describe(),
            self.state.get(),
            to
        );
        self.state.set(to);
    }

    /// New (spawned), Parked (woken) or Running (yielding) → Ready.
    #[inline(always)]
    pub(crate) fn make_ready(&self) {
        let s = self.state.get();
        self.leave(
            matches!(s, State::New | State::Parked | State::Running),
            State::Ready,
        );
    }

    /// Ready → Running: the hub is about to switch to it.
    #[inline(always)]
    pub(crate) fn run(&self) {
        self.leave(self.state.get() == State::Ready, State::Running);
    }

    /// Running → Parked (a blocking call), or New → Parked (`spawn_later`: waiting to start).
    #[inline(always)]
    pub(crate) fn park(&self) {
        let s = self.state.get();
        self.leave(matches!(s, State::Running | State::New), State::Parked);
    }

    /// Running → Finished (the closure is done), or a greenlet that never started → Finished (a
    /// kill before start).
    #[inline(always)]
    pub(crate) fn finish(&self) {
        let s = self.state.get();
        self.leave(
            s == State::Running || (!self.started.get() && s != State::Finished),
            State::Finished,
        );
    }

    /// A started greenlet that is not running → Finished without unwinding it: its destructors
    /// will not run (teardown survivors, kills under `panic = "abort"`).
    pub(crate) fn abandon(&self) {
        let s = self.state.get();
        self.leave(
            self.started.get() && matches!(s, State::Ready | State::Parked),
            State::Finished,
        );
    }
}

/// What a greenlet runs, type-erased: the closure and its result slot (`greenlet.rs`).
pub(crate) trait Task {
    /// Runs the closure on the greenlet's own stack, catching every panic ([invariant 3](super#invariants)).
    fn run(&self, core: &Core);
    /// Drops the closure without running it (a kill before start) and records `Killed`.
    fn discard(&self);
    /// Moves the outcome out, if the greenlet has finished, into `out`: an
    /// `Option<Result<T, GreenletError>>` for the `T` the body was built with (`greenlet.rs`;
    /// checked by the downcast).
    fn take_into(&self, core: &Core, out: &mut dyn Any);
    /// Drops the outcome, if the greenlet has finished and it was not taken, reporting a panic it
    /// ended with (the last `Greenlet` handle is dropped).
    fn drop_outcome(&self, core: &Core);
}

/// The front of every greenlet allocation: the reference count, the body's functions and the
/// control block. `repr(C)` so that the allocation (a [`TaskAlloc`]) starts with it and a pointer
/// to one is a pointer to the other.
#[repr(C)]
pub(crate) struct TaskHead {
    refs: Cell<usize>,
    /// Right after `refs`: its first fields are the hot ones (see [`Core`]).
    pub(crate) core: Core,
    vtable: &'static TaskVTable,
}

/// One greenlet's allocation: the head, then the body it runs.
#[repr(C)]
struct TaskAlloc<B> {
    head: TaskHead,
    body: B,
}

/// The body's functions, one table per body type: what `dyn Task` would keep in a fat pointer, kept
/// once in the allocation instead, so that every handle on a greenlet is one word.
pub(crate) struct TaskVTable {
    run: unsafe fn(&TaskHead),
    discard: unsafe fn(&TaskHead),
    take_into: unsafe fn(&TaskHead, &mut dyn Any),
    drop_outcome: unsafe fn(&TaskHead),
    free: unsafe fn(NonNull<TaskHead>),
}

/// The [`TaskVTable`] of body type `B`.
struct VTableOf<B>(PhantomData<B>);

impl<B: Task + 'static> VTableOf<B> {
    const VTABLE: TaskVTable = TaskVTable {
        run: Self::run,
        discard: Self::discard,
        take_into: Self::take_into,
        drop_outcome: Self::drop_outcome,
        free: Self::free,
    };

    /// # Safety
    /// `head` must be the head of a `TaskAlloc<B>` (true of every head whose vtable is this one).
    unsafe fn body(head: &TaskHead) -> &B {
        // SAFETY: the caller's contract; `TaskAlloc` is `repr(C)` with the head first, so the
        // head's address is the allocation's, and the body is borrowed no longer than the head.
        unsafe { &(*(head as *const TaskHead).cast::<TaskAlloc<B>>()).body }
    }

    unsafe fn run(head: &TaskHead) {
        // SAFETY: only `TaskRef::new::<B>` installs this table, in a `TaskAlloc<B>`.
        unsafe { Self::body(head) }.run(&head.core)
    }

    unsafe fn discard(head: &TaskHead) {
        // SAFETY: as in `run`.
        unsafe { Self::body(head) }.discard()
    }

    unsafe fn take_into(head: &TaskHead, out: &mut dyn Any) {
        // SAFETY: as in `run`.
        unsafe { Self::body(head) }.take_into(&head.core, out)
    }

    unsafe fn drop_outcome(head: &TaskHead) {
        // SAFETY: as in `run`.
        unsafe { Self::body(head) }.drop_outcome(&head.core)
    }

    unsafe fn free(head: NonNull<TaskHead>) {
        let p = head.cast::<TaskAlloc<B>>();
        // The block goes back even if a destructor in the body panics (as a `Box` would).
        let _free = FreeBlockOnDrop(p.cast(), Layout::new::<TaskAlloc<B>>());
        // SAFETY: as in `run`, and the allocation is a `TaskAlloc<B>` from `TaskRef::new::<B>`
        // (its layout's); the last handle is gone, so nothing refers to it any more. The value
        // is dropped (which may run user code, even code that spawns and frees greenlets: no
        // cache borrow is held) before `_free` gives its memory back.
        unsafe { p.as_ptr().drop_in_place() };
    }
}

/// Freed greenlet allocations kept for the next spawns of the same layout, per thread: a
/// spawn + join from an empty cache pays glibc's `malloc` and `free` (about 125 instructions,
/// `_int_free` alone 64); from the cache, a thread-local lookup and a `Vec` push or pop. A few
/// layouts (a program spawns few closure types often), a few blocks each: at most
/// `BLOCK_LAYOUTS × BLOCKS_KEPT` blocks are held, so a burst's memory still goes back to malloc.
struct BlockCache {
    lists: [(Layout, Vec<NonNull<u8>>); BLOCK_LAYOUTS],
}

const BLOCK_LAYOUTS: usize = 4;
const BLOCKS_KEPT: usize = 32;

thread_local! {
    static BLOCKS: RefCell<BlockCache> = const {
        RefCell::new(BlockCache {
            lists: [const { (Layout::new::<()>(), Vec::new()) }; BLOCK_LAYOUTS],
        })
    };
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for (layout, list) in &mut self.lists {
            for p in list.drain(..) {
                // SAFETY: every block in a list came from `alloc` with that list's layout and is
                // nobody's (`free_block` put it there after its value was dropped).
                unsafe { std::alloc::dealloc(p.as_ptr(), *layout) };
            }
        }
    }
}

/// A block of `layout` (not zero-sized), from this thread's cache or the global allocator.
#[inline]
fn alloc_block(layout: Layout) -> NonNull<u8> {
    let cached = BLOCKS
        .try_with(|b| {
            let mut b = b.try_borrow_mut().ok()?;
            let (_, list) = b.lists.iter_mut().find(|(l, _)| *l == layout)?;
            list.pop()
        })
        .ok()
        .flatten();
    if let Some(p) = cached {
        return p;
    }
    // SAFETY: `layout` is a `TaskAlloc`'s, never zero-sized (the head is in it).
    match NonNull::new(unsafe { std::alloc::alloc(layout) }) {
        Some(p) => p,
        None => std::alloc::handle_alloc_error(layout),
    }
}

/// Gives back a block from [`alloc_block`] with the same `layout`, its value already dropped:
/// to this thread's cache if it has room (or a free list for the layout yet), else to the
/// global allocator (also when the thread is exiting and the cache is gone).
///
/// # Safety
/// `p` came from `alloc_block(layout)`, and nothing refers to it any more.
#[inline]
unsafe fn free_block(p: NonNull<u8>, layout: Layout) {
    let kept = BLOCKS
        .try_with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return false;
            };
            let empty = Layout::new::<()>();
            let Some((l, list)) = b
                .lists
                .iter_mut()
                .find(|(l, list)| *l == layout || (*l == empty && list.is_empty()))
            else {
                return false;
            };
            if list.len() >= BLOCKS_KEPT {
                return false;
            }
            *l = layout;
            list.push(p);
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: the caller's promise: an allocation of `layout` that nobody refers to.
        unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
    }
}

/// Gives a block back (see [`free_block`]) when dropped: after its value was dropped, or while
/// unwinding from a panic in that drop.
struct FreeBlockOnDrop(NonNull<u8>, Layout);

impl Drop for FreeBlockOnDrop {
    fn drop(&mut self) {
        // SAFETY: only `VTableOf::free` makes one, for the block of the greenlet whose last
        // handle is gone, once, and drops it after (or while unwinding from) the value's drop.
        unsafe { free_block(self.0, self.1) }
    }
}

/// An owning handle on a greenlet (the hub's tables, waiters, `Greenlet` handles): one word, a
/// non-atomic reference count in the allocation (like `Rc`, and `!Send`/`!Sync` like it: the
/// `NonNull` makes it so). It dereferences to the [`TaskHead`], so `task.core` is a constant
/// offset.
pub(crate) struct TaskRef {
    head: NonNull<TaskHead>,
}

impl TaskRef {
    /// Allocates a greenlet: `core` and `body` side by side, one handle.
    pub(crate) fn new<B: Task + 'static>(core: Core, body: B) -> TaskRef {
        let p = alloc_block(Layout::new::<TaskAlloc<B>>()).cast::<TaskAlloc<B>>();
        // SAFETY: `p` is a fresh block of `TaskAlloc<B>`'s layout (size and alignment), nobody
        // else's; it is initialized here before any handle exists.
        unsafe {
            p.as_ptr().write(TaskAlloc {
                head: TaskHead {
                    refs: Cell::new(1),
                    vtable: &VTableOf::<B>::VTABLE,
                    core,
                },
                body,
            });
        }
        TaskRef {
            head: p.cast::<TaskHead>(),
        }
    }

    /// Handles on this greenlet, this one included.
    #[inline(always)]
    pub(crate) fn ref_count(&self) -> usize {
        self.refs.get()
    }
}

impl std::ops::Deref for TaskRef {
    type Target = TaskHead;

    #[inline(always)]
    fn deref(&self) -> &TaskHead {
        // SAFETY: a handle keeps its allocation alive (the count is at least 1 while it exists).
        unsafe { self.head.as_ref() }
    }
}

impl Clone for TaskRef {
    #[inline(always)]
    fn clone(&self) -> TaskRef {
        let n = self.refs.get();
        if n == usize::MAX {
            // As `Rc` does: a count that would wrap is a leak loop, not something to recover from.
            std::process::abort();
        }
        self.refs.set(n + 1);
        TaskRef { head: self.head }
    }
}

impl Drop for TaskRef {
    #[inline(always)]
    fn drop(&mut self) {
        let n = self.refs.get() - 1;
        self.refs.set(n);
        if n == 0 {
            // SAFETY: this was the last handle; the table is the allocation's own.
            unsafe { (self.vtable.free)(self.head) }
        }
    }
}

impl TaskHead {
    /// The control block.
    #[inline(always)]
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Runs the closure (see [`Task::run`]).
    #[inline(always)]
    pub(crate) fn run(&self) {
        // SAFETY: the table was installed with the body this head is in front of.
        unsafe { (self.vtable.run)(self) }
    }

    /// Drops the closure unrun (see [`Task::discard`]).
    pub(crate) fn discard(&self) {
        // SAFETY: as in `run`.
        unsafe { (self.vtable.discard)(self) }
    }

    /// Moves the outcome out (see [`Task::take_into`]).
    pub(crate) fn take_into(&self, out: &mut dyn Any) {
        // SAFETY: as in `run`.
        unsafe { (self.vtable.take_into)(self, out) }
    }

    /// Drops an outcome nobody took (see [`Task::drop_outcome`]).
    pub(crate) fn drop_outcome(&self) {
        // SAFETY: as in `run`.
        unsafe { (self.vtable.drop_outcome)(self) }
    }
}

/// A timer entry is its greenlet's handle: current while the greenlet is still in the park the
/// timer was armed for.
impl TimerTarget for TaskRef {
    #[inline(always)]
    fn is_current(&self, gen: u32) -> bool {
        self.core.state.get() == State::Parked && self.core.gen.get() == gen
    }

    #[inline(always)]
    fn is_last(&self) -> bool {
        self.ref_count() == 1
    }
}

/// The payload a kill unwinds with. Private: user code can catch it but not forge it.
pub(crate) struct KillSignal;

/// The payload a blocking call with no error to return (`threadpool::unblock`) unwinds with when an
/// enclosing timeout scope expires; `timeout()` turns it into `Err(Elapsed)`. Private.
pub(crate) struct ScopeSignal;

/// What [`panic_message`] says for a [`ScopeSignal`] nobody caught.
pub(crate) const SCOPE_SIGNAL_MESSAGE: &str =
    "greenhub: a timeout scope expired during a blocking \
     call that has no error to return (threadpool::unblock); only timeout()/timeout_at() turn \
     that into Err(Elapsed)";

/// A waiter: "wake greenlet G if it is still in the park numbered `gen`". Lives on the heap, in wait
/// lists, timers and I/O registrations; never on a waiter's stack ([invariant 1](super#invariants)).
#[derive(Clone)]
pub(crate) struct Waiter {
    pub(crate) task: TaskRef,
    pub(crate) gen: u32,
}

impl Waiter {
    #[inline(always)]
    pub(crate) fn core(&self) -> &Core {
        &self.task.core
    }

    /// Whether the park this waiter was made for is still in progress.
    #[inline(always)]
    pub(crate) fn is_pending(&self) -> bool {
        self.task.core.is_parked_in(self.gen)
    }

    /// Wakes the greenlet if it is still in that park; returns whether it did.
    pub(crate) fn wake(&self) -> bool {
        super::hub::current_hub().wake(self, Wake::Woken)
    }
}

/// The message of a panic payload, if it is a string.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else if p.is::<ScopeSignal>() {
        SCOPE_SIGNAL_MESSAGE
    } else {
        "<non-string panic payload>"
    }
}

/// Why a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A waiter woke it (event set, I/O ready, greenlet finished, ...).
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// It is being killed (seen only by code already unwinding from the kill).
    Killed,
    /// Main greenlet only: nothing can ever wake it.
    Deadlock,
    /// The deadline of an enclosing timeout scope (`timeout`, `Timeout`) passed: the blocking call
    /// returns its timeout error (`io::ErrorKind::TimedOut` for I/O) so `?` carries it to the scope.
    ScopeExpired,
}

/// What a parked greenlet waits for, for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitOn {
    Nothing,
    Start,
    Sleep,
    Join(u64),
    Io(usize),
    /// A synchronisation primitive, by description ("an Event"): a reference to the `&str`, one
    /// word instead of two, so a `WaitOn` (kept in every `Core`) is two words.
    Sync(&'static &'static str),
    /// A `Mutex` held by the greenlet with this id (0: unknown). (One variant per lock kind, not
    /// a name: a parked greenlet keeps its `WaitOn` in its frames, so it stays two words.)
    Held(u64),
}

/// A [`WaitOn`] packed into one word, as every `Core` keeps it: the variant in the low 3 bits, the
/// payload above them (ids and registration tokens shifted up by 3, which loses nothing below
/// 2^61; `Sync`'s pointer, 8-aligned, as it is). The same API as `Cell<WaitOn>`.
pub(crate) struct WaitCell(Cell<u64>);

const WAIT_NOTHING: u64 = 0;
const WAIT_START: u64 = 1;
const WAIT_SLEEP: u64 = 2;
const WAIT_JOIN: u64 = 3;
const WAIT_IO: u64 = 4;
const WAIT_SYNC: u64 = 5;
const WAIT_HELD: u64 = 6;

impl WaitCell {
    pub(crate) const fn new() -> WaitCell {
        WaitCell(Cell::new(WAIT_NOTHING))
    }

    #[inline(always)]
    fn pack(on: WaitOn) -> u64 {
        let num = |tag: u64, n: u64| {
            debug_assert!(
                n < 1 << 61,
                "greenhub: a WaitOn payload of {n:#x} is too large"
            );
            (n << 3) | tag
        };
        match on {
            WaitOn::Nothing => WAIT_NOTHING,
            WaitOn::Start => WAIT_START,
            WaitOn::Sleep => WAIT_SLEEP,
            WaitOn::Join(id) => num(WAIT_JOIN, id),
            WaitOn::Io(token) => num(WAIT_IO, token as u64),
            WaitOn::Sync(what) => {
                let p = what as *const &'static str as u64;
                debug_assert_eq!(p & 7, 0, "a &str is 8-aligned");
                p | WAIT_SYNC
            }
            WaitOn::Held(id) => num(WAIT_HELD, id),
        }
    }

    #[inline(always)]
    fn unpack(v: u64) -> WaitOn {
        let n = v >> 3;
        match v & 7 {
            WAIT_START => WaitOn::Start,
            WAIT_SLEEP => WaitOn::Sleep,
            WAIT_JOIN => WaitOn::Join(n),
            WAIT_IO => WaitOn::Io(n as usize),
            WAIT_SYNC => {
                let p = (v & !7) as usize as *const &'static str;
                // SAFETY: a value tagged WAIT_SYNC is only made by `pack` from a
                // `&'static &'static str`, whose address (8-aligned, so the tag did not touch it)
                // stays valid for the rest of the program.
                WaitOn::Sync(unsafe { &*p })
            }
            WAIT_HELD => WaitOn::Held(n),
            _ => WaitOn::Nothing,
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self) -> WaitOn {
        Self::unpack(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn set(&self, on: WaitOn) {
        self.0.set(Self::pack(on));
    }

    #[inline(always)]
    pub(crate) fn replace(&self, on: WaitOn) -> WaitOn {
        Self::unpack(self.0.replace(Self::pack(on)))
    }
}

impl fmt::Display for WaitOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitOn::Nothing => f.write_str("nothing"),
            WaitOn::Start => f.write_str("its start time"),
            WaitOn::Sleep => f.write_str("a sleep"),
            WaitOn::Join(id) => write!(f, "greenlet {id} to finish"),
            WaitOn::Io(token) => write!(f, "I/O readiness on registration {token}"),
            WaitOn::Sync(what) => f.write_str(what),
            WaitOn::Held(0) => f.write_str("a Mutex"),
            WaitOn::Held(holder) => write!(f, "a Mutex held by greenlet {holder}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_are_reused_by_layout_and_the_cache_stays_bounded() {
        // On a thread of its own: a fresh cache, whatever other tests ran on this one.
        std::thread::spawn(blocks_are_reused_and_bounded)
            .join()
            .unwrap();
    }

    fn blocks_are_reused_and_bounded() {
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let p = alloc_block(layout);
        // SAFETY: from `alloc_block(layout)`, unused.
        unsafe { free_block(p, layout) };
        assert_eq!(alloc_block(layout), p, "the freed block was not reused");
        let many: Vec<_> = (0..BLOCKS_KEPT + 10).map(|_| alloc_block(layout)).collect();
        for q in many.into_iter().chain([p]) {
            // SAFETY: as above.
            unsafe { free_block(q, layout) };
        }
        let kept = BLOCKS.with(|b| {
            let b = b.borrow();
            let (_, list) = b.lists.iter().find(|(l, _)| *l == layout).unwrap();
            list.len()
        });
        assert_eq!(
            kept, BLOCKS_KEPT,
            "the cache holds more (or fewer) blocks than it keeps"
        );
    }

    #[test]
    fn wait_on_round_trips_through_its_word() {
        static WHAT: &str = "an Event";
        let c = WaitCell::new();
        for on in [
            WaitOn::Nothing,
            WaitOn::Start,
            WaitOn::Sleep,
            WaitOn::Join(123_456_789),
            WaitOn::Io(0x7fff_dead_bee8),
            WaitOn::Sync(&WHAT),
            WaitOn::Held(0),
            WaitOn::Held(42),
        ] {
            c.set(on);
            assert_eq!(c.get(), on);
            assert_eq!(c.get().to_string(), on.to_string());
        }
        assert_eq!(c.replace(WaitOn::Nothing), WaitOn::Held(42));
        assert_eq!(c.get(), WaitOn::Nothing);
    }

    /// Every parked greenlet pays for these: a field added to them should be a decision.
    #[test]
    fn the_control_block_stays_small() {
        assert_eq!(std::mem::size_of::<WaitCell>(), 8);
        assert_eq!(std::mem::size_of::<Slice>(), 16);
        assert_eq!(std::mem::size_of::<TaskRef>(), 8);
        assert_eq!(std::mem::size_of::<Option<TaskRef>>(), 8);
        assert!(
            std::mem::size_of::<Core>() <= 88,
            "Core grew to {} bytes",
            std::mem::size_of::<Core>()
        );
    }
}
