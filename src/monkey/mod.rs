//! Unmodified blocking code made cooperative, as gevent's `monkey.patch_all()` does — the cargo
//! feature `monkey` (off by default).
//!
//! With the feature on, greenhub's library *defines* the libc functions through which a program
//! blocks on sockets and time. Inside a greenlet, a call that would block parks only that
//! greenlet until the descriptor is ready (or the time has come) and the hub runs the others; the
//! call then returns what libc would have returned. Everywhere else the functions are the plain
//! system calls. So a std::net thread-per-connection server whose only change is
//! `std::thread::spawn` → `hub::spawn` serves every connection from one thread:
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::TcpListener;
//! use greenhub::hub;
//!
//! hub::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:7000").unwrap();
//!     for stream in listener.incoming() {
//!         let mut stream = stream.unwrap();
//!         hub::spawn(move || {          // was: std::thread::spawn
//!             let mut buf = [0; 1024];
//!             while let Ok(n @ 1..) = stream.read(&mut buf) {
//!                 if stream.write_all(&buf[..n]).is_err() { break; }
//!             }
//!         });
//!     }
//! });
//! ```
//!
//! [`is_active`] tells whether the program really runs through these definitions.
//!
//! # What is defined
//!
//! `read`, `write`, `readv`, `writev`, `recv`, `recvfrom`, `recvmsg`, `send`, `sendto`,
//! `sendmsg`, `connect`, `accept`, `accept4`, `poll`, `nanosleep`, `clock_nanosleep`, `usleep`,
//! `sleep`, `select`, `epoll_wait`, `getaddrinfo`, the `_FORTIFY_SOURCE` variants `__read_chk`,
//! `__recv_chk`, `__recvfrom_chk`, `__poll_chk`, and for bookkeeping `close`, `dup2`, `dup3`.
//!
//! # The rule
//!
//! A call *cooperates* when it is made inside a greenlet of a hub — the main greenlet or a
//! worker of a thread whose hub exists; not in the hub context (callbacks, destructors the hub
//! runs), not on a thread without a hub (no hub is ever created by these functions), not while
//! the thread is unwinding (`std::thread::panicking()`), and not from inside the monkey layer
//! itself (a recursion guard). Then:
//!
//! - **Sockets in blocking mode** — the mode the program chose: greenhub never changes a
//!   descriptor's flags except for the one system call of a `connect` below — are read and written
//!   with `MSG_DONTWAIT` (the per-call non-blocking flag; on a socket `read` *is* `recv`, `readv`
//!   is `recvmsg`, and so on). On `EAGAIN` the greenlet parks until the socket is ready and
//!   retries. The result is the blocking call's: a read returns as soon as any data arrived; a
//!   write, `send` or `sendmsg` on a stream returns only when every byte is queued (or, as the
//!   kernel does, early with the count so far at an error or timeout); `recv(MSG_WAITALL)` on a
//!   stream gathers `len` bytes or up to end of file. `SO_RCVTIMEO`/`SO_SNDTIMEO` (what std's
//!   `set_read_timeout`/`set_write_timeout` set) are read with `getsockopt` at the first wait of
//!   a call and bound the whole call: expiry gives `EAGAIN`, as Linux does.
//! - **Sockets the program made non-blocking** (`O_NONBLOCK` via `fcntl`, `ioctl(FIONBIO)` —
//!   std's `set_nonblocking` — or `SOCK_NONBLOCK`) get `EAGAIN` as always; the flag is read with
//!   `fcntl(F_GETFL)` only when an attempt returned `EAGAIN`.
//! - **`connect`** on a blocking socket sets `O_NONBLOCK` for the one `connect` system call,
//!   restores the flags at once, parks until writable and reads `SO_ERROR`. `SO_SNDTIMEO` expiry
//!   gives `EINPROGRESS` (Linux's blocking connect does the same).
//! - **`accept`/`accept4`** on a blocking listener: a zero-timeout `poll` tells whether a
//!   connection is pending; if not, the greenlet parks until the listener is readable.
//!   (Another *thread* accepting from the same listener between that poll and the accept would
//!   make this accept block the thread — correct, only not cooperative.)
//! - **`epoll_wait`** on the program's own epoll instance (a mio-based library used from a
//!   greenlet) parks until the epoll descriptor itself is readable; the hub's own `epoll_wait`
//!   runs in the hub context and passes through.
//! - **`poll`** (and **`select`**, which libcurl uses) does a zero-timeout poll first; if
//!   nothing is ready it parks on every descriptor at once until one becomes ready or the timeout
//!   passes, then polls again. Any descriptor type epoll accepts works here, pipes included.
//! - **Sleeps** (`nanosleep` — std's `thread::sleep` —, `clock_nanosleep` on the monotonic,
//!   realtime and boot-time clocks, `usleep`, `sleep`) become `hub::sleep`.
//! - **`getaddrinfo`** runs libc's resolver on [`crate::threadpool`]; only the calling greenlet
//!   waits. glibc's resolver opens its sockets with its own internal functions, which no
//!   interposition reaches, so this is the only way to keep a lookup off the hub.
//! - **Timeout scopes** ([`crate::timeout()`]) bound every park: expiry ends the call with
//!   `ETIMEDOUT` (`io::ErrorKind::TimedOut` in std); a sleep just returns early, as `hub::sleep`
//!   does.
//! - **Kills.** An unwind cannot cross these `extern "C"` functions (nor the C code that may call
//!   them). A greenlet killed while parked in one therefore gets `ECANCELED` from it (a sleep
//!   returns early), and every further cooperating call fails the same way at once; its next
//!   greenhub-native blocking call unwinds as usual. Code that gives up on an I/O error ends
//!   promptly; code that retries errors forever cannot be killed.
//! - **Signals** do not interrupt a park: a cooperating call behaves as if every handler had
//!   `SA_RESTART` (and `nanosleep` never returns `EINTR`).
//! - **Standard streams** (descriptors 0, 1, 2) always pass through `read`/`write`/`readv`/
//!   `writev`, even when they are sockets: std serialises them with a lock that is re-entrant
//!   per *thread*, so a greenlet parked inside `println!` would let another greenlet of its
//!   thread into the same `RefCell`.
//!
//! # Locks held across a park
//!
//! A `std::sync::Mutex` (or `RwLock`, `Condvar`, channel, `JoinHandle::join`) waits in a futex,
//! which nothing here reaches: it blocks the whole hub. Code that holds such a lock across a
//! blocking socket call — fine with one thread per connection — deadlocks when another greenlet
//! of the same hub then waits for the lock (its holder can never run again). gevent has the same
//! hazard with un-patched locks; use `greenhub::sync::Mutex` in code that runs in greenlets.
//!
//! # Not sockets
//!
//! `read`/`write`/`readv`/`writev` try the socket call first; a descriptor that is not a socket
//! answers `ENOTSOCK` and the real call is made — regular files, pipes, ttys, eventfds. Regular
//! files are always "ready" (epoll even refuses them). Pipes and ttys could be made cooperative
//! with a poll-then-read, but they are passed through: no per-call non-blocking flag exists for
//! them, so a poll-then-read races with every other reader of the pipe (a shell pipeline, a child
//! process), and turning the flag on would change the descriptor for every process sharing it;
//! stdio is often a pipe or tty and must keep its exact behaviour. Code that wants to wait for a
//! pipe cooperatively can `poll` it first: `poll` cooperates on any descriptor. The cost in a
//! greenlet is one failed `recv` per non-socket call.
//!
//! # What it reaches, and what not
//!
//! Reached: everything that calls these functions by their libc names — Rust's std (`net`,
//! `thread::sleep`, `io::stdout` — passed through), crates built on std (ureq, redis, postgres,
//! ...), and C libraries that call libc: statically linked ones always (their references resolve
//! at static link time, to greenhub's definitions), shared libraries when the executable exports
//! the symbols (below). Not reached: code that makes raw `syscall()`s (or inline `svc`/`syscall`
//! instructions), io_uring, time read through the vDSO (`clock_gettime` — a busy-wait on the
//! clock stays busy), glibc's internal calls (its resolver, `fopen`/`fread` on sockets, `system`),
//! the other `_FORTIFY_SOURCE` variants, `epoll_pwait`/`epoll_pwait2`, `pselect`/`ppoll`, futex
//! waits (`std::sync::Mutex`, `Condvar`, channels, `JoinHandle::join`: they block the whole hub),
//! `sendfile`/`splice`, and other threads' calls (a thread without a hub passes everything
//! through).
//!
//! # How interposition works at link time
//!
//! A `#[no_mangle] extern "C" fn read` in greenhub's rlib is a global definition of the symbol
//! `read`. When the executable is linked, greenhub's object comes before libc (rustc lists the
//! crates first and `-lc` last), and a definition in an object file always wins over a shared
//! library's: every reference to `read` in the executable — std's, other crates', statically
//! linked C code's — binds to greenhub's. libc's own internal calls use hidden aliases
//! (`__read`, `__libc_recv`) and are untouched.
//!
//! The definitions are linked whenever the program uses anything of greenhub (checked with `nm`
//! on a binary whose only greenhub call is `hub::yield_now`, debug and release; rustc's link line
//! carries a synthetic `symbols.o` naming the exported symbols of the crates it links). A
//! dependency that no code names is not linked at all — and then there are no greenlets for the
//! definitions to serve.
//!
//! Shared libraries (`libcurl.so`, an NSS module, anything `dlopen`ed) bind `read` at run time,
//! through the dynamic linker's global search, which looks at the executable first — *if the
//! executable exports the symbol* in its dynamic symbol table. Rust executables export nothing by
//! default, but the linker exports a definition that overrides a symbol of a shared library on
//! the link line: every function here is also defined by `libc.so.6`, so all of them land in the
//! executable's dynamic symbol table (checked by `nm -D` on this project's test binary, linked by
//! the toolchain's default `rust-lld`, and asserted by `tests/monkey.rs` with `dlsym`). So shared
//! libraries reach greenhub's definitions too; [`is_exported`] checks it for the running program,
//! and `-C link-arg=-Wl,--export-dynamic-symbol=read` (per function) or `-C link-arg=-rdynamic`
//! force it where a linker behaved otherwise.
//!
//! Why the real functions are reached with system calls and not `dlsym(RTLD_NEXT, ..)`: the
//! system call is exactly what glibc's wrappers do for these functions (plus pthread
//! cancellation points, which Rust does not use); `dlsym` can allocate and take locks, may itself
//! read files (recursion into our `read` before its pointer is known), and is not
//! async-signal-safe, while these functions are called from signal handlers, before `main`, and
//! during thread teardown. The system-call instruction is issued inline (`sys.rs`; not
//! `libc::syscall`, a variadic call through the PLT) and `errno` is set from its result exactly
//! as glibc's wrappers set it; `clock_nanosleep`, which returns its error, leaves `errno` alone as
//! glibc's does. Only `getaddrinfo` has no system call and uses `dlsym(RTLD_NEXT)`, once, from a
//! greenlet (never a signal handler).
//!
//! `fcntl` and `ioctl` are not defined: the program's non-blocking flag is the descriptor's own
//! `O_NONBLOCK`, which greenhub never leaves changed (the kernel keeps it for us, whoever set it:
//! `fcntl`, `ioctl(FIONBIO)`, `SOCK_NONBLOCK`, `accept4`, a C library), so there is nothing to
//! track — and no cache that could go stale. The price: one `fcntl(F_GETFL)` each time a call is
//! about to park. (Had they been needed: both are variadic in C, and defining them with a fixed `c_ulong` third argument
//! is sound on x86_64 SysV and aarch64 Linux AAPCS64, where variadic integer and pointer
//! arguments travel in the same registers as fixed ones — x86_64 callers also set `al`, which a
//! non-variadic callee ignores — but not on Apple's aarch64 ABI, which passes variadic arguments
//! on the stack.)
//!
//! # Why only with the feature
//!
//! The definitions live in `interpose.rs`, compiled only with `feature = "monkey"`. Without it the
//! rlib defines none of these symbols and the program links libc's: nothing changes, and
//! [`is_active`] says `false`. With it, every executable that links greenhub gets them — cargo
//! features are additive, so one crate in the dependency graph asking for `monkey` turns it on for
//! the whole program.
//!
//! # Re-entrancy
//!
//! The hub itself calls `epoll_wait` and `read`/`write` on its eventfd waker — from the hub
//! context, which never cooperates: they are the plain system calls. Thread-local state read on
//! every call is `const` and destructor-free (readable before `main`, from C threads and during
//! thread-local destruction); the descriptor table is read with `try_with`. While the monkey
//! layer works for a call, a per-thread flag makes nested interposed calls pass through, and it
//! is cleared across every park so other greenlets are unaffected.
//!
//! Signal handlers: an interposed call made by a handler that interrupted a greenlet counts as
//! made in that greenlet. The usual handler calls are safe — `write` to a pipe or to stderr
//! passes through (greenhub's own overflow report writes to fd 2), a non-blocking self-pipe
//! socket gets `EAGAIN` — but a handler that writes to a *blocking* socket whose buffer is full
//! would park inside the handler. Do not do that (it is not async-signal-safe design anyway).

