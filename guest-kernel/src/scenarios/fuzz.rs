//! `test=fuzz seed=S count=N [wild=W]`: the hypercall fuzzer. N random hypercalls over every family and
//! unknown numbers, arguments from the biased distribution of [`crate::fuzz::dist`], mostly aimed at
//! scratch frames this domain owns so that it keeps running; every 256 calls one structured sequence
//! ([`super::fuzz_seq`]: type changes of shared_info, start_info, the start-of-day tables and the M2P,
//! pin/unpin/map orders, a second L4 switched to and from). With `wild=W` (per million calls) it also
//! aims at its real page tables and kernel mappings, accepting that it may be crashed for it.
//!
//! The domain keeps itself alive by never handing a hypercall writable kernel memory other than its buffer
//! arena, by restoring what it changed (trap table, callbacks, kernel stack, the probe mapping, the M2P
//! entries of its scratch frames, the pin of its L4) right after a call changed it, by keeping the event
//! ports it was booted with, and by giving every blocking call a timeout.
//!
//! At the end it prints per-family call counts and result histograms, any anomaly (a refusal that was
//! expected and did not come), and `Test result: SUCCESS` if it survived: whether the hypervisor stayed
//! healthy is for the QEMU harness to judge (no panic, integrity, audit and recount lines).

use alloc::vec::Vec;

use abi::event_channel::{EVTCHNOP_STATUS, EVTCHNSTAT_CLOSED, EvtchnStatus};
use abi::hypercall::nr;
use abi::types::{Gva, Mfn, PAGE_SIZE, Pfn};
use abi::xen::DOMID_SELF;
use zerocopy::{Immutable, IntoBytes};

use super::memory::{HV_MFN, foreign_frame, mm_env};
use crate::boot::{facts, platform};
use crate::cmdline::{option, parse_u64};
use crate::fuzz::Rng;
use crate::fuzz::dist::{self, Targets};
use crate::fuzz::stats::Stats;
use crate::mm::kernel::KernelEnv;
use crate::mm::physmap::leaf_flags;
use crate::mm::pte::{Pte, PteFlags};
use crate::mm::{KERNEL_VIRT_BASE, MmEnv, PHYSMAP_BASE, PHYSMAP_END, physmap_va};
use crate::platform::xen_pv::MappingFlush;
use crate::platform::xen_pv::{XEN_PV, raw};
use crate::println;
use crate::xtf::{Outcome, Results};

/// Pages of the buffer arena; the page after it is the hole (normally unmapped).
pub(super) const ARENA_PAGES: u64 = 8;
/// Scratch frames for random page tables.
pub(super) const SCRATCH: usize = 16;
/// Calls between two structured sequences.
const SEQ_EVERY: u64 = 256;
/// Calls between two refreshes of the scratch frames.
const REFRESH_EVERY: u64 = 4096;
/// Ports below this are scanned at start; the ones in use are the kernel's and are protected.
const PORT_SCAN: u32 = 64;

/// The fuzzer's state.
pub(super) struct Fuzzer {
    pub env: KernelEnv,
    pub rng: Rng,
    pub t: Targets,
    pub stats: Stats,
    /// First page of the arena (ARENA_PAGES pages, then the hole page, contiguous in the physmap).
    pub arena: Pfn,
    /// Next free byte of the arena, the highest byte used from the start, the lowest used from the end.
    pub bump: u64,
    pub bump_max: u64,
    pub end_lo: u64,
    /// A multicall's entries are being generated.
    pub nested: bool,
    /// Print every call before making it (`trace=K`: from step K on, for finding the call that hangs or
    /// crashes).
    pub trace: bool,
    pub hole_pfn: Pfn,
    pub hole_mfn: Mfn,
    pub scratch: Vec<Pfn>,
    /// Every frame whose M2P entry a fuzzed MACHPHYS_UPDATE may change and the kernel relies on.
    pub own_pfns: Vec<Pfn>,
    /// Three frames for the structured sequences: A (an L1 candidate), B (an L2 whose entry 0 is A), C (a
    /// copy of the kernel's L4).
    pub seq: [Pfn; 3],
    pub kernel_l4: (Pfn, Mfn),
    /// Event ports this kernel had bound before the fuzzer started: never closed or rebound.
    pub protected: Vec<u32>,
    /// The kernel's VIRQ_TIMER port (checked before every block; see `ensure_timer_bound`).
    pub timer_port: u32,
    /// How often the fuzzer found its own VIRQ_TIMER binding gone and rebound it.
    pub timer_rebinds: u64,
    /// Highest port the fuzzer saw bound.
    pub max_port: u32,
    /// Calls per million aimed at the real page tables or kernel mappings.
    pub wild: u64,
    pub wild_calls: u64,
    pub anomalies: u64,
    /// Calls made to restore state (not counted in the statistics).
    pub housekeeping: u64,
    /// The trap table, callbacks or kernel stack may have changed.
    pub dirty_traps: bool,
    /// The hole's mapping may have changed.
    pub dirty_hole: bool,
    /// M2P entries of scratch frames may have changed.
    pub dirty_m2p: bool,
    /// The kernel's L4 may have been unpinned.
    pub dirty_pin: bool,
    /// The periodic timer may be running.
    pub dirty_periodic: bool,
    /// Debug registers or CR0.TS may have been set through a hypercall numbered for them.
    pub dirty_misc: bool,
    /// Domains this fuzzer created or restored (`fuzz_domctl`).
    pub owned: Vec<u16>,
}

