//! x86_64 support: boot, entry/exit, descriptor tables, paging, serial, CPU instructions.

pub mod boot;
pub mod cpu;
pub mod entry;
pub mod layout;
pub mod paging;
mod runtime;
pub mod serial;
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
    let tss_alias = alias_of(core::ptr::addr_of!(tables.tss) as u64);
    tables.gdt = tables::gdt_entries(tss_alias);
    tables.tss.rsp = [layout::entry_stack_top(), 0, 0];
    let mut ist = [0u64; 7];
    for (k, slot) in ist.iter_mut().enumerate().take(layout::STACK_SLOTS - 1) {
        *slot = stack_top(k + 1);
    }
    tables.tss.ist = ist;
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
    mask_legacy_pic();
    features
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
