//! Instructions of the hostile catalogue (issue 10 §5) that must fault or trap in a precise place: far
//! jumps, calls and returns and `iretq` to hypervisor and system selectors, `lldt`/`ltr`/`lgdt`/`lidt`,
//! segment loads of ring-0 selectors, SYSCALL from ring 1, single-stepping across `int 0x82`, an `iret`
//! hypercall with a chosen RSP, reads through FS, and a ring-3 program that single-steps across SYSCALL
//! and the direct `int 0x80` gate.
//!
//! Every kernel probe is `extern "C" fn(a: u64, b: u64) -> u64` with a frame pointer, a label on its
//! faulting instruction and one after it; the code after the second label restores RSP from RBP, so a
//! handler resumes it there whatever the instruction had pushed. [`PROBES`] lists them in [`Probe`] order.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.guest_hostile_probes, "ax"

    .macro hx_begin name
    .global guest_hx_\name
guest_hx_\name:
    push %rbp
    mov %rsp, %rbp
    .endm
    .macro hx_insn name
    .global guest_hx_\name\()_insn
guest_hx_\name\()_insn:
    .endm
    .macro hx_end name
    .global guest_hx_\name\()_next
guest_hx_\name\()_next:
    mov %rbp, %rsp
    pop %rbp
    ret
    .endm

    // Far jump through an m16:32 operand to selector RDI (offset 0).
    hx_begin ljmp
    sub $16, %rsp
    movl $0, (%rsp)
    mov %di, 4(%rsp)
    hx_insn ljmp
    .byte 0xff, 0x2c, 0x24          // ljmp *(%rsp)  (FF /5, m16:32)
    hx_end ljmp

    // Far call through an m16:64 operand to selector RDI.
    hx_begin lcall
    sub $16, %rsp
    movq $0, (%rsp)
    mov %di, 8(%rsp)
    hx_insn lcall
    .byte 0x48, 0xff, 0x1c, 0x24    // rex.w lcall *(%rsp)  (FF /3, m16:64)
    hx_end lcall

    // Far return to selector RDI:<the next label>.
    hx_begin lret
    push %rdi
    lea guest_hx_lret_next(%rip), %rax
    push %rax
    hx_insn lret
    lretq
    hx_end lret

    // iretq to CS = RDI, SS = RSI at the next label, with the current RSP and RFLAGS.
    hx_begin iretq
    push %rsi
    push %rbp
    pushfq
    push %rdi
    lea guest_hx_iretq_next(%rip), %rax
    push %rax
    hx_insn iretq
    iretq
    hx_end iretq

    hx_begin lldt
    hx_insn lldt
    lldt %di
    hx_end lldt

    hx_begin ltr
    hx_insn ltr
    ltr %di
    hx_end ltr

    // lgdt / lidt of the current tables (read with sgdt / sidt): only the privilege check can refuse it.
    hx_begin lgdt
    sub $16, %rsp
    sgdt (%rsp)
    hx_insn lgdt
    lgdt (%rsp)
    hx_end lgdt

    hx_begin lidt
    sub $16, %rsp
    sidt (%rsp)
    hx_insn lidt
    lidt (%rsp)
    hx_end lidt

    // Segment loads of selector RDI into DS, ES, FS, GS, SS (only ever given selectors that must fault).
    hx_begin mov_ds
    hx_insn mov_ds
    mov %di, %ds
    hx_end mov_ds

    hx_begin mov_es
    hx_insn mov_es
    mov %di, %es
    hx_end mov_es

    hx_begin mov_fs
    hx_insn mov_fs
    mov %di, %fs
    hx_end mov_fs

    hx_begin mov_gs
    hx_insn mov_gs
    mov %di, %gs
    hx_end mov_gs

    hx_begin mov_ss
    hx_insn mov_ss
    mov %di, %ss
    hx_end mov_ss

    // SYSCALL from ring 1; returns RAX as the handler left it (RCX and R11 are clobbered).
    hx_begin syscall
    mov $0x5c, %eax
    hx_insn syscall
    syscall
    hx_end syscall

    // Read the u64 at FS:RDI.
    hx_begin read_fs
    xor %eax, %eax
    hx_insn read_fs
    mov %fs:(%rdi), %rax
    hx_end read_fs

    // Read the u64 at RDI.
    hx_begin read
    xor %eax, %eax
    hx_insn read
    mov (%rdi), %rax
    hx_end read

    .section .rodata.guest_hostile_probes, "a"
    .balign 8
    .global guest_hx_table
