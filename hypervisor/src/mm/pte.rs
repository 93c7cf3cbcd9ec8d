//! x86_64 4-level page-table entries: flag bits, address extraction and reserved-bit checks.

use abi::types::{Maddr, Mfn, PAGE_SHIFT};
use bitflags::bitflags;

bitflags! {
    /// The architectural flag bits of a page-table entry (levels 1 to 4).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
    pub struct PteFlags: u64 {
        /// The entry is valid.
        const PRESENT = 1 << 0;
        /// Writes are allowed (if every level allows them).
        const WRITABLE = 1 << 1;
        /// Ring-3 accesses are allowed (if every level allows them).
        const USER = 1 << 2;
        /// Page-level write-through.
        const PWT = 1 << 3;
        /// Page-level cache disable.
        const PCD = 1 << 4;
        /// Set by the CPU when the entry is used for a translation.
        const ACCESSED = 1 << 5;
        /// Set by the CPU on a write through a leaf entry.
        const DIRTY = 1 << 6;
        /// Page size (PS) in L3/L2 entries: the entry maps a 1 GiB / 2 MiB page. Reserved in L4 entries.
        const HUGE = 1 << 7;
        /// Page attribute table index in L1 entries (same bit as [`PteFlags::HUGE`]).
        const PAT = 1 << 7;
        /// The translation survives CR3 reloads (leaf entries only).
        const GLOBAL = 1 << 8;
        /// Instruction fetches are not allowed (requires EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

/// A raw x86_64 page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(pub u64);

impl core::fmt::Debug for Pte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pte({:#x}: {:?} {:?})", self.0, self.mfn(), self.flags())
    }
}

/// Bits 9..=11: ignored by the CPU, available to software.
pub const SOFTWARE_LOW_MASK: u64 = 0x0000_0000_0000_0e00;
/// Bits 52..=62: ignored by the CPU (without protection keys), available to software.
pub const SOFTWARE_HIGH_MASK: u64 = 0x7ff0_0000_0000_0000;
/// Largest physical-address width the 4-level format can express.
pub const MAX_PHYS_ADDR_BITS: u32 = 52;

/// The address bits (12..=51 inclusive) of an entry that are reserved on a CPU with `maxphyaddr` physical
/// address bits, i.e. bits `maxphyaddr..=51`. `maxphyaddr` is clamped to `12..=52`.
pub const fn reserved_addr_mask(maxphyaddr: u32) -> u64 {
    // The clamp folds into one shift: below 12 every address bit is reserved whatever the width (the mask has
    // no lower bits), from 52 to 63 the shift leaves none of bits 12..=51, and only a width of 64 or more
    // needs a test (the shift would overflow). Computed on every page-table hypercall (`Mm::new`).
    let above = match u64::MAX.checked_shl(maxphyaddr) {
        Some(v) => v,
        None => 0,
    };
    Pte::ADDR_MASK & above
}

impl Pte {
    /// The physical-address bits (12..=51) of an entry.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// An empty (not present) entry.
    pub const EMPTY: Pte = Pte(0);

    /// An entry pointing at `mfn` with `flags`. MFN bits that do not fit in the address field are dropped;
    /// use [`Pte::try_new`] when the MFN is not known to be valid.
    pub const fn new(mfn: Mfn, flags: PteFlags) -> Pte {
        Pte(((mfn.0 << PAGE_SHIFT) & Self::ADDR_MASK) | flags.bits())
    }

    /// Like [`Pte::new`], but `None` if `mfn` does not fit in the 40-bit frame field.
    pub const fn try_new(mfn: Mfn, flags: PteFlags) -> Option<Pte> {
        if mfn.0 >> (MAX_PHYS_ADDR_BITS - PAGE_SHIFT) != 0 {
            None
        } else {
            Some(Pte::new(mfn, flags))
        }
    }

    /// The frame this entry points at (meaningful only if present).
    pub const fn mfn(self) -> Mfn {
        Mfn((self.0 & Self::ADDR_MASK) >> PAGE_SHIFT)
    }

    /// The machine address this entry points at (page aligned).
    pub const fn addr(self) -> Maddr {
        Maddr(self.0 & Self::ADDR_MASK)
    }

    /// The architectural flags (software-available bits are not included).
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_truncate(self.0)
    }

    /// True if the PRESENT bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// True if `flags` are all set.
    pub const fn has(self, flags: PteFlags) -> bool {
        self.0 & flags.bits() == flags.bits()
    }

    /// The same frame with `flags` replacing the architectural flags (software bits are kept).
    pub const fn with_flags(self, flags: PteFlags) -> Pte {
        Pte((self.0 & !PteFlags::all().bits()) | flags.bits())
    }

    /// The software-available bits (9..=11 and 52..=62) of this entry.
    pub const fn software_bits(self) -> u64 {
        self.0 & (SOFTWARE_LOW_MASK | SOFTWARE_HIGH_MASK)
    }

    /// Bits of this entry that are reserved at page-table `level` (1..=4) on a CPU with `maxphyaddr` physical
    /// address bits and NX enabled; a present entry with any of them set makes the CPU raise #PF(RSVD).
    ///
    /// Covered: address bits above `maxphyaddr`; PS in an L4 entry; for a 1 GiB / 2 MiB leaf (PS in L3/L2),
    /// the address bits below the page size other than the PAT bit (bit 12). Returns 0 for a non-present entry
    /// and for an invalid `level`.
    pub const fn reserved_bits(self, level: u32, maxphyaddr: u32) -> u64 {
        if !self.is_present() {
            return 0;
        }
        let addr = reserved_addr_mask(maxphyaddr);
        let huge = self.0 & PteFlags::HUGE.bits() != 0;
        let extra = match level {
            4 => PteFlags::HUGE.bits(),
            // 1 GiB page: bits 13..=29 must be zero (bit 12 is PAT).
            3 if huge => 0x0000_0000_3fff_e000,
            // 2 MiB page: bits 13..=20 must be zero.
            2 if huge => 0x0000_0000_001f_e000,
            1..=3 => 0,
            _ => return 0,
        };
        self.0 & (addr | extra)
    }

    /// True if [`Pte::reserved_bits`] is non-zero.
    pub const fn has_reserved_bits(self, level: u32, maxphyaddr: u32) -> bool {
        self.reserved_bits(level, maxphyaddr) != 0
    }
}

static_assertions::assert_eq_size!(Pte, u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_accessors() {
        let f = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE;
        let p = Pte::new(Mfn(0x12345), f);
        assert_eq!(p.0, 0x8000_0000_1234_5003);
        assert_eq!(p.mfn(), Mfn(0x12345));
        assert_eq!(p.addr(), Maddr(0x1234_5000));
        assert_eq!(p.flags(), f);
        assert!(p.is_present());
        assert!(p.has(PteFlags::PRESENT | PteFlags::WRITABLE));
        assert!(!p.has(PteFlags::USER));
        assert!(!Pte::EMPTY.is_present());
        assert_eq!(Pte::default(), Pte::EMPTY);
    }

    #[test]
    fn bit_positions() {
        assert_eq!(PteFlags::PRESENT.bits(), 1);
        assert_eq!(PteFlags::WRITABLE.bits(), 2);
        assert_eq!(PteFlags::USER.bits(), 4);
        assert_eq!(PteFlags::PWT.bits(), 8);
        assert_eq!(PteFlags::PCD.bits(), 0x10);
        assert_eq!(PteFlags::ACCESSED.bits(), 0x20);
        assert_eq!(PteFlags::DIRTY.bits(), 0x40);
        assert_eq!(PteFlags::HUGE, PteFlags::PAT);
        assert_eq!(PteFlags::HUGE.bits(), 0x80);
        assert_eq!(PteFlags::GLOBAL.bits(), 0x100);
        assert_eq!(PteFlags::NO_EXECUTE.bits(), 1 << 63);
    }

    #[test]
    fn oversized_mfn_is_masked_or_refused() {
        let big = Mfn(1 << 40);
        assert_eq!(Pte::new(big, PteFlags::PRESENT).mfn(), Mfn(0));
        assert!(Pte::try_new(big, PteFlags::PRESENT).is_none());
        let max = Mfn((1 << 40) - 1);
        assert_eq!(Pte::try_new(max, PteFlags::PRESENT).unwrap().mfn(), max);
    }

    #[test]
    fn software_bits_are_not_flags() {
        let p = Pte(0x7ff0_0000_0000_0e01 | 0x5000);
        assert_eq!(p.flags(), PteFlags::PRESENT);
        assert_eq!(p.mfn(), Mfn(5));
        assert_eq!(p.software_bits(), 0x7ff0_0000_0000_0e00);
        let q = p.with_flags(PteFlags::PRESENT | PteFlags::WRITABLE);
        assert_eq!(q.software_bits(), p.software_bits());
        assert_eq!(q.flags(), PteFlags::PRESENT | PteFlags::WRITABLE);
        assert_eq!(q.mfn(), Mfn(5));
        // Software bits are never reserved.
        assert!(!p.has_reserved_bits(1, 36));
    }

    #[test]
    fn reserved_address_bits() {
        assert_eq!(reserved_addr_mask(52), 0);
        assert_eq!(reserved_addr_mask(60), 0);
        assert_eq!(reserved_addr_mask(36), 0x000f_fff0_0000_0000);
        assert_eq!(reserved_addr_mask(0), Pte::ADDR_MASK);
        // The shift form agrees with the clamped definition for every width.
        for m in 0..=200u32 {
            let clamped = m.clamp(PAGE_SHIFT, MAX_PHYS_ADDR_BITS);
            let want = Pte::ADDR_MASK & !((1u64 << clamped) - 1);
            assert_eq!(reserved_addr_mask(m), want, "maxphyaddr {m}");
        }
        let p = Pte(0x0000_0010_0000_0001); // address bit 36
        assert!(p.has_reserved_bits(1, 36));
        assert!(!p.has_reserved_bits(1, 37));
        assert_eq!(p.reserved_bits(4, 36), 1 << 36);
        // Not present: nothing is reserved.
        assert!(!Pte(0x0000_0010_0000_0000).has_reserved_bits(1, 36));
        // Bad level.
        assert_eq!(p.reserved_bits(5, 36), 0);
        assert_eq!(p.reserved_bits(0, 36), 0);
    }

    #[test]
    fn reserved_structural_bits() {
        let ps = PteFlags::PRESENT | PteFlags::HUGE;
        assert!(Pte::new(Mfn(0), ps).has_reserved_bits(4, 52));
        assert!(!Pte::new(Mfn(0), ps).has_reserved_bits(1, 52)); // PAT in L1
        // 2 MiB page at 2 MiB: fine; misaligned: reserved; PAT bit 12 allowed.
        assert!(!Pte::new(Mfn(0x200), ps).has_reserved_bits(2, 52));
        assert!(Pte::new(Mfn(0x201 + 1), ps).has_reserved_bits(2, 52));
        assert!(!Pte::new(Mfn(0x201), ps).has_reserved_bits(2, 52));
        // 1 GiB page.
        assert!(!Pte::new(Mfn(0x40000), ps).has_reserved_bits(3, 52));
        assert!(Pte::new(Mfn(0x40002), ps).has_reserved_bits(3, 52));
        // Without PS the low address bits are an ordinary table address.
        assert!(!Pte::new(Mfn(0x40002), PteFlags::PRESENT).has_reserved_bits(3, 52));
    }
}
