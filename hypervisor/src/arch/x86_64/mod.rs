//! x86_64 support: boot, entry/exit, descriptor tables, paging, serial, CPU instructions.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod entry;
pub mod fidelity;
pub mod layout;
pub mod paging;
pub mod pci;
pub mod serial;
pub mod svm;
pub mod tables;

use core::arch::asm;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::mm::pcid;

use self::layout::{alias_of, stack_top};
use self::paging::HvSpace;
use self::tables::{ENTRY_TABLES, GDT_LEN, HV_CS, HV_DS, TSS_SEL, gate_for};

/// Called by the 32-to-64-bit boot code with the multiboot magic and information address.
pub extern "C" fn boot_main(magic: u32, info: u32) -> ! {
    serial::init();
    crate::setup::start(magic, u64::from(info))
}

/// Size of the private stack used to report a hypervisor fault.
const FATAL_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct FatalStack([u8; FATAL_STACK_SIZE]);
static mut FATAL_STACK: FatalStack = FatalStack([0; FATAL_STACK_SIZE]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// CPU features the hypervisor turned on.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuFeatures {
    /// Supervisor-mode execution prevention (also stops the ring-1 guest kernel from executing user pages).
    pub smep: bool,
    /// Process-context identifiers (`mm::pcid`).
    pub pcid: bool,
    /// Physical-address width in bits.
    pub maxphyaddr: u32,
}

/// Fill the descriptor tables, switch to the hypervisor's address space and load GDT, TSS and IDT through
/// their entry-region aliases.
pub fn init_cpu(space: &HvSpace) -> CpuFeatures {
    let t = ENTRY_TABLES.get();
    // SAFETY: boot runs on one CPU before any guest exists; nothing else references the tables.
    let tables = unsafe { &mut *t };

    let stubs = (
        &raw const entry::entry_stubs as u64,
        &raw const entry::entry_stubs_end as u64,
    );
    assert_eq!(
        stubs.1 - stubs.0,
        256 * entry::STUB_SIZE as u64,
        "an entry stub outgrew STUB_SIZE"
    );
    let stub_alias = alias_of(stubs.0);
    for (v, gate) in tables.idt.iter_mut().enumerate() {
        *gate = gate_for(v, stub_alias + (v * entry::STUB_SIZE) as u64);
    }
    // The hypercall vector enters its own path directly (no stub: see `entry`'s module docs).
    let hc = usize::from(abi::layout::HYPERCALL_VECTOR);
    tables.idt[hc] = gate_for(hc, alias_of(&raw const entry::hypercall_entry as u64));
    let tss_alias = alias_of(core::ptr::addr_of!(tables.tss) as u64);
    tables.gdt = tables::gdt_entries(tss_alias);
    tables.tss.rsp = [layout::entry_stack_top(), 0, 0];
    let mut ist = [0u64; 7];
    for (k, slot) in ist.iter_mut().enumerate().take(layout::STACK_SLOTS - 1) {
        *slot = stack_top(k + 1);
    }
    tables.tss.ist = ist;
    tables.words.rsp0_entry = layout::entry_stack_top() - entry::STUB_ENTRY_DEPTH;
    tables.words.cpu_entry = layout::entry_stack_top() - entry::CPU_ENTRY_DEPTH;
    tables.words.exit_stub = alias_of(&raw const entry::exit_to_guest_stub as u64);
    for (k, w) in tables.words.ist_entry.iter_mut().enumerate() {
        *w = stack_top(k + 1) - entry::STUB_ENTRY_DEPTH;
    }
    tables.words.hv_cr3 = space.root.addr().0;
    tables.words.hv_stack_top = &raw const boot::hv_stack_top as u64;
    tables.words.fatal_stack_top =
        core::ptr::addr_of!(FATAL_STACK) as u64 + FATAL_STACK_SIZE as u64;

    // SAFETY: the new address space identity-maps the first 4 GiB exactly like the boot tables (code, stack,
    // statics and every frame in use) and adds the entry region.
    unsafe { cpu::write_cr3(space.root.addr().0) };

    let gdt_image = DescriptorPointer {
        limit: (GDT_LEN * 8 - 1) as u16,
        base: core::ptr::addr_of!(tables.gdt) as u64,
    };
    // SAFETY: the GDT is filled in; CS/DS selectors keep their meaning (same descriptors as the boot GDT).
    // LTR marks the TSS descriptor busy, which is why it runs while the GDT is addressed through its
    // writable image address; afterwards GDTR moves to the read-only alias.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "ltr {tss:x}",
            gdt = in(reg) &gdt_image,
            cs = const HV_CS as u64,
            ds = in(reg) u64::from(HV_DS),
            tss = in(reg) u64::from(TSS_SEL),
            tmp = out(reg) _,
        );
    }
    let gdt_alias = DescriptorPointer {
        limit: gdt_image.limit,
        base: alias_of(gdt_image.base),
    };
    let idt_alias = DescriptorPointer {
        limit: (256 * size_of::<tables::IdtGate>() - 1) as u16,
        base: alias_of(core::ptr::addr_of!(tables.idt) as u64),
    };
    // SAFETY: both aliases are mapped (read-only) in the address space just loaded, and will be in every
    // guest's; the tables are complete.
    unsafe {
        asm!("lgdt [{}]", "lidt [{}]", in(reg) &gdt_alias, in(reg) &idt_alias, options(nostack))
    };

    let leaf7 = cpu::cpuid(7, 0);
    let leaf1 = cpu::cpuid(1, 0);
    let maxphyaddr = if cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0008 {
        cpu::cpuid(0x8000_0008, 0).eax & 0xff
    } else {
        36
    };
    let features = CpuFeatures {
        smep: leaf7.ebx & (1 << 7) != 0,
        pcid: leaf1.ecx & (1 << 17) != 0,
        maxphyaddr,
    };
    if features.smep {
        // SAFETY: CPUID reports SMEP; the hypervisor never executes user pages.
        unsafe { cpu::write_cr4(cpu::read_cr4() | (1 << 20)) };
    }
    if features.pcid {
        // SAFETY: CPUID reports PCID, we are in long mode and CR3 holds PCID 0 (the hypervisor's root is page
        // aligned), which is what CR4.PCIDE requires; from now on CR3 values come from `mm::pcid`.
        unsafe { cpu::write_cr4(cpu::read_cr4() | (1 << 17)) };
        PCID_ENABLED.store(true, Ordering::Relaxed);
        tables.words.hv_cr3 = pcid::cr3_value(space.root.addr().0, true, pcid::HV_PCID, false);
    }
    UMIP_PRESENT.store(leaf7.ecx & (1 << 2) != 0, Ordering::Relaxed);
    mask_legacy_pic();
    features
}

