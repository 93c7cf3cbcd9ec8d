//! The kernel's memory manager on the real platform: boot (bootstrap walk, slack, physmap, heap), the
//! kernel's [`MmEnv`] ([`KernelEnv`]: the platform's page-table operations, physmap access, P2M, page allocator) and
//! reservation changes (giving frames back to the hypervisor and taking new ones).
//!
//! # Boot
//!
//! At entry the domain builder has mapped pfn `k` at `KERNEL_VIRT_BASE + k * 4 KiB` for the start-of-day
//! region (image, P2M, start_info, shared_info, page tables, stack) plus up to 512 KiB of writable slack;
//! every later pfn is owned but unmapped. [`init`]:
//!
//! 1. gives every pfn from the initial stack top on to the page allocator;
//! 2. finds the slack (the pfns after the stack top the builder mapped) by walking the bootstrap tables,
//!    which are readable at their bootstrap addresses;
//! 3. pins the boot L4 (so switching to another address space and back never devalidates the kernel's
//!    tables; `-EINVAL` means the builder pinned it already);
//! 4. takes the physmap's tables from the allocator (the lowest free pfns: the slack) and fills each one
//!    while it is writable: in place at its slack address, or, past the slack (domains above 252 MiB),
//!    through a scratch window (the first slack address remapped with `update_va_mapping`);
//! 5. in one batch, unmaps the whole slack (so free frames are mapped nowhere but in the physmap, and no
//!    writable mapping of a table is left) and links the physmap's L3 into the boot L4 at slot 273: the
//!    hypervisor validates the L3, the L2 and every L1 (every entry checked) at that entry;
//! 6. asks where the M2P is and takes the heap's pages from the allocator (reached through the physmap).
//!
//! If a hypercall of steps 2–5 fails (a hypervisor without memory management answers `-ENOSYS`), the error
//! is reported and the kernel carries on without a memory manager: [`env`] returns `None`.
//!
//! # Native boot
//!
//! Natively ([`init_native`]) guest and machine frames are the same (an identity P2M and M2P), RAM is what
//! the multiboot information says, and the 32-bit entry's boot tables map the first GiB at the physmap with
//! 2 MiB pages. The memory manager builds its own 4 KiB physmap exactly as above (tables filled through the
//! boot physmap, which is writable), links it at slot 273 in place of the boot one, and drops the identity
//! mapping of low memory (slot 0).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SHIFT, PAGE_SIZE, Pfn};
use abi::xen::StartInfo;

use super::batch::Batch;
use super::fault::{MmError, report};
use super::frame_alloc::FrameAllocator;
use super::physmap::{self, KERNEL_TABLE_FLAGS, PhysmapLayout, leaf_flags};
use super::pte::{ADDR_MASK, ENTRIES, INVALID_MFN, Level, Pte, PteFlags, index};
use super::{KERNEL_VIRT_BASE, M2P_DEFAULT_VA, MAX_PFNS, MmEnv, PHYSMAP_SLOT, physmap_va};
use crate::platform::{Flush, Mmu, PtWrite, ops};

/// Heap size in pages (512 KiB), taken from the allocator at boot.
pub const HEAP_PAGES: usize = 128;
/// The builder maps at most 512 KiB of slack.
const SLACK_MAX: usize = 128;

static ALLOC: spin::Mutex<FrameAllocator<[u64; MAX_PFNS / 64]>> =
    spin::Mutex::new(FrameAllocator::new([0; MAX_PFNS / 64]));

/// The L4 the vCPU runs on (recorded by [`KernelEnv`]'s `switch_address_space`).
static CURRENT_BASE: AtomicU64 = AtomicU64::new(0);

