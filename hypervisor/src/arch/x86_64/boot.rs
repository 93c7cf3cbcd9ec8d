//! The first instructions: the multiboot header, the 32-bit entry, and the switch to long mode.
//!
//! QEMU's multiboot loader accepts an ELF64 image only through the header's "a.out kludge" address fields,
//! so the header below states where the image loads (`__image_start`), where its file contents end
//! (`__load_end`), where .bss ends (`__bss_end`) and the 32-bit entry point. The loader enters `_start32` in
//! 32-bit protected mode, paging off, with EAX = multiboot magic and EBX = the multiboot information address.
//!
//! `_start32` identity-maps the first 4 GiB with 2 MiB pages (boot page tables in .bss), enables PAE, long
//! mode, NX (when present), write protection (CR0.WP: even ring-0..2 writes honour read-only pages, which is
//! what keeps a ring-1 guest out of its own page tables) and SSE (the precompiled `core` uses SSE), then
//! jumps to 64-bit code which calls [`crate::arch::boot_main`] on the boot stack. The boot stack stays the
//! hypervisor's only stack: every later entry from a guest starts again at its top.

use core::arch::global_asm;

/// Size of the hypervisor stack (boot stack, reused for every entry from a guest).
pub const HV_STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long 0x1badb002
    .long 0x00010003
    .long -(0x1badb002 + 0x00010003)
    .long multiboot_header
    .long __image_start
    .long __load_end
    .long __bss_end
    .long _start32

    .section .boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov $hv_stack_top, %esp
    mov %eax, %edi
    mov %ebx, %esi

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four page directories; PD entries: 2 MiB pages over 4 GiB. */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $3, %eax
    mov $boot_pdpt, %edx
    mov $4, %ecx
1:  mov %eax, (%edx)
    add $4096, %eax
    add $8, %edx
    loop 1b
    mov $boot_pd, %edx
    mov $0x83, %eax
    mov $2048, %ecx
2:  mov %eax, (%edx)
    add $0x200000, %eax
    add $8, %edx
    loop 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x620, %eax          /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4

    /* EFER.LME, plus EFER.NXE when CPUID.80000001h:EDX[20] says NX exists. */
    mov %edi, %ebp
    mov $0x80000000, %eax
    cpuid
    mov $0x100, %ebx
    cmp $0x80000001, %eax
    jb 3f
    mov $0x80000001, %eax
    cpuid
    mov $0x100, %ebx
    bt $20, %edx
    jnc 3f
    or $0x800, %ebx
3:  mov $0xc0000080, %ecx
    rdmsr
    or %ebx, %eax
    wrmsr
    mov %ebp, %edi

    mov %cr0, %eax
    and $0xfffffffb, %eax    /* clear EM: SSE instructions execute */
    or $0x80010023, %eax     /* PG | WP | NE | MP | PE */
    mov %eax, %cr0

    lgdt boot_gdtr
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $hv_stack_top, %rsp
    mov %edi, %edi
    mov %esi, %esi
    xor %ebp, %ebp
    call {boot_main}
    ud2

    .section .boot.data, "aw"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff     /* 0x08: 64-bit ring-0 code */
    .quad 0x00cf92000000ffff     /* 0x10: ring-0 data */
boot_gdtr:
    .word boot_gdtr - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4 * 4096
    .global hv_stack_bottom
hv_stack_bottom:
    .skip {stack_size}
    .global hv_stack_top
hv_stack_top:
    "#,
    boot_main = sym crate::arch::boot_main,
    stack_size = const HV_STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    /// Top of the hypervisor stack (defined above).
    pub static hv_stack_top: u8;
    /// Bottom of the hypervisor stack (defined above).
    pub static hv_stack_bottom: u8;
}
