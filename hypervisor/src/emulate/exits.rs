//! Exit counts of an emulate domain by reason (instruction class, page faults, interrupts), printed as the
//! `exits:` line of CONTRACTS section 4 when the domain stops and by a debug key.
#![forbid(unsafe_code)]

use core::fmt;

/// Why the guest left to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum Reason {
    Cli,
    Sti,
    Hlt,
    Io,
    MovCr3,
    MovCr,
    Rdmsr,
    Wrmsr,
    Iretq,
    Sysret,
    Syscall,
    Swapgs,
    Invlpg,
    Lgdt,
    Lidt,
    Ltr,
    Lldt,
    Umip,
    Segment,
    Retf,
    Int,
    Other,
    HiddenPf,
    TruePf,
    Exception,
    Interrupt,
}

/// Number of reasons.
pub const REASONS: usize = Reason::Interrupt as usize + 1;

const NAMES: [&str; REASONS] = [
    "cli",
    "sti",
    "hlt",
    "io",
    "mov-cr3",
    "mov-cr",
    "rdmsr",
    "wrmsr",
    "iretq",
    "sysret",
    "syscall",
    "swapgs",
    "invlpg",
    "lgdt",
    "lidt",
    "ltr",
    "lldt",
    "umip",
    "segment",
    "retf",
    "int",
    "other",
    "hidden-pf",
    "true-pf",
    "exception",
    "interrupt",
];

/// Counts per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    counts: [u64; REASONS],
}

impl Exits {
    /// Count one exit.
    pub fn count(&mut self, r: Reason) {
        self.counts[r as usize] = self.counts[r as usize].saturating_add(1);
    }

    /// The count of one reason.
    pub fn get(&self, r: Reason) -> u64 {
        self.counts[r as usize]
    }

    /// All exits.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }
}

/// The `exits:` line body: `domain <id> (emulate): total=<n> <reason>=<count> ...` (zero counts omitted).
pub struct Line<'a> {
    /// Domain id.
    pub domain: u16,
    /// The counts.
    pub exits: &'a Exits,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exits: domain {} (emulate): total={}",
            self.domain,
            self.exits.total()
        )?;
        for (name, &c) in NAMES.iter().zip(self.exits.counts.iter()) {
            if c != 0 {
                write!(f, " {name}={c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_follows_the_contract() {
        let mut e = Exits::default();
        assert_eq!(
            Line {
                domain: 1,
                exits: &e
            }
            .to_string(),
            "exits: domain 1 (emulate): total=0"
        );
        e.count(Reason::Cli);
        e.count(Reason::Cli);
        e.count(Reason::HiddenPf);
        e.count(Reason::MovCr3);
        assert_eq!(
            Line {
                domain: 3,
                exits: &e
            }
            .to_string(),
            "exits: domain 3 (emulate): total=4 cli=2 mov-cr3=1 hidden-pf=1"
        );
        for n in NAMES {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
            );
        }
    }
}
