//! The AMD SVM virtual-machine control block (VMCB): its layout, pinned field by field to the offsets of
//! the AMD64 APM vol. 2, appendix B, and the builder of an hvm vCPU's first state (the multiboot hand-over:
//! 32-bit protected mode, paging off).
#![forbid(unsafe_code)]

use core::mem::{offset_of, size_of};

use static_assertions::const_assert_eq;

/// A segment register in the VMCB's state-save area (APM table B-2): the attribute word packs descriptor
/// bits 40..47 (type, S, DPL, P) into bits 0..7 and bits 52..55 (AVL, L, D/B, G) into bits 8..11.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Packed attributes.
    pub attrib: u16,
    /// Limit (bytes, already expanded by G).
    pub limit: u32,
    /// Base.
    pub base: u64,
}
const_assert_eq!(size_of::<Segment>(), 16);

/// Attributes of a flat 32-bit ring-0 code segment: execute/read, accessed, S, P, D, G.
pub const ATTR_CODE32: u16 = 0xc9b;
/// Attributes of a flat ring-0 data segment: read/write, accessed, S, P, B, G.
pub const ATTR_DATA: u16 = 0xc93;
/// A busy 32-bit TSS (the reset state of TR).
pub const ATTR_TSS_BUSY: u16 = 0x08b;
/// An LDT descriptor (the reset state of LDTR).
pub const ATTR_LDT: u16 = 0x082;

/// The VMCB: one 4 KiB page, control area at 0, state-save area at 0x400.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Vmcb {
    /// CR0..15 read intercepts (bits 0..15), write intercepts (bits 16..31).
    pub intercept_cr: u32,
    /// DR0..15 read (bits 0..15) and write (16..31) intercepts.
    pub intercept_dr: u32,
    /// Exception intercepts, one bit per vector.
    pub intercept_exceptions: u32,
    /// Intercept vector 3 ([`misc1`] bits).
    pub intercept_misc1: u32,
    /// Intercept vector 4 ([`misc2`] bits).
    pub intercept_misc2: u32,
    /// Intercept vector 5 (INVLPGB, ...): unused.
    pub intercept_misc3: u32,
    _r0: [u8; 0x03c - 0x018],
    /// PAUSE filter threshold.
    pub pause_filter_threshold: u16,
    /// PAUSE filter count.
    pub pause_filter_count: u16,
    /// Physical address of the I/O permission map (12 KiB).
    pub iopm_base_pa: u64,
    /// Physical address of the MSR permission map (8 KiB).
    pub msrpm_base_pa: u64,
    /// Added to the TSC the guest reads.
    pub tsc_offset: u64,
    /// Guest address-space id (non-zero).
    pub asid: u32,
    /// TLB control (1: flush everything on VMRUN).
    pub tlb_control: u8,
    _r1: [u8; 3],
    /// V_TPR (7:0), V_IRQ (8), V_INTR_PRIO (19:16), V_IGN_TPR (20), V_INTR_MASKING (24), V_INTR_VECTOR (39:32).
    pub vintr: u64,
    /// Interrupt shadow (bit 0), guest interrupt mask (bit 1).
    pub interrupt_shadow: u64,
    /// Why the guest exited (low 32 bits meaningful for VMEXIT_INVALID under TCG).
    pub exitcode: u64,
    /// Exit information 1.
    pub exitinfo1: u64,
    /// Exit information 2.
    pub exitinfo2: u64,
    /// An event whose delivery the exit interrupted ([`super::exit::EventInfo`] format).
    pub exitintinfo: u64,
    /// Nested paging enable (bit 0).
    pub np_control: u64,
    /// AVIC APIC base: unused.
    pub avic_apic_bar: u64,
    /// GHCB physical address: unused.
    pub ghcb_pa: u64,
    /// Event to inject on the next VMRUN.
    pub eventinj: u64,
    /// Nested page-table root (the guest-physical → machine tables).
    pub n_cr3: u64,
    /// LBR virtualization enable: unused.
    pub lbr_virt: u64,
    /// VMCB clean bits: always 0 (nothing cached).
    pub clean_bits: u32,
    _r2: u32,
    /// Next RIP (not saved by QEMU's TCG).
    pub next_rip: u64,
    /// Number of instruction bytes fetched (decode assists; not under TCG).
    pub insn_len: u8,
    /// Instruction bytes.
    pub insn_bytes: [u8; 15],
    _r3: [u8; 0x400 - 0x0e0],
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// GDTR (base and limit only).
    pub gdtr: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// IDTR (base and limit only).
    pub idtr: Segment,
    /// TR.
    pub tr: Segment,
    _r4: [u8; 0x4cb - 0x4a0],
    /// Current privilege level.
    pub cpl: u8,
    _r5: [u8; 4],
    /// EFER (SVME must be set for VMRUN).
    pub efer: u64,
    _r6: [u8; 0x548 - 0x4d8],
    /// CR4.
    pub cr4: u64,
    /// CR3.
    pub cr3: u64,
    /// CR0.
    pub cr0: u64,
    /// DR7.
    pub dr7: u64,
    /// DR6.
    pub dr6: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP.
    pub rip: u64,
    _r7: [u8; 0x5d8 - 0x580],
    /// RSP.
    pub rsp: u64,
    _r8: [u8; 0x5f8 - 0x5e0],
    /// RAX.
    pub rax: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KernelGsBase.
    pub kernel_gs_base: u64,
    /// SYSENTER_CS.
    pub sysenter_cs: u64,
    /// SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// CR2.
    pub cr2: u64,
    _r9: [u8; 0x668 - 0x648],
    /// The guest's PAT under nested paging.
    pub g_pat: u64,
    /// DBGCTL.
    pub dbgctl: u64,
    _r10: [u8; 0x1000 - 0x678],
}

