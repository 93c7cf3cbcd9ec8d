//! Trap scenarios (issue 4): exceptions in the kernel and in ring 3 reaching this kernel's handlers
//! (`trap-kernel`, `trap-user`), a fault on a bad kernel stack (`trap-bad-stack`, crashed), a user
//! `int 0x80` with no gate registered (`int80-early`).
//!
//! Every handler here checks that RIP is exactly the faulting instruction (labels in
//! `arch::x86_64::trap_probes`) and resumes at the label after it.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::x86_64::trap_probes::{self as probes, USER_FAULT_ADDR};
use crate::cmdline::option;
use crate::platform::xen_pv::XEN_PV;
use crate::println;
use crate::trap::dispatch::{install_table, traps_ready, user_ready};
use crate::trap::user::{USER_CODE_VA, UserSpace};
use crate::trap::{Disposition, HANDLERS, KILLED, TrapCtx, TrapFrame, sys};
use crate::xtf::{Outcome, Results};

use super::memory::check;

/// The expectation of the next trap: where it must happen and where to resume.
static EXPECT_RIP: AtomicU64 = AtomicU64::new(0);
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static EXPECT_USER: AtomicBool = AtomicBool::new(false);
/// What the last trap looked like.
static HITS: AtomicU64 = AtomicU64::new(0);
static SEEN_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);
static SEEN_RIP: AtomicU64 = AtomicU64::new(0);
static SEEN_ERROR: AtomicU64 = AtomicU64::new(0);
static SEEN_CR2: AtomicU64 = AtomicU64::new(0);
static SEEN_USER: AtomicBool = AtomicBool::new(false);
/// Value the page-fault handler puts in RAX (the probe returns it).
const PF_MARKER: u64 = 0x600d_f417;

/// Record the trap; resume after the instruction if it is the expected one.
fn expected_trap(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    SEEN_VECTOR.store(ctx.vector, Ordering::SeqCst);
    SEEN_RIP.store(f.rip, Ordering::SeqCst);
    SEEN_ERROR.store(f.error_code, Ordering::SeqCst);
    SEEN_CR2.store(ctx.cr2, Ordering::SeqCst);
    SEEN_USER.store(ctx.from_user, Ordering::SeqCst);
    if f.rip != EXPECT_RIP.load(Ordering::SeqCst)
        || ctx.from_user != EXPECT_USER.load(Ordering::SeqCst)
    {
        return Disposition::Unhandled;
    }
    HITS.fetch_add(1, Ordering::SeqCst);
    if ctx.vector == 14 {
        f.rax = PF_MARKER;
    }
    if ctx.vector == 3 {
        // Clobber the SSE registers: the interrupted code's must come back intact.
        // SAFETY: only XMM registers change; the entry path restores the interrupted ones with FXRSTOR.
        unsafe { probes::guest_clobber_xmm() };
    }
    f.rip = RESUME_RIP.load(Ordering::SeqCst);
    Disposition::Resume
}

/// One expected exception.
struct Case {
    name: &'static str,
    vector: u64,
    /// RIP the frame must show (for a trap: the next instruction).
    at: u64,
    resume: u64,
    error: u64,
    cr2: Option<u64>,
}

fn arm(c: &Case, user: bool) {
    EXPECT_RIP.store(c.at, Ordering::SeqCst);
    RESUME_RIP.store(c.resume, Ordering::SeqCst);
    EXPECT_USER.store(user, Ordering::SeqCst);
    SEEN_VECTOR.store(u64::MAX, Ordering::SeqCst);
}

/// Check the record of case `c` after it ran (`hits_before`: HITS before).
fn verify(r: &mut Results, c: &Case, hits_before: u64, user: bool) {
    let hits = HITS.load(Ordering::SeqCst) - hits_before;
    let v = SEEN_VECTOR.load(Ordering::SeqCst);
    let rip = SEEN_RIP.load(Ordering::SeqCst);
    let err = SEEN_ERROR.load(Ordering::SeqCst);
    let cr2 = SEEN_CR2.load(Ordering::SeqCst);
    let ring = if user { 3 } else { 1 };
    let ok = hits == 1
        && v == c.vector
        && rip == c.at
        && err == c.error
        && SEEN_USER.load(Ordering::SeqCst) == user;
    check(
        r,
        &alloc::format!(
            "{} in ring {ring}: {hits} hit, vector {v}, rip {rip:#x}, error {err:#x}",
            c.name
        ),
        ok,
    );
    if !ok {
        println!(
            "       expected 1 hit, vector {}, rip {:#x}, error {:#x}, from ring {ring}",
            c.vector, c.at, c.error
        );
    }
    if let Some(want) = c.cr2 {
        check(
            r,
            &alloc::format!("{}: CR2 {cr2:#x} (want {want:#x})", c.name),
            cr2 == want,
        );
    }
}

