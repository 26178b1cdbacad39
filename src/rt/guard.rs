//! Stack-overflow diagnosis: a `SIGSEGV`/`SIGBUS` handler that names the greenlet whose stack hit a
//! guard page.
//!
//! # The pieces
//!
//! ```text
//!   SLOTS (process-global, fixed size, atomics only)         one hub (heap, boxed)
//!   ┌───────────────────────────────────────────────┐      ┌─────────────────────────────┐
//!   │ state │ tid │ shared guard │ hub guard │ KiB │ ────► │ current: Cell<*const Core> ─┼──► Core { id, name }
//!   ├───────────────────────────────────────────────┤      └─────────────────────────────┘
//!   │ ... one slot per live hub (MAX_HUBS)          │
//!   └───────────────────────────────────────────────┘
//! ```
//!
//! - [`register`] (called by `Hub::install`, on the hub's thread) claims a slot and writes the two
//!   guard-page ranges, the usable sizes, the thread id and the addresses of the hub's `current`
//!   and `running_guard` cells, then publishes the slot with a release store. The returned [`Registration`] frees the slot when
//!   the hub is dropped — before its stacks are unmapped (it is the hub's first field).
//! - The hub already stores the running greenlet's core pointer in `current` on every switch, so
//!   publishing "who runs" costs the switch path nothing; `make_occupant` stores the guard page of
//!   the region it is about to resume a worker on in `running_guard` (one store per resume). The handler reads that cell on the thread
//!   that faulted, which is the thread that wrote it: a guard-page fault is synchronous, and every
//!   store to `current` precedes the opaque assembly switch into the greenlet that faulted, so the
//!   value is in memory. The core it names is owned by `Hub::running` while it runs (rt invariant 9).
//! - The handler ([`on_fault`]) runs on an alternate signal stack (`SA_ONSTACK`): the faulting stack
//!   has no room left. Rust's runtime gives its main thread and the threads it spawns one; `register`
//!   checks with `sigaltstack` and maps one of its own only if the thread has none (freed with the
//!   registration).
//! - It uses only async-signal-safe operations: atomic loads, reads of memory that cannot change
//!   under it, `syscall(gettid)`, `write(2)` of a message formatted by hand into a stack buffer,
//!   `sigaction` and `abort`. No allocation, no locks, no formatting machinery.
//! - A fault that is not in a registered guard page of the faulting thread goes to the handler that
//!   was installed before ours — normally Rust's, which reports overflows of thread stacks ("thread
//!   'x' has overflowed its stack") and otherwise restores the default action so the fault re-raises.
//!
//! # Limits
//!
//! - A frame larger than the guard page could skip it; Rust's stack probes (x86_64, aarch64) touch
//!   every page of a large frame in order, so Rust code always hits the guard. C code called from a
//!   greenlet without probes might not.
//! - More than [`MAX_HUBS`] hubs alive at once: the extra hubs still have guard pages, but their
//!   overflows are reported as a plain `SIGSEGV` (a `tracing` warning says so once).
//! - At thread exit, Rust frees its alternate signal stack before thread-local destructors run. The
//!   teardown guard no longer resumes any greenlet then (`teardown.rs`), so no greenlet stack can
//!   overflow at that point. The destructors it still runs (closures that never started, what the
//!   hub owns) run on the thread's own stack; an overflow there dies by a bare `SIGSEGV` even with
//!   an alternate stack mapped, since Rust's handler no longer recognises the thread's guard page
//!   by then (checked: it resets to the default action).

use std::cell::Cell;
use std::ffi::c_void;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use super::task::{Core, NO_REGION};
use crate::stack::Stack;
use crate::sys::mmap::{page_size, GuardedMapping, Reserve};
use crate::sys::signal::{self, gettid};

