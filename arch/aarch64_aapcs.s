// greenhub context switch for aarch64, AAPCS64 (Linux, the BSDs).
//
// Two symbols, with the same contract as arch/x86_64_sysv.s:
//
//   usize greenhub_v0_switch(void **save_sp /* x0 */, void *load_sp /* x1 */, usize value /* x2 */)
//       Saves the callee-saved state of the running context on its own stack, stores the resulting
//       stack pointer to *save_sp, loads load_sp as the stack pointer, restores the state found there
//       and returns `value` (in x0) *in the other context*.
//
//   greenhub_v0_trampoline
//       Never called. It is the return address (x30) planted in the frame of a context that has not
//       run yet (src/arch.rs, `init_frame`): the first switch into such a frame "returns" here with
//       x19 = the entry function and x20 = its argument. It calls entry(value, arg), which never
//       returns.
//
// The saved frame, the same on every stack (what `sp` points at while a context is suspended):
//
//     sp+168  (padding: keeps the frame a multiple of 16 bytes)
//     sp+160  FPCR (rounding mode, flush-to-zero, default-NaN, trap enables)
//     sp+152  d15        sp+144  d14
//     sp+136  d13        sp+128  d12
//     sp+120  d11        sp+112  d10
//     sp+104  d9         sp+96   d8
//     sp+88   x30 (lr: where the context resumes)
//     sp+80   x29 (fp)
//     sp+72   x28        sp+64   x27
//     sp+56   x26        sp+48   x25
//     sp+40   x24        sp+32   x23
//     sp+24   x22        sp+16   x21
//     sp+8    x20        sp+0    x19
//
// Why exactly these: AAPCS64 makes x19-x29, the link register and the low 64 bits of v8-v15 (d8-d15)
// callee-saved; FPCR's control fields are preserved across calls too (like MXCSR's on x86_64), so
// each context keeps its own FPCR: it is saved on every switch and written only when the incoming
// context's differs, because `msr fpcr` is a serialising instruction on many cores while `mrs` and
// a compare cost a few cycles (the x86_64 port compares only the x87 word and loads MXCSR whole:
// there the compare's read-back of STMXCSR's store cost more than the load). FPSR (the cumulative exception flags) is status, not
// preserved by the ABI, and not switched. The 176-byte frame keeps
// sp 16-byte aligned, as the architecture requires.
//
// The stack pointer moves from one valid stack straight to another with a single `mov`, so a signal
// arriving anywhere in here runs on a real stack below a complete frame.

    .text

    .p2align 4
    .globl greenhub_v0_switch
    .hidden greenhub_v0_switch
    .type greenhub_v0_switch,%function
greenhub_v0_switch:
    .cfi_startproc
    // State: sp = the caller's sp; x30 = where the caller resumes; CFA = sp.
    sub sp, sp, #176                    // room for the frame (stays 16-byte aligned)
    .cfi_def_cfa_offset 176
    // Each store is followed by its CFI rule (offsets from the CFA = the caller's sp), so an
    // unwinder stopped at any instruction finds every callee-saved register of the caller.
    stp x19, x20, [sp, #0]              // callee-saved general registers ...
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    stp x21, x22, [sp, #16]
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    stp x23, x24, [sp, #32]
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    stp x25, x26, [sp, #48]
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    stp x27, x28, [sp, #64]
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    stp x29, x30, [sp, #80]             // ... the frame pointer and the return address
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp d8, d9, [sp, #96]               // callee-saved low halves of v8-v15
    .cfi_offset d8, -80
    .cfi_offset d9, -72
    stp d10, d11, [sp, #112]
    .cfi_offset d10, -64
    .cfi_offset d11, -56
    stp d12, d13, [sp, #128]
    .cfi_offset d12, -48
    .cfi_offset d13, -40
    stp d14, d15, [sp, #144]
    .cfi_offset d14, -32
    .cfi_offset d15, -24
    mrs x10, fpcr                       // the outgoing context's float control ...
    str x10, [sp, #160]                 // ... -> sp+160 (x10 keeps it: it is what the CPU holds)
    // State: the whole frame is on the outgoing stack; CFA = sp+176; x10 = the current FPCR.
    mov x9, sp                          // sp cannot be stored directly: go through a scratch register
    str x9, [x0]                        // publish the outgoing context's stack pointer
    mov sp, x1                          // the switch: from here on we are on the incoming stack
    // State: sp -> the incoming context's saved frame (same layout); CFA = sp+176;
    // x10 = the FPCR the CPU holds (the outgoing context's).
    ldr x11, [sp, #160]                 // the incoming context's FPCR
    cmp x11, x10                        // the same as the current one? (nearly always)
    b.eq 1f                             // yes: skip the serialising write
    msr fpcr, x11                       // no: install the incoming context's rounding mode etc.
1:
    // State: FPCR is the incoming context's; x9-x11 are scratch (caller-saved) and dead.
    ldp x19, x20, [sp, #0]              // its callee-saved general registers ...
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]             // ... its frame pointer and where it resumes
    ldp d8, d9, [sp, #96]               // its d8-d15
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176                    // pop the frame
    .cfi_def_cfa_offset 0
    // State: every register holds the incoming context's value: back to the CIE's "same value".
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    .cfi_restore d8
    .cfi_restore d9
    .cfi_restore d10
    .cfi_restore d11
    .cfi_restore d12
    .cfi_restore d13
    .cfi_restore d14
    .cfi_restore d15
    // State: sp = the incoming context's sp at its call; x30 = where it resumes.
    mov x0, x2                          // the value handed over becomes the return value
    ret                                 // branch to x30: resume it (or enter the trampoline)
    .cfi_endproc
    .size greenhub_v0_switch, .-greenhub_v0_switch

    .p2align 4
    .globl greenhub_v0_trampoline
    .hidden greenhub_v0_trampoline
    .type greenhub_v0_trampoline,%function
    .cfi_startproc
    // Backtraces end here: the return-address column is undefined, which unwinders report as the
    // end of the stack.
    .cfi_undefined x30
    // The unwind info starts one instruction before the symbol. A fresh frame's return address
    // (x30) is the symbol itself, and unwinders look up the caller's unwind info at (return
    // address - 1): that byte must belong to this FDE, or an unwinder stopped inside
    // greenhub_v0_switch on the way into a new greenlet finds no FDE there and walks into garbage.
    nop
greenhub_v0_trampoline:
    // State: entered by the `ret` of greenhub_v0_switch with sp = the top of the stack the fresh
    // frame was written at (16-byte aligned), x0 = the value handed over, x19 = entry, x20 = arg.
    mov x1, x20                         // entry's second argument (x0 already holds the first)
    blr x19                             // call entry(value, arg)
    brk #1                              // entry never returns; if it did, trap rather than run on
    .cfi_endproc
    .size greenhub_v0_trampoline, .-greenhub_v0_trampoline
