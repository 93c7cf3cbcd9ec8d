//! The emulate domain kind on the machine: building one from a boot module, the hypervisor side of its
//! traps, what runs before it resumes (device time, interrupt injection, the shadow root as CR3), and its
//! teardown. The pure decisions are in `dispatch.rs`; this file connects them to frames, the scheduler
//! and the console.
//!
//! Memory: the domain's frames are guest-physical 0..N through a P2M held in hypervisor frames (a
//! directory frame of leaf frames); shadow tables come from a per-domain pool of hypervisor frames (a
//! free list threaded through them). Neither the P2M nor the pool belongs to the domain, so no shadow leaf
//! can ever map them (the audit at teardown checks every leaf maps a frame the domain owns).

use abi::types::{Maddr, Mfn};
use zerocopy::{FromZeros, IntoBytes};

use super::boot;
use super::dispatch::{self, Action, EmuState, Machine};
use super::env::{Env, MemFault, Regs};
use super::exits::Line;
use super::shadow::{self, Access, Fault, FaultResult, GuestPhys, Mode, Shadow, ShadowFrames};
use super::vcpu::VCpu;
use crate::arch::paging::{ENTRY_L4_SLOT, IdentityMem};
use crate::devices::{Board, IoEffect};
use crate::domain::state::{Domain, DomainState, FxArea, Vcpu};
use crate::hypercall::DomainMm;
use crate::regs::{EntryFrame, frame_ring, rflags};
use crate::setup::{DOMAINS, HvInfo, MACHINE, MANAGED_LIMIT, MAX_DOMAIN_PAGES, TIME};

/// Most emulate domains at once.
pub const MAX_EMULATE: usize = 16;

/// The emulate domains' states, indexed by `Domain::emu`'s slot. Lock order: after `DOMAINS`, before
/// `MACHINE` and `SCHED`.
static STATES: spin::Mutex<[Option<EmuState>; MAX_EMULATE]> =
    spin::Mutex::new([const { None }; MAX_EMULATE]);

/// How many emulate domains exist: the scheduler's per-decision work for them is skipped while there are
/// none (PV-only machines pay one load).
static LIVE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Frames in each emulate domain's shadow pool (1 MiB): when they run out the whole shadow is dropped
/// and refilled on demand.
const POOL_FRAMES: u64 = 256;

fn ptr(mfn: u64) -> *mut u64 {
    IdentityMem::frame_ptr(Mfn(mfn)) as *mut u64
}

fn read_word(mfn: u64, idx: usize) -> u64 {
    debug_assert!(idx < 512);
    // SAFETY: `mfn` is a frame of this domain (guest memory, P2M or shadow pool), identity mapped;
    // the index is inside the page.
    unsafe { ptr(mfn).add(idx & 511).read() }
}

fn write_word(mfn: u64, idx: usize, v: u64) {
    // SAFETY: as in `read_word`; no guest runs while the hypervisor writes.
    unsafe { ptr(mfn).add(idx & 511).write(v) }
}

/// Guest-physical memory through the P2M.
struct Gpm {
    dir: u64,
    pages: u64,
}

impl Gpm {
    fn mfn(&self, gfn: u64) -> u64 {
        let leaf = read_word(self.dir, (gfn / 512) as usize);
        read_word(leaf, (gfn % 512) as usize)
    }
}

impl GuestPhys for Gpm {
    fn pages(&self) -> u64 {
        self.pages
    }
    fn read_u64(&self, gpa: u64) -> u64 {
        read_word(self.mfn(gpa >> 12), ((gpa & 0xfff) / 8) as usize)
    }
    fn write_u64(&mut self, gpa: u64, v: u64) {
        write_word(self.mfn(gpa >> 12), ((gpa & 0xfff) / 8) as usize, v)
    }
    fn mfn_of(&self, gfn: u64) -> u64 {
        self.mfn(gfn)
    }
}

