//! Scenario `test=logdirty-hostile` (domain 0, with the image `guest` kept): `XEN_DOMCTL_SHADOW_OP`'s
//! log-dirty operations refusing bad requests, and the mechanism seen from domain 0.
//!
//! - Refusals: on itself (-EINVAL), on no domain (-ESRCH), `CLEAN` / `PEEK` while off (-EINVAL), an unknown
//!   operation (-EINVAL), `ENABLE` twice (-EINVAL, Xen's answer), `ENABLE` on a second domain while one
//!   has it (-EBUSY), a non-zero `mode` (-EINVAL), bitmaps at a non-canonical, a hypervisor, an unmapped
//!   and a read-only address (-EFAULT, and nothing cleared: the pages are reported by the next `CLEAN`), a
//!   huge `pages` (clamped to `LOGDIRTY_MAX_PAGES`), `OFF` while off (0). A domain destroyed with
//!   log-dirty on does not keep it (another domain can enable it afterwards).
//! - Mechanism: a domain running `logdirty-writer` (which prints the pfns of the pages it keeps writing and
//!   of the pages next to them it never writes) gets log-dirty; while it is paused a `CLEAN` reports at most
//!   the page the hypervisor holds for it (shared info); after it ran, the reported pfns are printed
//!   (`logdirty: running harvest: ...`) and the QEMU test checks that they include every written page and
//!   none of the untouched ones.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use abi::domctl::{
    DomctlCreate, LOGDIRTY_MAX_PAGES, SHADOW_OP_CLEAN, SHADOW_OP_ENABLE_LOGDIRTY, SHADOW_OP_OFF,
    SHADOW_OP_PEEK, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_SHADOW_OP, XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl, XenDomctlShadowOp,
};
use abi::errno::Errno;
use abi::hypercall::nr;

use crate::mm::KERNEL_VIRT_BASE;
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

fn domctl(op: &mut XenDomctl) -> Option<Errno> {
    let r = raw(nr::DOMCTL, [op as *mut XenDomctl as u64, 0, 0, 0, 0]);
    if r < 0 { Errno::from_ret(r) } else { None }
}

fn expect(r: &mut Results, what: &str, got: Option<Errno>, want: Option<Errno>) {
    if r.check(got == want) {
        println!("  ok   {what}: {got:?}");
    } else {
        println!("  FAIL {what}: {got:?}, expected {want:?}");
    }
}

/// One shadow operation on `dom`: (error, the argument as it came back).
fn shadow(dom: u16, sop: XenDomctlShadowOp) -> (Option<Errno>, XenDomctlShadowOp) {
    let mut op = XenDomctl::new(XEN_DOMCTL_SHADOW_OP, dom);
    op.set_arg(&sop);
    let e = domctl(&mut op);
    (e, op.arg())
}

fn sop(op: u32) -> XenDomctlShadowOp {
    XenDomctlShadowOp {
        op,
        ..XenDomctlShadowOp::default()
    }
}

fn clean_into(dom: u16, op: u32, map: &mut [u8]) -> (Option<Errno>, XenDomctlShadowOp) {
    shadow(
        dom,
        XenDomctlShadowOp {
            op,
            dirty_bitmap: map.as_mut_ptr() as u64,
            pages: map.len() as u64 * 8,
            ..XenDomctlShadowOp::default()
        },
    )
}

fn create(kb: u64, cmdline: &str) -> Result<u16, Errno> {
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(&DomctlCreate::new("guest", kb, cmdline, 0).unwrap_or_default());
    domctl(&mut op).map_or(Ok(op.domain), Err)
}

fn control(cmd: u32, d: u16) -> Option<Errno> {
    domctl(&mut XenDomctl::new(cmd, d))
}

fn sleep_ms(ms: u64) {
    let _ = crate::time::sleep(ms * 1_000_000);
}

/// The bitmap: 64 Ki pfns.
static MAP: [AtomicU64; LOGDIRTY_MAX_PAGES as usize / 64] =
    [const { AtomicU64::new(0) }; LOGDIRTY_MAX_PAGES as usize / 64];