/// Hubs whose overflows can be named at the same time.
pub(crate) const MAX_HUBS: usize = 128;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// One hub's guard pages. Written only by the hub's thread between `WRITING` and `READY`.
struct Slot {
    state: AtomicU8,
    /// Kernel thread id of the hub's thread: a guard page is "ours" only on its own thread.
    tid: AtomicI64,
    /// Usable KiB of every stack region of the hub (the running worker's guard page is in the
    /// hub's `running_guard` cell).
    shared_kib: AtomicUsize,
    hub_lo: AtomicUsize,
    hub_hi: AtomicUsize,
    hub_kib: AtomicUsize,
    /// Address of the hub's `current: Cell<*const Core>`.
    current: AtomicUsize,
    /// Address of the hub's `running_guard: Cell<usize>`.
    running_guard: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise SLOTS
const EMPTY: Slot = Slot {
    state: AtomicU8::new(FREE),
    tid: AtomicI64::new(0),
    shared_kib: AtomicUsize::new(0),
    hub_lo: AtomicUsize::new(0),
    hub_hi: AtomicUsize::new(0),
    hub_kib: AtomicUsize::new(0),
    current: AtomicUsize::new(0),
    running_guard: AtomicUsize::new(0),
};

static SLOTS: [Slot; MAX_HUBS] = [EMPTY; MAX_HUBS];

/// The handlers that were installed before ours, for chaining. Set once, before ours is installed.
static PREV_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREV_BUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();
static FULL_WARNED: Once = Once::new();

/// Bytes of an alternate signal stack we map ourselves (above its own guard page).
const ALT_STACK_SIZE: usize = 64 * 1024;

/// A hub's claim on a slot (and on an alternate signal stack, if it had to map one). Dropping it
/// frees both; it must be dropped on the hub's thread, before the hub's stacks are unmapped.
pub(crate) struct Registration {
    slot: Option<usize>,
    alt: Option<AltStack>,
}

impl Registration {
    /// A registration that holds nothing (before `register` ran).
    pub(crate) fn none() -> Registration {
        Registration {
            slot: None,
            alt: None,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            SLOTS[i].state.store(FREE, Ordering::Release);
        }
        drop(self.alt.take());
    }
}

/// Records the guard pages of a hub's two stacks so an overflow into them is reported by name, and
/// makes sure the process handler and this thread's alternate signal stack exist. Call on the hub's
/// thread; `current` and `running_guard` must stay valid until the registration is dropped.
pub(crate) fn register(
    region_size: usize,
    hub_stack: &Stack,
    current: *const Cell<*const Core>,
    running_guard: *const Cell<usize>,
) -> Registration {
    INSTALL.call_once(install_handlers);
    let alt = match AltStack::ensure() {
        Ok(alt) => alt,
        Err(e) => {
            tracing::warn!(
                "greenhub: no alternate signal stack for this thread ({e}); a stack overflow here \
                 will die by SIGSEGV without naming the greenlet"
            );
            None
        }
    };
    let slot = SLOTS.iter().position(|s| {
        s.state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    match slot {
        Some(i) => {
            let s = &SLOTS[i];
            let h = hub_stack.guard();
            s.tid.store(gettid(), Ordering::Relaxed);
            s.shared_kib.store(region_size / 1024, Ordering::Relaxed);
            s.hub_lo.store(h.start, Ordering::Relaxed);
            s.hub_hi.store(h.end, Ordering::Relaxed);
            s.hub_kib
                .store(hub_stack.usable() / 1024, Ordering::Relaxed);
            s.current.store(current as usize, Ordering::Relaxed);
            s.running_guard
                .store(running_guard as usize, Ordering::Relaxed);
            s.state.store(READY, Ordering::Release);
        }
        None => FULL_WARNED.call_once(|| {
            tracing::warn!(
                "greenhub: more than {MAX_HUBS} hubs are alive; stack overflows on the extra hubs \
                 are reported as a plain SIGSEGV"
            )
        }),
    }
    Registration { slot, alt }
}

fn install_handlers() {
    for (sig, prev) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
        let Ok(old) = signal::action(sig) else {
            continue;
        };
        let _ = prev.set(old);
        // `on_fault` performs only async-signal-safe operations (invariant O1).
        if let Err(e) = signal::install(sig, on_fault, libc::SA_ONSTACK) {
            tracing::warn!("greenhub: cannot install the stack-overflow reporter: {e}");
        }
    }
}

/// Which guard page a fault hit.
enum Hit {
    /// A worker overflowed its stack region.
    Shared { kib: usize, core: *const Core },
    /// The hub context overflowed its own stack.
    Hub { kib: usize },
}

/// Finds the registered guard page of the *faulting* thread containing `addr`: the hub stack's,
/// or that of the running worker's stack region. Async-signal-safe.
fn lookup(addr: usize) -> Option<Hit> {
    let tid = gettid();
    for s in &SLOTS {
        if s.state.load(Ordering::Acquire) != READY || s.tid.load(Ordering::Relaxed) != tid {
            continue;
        }
        // The one slot of this thread's hub.
        if (s.hub_lo.load(Ordering::Relaxed)..s.hub_hi.load(Ordering::Relaxed)).contains(&addr) {
            return Some(Hit::Hub {
                kib: s.hub_kib.load(Ordering::Relaxed),
            });
        }
        let cell = s.current.load(Ordering::Relaxed) as *const Cell<*const Core>;
        // SAFETY: the slot is READY and belongs to this thread, so its hub is alive (the
        // registration is dropped before the hub's memory is freed) and `cell` points at its
        // `current` field, last written by this same thread before it switched to the greenlet
        // that faulted (see the module docs). A volatile read keeps the compiler from assuming
        // anything about it.
        let core = unsafe { ptr::read_volatile((*cell).as_ptr()) };
        if core.is_null() {
            return None;
        }
        // SAFETY: a non-null `current` names the running greenlet's core, owned by `Hub::running`
        // while it runs (invariant 9); `region` was written by this thread before the greenlet
        // first ran and never changes after.
        if unsafe { ptr::read_volatile((*core).region.as_ptr()) } == NO_REGION {
            return None; // the main greenlet: it runs on the thread's own stack
        }
        let gcell = s.running_guard.load(Ordering::Relaxed) as *const Cell<usize>;
        // SAFETY: as for `cell`: the hub is alive and `gcell` points at its `running_guard`
        // field, written by this thread (`make_occupant`) before it switched into the running
        // worker, with the guard page of that worker's region.
        let guard = unsafe { ptr::read_volatile((*gcell).as_ptr()) };
        if guard != 0 && (guard..guard + page_size()).contains(&addr) {
            return Some(Hit::Shared {
                kib: s.shared_kib.load(Ordering::Relaxed),
                core,
            });
        }
        return None; // another region's guard, or no guard at all: a wild access, not ours
    }
    None
}

/// The `SIGSEGV`/`SIGBUS` handler. Async-signal-safe: see the module docs.
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler of SIGSEGV/SIGBUS.
    let addr = unsafe { signal::fault_address(info) };
    if let Some(hit) = lookup(addr) {
        let mut m = Msg::new();
        m.push(b"\ngreenhub: ");
        match hit {
            Hit::Shared { kib, core } if !core.is_null() => {
                // SAFETY: a non-null `current` names the running greenlet's core, owned by
                // `Hub::running` while it runs (rt invariant 9); `id` and `name` never change after
                // construction, so reading them here races with nothing.
                let core = unsafe { &*core };
                m.push(b"greenlet ");
                m.push_u64(core.id);
                if let Some(name) = core.name() {
                    m.push(b" (");
                    m.push_str_trunc(name, 96);
                    m.push(b")");
                }
                m.push(b" overflowed its ");
                m.push_u64(kib as u64);
                m.push(b" KiB stack; raise hub::Config::stack_size or GREENHUB_STACK_SIZE");
            }
            Hit::Shared { kib, .. } => {
                m.push(b"a greenlet overflowed its ");
                m.push_u64(kib as u64);
                m.push(b" KiB stack");
            }
            Hit::Hub { kib } => {
                m.push(b"the hub overflowed its ");
                m.push_u64(kib as u64);
                m.push(
                    b" KiB stack (a hub callback or a destructor the hub runs recursed too deep); \
                      raise hub::Config::hub_stack_size or GREENHUB_HUB_STACK_SIZE",
                );
            }
        }
        m.push(b"\nfatal runtime error: stack overflow, aborting\n");
        signal::write_stderr(m.bytes());
        signal::abort();
    }
    chain(sig, info, ctx);
}

/// Hands a fault that is not ours to the handler installed before ours.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let prev = if sig == libc::SIGBUS {
        PREV_BUS.get()
    } else {
        PREV_SEGV.get()
    };
    let Some(prev) = prev else {
        return signal::set_default(sig);
    };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Put the old disposition back and return: the faulting instruction runs again and the
        // kernel applies it (for a fault that is the default action: the process dies by `sig`).
        signal::restore(sig, prev);
    } else {
        // SAFETY: `prev` holds a real handler (checked above), read from the kernel before ours
        // was installed; `info` and `ctx` are the arguments of the fault being handled (O3).
        unsafe { signal::call_handler(prev, sig, info, ctx) };
    }
}

