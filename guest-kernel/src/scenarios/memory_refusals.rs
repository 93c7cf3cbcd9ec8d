//! Memory-management scenarios, part 2: what the hypervisor must refuse (writable page tables, foreign and
//! hypervisor frames, self-mapping L1s, pinning writable frames, bad base pointers, a bad entry in the
//! middle of a batch), each next to the accepted variant so a refusal is not mistaken for "nothing works".

use abi::errno::Errno;
use abi::types::{Mfn, Pfn};
use abi::xen::MmuUpdate;

use super::memory::{HV_MFN, Probe, check, expect, foreign_frame, mm_env, mmu1, must};
use crate::boot::platform;
use crate::mm::kernel::KernelEnv;
use crate::mm::physmap::leaf_flags;
use crate::mm::pte::{Level, Pte, PteFlags, entry_maddr};
use crate::mm::{AddressSpace, Batch, MmEnv, MmError, Prot};
use crate::platform::xen_pv::normal_update;
use crate::println;
use crate::xtf::{Outcome, Results};

const RW: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::NO_EXECUTE);
const RO: PteFlags = PteFlags::PRESENT.union(PteFlags::NO_EXECUTE);

/// A writable mapping of one of the guest's own page tables is refused; a read-only one is accepted.
pub fn pt_writable(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let Some(probe) = Probe::new(&env, r) else {
        return;
    };
    let (l4_pfn, l4) = env.kernel_base();
    let physmap_l1 = Mfn(probe.entry.0 >> 12);
    for (name, table) in [("the kernel's L4", l4), ("a physmap L1", physmap_l1)] {
        println!("{name}: machine frame {:#x}", table.0);
        let (done, res) = mmu1(probe.entry, Pte::new(table, RW).0);
        expect(r, "mmu_update: writable mapping", res, Err(Errno::EBUSY));
        check(r, "  nothing applied", done == 0);
        expect(
            r,
            "update_va_mapping: writable mapping",
            probe.remap(Pte::new(table, RW).0),
            Err(Errno::EBUSY),
        );
        expect(
            r,
            "update_va_mapping: read-only mapping",
            probe.remap(Pte::new(table, RO).0),
            Ok(()),
        );
        let (done, res) = mmu1(probe.entry, Pte::new(table, RO).0);
        expect(r, "mmu_update: read-only mapping", res, Ok(()));
        check(r, "  one applied", done == 1);
    }
    // The probe maps the physmap L1 read-only now: its entry for the probe is this very mapping.
    let idx = (probe.entry.0 & 0xfff) as usize / 8;
    check(
        r,
        "the read-only mapping shows the table",
        Pte(probe.read(idx)).mfn() == physmap_l1,
    );
    check(
        r,
        "the kernel's L4 reads the same through the physmap",
        env.read_entry(l4_pfn, 511) != 0,
    );
    probe.release(&env, r);
}

/// Mapping a frame of the hypervisor or of another domain is refused with -EPERM.
pub fn map_foreign(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let Some(probe) = Probe::new(&env, r) else {
        return;
    };
    let foreign = foreign_frame(&env);
    match foreign {
        Some(m) => println!(
            "machine frame {:#x} belongs to someone else (M2P says pfn {:#x})",
            m.0,
            env.m2p(m).unwrap_or(0)
        ),
        None => println!(
            "no frame of another domain found in {} M2P entries",
            env.m2p_len()
        ),
    }
    let targets = [
        ("the hypervisor's image", Some(HV_MFN)),
        ("another domain's frame", foreign),
    ];
    for (name, target) in targets {
        let Some(m) = target else { continue };
        for (how, flags) in [("read-only", RO), ("writable", RW)] {
            let pte = Pte::new(m, flags).0;
            let (done, res) = mmu1(probe.entry, pte);
            expect(
                r,
                &alloc::format!("mmu_update: {how} mapping of {name}"),
                res,
                Err(Errno::EPERM),
            );
            check(r, "  nothing applied", done == 0);
            expect(
                r,
                &alloc::format!("update_va_mapping: {how} mapping of {name}"),
                probe.remap(pte),
                Err(Errno::EPERM),
            );
        }
    }
    check(
        r,
        "the probe's entry still maps its own page",
        Pte(probe.entry_value(&env)).mfn() == probe.mfn,
    );
    probe.release(&env, r);
    if foreign.is_none() {
        r.report(Outcome::Skip);
    }
}

