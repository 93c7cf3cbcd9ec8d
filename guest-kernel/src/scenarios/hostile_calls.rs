//! Hostile hypercall arguments of the catalogue (issue 10 §5) not covered elsewhere, one boot, nothing
//! crashed (`hostile-calls`):
//! - `set_segment_base` with non-canonical and hypervisor-range bases: -EINVAL and the old base stays;
//! - `iret` frames with every hostile RFLAGS bit, hypervisor and null selectors, odd RSPs: sanitized;
//! - a multicall mixing page-table updates, TLB flushes and bad entries: per-entry results as Xen
//!   defines them (a failed entry does not stop the batch), and the mapping seen afterwards;
//! - event-channel bounds and ownership: bad vCPUs, bad VIRQs, loopback binding rules, unknown commands,
//!   bad argument pointers;
//! - `console_io` lengths and signs, buffers straddling into unmapped memory, reads (domain 0).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::console::{CONSOLE_IO_MAX, CONSOLEIO_READ, CONSOLEIO_WRITE};
use abi::errno::Errno;
use abi::event_channel::*;
use abi::hypercall::nr;
use abi::layout::{ENTRY_REGION_VA, GUEST_KERNEL_CS, GUEST_KERNEL_SS, RESERVED_VA_START};
use abi::mm::{MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_LOCAL, UVMF_INVLPG, UVMF_NONE};
use abi::types::Pfn;
use abi::version::XENVER_EXTRAVERSION;
use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER};

use crate::arch::x86_64::hostile_probes::{self as hp, Probe};
use crate::boot::platform;
use crate::mm::MmEnv;
use crate::mm::kernel::KernelEnv;
use crate::mm::physmap_va;
use crate::mm::pte::{Pte, PteFlags};
use crate::platform::xen_pv::{XEN_PV, multicall, normal_update, raw};
use crate::println;
use crate::trap::dispatch::traps_ready;
use crate::trap::frame::{RFLAGS_IF, RFLAGS_IOPL, RFLAGS_NT};
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};
use crate::xtf::{Outcome, Results};

use super::memory::{HV_MFN, Probe as MapProbe, check, expect, mm_env};

const HV_CS: u64 = 0x08;
const HV_DS: u64 = 0x10;
const TSS_SEL: u64 = 0x40;
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;

static PF_HITS: AtomicU64 = AtomicU64::new(0);
static PF_RESUME: AtomicU64 = AtomicU64::new(0);
static PF_EXPECT: AtomicU64 = AtomicU64::new(0);
const PF_MARK: u64 = 0xfa17_fa17;

/// A page fault at one of the read probes: resume after it with RAX = `PF_MARK`.
fn read_fault(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user || f.rip != PF_EXPECT.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    PF_HITS.fetch_add(1, Ordering::SeqCst);
    f.rax = PF_MARK;
    f.rip = PF_RESUME.load(Ordering::SeqCst);
    Disposition::Resume
}

/// Read the u64 at `addr` through probe `p` (`Read`: plain, `ReadFs`: FS-relative); `None` on a page
/// fault (a #PF handler must be installed: [`read_fault`]).
fn try_read(p: Probe, addr: u64) -> Option<u64> {
    let d = hp::probe(p);
    PF_EXPECT.store(d.insn, Ordering::SeqCst);
    PF_RESUME.store(d.next, Ordering::SeqCst);
    let before = PF_HITS.load(Ordering::SeqCst);
    // SAFETY: the read may fault; `read_fault` resumes the probe after the instruction.
    let v = unsafe { hp::run(p, addr, 0) };
    (PF_HITS.load(Ordering::SeqCst) == before).then_some(v)
}

