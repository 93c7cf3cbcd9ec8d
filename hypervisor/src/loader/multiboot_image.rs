//! A multiboot (v1) kernel image for an `emulate` or `hvm` domain: the header in the first 8 KiB, what
//! goes where in guest-physical memory (the a.out-kludge address fields, or an ELF32/ELF64 file's
//! `PT_LOAD` segments at their physical addresses), and the multiboot information structure the kernel is
//! entered with (EAX = 0x2BADB002, EBX = its address, as QEMU's loader does). Pure: the image is hostile
//! input, every field is checked, and guest memory is reached through [`GuestPhysWrite`].
//!
//! Supported header flags: bit 0 (page-align modules: we load none), bit 1 (memory information: always
//! given), bit 2 (video mode: ignored, we have no framebuffer), bit 16 (address fields). Any other bit of
//! the low "required" half is refused; other bits of the high half are ignored as the specification says.
//!
//! Guest-physical layout (CONTRACTS section 3): RAM is 0..N; the image must lie in 1 MiB..N (below is
//! where the information structure, the memory map and the command line go, and real-mode leftovers).

use core::fmt;

/// The header's magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// The magic the kernel finds in EAX.
pub const BOOT_MAGIC: u32 = 0x2bad_b002;
/// The header must lie (4-aligned) within this many bytes of the image's start.
pub const HEADER_SEARCH: usize = 8192;
/// Header flag: align modules on pages.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: memory information wanted.
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Header flag: video mode wanted.
pub const FLAG_VIDEO: u32 = 1 << 2;
/// Header flag: the a.out-kludge address fields are valid.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Required-half flags we honour (or may ignore).
const SUPPORTED_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO;
/// Images are loaded at or above this guest-physical address.
pub const LOW_AREA_END: u32 = 0x10_0000;
/// Where the hypervisor puts the information structure (then the memory map and the command line).
pub const INFO_ADDR: u32 = 0x9000;
/// The information structure and command line end below this address.
pub const INFO_AREA_END: u32 = 0x9_f000;
/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// Information structure flag: `mem_lower`/`mem_upper` valid.
pub const INFO_MEM: u32 = 1 << 0;
/// Information structure flag: `cmdline` valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Information structure flag: `mmap_length`/`mmap_addr` valid.
pub const INFO_MMAP: u32 = 1 << 6;
/// Bytes of the information structure as written (through the APM table field; zero beyond the flags).
pub const INFO_SIZE: u32 = 88;
/// Bytes of one memory-map entry (with its leading size word).
pub const MMAP_ENTRY_SIZE: u32 = 24;
/// KiB of conventional memory reported (0..0x9fc00).
pub const MEM_LOWER_KIB: u32 = 639;

/// Why an image or a load was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// No 4-aligned header magic in the first 8 KiB.
    NoHeader,
    /// magic + flags + checksum is not 0.
    BadChecksum,
    /// A required flag bit (low 16) we do not support.
    UnsupportedFlags(u32),
    /// The file ends before the header, the loaded part or an ELF structure it describes.
    Truncated,
    /// Inconsistent a.out-kludge addresses (header before the load address, load end before load
    /// address, bss end before load end, or beyond 4 GiB).
    BadAddresses,
    /// The entry point is not inside the loaded image.
    EntryOutside(u64),
    /// Not an ELF file we load (bit 16 clear): bad magic, class, byte order, type or machine.
    NotElf,
    /// An ELF segment is malformed (file size above memory size, physical range beyond 4 GiB).
    BadSegment,
    /// Two segments share guest-physical bytes.
    OverlappingSegments,
    /// More than [`MAX_SEGMENTS`] loadable segments, or none.
    SegmentCount,
    /// The image reaches past the end of guest memory (`end` is its first byte past).
    BeyondMemory { end: u64 },
    /// The image reaches below [`LOW_AREA_END`], where the information structure goes.
    OverlapsLowArea { start: u32 },
    /// The information structure does not fit below [`INFO_AREA_END`], is misaligned, or the memory is
    /// smaller than 1 MiB.
    BadInfoPlacement,
    /// Writing guest memory failed (an address outside the domain's memory).
    GuestWrite { gpa: u64 },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::NoHeader => write!(f, "no multiboot header in the first 8 KiB"),
            LoadError::BadChecksum => write!(f, "multiboot header checksum is wrong"),
            LoadError::UnsupportedFlags(x) => write!(f, "unsupported required flags {x:#x}"),
            LoadError::Truncated => write!(f, "image truncated"),
            LoadError::BadAddresses => write!(f, "inconsistent multiboot address fields"),
            LoadError::EntryOutside(e) => write!(f, "entry point {e:#x} outside the image"),
            LoadError::NotElf => write!(f, "no address fields and not a loadable ELF file"),
            LoadError::BadSegment => write!(f, "malformed ELF segment"),
            LoadError::OverlappingSegments => write!(f, "segments overlap"),
            LoadError::SegmentCount => write!(f, "no loadable segment, or too many"),
            LoadError::BeyondMemory { end } => {
                write!(f, "image ends at {end:#x}, beyond guest memory")
            }
            LoadError::OverlapsLowArea { start } => {
                write!(f, "image starts at {start:#x}, below 1 MiB")
            }
            LoadError::BadInfoPlacement => write!(f, "multiboot information does not fit"),
            LoadError::GuestWrite { gpa } => write!(f, "guest-physical write at {gpa:#x} failed"),
        }
    }
}

