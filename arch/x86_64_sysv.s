# greenhub context switch for x86_64, System V ABI (Linux, the BSDs).
#
# Two symbols:
#
#   usize greenhub_v0_switch(void **save_sp /* rdi */, void *load_sp /* rsi */, usize value /* rdx */)
#       Saves the callee-saved state of the running context on its own stack, stores the resulting
#       stack pointer to *save_sp, loads load_sp as the stack pointer, restores the state found there
#       and returns `value` (in rax) *in the other context*. The context that called it resumes when
#       somebody switches back to the pointer it left in *save_sp, and sees that switch's `value`.
#
#   greenhub_v0_trampoline
#       Never called. It is the return address planted in the frame of a context that has not run yet
#       (see src/arch.rs, `init_frame`): the first switch into such a frame "returns" here with r12 =
#       the entry function and r13 = its argument. It calls entry(value, arg), which must never return.
#
# The saved frame, the same on every stack (it is what `sp` points at while a context is suspended):
#
#     sp+56  return address      <- the instruction after the caller's `call greenhub_v0_switch`
#     sp+48  rbp
#     sp+40  rbx
#     sp+32  r12
#     sp+24  r13
#     sp+16  r14
#     sp+8   r15
#     sp+4   x87 control word (16 bits; bytes sp+6..sp+8 unused)
#     sp+0   MXCSR (32 bits)
#
# Why exactly these: the SysV ABI makes rbx, rbp, r12-r15, the MXCSR control bits and the x87 control
# word callee-saved; everything else is caller-saved, so the compiler has already spilled whatever it
# needs of it before the call. MXCSR is stored and loaded whole (status flags included), as greenlet
# does with STMXCSR/LDMXCSR: each context keeps its own rounding mode, exception masks and sticky
# exception flags, as each thread does.
#
# The stack pointer moves from one valid stack straight to another valid stack with a single `mov`,
# so a signal that arrives anywhere in here runs on a real stack below a complete frame.
#
# The CFI below describes the frame as it is pushed. After the `mov rsp, rsi` it describes the other
# context's frame, which has the same shape, so an unwinder stopped at any instruction is right.

    .text

    .p2align 4
    .globl greenhub_v0_switch
    .hidden greenhub_v0_switch
    .type greenhub_v0_switch,@function
greenhub_v0_switch:
    .cfi_startproc
    # State: rsp -> our return address; CFA = rsp+8.
    # The float control first, into the frame's slot below rsp (inside the red zone, which no
    # signal handler touches): STMXCSR is slow (it waits for the floating-point pipeline), and
    # storing it first lets it overlap with the pushes before it is read back below.
    stmxcsr [rsp - 56]                  # MXCSR -> the slot that becomes sp+0
    fnstcw [rsp - 52]                   # x87 control word -> the slot that becomes sp+4
    push rbp                            # save the frame pointer (callee-saved)
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbp, -16
    push rbx                            # callee-saved
    .cfi_adjust_cfa_offset 8
    .cfi_offset rbx, -24
    push r12                            # callee-saved
    .cfi_adjust_cfa_offset 8
    .cfi_offset r12, -32
    push r13                            # callee-saved
    .cfi_adjust_cfa_offset 8
    .cfi_offset r13, -40
    push r14                            # callee-saved
    .cfi_adjust_cfa_offset 8
    .cfi_offset r14, -48
    push r15                            # callee-saved
    .cfi_adjust_cfa_offset 8
    .cfi_offset r15, -56
    sub rsp, 8                          # the float-control slot, already written
    .cfi_adjust_cfa_offset 8
    # State: the whole frame above is on the outgoing stack; CFA = rsp+64.
    # MXCSR is loaded whole on every switch, as greenlet does, rather than compared first: each
    # context keeps its own sticky exception flags too, as each thread does, and the switch is 4
    # instructions shorter. Nothing here reads back what STMXCSR stored; the compare did, and
    # that load waited for the store. The load comes last, just before the `ret`. Both variants
    # in one binary on Zen 3 (bench/tools/switch_harness): 12-13 ns per round trip from one call
    # site against 16.4-17.4 for the compare; from two call sites both take 26-30 ns, a return
    # misprediction per switch dominating (loading right after the stack switch instead cost
    # about 1 ns more there; BENCHMARKS.md, "Fifth pass"). The x87 control word is still
    # compared, at its own width (its store forwards), and FLDCW runs only when it differs, which
    # almost never happens.
    movzx eax, word ptr [rsi + 4]       # the incoming x87 control word
    xor ax, [rsp + 4]                   # ZF clear: it differs from the CPU's (just stored)
    mov [rdi], rsp                      # publish the outgoing context's stack pointer
    mov rsp, rsi                        # the switch: from here on we are on the incoming stack
    # State: rsp -> the incoming context's saved frame (same layout); CFA = rsp+64; ZF says
    # whether the incoming x87 control word equals the CPU's. Nothing below writes the flags
    # until the jnz (lea and pop leave them alone).
    jnz 2f                              # its x87 control word differs: load it first
