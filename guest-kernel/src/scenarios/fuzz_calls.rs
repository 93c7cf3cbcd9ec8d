//! The fuzzer's random calls: one generator per hypercall family, each building its argument structures
//! in the arena from the biased distribution, and the step that picks a family by weight, arms a timeout
//! for calls that block, masks events around calls that may replace the event callback, and records
//! nested multicall results.

use alloc::vec::Vec;

use abi::callback::CallbackRegister;
use abi::event_channel::*;
use abi::hypercall::nr;
use abi::layout::{GUEST_KERNEL_CS, GUEST_KERNEL_SS};
use abi::mm::*;
use abi::sched::*;
use abi::sysctl::{XEN_SYSCTL_INTERFACE_VERSION, XenSysctl};
use abi::vcpu::*;
use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, MulticallEntry, TrapInfo};
use zerocopy::IntoBytes;

use super::fuzz::Fuzzer;
use crate::boot::platform;
use crate::fuzz::dist;

/// Families of the random step and their weights (per 1000-ish).
const FAMILIES: [(u64, u32); 22] = [
    (nr::SET_TRAP_TABLE, 3),
    (nr::MMU_UPDATE, 14),
    (nr::STACK_SWITCH, 2),
    (nr::SET_CALLBACKS, 2),
    (nr::SET_TIMER_OP, 3),
    (nr::MEMORY_OP, 6),
    (nr::MULTICALL, 6),
    (nr::UPDATE_VA_MAPPING, 12),
    (nr::XEN_VERSION, 4),
    (nr::CONSOLE_IO, 2),
    (nr::IRET, 1),
    (nr::VCPU_OP, 4),
    (nr::SET_SEGMENT_BASE, 2),
    (nr::MMUEXT_OP, 14),
    (nr::EVENT_CHANNEL_OP, 10),
    (nr::SCHED_OP, 3),
    (nr::CALLBACK_OP, 3),
    (nr::SYSCTL, 3),
    (nr::DOMCTL, 4),
    (nr::NULL, 1),
    // Numbers this hypervisor does not implement (picked from UNKNOWN below).
    (u64::MAX, 4),
    // Nothing: placeholder weight 0 keeps the table's shape obvious.
    (u64::MAX - 1, 0),
];

/// Numbers without a handler here (Xen's other hypercalls, unassigned slots, beyond the table).
const UNKNOWN: [u64; 33] = [
    2, 5, 6, 7, 8, 9, 10, 11, 16, 19, 20, 21, 22, 27, 28, 31, 33, 34, 37, 38, 39, 40, 41, 42, 43,
    44, 47, 48, 54, 56, 63, 64, 0x82,
];

/// The `result` a multicall entry starts with: no hypercall returns it.
const NOT_RUN: u64 = 0x5eed_0000_dead_beef;

/// Families a multicall may contain.
const NESTED: [u64; 13] = [
    nr::MMU_UPDATE,
    nr::UPDATE_VA_MAPPING,
    nr::MMUEXT_OP,
    nr::EVENT_CHANNEL_OP,
    nr::XEN_VERSION,
    nr::MEMORY_OP,
    nr::SET_TIMER_OP,
    nr::VCPU_OP,
    nr::SCHED_OP,
    nr::STACK_SWITCH,
    nr::SET_SEGMENT_BASE,
    nr::MULTICALL,
    nr::NULL,
];

/// Selectors worth trying: the guest's own, the hypervisor's, null, RPL variants, garbage.
const SELECTORS: [u64; 12] = [
    GUEST_KERNEL_CS as u64,
    GUEST_KERNEL_SS as u64,
    0x33,
    0x2b,
    0x08,
    0x10,
    0x18,
    0x20,
    0,
    1,
    0xffff,
    0x1_0019,
];

impl Fuzzer {
    fn now(&self) -> u64 {
        crate::time::now()
    }

    /// The status of this domain's event-channel `port` (`EVTCHNSTAT_*`, and for a VIRQ its number).
    pub(super) fn port_status(&mut self, port: u32) -> (i64, u32, u32) {
        let mut st = abi::event_channel::EvtchnStatus {
            dom: DOMID_SELF,
            _pad0: 0,
            port,
            status: 0,
            vcpu: 0,
            u: [0; 2],
        };
        let r = self.keep(
            nr::EVENT_CHANNEL_OP,
            [
                abi::event_channel::EVTCHNOP_STATUS,
                &raw mut st as u64,
                0,
                0,
                0,
            ],
        );
        (r, st.status, st.u[0])
    }

