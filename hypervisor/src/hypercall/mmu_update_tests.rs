//! Host tests of `mmu_update`'s request loop: one translation per page of the request array, requests
//! across page boundaries, and exactly one work unit per request read (also when one fails).

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::mm::MMU_UPDATE_PREEMPTED;
use abi::types::{Maddr, Mfn};
use abi::xen::{DOMID_SELF, MulticallEntry};
use zerocopy::IntoBytes;

use super::super::Action;
use super::super::testing::{L1, RO_PAGE, RW_PAGE, World};
use crate::mm::phys::PhysRead;

const P: u64 = 1;
const W: u64 = 2;
const SELF: u64 = DOMID_SELF as u64;

/// Guest VA in the two test pages (frames 10 and 11) → machine address.
fn ma(va: u64) -> Maddr {
    match va {
        RW_PAGE..0x40_1000 => Maddr(10 * 4096 + (va - RW_PAGE)),
        RO_PAGE..0x40_2000 => Maddr(11 * 4096 + (va - RO_PAGE)),
        _ => panic!("{va:#x} is not in a test page"),
    }
}

/// The request writing `val` into entry `index` of the test L1.
fn req(index: u64, val: u64) -> (u64, u64) {
    (L1.0 * 4096 + index * 8, val)
}

/// Writes requests at guest address `at` (through the machine, so also into the read-only page).
fn put(w: &mut World, at: u64, reqs: &[(u64, u64)]) {
    let bytes: Vec<u8> = reqs
        .iter()
        .flat_map(|&(p, v)| [p.to_le_bytes(), v.to_le_bytes()].concat())
        .collect();
    for (k, b) in bytes.iter().enumerate() {
        w.mem.write_bytes(ma(at + k as u64), &[*b]);
    }
}

fn update(w: &mut World, at: u64, n: u64, done: u64) -> Action {
    w.call(nr::MMU_UPDATE, [at, n, done, SELF, 0])
}

#[test]
fn a_request_across_a_page_boundary_and_the_page_after_it() {
    // Request 0 straddles the two test pages (its `ptr` in frame 10, its `val` in frame 11); requests 1
    // and 2 lie in the read-only page (reading requests needs no write access).
    let mut w = World::new();
    let at = RW_PAGE + 0xff8;
    let reqs = [
        req(5, 0xc000 | P),
        req(6, 0xd000 | P | W),
        req(7, 0xe000 | P),
    ];
    put(&mut w, at, &reqs);
    let done = RW_PAGE + 0x800;
    assert_eq!(update(&mut w, at, 3, done), Action::Return(0));
    assert_eq!(w.mem.read_u64(ma(done)) as u32, 3);
    for &(ptr, val) in &reqs {
        assert_eq!(w.entry(L1, (ptr & 0xfff) / 8), val);
    }
    // A straddling request whose second half is unmapped (0x40_2000: entry 2): nothing applied.
    assert_eq!(w.entry(L1, 2), 0);
    let last = RO_PAGE + 0xff8;
    w.mem.write_u64(ma(last), req(8, 0xc000 | P).0);
    assert_eq!(
        update(&mut w, last, 1, done),
        Action::Return(Errno::EFAULT.as_ret())
    );
    assert_eq!(w.mem.read_u64(ma(done)) as u32, 0);
    assert_eq!(w.entry(L1, 8), 0);
}

#[test]
fn a_batch_over_two_pages_applies_every_request_in_order() {
    // 300 requests from the start of the writable page: 256 in it, 44 in the read-only page. They rewrite
    // four entries in turn, so the final entries are those of the last four requests, and the counts of
    // the frames they map must match exactly four mappings.
    let mut w = World::new();
    let frames = [12u64, 13, 14];
    let reqs: Vec<(u64, u64)> = (0..300u64)
        .map(|i| {
            req(
                2 + i % 4,
                frames[(i % 3) as usize] << 12 | P | ((i & 1) * W),
            )
        })
        .collect();
    put(&mut w, RW_PAGE, &reqs);
    assert_eq!(update(&mut w, RW_PAGE, 300, 0), Action::Return(0));
    for (k, &(_, val)) in reqs[296..].iter().enumerate() {
        assert_eq!(w.entry(L1, 2 + k as u64), val);
    }
    for f in frames {
        let maps = reqs[296..].iter().filter(|r| r.1 >> 12 == f);
        let writable = maps.clone().filter(|r| r.1 & W != 0).count() as u32;
        let p = w.machine.ft.info(Mfn(f)).unwrap();
        assert_eq!(
            (p.refs, p.type_count),
            (maps.count() as u32, writable),
            "frame {f}"
        );
    }
    // Preempted in the middle of the first page and again in the second: the continuation points at the
    // next request each time, and the result is the same.
    let mut sliced = World::new();
    put(&mut sliced, RW_PAGE, &reqs);
    let Action::Continue(args) =
        sliced.call_with_budget(nr::MMU_UPDATE, [RW_PAGE, 300, 0, SELF, 0], 100)
    else {
        panic!("expected a continuation");
    };
    assert_eq!(args[..2], [RW_PAGE + 100 * 16, 200 | MMU_UPDATE_PREEMPTED]);
    let (a, n) = sliced.call_to_end(nr::MMU_UPDATE, args, 170);
    assert_eq!((a, n), (Action::Return(0), 1));
    for i in 0..16 {
        assert_eq!(sliced.entry(L1, i), w.entry(L1, i), "entry {i}");
    }
    for f in frames {
        assert_eq!(sliced.machine.ft.info(Mfn(f)), w.machine.ft.info(Mfn(f)));
    }
}

