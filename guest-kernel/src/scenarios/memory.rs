//! Memory-management scenarios (issue "PV memory management"), part 1: the memory manager at work
//! (`as-churn`, `reservation`, `multicall-mix`, `million-batch`, `ticker`) and the helpers shared with
//! part 2 ([`super::memory_refusals`]: what the hypervisor must refuse).

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SIZE, Pfn};
use abi::xen::{MmuUpdate, MulticallEntry};

use crate::boot::platform;
use crate::mm::kernel::{self, KernelEnv};
use crate::mm::physmap::leaf_flags;
use crate::mm::pte::{INVALID_MFN, Level, Pte, PteFlags, entry_maddr};
use crate::mm::{AddressSpace, MmEnv, MmError, Prot, physmap_va};
use crate::platform::xen_pv::normal_update;
use crate::platform::xen_pv::{MappingFlush, multicall};
use crate::println;
use crate::xtf::{Outcome, Results};

/// The memory manager, or an ERROR result (the test cannot run without it).
pub(super) fn mm_env(r: &mut Results) -> Option<KernelEnv> {
    let env = kernel::env();
    if env.is_none() {
        println!("the memory manager did not come up at boot (see the mm: lines above)");
        r.report(Outcome::Error);
    }
    env
}

fn errno_str(res: Result<(), Errno>) -> &'static str {
    match res {
        Ok(()) => "0",
        Err(e) => e.name(),
    }
}

/// Check a hypercall's result against the expected one.
pub(super) fn expect(r: &mut Results, what: &str, got: Result<(), Errno>, want: Result<(), Errno>) {
    if r.check(got == want) {
        println!("  ok   {what}: {}", errno_str(got));
    } else {
        println!(
            "  FAIL {what}: got {}, expected {}",
            errno_str(got),
            errno_str(want)
        );
    }
}

/// Check a condition, printing it either way.
pub(super) fn check(r: &mut Results, what: &str, ok: bool) -> bool {
    if r.check(ok) {
        println!("  ok   {what}");
    } else {
        println!("  FAIL {what}");
    }
    ok
}

/// Unwrap a memory-manager result; on error (already reported by the memory manager) record a FAILURE:
/// the operations the scenarios use this for are legitimate and must be accepted.
pub(super) fn must<T>(r: &mut Results, what: &str, res: Result<T, MmError>) -> Option<T> {
    match res {
        Ok(v) => Some(v),
        Err(e) => {
            println!("  FAIL {what}: {e}");
            r.report(Outcome::Failure);
            None
        }
    }
}

/// One `mmu_update` request, sent alone: `(done, result)`.
pub(super) fn mmu1(at: Maddr, val: u64) -> (usize, Result<(), Errno>) {
    platform().update_page_tables(&[MmuUpdate { ptr: at.0, val }])
}

/// A page of this domain used as a probe: its physmap slot (an existing kernel L1 entry) is remapped to
/// whatever a test wants to map, and restored on [`Probe::release`].
pub(super) struct Probe {
    pub pfn: Pfn,
    pub mfn: Mfn,
    /// Its physmap address: the virtual address the tests remap.
    pub va: u64,
    /// The machine address of its physmap entry.
    pub entry: Maddr,
}

impl Probe {
    pub fn new(env: &KernelEnv, r: &mut Results) -> Option<Probe> {
        let pfn = must(
            r,
            "allocate a probe page",
            env.alloc_page().ok_or(MmError::OutOfMemory),
        )?;
        Some(Probe {
            pfn,
            mfn: env.pfn_to_mfn(pfn),
            va: physmap_va(pfn),
            entry: env.physmap_entry(pfn),
        })
    }

    /// The probe's own mapping (writable).
    pub fn own_pte(&self) -> u64 {
        Pte::new(self.mfn, leaf_flags(false)).0
    }

    /// Remap the probe's address with `update_va_mapping` (flushing its translation).
    pub fn remap(&self, pte: u64) -> Result<(), Errno> {
        platform().update_va_mapping(Gva(self.va), pte, MappingFlush::Page)
    }

