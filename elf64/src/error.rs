//! Why an ELF image was refused.

use crate::parse::MAX_SEGMENTS;

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
    /// The segment is not entirely canonical (for the whole image: it spans both halves; `index` is then the
    /// highest segment).
    NonCanonical { index: usize },
    /// The [`AddressPolicy`](crate::AddressPolicy) refuses the segment (for the whole image: the range from
    /// the lowest segment to the end of the highest; `index` is then the highest segment). `why` is the
    /// policy's [`refusal`](crate::AddressPolicy::refusal).
    AddressNotAllowed { index: usize, why: &'static str },
    /// `p_vaddr` and `p_offset` are not congruent modulo the page size, or `p_align` is not a power of two.
    Misaligned { index: usize },
    /// Two segments share a page.
    Overlap { first: usize, second: usize },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable(u64),
    /// The segments span more than the policy's [`max_span`](crate::AddressPolicy::max_span) (`limit`).
    TooLarge { span: u64, limit: u64 },
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
            ElfError::AddressNotAllowed { index, why } => write!(f, "segment {index}: {why}"),
            ElfError::Misaligned { index } => {
                write!(f, "segment {index}: vaddr/offset/align mismatch")
            }
            ElfError::Overlap { first, second } => {
                write!(f, "segments {first} and {second} share a page")
            }
            // "Gva(...)": the wording the hypervisor has always printed (a guest virtual address).
            ElfError::EntryNotExecutable(e) => {
                write!(f, "entry point Gva({e:#x}) not in an executable segment")
            }
            ElfError::TooLarge { span, limit } => {
                write!(f, "image spans {span:#x} bytes (limit {limit:#x})")
            }
        }
    }
}