fn segment_bases(r: &mut Results) {
    println!("set_segment_base:");
    static MARK: [u64; 2] = [0x5e9b_a5e0_0000_0001, 0x5e9b_a5e0_0000_0002];
    let good = &raw const MARK as u64;
    let einval = Err(Errno::EINVAL);
    expect(
        r,
        "FS base = a kernel variable",
        XEN_PV.set_segment_base(SEGBASE_FS, good),
        Ok(()),
    );
    let bad = [
        ("non-canonical 0x0000800000000000", NON_CANONICAL),
        ("non-canonical 0xffff7fffffffffff", 0xffff_7fff_ffff_ffff),
        ("non-canonical u64::MAX >> 1", u64::MAX >> 1),
        ("the entry region", ENTRY_REGION_VA),
        ("the start of the reserved range", RESERVED_VA_START),
        ("the hypervisor's M2P slot", RESERVED_VA_START + 0x1000),
        (
            "the top of the reserved range",
            abi::layout::RESERVED_VA_END - 8,
        ),
    ];
    for which in [SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL] {
        for (what, base) in bad {
            expect(
                r,
                &alloc::format!("segment {which}: base at {what}"),
                XEN_PV.set_segment_base(which, base),
                einval,
            );
        }
    }
    for which in [4u64, 0xffff_ffff, u64::MAX] {
        expect(
            r,
            &alloc::format!("unknown segment {which:#x}"),
            XEN_PV.set_segment_base(which, good),
            einval,
        );
    }
    let g = HANDLERS.scoped(14, read_fault);
    let v = try_read(Probe::ReadFs, 8);
    check(
        r,
        &alloc::format!("the FS base is still the kernel variable (FS:8 reads {v:x?})"),
        v == Some(MARK[1]),
    );
    drop(g);
    let _ = XEN_PV.set_segment_base(SEGBASE_FS, 0);
}

/// `iret` with CS, RFLAGS, SS, RSP; prints and checks the state on arrival with `ok`.
fn iret_case(
    r: &mut Results,
    what: &str,
    (cs, fl, ss, rsp): (u64, u64, u64, u64),
    ok: impl Fn([u64; 4]) -> bool,
) {
    // SAFETY: every case keeps IF, TF and DF clear; the probe restores its own RSP first.
    match unsafe { hp::iret(cs, fl, ss, rsp) } {
        Ok(got) => {
            let [cs, fl, ss, sp] = got;
            check(
                r,
                &alloc::format!(
                    "{what}: resumed with CS {cs:#x}, SS {ss:#x}, RFLAGS {fl:#x}, RSP {sp:#x}"
                ),
                ok(got),
            );
        }
        Err(e) => {
            check(r, &alloc::format!("{what}: refused ({e})"), false);
        }
    }
}

