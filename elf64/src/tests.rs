//! Host tests of the parser: every check, under policies shaped like the hypervisor's (upper-half kernel,
//! a reserved hole) and the guest kernel's (user half only), and random corruptions.

use crate::write::{ProgramHeader as Ph, headers_len, write_headers};
use crate::*;
use std::cell::RefCell;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const BASE: u64 = 0xffff_ffff_8000_0000;
const RX: u32 = PF_R | PF_X;
const RW: u32 = PF_R | PF_W;
const RES_START: u64 = 0xffff_8000_0000_0000;
const RES_END: u64 = 0xffff_8800_0000_0000;
/// One past the highest user address the user policy allows (below a stack area).
const USER_END: u64 = 0x7fff_ffff_0000 - 0x4_0000;

fn no_reserved(first: u64, last: u64) -> bool {
    !(first < RES_END && last >= RES_START)
}

/// Like the hypervisor's: anything canonical except a reserved range, 1 GiB.
const HOLE: AddressPolicy = AddressPolicy {
    allows: no_reserved,
    max_span: 1 << 30,
    refusal: "overlaps the reserved range",
};

fn user_half(first: u64, last: u64) -> bool {
    first >= 0x1000 && last < USER_END
}

/// Like the guest kernel's for ring-3 programs: user half, above the null page, below the stack; 64 MiB.
const USER: AddressPolicy = AddressPolicy {
    allows: user_half,
    max_span: 64 << 20,
    refusal: "outside user space",
};

fn anything(_: u64, _: u64) -> bool {
    true
}

/// Only the architectural checks.
const ANY: AddressPolicy = AddressPolicy {
    allows: anything,
    max_span: u64::MAX,
    refusal: "unreachable",
};

fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph::load(flags, offset, vaddr, filesz, memsz)
}

/// Headers (phdrs at offset 64), zero padding up to `len` bytes, and `data` pieces at their offsets.
fn build(entry: u64, phdrs: &[Ph], len: usize, data: &[(usize, &[u8])]) -> Vec<u8> {
    let mut v = vec![0u8; len.max(headers_len(phdrs.len()))];
    write_headers(&mut v, entry, phdrs).unwrap();
    for (off, bytes) in data {
        v[*off..*off + bytes.len()].copy_from_slice(bytes);
    }
    v
}

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

/// An upper-half kernel-style image.
fn good() -> Vec<u8> {
    build(BASE + 0x10, &good_phdrs(), 0x3000, &[(0x1000, b"code")])
}

/// The same layout as [`good`] at a user-half address.
fn good_low() -> Vec<u8> {
    let mut phdrs = good_phdrs();
    phdrs[0].vaddr = 0x40_0000;
    phdrs[2].vaddr = 0x40_3800;
    build(0x40_0010, &phdrs, 0x3000, &[(0x1000, b"code")])
}

fn with(policy: &AddressPolicy, phdrs: &[Ph], entry: u64) -> Result<ElfImage, ElfError> {
    parse(&build(entry, phdrs, 0x3000, &[]), policy)
}

fn with_phdrs(phdrs: &[Ph], entry: u64) -> Result<ElfImage, ElfError> {
    with(&HOLE, phdrs, entry)
}

#[test]
fn valid_multi_segment() {
    let img = parse(&good(), &HOLE).unwrap();
    assert_eq!(img.entry, BASE + 0x10);
    assert_eq!(img.segments.len(), 2);
    assert_eq!(
        img.segments[0],
        Segment {
            vaddr: BASE,
            memsz: 0x1800,
            offset: 0x1000,
            filesz: 0x1800,
            writable: false,
            executable: true
        }
    );
    assert_eq!(img.segments[1].vaddr, BASE + 0x3800);
    assert!(img.segments[1].writable && !img.segments[1].executable);
    assert_eq!(img.lowest, BASE);
    assert_eq!(img.highest_end, BASE + 0x8800);
    assert_eq!(img.segments[1].end(), BASE + 0x8800);
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
    assert_eq!(img.segments[0].vaddr, 0x40_0000);
    assert_eq!(img.lowest, 0x40_0000);
    assert_eq!(img.highest_end, 0x40_2010);
}

#[test]
fn header_errors() {
    assert_eq!(parse(&[], &HOLE), Err(ElfError::TooShort));
    assert_eq!(parse(&good()[..63], &HOLE), Err(ElfError::TooShort));
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
        assert_eq!(parse(&v, &HOLE), Err(err), "patch at {off}");
    }
}

