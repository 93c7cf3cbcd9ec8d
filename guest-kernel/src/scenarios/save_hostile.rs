//! Scenario `test=save-hostile` (domain 0, with the image `guest` kept): the save protocol's errors and
//! hostile images fed to the restore path.
//!
//! - Protocol: a suspend request to a domain that cannot suspend (-EOPNOTSUPP), to itself (-EINVAL), to no
//!   domain (-ESRCH); a second request while one is pending — the same domain saved twice at once —
//!   (-EBUSY); saving a domain that has not suspended (-EINVAL), twice under one name (-EEXIST), under a bad
//!   name (-EINVAL); resuming a domain that is not suspended (-EINVAL); a real save restored; restoring
//!   without enough memory (-ENOMEM).
//! - Images: a small valid image built here from scratch (four page-table levels, start info, P2M, code)
//!   restores; garbage, truncations, bit flips and a wrong version are refused by the codec when stored;
//!   images with a correct checksum but inconsistent or hostile contents (pfns out of range or twice, a bad
//!   level, a table naming a pfn the image lacks, a table mapping a page table writable, a vCPU on another
//!   base or with a ring-0 selector, a missing start info, bad event channels, an unmapped P2M) are
//!   refused by the restore, and after each the machine's free memory is what it was: nothing
//!   half-restored is left.

use abi::domctl::{
    DOMCTL_CREATE_PAUSED, DOMCTL_RESTORE_PAUSED, DomctlCreate, DomctlImage, SavedImageInfo,
    VcpuGuestContext, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO,
    XEN_DOMCTL_IMAGE_DELETE, XEN_DOMCTL_IMAGE_LIST, XEN_DOMCTL_IMAGE_PUT, XEN_DOMCTL_RESTORE,
    XEN_DOMCTL_RESUMEDOMAIN, XEN_DOMCTL_SAVE, XEN_DOMCTL_SUSPEND_REQUEST, XenDomctl,
};
use abi::errno::Errno;
use abi::event_channel::{EVTCHNSTAT_VIRQ, VIRQ_TIMER};
use abi::hypercall::nr;
use abi::layout::{GUEST_KERNEL_CS, GUEST_KERNEL_SS};
use abi::save::{DomainRecord, Encoder, PT_PINNED, PortRecord, RecordKind};
use abi::sysctl::{XEN_DOMINF_SHUTDOWN, XenDomctlGetdomaininfo};
use abi::xen::StartInfo;
use zerocopy::{FromZeros, IntoBytes};

use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

pub(super) fn domctl(op: &mut XenDomctl) -> Option<Errno> {
    let r = raw(nr::DOMCTL, [op as *mut XenDomctl as u64, 0, 0, 0, 0]);
    if r < 0 { Errno::from_ret(r) } else { None }
}

pub(super) fn expect(r: &mut Results, what: &str, got: Option<Errno>, want: Option<Errno>) {
    if r.check(got == want) {
        println!("  ok   {what}: {got:?}");
    } else {
        println!("  FAIL {what}: {got:?}, expected {want:?}");
    }
}

fn image_cmd(cmd: u32, dom: u16, name: &str) -> XenDomctl {
    let mut op = XenDomctl::new(cmd, dom);
    op.set_arg(&DomctlImage::named(name).unwrap_or_default());
    op
}

pub(super) fn create(kb: u64, cmdline: &str, flags: u32) -> Result<u16, Errno> {
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(&DomctlCreate::new("guest", kb, cmdline, flags).unwrap_or_default());
    domctl(&mut op).map_or(Ok(op.domain), Err)
}

pub(super) fn destroy(d: u16) -> Option<Errno> {
    domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, d))
}

/// The machine's free memory, bytes (`IMAGE_LIST` reports it).
pub(super) fn free_bytes() -> u64 {
    let mut out = [SavedImageInfo::default(); 8];
    let mut op = XenDomctl::new(XEN_DOMCTL_IMAGE_LIST, 0);
    op.set_arg(&DomctlImage {
        buf: out.as_mut_ptr() as u64,
        len: out.len() as u64,
        ..DomctlImage::default()
    });
    let _ = domctl(&mut op);
    op.arg::<DomctlImage>().bytes
}

