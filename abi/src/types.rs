//! Address and frame newtypes shared by the hypervisor and the guest.
//!
//! Four address spaces meet in a PV system and mixing them up is the classic bug, so each gets its own type:
//! - [`Mfn`] / [`Maddr`]: machine frames and machine (host-physical) addresses, owned by the hypervisor;
//! - [`Pfn`] / [`Gpa`]: the guest's pseudo-physical frames and addresses (indices into its P2M list);
//! - [`Gva`]: guest virtual addresses, translated by the guest's own (validated) page tables.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of a small page / frame.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

newtype!(
    /// Machine frame number: index of a 4 KiB frame of host-physical memory.
    Mfn
);
newtype!(
    /// Machine address: a host-physical byte address.
    Maddr
);
newtype!(
    /// Guest pseudo-physical frame number: index into the domain's P2M list.
    Pfn
);
newtype!(
    /// Guest pseudo-physical byte address.
    Gpa
);
newtype!(
    /// Guest virtual address.
    Gva
);

impl Mfn {
    /// The machine address of the first byte of this frame.
    pub const fn addr(self) -> Maddr {
        Maddr(self.0 << PAGE_SHIFT)
    }
}

impl Maddr {
    /// The frame containing this address.
    pub const fn mfn(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }
    /// Offset of this address within its frame.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl Pfn {
    /// The pseudo-physical address of the first byte of this frame.
    pub const fn addr(self) -> Gpa {
        Gpa(self.0 << PAGE_SHIFT)
    }
}

impl Gpa {
    /// The pseudo-physical frame containing this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

impl Gva {
    /// True if bits 63..47 are all equal (a canonical 48-bit address).
    pub const fn is_canonical(self) -> bool {
        let top = self.0 >> 47;
        top == 0 || top == 0x1_ffff
    }
    /// Offset of this address within its page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
    /// This address rounded down to its page.
    pub const fn page_base(self) -> Gva {
        Gva(self.0 & !(PAGE_SIZE - 1))
    }
    /// Index of the page-table entry at `level` (1 = L1 … 4 = L4) that translates this address.
    pub const fn table_index(self, level: u32) -> usize {
        ((self.0 >> (PAGE_SHIFT + 9 * (level - 1))) & 0x1ff) as usize
    }
    /// `self + off`, or `None` on overflow.
    pub const fn checked_add(self, off: u64) -> Option<Gva> {
        match self.0.checked_add(off) {
            Some(v) => Some(Gva(v)),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical() {
        assert!(Gva(0).is_canonical());
        assert!(Gva(0x0000_7fff_ffff_ffff).is_canonical());
        assert!(!Gva(0x0000_8000_0000_0000).is_canonical());
        assert!(!Gva(0xffff_7fff_ffff_ffff).is_canonical());
        assert!(Gva(0xffff_8000_0000_0000).is_canonical());
        assert!(Gva(u64::MAX).is_canonical());
    }

    #[test]
    fn indices() {
        let va = Gva(0xffff_ffff_8020_3000);
        assert_eq!(va.table_index(4), 511);
        assert_eq!(va.table_index(3), 510);
        assert_eq!(va.table_index(2), 1);
        assert_eq!(va.table_index(1), 3);
        assert_eq!(Mfn(5).addr(), Maddr(0x5000));
        assert_eq!(Maddr(0x5123).mfn(), Mfn(5));
    }
}