guest_hx_table:
    .irp p, ljmp, lcall, lret, iretq, lldt, ltr, lgdt, lidt, mov_ds, mov_es, mov_fs, mov_gs, mov_ss, syscall, read_fs, read
    .quad guest_hx_\p, guest_hx_\p\()_insn, guest_hx_\p\()_next
    .endr

    .section .text.guest_hostile_probes, "ax"
    // u64 guest_hx_tf_hypercall(): single-step (TF) across the null hypercall with events as they are.
    // Trap RIPs: _int (after the mov), _step (after the nop behind the hypercall), _end (TF cleared there
    // by the handler). Returns the hypercall's RAX.
    .global guest_hx_tf_hypercall
guest_hx_tf_hypercall:
    pushfq
    orq $0x100, (%rsp)
    popfq
    mov ${null}, %eax
    .global guest_hx_tf_hypercall_int
guest_hx_tf_hypercall_int:
    int $0x82
    nop
    .global guest_hx_tf_hypercall_step
guest_hx_tf_hypercall_step:
    nop
    .global guest_hx_tf_hypercall_end
guest_hx_tf_hypercall_end:
    pushfq
    andq $~0x100, (%rsp)
    popfq
    ret

    // u64 guest_hx_movss_hypercall(): single-step into `mov %ss` immediately followed by `int 0x82`: the
    // single-step trap of the MOV SS is held back for one instruction, so a CPU may deliver it after the
    // INT's transfer, on the first instruction of the hypervisor's entry stub (XSA-260). Trap RIPs seen by
    // the guest: _movss (after `mov %ss, %ecx`'s successor), then _step and _end after the return.
    .global guest_hx_movss_hypercall
guest_hx_movss_hypercall:
    pushfq
    orq $0x100, (%rsp)
    popfq
    mov %ss, %ecx
    mov ${null}, %eax
    .global guest_hx_movss_hypercall_movss
guest_hx_movss_hypercall_movss:
    mov %ecx, %ss
    .global guest_hx_movss_hypercall_int
guest_hx_movss_hypercall_int:
    int $0x82
    nop
    .global guest_hx_movss_hypercall_step
guest_hx_movss_hypercall_step:
    nop
    .global guest_hx_movss_hypercall_end
guest_hx_movss_hypercall_end:
    pushfq
    andq $~0x100, (%rsp)
    popfq
    ret

    // i64 guest_hx_iret(cs, rflags, ss, out[4], rsp): the iret hypercall resuming at the label below with
    // this frame and RSP (0: the current one). Returns 0 with CS, RFLAGS, SS and the RSP found on arrival
    // in out[0..4], or the hypercall's error. Nothing touches the stack before RSP is put back.
    .global guest_hx_iret
guest_hx_iret:
    push %rbp
    push %rbx
    mov %rcx, %rbx
    mov %rsp, %rbp
    sub $72, %rsp
    movq $0, 0(%rsp)
    movq $0, 8(%rsp)
    movq $0, 16(%rsp)
    movq $0, 24(%rsp)
    lea 1f(%rip), %rax
    mov %rax, 32(%rsp)
    mov %rdi, 40(%rsp)
    mov %rsi, 48(%rsp)
    test %r8, %r8
    cmovz %rbp, %r8
    mov %r8, 56(%rsp)
    mov %rdx, 64(%rsp)
    mov ${iret}, %eax
    int $0x82
    mov %rbp, %rsp
    jmp 2f
