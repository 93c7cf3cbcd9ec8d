//! The native backend's GDT, TSS and IDT (bare metal): the tables themselves, built from [`super::desc`]
//! and loaded once at boot; IDT gates and `TSS.rsp0` change later.

use core::cell::UnsafeCell;

use super::desc;
use crate::arch::x86_64::native::{self as cpu, TableRegister};

/// A table the CPU reads; the kernel writes it only with interrupts masked (one CPU).
#[repr(C, align(16))]
struct CpuTable<T>(UnsafeCell<T>);

// SAFETY: one CPU; writes happen at boot or with interrupts masked (set_trap_gates, set_kernel_stack), and
// Rust never hands out references into the tables.
unsafe impl<T> Sync for CpuTable<T> {}

/// TSS words: reserved, RSP0 (lo, hi), RSP1, RSP2, reserved, IST1..7, reserved, I/O map base (104 bytes).
const TSS_WORDS: usize = 26;
/// TSS limit (size − 1).
const TSS_LIMIT: u32 = (TSS_WORDS * 4 - 1) as u32;

static GDT: CpuTable<[u64; desc::GDT_SLOTS]> = CpuTable(UnsafeCell::new([0; desc::GDT_SLOTS]));
static TSS: CpuTable<[u32; TSS_WORDS]> = CpuTable(UnsafeCell::new([0; TSS_WORDS]));
static IDT: CpuTable<[[u64; 2]; 256]> = CpuTable(UnsafeCell::new([[0; 2]; 256]));

/// Size of each interrupt-stack-table stack.
const IST_STACK_SIZE: usize = 16 * 1024;
/// The double fault's and the NMI's stacks (TSS IST slots 1 and 2, `desc::ist_of`), used by the CPU only.
static IST_STACKS: CpuTable<[[u8; IST_STACK_SIZE]; 2]> =
    CpuTable(UnsafeCell::new([[0; IST_STACK_SIZE]; 2]));

/// Build and load the GDT (reloading the segment registers) and the TSS, and load the (empty) IDT.
pub fn install() {
    let tss = TSS.0.get();
    // SAFETY: boot, interrupts masked, nothing else uses the tables yet; the I/O map base (bytes 102..104)
    // at the TSS's size means "no I/O bitmap".
    unsafe {
        (*tss)[TSS_WORDS - 1] = (TSS_WORDS as u32 * 4) << 16;
        // IST n is at byte 36 + 8 (n − 1): words 9 + 2 (n − 1) and the next.
        for (slot, n) in [desc::DOUBLE_FAULT_IST, desc::NMI_IST]
            .into_iter()
            .enumerate()
        {
            let top = IST_STACKS.0.get() as u64 + ((slot + 1) * IST_STACK_SIZE) as u64;
            let w = 9 + 2 * (n as usize - 1);
            (*tss)[w] = top as u32;
            (*tss)[w + 1] = (top >> 32) as u32;
        }
        *GDT.0.get() = desc::gdt(tss as u64, TSS_LIMIT);
    }
    let gdtr = TableRegister {
        limit: (desc::GDT_SLOTS * 8 - 1) as u16,
        base: GDT.0.get() as u64,
    };
    let idtr = TableRegister {
        limit: (256 * 16 - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the tables are statics (in place for good) built above with the selectors used here; the
    // IDT has no present gate yet and interrupts are masked until gates are installed.
    unsafe {
        cpu::load_gdt(&gdtr, desc::KERNEL_CS, desc::KERNEL_SS);
        cpu::ltr(desc::TSS_SEL);
        cpu::lidt(&idtr);
    }
}

/// The GDT's and the IDT's addresses: what SGDT and SIDT show this kernel on its own machine.
pub fn bases() -> (u64, u64) {
    (GDT.0.get() as u64, IDT.0.get() as u64)
}

/// Install (or replace) the gate of `vector` (the double fault's and the NMI's on their own stacks).
pub fn set_gate(vector: u8, handler: u64, dpl: u8, interrupt: bool) {
    let ist = desc::ist_of(vector);
    let was = cpu::rflags() & (1 << 9) != 0;
    cpu::cli();
    // SAFETY: interrupts are masked; the IDT is a static the CPU reads, written whole-gate at a time.
    unsafe { (*IDT.0.get())[vector as usize] = desc::idt_gate(handler, dpl, interrupt, ist) };
    if was {
        cpu::sti();
    }
}

/// `TSS.rsp0`: the stack an interrupt or exception from ring 3 switches to.
pub fn set_rsp0(rsp: u64) {
    // SAFETY: one CPU; the CPU reads RSP0 only on a ring-3 → ring-0 transition, which cannot happen while
    // the kernel runs this.
    unsafe {
        (*TSS.0.get())[1] = rsp as u32;
        (*TSS.0.get())[2] = (rsp >> 32) as u32;
    }
}
