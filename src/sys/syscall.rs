//! Raw Linux system calls, for the few socket calls on the hot path (`socket.rs`).
//!
//! Why not libc: glibc's `recv`, `send`, `sendmsg` and `readv` are POSIX cancellation points, so
//! each wraps the system call in `__pthread_enable_asynccancel` / `__pthread_disable_asynccancel`
//! (measured: 63 of the ~120 instructions the two wrappers of an echo round trip cost) and goes
//! through `errno`. Rust never cancels threads, and greenhub's sockets are non-blocking, so here
//! the call is one `syscall` (x86_64) or `svc 0` (aarch64) instruction and the error comes back in
//! the return value: `-4095..=-1` is `-errno` (the kernel's convention; `errno` is not touched).
//!
//! With the `monkey` feature greenhub interposes the libc symbols; a raw call bypasses that
//! layer, which is what greenhub's own (non-blocking, already cooperative) sockets want.
//!
//! The register contract (`syscall(2)`, "Architecture calling conventions"):
//!
//! | arch | number | arguments 1–6 | result | clobbered by the kernel |
//! | --- | --- | --- | --- | --- |
//! | x86_64 | `rax` | `rdi rsi rdx r10 r8 r9` | `rax` | `rcx` (return address), `r11` (rflags) |
//! | aarch64 | `x8` | `x0 x1 x2 x3 x4 x5` | `x0` | nothing else |
//!
//! Neither touches the user stack (hence `nostack`); memory named by pointer arguments may be
//! read or written, which `asm!` assumes unless told `nomem`/`readonly`.

/// Makes system call `nr` with six arguments; returns the kernel's raw result (`-errno` on
/// failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`: every pointer must be valid for the reads
/// and writes that call makes, for its duration.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: i64, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the asm follows the kernel's x86_64 contract
    // (module docs): number in rax, arguments in rdi, rsi, rdx, r10, r8, r9, result in rax, rcx
    // and r11 clobbered, no stack use.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// As the x86_64 version.
///
/// # Safety
/// As the x86_64 version.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) unsafe fn syscall6(nr: i64, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the asm follows the kernel's aarch64 contract
    // (module docs): number in x8, arguments in x0–x5, result in x0, nothing else clobbered, no
    // stack use.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}