/// Writes into a domain's guest-physical memory.
pub trait GuestPhysWrite {
    /// Write `bytes` at guest-physical `gpa` (all of them, or refuse).
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadError>;
}

/// One piece of the image in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment<'a> {
    /// Guest-physical address of the first byte.
    pub phys: u32,
    /// The bytes from the file.
    pub data: &'a [u8],
    /// Bytes in memory (`data.len()` or more; the rest is zero-filled). `phys + mem_size` is at most
    /// `u32::MAX`.
    pub mem_size: u32,
}

impl LoadSegment<'_> {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.phys as u64 + self.mem_size as u64
    }
}

/// A validated multiboot image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultibootImage<'a> {
    /// The 32-bit entry (guest-physical, paging off).
    pub entry32: u32,
    /// The lowest guest-physical address of the image.
    pub load_phys: u32,
    /// What to copy where, sorted by address, not overlapping; zero fill included in `mem_size`.
    pub segments: heapless::Vec<LoadSegment<'a>, MAX_SEGMENTS>,
    /// The a.out kludge's bss (`load_end_addr..bss_end_addr`, already inside the segment's `mem_size`);
    /// `(0, 0)` for an ELF-loaded image, whose zero fill is per segment.
    pub bss: (u32, u32),
    /// The link address of the symbol `_start64` if the file is an ELF64 file with a symbol table: the
    /// documented 64-bit entry of ring1pv's kernel (see docs/ARCHITECTURE.md, "The native backend").
    pub entry64: Option<u64>,
    /// The header's flags.
    pub flags: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The offset of the header: the first 4-aligned magic in the first 8 KiB whose 12 bytes are in the file.
fn find_header(image: &[u8]) -> Option<usize> {
    let limit = image.len().min(HEADER_SEARCH);
    (0..limit)
        .step_by(4)
        .find(|&at| u32_at(image, at) == Some(HEADER_MAGIC) && at + 12 <= image.len())
}

/// Validates `image` and describes where it goes.
pub fn parse(image: &[u8]) -> Result<MultibootImage<'_>, LoadError> {
    let at = find_header(image).ok_or(LoadError::NoHeader)?;
    let word = |i: usize| u32_at(image, at + 4 * i).ok_or(LoadError::Truncated);
    let flags = word(1)?;
    let checksum = word(2)?;
    if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
        return Err(LoadError::BadChecksum);
    }
    let unsupported = flags & 0xffff & !SUPPORTED_REQUIRED;
    if unsupported != 0 {
        return Err(LoadError::UnsupportedFlags(unsupported));
    }
    let entry64 = elf64_symbol(image, b"_start64");
    if flags & FLAG_AOUT_KLUDGE != 0 {
        let f = [word(3)?, word(4)?, word(5)?, word(6)?, word(7)?];
        aout(image, at, flags, f, entry64)
    } else {
        elf(image, flags, entry64)
    }
}

