//! Entry-path isolation: the IST-stack leak pair (`ist-victim`, `ist-attacker`), the null-SS CPL-0
//! sequences (`null-ss`) and the documented selectors in ring 1 and ring 3 (`selectors`).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::layout::{ENTRY_REGION_VA, ENTRY_STACKS_VA, GUEST_KERNEL_CS, GUEST_KERNEL_SS};
use abi::xen::{SEGBASE_FS, SEGBASE_GS_USER};

use crate::arch::x86_64::isolation_probes as iso;
use crate::arch::x86_64::trap_probes as probes;
use crate::boot::facts;
use crate::cmdline::{option, parse_u64};
use crate::platform::xen_pv::XEN_PV;
use crate::println;
use crate::trap::user::UserSpace;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};
use crate::xtf::{Outcome, Results};

use super::memory::check;

/// The victim's secret register values are `SECRET_BASE + i`; the attacker looks for any of them.
const SECRET_BASE: u64 = 0x5ec2_e7ba_5e00_0000;
/// Mask selecting the part every secret shares.
const SECRET_MASK: u64 = !0xff;
/// The attacker's own marker (its registers at a yield), which its scan must find on the entry stack.
const ATTACKER_MARK: u64 = 0xa77a_c4e2_0000_4d4b;
/// Bytes of the entry region the attacker scans: everything the region's one L1 can map (2 MiB),
/// code, tables and every stack slot.
const SCAN_SPAN: u64 = 0x20_0000;

fn rounds(cmdline: &str, default: u64) -> u64 {
    option(cmdline, "rounds")
        .and_then(parse_u64)
        .unwrap_or(default)
}

static DB_HITS: AtomicU64 = AtomicU64::new(0);

fn count_db(_: &mut TrapFrame, _: &TrapCtx) -> Disposition {
    DB_HITS.fetch_add(1, Ordering::SeqCst);
    Disposition::Resume
}

/// Domain 1 of the pair: single-step (#DB, delivered on the hypervisor's IST stack) with secrets in eleven
/// registers, then yield with them still loaded, `rounds` times. The other IST vectors cannot be raised by
/// a ring-1 guest: `int $2`/`int $8`/`int $18` hit DPL-0 gates (#GP on the entry stack), NMI and #MC come
/// from the platform, #DF needs a fault while delivering one; ICEBP is #UD under QEMU's TCG.
pub fn ist_victim(cmdline: &str, r: &mut Results) {
    let n = rounds(cmdline, 150);
    let secrets: [u64; 11] = core::array::from_fn(|i| SECRET_BASE + i as u64);
    let _g = HANDLERS.scoped(1, count_db);
    println!(
        "victim: {n} rounds of 9+ #DB with secrets {SECRET_BASE:#x}+0..10 in RBX RBP RDX R8-R15"
    );
    for _ in 0..n {
        // SAFETY: the routine saves and restores the callee-saved registers it loads; the #DB handler above
        // resumes each trap; the yield is an ordinary hypercall.
        unsafe { iso::guest_ist_victim(&secrets) };
    }
    let hits = DB_HITS.load(Ordering::SeqCst);
    check(
        r,
        &alloc::format!("{hits} debug exceptions taken (at least 9 per round)"),
        hits >= 9 * n,
    );
}

static PROBE_FAULTED: AtomicU64 = AtomicU64::new(0);

fn skip_read(f: &mut TrapFrame, _: &TrapCtx) -> Disposition {
    let (insn, next) = (
        &raw const probes::guest_probe_pf_insn as u64,
        &raw const probes::guest_probe_pf_next as u64,
    );
    if f.rip != insn {
        return Disposition::Unhandled;
    }
    PROBE_FAULTED.fetch_add(1, Ordering::SeqCst);
    f.rip = next;
    Disposition::Resume
}