fn require_traps(r: &mut Results) -> bool {
    if !traps_ready() {
        println!("the trap table is not installed (see the traps: line at boot)");
        r.report(Outcome::Failure);
    }
    traps_ready()
}

/// Divide error, breakpoint, general protection, page fault (and invalid opcode) in the kernel.
pub fn trap_kernel(_: &str, r: &mut Results) {
    if !require_traps(r) {
        return;
    }
    let a = |p: *const u8| p as u64;
    let fault_addr = 0x0000_0000_dead_b0efu64;
    let cases = [
        Case {
            name: "divide error",
            vector: 0,
            at: a(&raw const probes::guest_probe_de_insn),
            resume: a(&raw const probes::guest_probe_de_next),
            error: 0,
            cr2: None,
        },
        Case {
            name: "breakpoint",
            vector: 3,
            at: a(&raw const probes::guest_probe_bp_next),
            resume: a(&raw const probes::guest_probe_bp_next),
            error: 0,
            cr2: None,
        },
        Case {
            name: "general protection (hlt)",
            vector: 13,
            at: a(&raw const probes::guest_probe_gp_insn),
            resume: a(&raw const probes::guest_probe_gp_next),
            error: 0,
            cr2: None,
        },
        Case {
            name: "page fault (read, not present)",
            vector: 14,
            at: a(&raw const probes::guest_probe_pf_insn),
            resume: a(&raw const probes::guest_probe_pf_next),
            error: 0,
            cr2: Some(fault_addr),
        },
        Case {
            name: "invalid opcode (ud2)",
            vector: 6,
            at: a(&raw const probes::guest_probe_ud_insn),
            resume: a(&raw const probes::guest_probe_ud_next),
            error: 0,
            cr2: None,
        },
    ];
    for c in &cases {
        let _g = HANDLERS.scoped(c.vector, expected_trap);
        arm(c, false);
        let before = HITS.load(Ordering::SeqCst);
        // SAFETY: each probe faults once at its labelled instruction; the handler installed above resumes
        // it after that instruction, and the probes touch only caller-saved registers.
        let ret = unsafe {
            match c.vector {
                0 => {
                    probes::guest_probe_de();
                    0
                }
                3 => probes::guest_probe_bp(),
                13 => {
                    probes::guest_probe_gp();
                    0
                }
                14 => probes::guest_probe_pf(fault_addr),
                _ => {
                    probes::guest_probe_ud();
                    0
                }
            }
        };
        verify(r, c, before, false);
        if c.vector == 14 {
            check(
                r,
                &alloc::format!("page fault: handler's RAX came back ({ret:#x})"),
                ret == PF_MARKER,
            );
        }
        if c.vector == 3 {
            check(
                r,
                &alloc::format!(
                    "breakpoint: XMM0-15 survive a handler that clobbers them (diff {ret:#x})"
                ),
                ret == 0,
            );
        }
    }
    mask_round_trips(r);
    // And the kernel goes on normally with the handlers gone.
    check(
        r,
        "the kernel continues after five handled exceptions",
        true,
    );
}

/// What [`flip_mask`] saw: 1 if the interrupted code had events masked, 0 if not (`u64::MAX`: not run).
static FLIP_SAW_MASKED: AtomicU64 = AtomicU64::new(u64::MAX);

/// A breakpoint handler that leaves the event mask the other way round from how the interrupted code had
/// it: the return path must give the interrupted code its own mask back (`trap::frame::plan_return`).
fn flip_mask(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user || f.rip != EXPECT_RIP.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    FLIP_SAW_MASKED.store(u64::from(ctx.events_were_masked), Ordering::SeqCst);
    let p = crate::platform::ops();
    if ctx.events_were_masked {
        p.irq_restore(true);
    } else {
        p.irq_disable();
    }
    // A trap: RIP is already the next instruction.
    Disposition::Resume
}