// The offsets of APM vol. 2, appendix B (tables B-1 and B-2).
const_assert_eq!(size_of::<Vmcb>(), 4096);
const_assert_eq!(offset_of!(Vmcb, intercept_misc1), 0x00c);
const_assert_eq!(offset_of!(Vmcb, intercept_misc2), 0x010);
const_assert_eq!(offset_of!(Vmcb, pause_filter_threshold), 0x03c);
const_assert_eq!(offset_of!(Vmcb, iopm_base_pa), 0x040);
const_assert_eq!(offset_of!(Vmcb, msrpm_base_pa), 0x048);
const_assert_eq!(offset_of!(Vmcb, tsc_offset), 0x050);
const_assert_eq!(offset_of!(Vmcb, asid), 0x058);
const_assert_eq!(offset_of!(Vmcb, tlb_control), 0x05c);
const_assert_eq!(offset_of!(Vmcb, vintr), 0x060);
const_assert_eq!(offset_of!(Vmcb, interrupt_shadow), 0x068);
const_assert_eq!(offset_of!(Vmcb, exitcode), 0x070);
const_assert_eq!(offset_of!(Vmcb, exitinfo1), 0x078);
const_assert_eq!(offset_of!(Vmcb, exitinfo2), 0x080);
const_assert_eq!(offset_of!(Vmcb, exitintinfo), 0x088);
const_assert_eq!(offset_of!(Vmcb, np_control), 0x090);
const_assert_eq!(offset_of!(Vmcb, eventinj), 0x0a8);
const_assert_eq!(offset_of!(Vmcb, n_cr3), 0x0b0);
const_assert_eq!(offset_of!(Vmcb, clean_bits), 0x0c0);
const_assert_eq!(offset_of!(Vmcb, next_rip), 0x0c8);
const_assert_eq!(offset_of!(Vmcb, insn_len), 0x0d0);
const_assert_eq!(offset_of!(Vmcb, es), 0x400);
const_assert_eq!(offset_of!(Vmcb, cs), 0x410);
const_assert_eq!(offset_of!(Vmcb, ss), 0x420);
const_assert_eq!(offset_of!(Vmcb, ds), 0x430);
const_assert_eq!(offset_of!(Vmcb, fs), 0x440);
const_assert_eq!(offset_of!(Vmcb, gs), 0x450);
const_assert_eq!(offset_of!(Vmcb, gdtr), 0x460);
const_assert_eq!(offset_of!(Vmcb, ldtr), 0x470);
const_assert_eq!(offset_of!(Vmcb, idtr), 0x480);
const_assert_eq!(offset_of!(Vmcb, tr), 0x490);
const_assert_eq!(offset_of!(Vmcb, cpl), 0x4cb);
const_assert_eq!(offset_of!(Vmcb, efer), 0x4d0);
const_assert_eq!(offset_of!(Vmcb, cr4), 0x548);
const_assert_eq!(offset_of!(Vmcb, cr3), 0x550);
const_assert_eq!(offset_of!(Vmcb, cr0), 0x558);
const_assert_eq!(offset_of!(Vmcb, dr7), 0x560);
const_assert_eq!(offset_of!(Vmcb, dr6), 0x568);
const_assert_eq!(offset_of!(Vmcb, rflags), 0x570);
const_assert_eq!(offset_of!(Vmcb, rip), 0x578);
const_assert_eq!(offset_of!(Vmcb, rsp), 0x5d8);
const_assert_eq!(offset_of!(Vmcb, rax), 0x5f8);
const_assert_eq!(offset_of!(Vmcb, star), 0x600);
const_assert_eq!(offset_of!(Vmcb, lstar), 0x608);
const_assert_eq!(offset_of!(Vmcb, cstar), 0x610);
const_assert_eq!(offset_of!(Vmcb, sfmask), 0x618);
const_assert_eq!(offset_of!(Vmcb, kernel_gs_base), 0x620);
const_assert_eq!(offset_of!(Vmcb, sysenter_cs), 0x628);
const_assert_eq!(offset_of!(Vmcb, sysenter_eip), 0x638);
const_assert_eq!(offset_of!(Vmcb, cr2), 0x640);
const_assert_eq!(offset_of!(Vmcb, g_pat), 0x668);