    /// The probe's physmap entry as it is now (read through the physmap's L1).
    pub fn entry_value(&self, env: &KernelEnv) -> u64 {
        let (first, _) = env.state().physmap_tables;
        let l1 = Pfn(first.0 + 2 + self.pfn.0 / 512);
        env.read_entry(l1, (self.pfn.0 % 512) as usize)
    }

    /// Read the u64 at `off` through the probe's address.
    pub fn read(&self, off: usize) -> u64 {
        // SAFETY: the probe's address is a mapped kernel address (the caller remapped it to a present
        // frame or left the probe's own mapping).
        unsafe { (self.va as *const u64).add(off).read_volatile() }
    }

    /// Map the probe's own frame back and free it.
    pub fn release(self, env: &KernelEnv, r: &mut Results) {
        let back = self.remap(self.own_pte());
        expect(r, "restore the probe's own mapping", back, Ok(()));
        if back.is_ok() {
            env.free_page(self.pfn);
        }
    }
}

/// A frame of another domain, found through the M2P: a frame with a valid-looking M2P entry that is not
/// ours (its pfn is beyond our P2M, or our P2M maps that pfn to another frame).
pub(super) fn foreign_frame(env: &KernelEnv) -> Option<Mfn> {
    let nr = env.state().nr_pages as u64;
    (0x100..env.m2p_len()).map(Mfn).find(|&m| {
        env.m2p(m)
            .is_some_and(|pfn| pfn != INVALID_MFN && (pfn >= nr || env.pfn_to_mfn(Pfn(pfn)) != m))
    })
}

/// The hypervisor's image starts at machine address 2 MiB (its multiboot header).
pub(super) const HV_MFN: Mfn = Mfn(0x200);

/// Fill frame `pfn` with `val` through the physmap.
fn fill(pfn: Pfn, val: u64) {
    let p = physmap_va(pfn) as *mut u64;
    for i in 0..512 {
        // SAFETY: `pfn` is an allocated, non-table frame: mapped writable in the physmap.
        unsafe { p.add(i).write_volatile(val) };
    }
}

/// The u64 at `va` (a mapped address).
fn peek(va: u64) -> u64 {
    // SAFETY: callers pass addresses they just mapped.
    unsafe { (va as *const u64).read_volatile() }
}

/// Create, switch to and destroy 1,000 address spaces, each with a user page; nothing may leak.
pub fn as_churn(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    const ROUNDS: u64 = 1000;
    let free0 = env.free_count();
    let res0 = platform().current_reservation();
    let heap0 = crate::mm::heap::usage().0;
    println!("before: {free0} pages free, reservation {res0:?}, heap {heap0} bytes used");
    let mut hypercalls = 0;
    for i in 0..ROUNDS {
        let Some(mut a) = must(r, "AddressSpace::new", AddressSpace::new(&env)) else {
            return;
        };
        let va = 0x40_0000 + (i % 64) * PAGE_SIZE + ((i % 5) << 39);
        let Some(pfn) = must(r, "map a user page", a.map_zeroed(&env, va, Prot::WRITE)) else {
            let _ = a.destroy(&env);
            return;
        };
        let marker = 0x5eed_0000_0000 + i;
        // SAFETY: the page was just allocated and mapped writable in the physmap (and at `va` in `a`).
        unsafe { (physmap_va(pfn) as *mut u64).write_volatile(marker) };
        if must(r, "switch_to", a.switch_to(&env)).is_none() {
            let _ = a.destroy(&env);
            return;
        }
        let seen = peek(va);
        if seen != marker {
            check(
                r,
                &alloc::format!(
                    "round {i}: the user page reads {seen:#x} at {va:#x}, expected {marker:#x}"
                ),
                false,
            );
        }
        hypercalls += a.batch_stats().0;
        if must(r, "destroy", a.destroy(&env)).is_none() {
            return;
        }
        if (i + 1) % 250 == 0 {
            println!(
                "{} address spaces created, used and destroyed; {} pages free",
                i + 1,
                env.free_count()
            );
        }
    }
    let free1 = env.free_count();
    let res1 = platform().current_reservation();
    let heap1 = crate::mm::heap::usage().0;
    println!(
        "after: {free1} pages free, reservation {res1:?}, heap {heap1} bytes used; {hypercalls} mmu_update batches"
    );
    check(
        r,
        "the page allocator's free count is unchanged",
        free1 == free0,
    );
    check(
        r,
        "XENMEM_current_reservation is unchanged",
        res0.is_ok() && res0 == res1,
    );
    check(r, "the heap is back to its starting use", heap1 == heap0);
    check(
        r,
        "running on the kernel's L4 again",
        env.current_base() == env.kernel_base().1,
    );
}

