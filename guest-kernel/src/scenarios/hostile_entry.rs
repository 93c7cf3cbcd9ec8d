//! Hostile entries and exits (issue 10 §5), one boot, nothing crashed (`hostile-entry`):
//! - far jumps, far calls (memory operands), far returns and `iretq` to the hypervisor's code and data
//!   selectors, the TSS selector and null, segment loads of those selectors, and `lldt`/`ltr`/`lgdt`/
//!   `lidt` in ring 1: each is a #GP at exactly that instruction, bounced to this kernel's handler;
//! - SYSCALL from ring 1: the CPU does not tell the hypervisor where it came from, so (as `abi::traps`
//!   says) it is bounced to the syscall callback as if from ring 3: user selectors, RIP = RCX = the
//!   return address, on the `stack_switch` stack. The kernel can still resume itself;
//! - SYSCALL from ring 3 whose return address is non-canonical (the last two bytes below the canonical
//!   hole, XSA-7): bounced to the syscall callback with that RIP, never SYSRET;
//! - single-stepping (TF) across `int 0x82` in ring 1 and across SYSCALL and the direct `int 0x80` gate
//!   in ring 3: each #DB reaches this kernel at the instruction after the next one, none is taken by
//!   the hypervisor or inside a handler.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::layout::{GUEST_KERNEL_CS, GUEST_KERNEL_SS, GUEST_USER_CS, GUEST_USER_SS};

use crate::arch::x86_64::hostile_probes::{self as hp, Probe};
use crate::boot::platform;
use crate::println;
use crate::trap::dispatch::{harness_syscall, trap_stack_top, traps_ready, user_ready};
use crate::trap::frame::VECTOR_SYSCALL;
use crate::trap::user::{USER_CODE_VA, UserSpace};
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};
use crate::xtf::{Outcome, Results};

use super::memory::check;

/// The hypervisor's code and data selectors and its TSS (see `hypervisor::arch::x86_64::tables`).
const HV_CS: u64 = 0x08;
const HV_DS: u64 = 0x10;
const TSS_SEL: u64 = 0x40;

static EXPECT_RIP: AtomicU64 = AtomicU64::new(0);
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);
static SEEN_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static SEEN_ERROR: AtomicU64 = AtomicU64::new(0);
static SEEN_RIP: AtomicU64 = AtomicU64::new(0);

/// A fault of one of the protection classes (#TS, #NP, #SS, #GP): record it; resume after the probe's
/// instruction if it is the expected one.
fn expected_fault(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    SEEN_VECTOR.store(ctx.vector, Ordering::SeqCst);
    SEEN_ERROR.store(f.error_code, Ordering::SeqCst);
    SEEN_RIP.store(f.rip, Ordering::SeqCst);
    if ctx.from_user || f.rip != EXPECT_RIP.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    HITS.fetch_add(1, Ordering::SeqCst);
    f.rip = RESUME_RIP.load(Ordering::SeqCst);
    Disposition::Resume
}

/// Run probe `p` with `(a, b)`; it must raise #GP at its instruction with an error code in `errors`.
fn gp_case(r: &mut Results, what: &str, p: Probe, a: u64, b: u64, errors: &[u64]) {
    let d = hp::probe(p);
    EXPECT_RIP.store(d.insn, Ordering::SeqCst);
    RESUME_RIP.store(d.next, Ordering::SeqCst);
    SEEN_VECTOR.store(u64::MAX, Ordering::SeqCst);
    let before = HITS.load(Ordering::SeqCst);
    // SAFETY: the probe faults at its labelled instruction and the handlers installed by the caller
    // resume it at its `next` label, which restores the stack from the frame pointer.
    unsafe { hp::run(p, a, b) };
    let hits = HITS.load(Ordering::SeqCst) - before;
    let (v, e) = (
        SEEN_VECTOR.load(Ordering::SeqCst),
        SEEN_ERROR.load(Ordering::SeqCst),
    );
    check(
        r,
        &alloc::format!("{what}: {hits} fault, vector {v}, error {e:#x}"),
        hits == 1 && v == 13 && errors.contains(&e),
    );
}