fn flags_of(d: u16) -> u32 {
    let mut op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d);
    let _ = domctl(&mut op);
    op.arg::<XenDomctlGetdomaininfo>().flags
}

/// Spin (yielding) until `done()` or about `ms` milliseconds pass.
pub(super) fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = crate::time::now() + ms * 1_000_000;
    while crate::time::now() < until {
        if done() {
            return true;
        }
        let _ = raw(nr::SCHED_OP, [abi::sched::SCHEDOP_YIELD, 0, 0, 0, 0]);
    }
    done()
}

/// How a synthetic image deviates from the valid one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bad {
    None,
    NoPages,
    PfnBeyond,
    PfnTwice,
    Level5,
    MissingPfn,
    WritableTable,
    OtherBase,
    RingZeroSelector,
    NoStartInfo,
    StartInfoDisagrees,
    PortState,
    PortZero,
    VirqTwice,
    UnmappedP2m,
}

const BASE: u64 = crate::mm::KERNEL_VIRT_BASE;
const NR: u64 = 8;
const STATIC_BUF: usize = 48 * 1024;
static BUF: spin::Mutex<[u8; STATIC_BUF]> = spin::Mutex::new([0; STATIC_BUF]);
/// The four page tables and the start-info page of the synthetic domain (off the small kernel stack).
static TABLES: spin::Mutex<[[u64; 512]; 4]> = spin::Mutex::new([[0; 512]; 4]);
static START: spin::Mutex<[u8; 4096]> = spin::Mutex::new([0; 4096]);
/// Code and stack pages: `hlt` (never run: the domain stays paused).
static CODE: [u8; 4096] = [0xf4; 4096];

fn pte(pfn: u64, flags: u64) -> u64 {
    (pfn << 12) | flags
}

/// A small domain in pfns: 0 L4, 1 L3, 2 L2, 3 L1 (all read-only), 4 start info, 5 P2M, 6 code, 7 stack,
/// mapped at the kernel's base address. Returns the image's length in `buf`.
fn synthetic(bad: Bad, buf: &mut [u8]) -> usize {
    let rw = 0x3;
    let ro = 0x1;
    let mut tables = TABLES.lock();
    *tables = [[0; 512]; 4];
    tables[0][511] = pte(1, rw);
    tables[1][510] = pte(2, rw);
    tables[2][0] = pte(3, rw);
    for pfn in 0..NR {
        let table = pfn < 4;
        tables[3][pfn as usize] = pte(pfn, if table { ro } else { rw });
    }
    match bad {
        Bad::MissingPfn => tables[2][1] = pte(12, rw),
        Bad::WritableTable => tables[3][3] = pte(3, rw),
        Bad::UnmappedP2m => tables[3][5] = 0,
        _ => {}
    }
    let mut si = StartInfo::new_zeroed();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = if bad == Bad::StartInfoDisagrees {
        9
    } else {
        NR
    };
    si.mfn_list = BASE + 5 * 4096;
    si.pt_base = BASE;
    let mut ctx = VcpuGuestContext::new_zeroed();
    ctx.user_regs.rip = BASE + 6 * 4096;
    ctx.user_regs.rsp = BASE + 8 * 4096;
    ctx.user_regs.cs = GUEST_KERNEL_CS;
    ctx.user_regs.ss = GUEST_KERNEL_SS;
    ctx.user_regs.rflags = 0x202;
    ctx.kernel_ss = u64::from(GUEST_KERNEL_SS);
    ctx.ctrlreg[3] = if bad == Bad::OtherBase { 1 << 12 } else { 0 };
    if bad == Bad::RingZeroSelector {
        ctx.user_regs.ds = 0x8;
    }
    let dr = DomainRecord {
        nr_pages: if bad == Bad::NoPages { 0 } else { NR },
        max_pages: NR,
        start_info_pfn: if bad == Bad::NoStartInfo { 11 } else { 4 },
        base_pfn: 0,
        source: 77,
        saved_at_ns: 0,
    };
    let mut ports = [0u8; 48];
    let timer = PortRecord {
        port: if bad == Bad::PortZero { 0 } else { 3 },
        state: if bad == Bad::PortState {
            9
        } else {
            EVTCHNSTAT_VIRQ
        },
        a: VIRQ_TIMER,
        b: 0,
    };
    ports[..16].copy_from_slice(&timer.encode());
    // An interdomain channel to domain 0: closed by the restore (reported broken to the guest).
    let peer = PortRecord {
        port: 5,
        state: abi::event_channel::EVTCHNSTAT_INTERDOMAIN,
        a: 0,
        b: 9,
    };
    ports[16..32].copy_from_slice(&peer.encode());
    ports[32..].copy_from_slice(&PortRecord { port: 4, ..timer }.encode());
    let nports = if bad == Bad::VirqTwice { 48 } else { 32 };
    let mut go = || -> Result<usize, abi::save::SaveError> {
        let mut e = Encoder::new(buf)?;
        e.record(RecordKind::Domain, &[&dr.encode()])?;
        e.record(RecordKind::Vcpu, &[ctx.as_bytes()])?;
        e.record(RecordKind::EventChannels, &[&ports[..nports]])?;
        for (pfn, t) in tables.iter().enumerate() {
            let level = 4 - pfn as u64;
            let word = if pfn == 0 { level | PT_PINNED } else { level };
            let word = if bad == Bad::Level5 && pfn == 1 {
                5
            } else {
                word
            };
            let pfn = pfn as u64;
            e.record(
                RecordKind::PageTable,
                &[&pfn.to_le_bytes(), &word.to_le_bytes(), t.as_bytes()],
            )?;
        }
        let mut start = START.lock();
        start.fill(0);
        start[..core::mem::size_of::<StartInfo>()].copy_from_slice(si.as_bytes());
        for pfn in 4..NR {
            let pfn = match (bad, pfn) {
                (Bad::PfnBeyond, 7) => NR,
                (Bad::PfnTwice, 7) => 6,
                _ => pfn,
            };
            let body: &[u8] = if pfn == 4 { &start[..] } else { &CODE };
            e.record(RecordKind::Page, &[&pfn.to_le_bytes(), body])?;
        }
        e.finish()
    };
    go().unwrap_or(0)
}

