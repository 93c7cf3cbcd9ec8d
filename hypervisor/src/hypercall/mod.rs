//! Hypercall dispatch: decode the number, hand the arguments to the family's handler, report the outcome.
//!
//! Register convention (see `abi::hypercall`): number in RAX; arguments in RDI, RSI, RDX, R10, R8; result in
//! RAX, a negative Xen errno on failure. Each family lives in its own file and follows one pattern: decode
//! the raw registers (and any guest structure) into a typed request with no side effects, then act.
//!
//! Long batches (`mmu_update`, `mmuext_op`, `multicall`, `memory_op` reservations) spend a *budget* of work
//! units per entry into the hypervisor. When it runs out they return [`Action::Continue`] with their
//! progress folded into new arguments; the trap code rewinds the guest over `int 0x82` so the same hypercall
//! restarts with those arguments after other domains have run (Xen's continuations).

pub mod console_io;
pub mod counters;
pub mod domctl;
pub mod event_channel_op;
pub mod lazy;
pub mod light;
pub mod memory_op;
pub mod mmu_update;
pub mod mmuext_op;
pub mod multicall;
pub mod sched_op;
pub mod sysctl;
pub mod timer;
pub mod traps;
pub mod vcpu_context;
pub mod xen_version;

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::sched::ShutdownReason;
use abi::types::Mfn;

use crate::mm::guest_mem::GuestView;
use crate::mm::machine::Machine;
use crate::mm::phys::FrameMem;
use crate::mm::ptval::{Mm, Policy, PtMem};
use crate::mm::walk;
use abi::types::Gva;
use zerocopy::{FromBytes, IntoBytes};

/// What hypercalls need of machine memory: frame access for guest copies, entry writes for page tables.
pub trait MachineMem: PtMem + FrameMem {}
impl<T: PtMem + FrameMem> MachineMem for T {}
use crate::domain::state::{Domain, MAX_DOMAINS};
use crate::event::bits::SharedInfoPage;
use crate::event::channel::EventSystem;
use crate::regs::EntryFrame;
use crate::sched_policy::SchedPolicy;
use crate::vcpu::VcpuState;
pub use lazy::{Env, Lazy};

/// Work units one entry into the hypervisor may spend before a long batch is preempted (one unit is one
/// page-table update, one multicall entry, one reservation extent).
pub const BUDGET: u32 = 4096;

/// A domain's memory-management state, as the hypercalls see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainMm {
    /// The current page-table base (L4); it holds an L4 type reference.
    pub base: Mfn,
    /// Frames the domain owns (its reservation; the shared-info page is not counted).
    pub tot_pages: u64,
    /// The shared-info page: owned by the domain, never released by it.
    pub shared_info: Mfn,
    /// The most frames it may own.
    pub max_pages: u64,
    /// Page tables changed: the next switch to the domain must flush its TLB entries.
    pub flush_tlb: bool,
    /// How many times a long hypercall of this domain was preempted (continuations created).
    pub preemptions: u64,
    /// Added to the hypervisor's system time in everything this domain sees (its pvclock) and taken off
    /// the absolute deadlines it gives: 0 except for a domain restored from an image saved at a later
    /// system time (another boot), so that its clock continues monotonically (`domain::save`).
    pub time_offset_ns: u64,
}

impl DomainMm {
    /// A deadline in the domain's time as the hypervisor's system time.
    pub fn to_system_time(&self, t: u64) -> u64 {
        t.saturating_sub(self.time_offset_ns)
    }
}

/// Everything a handler may use: the caller's identity, its arguments, its memory and the machine state.
pub struct HypercallCtx<'a, 'm, M: MachineMem> {
    /// Calling domain.
    pub domid: u16,
    /// The caller has `SIF_PRIVILEGED`.
    pub privileged: bool,
    /// The call came from ring 3 (guest buffers need user permission).
    pub user: bool,
    /// Machine memory (guest memory, page tables).
    pub mem: &'a mut M,
    /// Free frames, frame table, M2P (locked on first use).
    pub machine: Lazy<'a, Machine<'m>>,
    /// The caller's memory-management state.
    pub dom: &'a mut DomainMm,
    /// The caller's registers (the hypercall's own frame; `iret` replaces it).
    pub regs: &'a mut EntryFrame,
    /// The caller's trap table, callbacks, kernel stack and segment bases.
    pub vcpu: &'a mut VcpuState,
    /// Every domain's event channels (locked on first use).
    pub events: Lazy<'a, EventSystem>,
    /// The scheduling policy (blocking, timers) and which ports each domain is polling
    /// (`SCHEDOP_poll`), behind one lock (taken on first use).
    pub sched: Lazy<'a, (SchedPolicy, sched_op::PollTable)>,
    /// Every domain's shared_info frame (indexed by domain id; `None`: no such domain).
    pub shared_info: &'a [Option<Mfn>; MAX_DOMAINS],
    /// Every *other* domain, read-only, by domain id, for the calls that report on or control domains
    /// (`sysctl`, `domctl`).
    pub others: Others<'a>,
    /// The validator's machine facts: physical-address width, the hypervisor's L4 entries.
    pub policy: &'a Policy<'a>,
    /// Remaining work units before a long batch must be preempted.
    pub budget: u32,
    /// The clock, the console and the hypervisor's command line, for the handlers that use them.
    pub env: &'a mut dyn Env,
}

