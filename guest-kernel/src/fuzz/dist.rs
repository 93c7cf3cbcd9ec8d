//! The fuzzer's biased argument distribution: integers at the edges (0, 1, -1, powers of two ± 1, huge
//! counts), addresses that must be refused (non-canonical, the hypervisor's reserved range, the entry
//! region and stacks, the M2P, an unmapped page) next to the fuzzer's own buffers (also straddling into the
//! unmapped page), machine frame numbers of every interesting kind (its scratch frames, its page tables,
//! shared_info, start_info, other domains', the hypervisor's, beyond memory), and page-table entries built
//! from those frames with random flag bits (PS, PAT, PCD, PWT, reserved address bits, NX, software bits).
//!
//! **Safety rule.** Hypercalls write to some of the addresses they are given. The only writable kernel
//! memory [`addr`] ever yields is the fuzzer's own buffer arena, so the fuzzer cannot corrupt its own kernel
//! through the hypervisor by accident; everything else it yields is unmapped, read-only or refused.

use alloc::vec::Vec;

use abi::layout::{ENTRY_REGION_VA, ENTRY_STACKS_VA, RESERVED_VA_END, RESERVED_VA_START};

use super::Rng;

/// What the fuzzer knows about its domain: the values its distribution draws from.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// The buffer arena: `(start, length)`; writable, the fuzzer's own.
    pub buf: (u64, u64),
    /// A page-aligned address right after the arena that is normally unmapped.
    pub hole: u64,
    /// The fuzzer's scratch frames (page-table candidates it owns and may retype at will).
    pub scratch: Vec<u64>,
    /// Frames of the arena (own, mapped writable).
    pub buf_mfns: Vec<u64>,
    /// The domain's real page-table frames (start-of-day tables, the kernel's L4, physmap tables).
    pub tables: Vec<u64>,
    /// The shared_info frame and its virtual address.
    pub shared_info: (u64, u64),
    /// The start_info frame and its virtual address.
    pub start_info: (u64, u64),
    /// Frames that are not the domain's: another domain's (if found), the hypervisor's, M2P tables.
    pub foreign: Vec<u64>,
    /// One past the highest machine frame the M2P covers.
    pub max_mfn: u64,
    /// The domain's own event-channel ports worth aiming at (bound ones).
    pub ports: Vec<u32>,
    /// Kernel memory that is writable and must never be handed to a hypercall: `(start, end)` ranges.
    pub kernel_writable: Vec<(u64, u64)>,
}

/// The kinds of integer [`int`] yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    Zero,
    One,
    MinusOne,
    Small,
    Pow2,
    Pow2Minus1,
    Pow2Plus1,
    Huge,
    Random,
}

const INT_KINDS: [IntKind; 9] = [
    IntKind::Zero,
    IntKind::One,
    IntKind::MinusOne,
    IntKind::Small,
    IntKind::Pow2,
    IntKind::Pow2Minus1,
    IntKind::Pow2Plus1,
    IntKind::Huge,
    IntKind::Random,
];
const INT_WEIGHTS: [u32; 9] = [14, 10, 8, 24, 8, 6, 6, 12, 12];

/// Huge counts: each is a plausible overflow trigger for a length, a count or an index.
const HUGE: [u64; 10] = [
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    1 << 20,
    (1 << 31) | 1,
    u64::MAX / 4096 + 1,
];

/// A biased integer and its kind.
pub fn int_with_kind(r: &mut Rng) -> (IntKind, u64) {
    let kind = INT_KINDS[r.weighted(&INT_WEIGHTS)];
    let v = match kind {
        IntKind::Zero => 0,
        IntKind::One => 1,
        IntKind::MinusOne => u64::MAX,
        IntKind::Small => r.below(17),
        IntKind::Pow2 => 1 << r.below(64),
        IntKind::Pow2Minus1 => (1u64 << r.below(64)).wrapping_sub(1),
        IntKind::Pow2Plus1 => (1u64 << r.below(64)).wrapping_add(1),
        IntKind::Huge => r.pick(&HUGE),
        IntKind::Random => r.next_u64(),
    };
    (kind, v)
}

/// A biased integer (counts, commands, indices, flags).
pub fn int(r: &mut Rng) -> u64 {
    int_with_kind(r).1
}

/// A small count: mostly 0..=8, sometimes an edge value.
pub fn count(r: &mut Rng) -> u64 {
    if r.chance(7, 8) { r.below(9) } else { int(r) }
}

