//! The fuzzer's structured sequences: orders of operations that random arguments almost never produce.
//!
//! - issue 10's attack on shared_info: remap it read-only, then pin it as a page table (at every level);
//! - type changes of the special frames: shared_info, start_info, the kernel's L4, a start-of-day or physmap
//!   table, the M2P's and the entry region's L3 (the hypervisor's), another domain's frame, the
//!   hypervisor's image — pinned at every level, mapped read-only and writable, written as tables, loaded
//!   as the base;
//! - pin/unpin/map orders on a scratch L1 candidate A: pin then map writable; map writable then pin; pin
//!   at two levels; the same in one multicall;
//! - an L2 B linking A: A's type held through B, then through a pin, then neither;
//! - a copy C of the kernel's L4 pinned, loaded as the base, unpinned while it is the base, switched away.
//!
//! A refusal that does not come is an *anomaly*: printed with what was done, counted, not fatal (whether the
//! hypervisor stayed sound is decided by its own checks at teardown and power-off).

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::mm::{MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_UNPIN_TABLE, UVMF_INVLPG};
use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, MulticallEntry};
use zerocopy::IntoBytes;

use super::fuzz::Fuzzer;
use crate::boot::platform;
use crate::mm::MmEnv;
use crate::platform::Mmu;
use crate::println;

const P: u64 = 1;
const RW: u64 = 2;
const NX: u64 = 1 << 63;

fn ro(mfn: u64) -> u64 {
    (mfn << 12) | P | NX
}

fn rw(mfn: u64) -> u64 {
    (mfn << 12) | P | RW | NX
}

/// Expect success; a note otherwise (the sequence's premise failed, which is not an isolation issue).
fn accepted(what: &str, r: i64) -> bool {
    if r != 0 {
        println!("fuzz: note: {what}: {} (expected 0)", errno(r));
    }
    r == 0
}

fn errno(r: i64) -> &'static str {
    if r == 0 {
        "0"
    } else {
        Errno::from_ret(r).map_or("?", |e| e.name())
    }
}

impl Fuzzer {
    fn ext(&mut self, cmd: u32, arg1: u64) -> i64 {
        let op = MmuextOp {
            cmd,
            arg1,
            ..Default::default()
        };
        let p = self.put(&op);
        self.call(nr::MMUEXT_OP, [p, 1, 0, u64::from(DOMID_SELF), 0])
    }

    fn pin(&mut self, mfn: u64, level: u32) -> i64 {
        self.ext(MMUEXT_PIN_L1_TABLE + level - 1, mfn)
    }

    fn unpin(&mut self, mfn: u64) -> i64 {
        self.ext(MMUEXT_UNPIN_TABLE, mfn)
    }

    fn uvm(&mut self, va: u64, pte: u64) -> i64 {
        self.call(nr::UPDATE_VA_MAPPING, [va, pte, UVMF_INVLPG, 0, 0])
    }

    fn map_hole(&mut self, pte: u64) -> i64 {
        self.dirty_hole = true;
        let hole = self.t.hole;
        self.uvm(hole, pte)
    }

    /// Expect a refusal; an anomaly otherwise.
    fn refused(&mut self, what: &str, r: i64) {
        if r >= 0 {
            self.anomaly(format_args!("{what}: accepted ({r}), must be refused"));
        }
    }

    /// Structured sequence number `k` (they take turns).
    pub fn sequence(&mut self, k: u64) {
        match k % 6 {
            0 => self.seq_shared_info(),
            1 => self.seq_special_frames(),
            2 => self.seq_pin_map_orders(),
            3 => self.seq_l2_link(),
            4 => self.seq_second_l4(),
            _ => self.seq_multicall_orders(),
        }
        self.restore();
    }

    /// Issue 10, section 0: shared_info remapped read-only, then pinned as a page table.
    fn seq_shared_info(&mut self) {
        let (si, va) = self.t.shared_info;
        // Events stay masked while the kernel's shared_info mapping is read-only: the upcall path writes it.
        let enabled = platform().irq_disable();
        // No timer event while the frame may be a table: the hypervisor's event bits would become entries.
        let _ = self.keep(nr::SET_TIMER_OP, [0; 5]);
        let r = self.uvm(va, ro(si));
        if accepted("update_va_mapping(shared_info, read-only)", r) {
            for level in 1..=4 {
                let r = self.pin(si, level);
                if r == 0 {
                    self.anomaly(format_args!(
                        "shared_info frame {si:#x} pinned as an L{level} table after a read-only remap (issue 10, section 0)"
                    ));
                    let _ = self.unpin(si);
                    // The higher levels are not tried: validating an L4 writes the hypervisor's slots into
                    // the page (over the event-pending bits), which would stop this domain's events.
                    break;
                }
            }
        }
        let back = self.uvm(va, rw(si));
        if back != 0 {
            println!(
                "fuzz: shared_info could not be mapped writable again: {}",
                errno(back)
            );
        }
        platform().irq_restore(enabled);
    }