impl<'m, M: MachineMem> HypercallCtx<'_, 'm, M> {
    /// The arguments (RDI, RSI, RDX, R10, R8), read from the caller's frame where the entry code left
    /// them: the context holds no copy, so building it costs no loads and stores for them (every full
    /// hypercall). A multicall puts each entry's arguments there while it runs and the caller's back
    /// after ([`multicall`]). Read before a handler changes `regs` (only `iret` does, and it changes no
    /// argument register).
    #[inline(always)]
    pub fn args(&self) -> [u64; 5] {
        args_of(self.regs)
    }

    /// The caller's address space, for copying to and from it.
    pub fn guest(&mut self) -> GuestView<'_, M> {
        GuestView::new(self.mem, self.dom.base, self.user)
    }

    /// Copy the caller's bytes at `va` into `buf`, like `self.guest().read(va, buf)` (any unmapped,
    /// non-canonical or reserved byte is `-EFAULT`). A range within one page (a hypercall's argument
    /// structure, an `iret` context) is read after one walk of the caller's tables to its first byte,
    /// which checks what the general copy checks for a one-page range: a canonical, non-reserved address
    /// (page-aligned boundaries, so the whole range) and a present 4 KiB mapping with the caller's ring's
    /// permission at every level.
    pub fn read(&mut self, va: Gva, buf: &mut [u8]) -> Result<(), Errno> {
        self.read_inline(va, buf)
    }

    /// [`HypercallCtx::read`]'s body, inlined where it is called.
    #[inline(always)]
    fn read_inline(&mut self, va: Gva, buf: &mut [u8]) -> Result<(), Errno> {
        if va.page_offset() + buf.len() as u64 <= abi::types::PAGE_SIZE && !buf.is_empty() {
            let access = walk::Access {
                write: false,
                user: self.user,
            };
            let ma = walk::translate(&*self.mem, self.dom.base, va, access)
                .map_err(|_| Errno::EFAULT)?;
            self.mem.read_bytes(ma, buf);
            return Ok(());
        }
        self.guest().read(va, buf)
    }

    /// A plain-data object from the caller's address `va` ([`HypercallCtx::read`]).
    pub fn read_obj<T: FromBytes + IntoBytes>(&mut self, va: Gva) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read(va, v.as_mut_bytes())?;
        Ok(v)
    }

    /// [`HypercallCtx::read_obj`] inlined into its caller: for a handler whose work besides the read is a
    /// few instructions (an event send), where the call to the shared copy would be a good share of it.
    /// (Not for every handler: inlined into a larger one, the walk's registers can cost it more than the
    /// call saves.)
    #[inline(always)]
    pub fn read_obj_inline<T: FromBytes + IntoBytes>(&mut self, va: Gva) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read_inline(va, v.as_mut_bytes())?;
        Ok(v)
    }

    /// The page-table validation machinery over the caller's memory.
    pub fn mm(&mut self) -> Mm<'_, 'm, M> {
        Mm::new(&mut self.machine.get().ft, self.mem, *self.policy)
    }

    /// The event bits of domain `dom`'s shared_info page (`None` for a domain that does not exist).
    pub fn event_bits(&mut self, dom: u16) -> Option<SharedInfoPage<'_>> {
        let mfn = (*self.shared_info.get(usize::from(dom))?)?;
        Some(SharedInfoPage::new(self.mem.frame_mut(mfn)))
    }

    /// Set or clear the caller's virtual interrupt flag (`evtchn_upcall_mask` of vCPU 0 in shared_info).
    pub fn set_events_masked(&mut self, masked: bool) {
        self.mem.frame_mut(self.dom.shared_info)[1] = u8::from(masked);
    }

    /// Spend one work unit; false when the budget is exhausted (the caller must create a continuation).
    pub fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }
}

