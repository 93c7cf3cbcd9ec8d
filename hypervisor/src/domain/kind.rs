//! The kind of a domain — how its kernel runs — chosen by the `kind=` word of its boot module's command line.
#![forbid(unsafe_code)]

use core::fmt;

/// How a domain's kernel runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DomainKind {
    /// Paravirtualized: a Xen PV kernel in ring 1, entered at its ELF entry with `start_info`; it asks the
    /// hypervisor for everything privileged through hypercalls.
    #[default]
    Pv,
    /// Trap-and-emulate: an unmodified native kernel deprivileged to ring 1, entered at its documented
    /// 64-bit entry; privileged instructions trap and are emulated; shadow page tables.
    Emulate,
    /// Hardware-assisted (AMD SVM + nested paging): an unmodified multiboot kernel in its own ring 0,
    /// entered at its 32-bit multiboot entry with paging off.
    Hvm,
}

impl DomainKind {
    /// Every kind, in table order.
    pub const ALL: [DomainKind; 3] = [DomainKind::Pv, DomainKind::Emulate, DomainKind::Hvm];

    /// The kind's name on command lines, in logs and in the `exits:` line.
    pub const fn name(self) -> &'static str {
        match self {
            DomainKind::Pv => "pv",
            DomainKind::Emulate => "emulate",
            DomainKind::Hvm => "hvm",
        }
    }

    /// Parses a kind's name.
    pub fn from_name(s: &str) -> Option<DomainKind> {
        DomainKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a module's `kind=` word was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindError {
    /// `kind=` named no known kind.
    Unknown,
    /// More than one `kind=` word.
    Repeated,
}

/// The kind a module's arguments ask for (`kind=pv|emulate|hvm`; none: PV). The hypervisor consumes the
/// word: [`without_kind`] gives the command line the guest sees.
pub fn kind_of(args: &str) -> Result<DomainKind, KindError> {
    let mut words = args
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("kind="));
    let kind = match words.next() {
        None => return Ok(DomainKind::Pv),
        Some(name) => DomainKind::from_name(name).ok_or(KindError::Unknown)?,
    };
    match words.next() {
        None => Ok(kind),
        Some(_) => Err(KindError::Repeated),
    }
}

/// The words of `args` other than `kind=...`, for the guest's command line.
pub fn without_kind(args: &str) -> impl Iterator<Item = &str> {
    args.split_whitespace().filter(|w| !w.starts_with("kind="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_default_to_pv() {
        assert_eq!(kind_of("shell"), Ok(DomainKind::Pv));
        assert_eq!(kind_of(""), Ok(DomainKind::Pv));
        assert_eq!(kind_of("kind=hvm shell"), Ok(DomainKind::Hvm));
        assert_eq!(kind_of("shell kind=emulate"), Ok(DomainKind::Emulate));
        assert_eq!(kind_of("kind=pv"), Ok(DomainKind::Pv));
        assert_eq!(kind_of("kind=vmx"), Err(KindError::Unknown));
        assert_eq!(kind_of("kind="), Err(KindError::Unknown));
        assert_eq!(kind_of("kind=hvm kind=hvm"), Err(KindError::Repeated));
        for k in DomainKind::ALL {
            assert_eq!(DomainKind::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn the_guest_does_not_see_the_kind_word() {
        let words: Vec<&str> = without_kind("kind=hvm shell  x=1").collect();
        assert_eq!(words, ["shell", "x=1"]);
    }
}
