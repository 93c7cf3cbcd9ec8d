//! Canonical page tables for save images (pure): every present entry's machine frame becomes the owner's
//! pfn on save ([`canonicalize`]) and a pfn becomes the new domain's frame on restore
//! ([`uncanonicalize`]), as Xen's save format does. Only the hypervisor knows which frames are page tables
//! (the frame table's types), so only it can do this.
//!
//! The rules: an entry that is not present is kept as it is (the hardware and the validator ignore it);
//! the hypervisor's L4 slots (`RESERVED_L4_FIRST..=RESERVED_L4_LAST`) are written as zero (validation on
//! restore fills them with the new hypervisor's entries); the flag and software bits are kept; the
//! domain's shared-info frame, which is no pfn of the domain, is named by [`SHARED_INFO_PFN`]. A present
//! entry naming a frame that is not the domain's (none can: validation refuses foreign frames) or a frame
//! without a pfn is refused on save; a pfn the image does not hold is refused on restore. Whatever an image
//! says, the restored tables go through the validator before anything uses them.

use abi::layout::{RESERVED_L4_FIRST, RESERVED_L4_LAST};
pub use abi::save::SHARED_INFO_PFN;
use abi::types::Mfn;

use crate::mm::pte::Pte;

/// Entries per table.
pub const ENTRIES: usize = 512;

/// Why a table could not be (un)canonicalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanonError {
    /// Save: entry `slot` names a frame that is not the domain's or has no pfn.
    NoPfn {
        /// The entry.
        slot: usize,
        /// What it names.
        mfn: u64,
    },
    /// Restore: entry `slot` names a pfn the image does not hold (or beyond the address field).
    NoFrame {
        /// The entry.
        slot: usize,
        /// What it names.
        pfn: u64,
    },
}

impl core::fmt::Display for CanonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CanonError::NoPfn { slot, mfn } => {
                write!(
                    f,
                    "entry {slot} maps frame {mfn:#x}, which has no pfn of the domain"
                )
            }
            CanonError::NoFrame { slot, pfn } => {
                write!(
                    f,
                    "entry {slot} names pfn {pfn:#x}, which the image does not hold"
                )
            }
        }
    }
}

fn with_frame(e: u64, frame: u64) -> u64 {
    (e & !Pte::ADDR_MASK) | ((frame << 12) & Pte::ADDR_MASK)
}

fn reserved(level: u32, slot: usize) -> bool {
    level == 4 && (RESERVED_L4_FIRST..=RESERVED_L4_LAST).contains(&slot)
}

/// Rewrite every present entry of a level-`level` table in place: `frame(slot, frame)` gives the entry's
/// new frame number; the hypervisor's reserved L4 slots become empty.
fn rewrite(
    level: u32,
    table: &mut [u64; ENTRIES],
    frame: impl Fn(usize, u64) -> Result<u64, CanonError>,
) -> Result<(), CanonError> {
    for (slot, e) in table.iter_mut().enumerate() {
        if reserved(level, slot) {
            *e = 0;
            continue;
        }
        let pte = Pte(*e);
        if pte.is_present() {
            *e = with_frame(*e, frame(slot, pte.mfn().0)?);
        }
    }
    Ok(())
}

/// Rewrite a level-`level` table in place from machine frames to pfns: `pfn_of(mfn)` is the pfn of one
/// of the domain's frames (`None` if `mfn` is not the domain's or has no pfn), `shared_info` the domain's
/// shared-info frame. On error the table is partly rewritten (it is a copy).
pub fn canonicalize(
    level: u32,
    table: &mut [u64; ENTRIES],
    pfn_of: impl Fn(Mfn) -> Option<u64>,
    shared_info: Mfn,
) -> Result<(), CanonError> {
    rewrite(level, table, |slot, mfn| {
        if Mfn(mfn) == shared_info {
            Ok(SHARED_INFO_PFN)
        } else {
            pfn_of(Mfn(mfn)).ok_or(CanonError::NoPfn { slot, mfn })
        }
    })
}