/// Every domain but the caller, read-only, by id: the domain table's slots with the caller's left out
/// (no copy, whatever the number of slots). Two words (the slots' address and the caller's index), so
/// that building a hypercall's context costs two stores for it; a slot is reached only when asked for.
#[derive(Clone, Copy)]
pub struct Others<'a> {
    /// The first of the `MAX_DOMAINS` slots ([`Others::split`]'s array).
    slots: *const Option<Domain>,
    /// The caller's slot, never handed out (below `MAX_DOMAINS`).
    caller: usize,
    /// Shared borrows of every slot but the caller's, for `'a`.
    _slots: core::marker::PhantomData<&'a [Option<Domain>]>,
}

impl<'a> Others<'a> {
    /// Split `slots` at `caller`: the caller's slot, mutable, and the others (`None` if `caller` is past
    /// the table).
    #[inline(always)]
    pub fn split(
        slots: &'a mut [Option<Domain>; MAX_DOMAINS],
        caller: usize,
    ) -> Option<(&'a mut Option<Domain>, Others<'a>)> {
        if caller >= MAX_DOMAINS {
            return None;
        }
        let base = slots.as_mut_ptr();
        // SAFETY: `caller` is in bounds (checked above). The caller's slot is borrowed mutably through
        // `base`, the others only ever shared through `base` (`get` never hands out `caller`): the two
        // borrows are disjoint and both live for `'a`, the exclusive borrow of the whole array.
        let me = unsafe { &mut *base.add(caller) };
        Some((
            me,
            Others {
                slots: base.cast_const(),
                caller,
                _slots: core::marker::PhantomData,
            },
        ))
    }

    /// Domain `id` (`None` for the caller, a free slot, or an id past the table).
    #[inline]
    pub fn get(&self, id: usize) -> Option<&'a Domain> {
        if id == self.caller || id >= MAX_DOMAINS {
            return None;
        }
        // SAFETY: `id` is in bounds of the `MAX_DOMAINS` slots and not the caller's, whose exclusive
        // borrow is the only other one ([`Others::split`]).
        unsafe { (*self.slots.add(id)).as_ref() }
    }

    /// Slot `id` is free (the caller's slot is not).
    pub fn is_free(&self, id: usize) -> bool {
        id != self.caller && id < MAX_DOMAINS && self.get(id).is_none()
    }
}

/// What the hypervisor does after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put this value in RAX and return to the caller.
    Return(i64),
    /// Return 0 and let another domain run first.
    Yield,
    /// The domain stops.
    Shutdown {
        /// Why.
        reason: ShutdownReason,
        /// Exit code (RDX, our extension).
        code: u32,
    },
    /// Preempted: re-execute the same hypercall later with these arguments.
    Continue([u64; 5]),
    /// Return to the (possibly replaced) register frame without touching RAX (`iret`).
    Resume,
    /// The caller broke the rules in a way that cannot be answered with an error: crash the domain.
    Crash(&'static str),
    /// A checked `domctl` that changes another domain's slot: the trap code performs it once the domain
    /// table is free, and puts its result in RAX.
    Domctl(domctl::DomctlOp),
}

impl From<Result<i64, Errno>> for Action {
    fn from(r: Result<i64, Errno>) -> Action {
        Action::Return(r.unwrap_or_else(Errno::as_ret))
    }
}

/// The arguments of a hypercall in the order of the register convention.
pub fn args_of(f: &EntryFrame) -> [u64; 5] {
    [f.rdi, f.rsi, f.rdx, f.r10, f.r8]
}

/// Write `args` back into the argument registers (for a continuation).
pub fn set_args(f: &mut EntryFrame, args: [u64; 5]) {
    [f.rdi, f.rsi, f.rdx, f.r10, f.r8] = args;
}

/// A full handler: everything it needs is in (or reached through) the context.
pub type Handler<M> = for<'b, 'a, 'm> fn(&'b mut HypercallCtx<'a, 'm, M>) -> Action;

/// One slot per hypercall number below this (the light table has as many).
pub const TABLE_SLOTS: usize = 64;

