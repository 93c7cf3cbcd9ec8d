//! Every measured operation: its setup (outside the measured loop), the operation itself, and its teardown.
//!
//! Hypercalls are issued directly with [`raw`] and arguments prepared before the loop, so a sample is the
//! guest → hypervisor → guest cost of the call plus the few guest instructions that load its registers,
//! not the cost of the platform layer's wrappers. Operations that must alternate (a page-table entry, the
//! base pointer) flip between two prepared argument sets, so every measured call really changes something.
//!
//! | operation | one sample |
//! |---|---|
//! | `floor_ring1_int_fastpath` | `int 0x83`: the hypervisor's stub is a bare IRETQ (no CR3 switch) |
//! | `null_hypercall` | hypercall 55 (`NULL`) |
//! | `xen_version` | `xen_version(XENVER_version)` (no buffer) |
//! | `console_write_16` | `console_io(CONSOLEIO_write, 16 bytes)`, no newline (the hypervisor prints a line every 10 calls) |
//! | `mmu_update_single` | `mmu_update` of one L1 entry of a non-current address space: a writable user mapping switched between two frames |
//! | `mmu_update_batch64_per_pte` | one `mmu_update` of 64 such entries, divided by 64 |
//! | `update_va_mapping_invlpg` | `update_va_mapping(va, pte, UVMF_INVLPG)` on a physmap address of the current address space, switched between two frames |
//! | `tlb_flush_local` | `mmuext_op(MMUEXT_TLB_FLUSH_LOCAL)` |
//! | `new_baseptr` | `mmuext_op(MMUEXT_NEW_BASEPTR)`, alternately to a second (pinned) address space and back to the kernel's |
//! | `multicall8_per_call` | one `multicall` of 8 `NULL` entries, divided by 8 |
//! | `address_space_create_destroy` | `AddressSpace::new` + `destroy` (guest memory manager included) |
//! | `yield_domain_switch` | `sched_op(SCHEDOP_yield)` while domain 1 runs `bench-partner`: a round trip with two domain switches |
//!
//! The event, timer, page-fault and ring-3 system-call operations are in `traps_events`.

use alloc::vec::Vec;

use abi::console::CONSOLEIO_WRITE;
use abi::hypercall::nr;
use abi::mm::{MMUEXT_NEW_BASEPTR, MMUEXT_TLB_FLUSH_LOCAL, UVMF_INVLPG, UVMF_LOCAL};
use abi::sched::SCHEDOP_YIELD;
use abi::types::{Mfn, Pfn};
use abi::version::XENVER_VERSION;
use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, MulticallEntry};

use super::runner::{Bench, FAILED_ELSEWHERE};
use super::traps_events;
use crate::arch::timing::{floor_ticks, int_fastpath};
use crate::bench::WARMUP;
use crate::boot::platform;
use crate::mm::address_space::user_leaf_flags;
use crate::mm::kernel::{self, KernelEnv};
use crate::mm::physmap::leaf_flags;
use crate::mm::pte::{Level, Pte, entry_maddr};
use crate::mm::{AddressSpace, MmEnv, MmError, Prot, physmap_va};
use crate::platform::xen_pv::normal_update;
use crate::platform::xen_pv::raw;

/// Entries per `mmu_update` batch.
const BATCH: usize = 64;
/// The first L1 slot the `mmu_update` operations write (slot 0 maps the fixture's own user page).
const FIRST_SLOT: usize = 64;
/// Where the fixture's address space maps its user page (which creates the L3, L2 and L1 written to).
const USER_VA: u64 = 0x40_0000;
/// The operations that work on the memory fixture ([`Fixture`]).
const FIXTURE_OPS: [&str; 4] = [
    "mmu_update_single",
    "mmu_update_batch64_per_pte",
    "update_va_mapping_invlpg",
    "new_baseptr",
];

