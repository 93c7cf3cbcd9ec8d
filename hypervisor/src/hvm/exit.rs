//! Decoding a #VMEXIT: EXITCODE, EXITINFO1/2 and EXITINTINFO into a typed [`Exit`], the event format shared
//! by EXITINTINFO and EVENTINJ, and the per-domain exit counters (named as in the `exits:` line).
#![forbid(unsafe_code)]

/// A decoded exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// MOV from CRn.
    CrRead(u8),
    /// MOV to CRn.
    CrWrite(u8),
    /// MOV from DRn.
    DrRead(u8),
    /// MOV to DRn.
    DrWrite(u8),
    /// An intercepted exception (`error_code` from EXITINFO1, EXITINFO2 is CR2 for #PF).
    Exception {
        /// Vector.
        vector: u8,
        /// Error code.
        error_code: u64,
    },
    /// A physical interrupt for the host.
    Intr,
    /// A physical NMI.
    Nmi,
    /// SMI.
    Smi,
    /// INIT.
    Init,
    /// A virtual interrupt became deliverable.
    Vintr,
    /// CPUID.
    Cpuid,
    /// INVD.
    Invd,
    /// HLT.
    Hlt,
    /// INVLPGA.
    Invlpga,
    /// IN, OUT, INS, OUTS.
    Io(IoExit),
    /// RDMSR (`write` false) or WRMSR.
    Msr {
        /// WRMSR.
        write: bool,
    },
    /// A triple fault.
    Shutdown,
    /// One of the SVM instructions, or MONITOR/MWAIT.
    SvmInstruction(SvmInsn),
    /// A nested page fault: the guest-physical address and the fault code.
    Npf {
        /// Guest-physical address.
        gpa: u64,
        /// EXITINFO1 (P, RW, US, RSV, ID bits; bit 32: final translation, bit 33: guest table walk).
        code: u64,
    },
    /// VMRUN refused the VMCB (VMEXIT_INVALID).
    Invalid,
    /// Anything else (never intercepted by this hypervisor).
    Other(u64),
}

/// The instructions a guest may not use: each gets #UD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmInsn {
    /// VMRUN.
    Vmrun,
    /// VMMCALL (no hypercall interface is offered to hvm guests).
    Vmmcall,
    /// VMLOAD.
    Vmload,
    /// VMSAVE.
    Vmsave,
    /// STGI.
    Stgi,
    /// CLGI.
    Clgi,
    /// SKINIT.
    Skinit,
    /// MONITOR.
    Monitor,
    /// MWAIT (either form).
    Mwait,
}

/// An I/O exit (EXITINFO1 fields; EXITINFO2 is the next RIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// Port.
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// IN or INS.
    pub input: bool,
    /// INS or OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
    /// RIP of the next instruction.
    pub next_rip: u64,
}

/// Exit codes (APM vol. 2, appendix C).
pub mod code {
    /// First exception exit (0x40 + vector).
    pub const EXCP_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// Virtual interrupt deliverable.
    pub const VINTR: u64 = 0x64;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// I/O.
    pub const IOIO: u64 = 0x7b;
    /// MSR.
    pub const MSR: u64 = 0x7c;
    /// Shutdown.
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMEXIT_INVALID as QEMU's TCG stores it (−1 in 32 bits).
    pub const INVALID32: u32 = 0xffff_ffff;
}

