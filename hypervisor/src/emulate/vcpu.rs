//! The virtual CPU of an emulate domain: the privileged state a real CPU would hold, which the guest kernel
//! believes it has loaded (control registers, EFER, descriptor-table registers, the system-call MSRs,
//! segment bases, virtual IF and CPL). The real CPU holds the hypervisor's values; this is what the
//! emulator shows and uses.
#![forbid(unsafe_code)]

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// Emulation (no FPU).
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (always 1).
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Time-stamp disable.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// Page size extensions.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Machine check enable.
    pub const MCE: u64 = 1 << 6;
    /// Global pages.
    pub const PGE: u64 = 1 << 7;
    /// Performance counters at any CPL.
    pub const PCE: u64 = 1 << 8;
    /// FXSAVE/FXRSTOR and SSE.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// User-mode instruction prevention.
    pub const UMIP: u64 = 1 << 11;
    /// 5-level paging.
    pub const LA57: u64 = 1 << 12;
    /// RDFSBASE and friends.
    pub const FSGSBASE: u64 = 1 << 16;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
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
}

/// MSR numbers the emulator knows.
pub mod msr {
    /// Time-stamp counter.
    pub const TSC: u32 = 0x10;
    /// APIC base.
    pub const APIC_BASE: u32 = 0x1b;
    /// Page attribute table.
    pub const PAT: u32 = 0x277;
    /// Extended features.
    pub const EFER: u32 = 0xc000_0080;
    /// SYSCALL selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// SYSCALL 64-bit entry.
    pub const LSTAR: u32 = 0xc000_0082;
    /// SYSCALL compatibility entry.
    pub const CSTAR: u32 = 0xc000_0083;
    /// SYSCALL RFLAGS mask.
    pub const FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// The GS base SWAPGS exchanges with.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// RDTSCP's auxiliary value.
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// RFLAGS bits.
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Always 1.
    pub const FIXED: u64 = 1 << 1;
    /// Trap.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// I/O privilege level (2 bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Virtual 8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// ID.
    pub const ID: u64 = 1 << 21;
    /// The bits a guest may hold in its real RFLAGS (arithmetic flags, TF, DF, AC, ID); IF is the
    /// virtual one.
    pub const GUEST_REAL: u64 = 0x8d5 | TF | DF | AC | ID;
}

/// A descriptor-table register (GDTR, IDTR): base and limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableReg {
    /// Linear base.
    pub base: u64,
    /// Limit (size − 1).
    pub limit: u16,
}

/// A segment register as the guest loaded it: selector and (for FS/GS, TR, LDTR) base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegReg {
    /// Selector.
    pub sel: u16,
    /// Base (meaningful for TR and LDTR; FS/GS bases are in [`VCpu::fs_base`]/[`VCpu::gs_base`]).
    pub base: u64,
    /// Limit (TR, LDTR).
    pub limit: u32,
}

/// A WRMSR a real machine would refuse with #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrRefused;

/// The virtual CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VCpu {
    /// CR0.
    pub cr0: u64,
    /// CR2 (the last reflected page fault's address).
    pub cr2: u64,
    /// CR3 (a guest-physical L4 address and flags).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority; stored only).
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
    /// GDTR.
    pub gdtr: TableReg,
    /// IDTR.
    pub idtr: TableReg,
    /// TR.
    pub tr: SegReg,
    /// LDTR.
    pub ldtr: SegReg,
    /// Virtual CS, SS, DS, ES, FS, GS selectors (what the guest loaded; the real ones are the hypervisor's).
    pub cs: u16,
    /// SS.
    pub ss: u16,
    /// DS.
    pub ds: u16,
    /// ES.
    pub es: u16,
    /// FS.
    pub fs: u16,
    /// GS.
    pub gs: u16,
    /// Virtual IF.
    pub vif: bool,
    /// Virtual IOPL (stored; real IOPL is always 0).
    pub iopl: u8,
    /// Virtual CPL: 0 for the guest kernel (runs in real ring 1), 3 for user (real ring 3).
    pub cpl: u8,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// FMASK.
    pub fmask: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// TSC_AUX.
    pub tsc_aux: u64,
    /// PAT (stored only).
    pub pat: u64,
    /// Guest TSC = host TSC + this.
    pub tsc_offset: u64,
    /// Debug registers DR0–DR3, DR6, DR7 (stored only; never loaded into the real CPU).
    pub dr: [u64; 8],
}

impl VCpu {
    /// The state `_start64` is entered with (docs/ARCHITECTURE.md, "The native backend"): long mode,
    /// CPL 0, IF = 0, CR0 = PE|MP|NE|WP|PG (+ET), CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER = LME|LMA (+NXE),
    /// CR3 = `boot_l4` (guest-physical).
    pub fn at_entry64(boot_l4: u64, nxe: bool, code_sel: u16) -> VCpu {
        VCpu {
            cr0: cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG,
            cr2: 0,
            cr3: boot_l4,
            cr4: cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT,
            cr8: 0,
            efer: efer::LME | efer::LMA | if nxe { efer::NXE } else { 0 },
            gdtr: TableReg::default(),
            idtr: TableReg::default(),
            tr: SegReg::default(),
            ldtr: SegReg::default(),
            cs: code_sel,
            ss: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
            vif: false,
            iopl: 0,
            cpl: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            fs_base: 0,
            gs_base: 0,
            kernel_gs_base: 0,
            tsc_aux: 0,
            pat: 0x0007_0406_0007_0406,
            tsc_offset: 0,
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
        }
    }

    /// RFLAGS as the guest should see it in a frame the emulator pushes: the real arithmetic/TF/DF/AC/ID
    /// bits with the virtual IF and IOPL.
    pub fn visible_rflags(&self, real: u64) -> u64 {
        (real & rflags::GUEST_REAL)
            | rflags::FIXED
            | if self.vif { rflags::IF } else { 0 }
            | (u64::from(self.iopl & 3) << 12)
    }