/// A kernel-mode exception whose handler flips the event mask, from masked and from enabled code: the
/// handler sees the interrupted mask and the interrupted code finds its own mask again.
fn mask_round_trips(r: &mut Results) {
    let p = crate::platform::ops();
    let was_enabled = p.irq_disable();
    for masked in [true, false] {
        p.irq_restore(!masked);
        let _g = HANDLERS.scoped(3, flip_mask);
        EXPECT_RIP.store(
            &raw const probes::guest_probe_bp_next as u64,
            Ordering::SeqCst,
        );
        FLIP_SAW_MASKED.store(u64::MAX, Ordering::SeqCst);
        // SAFETY: the probe executes `int3` once; the handler installed above resumes after it, and the
        // probe touches only caller-saved registers (XMM0-15 are restored by the entry path).
        unsafe { probes::guest_probe_bp() };
        let masked_after = !p.irqs_enabled();
        p.irq_disable();
        let saw = FLIP_SAW_MASKED.load(Ordering::SeqCst);
        check(
            r,
            &alloc::format!(
                "breakpoint with events {}: the handler saw it (saw {saw}) and flipped the mask; the \
                 interrupted code has its mask back ({})",
                if masked { "masked" } else { "enabled" },
                if masked_after { "masked" } else { "enabled" },
            ),
            saw == u64::from(masked) && masked_after == masked,
        );
    }
    p.irq_restore(was_enabled);
}

/// Syscalls seen by `user_syscall` and whether RCX held the return address.
static SYSCALLS: AtomicU64 = AtomicU64::new(0);
static SYSCALL_RCX_OK: AtomicBool = AtomicBool::new(false);
static SYSCALL_RET: AtomicU64 = AtomicU64::new(0);

/// The SYSCALL callback for `trap-user`: checks the frame, then serves `ping`/`exit`.
fn user_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    SYSCALLS.fetch_add(1, Ordering::SeqCst);
    let want = SYSCALL_RET.load(Ordering::SeqCst);
    SYSCALL_RCX_OK.store(
        ctx.from_user && f.rcx == want && f.rip == want,
        Ordering::SeqCst,
    );
    match f.rax {
        sys::PING => {
            f.rax = f.rdi.wrapping_add(1);
            Disposition::Resume
        }
        sys::EXIT => Disposition::ExitUser(f.rdi),
        _ => Disposition::Unhandled,
    }
}