/// The image described by the address fields `[header, load, load_end, bss_end, entry]`.
fn aout<'a>(
    image: &'a [u8],
    at: usize,
    flags: u32,
    [header_addr, load_addr, load_end, bss_end, entry]: [u32; 5],
    entry64: Option<u64>,
) -> Result<MultibootImage<'a>, LoadError> {
    let before_header = header_addr
        .checked_sub(load_addr)
        .ok_or(LoadError::BadAddresses)?;
    let offset = at
        .checked_sub(before_header as usize)
        .ok_or(LoadError::BadAddresses)?;
    // load_end 0: the rest of the file.
    let file_len = if load_end == 0 {
        u32::try_from(image.len() - offset).map_err(|_| LoadError::BadAddresses)?
    } else {
        load_end
            .checked_sub(load_addr)
            .ok_or(LoadError::BadAddresses)?
    };
    let data_end = offset
        .checked_add(file_len as usize)
        .ok_or(LoadError::Truncated)?;
    let data = image.get(offset..data_end).ok_or(LoadError::Truncated)?;
    let load_end = load_addr
        .checked_add(file_len)
        .ok_or(LoadError::BadAddresses)?;
    let bss_end = if bss_end == 0 { load_end } else { bss_end };
    if bss_end < load_end {
        return Err(LoadError::BadAddresses);
    }
    if data.is_empty() && bss_end == load_end {
        return Err(LoadError::SegmentCount);
    }
    if !(load_addr <= entry && entry < load_end) {
        return Err(LoadError::EntryOutside(u64::from(entry)));
    }
    let mut segments = heapless::Vec::new();
    let seg = LoadSegment {
        phys: load_addr,
        data,
        mem_size: bss_end - load_addr,
    };
    segments.push(seg).map_err(|_| LoadError::SegmentCount)?;
    Ok(MultibootImage {
        entry32: entry,
        load_phys: load_addr,
        segments,
        bss: (load_end, bss_end),
        entry64,
        flags,
    })
}

/// ELF file layout: (class 64-bit, e_entry, phoff, phentsize, phnum).
fn elf_header(image: &[u8]) -> Option<(bool, u64, u64, u16, u16)> {
    if image.get(..4)? != b"\x7fELF" || *image.get(5)? != 1 || *image.get(6)? != 1 {
        return None;
    }
    let class64 = match *image.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (ty, machine) = (u16_at(image, 16)?, u16_at(image, 18)?);
    let want_machine = if class64 { 62 } else { 3 };
    if ty != 2 || machine != want_machine {
        return None;
    }
    if class64 {
        Some((
            true,
            u64_at(image, 24)?,
            u64_at(image, 32)?,
            u16_at(image, 54)?,
            u16_at(image, 56)?,
        ))
    } else {
        Some((
            false,
            u64::from(u32_at(image, 24)?),
            u64::from(u32_at(image, 28)?),
            u16_at(image, 42)?,
            u16_at(image, 44)?,
        ))
    }
}

/// A program header: (type, offset, vaddr, paddr, filesz, memsz).
fn phdr(image: &[u8], class64: bool, at: usize) -> Option<(u32, u64, u64, u64, u64, u64)> {
    let size = if class64 { 56 } else { 32 };
    let h = image.get(at..at.checked_add(size)?)?;
    if class64 {
        Some((
            u32_at(h, 0)?,
            u64_at(h, 8)?,
            u64_at(h, 16)?,
            u64_at(h, 24)?,
            u64_at(h, 32)?,
            u64_at(h, 40)?,
        ))
    } else {
        let w = |i: usize| u32_at(h, 4 * i).map(u64::from);
        Some((u32_at(h, 0)?, w(1)?, w(2)?, w(3)?, w(4)?, w(5)?))
    }
}

