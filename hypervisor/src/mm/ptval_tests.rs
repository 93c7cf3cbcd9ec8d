//! Unit tests of page-table validation: every rule, every error, and that a refusal changes nothing.
use super::*;
use crate::mm::phys::fake::FakeMachine;
use MmError::*;
use PageType as T;

const D1: u16 = 1;
const D2: u16 = 2;
/// Frames 0..16 belong to dom 1, 16..20 to dom 2, 20..24 to nobody (hypervisor frames).
const NF: u64 = 24;
const HV: u64 = 21;
const HV_L4: &[(usize, u64)] = &[(257, 0x0001_5000 | 1), (300, 0xdead_0001)];
const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::WRITABLE.bits();
const AD: u64 = PteFlags::ACCESSED.bits() | PteFlags::DIRTY.bits();
const PS: u64 = PteFlags::HUGE.bits();
const SOFT_NX: u64 = 0x7ff0_0000_0000_0e00 | PteFlags::NO_EXECUTE.bits();

/// An entry pointing at frame `m`.
fn pte(m: u64, flags: u64) -> u64 {
    (m << 12) | flags
}

fn rsv(level: u32, index: usize) -> MmError {
    ReservedBits { level, index }
}

fn conflict(m: u64, have: PageType, want: PageType) -> MmError {
    let mfn = Mfn(m);
    TypeConflict { mfn, have, want }
}

type TestMm<'a> = Mm<'a, 'static, FakeMachine>;

struct World {
    ft: FrameTable<'static>,
    mem: FakeMachine,
}

impl World {
    fn new() -> World {
        let backing = Box::leak(vec![PageInfo::EMPTY; NF as usize].into_boxed_slice());
        let mut ft = FrameTable::new(backing);
        for i in 0..20 {
            ft.assign(Mfn(i), if i < 16 { D1 } else { D2 }).unwrap();
        }
        let mem = FakeMachine::new(NF as usize);
        World { ft, mem }
    }
    fn mm(&mut self) -> TestMm<'_> {
        let (maxphyaddr, hv_l4) = (36, HV_L4);
        Mm::new(&mut self.ft, &mut self.mem, Policy { maxphyaddr, hv_l4 })
    }
    /// `mod_entry` by dom 1, which must succeed; returns the flush flag.
    fn set_ok(&mut self, t: u64, i: usize, v: u64) -> bool {
        self.mm().mod_entry(Mfn(t), i, v, D1, false).unwrap()
    }
    fn pin_ok(&mut self, m: u64, level: u32) {
        self.mm().pin(Mfn(m), level, D1).unwrap();
    }
    /// Writes memory directly (the guest filling a table before pinning it).
    fn poke(&mut self, t: u64, i: usize, v: u64) {
        self.mem.write_u64(slot(Mfn(t), i), v);
    }
    fn get(&self, t: u64, i: usize) -> u64 {
        self.mem.read_u64(slot(Mfn(t), i))
    }
    fn info(&self, m: u64) -> PageInfo {
        *self.ft.info(Mfn(m)).unwrap()
    }
    fn counts(&self, m: u64) -> (PageType, u32, u32) {
        let p = self.info(m);
        (p.ty, p.type_count, p.refs)
    }
    fn snapshot(&self) -> (Vec<PageInfo>, Vec<u64>) {
        let ft = (0..NF).map(|m| self.info(m)).collect();
        let mem = (0..NF * ENTRIES as u64).map(|k| self.get(k / 512, (k % 512) as usize));
        (ft, mem.collect())
    }
    /// Runs `f`, expects `err`, and checks that nothing changed.
    fn refused<R: fmt::Debug>(
        &mut self,
        err: MmError,
        f: impl FnOnce(&mut TestMm) -> Result<R, MmError>,
    ) {
        let before = self.snapshot();
        assert_eq!(f(&mut self.mm()).unwrap_err(), err);
        assert!(before == self.snapshot(), "failed operation changed state");
    }
    /// The same for `mod_entry`, `pin` and `set_base` (with no old base) by dom 1.
    fn set_err(&mut self, err: MmError, t: u64, i: usize, v: u64) {
        self.refused(err, |m| m.mod_entry(Mfn(t), i, v, D1, false));
    }
    fn pin_err(&mut self, err: MmError, t: u64, level: u32) {
        self.refused(err, |m| m.pin(Mfn(t), level, D1));
    }
    fn base_err(&mut self, err: MmError, t: u64) {
        self.refused(err, |m| m.set_base(None, Mfn(t), D1));
    }
    /// L4 0 → L3 1 → L2 2 → L1 3 → data 4 (RW) and 3 itself (RO).
    fn chain(&mut self) {
        for t in 0..4 {
            self.poke(t, 0, pte(t + 1, P | RW));
        }
        self.poke(3, 1, pte(3, P));
    }
}

