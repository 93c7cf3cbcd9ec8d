//! The Popek–Goldberg probes (`sensitive`): the classic sensitive-but-unprivileged instructions, executed
//! in whatever ring the kernel runs in (0 natively and under hvm, 1 under PV and emulate).
//!
//! Each probe is `extern "C" fn(a: u64, out: *mut u64) -> u64`. Those that may fault (the UMIP-guarded
//! `sgdt`/`sidt`/`smsw`/`str`/`sldt`, and `mov from CR0`) have a label on the instruction (`..._insn`) and
//! a recovery label (`..._fault`), so a #GP/#UD handler can check RIP exactly and resume at the recovery
//! label, which returns [`FAULTED`]. The POPF probe saves and restores RFLAGS around the change it tries.

use core::arch::global_asm;

/// What a guarded probe returns when its instruction faulted and the handler resumed it.
pub const FAULTED: u64 = u64::MAX;

global_asm!(
    r#"
    .section .text.guest_sensitive_probes, "ax"

    .macro sx_guarded name
    .global guest_sx_\name
guest_sx_\name:
    xor %eax, %eax
    .global guest_sx_\name\()_insn
guest_sx_\name\()_insn:
    .endm
    .macro sx_guarded_end name
    ret
    .global guest_sx_\name\()_fault
guest_sx_\name\()_fault:
    mov ${faulted}, %rax
    ret
    .endm

    // u64 pushf(): RFLAGS as PUSHF shows it.
    .global guest_sx_pushf
guest_sx_pushf:
    pushfq
    pop %rax
    ret

    // u64 popf(flags): POPF `flags`, then PUSHF: what stuck; the original RFLAGS are restored.
    .global guest_sx_popf
guest_sx_popf:
    pushfq
    push %rdi
    popfq
    pushfq
    pop %rax
    popfq
    ret

    // u64 mov_cs(), mov_ss(): the selectors.
    .global guest_sx_mov_cs
guest_sx_mov_cs:
    xor %eax, %eax
    mov %cs, %ax
    ret
    .global guest_sx_mov_ss
guest_sx_mov_ss:
    xor %eax, %eax
    mov %ss, %ax
    ret

    // u64 sgdt(_, out): GDTR into out[0..10] (limit, base); 0, or FAULTED.
    sx_guarded sgdt
    sgdt (%rsi)
    sx_guarded_end sgdt

    sx_guarded sidt
    sidt (%rsi)
    sx_guarded_end sidt

    // u64 smsw(): the machine status word (CR0[15:0]).
    sx_guarded smsw
    smsw %ax
    movzwl %ax, %eax
    sx_guarded_end smsw

    // u64 str(), sldt(): TR and LDTR selectors.
    sx_guarded str
    str %ax
    movzwl %ax, %eax
    sx_guarded_end str

    sx_guarded sldt
    sldt %ax
    movzwl %ax, %eax
    sx_guarded_end sldt

    // u64 read_cr0(): CR0 (privileged: faults in ring 1 unless a VMM emulates it).
    sx_guarded cr0
    mov %cr0, %rax
    sx_guarded_end cr0

    // u64 lar(sel): the access-rights dword of `sel`'s descriptor, or all ones if LAR refuses it.
    .global guest_sx_lar
guest_sx_lar:
    xor %eax, %eax
    lar %edi, %eax
    jz 1f
    mov $-1, %rax
1:  ret

    // u64 lsl(sel): the segment limit of `sel`, or all ones if it has none visible here.
    .global guest_sx_lsl
guest_sx_lsl:
    xor %eax, %eax
    lsl %edi, %eax
    jz 1f
    mov $-1, %rax
1:  ret

    // u64 verr(sel): 1 if `sel` is readable from here.
    .global guest_sx_verr
guest_sx_verr:
    xor %eax, %eax
    verr %di
    setz %al
    ret

    // u64 cpuid(leaf, out): EAX, EBX, ECX, EDX of leaf (subleaf 0) into out[0..4] (u32 each).
    .global guest_sx_cpuid
guest_sx_cpuid:
    push %rbx
    mov %edi, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, 0(%rsi)
    mov %ebx, 4(%rsi)
    mov %ecx, 8(%rsi)
    mov %edx, 12(%rsi)
    pop %rbx
    xor %eax, %eax
    ret

    // u64 rdtsc(): the time-stamp counter.
    .global guest_sx_rdtsc
guest_sx_rdtsc:
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    ret
    "#,
    faulted = const FAULTED,
    options(att_syntax)
);

unsafe extern "C" {
    fn guest_sx_pushf() -> u64;
    fn guest_sx_popf(flags: u64) -> u64;
    fn guest_sx_mov_cs() -> u64;
    fn guest_sx_mov_ss() -> u64;
    fn guest_sx_sgdt(a: u64, out: *mut u8) -> u64;
    fn guest_sx_sidt(a: u64, out: *mut u8) -> u64;
    fn guest_sx_smsw() -> u64;
    fn guest_sx_str() -> u64;
    fn guest_sx_sldt() -> u64;
    fn guest_sx_cr0() -> u64;
    fn guest_sx_lar(sel: u64) -> u64;
    fn guest_sx_lsl(sel: u64) -> u64;
    fn guest_sx_verr(sel: u64) -> u64;
    fn guest_sx_cpuid(leaf: u64, out: *mut u32) -> u64;
    fn guest_sx_rdtsc() -> u64;
    static guest_sx_sgdt_insn: u8;
    static guest_sx_sgdt_fault: u8;
    static guest_sx_sidt_insn: u8;
    static guest_sx_sidt_fault: u8;
    static guest_sx_smsw_insn: u8;
    static guest_sx_smsw_fault: u8;
    static guest_sx_str_insn: u8;
    static guest_sx_str_fault: u8;
    static guest_sx_sldt_insn: u8;
    static guest_sx_sldt_fault: u8;
    static guest_sx_cr0_insn: u8;
    static guest_sx_cr0_fault: u8;
}