impl Fuzzer {
    /// Issue hypercall `nr` and count its result.
    pub fn call(&mut self, nr: u64, args: [u64; 5]) -> i64 {
        if self.trace {
            println!("fuzz: call {nr} {args:x?}");
        }
        let r = raw(nr, args);
        if self.trace {
            println!("fuzz:   = {r}");
        }
        self.stats.record(nr, r);
        r
    }

    /// A housekeeping hypercall (not counted).
    pub fn keep(&mut self, nr: u64, args: [u64; 5]) -> i64 {
        self.housekeeping += 1;
        raw(nr, args)
    }

    /// An anomaly: a hypervisor answer that contradicts the isolation rules.
    pub fn anomaly(&mut self, what: core::fmt::Arguments<'_>) {
        self.anomalies += 1;
        println!("fuzz: ANOMALY: {what}");
    }

    /// Arena bytes `off..off + len` as a writable slice.
    fn arena_slice(&mut self, off: u64, len: u64) -> &mut [u8] {
        let base = physmap_va(self.arena) as *mut u8;
        // SAFETY: the arena is ARENA_PAGES contiguous pfns this fuzzer allocated, mapped writable in the
        // physmap at consecutive addresses, used for nothing else; callers keep `off + len` inside it.
        unsafe { core::slice::from_raw_parts_mut(base.add(off as usize), len as usize) }
    }

    /// Copy `bytes` into the arena and return their address. Usually at the next free place (8-aligned or
    /// not), sometimes ending exactly at the hole so that anything read past them faults; with `at_end`
    /// always there (for arrays whose declared count is larger than what was written). Inside a multicall
    /// being built (`nested`) nothing goes to the end, which the entries array needs.
    pub fn put_bytes(&mut self, bytes: &[u8], at_end: bool) -> u64 {
        let size = ARENA_PAGES * PAGE_SIZE;
        let len = (bytes.len() as u64).min(size / 2);
        let off = if !self.nested && (at_end || self.rng.chance(1, 16)) {
            let o = size - len;
            self.end_lo = self.end_lo.min(o);
            o
        } else {
            let align = if self.rng.chance(1, 8) { 1 } else { 8 };
            let mut o = (self.bump + align - 1) & !(align - 1);
            if o + len > self.end_lo {
                o = 0;
            }
            self.bump = o + len;
            self.bump_max = self.bump_max.max(self.bump);
            o
        };
        self.arena_slice(off, len)
            .copy_from_slice(&bytes[..len as usize]);
        physmap_va(self.arena) + off
    }

    /// Zero what the last step wrote to the arena, so that a hypercall reading past a structure of the next
    /// step finds zeros, never an older step's structures.
    pub fn clear_arena(&mut self) {
        let size = ARENA_PAGES * PAGE_SIZE;
        let (lo, hi) = (self.bump_max, self.end_lo);
        self.arena_slice(0, lo).fill(0);
        self.arena_slice(hi, size - hi).fill(0);
        self.bump = 0;
        self.bump_max = 0;
        self.end_lo = size;
    }