#[test]
fn pin_chain_counts_and_hv_slots() {
    let mut w = World::new();
    w.chain();
    w.poke(0, 256, 0x1234_5001); // guest garbage in reserved slots: overwritten, not validated
    w.poke(0, 257, 0x7777_7001);
    w.pin_ok(0, 4);
    assert_eq!(w.counts(0), (T::L4, 1, 1));
    assert_eq!(w.counts(1), (T::L3, 1, 1));
    assert_eq!(w.counts(2), (T::L2, 1, 1));
    assert_eq!(w.counts(3), (T::L1, 1, 2)); // the L2 entry + its own read-only self-map
    assert_eq!(w.counts(4), (T::Writable, 1, 1));
    assert!(w.info(0).is_pinned() && w.info(0).is_validated() && w.info(3).is_validated());
    assert!(!w.info(4).is_validated() && !w.info(1).is_pinned());
    let hv_slots = [w.get(0, 256), w.get(0, 257), w.get(0, 271)];
    assert_eq!(hv_slots, [0, HV_L4[0].1, 0]);
    assert_eq!(w.get(0, 300), 0, "hv entries outside the reserved range");
    // Unpinning drops the last reference: everything is devalidated.
    w.mm().unpin(Mfn(0), D1).unwrap();
    let mut untouched = PageInfo::EMPTY;
    untouched.owner = D1;
    assert!((0..5).all(|m| w.info(m) == untouched));
}

#[test]
fn entry_rules_reserved_bits_and_large_pages() {
    let mut w = World::new();
    for l in 1..=4 {
        w.pin_ok(l as u64, l);
    }
    // An address bit above maxphyaddr (36), at every level.
    for l in 1..=4u32 {
        w.set_err(rsv(l, 3), l as u64, 3, (1 << 40) | pte(5, P));
    }
    // PS: reserved in an L4, a superpage in an L3/L2, PAT (allowed) in an L1.
    w.set_err(rsv(4, 0), 4, 0, pte(3, P | PS));
    for l in [2u32, 3] {
        w.set_err(
            LargePage { level: l, index: 1 },
            l as u64,
            1,
            pte(0x200, P | PS),
        );
    }
    assert!(!w.set_ok(1, 0, pte(5, P | PS)));
    // All-ones garbage: reserved address bits in an L1, a superpage bit first in an L2.
    w.set_err(rsv(1, 7), 1, 7, u64::MAX);
    w.set_err(LargePage { level: 2, index: 7 }, 2, 7, u64::MAX);
    // Software bits and NX are the guest's business.
    w.set_ok(1, 1, pte(6, P | SOFT_NX));
    assert_eq!(w.counts(6), (T::None, 0, 1));
    // Non-present garbage is accepted as-is and takes nothing.
    assert!(!w.set_ok(4, 5, 0xffff_ffff_ffff_fffe));
    assert_eq!(w.get(4, 5), 0xffff_ffff_ffff_fffe);
    assert_eq!(w.counts(15), (T::None, 0, 0));
}

