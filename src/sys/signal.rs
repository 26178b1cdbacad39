//! Signal dispositions, the alternate signal stack, and the few async-signal-safe calls a fault
//! handler may make (`gettid`, `write(2)`, `abort`).
//!
//! Everything here is a plain wrapper; which handler to install and what it reports is decided in
//! `rt/guard.rs`.

use std::ffi::c_void;
use std::io;
use std::mem;
use std::ptr;

/// A three-argument (`SA_SIGINFO`) signal handler.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);

/// The kernel thread id of the caller. Async-signal-safe.
pub(crate) fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and no memory effects; it is async-signal-safe.
    i64::from(unsafe { libc::syscall(libc::SYS_gettid) } as i32)
}

/// The current disposition of `sig`.
///
/// # Errors
/// The OS error of `sigaction` (an invalid signal number).
pub(crate) fn action(sig: libc::c_int) -> io::Result<libc::sigaction> {
    // SAFETY: a zeroed sigaction is plain data; with a null new action sigaction only writes the
    // current one into `old`, owned by this frame.
    let mut old: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: as above.
    unsafe { syscall!(sigaction(sig, ptr::null(), &mut old)) }?;
    Ok(old)
}

/// Installs `handler` for `sig` with `SA_SIGINFO | extra_flags` and an empty mask.
///
/// The handler must do only async-signal-safe things: that is the caller's promise, which is why
/// this takes a plain `extern "C" fn` made for the purpose and is still safe to call.
///
/// # Errors
/// The OS error of `sigaction`.
pub(crate) fn install(
    sig: libc::c_int,
    handler: Handler,
    extra_flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we fill it in.
    let mut new: libc::sigaction = unsafe { mem::zeroed() };
    new.sa_sigaction = handler as *const () as usize;
    new.sa_flags = libc::SA_SIGINFO | extra_flags;
    // SAFETY: `new.sa_mask` is a valid sigset_t owned by this frame; `new` is fully initialised.
    unsafe {
        libc::sigemptyset(&mut new.sa_mask);
        syscall!(sigaction(sig, &new, ptr::null_mut()))
    }?;
    Ok(())
}

/// Puts back a disposition read earlier with [`action`]. Async-signal-safe.
pub(crate) fn restore(sig: libc::c_int, old: &libc::sigaction) {
    // SAFETY: `old` is a sigaction the kernel filled in.
    unsafe { libc::sigaction(sig, old, ptr::null_mut()) };
}

/// Sets `sig` back to its default action. Async-signal-safe.
pub(crate) fn set_default(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL (0) is the default disposition.
    let mut dfl: libc::sigaction = unsafe { mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    restore(sig, &dfl);
}

/// Calls the handler of a disposition read earlier with [`action`], with the arguments the kernel
/// gave the current handler (chaining).
///
/// # Safety
/// `prev` must hold a real handler (not `SIG_DFL`/`SIG_IGN`), and `info`/`ctx` must be the
/// arguments of the signal being handled now.
pub(crate) unsafe fn call_handler(
    prev: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut c_void,
) {
    let h = prev.sa_sigaction;
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the handler has this signature (the caller guarantees `h` is a
        // real handler); it gets exactly the arguments the kernel gave us.
        let f: Handler = unsafe { mem::transmute::<usize, Handler>(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the handler takes the signal number only.
        let f: extern "C" fn(libc::c_int) =
            unsafe { mem::transmute::<usize, extern "C" fn(libc::c_int)>(h) };
        f(sig);
    }
}

/// The faulting address of a `SIGSEGV`/`SIGBUS`.
///
/// # Safety
/// `info` must be the siginfo the kernel passed to an `SA_SIGINFO` handler of that signal.
pub(crate) unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
    // SAFETY: the caller's contract.
    unsafe { (*info).si_addr() as usize }
}

/// Writes all of `bytes` to standard error, giving up on an error. Async-signal-safe.
pub(crate) fn write_stderr(bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: write(2) reads `len - done` initialised bytes of the caller's buffer.
        let n = unsafe {
            libc::write(
                libc::STDERR_FILENO,
                bytes[done..].as_ptr().cast(),
                bytes.len() - done,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
}

/// Ends the process with `SIGABRT`. Async-signal-safe.
pub(crate) fn abort() -> ! {
    // SAFETY: abort has no preconditions and never returns.
    unsafe { libc::abort() }
}

/// The calling thread's alternate signal stack: `Some((low, size, on_it))` if one is enabled.
///
/// # Errors
/// The OS error of `sigaltstack`.
pub(crate) fn alt_stack() -> io::Result<Option<(*mut u8, usize, bool)>> {
    // SAFETY: a zeroed stack_t is plain data; sigaltstack with a null new stack only reads.
    let mut cur: libc::stack_t = unsafe { mem::zeroed() };
    // SAFETY: as above.
    unsafe { syscall!(sigaltstack(ptr::null(), &mut cur)) }?;
    if cur.ss_flags & libc::SS_DISABLE != 0 {
        return Ok(None);
    }
    Ok(Some((
        cur.ss_sp.cast(),
        cur.ss_size,
        cur.ss_flags & libc::SS_ONSTACK != 0,
    )))
}

/// Makes `[low, low + size)` the calling thread's alternate signal stack.
///
/// # Safety
/// The memory must be writable and stay mapped until [`disable_alt_stack`] is called on this
/// thread (or the thread ends).
pub(crate) unsafe fn set_alt_stack(low: *mut u8, size: usize) -> io::Result<()> {
    let new = libc::stack_t {
        ss_sp: low.cast(),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: the caller's contract; `new` is fully initialised.
    unsafe { syscall!(sigaltstack(&new, ptr::null_mut())) }?;
    Ok(())
}

/// Disables the calling thread's alternate signal stack.
pub(crate) fn disable_alt_stack() {
    let off = libc::stack_t {
        ss_sp: ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: disabling is always allowed outside the handler (the kernel refuses it with EPERM
    // while on the stack, which we ignore).
    unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
}