/// Intercept vector 3 (VMCB offset 0x00c).
pub mod misc1 {
    /// Physical maskable interrupt.
    pub const INTR: u32 = 1 << 0;
    /// Physical NMI.
    pub const NMI: u32 = 1 << 1;
    /// SMI.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// A virtual interrupt (V_IRQ) became deliverable.
    pub const VINTR: u32 = 1 << 4;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// INVLPGA.
    pub const INVLPGA: u32 = 1 << 26;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept vector 4 (VMCB offset 0x010).
pub mod misc2 {
    /// VMRUN (VMRUN refuses a VMCB without it).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT.
    pub const MWAIT: u32 = 1 << 11;
    /// MWAIT (conditional).
    pub const MWAIT_COND: u32 = 1 << 12;
}

/// `vintr` bits.
pub mod vintr {
    /// A virtual interrupt is pending.
    pub const V_IRQ: u64 = 1 << 8;
    /// Priority of the virtual interrupt (bits 19:16; 15 = above any TPR).
    pub const V_INTR_PRIO_MAX: u64 = 0xf << 16;
    /// Ignore the virtual TPR for V_IRQ.
    pub const V_IGN_TPR: u64 = 1 << 20;
    /// Guest RFLAGS.IF masks only virtual interrupts; physical ones follow the host's IF.
    pub const V_INTR_MASKING: u64 = 1 << 24;
    /// Shift of the V_INTR_VECTOR field.
    pub const VECTOR_SHIFT: u32 = 32;
}

/// EFER bits.
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// SVM enable.
    pub const SVME: u64 = 1 << 12;
    /// Fast FXSAVE/FXRSTOR.
    pub const FFXSR: u64 = 1 << 14;
}

/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// The value the multiboot entry finds in EAX.
pub const MULTIBOOT_MAGIC: u64 = 0x2bad_b002;
/// The power-on PAT.
pub const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;

/// Everything the first VMCB of an hvm vCPU depends on.
#[derive(Clone, Copy, Debug)]
pub struct InitialState {
    /// The 32-bit multiboot entry point.
    pub entry: u32,
    /// Guest-physical address of the multiboot information (EBX; lives in the GPRs, not the VMCB).
    pub info: u32,
    /// Address-space id (non-zero).
    pub asid: u32,
    /// Machine address of the nested page-table root.
    pub n_cr3: u64,
    /// Machine address of the I/O permission map.
    pub iopm_pa: u64,
    /// Machine address of the MSR permission map.
    pub msrpm_pa: u64,
}

/// The exceptions the hypervisor watches: only #MC (a machine check belongs to the host).
pub const EXCEPTION_INTERCEPTS: u32 = 1 << 18;

impl Vmcb {
    /// An all-zero VMCB.
    pub const fn zeroed() -> Vmcb {
        Vmcb {
            intercept_cr: 0,
            intercept_dr: 0,
            intercept_exceptions: 0,
            intercept_misc1: 0,
            intercept_misc2: 0,
            intercept_misc3: 0,
            _r0: [0; 0x03c - 0x018],
            pause_filter_threshold: 0,
            pause_filter_count: 0,
            iopm_base_pa: 0,
            msrpm_base_pa: 0,
            tsc_offset: 0,
            asid: 0,
            tlb_control: 0,
            _r1: [0; 3],
            vintr: 0,
            interrupt_shadow: 0,
            exitcode: 0,
            exitinfo1: 0,
            exitinfo2: 0,
            exitintinfo: 0,
            np_control: 0,
            avic_apic_bar: 0,
            ghcb_pa: 0,
            eventinj: 0,
            n_cr3: 0,
            lbr_virt: 0,
            clean_bits: 0,
            _r2: 0,
            next_rip: 0,
            insn_len: 0,
            insn_bytes: [0; 15],
            _r3: [0; 0x400 - 0x0e0],
            es: SEG0,
            cs: SEG0,
            ss: SEG0,
            ds: SEG0,
            fs: SEG0,
            gs: SEG0,
            gdtr: SEG0,
            ldtr: SEG0,
            idtr: SEG0,
            tr: SEG0,
            _r4: [0; 0x4cb - 0x4a0],
            cpl: 0,
            _r5: [0; 4],
            efer: 0,
            _r6: [0; 0x548 - 0x4d8],
            cr4: 0,
            cr3: 0,
            cr0: 0,
            dr7: 0,
            dr6: 0,
            rflags: 0,
            rip: 0,
            _r7: [0; 0x5d8 - 0x580],
            rsp: 0,
            _r8: [0; 0x5f8 - 0x5e0],
            rax: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            cr2: 0,
            _r9: [0; 0x668 - 0x648],
            g_pat: 0,
            dbgctl: 0,
            _r10: [0; 0x1000 - 0x678],
        }
    }