/// The same exceptions from ring 3, then a SYSCALL and an `int 0x80` round trip and `exit`.
pub fn trap_user(_: &str, r: &mut Results) {
    if !require_traps(r) {
        return;
    }
    if !user_ready() {
        println!("no stack_switch stack: ring 3 cannot trap into the kernel");
        r.report(Outcome::Failure);
        return;
    }
    let blob = probes::user_blob();
    let mut us = match UserSpace::new(blob.bytes) {
        Ok(u) => u,
        Err(e) => {
            println!("cannot build the user address space: {e}");
            r.report(Outcome::Error);
            return;
        }
    };
    let u = |off: u64| USER_CODE_VA + off;
    let cases = [
        Case {
            name: "divide error",
            vector: 0,
            at: u(blob.de.0),
            resume: u(blob.de.1),
            error: 0,
            cr2: None,
        },
        Case {
            name: "breakpoint",
            vector: 3,
            at: u(blob.bp.1),
            resume: u(blob.bp.1),
            error: 0,
            cr2: None,
        },
        Case {
            name: "general protection (hlt)",
            vector: 13,
            at: u(blob.gp.0),
            resume: u(blob.gp.1),
            error: 0,
            cr2: None,
        },
        Case {
            name: "page fault (user read, not present)",
            vector: 14,
            at: u(blob.pf.0),
            resume: u(blob.pf.1),
            error: 4,
            cr2: Some(USER_FAULT_ADDR),
        },
    ];
    // The program raises all four in order; one handler per vector, re-armed in turn by the previous one
    // is not possible from here, so each handler accepts its own case: arm them all through a table.
    let guards = [
        HANDLERS.scoped(0, user_case),
        HANDLERS.scoped(3, user_case),
        HANDLERS.scoped(13, user_case),
        HANDLERS.scoped(14, user_case),
        HANDLERS.scoped(crate::trap::frame::VECTOR_SYSCALL, user_syscall),
    ];
    for (i, c) in cases.iter().enumerate() {
        USER_CASES[i].store(c.at, Ordering::SeqCst);
        USER_RESUME[i].store(c.resume, Ordering::SeqCst);
        USER_HITS[i].store(0, Ordering::SeqCst);
    }
    SYSCALL_RET.store(u(blob.syscall) + 2, Ordering::SeqCst);
    let result = us.run(blob.traps);
    let (syscalls, rcx_ok) = (
        SYSCALLS.load(Ordering::SeqCst),
        SYSCALL_RCX_OK.load(Ordering::SeqCst),
    );
    // Many round trips through both system-call paths: nothing may leak or drift.
    let loops = [
        ("SYSCALL", us.run_with(blob.syscall_loop, 500)),
        ("int 0x80", us.run_with(blob.int80_loop, 500)),
    ];
    let looped = SYSCALLS.load(Ordering::SeqCst) - syscalls;
    drop(guards);
    drop(us);
    for (what, res) in loops {
        check(
            r,
            &alloc::format!("500 pings through {what}, then exit(500): {res:?}"),
            matches!(res, Ok(500)),
        );
    }
    check(
        r,
        &alloc::format!("the SYSCALL loop reached the syscall callback 500 times ({looped})"),
        looped == 500,
    );
    match result {
        Ok(v) => check(
            r,
            &alloc::format!(
                "the program ran to exit(43) through SYSCALL ping, int 0x80 ping and int 0x80 exit (result {v:#x})"
            ),
            v == 43,
        ),
        Err(e) => check(r, &alloc::format!("running the program: {e}"), false),
    };
    for (i, c) in cases.iter().enumerate() {
        let hits = USER_HITS[i].load(Ordering::SeqCst);
        let (err, cr2, user) = (
            USER_ERROR[i].load(Ordering::SeqCst),
            USER_CR2[i].load(Ordering::SeqCst),
            USER_RING3[i].load(Ordering::SeqCst),
        );
        let ok = hits == 1 && err == c.error && user;
        check(
            r,
            &alloc::format!(
                "{} in ring 3: {hits} hit at rip {:#x}, error {err:#x}",
                c.name,
                c.at
            ),
            ok,
        );
        if !ok {
            println!(
                "       expected 1 hit, error {:#x}, from ring 3 (ring 3: {user})",
                c.error
            );
        }
        if let Some(want) = c.cr2 {
            check(
                r,
                &alloc::format!("{}: CR2 {cr2:#x} (want {want:#x})", c.name),
                cr2 == want,
            );
        }
    }
    check(
        r,
        &alloc::format!(
            "SYSCALL bounced to the syscall callback with RCX = RIP = the return address ({syscalls} call)"
        ),
        syscalls == 1 && rcx_ok,
    );
}

#[allow(clippy::declare_interior_mutable_const)]
const Z: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const F: AtomicBool = AtomicBool::new(false);
static USER_VECTORS: [u64; 4] = [0, 3, 13, 14];
static USER_CASES: [AtomicU64; 4] = [Z; 4];
static USER_RESUME: [AtomicU64; 4] = [Z; 4];
static USER_HITS: [AtomicU64; 4] = [Z; 4];
static USER_ERROR: [AtomicU64; 4] = [Z; 4];
static USER_CR2: [AtomicU64; 4] = [Z; 4];
static USER_RING3: [AtomicBool; 4] = [F; 4];

/// The handler of the four ring-3 cases: finds its case by RIP.
fn user_case(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    // #BP reports the address after int3, which is also where the #GP's hlt is: match the vector too.
    let Some(i) = (0..4)
        .find(|&i| USER_VECTORS[i] == ctx.vector && USER_CASES[i].load(Ordering::SeqCst) == f.rip)
    else {
        return Disposition::Unhandled;
    };
    USER_HITS[i].fetch_add(1, Ordering::SeqCst);
    USER_ERROR[i].store(f.error_code, Ordering::SeqCst);
    USER_CR2[i].store(ctx.cr2, Ordering::SeqCst);
    USER_RING3[i].store(ctx.from_user, Ordering::SeqCst);
    f.rip = USER_RESUME[i].load(Ordering::SeqCst);
    Disposition::Resume
}

