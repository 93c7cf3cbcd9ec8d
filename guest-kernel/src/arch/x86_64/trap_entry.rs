//! Trap entry and exit: the stubs the trap table and callbacks point at, the common save/restore path
//! (registers, FPU/SSE state), and the two ways back; plus entering ring 3 and coming back from it.
//!
//! # Entry
//!
//! Each stub turns what it was entered with into the [`TrapFrame`] layout (`crate::trap::frame`):
//!
//! - exception and callback stubs (hypervisor bounce frame `rcx r11 [error] rip cs rflags rsp ss`): pop
//!   RCX and R11 back into their registers, push a zero error code if the vector has none, push RCX, R11
//!   and RAX, load the vector into EAX;
//! - the direct `int 0x80` stub (hardware frame `rip cs rflags rsp ss`): push a zero error code, RCX,
//!   R11, RAX, load 0x80.
//!
//! The common path pushes the vector and the other general registers, executes CLD, saves the FPU/SSE
//! state with FXSAVE into a 64-byte-aligned 512-byte area below the frame (the interrupted code may be
//! kernel code in the middle of using XMM registers, and the Rust handlers clobber them), loads the default
//! MXCSR, and calls `trap_dispatch(&mut TrapFrame) -> ReturnPath` on the same stack. The PV exception
//! stubs (vectors 0..=31) use a twin of it (`guest_exception_common`, the same macros) that calls
//! `trap_exception` instead, whose kernel-mode path skips the general dispatcher's work for other entries.
//!
//! # Exit (which path is used when: `crate::trap::frame::plan_return`)
//!
//! FXRSTOR, then:
//! - **IRETQ** (`ReturnPath::Iretq`): pop every register, drop vector and error code, IRETQ. Used when the
//!   event mask does not have to be cleared on the way out: exceptions (their entries do not mask
//!   events) and the direct `int 0x80` gate (the point of which is to never enter the hypervisor). From
//!   ring 1, IRETQ returns to ring 1 or 3 and never changes the real IF.
//! - **`iret` hypercall** (`ReturnPath::Hypercall`): pop the registers up to RAX, leaving RAX, R11, RCX,
//!   flags, RIP, CS, RFLAGS, RSP, SS on the stack, which is an `iret_context`, and issue hypercall 23 with
//!   RSP pointing at it. Used when events were masked on entry (event upcall, SYSCALL bounce) and the
//!   interrupted context had them enabled: the hypervisor unmasks and resumes in one step and delivers at
//!   once any event that became pending meanwhile. If the hypercall returns, it was refused: that is
//!   reported and the domain shuts down.
//!
//! # Native entries (ring 0, `platform::native`)
//!
//! Natively the CPU pushes hardware frames (`[error] rip cs rflags rsp ss`, no RCX/R11), so the native
//! exception stubs are the direct gate's shape: a zero error code if the vector has none, then RCX, R11,
//! RAX and the vector. The PIC-line stubs (interrupt gates) also set their line's bit in
//! [`NATIVE_IRQ_PENDING`] and enter as the interrupt pseudo-vector; the self-interrupt stub only enters.
//! The SYSCALL stub switches to the kernel stack ([`NATIVE_KERNEL_RSP`]) and builds the frame a ring-3
//! interrupt would have. The exit is shared: where PV needs the `iret` hypercall (to unmask events and
//! resume in one step), natively ([`NATIVE_EXIT`]) IRETQ restores the real IF from the frame, which is the
//! same thing.
//!
//! # Failsafe
//!
//! The failsafe callback's frame is not a bounce frame this kernel can resume; its stub reports the
//! words it finds and shuts down.
//!
//! # Ring 3
//!
//! `guest_user_enter(rip, rsp, ctx, arg)` saves the callee-saved registers, MXCSR and the x87 control
//! word, records RSP in `ctx`, clears every general register but RDI (= `arg`) and IRETQs to ring 3 (user
//! CS/SS, IF set).
//! `guest_user_resume(ctx, value)`, called from a trap handler on the `stack_switch` stack, abandons that
//! stack, restores what `guest_user_enter` saved and returns `value` from it.
//!
//! # Processes
//!
//! `guest_switch_context(save, new_rsp)` is the process switch (xv6's `swtch`): callee-saved registers
//! pushed, RSP saved, the other stack's registers popped. A process's kernel stack holds, while it is
//! switched out, its trap frame (and FXSAVE area) at the top and the switch frame below; a new process's
//! stack is built by [`build_first_frame`] so that its first switch-in "returns" into
//! `guest_process_start`, which leaves through the `iret` hypercall exit above.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use abi::layout::{GUEST_USER_CS, GUEST_USER_SS};

