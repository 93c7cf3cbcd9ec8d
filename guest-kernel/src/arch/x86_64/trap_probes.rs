//! Instructions that fault on purpose, for the trap scenarios: kernel-mode probes (each a function with
//! a label on its faulting instruction and one after it, so a handler can check RIP exactly and resume
//! after the instruction), a position-independent ring-3 program copied into a user page, a fault on a
//! bad kernel stack, an `iret` hypercall with a chosen frame, and a read through the FS base.

use core::arch::global_asm;

/// The unmapped user address the ring-3 program reads (the page fault's CR2 must be exactly this).
pub const USER_FAULT_ADDR: u64 = 0x6666_6008;
/// The system call (RAX) with which the benchmark loops of the ring-3 program report one sample (RDI).
pub const USER_SYS_RECORD: u64 = 2;

global_asm!(
    r#"
    .section .text.guest_trap_probes, "ax"

    // #DE: div %ecx with ecx = 0.
    .global guest_probe_de
guest_probe_de:
    mov $1, %eax
    xor %edx, %edx
    xor %ecx, %ecx
    .global guest_probe_de_insn
guest_probe_de_insn:
    div %ecx
    .global guest_probe_de_next
guest_probe_de_next:
    ret

    // #BP: u64 guest_probe_bp(): int3 (a trap: the frame's RIP is already the next instruction) with
    // known values in XMM0-15; returns the OR of their differences afterwards (0: all intact).
    .global guest_probe_bp
guest_probe_bp:
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    mov $(0x5eed0000 + \i), %eax
    movq %rax, %xmm\i
    .endr
    .global guest_probe_bp_insn
guest_probe_bp_insn:
    int3
    .global guest_probe_bp_next
guest_probe_bp_next:
    xor %ecx, %ecx
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movq %xmm\i, %rax
    xor $(0x5eed0000 + \i), %rax
    or %rax, %rcx
    .endr
    mov %rcx, %rax
    ret

    // guest_clobber_xmm(): overwrite XMM0-15 with all-ones.
    .global guest_clobber_xmm
guest_clobber_xmm:
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    pcmpeqd %xmm\i, %xmm\i
    .endr
    ret

    // #GP: hlt is privileged in ring 1.
    .global guest_probe_gp
guest_probe_gp:
    .global guest_probe_gp_insn
guest_probe_gp_insn:
    hlt
    .global guest_probe_gp_next
guest_probe_gp_next:
    ret

    // #PF: u64 guest_probe_pf(addr) reads *addr; the handler may set RAX.
    .global guest_probe_pf
guest_probe_pf:
    xor %eax, %eax
    .global guest_probe_pf_insn
guest_probe_pf_insn:
    mov (%rdi), %rax
    .global guest_probe_pf_next
guest_probe_pf_next:
    ret

    // #UD: ud2.
    .global guest_probe_ud
guest_probe_ud:
    .global guest_probe_ud_insn
guest_probe_ud_insn:
    ud2
    .global guest_probe_ud_next
guest_probe_ud_next:
    ret

    // ! guest_probe_bad_stack(rsp, addr): switch to an unusable stack, then fault.
    .global guest_probe_bad_stack
guest_probe_bad_stack:
    mov %rdi, %rsp
    mov (%rsi), %rax
    ud2

    // i64 guest_iret_probe(cs, rflags, ss, out[3], rip): iret hypercall with this frame, resuming at rip (or
    // at the label below if rip is 0) on the current stack. Returns 0 with CS, RFLAGS, SS as seen after
    // the return in out[0..3], or the hypercall's error.
    .global guest_iret_probe
guest_iret_probe:
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
    test %r8, %r8
    cmovnz %r8, %rax
    mov %rax, 32(%rsp)
    mov %rdi, 40(%rsp)
    mov %rsi, 48(%rsp)
    mov %rbp, 56(%rsp)
    mov %rdx, 64(%rsp)
    mov ${iret}, %eax
    int $0x82
    mov %rbp, %rsp
    jmp 2f
1:
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

    // u64 guest_read_fs(offset): the u64 at FS base + offset.
    .global guest_read_fs
guest_read_fs:
    mov %fs:(%rdi), %rax
    ret

    // u64 guest_read_gs(offset): the u64 at GS base + offset.
    .global guest_read_gs
guest_read_gs:
    mov %gs:(%rdi), %rax
    ret

    // The ring-3 program (copied to a user page: position independent, no absolute references).
    .section .rodata.guest_user_blob, "a"
    .balign 16
    .global guest_user_blob_start
guest_user_blob_start:
    .global guest_user_traps
guest_user_traps:
    mov $1, %eax
    xor %edx, %edx
    xor %ecx, %ecx
    .global guest_user_de_insn
guest_user_de_insn:
    div %ecx
    .global guest_user_de_next
guest_user_de_next:
    .global guest_user_bp_insn
guest_user_bp_insn:
    int3
    .global guest_user_bp_next
guest_user_bp_next:
    .global guest_user_gp_insn
guest_user_gp_insn:
    hlt
    .global guest_user_gp_next
guest_user_gp_next:
    mov ${fault_addr}, %rbx
    .global guest_user_pf_insn
guest_user_pf_insn:
    mov (%rbx), %rax
    .global guest_user_pf_next
guest_user_pf_next:
    // SYSCALL: ping(41) -> 42.
    mov $1, %eax
    mov $41, %edi
    .global guest_user_syscall_insn
guest_user_syscall_insn:
    syscall
    // int 0x80: ping(42) -> 43.
    mov %rax, %rdi
    mov $1, %eax
    int $0x80
    // int 0x80: exit(43).
    mov %rax, %rdi
    xor %eax, %eax
    int $0x80
    ud2

    // Just int 0x80 exit(7).
    .global guest_user_int80
guest_user_int80:
    xor %eax, %eax
    mov $7, %edi
    .global guest_user_int80_insn
guest_user_int80_insn:
    int $0x80
    .global guest_user_int80_next
guest_user_int80_next:
    ud2
    // Loops for measurements: RDI = count of SYSCALL (resp. int 0x80) pings, then exit(count).
    .global guest_user_syscall_loop
guest_user_syscall_loop:
    mov %rdi, %rbx
1:
    test %rbx, %rbx
    jz 2f
    mov $1, %eax
    syscall
    dec %rbx
    jmp 1b
    .global guest_user_int80_loop
guest_user_int80_loop:
    mov %rdi, %rbx
3:
    test %rbx, %rbx
    jz 2f
    mov $1, %eax
    int $0x80
    dec %rbx
    jmp 3b
2:
    xor %eax, %eax
    int $0x80
    ud2
    // Timed loops for the benchmark (`bench::ops`): RDI = count. Each iteration times one operation
    // between the fenced TSC reads of `arch::x86_64::timing` (lfence; rdtsc … rdtscp; lfence) and hands
    // the ticks to the kernel with `int 0x80` RAX = 2 (`record`, the benchmark's handler), then exit(count).
    // `empty` times only the `mov $1, %eax` the others also execute: its median is their overhead.
    .global guest_user_bench_empty
guest_user_bench_empty:
    mov %rdi, %rbx
    mov %rdi, %r12
4:
    test %rbx, %rbx
    jz 9f
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    mov $1, %eax
    rdtscp
    lfence
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rdi
    mov ${record}, %eax
    int $0x80
    dec %rbx
    jmp 4b
    .global guest_user_bench_int80
guest_user_bench_int80:
    mov %rdi, %rbx
    mov %rdi, %r12
5:
    test %rbx, %rbx
    jz 9f
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    mov $1, %eax
    int $0x80
    rdtscp
    lfence
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rdi
    mov ${record}, %eax
    int $0x80
    dec %rbx
    jmp 5b
    .global guest_user_bench_syscall
guest_user_bench_syscall:
    mov %rdi, %rbx
    mov %rdi, %r12
6:
    test %rbx, %rbx
    jz 9f
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13
    mov $1, %eax
    syscall
    rdtscp
    lfence
    shl $32, %rdx
    or %rdx, %rax
    sub %r13, %rax
    mov %rax, %rdi
    mov ${record}, %eax
    int $0x80
    dec %rbx
    jmp 6b
9:
    mov %r12, %rdi
    xor %eax, %eax
    int $0x80
    ud2
    .global guest_user_blob_end
guest_user_blob_end:
    .text
    "#,
    iret = const abi::hypercall::nr::IRET,
    fault_addr = const USER_FAULT_ADDR,
    record = const USER_SYS_RECORD,
    options(att_syntax)
);

