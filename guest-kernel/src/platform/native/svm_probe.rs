//! `svm-probe=WHAT`, a native-boot command for the hvm domain kind's hostile tests (the kernel does not
//! know it is virtualized; these are what an unmodified ring-0 kernel could try against a hypervisor that
//! uses AMD SVM): `insns` executes VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT and INVLPGA, each of
//! which must raise #UD at the instruction (caught here, resumed after it), and reports what CPUID shows;
//! `npf` reads a physical address beyond the machine's memory; `triple` triple-faults. The last two end
//! the kernel's run one way or another (under hvm: the hypervisor crashes the domain).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86_64::svm_probes as p;
use crate::println;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};

/// The physical address `npf` reads: just below 1 GiB (the native direct map's end), beyond any memory a
/// test machine or hvm domain has.
pub const NPF_ADDRESS: u64 = 0x3ff0_0000;

static EXPECT_RIP: AtomicU64 = AtomicU64::new(0);
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);

fn expected_ud(f: &mut TrapFrame, _ctx: &TrapCtx) -> Disposition {
    if f.rip != EXPECT_RIP.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    HITS.fetch_add(1, Ordering::SeqCst);
    f.rip = RESUME_RIP.load(Ordering::SeqCst);
    Disposition::Resume
}

/// Run the probe the command line names, if it names one; the result is the poweroff code.
pub fn run(cmdline: &str) -> Option<u32> {
    let what = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("svm-probe="))?;
    Some(match what {
        "insns" => insns(),
        "npf" => {
            let va = super::direct_va(NPF_ADDRESS).unwrap_or(0);
            println!("svm-probe: reading physical {NPF_ADDRESS:#x}, beyond this machine's memory");
            // SAFETY: the native direct map maps physical 0..1 GiB; the load may hit no memory at all, which
            // is the point (natively it reads what the bus returns).
            let v = unsafe { p::guest_read_u64(va) };
            println!("svm-probe: read {v:#x}: not stopped");
            1
        }
        "triple" => {
            println!("svm-probe: triple fault next");
            // SAFETY: deliberately ends this kernel's run.
            unsafe { p::guest_triple_fault() }
        }
        _ => {
            println!("svm-probe: unknown probe '{what}' (insns, npf, triple)");
            2
        }
    })
}

fn insns() -> u32 {
    let a = |x: *const u8| x as u64;
    type Probe = unsafe extern "C" fn();
    let probes: [(&str, Probe, u64, u64); 8] = [
        (
            "vmrun",
            p::guest_svm_probe_vmrun,
            a(&raw const p::guest_svm_probe_vmrun_insn),
            a(&raw const p::guest_svm_probe_vmrun_next),
        ),
        (
            "vmmcall",
            p::guest_svm_probe_vmmcall,
            a(&raw const p::guest_svm_probe_vmmcall_insn),
            a(&raw const p::guest_svm_probe_vmmcall_next),
        ),
        (
            "vmload",
            p::guest_svm_probe_vmload,
            a(&raw const p::guest_svm_probe_vmload_insn),
            a(&raw const p::guest_svm_probe_vmload_next),
        ),
        (
            "vmsave",
            p::guest_svm_probe_vmsave,
            a(&raw const p::guest_svm_probe_vmsave_insn),
            a(&raw const p::guest_svm_probe_vmsave_next),
        ),
        (
            "stgi",
            p::guest_svm_probe_stgi,
            a(&raw const p::guest_svm_probe_stgi_insn),
            a(&raw const p::guest_svm_probe_stgi_next),
        ),
        (
            "clgi",
            p::guest_svm_probe_clgi,
            a(&raw const p::guest_svm_probe_clgi_insn),
            a(&raw const p::guest_svm_probe_clgi_next),
        ),
        (
            "skinit",
            p::guest_svm_probe_skinit,
            a(&raw const p::guest_svm_probe_skinit_insn),
            a(&raw const p::guest_svm_probe_skinit_next),
        ),
        (
            "invlpga",
            p::guest_svm_probe_invlpga,
            a(&raw const p::guest_svm_probe_invlpga_insn),
            a(&raw const p::guest_svm_probe_invlpga_next),
        ),
    ];
    let mut refused = 0;
    for (name, probe, insn, next) in probes {
        let _g = HANDLERS.scoped(6, expected_ud);
        EXPECT_RIP.store(insn, Ordering::SeqCst);
        RESUME_RIP.store(next, Ordering::SeqCst);
        let before = HITS.load(Ordering::SeqCst);
        // SAFETY: the instruction raises #UD (caught by the handler above, which resumes after it) or, were
        // it executed, works on RAX = 0 and returns; the probe clobbers only RAX and RCX (caller-saved).
        unsafe { probe() };
        if HITS.load(Ordering::SeqCst) == before + 1 {
            println!("svm-probe: {name}: #UD at the instruction");
            refused += 1;
        } else {
            println!("svm-probe: {name}: NOT refused");
        }
    }
    let id = |leaf: u32| core::arch::x86_64::__cpuid_count(leaf, 0);
    let hv_bit = id(1).ecx >> 31 & 1;
    let sig = id(0x4000_0000);
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&sig.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&sig.ecx.to_le_bytes());
    s[8..].copy_from_slice(&sig.edx.to_le_bytes());
    let svm = id(0x8000_0001).ecx >> 2 & 1;
    println!(
        "svm-probe: cpuid: hypervisor bit {hv_bit}, leaf 0x40000000 signature '{}', SVM bit {svm}",
        core::str::from_utf8(&s).unwrap_or("?").trim_matches('\0')
    );
    println!("svm-probe: {refused} of 8 SVM instructions refused with #UD");
    u32::from(refused != 8)
}
