//! Writes the headers of small ELF64 x86_64 executables: input for tests of the parser and of the loaders
//! built on it (no allocation; the caller owns the buffer and puts the segment data in it).

use crate::format::{
    EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, EV_CURRENT, Ehdr, MAGIC, PHDR_SIZE,
    PT_LOAD, Phdr,
};
use zerocopy::IntoBytes;
use zerocopy::byteorder::little_endian::{U16, U32, U64};

/// A program header to write (`p_paddr` is written equal to `vaddr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl ProgramHeader {
    /// A page-aligned `PT_LOAD` with `flags` (`PF_*`) whose file data is at `offset`.
    pub const fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Self {
        ProgramHeader {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: 0x1000,
        }
    }
}

/// Bytes taken by the file header and `count` program headers as [`write_headers`] lays them out.
pub const fn headers_len(count: usize) -> usize {
    EHDR_SIZE + PHDR_SIZE * count
}

/// Writes, at the start of `out`, an `ET_EXEC` x86_64 file header with entry point `entry` whose program
/// header table (`phdrs`) follows it at offset 64. Returns the bytes written ([`headers_len`]), or `None`
/// (and leaves `out` untouched) if `out` is shorter than that or there are more than `u16::MAX` headers.
pub fn write_headers(out: &mut [u8], entry: u64, phdrs: &[ProgramHeader]) -> Option<usize> {
    let phnum = u16::try_from(phdrs.len()).ok()?;
    let len = headers_len(phdrs.len());
    let out = out.get_mut(..len)?;
    let mut ident = [0u8; 16];
    ident[..4].copy_from_slice(&MAGIC);
    ident[4] = ELFCLASS64;
    ident[5] = ELFDATA2LSB;
    ident[6] = EV_CURRENT;
    let eh = Ehdr {
        ident,
        e_type: U16::new(ET_EXEC),
        machine: U16::new(EM_X86_64),
        version: U32::new(u32::from(EV_CURRENT)),
        entry: U64::new(entry),
        phoff: U64::new(EHDR_SIZE as u64),
        shoff: U64::new(0),
        flags: U32::new(0),
        ehsize: U16::new(EHDR_SIZE as u16),
        phentsize: U16::new(PHDR_SIZE as u16),
        phnum: U16::new(phnum),
        shentsize: U16::new(0),
        shnum: U16::new(0),
        shstrndx: U16::new(0),
    };
    let (head, mut table) = out.split_at_mut(EHDR_SIZE);
    head.copy_from_slice(eh.as_bytes());
    for p in phdrs {
        let ph = Phdr {
            p_type: U32::new(p.p_type),
            flags: U32::new(p.flags),
            offset: U64::new(p.offset),
            vaddr: U64::new(p.vaddr),
            paddr: U64::new(p.vaddr),
            filesz: U64::new(p.filesz),
            memsz: U64::new(p.memsz),
            align: U64::new(p.align),
        };
        let (slot, rest) = table.split_at_mut(PHDR_SIZE);
        slot.copy_from_slice(ph.as_bytes());
        table = rest;
    }
    Some(len)
}