    /// The state QEMU's multiboot loader leaves a kernel in, plus the hypervisor's controls: every
    /// intercept the isolation needs, nested paging, V_INTR_MASKING.
    pub fn initial(s: &InitialState) -> Vmcb {
        let mut v = Vmcb::zeroed();
        v.intercept_exceptions = EXCEPTION_INTERCEPTS;
        v.intercept_misc1 = misc1::INTR
            | misc1::NMI
            | misc1::SMI
            | misc1::INIT
            | misc1::CPUID
            | misc1::INVD
            | misc1::HLT
            | misc1::INVLPGA
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN;
        v.intercept_misc2 = misc2::VMRUN
            | misc2::VMMCALL
            | misc2::VMLOAD
            | misc2::VMSAVE
            | misc2::STGI
            | misc2::CLGI
            | misc2::SKINIT
            | misc2::MONITOR
            | misc2::MWAIT
            | misc2::MWAIT_COND;
        v.iopm_base_pa = s.iopm_pa;
        v.msrpm_base_pa = s.msrpm_pa;
        v.asid = s.asid;
        v.tlb_control = 1;
        v.vintr = vintr::V_INTR_MASKING;
        v.np_control = 1;
        v.n_cr3 = s.n_cr3;
        let flat = |selector, attrib| Segment {
            selector,
            attrib,
            limit: 0xffff_ffff,
            base: 0,
        };
        v.cs = flat(0x08, ATTR_CODE32);
        for seg in [&mut v.ds, &mut v.es, &mut v.ss, &mut v.fs, &mut v.gs] {
            *seg = flat(0x10, ATTR_DATA);
        }
        v.gdtr = Segment {
            limit: 0xffff,
            ..SEG0
        };
        v.idtr = Segment {
            limit: 0xffff,
            ..SEG0
        };
        v.ldtr = Segment {
            attrib: ATTR_LDT,
            limit: 0xffff,
            ..SEG0
        };
        v.tr = Segment {
            attrib: ATTR_TSS_BUSY,
            limit: 0xffff,
            ..SEG0
        };
        v.efer = efer::SVME;
        v.cr0 = CR0_PE | CR0_ET;
        v.dr6 = 0xffff_0ff0;
        v.dr7 = 0x400;
        v.rflags = 0x2;
        v.rip = u64::from(s.entry);
        v.rax = MULTIBOOT_MAGIC;
        v.g_pat = DEFAULT_PAT;
        v
    }

    /// The guest's RFLAGS.IF.
    pub fn interrupts_enabled(&self) -> bool {
        self.rflags & (1 << 9) != 0
    }

    /// The guest is in an interrupt shadow (after STI or MOV SS).
    pub fn in_shadow(&self) -> bool {
        self.interrupt_shadow & 1 != 0
    }
}

const SEG0: Segment = Segment {
    selector: 0,
    attrib: 0,
    limit: 0,
    base: 0,
};

/// Size of the I/O permission map: one bit per port plus the bits an access at 0xffff reaches into.
pub const IOPM_SIZE: usize = 3 * 4096;
/// Size of the MSR permission map.
pub const MSRPM_SIZE: usize = 2 * 4096;

/// MSRs the guest reads and writes directly: all of them are loaded by VMLOAD and saved by VMSAVE from
/// the guest's VMCB (FS/GS bases through the segment fields), so they are the guest's own and never the
/// host's. Every other MSR is intercepted.
pub const PASSTHROUGH_MSRS: [u32; 10] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];

/// Byte offset and bit (read bit; the write bit is the next one) of `msr` in the MSR permission map, or
/// `None` for an MSR outside the three ranges the map covers (always intercepted).
pub fn msrpm_position(msr: u32) -> Option<(usize, u32)> {
    let (base, first) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (0x800, 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, 0xc001_0000),
        _ => return None,
    };
    let n = (msr - first) as usize * 2;
    Some((base + n / 8, (n % 8) as u32))
}

