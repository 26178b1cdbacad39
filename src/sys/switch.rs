//! The register-context switch: the only file that names a target architecture.
//!
//! The instruction bodies live in `arch/<arch>_<abi>.s`, one file per platform, each opening with its
//! register contract and a diagram of the saved frame. This module pulls the right one in with
//! `global_asm!`, declares its two symbols, and knows the shape of the saved frame well enough to
//! write a fresh one ([`init_frame`]) so that the first switch into a new stack lands in the
//! trampoline, which calls the entry function.
//!
//! The switch saves only the ABI's callee-saved state; which context runs on which stack, and the
//! copying of stack slices, are decided in Rust by the hub (see `stack.rs` and `rt/`).

#[cfg(all(target_arch = "x86_64", unix, not(target_os = "macos")))]
core::arch::global_asm!(include_str!("../../arch/x86_64_sysv.s"));

#[cfg(all(target_arch = "aarch64", unix, not(target_os = "macos")))]
core::arch::global_asm!(include_str!("../../arch/aarch64_aapcs.s"));

#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    unix,
    not(target_os = "macos")
)))]
compile_error!(
    "greenhub has a context switch for x86_64 System V and aarch64 AAPCS64 ELF targets only \
     (Linux, the BSDs); add arch/<arch>_<abi>.s and its frame layout in src/sys/switch.rs for others"
);

/// The function a fresh frame enters: `entry(value, arg)`, where `value` is what the first switch
/// into the frame handed over and `arg` the word given to [`init_frame`]. It must never return.
pub(crate) type Entry = extern "C" fn(value: usize, arg: usize) -> !;

extern "C" {
    /// Saves the running context's callee-saved registers on its stack, stores its stack pointer to
    /// `*save_sp`, switches to `load_sp` and returns `value` in the context that was saved there.
    fn greenhub_v0_switch(save_sp: *mut *mut u8, load_sp: *mut u8, value: usize) -> usize;
    /// Landing address of a fresh frame; never called directly.
    fn greenhub_v0_trampoline();
}

/// Bytes of the frame the switch pushes (registers, float control, return address).
#[cfg(target_arch = "x86_64")]
pub(crate) const FRAME_BYTES: usize = 64;
/// Bytes of the frame the switch pushes (registers, float control, return address).
#[cfg(target_arch = "aarch64")]
pub(crate) const FRAME_BYTES: usize = 176;

/// Switches from the running context to the one suspended at `load_sp`.
///
/// Returns when some context switches back to the stack pointer this call stores in `*save_sp`; the
/// return value is the `value` of that switch.
///
/// # Safety
/// - `save_sp` must be valid for a write and stay so until the switch back reads it.
/// - `load_sp` must be a stack pointer stored by an earlier switch, or made by [`init_frame`], whose
///   stack bytes are in place (the hub restores a sliced stack before switching to it), and no other
///   context may be running on that stack.
/// - No unwinding crosses this call; the entry of every context catches panics.
#[inline(always)]
pub(crate) unsafe fn switch(save_sp: *mut *mut u8, load_sp: *mut u8, value: usize) -> usize {
    // SAFETY: the caller upholds the contract above, which is the assembly's contract.
    unsafe { greenhub_v0_switch(save_sp, load_sp, value) }
}

/// Writes a fresh frame just below `top` so that switching to the returned stack pointer calls
/// `entry(value, arg)` with the stack pointer at `top`.
///
/// # Safety
/// `top` must be 16-byte aligned and the `FRAME_BYTES` below it writable memory that no running or
/// suspended context is using.
pub(crate) unsafe fn init_frame(top: *mut u8, entry: Entry, arg: usize) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0, "stack top must be 16-byte aligned");
    let sp = top.wrapping_sub(FRAME_BYTES);
    let words = sp.cast::<usize>();
    let trampoline = greenhub_v0_trampoline as *const () as usize;
    // memcheck may consider these bytes inaccessible (a previous worker's stack pointer moved
    // above them); they are ours to write now.
    super::valgrind::make_mem_undefined(sp, top);
    // SAFETY: the caller guarantees the FRAME_BYTES below `top` are writable and unused; `sp` is
    // 16-byte aligned because `top` is and FRAME_BYTES is a multiple of 16.
    unsafe {
        core::ptr::write_bytes(sp, 0, FRAME_BYTES);
        write_frame(words, entry as usize, arg, trampoline);
    }
    sp
}

#[cfg(target_arch = "x86_64")]
/// x86_64 frame, in words from `sp` (see arch/x86_64_sysv.s): 0 float control, 1 r15, 2 r14,
/// 3 r13, 4 r12, 5 rbx, 6 rbp, 7 return address.
unsafe fn write_frame(words: *mut usize, entry: usize, arg: usize, trampoline: usize) {
    // Default float control: MXCSR 0x1F80 (all exceptions masked, round to nearest) in the low
    // half, x87 control word 0x037F (the same, 64-bit precision) in the high half.
    let float_control = 0x1F80usize | (0x037Fusize << 32);
    // SAFETY: `words` points at FRAME_BYTES writable bytes (the caller's contract).
    unsafe {
        words.add(0).write(float_control);
        words.add(3).write(arg); // r13
        words.add(4).write(entry); // r12
        words.add(7).write(trampoline); // return address
    }
}

#[cfg(target_arch = "aarch64")]
/// aarch64 frame, in words from `sp` (see arch/aarch64_aapcs.s): 0 x19, 1 x20, ..., 10 x29,
/// 11 x30, 12..19 d8-d15, 20 FPCR, 21 padding. The zeroed FPCR is the default float control
/// (round to nearest, no flush-to-zero, no default-NaN, no traps), as Linux starts threads with.
unsafe fn write_frame(words: *mut usize, entry: usize, arg: usize, trampoline: usize) {
    // SAFETY: `words` points at FRAME_BYTES writable bytes (the caller's contract).
    unsafe {
        words.add(0).write(entry); // x19
        words.add(1).write(arg); // x20
        words.add(11).write(trampoline); // x30
    }
}

/// The current stack pointer (approximately: the address of a local), for debug checks that the
/// running context is on the stack the hub believes it is on.
#[cfg(debug_assertions)]
#[inline(always)]
pub(crate) fn approximate_sp() -> usize {
    let marker = 0u8;
    core::hint::black_box(&marker) as *const u8 as usize
}