    /// Take IF and IOPL from a guest-written RFLAGS value (IRETQ, SYSRET, POPF-like loads the emulator
    /// performs); returns the bits for the real RFLAGS.
    pub fn load_rflags(&mut self, v: u64) -> u64 {
        self.vif = v & rflags::IF != 0;
        self.iopl = ((v >> 12) & 3) as u8;
        (v & rflags::GUEST_REAL) | rflags::FIXED
    }

    /// True if paging uses no-execute (EFER.NXE).
    pub fn nxe(&self) -> bool {
        self.efer & efer::NXE != 0
    }

    /// True if global pages are enabled (CR4.PGE).
    pub fn pge(&self) -> bool {
        self.cr4 & cr4::PGE != 0
    }

    /// The MSR value the guest reads, `None` for an MSR a real machine would #GP on.
    pub fn read_msr(&self, index: u32, host_tsc: u64) -> Option<u64> {
        Some(match index {
            msr::TSC => host_tsc.wrapping_add(self.tsc_offset),
            msr::APIC_BASE => 0,
            msr::PAT => self.pat,
            msr::EFER => self.efer,
            msr::STAR => self.star,
            msr::LSTAR => self.lstar,
            msr::CSTAR => self.cstar,
            msr::FMASK => self.fmask,
            msr::FS_BASE => self.fs_base,
            msr::GS_BASE => self.gs_base,
            msr::KERNEL_GS_BASE => self.kernel_gs_base,
            msr::TSC_AUX => self.tsc_aux,
            _ => return None,
        })
    }

    /// Write an MSR; `Err` where a real machine would raise #GP (unknown MSR, reserved bits,
    /// non-canonical bases, turning long mode off).
    pub fn write_msr(&mut self, index: u32, v: u64, host_tsc: u64) -> Result<(), MsrRefused> {
        let canonical = |a: u64| ((a as i64) << 16 >> 16) as u64 == a;
        match index {
            msr::TSC => self.tsc_offset = v.wrapping_sub(host_tsc),
            msr::PAT => self.pat = v,
            msr::EFER => {
                let allowed = efer::SCE | efer::LME | efer::LMA | efer::NXE;
                if v & !allowed != 0 || v & efer::LME == 0 {
                    return Err(MsrRefused);
                }
                // LMA is read-only: it stays set while paging is on.
                self.efer = (v & !efer::LMA) | efer::LMA;
            }
            msr::STAR => self.star = v,
            msr::LSTAR | msr::CSTAR | msr::FS_BASE | msr::GS_BASE | msr::KERNEL_GS_BASE
                if !canonical(v) =>
            {
                return Err(MsrRefused);
            }
            msr::LSTAR => self.lstar = v,
            msr::CSTAR => self.cstar = v,
            msr::FMASK => self.fmask = v & 0xffff_ffff,
            msr::FS_BASE => self.fs_base = v,
            msr::GS_BASE => self.gs_base = v,
            msr::KERNEL_GS_BASE => self.kernel_gs_base = v,
            msr::TSC_AUX => self.tsc_aux = v & 0xffff_ffff,
            msr::APIC_BASE => {}
            _ => return Err(MsrRefused),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_state_matches_the_documented_one() {
        let v = VCpu::at_entry64(0x1000, true, 0x08);
        assert_eq!(
            v.cr0 & (cr0::PE | cr0::PG | cr0::WP | cr0::NE | cr0::MP | cr0::EM),
            cr0::PE | cr0::PG | cr0::WP | cr0::NE | cr0::MP
        );
        assert_eq!(v.cr4, cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT);
        assert!(v.nxe());
        assert!(!v.vif);
        assert_eq!(v.cpl, 0);
        assert_eq!(v.cr3, 0x1000);
    }

    #[test]
    fn msrs_round_trip_and_refuse_garbage() {
        let mut v = VCpu::at_entry64(0, false, 8);
        for (m, val) in [
            (msr::STAR, 0x0023_0008_0000_0000u64),
            (msr::LSTAR, 0xffff_ffff_8000_1000),
            (msr::GS_BASE, 0x1234),
        ] {
            v.write_msr(m, val, 0).unwrap();
            assert_eq!(v.read_msr(m, 0), Some(val));
        }
        assert!(v.write_msr(msr::LSTAR, 0x8000_0000_0000_0000, 0).is_err());
        assert!(v.write_msr(msr::EFER, 0, 0).is_err());
        assert!(v.write_msr(msr::EFER, efer::LME | 1 << 20, 0).is_err());
        v.write_msr(msr::EFER, efer::LME | efer::SCE | efer::NXE, 0)
            .unwrap();
        assert_eq!(v.efer, efer::LME | efer::LMA | efer::SCE | efer::NXE);
        assert!(v.write_msr(0x1234, 0, 0).is_err());
        assert_eq!(v.read_msr(0x1234, 0), None);
        v.write_msr(msr::TSC, 1000, 400).unwrap();
        assert_eq!(v.read_msr(msr::TSC, 500), Some(1100));
    }

    #[test]
    fn rflags_view_carries_virtual_if_and_iopl() {
        let mut v = VCpu::at_entry64(0, false, 8);
        let real = rflags::IF | rflags::CF | rflags::FIXED | rflags::NT;
        assert_eq!(v.visible_rflags(real), rflags::CF | rflags::FIXED);
        let r = v.load_rflags(rflags::IF | (3 << 12) | rflags::VM | rflags::DF);
        assert!(v.vif);
        assert_eq!(v.iopl, 3);
        assert_eq!(r, rflags::DF | rflags::FIXED);
    }
}