fn iret_frames(r: &mut Results) {
    println!("iret:");
    let enabled = platform().irq_disable();
    let kcs = u64::from(GUEST_KERNEL_CS);
    let kss = u64::from(GUEST_KERNEL_SS);
    let base = 0x2u64;
    const RF: u64 = 1 << 16;
    const VM: u64 = 1 << 17;
    const AC: u64 = 1 << 18;
    const VIF: u64 = 1 << 19;
    const VIP: u64 = 1 << 20;
    const ID: u64 = 1 << 21;
    // Reserved: bits 3, 5, 15 and 22..63.
    const RESERVED: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);
    let ring1 = |g: [u64; 4]| g[0] == kcs && g[2] == kss;
    // The real IF stays set (the guest's IF is virtual), nothing privileged comes back.
    let clean = |fl: u64| {
        fl & (RFLAGS_IOPL | RFLAGS_NT | VM | RF | VIF | VIP | RESERVED) == 0
            && fl & RFLAGS_IF != 0
            && fl & 2 != 0
    };
    iret_case(
        r,
        "every hostile flag (IOPL 3, NT, VM, RF, VIF, VIP, reserved bits), IF clear",
        (
            kcs,
            base | RFLAGS_IOPL | RFLAGS_NT | VM | RF | VIF | VIP | RESERVED,
            kss,
            0,
        ),
        |g| ring1(g) && clean(g[1]),
    );
    iret_case(
        r,
        "AC and ID (the guest's to set) are kept",
        (kcs, base | AC | ID, kss, 0),
        |g| ring1(g) && clean(g[1]) && g[1] & (AC | ID) == AC | ID,
    );
    iret_case(
        r,
        "plain flags again: AC cleared",
        (kcs, base, kss, 0),
        |g| ring1(g) && clean(g[1]) && g[1] & AC == 0,
    );
    let ev = XEN_PV.event_state();
    check(
        r,
        "events stay masked (IF clear in every frame)",
        ev.is_none_or(|e| e.events_masked()),
    );
    for (what, cs, ss) in [
        ("the hypervisor's CS 0x08 and SS 0x10", HV_CS, HV_DS),
        ("the TSS selector as CS and SS", TSS_SEL, TSS_SEL),
        ("null CS and SS", 0, 0),
        ("CS with RPL 0 and a null SS with RPL 1", kcs & !3, 1),
        (
            "a kernel CS with high bits set",
            kcs | (0xffff << 16) | (0xff << 32),
            kss,
        ),
    ] {
        iret_case(r, what, (cs, base, ss, 0), |g| ring1(g) && clean(g[1]));
    }
    // RSP is the guest's own business (Xen does not check it either): it arrives as given, and the
    // first stack access with it would be the guest's fault, not the hypervisor's.
    for (what, sp) in [
        ("a non-canonical RSP", NON_CANONICAL + 0x100),
        ("an RSP in the entry region", ENTRY_REGION_VA + 0x800),
        ("RSP 8", 8),
    ] {
        iret_case(r, what, (kcs, base, kss, sp), |g| ring1(g) && g[3] == sp);
    }
    platform().irq_restore(enabled);
}

fn fill(pfn: Pfn, val: u64) {
    // SAFETY: `pfn` is a free page of this domain that the caller allocated; its physmap alias is a
    // writable page of 512 u64.
    unsafe {
        let p = physmap_va(pfn) as *mut u64;
        for i in 0..512 {
            p.add(i).write_volatile(val);
        }
    }
}