use crate::trap::frame::{TrapFrame, VECTOR_EVENT, VECTOR_SYSCALL};

/// What `guest_user_enter` saves to come back (`guest_user_resume`).
#[derive(Debug, Default)]
#[repr(C)]
pub struct UserReturn {
    /// The kernel RSP with the callee-saved registers pushed.
    pub rsp: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// The x87 control word.
    pub fcw: u16,
    pub _pad: u16,
}

static_assertions::const_assert_eq!(offset_of!(UserReturn, mxcsr), 8);
static_assertions::const_assert_eq!(offset_of!(UserReturn, fcw), 12);

global_asm!(
    r#"
    .section .text.guest_trap_entry, "ax"

    .macro GUEST_BOUNCE_NOERR name, vec, common=guest_trap_common
    .balign 16
    .global guest_trap_stub_\name
guest_trap_stub_\name:
    pop %rcx
    pop %r11
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov $\vec, %eax
    jmp \common
    .endm

    .macro GUEST_BOUNCE_ERR name, vec, common=guest_exception_common
    .balign 16
    .global guest_trap_stub_\name
guest_trap_stub_\name:
    pop %rcx
    pop %r11
    push %rcx
    push %r11
    push %rax
    mov $\vec, %eax
    jmp \common
    .endm

    GUEST_BOUNCE_NOERR 0, 0, guest_exception_common
    GUEST_BOUNCE_NOERR 1, 1, guest_exception_common
    GUEST_BOUNCE_NOERR 2, 2, guest_exception_common
    GUEST_BOUNCE_NOERR 3, 3, guest_exception_common
    GUEST_BOUNCE_NOERR 4, 4, guest_exception_common
    GUEST_BOUNCE_NOERR 5, 5, guest_exception_common
    GUEST_BOUNCE_NOERR 6, 6, guest_exception_common
    GUEST_BOUNCE_NOERR 7, 7, guest_exception_common
    GUEST_BOUNCE_ERR   8, 8
    GUEST_BOUNCE_NOERR 9, 9, guest_exception_common
    GUEST_BOUNCE_ERR   10, 10
    GUEST_BOUNCE_ERR   11, 11
    GUEST_BOUNCE_ERR   12, 12
    GUEST_BOUNCE_ERR   13, 13
    GUEST_BOUNCE_ERR   14, 14
    GUEST_BOUNCE_NOERR 15, 15, guest_exception_common
    GUEST_BOUNCE_NOERR 16, 16, guest_exception_common
    GUEST_BOUNCE_ERR   17, 17
    GUEST_BOUNCE_NOERR 18, 18, guest_exception_common
    GUEST_BOUNCE_NOERR 19, 19, guest_exception_common
    GUEST_BOUNCE_NOERR 20, 20, guest_exception_common
    GUEST_BOUNCE_ERR   21, 21
    GUEST_BOUNCE_NOERR 22, 22, guest_exception_common
    GUEST_BOUNCE_NOERR 23, 23, guest_exception_common
    GUEST_BOUNCE_NOERR 24, 24, guest_exception_common
    GUEST_BOUNCE_NOERR 25, 25, guest_exception_common
    GUEST_BOUNCE_NOERR 26, 26, guest_exception_common
    GUEST_BOUNCE_NOERR 27, 27, guest_exception_common
    GUEST_BOUNCE_NOERR 28, 28, guest_exception_common
    GUEST_BOUNCE_ERR   29, 29
    GUEST_BOUNCE_ERR   30, 30
    GUEST_BOUNCE_NOERR 31, 31, guest_exception_common
    // The event callback: the bounce frame turned into a TrapFrame as for any vector, saved as by
    // guest_trap_common, but handed to event_dispatch (the upcall's own path, not the general
    // trap_dispatch); it leaves through the common exits.
    GUEST_BOUNCE_NOERR event, {event}, guest_event_common
    GUEST_BOUNCE_NOERR syscall, {syscall}

    // The direct int 0x80 gate: a hardware frame, no RCX/R11, no error code.
    .balign 16
    .global guest_trap_stub_int80
guest_trap_stub_int80:
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov $0x80, %eax
    jmp guest_trap_common

    // The common path up to the dispatcher's answer (the flags of `test %rax, %rax`), calling `dispatch`.
    .macro GUEST_TRAP_SAVE_CALL dispatch
    push %rax
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rbx
    sub $512, %rsp
    and $-64, %rsp
    fxsave64 (%rsp)
    ldmxcsr guest_trap_mxcsr(%rip)
    mov %rbx, %rdi
    call \dispatch
    fxrstor64 (%rsp)
    mov %rbx, %rsp
    test %rax, %rax
    .endm

    // The IRETQ exit: every register back, vector and error code dropped.
    .macro GUEST_TRAP_EXIT_IRETQ
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    add $8, %rsp
    pop %rax
    pop %r11
    pop %rcx
    add $8, %rsp
    iretq
    .endm

    // Exceptions 0..=31 (bounce frames): the same path with their own dispatcher, which serves an
    // exception taken in kernel mode without the general dispatcher's work (`trap_exception`).
    .balign 16
guest_exception_common:
    GUEST_TRAP_SAVE_CALL {exception}
    jnz guest_trap_exit_hypercall
    GUEST_TRAP_EXIT_IRETQ

    .balign 16
guest_event_common:
    GUEST_TRAP_SAVE_CALL {event_dispatch}
    jnz guest_trap_exit_hypercall
    jmp guest_trap_exit_iretq

    .balign 16
guest_trap_common:
    GUEST_TRAP_SAVE_CALL {dispatch}
    jnz 2f
guest_trap_exit_iretq:
    GUEST_TRAP_EXIT_IRETQ
2:
    .global guest_trap_exit_hypercall
guest_trap_exit_hypercall:
    // Natively IRETQ restores the real interrupt flag from the frame, which is what the hypercall does
    // for the virtual one: the same exit serves.
    cmpb $0, {native}(%rip)
    jne guest_trap_exit_iretq
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    add $8, %rsp
    // RSP -> iret_context: rax r11 rcx flags rip cs rflags rsp ss.
    mov ${iret}, %eax
    int $0x82
    // Only a refused iret comes back here.
    mov %rsp, %rsi
    mov %rax, %rdi
    and $-16, %rsp
    call {iret_failed}
    ud2

    .balign 16
    .global guest_trap_stub_failsafe
guest_trap_stub_failsafe:
    cld
    mov %rsp, %rdi
    and $-16, %rsp
    call {failsafe}
    ud2

    // u64 guest_user_enter(rip, rsp, ctx, arg): arg is the program's RDI
    .balign 16
    .global guest_user_enter
guest_user_enter:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, 0(%rdx)
    stmxcsr 8(%rdx)
    fnstcw 12(%rdx)
    pushq ${user_ss}
    push %rsi
    pushq $0x202
    pushq ${user_cs}
    push %rdi
    mov %rcx, %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

    // ! guest_user_resume(ctx, value)
    .balign 16
    .global guest_user_resume
guest_user_resume:
    mov 0(%rdi), %rsp
    ldmxcsr 8(%rdi)
    fldcw 12(%rdi)
    mov %rsi, %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    // void guest_switch_context(u64 *save_rsp, u64 new_rsp): save the callee-saved registers on this
    // stack, store RSP in *save_rsp, continue on the stack new_rsp (saved the same way, or built by the
    // process code with guest_process_start as its return address).
    .balign 16
    .global guest_switch_context
guest_switch_context:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    // A new process's first return to ring 3: RSP points at its TrapFrame (built by the kernel with
    // RFLAGS.IF set and a zero flags word). Fresh FPU/SSE state, then out through the iret hypercall, which
    // unmasks events as it enters ring 3.
    .balign 16
    .global guest_process_start
guest_process_start:
    fninit
    ldmxcsr guest_trap_mxcsr(%rip)
    jmp guest_trap_exit_hypercall

    // ---- Native (ring 0) entries: hardware frames `[error] rip cs rflags rsp ss`. ----
    .macro NATIVE_NOERR vec
    .balign 16
guest_native_stub_\vec:
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov $\vec, %eax
    jmp guest_trap_common
    .endm

    .macro NATIVE_ERR vec
    .balign 16
guest_native_stub_\vec:
    push %rcx
    push %r11
    push %rax
    mov $\vec, %eax
    jmp guest_trap_common
    .endm

    NATIVE_NOERR 0
    NATIVE_NOERR 1
    NATIVE_NOERR 2
    NATIVE_NOERR 3
    NATIVE_NOERR 4
    NATIVE_NOERR 5
    NATIVE_NOERR 6
    NATIVE_NOERR 7
    NATIVE_ERR   8
    NATIVE_NOERR 9
    NATIVE_ERR   10
    NATIVE_ERR   11
    NATIVE_ERR   12
    NATIVE_ERR   13
    NATIVE_ERR   14
    NATIVE_NOERR 15
    NATIVE_NOERR 16
    NATIVE_ERR   17
    NATIVE_NOERR 18
    NATIVE_NOERR 19
    NATIVE_NOERR 20
    NATIVE_ERR   21
    NATIVE_NOERR 22
    NATIVE_NOERR 23
    NATIVE_NOERR 24
    NATIVE_NOERR 25
    NATIVE_NOERR 26
    NATIVE_NOERR 27
    NATIVE_NOERR 28
    NATIVE_ERR   29
    NATIVE_ERR   30
    NATIVE_NOERR 31

    // PIC line n (vector 0x20 + n, an interrupt gate: IF is clear): mark line n pending, then the common
    // path as the interrupt entry.
    .macro NATIVE_IRQ line
    .balign 16
guest_native_irq_\line:
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov $\line, %eax
    lock btsl %eax, {irq_pending}(%rip)
    mov ${event}, %eax
    jmp guest_trap_common
    .endm

    NATIVE_IRQ 0
    NATIVE_IRQ 1
    NATIVE_IRQ 2
    NATIVE_IRQ 3
    NATIVE_IRQ 4
    NATIVE_IRQ 5
    NATIVE_IRQ 6
    NATIVE_IRQ 7
    NATIVE_IRQ 8
    NATIVE_IRQ 9
    NATIVE_IRQ 10
    NATIVE_IRQ 11
    NATIVE_IRQ 12
    NATIVE_IRQ 13
    NATIVE_IRQ 14
    NATIVE_IRQ 15

    // The self-interrupt vector (an interrupt gate): what is pending was marked by the sender.
    .balign 16
guest_native_self:
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov ${event}, %eax
    jmp guest_trap_common

    // SYSCALL from ring 3 (FMASK cleared IF, DF, TF, AC): RCX = user RIP, R11 = user RFLAGS, RSP still the
    // user's. One CPU and interrupts masked, so one scratch word holds the user RSP while the kernel stack
    // (TSS.rsp0's twin) is loaded; then the frame a ring-3 interrupt would have pushed, and the common
    // path. It returns with IRETQ (never SYSRET: no non-canonical RCX can reach a ring-0 #GP).
    .balign 16
guest_native_syscall:
    mov %rsp, {user_rsp}(%rip)
    mov {kernel_rsp}(%rip), %rsp
    pushq ${user_ss}
    pushq {user_rsp}(%rip)
    push %r11
    pushq ${user_cs}
    push %rcx
    pushq $0
    push %rcx
    push %r11
    push %rax
    mov ${syscall}, %eax
    jmp guest_trap_common

    .section .rodata.guest_trap_entry, "a"
    .balign 8
    .global guest_native_stub_table
guest_native_stub_table:
    .quad guest_native_stub_0, guest_native_stub_1, guest_native_stub_2, guest_native_stub_3
    .quad guest_native_stub_4, guest_native_stub_5, guest_native_stub_6, guest_native_stub_7
    .quad guest_native_stub_8, guest_native_stub_9, guest_native_stub_10, guest_native_stub_11
    .quad guest_native_stub_12, guest_native_stub_13, guest_native_stub_14, guest_native_stub_15
    .quad guest_native_stub_16, guest_native_stub_17, guest_native_stub_18, guest_native_stub_19
    .quad guest_native_stub_20, guest_native_stub_21, guest_native_stub_22, guest_native_stub_23
    .quad guest_native_stub_24, guest_native_stub_25, guest_native_stub_26, guest_native_stub_27
    .quad guest_native_stub_28, guest_native_stub_29, guest_native_stub_30, guest_native_stub_31
    .quad guest_trap_stub_int80, guest_native_self, guest_native_syscall
    .quad guest_trap_stub_failsafe
    .global guest_native_irq_table
guest_native_irq_table:
    .quad guest_native_irq_0, guest_native_irq_1, guest_native_irq_2, guest_native_irq_3
    .quad guest_native_irq_4, guest_native_irq_5, guest_native_irq_6, guest_native_irq_7
    .quad guest_native_irq_8, guest_native_irq_9, guest_native_irq_10, guest_native_irq_11
    .quad guest_native_irq_12, guest_native_irq_13, guest_native_irq_14, guest_native_irq_15
    .balign 8
guest_trap_mxcsr:
    .long 0x1f80
    .balign 8
    .global guest_trap_stub_table
guest_trap_stub_table:
    .quad guest_trap_stub_0, guest_trap_stub_1, guest_trap_stub_2, guest_trap_stub_3
    .quad guest_trap_stub_4, guest_trap_stub_5, guest_trap_stub_6, guest_trap_stub_7
    .quad guest_trap_stub_8, guest_trap_stub_9, guest_trap_stub_10, guest_trap_stub_11
    .quad guest_trap_stub_12, guest_trap_stub_13, guest_trap_stub_14, guest_trap_stub_15
    .quad guest_trap_stub_16, guest_trap_stub_17, guest_trap_stub_18, guest_trap_stub_19
    .quad guest_trap_stub_20, guest_trap_stub_21, guest_trap_stub_22, guest_trap_stub_23
    .quad guest_trap_stub_24, guest_trap_stub_25, guest_trap_stub_26, guest_trap_stub_27
    .quad guest_trap_stub_28, guest_trap_stub_29, guest_trap_stub_30, guest_trap_stub_31
    .quad guest_trap_stub_int80, guest_trap_stub_event, guest_trap_stub_syscall
    .quad guest_trap_stub_failsafe
    .text
    "#,
    event = const VECTOR_EVENT,
    syscall = const VECTOR_SYSCALL,
    iret = const abi::hypercall::nr::IRET,
    user_ss = const GUEST_USER_SS,
    user_cs = const GUEST_USER_CS,
    dispatch = sym crate::trap::dispatch::trap_dispatch,
    exception = sym crate::trap::dispatch::trap_exception,
    event_dispatch = sym crate::trap::dispatch::event_dispatch,
    iret_failed = sym crate::trap::dispatch::trap_iret_failed,
    failsafe = sym crate::trap::dispatch::trap_failsafe,
    native = sym NATIVE_EXIT,
    irq_pending = sym NATIVE_IRQ_PENDING,
    user_rsp = sym NATIVE_USER_RSP,
    kernel_rsp = sym NATIVE_KERNEL_RSP,
    options(att_syntax)
);