/// The kinds of address [`addr`] yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrKind {
    Null,
    Low,
    NonCanonical,
    Reserved,
    EntryRegion,
    EntryStacks,
    M2p,
    Buffer,
    Straddle,
    Hole,
    SharedInfo,
    StartInfo,
    UserHalf,
    Integer,
}

const ADDR_KINDS: [AddrKind; 14] = [
    AddrKind::Null,
    AddrKind::Low,
    AddrKind::NonCanonical,
    AddrKind::Reserved,
    AddrKind::EntryRegion,
    AddrKind::EntryStacks,
    AddrKind::M2p,
    AddrKind::Buffer,
    AddrKind::Straddle,
    AddrKind::Hole,
    AddrKind::SharedInfo,
    AddrKind::StartInfo,
    AddrKind::UserHalf,
    AddrKind::Integer,
];
const ADDR_WEIGHTS: [u32; 14] = [6, 3, 6, 6, 6, 5, 3, 36, 8, 6, 2, 2, 4, 7];

/// A non-canonical address (bits 63..47 not all equal).
fn non_canonical(r: &mut Rng) -> u64 {
    let low = r.next_u64() & 0x7fff_ffff_ffff;
    let v = r.pick(&[
        0x0000_8000_0000_0000,
        0x7fff_ffff_ffff_f000,
        0x8000_0000_0000_0000,
        0xffff_7fff_ffff_ffff,
        0x0000_8000_0000_0000 | low,
    ]);
    // Keep it non-canonical whatever the low bits.
    if v >> 47 == 0 || v >> 47 == 0x1_ffff {
        v ^ (1 << 62)
    } else {
        v
    }
}

/// An address in the fuzzer's arena: `off` bytes from its start, wrapped into it.
fn in_buf(t: &Targets, off: u64) -> u64 {
    t.buf.0 + off % t.buf.1.max(1)
}

/// A biased address and its kind. Writable kernel memory other than the arena is never yielded (an
/// `Integer` that falls into [`Targets::kernel_writable`] is moved to the hole).
pub fn addr_with_kind(r: &mut Rng, t: &Targets) -> (AddrKind, u64) {
    let kind = ADDR_KINDS[r.weighted(&ADDR_WEIGHTS)];
    let v = match kind {
        AddrKind::Null => r.below(16),
        AddrKind::Low => r.below(1 << 21) & !7,
        AddrKind::NonCanonical => non_canonical(r),
        AddrKind::Reserved => {
            RESERVED_VA_START
                + (r.below(RESERVED_VA_END - RESERVED_VA_START) & !r.pick(&[0, 7, 0xfff]))
        }
        AddrKind::EntryRegion => ENTRY_REGION_VA + (r.below(0x10_0000) & !7),
        AddrKind::EntryStacks => ENTRY_STACKS_VA + (r.below(0x4_0000) & !7),
        AddrKind::M2p => RESERVED_VA_START + (r.below(1 << 24) & !7),
        AddrKind::Buffer => in_buf(t, r.below(t.buf.1) & !r.pick(&[0, 7, 63])),
        // The last bytes of the arena: whatever reads past them runs into the hole.
        AddrKind::Straddle => t.hole - 1 - r.below(64),
        AddrKind::Hole => t.hole + r.below(4096),
        // Only parts nobody reads: the unused vcpu_info slots 1..15 of shared_info, the tail of
        // start_info; a write of up to 1 KiB there stays inside the page.
        AddrKind::SharedInfo => t.shared_info.1 + 64 + (r.below(960) & !7),
        AddrKind::StartInfo => t.start_info.1 + 1280 + (r.below(768) & !7),
        AddrKind::UserHalf => r.below(0x0000_8000_0000_0000) & !0xfff,
        AddrKind::Integer => int(r),
    };
    let v = if t
        .kernel_writable
        .iter()
        .any(|&(s, e)| (s..e).contains(&v) && !(t.buf.0..t.hole).contains(&v))
    {
        t.hole + (v & 0xfff)
    } else {
        v
    };
    (kind, v)
}

/// A biased address (see [`addr_with_kind`]).
pub fn addr(r: &mut Rng, t: &Targets) -> u64 {
    addr_with_kind(r, t).1
}

/// The kinds of machine frame number [`mfn`] yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfnKind {
    Scratch,
    Buffer,
    Table,
    SharedInfo,
    StartInfo,
    Foreign,
    Low,
    Max,
    Huge,
}

