//! Validation and description of an ELF64 x86_64 guest image (hostile input: every field is checked).
//!
//! Only the ELF header and the program headers are looked at; the result lists the `PT_LOAD` segments, each
//! proven to lie inside the file and inside the guest-allowed part of the address space, without overlaps.

use abi::layout::{RESERVED_VA_END, RESERVED_VA_START, guest_va_allowed};
use abi::types::{Gva, PAGE_SIZE};
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// Most `PT_LOAD` segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// Largest accepted span from the lowest segment address to the highest segment end.
pub const MAX_SPAN: u64 = 1 << 30;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// The ELF64 file header.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Ehdr {
    ident: [u8; 16],
    e_type: U16,
    machine: U16,
    version: U32,
    entry: U64,
    phoff: U64,
    shoff: U64,
    flags: U32,
    ehsize: U16,
    phentsize: U16,
    phnum: U16,
    shentsize: U16,
    shnum: U16,
    shstrndx: U16,
}

/// An ELF64 program header.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Phdr {
    p_type: U32,
    flags: U32,
    offset: U64,
    vaddr: U64,
    paddr: U64,
    filesz: U64,
    memsz: U64,
    align: U64,
}

static_assertions::const_assert_eq!(core::mem::size_of::<Ehdr>(), EHDR_SIZE);
static_assertions::const_assert_eq!(core::mem::size_of::<Phdr>(), PHDR_SIZE);

/// One validated `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: Gva,
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
    /// One past the last byte (cannot overflow: checked by [`parse`]).
    pub fn end(&self) -> Gva {
        Gva(self.vaddr.0 + self.memsz)
    }
}

/// A validated guest image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    /// Entry point (inside an executable segment).
    pub entry: Gva,
    /// The non-empty `PT_LOAD` segments, sorted by address.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// Lowest segment address.
    pub lowest: Gva,
    /// Highest segment end (exclusive).
    pub highest_end: Gva,
}

/// Why an image was refused. `index` is the program-header index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    TooShort,
    /// No `\x7fELF` magic.
    BadMagic,
    /// Not `ELFCLASS64`.
    NotElf64,
    /// Not `ELFDATA2LSB`.
    NotLittleEndian,
    /// `EI_VERSION` or `e_version` is not 1.
    BadVersion,
    /// `e_type` is not `ET_EXEC`.
    NotExecutable(u16),
    /// `e_machine` is not `EM_X86_64`.
    WrongMachine(u16),
    /// `e_phentsize` is not 56.
    BadPhentsize(u16),
    /// The program-header table does not fit in the file.
    PhdrsOutOfFile,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// No (non-empty) `PT_LOAD` segment.
    NoLoadSegments,
    /// `p_filesz > p_memsz`.
    FileszExceedsMemsz { index: usize },
    /// `[p_offset, p_offset + p_filesz)` is not inside the file.
    SegmentOutOfFile { index: usize },
    /// `p_vaddr + p_memsz` (rounded up to a page) overflows.
    AddressOverflow { index: usize },
    /// The segment is not entirely canonical.
    NonCanonical { index: usize },
    /// The segment touches the hypervisor's reserved range.
    ReservedRange { index: usize },
    /// `p_vaddr` and `p_offset` are not congruent modulo the page size, or `p_align` is not a power of two.
    Misaligned { index: usize },
    /// Two segments share a page.
    Overlap { first: usize, second: usize },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable(Gva),
    /// The segments span more than [`MAX_SPAN`] bytes.
    TooLarge { span: u64 },
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::TooShort => f.write_str("image shorter than an ELF header"),
            ElfError::BadMagic => f.write_str("not an ELF file (bad magic)"),
            ElfError::NotElf64 => f.write_str("not a 64-bit ELF file"),
            ElfError::NotLittleEndian => f.write_str("not a little-endian ELF file"),
            ElfError::BadVersion => f.write_str("unsupported ELF version"),
            ElfError::NotExecutable(t) => write!(f, "ELF type {t} is not ET_EXEC"),
            ElfError::WrongMachine(m) => write!(f, "ELF machine {m} is not x86_64"),
            ElfError::BadPhentsize(s) => write!(f, "program header size {s}, expected 56"),
            ElfError::PhdrsOutOfFile => f.write_str("program headers outside the file"),
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::NoLoadSegments => f.write_str("no loadable segment"),
            ElfError::FileszExceedsMemsz { index } => write!(f, "segment {index}: filesz > memsz"),
            ElfError::SegmentOutOfFile { index } => {
                write!(f, "segment {index}: file data outside the image")
            }
            ElfError::AddressOverflow { index } => {
                write!(f, "segment {index}: address range overflows")
            }
            ElfError::NonCanonical { index } => write!(f, "segment {index}: non-canonical address"),
            ElfError::ReservedRange { index } => {
                write!(
                    f,
                    "segment {index}: overlaps the hypervisor's reserved range"
                )
            }
            ElfError::Misaligned { index } => {
                write!(f, "segment {index}: vaddr/offset/align mismatch")
            }
            ElfError::Overlap { first, second } => {
                write!(f, "segments {first} and {second} share a page")
            }
            ElfError::EntryNotExecutable(e) => {
                write!(f, "entry point {e:?} not in an executable segment")
            }
            ElfError::TooLarge { span } => {
                write!(f, "image spans {span:#x} bytes (limit {MAX_SPAN:#x})")
            }
        }
    }
}