    /// Copy a structure into the arena.
    pub fn put<T: IntoBytes + Immutable>(&mut self, v: &T) -> u64 {
        self.put_bytes(v.as_bytes(), false)
    }

    /// `n` random words in the arena.
    pub fn put_random(&mut self, n: usize) -> u64 {
        let mut words: Vec<u64> = Vec::with_capacity(n);
        for _ in 0..n {
            words.push(dist::any(&mut self.rng, &self.t));
        }
        self.put_bytes(words.as_bytes(), false)
    }

    /// An address for a hypercall to read a structure from: mostly `ptr` (in the arena), else a hostile
    /// address (never elsewhere in the arena: older contents there could name the real tables).
    pub fn buf_or_addr(&mut self, ptr: u64) -> u64 {
        if self.rng.chance(7, 8) {
            ptr
        } else {
            self.hostile_addr()
        }
    }

    /// A hostile address that is never the arena, shared_info or start_info (for arguments that name a
    /// mapping to change rather than a buffer).
    pub fn hostile_addr(&mut self) -> u64 {
        use dist::AddrKind::*;
        for _ in 0..8 {
            let (k, a) = dist::addr_with_kind(&mut self.rng, &self.t);
            if !matches!(k, Buffer | Straddle | SharedInfo | StartInfo | Integer) {
                return a;
            }
        }
        0x0000_8000_0000_0000
    }

    /// An address nothing can be read from (for structures whose random contents could stop this domain:
    /// a shutdown reason, multicall entries).
    pub fn unreadable_addr(&mut self) -> u64 {
        use dist::AddrKind::*;
        for _ in 0..8 {
            let (k, a) = dist::addr_with_kind(&mut self.rng, &self.t);
            // Not the hole: an earlier entry of the same multicall may have mapped it.
            if matches!(k, Null | NonCanonical | UserHalf) {
                return a;
            }
        }
        0x0000_8000_0000_0000
    }

    /// An mfn from the distribution, with the domain's real tables, shared_info and start_info replaced by a
    /// scratch frame unless `wild` (for operations that would change or unmap them).
    pub fn safe_mfn(&mut self) -> u64 {
        let m = dist::mfn(&mut self.rng, &self.t);
        let special = self.t.tables.contains(&m)
            || m == self.t.shared_info.0
            || m == self.t.start_info.0
            || self.t.buf_mfns.contains(&m);
        if special {
            let s = self.rng.pick(&self.t.scratch);
            return s;
        }
        m
    }

    /// An entry for the hole when something may write through the hole before [`Fuzzer::restore`] unmaps
    /// it again (a later multicall entry, a `done` counter): its frame is a scratch or arena frame, or one
    /// the hypervisor must refuse; never a kernel frame, shared_info or start_info.
    pub fn hole_pte(&mut self) -> u64 {
        let v = dist::pte(&mut self.rng, &self.t, 40);
        let m = (v >> 12) & 0xff_ffff_ffff;
        let harmless = self.t.scratch.contains(&m)
            || self.t.buf_mfns.contains(&m)
            || self.t.foreign.contains(&m)
            || m >= self.t.max_mfn;
        if harmless {
            v
        } else {
            (v & !0x000f_ffff_ffff_f000) | (self.rng.pick(&self.t.scratch) << 12)
        }
    }

    /// A port the fuzzer may close or rebind: never one the kernel was booted with.
    pub fn free_port(&mut self) -> u32 {
        let p = dist::port(&mut self.rng, &self.t);
        if self.protected.contains(&p) {
            4096 + p
        } else {
            p
        }
    }

    /// The machine address of the hole's physmap entry.
    pub fn hole_entry(&self) -> u64 {
        self.env.physmap_entry(self.hole_pfn).0
    }