const MFN_KINDS: [MfnKind; 9] = [
    MfnKind::Scratch,
    MfnKind::Buffer,
    MfnKind::Table,
    MfnKind::SharedInfo,
    MfnKind::StartInfo,
    MfnKind::Foreign,
    MfnKind::Low,
    MfnKind::Max,
    MfnKind::Huge,
];
const MFN_WEIGHTS: [u32; 9] = [50, 8, 8, 4, 4, 10, 4, 4, 4];

fn pick_or(r: &mut Rng, v: &[u64], default: u64) -> u64 {
    if v.is_empty() { default } else { r.pick(v) }
}

/// A biased machine frame number and its kind.
pub fn mfn_with_kind(r: &mut Rng, t: &Targets) -> (MfnKind, u64) {
    let kind = MFN_KINDS[r.weighted(&MFN_WEIGHTS)];
    let v = match kind {
        MfnKind::Scratch => pick_or(r, &t.scratch, 0),
        MfnKind::Buffer => pick_or(r, &t.buf_mfns, 0),
        MfnKind::Table => pick_or(r, &t.tables, 0),
        MfnKind::SharedInfo => t.shared_info.0,
        MfnKind::StartInfo => t.start_info.0,
        MfnKind::Foreign => pick_or(r, &t.foreign, 0x200),
        MfnKind::Low => r.below(0x300),
        MfnKind::Max => t.max_mfn.wrapping_add(r.below(3)).wrapping_sub(1),
        MfnKind::Huge => r.pick(&[1 << 40, (1 << 52) - 1, u64::MAX >> 12, u64::MAX]),
    };
    (kind, v)
}

/// A biased machine frame number.
pub fn mfn(r: &mut Rng, t: &Targets) -> u64 {
    mfn_with_kind(r, t).1
}

/// Page-table entry bits.
pub mod bits {
    pub const P: u64 = 1;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    /// PS in an L2/L3 entry, PAT in an L1 entry.
    pub const PS_PAT: u64 = 1 << 7;
    pub const G: u64 = 1 << 8;
    pub const NX: u64 = 1 << 63;
}

/// A page-table entry: a biased frame with present and random flag bits; sometimes reserved address
/// bits (above `maxphyaddr`), software bits, or a wholly random value.
pub fn pte(r: &mut Rng, t: &Targets, maxphyaddr: u32) -> u64 {
    use bits::*;
    if r.chance(1, 16) {
        return int(r);
    }
    let frame = (mfn(r, t) << 12) & 0x000f_ffff_ffff_f000;
    let mut flags = P;
    for (bit, num) in [
        (RW, 8),
        (US, 4),
        (PWT, 1),
        (PCD, 1),
        (A, 4),
        (D, 4),
        (PS_PAT, 1),
        (G, 1),
        (NX, 4),
    ] {
        if r.chance(num, 8) {
            flags |= bit;
        }
    }
    if r.chance(1, 32) {
        flags &= !P;
    }
    if r.chance(1, 16) {
        // Software-available bits 9..11 and 52..62.
        flags |= (r.below(8) << 9) | (r.below(1 << 11) << 52);
    }
    let mut v = frame | flags;
    if r.chance(1, 16) && maxphyaddr < 52 {
        // A reserved address bit.
        v |= 1 << (maxphyaddr + r.below(u64::from(52 - maxphyaddr)) as u32);
    }
    v
}

/// Any value: an integer, an address, a frame number or an entry.
pub fn any(r: &mut Rng, t: &Targets) -> u64 {
    match r.below(8) {
        0..=2 => int(r),
        3..=5 => addr(r, t),
        6 => mfn(r, t),
        _ => pte(r, t, 40),
    }
}

/// A port number: the domain's bound ports, small numbers, the edges of the port space.
pub fn port(r: &mut Rng, t: &Targets) -> u32 {
    match r.below(8) {
        0..=2 if !t.ports.is_empty() => r.pick(&t.ports),
        0..=4 => r.below(64) as u32,
        5 => r.pick(&[4095, 4096, 4097, 1 << 16, u32::MAX, 0x8000_0000]),
        _ => int(r) as u32,
    }
}