static UMIP_PRESENT: AtomicBool = AtomicBool::new(false);
static UMIP_ON: AtomicBool = AtomicBool::new(false);

/// CR4.UMIP on while an emulate domain runs (so SGDT/SIDT/SLDT/STR/SMSW trap and are emulated with the
/// virtual values) and off for PV domains (whose kernels may read the real tables). No-op without UMIP.
#[inline] // On every domain switch (`sched::schedule`): pinned inline so the switch does not depend on how the crate is partitioned.
pub fn set_umip(on: bool) {
    // A load first: on almost every switch the bit is already as wanted (no locked swap then).
    if UMIP_PRESENT.load(Ordering::Relaxed)
        && UMIP_ON.load(Ordering::Relaxed) != on
        && UMIP_ON.swap(on, Ordering::Relaxed) != on
    {
        // SAFETY: CPUID reports UMIP; it only makes those five instructions fault outside ring 0.
        unsafe { cpu::write_cr4(cpu::read_cr4() ^ (1 << 11)) };
    }
}

/// Remap the 8259 PICs away from the exception vectors (to 0x20..0x2f) and mask every line.
fn mask_legacy_pic() {
    use cpu::outb;
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 4);
    outb(0xa1, 2);
    outb(0x21, 1);
    outb(0xa1, 1);
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

static PCID_ENABLED: AtomicBool = AtomicBool::new(false);