    /// Put back whatever the last call may have changed.
    pub fn restore(&mut self) {
        if self.dirty_traps {
            self.dirty_traps = false;
            self.housekeeping += 3;
            let table = crate::trap::dispatch::install_table(true);
            let stack = platform().stack_switch(
                abi::layout::GUEST_KERNEL_SS,
                crate::trap::dispatch::trap_stack_top(),
            );
            let cbs = crate::trap::dispatch::register_callbacks();
            if table.is_err() || stack.is_err() || cbs.is_err() {
                println!("fuzz: restoring traps failed: {table:?} {stack:?} {cbs:?}");
            }
        }
        if self.dirty_hole {
            self.dirty_hole = false;
            let _ = self.keep(
                nr::UPDATE_VA_MAPPING,
                [self.t.hole, 0, abi::mm::UVMF_INVLPG, 0, 0],
            );
        }
        if self.dirty_m2p {
            self.dirty_m2p = false;
            let reqs: Vec<abi::xen::MmuUpdate> = self
                .own_pfns
                .iter()
                .map(|&p| abi::xen::MmuUpdate {
                    ptr: (self.env.pfn_to_mfn(p).0 << 12) | abi::mm::MMU_MACHPHYS_UPDATE,
                    val: p.0,
                })
                .collect();
            let _ = self.keep(
                nr::MMU_UPDATE,
                [
                    reqs.as_ptr() as u64,
                    reqs.len() as u64,
                    0,
                    u64::from(DOMID_SELF),
                    0,
                ],
            );
        }
        if self.dirty_pin {
            self.dirty_pin = false;
            self.housekeeping += 1;
            // Re-pin the kernel's L4 if a fuzzed UNPIN took its pin (EINVAL: it still had it).
            let _ = platform().pin_table(crate::mm::Level::L4, self.kernel_l4.1);
        }
        if self.dirty_periodic {
            self.dirty_periodic = false;
            let _ = self.keep(
                nr::VCPU_OP,
                [abi::vcpu::VCPUOP_STOP_PERIODIC_TIMER, 0, 0, 0, 0],
            );
        }
        if self.dirty_misc {
            self.dirty_misc = false;
            let _ = self.keep(nr::FPU_TASKSWITCH, [0; 5]);
            let _ = self.keep(nr::SET_DEBUGREG, [7, 0, 0, 0, 0]);
        }
    }

    /// Make scratch frame `p` read-only (`ro`) or writable in the physmap. Fails while it is a page table
    /// (writable) or still mapped writable elsewhere (read-only is always possible).
    pub fn set_ro(&mut self, p: Pfn, ro: bool) -> bool {
        let (_, res) = platform().update_page_tables(&[abi::xen::MmuUpdate {
            ptr: self.env.physmap_entry(p).0,
            val: Pte::new(self.env.pfn_to_mfn(p), leaf_flags(ro)).0,
        }]);
        self.housekeeping += 1;
        res.is_ok()
    }

    /// Write `words` into frame `p` (which must be writable in the physmap).
    pub fn fill(&mut self, p: Pfn, words: &[u64; 512]) {
        let dst = physmap_va(p) as *mut u64;
        for (i, &w) in words.iter().enumerate() {
            // SAFETY: `p` is a frame of this fuzzer, currently mapped writable in the physmap (the caller
            // just made it so), and not a page table.
            unsafe { dst.add(i).write_volatile(w) };
        }
    }

    /// Random page-table contents: mostly empty entries, else entries from the distribution (their frames
    /// mostly scratch frames, so hierarchies of scratch tables form).
    pub fn random_table(&mut self) -> [u64; 512] {
        let mut w = [0u64; 512];
        let density = self.rng.pick(&[0u64, 1, 4, 16, 64]);
        for e in w.iter_mut() {
            if self.rng.below(64) < density {
                *e = dist::pte(&mut self.rng, &self.t, 40);
            }
        }
        w
    }

    /// Unpin every scratch frame, and give each one that is no longer a table new random contents.
    pub fn refresh_scratch(&mut self) {
        for i in 0..self.scratch.len() {
            let m = self.env.pfn_to_mfn(self.scratch[i]);
            let op = self.put(&abi::xen::MmuextOp {
                cmd: abi::mm::MMUEXT_UNPIN_TABLE,
                arg1: m.0,
                ..Default::default()
            });
            let _ = self.call(nr::MMUEXT_OP, [op, 1, 0, u64::from(DOMID_SELF), 0]);
        }
        for i in 0..self.scratch.len() {
            let p = self.scratch[i];
            if self.set_ro(p, false) {
                let w = self.random_table();
                self.fill(p, &w);
                let _ = self.set_ro(p, true);
            }
        }
    }