/// The inverse: rewrite a canonical table in place from pfns to the new domain's frames (`mfn_of(pfn)`,
/// `None` for a pfn the image does not hold; `shared_info` for [`SHARED_INFO_PFN`]).
pub fn uncanonicalize(
    level: u32,
    table: &mut [u64; ENTRIES],
    mfn_of: impl Fn(u64) -> Option<Mfn>,
    shared_info: Mfn,
) -> Result<(), CanonError> {
    rewrite(level, table, |slot, pfn| {
        if pfn == SHARED_INFO_PFN {
            Ok(shared_info.0)
        } else {
            mfn_of(pfn)
                .map(|m| m.0)
                .ok_or(CanonError::NoFrame { slot, pfn })
        }
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A fake frame table: the domain's pfns `0..n` live in the old frames `old[pfn]` and are restored into
    /// `new[pfn]`; frame 7 is shared_info before, 9 after; frames 1000.. belong to nobody.
    struct World {
        old: Vec<u64>,
        new: Vec<u64>,
    }

    impl World {
        fn new(rng: &mut Rng, n: usize) -> World {
            let mut old: Vec<u64> = (0..n as u64).map(|i| 10 + i * 3).collect();
            let new: Vec<u64> = (0..n as u64).map(|i| 5000 + i * 7).collect();
            for i in (1..n).rev() {
                old.swap(i, rng.below(i as u64 + 1) as usize);
            }
            World { old, new }
        }
        fn pfn_of(&self) -> impl Fn(Mfn) -> Option<u64> + '_ {
            let inv: BTreeMap<u64, u64> = self
                .old
                .iter()
                .enumerate()
                .map(|(p, &m)| (m, p as u64))
                .collect();
            move |m: Mfn| inv.get(&m.0).copied()
        }
        fn mfn_of(&self) -> impl Fn(u64) -> Option<Mfn> + '_ {
            |p: u64| self.new.get(p as usize).map(|&m| Mfn(m))
        }
    }

    const OLD_SI: Mfn = Mfn(7);
    const NEW_SI: Mfn = Mfn(9);

    /// A random table of `level` whose present entries name the domain's frames or its shared info.
    fn table(rng: &mut Rng, w: &World, level: u32) -> [u64; ENTRIES] {
        let mut t = [0u64; ENTRIES];
        for e in t.iter_mut() {
            let flags = rng.next() & !Pte::ADDR_MASK;
            *e = match rng.below(4) {
                0 => rng.next() & !1, // not present: anything
                1 => with_frame(flags | 1, OLD_SI.0),
                _ => with_frame(flags | 1, w.old[rng.below(w.old.len() as u64) as usize]),
            };
        }
        let _ = level;
        t
    }

    #[test]
    fn round_trip_maps_every_entry_to_the_same_pfns_new_frame() {
        let mut rng = Rng(0xc0ffee);
        for round in 0..200 {
            let n = 1 + rng.below(300) as usize;
            let w = World::new(&mut rng, n);
            let level = 1 + (round % 4) as u32;
            let orig = table(&mut rng, &w, level);
            let mut t = orig;
            canonicalize(level, &mut t, w.pfn_of(), OLD_SI).unwrap();
            let canon = t;
            uncanonicalize(level, &mut t, w.mfn_of(), NEW_SI).unwrap();
            let pfn_of = w.pfn_of();
            for slot in 0..ENTRIES {
                if reserved(level, slot) {
                    assert_eq!((canon[slot], t[slot]), (0, 0), "hypervisor slots are zero");
                    continue;
                }
                let (o, n) = (Pte(orig[slot]), Pte(t[slot]));
                assert_eq!(orig[slot] & !Pte::ADDR_MASK, t[slot] & !Pte::ADDR_MASK);
                if !o.is_present() {
                    assert_eq!(orig[slot], t[slot], "not-present entries are kept");
                    assert_eq!(orig[slot], canon[slot]);
                } else if o.mfn() == OLD_SI {
                    assert_eq!(Pte(canon[slot]).mfn().0, SHARED_INFO_PFN);
                    assert_eq!(n.mfn(), NEW_SI);
                } else {
                    let pfn = pfn_of(o.mfn()).unwrap();
                    assert_eq!(Pte(canon[slot]).mfn().0, pfn, "canonical entries hold pfns");
                    assert_eq!(n.mfn().0, w.new[pfn as usize]);
                }
            }
        }
    }

    #[test]
    fn a_foreign_frame_is_refused_on_save_and_an_unknown_pfn_on_restore() {
        let mut rng = Rng(5);
        let w = World::new(&mut rng, 16);
        let mut t = table(&mut rng, &w, 1);
        t[33] = with_frame(0x63, 1000);
        assert_eq!(
            canonicalize(1, &mut t, w.pfn_of(), OLD_SI),
            Err(CanonError::NoPfn {
                slot: 33,
                mfn: 1000
            })
        );
        let mut c = [0u64; ENTRIES];
        c[2] = with_frame(0x3, 16);
        assert_eq!(
            uncanonicalize(2, &mut c, w.mfn_of(), NEW_SI),
            Err(CanonError::NoFrame { slot: 2, pfn: 16 })
        );
        // Any pfn an image may hold, hostile or not, either maps to a frame of the image or is refused.
        for _ in 0..1000 {
            let mut h = [0u64; ENTRIES];
            for e in h.iter_mut() {
                *e = rng.next();
            }
            let mut out = h;
            match uncanonicalize(3, &mut out, w.mfn_of(), NEW_SI) {
                Ok(()) => {
                    for (slot, e) in out.iter().enumerate() {
                        if Pte(*e).is_present() {
                            let m = Pte(*e).mfn().0;
                            assert!(m == NEW_SI.0 || w.new.contains(&m), "slot {slot}");
                        }
                    }
                }
                Err(CanonError::NoFrame { slot, pfn }) => {
                    assert!(Pte(h[slot]).is_present());
                    assert!(pfn >= 16 && pfn != SHARED_INFO_PFN);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn hypervisor_slots_of_an_l4_are_dropped_both_ways() {
        let mut rng = Rng(9);
        let w = World::new(&mut rng, 4);
        let mut t = [0u64; ENTRIES];
        t[RESERVED_L4_FIRST] = with_frame(0x63, 123_456);
        t[RESERVED_L4_LAST] = u64::MAX;
        canonicalize(4, &mut t, w.pfn_of(), OLD_SI).unwrap();
        assert!(t.iter().all(|&e| e == 0));
        t[RESERVED_L4_FIRST + 1] = with_frame(0x63, 99_999);
        uncanonicalize(4, &mut t, w.mfn_of(), NEW_SI).unwrap();
        assert!(t.iter().all(|&e| e == 0));
        // Below level 4 the same slots are ordinary entries.
        t[RESERVED_L4_FIRST] = with_frame(0x63, 99_999);
        assert!(uncanonicalize(1, &mut t, w.mfn_of(), NEW_SI).is_err());
    }
}
