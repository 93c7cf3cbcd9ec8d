//! Host tests: the frames the hypervisor writes for a domain (its shared_info page) can never become page
//! tables or descriptor tables through any hypercall, even after the domain drops its writable mapping.

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::mm::*;
use abi::types::{Maddr, Mfn};
use abi::xen::DOMID_SELF;
use zerocopy::IntoBytes;

use super::Action;
use super::testing::{L1, RW_PAGE, World};
use crate::mm::frame_table::PageType;

const P: u64 = 1;
const W: u64 = 2;
/// domain 1's shared_info frame in the fake world, and the VA the test maps it at (L1 entry 2).
const SHARED: u64 = 15;
const SHARED_VA: u64 = 0x40_2000;
const REQS: u64 = RW_PAGE + 0x100;
const DONE: u64 = RW_PAGE + 0xf00;

fn busy() -> Action {
    Action::Return(Errno::EBUSY.as_ret())
}

fn ma(va: u64) -> Maddr {
    Maddr(10 * 4096 + (va - RW_PAGE))
}

fn mmu1(w: &mut World, ptr: u64, val: u64) -> Action {
    w.mem.write_u64(ma(REQS), ptr);
    w.mem.write_u64(ma(REQS + 8), val);
    w.call(nr::MMU_UPDATE, [REQS, 1, DONE, u64::from(DOMID_SELF), 0])
}

fn ext1(w: &mut World, cmd: u32, arg1: u64) -> Action {
    let op = abi::xen::MmuextOp {
        cmd,
        arg1,
        ..Default::default()
    };
    w.mem.write_bytes(ma(REQS), op.as_bytes());
    w.call(nr::MMUEXT_OP, [REQS, 1, DONE, u64::from(DOMID_SELF), 0])
}

fn uvm(w: &mut World, val: u64) -> Action {
    w.call(nr::UPDATE_VA_MAPPING, [SHARED_VA, val, UVMF_INVLPG, 0, 0])
}

/// The sequence of the report: map shared_info, remap it read-only, then try every way of making it a
/// page table or a descriptor table. Every one is refused and the frame stays the domain's writable page.
#[test]
fn shared_info_cannot_be_typed_as_a_table() {
    let mut w = World::new();
    let shared = Mfn(SHARED);
    assert_eq!(w.dom.shared_info, shared);
    assert_eq!(
        mmu1(&mut w, L1.0 * 4096 + 16, (SHARED << 12) | P | W),
        Action::Return(0)
    );
    assert_eq!(uvm(&mut w, (SHARED << 12) | P), Action::Return(0));
    assert_eq!(w.entry(L1, 2), (SHARED << 12) | P);
    for cmd in [
        MMUEXT_PIN_L1_TABLE,
        MMUEXT_PIN_L2_TABLE,
        MMUEXT_PIN_L3_TABLE,
        MMUEXT_PIN_L4_TABLE,
        MMUEXT_NEW_BASEPTR,
    ] {
        assert_eq!(ext1(&mut w, cmd, SHARED), busy(), "mmuext cmd {cmd}");
    }
    // Linked as an L1 (into the L2, frame 3), as an L2 (L3, frame 2), as an L3 (L4, frame 1).
    for table in [3u64, 2, 1] {
        let ptr = table * 4096 + 8 * 5;
        assert_eq!(
            mmu1(&mut w, ptr, (SHARED << 12) | P),
            busy(),
            "in table {table}"
        );
        assert_eq!(w.entry(Mfn(table), 5), 0);
    }
    // Descriptor tables: set_gdt and update_descriptor are not implemented, so refused outright.
    w.mem.write_u64(ma(REQS), SHARED);
    let enosys = Action::Return(Errno::ENOSYS.as_ret());
    assert_eq!(w.call(nr::SET_GDT, [REQS, 16, 0, 0, 0]), enosys);
    assert_eq!(
        w.call(nr::UPDATE_DESCRIPTOR, [SHARED << 12, 0, 0, 0, 0]),
        enosys
    );
    // The guest cannot drop the hold: unpinning it is not a pin.
    assert_eq!(
        ext1(&mut w, MMUEXT_UNPIN_TABLE, SHARED),
        Action::Return(Errno::EINVAL.as_ret())
    );
    let p = *w.machine.ft.info(shared).unwrap();
    assert_eq!((p.ty, p.type_count, p.refs), (PageType::Writable, 1, 2));
    assert!(p.is_hv_written() && !p.is_validated() && !p.is_pinned());
    // Back to a writable mapping: accepted.
    assert_eq!(uvm(&mut w, (SHARED << 12) | P | W), Action::Return(0));
    let p = *w.machine.ft.info(shared).unwrap();
    assert_eq!((p.ty, p.type_count), (PageType::Writable, 2));
}

/// The other domain's shared_info cannot be touched either (not owned: -EPERM), and unmapping ours
/// entirely still leaves it held.
#[test]
fn unmapped_and_foreign_shared_info() {
    let mut w = World::new();
    assert_eq!(
        ext1(&mut w, MMUEXT_PIN_L1_TABLE, 19),
        Action::Return(Errno::EPERM.as_ret())
    );
    // Never mapped at all (as at boot, where only the hypervisor's mapping exists): still refused.
    assert_eq!(ext1(&mut w, MMUEXT_PIN_L1_TABLE, SHARED), busy());
    assert_eq!(
        w.machine.ft.info(Mfn(SHARED)).unwrap().ty,
        PageType::Writable
    );
}