    /// Pin, map and load the special frames.
    fn seq_special_frames(&mut self) {
        let table = self.rng.pick(&self.t.tables.clone());
        let foreign = self.t.foreign.clone();
        let mut frames: alloc::vec::Vec<(&str, u64, bool)> = alloc::vec![
            ("shared_info", self.t.shared_info.0, true),
            ("start_info", self.t.start_info.0, true),
            ("the kernel's L4", self.kernel_l4.1.0, false),
            ("a real page table", table, false),
        ];
        for &f in &foreign {
            frames.push(("a frame that is not the domain's", f, true));
        }
        for (name, mfn, never_a_table) in frames {
            for level in 1..=4 {
                let r = self.pin(mfn, level);
                if r == 0 {
                    if never_a_table {
                        self.anomaly(format_args!(
                            "{name} ({mfn:#x}) pinned as an L{level} table"
                        ));
                    }
                    let _ = self.unpin(mfn);
                }
            }
            let r = self.map_hole(rw(mfn));
            let own_data = mfn == self.t.shared_info.0 || mfn == self.t.start_info.0;
            if !own_data {
                self.refused(&alloc::format!("writable mapping of {name} ({mfn:#x})"), r);
            }
            let r = self.map_hole(ro(mfn));
            if never_a_table && !own_data {
                self.refused(&alloc::format!("read-only mapping of {name} ({mfn:#x})"), r);
            }
            if never_a_table {
                // Written as if it were a page table.
                let req = MmuUpdate {
                    ptr: mfn << 12,
                    val: 0,
                };
                let p = self.put(&req);
                let r = self.call(nr::MMU_UPDATE, [p, 1, 0, u64::from(DOMID_SELF), 0]);
                self.refused(&alloc::format!("mmu_update inside {name} ({mfn:#x})"), r);
                if !own_data {
                    let r = self.ext(MMUEXT_NEW_BASEPTR, mfn);
                    self.refused(&alloc::format!("NEW_BASEPTR to {name} ({mfn:#x})"), r);
                }
            }
        }
    }

    /// Map then pin, pin then map, at two levels, on the sequence frame A.
    fn seq_pin_map_orders(&mut self) {
        let a = self.env.pfn_to_mfn(self.seq[0]).0;
        let _ = self.unpin(a);
        if !accepted("pin A as L1", self.pin(a, 1)) {
            return;
        }
        let r = self.map_hole(rw(a));
        self.refused("writable mapping of a pinned L1", r);
        let r = self.map_hole(ro(a));
        accepted("read-only mapping of a pinned L1", r);
        let r = self.pin(a, 2);
        self.refused("pinning an L1 as an L2", r);
        let r = self.pin(a, 1);
        self.refused("pinning a pinned L1 again", r);
        accepted("unpin A", self.unpin(a));
        let r = self.map_hole(rw(a));
        if accepted("writable mapping of A once unpinned", r) {
            for level in 1..=4 {
                let r = self.pin(a, level);
                self.refused(
                    &alloc::format!("pinning a frame mapped writable as L{level}"),
                    r,
                );
                if r == 0 {
                    let _ = self.unpin(a);
                }
            }
        }
        let _ = self.map_hole(0);
        // An all-zero frame is a valid table of levels 1..3, one level at a time. (Not L4 here: validating
        // an L4 writes the hypervisor's slots into it, after which A is no valid table of any level.)
        for level in 1..=3 {
            if accepted(
                &alloc::format!("pin empty A as L{level}"),
                self.pin(a, level),
            ) {
                let _ = self.unpin(a);
            }
        }
    }

    /// B (an L2 whose entry 0 maps A) holds A's L1 type; then a pin does; then nothing does.
    fn seq_l2_link(&mut self) {
        let a = self.env.pfn_to_mfn(self.seq[0]).0;
        let b = self.env.pfn_to_mfn(self.seq[1]).0;
        let _ = self.unpin(a);
        let _ = self.unpin(b);
        if !accepted("pin B as L2 (validates A as L1)", self.pin(b, 2)) {
            return;
        }
        let r = self.map_hole(rw(a));
        self.refused("writable mapping of an L1 linked from a pinned L2", r);
        let r = self.pin(a, 2);
        self.refused("pinning a linked L1 as an L2", r);
        accepted("pin the linked L1 as L1", self.pin(a, 1));
        // B maps itself writable: refused; B's entry 1 maps B read-only: an L2 entry needs an L1, refused.
        let req = MmuUpdate {
            ptr: (b << 12) | 8,
            val: rw(b),
        };
        let p = self.put(&req);
        let r = self.call(nr::MMU_UPDATE, [p, 1, 0, u64::from(DOMID_SELF), 0]);
        self.refused("an L2 entry naming its own table", r);
        accepted("unpin B", self.unpin(b));
        let r = self.map_hole(rw(a));
        self.refused("writable mapping of a pinned L1 (B gone)", r);
        accepted("unpin A", self.unpin(a));
        let r = self.map_hole(rw(a));
        if accepted("writable mapping of A once free", r) {
            let r = self.pin(b, 2);
            self.refused("pinning an L2 whose L1 is mapped writable", r);
            if r == 0 {
                let _ = self.unpin(b);
            }
        }
        let _ = self.map_hole(0);
    }