/// What boot established; fixed afterwards.
#[derive(Clone, Copy, Debug)]
pub struct MmState {
    /// Length of the P2M (the domain's pages at boot; the maximum reservation).
    pub nr_pages: usize,
    /// Pfns `0..managed` are managed and in the physmap.
    pub managed: usize,
    /// Virtual address of the P2M list.
    p2m: u64,
    /// The boot L4, the kernel's address space.
    pub kernel_l4: Pfn,
    /// Its machine frame.
    pub kernel_l4_mfn: Mfn,
    /// The physmap's tables: `first_table` is the L3, then the L2, then the L1s.
    pub physmap_tables: (Pfn, usize),
    /// First pfn after the start-of-day region (the initial stack top).
    pub first_free: Pfn,
    /// Pages of slack the builder had mapped (now unmapped).
    pub slack_pages: usize,
    /// Where the M2P is mapped and how many entries it has (0: unknown).
    pub m2p: (u64, u64),
    /// Guest frames are machine frames (native): the P2M and M2P are the identity, `p2m` is unused.
    pub identity: bool,
    /// The heap: first pfn and page count.
    pub heap: (Pfn, usize),
}

static STATE: spin::Once<MmState> = spin::Once::new();

/// The kernel's memory-management environment (a handle; the state is global).
#[derive(Clone, Copy, Debug)]
pub struct KernelEnv {
    state: &'static MmState,
}

/// The memory manager, if boot set it up.
pub fn env() -> Option<KernelEnv> {
    STATE.get().map(|state| KernelEnv { state })
}

/// The memory manager, or [`MmError::NotReady`].
pub fn ready_env() -> Result<KernelEnv, MmError> {
    env().ok_or(MmError::NotReady)
}

fn p2m_read(p2m: u64, pfn: usize) -> u64 {
    // SAFETY: the P2M list is mapped (writable) in the start-of-day region for the domain's lifetime and
    // holds one u64 per pfn; callers keep `pfn` below the domain's page count.
    unsafe { (p2m as *const u64).add(pfn).read_volatile() }
}

fn hypercall_err(op: &'static str, arg: u64, errno: Errno) -> MmError {
    report(MmError::Hypercall { op, arg, errno })
}

/// The start-of-day region as the builder laid it out.
struct Bootstrap<'a> {
    si: &'a StartInfo,
    nr_pages: usize,
    pt_pfn: usize,
    nr_pt: usize,
}

impl Bootstrap<'_> {
    fn va(pfn: usize) -> u64 {
        KERNEL_VIRT_BASE + ((pfn as u64) << PAGE_SHIFT)
    }

    fn mfn(&self, pfn: usize) -> u64 {
        p2m_read(self.si.mfn_list, pfn)
    }

    /// Where a bootstrap table frame is readable (bootstrap tables are mapped at their pfn's address).
    fn table_va(&self, mfn: Mfn) -> Option<u64> {
        (self.pt_pfn..self.pt_pfn + self.nr_pt)
            .find(|&p| self.mfn(p) == mfn.0)
            .map(Self::va)
    }

    /// The L1 entry mapping `va` in the bootstrap tables: (L1 frame, index, entry).
    fn l1_entry(&self, va: u64) -> Option<(Mfn, usize, Pte)> {
        let mut table_va = self.si.pt_base;
        let mut table_mfn = Mfn(self.mfn(self.pt_pfn));
        for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
            let idx = index(va, level);
            // SAFETY: `table_va` is a bootstrap page table, mapped read-only at its pfn's address.
            let e = Pte(unsafe { (table_va as *const u64).add(idx).read_volatile() });
            if level == Level::L1 {
                return Some((table_mfn, idx, e));
            }
            if !e.is_present() || e.flags().contains(PteFlags::HUGE) {
                return None;
            }
            table_mfn = e.mfn();
            table_va = self.table_va(table_mfn)?;
        }
        None
    }
}

/// What [`init`] did, for the boot log.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub physmap_pages: usize,
    pub physmap_tables: usize,
    pub slack_pages: usize,
    pub free_pages: usize,
    pub heap_bytes: usize,
    pub kernel_l4_pinned_here: bool,
}

