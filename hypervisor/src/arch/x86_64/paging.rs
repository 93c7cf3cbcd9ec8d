//! The hypervisor's own address space, and the entry-region mappings every guest address space shares.
//!
//! ```text
//! hypervisor address space                      guest address space
//! L4[0]    identity map of 0..4 GiB (2 MiB)     L4[0..256)   the guest's (validated) mappings
//! L4[257]  entry region + entry stacks   <--->  L4[257]      the same L3 (installed by the builder)
//!                                               L4[256..272) otherwise empty: reserved, refused to guests
//!                                               L4[272..512) the guest's (kernel at 0xffffffff80000000)
//! ```
//!
//! The identity map is never present in a guest address space, and none of its entries is global, so a
//! CR3 switch removes every hypervisor translation from the TLB except the shared entry region.

use abi::types::{Maddr, Mfn};

use super::layout::{self, STACK_SLOTS};
use crate::mm::phys::{FrameSource, PhysRead};

const P: u64 = 1;
const W: u64 = 1 << 1;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// Identity-mapped RAM covered by the hypervisor's address space.
pub const IDENTITY_LIMIT: u64 = 4 << 30;

/// Access to machine memory through the identity map (valid below [`IDENTITY_LIMIT`]).
#[derive(Clone, Copy, Default)]
pub struct IdentityMem;

impl IdentityMem {
    /// Pointer to a frame through the identity map.
    pub fn frame_ptr(mfn: Mfn) -> *mut u8 {
        assert!(
            mfn.addr().0 < IDENTITY_LIMIT,
            "frame outside the identity map"
        );
        mfn.addr().0 as *mut u8
    }

    /// Zero a frame.
    pub fn zero(mfn: Mfn) {
        // SAFETY: the frame lies in the identity map and belongs to the caller (just allocated or owned).
        unsafe { core::ptr::write_bytes(Self::frame_ptr(mfn), 0, 4096) }
    }

    /// Write entry `idx` of the page table in frame `table`.
    pub fn write_entry(table: Mfn, idx: usize, val: u64) {
        assert!(idx < 512);
        // SAFETY: the table frame is hypervisor-owned and identity mapped; idx is in bounds.
        unsafe {
            (Self::frame_ptr(table) as *mut u64)
                .add(idx)
                .write_volatile(val)
        }
    }

    /// Read entry `idx` of the page table in frame `table`.
    pub fn read_entry(table: Mfn, idx: usize) -> u64 {
        assert!(idx < 512);
        // SAFETY: as for `write_entry`.
        unsafe {
            (Self::frame_ptr(table) as *const u64)
                .add(idx)
                .read_volatile()
        }
    }
}

impl PhysRead for IdentityMem {
    #[inline]
    fn read_u64(&self, addr: Maddr) -> u64 {
        // The 8 bytes `[addr, addr + 8)` must lie below the limit (a caller that has shown `addr` is at
        // most `IDENTITY_LIMIT - 8`, such as the page walk's, has this test folded away).
        if addr.0 > IDENTITY_LIMIT - 8 {
            return 0;
        }
        // SAFETY: in the identity map; unaligned reads are fine on x86.
        unsafe { (addr.0 as *const u64).read_unaligned() }
    }

    #[inline]
    fn read_bytes(&self, addr: Maddr, buf: &mut [u8]) {
        let end = addr.0.saturating_add(buf.len() as u64);
        if end > IDENTITY_LIMIT {
            buf.fill(0);
            return;
        }
        // SAFETY: the range lies in the identity map; `buf` is a distinct Rust object.
        unsafe { core::ptr::copy_nonoverlapping(addr.0 as *const u8, buf.as_mut_ptr(), buf.len()) }
    }
}

impl crate::mm::phys::FrameMem for IdentityMem {
    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; 4096] {
        // SAFETY: the caller (domain builder) owns the frame it asks for; identity mapped.
        unsafe { &mut *(Self::frame_ptr(mfn) as *mut [u8; 4096]) }
    }
}

/// What the hypervisor needs to remember about its address space.
#[derive(Clone, Debug)]
pub struct HvSpace {
    /// Root of the hypervisor's own page tables.
    pub root: Mfn,
    /// The L4 entry (slot 257) that maps the entry region and entry stacks; installed in every guest L4.
    pub entry_l4e: u64,
    /// Frames of the entry region (mapped read-only).
    pub entry_frames: heapless::Vec<Mfn, 256>,
    /// Frames of the entry and IST stacks (mapped read-write, no-execute).
    pub stack_frames: heapless::Vec<Mfn, 32>,
}

/// L4 slot of the entry region.
pub const ENTRY_L4_SLOT: usize = ((abi::layout::ENTRY_REGION_VA >> 39) & 0x1ff) as usize;

fn alloc_table(frames: &mut impl FrameSource) -> Mfn {
    let mfn = frames
        .alloc_frame()
        .expect("out of memory building the hypervisor page tables");
    IdentityMem::zero(mfn);
    mfn
}