#[test]
fn ownership_foreign_hypervisor_and_out_of_range_frames() {
    let mut w = World::new();
    w.pin_ok(1, 1);
    w.pin_ok(2, 2);
    // Into an L1 (read-only and writable): another domain's, a hypervisor frame, beyond RAM.
    for (target, rw) in [(16, 0), (HV, RW), (NF, 0), (NF + 5, RW)] {
        w.set_err(NotOwned(Mfn(target)), 1, 0, pte(target, P | rw));
    }
    // Into an L2.
    w.set_err(NotOwned(Mfn(17)), 2, 0, pte(17, P));
    w.set_err(NotOwned(Mfn(HV)), 2, 0, pte(HV, P));
    // The table itself must be the caller's, as must anything pinned, unpinned or made the base.
    w.refused(NotOwned(Mfn(1)), |m| m.mod_entry(Mfn(1), 0, 0, D2, false));
    w.pin_err(NotOwned(Mfn(HV)), HV, 1);
    w.pin_err(NotOwned(Mfn(u64::MAX)), u64::MAX, 1);
    w.base_err(NotOwned(Mfn(16)), 16);
    w.refused(NotOwned(Mfn(1)), |m| m.unpin(Mfn(1), D2));
    // NO_OWNER is never a valid caller, even for unowned frames.
    w.refused(NotOwned(Mfn(HV)), |m| m.get_page(Mfn(HV), NO_OWNER));
    // A table with a foreign entry cannot be validated either.
    w.poke(5, 2, pte(18, P));
    w.pin_err(NotOwned(Mfn(18)), 5, 1);
}

#[test]
fn writable_page_tables_are_refused() {
    let mut w = World::new();
    w.pin_ok(1, 1);
    w.pin_ok(2, 2);
    // An L1 mapping itself writable, or another page table; read-only is fine.
    w.set_err(conflict(1, T::L1, T::Writable), 1, 0, pte(1, P | RW));
    w.set_err(conflict(2, T::L2, T::Writable), 1, 0, pte(2, P | RW));
    w.set_ok(1, 0, pte(2, P));
    w.set_ok(1, 1, pte(1, P));
    // A frame mapped writable cannot become a page table.
    w.set_ok(1, 2, pte(7, P | RW));
    w.set_err(conflict(7, T::Writable, T::L1), 2, 0, pte(7, P));
    w.pin_err(conflict(7, T::Writable, T::L4), 7, 4);
    w.base_err(conflict(7, T::Writable, T::L4), 7);
    // A table with a writable self-map fails validation (its type is set before its entries).
    w.poke(8, 4, pte(8, P | RW));
    w.pin_err(conflict(8, T::L1, T::Writable), 8, 1);
    // Asking for PageType::None is meaningless.
    let e = conflict(9, T::None, T::None);
    w.refused(e, |m| m.get_page_type(Mfn(9), T::None, D1));
}

#[test]
fn linear_page_tables_are_refused() {
    let mut w = World::new();
    // L2 → itself (a linear L2): it is being validated as L2, the entry wants an L1.
    w.poke(2, 0, pte(2, P));
    w.pin_err(conflict(2, T::L2, T::L1), 2, 2);
    // L2 → another L2.
    w.poke(2, 0, 0);
    w.pin_ok(2, 2);
    w.pin_ok(5, 2);
    w.set_err(conflict(5, T::L2, T::L1), 2, 0, pte(5, P));
    // L4 → itself (the classic recursive slot).
    w.pin_ok(0, 4);
    w.set_err(conflict(0, T::L4, T::L3), 0, 510, pte(0, P));
    // A deep failure unwinds every level: L4 10 → L3 11 → L2 12 → L1 13, whose entry 4 maps 12 RW.
    w.poke(10, 0, pte(11, P));
    w.poke(11, 0, pte(12, P));
    w.poke(11, 1, pte(14, P));
    w.poke(12, 0, pte(13, P));
    w.poke(13, 0, pte(14, P | RW));
    w.poke(13, 4, pte(12, P | RW));
    w.pin_err(conflict(12, T::L2, T::Writable), 10, 4);
    assert_eq!(w.get(10, 257), 0, "no hypervisor slot written on failure");
}

#[test]
fn mod_entry_table_checks() {
    let mut w = World::new();
    w.set_err(NotPageTable(Mfn(3)), 3, 0, 0);
    w.pin_ok(0, 4);
    w.pin_ok(1, 1);
    w.set_ok(1, 0, pte(3, P | RW));
    w.set_err(NotPageTable(Mfn(3)), 3, 0, 0);
    w.set_err(BadIndex(512), 1, 512, 0);
    w.set_err(BadIndex(usize::MAX), 1, usize::MAX, 0);
    for i in [256, 257, 271] {
        w.set_err(ReservedSlot(i), 0, i, 0);
    }
    // The neighbours of the reserved range are the guest's, and slot 257 of an L1 is ordinary.
    w.set_ok(0, 255, 0);
    w.set_ok(0, 272, 0);
    w.set_ok(1, 257, pte(4, P));
}

