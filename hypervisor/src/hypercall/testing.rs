//! A fake caller for the hypercall families' host tests: one domain (id 1) on a small fake machine, with
//! validated page tables that map a writable and a read-only page.
//!
//! ```text
//! frames 1..=4   L4, L3, L2, L1 of domain 1 (validated as its base)
//! frame 10       mapped writable at RW_PAGE       frame 11  mapped read-only at RO_PAGE
//! frames 12..=14 domain 1's, unused              frame 15  its shared_info page (held writable)
//! frames 16..=19 domain 2's                      frames 32..64 free
//! ```

use abi::types::{Maddr, Mfn};

use super::{Action, BUDGET, DomainMm, Env, HypercallCtx, Lazy, dispatch};
use crate::domain::state::{Domain, DomainState, FxArea, MAX_DOMAINS, Vcpu};
use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::frame_table::{FrameTable, PageInfo};
use crate::mm::machine::{M2p, Machine};
use crate::mm::phys::fake::FakeMachine;
use crate::mm::ptval::{Mm, Policy};

/// Guest address of the writable test page (frame 10).
pub const RW_PAGE: u64 = 0x40_0000;
/// Guest address of the read-only test page (frame 11).
pub const RO_PAGE: u64 = 0x40_1000;
/// The L1 that maps both pages.
pub const L1: Mfn = Mfn(4);
/// The fake CPU's physical-address width.
pub const MAXPHYADDR: u32 = 40;
/// Frames of the fake machine.
const FRAMES: usize = 64;

/// The fake machine's memory with domain 1's tables written (not yet validated).
pub fn machine() -> (FakeMachine, Mfn) {
    let mut m = FakeMachine::new(FRAMES);
    let put = |m: &mut FakeMachine, t: u64, i: u64, v: u64| m.write_u64(Maddr(t * 4096 + i * 8), v);
    put(&mut m, 1, 0, 0x2000 | 3);
    put(&mut m, 2, 0, 0x3000 | 3);
    put(&mut m, 3, 2, 0x4000 | 3);
    put(&mut m, 4, 0, 0xa000 | 3);
    put(&mut m, 4, 1, 0xb000 | 1);
    (m, Mfn(1))
}

/// A caller with its machine state.
pub struct World {
    /// Machine memory.
    pub mem: FakeMachine,
    /// Free frames, frame table, M2P.
    pub machine: Machine<'static>,
    /// Domain 1's memory-management state.
    pub dom: DomainMm,
    /// Console output so far.
    pub out: Vec<u8>,
    /// Domain 1's registers.
    pub regs: crate::regs::EntryFrame,
    /// Domain 1's trap state.
    pub vcpu: crate::vcpu::VcpuState,
    /// Event channels of all domains.
    pub events: &'static mut crate::event::channel::EventSystem,
    /// The scheduling policy (`.0`) and the poll sets (`.1`).
    pub sched: (crate::sched_policy::SchedPolicy, super::sched_op::PollTable),
    /// shared_info frames: domain 1's is frame 15, domain 2's frame 19.
    pub shared_info: [Option<Mfn>; MAX_DOMAINS],
    /// System time.
    pub now_ns: u64,
    /// Domain 1 has `SIF_PRIVILEGED` (false unless a test sets it).
    pub privileged: bool,
    /// The other domains (indexed by id; slot 1, the caller, stays `None`): domain 2, runnable, owning
    /// frames 16..=18 with its shared_info page at frame 19.
    pub others: Vec<Option<Domain>>,
    /// The deadlines handlers asked the timer to be armed for (`Env::arm_deadline`), in order.
    pub armed: Vec<u64>,
    /// The calling domain's id (1 unless a test makes another domain the caller: its calls then use
    /// domain 1's memory and registers, which is enough for calls that read only an argument).
    pub caller: u16,
}

/// A domain for [`World::others`], with the given state and memory-management facts.
pub fn other_domain(id: u16, state: DomainState, mm: DomainMm) -> Domain {
    Domain {
        id,
        state,
        vcpu: Vcpu {
            regs: Default::default(),
            fx: FxArea::initial(),
            pv: Default::default(),
        },
        mm,
        privileged: id == 0,
        console: crate::console::LineBuffer::new(),
        emu: None,
        hvm: None,
        suspend: Default::default(),
    }
}