fn far_transfers(r: &mut Results) {
    println!("far transfers, segment loads and descriptor-table loads in ring 1:");
    let _g = [
        HANDLERS.scoped(10, expected_fault),
        HANDLERS.scoped(11, expected_fault),
        HANDLERS.scoped(12, expected_fault),
        HANDLERS.scoped(13, expected_fault),
    ];
    let targets = [
        ("the hypervisor's code selector 0x08", HV_CS),
        ("the hypervisor's data selector 0x10", HV_DS),
        ("the TSS selector 0x40", TSS_SEL),
        ("the TSS selector with RPL 1", TSS_SEL | 1),
        ("0x08 with RPL 3", HV_CS | 3),
        ("the null selector", 0),
    ];
    for (name, sel) in targets {
        // The CPU names the offending selector (RPL dropped) or reports 0.
        let errs = [sel & !3, 0];
        gp_case(
            r,
            &alloc::format!("ljmp to {name}"),
            Probe::Ljmp,
            sel,
            0,
            &errs,
        );
        gp_case(
            r,
            &alloc::format!("lcall to {name}"),
            Probe::Lcall,
            sel,
            0,
            &errs,
        );
        gp_case(
            r,
            &alloc::format!("lret to {name}"),
            Probe::Lret,
            sel,
            0,
            &errs,
        );
        let ss = if sel == HV_CS { HV_DS } else { sel };
        gp_case(
            r,
            &alloc::format!("iretq to {name}"),
            Probe::Iretq,
            sel,
            ss,
            &errs,
        );
    }
    for (name, sel) in [
        ("0x08", HV_CS),
        ("0x10", HV_DS),
        ("the TSS selector", TSS_SEL),
    ] {
        let errs = [sel & !3, 0];
        for (seg, p) in [
            ("DS", Probe::MovDs),
            ("ES", Probe::MovEs),
            ("FS", Probe::MovFs),
            ("GS", Probe::MovGs),
            ("SS", Probe::MovSs),
        ] {
            gp_case(r, &alloc::format!("mov {name} to {seg}"), p, sel, 0, &errs);
        }
    }
    gp_case(r, "lldt of the null selector", Probe::Lldt, 0, 0, &[0]);
    gp_case(r, "lldt of the TSS selector", Probe::Lldt, TSS_SEL, 0, &[0]);
    gp_case(r, "ltr of the TSS selector", Probe::Ltr, TSS_SEL, 0, &[0]);
    gp_case(r, "lgdt of the current GDT", Probe::Lgdt, 0, 0, &[0]);
    gp_case(r, "lidt of the current IDT", Probe::Lidt, 0, 0, &[0]);
}

/// What the SYSCALL callback saw for a SYSCALL from ring 1.
static R1_SEEN: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static R1_HITS: AtomicU64 = AtomicU64::new(0);
const R1_MARK: u64 = 0x5150_ca11;

/// The syscall callback while the ring-1 SYSCALL probe runs: record the frame, put the kernel's own
/// selectors back and resume after the instruction.
fn ring1_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if f.rip != hp::probe(Probe::Syscall).next {
        return harness_syscall(f, ctx);
    }
    R1_HITS.fetch_add(1, Ordering::SeqCst);
    for (slot, v) in R1_SEEN
        .iter()
        .zip([f.cs, f.ss, f.rcx, f.rsp, u64::from(ctx.from_user)])
    {
        slot.store(v, Ordering::SeqCst);
    }
    f.cs = u64::from(GUEST_KERNEL_CS);
    f.ss = u64::from(GUEST_KERNEL_SS);
    f.rax = R1_MARK;
    Disposition::Resume
}

/// The stack pointer of the caller (to tell the stack_switch stack from the current one).
fn current_sp() -> u64 {
    let x = 0u8;
    (&raw const x) as u64
}