fn multicall_flushes(r: &mut Results) {
    println!("multicall mixing page-table changes, flushes and bad entries:");
    let Some(env) = mm_env(r) else { return };
    let Some(probe) = MapProbe::new(&env, r) else {
        return;
    };
    let pages: [Option<Pfn>; 3] = core::array::from_fn(|_| env.alloc_page());
    let [Some(a), Some(b), Some(c)] = pages else {
        check(r, "three more pages", false);
        for p in pages.into_iter().flatten() {
            env.free_page(p);
        }
        probe.release(&env, r);
        return;
    };
    const A: u64 = 0xaaaa_0000_0000_000a;
    const B: u64 = 0xbbbb_0000_0000_000b;
    const C: u64 = 0xcccc_0000_0000_000c;
    fill(a, A);
    fill(b, B);
    fill(c, C);
    let ro = |env: &KernelEnv, p: Pfn| {
        Pte::new(env.pfn_to_mfn(p), PteFlags::PRESENT | PteFlags::NO_EXECUTE).0
    };
    let hv = Pte::new(HV_MFN, PteFlags::PRESENT | PteFlags::NO_EXECUTE).0;
    let ext = |cmd: u32, arg1: u64| MmuextOp {
        cmd,
        _pad0: 0,
        arg1,
        arg2: 0,
    };
    let to_a = [normal_update(probe.entry, Pte(ro(&env, a)))];
    let b_bad_c: [MmuUpdate; 3] = [
        normal_update(probe.entry, Pte(ro(&env, b))),
        normal_update(probe.entry, Pte(hv)),
        normal_update(probe.entry, Pte(ro(&env, c))),
    ];
    let invlpg = [ext(MMUEXT_INVLPG_LOCAL, probe.va)];
    let invlpg_bad = [ext(MMUEXT_INVLPG_LOCAL, NON_CANONICAL)];
    let flush = [ext(MMUEXT_TLB_FLUSH_LOCAL, 0)];
    let unknown = [ext(99, 0)];
    let (mut done_a, mut done_bbc) = (0u32, 0u32);
    // Warm the TLB with the probe's own frame first.
    let _ = probe.read(0);
    let mut calls = [
        multicall::mmu_update(&to_a, &raw mut done_a),
        multicall::mmuext_op(&invlpg),
        multicall::update_va_mapping(probe.va, hv, UVMF_INVLPG),
        multicall::mmuext_op(&invlpg_bad),
        multicall::mmu_update(&b_bad_c, &raw mut done_bbc),
        multicall::mmuext_op(&unknown),
        multicall::update_va_mapping(NON_CANONICAL, ro(&env, c), UVMF_INVLPG),
        multicall::mmuext_op(&flush),
    ];
    let res = platform().multicall(&mut calls);
    expect(r, "the multicall itself", res, Ok(()));
    let got: [i64; 8] = core::array::from_fn(|i| multicall::result(&calls[i]));
    let want = [
        0,
        0,
        Errno::EPERM.as_ret(),
        Errno::EINVAL.as_ret(),
        Errno::EPERM.as_ret(),
        Errno::ENOSYS.as_ret(),
        Errno::EINVAL.as_ret(),
        0,
    ];
    check(
        r,
        &alloc::format!(
            "per-entry results {got:?} (want {want:?}): bad entries fail alone, later ones still run"
        ),
        got == want,
    );
    check(
        r,
        &alloc::format!(
            "mmu_update progress: {done_a} of 1, {done_bbc} of 3 (stopped at the bad request)"
        ),
        done_a == 1 && done_bbc == 1,
    );
    let seen = probe.read(0);
    check(
        r,
        &alloc::format!("the probe address shows B afterwards ({seen:#x})"),
        seen == B,
    );
    // update_va_mapping without a flush, then INVLPG in the same batch; then mmu_update and a full
    // flush: each time the new frame is what the next read sees.
    let to_c = [normal_update(probe.entry, Pte(ro(&env, c)))];
    let mut done_c = 0u32;
    let mut calls = [
        multicall::update_va_mapping(probe.va, ro(&env, a), UVMF_NONE),
        multicall::mmuext_op(&invlpg),
    ];
    let res = platform().multicall(&mut calls);
    let seen = probe.read(7);
    check(
        r,
        &alloc::format!(
            "update_va_mapping (no flush) + INVLPG: {res:?}, results {} {}, reads A ({seen:#x})",
            calls[0].result as i64,
            calls[1].result as i64
        ),
        res.is_ok() && calls.iter().all(|c| c.result == 0) && seen == A,
    );
    let mut calls = [
        multicall::mmu_update(&to_c, &raw mut done_c),
        multicall::mmuext_op(&flush),
    ];
    let res = platform().multicall(&mut calls);
    let seen = probe.read(511);
    check(
        r,
        &alloc::format!(
            "mmu_update + TLB_FLUSH_LOCAL: {res:?}, done {done_c}, reads C ({seen:#x})"
        ),
        res.is_ok() && calls.iter().all(|c| c.result == 0) && done_c == 1 && seen == C,
    );
    // The same kind of requests made directly: the hypercall entry answers `update_va_mapping` with its
    // light handler when the fast path is armed, while a multicall's entries go through the full
    // dispatch. Each direct result must be the multicall's for the same registers, every one a refusal
    // that changes nothing; then an accepted one takes effect at once.
    let reqs: [(u64, u64, u64); 5] = [
        (probe.va, hv, UVMF_INVLPG),
        (NON_CANONICAL, ro(&env, a), UVMF_INVLPG),
        (ENTRY_REGION_VA, ro(&env, a), UVMF_INVLPG),
        (RESERVED_VA_START, ro(&env, a), UVMF_NONE),
        (probe.va, ro(&env, a), 0xdead),
    ];
    let direct: [i64; 5] = core::array::from_fn(|i| {
        let (va, pte, flags) = reqs[i];
        raw(nr::UPDATE_VA_MAPPING, [va, pte, flags, 0, 0])
    });
    let mut calls: [_; 5] =
        core::array::from_fn(|i| multicall::update_va_mapping(reqs[i].0, reqs[i].1, reqs[i].2));
    let res = platform().multicall(&mut calls);
    let via: [i64; 5] = core::array::from_fn(|i| multicall::result(&calls[i]));
    check(
        r,
        &alloc::format!(
            "direct update_va_mapping refusals {direct:?} = the multicall's {via:?} ({res:?})"
        ),
        res.is_ok() && direct == via && direct.iter().all(|&v| v < 0),
    );
    let seen = probe.read(3);
    check(
        r,
        &alloc::format!("  nothing changed: reads C ({seen:#x})"),
        seen == C,
    );
    let ok = raw(
        nr::UPDATE_VA_MAPPING,
        [probe.va, ro(&env, a), UVMF_INVLPG, 0, 0],
    );
    let seen = probe.read(3);
    check(
        r,
        &alloc::format!("direct update_va_mapping to A: {ok}, reads A ({seen:#x})"),
        ok == 0 && seen == A,
    );
    probe.release(&env, r);
    for p in [a, b, c] {
        env.free_page(p);
    }
}