/// Set up memory management (see the module documentation). `stack_top` is the initial RSP.
pub fn init(si: &StartInfo, stack_top: u64) -> Result<Summary, MmError> {
    let nr_pages = si.nr_pages as usize;
    let managed = nr_pages.min(MAX_PFNS);
    let pfn_of = |va: u64| va.wrapping_sub(KERNEL_VIRT_BASE) >> PAGE_SHIFT;
    let first_free = pfn_of(stack_top) as usize;
    let b = Bootstrap {
        si,
        nr_pages,
        pt_pfn: pfn_of(si.pt_base) as usize,
        nr_pt: si.nr_pt_frames as usize,
    };
    if !stack_top.is_multiple_of(PAGE_SIZE)
        || first_free >= managed
        || b.pt_pfn + b.nr_pt > first_free
    {
        return Err(report(MmError::Internal(
            "start-of-day layout not understood",
        )));
    }
    let kernel_l4_mfn = Mfn(b.mfn(b.pt_pfn));
    {
        let mut a = ALLOC.lock();
        a.reset(managed);
        a.add_free(first_free, managed);
    }

    // 2. The slack: the pfns after the stack top that the builder mapped (writable) at their bootstrap
    //    address. Nothing changes yet: the entries are unmapped in step 5.
    let mut slack = heapless::Vec::<(Mfn, usize), SLACK_MAX>::new();
    while first_free + slack.len() < b.nr_pages {
        match b.l1_entry(Bootstrap::va(first_free + slack.len())) {
            Some((l1, idx, e)) if e.is_present() => {
                if slack.push((l1, idx)).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let slack_end = first_free + slack.len();
    if slack.is_empty() {
        return Err(report(MmError::Internal("no slack page after the stack")));
    }

    // 3. Pin the kernel's L4 (the first hypercall: without memory management nothing has changed).
    let pinned_here = match ops().pin_table(Level::L4, kernel_l4_mfn) {
        Ok(()) => true,
        Err(Errno::EINVAL) => false,
        Err(e) => return Err(hypercall_err("pin boot L4", kernel_l4_mfn.0, e)),
    };
    CURRENT_BASE.store(kernel_l4_mfn.0, Ordering::Relaxed);

    // 4. The physmap's tables: the lowest free pfns, i.e. slack pages first. A table in the slack is
    //    filled in place (mapped writable at its bootstrap address); any other through the scratch window
    //    (the first slack page's address, remapped with update_va_mapping).
    let layout = PhysmapLayout::new(managed);
    let first_table = ALLOC
        .lock()
        .alloc_contiguous(layout.tables())
        .ok_or_else(|| report(MmError::OutOfMemory))?;
    let t0 = first_table.0 as usize;
    let tables = t0..t0 + layout.tables();
    let boot_tables = b.pt_pfn..b.pt_pfn + b.nr_pt;
    let scratch = Bootstrap::va(first_free);
    let mut windowed = false;
    let mut writable = |pfn: usize| -> Result<&'static mut [u64; ENTRIES], MmError> {
        let va = if (first_free..slack_end).contains(&pfn) && !windowed {
            Bootstrap::va(pfn)
        } else {
            windowed = true;
            let pte = Pte::new(Mfn(b.mfn(pfn)), leaf_flags(false));
            ops()
                .remap_page(Gva(scratch), pte)
                .map_err(|e| hypercall_err("remap_page (scratch window)", scratch, e))?;
            scratch
        };
        // SAFETY: `va` maps `pfn`'s frame writable (its slack mapping, or the scratch window just remapped
        // to it); the frame is free, taken for a table, and referenced by nothing else until it is linked.
        Ok(unsafe { &mut *(va as *mut [u64; ENTRIES]) })
    };
    let mfn_of = |p: usize| Mfn(b.mfn(p));
    physmap::compose_l3(mfn_of(t0 + 1), writable(t0)?);
    physmap::compose_l2(&layout, |j| mfn_of(t0 + 2 + j), writable(t0 + 1)?);
    for j in 0..layout.l1s {
        physmap::compose_l1(
            &layout,
            j,
            |p| Some(mfn_of(p.0 as usize)),
            |p| tables.contains(&(p.0 as usize)) || boot_tables.contains(&(p.0 as usize)),
            writable(t0 + 2 + j)?,
        );
    }

    // 5. One batch: unmap the whole slack (the scratch window included), so no writable mapping of any
    //    table is left, then link the L3: the hypervisor validates the whole physmap at that entry.
    let mut batch = Batch::new();
    for &(l1, idx) in &slack {
        batch.set_entry(ops(), l1, idx, Pte::EMPTY)?;
    }
    batch.set_entry(
        ops(),
        kernel_l4_mfn,
        PHYSMAP_SLOT,
        Pte::new(mfn_of(t0), KERNEL_TABLE_FLAGS),
    )?;
    batch.flush(ops())?;
    ops()
        .flush_tlb(Flush::All)
        .map_err(|e| hypercall_err("TLB flush", 0, e))?;
    let si_pfn = pfn_of(si as *const StartInfo as u64);
    // SAFETY: the physmap now maps every managed pfn; start_info's pfn is one of them.
    let magic = unsafe { (physmap_va(Pfn(si_pfn)) as *const [u8; 14]).read_volatile() };
    if magic != si.magic[..14] {
        return Err(report(MmError::Internal(
            "physmap does not show start_info at its pfn",
        )));
    }

    // 6. M2P and heap.
    let m2p = match ops().frame_table() {
        Ok(m) => m,
        Err(e) => {
            report(MmError::Hypercall {
                op: "frame table (XENMEM_machphys_mapping)",
                arg: 0,
                errno: e,
            });
            (M2P_DEFAULT_VA, 0)
        }
    };
    let heap = ALLOC
        .lock()
        .alloc_contiguous(HEAP_PAGES)
        .ok_or_else(|| report(MmError::OutOfMemory))?;
    // SAFETY: the heap's pages are free frames, just taken from the allocator for good, mapped writable in
    // the physmap and used by nothing else.
    unsafe { super::heap::init(physmap_va(heap) as *mut u8, HEAP_PAGES * PAGE_SIZE as usize) };
    let state = STATE.call_once(|| MmState {
        nr_pages,
        managed,
        p2m: si.mfn_list,
        kernel_l4: Pfn(b.pt_pfn as u64),
        kernel_l4_mfn,
        physmap_tables: (first_table, layout.tables()),
        first_free: Pfn(first_free as u64),
        slack_pages: slack.len(),
        m2p,
        identity: false,
        heap: (heap, HEAP_PAGES),
    });
    Ok(Summary {
        physmap_pages: layout.pages,
        physmap_tables: layout.tables(),
        slack_pages: state.slack_pages,
        free_pages: ALLOC.lock().free_count(),
        heap_bytes: HEAP_PAGES * PAGE_SIZE as usize,
        kernel_l4_pinned_here: pinned_here,
    })
}

/// Set up memory management natively (see the module documentation): RAM is pfns `0..nr_pages`, pfns
/// from `first_free` on are free (below it: low memory, the kernel image with its boot tables and stack),
/// `kernel_l4` is the boot L4 the CPU runs on.
pub fn init_native(nr_pages: usize, first_free: usize, kernel_l4: Pfn) -> Result<Summary, MmError> {
    let managed = nr_pages.min(MAX_PFNS);
    if first_free >= managed {
        return Err(report(MmError::Internal(
            "no memory above the kernel image",
        )));
    }
    {
        let mut a = ALLOC.lock();
        a.reset(managed);
        a.add_free(first_free, managed);
    }
    let kernel_l4_mfn = Mfn(kernel_l4.0);
    CURRENT_BASE.store(kernel_l4_mfn.0, Ordering::Relaxed);

    let layout = PhysmapLayout::new(managed);
    let first_table = ALLOC
        .lock()
        .alloc_contiguous(layout.tables())
        .ok_or_else(|| report(MmError::OutOfMemory))?;
    let t0 = first_table.0 as usize;
    let tables = t0..t0 + layout.tables();
    let writable = |pfn: usize| -> &'static mut [u64; ENTRIES] {
        // SAFETY: the boot physmap maps the first GiB writable (2 MiB pages) and `pfn` (< managed <= 1 GiB
        // of pfns) is a free frame just taken for a table, referenced by nothing else until it is linked.
        unsafe { &mut *(physmap_va(Pfn(pfn as u64)) as *mut [u64; ENTRIES]) }
    };
    physmap::compose_l3(Mfn(t0 as u64 + 1), writable(t0));
    physmap::compose_l2(&layout, |j| Mfn((t0 + 2 + j) as u64), writable(t0 + 1));
    for j in 0..layout.l1s {
        physmap::compose_l1(
            &layout,
            j,
            |p| Some(Mfn(p.0)),
            |p| tables.contains(&(p.0 as usize)),
            writable(t0 + 2 + j),
        );
    }
    // One batch: the new physmap in place of the boot one, and no more identity mapping of low memory.
    let mut batch = Batch::new();
    batch.set_entry(
        ops(),
        kernel_l4_mfn,
        PHYSMAP_SLOT,
        Pte::new(Mfn(t0 as u64), KERNEL_TABLE_FLAGS),
    )?;
    batch.set_entry(ops(), kernel_l4_mfn, 0, Pte::EMPTY)?;
    batch.flush(ops())?;
    ops()
        .flush_tlb(Flush::All)
        .map_err(|e| hypercall_err("TLB flush", 0, e))?;

    let heap = ALLOC
        .lock()
        .alloc_contiguous(HEAP_PAGES)
        .ok_or_else(|| report(MmError::OutOfMemory))?;
    // SAFETY: the heap's pages are free frames, just taken from the allocator for good, mapped writable in
    // the physmap and used by nothing else.
    unsafe { super::heap::init(physmap_va(heap) as *mut u8, HEAP_PAGES * PAGE_SIZE as usize) };
    STATE.call_once(|| MmState {
        nr_pages: managed,
        managed,
        p2m: 0,
        kernel_l4,
        kernel_l4_mfn,
        physmap_tables: (first_table, layout.tables()),
        first_free: Pfn(first_free as u64),
        slack_pages: 0,
        m2p: (0, managed as u64),
        identity: true,
        heap: (heap, HEAP_PAGES),
    });
    Ok(Summary {
        physmap_pages: layout.pages,
        physmap_tables: layout.tables(),
        slack_pages: 0,
        free_pages: ALLOC.lock().free_count(),
        heap_bytes: HEAP_PAGES * PAGE_SIZE as usize,
        kernel_l4_pinned_here: false,
    })
}

impl KernelEnv {
    /// What boot established.
    pub fn state(&self) -> &'static MmState {
        self.state
    }

    /// Pages free in the page allocator.
    pub fn free_count(&self) -> usize {
        ALLOC.lock().free_count()
    }

    /// Pages ever given to the page allocator.
    pub fn total(&self) -> usize {
        ALLOC.lock().total()
    }

    /// `n` contiguous free pages.
    pub fn alloc_contiguous(&self, n: usize) -> Option<Pfn> {
        ALLOC.lock().alloc_contiguous(n)
    }

    /// Set the P2M entry of `pfn` (natively the P2M is the identity and nothing changes it).
    pub fn set_p2m(&self, pfn: Pfn, mfn: u64) {
        assert!((pfn.0 as usize) < self.state.nr_pages, "pfn beyond the P2M");
        if self.state.identity {
            return;
        }
        // SAFETY: the P2M list is this kernel's, mapped writable, one u64 per pfn below nr_pages.
        unsafe {
            (self.state.p2m as *mut u64)
                .add(pfn.0 as usize)
                .write_volatile(mfn)
        };
    }

    /// The M2P entry of `mfn` (`None` if the M2P is unknown or does not reach it).
    pub fn m2p(&self, mfn: Mfn) -> Option<u64> {
        let (va, len) = self.state.m2p;
        if mfn.0 >= len {
            return None;
        }
        if self.state.identity {
            return Some(mfn.0);
        }
        // SAFETY: XENMEM_machphys_mapping said the M2P is mapped (read-only) with `len` entries at `va`.
        Some(unsafe { (va as *const u64).add(mfn.0 as usize).read_volatile() })
    }

    /// How many M2P entries are readable.
    pub fn m2p_len(&self) -> u64 {
        self.state.m2p.1
    }

    /// The pfn of one of this domain's frames, through the M2P, checked against the P2M.
    pub fn mfn_to_pfn(&self, mfn: Mfn) -> Option<Pfn> {
        let pfn = self.m2p(mfn)?;
        (pfn < self.state.nr_pages as u64 && self.p2m(pfn as usize) == mfn.0).then_some(Pfn(pfn))
    }

    /// The P2M entry of `pfn` (below `nr_pages`).
    fn p2m(&self, pfn: usize) -> u64 {
        if self.state.identity {
            pfn as u64
        } else {
            p2m_read(self.state.p2m, pfn)
        }
    }

    /// A pointer to the first byte of `pfn` in the physmap.
    pub fn page_ptr(&self, pfn: Pfn) -> *mut u8 {
        physmap_va(pfn) as *mut u8
    }
}