fn syscall_ring1(r: &mut Results) {
    println!("SYSCALL from ring 1:");
    let _g = HANDLERS.scoped(VECTOR_SYSCALL, ring1_syscall);
    let sp = current_sp();
    // SAFETY: SYSCALL enters the hypervisor, which bounces it to the syscall callback; the handler above
    // resumes at the probe's next label with the kernel's selectors.
    let rax = unsafe { hp::run(Probe::Syscall, 0, 0) };
    let [cs, ss, rcx, rsp, user] = R1_SEEN.each_ref().map(|a| a.load(Ordering::SeqCst));
    let next = hp::probe(Probe::Syscall).next;
    check(
        r,
        &alloc::format!(
            "bounced to the syscall callback ({} time): CS {cs:#x}, SS {ss:#x}, from ring 3: {}",
            R1_HITS.load(Ordering::SeqCst),
            user != 0
        ),
        R1_HITS.load(Ordering::SeqCst) == 1
            && cs == u64::from(GUEST_USER_CS)
            && ss == u64::from(GUEST_USER_SS)
            && user != 0,
    );
    check(
        r,
        &alloc::format!("RCX = RIP = the return address ({rcx:#x})"),
        rcx == next,
    );
    check(
        r,
        &alloc::format!(
            "the interrupted RSP is the kernel's own ({rsp:#x}, near {sp:#x}), not the stack_switch stack"
        ),
        rsp.abs_diff(sp) < 0x1000 && rsp.abs_diff(trap_stack_top()) > 0x1000,
    );
    check(
        r,
        &alloc::format!("the kernel resumed itself in ring 1 with the handler's RAX ({rax:#x})"),
        rax == R1_MARK && crate::arch::x86_64::read_cs() & 3 == 1,
    );
}

/// The #DB log: RIPs seen and whether each came from ring 3.
static DB_RIPS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
static DB_COUNT: AtomicU64 = AtomicU64::new(0);
static DB_RING1_STRAY: AtomicU64 = AtomicU64::new(0);
static DB_USER: AtomicBool = AtomicBool::new(false);
static DB_END: AtomicU64 = AtomicU64::new(0);

/// #DB while single-stepping: log RIP, keep TF until the end label, clear it there.
fn single_step(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user != DB_USER.load(Ordering::SeqCst) {
        DB_RING1_STRAY.fetch_add(1, Ordering::SeqCst);
    }
    let n = DB_COUNT.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(slot) = DB_RIPS.get(n) {
        slot.store(f.rip, Ordering::SeqCst);
    }
    if f.rip == DB_END.load(Ordering::SeqCst) || n >= DB_RIPS.len() {
        f.rflags &= !(1 << 8);
    }
    Disposition::Resume
}

fn db_log() -> alloc::vec::Vec<u64> {
    let n = (DB_COUNT.load(Ordering::SeqCst) as usize).min(DB_RIPS.len());
    DB_RIPS[..n]
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect()
}

fn db_arm(user: bool, end: u64) {
    DB_COUNT.store(0, Ordering::SeqCst);
    DB_RING1_STRAY.store(0, Ordering::SeqCst);
    DB_USER.store(user, Ordering::SeqCst);
    DB_END.store(end, Ordering::SeqCst);
}

fn tf_hypercall(r: &mut Results) {
    println!("single-step across int 0x82 (ring 1):");
    let a = |p: *const u8| p as u64;
    let (int, step, end) = (
        a(&raw const hp::guest_hx_tf_hypercall_int),
        a(&raw const hp::guest_hx_tf_hypercall_step),
        a(&raw const hp::guest_hx_tf_hypercall_end),
    );
    db_arm(false, end);
    let enabled = platform().irq_disable();
    let g = HANDLERS.scoped(1, single_step);
    // SAFETY: the #DB handler above keeps TF until the end label and clears it there.
    let ret = unsafe { hp::tf_hypercall() };
    drop(g);
    platform().irq_restore(enabled);
    let log = db_log();
    check(
        r,
        &alloc::format!("the null hypercall returned 0 while single-stepping ({ret})"),
        ret == 0,
    );
    check(
        r,
        &alloc::format!(
            "#DB before the hypercall, after the instruction behind it, and at the end: {log:x?}"
        ),
        log == [int, step, end] && DB_RING1_STRAY.load(Ordering::SeqCst) == 0,
    );
}

