//! Multiboot (v1) information parsing: memory map, modules and command line, read through [`PhysRead`].
//!
//! The boot loader's structures are treated as untrusted: every length is bounded, every address computation is
//! checked, and strings are read byte by byte up to a limit.

use crate::mm::phys::PhysRead;
use abi::types::Maddr;
use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The value a multiboot loader leaves in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// Most memory-map entries kept.
pub const MAX_REGIONS: usize = 32;
/// Most modules accepted.
pub const MAX_MODULES: usize = abi::domctl::MAX_BOOT_MODULES;
/// Capacity of the command-line strings, in bytes.
pub const MAX_CMDLINE: usize = 256;
/// Memory-map region type for usable RAM.
pub const MEM_AVAILABLE: u32 = 1;

const FLAG_MEM: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MODS: u32 = 1 << 3;
const FLAG_MMAP: u32 = 1 << 6;
/// Smallest valid memory-map entry (base, length, type), not counting the size field.
const MMAP_ENTRY_MIN: u32 = 20;
/// Largest memory-map entry size accepted (real loaders use 20 or 24).
const MMAP_ENTRY_MAX: u32 = 256;

/// The fixed part of `multiboot_info` that is used (up to and including the memory map fields).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawInfo {
    flags: U32,
    mem_lower: U32,
    mem_upper: U32,
    boot_device: U32,
    cmdline: U32,
    mods_count: U32,
    mods_addr: U32,
    syms: [U32; 4],
    mmap_length: U32,
    mmap_addr: U32,
}

/// A `multiboot_module` entry.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawModule {
    start: U32,
    end: U32,
    string: U32,
    reserved: U32,
}

/// A memory-map entry after its `size` field.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRegion {
    base: U64,
    len: U64,
    kind: U32,
}

/// One memory-map entry: `[start, start + len)` (the sum does not overflow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub start: u64,
    /// Length in bytes (non-zero).
    pub len: u64,
    /// Region type; [`MEM_AVAILABLE`] is usable RAM.
    pub kind: u32,
}

impl MemRegion {
    /// True for usable RAM.
    pub fn is_available(&self) -> bool {
        self.kind == MEM_AVAILABLE
    }
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A boot module: `[start, end)` in machine memory, and its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// First byte.
    pub start: Maddr,
    /// One past the last byte (`end >= start`).
    pub end: Maddr,
    /// The module's string (typically "path args").
    pub cmdline: heapless::String<MAX_CMDLINE>,
}

/// What the boot loader told us.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BootInfo {
    /// KiB of lower memory (flag bit 0).
    pub mem_lower_kb: Option<u32>,
    /// KiB of upper memory starting at 1 MiB (flag bit 0).
    pub mem_upper_kb: Option<u32>,
    /// The memory map (flag bit 6), non-empty regions only, in the loader's order.
    pub memory: heapless::Vec<MemRegion, MAX_REGIONS>,
    /// True if the map had more than [`MAX_REGIONS`] entries; the rest were ignored (costs memory, not safety).
    pub memory_truncated: bool,
    /// The boot modules (flag bit 3).
    pub modules: heapless::Vec<Module, MAX_MODULES>,
    /// The hypervisor's command line (flag bit 2), possibly truncated.
    pub cmdline: heapless::String<MAX_CMDLINE>,
}

/// Why the multiboot information was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MbError {
    /// An address computation on the loader's pointers overflowed.
    AddressOverflow,
    /// More modules than [`MAX_MODULES`].
    TooManyModules(u32),
    /// Module `index` ends before it starts.
    BadModule { index: usize },
    /// A memory-map entry at byte `offset` of the map has a bad size, does not fit, or its range overflows.
    BadMmapEntry { offset: u32 },
}

impl core::fmt::Display for MbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MbError::AddressOverflow => f.write_str("multiboot structure address overflows"),
            MbError::TooManyModules(n) => write!(f, "{n} boot modules (limit {MAX_MODULES})"),
            MbError::BadModule { index } => write!(f, "boot module {index} ends before it starts"),
            MbError::BadMmapEntry { offset } => {
                write!(f, "malformed memory-map entry at offset {offset}")
            }
        }
    }
}

fn read_struct<T: FromBytes + IntoBytes>(mem: &impl PhysRead, addr: u64) -> T {
    let mut v = T::new_zeroed();
    mem.read_bytes(Maddr(addr), v.as_mut_bytes());
    v
}

