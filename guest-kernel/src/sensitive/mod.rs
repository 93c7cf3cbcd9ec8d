//! `sensitive`: the Popek–Goldberg demonstration. The kernel executes, in its own ring, the classic
//! sensitive-but-unprivileged instructions of x86 (Robin & Irvine's list) and prints one table line per
//! instruction: what it saw, and a verdict —
//!
//! - `as in ring 0`: what a kernel on its own machine would see (natively, under hvm, or a value the VMM
//!   emulated correctly after a trap);
//! - `REVEALS`: the value betrays the deprivileging (a selector's RPL or a descriptor's DPL ≠ 0, the real
//!   GDTR/IDTR/CR0/TR read at CPL > 0 without a trap, the CPUID hypervisor bit);
//! - `SILENT`: an intended change (IF or IOPL through POPF) was dropped without a fault — the VMM never
//!   sees it, which is why trap-and-emulate cannot virtualize POPF;
//! - `TRAPS`: the instruction faulted into this kernel (e.g. `sgdt` with CR4.UMIP at CPL > 0 and no VMM
//!   emulating it);
//! - `no trap`: executes at CPL > 0 without the VMM seeing it, showing nothing here (LSL, VERR, RDTSC).
//!
//! This module holds the pure part (verdicts, line formatting; host-tested); [`probe`] runs the
//! instructions (`arch::x86_64::sensitive_probes`).

#[cfg(feature = "baremetal")]
pub mod probe;

use core::fmt;

/// A probe's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// What ring 0 on its own machine would see.
    AsInRing0,
    /// Betrays the deprivileging.
    Reveals,
    /// An intended effect dropped without a fault.
    Silent,
    /// Faulted into the kernel.
    Traps,
    /// Executed at CPL > 0 without a trap, showing nothing.
    NoTrap,
}

impl Verdict {
    /// Every verdict, in summary order.
    pub const ALL: [Verdict; 5] = [
        Verdict::AsInRing0,
        Verdict::Reveals,
        Verdict::Silent,
        Verdict::Traps,
        Verdict::NoTrap,
    ];

    /// The word the table prints.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::AsInRing0 => "as in ring 0",
            Verdict::Reveals => "REVEALS",
            Verdict::Silent => "SILENT",
            Verdict::Traps => "TRAPS",
            Verdict::NoTrap => "no trap",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A selector's RPL or a descriptor's DPL: 0 is ring 0's; anything else reveals the ring.
pub fn of_privilege(level: u8) -> Verdict {
    if level == 0 {
        Verdict::AsInRing0
    } else {
        Verdict::Reveals
    }
}

/// A POPF that asked for a change of IF or IOPL: it stuck (ring 0's behaviour) or was dropped silently.
pub fn of_popf(stuck: bool) -> Verdict {
    if stuck {
        Verdict::AsInRing0
    } else {
        Verdict::Silent
    }
}

/// A read of machine state (GDTR, IDTR, MSW, TR, LDTR) at `cpl`: it trapped into the kernel, or ran at
/// CPL 0, or showed exactly what this kernel itself loaded (`expected`, when the kernel owns that state:
/// its native backend does, also under emulate, where the VMM returns the virtual value), or else it
/// showed the real machine's value to a deprivileged kernel.
pub fn of_state_read(cpl: u8, trapped: bool, expected: Option<u64>, seen: u64) -> Verdict {
    if trapped {
        Verdict::Traps
    } else if cpl == 0 || expected == Some(seen) {
        Verdict::AsInRing0
    } else {
        Verdict::Reveals
    }
}

/// An instruction that shows nothing by itself (LSL, VERR, RDTSC): ring 0's at CPL 0, unseen otherwise.
pub fn of_unseen(cpl: u8) -> Verdict {
    if cpl == 0 {
        Verdict::AsInRing0
    } else {
        Verdict::NoTrap
    }
}

/// CPUID: the hypervisor bit (leaf 1 ECX bit 31) reveals a hypervisor whatever the ring; otherwise like
/// [`of_unseen`].
pub fn of_cpuid(hypervisor_bit: bool, cpl: u8) -> Verdict {
    if hypervisor_bit {
        Verdict::Reveals
    } else {
        of_unseen(cpl)
    }
}

/// RFLAGS.IF.
pub const IF: u64 = 1 << 9;
/// RFLAGS.IOPL's shift and mask.
pub const IOPL_SHIFT: u32 = 12;
/// RFLAGS.IOPL (two bits).
pub const IOPL_MASK: u64 = 3 << IOPL_SHIFT;

/// The IOPL of an RFLAGS value.
pub fn iopl(flags: u64) -> u64 {
    (flags & IOPL_MASK) >> IOPL_SHIFT
}

/// The DPL in a LAR access-rights dword.
pub fn lar_dpl(access: u64) -> u8 {
    ((access >> 13) & 3) as u8
}

/// The printable characters of a CPUID vendor signature (EBX, ECX, EDX), others as `.`.
pub fn signature(regs: [u32; 3]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for (i, r) in regs.iter().enumerate() {
        for (j, b) in r.to_le_bytes().into_iter().enumerate() {
            out[i * 4 + j] = if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'.'
            };
        }
    }
    out
}