    /// Close every port the fuzzer may have bound.
    pub fn close_ports(&mut self) {
        for port in 1..=self.max_port.min(4095) {
            if !self.protected.contains(&port) {
                let c = abi::event_channel::EvtchnClose { port };
                let _ = self.keep(
                    nr::EVENT_CHANNEL_OP,
                    [
                        abi::event_channel::EVTCHNOP_CLOSE,
                        &raw const c as u64,
                        0,
                        0,
                        0,
                    ],
                );
            }
        }
    }

    /// One call aimed at the real tables or kernel mappings (`wild` mode); may crash this domain.
    fn wild_call(&mut self) {
        self.wild_calls += 1;
        let tables = self.t.tables.clone();
        let what = self.rng.below(3);
        match what {
            0 => {
                let table = self.rng.pick(&tables);
                let idx = self.rng.below(512);
                let val = dist::pte(&mut self.rng, &self.t, 40);
                println!("fuzz: wild: mmu_update of entry {idx} of table {table:#x} to {val:#x}");
                let req = abi::xen::MmuUpdate {
                    ptr: (table << 12) | (idx * 8),
                    val,
                };
                let p = self.put(&req);
                let _ = self.call(nr::MMU_UPDATE, [p, 1, 0, u64::from(DOMID_SELF), 0]);
            }
            1 => {
                let m = dist::mfn(&mut self.rng, &self.t);
                println!("fuzz: wild: NEW_BASEPTR {m:#x}");
                let op = abi::xen::MmuextOp {
                    cmd: abi::mm::MMUEXT_NEW_BASEPTR,
                    arg1: m,
                    ..Default::default()
                };
                let p = self.put(&op);
                let _ = self.call(nr::MMUEXT_OP, [p, 1, 0, u64::from(DOMID_SELF), 0]);
                let _ = platform().switch_address_space(self.env.current_base().0);
            }
            _ => {
                let pfn = self.rng.below(self.env.state().nr_pages as u64);
                let pte = dist::pte(&mut self.rng, &self.t, 40);
                println!(
                    "fuzz: wild: update_va_mapping of pfn {pfn:#x}'s physmap page to {pte:#x}"
                );
                let _ = self.call(
                    nr::UPDATE_VA_MAPPING,
                    [physmap_va(Pfn(pfn)), pte, abi::mm::UVMF_INVLPG, 0, 0],
                );
            }
        }
    }
}

/// The ports in use at start (status not closed).
fn bound_ports() -> Vec<u32> {
    (0..PORT_SCAN)
        .filter(|&port| {
            let mut s = EvtchnStatus {
                dom: DOMID_SELF,
                port,
                ..Default::default()
            };
            raw(
                nr::EVENT_CHANNEL_OP,
                [EVTCHNOP_STATUS, &raw mut s as u64, 0, 0, 0],
            ) == 0
                && s.status != EVTCHNSTAT_CLOSED
        })
        .collect()
}