/// Record the current root after a restore moved it to frame `root` (the hypervisor installed it).
pub fn set_current_base(root: Mfn) {
    CURRENT_BASE.store(root.0, Ordering::Relaxed);
}

/// The platform's page-table operations, recording the current root on a switch.
impl Mmu for KernelEnv {
    #[inline]
    fn write_ptes(&self, writes: &[PtWrite]) -> (usize, Result<(), Errno>) {
        ops().write_ptes(writes)
    }

    fn pin_table(&self, level: Level, mfn: Mfn) -> Result<(), Errno> {
        ops().pin_table(level, mfn)
    }

    fn unpin_table(&self, mfn: Mfn) -> Result<(), Errno> {
        ops().unpin_table(mfn)
    }

    fn switch_address_space(&self, root: Mfn) -> Result<(), Errno> {
        ops().switch_address_space(root)?;
        CURRENT_BASE.store(root.0, Ordering::Relaxed);
        Ok(())
    }

    fn flush_tlb(&self, what: Flush) -> Result<(), Errno> {
        ops().flush_tlb(what)
    }
}

impl MmEnv for KernelEnv {
    fn current_base(&self) -> Mfn {
        Mfn(CURRENT_BASE.load(Ordering::Relaxed))
    }

    fn kernel_base(&self) -> (Pfn, Mfn) {
        // Looked up each time: a restore moves the kernel's L4 to another frame.
        let l4 = self.state.kernel_l4;
        (l4, Mfn(self.p2m(l4.0 as usize)))
    }