#[test]
fn replace_entry_with_itself_and_flush_result() {
    let mut w = World::new();
    w.chain();
    w.pin_ok(0, 4);
    let snap = w.snapshot();
    for t in 0..4 {
        // The only reference to each lower table: dropping it first would devalidate the chain.
        let e = w.get(t, 0);
        assert!(w.set_ok(t, 0, e));
    }
    assert!(snap == w.snapshot());
    // Not present before: no flush needed; present before: flush.
    assert!(!w.set_ok(3, 9, pte(5, P)));
    assert!(w.set_ok(3, 9, 0));
    // Clearing the L2 → L1 entry devalidates L1 3 and frees data frame 4.
    w.set_ok(2, 0, 0);
    assert!((3..=5).all(|m| w.counts(m) == (T::None, 0, 0)));
    // Now frame 4 may become a page table, and 3 may be mapped writable.
    w.set_ok(2, 0, pte(4, P));
    w.set_ok(4, 0, pte(3, P | RW));
    assert_eq!(w.counts(4), (T::L1, 1, 1));
    assert_eq!(w.counts(3), (T::Writable, 1, 1));
}

#[test]
fn preserve_ad() {
    let mut w = World::new();
    let set_ad = |w: &mut World, i, v| w.mm().mod_entry(Mfn(1), i, v, D1, true).unwrap();
    w.pin_ok(1, 1);
    w.set_ok(1, 0, pte(5, P | AD));
    set_ad(&mut w, 0, pte(5, P | RW));
    assert_eq!(w.get(1, 0), pte(5, P | RW | AD));
    w.set_ok(1, 0, pte(5, P));
    assert_eq!(w.get(1, 0), pte(5, P));
    // From a non-present old entry nothing is carried over.
    w.set_ok(1, 1, AD);
    set_ad(&mut w, 1, pte(6, P));
    assert_eq!(w.get(1, 1), pte(6, P));
    assert_eq!(w.counts(5), (T::None, 0, 1));
    assert_eq!(w.counts(6), (T::None, 0, 1));
}

#[test]
fn pin_unpin_and_base_rules() {
    let mut w = World::new();
    w.pin_ok(1, 2);
    w.pin_err(AlreadyPinned(Mfn(1)), 1, 2);
    w.pin_err(conflict(1, T::L2, T::L3), 1, 3);
    w.refused(NotPinned(Mfn(2)), |m| m.unpin(Mfn(2), D1));
    for l in [0, 5, u32::MAX] {
        w.pin_err(NotPageTable(Mfn(2)), 2, l);
    }
    // A table referenced from elsewhere stays validated after unpin; unpinning twice fails.
    w.pin_ok(3, 3);
    w.set_ok(3, 0, pte(1, P));
    assert_eq!(w.counts(1), (T::L2, 2, 2));
    w.mm().unpin(Mfn(1), D1).unwrap();
    assert_eq!(w.counts(1), (T::L2, 1, 1));
    assert!(w.info(1).is_validated() && !w.info(1).is_pinned());
    w.refused(NotPinned(Mfn(1)), |m| m.unpin(Mfn(1), D1));
    // The base must be an L4 (or become one) of the caller's.
    w.base_err(conflict(1, T::L2, T::L4), 1);
    w.pin_ok(5, 1);
    w.set_ok(5, 0, pte(6, P | RW));
    w.base_err(conflict(6, T::Writable, T::L4), 6);
    w.base_err(NotOwned(Mfn(17)), 17);
    w.mm().set_base(None, Mfn(0), D1).unwrap();
    w.mm().set_base(Some(Mfn(0)), Mfn(0), D1).unwrap();
    assert_eq!(w.counts(0), (T::L4, 1, 1));
    // A failed switch keeps the old base.
    w.poke(2, 0, 0x1_0000_0000_0001); // reserved address bits
    w.refused(rsv(4, 0), |m| m.set_base(Some(Mfn(0)), Mfn(2), D1));
    w.poke(2, 0, 0);
    w.mm().set_base(Some(Mfn(0)), Mfn(2), D1).unwrap();
    assert_eq!((w.counts(0), w.counts(2)), ((T::None, 0, 0), (T::L4, 1, 1)));
    assert_eq!(w.get(2, 257), HV_L4[0].1);
}