fn tf_user(r: &mut Results) {
    println!("single-step across SYSCALL and the direct int 0x80 gate (ring 3):");
    let prog = hp::hostile_user();
    let mut us = match UserSpace::new(prog.bytes) {
        Ok(u) => u,
        Err(e) => {
            check(r, &alloc::format!("user address space: {e}"), false);
            return;
        }
    };
    let u = |off: u64| USER_CODE_VA + off;
    db_arm(true, u(prog.end_tf));
    let g = HANDLERS.scoped(1, single_step);
    let res = us.run(0);
    drop(g);
    let log = db_log();
    check(
        r,
        &alloc::format!("the program ran to exit(7) through ping(5) and ping(6): {res:?}"),
        matches!(res, Ok(7)),
    );
    let has = |rip: u64| log.contains(&rip);
    check(
        r,
        &alloc::format!(
            "{} #DB, all from ring 3 in the program, none in a handler ({} elsewhere)",
            log.len(),
            DB_RING1_STRAY.load(Ordering::SeqCst)
        ),
        DB_RING1_STRAY.load(Ordering::SeqCst) == 0
            && !log.is_empty()
            && log
                .iter()
                .all(|&x| (u(0)..u(prog.bytes.len() as u64)).contains(&x)),
    );
    check(
        r,
        "#DB at the SYSCALL and right after the instruction behind it",
        has(u(prog.syscall)) && has(u(prog.after_syscall)),
    );
    check(
        r,
        "#DB at the int 0x80 and right after the instruction behind it",
        has(u(prog.int80)) && has(u(prog.after_int80)),
    );
    check(
        r,
        "the last #DB is the one that cleared TF",
        log.last() == Some(&u(prog.end_tf)),
    );
}

/// A #PF on the `mov %ss` of the MOV SS probes would mean a GDT descriptor is not pre-accessed, so the
/// CPU's write of the Accessed bit faults on the read-only GDT (issue 10 §3, fixed): record it as a failure
/// and resume at the probe's end label with TF cleared.
static MOVSS_INSN: AtomicU64 = AtomicU64::new(0);
static MOVSS_GDT_FAULT: AtomicU64 = AtomicU64::new(0);

fn movss_fault(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if f.rip != MOVSS_INSN.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    MOVSS_GDT_FAULT.store(ctx.cr2, Ordering::SeqCst);
    f.rflags &= !(1 << 8);
    f.rip = DB_END.load(Ordering::SeqCst);
    Disposition::Resume
}