/// Entry points, in the order of `guest_trap_stub_table`: vectors 0..=31, then the direct gate, the
/// event callback, the syscall callback and the failsafe callback.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct StubTable {
    /// Exception vectors 0..=31.
    pub exceptions: [u64; 32],
    /// The direct `int 0x80` gate.
    pub int80: u64,
    /// The event callback.
    pub event: u64,
    /// The syscall callback.
    pub syscall: u64,
    /// The failsafe callback.
    pub failsafe: u64,
}

/// Set (once, at boot) by the native backend: the `iret`-hypercall exit becomes IRETQ.
pub static NATIVE_EXIT: AtomicBool = AtomicBool::new(false);
/// PIC lines whose interrupt arrived and is not dispatched yet (bit n: line n), set by the native IRQ
/// stubs; plus, from bit 16, the native backend's self-sent sources.
pub static NATIVE_IRQ_PENDING: AtomicU32 = AtomicU32::new(0);
/// The user RSP while the native SYSCALL stub switches stacks (one CPU, interrupts masked).
pub static NATIVE_USER_RSP: AtomicU64 = AtomicU64::new(0);
/// The kernel stack the native SYSCALL stub switches to (the same as TSS.rsp0).
pub static NATIVE_KERNEL_RSP: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    #[link_name = "guest_trap_stub_table"]
    static STUB_TABLE: StubTable;
    #[link_name = "guest_native_stub_table"]
    static NATIVE_STUB_TABLE: StubTable;
    #[link_name = "guest_native_irq_table"]
    static NATIVE_IRQ_TABLE: [u64; 16];
    /// Enter ring 3 at `rip` with stack `rsp` and RDI = `arg` (every other register zero); returns the
    /// value passed to [`guest_user_resume`].
    pub fn guest_user_enter(rip: u64, rsp: u64, ctx: *mut UserReturn, arg: u64) -> u64;
    /// Return from [`guest_user_enter`] with `value`, abandoning the current stack.
    pub fn guest_user_resume(ctx: *const UserReturn, value: u64) -> !;
    /// Save the callee-saved registers and RSP into `*save_rsp`, continue on `new_rsp` (see the module
    /// docs); returns when something switches back to the saved RSP.
    pub fn guest_switch_context(save_rsp: *mut u64, new_rsp: u64);
    /// First return of a new process (a return address, never called).
    pub fn guest_process_start();
}

