//! The guest kernel's entry points: the PV entry (`_start`), the native multiboot entry (`_start32`, 32-bit)
//! and the 64-bit native kernel entry (`_start64`). How the kernel was entered selects its platform backend.
//!
//! # PV entry: `_start`
//!
//! The hypervisor enters here in ring 1 with RSP at the top of the start-of-day stack and RSI pointing at
//! the `start_info` page (Xen's PV convention); events are masked (`evtchn_upcall_mask = 1`).
//! `kernel_main(start_info, stack_top)` gets that initial RSP too: the memory manager reads the end of the
//! start-of-day region from it.
//!
//! # Native entry: multiboot v1 header and `_start32`
//!
//! The same ELF carries a multiboot v1 header at the start of its text. QEMU's multiboot loader accepts an
//! ELF64 image only through the header's "a.out kludge" address fields, so the header states the physical
//! addresses where the image loads ([`NATIVE_LOAD_PHYS`] = link address − [`NATIVE_PHYS_OFFSET`]), where
//! its file contents end (`__load_end`), where .bss ends (`__kernel_end`) and the 32-bit entry point. The
//! image's segments are contiguous in the file and in memory (the linker script keeps them so), which is
//! what lets one copy of the file stand for the three PT_LOAD segments the PV domain builder loads.
//!
//! The loader enters `_start32` in 32-bit protected mode, paging off, CPL 0, with EAX = 0x2BADB002 and EBX =
//! the physical address of the multiboot information. `_start32` runs at its physical address, so every
//! address it uses is `symbol − NATIVE_PHYS_OFFSET`. It builds the initial page tables (in .bss, which the
//! loader zeroed): one PDPT + PD of 2 MiB pages mapping physical 0..1 GiB writable at 0 (identity, for the
//! switch), at the physmap (PML4 slot 273, what `mm::physmap_va` computes, until the memory manager
//! replaces it with its own 4 KiB physmap) and at the native direct map (slot 272,
//! `platform::native::DIRECT_MAP_BASE`, which the native backend keeps for writing page tables), and one
//! PDPT + PD mapping the kernel image at its link address (PML4 slot
//! 511, PDPT slot 510 → physical [`NATIVE_LOAD_PHYS`] + 0..1 GiB). It enables PAE, OSFXSR/OSXMMEXCPT,
//! EFER.LME (and NXE when the CPU has NX), paging with CR0.WP, loads a two-entry boot GDT, far-jumps to
//! 64-bit code and jumps from the identity mapping to `_start64` at its link address.
//!
//! # The 64-bit native kernel entry: `_start64` (a boundary later modes enter directly)
//!
//! On entry to `_start64` the machine state is exactly:
//! - 64-bit mode, CPL 0, CS a 64-bit code segment; DS/ES/SS/FS/GS unspecified (`_start64` loads null
//!   selectors, which 64-bit mode allows at CPL 0); IF = 0; RFLAGS.DF unspecified (cleared here);
//! - CR0: PE, PG, WP, NE, MP set, EM clear; CR4: PAE, OSFXSR, OSXMMEXCPT; EFER: LME (and NXE if the CPU
//!   has NX);
//! - CR3: the physical address of an L4 (in memory the kernel does not manage: below the image end or
//!   outside RAM it is told of) mapping the kernel image at its link address (virtual = physical +
//!   NATIVE_PHYS_OFFSET) and physical 0..1 GiB writable both at the physmap (`0xffff_8880_0000_0000 +
//!   physical`) and at the direct map (`0xffff_8800_0000_0000 + physical`), with the L4 itself reachable
//!   through them; slot 0 (the identity mapping of low memory) may be present and is cleared by the
//!   kernel;
//! - RDI = 0x2BADB002 (the multiboot magic), RSI = the physical address (below 1 GiB) of a multiboot v1
//!   information structure (flags, mem_lower/mem_upper, cmdline);
//! - RSP: anything (`_start64` loads its own boot stack); GDTR/IDTR: anything (the native backend
//!   installs its own GDT, TSS and IDT before the first trap can happen).
//!
//! It calls `boot::native_main(magic, info_phys, stack_top)`, which selects the native backend.

use core::arch::global_asm;

use crate::mm::{KERNEL_VIRT_BASE, PHYSMAP_SLOT};

/// Where the multiboot loader puts the kernel image natively (its first byte, the text).
pub const NATIVE_LOAD_PHYS: u64 = 0x20_0000;
/// Link address − physical address of the image when booted natively.
pub const NATIVE_PHYS_OFFSET: u64 = KERNEL_VIRT_BASE - NATIVE_LOAD_PHYS;
/// The multiboot v1 magic the loader passes in EAX (and `_start64` in RDI).
pub const MULTIBOOT_MAGIC: u32 = 0x2bad_b002;
/// Size of the native boot stack.
pub const NATIVE_BOOT_STACK: usize = 64 * 1024;