/// XSA-260 with TF: the single-step trap of a `mov %ss` is held back across the next instruction, here
/// `int 0x82` (ring 1) or SYSCALL (ring 3), i.e. possibly into the hypervisor's entry. The hypervisor must
/// survive it (the harness checks for a panic), and the guest must go on single-stepping after the return.
fn movss(r: &mut Results) {
    println!("single-step into mov %ss + int 0x82 (ring 1) and mov %ss + SYSCALL (ring 3):");
    let a = |p: *const u8| p as u64;
    let (int, step, end) = (
        a(&raw const hp::guest_hx_movss_hypercall_int),
        a(&raw const hp::guest_hx_movss_hypercall_step),
        a(&raw const hp::guest_hx_movss_hypercall_end),
    );
    db_arm(false, end);
    MOVSS_INSN.store(
        a(&raw const hp::guest_hx_movss_hypercall_movss),
        Ordering::SeqCst,
    );
    MOVSS_GDT_FAULT.store(0, Ordering::SeqCst);
    let enabled = platform().irq_disable();
    let g = [
        HANDLERS.scoped(1, single_step),
        HANDLERS.scoped(14, movss_fault),
    ];
    // SAFETY: the #DB handler keeps TF until the end label; a #PF on the mov %ss resumes there.
    let ret = unsafe { hp::movss_hypercall() };
    drop(g);
    platform().irq_restore(enabled);
    let log = db_log();
    let gdt = MOVSS_GDT_FAULT.load(Ordering::SeqCst);
    if gdt != 0 {
        let what = alloc::format!(
            "mov %ss faulted on the read-only GDT at {gdt:#x}: a descriptor is not pre-accessed"
        );
        check(r, &what, false);
    } else {
        check(
            r,
            &alloc::format!(
                "ring 1: the hypercall returned {ret}; #DB log {log:x?} (the INT at {int:#x}) ends with the steps after the return"
            ),
            ret == 0 && log.ends_with(&[step, end]) && DB_RING1_STRAY.load(Ordering::SeqCst) == 0,
        );
    }
    let prog = hp::hostile_user();
    let mut us = match UserSpace::new(prog.bytes) {
        Ok(u) => u,
        Err(e) => {
            check(r, &alloc::format!("user address space: {e}"), false);
            return;
        }
    };
    let u = |off: u64| USER_CODE_VA + off;
    db_arm(true, u(prog.movss_end));
    MOVSS_INSN.store(u(prog.movss_insn), Ordering::SeqCst);
    MOVSS_GDT_FAULT.store(0, Ordering::SeqCst);
    let g = [
        HANDLERS.scoped(1, single_step),
        HANDLERS.scoped(14, movss_fault),
    ];
    let res = us.run(prog.movss);
    drop(g);
    let log = db_log();
    let gdt = MOVSS_GDT_FAULT.load(Ordering::SeqCst);
    if gdt != 0 {
        let what = alloc::format!(
            "mov %ss faulted on the read-only GDT at {gdt:#x}: a descriptor is not pre-accessed"
        );
        check(r, &what, false);
        return;
    }
    check(
        r,
        &alloc::format!(
            "ring 3: exit {res:?} after ping(5); #DB log {log:x?} ends with the steps after the SYSCALL"
        ),
        matches!(res, Ok(6))
            && log.ends_with(&[u(prog.movss_after), u(prog.movss_end)])
            && DB_RING1_STRAY.load(Ordering::SeqCst) == 0,
    );
}

/// The last user page below the canonical hole, and where SYSCALL sits in it (its return address is
/// then 0x0000_8000_0000_0000).
const TOP_PAGE: u64 = 0x0000_7fff_ffff_f000;
const TOP_SYSCALL: u64 = 0x0000_7fff_ffff_fffe;
const HOLE: u64 = 0x0000_8000_0000_0000;
const NC_EXIT: u64 = 0x00c0_ffee;
static NC_SEEN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn noncanonical_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if !ctx.from_user || f.rip != HOLE {
        return harness_syscall(f, ctx);
    }
    NC_SEEN[0].fetch_add(1, Ordering::SeqCst);
    NC_SEEN[1].store(f.rcx, Ordering::SeqCst);
    NC_SEEN[2].store(f.cs, Ordering::SeqCst);
    Disposition::ExitUser(NC_EXIT)
}