/// True once CR4.PCIDE is set: CR3 values then carry a PCID and the no-flush bit (`mm::pcid`).
pub fn pcid_enabled() -> bool {
    PCID_ENABLED.load(Ordering::Relaxed)
}

/// Record the FXSAVE area the entry code saves the next guest's FPU state into.
pub fn set_fxsave_area(area: *mut u8) {
    // SAFETY: single CPU, called with no guest running; a plain store into the entry words.
    unsafe { (*ENTRY_TABLES.get()).words.fxsave_area = area as u64 };
}

/// Read the guest page-fault address register.
pub fn read_cr2() -> u64 {
    cpu::read_cr2()
}

/// Turn on SYSCALL: from ring 3 it enters `entry::syscall_entry` (through its alias) with IF, TF, DF, AC
/// and NT cleared; SYSRET is never used (the guest kernel returns to user mode with IRETQ).
pub fn enable_syscall() {
    use cpu::msr;
    let star = (u64::from(abi::layout::GUEST_USER_SS & !3) - 8) << 48 | u64::from(HV_CS) << 32;
    let fmask = (1 << 9) | (1 << 8) | (1 << 10) | (1 << 18) | (1 << 14) | (3 << 12);
    // SAFETY: these MSRs exist on every x86_64 CPU; LSTAR is the alias of the SYSCALL stub, mapped in every
    // address space; SCE only allows SYSCALL/SYSRET.
    unsafe {
        cpu::wrmsr(msr::STAR, star);
        cpu::wrmsr(msr::LSTAR, alias_of(&raw const entry::syscall_entry as u64));
        cpu::wrmsr(msr::FMASK, fmask);
        cpu::wrmsr(msr::EFER, cpu::rdmsr(msr::EFER) | 1);
    }
}

/// Install the running domain's direct system-call gate: `Some(handler)` makes `int 0x80` from ring 3 a
/// trap gate to `handler` in the guest kernel's ring-1 code segment (stack: TSS.RSP1); `None` restores the
/// hypervisor's DPL-0 stub (so `int 0x80` raises #GP).
pub fn set_direct_gate(handler: Option<u64>) {
    let v = usize::from(abi::traps::DIRECT_SYSCALL_VECTOR);
    let gate = match handler {
        Some(h) => tables::IdtGate::guest_trap_gate(h),
        None => {
            let stub =
                alias_of(&raw const entry::entry_stubs as u64) + (v * entry::STUB_SIZE) as u64;
            gate_for(v, stub)
        }
    };
    // SAFETY: single CPU, no guest running; one 16-byte store into the IDT (its writable image address).
    unsafe { (*ENTRY_TABLES.get()).idt[v] = gate };
}

/// Set TSS.RSP1, the stack the CPU loads when ring-3 code enters ring 1 through the direct gate.
pub fn set_rsp1(sp: u64) {
    // SAFETY: single CPU, no guest running; a plain store into the TSS (its writable image address).
    unsafe { (*ENTRY_TABLES.get()).tss.rsp[1] = sp };
}

/// A guest's segment state that lives in the CPU while it runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestSegments {
    /// DS, ES, FS, GS.
    pub selectors: cpu::DataSelectors,
    /// FS base, GS base, kernel GS base.
    pub bases: [u64; 3],
}

/// Read the running guest's segment state from the CPU.
pub fn save_segments() -> GuestSegments {
    use cpu::msr;
    // SAFETY: the base MSRs exist on every x86_64 CPU; reading them has no side effects.
    let bases = unsafe {
        [
            cpu::rdmsr(msr::FS_BASE),
            cpu::rdmsr(msr::GS_BASE),
            cpu::rdmsr(msr::KERNEL_GS_BASE),
        ]
    };
    GuestSegments {
        selectors: cpu::read_data_selectors(),
        bases,
    }
}

/// Load a guest's segment state into the CPU (selectors first: loading them clears the bases).
pub fn load_segments(s: &GuestSegments) {
    use cpu::msr;
    // SAFETY: the selectors were read from the CPU while this guest ran, so each is null or one of the
    // fixed GDT's data segments (the GDT never changes); the bases are canonical (checked by
    // set_segment_base, or read back from the CPU).
    unsafe {
        cpu::write_data_selectors(s.selectors);
        cpu::wrmsr(msr::FS_BASE, s.bases[0]);
        cpu::wrmsr(msr::GS_BASE, s.bases[1]);
        cpu::wrmsr(msr::KERNEL_GS_BASE, s.bases[2]);
    }
}