    fn pfn_to_mfn(&self, pfn: Pfn) -> Mfn {
        assert!((pfn.0 as usize) < self.state.nr_pages, "pfn beyond the P2M");
        Mfn(self.p2m(pfn.0 as usize))
    }

    fn physmap_entry(&self, pfn: Pfn) -> Maddr {
        let (l1_idx, idx) = physmap::slot(pfn);
        let l2 = Pfn(self.state.physmap_tables.0.0 + 1);
        let l1 = self.read_entry(l2, l1_idx) & ADDR_MASK;
        Maddr(l1 + (idx as u64) * 8)
    }

    fn read_entry(&self, pfn: Pfn, idx: usize) -> u64 {
        assert!(idx < ENTRIES && (pfn.0 as usize) < self.state.managed);
        // SAFETY: every managed pfn with a frame is mapped (at least read-only) in the physmap.
        unsafe { (physmap_va(pfn) as *const u64).add(idx).read_volatile() }
    }

    fn write_entry(&self, pfn: Pfn, idx: usize, val: u64) {
        assert!(idx < ENTRIES && (pfn.0 as usize) < self.state.managed);
        // SAFETY: the caller owns `pfn` and it is not a page table, so its physmap mapping is writable.
        unsafe { (physmap_va(pfn) as *mut u64).add(idx).write_volatile(val) }
    }

