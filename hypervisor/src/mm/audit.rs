//! The isolation audit: walk a guest address space and prove the hard rule holds for it.
//!
//! Every present leaf mapping must be one of:
//! - a frame the domain owns (its memory, its shared_info page), never writable if it is one of the
//!   address space's own page-table frames;
//! - in the entry slot: an entry-region frame mapped read-only, or an entry/IST stack frame (read-write,
//!   no-execute);
//! - in the M2P slot: a frame of the machine-to-physical table, read-only and no-execute.
//!
//! Anything else (a hypervisor frame, another domain's frame, a writable page table, a superpage) is a
//! violation. The hypervisor runs this on every domain it builds and refuses to run one that fails; the
//! host tests feed it hostile tables.

use abi::types::{Gva, Maddr, Mfn};

use super::phys::PhysRead;
use super::pte::{Pte, PteFlags};

/// What a domain may see of the hypervisor: the entry slot and the frames behind it, and the read-only
/// machine-to-physical table.
pub struct HvMappings<'a> {
    /// L4 slot of the M2P table.
    pub m2p_slot: usize,
    /// The M2P table's frames, `first..first + count` (must be mapped read-only, no-execute).
    pub m2p_frames: (Mfn, u64),
    /// L4 slot of the entry region.
    pub entry_slot: usize,
    /// Frames of the entry region (must be mapped read-only).
    pub entry_frames: &'a [Mfn],
    /// Frames of the entry and IST stacks (may be writable, must be no-execute).
    pub stack_frames: &'a [Mfn],
}

/// Why an address space breaks the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A mapping of a frame the domain does not own, outside the entry slot.
    ForeignFrame {
        /// Where.
        va: Gva,
        /// What.
        mfn: Mfn,
    },
    /// A writable mapping of one of the address space's page-table frames.
    WritablePageTable {
        /// Where.
        va: Gva,
        /// What.
        mfn: Mfn,
    },
    /// In the entry slot: a frame that is neither entry region nor entry stack, or one mapped with the
    /// wrong permissions.
    BadEntryMapping {
        /// Where.
        va: Gva,
        /// What.
        mfn: Mfn,
    },
    /// A superpage (PS) entry.
    LargePage {
        /// Where.
        va: Gva,
    },
    /// More page-table frames than the audit can track.
    TooManyTables,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Violation::ForeignFrame { va, mfn } => write!(f, "{va:?} maps foreign frame {mfn:?}"),
            Violation::WritablePageTable { va, mfn } => {
                write!(f, "{va:?} maps page table {mfn:?} writable")
            }
            Violation::BadEntryMapping { va, mfn } => {
                write!(f, "{va:?} maps {mfn:?} wrongly in the entry slot")
            }
            Violation::LargePage { va } => write!(f, "{va:?} is a superpage"),
            Violation::TooManyTables => f.write_str("too many page-table frames to audit"),
        }
    }
}

/// Counts of what the audit saw in a compliant address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Leaf mappings of the domain's own frames.
    pub guest_pages: u64,
    /// Of those, mappings of the domain's page-table frames (all read-only).
    pub page_table_pages: u64,
    /// Read-only mappings of the entry region.
    pub entry_pages: u64,
    /// Mappings of the entry and IST stacks.
    pub stack_pages: u64,
    /// Read-only mappings of the M2P table.
    pub m2p_pages: u64,
}

const MAX_TABLES: usize = 1024;

fn sign_extend(va: u64) -> Gva {
    Gva(if va & (1 << 47) != 0 {
        va | 0xffff_0000_0000_0000
    } else {
        va
    })
}