/// Reads a NUL-terminated string of at most [`MAX_CMDLINE`] bytes at `addr`. Invalid UTF-8 becomes '?'.
fn read_string(mem: &impl PhysRead, addr: u64) -> heapless::String<MAX_CMDLINE> {
    let mut raw = [0u8; MAX_CMDLINE];
    let mut n = 0;
    while n < MAX_CMDLINE {
        let Some(a) = addr.checked_add(n as u64) else {
            break;
        };
        let mut b = [0u8; 1];
        mem.read_bytes(Maddr(a), &mut b);
        if b[0] == 0 {
            break;
        }
        raw[n] = b[0];
        n += 1;
    }
    let mut s = heapless::String::new();
    for chunk in raw[..n].utf8_chunks() {
        // Each output piece is no longer than the input it replaces, so this never runs out of room.
        let _ = s.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = s.push('?');
        }
    }
    s
}

impl BootInfo {
    /// Nothing known (a `const` for statics: with [`MAX_MODULES`] modules the structure is too large to
    /// live on the hypervisor's stack, see [`parse_into`]).
    pub const EMPTY: BootInfo = BootInfo {
        mem_lower_kb: None,
        mem_upper_kb: None,
        memory: heapless::Vec::new(),
        memory_truncated: false,
        modules: heapless::Vec::new(),
        cmdline: heapless::String::new(),
    };
}

/// Parses the multiboot information structure at `info_addr` into `out` (which must be empty), without
/// building the large structure on the stack.
pub fn parse_into(
    mem: &impl PhysRead,
    info_addr: Maddr,
    out: &mut BootInfo,
) -> Result<(), MbError> {
    *out = BootInfo::EMPTY;
    parse_fill(mem, info_addr, out)
}

/// Parses the multiboot information structure at `info_addr`.
pub fn parse(mem: &impl PhysRead, info_addr: Maddr) -> Result<BootInfo, MbError> {
    let mut info = BootInfo::default();
    parse_fill(mem, info_addr, &mut info)?;
    Ok(info)
}

fn parse_fill(mem: &impl PhysRead, info_addr: Maddr, info: &mut BootInfo) -> Result<(), MbError> {
    const INFO_SIZE: usize = core::mem::size_of::<RawInfo>();
    info_addr
        .0
        .checked_add(INFO_SIZE as u64)
        .ok_or(MbError::AddressOverflow)?;
    let raw: RawInfo = read_struct::<RawInfo>(mem, info_addr.0);
    let flags = raw.flags.get();

    if flags & FLAG_MEM != 0 {
        info.mem_lower_kb = Some(raw.mem_lower.get());
        info.mem_upper_kb = Some(raw.mem_upper.get());
    }
    if flags & FLAG_CMDLINE != 0 {
        info.cmdline = read_string(mem, u64::from(raw.cmdline.get()));
    }
    if flags & FLAG_MODS != 0 {
        parse_modules(mem, raw.mods_addr.get(), raw.mods_count.get(), info)?;
    }
    if flags & FLAG_MMAP != 0 {
        parse_mmap(mem, raw.mmap_addr.get(), raw.mmap_length.get(), info)?;
    }
    Ok(())
}

fn parse_modules(
    mem: &impl PhysRead,
    addr: u32,
    count: u32,
    info: &mut BootInfo,
) -> Result<(), MbError> {
    const MOD_SIZE: usize = core::mem::size_of::<RawModule>();
    if count as usize > MAX_MODULES {
        return Err(MbError::TooManyModules(count));
    }
    for index in 0..count as usize {
        // 32-bit address + at most MAX_MODULES * 16 bytes: cannot overflow u64.
        let at = u64::from(addr) + (index * MOD_SIZE) as u64;
        let m: RawModule = read_struct::<RawModule>(mem, at);
        let (start, end) = (m.start.get(), m.end.get());
        if end < start {
            return Err(MbError::BadModule { index });
        }
        let module = Module {
            start: Maddr(u64::from(start)),
            end: Maddr(u64::from(end)),
            cmdline: if m.string.get() != 0 {
                read_string(mem, u64::from(m.string.get()))
            } else {
                heapless::String::new()
            },
        };
        // Capacity checked above.
        info.modules
            .push(module)
            .map_err(|_| MbError::TooManyModules(count))?;
    }
    Ok(())
}

