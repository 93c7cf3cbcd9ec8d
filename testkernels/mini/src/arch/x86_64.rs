//! The mini kernel's assembly: the multiboot v1 header, the 32-bit entry that switches to long mode, the
//! 64-bit entry, the interrupt stubs, the page-fault probe and the port/CPU-state helpers.
//!
//! # Entry
//!
//! The image is linked at physical 2 MiB and runs identity-mapped. The multiboot header's a.out-kludge
//! fields (flag bit 16) give the load range, because QEMU's multiboot loader refuses an ELF64 image
//! otherwise. The loader enters `_start32` in 32-bit protected mode, paging off, CPL 0, EAX = 0x2BADB002,
//! EBX = the multiboot information's physical address. `_start32` builds one PML4 → PDPT → PD mapping
//! physical 0..1 GiB at 0 with 2 MiB pages (tables in .bss, which the loader zeroed), enables PAE,
//! SSE (OSFXSR), EFER.LME and paging, loads a two-entry GDT and far-jumps to `_start64`.
//!
//! `_start64` is also the kernel's 64-bit entry for a loader that sets up long mode itself: 64-bit mode,
//! CPL 0 (or what the loader's vCPU calls it), paging on with the image and its .bss identity-mapped and
//! writable, IF = 0; RDI = the multiboot magic, RSI = the information's address. It loads its own GDT
//! (the same two entries, through a 64-bit GDTR: such a loader need not leave one; the hypervisor's
//! emulate kind leaves the virtual GDTR empty), its own stack, clears DF and calls
//! `kernel::main(magic, info)`. The image follows the emulate kind's protocol (ELF64 with symbols,
//! `_start64`, 2 MiB-aligned load address equal to the link address), so it runs there too, in ring 1.
//!
//! # Interrupt stubs
//!
//! Each stub saves the caller-saved registers and calls a Rust handler with a pointer to [`Frame`]; the
//! handler may change the frame's RIP (the page-fault handler resumes after the probe's instruction).
//! Vectors 0–31 other than #PF land in `mini_isr_exc_N`, which passes N to `kernel::unexpected` and does
//! not return.

use core::arch::{asm, global_asm};

/// The frame an interrupt stub hands to its Rust handler: the saved registers, then (error code or zero)
/// and the CPU's interrupt frame.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// R11, R10, R9, R8, RDI, RSI, RDX, RCX, RAX as pushed (lowest address first).
    pub saved: [u64; 9],
    /// The error code (0 for vectors without one).
    pub error: u64,
    /// Where the interrupted code resumes.
    pub rip: u64,
    /// Its CS.
    pub cs: u64,
    /// Its RFLAGS.
    pub rflags: u64,
    /// Its RSP.
    pub rsp: u64,
    /// Its SS.
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 15 * 8);
const _: () = assert!(core::mem::offset_of!(Frame, error) == 9 * 8);
const _: () = assert!(core::mem::offset_of!(Frame, rip) == 10 * 8);

/// Size of the kernel's stack.
const STACK_SIZE: usize = 16 * 1024;

global_asm!(
    r#"
    .section .text.multiboot, "ax"
    .balign 4
mini_multiboot_header:
    .long 0x1badb002
    .long 0x00010003
    .long -(0x1badb002 + 0x00010003)
    .long mini_multiboot_header
    .long __image_start
    .long __load_end
    .long __image_end
    .long _start32

    .section .text.boot32, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov %eax, %edi
    mov %ebx, %esi

    /* PML4[0] -> PDPT[0] -> PD: 512 2 MiB pages, physical 0..1 GiB at 0, writable. */
    mov $(mini_pdpt + 3), %eax
    mov %eax, mini_pml4
    mov $(mini_pd + 3), %eax
    mov %eax, mini_pdpt
    mov $mini_pd, %edx
    mov $0x83, %eax
    mov $512, %ecx
1:  mov %eax, (%edx)
    add $0x200000, %eax
    add $8, %edx
    loop 1b

    mov $mini_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x620, %eax             /* PAE | OSFXSR | OSXMMEXCPT (the Rust code may use SSE) */
    mov %eax, %cr4
    mov $0xc0000080, %ecx       /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0xfffffffb, %eax       /* clear EM */
    or $0x80000023, %eax        /* PG | NE | MP | PE */
    mov %eax, %cr0

    lgdt mini_gdtr
    ljmp $0x08, $_start64

    .code64
    .global _start64
_start64:
    cli
    cld
    lgdt mini_gdtr64(%rip)
    /* SS gets the data selector, not null: a null SS loaded in ring 1 (under a trap-and-emulate VMM)
       makes QEMU 7.2's TCG run the code at CPL 0; a real selector load traps there and is emulated. */
    mov $0x10, %eax
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %fs
    mov %eax, %gs
    lea mini_stack_top(%rip), %rsp
    mov %edi, %edi
    mov %esi, %esi
    xor %ebp, %ebp
    call {main}
    ud2

    .section .text.mini_isr, "ax"
    /* IRQ0: the timer. */
    .global mini_isr_timer
mini_isr_timer:
    push $0
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rdi
    call {timer}
    jmp mini_isr_return

    /* IRQ1-15: masked or spurious; nothing to do (a spurious IRQ7/15 must not be acknowledged). */
    .global mini_isr_ignore
mini_isr_ignore:
    iretq

    /* #PF: the CPU pushed an error code. */
    .global mini_isr_pf
mini_isr_pf:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rdi
    sub $8, %rsp
    call {page_fault}
    add $8, %rsp
mini_isr_return:
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq

    /* Every other exception: report its vector and stop. */
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
mini_isr_exc_\n:
    mov $\n, %edi
    and $-16, %rsp
    call {unexpected}
    ud2
    .endr

    /* u64 mini_touch(u64 addr): the u64 at addr. A #PF handler either maps the page and resumes at
       mini_touch_insn (the read is retried), or resumes at mini_touch_fixup, which returns all ones. */
    .global mini_touch
mini_touch:
    .global mini_touch_insn
mini_touch_insn:
    mov (%rdi), %rax
    ret
    .global mini_touch_fixup
mini_touch_fixup:
    mov $-1, %rax
    ret

    .section .rodata.mini_exc_table, "a"
    .balign 8
    .global mini_exc_table
mini_exc_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad mini_isr_exc_\n
    .endr

    .section .rodata.mini_gdt, "a"
    .balign 8
mini_gdt:
    .quad 0
    .quad 0x00af9a000000ffff     /* 0x08: 64-bit ring-0 code */
    .quad 0x00cf92000000ffff     /* 0x10: ring-0 data (SS) */
mini_gdtr:
    .word mini_gdtr - mini_gdt - 1
    .long mini_gdt
    .balign 8
    .word 0, 0, 0
mini_gdtr64:                     /* the same table for LGDT in 64-bit mode (an 8-byte base) */
    .word mini_gdtr - mini_gdt - 1
    .quad mini_gdt

    .section .bss.mini_boot, "aw", @nobits
    .balign 4096
    .global mini_pml4
mini_pml4: .skip 4096
    .global mini_pdpt
mini_pdpt: .skip 4096
mini_pd:   .skip 4096
    .balign 16
mini_stack: .skip {stack}
mini_stack_top:
    "#,
    main = sym crate::kernel::main,
    timer = sym crate::kernel::timer,
    page_fault = sym crate::kernel::page_fault,
    unexpected = sym crate::kernel::unexpected,
    stack = const STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static mini_isr_timer: u8;
    static mini_isr_ignore: u8;
    static mini_isr_pf: u8;
    static mini_touch_insn: u8;
    static mini_touch_fixup: u8;
    static mini_exc_table: [u64; 32];
    static mini_pml4: u8;
    static mini_pdpt: u8;
    fn mini_touch(addr: u64) -> u64;
}

