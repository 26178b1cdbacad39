//! The runtime's warnings: one channel for the few things greenhub reports on its own (a blocked
//! hub, an accept loop backing off, a detached greenlet's panic, greenlets abandoned at teardown).
//!
//! Every warning goes to `tracing` when the program has installed a dispatcher
//! (`tracing::dispatcher::has_been_set`, true once any global or scoped subscriber was set). When
//! none was ever set — a program that never heard of `tracing` — the warning is written to stderr
//! instead, so it is not lost, but at most once per [`Warning`] kind per second: a loop that fails
//! a thousand times a second prints one line a second, and the next line says how many were
//! suppressed in between.
//!
//! Use [`warn_at!`](crate::rt::warn_at): `warn_at!(Warning::X, warn, { field = v, } "fmt", args)`
//! (the braces hold `tracing` fields, possibly none: `{}`).

#![deny(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The kinds of warning, each rate-limited on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Warning {
    /// The blocked-hub monitor's report (`monitor.rs`).
    Blocked,
    /// An accept loop backing off after a resource-exhaustion error (`server.rs`).
    AcceptBackoff,
    /// A detached greenlet panicked, or its result panicked when dropped (`greenlet.rs`).
    DetachedPanic,
    /// Teardown abandoned greenlets without running their destructors (`teardown.rs`).
    Abandoned,
    /// A hub callback panicked, or another failure of the runtime's own machinery.
    Runtime,
}

const KINDS: usize = 5;

impl Warning {
    fn index(self) -> usize {
        match self {
            Warning::Blocked => 0,
            Warning::AcceptBackoff => 1,
            Warning::DetachedPanic => 2,
            Warning::Abandoned => 3,
            Warning::Runtime => 4,
        }
    }
}

/// Milliseconds since [`epoch`] plus one at the last stderr line of each kind (0: never).
static LAST: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Lines of each kind suppressed since the last one printed.
static SUPPRESSED: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whether warnings go to `tracing` (a dispatcher was set) rather than to stderr.
#[inline]
pub(crate) fn to_tracing() -> bool {
    tracing::dispatcher::has_been_set()
}

/// Writes `args` to stderr unless a line of the same kind was written less than a second ago.
/// Safe to call anywhere, thread-local destructors included; write errors are ignored.
#[cold]
#[inline(never)]
pub(crate) fn to_stderr(kind: Warning, args: fmt::Arguments<'_>) {
    let i = kind.index();
    let now = epoch().elapsed().as_millis() as u64 + 1;
    let last = LAST[i].load(Ordering::Relaxed);
    if (last != 0 && now < last + 1000)
        || LAST[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        SUPPRESSED[i].fetch_add(1, Ordering::Relaxed);
        return;
    }
    let skipped = SUPPRESSED[i].swap(0, Ordering::Relaxed);
    let mut err = std::io::stderr().lock();
    let _ = if skipped > 0 {
        writeln!(
            err,
            "{args} ({skipped} similar warning(s) suppressed in the last second; install a \
             tracing subscriber to see them all)"
        )
    } else {
        writeln!(err, "{args}")
    };
}

/// Reports a runtime warning: through `tracing` at `$level` (with the fields in braces) when a
/// dispatcher was set, else to stderr at most once per second per kind. See the module docs.
macro_rules! warn_at {
    ($kind:expr, $level:ident, { $($field:tt)* } $($arg:tt)+) => {
        if $crate::rt::warn::to_tracing() {
            ::tracing::$level!($($field)* $($arg)+);
        } else {
            $crate::rt::warn::to_stderr($kind, ::std::format_args!($($arg)+));
        }
    };
}
pub(crate) use warn_at;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_prints_at_most_once_a_second_and_counts_the_rest() {
        // Runtime is used by no other unit test.
        let i = Warning::Runtime.index();
        to_stderr(Warning::Runtime, format_args!("greenhub test warning 1"));
        let first = LAST[i].load(Ordering::Relaxed);
        assert_ne!(first, 0);
        to_stderr(Warning::Runtime, format_args!("greenhub test warning 2"));
        to_stderr(Warning::Runtime, format_args!("greenhub test warning 3"));
        assert_eq!(LAST[i].load(Ordering::Relaxed), first);
        assert_eq!(SUPPRESSED[i].load(Ordering::Relaxed), 2);
    }
}