/// Give 16 frames back to the hypervisor and take 16 new ones.
pub fn reservation(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    const N: usize = 16;
    let cur0 = platform().current_reservation();
    let max = platform().maximum_reservation();
    let free0 = env.free_count();
    println!("current reservation {cur0:?}, maximum {max:?}");
    let Ok(cur0) = cur0 else {
        check(r, "XENMEM_current_reservation answers", false);
        return;
    };
    check(r, "current <= maximum", max.is_ok_and(|m| cur0 <= m));
    let mut pfns = [Pfn(0); N];
    for p in &mut pfns {
        let Some(pfn) = must(r, "allocate", env.alloc_page().ok_or(MmError::OutOfMemory)) else {
            return;
        };
        *p = pfn;
    }

    // A frame still mapped (here: in the physmap) cannot be given back.
    let busy = [env.pfn_to_mfn(pfns[0]).0];
    let n = platform().decrease_reservation(&busy);
    check(
        r,
        &alloc::format!("decrease_reservation of a mapped frame releases nothing ({n:?})"),
        n == Ok(0),
    );

    let mut old = [0u64; N];
    let Some(released) = must(
        r,
        "release 16 frames",
        kernel::release(&env, &pfns, &mut old),
    ) else {
        return;
    };
    let cur1 = platform().current_reservation();
    println!("released {released}; current reservation {cur1:?}");
    check(r, "16 frames released", released == N);
    check(
        r,
        "current reservation down by 16",
        cur1 == Ok(cur0 - N as u64),
    );
    check(
        r,
        "the P2M marks the pfns frameless",
        pfns.iter().all(|&p| env.pfn_to_mfn(p).0 == INVALID_MFN),
    );
    check(
        r,
        "the M2P no longer gives the old frames an owner",
        old.iter().all(|&m| env.m2p(Mfn(m)) == Some(INVALID_MFN)),
    );

    let mut new = [0u64; N];
    let Some(got) = must(
        r,
        "populate 16 pfns",
        kernel::populate(&env, &pfns, &mut new),
    ) else {
        return;
    };
    let cur2 = platform().current_reservation();
    println!(
        "populated {got}; current reservation {cur2:?}; first new frame {:#x}",
        new[0]
    );
    check(r, "16 new frames", got == N);
    check(r, "current reservation back where it was", cur2 == Ok(cur0));
    check(
        r,
        "P2M and M2P agree on the new frames",
        pfns.iter()
            .zip(new.iter())
            .all(|(&p, &m)| env.pfn_to_mfn(p).0 == m && env.mfn_to_pfn(Mfn(m)) == Some(p)),
    );
    let mut extra = [0u64; 1];
    let over = platform().increase_reservation(&mut extra);
    check(
        r,
        &alloc::format!("no frame beyond the maximum reservation ({over:?})"),
        cur0 < max.unwrap_or(0) || over == Ok(0),
    );

    // The new frames are usable: through the physmap, and mapped in an address space.
    for (i, &p) in pfns.iter().enumerate() {
        fill(p, 0xf00d_0000 + i as u64);
    }
    check(
        r,
        "the new frames hold what was written (physmap)",
        pfns.iter()
            .enumerate()
            .all(|(i, &p)| peek(physmap_va(p) + 4088) == 0xf00d_0000 + i as u64),
    );
    let Some(mut a) = must(r, "AddressSpace::new", AddressSpace::new(&env)) else {
        return;
    };
    let va = 0x1000_0000;
    let mapped = a
        .map(&env, va, pfns[0], Prot::WRITE)
        .and_then(|()| a.switch_to(&env));
    if must(r, "map a new frame at a user address", mapped).is_some() {
        check(
            r,
            "a new frame reads back through a user mapping",
            peek(va + 8) == 0xf00d_0000,
        );
    }
    // destroy() frees pfns[0], which the address space owns now.
    must(r, "destroy", a.destroy(&env));
    for &p in &pfns[1..] {
        env.free_page(p);
    }
    check(
        r,
        "the page allocator's free count is unchanged",
        env.free_count() == free0,
    );
}