/// The timer stub's address.
pub fn isr_timer() -> u64 {
    core::ptr::addr_of!(mini_isr_timer) as u64
}

/// The address of the stub for ignored IRQs.
pub fn isr_ignore() -> u64 {
    core::ptr::addr_of!(mini_isr_ignore) as u64
}

/// The page-fault stub's address.
pub fn isr_page_fault() -> u64 {
    core::ptr::addr_of!(mini_isr_pf) as u64
}

/// The address of the stub for exception `vector` (0..32), which reports it as unexpected.
pub fn isr_exception(vector: usize) -> u64 {
    // SAFETY: the table is read-only data defined above with exactly 32 quads.
    unsafe { mini_exc_table[vector % 32] }
}

/// The probe's faulting instruction and where the #PF handler resumes it.
pub fn touch_labels() -> (u64, u64) {
    (
        core::ptr::addr_of!(mini_touch_insn) as u64,
        core::ptr::addr_of!(mini_touch_fixup) as u64,
    )
}

/// Reads the u64 at `addr` (all ones if the read faulted and the handler skipped it).
pub fn touch(addr: u64) -> u64 {
    // SAFETY: the probe only reads; a fault is caught by the #PF handler, which checks RIP exactly and
    // either maps the page (the read is retried) or resumes at the fixup, which returns normally. It
    // clobbers only RAX (the return value).
    unsafe { mini_touch(addr) }
}

/// The boot page tables `_start32` built: the PML4's and the PDPT's addresses (identity-mapped).
pub fn boot_tables() -> (u64, u64) {
    (
        core::ptr::addr_of!(mini_pml4) as u64,
        core::ptr::addr_of!(mini_pdpt) as u64,
    )
}

/// CR3.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Drops the TLB entry of `va`.
pub fn invlpg(va: u64) {
    // SAFETY: INVLPG only invalidates a translation; the next access walks the tables again.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) }
}

/// `out` of one byte.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the PC devices this kernel owns (UART, PIC, PIT, isa-debug-exit); no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// `in` of one byte.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port I/O to the PC devices this kernel owns; no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// `out` of four bytes.
pub fn outl(port: u16, value: u32) {
    // SAFETY: port I/O (isa-debug-exit); no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Loads the IDT from `base` (`limit` = its size − 1).
pub fn lidt(base: u64, limit: u16) {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let p = Pointer { limit, base };
    // SAFETY: the caller passes a table that stays alive (a static) with valid gates for the vectors that
    // can arrive; LIDT only reads the 10-byte pointer.
    unsafe { asm!("lidt [{}]", in(reg) &p, options(readonly, nostack, preserves_flags)) }
}

/// Enables interrupts and halts until one has been handled (STI's one-instruction shadow makes the pair
/// atomic: an interrupt pending at STI wakes the HLT), then disables them again.
pub fn wait_for_interrupt() {
    // SAFETY: the IDT is loaded with handlers for every vector the PIC can deliver; they preserve the
    // registers they use and return with IRETQ.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: only clears RFLAGS.IF.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Halts forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI; HLT stops this CPU; nothing else runs on it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// CR2: the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// The current CS selector.
pub fn cs() -> u16 {
    let v: u16;
    // SAFETY: reading a segment register has no side effect.
    unsafe { asm!("mov {:x}, cs", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}