/// Set up the arena, the hole, the scratch and sequence frames and the targets.
fn setup(env: KernelEnv, seed: u64, wild: u64, r: &mut Results) -> Option<Fuzzer> {
    let Some(arena) = env.alloc_contiguous(ARENA_PAGES as usize + 1) else {
        println!("fuzz: cannot allocate the arena");
        r.report(Outcome::Error);
        return None;
    };
    let hole_pfn = Pfn(arena.0 + ARENA_PAGES);
    let mut scratch = Vec::new();
    for _ in 0..SCRATCH + 3 {
        let Some(p) = env.alloc_page() else {
            println!("fuzz: cannot allocate scratch frames");
            r.report(Outcome::Error);
            return None;
        };
        env.zero_frame(p);
        scratch.push(p);
    }
    let seq = [scratch[SCRATCH], scratch[SCRATCH + 1], scratch[SCRATCH + 2]];
    scratch.truncate(SCRATCH);
    let si = facts().start_info;
    let si_va = si as *const _ as u64;
    let si_pfn = Pfn((si_va - KERNEL_VIRT_BASE) / PAGE_SIZE);
    let kernel_l4 = env.kernel_base();
    let mut own_pfns = alloc::vec![kernel_l4.0];
    let pt_first = (si.pt_base - KERNEL_VIRT_BASE) / PAGE_SIZE;
    own_pfns.extend((pt_first..pt_first + si.nr_pt_frames).map(Pfn));
    let (pm_first, pm_count) = env.state().physmap_tables;
    own_pfns.extend((pm_first.0..pm_first.0 + pm_count as u64).map(Pfn));
    let mut tables: Vec<u64> = own_pfns.iter().map(|&p| env.pfn_to_mfn(p).0).collect();
    own_pfns.extend((0..=ARENA_PAGES).map(|i| Pfn(arena.0 + i)));
    own_pfns.extend_from_slice(&scratch);
    own_pfns.extend_from_slice(&seq);
    tables.sort_unstable();
    tables.dedup();
    let mut foreign = alloc::vec![HV_MFN.0, 0, 1, 0x100];
    if let Some(f) = foreign_frame(&env) {
        foreign.push(f.0);
    }
    // The hypervisor's M2P and entry-region L3 tables, named in this domain's own L4.
    for slot in [256usize, 257] {
        let e = env.read_entry(kernel_l4.0, slot);
        if e & 1 != 0 {
            foreign.push(Pte(e).mfn().0);
        }
    }
    let protected = bound_ports();
    let buf_mfns = (0..ARENA_PAGES)
        .map(|i| env.pfn_to_mfn(Pfn(arena.0 + i)).0)
        .collect();
    let t = Targets {
        buf: (physmap_va(arena), ARENA_PAGES * PAGE_SIZE),
        hole: physmap_va(hole_pfn),
        scratch: scratch.iter().map(|&p| env.pfn_to_mfn(p).0).collect(),
        buf_mfns,
        tables,
        shared_info: (si.shared_info >> 12, XEN_PV.shared_info() as u64),
        start_info: (env.pfn_to_mfn(si_pfn).0, si_va),
        foreign,
        max_mfn: env.m2p_len(),
        ports: protected.clone(),
        kernel_writable: alloc::vec![
            (PHYSMAP_BASE, PHYSMAP_END),
            (KERNEL_VIRT_BASE, KERNEL_VIRT_BASE + (1 << 30)),
        ],
    };
    let mut f = Fuzzer {
        hole_mfn: env.pfn_to_mfn(hole_pfn),
        env,
        rng: Rng::new(seed),
        t,
        stats: Stats::new(),
        arena,
        bump: 0,
        bump_max: ARENA_PAGES * PAGE_SIZE,
        end_lo: 0,
        nested: false,
        trace: false,
        hole_pfn,
        scratch,
        own_pfns,
        seq,
        kernel_l4,
        max_port: protected.iter().copied().max().unwrap_or(0),
        protected,
        timer_port: 1,
        timer_rebinds: 0,
        wild,
        wild_calls: 0,
        anomalies: 0,
        housekeeping: 0,
        dirty_traps: false,
        dirty_hole: true,
        dirty_m2p: false,
        dirty_pin: false,
        dirty_periodic: false,
        dirty_misc: false,
        owned: Vec::new(),
    };
    // The kernel's timer port: the protected port bound to VIRQ_TIMER.
    let ports = f.protected.clone();
    if let Some(&p) = ports.iter().find(|&&p| {
        f.port_status(p)
            == (
                0,
                abi::event_channel::EVTCHNSTAT_VIRQ,
                abi::event_channel::VIRQ_TIMER,
            )
    }) {
        f.timer_port = p;
    }
    // The hole: unmapped from now on.
    f.restore();
    // Scratch frames: random contents, read-only (page-table candidates).
    for i in 0..SCRATCH {
        let p = f.scratch[i];
        let w = f.random_table();
        f.fill(p, &w);
        f.set_ro(p, true);
    }
    // Sequence frames: A empty, B's entry 0 maps A writable, C a copy of the kernel's L4 (kernel half).
    let [a, b, c] = f.seq;
    let mut w = [0u64; 512];
    w[0] = Pte::new(f.env.pfn_to_mfn(a), PteFlags::PRESENT | PteFlags::WRITABLE).0;
    f.fill(b, &w);
    let mut l4 = [0u64; 512];
    for (i, e) in l4.iter_mut().enumerate().skip(272) {
        *e = f.env.read_entry(kernel_l4.0, i);
    }
    f.fill(c, &l4);
    for p in f.seq {
        f.set_ro(p, true);
    }
    Some(f)
}