/// A message formatted without allocating, for the signal handler.
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg {
            buf: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// At most `max` bytes of `s`, cut at a character boundary.
    fn push_str_trunc(&mut self, s: &str, max: usize) {
        let mut n = s.len().min(max);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.push(&s.as_bytes()[..n]);
    }

    fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// An alternate signal stack this module mapped for a thread that had none.
struct AltStack {
    map: Option<GuardedMapping>,
}

impl AltStack {
    /// Maps and installs an alternate signal stack if the calling thread has none.
    fn ensure() -> io::Result<Option<AltStack>> {
        if signal::alt_stack()?.is_some() {
            return Ok(None); // Rust's runtime (or the application) gave the thread one
        }
        let map = GuardedMapping::new(ALT_STACK_SIZE, 1, Reserve::Now)?;
        // SAFETY: the usable part of our own mapping stays mapped until `drop` disables the
        // alternate stack again (O1).
        unsafe { signal::set_alt_stack(map.limit(), map.usable()) }?;
        Ok(Some(AltStack { map: Some(map) }))
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let Some(map) = self.map.take() else { return };
        if let Ok(Some((low, _, on_it))) = signal::alt_stack() {
            if low == map.limit() {
                if on_it {
                    // Running on it (cannot happen outside a handler): leak rather than free.
                    std::mem::forget(map);
                    return;
                }
                signal::disable_alt_stack();
            }
        }
        drop(map); // no longer installed as this thread's signal stack: unmapped
    }
}