fn parse_mmap(
    mem: &impl PhysRead,
    addr: u32,
    length: u32,
    info: &mut BootInfo,
) -> Result<(), MbError> {
    let mut off: u32 = 0;
    // Bounded: each step advances by at least 4 + MMAP_ENTRY_MIN bytes, and the loop stops at the first
    // non-empty entry that does not fit in the table.
    while off < length {
        let bad = MbError::BadMmapEntry { offset: off };
        if length - off < 4 {
            return Err(bad);
        }
        let mut sz = [0u8; 4];
        let entry = u64::from(addr) + u64::from(off);
        mem.read_bytes(Maddr(entry), &mut sz);
        let size = u32::from_le_bytes(sz);
        if !(MMAP_ENTRY_MIN..=MMAP_ENTRY_MAX).contains(&size) || length - off - 4 < size {
            return Err(bad);
        }
        let r: RawRegion = read_struct::<RawRegion>(mem, entry + 4);
        let (start, len) = (r.base.get(), r.len.get());
        start.checked_add(len).ok_or(bad)?;
        if len != 0 {
            if info.memory.is_full() {
                info.memory_truncated = true;
                return Ok(());
            }
            let _ = info.memory.push(MemRegion {
                start,
                len,
                kind: r.kind.get(),
            });
        }
        off += 4 + size; // <= length by the check above
    }
    Ok(())
}

/// The command line without its first word (QEMU and GRUB pass "path args").
pub fn cmdline_args(s: &str) -> &str {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => s[i..].trim_start(),
        None => "",
    }
}