/// The readable pages of the entry region: the L4 slot must be present in this domain's own L4 (the
/// deeper tables are the hypervisor's frames, which a guest may not map), then each page is probed with a
/// read whose page fault this kernel skips.
fn readable_pages(out: &mut alloc::vec::Vec<u64>) -> Result<(), &'static str> {
    let l4 = facts().start_info.pt_base as *const u64;
    let slot = ((ENTRY_REGION_VA >> 39) & 0x1ff) as usize;
    // SAFETY: the L4 is mapped read-only at pt_base by the domain builder.
    let e = unsafe { l4.add(slot).read_volatile() };
    if e & 1 == 0 {
        return Err("the entry region's L4 slot is not present");
    }
    let _g = HANDLERS.scoped(14, skip_read);
    let mut va = ENTRY_REGION_VA;
    while va < ENTRY_REGION_VA + SCAN_SPAN {
        let before = PROBE_FAULTED.load(Ordering::SeqCst);
        // SAFETY: a read in the hypervisor's reserved range; if it faults, `skip_read` resumes after it.
        let _ = unsafe { probes::guest_probe_pf(va) };
        if PROBE_FAULTED.load(Ordering::SeqCst) == before {
            out.push(va);
        }
        va += 4096;
    }
    Ok(())
}

/// Every u64 of the readable pages that matches `pred`: (address, value).
fn scan(pages: &[u64], pred: impl Fn(u64) -> bool, hits: &mut alloc::vec::Vec<(u64, u64)>) {
    for &p in pages {
        for i in 0..512u64 {
            let a = p + i * 8;
            // SAFETY: the page was found readable and the entry region's mappings never change.
            let v = unsafe { (a as *const u64).read_volatile() };
            if pred(v) {
                hits.push((a, v));
            }
        }
    }
}

/// Domain 0 of the pair: yield, then read every readable byte of the entry region and entry stacks and
/// look for the victim's secrets, `rounds` times; first prove the scan sees its own frame.
pub fn ist_attacker(cmdline: &str, r: &mut Results) {
    let n = rounds(cmdline, 150);
    let mut pages = alloc::vec::Vec::new();
    if let Err(e) = readable_pages(&mut pages) {
        println!("{e}");
        r.report(Outcome::Error);
        return;
    }
    let stacks = pages.iter().filter(|&&p| p >= ENTRY_STACKS_VA).count();
    println!(
        "attacker: {} readable pages in the entry region ({} of them entry/IST stack pages)",
        pages.len(),
        stacks
    );
    check(r, "some entry-stack pages are readable", stacks > 0);
    // Self-check: after a yield with a marker in R12-R15, the scan must find the marker (this domain's
    // own frame on the entry stack), so a scan that finds no secret means something.
    // SAFETY: an ordinary yield hypercall; the routine restores what it changes.
    unsafe { iso::guest_marked_yield(ATTACKER_MARK) };
    let mut own = alloc::vec::Vec::new();
    scan(&pages, |v| v == ATTACKER_MARK, &mut own);
    check(
        r,
        &alloc::format!(
            "the scan finds this domain's own frame ({} marker words)",
            own.len()
        ),
        !own.is_empty(),
    );
    let mut found = alloc::vec::Vec::new();
    let mut rounds_leaking = 0u64;
    for _ in 0..n {
        let _ = crate::boot::platform().yield_cpu();
        let before = found.len();
        scan(&pages, |v| v & SECRET_MASK == SECRET_BASE, &mut found);
        if found.len() > before {
            rounds_leaking += 1;
        }
        if found.len() > 64 {
            found.truncate(64);
        }
    }
    for (a, v) in found.iter().take(8) {
        println!("  LEAK: the victim's secret {v:#x} at {a:#x}");
    }
    check(
        r,
        &alloc::format!(
            "{n} scans of {} pages found no secret of the other domain ({rounds_leaking} rounds leaked)",
            pages.len()
        ),
        found.is_empty(),
    );
}

static RESUME_AT: AtomicU64 = AtomicU64::new(0);
static NULL_SS_TRAPS: AtomicU64 = AtomicU64::new(0);

fn null_ss_fault(f: &mut TrapFrame, _: &TrapCtx) -> Disposition {
    NULL_SS_TRAPS.fetch_add(1, Ordering::SeqCst);
    f.rip = RESUME_AT.load(Ordering::SeqCst);
    Disposition::Resume
}

fn null_ss_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    let after = &raw const iso::guest_null_ss_after_syscall as u64;
    if f.rip != after {
        return crate::trap::dispatch::harness_syscall(f, ctx);
    }
    // The SYSCALL came from this kernel's own code: resume it in ring 1 on its own stack.
    NULL_SS_TRAPS.fetch_add(1, Ordering::SeqCst);
    f.cs = u64::from(GUEST_KERNEL_CS);
    f.ss = u64::from(GUEST_KERNEL_SS);
    Disposition::Resume
}