unsafe extern "C" {
    /// Divide by zero (#DE) at `guest_probe_de_insn`.
    pub fn guest_probe_de();
    /// `int3` (#BP) at `guest_probe_bp_insn` with XMM0-15 loaded; returns 0 if they are intact after it.
    pub fn guest_probe_bp() -> u64;
    /// Overwrite XMM0-15.
    pub fn guest_clobber_xmm();
    /// `hlt` (#GP in ring 1) at `guest_probe_gp_insn`.
    pub fn guest_probe_gp();
    /// Read `*addr` (#PF if unmapped) at `guest_probe_pf_insn`; returns the value (or what a handler put
    /// in RAX).
    pub fn guest_probe_pf(addr: u64) -> u64;
    /// `ud2` (#UD) at `guest_probe_ud_insn`.
    pub fn guest_probe_ud();
    /// Load `rsp`, then read `*addr`.
    pub fn guest_probe_bad_stack(rsp: u64, addr: u64) -> !;
    /// The `iret` hypercall with the given CS, RFLAGS, SS (and RIP, 0 for "right here").
    pub fn guest_iret_probe(cs: u64, rflags: u64, ss: u64, out: *mut [u64; 3], rip: u64) -> i64;
    /// The u64 at FS base + `offset`.
    pub fn guest_read_fs(offset: u64) -> u64;
    /// The u64 at GS base + `offset`.
    pub fn guest_read_gs(offset: u64) -> u64;

    pub static guest_probe_de_insn: u8;
    pub static guest_probe_de_next: u8;
    pub static guest_probe_bp_insn: u8;
    pub static guest_probe_bp_next: u8;
    pub static guest_probe_gp_insn: u8;
    pub static guest_probe_gp_next: u8;
    pub static guest_probe_pf_insn: u8;
    pub static guest_probe_pf_next: u8;
    pub static guest_probe_ud_insn: u8;
    pub static guest_probe_ud_next: u8;

    static guest_user_blob_start: u8;
    static guest_user_blob_end: u8;
    static guest_user_traps: u8;
    static guest_user_de_insn: u8;
    static guest_user_de_next: u8;
    static guest_user_bp_insn: u8;
    static guest_user_bp_next: u8;
    static guest_user_gp_insn: u8;
    static guest_user_gp_next: u8;
    static guest_user_pf_insn: u8;
    static guest_user_pf_next: u8;
    static guest_user_syscall_insn: u8;
    static guest_user_int80: u8;
    static guest_user_int80_insn: u8;
    static guest_user_int80_next: u8;
    static guest_user_syscall_loop: u8;
    static guest_user_int80_loop: u8;
    static guest_user_bench_empty: u8;
    static guest_user_bench_int80: u8;
    static guest_user_bench_syscall: u8;
}