/// One multicall mixing `update_va_mapping` and `mmu_update` on the same L1 slot.
pub fn multicall_mix(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let Some(probe) = Probe::new(&env, r) else {
        return;
    };
    let (Some(a), Some(b)) = (env.alloc_page(), env.alloc_page()) else {
        check(r, "two more pages", false);
        return;
    };
    const A: u64 = 0xaaaa_aaaa_aaaa_aaaa;
    const B: u64 = 0xbbbb_bbbb_bbbb_bbbb;
    fill(probe.pfn, 0x1111);
    fill(a, A);
    fill(b, B);
    check(
        r,
        "the probe reads its own page first",
        probe.read(0) == 0x1111,
    );
    let ro = |p: Pfn| Pte::new(env.pfn_to_mfn(p), PteFlags::PRESENT | PteFlags::NO_EXECUTE).0;
    let reqs = [
        [normal_update(probe.entry, Pte(ro(b)))],
        [normal_update(probe.entry, Pte(ro(b)))],
        [normal_update(probe.entry, Pte(ro(a)))],
        [normal_update(probe.entry, Pte(ro(b)))],
    ];
    let mut done = [0u32; 4];
    let flags = abi::mm::UVMF_INVLPG | abi::mm::UVMF_LOCAL;
    let (d0, rest) = done.split_at_mut(1);
    let (d1, rest) = rest.split_at_mut(1);
    let (d2, d3) = rest.split_at_mut(1);
    let mut calls: [MulticallEntry; 8] = [
        multicall::update_va_mapping(probe.va, ro(a), flags),
        multicall::mmu_update(&reqs[0], &raw mut d0[0]),
        multicall::update_va_mapping(probe.va, ro(a), flags),
        multicall::mmu_update(&reqs[1], &raw mut d1[0]),
        multicall::update_va_mapping(probe.va, ro(b), flags),
        multicall::mmu_update(&reqs[2], &raw mut d2[0]),
        multicall::update_va_mapping(probe.va, ro(a), flags),
        multicall::mmu_update(&reqs[3], &raw mut d3[0]),
    ];
    let res = platform().multicall(&mut calls);
    expect(r, "multicall of 8 entries", res, Ok(()));
    for (i, c) in calls.iter().enumerate() {
        let v = multicall::result(c);
        if v != 0 {
            check(
                r,
                &alloc::format!("entry {i} (op {}) result {v}", c.op),
                false,
            );
        }
    }
    check(
        r,
        "every entry succeeded",
        calls.iter().all(|c| c.result == 0),
    );
    check(
        r,
        "each mmu_update entry applied its request",
        done == [1; 4],
    );
    let seen = probe.read(0);
    check(
        r,
        &alloc::format!("the address shows the last mapping's frame (B): {seen:#x}"),
        seen == B,
    );
    // And the other way round: end on update_va_mapping.
    let mut calls2 = [
        multicall::mmu_update(&reqs[3], &raw mut done[0]),
        multicall::update_va_mapping(probe.va, ro(a), flags),
    ];
    expect(
        r,
        "multicall ending on update_va_mapping",
        platform().multicall(&mut calls2),
        Ok(()),
    );
    check(r, "the address shows A now", probe.read(511) == A);
    // A multicall inside a multicall is refused in the entry's result.
    let mut inner = [multicall::update_va_mapping(probe.va, ro(b), flags)];
    let mut nested = [MulticallEntry {
        op: abi::hypercall::nr::MULTICALL,
        result: 0,
        args: [inner.as_mut_ptr() as u64, 1, 0, 0, 0, 0],
    }];
    let res = platform().multicall(&mut nested);
    let v = multicall::result(&nested[0]);
    check(
        r,
        &alloc::format!("a nested multicall is refused in its entry ({res:?}, result {v})"),
        v < 0 && probe.read(0) == A,
    );
    probe.release(&env, r);
    env.free_page(a);
    env.free_page(b);
}

