//! Validation of an ELF64 x86_64 executable (hostile input: every field is checked) against an
//! [`AddressPolicy`], and the description of its `PT_LOAD` segments.

use crate::error::ElfError;
use crate::format::{
    ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, EV_CURRENT, Ehdr, MAGIC, PF_W, PF_X, PHDR_SIZE,
    PT_LOAD, Phdr,
};
use zerocopy::FromBytes;

/// Most `PT_LOAD` segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// The page size segments are checked against (overlap and `p_vaddr`/`p_offset` congruence).
pub const PAGE_SIZE: u64 = 4096;

/// Where a loader lets an image's segments lie. The parser itself enforces only what holds for every
/// x86_64 address space: each segment, and the image from its lowest to its highest address, is canonical
/// and in one half.
#[derive(Clone, Copy, Debug)]
pub struct AddressPolicy {
    /// Whether the bytes `first..=last` may hold (part of) an image. Called with `first <= last`, both
    /// canonical and in the same half: once per non-empty segment, then once for the whole image (lowest
    /// segment address to the last byte of the highest segment), so a hole in the allowed addresses is
    /// refused even when no segment touches it.
    pub allows: fn(first: u64, last: u64) -> bool,
    /// Largest accepted span from the lowest segment address to the highest segment end.
    pub max_span: u64,
    /// What [`ElfError::AddressNotAllowed`] says about a refused segment, e.g. "outside user space".
    pub refusal: &'static str,
}

/// One validated `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Size in memory (at least `filesz`; the rest is zero-filled).
    pub memsz: u64,
    /// Offset of the file data in the image.
    pub offset: u64,
    /// Bytes of file data (`offset + filesz` is inside the image).
    pub filesz: u64,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

impl Segment {
    /// One past the last byte (cannot overflow, nor can its page-rounded value: checked by [`parse`]).
    pub const fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// A validated image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    /// Entry point (inside an executable segment).
    pub entry: u64,
    /// The non-empty `PT_LOAD` segments, sorted by address, no two sharing a page.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// Lowest segment address.
    pub lowest: u64,
    /// Highest segment end (exclusive).
    pub highest_end: u64,
}

/// True if bits 63..47 are all equal (a canonical 48-bit address).
const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

/// True if `first..=last` is canonical and does not cross from one half to the other.
const fn canonical_range(first: u64, last: u64) -> bool {
    is_canonical(first) && is_canonical(last) && (first >> 63) == (last >> 63)
}

