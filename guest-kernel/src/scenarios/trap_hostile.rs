//! Hostile trap-related hypercalls (issue 4): bad handler and stack addresses refused, `iret` frames
//! asking for ring 0, IOPL 3 or NT sanitized (`hostile-traps`); a non-canonical or hypervisor RIP in an
//! `iret` frame crashes the domain (`iret-noncanonical`).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::callback::{CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_SYSCALL};
use abi::errno::Errno;
use abi::hypercall::nr;
use abi::layout::{ENTRY_REGION_VA, GUEST_KERNEL_CS, GUEST_KERNEL_SS, RESERVED_VA_START};
use abi::xen::{SEGBASE_FS, TrapInfo};

use crate::arch::x86_64::trap_entry::stubs;
use crate::arch::x86_64::trap_probes as probes;
use crate::boot::platform;
use crate::cmdline::{option, parse_u64};
use crate::platform::xen_pv::trap_table;
use crate::platform::xen_pv::{XEN_PV, raw};
use crate::println;
use crate::trap::dispatch::{
    install_table, register_callbacks, trap_stack_top, traps_ready, user_ready,
};
use crate::trap::frame::{RFLAGS_IF, RFLAGS_IOPL, RFLAGS_NT};
use crate::trap::user::UserSpace;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};
use crate::xtf::{Outcome, Results};

use super::memory::{check, expect};

/// Addresses no handler, callback or stack may have.
const BAD_ADDRESSES: [(&str, u64); 5] = [
    ("non-canonical 0x0000800000000000", 0x0000_8000_0000_0000),
    ("non-canonical 0xffff7fffffff0000", 0xffff_7fff_ffff_0000),
    ("the hypervisor's entry region", ENTRY_REGION_VA),
    ("the hypervisor's M2P slot", RESERVED_VA_START + 0x1000),
    ("the top of the hypervisor's range", 0xffff_87ff_ffff_f000),
];

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

fn count_bp(_: &mut TrapFrame, _: &TrapCtx) -> Disposition {
    BREAKPOINTS.fetch_add(1, Ordering::SeqCst);
    Disposition::Resume
}

/// A breakpoint still reaches this kernel's handler (the trap table in force is the good one).
fn breakpoint_works(r: &mut Results, after: &str) {
    let _g = HANDLERS.scoped(3, count_bp);
    let before = BREAKPOINTS.load(Ordering::SeqCst);
    // SAFETY: int3 with a handler that resumes after it (the probe's int3 is a trap).
    unsafe { probes::guest_probe_bp() };
    check(
        r,
        &alloc::format!("after {after}: a breakpoint still reaches the kernel's handler"),
        BREAKPOINTS.load(Ordering::SeqCst) == before + 1,
    );
}

fn set_trap_table_at(ptr: u64) -> Result<(), Errno> {
    match raw(nr::SET_TRAP_TABLE, [ptr, 0, 0, 0, 0]) {
        r if r < 0 => Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL)),
        _ => Ok(()),
    }
}

fn trap_tables(r: &mut Results) {
    println!("set_trap_table:");
    for (what, a) in BAD_ADDRESSES {
        let mut t = trap_table(true);
        t[14].address = a;
        let got = platform().set_trap_table(&t);
        expect(
            r,
            &alloc::format!("page-fault handler at {what}"),
            got,
            Err(Errno::EINVAL),
        );
    }
    let mut t = trap_table(true);
    t[13].cs = 0x08;
    expect(
        r,
        "a handler in the hypervisor's code segment (cs 0x08)",
        platform().set_trap_table(&t),
        Err(Errno::EINVAL),
    );
    let mut t = trap_table(true);
    t[32] = TrapInfo {
        vector: 0x80,
        flags: 3,
        cs: GUEST_KERNEL_CS,
        _pad0: [0; 4],
        address: ENTRY_REGION_VA + 0x40,
    };
    expect(
        r,
        "an int 0x80 gate into the hypervisor's entry region",
        platform().set_trap_table(&t),
        Err(Errno::EINVAL),
    );
    for (what, p) in [
        ("non-canonical", 0x0000_8000_0000_0000u64),
        ("in the entry region", ENTRY_REGION_VA),
        ("unmapped", 0x0000_0000_5000_0000),
    ] {
        expect(
            r,
            &alloc::format!("the table itself {what}"),
            set_trap_table_at(p),
            Err(Errno::EFAULT),
        );
    }
    breakpoint_works(r, "the refused tables");
}