impl World {
    /// Domain 1 with its tables validated as its base.
    pub fn new() -> World {
        let (mut mem, root) = machine();
        let bits = Box::leak(vec![0u64; FRAMES / 64].into_boxed_slice());
        let info = Box::leak(vec![PageInfo::EMPTY; FRAMES].into_boxed_slice());
        let m2p = Box::leak(vec![0u64; FRAMES].into_boxed_slice());
        let mut frames = FrameAllocator::new(bits);
        frames.add_free_range(Maddr(32 * 4096), Maddr(FRAMES as u64 * 4096));
        let mut machine = Machine {
            frames,
            ft: FrameTable::new(info),
            m2p: M2p::new(m2p),
        };
        for f in 1..=15 {
            machine.ft.assign(Mfn(f), 1).unwrap();
        }
        for f in 16..=19 {
            machine.ft.assign(Mfn(f), 2).unwrap();
        }
        let mut mm = Mm::new(
            &mut machine.ft,
            &mut mem,
            Policy {
                maxphyaddr: MAXPHYADDR,
                hv_l4: &[],
            },
        );
        mm.set_base(None, root, 1)
            .expect("the test tables validate");
        // As `create_domain` does: each shared_info page is held writable for the hypervisor.
        mm.hold_hv_writable(Mfn(15), 1).expect("hold shared_info");
        mm.hold_hv_writable(Mfn(19), 2).expect("hold shared_info");
        let dom = DomainMm {
            base: root,
            tot_pages: 14,
            max_pages: 16,
            shared_info: Mfn(15),
            flush_tlb: false,
            preemptions: 0,
            time_offset_ns: 0,
        };
        World {
            mem,
            machine,
            dom,
            out: Vec::new(),
            regs: Default::default(),
            vcpu: Default::default(),
            events: Box::leak(Box::new(crate::event::channel::EventSystem::new())),
            sched: (
                crate::sched_policy::SchedPolicy::new(),
                super::sched_op::PollTable::new(),
            ),
            shared_info: core::array::from_fn(|i| match i {
                1 => Some(Mfn(15)),
                2 => Some(Mfn(19)),
                _ => None,
            }),
            now_ns: 0,
            privileged: false,
            others: (0..MAX_DOMAINS)
                .map(|i| {
                    (i == 2).then(|| {
                        let mm = DomainMm {
                            base: Mfn(16),
                            tot_pages: 3,
                            max_pages: 3,
                            shared_info: Mfn(19),
                            flush_tlb: false,
                            preemptions: 0,
                            time_offset_ns: 0,
                        };
                        other_domain(2, DomainState::Runnable, mm)
                    })
                })
                .collect(),
            armed: Vec::new(),
            caller: 1,
        }
    }

    /// Run one hypercall with `budget` work units.
    pub fn call_with_budget(&mut self, number: u64, args: [u64; 5], budget: u32) -> Action {
        let mut env = TestEnv {
            out: &mut self.out,
            now_ns: self.now_ns,
            armed: &mut self.armed,
        };
        let slots: &mut [Option<Domain>; MAX_DOMAINS] = self
            .others
            .as_mut_slice()
            .try_into()
            .expect("a slot per domain id");
        // Slot 1 (the caller's) stays `None`.
        let (_, others) = super::Others::split(slots, 1).expect("slot 1 exists");
        // The arguments in the frame's registers, where the trap path leaves them.
        super::set_args(&mut self.regs, args);
        let mut ctx = HypercallCtx {
            domid: self.caller,
            privileged: self.privileged,
            user: false,
            mem: &mut self.mem,
            machine: Lazy::ready(&mut self.machine),
            dom: &mut self.dom,
            regs: &mut self.regs,
            vcpu: &mut self.vcpu,
            events: Lazy::ready(self.events),
            sched: Lazy::ready(&mut self.sched),
            shared_info: &self.shared_info,
            others,
            policy: &Policy {
                maxphyaddr: MAXPHYADDR,
                hv_l4: &[],
            },
            budget,
            env: &mut env,
        };
        dispatch(number, &mut ctx)
    }

    /// Run one hypercall.
    pub fn call(&mut self, number: u64, args: [u64; 5]) -> Action {
        self.call_with_budget(number, args, BUDGET)
    }

    /// Run a hypercall to completion, following continuations like the trap code does; returns the final
    /// action and the number of continuations.
    pub fn call_to_end(&mut self, number: u64, args: [u64; 5], budget: u32) -> (Action, u32) {
        let (mut args, mut n) = (args, 0);
        loop {
            match self.call_with_budget(number, args, budget) {
                Action::Continue(a) => {
                    args = a;
                    n += 1;
                }
                other => return (other, n),
            }
        }
    }

    /// Entry `i` of page table `t`.
    pub fn entry(&self, t: Mfn, i: u64) -> u64 {
        use crate::mm::phys::PhysRead;
        self.mem.read_u64(Maddr(t.0 * 4096 + i * 8))
    }
}

/// The test side of [`Env`]: console output collected, a fixed clock, no console input.
struct TestEnv<'a> {
    out: &'a mut Vec<u8>,
    now_ns: u64,
    armed: &'a mut Vec<u64>,
}

impl Env for TestEnv<'_> {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn console_write(&mut self, _id: u16, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn console_input_owner(&self, _id: u16) -> bool {
        false
    }

    fn console_read(&mut self, _id: u16, _buf: &mut [u8]) -> usize {
        0
    }

    fn hv_cmdline(&self) -> &str {
        "loglevel=info"
    }

    fn arm_deadline(&mut self, deadline: u64) {
        self.armed.push(deadline);
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Test access to a whole frame of the fake machine.
pub trait FrameForTest {
    /// Frame `mfn`'s bytes.
    fn frame_mut_for_test(&mut self, mfn: u64) -> &mut [u8; 4096];
}

impl FrameForTest for FakeMachine {
    fn frame_mut_for_test(&mut self, mfn: u64) -> &mut [u8; 4096] {
        crate::mm::phys::FrameMem::frame_mut(self, Mfn(mfn))
    }
}

/// Run one hypercall as domain 1 on `m` (tables rooted at `root`); returns the action and console output.
pub fn call(m: &mut FakeMachine, root: Mfn, number: u64, args: [u64; 5]) -> (Action, Vec<u8>) {
    let mut w = World::new();
    std::mem::swap(&mut w.mem, m);
    w.dom.base = root;
    let a = w.call(number, args);
    std::mem::swap(&mut w.mem, m);
    (a, w.out)
}
