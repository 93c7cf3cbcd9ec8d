//! The on-disk ELF64 structures and constants this crate reads (and, for tests, writes).

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_flags` bit: executable.
pub const PF_X: u32 = 1;
/// `p_flags` bit: writable.
pub const PF_W: u32 = 2;
/// `p_flags` bit: readable (every loaded segment is readable; the parser does not look at this bit).
pub const PF_R: u32 = 4;

pub(crate) const MAGIC: [u8; 4] = *b"\x7fELF";
pub(crate) const ELFCLASS64: u8 = 2;
pub(crate) const ELFDATA2LSB: u8 = 1;
pub(crate) const EV_CURRENT: u8 = 1;
pub(crate) const ET_EXEC: u16 = 2;
pub(crate) const EM_X86_64: u16 = 62;
pub(crate) const EHDR_SIZE: usize = 64;
pub(crate) const PHDR_SIZE: usize = 56;

/// The ELF64 file header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Ehdr {
    pub ident: [u8; 16],
    pub e_type: U16,
    pub machine: U16,
    pub version: U32,
    pub entry: U64,
    pub phoff: U64,
    pub shoff: U64,
    pub flags: U32,
    pub ehsize: U16,
    pub phentsize: U16,
    pub phnum: U16,
    pub shentsize: U16,
    pub shnum: U16,
    pub shstrndx: U16,
}

/// An ELF64 program header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Phdr {
    pub p_type: U32,
    pub flags: U32,
    pub offset: U64,
    pub vaddr: U64,
    pub paddr: U64,
    pub filesz: U64,
    pub memsz: U64,
    pub align: U64,
}

static_assertions::const_assert_eq!(core::mem::size_of::<Ehdr>(), EHDR_SIZE);
static_assertions::const_assert_eq!(core::mem::size_of::<Phdr>(), PHDR_SIZE);
