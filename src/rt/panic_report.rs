//! Panic reports name the greenlet: a panic in a worker greenlet is reported as
//!
//! ```text
//! greenhub: panic in greenlet 7 (worker-3):
//! thread 'main' panicked at src/main.rs:12:9:
//! boom
//! ```
//!
//! The panic hook is process-global, so greenhub wraps whatever hook is installed when the first
//! hub is created (std's default, or the application's) once, and the wrapper prints one line
//! naming the running greenlet before calling it. Outside greenlets (plain threads, the main
//! greenlet, the hub context) the report is unchanged. Kills print nothing: they unwind with
//! `resume_unwind`, which does not call the hook. A hook the application installs *after* the
//! first hub replaces the wrapper (it may call `greenhub::greenlet::current_id` itself).

use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};

use super::hub::existing_hub;
use super::task::Kind;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the wrapping hook, once per process. Called when a hub is created.
pub(crate) fn install() {
    if INSTALLED.load(Ordering::Relaxed) || std::thread::panicking() {
        // Replacing the hook while this thread panics would panic again (and abort); a later hub
        // tries again.
        return;
    }
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(who) = running_worker() {
            eprintln!("greenhub: panic in {who}:");
        }
        previous(info);
    }));
}

/// "greenlet 7 (name)" if a worker greenlet is running on this thread's hub.
fn running_worker() -> Option<String> {
    let core = existing_hub()?.running_core()?;
    (core.kind == Kind::Worker).then(|| core.describe())
}
