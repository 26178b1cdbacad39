//! The beacon a monitored hub publishes on every switch, for the blocked-hub monitor
//! (`crate::monitor`, which owns the sampling thread). The hub owns it; the monitor only reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::task::Core;

/// What one monitored hub publishes; written by the hub on every switch, read by the monitor.
pub(crate) struct Beacon {
    /// Switches into a greenlet or back to the hub.
    pub(crate) switches: AtomicU64,
    /// Id of the greenlet being resumed; 0 while the hub's own loop runs.
    pub(crate) running: AtomicU64,
    /// The limit in nanoseconds.
    pub(crate) limit_ns: AtomicU64,
    /// The last named greenlet resumed: (id, name). Updated with `try_lock` only.
    pub(crate) name: Mutex<(u64, String)>,
    /// The hub's thread, for the report.
    pub(crate) thread: String,
}

impl Beacon {
    /// The hub resumes `core`. Called on the hub's stack before the switch.
    #[inline]
    pub(crate) fn entering(&self, core: &Core) {
        self.running.store(core.id, Ordering::Relaxed);
        self.switches.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = core.name() {
            if let Ok(mut slot) = self.name.try_lock() {
                if slot.0 != core.id {
                    slot.0 = core.id;
                    slot.1.clear();
                    slot.1.push_str(n);
                }
            }
        }
    }

    /// The hub's loop runs again.
    #[inline]
    pub(crate) fn left(&self) {
        self.running.store(0, Ordering::Relaxed);
        self.switches.fetch_add(1, Ordering::Relaxed);
    }
}

impl Beacon {
    /// A beacon for the calling thread's hub, with no limit set yet.
    pub(crate) fn new() -> Beacon {
        Beacon {
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
            limit_ns: AtomicU64::new(0),
            name: Mutex::new((0, String::new())),
            thread: std::thread::current().name().map_or_else(
                || format!("{:?}", std::thread::current().id()),
                str::to_owned,
            ),
        }
    }
}
