//! Host tests of the memory-management hypercalls (`mmu_update`, `update_va_mapping`, `mmuext_op`,
//! `multicall`, `memory_op`): what they do, and what they refuse.

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::mm::*;
use abi::types::{Maddr, Mfn, Pfn};
use abi::xen::{DOMID_SELF, MulticallEntry};
use zerocopy::IntoBytes;

use super::Action;
use super::testing::{L1, RO_PAGE, RW_PAGE, World};
use crate::mm::frame_table::PageType;
use crate::mm::phys::PhysRead;

const P: u64 = 1;
const W: u64 = 2;
/// Guest address (in the writable test page) where tests put request arrays.
const REQS: u64 = RW_PAGE + 0x100;
/// Guest address of the `done` counter.
const DONE: u64 = RW_PAGE + 0xf00;

fn err(e: Errno) -> Action {
    Action::Return(e.as_ret())
}

/// Guest VA → machine address inside the writable test page (frame 10).
fn ma(va: u64) -> Maddr {
    assert!((RW_PAGE..RW_PAGE + 4096).contains(&va));
    Maddr(10 * 4096 + (va - RW_PAGE))
}

fn pte(table: Mfn, index: u64) -> u64 {
    table.0 * 4096 + index * 8
}

fn put_reqs(w: &mut World, reqs: &[(u64, u64)]) {
    for (i, &(ptr, val)) in reqs.iter().enumerate() {
        w.mem.write_u64(ma(REQS + i as u64 * 16), ptr);
        w.mem.write_u64(ma(REQS + i as u64 * 16 + 8), val);
    }
}

fn done(w: &World) -> u64 {
    w.mem.read_u64(ma(DONE)) & 0xffff_ffff
}

fn mmu_update(w: &mut World, reqs: &[(u64, u64)]) -> Action {
    put_reqs(w, reqs);
    w.call(
        nr::MMU_UPDATE,
        [REQS, reqs.len() as u64, DONE, u64::from(DOMID_SELF), 0],
    )
}

#[test]
fn mmu_update_maps_and_counts() {
    let mut w = World::new();
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2), 0xc000 | P | W)]),
        Action::Return(0)
    );
    assert_eq!(done(&w), 1);
    assert_eq!(w.entry(L1, 2), 0xc000 | P | W);
    assert!(w.dom.flush_tlb);
    assert_eq!(w.machine.ft.info(Mfn(12)).unwrap().ty, PageType::Writable);
    // Unmap again: the writable type goes away with the last writable mapping.
    assert_eq!(mmu_update(&mut w, &[(pte(L1, 2), 0)]), Action::Return(0));
    assert_eq!(w.machine.ft.info(Mfn(12)).unwrap().type_count, 0);
}

#[test]
fn writable_page_tables_are_refused() {
    let mut w = World::new();
    for table in [1u64, 2, 3, 4] {
        assert_eq!(
            mmu_update(&mut w, &[(pte(L1, 2), table << 12 | P | W)]),
            err(Errno::EBUSY),
            "table {table}"
        );
        assert_eq!(done(&w), 0);
    }
    // Read-only is fine, including the L1 mapping itself.
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2), 0x4000 | P)]),
        Action::Return(0)
    );
}

#[test]
fn foreign_free_and_hypervisor_frames_are_refused() {
    let mut w = World::new();
    for frame in [16u64, 40, 0, 63, 1 << 27] {
        assert_eq!(
            mmu_update(&mut w, &[(pte(L1, 2), frame << 12 | P)]),
            err(Errno::EPERM),
            "frame {frame}"
        );
    }
    // Beyond the CPU's physical-address width it is not even a frame number: reserved bits.
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2), 1 << 42 | P)]),
        err(Errno::EINVAL)
    );
    // A page-table frame of another domain cannot be written either.
    assert_eq!(
        mmu_update(&mut w, &[(pte(Mfn(16), 0), 0xc000 | P)]),
        err(Errno::EPERM)
    );
    // Nor can a frame of ours that is not a page table.
    assert_eq!(
        mmu_update(&mut w, &[(pte(Mfn(12), 0), 0xc000 | P)]),
        err(Errno::EINVAL)
    );
}