/// An L1 entry that maps the L1 itself writable is refused; read-only is accepted.
pub fn l1_selfref(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    // In a fresh address space: an L1 of a user page.
    let Some(mut a) = must(r, "AddressSpace::new", AddressSpace::new(&env)) else {
        return;
    };
    let va = 0x40_0000;
    if must(r, "map a page", a.map_zeroed(&env, va, Prot::WRITE))
        .and_then(|_| must(r, "flush", a.flush(&env)))
        .is_none()
    {
        let _ = a.destroy(&env);
        return;
    }
    let (l1_pfn, l1) = a.table(&env, Level::L1, va).expect("the L1 exists");
    let user = PteFlags::USER;
    let at = entry_maddr(l1, 5);
    let (done, res) = mmu1(at, Pte::new(l1, RW | user).0);
    expect(r, "user L1 maps itself writable", res, Err(Errno::EBUSY));
    check(
        r,
        "  nothing applied",
        done == 0 && env.read_entry(l1_pfn, 5) == 0,
    );
    let (_, res) = mmu1(at, Pte::new(l1, RO | user).0);
    expect(r, "user L1 maps itself read-only", res, Ok(()));
    check(
        r,
        "  the entry is there",
        Pte(env.read_entry(l1_pfn, 5)).mfn() == l1,
    );
    let (_, res) = mmu1(at, 0);
    expect(r, "remove the self-mapping", res, Ok(()));
    must(r, "destroy", a.destroy(&env));

    // In the kernel: the physmap L1 that maps the probe page.
    let Some(probe) = Probe::new(&env, r) else {
        return;
    };
    let physmap_l1 = Mfn(probe.entry.0 >> 12);
    let (_, res) = mmu1(probe.entry, Pte::new(physmap_l1, RW).0);
    expect(r, "physmap L1 maps itself writable", res, Err(Errno::EBUSY));
    expect(
        r,
        "  the same through update_va_mapping",
        probe.remap(Pte::new(physmap_l1, RW).0),
        Err(Errno::EBUSY),
    );
    let (_, res) = mmu1(probe.entry, Pte::new(physmap_l1, RO).0);
    expect(r, "physmap L1 maps itself read-only", res, Ok(()));
    probe.release(&env, r);
}

/// Zero a page, make it read-only in the physmap (so it can become a table).
fn make_ro(env: &KernelEnv, pfn: Pfn, r: &mut Results) -> bool {
    let (_, res) = mmu1(
        env.physmap_entry(pfn),
        Pte::new(env.pfn_to_mfn(pfn), leaf_flags(true)).0,
    );
    expect(r, "make the page read-only in the physmap", res, Ok(()));
    res.is_ok()
}

/// Make a page writable in the physmap again (it must not be a table any more).
fn make_rw(env: &KernelEnv, pfn: Pfn, r: &mut Results) -> bool {
    let (_, res) = mmu1(
        env.physmap_entry(pfn),
        Pte::new(env.pfn_to_mfn(pfn), leaf_flags(false)).0,
    );
    expect(r, "make the page writable again", res, Ok(()));
    res.is_ok()
}

fn zeroed_page(env: &KernelEnv, r: &mut Results) -> Option<Pfn> {
    let p = must(r, "allocate", env.alloc_page().ok_or(MmError::OutOfMemory))?;
    env.zero_frame(p);
    Some(p)
}

/// Pinning a frame that is mapped writable is refused.
pub fn pin_writable(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let Some(p) = zeroed_page(&env, r) else {
        return;
    };
    let m = env.pfn_to_mfn(p);
    for level in [Level::L1, Level::L2, Level::L3, Level::L4] {
        expect(
            r,
            &alloc::format!("pin a writable frame as {level:?}"),
            platform().pin_table(level, m),
            Err(Errno::EBUSY),
        );
    }
    if !make_ro(&env, p, r) {
        return;
    }
    expect(
        r,
        "pin it as L1 once read-only",
        platform().pin_table(Level::L1, m),
        Ok(()),
    );
    expect(
        r,
        "pin it twice",
        platform().pin_table(Level::L1, m),
        Err(Errno::EINVAL),
    );
    let (_, res) = mmu1(env.physmap_entry(p), Pte::new(m, leaf_flags(false)).0);
    expect(r, "map the pinned L1 writable", res, Err(Errno::EBUSY));
    expect(r, "unpin", platform().unpin_table(m), Ok(()));
    expect(
        r,
        "unpin again",
        platform().unpin_table(m),
        Err(Errno::EINVAL),
    );
    if make_rw(&env, p, r) {
        env.free_page(p);
    }
}