fn stacks(r: &mut Results) {
    println!("stack_switch:");
    for (what, a) in BAD_ADDRESSES {
        expect(
            r,
            &alloc::format!("stack at {what}"),
            platform().stack_switch(GUEST_KERNEL_SS, a),
            Err(Errno::EINVAL),
        );
    }
    expect(
        r,
        "stack pointer 0",
        platform().stack_switch(GUEST_KERNEL_SS, 0),
        Err(Errno::EINVAL),
    );
    expect(
        r,
        "the hypervisor's stack segment (ss 0x10)",
        platform().stack_switch(0x10, trap_stack_top()),
        Err(Errno::EINVAL),
    );
    // The good stack is still in force: a ring-3 program can trap into the kernel and come back.
    if user_ready() {
        let blob = probes::user_blob();
        match UserSpace::new(blob.bytes).and_then(|mut u| u.run(blob.int80)) {
            Ok(v) => check(
                r,
                &alloc::format!(
                    "after the refused stacks: a ring-3 int 0x80 exit(7) still works (got {v})"
                ),
                v == 7,
            ),
            Err(e) => check(r, &alloc::format!("ring-3 program: {e}"), false),
        };
    }
}

fn callbacks(r: &mut Results) {
    println!("set_callbacks / callback_op:");
    let s = stubs();
    for (what, a) in BAD_ADDRESSES {
        expect(
            r,
            &alloc::format!("set_callbacks: event callback at {what}"),
            XEN_PV.set_callbacks(a, s.failsafe, s.syscall),
            Err(Errno::EINVAL),
        );
        expect(
            r,
            &alloc::format!("set_callbacks: syscall callback at {what}"),
            XEN_PV.set_callbacks(s.event, s.failsafe, a),
            Err(Errno::EINVAL),
        );
        for (ty, name) in [
            (CALLBACKTYPE_EVENT, "event"),
            (CALLBACKTYPE_FAILSAFE, "failsafe"),
            (CALLBACKTYPE_SYSCALL, "syscall"),
        ] {
            expect(
                r,
                &alloc::format!("callback_op: {name} callback at {what}"),
                XEN_PV.register_callback(ty, a, 0),
                Err(Errno::EINVAL),
            );
        }
    }
    expect(
        r,
        "callback_op: unknown callback type 42",
        XEN_PV.register_callback(42, s.event, 0),
        Err(Errno::EINVAL),
    );
    expect(
        r,
        "callbacks registered again",
        register_callbacks(),
        Ok(()),
    );
}

fn segment_bases(r: &mut Results) {
    println!("set_segment_base:");
    static MARK: u64 = 0x5e6b_a5e0_f5f5_f5f5;
    expect(
        r,
        "FS base non-canonical",
        XEN_PV.set_segment_base(SEGBASE_FS, 0x0000_8000_0000_0000),
        Err(Errno::EINVAL),
    );
    let set = XEN_PV.set_segment_base(SEGBASE_FS, &raw const MARK as u64);
    expect(r, "FS base = a kernel variable", set, Ok(()));
    if set.is_ok() {
        // SAFETY: FS base points at MARK, a readable u64.
        let v = unsafe { probes::guest_read_fs(0) };
        check(
            r,
            &alloc::format!("a read through FS finds the variable ({v:#x})"),
            v == MARK,
        );
        let _ = XEN_PV.set_segment_base(SEGBASE_FS, 0);
    }
}