/// Run every operation in [`super::OPERATIONS`] order.
pub fn run_all(
    b: &mut Bench<'_>,
    offer: Option<Result<abi::event_channel::EvtchnPort, abi::errno::Errno>>,
) {
    let n = b.opts.iterations;
    // The floor is timed inside one asm block (see `floor_ticks`), events masked like every sample.
    b.measure_external("floor_ring1_int_fastpath", n, |buf| {
        let enabled = platform().irq_disable();
        for _ in 0..WARMUP {
            int_fastpath();
        }
        for s in buf.iter_mut() {
            *s = floor_ticks(true);
        }
        let mut empty = [0u64; 64];
        for e in &mut empty {
            *e = floor_ticks(false);
        }
        platform().irq_restore(enabled);
        Ok(abi::bench::summarize(&mut empty).map_or(0, |s| s.median))
    });
    b.measure("null_hypercall", n, 1, || raw(nr::NULL, [0; 5]));
    b.measure("xen_version", n, 1, || {
        raw(nr::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0])
    });
    console(b);
    let env = kernel::env();
    match &env {
        Some(env) => memory(b, env),
        None => {
            for name in FIXTURE_OPS {
                b.fail(
                    name,
                    format_args!("the memory manager did not come up at boot"),
                );
            }
        }
    }
    let flush = MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        ..Default::default()
    };
    let flush_ptr = &raw const flush as u64;
    b.measure("tlb_flush_local", n, 1, || {
        raw(nr::MMUEXT_OP, [flush_ptr, 1, 0, u64::from(DOMID_SELF), 0])
    });
    multicall(b);
    match &env {
        Some(env) => b.measure(
            "address_space_create_destroy",
            n,
            1,
            || match AddressSpace::new(env).and_then(|a| a.destroy(env)) {
                Ok(()) => 0,
                Err(_) => FAILED_ELSEWHERE,
            },
        ),
        None => b.fail(
            "address_space_create_destroy",
            format_args!("the memory manager did not come up at boot"),
        ),
    }
    traps_events::send_self(b);
    traps_events::pingpong(b, offer);
    traps_events::set_timer(b);
    b.measure("yield_domain_switch", n, 1, || {
        raw(nr::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0])
    });
    traps_events::page_fault(b);
    traps_events::syscalls(b);
}

/// `console_write_16`: 16 bytes per call, no newline; the line is ended before the result is printed.
fn console(b: &mut Bench<'_>) {
    const TEXT: &[u8; 16] = b"console_write_16";
    let n = b.opts.console_iterations();
    let args = [
        CONSOLEIO_WRITE,
        TEXT.len() as u64,
        TEXT.as_ptr() as u64,
        0,
        0,
    ];
    let result = b.collect("console_write_16", n, 1, || raw(nr::CONSOLE_IO, args));
    if b.selected("console_write_16") {
        let _ = platform().console_write(b"\n");
    }
    if let Some((n, stats)) = result {
        b.report("console_write_16", n, &stats);
    }
}

/// `multicall8_per_call`: eight `NULL` entries per multicall.
fn multicall(b: &mut Bench<'_>) {
    let mut calls = [MulticallEntry {
        op: nr::NULL,
        result: u64::MAX,
        args: [0; 6],
    }; 8];
    let ptr = calls.as_mut_ptr() as u64;
    let n = b.opts.iterations;
    b.measure("multicall8_per_call", n, 8, || {
        raw(nr::MULTICALL, [ptr, 8, 0, 0, 0])
    });
    if b.selected("multicall8_per_call") && calls.iter().any(|c| c.result != 0) {
        b.fail(
            "multicall8_per_call",
            format_args!("an entry did not return 0"),
        );
    }
}

/// What the memory operations work on: a second address space with one user page (so its L1 exists),
/// `2 × BATCH` frames to map into that L1, and two pages for `update_va_mapping`.
struct Fixture {
    space: AddressSpace,
    /// The address space's L1 covering [`USER_VA`].
    l1: Mfn,
    frames: Vec<Pfn>,
}

impl Fixture {
    fn new(env: &KernelEnv) -> Result<Fixture, MmError> {
        let mut space = AddressSpace::new(env)?;
        let mut fixture = || {
            space.map_zeroed(env, USER_VA, Prot::WRITE)?;
            space.flush(env)?;
            space
                .table(env, Level::L1, USER_VA)
                .map(|(_, l1)| l1)
                .ok_or(MmError::Internal("the fixture's L1 is missing"))
        };
        let l1 = match fixture() {
            Ok(l1) => l1,
            Err(e) => {
                let _ = space.destroy(env);
                return Err(e);
            }
        };
        let mut frames = Vec::with_capacity(2 * BATCH + 2);
        while frames.len() < 2 * BATCH + 2 {
            match env.alloc_page() {
                Some(p) => frames.push(p),
                None => {
                    frames.into_iter().for_each(|p| env.free_page(p));
                    let _ = space.destroy(env);
                    return Err(MmError::OutOfMemory);
                }
            }
        }
        Ok(Fixture { space, l1, frames })
    }

