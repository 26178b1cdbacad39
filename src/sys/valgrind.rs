//! valgrind client requests, so memcheck understands greenhub's stacks (cargo feature `valgrind`).
//!
//! Without the feature every function here is an empty `#[inline(always)]` fn. With it, each is a
//! client request: a magic instruction sequence that does nothing on a real CPU (the rotations add
//! up to whole turns of a register, and the final instruction exchanges or or-s a register with
//! itself) and that valgrind's JIT recognises and turns into a call into the tool. The protocol, as
//! documented in `valgrind.h`:
//!
//! ```text
//!   args: [request, a1, a2, a3, a4, a5]      six machine words in memory
//!   x86_64:  rax = &args, rdx = default      rol rdi,3; rol rdi,13; rol rdi,61; rol rdi,51;
//!                                            xchg rbx,rbx                      -> result in rdx
//!   aarch64: x4  = &args, x3  = default      ror x12,#3; ror x12,#13; ror x12,#51; ror x12,#61;
//!                                            orr x10,x10,x10                   -> result in x3
//! ```
//!
//! Outside valgrind the result is the default, so a request costs a handful of cycles.
//!
//! What greenhub tells valgrind:
//! - **STACK_REGISTER / DEREGISTER** for the hub's two mmap'd stacks. An SP move into a different
//!   registered stack is then a stack switch, not a gigantic push or pop (which would mark megabytes
//!   of memory inaccessible or undefined).
//! - **MAKE_MEM_UNDEFINED** over the part of the shared stack about to be overwritten by a slice
//!   restore or a fresh frame. memcheck marks stack bytes inaccessible when the stack pointer of the
//!   worker that ran there last moved above them; those addresses belong to the incoming worker
//!   again, so they are made addressable, and the copy then carries the saved bytes' definedness
//!   over from the heap.

/// `VG_USERREQ__STACK_REGISTER` (core request).
#[cfg(feature = "valgrind")]
const STACK_REGISTER: usize = 0x1501;
/// `VG_USERREQ__STACK_DEREGISTER`.
#[cfg(feature = "valgrind")]
const STACK_DEREGISTER: usize = 0x1502;
/// memcheck's `VG_USERREQ__MAKE_MEM_UNDEFINED`: tool base ('M' << 24 | 'C' << 16) + 1.
#[cfg(feature = "valgrind")]
const MAKE_MEM_UNDEFINED: usize = ((b'M' as usize) << 24 | (b'C' as usize) << 16) + 1;

/// Performs client request `args[0]` with arguments `args[1..]`; returns `default` when not
/// running under valgrind.
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
#[inline(always)]
fn request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: on a real CPU the sequence only rotates rdi by 128 bits in total (unchanged) and
    // exchanges rbx with itself; flags are clobbered (declared by not saying preserves_flags).
    // Under valgrind it reads the six words at `args` (live for the call) and writes rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// Performs client request `args[0]` with arguments `args[1..]`; returns `default` when not
/// running under valgrind.
#[cfg(all(feature = "valgrind", target_arch = "aarch64"))]
#[inline(always)]
fn request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: on a real CPU the sequence rotates x12 by 128 bits in total (unchanged) and or-s x10
    // with itself. Under valgrind it reads the six words at `args` (live for the call) and
    // writes x3.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            inout("x3") result,
            in("x4") args.as_ptr(),
            inout("x12") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// Tells valgrind that `[lo, hi)` is a stack; returns its id for [`stack_deregister`].
#[cfg(feature = "valgrind")]
pub(crate) fn stack_register(lo: *const u8, hi: *const u8) -> usize {
    // valgrind wants the highest addressable byte, not one past it.
    request(0, &[STACK_REGISTER, lo as usize, hi as usize - 1, 0, 0, 0])
}

/// Forgets a stack registered with [`stack_register`].
#[cfg(feature = "valgrind")]
pub(crate) fn stack_deregister(id: usize) {
    request(0, &[STACK_DEREGISTER, id, 0, 0, 0, 0]);
}

/// Makes `[lo, hi)` addressable with undefined contents.
#[cfg(feature = "valgrind")]
pub(crate) fn make_mem_undefined(lo: *const u8, hi: *const u8) {
    request(
        0,
        &[
            MAKE_MEM_UNDEFINED,
            lo as usize,
            hi as usize - lo as usize,
            0,
            0,
            0,
        ],
    );
}

/// Tells valgrind that `[lo, hi)` is a stack (no-op without the `valgrind` feature).
#[cfg(not(feature = "valgrind"))]
#[inline(always)]
pub(crate) fn stack_register(_lo: *const u8, _hi: *const u8) -> usize {
    0
}

/// Forgets a registered stack (no-op without the `valgrind` feature).
#[cfg(not(feature = "valgrind"))]
#[inline(always)]
pub(crate) fn stack_deregister(_id: usize) {}

/// Makes `[lo, hi)` addressable with undefined contents (no-op without the `valgrind` feature).
#[cfg(not(feature = "valgrind"))]
#[inline(always)]
pub(crate) fn make_mem_undefined(_lo: *const u8, _hi: *const u8) {}
