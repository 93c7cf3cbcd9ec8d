//! The GDT, TSS and IDT, and the few words the entry code loads: all in `.entry.data`, so that they are
//! part of the read-only entry region every address space maps at the same address.

use core::cell::UnsafeCell;
use core::mem::size_of;

use abi::layout::{FASTPATH_VECTOR, GUEST_KERNEL_CS, HYPERCALL_VECTOR};

/// The ring-0 measurement floor: `int` to this vector from the hypervisor returns at once.
pub const RING0_FLOOR_VECTOR: u8 = 0x84;
use static_assertions::const_assert_eq;

pub use crate::gdt::{GDT_LEN, HV_CS, HV_DS, TSS_SEL, gdt_entries};

/// IST slot numbers (1-based, as in the gate descriptor) for the vectors that must never run on a stack
/// the interrupted context chose.
pub mod ist {
    /// Double fault.
    pub const DF: u8 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Machine check.
    pub const MC: u8 = 3;
    /// Debug exception (a MOV SS/POP SS-deferred #DB may arrive before the first instruction of a handler).
    pub const DB: u8 = 4;
}

/// The 64-bit task-state segment (only stack pointers matter in long mode).
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    /// RSP0..RSP2: stacks loaded on a privilege change to ring 0..2.
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// IST1..IST7.
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// Offset of the I/O permission bitmap; pointing past the limit means "no bitmap": all port I/O from
    /// a guest (CPL > IOPL = 0) faults.
    pub iomap_base: u16,
}
const_assert_eq!(size_of::<Tss>(), crate::gdt::TSS_SIZE);

/// A 64-bit interrupt-gate descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IdtGate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}
const_assert_eq!(size_of::<IdtGate>(), 16);

impl IdtGate {
    const EMPTY: IdtGate = IdtGate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        _reserved: 0,
    };

    /// The direct system-call gate: a present DPL-3 *trap* gate (real IF stays set, so the hypervisor keeps
    /// preempting) to `handler` in the guest kernel's ring-1 code segment.
    pub const fn guest_trap_gate(handler: u64) -> IdtGate {
        IdtGate {
            offset_low: handler as u16,
            selector: GUEST_KERNEL_CS,
            ist: 0,
            type_attr: 0x80 | (3 << 5) | 0x0f,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }

    /// A present 64-bit interrupt gate (IF cleared on entry) to `handler` in the hypervisor code segment.
    pub const fn interrupt(handler: u64, dpl: u8, ist: u8) -> IdtGate {
        IdtGate {
            offset_low: handler as u16,
            selector: HV_CS,
            ist,
            type_attr: 0x80 | (dpl << 5) | 0x0e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            _reserved: 0,
        }
    }
}

/// Words the entry assembly loads with RIP-relative addressing (see `entry.rs`).
#[repr(C)]
pub struct EntryWords {
    /// The hypervisor's page-table root.
    pub hv_cr3: u64,
    /// Top of the hypervisor's private stack (reset on every entry from a guest).
    pub hv_stack_top: u64,
    /// Top of the private stack used to report a hypervisor fault.
    pub fatal_stack_top: u64,
    /// FXSAVE area of the vCPU that is running (hypervisor memory; written before every exit).
    pub fxsave_area: u64,
    /// MXCSR value installed for hypervisor code (all SSE exceptions masked).
    pub mxcsr: u32,
    _pad: u32,
    /// RSP at `common_entry` after an entry from a guest through TSS.RSP0 (or SYSCALL): the entry stack's
    /// top minus the frame the CPU and the stub pushed. Any other RSP with a guest CS is untrusted.
    pub rsp0_entry: u64,
    /// RSP right after the CPU's delivery of an entry from a guest through TSS.RSP0 (no stub: the entry
    /// stack's top minus the five words the CPU pushes), where `hypercall_entry`, which the hypercall
    /// gate points at directly, checks it.
    pub cpu_entry: u64,
    /// The same for each IST stack (IST1..IST4).
    pub ist_entry: [u64; 4],
    /// The alias address of the exit stub (`entry::exit_to_guest` jumps through this word instead of
    /// computing the alias on every exit).
    pub exit_stub: u64,
}

/// Everything in `.entry.data`. Page aligned; the IDT fills the first page exactly.
#[repr(C, align(4096))]
pub struct EntryTables {
    /// The IDT.
    pub idt: [IdtGate; 256],
    /// The GDT.
    pub gdt: [u64; GDT_LEN],
    /// The TSS.
    pub tss: Tss,
    /// Entry words.
    pub words: EntryWords,
}

/// Interior-mutable holder of [`EntryTables`]; the hypervisor runs on one CPU with interrupts disabled in
/// ring 0, so accesses never overlap.
pub struct EntryCell(UnsafeCell<EntryTables>);

// SAFETY: single CPU; the hypervisor never runs concurrently with itself (interrupts are off in ring 0),
// and guests can only read this memory (mapped read-only in their address spaces).
unsafe impl Sync for EntryCell {}

impl EntryCell {
    /// Raw pointer to the tables (image address, writable in the hypervisor's address space).
    pub fn get(&self) -> *mut EntryTables {
        self.0.get()
    }
}

/// The one instance, in the entry region.
#[unsafe(link_section = ".entry.data")]
pub static ENTRY_TABLES: EntryCell = EntryCell(UnsafeCell::new(EntryTables {
    idt: [IdtGate::EMPTY; 256],
    gdt: [0; GDT_LEN],
    tss: Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: size_of::<Tss>() as u16,
    },
    words: EntryWords {
        hv_cr3: 0,
        hv_stack_top: 0,
        fatal_stack_top: 0,
        fxsave_area: 0,
        mxcsr: 0x1f80,
        _pad: 0,
        rsp0_entry: 0,
        cpu_entry: 0,
        ist_entry: [0; 4],
        exit_stub: 0,
    },
}));

/// The gate for `vector`: DPL 1 for the hypercall gate (a ring-1 guest kernel may call it, ring-3 user code
/// may not), DPL 3 for `int3`/`into` (as Xen), DPL 0 elsewhere (software `int n` from a guest faults).
pub fn gate_for(vector: usize, stub: u64) -> IdtGate {
    let dpl = match vector {
        3 | 4 => 3,
        v if v == HYPERCALL_VECTOR as usize || v == FASTPATH_VECTOR as usize => 1,
        _ => 0,
    };
    let ist = match vector {
        1 => ist::DB,
        2 => ist::NMI,
        8 => ist::DF,
        18 => ist::MC,
        _ => 0,
    };
    IdtGate::interrupt(stub, dpl, ist)
}