/// Decode an exit from the VMCB's EXITCODE, EXITINFO1 and EXITINFO2.
pub fn decode(exitcode: u64, info1: u64, info2: u64) -> Exit {
    // TCG stores VMEXIT_INVALID as 0x0000_0000_ffff_ffff, hardware as all ones: compare 32 bits.
    if exitcode as u32 == code::INVALID32 {
        return Exit::Invalid;
    }
    match exitcode {
        c @ 0x00..=0x0f => Exit::CrRead(c as u8),
        c @ 0x10..=0x1f => Exit::CrWrite((c - 0x10) as u8),
        c @ 0x20..=0x2f => Exit::DrRead((c - 0x20) as u8),
        c @ 0x30..=0x3f => Exit::DrWrite((c - 0x30) as u8),
        c @ 0x40..=0x5f => Exit::Exception {
            vector: (c - code::EXCP_BASE) as u8,
            error_code: info1,
        },
        0x60 => Exit::Intr,
        0x61 => Exit::Nmi,
        0x62 => Exit::Smi,
        0x63 => Exit::Init,
        0x64 => Exit::Vintr,
        0x72 => Exit::Cpuid,
        0x76 => Exit::Invd,
        0x78 => Exit::Hlt,
        0x7a => Exit::Invlpga,
        0x7b => Exit::Io(IoExit {
            port: (info1 >> 16) as u16,
            size: match info1 >> 4 & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            },
            input: info1 & 1 != 0,
            string: info1 & 4 != 0,
            rep: info1 & 8 != 0,
            next_rip: info2,
        }),
        0x7c => Exit::Msr {
            write: info1 & 1 != 0,
        },
        0x7f => Exit::Shutdown,
        0x80 => Exit::SvmInstruction(SvmInsn::Vmrun),
        0x81 => Exit::SvmInstruction(SvmInsn::Vmmcall),
        0x82 => Exit::SvmInstruction(SvmInsn::Vmload),
        0x83 => Exit::SvmInstruction(SvmInsn::Vmsave),
        0x84 => Exit::SvmInstruction(SvmInsn::Stgi),
        0x85 => Exit::SvmInstruction(SvmInsn::Clgi),
        0x86 => Exit::SvmInstruction(SvmInsn::Skinit),
        0x8a => Exit::SvmInstruction(SvmInsn::Monitor),
        0x8b | 0x8c => Exit::SvmInstruction(SvmInsn::Mwait),
        0x400 => Exit::Npf {
            gpa: info2,
            code: info1,
        },
        c => Exit::Other(c),
    }
}

/// An event in the EVENTINJ / EXITINTINFO format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventInfo(pub u64);

/// Event types.
pub mod event_type {
    /// External interrupt.
    pub const INTR: u64 = 0;
    /// NMI.
    pub const NMI: u64 = 2;
    /// Exception.
    pub const EXCEPTION: u64 = 3;
    /// Software interrupt (INT n).
    pub const SOFT_INT: u64 = 4;
}

impl EventInfo {
    const VALID: u64 = 1 << 31;
    const ERROR_VALID: u64 = 1 << 11;

    /// An external interrupt with this vector.
    pub const fn interrupt(vector: u8) -> EventInfo {
        EventInfo(Self::VALID | event_type::INTR << 8 | vector as u64)
    }

    /// An exception, with an error code if the vector pushes one.
    pub const fn exception(vector: u8, error_code: Option<u32>) -> EventInfo {
        let base = Self::VALID | event_type::EXCEPTION << 8 | vector as u64;
        match error_code {
            Some(e) => EventInfo(base | Self::ERROR_VALID | (e as u64) << 32),
            None => EventInfo(base),
        }
    }

    /// The valid bit.
    pub const fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// The vector.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// The type field.
    pub const fn kind(self) -> u64 {
        self.0 >> 8 & 7
    }
}

/// #UD.
pub const UD: u8 = 6;
/// #GP.
pub const GP: u8 = 13;

/// Counter slots: CR reads/writes by register (32), DR reads/writes (2), exceptions by vector (32), the
/// exits 0x60..0x8f (48), NPF, INVALID, any other code.
pub const SLOTS: usize = 32 + 2 + 32 + 48 + 3;

const MISC_NAMES: [&str; 48] = [
    "intr",
    "nmi",
    "smi",
    "init",
    "vintr",
    "cr0-sel-write",
    "idtr-read",
    "gdtr-read",
    "ldtr-read",
    "tr-read",
    "idtr-write",
    "gdtr-write",
    "ldtr-write",
    "tr-write",
    "rdtsc",
    "rdpmc",
    "pushf",
    "popf",
    "cpuid",
    "rsm",
    "iret",
    "swint",
    "invd",
    "pause",
    "hlt",
    "invlpg",
    "invlpga",
    "ioio",
    "msr",
    "task-switch",
    "ferr-freeze",
    "shutdown",
    "vmrun",
    "vmmcall",
    "vmload",
    "vmsave",
    "stgi",
    "clgi",
    "skinit",
    "rdtscp",
    "icebp",
    "wbinvd",
    "monitor",
    "mwait",
    "mwait-conditional",
    "xsetbv",
    "rdpru",
    "efer-write-trap",
];