/// Build the hypervisor's address space: identity map, entry region (read-only), entry/IST stacks.
pub fn build(frames: &mut impl FrameSource) -> HvSpace {
    let root = alloc_table(frames);

    // Identity map of the first 4 GiB with 2 MiB pages.
    let l3 = alloc_table(frames);
    IdentityMem::write_entry(root, 0, l3.addr().0 | P | W);
    for gib in 0..(IDENTITY_LIMIT >> 30) as usize {
        let l2 = alloc_table(frames);
        IdentityMem::write_entry(l3, gib, l2.addr().0 | P | W);
        for i in 0..512 {
            let pa = ((gib as u64) << 30) | ((i as u64) << 21);
            // The 2 MiB page with the IOAPIC and local APIC registers is uncached (PCD | PWT).
            let uc = if pa == 0xfec0_0000 & !0x1f_ffff {
                (1 << 4) | (1 << 3)
            } else {
                0
            };
            IdentityMem::write_entry(l2, i, pa | P | W | PS | uc);
        }
    }

    // The entry region: one L3 -> L2 -> L1 chain, shared with every guest.
    let el3 = alloc_table(frames);
    let el2 = alloc_table(frames);
    let el1 = alloc_table(frames);
    IdentityMem::write_entry(el3, 0, el2.addr().0 | P | W);
    IdentityMem::write_entry(el2, 0, el1.addr().0 | P | W);
    let (start, text_end, end) = layout::entry_region_image();
    assert!(end - start <= 0x10_0000, "entry region larger than 1 MiB");
    let mut entry_frames = heapless::Vec::new();
    let mut pa = start;
    while pa < end {
        let idx = ((pa - start) >> 12) as usize;
        let nx = if pa >= text_end { NX } else { 0 };
        IdentityMem::write_entry(el1, idx, pa | P | nx);
        entry_frames
            .push(Maddr(pa).mfn())
            .expect("entry region fits in 256 pages");
        pa += 4096;
    }
    let mut stack_frames = heapless::Vec::new();
    // Entry stack and IST stacks, each below an unmapped guard page.
    for k in 0..STACK_SLOTS {
        let base = layout::stack_base(k);
        for page in 0..layout::stack_pages(k) {
            let frame = alloc_table(frames);
            let va = base + page * 4096;
            let idx = ((va >> 12) & 0x1ff) as usize;
            IdentityMem::write_entry(el1, idx, frame.addr().0 | P | W | NX);
            stack_frames
                .push(frame)
                .expect("stack slots fit in 32 pages");
        }
    }
    let entry_l4e = el3.addr().0 | P | W;
    IdentityMem::write_entry(root, ENTRY_L4_SLOT, entry_l4e);
    HvSpace {
        root,
        entry_l4e,
        entry_frames,
        stack_frames,
    }
}

/// L4 slot of the read-only M2P table (Xen's `RO_MPT_VIRT_START`).
pub const M2P_L4_SLOT: usize = ((abi::mm::RO_MPT_VIRT_START >> 39) & 0x1ff) as usize;

/// Map the M2P table (`nr` frames starting at `first`, physically contiguous) read-only and no-execute at
/// `RO_MPT_VIRT_START`; returns the L4 entry every guest gets in slot 256. The hypervisor itself writes the
/// table through its identity map.
pub fn build_m2p_mapping(frames: &mut impl FrameSource, first: Mfn, nr: u64) -> u64 {
    assert!(nr <= 512 * 512, "M2P larger than 1 GiB");
    let l3 = alloc_table(frames);
    let l2 = alloc_table(frames);
    IdentityMem::write_entry(l3, 0, l2.addr().0 | P | W);
    for (k, chunk_start) in (0..nr).step_by(512).enumerate() {
        let l1 = alloc_table(frames);
        IdentityMem::write_entry(l2, k, l1.addr().0 | P | W);
        for i in 0..(nr - chunk_start).min(512) {
            IdentityMem::write_entry(
                l1,
                i as usize,
                Mfn(first.0 + chunk_start + i).addr().0 | P | NX,
            );
        }
    }
    l3.addr().0 | P | W
}

impl crate::mm::ptval::PtMem for IdentityMem {
    // Inline: one test and a store on every page-table update (`Mm::perform`), where the slot's alignment
    // is known and the test folds to the bound.
    #[inline(always)]
    fn write_u64(&mut self, addr: Maddr, val: u64) {
        assert!(
            addr.0 < IDENTITY_LIMIT - 8 && addr.0.is_multiple_of(8),
            "page-table write outside the identity map"
        );
        crate::mm::logdirty::stored(addr.0, val);
        // SAFETY: the validation code only writes entries of page-table frames it owns or the guest owns and
        // has validated; identity mapped; aligned.
        unsafe { (addr.0 as *mut u64).write_volatile(val) }
    }

    #[inline]
    fn read_pte(&self, addr: Maddr) -> u64 {
        crate::mm::logdirty::logical(addr.0, self.read_u64(addr))
    }

    // The bound is `read_u64`'s: tested here once, it folds away there and in `write_plain`.
    #[inline(always)]
    fn plain(&self, addr: Maddr) -> bool {
        !crate::mm::logdirty::on() && addr.0 <= IDENTITY_LIMIT - 8
    }

    #[inline(always)]
    fn write_plain(&mut self, addr: Maddr, val: u64) {
        assert!(
            addr.0 <= IDENTITY_LIMIT - 8 && addr.0.is_multiple_of(8),
            "page-table write outside the identity map"
        );
        // SAFETY: as for `write_u64` (a slot of a validated table of the guest; identity mapped; aligned),
        // with log-dirty off (`plain`), so there is no hook to call.
        unsafe { (addr.0 as *mut u64).write_volatile(val) }
    }

    fn table_validated(&mut self, mfn: Mfn, level: u32) {
        crate::mm::logdirty::validated(level, || (0..512).map(|s| Self::read_entry(mfn, s)));
    }

    fn table_dropped(&mut self, mfn: Mfn) {
        crate::mm::logdirty::dropped(mfn, |slot| {
            Self::write_entry(
                mfn,
                slot,
                Self::read_entry(mfn, slot) | crate::mm::pte::PteFlags::WRITABLE.bits(),
            )
        });
    }
}