    /// Make sure VIRQ_TIMER is still bound on the kernel's timer port before a block: a random
    /// `EVTCHNOP_close` reading its port from one of this domain's own buffers can unbind it (the
    /// hypervisor is right to let it), and a domain blocked with no timer binding sleeps for good — which
    /// the harness would report as a hang (seed 210 did). Rebinds it (the lowest free port, normally the
    /// same) and reports that it had to.
    fn ensure_timer_bound(&mut self) {
        let port = self.timer_port;
        let (r, status, virq) = self.port_status(port);
        if r == 0 && status == abi::event_channel::EVTCHNSTAT_VIRQ && virq == 0 {
            return;
        }
        self.timer_rebinds += 1;
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
        let mut b = abi::event_channel::EvtchnBindVirq {
            virq: abi::event_channel::VIRQ_TIMER,
            vcpu: 0,
            port: 0,
        };
        let rb = self.keep(
            nr::EVENT_CHANNEL_OP,
            [
                abi::event_channel::EVTCHNOP_BIND_VIRQ,
                &raw mut b as u64,
                0,
                0,
                0,
            ],
        );
        crate::println!(
            "fuzz: the kernel's VIRQ_TIMER binding was gone (port {port}: status {status}, virq {virq}); rebound: {rb}, port {}",
            b.port
        );
        if rb == 0 {
            self.timer_port = b.port;
        }
    }

    /// Arm the one-shot timer shortly (so a block returns).
    fn arm_timer(&mut self) {
        self.ensure_timer_bound();
        let d = self.now() + 20_000 + self.rng.below(400_000);
        let r = self.keep(nr::SET_TIMER_OP, [d, 0, 0, 0, 0]);
        if self.trace {
            let si = crate::platform::xen_pv::XEN_PV.shared_info();
            // SAFETY: the shared_info mapping (set at boot, mapped for the domain's lifetime); reads only.
            let (pend, mask, up, upm) = unsafe {
                (
                    core::ptr::read_volatile(&raw const (*si).evtchn_pending[0]),
                    core::ptr::read_volatile(&raw const (*si).evtchn_mask[0]),
                    core::ptr::read_volatile(&raw const (*si).vcpu_info[0].evtchn_upcall_pending),
                    core::ptr::read_volatile(&raw const (*si).vcpu_info[0].evtchn_upcall_mask),
                )
            };
            let port = self.timer_port;
            let (sr, status, virq) = self.port_status(port);
            crate::println!(
                "fuzz:   timer {d} (now {}) = {r}; pending[0] {pend:#x} mask[0] {mask:#x} upcall pending {up} masked {upm}; timer port {port} status {sr}: {status} virq {virq}",
                self.now()
            );
        }
    }

    /// One random call.
    pub fn step(&mut self) {
        let weights: Vec<u32> = FAMILIES.iter().map(|f| f.1).collect();
        let mut nr = FAMILIES[self.rng.weighted(&weights)].0;
        if nr >= u64::MAX - 1 {
            nr = if self.rng.chance(1, 8) {
                dist::int(&mut self.rng).max(64)
            } else {
                self.rng.pick(&UNKNOWN)
            };
        }
        match nr {
            nr::IRET => self.iret(),
            nr::MULTICALL => self.multicall(),
            nr::DOMCTL => self.domctl_step(),
            _ => {
                // Events masked: around calls that may replace the event callback, and around sched_op
                // so that the timer armed for a block cannot fire before the block (which unmasks and
                // sleeps atomically, returning at once if the event came first).
                let masked = matches!(
                    nr,
                    nr::SET_TRAP_TABLE | nr::SET_CALLBACKS | nr::CALLBACK_OP | nr::SCHED_OP
                );
                let args = self.args_for(nr);
                let enabled = masked && platform().irq_disable();
                if nr == nr::SCHED_OP {
                    self.arm_timer();
                }
                let r = self.call(nr, args);
                self.after(nr, args, r);
                if masked {
                    self.restore();
                    platform().irq_restore(enabled);
                }
            }
        }
    }