#[test]
fn phdr_table_bounds() {
    let mut v = good();
    v[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse(&v, &HOLE), Err(ElfError::PhdrsOutOfFile));
    let mut v = good();
    v[32..40].copy_from_slice(&(0x3000u64 - 56 * 3 + 1).to_le_bytes());
    assert_eq!(parse(&v, &HOLE), Err(ElfError::PhdrsOutOfFile));
    let mut v = good();
    v[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    assert_eq!(parse(&v, &HOLE), Err(ElfError::PhdrsOutOfFile));
    // Table ending exactly at the end of the file is fine.
    let img = build(
        0x40_0000,
        &[load(RX, 0, 0x40_0000, 0x78, 0x78)],
        64 + 56,
        &[],
    );
    assert!(parse(&img, &HOLE).is_ok());
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
    let refused = Err(ElfError::AddressNotAllowed {
        index: 1,
        why: HOLE.refusal,
    });
    assert_eq!(e(load(RW, 0, RES_START, 0, 0x1000)), refused);
    assert_eq!(e(load(RW, 0, RES_END - 0x1000, 0, 0x2000)), refused);
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
        Err(ElfError::EntryNotExecutable(0x40_1000))
    );
    assert_eq!(
        with_phdrs(&phdrs, 0x40_0010),
        Err(ElfError::EntryNotExecutable(0x40_0010))
    );
    assert_eq!(with_phdrs(&phdrs, 0), Err(ElfError::EntryNotExecutable(0)));
    assert!(with_phdrs(&phdrs, 0x40_000f).is_ok());
}

#[test]
fn span_limit() {
    let far = |policy: &AddressPolicy, gap: u64| {
        with(
            policy,
            &[
                load(RX, 0, 0x40_0000, 0x10, 0x10),
                load(RW, 0, 0x40_0000 + gap, 0, 0x1000),
            ],
            0x40_0000,
        )
    };
    for policy in [HOLE, USER] {
        let max = policy.max_span;
        assert!(far(&policy, max - 0x1000).is_ok());
        assert_eq!(
            far(&policy, max),
            Err(ElfError::TooLarge {
                span: max + 0x1000,
                limit: max
            })
        );
    }
    let huge = with_phdrs(&[load(RX, 0, 0x40_0000, 0x10, 1 << 40)], 0x40_0000);
    assert_eq!(
        huge,
        Err(ElfError::TooLarge {
            span: 1 << 40,
            limit: 1 << 30
        })
    );
}

#[test]
fn one_image_two_policies() {
    // The upper-half kernel image: fine for HOLE, outside user space for USER (its first segment).
    let kernel = good();
    assert!(parse(&kernel, &HOLE).is_ok());
    assert_eq!(
        parse(&kernel, &USER),
        Err(ElfError::AddressNotAllowed {
            index: 0,
            why: "outside user space"
        })
    );
    // The same layout in the user half: both accept it and describe it alike.
    let low = good_low();
    assert_eq!(parse(&low, &HOLE), parse(&low, &USER));
    assert_eq!(parse(&low, &USER).unwrap().highest_end, 0x40_8800);
    // The null page and the top of the user area: only USER minds.
    let at = |va: u64| [load(RX, 0, va, 0x10, 0x1000)];
    for va in [0, USER_END, 0x7fff_ffff_f000] {
        assert!(with(&HOLE, &at(va), va).is_ok(), "{va:#x}");
        assert_eq!(
            with(&USER, &at(va), va),
            Err(ElfError::AddressNotAllowed {
                index: 0,
                why: USER.refusal
            }),
            "{va:#x}"
        );
    }
    for va in [0x1000, USER_END - 0x1000] {
        assert!(with(&USER, &at(va), va).is_ok(), "{va:#x}");
    }
    // 96 MiB: within HOLE's span, beyond USER's.
    let big = [
        load(RX, 0, 0x40_0000, 0x10, 0x10),
        load(RW, 0, 0x40_0000 + (96 << 20) - 0x1000, 0, 0x1000),
    ];
    assert!(with(&HOLE, &big, 0x40_0000).is_ok());
    assert_eq!(
        with(&USER, &big, 0x40_0000),
        Err(ElfError::TooLarge {
            span: 96 << 20,
            limit: 64 << 20
        })
    );
    // A segment in the reserved range: refused by HOLE, accepted with only the architectural checks.
    let res = [load(RX, 0, RES_START + 0x1000, 0x10, 0x10)];
    assert_eq!(
        with(&HOLE, &res, RES_START + 0x1000),
        Err(ElfError::AddressNotAllowed {
            index: 0,
            why: "overlaps the reserved range"
        })
    );
    assert!(with(&ANY, &res, RES_START + 0x1000).is_ok());
}

fn gap_free(first: u64, last: u64) -> bool {
    !(first < 0x20_0000 && last >= 0x10_0000)
}