const EXCEPTION_NAMES: [&str; 32] = [
    "exception-de",
    "exception-db",
    "exception-nmi",
    "exception-bp",
    "exception-of",
    "exception-br",
    "exception-ud",
    "exception-nm",
    "exception-df",
    "exception-9",
    "exception-ts",
    "exception-np",
    "exception-ss",
    "exception-gp",
    "exception-pf",
    "exception-15",
    "exception-mf",
    "exception-ac",
    "exception-mc",
    "exception-xf",
    "exception-20",
    "exception-cp",
    "exception-22",
    "exception-23",
    "exception-24",
    "exception-25",
    "exception-26",
    "exception-27",
    "exception-hv",
    "exception-vc",
    "exception-sx",
    "exception-31",
];

const CR_NAMES: [&str; 32] = [
    "cr0-read",
    "cr1-read",
    "cr2-read",
    "cr3-read",
    "cr4-read",
    "cr5-read",
    "cr6-read",
    "cr7-read",
    "cr8-read",
    "cr9-read",
    "cr10-read",
    "cr11-read",
    "cr12-read",
    "cr13-read",
    "cr14-read",
    "cr15-read",
    "cr0-write",
    "cr1-write",
    "cr2-write",
    "cr3-write",
    "cr4-write",
    "cr5-write",
    "cr6-write",
    "cr7-write",
    "cr8-write",
    "cr9-write",
    "cr10-write",
    "cr11-write",
    "cr12-write",
    "cr13-write",
    "cr14-write",
    "cr15-write",
];

/// The counter slot of an exit code.
pub fn slot(exitcode: u64) -> usize {
    if exitcode as u32 == code::INVALID32 {
        return SLOTS - 2;
    }
    match exitcode {
        c @ 0x00..=0x1f => c as usize,
        0x20..=0x2f => 32,
        0x30..=0x3f => 33,
        c @ 0x40..=0x5f => 34 + (c - 0x40) as usize,
        c @ 0x60..=0x8f => 66 + (c - 0x60) as usize,
        0x400 => SLOTS - 3,
        _ => SLOTS - 1,
    }
}

/// The `exits:` name of a counter slot.
pub fn slot_name(slot: usize) -> &'static str {
    match slot {
        s @ 0..32 => CR_NAMES[s],
        32 => "dr-read",
        33 => "dr-write",
        s @ 34..66 => EXCEPTION_NAMES[s - 34],
        s @ 66..114 => MISC_NAMES[s - 66],
        114 => "npf",
        115 => "invalid",
        _ => "other",
    }
}

/// Exits of one domain, by reason.
#[derive(Clone, Copy, Debug)]
pub struct ExitCounts {
    counts: [u64; SLOTS],
}

impl Default for ExitCounts {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitCounts {
    /// All zero.
    pub const fn new() -> ExitCounts {
        ExitCounts { counts: [0; SLOTS] }
    }

    /// Count one exit with this code.
    pub fn count(&mut self, exitcode: u64) {
        let s = &mut self.counts[slot(exitcode)];
        *s = s.wrapping_add(1);
    }

    /// Total exits.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }

    /// The exits of one reason (by name).
    pub fn get(&self, name: &str) -> u64 {
        (0..SLOTS)
            .find(|&s| slot_name(s) == name)
            .map_or(0, |s| self.counts[s])
    }

