//! The start-of-day layout of a new PV domain (Xen's order): image, P2M list, start_info, shared_info slot,
//! bootstrap page tables, stack. Pure: memory is reached through [`FrameMem`] and [`FrameSource`].
//!
//! Guest pfn `k` is mapped at `virt_base + k * 4096` for the whole start-of-day region, except the
//! shared_info slot, which maps the hypervisor's shared_info frame (the pfn behind that slot is allocated and
//! zeroed but not mapped). Everything is validated before the first frame is allocated.

use crate::loader::elf::{self, ElfError, ElfImage};
use crate::mm::phys::{FrameMem, FrameSource};
use crate::mm::pte::{Pte, PteFlags};
use abi::layout::{
    RESERVED_L4_FIRST, RESERVED_L4_LAST, RESERVED_VA_END, RESERVED_VA_START, guest_va_allowed,
};
use abi::types::{Gva, Mfn, PAGE_SHIFT, PAGE_SIZE, Pfn};
use abi::xen::{MAX_GUEST_CMDLINE, START_INFO_MAGIC, StartInfo};
use zerocopy::{FromZeros, IntoBytes};

/// Extra mapped memory after the stack, when backed by guest pages (Xen's 512 KiB rule).
pub const SLACK_BYTES: u64 = 512 << 10;
const SLACK_PAGES: u64 = SLACK_BYTES / PAGE_SIZE;
const ENTRIES_PER_PAGE: u64 = PAGE_SIZE / 8;

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams<'a> {
    /// The new domain's id (for log messages).
    pub domid: u16,
    /// Guest memory in 4 KiB pages.
    pub nr_pages: u64,
    /// The guest ELF file.
    pub image: &'a [u8],
    /// Copied into `start_info.cmd_line` (truncated to 1023 bytes at a character boundary, NUL terminated).
    pub cmdline: &'a str,
    /// Hypervisor-owned frame, already zeroed and initialised by the caller.
    pub shared_info: Mfn,
    /// `SIF_*` flags for `start_info.flags`.
    pub flags: u32,
    /// Raw L4 entries `(slot, value)` the hypervisor installs in every guest L4 (its entry region).
    pub hypervisor_l4: &'a [(usize, u64)],
    /// Size of the initial stack in pages (at least 1).
    pub stack_pages: u64,
}

/// The result of a successful build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    /// The domain's top-level page table (guest pfn behind `start_info.pt_base`).
    pub l4: Mfn,
    /// The ELF entry point.
    pub entry: Gva,
    /// End of the stack region (initial RSP).
    pub stack_top: Gva,
    /// Virtual address of the start_info page (initial RSI).
    pub start_info: Gva,
    /// Virtual address at which the shared_info frame is mapped.
    pub shared_info_va: Gva,
    /// Start of the region (lowest image address rounded down to a page).
    pub virt_base: Gva,
    /// End of the mapped region (the stack plus up to [`SLACK_BYTES`] of backed slack).
    pub region_end: Gva,
    /// Number of bootstrap page-table frames (L4 first).
    pub nr_pt_frames: u64,
    /// First guest pfn after the stack.
    pub first_free_pfn: Pfn,
}

/// Why a domain could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The guest image is invalid.
    Elf(ElfError),
    /// `nr_pages` is smaller than the start-of-day region (`needed` pages).
    NotEnoughMemory { needed: u64, nr_pages: u64 },
    /// The P2M output slice is shorter than `nr_pages`.
    P2mTooSmall { nr_pages: u64, len: usize },
    /// The frame source ran dry after `allocated` frames; they are in `p2m_out[..allocated]` and the caller
    /// must free them.
    OutOfFrames { allocated: u64 },
    /// The region would wrap, leave the canonical half it starts in, or run into the reserved range.
    RegionNotAllowed,
    /// A hypervisor L4 slot outside `RESERVED_L4_FIRST..=RESERVED_L4_LAST`.
    BadHypervisorSlot(usize),
    /// `stack_pages` is zero.
    NoStack,
    /// An internal consistency check failed (a bug in the builder). All `nr_pages` frames were allocated
    /// into `p2m_out[..nr_pages]`; the caller must free them.
    Internal(&'static str),
}

