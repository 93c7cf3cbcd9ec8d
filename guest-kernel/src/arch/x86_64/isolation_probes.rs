//! Instructions for the entry-isolation scenarios: single-stepping with secret register values (the IST
//! leak victim), a yield with a marker in registers (the attacker's self-check), the null-SS sequences
//! (QEMU TCG's CPL-0 defect) and segment-selector loads in ring 1 and ring 3.

use core::arch::global_asm;

use abi::hypercall::nr::SCHED_OP;
use abi::layout::{GUEST_KERNEL_SS, GUEST_USER_SS};
use abi::sched::SCHEDOP_YIELD;

global_asm!(
    r#"
    .section .text.guest_isolation_probes, "ax"

    // guest_ist_victim(secrets: *const [u64; 11]): RBX RBP R8 R9 R10 R11 R12 R13 R14 R15 RDX = secrets;
    // single-step nine NOPs (each a #DB, on the hypervisor's IST stack), then yield with the secrets still
    // loaded. (ICEBP would be another IST path on hardware; QEMU's TCG raises #UD for it.)
    .global guest_ist_victim
guest_ist_victim:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rbp
    mov 16(%rdi), %r8
    mov 24(%rdi), %r9
    mov 32(%rdi), %r10
    mov 40(%rdi), %r11
    mov 48(%rdi), %r12
    mov 56(%rdi), %r13
    mov 64(%rdi), %r14
    mov 72(%rdi), %r15
    mov 80(%rdi), %rdx
    pushfq
    orq $0x100, (%rsp)
    popfq
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    nop
    pushfq
    andq $~0x100, (%rsp)
    popfq
    mov ${sched_op}, %eax
    mov ${yield_cmd}, %edi
    xor %esi, %esi
    int $0x82
    xor %edx, %edx
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    // guest_marked_yield(mark): yield with `mark` in R12..R15 (the attacker finds its own frame).
    .global guest_marked_yield
guest_marked_yield:
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rdi, %r12
    mov %rdi, %r13
    mov %rdi, %r14
    mov %rdi, %r15
    mov ${sched_op}, %eax
    mov ${yield_cmd}, %edi
    xor %esi, %esi
    int $0x82
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    ret

    // u64 guest_null_ss(via): load the null selector 1 (RPL 1) into SS, then
    //   via 0: int $0x82 (xen_version 0)   via 1: syscall   via 2: ud2   via 3: mov %cr0, %rax; int $0x82
    //   via 4: RSP = 8 (unmapped), then ud2
    // A faithful CPU runs all of it in ring 1: the hypercall returns, the SYSCALL and the faults are
    // delivered to this kernel's handlers (which resume at guest_null_ss_done). Restores SS and returns.
    .global guest_null_ss
guest_null_ss:
    push %rbx
    mov %rdi, %rbx
    mov $1, %ecx
    mov %ecx, %ss
    cmp $1, %rbx
    je 1f
    cmp $2, %rbx
    je 2f
    cmp $3, %rbx
    je 3f
    cmp $4, %rbx
    je 4f
    xor %eax, %eax
    mov $17, %eax
    xor %edi, %edi
    xor %esi, %esi
    int $0x82
    jmp 9f
1:  syscall
    .global guest_null_ss_after_syscall
guest_null_ss_after_syscall:
    jmp 9f
2:  .global guest_null_ss_ud
guest_null_ss_ud:
    ud2
    jmp 9f
3:  .global guest_null_ss_priv
guest_null_ss_priv:
    mov %cr0, %rax
    mov $17, %eax
    xor %edi, %edi
    xor %esi, %esi
    int $0x82
    jmp 9f
4:  /* An unusable stack, then a fault: at CPL 0 its delivery faults twice (#DF on an IST stack). */
    push %rbp
    mov %rsp, %rbp
    mov $8, %esp
    .global guest_null_ss_badstack
guest_null_ss_badstack:
    ud2
    mov %rbp, %rsp
    pop %rbp
    .global guest_null_ss_done
guest_null_ss_done:
9:  mov ${kernel_ss}, %ecx
    mov %ecx, %ss
    pop %rbx
    ret

    // u64 guest_load_selectors_ring1(): load every selector ring 1 may use into DS, ES, FS, GS (kernel
    // data, user data, null, null with RPL 1) and SS (kernel data; a null SS is the null-ss scenario's, as
    // QEMU TCG then runs the code at CPL 0); restore DS, ES and SS; FS and GS are
    // left null (the caller restores their bases). Returns the number of loads.
    .global guest_load_selectors_ring1
guest_load_selectors_ring1:
    mov %ds, %r8d
    mov %es, %r9d
    mov %ss, %r10d
    xor %eax, %eax
    .irp sel, {kernel_ss}, {user_ss}, 0, 1
    mov $\sel, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov %ecx, %fs
    mov %ecx, %gs
    add $4, %eax
    .endr
    mov ${kernel_ss}, %ecx
    mov %ecx, %ss
    add $1, %eax
    xor %ecx, %ecx
    mov %ecx, %fs
    mov %ecx, %gs
    mov %r8d, %ds
    mov %r9d, %es
    mov %r10d, %ss
    ret

    // The ring-3 program (position independent, copied into a user page): load the user data selector
    // into DS, ES, FS, GS and SS, and the null selector into DS, ES, FS, GS, then exit(0x5e1ec7) with
    // `int 0x80` (RAX 0 = exit).
    .global guest_selectors_user_start
guest_selectors_user_start:
    mov ${user_ss}, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov %ecx, %fs
    mov %ecx, %gs
    mov %ecx, %ss
    xor %ecx, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov %ecx, %fs
    mov %ecx, %gs
    mov ${user_ss}, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    mov $0x5e1ec7, %edi
    xor %eax, %eax
    int $0x80
    ud2
    .global guest_selectors_user_end
guest_selectors_user_end:
    .text
    "#,
    sched_op = const SCHED_OP,
    yield_cmd = const SCHEDOP_YIELD,
    kernel_ss = const GUEST_KERNEL_SS,
    user_ss = const GUEST_USER_SS,
    options(att_syntax)
);

unsafe extern "C" {
    /// See the assembly above.
    pub fn guest_ist_victim(secrets: *const [u64; 11]);
    /// See the assembly above.
    pub fn guest_marked_yield(mark: u64);
    /// See the assembly above.
    pub fn guest_null_ss(via: u64) -> u64;
    /// See the assembly above.
    pub fn guest_load_selectors_ring1() -> u64;

    pub static guest_null_ss_after_syscall: u8;
    pub static guest_null_ss_ud: u8;
    pub static guest_null_ss_priv: u8;
    pub static guest_null_ss_badstack: u8;
    pub static guest_null_ss_done: u8;
    static guest_selectors_user_start: u8;
    static guest_selectors_user_end: u8;
}

/// The ring-3 selector program's bytes.
pub fn selectors_user_blob() -> &'static [u8] {
    let start = (&raw const guest_selectors_user_start) as u64;
    let end = (&raw const guest_selectors_user_end) as u64;
    // SAFETY: the bytes between the two labels are the program, immutable read-only data.
    unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) }
}