    /// The `mmu_update` requests mapping frame `set * BATCH + j` writable into slot `FIRST_SLOT + j`.
    fn requests(&self, env: &KernelEnv, set: usize) -> [MmuUpdate; BATCH] {
        core::array::from_fn(|j| {
            let mfn = env.pfn_to_mfn(self.frames[set * BATCH + j]);
            normal_update(
                entry_maddr(self.l1, FIRST_SLOT + j),
                Pte::new(mfn, user_leaf_flags(Prot::WRITE)),
            )
        })
    }

    /// Clear the slots, destroy the address space, free the frames.
    fn destroy(self, env: &KernelEnv) -> Result<(), MmError> {
        let mut clear = crate::mm::Batch::new();
        for j in 0..BATCH {
            clear.set_entry(env, self.l1, FIRST_SLOT + j, Pte::EMPTY)?;
        }
        clear.flush(env)?;
        self.space.destroy(env)?;
        for p in self.frames {
            env.free_page(p);
        }
        Ok(())
    }
}

/// The memory-management operations that need the fixture.
fn memory(b: &mut Bench<'_>, env: &KernelEnv) {
    if !FIXTURE_OPS.iter().any(|n| b.selected(n)) {
        return;
    }
    let f = match Fixture::new(env) {
        Ok(f) => f,
        Err(e) => {
            for name in FIXTURE_OPS {
                b.fail(name, format_args!("setting up the fixture failed: {e}"));
            }
            return;
        }
    };
    let n = b.opts.iterations;
    let dom = u64::from(DOMID_SELF);
    let sets = [f.requests(env, 0), f.requests(env, 1)];
    let mut done: u32 = 0;
    let done_ptr = &raw mut done as u64;

    // One entry (the first of a set), switched between two frames.
    let set_ptrs = [sets[0].as_ptr() as u64, sets[1].as_ptr() as u64];
    let mut k = 0;
    b.measure("mmu_update_single", n, 1, || {
        k ^= 1;
        raw(nr::MMU_UPDATE, [set_ptrs[k], 1, done_ptr, dom, 0])
    });
    // 64 entries in one call, each switched between two frames.
    b.measure("mmu_update_batch64_per_pte", n, BATCH as u64, || {
        k ^= 1;
        raw(
            nr::MMU_UPDATE,
            [set_ptrs[k], BATCH as u64, done_ptr, dom, 0],
        )
    });

    // A physmap address of the current (kernel) address space, switched between two frames.
    let (probe, other) = (f.frames[2 * BATCH], f.frames[2 * BATCH + 1]);
    let va = physmap_va(probe);
    let pte = |p: Pfn| Pte::new(env.pfn_to_mfn(p), leaf_flags(false)).0;
    let uvm = [pte(other), pte(probe)];
    let flags = UVMF_INVLPG | UVMF_LOCAL;
    b.measure("update_va_mapping_invlpg", n, 1, || {
        k ^= 1;
        raw(nr::UPDATE_VA_MAPPING, [va, uvm[k], flags, 0, 0])
    });
    let restored = raw(nr::UPDATE_VA_MAPPING, [va, pte(probe), flags, 0, 0]);

    // To the fixture's address space and back to the kernel's, alternately (both pinned).
    let bases = [f.space.root(), env.kernel_base().1].map(|mfn| MmuextOp {
        cmd: MMUEXT_NEW_BASEPTR,
        arg1: mfn.0,
        ..Default::default()
    });
    let base_ptrs = [&raw const bases[0] as u64, &raw const bases[1] as u64];
    let mut next = 0;
    b.measure("new_baseptr", n, 1, || {
        let r = raw(nr::MMUEXT_OP, [base_ptrs[next], 1, 0, dom, 0]);
        next ^= 1;
        r
    });
    let back = if next == 1 {
        raw(nr::MMUEXT_OP, [base_ptrs[1], 1, 0, dom, 0])
    } else {
        0
    };

    if restored < 0 || back < 0 {
        b.fail(
            if back < 0 {
                "new_baseptr"
            } else {
                "update_va_mapping_invlpg"
            },
            format_args!(
                "restoring the kernel's state failed (update_va_mapping {restored}, NEW_BASEPTR {back}); \
                 the fixture is leaked"
            ),
        );
        return;
    }
    if let Err(e) = f.destroy(env) {
        crate::println!("bench: tearing down the memory fixture failed: {e} (frames leaked)");
    }
}