/// One table line: `sensitive: <instruction> | <seen> | <verdict>` with fixed column widths.
pub struct Row<'a> {
    /// The instruction (e.g. `popf IF`).
    pub insn: &'a str,
    /// What the kernel saw.
    pub seen: &'a str,
    /// The verdict.
    pub verdict: Verdict,
}

impl fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sensitive: {:<12} | {:<46} | {}",
            self.insn, self.seen, self.verdict
        )
    }
}

/// The verdict counts for the summary line, in [`Verdict::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub [u32; 5]);

impl Tally {
    /// Counts one verdict.
    pub fn add(&mut self, v: Verdict) {
        if let Some(i) = Verdict::ALL.iter().position(|&x| x == v) {
            self.0[i] += 1;
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sensitive: summary:")?;
        for (i, v) in Verdict::ALL.iter().enumerate() {
            write!(
                f,
                " {}={}",
                v.word().to_ascii_lowercase().replace(' ', "-"),
                self.0[i]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn verdicts() {
        assert_eq!(of_privilege(0), Verdict::AsInRing0);
        assert_eq!(of_privilege(1), Verdict::Reveals);
        assert_eq!(of_popf(true), Verdict::AsInRing0);
        assert_eq!(of_popf(false), Verdict::Silent);
        // Natively everything runs at CPL 0.
        assert_eq!(of_state_read(0, false, None, 5), Verdict::AsInRing0);
        // PV: no expectation, CPL 1, no UMIP: the real value.
        assert_eq!(of_state_read(1, false, None, 5), Verdict::Reveals);
        // Emulate: CPL 1, but the VMM returned what the kernel loaded.
        assert_eq!(of_state_read(1, false, Some(5), 5), Verdict::AsInRing0);
        assert_eq!(of_state_read(1, false, Some(5), 6), Verdict::Reveals);
        assert_eq!(of_state_read(1, true, None, 0), Verdict::Traps);
        assert_eq!(of_unseen(0), Verdict::AsInRing0);
        assert_eq!(of_unseen(1), Verdict::NoTrap);
        assert_eq!(of_cpuid(true, 0), Verdict::Reveals);
        assert_eq!(of_cpuid(false, 1), Verdict::NoTrap);
    }

    #[test]
    fn field_helpers() {
        assert_eq!(iopl(0x3202), 3);
        assert_eq!(iopl(0x202), 0);
        // A DPL-1 64-bit code segment's access rights: P=1, DPL=1, S=1, type 0xb.
        assert_eq!(lar_dpl(0x0020_bb00), 1);
        assert_eq!(lar_dpl(0x0020_9b00), 0);
        let tcg = [
            u32::from_le_bytes(*b"TCGT"),
            u32::from_le_bytes(*b"CGTC"),
            u32::from_le_bytes(*b"GTCG"),
        ];
        assert_eq!(&signature(tcg), b"TCGTCGTCGTCG");
        assert_eq!(&signature([0, 0x41, 0]), b"....A.......");
    }

    #[test]
    fn lines() {
        let row = Row {
            insn: "mov cs",
            seen: "0x19 (RPL 1)",
            verdict: Verdict::Reveals,
        };
        let line = row.to_string();
        assert!(line.starts_with("sensitive: mov cs       | 0x19 (RPL 1)"));
        assert!(line.ends_with("| REVEALS"));
        let mut t = Tally::default();
        for v in [
            Verdict::Reveals,
            Verdict::Reveals,
            Verdict::Silent,
            Verdict::AsInRing0,
        ] {
            t.add(v);
        }
        assert_eq!(
            t.to_string(),
            "sensitive: summary: as-in-ring-0=1 reveals=2 silent=1 traps=0 no-trap=0"
        );
    }
}