/// Load a null SS in ring 1 (QEMU TCG then runs the code at CPL 0), then `via` = int82 | syscall | fault |
/// priv | badstack. Under that defect the hypervisor must crash this domain ("entered the hypervisor at
/// CPL 0") for int82, fault, priv and badstack (RSP = 8, then a fault: #DF); a SYSCALL carries no trace of
/// the caller's CPL and arrives as an ordinary system call. On a faithful CPU every variant stays in ring
/// 1 and the scenario reports SUCCESS, except badstack, which the hypervisor cannot deliver (the domain is
/// crashed: "fault while delivering").
pub fn null_ss(cmdline: &str, r: &mut Results) {
    let via = option(cmdline, "via").unwrap_or("int82");
    let (code, vector) = match via {
        "int82" => (0, None),
        "syscall" => (1, Some(crate::trap::frame::VECTOR_SYSCALL)),
        "fault" => (2, Some(6)),
        "priv" => (3, Some(13)),
        "badstack" => (4, Some(6)),
        _ => {
            println!("via={via}: expected int82, syscall, fault, priv or badstack");
            r.report(Outcome::Error);
            return;
        }
    };
    RESUME_AT.store(&raw const iso::guest_null_ss_done as u64, Ordering::SeqCst);
    let _g = vector.map(|v| {
        let h = if code == 1 {
            null_ss_syscall
        } else {
            null_ss_fault
        };
        HANDLERS.scoped(v, h)
    });
    println!("loading a null SS in ring 1, then {via}");
    // SAFETY: the routine restores SS before returning; a fault in it is resumed at its end by the
    // handler above; under QEMU TCG's defect the hypervisor crashes this domain instead.
    let v = unsafe { iso::guest_null_ss(code) };
    let traps = NULL_SS_TRAPS.load(Ordering::SeqCst);
    println!(
        "back in ring {} (result {v:#x}, {traps} trap(s)): the CPU kept this code at CPL 1",
        crate::arch::read_cs() & 3
    );
    match code {
        0 => check(
            r,
            "int 0x82 from a null SS is an ordinary hypercall (xen_version)",
            (v as i64) > 0,
        ),
        _ => check(
            r,
            &alloc::format!("{via}: delivered to this kernel once"),
            traps == 1,
        ),
    };
}

/// Load each documented selector into DS, ES, FS and GS (and the stack selector into SS) in ring 1, then
/// run a ring-3 program doing the same with the user selectors; nothing may fault. The FS and GS bases,
/// which a selector load clears, are set again afterwards.
pub fn selectors(_: &str, r: &mut Results) {
    let _g = HANDLERS.scoped(14, |_, _| Disposition::Unhandled);
    // SAFETY: the routine restores DS, ES and SS and leaves FS and GS null; no handler resumes into it.
    let loads = unsafe { iso::guest_load_selectors_ring1() };
    check(
        r,
        &alloc::format!("ring 1: {loads} selector loads, no fault"),
        loads == 17,
    );
    static MARK: u64 = 0x5e1e_c7ed;
    let fs = XEN_PV.set_segment_base(SEGBASE_FS, &raw const MARK as u64);
    // SAFETY: the FS base is this kernel's own static just set through the hypercall.
    let seen = unsafe { probes::guest_read_fs(0) };
    check(
        r,
        &alloc::format!("FS base set again after the loads ({fs:?}), reads {seen:#x}"),
        fs.is_ok() && seen == MARK,
    );
    let _ = XEN_PV.set_segment_base(SEGBASE_FS, 0);
    let _ = XEN_PV.set_segment_base(SEGBASE_GS_USER, 0);
    let mut us = match UserSpace::new(iso::selectors_user_blob()) {
        Ok(us) => us,
        Err(e) => {
            println!("user space: {e:?}");
            r.report(Outcome::Error);
            return;
        }
    };
    let res = us.run(0);
    drop(us);
    check(
        r,
        &alloc::format!("ring 3: user selectors in DS, ES, FS, GS, SS, then exit: {res:?}"),
        matches!(res, Ok(0x5e1ec7)),
    );
}