/// Parses a size such as "4096", "512K", "16M" or "1G" (suffix case-insensitive, optional trailing 'B'/"iB").
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    if num.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for d in num.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    let mut chars = suffix.chars();
    let shift = match chars.next().map(|c| c.to_ascii_uppercase()) {
        None => return Some(v),
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some(_) => return None,
    };
    match chars.as_str() {
        "" | "B" | "b" | "iB" | "ib" => {}
        _ => return None,
    }
    v.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::fake::FakeMachine;

    const INFO: u64 = 0x1000;
    const MODS: u64 = 0x2000;
    const MMAP: u64 = 0x3000;
    const STRS: u64 = 0x5000;

    fn machine() -> FakeMachine {
        FakeMachine::new(16)
    }

    fn set_info(m: &mut FakeMachine, field: u64, v: u32) {
        m.write_u32(Maddr(INFO + field), v);
    }

    fn put_str(m: &mut FakeMachine, at: u64, s: &[u8]) -> u32 {
        m.write_bytes(Maddr(at), s);
        m.write_bytes(Maddr(at + s.len() as u64), &[0]);
        at as u32
    }

    fn put_region(m: &mut FakeMachine, at: u64, size: u32, base: u64, len: u64, kind: u32) -> u64 {
        m.write_u32(Maddr(at), size);
        m.write_u64(Maddr(at + 4), base);
        m.write_u64(Maddr(at + 12), len);
        m.write_u32(Maddr(at + 20), kind);
        at + 4 + u64::from(size)
    }

    #[test]
    fn full_info() {
        let mut m = machine();
        set_info(&mut m, 0, FLAG_MEM | FLAG_CMDLINE | FLAG_MODS | FLAG_MMAP);
        set_info(&mut m, 4, 639);
        set_info(&mut m, 8, 130_048);
        let c = put_str(&mut m, STRS, b"/boot/hv.elf console=com1 dom0_mem=16M");
        set_info(&mut m, 16, c);
        // Two modules.
        set_info(&mut m, 20, 2);
        set_info(&mut m, 24, MODS as u32);
        let s0 = put_str(&mut m, STRS + 0x100, b"/guest.elf root=x");
        m.write_u32(Maddr(MODS), 0x10_0000);
        m.write_u32(Maddr(MODS + 4), 0x10_8000);
        m.write_u32(Maddr(MODS + 8), s0);
        m.write_u32(Maddr(MODS + 16), 0x20_0000);
        m.write_u32(Maddr(MODS + 20), 0x20_0000);
        // Memory map: a 20-byte entry, a 24-byte entry, a zero-length entry (dropped).
        let mut at = put_region(&mut m, MMAP, 20, 0, 0x9fc00, 1);
        at = put_region(&mut m, at, 24, 0x10_0000, 0x7ee_0000, 1);
        at = put_region(&mut m, at, 20, 0xfffc_0000, 0, 2);
        at = put_region(&mut m, at, 20, 0xfffc_0000, 0x4_0000, 2);
        set_info(&mut m, 44, (at - MMAP) as u32);
        set_info(&mut m, 48, MMAP as u32);

        let bi = parse(&m, Maddr(INFO)).unwrap();
        assert_eq!(bi.mem_lower_kb, Some(639));
        assert_eq!(bi.mem_upper_kb, Some(130_048));
        assert_eq!(
            bi.cmdline.as_str(),
            "/boot/hv.elf console=com1 dom0_mem=16M"
        );
        assert_eq!(cmdline_args(&bi.cmdline), "console=com1 dom0_mem=16M");
        assert_eq!(bi.modules.len(), 2);
        assert_eq!(bi.modules[0].start, Maddr(0x10_0000));
        assert_eq!(bi.modules[0].end, Maddr(0x10_8000));
        assert_eq!(bi.modules[0].cmdline.as_str(), "/guest.elf root=x");
        assert_eq!(bi.modules[1].cmdline.as_str(), "");
        assert_eq!(
            bi.memory.as_slice(),
            &[
                MemRegion {
                    start: 0,
                    len: 0x9fc00,
                    kind: 1
                },
                MemRegion {
                    start: 0x10_0000,
                    len: 0x7ee_0000,
                    kind: 1
                },
                MemRegion {
                    start: 0xfffc_0000,
                    len: 0x4_0000,
                    kind: 2
                },
            ]
        );
        assert!(bi.memory[1].is_available() && !bi.memory[2].is_available());
        assert_eq!(bi.memory[1].end(), 0x7fe_0000);
        assert!(!bi.memory_truncated);
    }

    #[test]
    fn flags_gate_fields() {
        let mut m = machine();
        set_info(&mut m, 4, 639);
        let c = put_str(&mut m, STRS, b"ignored");
        set_info(&mut m, 16, c);
        set_info(&mut m, 20, 1000);
        set_info(&mut m, 44, 7);
        let bi = parse(&m, Maddr(INFO)).unwrap();
        assert_eq!(bi, BootInfo::default());
    }

    #[test]
    fn strings_bounded_and_sanitised() {
        let mut m = machine();
        set_info(&mut m, 0, FLAG_CMDLINE);
        let long = [b'a'; 400];
        let c = put_str(&mut m, STRS, &long);
        set_info(&mut m, 16, c);
        assert_eq!(parse(&m, Maddr(INFO)).unwrap().cmdline.len(), MAX_CMDLINE);
        let c = put_str(&mut m, STRS, b"a\xffb\xe2\x82\xacc\xc3");
        set_info(&mut m, 16, c);
        assert_eq!(
            parse(&m, Maddr(INFO)).unwrap().cmdline.as_str(),
            "a?b\u{20ac}c?"
        );
        // A 256-byte string of multi-byte characters cut in the middle still fits.
        let mut euro = Vec::new();
        for _ in 0..100 {
            euro.extend_from_slice("\u{20ac}".as_bytes());
        }
        let c = put_str(&mut m, STRS, &euro);
        set_info(&mut m, 16, c);
        let s = parse(&m, Maddr(INFO)).unwrap().cmdline;
        assert_eq!(s.chars().filter(|&c| c == '\u{20ac}').count(), 85);
        assert!(s.ends_with('?'));
        // A string running off the end of memory reads NULs and stops.
        set_info(&mut m, 16, u32::MAX);
        assert_eq!(parse(&m, Maddr(INFO)).unwrap().cmdline.as_str(), "");
    }

    #[test]
    fn module_errors() {
        let mut m = machine();
        set_info(&mut m, 0, FLAG_MODS);
        set_info(&mut m, 24, MODS as u32);
        let over = MAX_MODULES as u32 + 1;
        set_info(&mut m, 20, over);
        assert_eq!(parse(&m, Maddr(INFO)), Err(MbError::TooManyModules(over)));
        set_info(&mut m, 20, 16);
        assert_eq!(parse(&m, Maddr(INFO)).unwrap().modules.len(), 16);
        let mut big = BootInfo::EMPTY;
        parse_into(&m, Maddr(INFO), &mut big).unwrap();
        assert_eq!(big.modules.len(), 16);
        m.write_u32(Maddr(MODS + 16 * 3), 0x5000);
        m.write_u32(Maddr(MODS + 16 * 3 + 4), 0x4fff);
        assert_eq!(parse(&m, Maddr(INFO)), Err(MbError::BadModule { index: 3 }));
        set_info(&mut m, 20, u32::MAX);
        assert_eq!(
            parse(&m, Maddr(INFO)),
            Err(MbError::TooManyModules(u32::MAX))
        );
    }

    #[test]
    fn mmap_errors() {
        let mut m = machine();
        set_info(&mut m, 0, FLAG_MMAP);
        set_info(&mut m, 48, MMAP as u32);
        // (size field, base, len, mmap_length, expected number of regions)
        type Case = (u32, u64, u64, u32, Result<usize, MbError>);
        let cases: [Case; 6] = [
            (0, 0, 0x1000, 24, Err(MbError::BadMmapEntry { offset: 0 })),
            (19, 0, 0x1000, 24, Err(MbError::BadMmapEntry { offset: 0 })),
            (
                0xffff_fff0,
                0,
                0x1000,
                24,
                Err(MbError::BadMmapEntry { offset: 0 }),
            ),
            (24, 0, 0x1000, 24, Err(MbError::BadMmapEntry { offset: 0 })), // 28 bytes do not fit in 24
            (
                20,
                u64::MAX,
                2,
                24,
                Err(MbError::BadMmapEntry { offset: 0 }),
            ),
            (20, 0, 0x1000, 26, Err(MbError::BadMmapEntry { offset: 24 })), // 2 stray bytes
        ];
        for (size, base, len, length, want) in cases {
            put_region(&mut m, MMAP, size, base, len, 1);
            set_info(&mut m, 44, length);
            assert_eq!(
                parse(&m, Maddr(INFO)).map(|b| b.memory.len()),
                want,
                "size {size} length {length}"
            );
        }
        set_info(&mut m, 44, 0);
        assert!(parse(&m, Maddr(INFO)).unwrap().memory.is_empty());
    }

    #[test]
    fn mmap_truncated_at_capacity() {
        let mut m = machine();
        set_info(&mut m, 0, FLAG_MMAP);
        set_info(&mut m, 48, MMAP as u32);
        let mut at = MMAP;
        for i in 0..40u64 {
            at = put_region(&mut m, at, 20, i << 20, 1 << 20, 1);
        }
        set_info(&mut m, 44, (at - MMAP) as u32);
        let bi = parse(&m, Maddr(INFO)).unwrap();
        assert_eq!(bi.memory.len(), MAX_REGIONS);
        assert!(bi.memory_truncated);
        assert_eq!(bi.memory[31].start, 31 << 20);
        // An absurd length with garbage behind the entries is bounded by the entry checks.
        set_info(&mut m, 44, u32::MAX);
        assert!(parse(&m, Maddr(INFO)).unwrap().memory_truncated);
    }

    #[test]
    fn info_address_overflow() {
        let m = machine();
        assert_eq!(
            parse(&m, Maddr(u64::MAX - 10)),
            Err(MbError::AddressOverflow)
        );
        assert_eq!(parse(&m, Maddr(u64::MAX - 52)), Ok(BootInfo::default()));
    }

    #[test]
    fn cmdline_args_drops_first_word() {
        assert_eq!(
            cmdline_args("/boot/hv console=com1  x=y "),
            "console=com1  x=y "
        );
        assert_eq!(cmdline_args("  kernel\targs"), "args");
        assert_eq!(cmdline_args("kernel"), "");
        assert_eq!(cmdline_args(""), "");
        assert_eq!(cmdline_args("   "), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("16m"), Some(16 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size(" 8MB "), Some(8 << 20));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("12MM"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("18446744073709551616"), None);
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("17179869184G"), None);
        assert_eq!(parse_size("1\u{20ac}"), None);
    }

    #[test]
    fn display() {
        assert!(MbError::TooManyModules(20).to_string().contains("20"));
        assert!(
            MbError::BadMmapEntry { offset: 24 }
                .to_string()
                .contains("24")
        );
        assert!(!MbError::AddressOverflow.to_string().is_empty());
        assert!(MbError::BadModule { index: 2 }.to_string().contains('2'));
    }
}