/// A guarded probe: the instruction that may fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// `sgdt` (UMIP).
    Sgdt,
    /// `sidt` (UMIP).
    Sidt,
    /// `smsw` (UMIP).
    Smsw,
    /// `str` (UMIP).
    Str,
    /// `sldt` (UMIP).
    Sldt,
    /// `mov from CR0` (privileged).
    Cr0,
}

impl Guarded {
    /// The faulting instruction's address and the recovery label's.
    pub fn labels(self) -> (u64, u64) {
        let (insn, fault) = match self {
            Guarded::Sgdt => (
                &raw const guest_sx_sgdt_insn,
                &raw const guest_sx_sgdt_fault,
            ),
            Guarded::Sidt => (
                &raw const guest_sx_sidt_insn,
                &raw const guest_sx_sidt_fault,
            ),
            Guarded::Smsw => (
                &raw const guest_sx_smsw_insn,
                &raw const guest_sx_smsw_fault,
            ),
            Guarded::Str => (&raw const guest_sx_str_insn, &raw const guest_sx_str_fault),
            Guarded::Sldt => (
                &raw const guest_sx_sldt_insn,
                &raw const guest_sx_sldt_fault,
            ),
            Guarded::Cr0 => (&raw const guest_sx_cr0_insn, &raw const guest_sx_cr0_fault),
        };
        (insn as u64, fault as u64)
    }

    /// Runs the probe: its value (for `sgdt`/`sidt`, the base; `out` gets the 10 stored bytes), or
    /// [`FAULTED`] if the instruction faulted and a handler resumed it at the recovery label.
    ///
    /// # Safety
    /// If the instruction can fault here, a #GP/#UD handler must be installed that resumes exactly this
    /// probe's instruction ([`Guarded::labels`]) at its recovery label; otherwise the fault is the
    /// kernel's unhandled exception.
    pub unsafe fn run(self, out: &mut [u8; 10]) -> u64 {
        // SAFETY: the probes touch only RAX and, for sgdt/sidt, the 10 bytes of `out`; a fault at the
        // labelled instruction is resumed at the recovery label (the caller's contract), which returns.
        unsafe {
            match self {
                Guarded::Sgdt => guest_sx_sgdt(0, out.as_mut_ptr()),
                Guarded::Sidt => guest_sx_sidt(0, out.as_mut_ptr()),
                Guarded::Smsw => guest_sx_smsw(),
                Guarded::Str => guest_sx_str(),
                Guarded::Sldt => guest_sx_sldt(),
                Guarded::Cr0 => guest_sx_cr0(),
            }
        }
    }
}

/// RFLAGS as PUSHF shows it.
pub fn pushf() -> u64 {
    // SAFETY: PUSHF/POP into RAX only.
    unsafe { guest_sx_pushf() }
}

/// POPF of `flags`, then PUSHF: the RFLAGS that stuck. The original RFLAGS are restored afterwards.
pub fn popf(flags: u64) -> u64 {
    // SAFETY: the probe restores RFLAGS before returning; a transient IF=1 lets a pending interrupt in,
    // which the kernel handles as anywhere else, and a transient IOPL change has no effect in between.
    unsafe { guest_sx_popf(flags) }
}

/// The CS selector.
pub fn mov_cs() -> u64 {
    // SAFETY: reads CS into RAX.
    unsafe { guest_sx_mov_cs() }
}

/// The SS selector.
pub fn mov_ss() -> u64 {
    // SAFETY: reads SS into RAX.
    unsafe { guest_sx_mov_ss() }
}

/// LAR of `sel`: its access rights, or all ones if LAR refuses it.
pub fn lar(sel: u64) -> u64 {
    // SAFETY: LAR never faults on a selector in a register; RAX only.
    unsafe { guest_sx_lar(sel) }
}

/// LSL of `sel`: its limit, or all ones if LSL refuses it.
pub fn lsl(sel: u64) -> u64 {
    // SAFETY: as for LAR.
    unsafe { guest_sx_lsl(sel) }
}

/// VERR of `sel`: 1 if readable from here.
pub fn verr(sel: u64) -> u64 {
    // SAFETY: VERR never faults on a selector in a register; RAX only.
    unsafe { guest_sx_verr(sel) }
}

/// CPUID `leaf` (subleaf 0): EAX, EBX, ECX, EDX.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let mut out = [0u32; 4];
    // SAFETY: CPUID is unprivileged (it may exit to a VMM, which returns values); the probe saves RBX and
    // writes the four registers to `out`.
    unsafe { guest_sx_cpuid(u64::from(leaf), out.as_mut_ptr()) };
    out
}

/// RDTSC.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC into RDX:RAX (CR4.TSD is clear on every platform this kernel runs on).
    unsafe { guest_sx_rdtsc() }
}
