//! The single-thread core: greenlets' control blocks, the hub, the switch and slicing, park and
//! wake, timers, I/O slots, the cross-thread mailbox, teardown. No public items: the façade
//! (`greenlet.rs`, `hub.rs`, `timeout.rs`, `reactor.rs`) and the layers above reach the core only
//! through the `pub(crate)` items re-exported here.
//!
//! | file | what |
//! | --- | --- |
//! | `task.rs` | [`Core`] (the control block), its [`State`]s and named transitions, [`Waiter`] |
//! | `hub.rs` | the [`Hub`] struct, its creation, [`current_hub`] |
//! | `sched.rs` | the loop, the ready queue, park / wake / yield, kill requests, the switch sites |
//! | `slicing.rs` | making a worker the occupant of the shared stack: the slice copies |
//! | `io.rs` | I/O slots and the dispatch of `mio` events |
//! | `timer.rs` | the deadline heap behind sleeps, timeouts and `spawn_later` |
//! | `mailbox.rs` | what other threads send a hub, and the wake-up slots they name |
//! | `beacon.rs` | what a monitored hub publishes on every switch |
//! | `guard.rs` | the guard-page table and the `SIGSEGV` handler that names an overflowing greenlet |
//! | `teardown.rs` | killing what is left, freeing the hub at thread exit |
//! | `context.rs` | what a greenlet carries besides its stack: greenlet-locals, its saved spans |
//! | `panic_report.rs` | the panic hook wrapper that names the greenlet |
//! | `config.rs`, `stats.rs` | settings from the environment; counters |
//! | `warn.rs` | the runtime's warnings: `tracing`, or stderr (rate-limited) when no subscriber is set |
//!
//! # Invariants
//!
//! The `// SAFETY:` comments cite these by number ("invariant 7"); ARCHITECTURE.md keeps the map
//! and the diagrams and points here.
//!
//! 1. **No pointer into a suspended greenlet's stack is ever used.** While a worker is suspended
//!    its addresses may hold another worker's bytes. Hence `spawn` takes `'static` closures;
//!    waiters, timers, I/O slots and values in transit live on the heap ([`Core`], slabs, `Rc`);
//!    the hub keeps only raw pointers to heap cores across switches.
//! 2. **A started greenlet never changes OS thread.** Its slice holds absolute addresses of its
//!    hub's shared stack, and the compiler may cache thread-local addresses across the switch
//!    call. `Greenlet`, `Rc`-based hub types and the hub itself are `!Send` (compile-fail
//!    doctests and `tests/compile_fail/`).
//! 3. **Nothing unwinds across the assembly.** Every greenlet's entry catches panics; the entry
//!    functions are `extern "C"`, so an escaping unwind aborts instead of crossing the trampoline.
//! 4. **Kill and drop unwind.** Killing a started greenlet resumes it with a kill request; it
//!    unwinds from its blocking point; teardown does this for every live greenlet.
//! 5. **One runner per thread.** Exactly one context executes on a hub thread at a time; it is
//!    never preempted between blocking points. So `Rc`/`RefCell` state shared by greenlets of one
//!    hub is race-free, and the hub's own `Cell`/`RefCell` fields need no locks. No `RefCell`
//!    borrow is held across a switch.
//! 6. **Guard pages.** Both mmap'd stacks have a `PROT_NONE` page below them: an overflow faults
//!    instead of overwriting memory, and the fault is diagnosed by name (`guard.rs`).
//! 7. **The hub outlives every frame that refers to it.** It is boxed, its address is published
//!    through a `const` thread-local (no destructor, so readable during thread-local destruction),
//!    and only the teardown guard frees it — after every worker has unwound or been abandoned
//!    (never to be resumed), while the hub context is suspended and will never run again.
//! 8. **Slicing runs on the hub's stack.** `Slice::save`/`restore` are called only from the hub
//!    context, which never runs on the shared stack, so the bytes being overwritten belong to
//!    nobody running. The saved sp of a worker always lies inside the shared stack
//!    (debug-asserted).
//! 9. **Ownership while suspended.** Every unfinished worker is owned by `Hub::live`, the running
//!    context by `Hub::running`, the main greenlet by `Hub::main`; so the [`Core`] a raw pointer
//!    names (`Hub::current`, a region's occupant) is alive whenever it is dereferenced.
//!
//! The overflow handler's own invariants (O1–O3) are at the top of `guard.rs`.

mod beacon;
pub(crate) mod config;
pub(crate) mod context;
mod guard;
mod hub;
mod io;
mod live;
mod mailbox;
mod panic_report;
mod sched;
mod slicing;
mod stacks;
mod stats;
mod task;
mod teardown;
mod timer;
pub(crate) mod warn;

pub(crate) use beacon::Beacon;
pub(crate) use config::Settings;
pub(crate) use hub::{current_hub, existing_hub, has_hub, Hub};
pub(crate) use io::{Dir, IoHandle, IoSlot, Naming, SHORT_READ_RULE};
pub(crate) use mailbox::{Job, Msg, RemoteWake, Shared};
pub(crate) use sched::Start;
pub(crate) use stacks::DEFAULT_MAX_STACKS;
pub(crate) use task::{
    panic_message, Core, KillSignal, Kind, Scope, ScopeSignal, State, Task, TaskRef, WaitOn,
    Waiter, Wake,
};
pub(crate) use warn::{warn_at, Warning};