    /// C, a copy of the kernel's L4: pinned, loaded, unpinned while loaded, switched away from, loaded
    /// again without a pin.
    fn seq_second_l4(&mut self) {
        let c = self.env.pfn_to_mfn(self.seq[2]).0;
        let kernel = self.kernel_l4.1;
        let _ = self.unpin(c);
        if !accepted("pin C as L4", self.pin(c, 4)) {
            return;
        }
        let r = self.ext(MMUEXT_NEW_BASEPTR, c);
        if accepted("NEW_BASEPTR to C", r) {
            // Running on C: the kernel half is the same tables.
            let r = self.map_hole(rw(self.t.scratch[0]));
            let _ = r;
            let _ = self.map_hole(0);
            accepted("unpin C while it is the base", self.unpin(c));
            let r = self.pin(c, 3);
            self.refused("pinning the current base as an L3", r);
            let r = self.ext(MMUEXT_NEW_BASEPTR, kernel.0);
            accepted("NEW_BASEPTR back to the kernel's L4", r);
        } else {
            let _ = self.unpin(c);
        }
        let r = self.ext(MMUEXT_NEW_BASEPTR, c);
        if r == 0 {
            let _ = self.ext(MMUEXT_NEW_BASEPTR, kernel.0);
        }
        // Whatever happened, the kernel's own bookkeeping names its L4.
        let _ = self.env.switch_address_space(kernel);
        self.dirty_pin = true;
    }

    /// Map read-only, pin, map writable, unpin, map writable, pin — in one multicall.
    fn seq_multicall_orders(&mut self) {
        let a = self.env.pfn_to_mfn(self.seq[0]).0;
        let _ = self.unpin(a);
        let hole = self.t.hole;
        self.dirty_hole = true;
        let pin = self.put(&MmuextOp {
            cmd: MMUEXT_PIN_L1_TABLE,
            arg1: a,
            ..Default::default()
        });
        let unpin = self.put(&MmuextOp {
            cmd: MMUEXT_UNPIN_TABLE,
            arg1: a,
            ..Default::default()
        });
        let self_dom = u64::from(DOMID_SELF);
        let uvm = |pte: u64| MulticallEntry {
            op: nr::UPDATE_VA_MAPPING,
            result: 1,
            args: [hole, pte, UVMF_INVLPG, 0, 0, 0],
        };
        let ext = |p: u64| MulticallEntry {
            op: nr::MMUEXT_OP,
            result: 1,
            args: [p, 1, 0, self_dom, 0, 0],
        };
        let entries = [
            uvm(ro(a)),
            ext(pin),
            uvm(rw(a)),
            ext(unpin),
            uvm(rw(a)),
            ext(pin),
            uvm(0),
        ];
        let p = self.put_bytes(entries.as_bytes(), false);
        let r = self.call(nr::MULTICALL, [p, entries.len() as u64, 0, 0, 0]);
        if !accepted("the multicall", r) {
            return;
        }
        let res: alloc::vec::Vec<i64> = (0..entries.len())
            .map(|i| {
                let at = p + (i * core::mem::size_of::<MulticallEntry>()) as u64 + 8;
                // SAFETY: the entries were just written there, in the arena (mapped, ours).
                unsafe { (at as *const i64).read_unaligned() }
            })
            .collect();
        for (i, &v) in res.iter().enumerate() {
            self.stats.record(entries[i].op, v);
        }
        let expect_ok = [0, 1, 3, 4, 6];
        for i in expect_ok {
            if res[i] != 0 {
                println!(
                    "fuzz: note: multicall entry {i}: {} (expected 0)",
                    errno(res[i])
                );
            }
        }
        if res[1] == 0 {
            self.refused(
                "multicall: writable mapping of the L1 pinned by the previous entry",
                res[2],
            );
        }
        if res[4] == 0 {
            self.refused(
                "multicall: pin of the frame the previous entry mapped writable",
                res[5],
            );
        }
        if res[5] == 0 {
            let _ = self.unpin(a);
        }
    }
}