impl boot::PhysWrite for Gpm {
    fn write(&mut self, gpa: u64, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let a = gpa + done as u64;
            let n = (4096 - (a & 0xfff) as usize).min(bytes.len() - done);
            let dst = IdentityMem::frame_ptr(Mfn(self.mfn(a >> 12)));
            // SAFETY: the frame is the domain's (just allocated), identity mapped; the range stays in it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes[done..].as_ptr(),
                    dst.add((a & 0xfff) as usize),
                    n,
                )
            };
            done += n;
        }
    }
}

/// The shadow pool: a free list threaded through word 0 of each free frame.
struct Pool<'a> {
    head: &'a mut u64,
}

impl ShadowFrames for Pool<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let m = *self.head;
        if m == 0 {
            return None;
        }
        *self.head = read_word(m, 0);
        IdentityMem::zero(Mfn(m));
        Some(m)
    }
    fn free(&mut self, mfn: u64) {
        write_word(mfn, 0, *self.head);
        *self.head = mfn;
    }
    fn read(&self, mfn: u64, idx: usize) -> u64 {
        read_word(mfn, idx)
    }
    fn write(&mut self, mfn: u64, idx: usize, v: u64) {
        write_word(mfn, idx, v)
    }
}

/// The emulator's world for one entry.
struct Hw<'a> {
    gpm: Gpm,
    pool: Pool<'a>,
    shadow: &'a mut Shadow,
    board: &'a mut Board,
    console: &'a mut crate::console::LineBuffer,
    id: u16,
    now: u64,
    mode: Mode,
    flush: bool,
}

impl Hw<'_> {
    fn copy(
        &mut self,
        cr3: u64,
        va: u64,
        len: usize,
        user: bool,
        access: Access,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), MemFault> {
        let mut done = 0;
        while done < len {
            let a = va.wrapping_add(done as u64);
            if ((a as i64) << 16 >> 16) as u64 != a {
                return Err(MemFault::Crash(
                    "emulated access to a non-canonical address",
                ));
            }
            let t = shadow::walk(&mut self.gpm, cr3, a, access, user, self.mode, true).map_err(
                |e| match e {
                    Fault::Page(code) => MemFault::Page(a, code),
                    Fault::Crash(why) => MemFault::Crash(why),
                },
            )?;
            let n = (4096 - (a & 0xfff) as usize).min(len - done);
            let p = IdentityMem::frame_ptr(Mfn(self.gpm.mfn(t.gfn)));
            // SAFETY: the pointer is into a frame of the domain, offset inside the page.
            f(unsafe { p.add((a & 0xfff) as usize) }, done, n);
            done += n;
        }
        Ok(())
    }
}

impl Env for Hw<'_> {
    fn read(&mut self, cr3: u64, va: u64, buf: &mut [u8], user: bool) -> Result<(), MemFault> {
        let len = buf.len();
        self.copy(cr3, va, len, user, Access::Read, |p, at, n| {
            // SAFETY: `p` points at `n` bytes of a guest frame (see `copy`); `buf` has room.
            unsafe { core::ptr::copy_nonoverlapping(p, buf[at..].as_mut_ptr(), n) }
        })
    }
    fn write(&mut self, cr3: u64, va: u64, bytes: &[u8], user: bool) -> Result<(), MemFault> {
        self.copy(cr3, va, bytes.len(), user, Access::Write, |p, at, n| {
            // SAFETY: as in `read`, the other way round.
            unsafe { core::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), p, n) }
        })
    }
    fn io_in(&mut self, port: u16, size: u8) -> u32 {
        self.board.io_in(port, size, self.now)
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> IoEffect {
        self.board.io_out(port, size, value, self.now)
    }
    fn console(&mut self, byte: u8) {
        let id = self.id;
        if id == crate::console::input_owner() && crate::console::dom0_direct() {
            self.console.flush(crate::console::guest_direct);
            crate::console::guest_direct(&[byte]);
        } else {
            self.console
                .push(&[byte], |line| crate::console::guest_line(id, line));
        }
    }
    fn host_tsc(&self) -> u64 {
        crate::arch::cpu::rdtsc()
    }
    fn load_cr3(&mut self, cr3: u64, pge: bool, nxe: bool) -> Result<(), &'static str> {
        let mode = Mode { nxe, pge };
        self.shadow
            .load_cr3(&self.gpm, &mut self.pool, cr3, mode)
            .map_err(|e| match e {
                Fault::Crash(why) => why,
                Fault::Page(_) => "CR3 load faulted",
            })?;
        self.flush = true;
        Ok(())
    }
    fn invlpg(&mut self, va: u64) {
        self.shadow.invlpg(&mut self.pool, va);
        self.flush = true;
    }
    fn flush_all(&mut self, keep_global: bool) {
        self.shadow.flush_all(&mut self.pool, keep_global);
        self.flush = true;
    }
}