fn syscall_noncanonical(r: &mut Results) {
    println!("SYSCALL from ring 3 with a non-canonical return address:");
    let prog = hp::hostile_user();
    let mut us = match UserSpace::new(prog.bytes) {
        Ok(u) => u,
        Err(e) => {
            check(r, &alloc::format!("user address space: {e}"), false);
            return;
        }
    };
    // `syscall` (0f 05) in the last two bytes of the last user page.
    if let Err(e) = us.map_code_page(TOP_PAGE, &[0x0f, 0x05], 0xffe) {
        check(r, &alloc::format!("map the top user page: {e}"), false);
        return;
    }
    let g = HANDLERS.scoped(VECTOR_SYSCALL, noncanonical_syscall);
    let res = us.run(TOP_SYSCALL - USER_CODE_VA);
    drop(g);
    let [hits, rcx, cs] = NC_SEEN.each_ref().map(|a| a.load(Ordering::SeqCst));
    check(
        r,
        &alloc::format!(
            "bounced to the syscall callback ({hits} time) with RIP = RCX = {rcx:#x}, CS {cs:#x}; result {res:?}"
        ),
        hits == 1 && rcx == HOLE && cs & 0xffff == u64::from(GUEST_USER_CS) && res == Ok(NC_EXIT),
    );
}

/// Every hostile entry and exit of the catalogue that leaves the domain running.
pub fn hostile_entry(_: &str, r: &mut Results) {
    if !traps_ready() || !user_ready() {
        println!("the trap table or the stack_switch stack is not installed");
        r.report(Outcome::Failure);
        return;
    }
    far_transfers(r);
    syscall_ring1(r);
    tf_hypercall(r);
    tf_user(r);
    movss(r);
    syscall_noncanonical(r);
    // The kernel still runs in ring 1 with its own selectors and handles traps normally.
    check(
        r,
        &alloc::format!(
            "still in ring 1 (CS {:#x}) after everything",
            crate::arch::x86_64::read_cs()
        ),
        crate::arch::x86_64::read_cs() == GUEST_KERNEL_CS,
    );
}

/// The syscall callback of a naive kernel: whatever the return address, resume it.
fn naive_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user && f.rip == HOLE {
        println!(
            "syscall callback: resuming the caller at RCX = {:#x}",
            f.rcx
        );
        return Disposition::Resume;
    }
    harness_syscall(f, ctx)
}

/// The crashing variants (`mode=`); the hypervisor must stop this domain, so reaching the end is a
/// FAILURE:
/// - `sysret`: SYSCALL at the hole, and the syscall callback returns to RCX as a naive kernel would
///   (through the `iret` hypercall, events being enabled in ring 3): the hypervisor refuses the
///   non-canonical return address and crashes the domain, where a SYSRET would have faulted in ring 0;
/// - `ltr`: the trap table removed, then `ltr` in ring 1: a #GP with no handler.
pub fn hostile_entry_crash(cmdline: &str, r: &mut Results) {
    if !user_ready() {
        println!("the trap table or the stack_switch stack is not installed");
        r.report(Outcome::Failure);
        return;
    }
    match crate::cmdline::option(cmdline, "mode") {
        Some("sysret") => {
            let prog = hp::hostile_user();
            let Ok(mut us) = UserSpace::new(prog.bytes) else {
                r.report(Outcome::Error);
                return;
            };
            if us.map_code_page(TOP_PAGE, &[0x0f, 0x05], 0xffe).is_err() {
                r.report(Outcome::Error);
                return;
            }
            platform().irq_restore(true);
            println!(
                "SYSCALL at {TOP_SYSCALL:#x}, returned to naively; the hypervisor must crash this domain"
            );
            let _g = HANDLERS.scoped(VECTOR_SYSCALL, naive_syscall);
            let res = us.run(TOP_SYSCALL - USER_CODE_VA);
            println!("the program came back: {res:?}");
        }
        Some("ltr") => {
            if let Err(e) = crate::platform::xen_pv::XEN_PV.clear_trap_table() {
                println!("cannot clear the trap table: {e}");
                r.report(Outcome::Error);
                return;
            }
            println!("ltr in ring 1 with no trap table; the hypervisor must crash this domain");
            // SAFETY: expected to end this domain (#GP with no handler).
            unsafe { hp::run(Probe::Ltr, TSS_SEL, 0) };
            println!("ltr came back");
        }
        other => {
            println!("mode={other:?}: expected mode=sysret or mode=ltr");
            r.report(Outcome::Error);
            return;
        }
    }
    r.report(Outcome::Failure);
}