/// Undo everything: unpin, make writable, free; close the fuzzer's ports.
fn cleanup(f: &mut Fuzzer) {
    f.dirty_m2p = true;
    f.restore();
    let _ = f.keep(nr::SET_TIMER_OP, [0; 5]);
    let mut frames: Vec<Pfn> = f.scratch.clone();
    frames.extend_from_slice(&f.seq);
    for &p in &frames {
        let _ = platform().unpin_table(f.env.pfn_to_mfn(p));
    }
    let _ = platform().unpin_table(f.hole_mfn);
    let mut kept = 0;
    for &p in &frames {
        if f.set_ro(p, false) {
            f.env.free_page(p);
        } else {
            kept += 1;
        }
    }
    // The hole page: mapped again (unless a fuzzed decrease_reservation gave its frame away).
    let hole_back = platform()
        .update_va_mapping(
            Gva(f.t.hole),
            Pte::new(f.hole_mfn, leaf_flags(false)).0,
            MappingFlush::Page,
        )
        .is_ok();
    for i in 0..ARENA_PAGES {
        f.env.free_page(Pfn(f.arena.0 + i));
    }
    if hole_back {
        f.env.free_page(f.hole_pfn);
    }
    f.close_ports();
    f.domctl_cleanup();
    println!(
        "fuzz: cleanup: {kept} scratch frames still typed (kept), hole frame {}",
        if hole_back {
            "mapped back"
        } else {
            "given away by the fuzz (kept out of the allocator)"
        }
    );
}

/// `test=fuzz seed=S count=N [wild=W]`.
pub fn fuzz(cmdline: &str, r: &mut Results) {
    let num = |k: &str, d: u64| option(cmdline, k).and_then(parse_u64).unwrap_or(d);
    let seed = num("seed", 1);
    let count = num("count", 10_000);
    let wild = num("wild", 0);
    println!(
        "fuzz: seed {seed} count {count} wild {wild} per million (reproduce with: test=fuzz seed={seed} count={count} wild={wild}; add trace=K to print every call from step K on)"
    );
    let Some(env) = mm_env(r) else { return };
    let Some(mut f) = setup(env, seed, wild, r) else {
        return;
    };
    let trace_from = option(cmdline, "trace").and_then(parse_u64);
    println!(
        "fuzz: arena {:#x} ({} pages), hole {:#x}, {} scratch frames, {} real page tables, protected ports {:?}, shared_info mfn {:#x}, start_info mfn {:#x}",
        f.t.buf.0,
        ARENA_PAGES,
        f.t.hole,
        f.t.scratch.len(),
        f.t.tables.len(),
        f.protected,
        f.t.shared_info.0,
        f.t.start_info.0
    );
    let t0 = crate::time::now();
    for i in 0..count {
        f.clear_arena();
        f.trace = trace_from.is_some_and(|t| i >= t);
        if f.trace {
            println!("fuzz: step {i}");
        }
        if i % SEQ_EVERY == SEQ_EVERY - 1 {
            f.sequence(i / SEQ_EVERY);
        } else if i % REFRESH_EVERY == REFRESH_EVERY - 1 {
            f.dirty_m2p = true;
            f.refresh_scratch();
            f.close_ports();
        } else if f.wild > 0 && f.rng.below(1_000_000) < f.wild {
            f.wild_call();
        } else {
            f.step();
        }
        f.restore();
        if i % 20_000 == 19_999 {
            println!("fuzz: {} calls", f.stats.total());
        }
    }
    let ms = (crate::time::now() - t0) / 1_000_000;
    cleanup(&mut f);
    for line in f.stats.lines() {
        println!("fuzz: {line}");
    }
    let total = f.stats.total();
    println!(
        "fuzz: {total} hypercalls ({} families) in {ms} ms ({} per second), {} housekeeping calls, {} wild calls, {} anomalies, own timer binding restored {} times",
        f.stats.families_called(),
        total * 1000 / ms.max(1),
        f.housekeeping,
        f.wild_calls,
        f.anomalies,
        f.timer_rebinds
    );
    println!("fuzz: survived seed {seed}");
}