    fn zero_frame(&self, pfn: Pfn) {
        assert!((pfn.0 as usize) < self.state.managed);
        // SAFETY: as for `write_entry`: an owned, writable, non-table frame.
        unsafe { core::ptr::write_bytes(physmap_va(pfn) as *mut u8, 0, PAGE_SIZE as usize) }
    }

    fn alloc_page(&self) -> Option<Pfn> {
        ALLOC.lock().alloc()
    }

    fn free_page(&self, pfn: Pfn) {
        if let Err(e) = ALLOC.lock().free(pfn) {
            crate::println!("mm: {e}");
        }
    }
}

/// Give the frames behind `pfns` back to the hypervisor: unmap each from the physmap, then
/// `XENMEM_decrease_reservation`, then mark the pfns frameless in the P2M. The caller owns the pfns (taken
/// from the allocator) and keeps them: they have no frame until [`populate`]. Returns how many were
/// released (the first ones); the others are mapped again.
pub fn release(env: &KernelEnv, pfns: &[Pfn], mfns: &mut [u64]) -> Result<usize, MmError> {
    let n = pfns.len().min(mfns.len());
    let mut batch = Batch::new();
    for (i, &pfn) in pfns[..n].iter().enumerate() {
        mfns[i] = env.pfn_to_mfn(pfn).0;
        batch.set_at(env, env.physmap_entry(pfn), Pte::EMPTY)?;
    }
    batch.flush(env)?;
    env.flush_tlb(Flush::All)
        .map_err(|e| hypercall_err("TLB flush", 0, e))?;
    let released = match ops().release_frames(&mfns[..n]) {
        Ok(r) => r.min(n),
        Err(e) => {
            report(MmError::Hypercall {
                op: "XENMEM_decrease_reservation",
                arg: n as u64,
                errno: e,
            });
            0
        }
    };
    for (i, &pfn) in pfns[..n].iter().enumerate() {
        if i < released {
            env.set_p2m(pfn, INVALID_MFN);
        } else {
            let pte = Pte::new(Mfn(mfns[i]), leaf_flags(false));
            batch.set_at(env, env.physmap_entry(pfn), pte)?;
        }
    }
    batch.flush(env)?;
    Ok(released)
}

/// Back the frameless `pfns` with new machine frames: `XENMEM_increase_reservation`, then for each new
/// frame the P2M, the M2P (`MMU_MACHPHYS_UPDATE`) and the physmap entry. `mfns` receives the frames.
/// Returns how many pfns were populated (the first ones).
pub fn populate(env: &KernelEnv, pfns: &[Pfn], mfns: &mut [u64]) -> Result<usize, MmError> {
    let n = pfns.len().min(mfns.len());
    let got = ops()
        .claim_frames(&mut mfns[..n])
        .map_err(|e| hypercall_err("XENMEM_increase_reservation", n as u64, e))?
        .min(n);
    let mut batch = Batch::new();
    for (&pfn, &mfn) in pfns.iter().zip(mfns.iter()).take(got) {
        env.set_p2m(pfn, mfn);
        batch.set_m2p(env, Mfn(mfn), pfn)?;
        batch.set_at(
            env,
            env.physmap_entry(pfn),
            Pte::new(Mfn(mfn), leaf_flags(false)),
        )?;
    }
    batch.flush(env)?;
    Ok(got)
}