    /// Bookkeeping after a call: learn bound ports, note what needs restoring.
    fn after(&mut self, nr: u64, args: [u64; 5], r: i64) {
        match nr {
            nr::EVENT_CHANNEL_OP if r == 0 && (self.t.buf.0..self.t.hole).contains(&args[1]) => {
                // Where each bind's reply carries the new port.
                let off = match args[0] {
                    EVTCHNOP_ALLOC_UNBOUND | EVTCHNOP_BIND_IPI => 4,
                    EVTCHNOP_BIND_INTERDOMAIN | EVTCHNOP_BIND_VIRQ => 8,
                    _ => return,
                };
                let at = args[1] + off;
                if at + 4 <= self.t.hole {
                    // SAFETY: inside the arena (checked above), which is mapped and ours.
                    let port = unsafe { (at as *const u32).read_unaligned() };
                    if port < 4096 {
                        self.max_port = self.max_port.max(port);
                    }
                }
            }
            nr::VCPU_OP if r == 0 && args[0] == VCPUOP_SET_PERIODIC_TIMER => {
                self.dirty_periodic = true
            }
            nr::FPU_TASKSWITCH | nr::SET_DEBUGREG if r == 0 => self.dirty_misc = true,
            _ => {}
        }
    }

    /// The arguments of one call of family `nr` (structures written to the arena). Marks what the call
    /// may change for [`Fuzzer::restore`].
    pub fn args_for(&mut self, nr: u64) -> [u64; 5] {
        let r = &mut self.rng;
        let any = |f: &mut Fuzzer| dist::any(&mut f.rng, &f.t);
        match nr {
            nr::SET_TRAP_TABLE => {
                self.dirty_traps = true;
                let n = 1 + r.below(34) as usize;
                let mut t: Vec<TrapInfo> = Vec::with_capacity(n + 1);
                for _ in 0..n {
                    let vector = if self.rng.chance(3, 4) {
                        self.rng.below(33) as u8
                    } else {
                        self.rng.next_u64() as u8
                    };
                    let address = any(self);
                    t.push(TrapInfo {
                        vector,
                        flags: self.rng.next_u64() as u8,
                        cs: self.rng.pick(&SELECTORS) as u16,
                        _pad0: [0; 4],
                        address,
                    });
                }
                let terminated = self.rng.chance(3, 4);
                if terminated {
                    t.push(TrapInfo::default());
                }
                let p = self.put_bytes(t.as_bytes(), !terminated);
                [self.buf_or_addr(p), 0, 0, 0, 0]
            }
            nr::MMU_UPDATE => {
                let n = dist::count(r);
                let written = n.min(32) as usize;
                let mut reqs = Vec::with_capacity(written);
                for _ in 0..written {
                    let req = self.mmu_req();
                    reqs.push(req);
                }
                let p = self.put_bytes(reqs.as_bytes(), n > written as u64);
                let done = self.done_ptr();
                [self.buf_or_addr(p), n, done, self.foreigndom(), 0]
            }
            nr::STACK_SWITCH => {
                self.dirty_traps = true;
                let ss = r.pick(&SELECTORS);
                [ss, any(self), 0, 0, 0]
            }
            nr::SET_CALLBACKS => {
                self.dirty_traps = true;
                [any(self), any(self), any(self), 0, 0]
            }
            nr::SET_TIMER_OP => {
                let now = self.now();
                let d = match self.rng.below(4) {
                    0 => 0,
                    1 => now + self.rng.below(2_000_000),
                    2 => self.rng.below(now.max(1)),
                    _ => dist::int(&mut self.rng),
                };
                [d, 0, 0, 0, 0]
            }
            nr::MEMORY_OP => self.memory_op(),
            nr::UPDATE_VA_MAPPING => {
                // Not the hole inside a multicall: entries read past the written ones come from the hole,
                // which must stay unmapped until the batch ends.
                let va = if !self.nested && self.rng.chance(2, 3) {
                    self.t.hole
                        + if self.rng.chance(7, 8) {
                            0
                        } else {
                            self.rng.below(4096)
                        }
                } else {
                    self.hostile_addr()
                };
                self.dirty_hole = true;
                // Inside a multicall a later entry may write through the hole.
                let pte = if self.nested && va & !0xfff == self.t.hole {
                    self.hole_pte()
                } else {
                    dist::pte(&mut self.rng, &self.t, 40)
                };
                let flags = match self.rng.below(4) {
                    0 => self.rng.below(8),
                    1 => UVMF_INVLPG,
                    2 => (dist::addr(&mut self.rng, &self.t) & !7) | self.rng.below(8),
                    _ => dist::int(&mut self.rng),
                };
                [va, pte, flags, 0, 0]
            }
            nr::XEN_VERSION => {
                let cmd = if r.chance(7, 8) {
                    r.below(16)
                } else {
                    dist::int(r)
                };
                [cmd, dist::addr(&mut self.rng, &self.t), 0, 0, 0]
            }
            nr::CONSOLE_IO => {
                let cmd = r.pick(&[
                    abi::console::CONSOLEIO_WRITE,
                    abi::console::CONSOLEIO_READ,
                    2,
                    u64::MAX,
                ]);
                if self.rng.chance(1, 2) {
                    // A short printable line (terminated: the fuzzer's own lines must stay whole).
                    let len = self.rng.below(24) as usize;
                    let mut s: Vec<u8> =
                        (0..len).map(|_| b'a' + self.rng.below(26) as u8).collect();
                    s.push(b'\n');
                    let p = self.put_bytes(&s, false);
                    [cmd, s.len() as u64, p, 0, 0]
                } else {
                    [cmd, dist::int(&mut self.rng), self.hostile_addr(), 0, 0]
                }
            }
            nr::VCPU_OP => self.vcpu_op(),
            nr::SET_SEGMENT_BASE => {
                let which = if r.chance(7, 8) {
                    r.below(5)
                } else {
                    dist::int(r)
                };
                [which, any(self), 0, 0, 0]
            }
            nr::MMUEXT_OP => self.mmuext_op(),
            nr::EVENT_CHANNEL_OP => self.evtchn_op(),
            nr::SCHED_OP => self.sched_op(),
            nr::CALLBACK_OP => {
                self.dirty_traps = true;
                let cmd = if r.chance(7, 8) {
                    r.below(2)
                } else {
                    dist::int(r)
                };
                let reg = CallbackRegister {
                    r#type: if self.rng.chance(7, 8) {
                        self.rng.below(8) as u16
                    } else {
                        self.rng.next_u64() as u16
                    },
                    flags: self.rng.next_u64() as u16,
                    _pad0: 0,
                    address: any(self),
                };
                let p = self.put(&reg);
                [cmd, self.buf_or_addr(p), 0, 0, 0]
            }
            nr::SYSCTL => {
                let mut op = XenSysctl::new(if r.chance(3, 4) {
                    abi::sysctl::XEN_SYSCTL_GETDOMAININFOLIST
                } else {
                    dist::int(r) as u32 % 16
                });
                if self.rng.chance(1, 8) {
                    op.interface_version = dist::int(&mut self.rng) as u32;
                } else {
                    op.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
                }
                let l = abi::sysctl::XenSysctlGetdomaininfolist {
                    first_domain: dist::domid(&mut self.rng),
                    max_domains: dist::count(&mut self.rng) as u32,
                    buffer: dist::addr(&mut self.rng, &self.t),
                    ..Default::default()
                };
                op.set_getdomaininfolist(&l);
                let p = self.put(&op);
                [self.buf_or_addr(p), 0, 0, 0, 0]
            }
            nr::NULL => [any(self), any(self), any(self), any(self), any(self)],
            nr::MULTICALL => {
                // A nested multicall: refused or harmless, its entries hostile.
                [self.unreadable_addr(), dist::count(&mut self.rng), 0, 0, 0]
            }
            nr::IRET => [0; 5],
            // Unimplemented numbers whose Xen meaning could hurt this kernel if a future hypervisor
            // implemented them (GDT, descriptors): integers only, never a usable buffer.
            2 | 10 => [dist::int(r), dist::int(r), dist::int(r), 0, 0],
            _ => [any(self), any(self), any(self), any(self), any(self)],
        }
    }

    fn foreigndom(&mut self) -> u64 {
        if self.rng.chance(7, 8) {
            u64::from(DOMID_SELF)
        } else {
            u64::from(dist::domid(&mut self.rng)) | (dist::int(&mut self.rng) << 16)
        }
    }

    fn done_ptr(&mut self) -> u64 {
        match self.rng.below(3) {
            0 => 0,
            1 => self.put(&0u64),
            _ => dist::addr(&mut self.rng, &self.t),
        }
    }

    /// One `mmu_update` request, aimed at scratch tables, the hole's entry, or refused frames.
    fn mmu_req(&mut self) -> MmuUpdate {
        let cmd = match self.rng.below(16) {
            0..=10 => MMU_NORMAL_PT_UPDATE,
            11 => MMU_MACHPHYS_UPDATE,
            12 => MMU_PT_UPDATE_PRESERVE_AD,
            13 => MMU_PT_UPDATE_NO_TRANSLATE,
            _ => self.rng.below(8),
        };
        let idx = match self.rng.below(4) {
            0 => self.rng.below(4),
            1 => self.rng.pick(&[255, 256, 257, 271, 272, 273, 511]),
            _ => self.rng.below(512),
        };
        let ptr = match self.rng.below(10) {
            0 if !self.nested => self.hole_entry(),
            1 => dist::int(&mut self.rng),
            _ => (self.safe_mfn() << 12) | (idx * 8),
        };
        if cmd & 3 == MMU_MACHPHYS_UPDATE {
            self.dirty_m2p = true;
        }
        if ptr & !0xfff == self.hole_entry() & !0xfff {
            self.dirty_hole = true;
        }
        let ptr = (ptr & !3) | (cmd & 3) | if self.rng.chance(1, 32) { 4 } else { 0 };
        // A request aimed at the hole's L1 must name the hole's own slot (the others map kernel pages), and
        // map nothing the `done` counter could then be written into.
        let at_hole = ptr & !0xfff == self.hole_entry() & !0xfff;
        let ptr = if at_hole {
            (self.hole_entry() & !3) | (ptr & 3)
        } else {
            ptr
        };
        let val = if cmd & 3 == MMU_MACHPHYS_UPDATE {
            dist::int(&mut self.rng)
        } else if at_hole {
            self.hole_pte()
        } else {
            dist::pte(&mut self.rng, &self.t, 40)
        };
        MmuUpdate { ptr, val }
    }

    fn mmuext_op(&mut self) -> [u64; 5] {
        let n = dist::count(&mut self.rng);
        let written = n.min(16) as usize;
        let mut ops = Vec::with_capacity(written);
        for _ in 0..written {
            let cmd = match self.rng.below(16) {
                0..=7 => self.rng.below(5) as u32,
                8 => MMUEXT_NEW_BASEPTR,
                9..=12 => self.rng.below(21) as u32,
                _ => dist::int(&mut self.rng) as u32,
            };
            let arg1 = match cmd {
                MMUEXT_PIN_L1_TABLE..=MMUEXT_UNPIN_TABLE => {
                    // Pins and unpins may name the real tables too (the L4's pin is restored).
                    let m = dist::mfn(&mut self.rng, &self.t);
                    if cmd == MMUEXT_UNPIN_TABLE && self.t.tables.contains(&m) {
                        self.dirty_pin = true;
                    }
                    m
                }
                // Only bases that are refused or the current one: any other valid L4 would unmap this
                // kernel.
                MMUEXT_NEW_BASEPTR => {
                    let cur = self.kernel_l4.1.0;
                    let f = self.rng.pick(&self.t.foreign);
                    self.rng.pick(&[cur, f, self.t.max_mfn, u64::MAX])
                }
                MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_MULTI | MMUEXT_INVLPG_ALL | MMUEXT_SET_LDT => {
                    dist::any(&mut self.rng, &self.t)
                }
                _ => self.safe_mfn(),
            };
            ops.push(MmuextOp {
                cmd,
                _pad0: 0,
                arg1,
                arg2: dist::any(&mut self.rng, &self.t),
            });
        }
        let p = self.put_bytes(ops.as_bytes(), n > written as u64);
        let done = self.done_ptr();
        [self.buf_or_addr(p), n, done, self.foreigndom(), 0]
    }

    fn memory_op(&mut self) -> [u64; 5] {
        let cmd = match self.rng.below(8) {
            0..=5 => self.rng.pick(&[
                XENMEM_INCREASE_RESERVATION,
                XENMEM_DECREASE_RESERVATION,
                XENMEM_CURRENT_RESERVATION,
                XENMEM_MAXIMUM_RESERVATION,
                XENMEM_MACHPHYS_MAPPING,
                XENMEM_POPULATE_PHYSMAP,
                XENMEM_MAXIMUM_RAM_PAGE,
                XENMEM_ADD_TO_PHYSMAP,
                XENMEM_MEMORY_MAP,
                XENMEM_EXCHANGE,
                XENMEM_MAXIMUM_GPFN,
            ]),
            6 => self.rng.below(32) | (dist::int(&mut self.rng) << MEMOP_EXTENT_SHIFT),
            _ => dist::int(&mut self.rng),
        };
        let arg = match cmd & MEMOP_CMD_MASK {
            XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
                // The extent list: the fuzzer's own frames in use, scratch frames, foreign ones.
                let mut extents: Vec<u64> = Vec::new();
                for _ in 0..self.rng.below(8) {
                    extents.push(dist::mfn(&mut self.rng, &self.t));
                }
                let list = self.put_bytes(extents.as_bytes(), false);
                let res = XenMemoryReservation {
                    extent_start: self.buf_or_addr(list),
                    nr_extents: dist::count(&mut self.rng),
                    extent_order: dist::count(&mut self.rng) as u32,
                    mem_flags: dist::int(&mut self.rng) as u32,
                    domid: dist::domid(&mut self.rng),
                    _pad0: [0; 6],
                };
                self.put(&res)
            }
            XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => {
                let d = dist::domid(&mut self.rng);
                self.put(&d)
            }
            _ => self.put_random(4),
        };
        [cmd, self.buf_or_addr(arg), 0, 0, 0]
    }

    fn vcpu_op(&mut self) -> [u64; 5] {
        let cmd = if self.rng.chance(7, 8) {
            self.rng.below(16)
        } else {
            dist::int(&mut self.rng)
        };
        // vCPU 0 is the only one; taking it down or NMI-ing it (should a hypervisor implement those) would
        // stop this domain for good, so those ask for other vCPUs.
        let vcpu = match cmd {
            VCPUOP_INITIALISE | VCPUOP_UP | VCPUOP_DOWN | VCPUOP_SEND_NMI => {
                dist::int(&mut self.rng).max(1)
            }
            _ if self.rng.chance(3, 4) => 0,
            _ => dist::int(&mut self.rng),
        };
        let arg = match cmd {
            VCPUOP_SET_PERIODIC_TIMER => {
                let p = if self.rng.chance(1, 2) {
                    1_000_000 + self.rng.below(10_000_000)
                } else {
                    dist::int(&mut self.rng)
                };
                self.put(&VcpuSetPeriodicTimer { period_ns: p })
            }
            VCPUOP_SET_SINGLESHOT_TIMER => {
                let now = self.now();
                let t = VcpuSetSingleshotTimer {
                    timeout_abs_ns: if self.rng.chance(1, 2) {
                        now + self.rng.below(2_000_000)
                    } else {
                        dist::int(&mut self.rng)
                    },
                    flags: self.rng.next_u64() as u32,
                    _pad0: 0,
                };
                self.put(&t)
            }
            // Registrations of areas the hypervisor would write on its own later: refused frames and
            // addresses only.
            VCPUOP_REGISTER_VCPU_INFO => {
                let f = self.rng.pick(&self.t.foreign);
                let info = VcpuRegisterVcpuInfo {
                    mfn: self.rng.pick(&[f, u64::MAX, self.t.max_mfn]),
                    offset: dist::int(&mut self.rng) as u32,
                    rsvd: 0,
                };
                self.put(&info)
            }
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA
            | VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA
            | VCPUOP_REGISTER_RUNSTATE_PHYS_AREA
            | VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA => {
                let a = self.hostile_addr();
                return [cmd, vcpu, a, 0, 0];
            }
            _ => self.put_random(4),
        };
        [cmd, vcpu, self.buf_or_addr(arg), 0, 0]
    }

    fn evtchn_op(&mut self) -> [u64; 5] {
        let cmd = if self.rng.chance(15, 16) {
            self.rng.below(14)
        } else {
            dist::int(&mut self.rng)
        };
        let mut b = [0u8; 32];
        for x in b.iter_mut() {
            *x = self.rng.next_u64() as u8;
        }
        let port = dist::port(&mut self.rng, &self.t);
        let free = self.free_port();
        let dom = dist::domid(&mut self.rng);
        let dom2 = dist::domid(&mut self.rng);
        let small = self.rng.below(4) as u32;
        let w = |b: &mut [u8; 32], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        match cmd {
            EVTCHNOP_ALLOC_UNBOUND => {
                w(&mut b, 0, &dom.to_le_bytes());
                w(&mut b, 2, &dom2.to_le_bytes());
            }
            EVTCHNOP_BIND_INTERDOMAIN => {
                w(&mut b, 0, &dom.to_le_bytes());
                w(&mut b, 4, &port.to_le_bytes());
            }
            EVTCHNOP_BIND_VIRQ => {
                let virq = if self.rng.chance(7, 8) {
                    self.rng.below(25) as u32
                } else {
                    dist::int(&mut self.rng) as u32
                };
                w(&mut b, 0, &virq.to_le_bytes());
                w(&mut b, 4, &small.to_le_bytes());
            }
            EVTCHNOP_BIND_IPI => w(&mut b, 0, &small.to_le_bytes()),
            EVTCHNOP_CLOSE => w(&mut b, 0, &free.to_le_bytes()),
            EVTCHNOP_BIND_VCPU => {
                w(&mut b, 0, &free.to_le_bytes());
                w(&mut b, 4, &small.to_le_bytes());
            }
            EVTCHNOP_SEND | EVTCHNOP_UNMASK => w(&mut b, 0, &port.to_le_bytes()),
            EVTCHNOP_STATUS => {
                w(&mut b, 0, &dom.to_le_bytes());
                w(&mut b, 4, &port.to_le_bytes());
            }
            EVTCHNOP_RESET => {
                // Never this domain's own ports (its timer) nor its neighbour's.
                let d = if matches!(dom, 0 | 1 | DOMID_SELF) {
                    0x7ff1
                } else {
                    dom
                };
                w(&mut b, 0, &d.to_le_bytes());
            }
            _ => {}
        }
        let p = self.put_bytes(&b[..24], false);
        // RESET with a random structure is kept to the arena: a random domain id there could be this one.
        let arg = if cmd == EVTCHNOP_RESET {
            p
        } else {
            self.buf_or_addr(p)
        };
        [cmd, arg, 0, 0, 0]
    }

    fn sched_op(&mut self) -> [u64; 5] {
        let cmd = match self.rng.below(20) {
            0..=7 => SCHEDOP_YIELD,
            8..=10 => SCHEDOP_BLOCK,
            11..=15 => SCHEDOP_POLL,
            16 => SCHEDOP_SHUTDOWN,
            17 => SCHEDOP_REMOTE_SHUTDOWN,
            18 => self.rng.pick(&[
                SCHEDOP_SHUTDOWN_CODE,
                SCHEDOP_WATCHDOG,
                SCHEDOP_PIN_OVERRIDE,
            ]),
            _ => 8 + dist::int(&mut self.rng) % 1024,
        };
        // Inside a multicall an earlier entry may cancel the timer armed for a block: no block there.
        let cmd = if self.nested && cmd == SCHEDOP_BLOCK {
            SCHEDOP_YIELD
        } else {
            cmd
        };
        let arg = match cmd {
            SCHEDOP_POLL => {
                let n = self.rng.below(18) as usize;
                let ports: Vec<u32> = (0..n).map(|_| dist::port(&mut self.rng, &self.t)).collect();
                let pp = self.put_bytes(ports.as_bytes(), false);
                let now = self.now();
                // Never 0 (no timeout) and never far away.
                let timeout = if self.rng.chance(1, 4) {
                    1 + self.rng.below(now.max(1))
                } else {
                    now + 1 + self.rng.below(1_000_000)
                };
                let nr_ports = if self.rng.chance(7, 8) {
                    n as u32
                } else {
                    dist::int(&mut self.rng) as u32
                };
                let poll = SchedPoll {
                    ports: self.buf_or_addr(pp),
                    nr_ports,
                    _pad0: 0,
                    timeout,
                };
                // Not buf_or_addr: a random structure could carry timeout 0.
                self.put(&poll)
            }
            SCHEDOP_SHUTDOWN => {
                // Only requests that must be refused: an unreadable structure or an unknown reason.
                if self.rng.chance(1, 2) {
                    self.unreadable_addr()
                } else {
                    let reason = SHUTDOWN_MAX + 1 + self.rng.below(1 << 31) as u32;
                    self.put(&reason)
                }
            }
            SCHEDOP_REMOTE_SHUTDOWN => {
                let d = dist::domid(&mut self.rng);
                let d = if matches!(d, 0 | 1 | DOMID_SELF) {
                    7
                } else {
                    d
                };
                let req = SchedRemoteShutdown {
                    domain_id: d,
                    _pad0: 0,
                    reason: self.rng.below(8) as u32,
                };
                self.put(&req)
            }
            SCHEDOP_WATCHDOG => {
                let w = SchedWatchdog {
                    id: dist::int(&mut self.rng) as u32,
                    timeout: 0,
                };
                self.put(&w)
            }
            SCHEDOP_YIELD | SCHEDOP_BLOCK => dist::any(&mut self.rng, &self.t),
            _ => self.hostile_addr(),
        };
        [cmd, arg, dist::int(&mut self.rng), 0, 0]
    }

    /// `multicall` of random entries from [`NESTED`]; their results are counted under their families.
    fn multicall(&mut self) {
        let n = dist::count(&mut self.rng);
        let written = n.min(8) as usize;
        let mut entries = Vec::with_capacity(written);
        self.nested = true;
        for _ in 0..written {
            let op = if self.rng.chance(15, 16) {
                self.rng.pick(&NESTED)
            } else {
                self.rng.pick(&UNKNOWN)
            };
            let a = self.args_for(op);
            entries.push(MulticallEntry {
                op,
                result: NOT_RUN,
                args: [a[0], a[1], a[2], a[3], a[4], dist::int(&mut self.rng)],
            });
        }
        self.nested = false;
        // Zeros from a nested entry (set_trap_table(0)) would clear the trap table, a nested vcpu_op may
        // start a fast periodic timer: restore both after.
        self.dirty_traps = true;
        self.dirty_periodic = true;
        let at_end = n > written as u64;
        let p = self.put_bytes(entries.as_bytes(), at_end);
        let arg = if self.rng.chance(15, 16) {
            p
        } else {
            self.unreadable_addr()
        };
        if self.trace {
            for e in &entries {
                crate::println!("fuzz:   entry {} {:x?}", e.op, e.args);
            }
        }
        let enabled = platform().irq_disable();
        self.arm_timer();
        let r = self.call(nr::MULTICALL, [arg, n, 0, 0, 0]);
        self.restore();
        platform().irq_restore(enabled);
        if r == 0 && arg == p {
            for (i, e) in entries.iter().enumerate() {
                let at = p + (i * core::mem::size_of::<MulticallEntry>()) as u64 + 8;
                // SAFETY: the entries were written at `p` in the arena, which is mapped and ours.
                let result = unsafe { (at as *const u64).read_unaligned() };
                // Entries after one that yielded were not run.
                if result != NOT_RUN {
                    self.stats.record(e.op, result as i64);
                }
            }
        }
    }

    /// `iret` through the probe, with hostile CS, SS and RFLAGS (never TF or IF: events stay masked and
    /// nothing single-steps).
    fn iret(&mut self) {
        let pick_sel = |f: &mut Fuzzer| {
            let s = f.rng.pick(&SELECTORS);
            // Ring 3 selectors would return to ring 3 at a kernel address.
            if s & 3 == 3 { s & !1 } else { s }
        };
        let cs = pick_sel(self);
        let ss = pick_sel(self);
        // Never TF, IF or DF (a set DF would break this kernel's string copies, not the hypervisor).
        let rflags = (dist::int(&mut self.rng) & !(0x100 | 0x200 | 0x400)) | 2;
        let enabled = platform().irq_disable();
        let mut out = [0u64; 3];
        // SAFETY: the probe builds an iret_context resuming right after the hypercall on its own stack,
        // with events masked (IF clear in `rflags`), and reports the state it finds there.
        let r = unsafe {
            crate::arch::x86_64::trap_probes::guest_iret_probe(cs, rflags, ss, &raw mut out, 0)
        };
        self.stats.record(nr::IRET, r);
        platform().irq_restore(enabled);
    }
}