1:
    mov %rsp, %rax
    mov %rbp, %rsp
    mov %rax, 24(%rbx)
    xor %ecx, %ecx
    mov %cs, %ecx
    mov %rcx, 0(%rbx)
    pushfq
    pop %rcx
    mov %rcx, 8(%rbx)
    xor %ecx, %ecx
    mov %ss, %ecx
    mov %rcx, 16(%rbx)
    xor %eax, %eax
2:
    pop %rbx
    pop %rbp
    ret

    // The ring-3 program (position independent). Entry `tf`: single-step across a SYSCALL ping(5) and an
    // `int 0x80` ping(6), then exit(7) through `int 0x80`.
    .section .rodata.guest_hostile_user, "a"
    .balign 16
    .global guest_hx_user_start
guest_hx_user_start:
    pushfq
    orq $0x100, (%rsp)
    popfq
    mov $1, %eax
    mov $5, %edi
    .global guest_hx_user_syscall
guest_hx_user_syscall:
    syscall
    nop
    .global guest_hx_user_after_syscall
guest_hx_user_after_syscall:
    mov %rax, %rdi
    mov $1, %eax
    .global guest_hx_user_int80
guest_hx_user_int80:
    int $0x80
    nop
    .global guest_hx_user_after_int80
guest_hx_user_after_int80:
    mov %rax, %rdi
    .global guest_hx_user_end_tf
guest_hx_user_end_tf:
    xor %eax, %eax
    int $0x80
    ud2
    // Entry `movss_syscall`: single-step into `mov %ss` immediately followed by SYSCALL ping(5), then
    // exit(6) through `int 0x80`.
    .global guest_hx_user_movss
guest_hx_user_movss:
    pushfq
    orq $0x100, (%rsp)
    popfq
    mov %ss, %ecx
    mov $1, %eax
    mov $5, %edi
    .global guest_hx_user_movss_insn
guest_hx_user_movss_insn:
    mov %ecx, %ss
    syscall
    nop
    .global guest_hx_user_movss_after
guest_hx_user_movss_after:
    mov %rax, %rdi
    .global guest_hx_user_movss_end
guest_hx_user_movss_end:
    xor %eax, %eax
    int $0x80
    ud2
    .global guest_hx_user_stop
guest_hx_user_stop:
    .text
    "#,
    null = const abi::hypercall::nr::NULL,
    iret = const abi::hypercall::nr::IRET,
    options(att_syntax)
);

/// One kernel probe: its entry, faulting instruction and resume label.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeDesc {
    pub entry: u64,
    pub insn: u64,
    pub next: u64,
}

/// The kernel probes, in the order of `guest_hx_table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Probe {
    Ljmp,
    Lcall,
    Lret,
    Iretq,
    Lldt,
    Ltr,
    Lgdt,
    Lidt,
    MovDs,
    MovEs,
    MovFs,
    MovGs,
    MovSs,
    Syscall,
    ReadFs,
    Read,
}

const N_PROBES: usize = 16;

unsafe extern "C" {
    static guest_hx_table: [ProbeDesc; N_PROBES];
    fn guest_hx_tf_hypercall() -> u64;
    fn guest_hx_movss_hypercall() -> u64;
    pub static guest_hx_movss_hypercall_movss: u8;
    pub static guest_hx_movss_hypercall_int: u8;
    pub static guest_hx_movss_hypercall_step: u8;
    pub static guest_hx_movss_hypercall_end: u8;
    static guest_hx_user_movss: u8;
    static guest_hx_user_movss_insn: u8;
    static guest_hx_user_movss_after: u8;
    static guest_hx_user_movss_end: u8;
    fn guest_hx_iret(cs: u64, rflags: u64, ss: u64, out: *mut [u64; 4], rsp: u64) -> i64;
    pub static guest_hx_tf_hypercall_int: u8;
    pub static guest_hx_tf_hypercall_step: u8;
    pub static guest_hx_tf_hypercall_end: u8;
    static guest_hx_user_start: u8;
    static guest_hx_user_syscall: u8;
    static guest_hx_user_after_syscall: u8;
    static guest_hx_user_int80: u8;
    static guest_hx_user_after_int80: u8;
    static guest_hx_user_end_tf: u8;
    static guest_hx_user_stop: u8;
}