/// Bad NEW_BASEPTR requests are refused and the kernel keeps its base.
pub fn baseptr_bad(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let base = env.current_base();
    let Some(p) = zeroed_page(&env, r) else {
        return;
    };
    let Some(other) = zeroed_page(&env, r) else {
        return;
    };
    let m = env.pfn_to_mfn(p);
    let switch = |mfn: Mfn| platform().switch_address_space(mfn.0);

    expect(
        r,
        "NEW_BASEPTR to a writable frame",
        switch(m),
        Err(Errno::EBUSY),
    );
    if !make_ro(&env, p, r) {
        return;
    }
    expect(
        r,
        "pin it as an L1",
        platform().pin_table(Level::L1, m),
        Ok(()),
    );
    expect(
        r,
        "NEW_BASEPTR to a pinned L1",
        switch(m),
        Err(Errno::EBUSY),
    );
    expect(r, "unpin it", platform().unpin_table(m), Ok(()));
    if !make_rw(&env, p, r) {
        return;
    }
    // A would-be L4 whose entry 0 is a superpage: garbage for an L4.
    let garbage = Pte::new(env.pfn_to_mfn(other), RW | PteFlags::HUGE).0;
    env.write_entry(p, 0, garbage);
    if !make_ro(&env, p, r) {
        return;
    }
    expect(
        r,
        "NEW_BASEPTR to a frame holding a garbage entry",
        switch(m),
        Err(Errno::EINVAL),
    );
    expect(
        r,
        "NEW_BASEPTR to the hypervisor's image",
        switch(HV_MFN),
        Err(Errno::EPERM),
    );
    match foreign_frame(&env) {
        Some(f) => expect(
            r,
            &alloc::format!("NEW_BASEPTR to another domain's frame {:#x}", f.0),
            switch(f),
            Err(Errno::EPERM),
        ),
        None => println!("  (no frame of another domain found; that case is skipped)"),
    }
    // Still on the old base: the recorded base is unchanged and switching to it explicitly works.
    check(
        r,
        "the recorded base is unchanged",
        env.current_base() == base,
    );
    expect(
        r,
        "NEW_BASEPTR to the kernel's own L4 still works",
        switch(base),
        Ok(()),
    );
    if make_rw(&env, p, r) {
        env.free_page(p);
    }
    env.free_page(other);
}

/// An `mmu_update` batch of 8 whose 5th entry is bad: done == 4, entries 1-4 applied, 6-8 not.
pub fn batch_bad_middle(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let Some(mut a) = must(r, "AddressSpace::new", AddressSpace::new(&env)) else {
        return;
    };
    let va = 0x40_0000;
    if must(r, "map a page", a.map_zeroed(&env, va, Prot::empty()))
        .and_then(|_| must(r, "flush", a.flush(&env)))
        .is_none()
    {
        let _ = a.destroy(&env);
        return;
    }
    let (l1_pfn, l1) = a.table(&env, Level::L1, va).expect("the L1 exists");
    let mut pages = [Pfn(0); 8];
    for p in &mut pages {
        *p = env.alloc_page().expect("a free page");
    }
    let leaf = |p: Pfn| Pte::new(env.pfn_to_mfn(p), RO | PteFlags::USER).0;
    let mut reqs = [MmuUpdate::default(); 8];
    for (i, q) in reqs.iter_mut().enumerate() {
        *q = normal_update(entry_maddr(l1, 8 + i), Pte(leaf(pages[i])));
    }
    reqs[4].val = Pte::new(HV_MFN, RO | PteFlags::USER).0;
    let (done, res) = platform().update_page_tables(&reqs);
    expect(r, "the batch fails", res, Err(Errno::EPERM));
    check(r, &alloc::format!("done == 4 (got {done})"), done == 4);
    let entries: [u64; 8] = core::array::from_fn(|i| env.read_entry(l1_pfn, 8 + i));
    check(
        r,
        "entries 1-4 applied",
        (0..4).all(|i| entries[i] & !PteFlags::ACCESSED.bits() == reqs[i].val),
    );
    check(
        r,
        "entries 5-8 not applied",
        entries[4..].iter().all(|&e| e == 0),
    );

    // The same through the batch queue: the error names entry 4 of 8.
    let mut b = Batch::new();
    for q in reqs {
        let _ = b.queue(&env, q);
    }
    let err = b.flush(&env);
    check(
        r,
        &alloc::format!("Batch::flush reports the exact entry: {err:?}"),
        matches!(
            err,
            Err(MmError::Batch {
                index: 4,
                len: 8,
                errno: Errno::EPERM,
                ..
            })
        ),
    );
    let mut clear = Batch::new();
    for i in 0..8 {
        let _ = clear.set_entry(&env, l1, 8 + i, Pte::EMPTY);
    }
    must(r, "clear the entries", clear.flush(&env));
    must(r, "destroy", a.destroy(&env));
    for p in pages {
        env.free_page(p);
    }
}