#[test]
fn a_bad_entry_stops_the_batch_with_an_exact_count() {
    let mut w = World::new();
    let reqs: Vec<(u64, u64)> = (0..8)
        .map(|i| {
            let frame = if i == 4 { 16 } else { 12 + (i % 3) };
            (pte(L1, 2 + i), frame << 12 | P)
        })
        .collect();
    assert_eq!(mmu_update(&mut w, &reqs), err(Errno::EPERM));
    assert_eq!(done(&w), 4);
    for i in 0..4 {
        assert_ne!(w.entry(L1, 2 + i), 0, "entry {i} applied");
    }
    for i in 4..8 {
        assert_eq!(w.entry(L1, 2 + i), 0, "entry {i} not applied");
    }
}

#[test]
fn hostile_arguments() {
    let mut w = World::new();
    // Misaligned entry pointer, unknown command.
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2) | 4, 0)]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2) | 3, 0)]),
        err(Errno::EINVAL)
    );
    // Reserved bits, superpages in an L2, the hypervisor's L4 slots.
    assert_eq!(
        mmu_update(&mut w, &[(pte(L1, 2), 0xc000 | P | 1 << 51)]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        mmu_update(&mut w, &[(pte(Mfn(3), 5), 0x20_0000 | P | 0x80)]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        mmu_update(&mut w, &[(pte(Mfn(1), 257), 0x2000 | P)]),
        err(Errno::EINVAL)
    );
    // Huge counts, another domain, unmapped and non-canonical request arrays.
    let call = |w: &mut World, a| w.call(nr::MMU_UPDATE, a);
    assert_eq!(
        call(&mut w, [REQS, 1 << 32, DONE, u64::from(DOMID_SELF), 0]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        call(&mut w, [REQS, u64::MAX, DONE, u64::from(DOMID_SELF), 0]),
        err(Errno::EINVAL)
    );
    assert_eq!(call(&mut w, [REQS, 1, DONE, 2, 0]), err(Errno::EPERM));
    assert_eq!(
        call(&mut w, [REQS, 1, DONE, 0x1_0000, 0]),
        err(Errno::EPERM)
    );
    // Deviation j: foreign domains are refused to the privileged domain too, for both batch calls.
    w.privileged = true;
    assert_eq!(call(&mut w, [REQS, 1, DONE, 2, 0]), err(Errno::EPERM));
    assert_eq!(
        w.call(nr::MMUEXT_OP, [REQS, 1, DONE, 2, 0]),
        err(Errno::EPERM)
    );
    w.privileged = false;
    for reqs in [
        0x1000,
        0x0000_8000_0000_0000,
        abi::layout::ENTRY_REGION_VA,
        u64::MAX - 8,
    ] {
        assert_eq!(
            call(&mut w, [reqs, 1, DONE, u64::from(DOMID_SELF), 0]),
            err(Errno::EFAULT),
            "{reqs:#x}"
        );
    }
    // A batch running off the end of the mapped memory stops there, with an exact count.
    // (The request maps entry 5, so the page after RO_PAGE, where the second request would be, stays unmapped.)
    w.mem.write_u64(Maddr(11 * 4096 + 0xff0), pte(L1, 5));
    w.mem.write_u64(Maddr(11 * 4096 + 0xff8), 0xc000 | P);
    let last = RO_PAGE + 0xff0;
    assert_eq!(
        call(&mut w, [last, 2, DONE, u64::from(DOMID_SELF), 0]),
        err(Errno::EFAULT)
    );
    assert_eq!(done(&w), 1);
    // A bad `done` pointer is ignored, as in Xen.
    put_reqs(&mut w, &[(pte(L1, 3), 0xd000 | P)]);
    assert_eq!(
        call(&mut w, [REQS, 1, 0x1000, u64::from(DOMID_SELF), 0]),
        Action::Return(0)
    );
}

#[test]
fn preempted_batches_give_the_same_result() {
    let reqs: Vec<(u64, u64)> = (0..10u64)
        .map(|i| (pte(L1, 2 + i % 4), (12 + i % 3) << 12 | P | ((i & 1) * W)))
        .collect();
    let mut whole = World::new();
    assert_eq!(mmu_update(&mut whole, &reqs), Action::Return(0));
    let mut sliced = World::new();
    put_reqs(&mut sliced, &reqs);
    let (a, continuations) = sliced.call_to_end(
        nr::MMU_UPDATE,
        [REQS, reqs.len() as u64, DONE, u64::from(DOMID_SELF), 0],
        3,
    );
    assert_eq!(a, Action::Return(0));
    assert_eq!(continuations, 3);
    assert_eq!(done(&sliced), 10);
    for i in 0..16 {
        assert_eq!(sliced.entry(L1, i), whole.entry(L1, i), "entry {i}");
    }
    for f in 10..15 {
        let (a, b) = (
            whole.machine.ft.info(Mfn(f)).unwrap(),
            sliced.machine.ft.info(Mfn(f)).unwrap(),
        );
        assert_eq!(
            (a.ty, a.type_count, a.refs),
            (b.ty, b.type_count, b.refs),
            "frame {f}"
        );
    }
    // A continuation's first step carries the progress in its arguments.
    let mut w = World::new();
    put_reqs(&mut w, &reqs);
    let Action::Continue(args) = w.call_with_budget(
        nr::MMU_UPDATE,
        [REQS, 10, DONE, u64::from(DOMID_SELF), 0],
        4,
    ) else {
        panic!("expected a continuation");
    };
    assert_eq!(args[0], REQS + 4 * 16);
    assert_eq!(args[1], 6 | MMU_UPDATE_PREEMPTED);
    assert_eq!(done(&w), 4);
}

#[test]
fn machphys_update() {
    let mut w = World::new();
    assert_eq!(
        mmu_update(&mut w, &[((12 << 12) | MMU_MACHPHYS_UPDATE, 7)]),
        Action::Return(0)
    );
    assert_eq!(w.machine.m2p.get(Mfn(12)), Some(Pfn(7)));
    assert_eq!(
        mmu_update(&mut w, &[((16 << 12) | MMU_MACHPHYS_UPDATE, 7)]),
        err(Errno::EPERM)
    );
    assert_eq!(
        mmu_update(&mut w, &[((40 << 12) | MMU_MACHPHYS_UPDATE, 7)]),
        err(Errno::EPERM)
    );
}

#[test]
fn update_va_mapping_rules() {
    let mut w = World::new();
    let uvm = |w: &mut World, va, val, flags| w.call(nr::UPDATE_VA_MAPPING, [va, val, flags, 0, 0]);
    assert_eq!(
        uvm(&mut w, RO_PAGE, 0xc000 | P | W, UVMF_INVLPG | UVMF_ALL),
        Action::Return(0)
    );
    assert_eq!(w.entry(L1, 1), 0xc000 | P | W);
    assert_eq!(
        uvm(&mut w, RO_PAGE, 0x4000 | P | W, UVMF_NONE),
        err(Errno::EBUSY)
    );
    assert_eq!(
        uvm(&mut w, RO_PAGE, 0x10000 | P, UVMF_NONE),
        err(Errno::EPERM)
    );
    for va in [
        0x0000_8000_0000_0000,
        abi::layout::ENTRY_REGION_VA,
        abi::mm::RO_MPT_VIRT_START,
    ] {
        assert_eq!(uvm(&mut w, va, 0, UVMF_NONE), err(Errno::EINVAL), "{va:#x}");
    }
    // No L1 covers this address.
    assert_eq!(
        uvm(&mut w, 0x8000_0000, 0xc000 | P, UVMF_NONE),
        err(Errno::EINVAL)
    );
    for flags in [3, 8, 1 << 40] {
        assert_eq!(
            uvm(&mut w, RO_PAGE, 0, flags),
            err(Errno::EINVAL),
            "flags {flags}"
        );
    }
}

/// `update_va_mapping` takes its L1 path only on a validated L1 of the caller; should the walk end
/// anywhere else (here an L2 entry rewritten behind the validator's back), the general path refuses
/// exactly as before, and nothing changes.
#[test]
fn update_va_mapping_off_an_l1_takes_the_general_path() {
    for (target, want) in [(12u64, Errno::EINVAL), (16, Errno::EPERM)] {
        let mut w = World::new();
        w.mem
            .write_u64(Maddr(3 * 4096 + 2 * 8), (target << 12) | P | W);
        let infos = |w: &World| {
            let ft = &w.machine.ft;
            (0..ft.len() as u64)
                .map(|f| ft.info(Mfn(f)).copied())
                .collect::<Vec<_>>()
        };
        let (before, page) = (infos(&w), w.entry(Mfn(target), 1));
        assert_eq!(
            w.call(
                nr::UPDATE_VA_MAPPING,
                [RO_PAGE, 0xc000 | P, UVMF_INVLPG, 0, 0]
            ),
            err(want),
            "walk ending at frame {target}"
        );
        assert!(infos(&w) == before, "frame table changed");
        assert_eq!(w.entry(Mfn(target), 1), page, "frame {target} written");
    }
}

fn ext(w: &mut World, ops: &[(u32, u64)]) -> Action {
    for (i, &(cmd, arg1)) in ops.iter().enumerate() {
        let op = abi::xen::MmuextOp {
            cmd,
            arg1,
            ..Default::default()
        };
        w.mem.write_bytes(ma(REQS + i as u64 * 24), op.as_bytes());
    }
    w.call(
        nr::MMUEXT_OP,
        [REQS, ops.len() as u64, DONE, u64::from(DOMID_SELF), 0],
    )
}

#[test]
fn mmuext_pin_unpin_and_flush() {
    let mut w = World::new();
    assert_eq!(ext(&mut w, &[(MMUEXT_PIN_L1_TABLE, 13)]), Action::Return(0));
    assert_eq!(
        ext(&mut w, &[(MMUEXT_PIN_L1_TABLE, 13)]),
        err(Errno::EINVAL)
    );
    assert_eq!(ext(&mut w, &[(MMUEXT_PIN_L2_TABLE, 13)]), err(Errno::EBUSY));
    assert_eq!(ext(&mut w, &[(MMUEXT_UNPIN_TABLE, 13)]), Action::Return(0));
    assert_eq!(ext(&mut w, &[(MMUEXT_UNPIN_TABLE, 13)]), err(Errno::EINVAL));
    // A frame mapped writable cannot become a page table; neither can someone else's.
    assert_eq!(ext(&mut w, &[(MMUEXT_PIN_L1_TABLE, 10)]), err(Errno::EBUSY));
    assert_eq!(ext(&mut w, &[(MMUEXT_PIN_L1_TABLE, 16)]), err(Errno::EPERM));
    assert_eq!(
        ext(&mut w, &[(MMUEXT_PIN_L1_TABLE, 1 << 40)]),
        err(Errno::EPERM)
    );
    w.dom.flush_tlb = false;
    assert_eq!(
        ext(
            &mut w,
            &[(MMUEXT_TLB_FLUSH_LOCAL, 0), (MMUEXT_INVLPG_ALL, RW_PAGE)]
        ),
        Action::Return(0)
    );
    assert!(w.dom.flush_tlb);
    assert_eq!(
        ext(&mut w, &[(MMUEXT_INVLPG_LOCAL, 0x0000_8000_0000_0000)]),
        err(Errno::EINVAL)
    );
    assert_eq!(ext(&mut w, &[(99, 0)]), err(Errno::ENOSYS));
    assert_eq!(
        ext(&mut w, &[(MMUEXT_NULL_TEST_MARKER, 0)]),
        err(Errno::ENOSYS)
    );
}

/// An unused command number (between SET_LDT and NEW_USER_BASEPTR).
const MMUEXT_NULL_TEST_MARKER: u32 = 14;

#[test]
fn new_baseptr_rules() {
    let mut w = World::new();
    assert_eq!(ext(&mut w, &[(MMUEXT_NEW_BASEPTR, 16)]), err(Errno::EPERM));
    assert_eq!(
        ext(&mut w, &[(MMUEXT_NEW_BASEPTR, L1.0)]),
        err(Errno::EBUSY)
    );
    assert_eq!(ext(&mut w, &[(MMUEXT_NEW_BASEPTR, 10)]), err(Errno::EBUSY));
    w.mem.write_u64(Maddr(14 * 4096 + 8), 0xc000 | P | 1 << 51);
    assert_eq!(ext(&mut w, &[(MMUEXT_NEW_BASEPTR, 14)]), err(Errno::EINVAL));
    assert_eq!(w.dom.base, Mfn(1));
    // An empty L4 is a valid one; the old base loses its type reference.
    assert_eq!(ext(&mut w, &[(MMUEXT_NEW_BASEPTR, 13)]), Action::Return(0));
    assert_eq!(w.dom.base, Mfn(13));
    assert_eq!(w.machine.ft.info(Mfn(1)).unwrap().type_count, 0);
    assert_eq!(w.machine.ft.info(Mfn(13)).unwrap().ty, PageType::L4);
}

fn put_calls(w: &mut World, calls: &[(u64, [u64; 5])]) {
    for (i, &(op, args)) in calls.iter().enumerate() {
        let mut e = MulticallEntry {
            op,
            result: 0xdead,
            ..Default::default()
        };
        e.args[..5].copy_from_slice(&args);
        w.mem.write_bytes(ma(REQS + i as u64 * 64), e.as_bytes());
    }
}

fn result(w: &World, i: u64) -> i64 {
    w.mem.read_u64(ma(REQS + i * 64 + 8)) as i64
}

#[test]
fn multicall_runs_each_entry() {
    let mut w = World::new();
    put_calls(
        &mut w,
        &[
            (nr::NULL, [0; 5]),
            (nr::XEN_VERSION, [0; 5]),
            (nr::MULTICALL, [REQS, 1, 0, 0, 0]),
            (nr::MMU_UPDATE, [0x1000, 1, 0, u64::from(DOMID_SELF), 0]),
            (9999, [0; 5]),
        ],
    );
    assert_eq!(w.call(nr::MULTICALL, [REQS, 5, 0, 0, 0]), Action::Return(0));
    let want = [
        0,
        1,
        Errno::EINVAL.as_ret(),
        Errno::EFAULT.as_ret(),
        Errno::ENOSYS.as_ret(),
    ];
    for (i, &r) in want.iter().enumerate() {
        assert_eq!(result(&w, i as u64), r, "entry {i}");
    }
    // Hostile arrays.
    assert_eq!(
        w.call(nr::MULTICALL, [0x1000, 1, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    assert_eq!(
        w.call(nr::MULTICALL, [REQS, 1 << 32, 0, 0, 0]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.call(nr::MULTICALL, [RO_PAGE, 1, 0, 0, 0]),
        err(Errno::EFAULT)
    );
}

#[test]
fn a_multicall_leaves_the_callers_argument_registers_as_they_were() {
    // Each entry's arguments are put in the caller's frame while it runs (`HypercallCtx::args`): on
    // every way out (the end, an entry that ends the batch, a hostile array, preemption) the caller's
    // own are back.
    let mut w = World::new();
    put_calls(
        &mut w,
        &[
            (nr::XEN_VERSION, [0, 11, 12, 13, 14]),
            (nr::MMU_UPDATE, [0x1000, 1, 0, u64::from(DOMID_SELF), 0]),
            (nr::SCHED_OP, [0, 21, 22, 23, 24]),
            (nr::NULL, [31, 32, 33, 34, 35]),
        ],
    );
    for (count, budget, want) in [
        (2, super::BUDGET, Action::Return(0)),
        (4, super::BUDGET, Action::Yield),
        (1 << 32, super::BUDGET, err(Errno::EINVAL)),
        (4, 1, Action::Continue([REQS + 64, 3, 0, 0, 0])),
    ] {
        let args = [REQS, count, 0x77, 0x88, 0x99];
        assert_eq!(w.call_with_budget(nr::MULTICALL, args, budget), want);
        assert_eq!(
            super::args_of(&w.regs),
            args,
            "count {count}, budget {budget}"
        );
    }
    assert_eq!(
        result(&w, 1),
        Errno::EFAULT.as_ret(),
        "the entry's own arguments"
    );
}

#[test]
fn a_yield_ends_the_batch() {
    let mut w = World::new();
    put_calls(
        &mut w,
        &[
            (nr::NULL, [0; 5]),
            (nr::SCHED_OP, [0; 5]),
            (nr::NULL, [0; 5]),
        ],
    );
    assert_eq!(w.call(nr::MULTICALL, [REQS, 3, 0, 0, 0]), Action::Yield);
    assert_eq!(
        (result(&w, 0), result(&w, 1), result(&w, 2)),
        (0, 0, 0xdead)
    );
}

#[test]
fn multicall_continues_a_preempted_entry() {
    // One multicall entry: an mmu_update of 6 requests (at REQS + 0x400), with a budget of 4 per entry.
    let mut w = World::new();
    let reqs: Vec<(u64, u64)> = (0..6u64)
        .map(|i| (pte(L1, 2 + i), (12 + i % 3) << 12 | P))
        .collect();
    for (i, &(p, v)) in reqs.iter().enumerate() {
        w.mem.write_u64(ma(REQS + 0x400 + i as u64 * 16), p);
        w.mem.write_u64(ma(REQS + 0x400 + i as u64 * 16 + 8), v);
    }
    put_calls(
        &mut w,
        &[
            (
                nr::MMU_UPDATE,
                [REQS + 0x400, 6, DONE, u64::from(DOMID_SELF), 0],
            ),
            (nr::NULL, [0; 5]),
        ],
    );
    let (a, continuations) = w.call_to_end(nr::MULTICALL, [REQS, 2, 0, 0, 0], 4);
    assert_eq!(a, Action::Return(0));
    assert!(continuations >= 1);
    assert_eq!((result(&w, 0), result(&w, 1)), (0, 0));
    assert_eq!(done(&w), 6);
    for i in 0..6 {
        assert_ne!(w.entry(L1, 2 + i), 0);
    }
}

/// A multicall whose first entry remaps the page holding the entry array itself (L1 entry 0, `RW_PAGE`,
/// frame 10) to `new_pte`; returns the multicall's action.
fn multicall_remapping_its_array(w: &mut World, new_pte: u64) -> Action {
    w.mem.write_u64(ma(REQS + 0x400), pte(L1, 0));
    w.mem.write_u64(ma(REQS + 0x408), new_pte);
    put_calls(
        w,
        &[(
            nr::MMU_UPDATE,
            [REQS + 0x400, 1, 0, u64::from(DOMID_SELF), 0],
        )],
    );
    w.call(nr::MULTICALL, [REQS, 1, 0, 0, 0])
}

#[test]
fn multicall_result_follows_a_remapped_array() {
    // The entry was read from frame 10; its call moves the array's page to frame 12: the result goes to
    // the page the guest now has there, not to the frame the entry was read from.
    let mut w = World::new();
    let a = multicall_remapping_its_array(&mut w, 0xc000 | P | W);
    assert_eq!(a, Action::Return(0));
    assert_eq!(w.entry(L1, 0), 0xc000 | P | W);
    assert_eq!(w.mem.read_u64(Maddr(12 * 4096 + (REQS - RW_PAGE) + 8)), 0);
    assert_eq!(result(&w, 0), 0xdead, "the old frame is not written");
}

#[test]
fn multicall_never_writes_a_page_its_entry_made_read_only() {
    // The entry's call makes the array's own page read-only (a page the guest could now turn into a page
    // table): the result cannot be written back, and the frame keeps what the guest put there.
    let mut w = World::new();
    let a = multicall_remapping_its_array(&mut w, 0xa000 | P);
    assert_eq!(a, err(Errno::EFAULT));
    assert_eq!(w.entry(L1, 0), 0xa000 | P);
    assert_eq!(result(&w, 0), 0xdead);
    assert_eq!(
        w.machine.ft.info(Mfn(10)).unwrap().type_count,
        0,
        "no writable mapping of frame 10 is left"
    );
}

fn reservation(w: &mut World, cmd: u64, mfns: &[u64], order: u32, domid: u16) -> Action {
    for (i, &m) in mfns.iter().enumerate() {
        w.mem.write_u64(ma(REQS + 0x200 + i as u64 * 8), m);
    }
    let r = XenMemoryReservation {
        extent_start: REQS + 0x200,
        nr_extents: mfns.len() as u64,
        extent_order: order,
        domid,
        ..Default::default()
    };
    w.mem.write_bytes(ma(REQS), r.as_bytes());
    w.call(nr::MEMORY_OP, [cmd, REQS, 0, 0, 0])
}

#[test]
fn reservations_round_trip() {
    let mut w = World::new();
    w.mem.write_u64(ma(REQS + 0x300), u64::from(DOMID_SELF));
    let current = |w: &mut World| {
        w.call(
            nr::MEMORY_OP,
            [XENMEM_CURRENT_RESERVATION, REQS + 0x300, 0, 0, 0],
        )
    };
    assert_eq!(current(&mut w), Action::Return(14));
    assert_eq!(
        w.call(
            nr::MEMORY_OP,
            [XENMEM_MAXIMUM_RESERVATION, REQS + 0x300, 0, 0, 0]
        ),
        Action::Return(16)
    );
    let free_before = w.machine.frames.free_count();
    // 14 is unused; 10 is mapped; 15 is shared_info; 16 is foreign: the call stops at the first refusal.
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_DECREASE_RESERVATION,
            &[14, 10, 15],
            0,
            DOMID_SELF
        ),
        Action::Return(1)
    );
    assert_eq!(
        reservation(&mut w, XENMEM_DECREASE_RESERVATION, &[15], 0, DOMID_SELF),
        Action::Return(0)
    );
    assert_eq!(
        reservation(&mut w, XENMEM_DECREASE_RESERVATION, &[16], 0, DOMID_SELF),
        Action::Return(0)
    );
    assert_eq!(w.machine.ft.owner(Mfn(14)), None);
    assert_eq!(w.machine.frames.free_count(), free_before + 1);
    assert_eq!(current(&mut w), Action::Return(13));
    // Back up to the maximum of 16, not beyond.
    assert_eq!(
        reservation(&mut w, XENMEM_INCREASE_RESERVATION, &[0; 5], 0, DOMID_SELF),
        Action::Return(3)
    );
    for i in 0..3 {
        let mfn = Mfn(w.mem.read_u64(ma(REQS + 0x200 + i * 8)));
        assert_eq!(w.machine.ft.owner(mfn), Some(1), "new frame {mfn:?}");
    }
    assert_eq!(current(&mut w), Action::Return(16));
    // Hostile: another domain, orders, bad pointers.
    assert_eq!(
        reservation(&mut w, XENMEM_DECREASE_RESERVATION, &[12], 0, 2),
        err(Errno::EPERM)
    );
    assert_eq!(
        reservation(&mut w, XENMEM_DECREASE_RESERVATION, &[12], 1, DOMID_SELF),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.call(
            nr::MEMORY_OP,
            [XENMEM_DECREASE_RESERVATION, 0x1000, 0, 0, 0]
        ),
        err(Errno::EFAULT)
    );
    assert_eq!(
        w.call(nr::MEMORY_OP, [XENMEM_CURRENT_RESERVATION, 0x1000, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    assert_eq!(
        w.call(nr::MEMORY_OP, [63, REQS, 0, 0, 0]),
        err(Errno::ENOSYS)
    );
    assert_eq!(
        w.call(
            nr::MEMORY_OP,
            [XENMEM_MACHPHYS_MAPPING | 1 << 6, REQS, 0, 0, 0]
        ),
        err(Errno::ENOSYS)
    );
}

#[test]
fn machphys_mapping_describes_the_m2p() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::MEMORY_OP, [XENMEM_MACHPHYS_MAPPING, REQS, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.mem.read_u64(ma(REQS)), RO_MPT_VIRT_START);
    assert_eq!(w.mem.read_u64(ma(REQS + 8)), RO_MPT_VIRT_START + 64 * 8);
    assert_eq!(w.mem.read_u64(ma(REQS + 16)), 63);
    assert_eq!(
        w.call(nr::MEMORY_OP, [XENMEM_MACHPHYS_MAPPING, RO_PAGE, 0, 0, 0]),
        err(Errno::EFAULT)
    );
}

#[test]
fn preempted_reservations_continue() {
    let mut w = World::new();
    assert_eq!(
        reservation(
            &mut w,
            XENMEM_DECREASE_RESERVATION,
            &[12, 13, 14],
            0,
            DOMID_SELF
        ),
        Action::Return(3)
    );
    let mut w2 = World::new();
    for (i, m) in [12u64, 13, 14].iter().enumerate() {
        w2.mem.write_u64(ma(REQS + 0x200 + i as u64 * 8), *m);
    }
    let r = XenMemoryReservation {
        extent_start: REQS + 0x200,
        nr_extents: 3,
        domid: DOMID_SELF,
        ..Default::default()
    };
    w2.mem.write_bytes(ma(REQS), r.as_bytes());
    let (a, n) = w2.call_to_end(
        nr::MEMORY_OP,
        [XENMEM_DECREASE_RESERVATION, REQS, 0, 0, 0],
        1,
    );
    assert_eq!(a, Action::Return(3));
    assert_eq!(n, 2);
    assert_eq!(w2.dom.tot_pages, w.dom.tot_pages);
}

#[test]
fn a_batch_that_unmaps_its_own_requests_reads_only_the_callers_frame() {
    // Request 0 removes the only mapping of the page that holds the requests (and `done`). The requests
    // are fetched through a per-page cursor, so 1 and 2 still come from that page's frame (10): the
    // caller's own frame, which cannot change hands inside mmu_update. Nothing else is read or written,
    // `done` (now unmapped) is not reported, and the frame's counts stay exact.
    let mut w = World::new();
    let before = *w.machine.ft.info(Mfn(10)).unwrap();
    let reqs = [
        (pte(L1, 0), 0),
        (pte(L1, 2), 0xc000 | P | W),
        (pte(L1, 3), 0xd000 | P),
    ];
    assert_eq!(mmu_update(&mut w, &reqs), Action::Return(0));
    assert_eq!(w.entry(L1, 0), 0);
    assert_eq!(w.entry(L1, 2), 0xc000 | P | W);
    assert_eq!(w.entry(L1, 3), 0xd000 | P);
    let after = *w.machine.ft.info(Mfn(10)).unwrap();
    assert_eq!(after.owner, before.owner);
    assert_eq!(
        (after.refs, after.type_count),
        (before.refs - 1, before.type_count - 1)
    );
    assert_eq!(done(&w), 0, "done lives in the unmapped page: not written");
    // A later call reads through a fresh walk: the page is gone, so it faults.
    assert_eq!(
        w.call(nr::MMU_UPDATE, [REQS, 1, 0, u64::from(DOMID_SELF), 0]),
        err(Errno::EFAULT)
    );
}