/// Validates `image` and describes its loadable segments.
pub fn parse(image: &[u8]) -> Result<ElfImage, ElfError> {
    let (eh, _) = Ehdr::ref_from_prefix(image).map_err(|_| ElfError::TooShort)?;
    if eh.ident[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    if eh.ident[4] != 2 {
        return Err(ElfError::NotElf64);
    }
    if eh.ident[5] != 1 {
        return Err(ElfError::NotLittleEndian);
    }
    if eh.ident[6] != 1 || eh.version.get() != 1 {
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
        let seg = check_segment(index, ph, image.len())?;
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
        let a_end_page = a.end().0.div_ceil(PAGE_SIZE);
        if b.vaddr.0 / PAGE_SIZE < a_end_page {
            return Err(ElfError::Overlap {
                first: ia.min(ib),
                second: ia.max(ib),
            });
        }
    }

    let lowest = segs[0].1.vaddr;
    let highest_end = segs.iter().map(|(_, s)| s.end()).max().unwrap_or(lowest);
    // Both ends are in the same half (see check_segment and the sort), so this does not underflow.
    let span = highest_end.0 - lowest.0;
    if span > MAX_SPAN {
        return Err(ElfError::TooLarge { span });
    }
    // A range from the lower half to the upper half would include the reserved range.
    if lowest.0 < RESERVED_VA_START && highest_end.0 > RESERVED_VA_START {
        return Err(ElfError::ReservedRange {
            index: segs[segs.len() - 1].0,
        });
    }

    let entry = Gva(eh.entry.get());
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

fn check_segment(index: usize, ph: &Phdr, image_len: usize) -> Result<Segment, ElfError> {
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
        vaddr: Gva(vaddr),
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
    // The page-rounded end must be representable too (the overlap check and the builder use it).
    end.checked_next_multiple_of(PAGE_SIZE)
        .ok_or(ElfError::AddressOverflow { index })?;
    let (first, last) = (Gva(vaddr), Gva(end - 1));
    if !first.is_canonical() || !last.is_canonical() || (first.0 >> 63) != (last.0 >> 63) {
        return Err(ElfError::NonCanonical { index });
    }
    if !guest_va_allowed(first.0)
        || !guest_va_allowed(last.0)
        || (first.0 < RESERVED_VA_END && last.0 >= RESERVED_VA_START)
    {
        return Err(ElfError::ReservedRange { index });
    }
    Ok(seg)
}

#[cfg(test)]
pub(crate) mod testelf {
    //! Assembles small ELF images in memory for tests.

    /// A program header to emit: (type, flags, offset, vaddr, filesz, memsz, align).
    #[derive(Clone, Copy)]
    pub struct Ph {
        pub p_type: u32,
        pub flags: u32,
        pub offset: u64,
        pub vaddr: u64,
        pub filesz: u64,
        pub memsz: u64,
        pub align: u64,
    }

    /// A `PT_LOAD` with `flags` whose file data is at `offset`.
    pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: 1,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    /// Header + phdrs at offset 64, then the image is padded to `len` bytes and `data` pieces are written at
    /// their offsets.
    pub fn build(entry: u64, phdrs: &[Ph], len: usize, data: &[(usize, &[u8])]) -> Vec<u8> {
        let mut v = vec![0u8; len.max(64 + 56 * phdrs.len())];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2;
        v[5] = 1;
        v[6] = 1;
        v[16..18].copy_from_slice(&2u16.to_le_bytes());
        v[18..20].copy_from_slice(&62u16.to_le_bytes());
        v[20..24].copy_from_slice(&1u32.to_le_bytes());
        v[24..32].copy_from_slice(&entry.to_le_bytes());
        v[32..40].copy_from_slice(&64u64.to_le_bytes());
        v[52..54].copy_from_slice(&64u16.to_le_bytes());
        v[54..56].copy_from_slice(&56u16.to_le_bytes());
        v[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, p) in phdrs.iter().enumerate() {
            let o = 64 + 56 * i;
            v[o..o + 4].copy_from_slice(&p.p_type.to_le_bytes());
            v[o + 4..o + 8].copy_from_slice(&p.flags.to_le_bytes());
            for (j, x) in [p.offset, p.vaddr, p.vaddr, p.filesz, p.memsz, p.align]
                .iter()
                .enumerate()
            {
                v[o + 8 + 8 * j..o + 16 + 8 * j].copy_from_slice(&x.to_le_bytes());
            }
        }
        for (off, bytes) in data {
            v[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{Ph, build, load};
    use super::*;

    const BASE: u64 = 0xffff_ffff_8000_0000;
    const RX: u32 = 5;
    const RW: u32 = 6;

    fn good_phdrs() -> Vec<Ph> {
        vec![
            load(RX, 0x1000, BASE, 0x1800, 0x1800),
            Ph {
                p_type: 4,
                flags: 4,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
                align: 4,
            }, // PT_NOTE: ignored
            load(RW, 0x2800, BASE + 0x3800, 0x100, 0x5000),
        ]
    }

    fn good() -> Vec<u8> {
        build(BASE + 0x10, &good_phdrs(), 0x3000, &[(0x1000, b"code")])
    }

    fn with_phdrs(phdrs: &[Ph], entry: u64) -> Result<ElfImage, ElfError> {
        parse(&build(entry, phdrs, 0x3000, &[]))
    }

    #[test]
    fn valid_multi_segment() {
        let img = parse(&good()).unwrap();
        assert_eq!(img.entry, Gva(BASE + 0x10));
        assert_eq!(img.segments.len(), 2);
        assert_eq!(
            img.segments[0],
            Segment {
                vaddr: Gva(BASE),
                memsz: 0x1800,
                offset: 0x1000,
                filesz: 0x1800,
                writable: false,
                executable: true
            }
        );
        assert_eq!(img.segments[1].vaddr, Gva(BASE + 0x3800));
        assert!(img.segments[1].writable && !img.segments[1].executable);
        assert_eq!(img.lowest, Gva(BASE));
        assert_eq!(img.highest_end, Gva(BASE + 0x8800));
        assert_eq!(img.segments[1].end(), Gva(BASE + 0x8800));
    }

    #[test]
    fn segments_sorted_and_empty_ones_skipped() {
        let phdrs = [
            load(RW, 0x2000, 0x40_2000, 0x10, 0x10),
            load(RX, 0, 0x40_0000, 0x100, 0x100),
            load(RW, 0, 0x7000_0000, 0, 0),
        ];
        let img = with_phdrs(&phdrs, 0x40_0000).unwrap();
        assert_eq!(img.segments.len(), 2);
        assert_eq!(img.segments[0].vaddr, Gva(0x40_0000));
        assert_eq!(img.lowest, Gva(0x40_0000));
        assert_eq!(img.highest_end, Gva(0x40_2010));
    }

    #[test]
    fn header_errors() {
        assert_eq!(parse(&[]), Err(ElfError::TooShort));
        assert_eq!(parse(&good()[..63]), Err(ElfError::TooShort));
        let cases: [(usize, &[u8], ElfError); 9] = [
            (0, b"\x7fELG", ElfError::BadMagic),
            (4, &[1], ElfError::NotElf64),
            (5, &[2], ElfError::NotLittleEndian),
            (6, &[0], ElfError::BadVersion),
            (20, &[2, 0, 0, 0], ElfError::BadVersion),
            (16, &[3, 0], ElfError::NotExecutable(3)),
            (18, &[3, 0], ElfError::WrongMachine(3)),
            (54, &[64, 0], ElfError::BadPhentsize(64)),
            (56, &[0, 0], ElfError::NoLoadSegments),
        ];
        for (off, bytes, err) in cases {
            let mut v = good();
            v[off..off + bytes.len()].copy_from_slice(bytes);
            assert_eq!(parse(&v), Err(err), "patch at {off}");
        }
    }

    #[test]
    fn phdr_table_bounds() {
        let mut v = good();
        v[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&v), Err(ElfError::PhdrsOutOfFile));
        let mut v = good();
        v[32..40].copy_from_slice(&(0x3000u64 - 56 * 3 + 1).to_le_bytes());
        assert_eq!(parse(&v), Err(ElfError::PhdrsOutOfFile));
        let mut v = good();
        v[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(parse(&v), Err(ElfError::PhdrsOutOfFile));
        // Table ending exactly at the end of the file is fine.
        let img = build(
            0x40_0000,
            &[load(RX, 0, 0x40_0000, 0x78, 0x78)],
            64 + 56,
            &[],
        );
        assert!(parse(&img).is_ok());
    }

    #[test]
    fn too_many_segments() {
        let phdrs: Vec<Ph> = (0..17)
            .map(|i| load(RX, 0, 0x40_0000 + i * 0x1000, 0x10, 0x10))
            .collect();
        assert_eq!(
            with_phdrs(&phdrs, 0x40_0000),
            Err(ElfError::TooManySegments)
        );
        assert!(with_phdrs(&phdrs[..16], 0x40_0000).is_ok());
    }

    #[test]
    fn segment_errors() {
        let e = |p: Ph| with_phdrs(&[load(RX, 0, 0x40_0000, 0x10, 0x10), p], 0x40_0000);
        assert_eq!(
            e(load(RW, 0, 0x50_0000, 0x20, 0x10)),
            Err(ElfError::FileszExceedsMemsz { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0x2f00, 0x50_0f00, 0x101, 0x200)),
            Err(ElfError::SegmentOutOfFile { index: 1 })
        );
        assert_eq!(
            e(load(RW, u64::MAX, 0x50_0fff, 2, 2)),
            Err(ElfError::SegmentOutOfFile { index: 1 })
        );
        assert!(e(load(RW, 0x2f00, 0x50_0f00, 0x100, 0x200)).is_ok());
        assert_eq!(
            e(load(RW, 0, 0xffff_ffff_ffff_f000, 0, 0x2000)),
            Err(ElfError::AddressOverflow { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0, 0xffff_ffff_ffff_f000, 0, 0x1000)),
            Err(ElfError::AddressOverflow { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0, 0x0000_7fff_ffff_f000, 0, 0x2000)),
            Err(ElfError::NonCanonical { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0, 0x0000_8000_0000_0000, 0, 0x1000)),
            Err(ElfError::NonCanonical { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0, RESERVED_VA_START, 0, 0x1000)),
            Err(ElfError::ReservedRange { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0, RESERVED_VA_END - 0x1000, 0, 0x2000)),
            Err(ElfError::ReservedRange { index: 1 })
        );
        assert_eq!(
            e(load(RW, 0x10, 0x50_0000, 0x10, 0x10)),
            Err(ElfError::Misaligned { index: 1 })
        );
        let mut p = load(RW, 0, 0x50_0000, 0x10, 0x10);
        p.align = 0x3000;
        assert_eq!(e(p), Err(ElfError::Misaligned { index: 1 }));
        p.align = 0;
        assert!(e(p).is_ok());
        // Low half to high half: each end canonical.
        assert_eq!(
            e(load(RW, 0, 0x50_0000, 0, 0xffff_ffff_8000_0000 - 0x50_0000)),
            Err(ElfError::NonCanonical { index: 1 })
        );
    }

    #[test]
    fn overlaps_at_page_granularity() {
        let a = load(RX, 0, 0x40_0000, 0x10, 0x10);
        // Same page, disjoint bytes.
        let r = with_phdrs(&[load(RW, 0x100, 0x40_0100, 0x10, 0x10), a], 0x40_0000);
        assert_eq!(
            r,
            Err(ElfError::Overlap {
                first: 0,
                second: 1
            })
        );
        // Adjacent pages: fine.
        assert!(with_phdrs(&[a, load(RW, 0, 0x40_1000, 0x10, 0x10)], 0x40_0000).is_ok());
        // Containment.
        let r = with_phdrs(
            &[
                load(RX, 0, 0x3f_0000, 0x10, 0x20000),
                load(RW, 0, 0x40_1000, 0x10, 0x10),
            ],
            0x3f_0000,
        );
        assert_eq!(
            r,
            Err(ElfError::Overlap {
                first: 0,
                second: 1
            })
        );
    }

    #[test]
    fn entry_must_be_executable() {
        let phdrs = [
            load(RX, 0, 0x40_0000, 0x10, 0x10),
            load(RW, 0, 0x40_1000, 0x10, 0x10),
        ];
        assert_eq!(
            with_phdrs(&phdrs, 0x40_1000),
            Err(ElfError::EntryNotExecutable(Gva(0x40_1000)))
        );
        assert_eq!(
            with_phdrs(&phdrs, 0x40_0010),
            Err(ElfError::EntryNotExecutable(Gva(0x40_0010)))
        );
        assert_eq!(
            with_phdrs(&phdrs, 0),
            Err(ElfError::EntryNotExecutable(Gva(0)))
        );
        assert!(with_phdrs(&phdrs, 0x40_000f).is_ok());
    }

    #[test]
    fn span_limit() {
        let far = |gap: u64| {
            with_phdrs(
                &[
                    load(RX, 0, 0x40_0000, 0x10, 0x10),
                    load(RW, 0, 0x40_0000 + gap, 0, 0x1000),
                ],
                0x40_0000,
            )
        };
        assert!(far(MAX_SPAN - 0x1000).is_ok());
        assert_eq!(
            far(MAX_SPAN),
            Err(ElfError::TooLarge {
                span: MAX_SPAN + 0x1000
            })
        );
        let huge = with_phdrs(&[load(RX, 0, 0x40_0000, 0x10, 1 << 40)], 0x40_0000);
        assert_eq!(huge, Err(ElfError::TooLarge { span: 1 << 40 }));
    }

    #[test]
    fn display_is_informative() {
        assert!(
            ElfError::Overlap {
                first: 1,
                second: 2
            }
            .to_string()
            .contains("1 and 2")
        );
        assert!(ElfError::WrongMachine(3).to_string().contains('3'));
        assert!(!ElfError::TooShort.to_string().is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        // Random headers on top of a valid one must only ever produce errors or a valid result.
        let base = good();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = base.clone();
            let off = (x % (64 + 56 * 3)) as usize;
            v[off] = (x >> 32) as u8;
            let len = if x & (1 << 60) != 0 {
                (x >> 40) as usize % v.len()
            } else {
                v.len()
            };
            if let Ok(img) = parse(&v[..len]) {
                for s in &img.segments {
                    assert!(s.offset + s.filesz <= len as u64 && s.filesz <= s.memsz);
                }
            }
        }
    }
}