#[test]
fn a_failing_request_spends_the_work_units_of_the_requests_read() {
    // A multicall: an mmu_update of 8 requests whose request 4 is refused (a frame of another domain),
    // then a NULL. The multicall spends one unit per entry, the mmu_update one per request it read (5):
    // 7 in all. With 7 units both entries run; with 6 the NULL is left for a continuation.
    let entries = |w: &mut World| {
        let at = RW_PAGE + 0x400;
        let reqs: Vec<(u64, u64)> = (0..8)
            .map(|i| req(2 + i, if i == 4 { 16 } else { 12 } << 12 | P))
            .collect();
        put(w, at, &reqs);
        for (i, (op, args)) in [(nr::MMU_UPDATE, [at, 8, 0, SELF, 0]), (nr::NULL, [0; 5])]
            .into_iter()
            .enumerate()
        {
            let mut e = MulticallEntry {
                op,
                result: 0xdead,
                ..Default::default()
            };
            e.args[..5].copy_from_slice(&args);
            w.mem.write_bytes(ma(RW_PAGE + i as u64 * 64), e.as_bytes());
        }
    };
    let result = |w: &World, i: u64| w.mem.read_u64(ma(RW_PAGE + i * 64 + 8)) as i64;
    let mut w = World::new();
    entries(&mut w);
    let call = [RW_PAGE, 2, 0, 0, 0];
    assert_eq!(
        w.call_with_budget(nr::MULTICALL, call, 7),
        Action::Return(0)
    );
    assert_eq!((result(&w, 0), result(&w, 1)), (Errno::EPERM.as_ret(), 0));
    assert_eq!(w.entry(L1, 5), 12 << 12 | P);
    assert_eq!(w.entry(L1, 6), 0);
    let mut w = World::new();
    entries(&mut w);
    assert_eq!(
        w.call_with_budget(nr::MULTICALL, call, 6),
        Action::Continue([RW_PAGE + 64, 1, 0, 0, 0])
    );
    assert_eq!(
        (result(&w, 0), result(&w, 1)),
        (Errno::EPERM.as_ret(), 0xdead)
    );
}

#[test]
fn mmuext_op_walks_again_after_a_new_base() {
    // Two operations in one page: NEW_BASEPTR to an empty L4 (frame 13), then a TLB flush. The second is
    // read through the new base, under which the page is not mapped: EFAULT, after one applied.
    let mut w = World::new();
    let at = RW_PAGE + 0x200;
    for (i, (cmd, arg1)) in [
        (abi::mm::MMUEXT_NEW_BASEPTR, 13),
        (abi::mm::MMUEXT_TLB_FLUSH_LOCAL, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let op = abi::xen::MmuextOp {
            cmd,
            arg1,
            ..Default::default()
        };
        w.mem.write_bytes(ma(at + i as u64 * 24), op.as_bytes());
    }
    assert_eq!(
        w.call(nr::MMUEXT_OP, [at, 2, 0, SELF, 0]),
        Action::Return(Errno::EFAULT.as_ret())
    );
    assert_eq!(w.dom.base, Mfn(13));
}

/// `update_va_mapping`'s one-branch argument test refuses exactly what the rules refuse: a disallowed
/// address, or flags with bits outside the flush type and `UVMF_ALL`, or flush type 3.
#[test]
fn update_va_mapping_flags_are_decoded_as_the_rules_say() {
    use abi::mm::{UVMF_ALL, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG};
    let rule = |flags: u64| {
        flags & !(UVMF_FLUSHTYPE_MASK | UVMF_ALL) == 0 && flags & UVMF_FLUSHTYPE_MASK <= UVMF_INVLPG
    };
    let mut flags: Vec<u64> = (0..130).collect();
    flags.extend((3..64).flat_map(|b| [1u64 << b, (1 << b) | 2, (1 << b) | 4, (1 << b) - 1]));
    flags.push(u64::MAX);
    for va in [RO_PAGE, 0x0000_8000_0000_0000, abi::layout::ENTRY_REGION_VA] {
        for &f in &flags {
            let want = crate::regs::va_allowed(va) && rule(f);
            assert_eq!(
                super::decode_uvm([va, 0, f, 0, 0]).is_ok(),
                want,
                "va {va:#x} flags {f:#x}"
            );
        }
    }
}