/// Fill the MSR permission map: everything intercepted except [`PASSTHROUGH_MSRS`].
pub fn fill_msrpm(map: &mut [u8; MSRPM_SIZE]) {
    map.fill(0xff);
    for msr in PASSTHROUGH_MSRS {
        if let Some((byte, bit)) = msrpm_position(msr) {
            map[byte] &= !(3 << bit);
        }
    }
}

/// Whether the map intercepts a read (`write` false) or write of `msr`.
pub fn msr_intercepted(map: &[u8; MSRPM_SIZE], msr: u32, write: bool) -> bool {
    match msrpm_position(msr) {
        Some((byte, bit)) => map[byte] & (1 << (bit + u32::from(write))) != 0,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> InitialState {
        InitialState {
            entry: 0x20_0010,
            info: 0x9000,
            asid: 1,
            n_cr3: 0x123_4000,
            iopm_pa: 0x10_0000,
            msrpm_pa: 0x10_3000,
        }
    }

    #[test]
    fn initial_state_is_the_multiboot_hand_over() {
        let v = Vmcb::initial(&state());
        assert_eq!(v.rip, 0x20_0010);
        assert_eq!(v.rax, 0x2bad_b002);
        assert_eq!(v.rflags, 2, "IF clear, fixed bit set");
        assert_eq!(v.cr0, CR0_PE | CR0_ET, "protected mode, paging off");
        assert_eq!((v.cr3, v.cr4), (0, 0));
        assert_eq!(v.efer, efer::SVME, "VMRUN demands SVME in the guest EFER");
        assert_eq!(v.cs.attrib, ATTR_CODE32);
        assert_eq!(
            (v.cs.base, v.cs.limit, v.cs.selector),
            (0, 0xffff_ffff, 0x08)
        );
        for s in [v.ds, v.es, v.ss, v.fs, v.gs] {
            assert_eq!((s.attrib, s.base, s.limit), (ATTR_DATA, 0, 0xffff_ffff));
        }
        assert_eq!(v.cpl, 0);
        assert_eq!(v.n_cr3, 0x123_4000);
        assert_eq!(v.np_control & 1, 1);
        assert_ne!(v.asid, 0);
        assert_ne!(v.vintr & vintr::V_INTR_MASKING, 0);
        assert_eq!(v.g_pat, DEFAULT_PAT);
    }

    #[test]
    fn isolation_intercepts_are_set() {
        let v = Vmcb::initial(&state());
        for bit in [
            misc1::INTR,
            misc1::NMI,
            misc1::CPUID,
            misc1::HLT,
            misc1::IOIO_PROT,
            misc1::MSR_PROT,
            misc1::SHUTDOWN,
            misc1::INVLPGA,
        ] {
            assert_ne!(v.intercept_misc1 & bit, 0, "misc1 {bit:#x}");
        }
        for bit in [
            misc2::VMRUN,
            misc2::VMMCALL,
            misc2::VMLOAD,
            misc2::VMSAVE,
            misc2::STGI,
            misc2::CLGI,
            misc2::SKINIT,
        ] {
            assert_ne!(v.intercept_misc2 & bit, 0, "misc2 {bit:#x}");
        }
        assert_eq!(v.iopm_base_pa, 0x10_0000);
        assert_eq!(v.msrpm_base_pa, 0x10_3000);
    }

    #[test]
    fn msr_map_intercepts_all_but_the_guest_owned_ones() {
        let mut map = [0u8; MSRPM_SIZE];
        fill_msrpm(&mut map);
        for msr in PASSTHROUGH_MSRS {
            assert!(!msr_intercepted(&map, msr, false) && !msr_intercepted(&map, msr, true));
        }
        // EFER (SVME hidden), the SVM MSRs, the APIC base, the TSC, PAT: intercepted both ways.
        for msr in [
            0xc000_0080,
            0xc001_0114,
            0xc001_0117,
            0x1b,
            0x10,
            0x277,
            0xc001_1fff,
        ] {
            assert!(msr_intercepted(&map, msr, false), "{msr:#x} read");
            assert!(msr_intercepted(&map, msr, true), "{msr:#x} write");
        }
        assert!(msr_intercepted(&map, 0x4000_0000, true), "outside the map");
        assert_eq!(msrpm_position(0xc000_0080), Some((0x800 + 0x20, 0)));
        assert_eq!(msrpm_position(0x175), Some((0x5d, 2)));
    }
}