/// Number of requests of `million-batch`.
const MILLION: usize = 1_000_000;
/// L1 slots it rewrites.
const SLOTS: usize = 8;

/// One `mmu_update` of 1,000,000 requests rewriting a few L1 slots over and over.
pub fn million_batch(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let bytes = MILLION * core::mem::size_of::<MmuUpdate>();
    let pages = bytes.div_ceil(PAGE_SIZE as usize);
    let Some(array) = env.alloc_contiguous(pages) else {
        println!(
            "needs {pages} contiguous free pages for the request array, {} free: run with dom_mem=64M",
            env.free_count()
        );
        r.report(Outcome::Skip);
        return;
    };
    let Some(mut a) = must(r, "AddressSpace::new", AddressSpace::new(&env)) else {
        return;
    };
    let va = 0x40_0000;
    if must(r, "map a page", a.map_zeroed(&env, va, Prot::empty())).is_none()
        || must(r, "flush", a.flush(&env)).is_none()
    {
        let _ = a.destroy(&env);
        return;
    }
    let Some((l1_pfn, l1)) = a.table(&env, Level::L1, va) else {
        check(r, "the L1 exists", false);
        return;
    };
    let mut frames = [Pfn(0); SLOTS];
    for f in &mut frames {
        *f = env.alloc_page().expect("a free page");
    }
    let leaf = |k: usize| {
        Pte::new(
            env.pfn_to_mfn(frames[k % SLOTS]),
            PteFlags::PRESENT | PteFlags::USER | PteFlags::NO_EXECUTE,
        )
        .0
    };
    // SAFETY: `pages` contiguous free pages just taken from the allocator, mapped writable in the physmap
    // and used by nothing else; MmuUpdate is plain data.
    let reqs =
        unsafe { core::slice::from_raw_parts_mut(physmap_va(array) as *mut MmuUpdate, MILLION) };
    for (i, q) in reqs.iter_mut().enumerate() {
        *q = normal_update(
            entry_maddr(l1, 16 + i % SLOTS),
            Pte(leaf(i / SLOTS + i % SLOTS)),
        );
    }
    println!("million-batch: start ({MILLION} requests, {pages} pages of requests)");
    let (done, res) = platform().update_page_tables(reqs);
    println!("million-batch: done ({done} applied, {})", errno_str(res));
    expect(r, "mmu_update of 1,000,000 requests", res, Ok(()));
    check(r, "done == 1,000,000", done == MILLION);
    let last = (MILLION - SLOTS) / SLOTS;
    let finals_ok = (0..SLOTS).all(|s| {
        let e = env.read_entry(l1_pfn, 16 + s) & !PteFlags::ACCESSED.bits();
        e == leaf(last + s)
    });
    check(r, "the slots hold the last values written", finals_ok);
    let mut clear = crate::mm::Batch::new();
    for s in 0..SLOTS {
        let _ = clear.set_entry(&env, l1, 16 + s, Pte::EMPTY);
    }
    must(r, "clear the slots", clear.flush(&env));
    must(r, "destroy", a.destroy(&env));
    for f in frames {
        env.free_page(f);
    }
    for p in 0..pages as u64 {
        env.free_page(Pfn(array.0 + p));
    }
}

/// Print `tick N` and yield, 200 times (the neighbour of `million-batch`).
pub fn ticker(_: &str, r: &mut Results) {
    for n in 1..=200 {
        println!("tick {n}");
        if let Err(e) = platform().yield_cpu() {
            println!("yield failed: {e:?}");
            r.report(Outcome::Error);
            return;
        }
    }
}