#[test]
fn count_overflow_and_free_frame() {
    let mut w = World::new();
    w.pin_ok(1, 1);
    w.ft.info_mut(Mfn(5)).unwrap().refs = u32::MAX;
    w.set_err(CountOverflow(Mfn(5)), 1, 0, pte(5, P));
    w.ft.info_mut(Mfn(5)).unwrap().refs = 0;
    // Type count overflow (refs not at the limit).
    w.set_ok(1, 0, pte(5, P | RW));
    w.ft.info_mut(Mfn(5)).unwrap().type_count = u32::MAX;
    w.set_err(CountOverflow(Mfn(5)), 1, 1, pte(5, P | RW));
    w.ft.info_mut(Mfn(5)).unwrap().type_count = 1;
    // Only an unreferenced frame can leave its domain.
    w.refused(InUse(Mfn(1)), |m| m.free_frame(Mfn(1), D1));
    w.refused(InUse(Mfn(5)), |m| m.free_frame(Mfn(5), D1));
    w.refused(NotOwned(Mfn(16)), |m| m.free_frame(Mfn(16), D1));
    w.mm().free_frame(Mfn(6), D1).unwrap();
    assert_eq!(w.info(6), PageInfo::EMPTY);
    w.set_err(NotOwned(Mfn(6)), 1, 1, pte(6, P));
}

#[test]
fn teardown_unwinds_everything() {
    let mut w = World::new();
    w.chain();
    w.pin_ok(0, 4);
    w.mm().set_base(None, Mfn(0), D1).unwrap();
    w.pin_ok(3, 1);
    w.pin_ok(9, 1);
    w.mm().pin(Mfn(16), 1, D2).unwrap();
    let mut released = Vec::new();
    let n = w.mm().teardown(D1, Some(Mfn(0)), |m| released.push(m.0));
    assert_eq!((n, released), (16, (0..16).collect::<Vec<_>>()));
    assert!((0..16).all(|m| w.info(m) == PageInfo::EMPTY));
    assert_eq!(w.counts(16), (T::L1, 1, 1), "other domain untouched");
    // A bogus base (not an L4 of the domain) is ignored.
    assert_eq!(w.mm().teardown(D2, Some(Mfn(0)), |_| {}), 4);
    assert_eq!(w.info(16), PageInfo::EMPTY);
}

#[test]
fn errno_and_display() {
    let m = Mfn(7);
    let busy = [conflict(7, T::L1, T::Writable), InUse(m)];
    let inval = [
        rsv(1, 2),
        LargePage { level: 2, index: 2 },
        ReservedSlot(257),
    ];
    let inval2 = [NotPageTable(m), BadIndex(512), AlreadyPinned(m)];
    let inval3 = [NotPinned(m), CountOverflow(m)];
    assert_eq!(NotOwned(m).errno(), Errno::EPERM);
    assert!(busy.iter().all(|e| e.errno() == Errno::EBUSY));
    let all_inval = inval.iter().chain(&inval2).chain(&inval3);
    assert!(all_inval.clone().all(|e| e.errno() == Errno::EINVAL));
    assert!(all_inval.chain(&busy).all(|e| !format!("{e}").is_empty()));
    let text = format!("{}", busy[0]);
    assert_eq!(text, "frame Mfn(0x7) is typed L1, wanted Writable");
}