/// One `iret` with the given CS, RFLAGS, SS: `(cs, rflags, ss)` after the return, or the error.
fn iret_with(cs: u64, rflags: u64, ss: u64) -> Result<[u64; 3], Errno> {
    let mut out = [0u64; 3];
    // SAFETY: the probe builds an iret_context resuming right after the hypercall on its own stack, with
    // events masked (IF clear in `rflags`), and reports the state it finds there.
    let ret = unsafe { probes::guest_iret_probe(cs, rflags, ss, &raw mut out, 0) };
    if ret < 0 {
        return Err(Errno::from_ret(ret).unwrap_or(Errno::EINVAL));
    }
    Ok(out)
}

fn iret_frames(r: &mut Results) {
    println!("iret:");
    let enabled = platform().irq_disable();
    let base = 0x2u64; // fixed bit, IF clear: events stay masked
    let kcs = u64::from(GUEST_KERNEL_CS);
    let kss = u64::from(GUEST_KERNEL_SS);
    let cases: [(&str, u64, u64, u64); 5] = [
        ("a plain ring-1 frame", kcs, base, kss),
        ("a frame asking for ring 0", kcs & !3, base, kss & !3),
        (
            "a frame asking for ring 2",
            (kcs & !3) | 2,
            base,
            (kss & !3) | 2,
        ),
        ("a frame asking for IOPL 3", kcs, base | RFLAGS_IOPL, kss),
        (
            "a frame asking for NT, IOPL 3 and VM",
            kcs,
            base | RFLAGS_NT | RFLAGS_IOPL | (1 << 17),
            kss,
        ),
    ];
    for (what, cs, fl, ss) in cases {
        match iret_with(cs, fl, ss) {
            Ok([cs, fl, ss]) => check(
                r,
                &alloc::format!(
                    "{what}: resumed with CS {cs:#x} (RPL {}), SS {ss:#x}, RFLAGS {fl:#x} (IOPL {}, NT {})",
                    cs & 3,
                    (fl & RFLAGS_IOPL) >> 12,
                    u64::from(fl & RFLAGS_NT != 0)
                ),
                cs & 3 == 1 && ss & 3 == 1 && fl & (RFLAGS_IOPL | RFLAGS_NT | (1 << 17)) == 0,
            ),
            Err(e) => check(r, &alloc::format!("{what}: refused with {e}"), false),
        };
    }
    // RFLAGS.IF in the frame becomes the event mask.
    let ev = XEN_PV.event_state();
    let r1 = iret_with(kcs, base | RFLAGS_IF, kss);
    let unmasked = ev.is_some_and(|e| !e.events_masked());
    platform().irq_disable();
    check(
        r,
        "an iret frame with IF set unmasks events",
        r1.is_ok() && unmasked,
    );
    platform().irq_restore(enabled);
}

/// Every trap-related hypercall refuses hostile addresses; `iret` sanitizes ring and flags.
pub fn hostile_traps(_: &str, r: &mut Results) {
    if !traps_ready() {
        println!("the trap table is not installed (see the traps: line at boot)");
        r.report(Outcome::Failure);
        return;
    }
    trap_tables(r);
    stacks(r);
    callbacks(r);
    segment_bases(r);
    iret_frames(r);
    expect(r, "the good trap table again", install_table(true), Ok(()));
    breakpoint_works(r, "everything");
}

/// An `iret` frame with a non-canonical (or, with `rip=`, any other unusable) RIP: the hypervisor must
/// crash this domain. Reaching the end is a FAILURE.
pub fn iret_noncanonical(cmdline: &str, r: &mut Results) {
    let rip = option(cmdline, "rip")
        .and_then(parse_u64)
        .unwrap_or(0x0000_8000_0000_0000);
    println!("iret to RIP {rip:#x}; the hypervisor must crash this domain");
    let mut out = [0u64; 3];
    // SAFETY: expected to end this domain; if the hypercall returns instead, nothing was changed.
    let ret = unsafe {
        probes::guest_iret_probe(
            u64::from(GUEST_KERNEL_CS),
            0x2,
            u64::from(GUEST_KERNEL_SS),
            &raw mut out,
            rip,
        )
    };
    println!("iret to {rip:#x} returned {ret} instead of crashing the domain");
    r.report(Outcome::Failure);
}
