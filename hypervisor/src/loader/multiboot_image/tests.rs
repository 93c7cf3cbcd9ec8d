//! Host tests of the multiboot image parser, placement, loading and the information structure: hand-made
//! a.out-kludge, ELF32 and ELF64 images, ring1pv's own kernel when it has been built, every truncation of
//! a valid image, and random bytes and mutations (property test).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRunner};

use super::*;

/// A header at `at` with `flags` and the five address fields, correct checksum.
fn put_header(img: &mut [u8], at: usize, flags: u32, fields: [u32; 5]) {
    let mut words = vec![
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
    ];
    words.extend_from_slice(&fields);
    for (i, w) in words.iter().enumerate() {
        img[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
}

/// A small a.out-kludge kernel: 0x40 bytes of prefix, the header at 0x40 (its address 0x100040), code
/// after it up to 0x300 bytes of file, bss to 0x102000, entry 0x100080.
fn aout_image() -> Vec<u8> {
    let mut img: Vec<u8> = (0..0x300u32).map(|i| (i * 7 + 3) as u8).collect();
    put_header(
        &mut img,
        0x40,
        FLAG_AOUT_KLUDGE | FLAG_MEMORY_INFO | FLAG_PAGE_ALIGN,
        [0x10_0040, 0x10_0000, 0x10_0300, 0x10_2000, 0x10_0080],
    );
    img
}

#[test]
fn aout_kludge_image() {
    let img = aout_image();
    let m = parse(&img).unwrap();
    assert_eq!(m.entry32, 0x10_0080);
    assert_eq!(m.load_phys, 0x10_0000);
    assert_eq!(m.bss, (0x10_0300, 0x10_2000));
    assert_eq!(m.segments.len(), 1);
    assert_eq!(m.segments[0].phys, 0x10_0000);
    assert_eq!(m.segments[0].data, &img[..]);
    assert_eq!(m.segments[0].mem_size, 0x2000);
    assert_eq!(m.entry64, None);
    assert_eq!(m.end(), 0x10_2000);
    m.check_placement(2 << 20).unwrap();
    assert_eq!(
        m.check_placement(0x10_1fff),
        Err(LoadError::BeyondMemory { end: 0x10_2000 })
    );
}

#[test]
fn aout_loaded_part_starts_before_the_file_offset_of_the_header() {
    // The header 0x200 bytes into the file, but only the part from file offset 0x100 is loaded.
    let mut img = vec![0xaau8; 0x400];
    put_header(
        &mut img,
        0x200,
        FLAG_AOUT_KLUDGE,
        [0x20_0100, 0x20_0000, 0x20_0300, 0, 0x20_0100],
    );
    let m = parse(&img).unwrap();
    assert_eq!(m.segments[0].data, &img[0x100..0x400]);
    assert_eq!(m.bss, (0x20_0300, 0x20_0300), "no bss");
    drop(m);
    // load_end 0: the rest of the file.
    put_header(
        &mut img,
        0x200,
        FLAG_AOUT_KLUDGE,
        [0x20_0100, 0x20_0000, 0, 0x20_1000, 0x20_0100],
    );
    let m = parse(&img).unwrap();
    assert_eq!(m.segments[0].data.len(), 0x300);
    assert_eq!(m.segments[0].mem_size, 0x1000);
}

#[test]
fn header_refusals() {
    let good = aout_image();
    let with = |flags: u32, fields: [u32; 5]| {
        let mut img = good.clone();
        put_header(&mut img, 0x40, flags, fields);
        parse(&img).map(|_| ())
    };
    let k = FLAG_AOUT_KLUDGE;
    let f = [0x10_0040, 0x10_0000, 0x10_0300, 0x10_2000, 0x10_0080];
    assert_eq!(with(k | FLAG_VIDEO, f), Ok(()), "video mode ignored");
    assert_eq!(with(k | 1 << 20, f), Ok(()), "optional high bits ignored");
    assert_eq!(
        with(k | 1 << 3, f),
        Err(LoadError::UnsupportedFlags(1 << 3))
    );
    assert_eq!(
        with(k | 0x8000, f),
        Err(LoadError::UnsupportedFlags(0x8000))
    );
    let bad = |i: usize, v: u32| {
        let mut g = f;
        g[i] = v;
        with(k, g)
    };
    assert_eq!(
        bad(2, 0x0f_ffff),
        Err(LoadError::BadAddresses),
        "load end < load"
    );
    assert_eq!(
        bad(0, 0x0f_0000),
        Err(LoadError::BadAddresses),
        "header before load"
    );
    assert_eq!(
        bad(0, 0x10_1000),
        Err(LoadError::BadAddresses),
        "header before file start"
    );
    assert_eq!(
        bad(3, 0x10_0200),
        Err(LoadError::BadAddresses),
        "bss end < load end"
    );
    assert_eq!(
        bad(2, 0x10_0301),
        Err(LoadError::Truncated),
        "past the file"
    );
    assert_eq!(bad(4, 0x10_0300), Err(LoadError::EntryOutside(0x10_0300)));
    assert_eq!(bad(4, 0x0f_ffff), Err(LoadError::EntryOutside(0x0f_ffff)));
    assert_eq!(bad(2, 0xffff_ffff), Err(LoadError::Truncated));
    let mut img = good.clone();
    img[0x48] ^= 1;
    assert_eq!(parse(&img).map(|_| ()), Err(LoadError::BadChecksum));
    // A header not 4-aligned, or beyond 8 KiB, is no header.
    let mut img = vec![0u8; 0x3000];
    put_header(&mut img, 0x42, k, f);
    assert_eq!(parse(&img).map(|_| ()), Err(LoadError::NoHeader));
    let mut img = vec![0u8; 0x3000];
    put_header(&mut img, 0x2000, k, f);
    assert_eq!(parse(&img).map(|_| ()), Err(LoadError::NoHeader));
    assert_eq!(parse(&[]).map(|_| ()), Err(LoadError::NoHeader));
}

#[test]
fn placement_below_1mib_is_refused() {
    let mut img = aout_image();
    put_header(
        &mut img,
        0x40,
        FLAG_AOUT_KLUDGE,
        [0x9_0040, 0x9_0000, 0x9_0300, 0, 0x9_0080],
    );
    let m = parse(&img).unwrap();
    assert_eq!(
        m.check_placement(64 << 20),
        Err(LoadError::OverlapsLowArea { start: 0x9_0000 })
    );
}

#[test]
fn every_truncation_parses_identically_or_is_refused() {
    let img = aout_image();
    let full = parse(&img).unwrap();
    for n in 0..img.len() {
        match parse(&img[..n]) {
            Ok(m) => assert_eq!(m, full, "truncated to {n}"),
            Err(e) => assert!(
                matches!(e, LoadError::NoHeader | LoadError::Truncated),
                "{n}: {e:?}"
            ),
        }
    }
    let elf = elf32_image();
    let full = parse(&elf).unwrap();
    for n in 0..elf.len() {
        if let Ok(m) = parse(&elf[..n]) {
            assert_eq!(m, full, "ELF truncated to {n}");
        }
    }
}

/// A hand-made ELF32 multiboot kernel (flag 16 clear): text at vaddr 0xc010_0000 / paddr 0x10_0000
/// (0x100 bytes), data at vaddr 0xc010_1000 / paddr 0x10_1000 (0x20 file bytes, 0x1000 in memory), a
/// PT_NOTE ignored; entry 0xc010_0010; the header in the text.
fn elf32_image() -> Vec<u8> {
    let mut img = vec![0u8; 0x300];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 1;
    img[5] = 1;
    img[6] = 1;
    let put16 =
        |img: &mut Vec<u8>, at: usize, v: u16| img[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut img, 16, 2);
    put16(&mut img, 18, 3);
    put32(&mut img, 20, 1);
    put32(&mut img, 24, 0xc010_0010);
    put32(&mut img, 28, 52);
    put16(&mut img, 40, 52);
    put16(&mut img, 42, 32);
    put16(&mut img, 44, 3);
    let phdrs: [[u32; 8]; 3] = [
        [1, 0x100, 0xc010_0000, 0x10_0000, 0x100, 0x100, 5, 0x1000],
        [4, 0x200, 0, 0, 0x10, 0x10, 4, 4],
        [1, 0x200, 0xc010_1000, 0x10_1000, 0x20, 0x1000, 6, 0x1000],
    ];
    for (i, ph) in phdrs.iter().enumerate() {
        for (j, &w) in ph.iter().enumerate() {
            put32(&mut img, 52 + 32 * i + 4 * j, w);
        }
    }
    for (i, b) in img[0x120..0x300].iter_mut().enumerate() {
        *b = i as u8 | 1;
    }
    put_header(&mut img, 0x100, FLAG_MEMORY_INFO, [0; 5]);
    img.truncate(0x220);
    img
}

#[test]
fn elf32_segments_by_physical_address() {
    let img = elf32_image();
    let m = parse(&img).unwrap();
    assert_eq!(
        m.entry32, 0x10_0010,
        "the virtual entry through its segment"
    );
    assert_eq!(m.load_phys, 0x10_0000);
    assert_eq!(m.segments.len(), 2, "PT_NOTE ignored");
    assert_eq!(m.segments[0].data, &img[0x100..0x200]);
    assert_eq!(m.segments[1].phys, 0x10_1000);
    assert_eq!(m.segments[1].data, &img[0x200..0x220]);
    assert_eq!(m.segments[1].mem_size, 0x1000);
    assert_eq!(m.bss, (0, 0));
    m.check_placement(0x10_2000).unwrap();
    assert!(m.check_placement(0x10_1fff).is_err());
}

#[test]
fn elf32_refusals() {
    let good = elf32_image();
    let edit = |at: usize, v: u32| {
        let mut img = good.clone();
        img[at..at + 4].copy_from_slice(&v.to_le_bytes());
        parse(&img).map(|_| ())
    };
    let ph2 = 52 + 64;
    assert_eq!(
        edit(ph2 + 12, 0x10_0080),
        Err(LoadError::OverlappingSegments)
    );
    assert_eq!(
        edit(ph2 + 16, 0x2000),
        Err(LoadError::BadSegment),
        "filesz > memsz"
    );
    assert_eq!(
        edit(ph2 + 4, 0x1000),
        Err(LoadError::Truncated),
        "data past the file"
    );
    assert_eq!(
        edit(ph2 + 12, 0xffff_f000),
        Err(LoadError::BadSegment),
        "past 4 GiB"
    );
    assert_eq!(
        edit(24, 0xc020_0000),
        Err(LoadError::EntryOutside(0xc020_0000))
    );
    assert_eq!(edit(16, 3), Err(LoadError::NotElf), "not ET_EXEC");
    assert_eq!(edit(18, 62), Err(LoadError::NotElf), "ELF32 for x86-64");
    assert_eq!(
        edit(28, 0x1_0000),
        Err(LoadError::Truncated),
        "phdrs past the file"
    );
    let mut none = good.clone();
    none[44] = 0;
    assert_eq!(parse(&none).map(|_| ()), Err(LoadError::SegmentCount));
    let mut not_elf = good.clone();
    not_elf[0] = 0;
    assert_eq!(parse(&not_elf).map(|_| ()), Err(LoadError::NotElf));
}

/// An ELF64 kernel (flag 16 clear) written with the workspace's `elf64` writer: one PT_LOAD at 4 MiB from
/// file offset 0x1000 (the multiboot header there), and a symbol table naming `_start64`.
fn elf64_image() -> Vec<u8> {
    use elf64::write::{ProgramHeader, write_headers};
    let mut img = vec![0u8; 0x2000];
    let phdrs = [ProgramHeader::load(5, 0x1000, 0x40_0000, 0x800, 0x3000)];
    write_headers(&mut img, 0x40_0010, &phdrs).unwrap();
    put_header(&mut img, 0x1000, 0, [0; 5]);
    let strtab = b"\0other\0_start64\0";
    img[0x1800..0x1800 + strtab.len()].copy_from_slice(strtab);
    let mut sym = |i: usize, name: u32, value: u64| {
        let at = 0x1820 + 24 * i;
        img[at..at + 4].copy_from_slice(&name.to_le_bytes());
        img[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
    };
    sym(1, 1, 0x1234);
    sym(2, 7, 0xffff_ffff_8000_0042);
    let mut sh = |i: usize, ty: u32, off: u64, size: u64, link: u32| {
        let at = 0x1900 + 64 * i;
        img[at + 4..at + 8].copy_from_slice(&ty.to_le_bytes());
        img[at + 24..at + 32].copy_from_slice(&off.to_le_bytes());
        img[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        img[at + 40..at + 44].copy_from_slice(&link.to_le_bytes());
    };
    sh(1, 2, 0x1820, 72, 2);
    sh(2, 3, 0x1800, strtab.len() as u64, 0);
    img[40..48].copy_from_slice(&0x1900u64.to_le_bytes());
    img[58..60].copy_from_slice(&64u16.to_le_bytes());
    img[60..62].copy_from_slice(&3u16.to_le_bytes());
    img.truncate(0x1900 + 3 * 64);
    img
}

#[test]
fn elf64_with_a_start64_symbol() {
    let img = elf64_image();
    let m = parse(&img).unwrap();
    assert_eq!(m.entry32, 0x40_0010);
    assert_eq!(m.entry64, Some(0xffff_ffff_8000_0042));
    assert_eq!(elf64_symbol(&img, b"other"), Some(0x1234));
    assert_eq!(
        elf64_symbol(&img, b"_start"),
        None,
        "a prefix is not a match"
    );
    assert_eq!(elf64_symbol(&img, b"missing"), None);
    for n in 0..img.len() {
        if let Ok(t) = parse(&img[..n]) {
            assert_eq!(t.segments, m.segments, "truncated to {n}");
        }
        let _ = elf64_symbol(&img[..n], b"_start64");
    }
}

#[test]
fn elf64_through_the_workspace_writer() {
    use elf64::write::{ProgramHeader, headers_len, write_headers};
    let mut img = vec![0u8; 0x2000];
    let phdrs = [ProgramHeader::load(5, 0x1000, 0x40_0000, 0x800, 0x3000)];
    assert_eq!(
        write_headers(&mut img, 0x40_0010, &phdrs),
        Some(headers_len(1))
    );
    put_header(&mut img, 0x1000, 0, [0; 5]);
    let m = parse(&img).unwrap();
    assert_eq!(m.entry32, 0x40_0010);
    assert_eq!(m.segments[0].phys, 0x40_0000);
    assert_eq!(m.segments[0].data, &img[0x1000..0x1800]);
    assert_eq!(m.segments[0].mem_size, 0x3000);
    assert_eq!(m.entry64, None, "no symbol table");
}

/// Guest memory as a sparse byte map with a size.
struct Mem {
    bytes: BTreeMap<u64, u8>,
    size: u64,
}

impl GuestPhysWrite for Mem {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadError> {
        if gpa
            .checked_add(bytes.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(LoadError::GuestWrite { gpa });
        }
        for (i, &b) in bytes.iter().enumerate() {
            self.bytes.insert(gpa + i as u64, b);
        }
        Ok(())
    }
}

impl Mem {
    fn new(size: u64) -> Mem {
        Mem {
            bytes: BTreeMap::new(),
            size,
        }
    }
    fn u32(&self, at: u64) -> u32 {
        u32::from_le_bytes(core::array::from_fn(|i| self.bytes[&(at + i as u64)]))
    }
    fn u64(&self, at: u64) -> u64 {
        u64::from(self.u32(at)) | u64::from(self.u32(at + 4)) << 32
    }
}

#[test]
fn load_copies_and_zero_fills() {
    let img = elf32_image();
    let m = parse(&img).unwrap();
    let mut mem = Mem::new(4 << 20);
    // Garbage where the bss goes: loading must clear it.
    mem.bytes.insert(0x10_1800, 0x55);
    m.load(&mut mem).unwrap();
    for i in 0..0x100u64 {
        assert_eq!(mem.bytes[&(0x10_0000 + i)], img[0x100 + i as usize]);
    }
    for i in 0..0x1000u64 {
        let want = if i < 0x20 { img[0x200 + i as usize] } else { 0 };
        assert_eq!(mem.bytes[&(0x10_1000 + i)], want, "{i:#x}");
    }
    assert_eq!(mem.bytes.len(), 0x1100, "nothing else written");
    let mut small = Mem::new(0x10_1800);
    assert_eq!(
        m.load(&mut small),
        Err(LoadError::GuestWrite { gpa: 0x10_1620 }),
        "the zero-fill chunk that crosses the end"
    );
}

#[test]
fn info_structure_as_ring1pv_native_backend_reads_it() {
    let mut mem = Mem::new(1 << 20);
    let at = write_info(&mut mem, INFO_ADDR, 128 * 1024, "guest-kernel test=foo").unwrap();
    assert_eq!(at, 0x9000);
    // guest-kernel platform/native/multiboot.rs: words flags, mem_lower, mem_upper, boot_device, cmdline.
    let flags = mem.u32(0x9000);
    assert_eq!(flags & 1, 1, "FLAG_MEMORY");
    assert_eq!(flags & 4, 4, "FLAG_CMDLINE");
    assert_eq!(flags, 0x45, "MEM | CMDLINE | MMAP only");
    assert_eq!(mem.u32(0x9004), 639);
    assert_eq!(mem.u32(0x9008), 127 * 1024);
    assert_eq!(
        (1024 + u64::from(mem.u32(0x9008))) / 4,
        32768,
        "memory_pages: 128 MiB"
    );
    let cmdline = u64::from(mem.u32(0x9010));
    let text: Vec<u8> = (cmdline..)
        .map(|a| mem.bytes[&a])
        .take_while(|&c| c != 0)
        .collect();
    assert_eq!(text, b"guest-kernel test=foo");
    // The memory map: two available ranges, each entry's size word excluding itself.
    let (len, addr) = (mem.u32(0x9000 + 44), u64::from(mem.u32(0x9000 + 48)));
    assert_eq!(len, 48);
    let mut entries = Vec::new();
    let mut p = addr;
    while p < addr + u64::from(len) {
        let size = mem.u32(p);
        entries.push((mem.u64(p + 4), mem.u64(p + 12), mem.u32(p + 20)));
        p += u64::from(size) + 4;
    }
    assert_eq!(entries, [(0, 0x9_fc00, 1), (0x10_0000, 127 << 20, 1)]);
    assert!(cmdline + 22 <= u64::from(INFO_AREA_END));
}

#[test]
fn info_refusals() {
    let mut mem = Mem::new(1 << 20);
    assert_eq!(
        write_info(&mut mem, 0x9001, 4096, "k"),
        Err(LoadError::BadInfoPlacement)
    );
    assert_eq!(
        write_info(&mut mem, 0x9000, 1023, "k"),
        Err(LoadError::BadInfoPlacement)
    );
    assert_eq!(write_info(&mut mem, 0x9e000, 4096, "k"), Ok(0x9e000));
    let long = "x".repeat(0x1000);
    assert_eq!(
        write_info(&mut mem, 0x9e000, 4096, &long),
        Err(LoadError::BadInfoPlacement)
    );
    assert_eq!(
        write_info(&mut mem, u32::MAX - 3, 4096, "k"),
        Err(LoadError::BadInfoPlacement)
    );
    for at in [
        u32::MAX - 3,
        u32::MAX - 87,
        u32::MAX - 100,
        u32::MAX - 135,
        u32::MAX - 136,
    ] {
        assert_eq!(
            write_info(&mut mem, at & !3, 4096, "k"),
            Err(LoadError::BadInfoPlacement)
        );
    }
    assert_eq!(
        write_info(&mut mem, 0x9000, 4096, "a\0b"),
        Err(LoadError::BadInfoPlacement)
    );
    let mut tiny = Mem::new(0x9000);
    assert_eq!(
        write_info(&mut tiny, 0x9000, 4096, "k"),
        Err(LoadError::GuestWrite { gpa: 0x9000 })
    );
}

#[test]
fn ring1pv_guest_kernel_image() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/guest/x86_64-unknown-linux-gnu/release/guest-kernel"
    );
    let Ok(img) = std::fs::read(path) else {
        eprintln!("SKIP: {path} not built (cargo xtask build)");
        return;
    };
    let m = parse(&img).unwrap();
    assert_ne!(
        m.flags & FLAG_AOUT_KLUDGE,
        0,
        "the native image uses the address fields"
    );
    assert_eq!(m.load_phys, 0x20_0000, "NATIVE_LOAD_PHYS");
    assert_eq!(m.segments.len(), 1);
    m.check_placement(64 << 20).unwrap();
    let s = &m.segments[0];
    assert!(s.phys <= m.entry32 && u64::from(m.entry32) < u64::from(s.phys) + s.data.len() as u64);
    assert!(m.bss.0 <= m.bss.1 && u64::from(m.bss.1) == s.end());
    // The loaded part is the ELF's segments laid out from physical 2 MiB: its text is at the start.
    let text = elf64::parse(
        &img,
        &elf64::AddressPolicy {
            allows: |_, _| true,
            max_span: u64::MAX,
            refusal: "",
        },
    )
    .unwrap();
    let t = text.segments[0];
    assert_eq!(
        &s.data[..64],
        &img[t.offset as usize..t.offset as usize + 64]
    );
    // _start64 is in the image: its link address maps into the loaded range.
    let e64 = m.entry64.expect("_start64 symbol");
    let offset = t.vaddr - u64::from(m.load_phys);
    assert!(e64 > offset && e64 - offset < s.end(), "{e64:#x}");
    assert_eq!(
        elf64_symbol(&img, b"_start32"),
        Some(u64::from(m.entry32) + offset)
    );
}

fn check_parsed(m: &MultibootImage<'_>, len: usize) -> Result<(), TestCaseError> {
    prop_assert!(!m.segments.is_empty());
    for w in m.segments.windows(2) {
        prop_assert!(u64::from(w[1].phys) >= w[0].end());
    }
    for s in &m.segments {
        prop_assert!(s.data.len() <= s.mem_size as usize && s.end() <= u64::from(u32::MAX));
        prop_assert!(s.data.len() <= len);
    }
    prop_assert!(
        m.segments
            .iter()
            .any(|s| s.phys <= m.entry32 && u64::from(m.entry32) < s.end())
    );
    prop_assert_eq!(m.load_phys, m.segments[0].phys);
    Ok(())
}

#[test]
fn random_and_mutated_images_never_panic() {
    let config = Config {
        cases: 20_000,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let seeds = [aout_image(), elf32_image(), elf64_image()];
    let strategy = (
        0..4usize,
        prop::collection::vec((any::<u16>(), any::<u8>()), 0..8),
        prop::collection::vec(any::<u8>(), 0..600),
        any::<u16>(),
        // Whole words at header offsets: sizes, offsets and addresses near the ends of their ranges.
        prop::collection::vec((0..32usize, any::<u64>(), any::<u8>()), 0..4),
        // The same in the section headers and symbol table of the ELF64 seed.
        prop::collection::vec((0x1800..0x19c0usize, any::<u64>()), 0..3),
    );
    let result = runner.run(&strategy, |(kind, edits, random, cut, words, far)| {
        let mut img = match kind {
            0..=2 => seeds[kind].clone(),
            _ => {
                // Random bytes with a valid header somewhere, to get past the checksum.
                let mut r = random.clone();
                r.resize(r.len().max(64), 0);
                let at = (usize::from(cut) % (r.len() - 32)) & !3;
                let fields = core::array::from_fn(|i| {
                    u32::from_le_bytes(core::array::from_fn(|j| r[(i * 4 + j) % r.len()]))
                });
                let flags = if cut & 1 != 0 { FLAG_AOUT_KLUDGE } else { 0 };
                put_header(&mut r, at, flags, fields);
                r
            }
        };
        for (at, v) in edits {
            let n = img.len();
            img[usize::from(at) % n] = v;
        }
        for (slot, v, how) in words {
            let v = match how % 4 {
                0 => v,
                1 => u64::MAX - (v & 0xff),
                2 => u64::from(u32::MAX) - (v & 0xff),
                _ => v & 0xffff,
            };
            let at = slot * 4;
            let bytes = v.to_le_bytes();
            let width = if how & 4 != 0 { 8 } else { 4 };
            if let Some(dst) = img.get_mut(at..at + width) {
                dst.copy_from_slice(&bytes[..width]);
            }
        }
        for (at, v) in far {
            let v = if v & 1 != 0 {
                u64::MAX - (v >> 56)
            } else {
                v >> 40
            };
            if let Some(dst) = img.get_mut(at & !3..(at & !3) + 8) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
        let n = img.len();
        img.truncate(n - usize::from(cut) % (n / 4 + 1));
        if let Ok(m) = parse(&img) {
            check_parsed(&m, img.len())?;
            let _ = m.check_placement(64 << 20);
        }
        let _ = elf64_symbol(&img, b"_start64");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

impl crate::mm::phys::PhysRead for Mem {
    fn read_u64(&self, addr: abi::types::Maddr) -> u64 {
        let mut b = [0u8; 8];
        self.read_bytes(addr, &mut b);
        u64::from_le_bytes(b)
    }
    fn read_bytes(&self, addr: abi::types::Maddr, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.bytes.get(&(addr.0 + i as u64)).copied().unwrap_or(0);
        }
    }
}

#[test]
fn info_structure_reads_back_through_the_hypervisors_own_multiboot_parser() {
    let mut mem = Mem::new(1 << 20);
    write_info(
        &mut mem,
        INFO_ADDR,
        512 * 1024,
        "guest-kernel kind=hvm test=shell",
    )
    .unwrap();
    let info =
        crate::bootinfo::multiboot::parse(&mem, abi::types::Maddr(u64::from(INFO_ADDR))).unwrap();
    assert_eq!(info.mem_lower_kb, Some(639));
    assert_eq!(info.mem_upper_kb, Some(511 * 1024));
    assert_eq!(info.cmdline.as_str(), "guest-kernel kind=hvm test=shell");
    assert!(info.modules.is_empty());
    let regions: Vec<_> = info
        .memory
        .iter()
        .map(|r| (r.start, r.end(), r.kind))
        .collect();
    assert_eq!(regions, [(0, 0x9_fc00, 1), (0x10_0000, 512 << 20, 1)]);
}

#[test]
fn the_whole_load() {
    let img = aout_image();
    let mut mem = Mem::new(4 << 20);
    let boot = load_multiboot(&img, &mut mem, 4 << 20, "mini debug").unwrap();
    assert_eq!(
        boot,
        BootState {
            eax: 0x2bad_b002,
            ebx: INFO_ADDR,
            entry32: 0x10_0080,
            entry64: None
        }
    );
    assert_eq!(mem.bytes[&0x10_0000], img[0]);
    assert_eq!(mem.bytes[&0x10_1fff], 0, "bss cleared");
    assert_eq!(mem.u32(u64::from(INFO_ADDR) + 8), 3 * 1024);
    // Too little memory: refused before anything is written.
    let mut small = Mem::new(1 << 20);
    assert_eq!(
        load_multiboot(&img, &mut small, 0x10_1000, "mini"),
        Err(LoadError::BeyondMemory { end: 0x10_2000 })
    );
    assert!(small.bytes.is_empty());
}

#[test]
fn offsets_at_the_end_of_the_address_space() {
    // An ELF32 whose program headers, and an ELF64 whose section headers, sit at offsets whose sums
    // overflow: refused or ignored, never a panic.
    let mut img = elf32_image();
    img[28..32].copy_from_slice(&(u32::MAX - 4).to_le_bytes());
    assert_eq!(parse(&img).map(|_| ()), Err(LoadError::Truncated));
    let mut e64 = vec![0u8; 0x2000];
    let phdrs = [elf64::write::ProgramHeader::load(
        5, 0x1000, 0x40_0000, 0x800, 0x3000,
    )];
    elf64::write::write_headers(&mut e64, 0x40_0010, &phdrs).unwrap();
    put_header(&mut e64, 0x1000, 0, [0; 5]);
    for shoff in [u64::MAX, u64::MAX - 4, u64::MAX - 63, 0x1ff0] {
        e64[40..48].copy_from_slice(&shoff.to_le_bytes());
        e64[58..60].copy_from_slice(&64u16.to_le_bytes());
        e64[60..62].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(elf64_symbol(&e64, b"_start64"), None);
        assert!(parse(&e64).is_ok());
    }
    e64[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
    assert_eq!(parse(&e64).map(|_| ()), Err(LoadError::Truncated));
}