/// A domain id: self, the first domains, ids beyond the table, Xen's special ids (DOMID_SELF etc.).
pub fn domid(r: &mut Rng) -> u16 {
    match r.below(6) {
        0 | 1 => abi::xen::DOMID_SELF,
        2 => r.below(3) as u16,
        3 => r.below(16) as u16,
        4 => 0x7ff0 + r.below(16) as u16,
        _ => int(r) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            buf: (0xffff_8880_0100_0000, 8 * 4096),
            hole: 0xffff_8880_0100_8000,
            scratch: (0x5000..0x5010).collect(),
            buf_mfns: (0x6000..0x6008).collect(),
            tables: vec![0x4000, 0x4001, 0x4002],
            shared_info: (0x7000, 0xffff_ffff_8006_4000),
            start_info: (0x7001, 0xffff_ffff_8006_3000),
            foreign: vec![0x8000, 0x200],
            max_mfn: 0x20000,
            ports: vec![1, 2],
            kernel_writable: vec![
                (0xffff_8880_0000_0000, 0xffff_8880_4000_0000),
                (0xffff_ffff_8000_0000, 0xffff_ffff_8100_0000),
            ],
        }
    }

    #[test]
    fn every_kind_occurs() {
        let t = targets();
        let mut r = Rng::new(1);
        let mut ints = Vec::new();
        let mut addrs = Vec::new();
        let mut mfns = Vec::new();
        for _ in 0..20_000 {
            ints.push(int_with_kind(&mut r).0);
            addrs.push(addr_with_kind(&mut r, &t).0);
            mfns.push(mfn_with_kind(&mut r, &t).0);
        }
        for k in INT_KINDS {
            assert!(ints.contains(&k), "{k:?}");
        }
        for k in ADDR_KINDS {
            assert!(addrs.contains(&k), "{k:?}");
        }
        for k in MFN_KINDS {
            assert!(mfns.contains(&k), "{k:?}");
        }
    }

    #[test]
    fn addresses_never_hit_writable_kernel_memory_outside_the_arena() {
        let t = targets();
        let mut r = Rng::new(99);
        for _ in 0..200_000 {
            let (kind, a) = addr_with_kind(&mut r, &t);
            let in_arena = (t.buf.0..t.hole).contains(&a);
            let in_kernel = t.kernel_writable.iter().any(|&(s, e)| (s..e).contains(&a));
            assert!(
                in_arena || !in_kernel || (t.hole..t.hole + 4096).contains(&a),
                "{kind:?} {a:#x}"
            );
            match kind {
                AddrKind::Buffer => assert!(in_arena, "{a:#x}"),
                AddrKind::NonCanonical => {
                    assert!(a >> 47 != 0 && a >> 47 != 0x1_ffff, "{a:#x}")
                }
                AddrKind::Reserved => {
                    assert!((RESERVED_VA_START..RESERVED_VA_END).contains(&a), "{a:#x}")
                }
                AddrKind::Straddle => assert!(in_arena && a + 64 >= t.hole, "{a:#x}"),
                _ => {}
            }
        }
    }

    #[test]
    fn ptes_carry_interesting_flags() {
        let t = targets();
        let mut r = Rng::new(5);
        let (mut ps, mut nx, mut pcd, mut reserved, mut absent) = (0, 0, 0, 0, 0);
        for _ in 0..20_000 {
            let v = pte(&mut r, &t, 40);
            ps += u32::from(v & bits::PS_PAT != 0);
            nx += u32::from(v & bits::NX != 0);
            pcd += u32::from(v & bits::PCD != 0);
            reserved += u32::from(v & 0x000f_ff00_0000_0000 != 0);
            absent += u32::from(v & bits::P == 0);
        }
        for (name, n) in [
            ("PS/PAT", ps),
            ("NX", nx),
            ("PCD", pcd),
            ("reserved", reserved),
            ("not present", absent),
        ] {
            assert!(n > 100, "{name}: {n}");
        }
    }

    #[test]
    fn ports_and_domids_cover_the_edges() {
        let t = targets();
        let mut r = Rng::new(3);
        let ports: Vec<u32> = (0..5000).map(|_| port(&mut r, &t)).collect();
        assert!(ports.contains(&1) && ports.contains(&4096) && ports.contains(&u32::MAX));
        let doms: Vec<u16> = (0..5000).map(|_| domid(&mut r)).collect();
        assert!(doms.contains(&abi::xen::DOMID_SELF) && doms.contains(&0) && doms.contains(&1));
        assert!(
            doms.iter()
                .any(|&d| d > 0x7ff0 && d != abi::xen::DOMID_SELF)
        );
        let counts: Vec<u64> = (0..5000).map(|_| count(&mut r)).collect();
        assert!(counts.iter().filter(|&&c| c <= 8).count() > 4000);
        assert!(counts.iter().any(|&c| c > 1 << 30));
    }
}