/// The shared_info attack: a held frame (the hypervisor writes it) never takes a table type, whether or not
/// the guest maps it writable, and the guest cannot drop the hold.
#[test]
fn hv_held_frame_never_becomes_a_table() {
    let mut w = World::new();
    // L4 0 → L3 1 → L2 2 → L1 3, pinned; frame 5 is the "shared_info" page, mapped writable by L1 3.
    for t in 0..3 {
        w.poke(t, 0, pte(t + 1, P | RW));
    }
    w.poke(3, 0, pte(5, P | RW));
    w.pin_ok(0, 4);
    w.mm().hold_hv_writable(Mfn(5), D1).unwrap();
    assert_eq!(w.counts(5), (T::Writable, 2, 2));
    assert!(w.info(5).is_hv_written() && !w.info(5).is_pinned());
    // Remap it read-only (the first step of the attack): the hold keeps the type.
    assert!(w.set_ok(3, 0, pte(5, P)));
    assert_eq!(w.counts(5), (T::Writable, 1, 2));
    let busy = |want| conflict(5, T::Writable, want);
    for l in 1..=4 {
        w.pin_err(busy(PageType::table(l)), 5, l);
    }
    w.base_err(busy(T::L4), 5);
    // Linked as a lower-level table anywhere in the hierarchy.
    w.set_err(busy(T::L1), 2, 1, pte(5, P));
    w.set_err(busy(T::L2), 1, 1, pte(5, P | RW));
    w.set_err(busy(T::L3), 0, 1, pte(5, P));
    // Fully unmapped: still held, still refused.
    assert!(w.set_ok(3, 0, 0));
    assert_eq!(w.counts(5), (T::Writable, 1, 1));
    w.pin_err(busy(T::L1), 5, 1);
    // The guest cannot undo the hold: unpin, free, a second hold.
    w.refused(NotPinned(Mfn(5)), |m| m.unpin(Mfn(5), D1));
    w.refused(InUse(Mfn(5)), |m| m.free_frame(Mfn(5), D1));
    w.refused(InUse(Mfn(5)), |m| m.hold_hv_writable(Mfn(5), D1));
    // Another domain can neither hold nor release it.
    w.refused(NotOwned(Mfn(5)), |m| m.hold_hv_writable(Mfn(5), D2));
    w.refused(NotOwned(Mfn(5)), |m| m.release_hv_writable(Mfn(5), D2));
    // Writable and read-only mappings keep working.
    w.set_ok(3, 2, pte(5, P | RW));
    w.set_ok(3, 3, pte(5, P));
    assert_eq!(w.counts(5), (T::Writable, 2, 3));
    // Once the hypervisor lets go (and the mappings are gone) it is an ordinary frame again.
    w.set_ok(3, 2, 0);
    w.set_ok(3, 3, 0);
    w.mm().release_hv_writable(Mfn(5), D1).unwrap();
    w.refused(NotPinned(Mfn(5)), |m| m.release_hv_writable(Mfn(5), D1));
    assert_eq!(w.counts(5), (T::None, 0, 0));
    assert_eq!(w.info(5).flags, 0);
    w.pin_ok(5, 1);
}

/// The other order: a frame that is a page table cannot be held (a registration on it is refused).
#[test]
fn hold_of_a_table_is_refused() {
    let mut w = World::new();
    w.pin_ok(6, 1);
    w.refused(conflict(6, T::L1, T::Writable), |m| {
        m.hold_hv_writable(Mfn(6), D1)
    });
    w.refused(NotOwned(Mfn(HV)), |m| m.hold_hv_writable(Mfn(HV), D1));
    w.refused(NotOwned(Mfn(NF)), |m| m.hold_hv_writable(Mfn(NF), D1));
    // Unpinned, it can be.
    w.mm().unpin(Mfn(6), D1).unwrap();
    w.mm().hold_hv_writable(Mfn(6), D1).unwrap();
    assert_eq!(w.counts(6), (T::Writable, 1, 1));
}

/// Teardown drops the hold with every other reference: all counts back to zero, nothing left typed.
#[test]
fn teardown_drops_the_hold() {
    let mut w = World::new();
    w.poke(3, 0, pte(5, P | RW));
    w.pin_ok(3, 1);
    w.mm().hold_hv_writable(Mfn(5), D1).unwrap();
    w.mm().hold_hv_writable(Mfn(17), D2).unwrap();
    assert_eq!(w.mm().teardown(D1, None, |_| {}), 16);
    assert!((0..16).all(|m| w.info(m) == PageInfo::EMPTY));
    assert_eq!(w.counts(17), (T::Writable, 1, 1), "other domain untouched");
    assert_eq!(w.mm().teardown(D2, None, |_| {}), 4);
    assert!((0..NF).all(|m| w.info(m) == PageInfo::EMPTY));
}