#[cfg(feature = "monkey")]
mod interpose;
#[cfg(feature = "monkey")]
mod sys;
#[cfg(feature = "monkey")]
pub(crate) mod wait;

#[cfg(feature = "monkey")]
use std::cell::Cell;

#[cfg(feature = "monkey")]
use crate::rt::{existing_hub, Hub};

/// Whether this program's libc socket and sleep calls run through greenhub's definitions: the
/// `monkey` feature is on *and* a probe call made through std reached greenhub's `read` (the
/// answer is computed once).
///
/// A `false` with the feature on would mean the linker kept libc's definitions — worth a bug
/// report. Shared libraries are a separate question: see [`is_exported`].
///
/// # Examples
/// ```
/// // Off by default; `cargo test --features monkey` turns it on.
/// assert_eq!(greenhub::monkey::is_active(), cfg!(feature = "monkey"));
/// ```
pub fn is_active() -> bool {
    #[cfg(feature = "monkey")]
    {
        static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ANSWER.get_or_init(interpose::probe)
    }
    #[cfg(not(feature = "monkey"))]
    false
}

/// Whether shared libraries loaded by this program (linked dynamically or `dlopen`ed) also reach
/// greenhub's definitions: the dynamic linker's global lookup of `read` finds the executable's.
/// That needs the symbols in the executable's dynamic symbol table (see the module docs: the
/// linker exports them because libc.so.6 defines them too; `-rdynamic` or
/// `-Wl,--export-dynamic-symbol=NAME` force it). Statically linked C code is reached either way.
///
/// # Examples
/// ```
/// if !greenhub::monkey::is_active() {
///     assert!(!greenhub::monkey::is_exported());
/// }
/// ```
pub fn is_exported() -> bool {
    #[cfg(feature = "monkey")]
    {
        interpose::exported()
    }
    #[cfg(not(feature = "monkey"))]
    false
}

#[cfg(feature = "monkey")]
thread_local! {
    /// The monkey layer is working for a call on this thread: nested interposed calls pass
    /// through. `const`, no destructor: readable at any time.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

#[cfg(feature = "monkey")]
fn set_busy(on: bool) {
    BUSY.with(|b| b.set(on));
}

/// Sets [`BUSY`] for a scope.
#[cfg(feature = "monkey")]
struct Busy;

#[cfg(feature = "monkey")]
impl Busy {
    fn enter() -> Busy {
        set_busy(true);
        Busy
    }
}

#[cfg(feature = "monkey")]
impl Drop for Busy {
    fn drop(&mut self) {
        set_busy(false);
    }
}

/// The hub to cooperate with, if this call should (see "The rule").
#[cfg(feature = "monkey")]
#[inline(always)]
fn cooperative() -> Option<&'static Hub> {
    let hub = existing_hub()?;
    if !hub.in_greenlet() || BUSY.with(Cell::get) || std::thread::panicking() {
        return None;
    }
    Some(hub)
}
