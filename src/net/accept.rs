//! What `accept` does when the process runs out of descriptors or the kernel out of memory.
//!
//! `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` leave the connection in the listen queue, so an
//! accept loop that just retries (`for s in listener.incoming() { let Ok(s) = s else { continue
//! }; .. }`, the std idiom) gets the same error again at once. With threads that is harmless:
//! the handlers that will close descriptors run on other threads. On a hub they are greenlets of
//! the same thread and would never run, since an accept that fails without parking never switches
//! — the loop would spin forever. So a blocking-mode `accept` that fails this way first sleeps,
//! letting every other greenlet of the hub run: 1 ms, doubling per consecutive failure up to
//! 100 ms, back to nothing after an accept succeeds. A sleep rather than a `yield_now`: a yield
//! returns at once when no other greenlet is ready (handlers waiting for their clients), and the
//! loop would spin on the CPU. The state is process-wide, as descriptor exhaustion is.
//!
//! A warning goes to `tracing` at most once every 10 s while it lasts.

#![deny(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rt::{warn_at, Warning};

/// The first pause.
const MIN: Duration = Duration::from_millis(1);
/// The longest pause.
const MAX: Duration = Duration::from_millis(100);
/// At most one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The next pause in nanoseconds; 0 while accepts succeed.
static NEXT_PAUSE: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether an accept error means "out of descriptors or kernel memory": nothing the caller did,
/// and it lasts until something else frees resources.
pub(crate) fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// An accept succeeded: the next exhaustion starts again with the shortest pause.
#[inline]
pub(crate) fn succeeded() {
    if NEXT_PAUSE.load(Ordering::Relaxed) != 0 {
        NEXT_PAUSE.store(0, Ordering::Relaxed);
    }
}

/// An accept failed with `e`: on exhaustion in blocking mode, sleep first (see the module docs).
/// Returns `e` for the caller to return.
#[cold]
pub(crate) fn failed(e: io::Error, nonblocking: bool) -> io::Error {
    if !is_exhaustion(&e) || nonblocking || std::thread::panicking() {
        return e;
    }
    let nanos = NEXT_PAUSE.load(Ordering::Relaxed);
    let pause = if nanos == 0 {
        MIN
    } else {
        Duration::from_nanos(nanos)
    };
    NEXT_PAUSE.store(
        u64::try_from((pause * 2).min(MAX).as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    warn(&e);
    crate::hub::sleep(pause);
    e
}

fn warn(e: &io::Error) {
    let now = Instant::now();
    let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
        *last = Some(now);
        drop(last);
        warn_at!(Warning::AcceptBackoff, warn, {}
            "greenhub: accept failed ({e}); each failing accept now sleeps (up to {MAX:?}) so \
             the greenlets that close descriptors can run"
        );
    }
}