/// Offsets, from the start of the ring-3 program, of its entry points and faulting instructions.
#[derive(Clone, Copy, Debug)]
pub struct UserBlob {
    /// The program's bytes.
    pub bytes: &'static [u8],
    /// Entry: #DE, #BP, #GP, #PF, then a SYSCALL ping, an `int 0x80` ping and `int 0x80` exit.
    pub traps: u64,
    /// `(faulting instruction, next instruction)` of #DE, #BP, #GP and #PF.
    pub de: (u64, u64),
    pub bp: (u64, u64),
    pub gp: (u64, u64),
    pub pf: (u64, u64),
    /// The SYSCALL instruction.
    pub syscall: u64,
    /// Entry: `int 0x80` exit(7) only.
    pub int80: u64,
    /// Its `int 0x80` and the instruction after it.
    pub int80_insn: (u64, u64),
    /// Entry: `ping` through SYSCALL, argument-count times, then `exit(count)`.
    pub syscall_loop: u64,
    /// Entry: `ping` through `int 0x80`, argument-count times, then `exit(count)`.
    pub int80_loop: u64,
    /// Entries of the benchmark's timed loops (RDI = count; each sample reported with
    /// [`USER_SYS_RECORD`], then `exit(count)`): nothing but the `mov` the others also do, an `int 0x80`
    /// ping, a SYSCALL ping.
    pub bench_empty: u64,
    pub bench_int80: u64,
    pub bench_syscall: u64,
}

/// The ring-3 program and its offsets.
pub fn user_blob() -> UserBlob {
    let start = (&raw const guest_user_blob_start) as u64;
    let end = (&raw const guest_user_blob_end) as u64;
    let off = |p: *const u8| p as u64 - start;
    UserBlob {
        // SAFETY: the bytes between the two labels are the blob, immutable read-only data.
        bytes: unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) },
        traps: off(&raw const guest_user_traps),
        de: (
            off(&raw const guest_user_de_insn),
            off(&raw const guest_user_de_next),
        ),
        bp: (
            off(&raw const guest_user_bp_insn),
            off(&raw const guest_user_bp_next),
        ),
        gp: (
            off(&raw const guest_user_gp_insn),
            off(&raw const guest_user_gp_next),
        ),
        pf: (
            off(&raw const guest_user_pf_insn),
            off(&raw const guest_user_pf_next),
        ),
        syscall: off(&raw const guest_user_syscall_insn),
        int80: off(&raw const guest_user_int80),
        int80_insn: (
            off(&raw const guest_user_int80_insn),
            off(&raw const guest_user_int80_next),
        ),
        syscall_loop: off(&raw const guest_user_syscall_loop),
        int80_loop: off(&raw const guest_user_int80_loop),
        bench_empty: off(&raw const guest_user_bench_empty),
        bench_int80: off(&raw const guest_user_bench_int80),
        bench_syscall: off(&raw const guest_user_bench_syscall),
    }
}