// The boot tables map 1 GiB with one PD each; the kernel image must fit in the first 2 MiB-aligned GiB.
static_assertions::const_assert_eq!(KERNEL_VIRT_BASE % (1 << 30), 0);
static_assertions::const_assert_eq!(NATIVE_LOAD_PHYS % (2 << 20), 0);
static_assertions::const_assert_eq!((KERNEL_VIRT_BASE >> 39) & 511, 511);
static_assertions::const_assert_eq!((KERNEL_VIRT_BASE >> 30) & 511, 510);

global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    xor %ebp, %ebp
    mov %rsi, %rdi
    mov %rsp, %rsi
    call {main}
    ud2

    .section .text.multiboot, "ax"
    .balign 4
native_multiboot_header:
    .long 0x1badb002
    .long 0x00010003
    .long -(0x1badb002 + 0x00010003)
    .long native_multiboot_header - {off}
    .long __kernel_start - {off}
    .long __load_end - {off}
    .long __kernel_end - {off}
    .long _start32 - {off}

    .section .text.boot32, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov %eax, %edi
    mov %ebx, %esi

    /* PML4[0], PML4[physmap] and PML4[direct map] -> pdpt_lo -> pd_lo (identity 0..1 GiB); PML4[511] -> pdpt_hi[510] -> pd_hi. */
    mov $(native_boot_pdpt_lo - {off} + 3), %eax
    mov %eax, (native_boot_pml4 - {off})
    mov %eax, (native_boot_pml4 - {off} + {physmap_slot} * 8)
    mov %eax, (native_boot_pml4 - {off} + {direct_slot} * 8)
    mov $(native_boot_pdpt_hi - {off} + 3), %eax
    mov %eax, (native_boot_pml4 - {off} + 511 * 8)
    mov $(native_boot_pd_lo - {off} + 3), %eax
    mov %eax, (native_boot_pdpt_lo - {off})
    mov $(native_boot_pd_hi - {off} + 3), %eax
    mov %eax, (native_boot_pdpt_hi - {off} + 510 * 8)
    mov $(native_boot_pd_lo - {off}), %edx
    mov $0x83, %eax
    mov $512, %ecx
1:  mov %eax, (%edx)
    add $0x200000, %eax
    add $8, %edx
    loop 1b
    mov $(native_boot_pd_hi - {off}), %edx
    mov $({load} + 0x83), %eax
    mov $512, %ecx
2:  mov %eax, (%edx)
    add $0x200000, %eax
    add $8, %edx
    loop 2b

    mov $(native_boot_pml4 - {off}), %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x620, %eax          /* PAE | OSFXSR | OSXMMEXCPT */
    mov %eax, %cr4

    /* EFER.LME, plus EFER.NXE when CPUID.80000001h:EDX[20] says NX exists (EBX/EDX clobbered). */
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
    and $0xfffffffb, %eax    /* clear EM */
    or $0x80010023, %eax     /* PG | WP | NE | MP | PE */
    mov %eax, %cr0

    lgdt (native_boot_gdtr - {off})
    ljmp $0x08, $(native_start64_low - {off})

    .code64
native_start64_low:
    movabs $_start64, %rax
    jmp *%rax

    .global _start64
_start64:
    cli
    cld
    xor %eax, %eax
    mov %eax, %ds
    mov %eax, %es
    /* SS is left as the loader gave it until the backend loads its GDT and its data selector: a null SS
       loaded in ring 1 (under the emulate kind) makes QEMU 7.2's TCG run the kernel at CPL 0. */
    mov %eax, %fs
    mov %eax, %gs
    lea native_boot_stack_top(%rip), %rsp
    mov %rsp, %rdx
    mov %edi, %edi
    mov %esi, %esi
    xor %ebp, %ebp
    call {native_main}
    ud2

    .section .rodata.native_boot_gdt, "a"
    .balign 8
native_boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff     /* 0x08: 64-bit ring-0 code */
native_boot_gdtr:
    .word native_boot_gdtr - native_boot_gdt - 1
    .long native_boot_gdt - {off}

    .section .bss.native_boot, "aw", @nobits
    .balign 4096
native_boot_pml4:    .skip 4096
native_boot_pdpt_lo: .skip 4096
native_boot_pdpt_hi: .skip 4096
native_boot_pd_lo:   .skip 4096
native_boot_pd_hi:   .skip 4096
    .balign 16
native_boot_stack:   .skip {stack}
native_boot_stack_top:
    "#,
    main = sym crate::boot::kernel_main,
    native_main = sym crate::boot::native_main,
    off = const NATIVE_PHYS_OFFSET,
    load = const NATIVE_LOAD_PHYS,
    physmap_slot = const PHYSMAP_SLOT,
    direct_slot = const crate::platform::native::DIRECT_MAP_SLOT,
    stack = const NATIVE_BOOT_STACK,
    options(att_syntax)
);

unsafe extern "C" {
    /// The PV entry point above.
    static _start: u8;
}

/// The address of the PV entry point `_start`: where a domain builder starts a domain running this image
/// (the ELF entry; not the image's first byte, which holds the multiboot header).
pub fn pv_entry() -> u64 {
    core::ptr::addr_of!(_start) as u64
}