1:
    .cfi_remember_state                 # this frame's CFI, for the out-of-line load at label 2
    lea rsp, [rsp + 8]                  # drop the float-control slot
    .cfi_adjust_cfa_offset -8
    pop r15                             # its r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore r15
    pop r14                             # its r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore r14
    pop r13                             # its r13 (the entry argument in a fresh frame)
    .cfi_adjust_cfa_offset -8
    .cfi_restore r13
    pop r12                             # its r12 (the entry function in a fresh frame)
    .cfi_adjust_cfa_offset -8
    .cfi_restore r12
    pop rbx                             # its rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    pop rbp                             # its rbp (0 in a fresh frame)
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    # State: rsp -> the incoming context's return address; CFA = rsp+8. The float-control slot
    # is now 56 bytes below rsp, inside the red zone, where no signal handler writes.
    ldmxcsr [rsp - 56]                  # its MXCSR
    mov rax, rdx                        # the value handed over becomes the return value
    ret                                 # resume the incoming context (or enter the trampoline)
2:
    # State: as at label 1, with the incoming x87 control word not yet loaded; CFA = rsp+64.
    .cfi_restore_state                  # (the CFI above ends at the ret; this code is before it)
    fldcw [rsp + 4]                     # its x87 control word
    jmp 1b                              # back to popping the general registers
    .cfi_endproc
    .size greenhub_v0_switch, .-greenhub_v0_switch

    .p2align 4
    .globl greenhub_v0_trampoline
    .hidden greenhub_v0_trampoline
    .type greenhub_v0_trampoline,@function
    .cfi_startproc
    # Backtraces end here: there is no caller, so the return-address column is undefined, which
    # unwinders (libgcc, libunwind, gimli) report as the end of the stack.
    .cfi_undefined rip
    # The unwind info starts one byte before the symbol. A fresh frame's return address is the
    # symbol itself, and unwinders look up the caller's unwind info at (return address - 1): that
    # byte must belong to this FDE, or an unwinder stopped inside greenhub_v0_switch on the way
    # into a new greenlet finds no FDE there and walks into garbage.
    nop
greenhub_v0_trampoline:
    # State: entered by the `ret` of greenhub_v0_switch with rsp = the top of the stack the fresh
    # frame was written at (16-byte aligned), rax = the value handed over, r12 = entry, r13 = arg.
    mov rdi, rax                        # entry's first argument: the value handed over
    mov rsi, r13                        # entry's second argument: the word planted in the frame
    call r12                            # rsp is 16-byte aligned here, as the ABI wants at a call
    ud2                                 # entry never returns; if it did, fault rather than run on
    .cfi_endproc
    .size greenhub_v0_trampoline, .-greenhub_v0_trampoline