/// The image described by an ELF file's `PT_LOAD` segments at their physical addresses.
fn elf(image: &[u8], flags: u32, entry64: Option<u64>) -> Result<MultibootImage<'_>, LoadError> {
    if image.len() < 52 && image.get(..4) == Some(b"\x7fELF") {
        return Err(LoadError::Truncated);
    }
    let (class64, e_entry, phoff, phentsize, phnum) = elf_header(image).ok_or(LoadError::NotElf)?;
    let want = if class64 { 56 } else { 32 };
    if phentsize != want {
        return Err(LoadError::NotElf);
    }
    let mut segments: heapless::Vec<LoadSegment<'_>, MAX_SEGMENTS> = heapless::Vec::new();
    let mut entry32 = None;
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(want))
            .and_then(|a| usize::try_from(a).ok())
            .ok_or(LoadError::Truncated)?;
        let (ty, offset, vaddr, paddr, filesz, memsz) =
            phdr(image, class64, at).ok_or(LoadError::Truncated)?;
        if ty != 1 || memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(LoadError::BadSegment);
        }
        let end = paddr.checked_add(memsz).ok_or(LoadError::BadSegment)?;
        if end > u64::from(u32::MAX) {
            return Err(LoadError::BadSegment);
        }
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or(LoadError::Truncated)?;
        // The entry, given as a virtual address, translated through the segment that holds it.
        if entry32.is_none() && vaddr <= e_entry && e_entry - vaddr < memsz {
            entry32 = Some(paddr + (e_entry - vaddr));
        }
        let seg = LoadSegment {
            phys: paddr as u32,
            data,
            mem_size: memsz as u32,
        };
        segments.push(seg).map_err(|_| LoadError::SegmentCount)?;
    }
    if segments.is_empty() {
        return Err(LoadError::SegmentCount);
    }
    segments.sort_unstable_by_key(|s| s.phys);
    if segments
        .windows(2)
        .any(|w| u64::from(w[1].phys) < w[0].end())
    {
        return Err(LoadError::OverlappingSegments);
    }
    let entry32 = entry32.ok_or(LoadError::EntryOutside(e_entry))?;
    let entry32 = u32::try_from(entry32).map_err(|_| LoadError::EntryOutside(e_entry))?;
    Ok(MultibootImage {
        entry32,
        load_phys: segments[0].phys,
        segments,
        bss: (0, 0),
        entry64,
        flags,
    })
}

/// The value of symbol `name` in an ELF64 file's `.symtab`, if there is one.
pub fn elf64_symbol(image: &[u8], name: &[u8]) -> Option<u64> {
    if image.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = usize::try_from(u64_at(image, 40)?).ok()?;
    let shentsize = usize::from(u16_at(image, 58)?);
    let shnum = usize::from(u16_at(image, 60)?);
    if shentsize != 64 {
        return None;
    }
    let section = |i: usize| -> Option<(u32, usize, usize, u32)> {
        let at = shoff.checked_add(i.checked_mul(64)?)?;
        let h = image.get(at..at.checked_add(64)?)?;
        Some((
            u32_at(h, 4)?,
            usize::try_from(u64_at(h, 24)?).ok()?,
            usize::try_from(u64_at(h, 32)?).ok()?,
            u32_at(h, 40)?,
        ))
    };
    for i in 0..shnum {
        let (ty, off, size, link) = section(i)?;
        if ty != 2 {
            continue; // SHT_SYMTAB only.
        }
        let (_, str_off, str_size, _) = section(usize::try_from(link).ok()?)?;
        let strtab = image.get(str_off..str_off.checked_add(str_size)?)?;
        let symtab = image.get(off..off.checked_add(size)?)?;
        for sym in symtab.chunks_exact(24) {
            let name_at = usize::try_from(u32_at(sym, 0)?).ok()?;
            let tail = strtab.get(name_at..)?;
            let end = tail.iter().position(|&c| c == 0)?;
            if &tail[..end] == name {
                return u64_at(sym, 8);
            }
        }
    }
    None
}

impl MultibootImage<'_> {
    /// One past the image's last byte.
    pub fn end(&self) -> u64 {
        self.segments
            .iter()
            .map(LoadSegment::end)
            .max()
            .unwrap_or(0)
    }

    /// Refuse an image that does not lie within [`LOW_AREA_END`]..`mem_bytes`.
    pub fn check_placement(&self, mem_bytes: u64) -> Result<(), LoadError> {
        if self.load_phys < LOW_AREA_END {
            return Err(LoadError::OverlapsLowArea {
                start: self.load_phys,
            });
        }
        let end = self.end();
        if end > mem_bytes {
            return Err(LoadError::BeyondMemory { end });
        }
        Ok(())
    }

    /// Copy the segments into guest memory, zero-filling the rest of each.
    pub fn load(&self, mem: &mut dyn GuestPhysWrite) -> Result<(), LoadError> {
        const ZEROS: [u8; 512] = [0; 512];
        for s in &self.segments {
            let phys = u64::from(s.phys);
            if !s.data.is_empty() {
                mem.write(phys, s.data)?;
            }
            let mut at = phys + s.data.len() as u64;
            while at < s.end() {
                let n = (s.end() - at).min(ZEROS.len() as u64);
                mem.write(at, &ZEROS[..n as usize])?;
                at += n;
            }
        }
        Ok(())
    }
}