impl From<ElfError> for BuildError {
    fn from(e: ElfError) -> Self {
        BuildError::Elf(e)
    }
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Elf(e) => write!(f, "bad guest image: {e}"),
            BuildError::NotEnoughMemory { needed, nr_pages } => {
                write!(
                    f,
                    "start-of-day region needs {needed} pages, domain has {nr_pages}"
                )
            }
            BuildError::P2mTooSmall { nr_pages, len } => {
                write!(f, "P2M buffer holds {len} entries, need {nr_pages}")
            }
            BuildError::OutOfFrames { allocated } => {
                write!(f, "out of frames after allocating {allocated}")
            }
            BuildError::RegionNotAllowed => {
                f.write_str("start-of-day region leaves the guest-allowed address space")
            }
            BuildError::BadHypervisorSlot(s) => {
                write!(f, "hypervisor L4 slot {s} outside the reserved range")
            }
            BuildError::NoStack => f.write_str("initial stack of zero pages"),
            BuildError::Internal(what) => write!(f, "domain builder bug: {what}"),
        }
    }
}

/// The start-of-day region in guest pfns (pfn 0 is `virt_base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    virt_base: u64,
    image_pages: u64,
    p2m_pfn: u64,
    p2m_pages: u64,
    start_info_pfn: u64,
    shared_info_pfn: u64,
    pt_pfn: u64,
    nr_pt: u64,
    stack_pfn: u64,
    /// Pages up to the end of the stack: the minimum `nr_pages`.
    region_pages: u64,
    /// Pages mapped: `region_pages` plus the backed part of the slack.
    mapped_pages: u64,
}

/// Number of tables (L4, L3s, L2s, L1s) needed to map `[start, start + pages * 4096)`, or `None` if the range
/// is not allowed for a guest.
fn tables_needed(start: u64, pages: u64) -> Option<u64> {
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| start.checked_add(len))?;
    let last = end.checked_sub(1)?;
    if pages == 0
        || !guest_va_allowed(start)
        || !guest_va_allowed(last)
        || (start >> 63) != (last >> 63)
        || (start < RESERVED_VA_END && last >= RESERVED_VA_START)
    {
        return None;
    }
    let span = |shift: u32| (last >> shift) - (start >> shift) + 1;
    Some(1 + span(39) + span(30) + span(21))
}

fn compute_layout(elf: &ElfImage, nr_pages: u64, stack_pages: u64) -> Result<Layout, BuildError> {
    let overflow = BuildError::RegionNotAllowed;
    let virt_base = Gva(elf.lowest).page_base().0;
    let image_end = elf
        .highest_end
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or(overflow)?;
    let image_pages = (image_end - virt_base) >> PAGE_SHIFT;
    let p2m_pages = nr_pages.checked_mul(8).ok_or(overflow)?.div_ceil(PAGE_SIZE);
    let p2m_pfn = image_pages;
    let start_info_pfn = p2m_pfn.checked_add(p2m_pages).ok_or(overflow)?;
    let shared_info_pfn = start_info_pfn + 1;
    let pt_pfn = start_info_pfn + 2;
    // The tables map themselves: iterate to the least fixpoint (the table count is monotone in `nr_pt`, so
    // jumping straight to the count needed never overshoots it).
    let mut nr_pt = 1;
    for _ in 0..64 {
        let stack_pfn = pt_pfn.checked_add(nr_pt).ok_or(overflow)?;
        let region_pages = stack_pfn.checked_add(stack_pages).ok_or(overflow)?;
        let with_slack = region_pages.checked_add(SLACK_PAGES).ok_or(overflow)?;
        let mapped_pages = with_slack.min(nr_pages).max(region_pages);
        let needed = tables_needed(virt_base, mapped_pages).ok_or(overflow)?;
        if needed <= nr_pt {
            if nr_pages < region_pages {
                return Err(BuildError::NotEnoughMemory {
                    needed: region_pages,
                    nr_pages,
                });
            }
            return Ok(Layout {
                virt_base,
                image_pages,
                p2m_pfn,
                p2m_pages,
                start_info_pfn,
                shared_info_pfn,
                pt_pfn,
                nr_pt,
                stack_pfn,
                region_pages,
                mapped_pages,
            });
        }
        nr_pt = needed;
    }
    Err(BuildError::Internal("page-table count does not converge"))
}