/// The full handlers by hypercall number (`None`: `-ENOSYS`). The trap path indexes this table with the
/// number straight from the frame ([`handler`]); [`dispatch`] (multicall entries, the host tests) goes
/// through the same table, so there is one list of what each number does.
pub const fn table<M: MachineMem>() -> [Option<Handler<M>>; TABLE_SLOTS] {
    let mut t: [Option<Handler<M>>; TABLE_SLOTS] = [None; TABLE_SLOTS];
    t[nr::SET_TRAP_TABLE as usize] = Some(traps::set_trap_table::<M>);
    t[nr::MMU_UPDATE as usize] = Some(mmu_update::mmu_update::<M>);
    t[nr::STACK_SWITCH as usize] = Some(traps::stack_switch::<M>);
    t[nr::SET_CALLBACKS as usize] = Some(traps::set_callbacks::<M>);
    t[nr::SET_TIMER_OP as usize] = Some(timer::set_timer_op::<M>);
    t[nr::MEMORY_OP as usize] = Some(memory_op::memory_op::<M>);
    t[nr::VCPU_OP as usize] = Some(timer::vcpu_op::<M>);
    t[nr::EVENT_CHANNEL_OP as usize] = Some(event_channel_op::event_channel_op::<M>);
    t[nr::MULTICALL as usize] = Some(multicall::multicall::<M>);
    t[nr::UPDATE_VA_MAPPING as usize] = Some(mmu_update::update_va_mapping::<M>);
    t[nr::XEN_VERSION as usize] = Some(xen_version::xen_version::<M>);
    t[nr::CONSOLE_IO as usize] = Some(console_io::console_io::<M>);
    t[nr::IRET as usize] = Some(traps::iret::<M>);
    t[nr::SET_SEGMENT_BASE as usize] = Some(traps::set_segment_base::<M>);
    t[nr::MMUEXT_OP as usize] = Some(mmuext_op::mmuext_op::<M>);
    t[nr::CALLBACK_OP as usize] = Some(traps::callback_op::<M>);
    t[nr::SCHED_OP as usize] = Some(sched_op::sched_op::<M>);
    t[nr::SYSCTL as usize] = Some(sysctl::sysctl::<M>);
    t[nr::DOMCTL as usize] = Some(domctl::domctl::<M>);
    t[nr::NULL as usize] = Some(null::<M>);
    t[nr::COUNTERS as usize] = Some(counters::counters::<M>);
    t
}

/// `NULL` (our extension): returns 0.
fn null<M: MachineMem>(_: &mut HypercallCtx<'_, '_, M>) -> Action {
    Action::Return(0)
}

/// The handler of `number` in `table` (`None`: `-ENOSYS`).
#[inline(always)]
pub fn handler<M: MachineMem>(
    table: &[Option<Handler<M>>; TABLE_SLOTS],
    number: u64,
) -> Option<Handler<M>> {
    *table.get(usize::try_from(number).ok()?)?
}

/// Run hypercall `number` for the caller described by `ctx`. Unknown numbers get `-ENOSYS`.
pub fn dispatch<M: MachineMem>(number: u64, ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    match handler(&const { table::<M>() }, number) {
        Some(h) => h(ctx),
        None => Action::Return(Errno::ENOSYS.as_ret()),
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn unknown_numbers_are_enosys() {
        let mut w = World::new();
        for n in [11, 19, 27, 47, 56, 63, 64, 1000, u64::MAX] {
            assert_eq!(w.call(n, [0; 5]), Action::Return(-38), "hypercall {n}");
        }
    }

    #[test]
    fn others_is_every_slot_but_the_callers() {
        let w = World::new();
        let mut slots: [Option<crate::domain::state::Domain>; MAX_DOMAINS] =
            core::array::from_fn(|i| {
                (i % 3 == 0).then(|| {
                    other_domain(i as u16, crate::domain::state::DomainState::Runnable, w.dom)
                })
            });
        for caller in [0, 3, 4, MAX_DOMAINS - 1] {
            let (me, others) = Others::split(&mut slots, caller).unwrap();
            assert_eq!(
                me.as_ref().map(|d| d.id),
                (caller % 3 == 0).then_some(caller as u16)
            );
            for id in 0..MAX_DOMAINS + 3 {
                let want = (id != caller && id < MAX_DOMAINS && id % 3 == 0).then_some(id as u16);
                assert_eq!(
                    others.get(id).map(|d| d.id),
                    want,
                    "caller {caller}, id {id}"
                );
                let free = id != caller && id < MAX_DOMAINS && id % 3 != 0;
                assert_eq!(others.is_free(id), free, "caller {caller}, id {id}");
            }
        }
        assert!(Others::split(&mut slots, MAX_DOMAINS).is_none());
    }

    #[test]
    fn null_hypercall() {
        let mut w = World::new();
        assert_eq!(w.call(nr::NULL, [u64::MAX; 5]), Action::Return(0));
    }
}
#[cfg(test)]
mod tests_hvframes;
#[cfg(test)]
mod tests_mm;
#[cfg(test)]
mod tests_traps;