    /// Write the contract's line body: `total=<n> <reason>=<count> ...` (zero counts omitted).
    pub fn write_line(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        write!(out, "total={}", self.total())?;
        for (s, &c) in self.counts.iter().enumerate() {
            if c != 0 {
                write!(out, " {}={c}", slot_name(s))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_is_recognised_in_either_width() {
        assert_eq!(decode(0xffff_ffff, 0, 0), Exit::Invalid);
        assert_eq!(decode(u64::MAX, 0, 0), Exit::Invalid);
        assert_eq!(slot(0xffff_ffff), slot(u64::MAX));
        assert_eq!(slot_name(slot(u64::MAX)), "invalid");
    }

    #[test]
    fn io_fields() {
        // OUT DX, AL to 0x3f8: port in 31:16, SZ8 (bit 4), next RIP in EXITINFO2.
        let e = decode(0x7b, 0x03f8_0010, 0x1234);
        assert_eq!(
            e,
            Exit::Io(IoExit {
                port: 0x3f8,
                size: 1,
                input: false,
                string: false,
                rep: false,
                next_rip: 0x1234
            })
        );
        let Exit::Io(i) = decode(0x7b, 0x0040_0041, 0) else {
            panic!()
        };
        assert_eq!((i.port, i.size, i.input), (0x40, 4, true));
        let Exit::Io(i) = decode(0x7b, 0x03f8_002c, 0) else {
            panic!()
        };
        assert_eq!((i.size, i.string, i.rep), (2, true, true));
    }

    #[test]
    fn codes_decode() {
        assert_eq!(decode(0x72, 0, 0), Exit::Cpuid);
        assert_eq!(decode(0x78, 0, 0), Exit::Hlt);
        assert_eq!(decode(0x7c, 1, 0), Exit::Msr { write: true });
        assert_eq!(decode(0x7f, 0, 0), Exit::Shutdown);
        assert_eq!(decode(0x13, 0, 0), Exit::CrWrite(3));
        assert_eq!(
            decode(0x4e, 2, 0),
            Exit::Exception {
                vector: 14,
                error_code: 2
            }
        );
        assert_eq!(
            decode(0x400, 1 << 32 | 4, 0x4000_0000),
            Exit::Npf {
                gpa: 0x4000_0000,
                code: 1 << 32 | 4
            }
        );
        for (c, i) in [
            (0x80, SvmInsn::Vmrun),
            (0x81, SvmInsn::Vmmcall),
            (0x82, SvmInsn::Vmload),
            (0x83, SvmInsn::Vmsave),
            (0x84, SvmInsn::Stgi),
            (0x85, SvmInsn::Clgi),
            (0x86, SvmInsn::Skinit),
        ] {
            assert_eq!(decode(c, 0, 0), Exit::SvmInstruction(i));
        }
        assert_eq!(decode(0x401, 0, 0), Exit::Other(0x401));
        assert_eq!(decode(0x1_0000_0060, 0, 0), Exit::Other(0x1_0000_0060));
    }

    #[test]
    fn every_code_has_a_slot_and_a_distinct_name() {
        for c in (0..0x500u64).chain([u64::MAX, 0xffff_ffff, 1 << 40]) {
            assert!(slot(c) < SLOTS);
        }
        let mut names: Vec<&str> = (0..SLOTS).map(slot_name).collect();
        assert!(names.iter().all(|n| !n.is_empty() && !n.contains(' ')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SLOTS);
        assert_eq!(slot_name(slot(0x7b)), "ioio");
        assert_eq!(slot_name(slot(0x78)), "hlt");
        assert_eq!(slot_name(slot(0x60)), "intr");
        assert_eq!(slot_name(slot(0x13)), "cr3-write");
        assert_eq!(slot_name(slot(0x4e)), "exception-pf");
        assert_eq!(slot_name(slot(0x400)), "npf");
        assert_eq!(slot_name(slot(0x81)), "vmmcall");
    }

    #[test]
    fn counts_line() {
        let mut c = ExitCounts::new();
        for code in [0x7b, 0x7b, 0x72, 0x60, 0x7b] {
            c.count(code);
        }
        let mut s = String::new();
        c.write_line(&mut s).unwrap();
        assert_eq!(s, "total=5 intr=1 cpuid=1 ioio=3");
        assert_eq!(c.get("ioio"), 3);
    }

    #[test]
    fn events() {
        let e = EventInfo::interrupt(0x20);
        assert!(e.valid());
        assert_eq!((e.vector(), e.kind()), (0x20, event_type::INTR));
        assert_eq!(EventInfo::exception(UD, None).0, 0x8000_0306);
        assert_eq!(EventInfo::exception(GP, Some(0)).0, 0x8000_0b0d);
    }
}