/// Builds a new domain's memory: allocates `nr_pages` frames into `p2m_out[..nr_pages]` (indexed by guest
/// pfn), loads the image, and writes the P2M list, start_info and bootstrap page tables.
///
/// Every check on the parameters and the image happens before the first allocation, so most errors leave
/// no trace. On [`BuildError::OutOfFrames`], `p2m_out[..allocated]` holds the frames taken so far, and on
/// [`BuildError::Internal`] `p2m_out[..nr_pages]` holds all of them; the caller frees them. The caller must
/// not hand out `p.shared_info` through `frames`.
pub fn build(
    mem: &mut impl FrameMem,
    frames: &mut impl FrameSource,
    p: &BuildParams,
    p2m_out: &mut [Mfn],
) -> Result<Built, BuildError> {
    let elf = elf::parse(p.image)?;
    if p.stack_pages == 0 {
        return Err(BuildError::NoStack);
    }
    if let Some(&(slot, _)) = p
        .hypervisor_l4
        .iter()
        .find(|(s, _)| !(RESERVED_L4_FIRST..=RESERVED_L4_LAST).contains(s))
    {
        return Err(BuildError::BadHypervisorSlot(slot));
    }
    let nr = match usize::try_from(p.nr_pages) {
        Ok(n) if n <= p2m_out.len() => n,
        _ => {
            return Err(BuildError::P2mTooSmall {
                nr_pages: p.nr_pages,
                len: p2m_out.len(),
            });
        }
    };
    let l = compute_layout(&elf, p.nr_pages, p.stack_pages)?;
    let p2m = &mut p2m_out[..nr];

    for (pfn, slot) in p2m.iter_mut().enumerate() {
        *slot = frames.alloc_frame().ok_or(BuildError::OutOfFrames {
            allocated: pfn as u64,
        })?;
    }
    let p2m: &[Mfn] = p2m;
    for &mfn in p2m {
        mem.frame_mut(mfn).fill(0);
    }

    // The image. check_segment proved offset + filesz is inside the file and the segment inside the region.
    for seg in &elf.segments {
        let data = usize::try_from(seg.offset)
            .ok()
            .zip(usize::try_from(seg.filesz).ok())
            .and_then(|(o, n)| p.image.get(o..o.checked_add(n)?))
            .ok_or(BuildError::Internal("segment outside the image"))?;
        let mut va = seg.vaddr;
        let mut rest = data;
        while !rest.is_empty() {
            let off = (va % PAGE_SIZE) as usize;
            let n = rest.len().min(PAGE_SIZE as usize - off);
            let pfn = ((va - l.virt_base) >> PAGE_SHIFT) as usize;
            let mfn = *p2m
                .get(pfn)
                .ok_or(BuildError::Internal("image page beyond the P2M"))?;
            mem.frame_mut(mfn)[off..off + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            va += n as u64;
        }
    }

    // The P2M list: entry k is the MFN of guest pfn k.
    for (i, mfn) in p2m.iter().enumerate() {
        let page = l.p2m_pfn as usize + i / ENTRIES_PER_PAGE as usize;
        let off = (i % ENTRIES_PER_PAGE as usize) * 8;
        mem.frame_mut(p2m[page])[off..off + 8].copy_from_slice(&mfn.0.to_le_bytes());
    }

    let va_of = |pfn: u64| Gva(l.virt_base + (pfn << PAGE_SHIFT));

    // start_info.
    let mut si = StartInfo::new_zeroed();
    si.magic[..START_INFO_MAGIC.len()].copy_from_slice(START_INFO_MAGIC.as_bytes());
    si.nr_pages = p.nr_pages;
    si.shared_info = p.shared_info.addr().0;
    si.flags = p.flags;
    si.pt_base = va_of(l.pt_pfn).0;
    si.nr_pt_frames = l.nr_pt;
    si.mfn_list = va_of(l.p2m_pfn).0;
    let mut n = p.cmdline.len().min(MAX_GUEST_CMDLINE - 1);
    while !p.cmdline.is_char_boundary(n) {
        n -= 1;
    }
    si.cmd_line[..n].copy_from_slice(&p.cmdline.as_bytes()[..n]);
    let bytes = si.as_bytes();
    mem.frame_mut(p2m[l.start_info_pfn as usize])[..bytes.len()].copy_from_slice(bytes);

    // Bootstrap page tables.
    let l4 = p2m[l.pt_pfn as usize];
    let mut next_pt = l.pt_pfn + 1;
    let table_flags = PteFlags::PRESENT | PteFlags::WRITABLE;
    for page in 0..l.mapped_pages {
        let va = va_of(page);
        let mut table = l4;
        for level in [4u32, 3, 2] {
            let idx = va.table_index(level);
            let e = entry(mem, table, idx);
            table = if e.is_present() {
                e.mfn()
            } else {
                if next_pt >= l.pt_pfn + l.nr_pt {
                    return Err(BuildError::Internal("page-table frames exhausted"));
                }
                let t = p2m[next_pt as usize];
                next_pt += 1;
                set_entry(mem, table, idx, Pte::new(t, table_flags));
                t
            };
        }
        let target = if page == l.shared_info_pfn {
            p.shared_info
        } else {
            p2m[page as usize]
        };
        set_entry(
            mem,
            table,
            va.table_index(1),
            Pte::new(target, leaf_flags(&l, &elf, page)),
        );
    }
    if next_pt != l.pt_pfn + l.nr_pt {
        return Err(BuildError::Internal("page-table frame count mismatch"));
    }
    for &(slot, raw) in p.hypervisor_l4 {
        set_entry(mem, l4, slot, Pte(raw));
    }

    let built = Built {
        l4,
        entry: Gva(elf.entry),
        stack_top: va_of(l.region_pages),
        start_info: va_of(l.start_info_pfn),
        shared_info_va: va_of(l.shared_info_pfn),
        virt_base: Gva(l.virt_base),
        region_end: va_of(l.mapped_pages),
        nr_pt_frames: l.nr_pt,
        first_free_pfn: Pfn(l.region_pages),
    };
    log::debug!(
        "d{}: {} pages, image {:#x}+{} pages, p2m pfn {}, pt pfn {}+{}, stack pfn {}, entry {:?}",
        p.domid,
        p.nr_pages,
        l.virt_base,
        l.image_pages,
        l.p2m_pfn,
        l.pt_pfn,
        l.nr_pt,
        l.stack_pfn,
        built.entry
    );
    Ok(built)
}

/// Leaf permissions of guest page `page` of the region: never USER; page tables read-only; NX unless the page
/// holds part of an executable segment.
fn leaf_flags(l: &Layout, elf: &ElfImage, page: u64) -> PteFlags {
    let base = PteFlags::PRESENT;
    if page < l.image_pages {
        let start = l.virt_base + (page << PAGE_SHIFT);
        let end = start + PAGE_SIZE;
        let (mut w, mut x) = (false, false);
        for s in elf
            .segments
            .iter()
            .filter(|s| s.vaddr < end && s.end() > start)
        {
            w |= s.writable;
            x |= s.executable;
        }
        let mut f = base;
        f.set(PteFlags::WRITABLE, w);
        f.set(PteFlags::NO_EXECUTE, !x);
        f
    } else if (l.pt_pfn..l.pt_pfn + l.nr_pt).contains(&page) {
        base | PteFlags::NO_EXECUTE
    } else {
        base | PteFlags::WRITABLE | PteFlags::NO_EXECUTE
    }
}

fn entry(mem: &impl FrameMem, table: Mfn, idx: usize) -> Pte {
    Pte(mem.read_u64(abi::types::Maddr(table.addr().0 + idx as u64 * 8)))
}

fn set_entry(mem: &mut impl FrameMem, table: Mfn, idx: usize, pte: Pte) {
    let off = (idx % ENTRIES_PER_PAGE as usize) * 8;
    mem.frame_mut(table)[off..off + 8].copy_from_slice(&pte.0.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::elf::testelf::{build as build_elf, load};
    use crate::mm::phys::PhysRead;
    use crate::mm::phys::fake::FakeMachine;
    use crate::mm::walk::{Access, WalkError, translate};
    use abi::types::Maddr;
    use zerocopy::FromBytes;

    const BASE: u64 = 0xffff_ffff_8000_0000;
    const SHARED: Mfn = Mfn(1);
    const HV_L4: [(usize, u64); 2] = [(257, 0x0000_0000_0abc_d003), (271, 0x8000_0000_0123_4001)];

    /// Text at `base` (0x1800 bytes, RX), data at `base + 0x2000` (0x10 bytes of file, 0x2100 in memory, RW).
    fn image_at(base: u64) -> Vec<u8> {
        let text: Vec<u8> = (0..0x1800u32).map(|i| (i * 7 + 3) as u8).collect();
        build_elf(
            base + 0x40,
            &[
                load(5, 0x1000, base, 0x1800, 0x1800),
                load(6, 0x3000, base + 0x2000, 0x10, 0x2100),
            ],
            0x3010,
            &[(0x1000, &text), (0x3000, b"0123456789abcdef")],
        )
    }

    fn params(image: &[u8], nr_pages: u64) -> BuildParams<'_> {
        BuildParams {
            domid: 1,
            nr_pages,
            image,
            cmdline: "console=hvc0 quiet",
            shared_info: SHARED,
            flags: abi::xen::SIF_INITDOMAIN,
            hypervisor_l4: &HV_L4,
            stack_pages: 4,
        }
    }

    /// Frames drawn up front from a [`FakeMachine`] (which cannot be memory and frame source at once).
    struct Pool(Vec<Mfn>);

    impl FrameSource for Pool {
        fn alloc_frame(&mut self) -> Option<Mfn> {
            self.0.pop()
        }
    }

    /// A machine of `n` frames whose allocatable frames (16..n) are full of garbage, and a pool of them.
    fn machine(n: usize) -> (FakeMachine, Pool) {
        let mut m = FakeMachine::new(n);
        for f in 16..n as u64 {
            m.frame_mut(Mfn(f)).fill(0xa5);
        }
        m.set_alloc_range(16, n as u64);
        let mut frames: Vec<Mfn> = core::iter::from_fn(|| m.alloc_frame()).collect();
        frames.reverse();
        (m, Pool(frames))
    }

    fn build_ok(n: usize, p: &BuildParams) -> (FakeMachine, Built, Vec<Mfn>) {
        let (mut m, mut pool) = machine(n);
        let mut p2m = vec![Mfn(0); p.nr_pages as usize + 3];
        let b = build(&mut m, &mut pool, p, &mut p2m).unwrap();
        p2m.truncate(p.nr_pages as usize);
        (m, b, p2m)
    }

    fn read(m: &FakeMachine, l4: Mfn, va: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        crate::mm::walk::for_each_chunk(
            m,
            l4,
            Gva(va),
            len as u64,
            Access::READ,
            u64::MAX,
            |ma, n| {
                let mut buf = vec![0u8; n];
                m.read_bytes(ma, &mut buf);
                out.extend_from_slice(&buf);
            },
        )
        .unwrap();
        out
    }

    fn start_info(m: &FakeMachine, b: &Built) -> StartInfo {
        let raw = read(m, b.l4, b.start_info.0, core::mem::size_of::<StartInfo>());
        StartInfo::read_from_bytes(&raw).unwrap()
    }

    #[test]
    fn builds_a_domain() {
        let img = image_at(BASE);
        let (m, b, p2m) = build_ok(256, &params(&img, 64));
        assert_eq!(b.virt_base, Gva(BASE));
        assert_eq!(b.entry, Gva(BASE + 0x40));
        // Image 5 pages (to BASE + 0x4100 rounded up), P2M 1, start_info, shared_info, 4 tables, stack 4.
        assert_eq!(b.start_info, Gva(BASE + 6 * 4096));
        assert_eq!(b.shared_info_va, Gva(BASE + 7 * 4096));
        assert_eq!(b.nr_pt_frames, 4);
        assert_eq!(b.stack_top, Gva(BASE + 16 * 4096));
        assert_eq!(b.first_free_pfn, Pfn(16));
        assert_eq!(b.region_end, Gva(BASE + 64 * 4096)); // slack capped by nr_pages
        assert_eq!(b.l4, p2m[8]);
        // nr_pages distinct frames, all from the source.
        let mut sorted = p2m.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 64);
        assert!(sorted.iter().all(|f| (16..256).contains(&f.0)));

        // Image contents; bss zeroed although the frames were full of garbage.
        let text = read(&m, b.l4, BASE, 0x1800);
        assert!(
            text.iter()
                .enumerate()
                .all(|(i, &x)| x == (i as u32 * 7 + 3) as u8)
        );
        assert_eq!(read(&m, b.l4, BASE + 0x1800, 0x800), vec![0; 0x800]);
        assert_eq!(read(&m, b.l4, BASE + 0x2000, 16), b"0123456789abcdef");
        assert_eq!(read(&m, b.l4, BASE + 0x2010, 0x20f0), vec![0; 0x20f0]);

        // Text read-only; data, start_info and stack writable; page tables read-only; nothing user.
        let w = Access::WRITE;
        assert_eq!(
            translate(&m, b.l4, Gva(BASE), w),
            Err(WalkError::Protection)
        );
        assert!(translate(&m, b.l4, Gva(BASE + 0x4000), w).is_ok());
        assert!(translate(&m, b.l4, Gva(b.stack_top.0 - 8), w).is_ok());
        assert!(translate(&m, b.l4, b.start_info, w).is_ok());
        for k in 0..b.nr_pt_frames {
            let va = Gva(BASE + (8 + k) * 4096);
            assert_eq!(translate(&m, b.l4, va, w), Err(WalkError::Protection));
            assert_eq!(
                translate(&m, b.l4, va, Access::READ),
                Ok(p2m[8 + k as usize].addr())
            );
        }
        let user = Access {
            write: false,
            user: true,
        };
        assert_eq!(
            translate(&m, b.l4, Gva(BASE), user),
            Err(WalkError::Protection)
        );
        assert_eq!(
            translate(&m, b.l4, b.region_end, Access::READ),
            Err(WalkError::NotPresent { level: 1 })
        );

        // Every mapped page is pfn k at BASE + k * 4096, except the shared_info slot.
        for k in 0..64u64 {
            let ma = translate(&m, b.l4, Gva(BASE + k * 4096), Access::READ).unwrap();
            let want = if k == 7 { SHARED } else { p2m[k as usize] };
            assert_eq!(ma, want.addr(), "pfn {k}");
        }

        let si = start_info(&m, &b);
        assert!(si.magic.starts_with(b"xen-3.0-x86_64"));
        assert_eq!(si.nr_pages, 64);
        assert_eq!(si.shared_info, SHARED.addr().0);
        assert_eq!(si.flags, abi::xen::SIF_INITDOMAIN);
        assert_eq!(si.pt_base, BASE + 8 * 4096);
        assert_eq!(si.nr_pt_frames, 4);
        assert_eq!(si.mfn_list, BASE + 5 * 4096);
        assert_eq!(
            (si.mod_start, si.mod_len, si.first_p2m_pfn, si.nr_p2m_frames),
            (0, 0, 0, 0)
        );
        assert_eq!(&si.cmd_line[..19], b"console=hvc0 quiet\0");

        // The P2M list as the guest sees it.
        let list = read(&m, b.l4, si.mfn_list, 64 * 8);
        for (k, mfn) in p2m.iter().enumerate() {
            assert_eq!(
                u64::from_le_bytes(list[k * 8..k * 8 + 8].try_into().unwrap()),
                mfn.0
            );
        }

        // Hypervisor L4 entries verbatim; the only other L4 entry is the guest's own (slot 511).
        let l4e = |s: usize| m.read_u64(Maddr(b.l4.addr().0 + s as u64 * 8));
        for (slot, raw) in HV_L4 {
            assert_eq!(l4e(slot), raw);
        }
        let present: Vec<usize> = (0..512).filter(|&s| l4e(s) & 1 != 0).collect();
        assert_eq!(present, vec![257, 271, 511]);
        // Intermediate entries are supervisor PRESENT|WRITABLE, without NX.
        assert_eq!(l4e(511) & 0x8000_0000_0000_0fff, 3);
        // Guest pages beyond the mapped region are zeroed too.
        let mut last = [0xffu8; 4096];
        m.read_bytes(p2m[63].addr(), &mut last);
        assert!(last.iter().all(|&x| x == 0));
        // Executable text, NX data: check the L1 entries directly.
        let l1 = |va: u64| {
            let mut t = b.l4;
            for level in [4, 3, 2] {
                t = Pte(m.read_u64(Maddr(t.addr().0 + Gva(va).table_index(level) as u64 * 8)))
                    .mfn();
            }
            Pte(m.read_u64(Maddr(t.addr().0 + Gva(va).table_index(1) as u64 * 8)))
        };
        assert!(!l1(BASE).has(PteFlags::NO_EXECUTE));
        assert!(l1(BASE + 0x2000).has(PteFlags::NO_EXECUTE | PteFlags::WRITABLE));
        assert!(l1(b.stack_top.0 - 1).has(PteFlags::NO_EXECUTE));
        assert!(l1(si.pt_base).has(PteFlags::NO_EXECUTE));
    }

    #[test]
    fn no_writable_mapping_of_page_tables() {
        // An image just below a 2 MiB boundary, so the region needs two L1 tables.
        let img = image_at(BASE + 0x1f_e000);
        let (m, b, p2m) = build_ok(2048, &params(&img, 1500));
        assert_eq!(b.nr_pt_frames, 5);
        assert_eq!(b.region_end.0, b.stack_top.0 + SLACK_BYTES);
        let pt_pfn = p2m.iter().position(|&f| f == b.l4).unwrap();
        assert_eq!(
            b.virt_base.0 + pt_pfn as u64 * 4096,
            start_info(&m, &b).pt_base
        );
        let pt = &p2m[pt_pfn..pt_pfn + b.nr_pt_frames as usize];
        let mut seen = 0;
        let mut va = b.virt_base;
        while va < b.region_end {
            let ma = translate(&m, b.l4, va, Access::READ).unwrap();
            if pt.contains(&ma.mfn()) {
                seen += 1;
                assert_eq!(
                    translate(&m, b.l4, va, Access::WRITE),
                    Err(WalkError::Protection)
                );
            }
            va = Gva(va.0 + 4096);
        }
        assert_eq!(seen, b.nr_pt_frames);
        assert_eq!(read(&m, b.l4, BASE + 0x1f_e000 + 0x2000, 4), b"0123");
    }

    #[test]
    fn layout_counts_tables_across_boundaries() {
        // An image just below 1 GiB in the lower half: the region spans two L2 tables and several L1 tables.
        let img = build_elf(
            0x3ffc_0000,
            &[load(5, 0, 0x3ffc_0000, 0x100, 0x30000)],
            0x1000,
            &[],
        );
        let elf = elf::parse(&img).unwrap();
        let l = compute_layout(&elf, 4096, 16).unwrap();
        assert_eq!(l.image_pages, 0x30);
        assert_eq!(l.p2m_pages, 8);
        assert_eq!(l.pt_pfn, 0x30 + 8 + 2);
        let end = 0x3ffc_0000 + l.mapped_pages * 4096;
        assert!(end > 1 << 30);
        let l1 = ((end - 1) >> 21) - (0x3ffc_0000u64 >> 21) + 1;
        assert_eq!(l.nr_pt, 1 + 1 + 2 + l1);
        assert_eq!(l.mapped_pages, l.region_pages + SLACK_PAGES);
        assert_eq!(tables_needed(0x3ffc_0000, l.mapped_pages), Some(l.nr_pt));
        assert_eq!(tables_needed(0x3ffc_0000, 0), None);
        assert_eq!(tables_needed(0x7fff_ffff_f000, 2), None);
        assert_eq!(tables_needed(0xffff_ffff_ffff_f000, 1), None);
    }

    #[test]
    fn errors() {
        let img = image_at(BASE);
        let mut p2m = vec![Mfn(0); 300];
        // Returns the result and how many frames the pool still has.
        let run = |p: &BuildParams, p2m: &mut [Mfn]| {
            let (mut m, mut pool) = machine(256);
            let r = build(&mut m, &mut pool, p, p2m);
            (r, pool.0.len())
        };
        let nem = BuildError::NotEnoughMemory {
            needed: 16,
            nr_pages: 15,
        };
        assert_eq!(run(&params(&img, 15), &mut p2m), (Err(nem), 240));
        assert_eq!(run(&params(&img, 16), &mut p2m).1, 240 - 16);
        let e = BuildError::P2mTooSmall {
            nr_pages: 64,
            len: 63,
        };
        assert_eq!(run(&params(&img, 64), &mut p2m[..63]), (Err(e), 240));
        let e = BuildError::Elf(ElfError::SegmentOutOfFile { index: 0 });
        assert_eq!(run(&params(&img[..0x1100], 64), &mut p2m).0, Err(e));
        assert_eq!(
            run(&params(&img[..10], 64), &mut p2m).0,
            Err(BuildError::Elf(ElfError::TooShort))
        );
        let mut p = params(&img, 64);
        p.stack_pages = 0;
        assert_eq!(run(&p, &mut p2m).0, Err(BuildError::NoStack));
        p.stack_pages = u64::MAX;
        assert_eq!(run(&p, &mut p2m).0, Err(BuildError::RegionNotAllowed));
        for slot in [255usize, 272, 0, usize::MAX] {
            let bad = [(257usize, 1u64), (slot, 1u64)];
            let mut p = params(&img, 64);
            p.hypervisor_l4 = &bad;
            assert_eq!(
                run(&p, &mut p2m),
                (Err(BuildError::BadHypervisorSlot(slot)), 240)
            );
        }
        // Out of frames: 240 allocatable frames, 250 pages requested; all 240 are in p2m[..240].
        let (r, left) = run(&params(&img, 250), &mut p2m);
        assert_eq!(r, Err(BuildError::OutOfFrames { allocated: 240 }));
        assert_eq!(left, 0);
        assert!(p2m[..240].iter().all(|f| (16..256).contains(&f.0)));
        // A region running past the end of the lower half.
        let top = build_elf(
            0x7fff_fffe_0000,
            &[load(5, 0, 0x7fff_fffe_0000, 0x100, 0x100)],
            0x1000,
            &[],
        );
        assert_eq!(
            run(&params(&top, 64), &mut p2m),
            (Err(BuildError::RegionNotAllowed), 240)
        );
        // Absurd nr_pages never reaches the allocator.
        let e = BuildError::P2mTooSmall {
            nr_pages: u64::MAX,
            len: 300,
        };
        assert_eq!(run(&params(&img, u64::MAX), &mut p2m), (Err(e), 240));
    }

    #[test]
    fn cmdline_truncated_at_char_boundary() {
        let img = image_at(BASE);
        let long = "\u{20ac}".repeat(400); // 1200 bytes
        let mut p = params(&img, 64);
        p.cmdline = &long;
        let (m, b, _) = build_ok(256, &p);
        let si = start_info(&m, &b);
        let n = si.cmd_line.iter().position(|&c| c == 0).unwrap();
        assert_eq!(n, 1023 / 3 * 3);
        assert!(core::str::from_utf8(&si.cmd_line[..n]).is_ok());
        let ascii = "x".repeat(2000);
        p.cmdline = &ascii;
        let (m, b, _) = build_ok(256, &p);
        assert_eq!(start_info(&m, &b).cmd_line[1022..], [b'x', 0]);
    }

    #[test]
    fn display() {
        let e = BuildError::NotEnoughMemory {
            needed: 16,
            nr_pages: 15,
        };
        assert!(e.to_string().contains("16") && e.to_string().contains("15"));
        assert!(
            BuildError::Elf(ElfError::TooShort)
                .to_string()
                .contains("ELF header")
        );
        assert!(
            BuildError::OutOfFrames { allocated: 7 }
                .to_string()
                .contains('7')
        );
        assert!(BuildError::BadHypervisorSlot(3).to_string().contains('3'));
    }
}