/// The FS and user GS bases in the CPU: what a guest that leaves the CPU may have changed itself (by
/// loading FS or GS). The kernel GS base needs no read: ring 1 cannot write it (no SWAPGS, no WRMSR),
/// so the CPU holds the vCPU's `gs_kernel` while its segments are loaded and not dirty.
pub fn user_segment_bases() -> [u64; 2] {
    use cpu::msr;
    // SAFETY: the base MSRs exist on every x86_64 CPU; reading them has no side effects.
    unsafe { [cpu::rdmsr(msr::FS_BASE), cpu::rdmsr(msr::GS_BASE)] }
}

/// Load guest segment state `next` over `cpu`, the state known to be in the CPU (read from it, or
/// loaded, for the guest that ran last): only what differs. Different selectors load everything (a
/// selector load clears the FS/GS base); equal ones name the same descriptors of the fixed GDT, so only
/// the base MSRs that differ are written.
#[inline(always)] // On every domain switch: the two states compared in registers, not through memory.
pub fn switch_segments(cpu: &GuestSegments, next: &GuestSegments) {
    use cpu::msr;
    if cpu.selectors != next.selectors {
        return load_segments(next);
    }
    for (i, m) in [msr::FS_BASE, msr::GS_BASE, msr::KERNEL_GS_BASE]
        .into_iter()
        .enumerate()
    {
        if cpu.bases[i] != next.bases[i] {
            // SAFETY: as in `load_segments`: canonical bases, MSRs present on every x86_64 CPU.
            unsafe { cpu::wrmsr(m, next.bases[i]) };
        }
    }
}

/// Load only the FS/GS base MSRs (after `set_segment_base` for the guest that is on the CPU).
pub fn load_segment_bases(bases: [u64; 3]) {
    use cpu::msr;
    // SAFETY: the bases are canonical (checked by set_segment_base); the MSRs exist on every x86_64 CPU.
    unsafe {
        cpu::wrmsr(msr::FS_BASE, bases[0]);
        cpu::wrmsr(msr::GS_BASE, bases[1]);
        cpu::wrmsr(msr::KERNEL_GS_BASE, bases[2]);
    }
}

/// Wait for an interrupt with interrupts enabled, then disable them again. The only place the hypervisor
/// runs with IF set; an interrupt here is handled by `entry.rs`'s ring-0 path and returns to this HLT's
/// successor.
pub fn idle_wait() {
    // SAFETY: STI's one-instruction shadow makes `sti; hlt` atomic (no wakeup is lost between them); the
    // ring-0 interrupt path saves every register and the FPU state and returns here. No `nostack`: the
    // interrupt frame is pushed on this stack, and the compiler keeps no data below RSP across the asm.
    unsafe { asm!("sti", "hlt", "cli") };
}

/// Raise a #DB in ring 0 (`int $1`), as a guest's held-back single-step would arrive on the first
/// instruction of an entry stub (XSA-260), and report whether the entry path dropped it *and* left the #DB
/// IST stack's frame area zeroed. For the `hv_selftest=ring0-db` test hook.
pub fn ring0_debug_selftest() -> bool {
    // SAFETY: vector 1's gate is the #DB stub on its IST stack; from ring 0 `common_entry` copies the frame
    // to the private stack, zeroes the IST copy and returns here with every register restored (no
    // `nostack`: IRETQ pops exactly what the CPU pushed, on the IST stack, not on this one).
    unsafe { asm!("int 1") };
    let top = layout::stack_top(usize::from(tables::ist::DB));
    let words = entry::FRAME_SIZE / 8;
    (1..=words as u64).all(|i| {
        // SAFETY: the IST stacks are mapped read-write in the hypervisor's address space (the alias is in
        // every address space); these are the frame's words just below the stack's top.
        unsafe { core::ptr::read_volatile((top - i * 8) as *const u64) == 0 }
    })
}
