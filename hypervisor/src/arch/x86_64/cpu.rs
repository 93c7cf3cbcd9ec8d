//! Thin wrappers around single privileged instructions: port I/O, control registers, MSRs, CPUID.
//!
//! Each function is one instruction; callers decide when it is safe to execute it.

use core::arch::asm;

/// Write a byte to an I/O port.
pub fn outb(port: u16, val: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; the hypervisor owns every device it touches.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") val, options(nomem, nostack, preserves_flags))
    }
}

/// Read a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let val: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") val, options(nomem, nostack, preserves_flags))
    }
    val
}

/// Write a 32-bit value to an I/O port.
pub fn outl(port: u16, val: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") val, options(nomem, nostack, preserves_flags))
    }
}

/// Read CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Read CR2 (the faulting linear address of the last page fault).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Read CR3.
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Load CR3.
///
/// # Safety
/// `val` must name a page-table root that maps the code being executed, the current stack and every object
/// the caller still uses, at the same virtual addresses.
pub unsafe fn write_cr3(val: u64) {
    // SAFETY: the caller guarantees the new address space maps everything still in use.
    unsafe { asm!("mov cr3, {}", in(reg) val, options(nostack, preserves_flags)) }
}

/// Read CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Load CR4.
///
/// # Safety
/// The bits set must be supported by the CPU and consistent with the current paging mode.
pub unsafe fn write_cr4(val: u64) {
    // SAFETY: the caller guarantees the value is valid for this CPU.
    unsafe { asm!("mov cr4, {}", in(reg) val, options(nostack, preserves_flags)) }
}

/// Read a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (otherwise #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Write a model-specific register.
///
/// # Safety
/// `msr` must exist and `val` must be valid for it; the effect must be one the caller can live with.
pub unsafe fn wrmsr(msr: u32, val: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") val as u32, in("edx") (val >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// CPUID result registers.
#[derive(Clone, Copy, Debug)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Execute CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects (CR4.TSD is clear in ring 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Halt the CPU forever with interrupts disabled.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping the CPU is always memory-safe.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Read the frame pointer of the caller (for backtraces; the image is built with frame pointers).
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let v: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Architectural MSR numbers used by the hypervisor.
pub mod msr {
    /// Extended feature enable register.
    pub const EFER: u32 = 0xc000_0080;
    /// SYSCALL/SYSRET segment selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// SYSCALL target RIP (64-bit).
    pub const LSTAR: u32 = 0xc000_0082;
    /// RFLAGS bits SYSCALL clears.
    pub const FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// The GS base SWAPGS exchanges with.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// The serialized TSC-read pair around one `int` to the ring-0 measurement floor vector (its handler is a
/// bare IRETQ), or around nothing when `with_int` is false (the measurement's own overhead, subtracted by
/// the caller); returns the elapsed ticks.
pub fn time_ring0_int_iret(with_int: bool) -> u64 {
    let (lo0, hi0, lo1, hi1): (u32, u32, u32, u32);
    // SAFETY: the floor vector's stub only executes IRETQ on the frame the CPU pushed (same privilege, same
    // stack); interrupts are off in ring 0; no memory is touched. The asm may push (no `nostack`), so the
    // compiler keeps the red zone clear around it. Both variants execute the same instructions but the int.
    unsafe {
        if with_int {
            asm!(
                "lfence", "rdtsc", "mov {lo0:e}, eax", "mov {hi0:e}, edx", "int {v}", "rdtscp", "lfence",
                lo0 = out(reg) lo0, hi0 = out(reg) hi0, v = const super::tables::RING0_FLOOR_VECTOR,
                out("eax") lo1, out("edx") hi1, out("ecx") _,
            )
        } else {
            asm!(
                "lfence", "rdtsc", "mov {lo0:e}, eax", "mov {hi0:e}, edx", "rdtscp", "lfence",
                lo0 = out(reg) lo0, hi0 = out(reg) hi0,
                out("eax") lo1, out("edx") hi1, out("ecx") _,
            )
        }
    };
    let t0 = (u64::from(hi0) << 32) | u64::from(lo0);
    let t1 = (u64::from(hi1) << 32) | u64::from(lo1);
    t1.wrapping_sub(t0)
}

/// The data segment selectors a guest may have loaded: DS, ES, FS, GS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataSelectors(pub [u16; 4]);

/// Read DS, ES, FS and GS.
#[inline(always)] // On every domain switch: packed in registers, stored and compared as one word.
pub fn read_data_selectors() -> DataSelectors {
    let packed: u64;
    // SAFETY: reading segment registers has no side effects. A 64-bit destination zero-extends the
    // selector (a 32-bit one leaves the upper half implementation-defined), so the word is exactly
    // `ds | es << 16 | fs << 32 | gs << 48`.
    unsafe {
        asm!("mov {p}, gs", "shl {p}, 16", "mov {t}, fs", "or {p}, {t}", "shl {p}, 16",
             "mov {t}, es", "or {p}, {t}", "shl {p}, 16", "mov {t}, ds", "or {p}, {t}",
             p = out(reg) packed, t = out(reg) _, options(nomem, nostack))
    };
    DataSelectors([
        packed as u16,
        (packed >> 16) as u16,
        (packed >> 32) as u16,
        (packed >> 48) as u16,
    ])
}

/// Load DS, ES, FS and GS (this clears the FS/GS bases; load the base MSRs afterwards).
///
/// # Safety
/// Every selector must be null or name a present data segment usable from ring 0 (the fixed GDT's guest
/// data segments are: DPL 1 and 3 with RPL ≤ DPL).
pub unsafe fn write_data_selectors(s: DataSelectors) {
    let [ds, es, fs, gs] = s.0;
    // SAFETY: the caller guarantees the selectors are loadable.
    unsafe {
        asm!("mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
             in(reg) ds, in(reg) es, in(reg) fs, in(reg) gs, options(nostack, preserves_flags))
    };
}