/// Audit the address space rooted at `l4` for domain `domid`; `owner` tells who owns a frame.
pub fn audit(
    mem: &impl PhysRead,
    l4: Mfn,
    domid: u16,
    owner: impl Fn(Mfn) -> Option<u16>,
    hv: &HvMappings<'_>,
) -> Result<AuditReport, Violation> {
    // Pass 1: the set of page-table frames of the guest part (outside the hypervisor's slots).
    let mut tables: heapless::Vec<Mfn, MAX_TABLES> = heapless::Vec::new();
    tables.push(l4).map_err(|_| Violation::TooManyTables)?;
    let mut report = AuditReport::default();
    let slots = [hv.entry_slot, hv.m2p_slot];
    // (The L1 tables' entries are not read: they name no table.)
    walk(mem, l4, 4, 2, 0, &slots, &mut |_va, pte, level, in_hv| {
        if level > 1 && in_hv.is_none() && !pte.has(PteFlags::HUGE) {
            tables
                .push(pte.mfn())
                .map_err(|_| Violation::TooManyTables)?;
        }
        Ok(())
    })?;
    // Sorted, so that each leaf's "is it a page table?" is a binary search.
    tables.sort_unstable_by_key(|t| t.0);
    // Pass 2: classify every leaf.
    walk(mem, l4, 4, 1, 0, &slots, &mut |va, pte, level, in_hv| {
        if level > 1 {
            if pte.has(PteFlags::HUGE) {
                return Err(Violation::LargePage { va });
            }
            return Ok(());
        }
        let mfn = pte.mfn();
        let writable = pte.has(PteFlags::WRITABLE);
        let nx = pte.has(PteFlags::NO_EXECUTE);
        match in_hv {
            Some(slot) if slot == hv.m2p_slot => {
                let (first, n) = hv.m2p_frames;
                if !(first.0..first.0 + n).contains(&mfn.0) || writable || !nx {
                    return Err(Violation::BadEntryMapping { va, mfn });
                }
                report.m2p_pages += 1;
            }
            Some(_) => {
                if hv.entry_frames.contains(&mfn) && !writable {
                    report.entry_pages += 1;
                } else if hv.stack_frames.contains(&mfn) && nx {
                    report.stack_pages += 1;
                } else {
                    return Err(Violation::BadEntryMapping { va, mfn });
                }
            }
            None => {
                if owner(mfn) != Some(domid) {
                    return Err(Violation::ForeignFrame { va, mfn });
                }
                if tables.binary_search_by_key(&mfn.0, |t| t.0).is_ok() {
                    if writable {
                        return Err(Violation::WritablePageTable { va, mfn });
                    }
                    report.page_table_pages += 1;
                }
                report.guest_pages += 1;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// Visit every present entry below `table` (at `level`) in the tables of levels down to `lowest`, calling
/// `f(va, pte, level, hv_slot)` where `hv_slot` is the L4 slot if the entry lies in one of the
/// hypervisor's `hv_slots`.
fn walk(
    mem: &impl PhysRead,
    table: Mfn,
    level: u32,
    lowest: u32,
    base: u64,
    hv_slots: &[usize],
    f: &mut impl FnMut(Gva, Pte, u32, Option<usize>) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let shift = 12 + 9 * (level - 1);
    for i in 0..512u64 {
        let pte = Pte(mem.read_u64(Maddr(table.addr().0 + i * 8)));
        if !pte.is_present() {
            continue;
        }
        let va_raw = base | (i << shift);
        let va = sign_extend(va_raw);
        let slot = ((va_raw >> 39) & 0x1ff) as usize;
        f(va, pte, level, hv_slots.contains(&slot).then_some(slot))?;
        if level > lowest && !pte.has(PteFlags::HUGE) {
            walk(mem, pte.mfn(), level - 1, lowest, va_raw, hv_slots, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::FrameMem;
    use crate::mm::phys::fake::FakeMachine;

    const P: u64 = 1;
    const W: u64 = 2;
    const NX: u64 = 1 << 63;

    fn put(m: &mut FakeMachine, t: u64, i: usize, v: u64) {
        m.frame_mut(Mfn(t))[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Guest (domain 1) owns frames 1..=9: L4 1, L3 2, L2 3, L1 4, data 5 (RW), L1 4 mapped RO at index 1.
    /// The entry slot (257) uses hypervisor frames 20 (L3), 21 (L2), 22 (L1), entry frame 23, stack 24.
    fn setup() -> (FakeMachine, impl Fn(Mfn) -> Option<u16>) {
        let mut m = FakeMachine::new(32);
        put(&mut m, 1, 0, 0x2000 | P | W);
        put(&mut m, 2, 0, 0x3000 | P | W);
        put(&mut m, 3, 0, 0x4000 | P | W);
        put(&mut m, 4, 0, 0x5000 | P | W | NX);
        put(&mut m, 4, 1, 0x4000 | P | NX);
        put(&mut m, 1, 257, 0x14000 | P | W);
        put(&mut m, 20, 0, 0x15000 | P | W);
        put(&mut m, 21, 0, 0x16000 | P | W);
        put(&mut m, 22, 0, 0x17000 | P);
        put(&mut m, 22, 256, 0x18000 | P | W | NX);
        // M2P: slot 256 -> L3 25 -> L2 27 -> L1 28 -> frames 26 (and nothing else).
        put(&mut m, 1, 256, 0x19000 | P | W);
        put(&mut m, 25, 0, 0x1b000 | P | W);
        put(&mut m, 27, 0, 0x1c000 | P | W);
        put(&mut m, 28, 0, 0x1a000 | P | NX);
        (m, |f: Mfn| (1..=9).contains(&f.0).then_some(1))
    }

    const HV: HvMappings<'static> = HvMappings {
        entry_slot: 257,
        entry_frames: &[Mfn(23)],
        stack_frames: &[Mfn(24)],
        m2p_slot: 256,
        m2p_frames: (Mfn(26), 2),
    };

    #[test]
    fn compliant_space() {
        let (m, owner) = setup();
        let r = audit(&m, Mfn(1), 1, owner, &HV).unwrap();
        assert_eq!(
            r,
            AuditReport {
                guest_pages: 2,
                page_table_pages: 1,
                entry_pages: 1,
                stack_pages: 1,
                m2p_pages: 1
            }
        );
    }

    #[test]
    fn violations_are_found() {
        // A writable mapping of the guest's own L1.
        let (mut m, owner) = setup();
        put(&mut m, 4, 1, 0x4000 | P | W);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::WritablePageTable { mfn: Mfn(4), .. })
        ));
        // A hypervisor frame mapped in the guest half.
        let (mut m, owner) = setup();
        put(&mut m, 4, 2, 0x1f000 | P);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::ForeignFrame { mfn: Mfn(31), .. })
        ));
        // The entry region mapped writable.
        let (mut m, owner) = setup();
        put(&mut m, 22, 0, 0x17000 | P | W);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::BadEntryMapping { .. })
        ));
        // An executable stack.
        let (mut m, owner) = setup();
        put(&mut m, 22, 256, 0x18000 | P | W);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::BadEntryMapping { .. })
        ));
        // Some other hypervisor frame in the entry slot.
        let (mut m, owner) = setup();
        put(&mut m, 22, 300, 0x1e000 | P | NX);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::BadEntryMapping { mfn: Mfn(30), .. })
        ));
        // The M2P mapped writable, or something else in the M2P slot.
        let (mut m, owner) = setup();
        put(&mut m, 28, 0, 0x1a000 | P | W | NX);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::BadEntryMapping { mfn: Mfn(26), .. })
        ));
        let (mut m, owner) = setup();
        put(&mut m, 28, 1, 0x5000 | P | NX);
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::BadEntryMapping { mfn: Mfn(5), .. })
        ));
        // A superpage.
        let (mut m, owner) = setup();
        put(&mut m, 3, 5, 0x20_0000 | P | (1 << 7));
        assert!(matches!(
            audit(&m, Mfn(1), 1, owner, &HV),
            Err(Violation::LargePage { .. })
        ));
        // Another domain auditing the same tables does not own them.
        let (m, owner) = setup();
        assert!(matches!(
            audit(&m, Mfn(1), 2, owner, &HV),
            Err(Violation::ForeignFrame { .. })
        ));
    }
}