/// Store `bytes` as `name`.
fn put(name: &str, bytes: &[u8]) -> Option<Errno> {
    let mut op = XenDomctl::new(XEN_DOMCTL_IMAGE_PUT, 0);
    let mut a = DomctlImage::named(name).unwrap_or_default();
    a.buf = bytes.as_ptr() as u64;
    a.len = bytes.len() as u64;
    op.set_arg(&a);
    domctl(&mut op)
}

/// Restore `name` paused; the new id.
fn restore(name: &str) -> Result<u16, Errno> {
    let mut op = image_cmd(XEN_DOMCTL_RESTORE, 0, name);
    let mut a: DomctlImage = op.arg();
    a.flags = DOMCTL_RESTORE_PAUSED;
    op.set_arg(&a);
    domctl(&mut op).map_or(Ok(op.domain), Err)
}

fn delete(name: &str) -> Option<Errno> {
    domctl(&mut image_cmd(XEN_DOMCTL_IMAGE_DELETE, 0, name))
}

/// `save-hostile`: see the module documentation.
pub fn save_hostile(_cmdline: &str, r: &mut Results) {
    protocol(r);
    images(r);
    out_of_memory(r);
}

fn protocol(r: &mut Results) {
    println!("protocol:");
    let req = |d| domctl(&mut XenDomctl::new(XEN_DOMCTL_SUSPEND_REQUEST, d));
    let resume = |d| domctl(&mut XenDomctl::new(XEN_DOMCTL_RESUMEDOMAIN, d));
    let save = |d, name| domctl(&mut image_cmd(XEN_DOMCTL_SAVE, d, name));
    expect(r, "suspend request to itself", req(0), Some(Errno::EINVAL));
    expect(
        r,
        "suspend request to no domain",
        req(77),
        Some(Errno::ESRCH),
    );
    expect(r, "save of no domain", save(77, "x"), Some(Errno::ESRCH));
    // The guest's side: SHUTDOWN_suspend must name its own start-info frame (else it is refused and the
    // domain runs on).
    let s = abi::xen::SchedShutdown {
        reason: abi::sched::SHUTDOWN_SUSPEND,
    };
    for (what, rdx) in [
        ("SHUTDOWN_suspend naming frame 0", 0),
        ("SHUTDOWN_suspend naming a frame beyond memory", 1 << 40),
        (
            "SHUTDOWN_suspend naming a frame number above 2^32",
            (1 << 32) | 0x100,
        ),
    ] {
        let got = raw(
            nr::SCHED_OP,
            [abi::sched::SCHEDOP_SHUTDOWN, &raw const s as u64, rdx, 0, 0],
        );
        expect(
            r,
            what,
            if got < 0 { Errno::from_ret(got) } else { None },
            Some(Errno::EINVAL),
        );
    }
    // A domain whose kernel never bound VIRQ_SUSPEND cannot be saved.
    match create(2048, "test=idle-forever", DOMCTL_CREATE_PAUSED) {
        Ok(d) => {
            expect(
                r,
                "suspend request to a domain that cannot suspend",
                req(d),
                Some(Errno::EOPNOTSUPP),
            );
            expect(
                r,
                "save of a domain that has not suspended",
                save(d, "x"),
                Some(Errno::EINVAL),
            );
            expect(
                r,
                "resume of a domain that is not suspended",
                resume(d),
                Some(Errno::EINVAL),
            );
            expect(r, "destroy it", destroy(d), None);
        }
        Err(e) => expect(r, "create an idle domain", Some(e), None),
    }
    // A shell domain suspends when asked.
    let d = match create(4096, "shell", 0) {
        Ok(d) => d,
        Err(e) => return expect(r, "create a shell domain", Some(e), None),
    };
    let bound = wait_for(20_000, || req(d) != Some(Errno::EOPNOTSUPP));
    expect(
        r,
        "a shell domain takes the request",
        (!bound).then_some(Errno::ETIMEDOUT),
        None,
    );
    expect(
        r,
        "a second request at once: the same domain saved twice",
        req(d),
        Some(Errno::EBUSY),
    );
    let suspended = wait_for(20_000, || flags_of(d) & XEN_DOMINF_SHUTDOWN != 0);
    expect(
        r,
        "it suspends (shut down, reason suspend)",
        (!suspended).then_some(Errno::ETIMEDOUT),
        None,
    );
    expect(
        r,
        "a request to a suspended domain",
        req(d),
        Some(Errno::EBUSY),
    );
    expect(
        r,
        "unpause of a suspended domain (only resumedomain continues it)",
        domctl(&mut XenDomctl::new(
            abi::domctl::XEN_DOMCTL_UNPAUSEDOMAIN,
            d,
        )),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "save under a bad name",
        save(d, "a b"),
        Some(Errno::EINVAL),
    );
    expect(r, "save as 'real'", save(d, "real"), None);
    expect(
        r,
        "save under the same name again",
        save(d, "real"),
        Some(Errno::EEXIST),
    );
    expect(r, "resume it in place", resume(d), None);
    expect(r, "resume it again", resume(d), Some(Errno::EINVAL));
    expect(r, "destroy it", destroy(d), None);
    expect(
        r,
        "save of the destroyed domain",
        save(d, "y"),
        Some(Errno::ESRCH),
    );
    expect(
        r,
        "restore an unknown image",
        restore("nope").err(),
        Some(Errno::ENOENT),
    );
    match restore("real") {
        Ok(n) => {
            expect(r, "restore the real image (paused)", None, None);
            expect(r, "destroy the restored domain", destroy(n), None);
        }
        Err(e) => expect(r, "restore the real image", Some(e), None),
    }
}