/// The addresses of probe `p`.
pub fn probe(p: Probe) -> ProbeDesc {
    // SAFETY: the table is immutable read-only data with one entry per `Probe` variant.
    unsafe { guest_hx_table[p as usize] }
}

/// Run probe `p` with arguments `a`, `b`.
///
/// # Safety
/// The probe's instruction faults (or traps) on purpose: the caller has installed a handler that resumes
/// it at `probe(p).next`, or accepts that the domain is stopped.
pub unsafe fn run(p: Probe, a: u64, b: u64) -> u64 {
    // SAFETY: the entry is a function with the C ABI taking two u64 and returning one (see the table).
    let f: unsafe extern "C" fn(u64, u64) -> u64 = unsafe { core::mem::transmute(probe(p).entry) };
    // SAFETY: the caller's contract.
    unsafe { f(a, b) }
}

/// Single-step across the null hypercall; returns its result.
///
/// # Safety
/// A #DB handler must be installed that keeps TF until RIP reaches `guest_hx_tf_hypercall_end` and
/// clears it there.
pub unsafe fn tf_hypercall() -> u64 {
    // SAFETY: the caller's contract.
    unsafe { guest_hx_tf_hypercall() }
}

/// Single-step into `mov %ss` followed by the null hypercall; returns its result.
///
/// # Safety
/// As [`tf_hypercall`], with `guest_hx_movss_hypercall_end` as the end label; the `mov %ss` may fault
/// (a #PF on a GDT whose descriptors are not pre-accessed): a handler must then resume at the end label
/// with TF cleared.
pub unsafe fn movss_hypercall() -> u64 {
    // SAFETY: the caller's contract.
    unsafe { guest_hx_movss_hypercall() }
}

/// The `iret` hypercall with CS, RFLAGS, SS and RSP (0: keep): `[cs, rflags, ss, rsp]` found on arrival.
///
/// # Safety
/// RFLAGS must leave events masked (IF clear) and must not set TF or DF; the RSP may be anything, the
/// probe puts its own back before it touches the stack.
pub unsafe fn iret(cs: u64, rflags: u64, ss: u64, rsp: u64) -> Result<[u64; 4], i64> {
    let mut out = [0u64; 4];
    // SAFETY: the caller's contract; `out` is a valid buffer of four words.
    let r = unsafe { guest_hx_iret(cs, rflags, ss, &raw mut out, rsp) };
    if r < 0 { Err(r) } else { Ok(out) }
}

/// The ring-3 program and its labels (offsets from its start).
#[derive(Clone, Copy, Debug)]
pub struct HostileUser {
    pub bytes: &'static [u8],
    pub syscall: u64,
    pub after_syscall: u64,
    pub int80: u64,
    pub after_int80: u64,
    pub end_tf: u64,
    /// Entry of the MOV SS + SYSCALL program, its `mov %ss`, the instruction after the SYSCALL's
    /// successor, and the label where TF is cleared.
    pub movss: u64,
    pub movss_insn: u64,
    pub movss_after: u64,
    pub movss_end: u64,
}

/// The ring-3 program of this file.
pub fn hostile_user() -> HostileUser {
    let start = (&raw const guest_hx_user_start) as u64;
    let end = (&raw const guest_hx_user_stop) as u64;
    let off = |p: *const u8| p as u64 - start;
    HostileUser {
        // SAFETY: the bytes between the two labels are the program, immutable read-only data.
        bytes: unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) },
        syscall: off(&raw const guest_hx_user_syscall),
        after_syscall: off(&raw const guest_hx_user_after_syscall),
        int80: off(&raw const guest_hx_user_int80),
        after_int80: off(&raw const guest_hx_user_after_int80),
        end_tf: off(&raw const guest_hx_user_end_tf),
        movss: off(&raw const guest_hx_user_movss),
        movss_insn: off(&raw const guest_hx_user_movss_insn),
        movss_after: off(&raw const guest_hx_user_movss_after),
        movss_end: off(&raw const guest_hx_user_movss_end),
    }
}