/// Validates `image` and describes its loadable segments; `policy` decides where they may lie.
pub fn parse(image: &[u8], policy: &AddressPolicy) -> Result<ElfImage, ElfError> {
    let (eh, _) = Ehdr::ref_from_prefix(image).map_err(|_| ElfError::TooShort)?;
    if eh.ident[..4] != MAGIC {
        return Err(ElfError::BadMagic);
    }
    if eh.ident[4] != ELFCLASS64 {
        return Err(ElfError::NotElf64);
    }
    if eh.ident[5] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    if eh.ident[6] != EV_CURRENT || eh.version.get() != u32::from(EV_CURRENT) {
        return Err(ElfError::BadVersion);
    }
    if eh.e_type.get() != ET_EXEC {
        return Err(ElfError::NotExecutable(eh.e_type.get()));
    }
    if eh.machine.get() != EM_X86_64 {
        return Err(ElfError::WrongMachine(eh.machine.get()));
    }
    if usize::from(eh.phentsize.get()) != PHDR_SIZE {
        return Err(ElfError::BadPhentsize(eh.phentsize.get()));
    }
    let phnum = usize::from(eh.phnum.get());
    let table = usize::try_from(eh.phoff.get())
        .ok()
        .and_then(|off| Some((off, off.checked_add(phnum.checked_mul(PHDR_SIZE)?)?)))
        .and_then(|(off, end)| image.get(off..end))
        .ok_or(ElfError::PhdrsOutOfFile)?;
    let (phdrs, _) =
        <[Phdr]>::ref_from_prefix_with_elems(table, phnum).map_err(|_| ElfError::PhdrsOutOfFile)?;

    // Segments with their phdr index, for error reports.
    let mut segs: heapless::Vec<(usize, Segment), MAX_SEGMENTS> = heapless::Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type.get() != PT_LOAD {
            continue;
        }
        let seg = check_segment(index, ph, image.len(), policy)?;
        if seg.memsz == 0 {
            continue;
        }
        segs.push((index, seg))
            .map_err(|_| ElfError::TooManySegments)?;
    }
    if segs.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }
    segs.sort_unstable_by_key(|(_, s)| s.vaddr);

    // Page-granular overlap check: sorted by start, so neighbours suffice (check_segment proved the
    // page-rounded end does not overflow).
    for pair in segs.windows(2) {
        let (ia, a) = pair[0];
        let (ib, b) = pair[1];
        if b.vaddr / PAGE_SIZE < a.end().div_ceil(PAGE_SIZE) {
            return Err(ElfError::Overlap {
                first: ia.min(ib),
                second: ia.max(ib),
            });
        }
    }

    let lowest = segs[0].1.vaddr;
    let highest_end = segs.iter().map(|(_, s)| s.end()).max().unwrap_or(lowest);
    // The lowest start is at most every end, so this does not underflow.
    let span = highest_end - lowest;
    if span > policy.max_span {
        return Err(ElfError::TooLarge {
            span,
            limit: policy.max_span,
        });
    }
    // The whole image: within one half, and allowed as one range (the policy may have holes between
    // segments). Segments are non-empty, so `highest_end - 1` is the last byte of one of them.
    let last_index = segs[segs.len() - 1].0;
    if !canonical_range(lowest, highest_end - 1) {
        return Err(ElfError::NonCanonical { index: last_index });
    }
    if !(policy.allows)(lowest, highest_end - 1) {
        return Err(ElfError::AddressNotAllowed {
            index: last_index,
            why: policy.refusal,
        });
    }

    let entry = eh.entry.get();
    if !segs
        .iter()
        .any(|(_, s)| s.executable && s.vaddr <= entry && entry < s.end())
    {
        return Err(ElfError::EntryNotExecutable(entry));
    }

    let mut segments = heapless::Vec::new();
    for (_, s) in segs {
        // Same capacity as `segs`, cannot fail.
        segments.push(s).map_err(|_| ElfError::TooManySegments)?;
    }
    Ok(ElfImage {
        entry,
        segments,
        lowest,
        highest_end,
    })
}

fn check_segment(
    index: usize,
    ph: &Phdr,
    image_len: usize,
    policy: &AddressPolicy,
) -> Result<Segment, ElfError> {
    let (offset, filesz, memsz, vaddr, align) = (
        ph.offset.get(),
        ph.filesz.get(),
        ph.memsz.get(),
        ph.vaddr.get(),
        ph.align.get(),
    );
    if filesz > memsz {
        return Err(ElfError::FileszExceedsMemsz { index });
    }
    match offset.checked_add(filesz) {
        Some(end) if end <= image_len as u64 => {}
        _ => return Err(ElfError::SegmentOutOfFile { index }),
    }
    if align > 1 && !align.is_power_of_two() {
        return Err(ElfError::Misaligned { index });
    }
    if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
        return Err(ElfError::Misaligned { index });
    }
    let seg = Segment {
        vaddr,
        memsz,
        offset,
        filesz,
        writable: ph.flags.get() & PF_W != 0,
        executable: ph.flags.get() & PF_X != 0,
    };
    if memsz == 0 {
        return Ok(seg);
    }
    let end = vaddr
        .checked_add(memsz)
        .ok_or(ElfError::AddressOverflow { index })?;
    // The page-rounded end must be representable too (the overlap check and loaders use it).
    end.checked_next_multiple_of(PAGE_SIZE)
        .ok_or(ElfError::AddressOverflow { index })?;
    let last = end - 1;
    if !canonical_range(vaddr, last) {
        return Err(ElfError::NonCanonical { index });
    }
    if !(policy.allows)(vaddr, last) {
        return Err(ElfError::AddressNotAllowed {
            index,
            why: policy.refusal,
        });
    }
    Ok(seg)
}
