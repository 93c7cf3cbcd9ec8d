//! The privileged instructions of the native (ring-0) backend: port I/O, the interrupt flag, control
//! registers, TLB flushes, MSRs and HLT. Each is one instruction; the backend (`platform::native`) decides
//! when to use them. None of them may run in the PV kernel (ring 1): there each raises #GP.
//!
//! Interrupts are enabled and disabled with `sti` and `cli` only, never by loading RFLAGS with `popf`:
//! `popf` is sensitive but unprivileged (in ring 1..3 it silently leaves IF unchanged instead of
//! faulting), so a kernel that restored IF with it would lose its interrupt enables under trap-and-emulate.

use core::arch::asm;

/// Read a byte from an I/O port.
#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the native backend runs in ring 0 and reads only the legacy PC ports it owns (PIC, PIT,
    // UART, CMOS); reading them has no memory effect.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Write a byte to an I/O port.
#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: ring 0; the native backend writes only the legacy PC devices it drives, none of which
    // does DMA or otherwise touches memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Write a 32-bit value to an I/O port (`isa-debug-exit`).
#[inline(always)]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for `outb`; the only 32-bit port written is QEMU's debug-exit device.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// CLI: mask maskable interrupts.
#[inline(always)]
pub fn cli() {
    // SAFETY: ring 0; clearing IF has no memory effect (not `nomem`: it orders the critical section).
    unsafe { asm!("cli", options(nostack)) };
}

/// STI: unmask maskable interrupts (delivery starts after the next instruction).
#[inline(always)]
pub fn sti() {
    // SAFETY: ring 0; the IDT is installed before the backend first enables interrupts.
    unsafe { asm!("sti", options(nostack)) };
}

/// STI; HLT: sleep until an interrupt, with no window in which one could be taken before the HLT (STI's
/// one-instruction interrupt shadow covers it).
#[inline(always)]
pub fn sti_hlt() {
    // SAFETY: ring 0; the IDT is installed before the backend first sleeps.
    unsafe { asm!("sti", "hlt", options(nostack)) };
}

/// HLT with interrupts as they are (with IF clear: the machine stops for good).
#[inline(always)]
pub fn hlt() {
    // SAFETY: ring 0; HLT only waits.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}

/// RFLAGS (read with PUSHFQ; reading is harmless, it is loading it with POPF that the kernel avoids).
#[inline(always)]
pub fn rflags() -> u64 {
    let f: u64;
    // SAFETY: PUSHFQ; POP only moves the flags through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) f, options(preserves_flags)) };
    f
}

/// Load CR3 (switches address space; flushes non-global TLB entries).
///
/// # Safety
/// `root` must be the machine address of a valid L4 that maps the running kernel.
#[inline(always)]
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller guarantees the new tables map the kernel's code, stack and data.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
}

/// CR3.
#[inline(always)]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: ring 0; reading CR3 has no effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR2: the linear address of the last page fault.
#[inline(always)]
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: ring 0; reading CR2 has no effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// INVLPG: drop the TLB entry of the page holding `va`.
#[inline(always)]
pub fn invlpg(va: u64) {
    // SAFETY: ring 0; invalidating a TLB entry only makes the CPU re-walk the tables.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// WRMSR.
///
/// # Safety
/// `msr` must exist and `v` be a value it accepts that keeps the kernel running (e.g. EFER keeps LME).
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// RDMSR.
///
/// # Safety
/// `msr` must exist (otherwise #GP).
#[inline(always)]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The operand of LGDT/LIDT.
#[repr(C, packed)]
pub struct TableRegister {
    /// Size in bytes − 1.
    pub limit: u16,
    /// Linear address of the table.
    pub base: u64,
}

/// Load the GDT, reload CS with `code` (a far return) and SS/DS/ES with `data`, FS/GS with null.
///
/// # Safety
/// `gdt` must describe a GDT that stays in place for good, with a 64-bit ring-0 code segment at `code`
/// and a writable data segment at `data`.
pub unsafe fn load_gdt(gdt: &TableRegister, code: u16, data: u16) {
    // SAFETY: the caller guarantees the table and selectors; the far return lands on the next
    // instruction with the new CS, and the data selectors are valid in it.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {data:x}",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:x}",
            "mov gs, {tmp:x}",
            gdt = in(reg) gdt,
            code = in(reg) u64::from(code),
            data = in(reg) u64::from(data),
            tmp = out(reg) _,
        )
    };
}

/// Load the task register.
///
/// # Safety
/// `sel` must select an available TSS descriptor of the loaded GDT whose TSS stays in place.
pub unsafe fn ltr(sel: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("ltr {0:x}", in(reg) sel, options(nostack, preserves_flags)) };
}

/// Load the IDT.
///
/// # Safety
/// `idt` must describe an IDT that stays in place for good and whose present gates point at entry code.
pub unsafe fn lidt(idt: &TableRegister) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("lidt [{0}]", in(reg) idt, options(nostack, preserves_flags)) };
}

/// Raise the software-interrupt vector the native backend uses for interrupts this CPU sends itself
/// (`crate::platform::native::SELF_VECTOR`); its gate leads into the common interrupt path.
#[inline(always)]
pub fn raise_self_interrupt() {
    // SAFETY: the backend installs the gate (DPL 0) before it ever raises the vector; the handler
    // returns here.
    unsafe { asm!("int 0x30") };
}