#[test]
fn whole_image_range_is_checked() {
    // Each segment avoids the policy's hole [1 MiB, 2 MiB), but the image as a whole would cover it.
    let gap = AddressPolicy {
        allows: gap_free,
        max_span: 1 << 30,
        refusal: "covers the gap",
    };
    let phdrs = [
        load(RW, 0, 0x20_0000, 0x10, 0x10),
        load(RX, 0, 0xf_f000, 0x10, 0x1000),
    ];
    assert_eq!(
        with(&gap, &phdrs, 0xf_f000),
        Err(ElfError::AddressNotAllowed {
            index: 0,
            why: "covers the gap"
        })
    );
    assert!(with(&gap, &phdrs[1..], 0xf_f000).is_ok());
    // An image with segments in both halves: non-canonical as a whole (HOLE's span limit refuses it first).
    let halves = [
        load(RX, 0, 0x40_0000, 0x10, 0x10),
        load(RW, 0, BASE, 0x10, 0x10),
    ];
    assert_eq!(
        with(&ANY, &halves, 0x40_0000),
        Err(ElfError::NonCanonical { index: 1 })
    );
    assert!(matches!(
        with(&HOLE, &halves, 0x40_0000),
        Err(ElfError::TooLarge { .. })
    ));
}

std::thread_local! {
    static SEEN: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

fn record(first: u64, last: u64) -> bool {
    SEEN.with(|s| s.borrow_mut().push((first, last)));
    true
}

#[test]
fn policy_sees_each_segment_then_the_image() {
    let spy = AddressPolicy {
        allows: record,
        max_span: 1 << 30,
        refusal: "",
    };
    assert!(parse(&good(), &spy).is_ok());
    let seen = SEEN.with(|s| s.take());
    assert_eq!(
        seen,
        [
            (BASE, BASE + 0x17ff),
            (BASE + 0x3800, BASE + 0x87ff),
            (BASE, BASE + 0x87ff)
        ]
    );
}

#[test]
fn writer_checks_its_buffer() {
    let phdrs = good_phdrs();
    let mut short = vec![0xa5u8; headers_len(3) - 1];
    assert_eq!(write_headers(&mut short, 0, &phdrs), None);
    assert!(short.iter().all(|&b| b == 0xa5));
    let mut exact = vec![0u8; headers_len(3)];
    assert_eq!(
        write_headers(&mut exact, BASE + 0x10, &phdrs),
        Some(64 + 3 * 56)
    );
    assert_eq!(exact, good()[..headers_len(3)]);
    // The layout, field by field at the offsets the ELF64 specification gives (independent of the
    // structures the parser shares with the writer).
    let u16_at = |o: usize| u16::from_le_bytes(exact[o..o + 2].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(exact[o..o + 8].try_into().unwrap());
    assert_eq!(exact[..7], *b"\x7fELF\x02\x01\x01");
    assert_eq!((u16_at(16), u16_at(18), u16_at(20)), (2, 62, 1));
    assert_eq!((u64_at(24), u64_at(32)), (BASE + 0x10, 64));
    assert_eq!((u16_at(52), u16_at(54), u16_at(56)), (64, 56, 3));
    let ph2 = 64 + 2 * 56;
    assert_eq!((u16_at(ph2), u16_at(ph2 + 4)), (1, 6));
    let fields: Vec<u64> = (0..6).map(|k| u64_at(ph2 + 8 + 8 * k)).collect();
    let va = BASE + 0x3800;
    assert_eq!(fields, [0x2800, va, va, 0x100, 0x5000, 0x1000]);
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
    assert_eq!(
        ElfError::AddressNotAllowed {
            index: 4,
            why: USER.refusal
        }
        .to_string(),
        "segment 4: outside user space"
    );
    assert_eq!(
        ElfError::TooLarge {
            span: 0x5000,
            limit: 0x4000
        }
        .to_string(),
        "image spans 0x5000 bytes (limit 0x4000)"
    );
}

/// 20k random corruptions of the headers of `base` (and truncations): only errors or a result that keeps
/// every promise of [`parse`]. Both outcomes must occur, or the corruptions test nothing.
fn corruptions_keep_promises(base: &[u8], policy: &AddressPolicy) {
    let table_end = headers_len(3) as u64;
    let (mut ok, mut refused) = (0, 0);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut v = base.to_vec();
        let off = (x % table_end) as usize;
        v[off] = (x >> 32) as u8;
        let len = if x & (1 << 60) != 0 {
            (x >> 40) as usize % v.len()
        } else {
            v.len()
        };
        let Ok(img) = parse(&v[..len], policy) else {
            refused += 1;
            continue;
        };
        ok += 1;
        for s in &img.segments {
            assert!(s.offset + s.filesz <= len as u64 && s.filesz <= s.memsz);
            assert!(s.memsz > 0 && (policy.allows)(s.vaddr, s.end() - 1));
        }
        for w in img.segments.windows(2) {
            assert!(w[0].end().div_ceil(PAGE_SIZE) <= w[1].vaddr / PAGE_SIZE);
        }
        assert!(img.highest_end - img.lowest <= policy.max_span);
        assert!(
            img.segments
                .iter()
                .any(|s| s.executable && (s.vaddr..s.end()).contains(&img.entry))
        );
    }
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");
}

#[test]
fn garbage_never_panics() {
    corruptions_keep_promises(&good(), &HOLE);
    corruptions_keep_promises(&good_low(), &USER);
}