fn evtchn_raw<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
    cmd: u64,
    arg: &mut T,
) -> Result<(), Errno> {
    XEN_PV.event_channel_op(cmd, arg)
}

fn event_channels(r: &mut Results) {
    println!("event channels:");
    let enoent = Err(Errno::ENOENT);
    let einval = Err(Errno::EINVAL);
    for (virq, vcpu, want, what) in [
        (VIRQ_DEBUG, 1, enoent, "VIRQ_DEBUG (per vCPU) on vCPU 1"),
        (VIRQ_DEBUG, u32::MAX, enoent, "VIRQ_DEBUG on vCPU 2^32-1"),
        (VIRQ_CONSOLE, 1, einval, "VIRQ_CONSOLE (global) on vCPU 1"),
        (u32::MAX, 0, einval, "VIRQ 2^32-1"),
        (0x8000_0000, 0, einval, "VIRQ 2^31 (negative as int)"),
        (NR_VIRQS, 0, einval, "VIRQ NR_VIRQS"),
    ] {
        let mut b = EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        };
        expect(
            r,
            &alloc::format!("bind_virq {what}"),
            evtchn_raw(EVTCHNOP_BIND_VIRQ, &mut b),
            want,
        );
    }
    for vcpu in [1u32, 64, u32::MAX] {
        let mut b = EvtchnBindIpi { vcpu, port: 0 };
        expect(
            r,
            &alloc::format!("bind_ipi on vCPU {vcpu}"),
            evtchn_raw(EVTCHNOP_BIND_IPI, &mut b),
            enoent,
        );
    }
    expect(
        r,
        "alloc_unbound for domain 77 (none)",
        crate::event::alloc_unbound(77).map(|_| ()),
        Err(Errno::ESRCH),
    );
    expect(
        r,
        "alloc_unbound for DOMID_SELF - 1",
        crate::event::alloc_unbound(DOMID_SELF - 1).map(|_| ()),
        Err(Errno::ESRCH),
    );
    // Loopback: a port offered to this domain itself can be bound once.
    match crate::event::alloc_unbound(DOMID_SELF) {
        Ok(p) => {
            let mut v = EvtchnBindVcpu { port: p, vcpu: 1 };
            expect(
                r,
                "bind_vcpu of an own unbound port to vCPU 1",
                evtchn_raw(EVTCHNOP_BIND_VCPU, &mut v),
                enoent,
            );
            let b = crate::event::bind_interdomain_raw(DOMID_SELF, p);
            expect(
                r,
                &alloc::format!("bind_interdomain to itself (port {p}): {b:?}"),
                b.map(|_| ()),
                Ok(()),
            );
            expect(
                r,
                "binding the same port again",
                crate::event::bind_interdomain_raw(DOMID_SELF, p).map(|_| ()),
                einval,
            );
            if let Ok(q) = b {
                expect(
                    r,
                    "binding its own new end",
                    crate::event::bind_interdomain_raw(DOMID_SELF, q).map(|_| ()),
                    einval,
                );
                let _ = crate::event::close(q);
            }
            let _ = crate::event::close(p);
        }
        Err(e) => {
            check(r, &alloc::format!("alloc_unbound(DOMID_SELF): {e}"), false);
        }
    }
    match crate::event::bind_ipi(None) {
        Ok(p) => {
            expect(
                r,
                "bind_interdomain to itself on an IPI port",
                crate::event::bind_interdomain_raw(DOMID_SELF, p).map(|_| ()),
                einval,
            );
            let mut v = EvtchnBindVcpu { port: p, vcpu: 0 };
            expect(
                r,
                "bind_vcpu of an IPI port",
                evtchn_raw(EVTCHNOP_BIND_VCPU, &mut v),
                einval,
            );
            let _ = crate::event::close(p);
        }
        Err(e) => {
            check(r, &alloc::format!("bind_ipi: {e}"), false);
        }
    }
    for p in [4096u32, 0x8000_0000, u32::MAX] {
        expect(
            r,
            &alloc::format!("bind_interdomain to its own port {p:#x}"),
            crate::event::bind_interdomain_raw(DOMID_SELF, p).map(|_| ()),
            einval,
        );
        let mut v = EvtchnBindVcpu { port: p, vcpu: 0 };
        expect(
            r,
            &alloc::format!("bind_vcpu of port {p:#x}"),
            evtchn_raw(EVTCHNOP_BIND_VCPU, &mut v),
            einval,
        );
    }
    let mut dummy = [0u64; 4];
    for cmd in [
        EVTCHNOP_BIND_PIRQ,
        EVTCHNOP_INIT_CONTROL,
        EVTCHNOP_EXPAND_ARRAY,
        EVTCHNOP_SET_PRIORITY,
        14,
        u64::MAX,
    ] {
        expect(
            r,
            &alloc::format!("event_channel_op command {cmd:#x}"),
            evtchn_raw(cmd, &mut dummy),
            Err(Errno::ENOSYS),
        );
    }
    for (what, ptr) in [
        ("unmapped", 0x1000u64),
        ("non-canonical", NON_CANONICAL),
        ("in the entry region", ENTRY_REGION_VA),
    ] {
        expect(
            r,
            &alloc::format!("bind_ipi with its argument {what}"),
            errno(raw(nr::EVENT_CHANNEL_OP, [EVTCHNOP_BIND_IPI, ptr, 0, 0, 0])),
            Err(Errno::EFAULT),
        );
    }
}