fn images(r: &mut Results) {
    println!("images:");
    let mut buf = BUF.lock();
    let before = free_bytes();
    let len = synthetic(Bad::None, &mut buf[..]);
    expect(
        r,
        "store a small valid image",
        put("small", &buf[..len]),
        None,
    );
    match restore("small") {
        Ok(d) => {
            expect(r, "restore it (paused): validated, audited", None, None);
            expect(r, "destroy it", destroy(d), None);
        }
        Err(e) => expect(r, "restore the small valid image", Some(e), None),
    }
    expect(r, "drop it", delete("small"), None);
    expect(r, "drop it again", delete("small"), Some(Errno::ENOENT));
    expect(
        r,
        "free memory as before",
        (free_bytes() != before).then_some(Errno::EIO),
        None,
    );
    // Refused by the codec when stored.
    let valid: &[u8] = &buf[..len];
    {
        let mut copy = START.lock();
        for (i, b) in copy.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151) ^ 0x5a;
        }
        expect(r, "garbage", put("g", &copy[..]), Some(Errno::EINVAL));
    }
    expect(
        r,
        "a header alone",
        put("g", &valid[..32]),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "shorter than a header",
        put("g", &valid[..31]),
        Some(Errno::EINVAL),
    );
    for cut in [len - 1, len - 4096, len / 2, 40] {
        expect(
            r,
            "a truncated image",
            put("g", &valid[..cut]),
            Some(Errno::EINVAL),
        );
    }
    drop(buf);
    for at in [9usize, 100, 5000, 20_000, len - 1] {
        let mut b = BUF.lock();
        b[at] ^= 0x10;
        expect(
            r,
            "one bit flipped",
            put("g", &b[..len]),
            Some(Errno::EINVAL),
        );
        b[at] ^= 0x10;
    }
    {
        let mut b = BUF.lock();
        b[8] = 2;
        expect(r, "version 2", put("g", &b[..len]), Some(Errno::EINVAL));
        b[8] = 1;
    }
    // Stored (the checksum is right), refused by the restore, nothing left behind.
    let cases = [
        (Bad::NoPages, "no pages (P2M length 0)"),
        (Bad::PfnBeyond, "a pfn beyond the P2M"),
        (Bad::PfnTwice, "a pfn twice"),
        (Bad::Level5, "a page table of level 5"),
        (Bad::MissingPfn, "a table naming a pfn the image lacks"),
        (Bad::WritableTable, "an L1 mapping a page table writable"),
        (Bad::OtherBase, "a vCPU on another base"),
        (Bad::RingZeroSelector, "a vCPU with a ring-0 data selector"),
        (Bad::NoStartInfo, "start info at a pfn the image lacks"),
        (
            Bad::StartInfoDisagrees,
            "start info disagreeing with the image",
        ),
        (Bad::PortState, "an unknown event-channel state"),
        (Bad::PortZero, "event channel port 0"),
        (Bad::VirqTwice, "one VIRQ on two ports"),
        (Bad::UnmappedP2m, "a P2M that is not mapped"),
    ];
    for (bad, what) in cases {
        let before = free_bytes();
        let mut b = BUF.lock();
        let n = synthetic(bad, &mut b[..]);
        let stored = put("hostile", &b[..n]);
        drop(b);
        if stored.is_some() {
            expect(r, what, stored, None);
            continue;
        }
        let got = restore("hostile");
        if let Ok(d) = got {
            let _ = destroy(d);
        }
        expect(r, what, got.err(), Some(Errno::EINVAL));
        let _ = delete("hostile");
        expect(
            r,
            "  and the machine's free memory is what it was",
            (free_bytes() != before).then_some(Errno::EIO),
            None,
        );
    }
}

fn out_of_memory(r: &mut Results) {
    println!("memory:");
    // Fill the machine with paused domains until the real image (about 4 MiB) no longer fits.
    let mut big: heapless::Vec<u16, 8> = heapless::Vec::new();
    while free_bytes() > 3 << 20 && !big.is_full() {
        let kb = ((free_bytes() >> 10) - 1024).clamp(2048, abi::domctl::MAX_DOMAIN_MEM_KB) & !3;
        match create(kb, "test=idle-forever", DOMCTL_CREATE_PAUSED) {
            Ok(d) => {
                let _ = big.push(d);
            }
            Err(_) => break,
        }
    }
    expect(
        r,
        "restore without enough memory",
        restore("real").err(),
        Some(Errno::ENOMEM),
    );
    for d in big {
        let _ = destroy(d);
    }
    match restore("real") {
        Ok(d) => {
            expect(r, "with the memory back, the restore fits", None, None);
            let _ = destroy(d);
        }
        Err(e) => expect(r, "with the memory back, the restore fits", Some(e), None),
    }
    expect(r, "drop the real image", delete("real"), None);
}