impl Machine for Hw<'_> {
    fn page_fault(
        &mut self,
        cr3: u64,
        va: u64,
        err: u32,
        mode: Mode,
    ) -> Result<FaultResult, Fault> {
        self.flush = true;
        self.shadow
            .page_fault(&mut self.gpm, &mut self.pool, cr3, va, err, mode)
    }
    fn board(&mut self) -> &mut Board {
        self.board
    }
}

fn regs_of(f: &EntryFrame) -> Regs {
    Regs {
        gpr: [
            f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi, f.r8, f.r9, f.r10, f.r11,
            f.r12, f.r13, f.r14, f.r15,
        ],
        rip: f.rip,
        rflags: f.rflags,
    }
}

fn store_regs(f: &mut EntryFrame, r: &Regs, cpl: u8) {
    let g = &r.gpr;
    [f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi] =
        [g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]];
    [f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15] =
        [g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]];
    f.rip = r.rip;
    f.rflags = (r.rflags & super::vcpu::rflags::GUEST_REAL) | rflags::IF | rflags::FIXED1;
    // The guest kernel runs in real ring 1, its user mode in ring 3 (the sanitizer forces the selectors).
    (f.cs, f.ss) = if cpl == 3 {
        (
            u64::from(abi::layout::GUEST_USER_CS),
            u64::from(abi::layout::GUEST_USER_SS),
        )
    } else {
        (
            u64::from(abi::layout::GUEST_KERNEL_CS),
            u64::from(abi::layout::GUEST_KERNEL_SS),
        )
    };
}