fn errno(v: i64) -> Result<(), Errno> {
    if v < 0 {
        Err(Errno::from_ret(v).unwrap_or(Errno::EINVAL))
    } else {
        Ok(())
    }
}

/// The first unmapped page at or above `from`, scanning at most `pages` pages.
fn first_unmapped(from: u64, pages: u64) -> Option<u64> {
    let _g = HANDLERS.scoped(14, read_fault);
    (0..pages)
        .map(|i| from + i * 4096)
        .find(|&va| try_read(Probe::Read, va).is_none())
}

fn console(r: &mut Results) {
    println!("console_io:");
    let msg = b"console_io: still printing\n";
    let w = |buf: u64, len: u64| errno(raw(nr::CONSOLE_IO, [CONSOLEIO_WRITE, len, buf, 0, 0]));
    let einval = Err(Errno::EINVAL);
    let efault = Err(Errno::EFAULT);
    for (what, len) in [
        ("-1 as a 32-bit int", 0xffff_ffffu64),
        ("-2^31 as a 32-bit int", 0x8000_0000),
        ("-4096 as a 64-bit int", (-4096i64) as u64),
        ("2^63", 1 << 63),
    ] {
        expect(
            r,
            &alloc::format!("write count {what}"),
            w(msg.as_ptr() as u64, len),
            einval,
        );
    }
    let kernel = 0xffff_ffff_8000_0000u64;
    let Some(end) = first_unmapped(kernel, 1 << 16) else {
        check(r, "an unmapped page above the kernel", false);
        return;
    };
    println!("  info the first unmapped page above the kernel image: {end:#x}");
    // The page below it is writable (the start-of-day slack): xen_version writes 16 bytes there.
    let xv = |buf: u64| errno(raw(nr::XEN_VERSION, [XENVER_EXTRAVERSION, buf, 0, 0, 0]));
    expect(
        r,
        "xen_version into the last 16 bytes below it",
        xv(end - 16),
        Ok(()),
    );
    expect(r, "xen_version straddling into it", xv(end - 8), efault);
    expect(
        r,
        "write of 4 bytes straddling into that page",
        w(end - 2, 4),
        efault,
    );
    expect(
        r,
        "write of the largest count ending past it",
        w(end - CONSOLE_IO_MAX + 1, CONSOLE_IO_MAX),
        efault,
    );
    let edge = b"at-edge\n";
    // SAFETY: the 8 bytes below `end` are writable (xen_version just wrote there) and this kernel's.
    unsafe { core::ptr::copy_nonoverlapping(edge.as_ptr(), (end - 8) as *mut u8, 8) };
    expect(
        r,
        "write of 8 bytes ending right before it",
        w(end - 8, 8),
        Ok(()),
    );
    let rd = |buf: u64, len: u64| raw(nr::CONSOLE_IO, [CONSOLEIO_READ, len, buf, 0, 0]);
    let is_dom0 = crate::boot::facts().domid == 0;
    if !is_dom0 {
        expect(
            r,
            "read (not domain 0)",
            errno(rd(end - 8, 8)),
            Err(Errno::EPERM),
        );
        return;
    }
    let text = console as *const () as u64;
    for (what, buf, len, want) in [
        ("straddling into the unmapped page", end - 1, 2, efault),
        ("into the unmapped page", end, 1, efault),
        ("into read-only kernel text", text, 4, efault),
        ("into the entry region", ENTRY_REGION_VA, 4, efault),
        ("into a non-canonical address", NON_CANONICAL, 4, efault),
        ("count -1 as a 32-bit int", end - 8, 0xffff_ffff, einval),
        ("count -1 as a 64-bit int", end - 8, u64::MAX, einval),
    ] {
        expect(r, &alloc::format!("read {what}"), errno(rd(buf, len)), want);
    }
    let z = rd(NON_CANONICAL, 0);
    check(
        r,
        &alloc::format!("read of 0 bytes into a bad pointer: {z}"),
        z == 0,
    );
    let n = rd(end - 8, 8);
    check(
        r,
        &alloc::format!("read of 8 bytes ending right before the unmapped page: {n}"),
        (0..=8).contains(&n),
    );
    expect(
        r,
        "a valid write afterwards",
        w(msg.as_ptr() as u64, msg.len() as u64),
        Ok(()),
    );
}

/// The hostile hypercall arguments of the catalogue that leave the domain running.
pub fn hostile_calls(_: &str, r: &mut Results) {
    if !traps_ready() {
        println!("the trap table is not installed (see the traps: line at boot)");
        r.report(Outcome::Failure);
        return;
    }
    segment_bases(r);
    iret_frames(r);
    multicall_flushes(r);
    event_channels(r);
    console(r);
}
