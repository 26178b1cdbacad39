//! # greenhub
//!
//! gevent for Rust: **greenlets** that run plain blocking-looking code, switched by **stack
//! slicing**, and a per-thread **hub** that runs a `mio` event loop and decides who runs next.
//!
//! ```
//! use std::time::Duration;
//! use greenhub::hub;
//!
//! let total = hub::run(|| {
//!     let workers: Vec<_> = (0..10u64)
//!         .map(|i| hub::spawn(move || {
//!             hub::sleep(Duration::from_millis(10 - i)); // parks only this greenlet
//!             i * i
//!         }))
//!         .collect();
//!     workers.into_iter().map(|g| g.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 285);
//! ```
//!
//! ## The model in four sentences
//!
//! Each OS thread that uses greenhub gets a hub, created on first use. Workers spawned with
//! [`hub::spawn`] run on the hub's stack regions; when one blocks, the hub switches to the next
//! ready greenlet. One greenlet runs per thread at a time and is never interrupted between
//! blocking points (the runtime's GIL), so `Rc`/`RefCell` state shared by the greenlets of one
//! hub is race-free. A started greenlet never changes thread; greenlets, handles and hub-local
//! types are `!Send`.
//!
//! Per greenlet, besides its stack: [`greenlet_local!`] values (gevent's `local`), a tracing span
//! that follows it across switches ([`hub::spawn_instrumented`], `Builder::span`), and
//! [`hub::block_on`] to await runtime-agnostic async code while parking only the calling greenlet.
//!
//! ## Stacks
//!
//! A hub keeps a pool of stack regions (each [`hub::Config::stack_size`] bytes above a guard
//! page) and binds every greenlet to one region when it first runs, for good. Greenlets that run
//! get a region of their own while the hub has at most [`hub::Config::max_stacks`] (default
//! 1,024) of them: switching between them copies nothing. Beyond that, new greenlets are bound to
//! regions whose greenlets are parked, and greenlets bound to one region share it by **stack
//! slicing**: the region's occupant keeps its bytes in place, the others' live bytes are copied
//! to the heap until they are resumed — so a million parked greenlets cost their slices, not a
//! million stacks. When the hub goes idle, regions nobody uses give their pages back, and so do
//! regions whose greenlets have all been parked for half a second (their live slices move to the
//! heap first).
//!
//! **What sharing rules out.** By default a greenlet's addresses may be shared: while it is
//! parked, another greenlet bound to the same region may run over them. Safe code that lets
//! something *outside the greenlet* use its stack across a blocking call would then see another
//! greenlet's bytes. Two patterns do that:
//!
//! - lending locals to other threads — `std::thread::scope` (rayon, crossbeam scopes) — and
//!   blocking on greenhub inside the scope;
//! - pinning an intrusive node on the stack that someone else writes while the greenlet is parked
//!   (`pin!(tokio::sync::Notify::notified())` polled by hand, `event-listener`), then blocking on
//!   greenhub.
//!
//! Spawn such a greenlet with [`hub::Builder::exclusive_stack`]: its region is never given to
//! another greenlet while it lives, so both patterns are sound; or make every greenlet of a hub
//! exclusive with [`hub::Config::exclusive_stacks`] (the fully sound mode, at the memory cost of
//! a region per live greenlet). Everything else — references between greenlets through `Rc`,
//! the heap, channels, sockets — is unaffected, and greenhub itself never pins anything on a
//! greenlet's stack.
//!
//! ARCHITECTURE.md explains the stacks, the invariants that keep slicing sound, and every `unsafe`
//! block.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

// Layers, lowest first; a module imports only from the layers above it in this list
// (tests/layers.rs checks every `crate::` path).

// 0-2: every libc and assembly contact; stacks and slices; the single-thread core.
mod sys;

mod stack;

mod rt;

// 3: the public face of the core.
pub mod greenlet;
pub mod local;
mod reactor;
pub mod timeout;

// 4-6: the doors between threads; the monitor; the public hub module that gathers them.
mod remote;
pub use remote::threadpool;

mod block_on;
mod monitor;
pub mod monkey;

pub mod hub;

// 7-10: what programs use.
pub mod io;
pub mod net;
pub mod sync;
pub mod time;

pub mod fs;
pub mod pool;
pub mod process;
pub mod signal;

pub mod runtime;

pub mod server;

pub use greenlet::{Greenlet, GreenletError};
pub use timeout::{timeout, Elapsed, Timeout};

/// The README's examples, compiled (and the first one run) as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
