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

/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE.
const CR4_PKE: u64 = 1 << 22;

/// Put back the state an hvm guest may have left in the CPU after turning CR4.OSXSAVE or CR4.PKE on (which
/// VMRUN does not switch, and which the hypervisor never uses itself): PKRU to 0, XCR0 to its reset value
/// (x87 only) and the AVX registers zeroed. Called before any other domain runs once a guest was seen with
/// CR4.OSXSAVE (it is crashed for it).
pub fn scrub_extended_state() {
    if cpu::cpuid(7, 0).ecx & (1 << 3) != 0 {
        let cr4 = cpu::read_cr4();
        // SAFETY: the CPU has PKU (checked), so CR4.PKE may be set; WRPKRU (ECX = EDX = 0) puts PKRU back
        // to its reset value, 0; then CR4 as it was (the hypervisor never uses protection keys).
        unsafe {
            cpu::write_cr4(cr4 | CR4_PKE);
            core::arch::asm!("wrpkru", in("eax") 0u32, in("ecx") 0u32, in("edx") 0u32, options(nostack));
            cpu::write_cr4(cr4);
        }
    }
    if cpu::cpuid(1, 0).ecx & (1 << 26) == 0 {
        return;
    }
    let supported = u64::from(cpu::cpuid(0xd, 0).eax);
    let cr4 = cpu::read_cr4();
    // SAFETY: the CPU has XSAVE (checked above), so CR4.OSXSAVE may be set; XCR0 gets x87|SSE|AVX as far as
    // supported (bit 0 always), VZEROALL clears the vector registers (the hypervisor's own XMM values are
    // declared clobbered by `clobber_abi`), then XCR0 = x87 and CR4 as it was. No memory is touched.
    unsafe {
        cpu::write_cr4(cr4 | CR4_OSXSAVE);
        let mask = (supported & 0x7) | 1;
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") 0u32, options(nostack));
        if mask & 4 != 0 {
            core::arch::asm!("vzeroall", clobber_abi("C"), options(nostack));
        }
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") 1u32, in("edx") 0u32, options(nostack));
        cpu::write_cr4(cr4);
    }
}
