//! Page-table entries and the x86_64 4-level walk arithmetic: flags, composition, indices.
//!
//! Only what a PV guest may write is offered: no superpages (the hypervisor refuses PS), no global bit,
//! no caching attributes. Entries carry *machine* frame numbers (the guest's page tables are real ones).

use abi::types::{Maddr, Mfn, PAGE_SHIFT, PAGE_SIZE};

bitflags::bitflags! {
    /// The flag bits of a page-table entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// The entry is valid.
        const PRESENT = 1 << 0;
        /// Writes are allowed (if every level allows them).
        const WRITABLE = 1 << 1;
        /// Ring 3 may use the translation (if every level allows it).
        const USER = 1 << 2;
        /// Set by the CPU on first use.
        const ACCESSED = 1 << 5;
        /// Set by the CPU on first write (leaf entries).
        const DIRTY = 1 << 6;
        /// A large page: refused by the hypervisor; here only to build bad entries on purpose.
        const HUGE = 1 << 7;
        /// Instruction fetches are not allowed.
        const NO_EXECUTE = 1 << 63;
    }
}

/// The machine-address bits of an entry (bits 51:12).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Entries per table.
pub const ENTRIES: usize = 512;
/// The value of an invalid P2M entry (Xen's `INVALID_MFN`), also the M2P value of unowned frames.
pub const INVALID_MFN: u64 = !0;

/// A raw page-table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Pte(pub u64);

impl Pte {
    /// The empty (not present) entry.
    pub const EMPTY: Pte = Pte(0);

    /// An entry pointing at machine frame `mfn` with `flags`.
    pub const fn new(mfn: Mfn, flags: PteFlags) -> Pte {
        Pte(((mfn.0 << PAGE_SHIFT) & ADDR_MASK) | flags.bits())
    }

    /// The machine frame this entry points at.
    pub const fn mfn(self) -> Mfn {
        Mfn((self.0 & ADDR_MASK) >> PAGE_SHIFT)
    }

    /// The flag bits (unknown bits dropped).
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_truncate(self.0)
    }

    /// True if the present bit is set.
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// The same frame with other flags.
    pub const fn with_flags(self, flags: PteFlags) -> Pte {
        Pte::new(self.mfn(), flags)
    }
}

/// A page-table level: 1 (L1, maps 4 KiB pages) to 4 (L4, the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Page table (maps pages).
    L1 = 1,
    /// Page directory.
    L2 = 2,
    /// Page-directory-pointer table.
    L3 = 3,
    /// The root.
    L4 = 4,
}

impl Level {
    /// The level's number (1..=4).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The level below (`None` for L1).
    pub const fn below(self) -> Option<Level> {
        match self {
            Level::L4 => Some(Level::L3),
            Level::L3 => Some(Level::L2),
            Level::L2 => Some(Level::L1),
            Level::L1 => None,
        }
    }

    /// log2 of the bytes one entry of this level covers.
    pub const fn entry_shift(self) -> u32 {
        PAGE_SHIFT + 9 * (self as u32 - 1)
    }
}

/// Index of the entry at `level` that translates `va`.
pub const fn index(va: u64, level: Level) -> usize {
    ((va >> level.entry_shift()) & 0x1ff) as usize
}

/// The machine address of entry `idx` of the table in frame `table`, as `mmu_update` wants it.
pub const fn entry_maddr(table: Mfn, idx: usize) -> Maddr {
    Maddr((table.0 << PAGE_SHIFT) + (idx as u64) * 8)
}

/// True if `va` is canonical (bits 63:47 all equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

/// Sign-extend a 48-bit address (what an L4 slot number and offsets compose to).
pub const fn canonicalize(va: u64) -> u64 {
    (((va << 16) as i64) >> 16) as u64
}

/// The virtual address at the start of L4 slot `slot`.
pub const fn l4_slot_va(slot: usize) -> u64 {
    canonicalize((slot as u64) << Level::L4.entry_shift())
}

/// Bytes per page, as usize.
pub const PAGE_BYTES: usize = PAGE_SIZE as usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_decompose() {
        let p = Pte::new(
            Mfn(0x1234),
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE,
        );
        assert_eq!(p.0, 0x8000_0000_0123_4003);
        assert_eq!(p.mfn(), Mfn(0x1234));
        assert!(p.is_present());
        assert_eq!(
            p.flags(),
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE
        );
        let ro = p.with_flags(PteFlags::PRESENT);
        assert_eq!(ro.0, 0x0123_4001);
        assert!(!Pte::EMPTY.is_present());
        // An MFN wider than 40 bits is cut to the architectural address bits, never into the flags.
        assert_eq!(Pte::new(Mfn(u64::MAX), PteFlags::empty()).0, ADDR_MASK);
    }

    #[test]
    fn walk_arithmetic() {
        let va = 0xffff_ffff_8020_3000;
        assert_eq!(index(va, Level::L4), 511);
        assert_eq!(index(va, Level::L3), 510);
        assert_eq!(index(va, Level::L2), 1);
        assert_eq!(index(va, Level::L1), 3);
        assert_eq!(entry_maddr(Mfn(5), 3), Maddr(0x5018));
        assert_eq!(Level::L4.below(), Some(Level::L3));
        assert_eq!(Level::L1.below(), None);
        assert_eq!(Level::L2.entry_shift(), 21);
        assert_eq!(l4_slot_va(273), 0xffff_8880_0000_0000);
        assert_eq!(l4_slot_va(256), 0xffff_8000_0000_0000);
        assert_eq!(l4_slot_va(1), 0x0000_0080_0000_0000);
        assert!(is_canonical(l4_slot_va(511)));
        assert!(!is_canonical(0x0000_8000_0000_0000));
    }
}