/// Write a multiboot v1 information structure at guest-physical `at` (4-aligned) for a machine of
/// `mem_kib` KiB: flags MEM | CMDLINE | MMAP, `mem_lower` 639, `mem_upper` `mem_kib − 1024`, a memory map
/// of 0..0x9fc00 and 1 MiB..`mem_kib` KiB available, then the NUL-terminated `cmdline` (the image's name
/// first, as loaders give it). Everything ends below [`INFO_AREA_END`]. Returns `at`.
pub fn write_info(
    mem: &mut dyn GuestPhysWrite,
    at: u32,
    mem_kib: u32,
    cmdline: &str,
) -> Result<u32, LoadError> {
    let mmap_at = at
        .checked_add(INFO_SIZE)
        .ok_or(LoadError::BadInfoPlacement)?;
    let mmap_len = 2 * MMAP_ENTRY_SIZE;
    let cmdline_at = mmap_at
        .checked_add(mmap_len)
        .ok_or(LoadError::BadInfoPlacement)?;
    let end = u32::try_from(cmdline.len())
        .ok()
        .and_then(|n| cmdline_at.checked_add(n)?.checked_add(1))
        .ok_or(LoadError::BadInfoPlacement)?;
    if !at.is_multiple_of(4) || end > INFO_AREA_END || mem_kib < 1024 || cmdline.contains('\0') {
        return Err(LoadError::BadInfoPlacement);
    }
    let mut info = [0u8; INFO_SIZE as usize];
    let mut put = |off: usize, v: u32| info[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(0, INFO_MEM | INFO_CMDLINE | INFO_MMAP);
    put(4, MEM_LOWER_KIB);
    put(8, mem_kib - 1024);
    put(16, cmdline_at);
    put(44, mmap_len);
    put(48, mmap_at);
    let mut mmap = [0u8; 2 * MMAP_ENTRY_SIZE as usize];
    let ranges = [
        (0u64, u64::from(MEM_LOWER_KIB) * 1024),
        (1 << 20, (u64::from(mem_kib) - 1024) * 1024),
    ];
    for (e, (base, len)) in mmap.chunks_exact_mut(MMAP_ENTRY_SIZE as usize).zip(ranges) {
        e[0..4].copy_from_slice(&(MMAP_ENTRY_SIZE - 4).to_le_bytes());
        e[4..12].copy_from_slice(&base.to_le_bytes());
        e[12..20].copy_from_slice(&len.to_le_bytes());
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
    }
    mem.write(u64::from(at), &info)?;
    mem.write(u64::from(mmap_at), &mmap)?;
    mem.write(u64::from(cmdline_at), cmdline.as_bytes())?;
    mem.write(u64::from(cmdline_at) + cmdline.len() as u64, &[0])?;
    Ok(at)
}

/// The machine state a multiboot loader leaves, besides protected mode with paging off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// EAX: [`BOOT_MAGIC`].
    pub eax: u32,
    /// EBX: the guest-physical address of the information structure.
    pub ebx: u32,
    /// EIP: the 32-bit entry.
    pub entry32: u32,
    /// The 64-bit entry, if the image has one (see [`MultibootImage::entry64`]).
    pub entry64: Option<u64>,
}

/// Everything a loader does for a domain of `mem_bytes` of RAM: parse `image`, check it lies in 1 MiB..N,
/// copy it in, write the information structure at [`INFO_ADDR`] with `cmdline` (which should start with
/// the image's name), and return the entry state.
pub fn load_multiboot(
    image: &[u8],
    mem: &mut dyn GuestPhysWrite,
    mem_bytes: u64,
    cmdline: &str,
) -> Result<BootState, LoadError> {
    let m = parse(image)?;
    m.check_placement(mem_bytes)?;
    let mem_kib = u32::try_from(mem_bytes / 1024).map_err(|_| LoadError::BadInfoPlacement)?;
    m.load(mem)?;
    let ebx = write_info(mem, INFO_ADDR, mem_kib, cmdline)?;
    Ok(BootState {
        eax: BOOT_MAGIC,
        ebx,
        entry32: m.entry32,
        entry64: m.entry64,
    })
}

#[cfg(test)]
mod tests;
