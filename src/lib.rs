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
//! [`hub::spawn`] all run on one shared stack per hub; when one blocks, the hub switches to the next
//! ready greenlet, and copies a worker's live stack slice to the heap only when another worker needs
//! the shared stack — so a parked greenlet costs only the bytes its stack really uses. One greenlet
//! runs per thread at a time and is never interrupted between blocking points (the runtime's GIL), so
//! `Rc`/`RefCell` state shared by the greenlets of one hub is race-free. A started greenlet never
//! changes thread; greenlets, handles and hub-local types are `!Send`.
//!
//! ARCHITECTURE.md explains the stacks, the invariants that keep slicing sound, and every `unsafe`
//! block.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

mod arch;
mod handoff;
mod monitor;
mod overflow;
mod stack;
mod timer;
mod valgrind;

pub mod fs;
pub mod greenlet;
pub mod hub;
pub mod monkey;
pub mod pool;
pub mod runtime;
pub mod sync;
pub mod threadpool;
pub mod timeout;

pub use greenlet::{Greenlet, GreenletError};
pub mod net;
mod reactor;
pub mod server;

pub use timeout::{timeout, Elapsed, Timeout};

/// The README's examples, compiled (and the first one run) as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
