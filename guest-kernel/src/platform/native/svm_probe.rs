//! `svm-probe=WHAT`, a native-boot command for the hvm domain kind's hostile tests (the kernel does not
//! know it is virtualized; these are what an unmodified ring-0 kernel could try against a hypervisor that
//! uses AMD SVM): `insns` executes VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT and INVLPGA, each of
//! which must raise #UD at the instruction (caught here, resumed after it), and reports what CPUID shows;
//! `devices` writes and reads garbage on every port of the emulated PC's devices (and random others), then
//! programs the PICs and the UART again and goes on; `xsave` turns CR4.OSXSAVE and AVX on although CPUID
//! under hvm does not offer them, `pke` likewise protection keys; `npf` reads a physical address beyond the machine's memory; `triple` triple-faults. The last two end
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
        "devices" => devices(),
        "npf" => {
            let va = super::direct_va(NPF_ADDRESS).unwrap_or(0);
            println!("svm-probe: reading physical {NPF_ADDRESS:#x}, beyond this machine's memory");
            // SAFETY: the native direct map maps physical 0..1 GiB; the load may hit no memory at all, which
            // is the point (natively it reads what the bus returns).
            let v = unsafe { p::guest_read_u64(va) };
            println!("svm-probe: read {v:#x}: not stopped");
            1
        }
        "xsave" => {
            println!("svm-probe: turning CR4.OSXSAVE and AVX on although CPUID may not offer them");
            // SAFETY: needs a CPU with XSAVE and AVX (else #UD, reported by the trap code); changes only CR4,
            // XCR0 and YMM0, none of which this kernel relies on (it saves FPU state with FXSAVE).
            let xcr0 = unsafe { p::guest_enable_avx() };
            println!("svm-probe: XCR0 = {xcr0:#x}: not stopped");
            0
        }
        "pke" => {
            println!(
                "svm-probe: turning CR4.PKE on and writing PKRU although CPUID may not offer them"
            );
            // SAFETY: needs a CPU with PKU (else #GP, reported by the trap code); changes only CR4 and PKRU,
            // and PKRU 0x55555554 still lets this kernel (supervisor accesses, key 0) read and write.
            let pkru = unsafe { p::guest_enable_pke() };
            println!("svm-probe: PKRU = {pkru:#x}: not stopped");
            0
        }
        "triple" => {
            println!("svm-probe: triple fault next");
            // SAFETY: deliberately ends this kernel's run.
            unsafe { p::guest_triple_fault() }
        }
        _ => {
            println!("svm-probe: unknown probe '{what}' (insns, devices, xsave, pke, npf, triple)");
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

/// Garbage port accesses `devices` makes.
const GARBAGE_ACCESSES: u32 = 20_000;

/// The ports of the emulated devices (PICs, PIT and port 0x61, CMOS RTC, COM1 but its data register, whose
/// bytes would reach the console): isa-debug-exit (0xf4) is left alone, it would end the run.
const DEVICE_PORTS: [u16; 18] = [
    0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, 0x3f9, 0x3fa, 0x3fb, 0x3fc,
    0x3fd, 0x3fe, 0x3ff,
];

fn devices() -> u32 {
    use super::pic_pit::{IRQ_BASE, PIC1_DATA, PIC2_DATA, pic_init_sequence};
    use crate::arch::x86_64::native::{cli, inb, outb, sti};
    let masks = (inb(PIC1_DATA), inb(PIC2_DATA));
    cli();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..GARBAGE_ACCESSES {
        let r = next();
        let port = if r & 7 == 0 {
            // Any port but the debug-exit device and COM1's data register.
            match (r >> 8) as u16 {
                0xf4..=0xf7 | 0x3f8 => 0x80,
                p => p,
            }
        } else {
            DEVICE_PORTS[(r >> 3) as usize % DEVICE_PORTS.len()]
        };
        if (r >> 24) & 3 == 0 {
            let _ = inb(port);
        } else {
            outb(port, (r >> 32) as u8);
        }
    }
    // Put back what the kernel relies on: the PICs at their vectors with its masks, the UART 8N1.
    for (port, v) in pic_init_sequence(IRQ_BASE) {
        outb(port, v);
    }
    outb(PIC1_DATA, masks.0);
    outb(PIC2_DATA, masks.1);
    for (port, v) in super::uart::init_sequence(0x3f8, 1) {
        outb(port, v);
    }
    for (port, v) in super::uart::rx_interrupt_sequence(0x3f8) {
        outb(port, v);
    }
    sti();
    println!(
        "svm-probe: {GARBAGE_ACCESSES} garbage port accesses survived; devices programmed again"
    );
    0
}