/// The words `guest_switch_context` pops from a stack it switches to: r15 r14 r13 r12 rbx rbp, then the
/// return address.
pub const SWITCH_FRAME_WORDS: usize = 7;

/// Lay out a new process's kernel stack ending at `top`: its first [`TrapFrame`] at the top, below it a
/// switch frame returning into `guest_process_start`. Returns the RSP to switch to.
///
/// # Safety
/// `[top - FRAME_SIZE - 8 * SWITCH_FRAME_WORDS, top)` must be writable memory owned by the caller, and `top`
/// 16-byte aligned.
pub unsafe fn build_first_frame(top: u64, frame: &TrapFrame) -> u64 {
    let frame_at = top - core::mem::size_of::<TrapFrame>() as u64;
    let rsp = frame_at - 8 * SWITCH_FRAME_WORDS as u64;
    // SAFETY: the caller owns the range, which holds the frame and the switch words (aligned to 8).
    unsafe {
        (frame_at as *mut TrapFrame).write(*frame);
        let words = rsp as *mut u64;
        for i in 0..SWITCH_FRAME_WORDS - 1 {
            words.add(i).write(0);
        }
        words
            .add(SWITCH_FRAME_WORDS - 1)
            .write(guest_process_start as *const () as u64);
    }
    rsp
}

/// The entry points of the trap stubs of the backend in use (PV: bounce-frame stubs and callbacks;
/// native: hardware-frame stubs, the self-interrupt entry as the interrupt entry, the SYSCALL entry).
pub fn stubs() -> StubTable {
    if crate::platform::backend() == crate::platform::Backend::Native {
        // SAFETY: the table is read-only data defined above with exactly this layout (36 quads).
        unsafe { NATIVE_STUB_TABLE }
    } else {
        // SAFETY: as above.
        unsafe { STUB_TABLE }
    }
}

/// The native entries of PIC lines 0..16 (vectors 0x20..0x30).
pub fn native_irq_stubs() -> [u64; 16] {
    // SAFETY: read-only data defined above: 16 quads.
    unsafe { NATIVE_IRQ_TABLE }
}

// The frame the stubs build is the one the Rust side describes.
static_assertions::const_assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
