//! The doors between threads: a [`handle::Handle`] to spawn on another hub, [`blocker`]s for a
//! greenlet that waits for another thread, and the thread pool ([`threadpool`]) for blocking or
//! CPU-bound work. Built on the mailbox of `rt/mailbox.rs`; `sync::mpmc` and `runtime` build on
//! these.

pub(crate) mod blocker;
pub(crate) mod handle;
pub mod threadpool;