/// Run `f` with the domain's machine view and registers; writes the registers back.
fn with_hw<T>(
    dom: &mut Domain,
    f: impl FnOnce(&mut Hw<'_>, &mut VCpu, &mut super::exits::Exits, &mut Regs) -> T,
) -> T {
    let Domain {
        id,
        emu,
        console,
        vcpu,
        mm,
        ..
    } = dom;
    let Some(slot) = *emu else {
        unreachable!("with_hw on a domain that is not an emulate domain")
    };
    let mut states = STATES.lock();
    let Some(st) = states[usize::from(slot.0)].as_mut() else {
        unreachable!("an emulate domain without its state")
    };
    let now = TIME.get().map_or(0, crate::setup::TimeBase::now_ns);
    let EmuState {
        vcpu: v,
        shadow,
        board,
        exits,
        pages,
        p2m_dir,
        pool_head,
        ..
    } = st;
    let mode = Mode {
        nxe: v.nxe(),
        pge: v.pge(),
    };
    let mut hw = Hw {
        gpm: Gpm {
            dir: *p2m_dir,
            pages: *pages,
        },
        pool: Pool { head: pool_head },
        shadow,
        board,
        console,
        id: *id,
        now,
        mode,
        flush: false,
    };
    let mut r = regs_of(&vcpu.regs);
    let out = f(&mut hw, v, exits, &mut r);
    if hw.flush {
        mm.flush_tlb = true;
    }
    if let Some(root) = hw.shadow.current_root() {
        mm.base = Mfn(root);
    }
    store_regs(&mut vcpu.regs, &r, v.cpl);
    out
}

/// An entry from the emulate domain `dom` (its frame already copied into its saved registers).
#[inline(never)]
pub fn trap(dom: &mut Domain) -> crate::trap::Next {
    let f = dom.vcpu.regs;
    let ring = frame_ring(&f);
    let cr2 = if f.vector == 14 {
        crate::arch::read_cr2()
    } else {
        0
    };
    if f.vector >= 32
        && f.vector != dispatch::SYSCALL_VECTOR
        && f.vector != u64::from(abi::layout::HYPERCALL_VECTOR)
    {
        crate::irq::interrupt(f.vector);
    }
    let action = with_hw(dom, |hw, v, exits, r| {
        dispatch::handle(hw, v, exits, r, ring, f.vector, f.error_code, cr2)
    });
    act(dom, action, &f)
}

fn act(dom: &mut Domain, action: Action, f: &EntryFrame) -> crate::trap::Next {
    use crate::trap::Next;
    match action {
        Action::Resume => Next::Resume,
        Action::Block => {
            let (deadline, pending) = {
                let states = STATES.lock();
                match dom.emu.and_then(|s| states[usize::from(s.0)].as_ref()) {
                    Some(e) => (
                        e.board.next_deadline_ns(),
                        e.board.pending_vector().is_some(),
                    ),
                    None => (None, false),
                }
            };
            if pending {
                return Next::Resume;
            }
            crate::setup::SCHED
                .lock()
                .0
                .block(usize::from(dom.id), deadline);
            Next::Switch
        }
        Action::Shutdown(code) => {
            let reason = abi::sched::ShutdownReason::Poweroff;
            crate::domain::lifecycle::stop_domain(dom, DomainState::Shutdown { reason, code });
            log::info!("domain {} shut down: {} code {code}", dom.id, reason.name());
            Next::Switch
        }
        Action::Crash(why) => {
            let mut bytes = [0u8; 15];
            let n = with_hw(dom, |hw, v, _, _| dispatch::fetch(hw, v, f.rip, &mut bytes));
            crate::trap::crash_domain(
                dom,
                format_args!(
                    "emulate: {why}; rip={:#x} ring {} bytes {:02x?}",
                    f.rip,
                    frame_ring(f),
                    &bytes[..n]
                ),
            );
            Next::Switch
        }
    }
}

/// Before the scheduler resumes `dom` (an emulate domain): advance its devices, deliver a pending
/// interrupt, wake it from HLT when one is due, and point `mm.base` at the current shadow root. Returns
/// false if the domain was crashed.
#[inline(never)]
pub fn before_resume(dom: &mut Domain) -> bool {
    let now = TIME.get().map_or(0, crate::setup::TimeBase::now_ns);
    let f = dom.vcpu.regs;
    let action = with_hw(dom, |hw, v, exits, r| {
        hw.board.advance(now);
        dispatch::inject(hw, v, exits, r)
    });
    if let Action::Crash(_) = action {
        act(dom, action, &f);
        return false;
    }
    // The guest's timer: wake the scheduler at the devices' next deadline.
    let states = STATES.lock();
    if let Some(st) = dom.emu.and_then(|s| states[usize::from(s.0)].as_ref()) {
        crate::setup::SCHED
            .lock()
            .0
            .set_singleshot(usize::from(dom.id), st.board.next_deadline_ns());
        // Its FS/GS bases are the virtual CPU's.
        let pv = &mut dom.vcpu.pv;
        let v = &st.vcpu;
        if [pv.fs_base, pv.gs_base, pv.gs_kernel] != [v.fs_base, v.gs_base, v.kernel_gs_base] {
            [pv.fs_base, pv.gs_base, pv.gs_kernel] = [v.fs_base, v.gs_base, v.kernel_gs_base];
            pv.segments_dirty = true;
        }
    }
    true
}

/// An emulate domain exists (else [`service`] has nothing to do).
#[inline(always)]
pub fn any_live() -> bool {
    LIVE.load(core::sync::atomic::Ordering::Relaxed) != 0
}

/// Wake halted emulate domains whose devices have an interrupt to deliver, and give serial input to the
/// input owner's UART when it is an emulate domain. Called by the scheduler before a decision.
#[inline(always)]
pub fn service(table: &mut crate::domain::state::DomainTable, now: u64) {
    if any_live() {
        service_domains(table, now);
    }
}

#[inline(never)]
fn service_domains(table: &mut crate::domain::state::DomainTable, now: u64) {
    let owner = crate::console::input_owner();
    let mut states = STATES.lock();
    for d in table.slots.iter_mut().flatten() {
        let Some(st) = d.emu.and_then(|s| states[usize::from(s.0)].as_mut()) else {
            continue;
        };
        if d.id == owner {
            // Only what the UART's receiver has room for: the rest stays queued for a later pass (after
            // the guest has read these), never overrun and lost.
            let mut input = crate::irq::CONSOLE_IN.lock();
            st.board.feed_input(|| input.pop_front());
        }
        st.board.advance(now);
        if st.board.pending_vector().is_some() && d.state == DomainState::Runnable {
            crate::setup::SCHED.lock().0.wake(usize::from(d.id));
        }
    }
}

/// The debug key `x`: the exit counts of every emulate domain so far.
#[inline(never)]
pub fn print_exits(table: &crate::domain::state::DomainTable) {
    let states = STATES.lock();
    for d in table.iter() {
        if let Some(st) = d.emu.and_then(|s| states[usize::from(s.0)].as_ref()) {
            crate::console::print(format_args!(
                "[hv] {}\n",
                Line {
                    domain: d.id,
                    exits: &st.exits
                }
            ));
        }
    }
}

/// Teardown: the exits line, an audit of every shadow leaf, then the shadow pool and the P2M frames go
/// back to the allocator (the domain's own frames are released by the caller with the frame table's
/// ownership records).
#[inline(never)]
pub fn release(dom: &mut Domain, m: &mut crate::mm::machine::Machine<'_>) {
    let id = dom.id;
    let Some(slot) = dom.emu.take() else { return };
    let Some(mut st) = STATES.lock()[usize::from(slot.0)].take() else {
        return;
    };
    let st = &mut st;
    if st.pool_frames != 0 {
        LIVE.fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
    }
    log::info!(
        "{}",
        Line {
            domain: id,
            exits: &st.exits
        }
    );
    let mut bad = 0u64;
    let mut leaves = 0u64;
    {
        let pool = Pool {
            head: &mut st.pool_head,
        };
        st.shadow.for_each_leaf(&pool, &mut |_, _, e| {
            leaves += 1;
            if m.ft.owner(Mfn(shadow::leaf::mfn(e))) != Some(id) || shadow::leaf::global(e) {
                bad += 1;
            }
        });
    }
    if bad == 0 {
        log::info!(
            "isolation audit: domain {id} (emulate): {leaves} shadow leaves, all mapping its own frames, 0 violations"
        );
    } else {
        log::error!(
            "isolation audit: domain {id} (emulate): {bad} of {leaves} shadow leaves VIOLATE the rule"
        );
    }
    let mut pool = Pool {
        head: &mut st.pool_head,
    };
    st.shadow.destroy(&mut pool);
    let mut n = 0;
    while let Some(f) = pool.alloc() {
        let _ = m.frames.free(Mfn(f));
        n += 1;
    }
    if n != st.pool_frames {
        log::error!(
            "domain {id}: {n} of {} shadow frames came back",
            st.pool_frames
        );
    }
    for i in 0..st.pages.div_ceil(512) {
        let leaf = read_word(st.p2m_dir, i as usize);
        IdentityMem::zero(Mfn(leaf));
        let _ = m.frames.free(Mfn(leaf));
    }
    IdentityMem::zero(Mfn(st.p2m_dir));
    let _ = m.frames.free(Mfn(st.p2m_dir));
    st.pool_frames = 0;
}

/// Build emulate domain `domid` from the image in `image` (a boot module): `name` is the module's image
/// name, `args` its command line after it (with `kind=`).
pub fn create(
    domid: u16,
    image: (Maddr, Maddr),
    name: &str,
    args: &str,
    nr_pages: u64,
    hv: &HvInfo,
    weight: u16,
) -> Result<(), heapless::String<112>> {
    let fail = |a: core::fmt::Arguments<'_>| {
        let mut s = heapless::String::new();
        let _ = core::fmt::write(&mut s, a);
        s
    };
    let len = image.1.0.saturating_sub(image.0.0);
    if image.1.0 > MANAGED_LIMIT
        || len == 0
        || nr_pages as usize > MAX_DOMAIN_PAGES
        || nr_pages < 512
    {
        return Err(fail(format_args!(
            "emulate: unusable module or size ({nr_pages} pages)"
        )));
    }
    // SAFETY: the module's frames are reserved until every boot domain is built and lie in the identity
    // map; the slice is only read.
    let image = unsafe { core::slice::from_raw_parts(image.0.0 as *const u8, len as usize) };
    let mut cmdline: heapless::String<512> = heapless::String::new();
    let _ = cmdline.push_str(name);
    for w in crate::domain::kind::without_kind(args) {
        let _ = cmdline.push(' ');
        if cmdline.push_str(w).is_err() {
            return Err(fail(format_args!("emulate: command line too long")));
        }
    }
    let leaves = nr_pages.div_ceil(512);
    let slot = match STATES.lock().iter().position(Option::is_none) {
        Some(i) => super::dispatch::EmuSlot(i as u8),
        None => {
            return Err(fail(format_args!(
                "emulate: at most {MAX_EMULATE} emulate domains at once"
            )));
        }
    };
    let mut machine = MACHINE.lock();
    let m = machine.as_mut().expect("machine initialised");
    let need = nr_pages + leaves + 2 + POOL_FRAMES;
    if m.frames.free_count() < need {
        return Err(fail(format_args!(
            "not enough memory: {need} pages wanted, {} free",
            m.frames.free_count()
        )));
    }
    let take = |m: &mut crate::mm::machine::Machine<'_>| {
        let f = m.frames.alloc().expect("counted above");
        IdentityMem::zero(f);
        f
    };
    let shared = take(m);
    let mut si = abi::xen::SharedInfo::new_zeroed();
    si.vcpu_info[0].evtchn_upcall_mask = 1;
    // SAFETY: the frame was just allocated and zeroed; SharedInfo fits in a page.
    unsafe {
        core::ptr::copy_nonoverlapping(
            si.as_bytes().as_ptr(),
            IdentityMem::frame_ptr(shared),
            si.as_bytes().len(),
        )
    };
    let dir = take(m);
    for i in 0..leaves {
        let leaf = take(m);
        write_word(dir.0, i as usize, leaf.0);
    }
    let gpm = Gpm {
        dir: dir.0,
        pages: nr_pages,
    };
    for pfn in 0..nr_pages {
        let f = take(m);
        write_word(
            read_word(dir.0, (pfn / 512) as usize),
            (pfn % 512) as usize,
            f.0,
        );
        let _ = m.ft.assign(f, domid);
        m.m2p.set(f, abi::types::Pfn(pfn));
    }
    let _ = m.ft.assign(shared, domid);
    let mut pool_head = 0u64;
    for _ in 0..POOL_FRAMES {
        let f = take(m);
        write_word(f.0, 0, pool_head);
        pool_head = f.0;
    }
    // Counted from here: `release` (also on the failure paths below) uncounts it.
    LIVE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let mut gpm = gpm;
    let built = boot::build(&mut gpm, image, nr_pages, &cmdline);
    let entry_l4e = hv
        .hv_l4
        .iter()
        .find(|(s, _)| *s == ENTRY_L4_SLOT)
        .map_or(0, |&(_, e)| e);
    let mut st = EmuState {
        vcpu: VCpu::at_entry64(0, true, 0x08),
        shadow: Shadow::new(ENTRY_L4_SLOT, entry_l4e),
        board: Board::new(TIME.get().map_or(0, |t| t.wallclock.0)),
        exits: Default::default(),
        pages: nr_pages,
        p2m_dir: dir.0,
        pool_head,
        pool_frames: POOL_FRAMES,
    };
    let mut dom = Domain {
        id: domid,
        state: DomainState::Runnable,
        vcpu: Vcpu {
            regs: EntryFrame::default(),
            fx: FxArea::initial(),
            pv: Default::default(),
        },
        mm: DomainMm {
            base: Mfn(0),
            tot_pages: nr_pages,
            max_pages: nr_pages,
            shared_info: shared,
            flush_tlb: true,
            preemptions: 0,
            time_offset_ns: 0,
        },
        privileged: domid == 0,
        console: crate::console::LineBuffer::new(),
        suspend: Default::default(),
        emu: None,
        hvm: None,
    };
    let entry = match built {
        Ok(e) => e,
        Err(e) => {
            dom.emu = Some(slot);
            STATES.lock()[usize::from(slot.0)] = Some(st);
            release(&mut dom, m);
            crate::domain::lifecycle::release_domain_frames(m, hv, domid);
            return Err(fail(format_args!("emulate: {e}")));
        }
    };
    st.vcpu.cr3 = entry.cr3;
    let root = {
        let mut pool = Pool {
            head: &mut st.pool_head,
        };
        st.shadow.load_cr3(
            &gpm,
            &mut pool,
            entry.cr3,
            Mode {
                nxe: true,
                pge: false,
            },
        )
    };
    let Ok(root) = root else {
        dom.emu = Some(slot);
        STATES.lock()[usize::from(slot.0)] = Some(st);
        release(&mut dom, m);
        crate::domain::lifecycle::release_domain_frames(m, hv, domid);
        return Err(fail(format_args!("emulate: boot tables refused")));
    };
    dom.mm.base = Mfn(root);
    dom.vcpu.regs = EntryFrame {
        rip: entry.rip,
        rdi: entry.rdi,
        rsi: entry.rsi,
        cs: u64::from(abi::layout::GUEST_KERNEL_CS),
        ss: u64::from(abi::layout::GUEST_KERNEL_SS),
        rflags: rflags::IF | rflags::FIXED1,
        ..EntryFrame::default()
    };
    dom.emu = Some(slot);
    STATES.lock()[usize::from(slot.0)] = Some(st);
    drop(machine);
    log::info!(
        "domain {domid} (emulate): {} MiB guest-physical, image up to {:#x}, entry _start64 {:#x}, boot tables at {:#x}, info at {:#x}, {POOL_FRAMES} shadow frames, cmdline '{cmdline}'",
        nr_pages / 256,
        entry.image_end,
        entry.rip,
        entry.cr3,
        entry.rsi
    );
    {
        let (sched, polls) = &mut *crate::setup::SCHED.lock();
        if sched.start(usize::from(domid), weight).is_err() {
            let _ = sched.start(usize::from(domid), crate::sched_policy::DEFAULT_WEIGHT);
        }
        polls.clear(domid);
    }
    let mut table = DOMAINS.lock();
    table.insert(dom);
    table.refresh_shared_info();
    Ok(())
}
