//! AMD SVM on this CPU: detection, enabling (EFER.SVME, VM_HSAVE_PA), the shared I/O and MSR permission
//! maps, and the host's VMSAVE area. The world switch itself is `entry::svm_run`.

use core::sync::atomic::{AtomicBool, Ordering};

use super::cpu::{self, msr};
use crate::hvm::vmcb::{IOPM_SIZE, MSRPM_SIZE, efer, fill_msrpm};

/// VM_CR: bit 4 (SVMDIS) set means the firmware disabled SVM.
const MSR_VM_CR: u32 = 0xc001_0114;
/// VM_HSAVE_PA: where VMRUN saves the host's state.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// What the CPU offers.
#[derive(Clone, Copy, Debug)]
pub struct SvmCaps {
    /// Number of ASIDs (CPUID 0x8000000A EBX).
    pub asids: u32,
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);
#[repr(C, align(4096))]
struct Iopm([u8; IOPM_SIZE]);
#[repr(C, align(4096))]
struct Msrpm([u8; MSRPM_SIZE]);

/// The host save area VMRUN writes (never read by software).
static mut HSAVE: Page = Page([0; 4096]);
/// The host's VMSAVE area (FS, GS, TR, LDTR, KernelGsBase, STAR, LSTAR, CSTAR, SFMASK, SYSENTER).
static mut HOST_SAVE: Page = Page([0; 4096]);
/// Every port intercepted, for every hvm guest (read only by the CPU).
static IOPM: Iopm = Iopm([0xff; IOPM_SIZE]);
/// Every MSR intercepted but the guest-owned ones (`vmcb::PASSTHROUGH_MSRS`); filled by [`enable`].
static mut MSRPM: Msrpm = Msrpm([0xff; MSRPM_SIZE]);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// SVM with nested paging, if this CPU has it and the firmware left it enabled.
pub fn detect() -> Option<SvmCaps> {
    if cpu::cpuid(0x8000_0000, 0).eax < 0x8000_000a {
        return None;
    }
    if cpu::cpuid(0x8000_0001, 0).ecx & crate::hvm::cpuid::EXT1_ECX_SVM == 0 {
        return None;
    }
    let leaf = cpu::cpuid(0x8000_000a, 0);
    if leaf.edx & 1 == 0 {
        return None;
    }
    // SAFETY: VM_CR exists on every CPU with SVM (checked above).
    if unsafe { cpu::rdmsr(MSR_VM_CR) } & (1 << 4) != 0 {
        return None;
    }
    Some(SvmCaps { asids: leaf.ebx })
}

/// Turn SVM on (once): EFER.SVME, VM_HSAVE_PA, the MSR permission map. The caller checked [`detect`].
pub fn enable() {
    if ENABLED.swap(true, Ordering::Relaxed) {
        return;
    }
    let map = &raw mut MSRPM;
    // SAFETY: single CPU at boot, no guest running; the only reference ever made to MSRPM (the CPU reads
    // it through its physical address afterwards).
    fill_msrpm(unsafe { &mut (*map).0 });
    // SAFETY: the CPU has SVM (`detect`); HSAVE is a page-aligned hypervisor page, identity mapped, that
    // nothing else uses.
    unsafe {
        cpu::wrmsr(msr::EFER, cpu::rdmsr(msr::EFER) | efer::SVME);
        cpu::wrmsr(MSR_VM_HSAVE_PA, &raw const HSAVE as u64);
    }
}

/// Machine address of the shared I/O permission map.
pub fn iopm_pa() -> u64 {
    &raw const IOPM as u64
}

/// Machine address of the shared MSR permission map.
pub fn msrpm_pa() -> u64 {
    &raw const MSRPM as u64
}

/// Machine address of the host's VMSAVE area.
pub fn host_save_pa() -> u64 {
    &raw const HOST_SAVE as u64
}
