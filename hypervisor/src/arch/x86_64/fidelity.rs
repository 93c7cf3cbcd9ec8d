//! The boot-time CPU fidelity probe: does this CPU model keep ring-1 code out of ring 0 when it loads a
//! null SS? (QEMU 7.2's TCG does not: it derives CPL from SS's DPL, which a null SS sets to 0.)
//!
//! Before any domain exists, the hypervisor IRETQs to a few ring-1 instructions in its own address space
//! (`fidelity_probe_ring1` in `entry.rs`): load a null SS, read CR0, `int 0x82`. A faithful CPU raises
//! #GP at the CR0 read; the entry arrives on the entry stack like any guest entry and [`probe_trapped`]
//! ends the probe. On a CPU model that lets the read through, `int 0x82` is taken at CPL 0 without a stack
//! switch, `common_entry` sees a guest CS on an untrusted stack, and [`probe_ran_at_cpl0`] ends it. Either
//! way `fidelity_probe_resume` returns to [`run`]. While the probe runs, the entry path uses a private
//! stack and FXSAVE area of its own, so the boot code's stack is left intact.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::entry::{fidelity_probe_enter, fidelity_probe_resume, fidelity_probe_ring1};
use super::tables::ENTRY_TABLES;

/// What the probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fidelity {
    /// Not run yet.
    Unknown,
    /// The privileged instruction faulted in ring 1 (#GP): CPL and paging are as specified.
    Passed,
    /// Ring-1 code with a null SS executed a privileged instruction: it ran at CPL 0.
    NullSsGivesCpl0,
    /// The probe ended with an unexpected vector (reported, treated as not isolated).
    Unexpected(u8),
}

impl Fidelity {
    /// The status word of the isolation audit line.
    pub fn audit_word(self) -> &'static str {
        match self {
            Fidelity::Passed => "passed",
            Fidelity::NullSsGivesCpl0 => "FAILED (null SS gives CPL 0)",
            Fidelity::Unexpected(_) => "FAILED (unexpected probe result)",
            Fidelity::Unknown => "not probed",
        }
    }
}

const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct ProbeMem {
    /// Private stack the entry path uses while probing (`EntryWords::hv_stack_top`).
    hv_stack: [u8; STACK_SIZE],
    /// The ring-1 code's stack (a CPL-0 `int` pushes its frame here).
    ring1_stack: [u8; 4096],
    /// FXSAVE area for the entry path.
    fx: [u8; 512],
}

static mut PROBE_MEM: ProbeMem = ProbeMem {
    hv_stack: [0; STACK_SIZE],
    ring1_stack: [0; 4096],
    fx: [0; 512],
};
/// `fidelity_probe_enter`'s saved RSP.
static mut PROBE_CTX: u64 = 0;
static PROBING: AtomicBool = AtomicBool::new(false);
/// 0: unknown, 1: passed, 2: CPL 0, 3 + v: vector v.
static RESULT: AtomicU8 = AtomicU8::new(0);

const R_PASSED: u64 = 1;
const R_CPL0: u64 = 2;
const R_VECTOR: u64 = 3;

/// True while the probe runs (the entry path hands its entries here instead of to a domain).
pub fn probing() -> bool {
    PROBING.load(Ordering::Relaxed)
}

fn finish(value: u64) -> ! {
    // SAFETY: only called while probing, i.e. between `fidelity_probe_enter` saving PROBE_CTX and the
    // return it resumes; its stack (the boot stack) was not used by the entry path.
    unsafe { fidelity_probe_resume(&raw const PROBE_CTX, value) }
}

/// An entry with a trusted frame arrived while probing: #GP means the CPU kept the code in ring 1.
pub fn probe_trapped(vector: u64) -> ! {
    finish(if vector == 13 {
        R_PASSED
    } else {
        R_VECTOR + (vector & 0xff)
    })
}

/// An entry without a stack switch arrived while probing: the ring-1 code ran at CPL 0.
pub fn probe_ran_at_cpl0() -> ! {
    finish(R_CPL0)
}

/// Run the probe (boot, one CPU, interrupts off, before any domain exists) and remember its result.
pub fn run() -> Fidelity {
    let t = ENTRY_TABLES.get();
    // SAFETY: boot, single CPU, no guest: plain reads and writes of the entry words and the probe memory.
    let (saved_stack, saved_fx) = unsafe { ((*t).words.hv_stack_top, (*t).words.fxsave_area) };
    let mem = &raw mut PROBE_MEM;
    // SAFETY: as above; the addresses are in the hypervisor's identity-mapped image.
    unsafe {
        (*t).words.hv_stack_top = (&raw mut (*mem).hv_stack) as u64 + STACK_SIZE as u64;
        (*t).words.fxsave_area = (&raw mut (*mem).fx) as u64;
    }
    // SAFETY: only an address is taken.
    let ring1_sp = unsafe { (&raw mut (*mem).ring1_stack) as u64 } + 4096;
    PROBING.store(true, Ordering::SeqCst);
    // SAFETY: the ring-1 code is in the hypervisor's text, executable (supervisor) at CPL 1 in this address
    // space; every way out of it (a fault in ring 1, an entry without a stack switch, an unexpected
    // vector) reaches `finish`, which returns here with the callee-saved registers restored.
    let v = unsafe {
        fidelity_probe_enter(
            &raw const fidelity_probe_ring1 as u64,
            ring1_sp,
            &raw mut PROBE_CTX,
        )
    };
    PROBING.store(false, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe {
        (*t).words.hv_stack_top = saved_stack;
        (*t).words.fxsave_area = saved_fx;
    }
    let f = match v {
        R_PASSED => Fidelity::Passed,
        R_CPL0 => Fidelity::NullSsGivesCpl0,
        v => Fidelity::Unexpected((v - R_VECTOR) as u8),
    };
    RESULT.store(v.min(255) as u8, Ordering::Relaxed);
    f
}

/// The probe's result (for the isolation audit line).
pub fn status() -> Fidelity {
    match u64::from(RESULT.load(Ordering::Relaxed)) {
        0 => Fidelity::Unknown,
        R_PASSED => Fidelity::Passed,
        R_CPL0 => Fidelity::NullSsGivesCpl0,
        v => Fidelity::Unexpected((v - R_VECTOR) as u8),
    }
}