/// A page fault while the kernel stack is unusable: the hypervisor cannot deliver it and must crash
/// this domain (only). The probe never returns; if the fault were delivered anyway, the handler would run
/// on the unusable stack and the domain would end some other way, which the QEMU test tells apart.
pub fn trap_bad_stack(_: &str, _: &mut Results) {
    let bad_rsp = 0x0000_0000_1000_0000u64;
    let addr = 0x0000_0000_dead_0000u64;
    println!(
        "switching to the unmapped stack {bad_rsp:#x} and reading {addr:#x}; the hypervisor must crash this domain"
    );
    // SAFETY: expected to end this domain: the page fault cannot be bounced onto an unmapped stack.
    unsafe { probes::guest_probe_bad_stack(bad_rsp, addr) }
}

/// The #GP of a user `int 0x80` without a DPL-3 gate for it.
fn int80_gp(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user && f.rip == EXPECT_RIP.load(Ordering::SeqCst) {
        Disposition::ExitUser(KILLED + 0x1000 + f.error_code)
    } else {
        Disposition::Unhandled
    }
}

/// User `int 0x80` when no handler is registered for it: a #GP (error code: IDT vector 0x80) bounced to
/// this kernel. With `mode=no-table` the whole trap table is removed first: then the hypervisor must
/// crash this domain, and nothing else (reaching the end is a FAILURE).
pub fn int80_early(cmdline: &str, r: &mut Results) {
    if !user_ready() {
        println!("no trap table or stack_switch stack");
        r.report(Outcome::Failure);
        return;
    }
    let blob = probes::user_blob();
    let mut us = match UserSpace::new(blob.bytes) {
        Ok(u) => u,
        Err(e) => {
            println!("cannot build the user address space: {e}");
            r.report(Outcome::Error);
            return;
        }
    };
    let no_table = option(cmdline, "mode") == Some("no-table");
    let removed = if no_table {
        println!("removing the whole trap table; int 0x80 must crash this domain");
        XEN_PV.clear_trap_table()
    } else {
        // As in Xen, set_trap_table only adds entries: drop them all, then install all but 0x80.
        println!("clearing the trap table, then installing it without vector 0x80");
        XEN_PV
            .clear_trap_table()
            .and_then(|()| install_table(false))
    };
    if let Err(e) = removed {
        println!("cannot change the trap table: {e}");
        r.report(Outcome::Failure);
        return;
    }
    EXPECT_RIP.store(USER_CODE_VA + blob.int80_insn.0, Ordering::SeqCst);
    let g = HANDLERS.scoped(13, int80_gp);
    let result = us.run(blob.int80);
    drop(g);
    let _ = install_table(true);
    drop(us);
    if no_table {
        println!("int 0x80 with no trap table came back: {result:?}");
        r.report(Outcome::Failure);
        return;
    }
    // The error code names the IDT gate: vector << 3 | IDT bit on hardware (0x402); QEMU's TCG reports
    // vector * 16 + 2 (0x802) in 64-bit mode. Either is the gate of vector 0x80.
    let gate_error = |v: u64| {
        v.checked_sub(KILLED + 0x1000)
            .filter(|&e| e == 0x402 || e == 0x802)
    };
    match result {
        Ok(v) if gate_error(v).is_some() => check(
            r,
            &alloc::format!(
                "user int 0x80 without a gate: #GP with error code {:#x} (IDT gate 0x80) reached the #GP handler",
                v - KILLED - 0x1000
            ),
            true,
        ),
        Ok(7) => check(
            r,
            "user int 0x80 without a gate entered the int 0x80 handler (stale gate)",
            false,
        ),
        Ok(v) => check(
            r,
            &alloc::format!(
                "user int 0x80 without a gate: result {v:#x}, expected #GP with error 0x402 (0x802 on TCG)"
            ),
            false,
        ),
        Err(e) => check(r, &alloc::format!("running the program: {e}"), false),
    };
}