fn map_bytes() -> &'static mut [u8] {
    // SAFETY: MAP is only used by this scenario, on its one vCPU, as a plain byte buffer the hypervisor
    // writes; no reference to its atomics is alive meanwhile.
    unsafe { core::slice::from_raw_parts_mut(MAP.as_ptr() as *mut u8, MAP.len() * 8) }
}

fn dirty_pfns(map: &[u8]) -> impl Iterator<Item = u64> + '_ {
    (0..map.len() as u64 * 8).filter(|&p| map[(p / 8) as usize] & (1 << (p % 8)) != 0)
}

/// `logdirty-hostile`: see the module documentation.
pub fn logdirty_hostile(_cmdline: &str, r: &mut Results) {
    println!("refusals:");
    expect(
        r,
        "enable on itself",
        shadow(0, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "enable on no domain",
        shadow(77, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        Some(Errno::ESRCH),
    );
    let w = match create(4096, "test=logdirty-writer") {
        Ok(d) => d,
        Err(e) => {
            expect(r, "create the writer", Some(e), None);
            return;
        }
    };
    let other = create(2048, "test=idle-forever").unwrap_or(0);
    sleep_ms(600);
    let map = map_bytes();
    expect(
        r,
        "CLEAN while off",
        clean_into(w, SHADOW_OP_CLEAN, map).0,
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "PEEK while off",
        clean_into(w, SHADOW_OP_PEEK, map).0,
        Some(Errno::EINVAL),
    );
    expect(r, "OFF while off", shadow(w, sop(SHADOW_OP_OFF)).0, None);
    expect(
        r,
        "unknown operation 99",
        shadow(w, sop(99)).0,
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "pause the writer",
        control(XEN_DOMCTL_PAUSEDOMAIN, w),
        None,
    );
    expect(
        r,
        "enable",
        shadow(w, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        None,
    );
    expect(
        r,
        "enable twice",
        shadow(w, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "enable on a second domain while one has it",
        shadow(other, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        Some(Errno::EBUSY),
    );
    let mut bad_mode = sop(SHADOW_OP_CLEAN);
    bad_mode.mode = 1;
    expect(
        r,
        "CLEAN with a mode",
        shadow(w, bad_mode).0,
        Some(Errno::EINVAL),
    );
    for (what, at) in [
        ("a non-canonical bitmap", 0x8000_0000_0000_0000u64),
        ("a bitmap in the hypervisor", 0xffff_8000_0010_0000),
        ("an unmapped bitmap", 0x1000),
        (
            "a read-only bitmap (kernel text)",
            logdirty_hostile as fn(&str, &mut Results) as usize as u64,
        ),
    ] {
        let mut s = sop(SHADOW_OP_CLEAN);
        s.dirty_bitmap = at;
        s.pages = 4096;
        expect(r, what, shadow(w, s).0, Some(Errno::EFAULT));
    }
    let (e, out) = shadow(
        w,
        XenDomctlShadowOp {
            op: SHADOW_OP_PEEK,
            dirty_bitmap: map.as_mut_ptr() as u64,
            pages: u64::MAX,
            ..XenDomctlShadowOp::default()
        },
    );
    expect(r, "PEEK with a huge page count", e, None);
    if !r.check(out.pages == LOGDIRTY_MAX_PAGES) {
        println!("  FAIL pages not clamped: {}", out.pages);
    }
    // The refused CLEANs cleared nothing: the first real one reports the pages the writer dirtied before
    // it was paused (at least its own buffer pages are not there yet: it was paused before enable).
    println!("mechanism:");
    map.fill(0);
    let (e, first) = clean_into(w, SHADOW_OP_CLEAN, map);
    expect(r, "CLEAN (paused)", e, None);
    map.fill(0);
    let (e, paused) = clean_into(w, SHADOW_OP_CLEAN, map);
    expect(r, "CLEAN again, still paused", e, None);
    println!(
        "logdirty: paused harvests: {} then {} pages",
        first.dirty_count, paused.dirty_count
    );
    if !r.check(paused.dirty_count <= 1) {
        println!(
            "  FAIL a paused domain dirtied {} pages",
            paused.dirty_count
        );
    }
    expect(
        r,
        "unpause the writer",
        control(XEN_DOMCTL_UNPAUSEDOMAIN, w),
        None,
    );
    sleep_ms(400);
    expect(
        r,
        "pause it again",
        control(XEN_DOMCTL_PAUSEDOMAIN, w),
        None,
    );
    map.fill(0);
    let (e, ran) = clean_into(w, SHADOW_OP_CLEAN, map);
    expect(r, "CLEAN after it ran", e, None);
    let mut line: heapless::String<2048> = heapless::String::new();
    for p in dirty_pfns(map) {
        let _ = write!(line, " {p}");
    }
    println!(
        "logdirty: running harvest: {} pages:{line}",
        ran.dirty_count
    );
    if !r.check(ran.dirty_count > paused.dirty_count && ran.fault_count > 0) {
        println!(
            "  FAIL nothing seen: {} pages, {} faults",
            ran.dirty_count, ran.fault_count
        );
    }
    expect(r, "unpause", control(XEN_DOMCTL_UNPAUSEDOMAIN, w), None);
    println!("teardown:");
    expect(
        r,
        "destroy the writer with log-dirty on",
        control(XEN_DOMCTL_DESTROYDOMAIN, w),
        None,
    );
    expect(
        r,
        "then enable on the other domain",
        shadow(other, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        None,
    );
    expect(r, "OFF", shadow(other, sop(SHADOW_OP_OFF)).0, None);
    expect(
        r,
        "CLEAN after OFF",
        clean_into(other, SHADOW_OP_CLEAN, map).0,
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "destroy the other",
        control(XEN_DOMCTL_DESTROYDOMAIN, other),
        None,
    );
}

/// `logdirty-nonpv` (domain 0, booted beside a domain 1 of another kind, e.g. an emulated shell): log-dirty on a domain that is not
/// PV is `-EOPNOTSUPP` (its memory is not mapped through validated PV tables), and stays off.
pub fn logdirty_nonpv(_cmdline: &str, r: &mut Results) {
    sleep_ms(200);
    expect(
        r,
        "enable on a domain that is not PV",
        shadow(1, sop(SHADOW_OP_ENABLE_LOGDIRTY)).0,
        Some(Errno::EOPNOTSUPP),
    );
    expect(
        r,
        "CLEAN on it",
        clean_into(1, SHADOW_OP_CLEAN, map_bytes()).0,
        Some(Errno::EINVAL),
    );
    expect(r, "destroy it", control(XEN_DOMCTL_DESTROYDOMAIN, 1), None);
}

/// Pages the writer keeps writing (even ones) next to pages it never touches (odd ones).
#[repr(C, align(4096))]
struct Pages([AtomicU64; 8 * 512]);

static PAGES: Pages = Pages([const { AtomicU64::new(0) }; 8 * 512]);

/// `logdirty-writer` (a domU of `logdirty-hostile`): print the pfns of pages 0, 2, 4, 6 of a buffer (which
/// it then writes every 20 ms) and of pages 1, 3, 5, 7 (never written), then write until destroyed.
pub fn logdirty_writer(_cmdline: &str, _r: &mut Results) {
    let pfn = |i: usize| (PAGES.0[i * 512].as_ptr() as u64 - KERNEL_VIRT_BASE) >> 12;
    let mut line: heapless::String<256> = heapless::String::new();
    let _ = write!(line, "logdirty-writer: writes");
    for i in (0..8).step_by(2) {
        let _ = write!(line, " {}", pfn(i));
    }
    let _ = write!(line, " untouched");
    for i in (1..8).step_by(2) {
        let _ = write!(line, " {}", pfn(i));
    }
    println!("{line}");
    let mut n = 0u64;
    loop {
        n += 1;
        for i in (0..8).step_by(2) {
            PAGES.0[i * 512 + (n as usize % 512)].store(n, Ordering::Relaxed);
        }
        if crate::time::sleep(20_000_000).is_err() {
            return;
        }
    }
}
