//! Running the `sensitive` probes in the kernel's own ring and printing the table (see the module above).
//! The instructions that may fault run with #GP and #UD handlers that check RIP exactly and resume at the
//! probe's recovery label.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{
    IF, IOPL_MASK, Row, Tally, Verdict, iopl, lar_dpl, of_cpuid, of_popf, of_privilege,
    of_state_read, of_unseen, signature,
};
use crate::arch::x86_64::sensitive_probes::{self as sx, FAULTED, Guarded};
use crate::platform::{Backend, backend, native::desc};
use crate::println;
use crate::trap::dispatch::traps_ready;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};

/// The instruction the armed handler accepts a fault at, where it resumes, and the vector seen.
static EXPECT_RIP: AtomicU64 = AtomicU64::new(0);
static RESUME_RIP: AtomicU64 = AtomicU64::new(0);
static SEEN_VECTOR: AtomicU64 = AtomicU64::new(u64::MAX);

fn expected_fault(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if ctx.from_user || f.rip != EXPECT_RIP.load(Ordering::SeqCst) {
        return Disposition::Unhandled;
    }
    SEEN_VECTOR.store(ctx.vector, Ordering::SeqCst);
    f.rip = RESUME_RIP.load(Ordering::SeqCst);
    Disposition::Resume
}

/// Runs a guarded probe: `Ok(value)` (and the bytes it stored), or `Err(vector)` if its instruction
/// faulted (#GP/#UD) and the handler resumed it at its recovery label.
fn guarded(probe: Guarded) -> (Result<u64, u64>, [u8; 10]) {
    let (insn, fault) = probe.labels();
    EXPECT_RIP.store(insn, Ordering::SeqCst);
    RESUME_RIP.store(fault, Ordering::SeqCst);
    SEEN_VECTOR.store(u64::MAX, Ordering::SeqCst);
    let mut out = [0u8; 10];
    let v = {
        let _gp = HANDLERS.scoped(13, expected_fault);
        let _ud = HANDLERS.scoped(6, expected_fault);
        // SAFETY: the #GP and #UD handlers installed for this scope resume exactly this probe's
        // instruction at its recovery label.
        unsafe { probe.run(&mut out) }
    };
    let vector = SEEN_VECTOR.load(Ordering::SeqCst);
    EXPECT_RIP.store(0, Ordering::SeqCst);
    if v == FAULTED && vector != u64::MAX {
        (Err(vector), out)
    } else {
        (Ok(v), out)
    }
}

fn fault_name(vector: u64) -> &'static str {
    match vector {
        13 => "#GP",
        6 => "#UD",
        _ => "a fault",
    }
}

/// Prints one row and counts its verdict.
fn row(t: &mut Tally, insn: &str, seen: &str, verdict: Verdict) {
    t.add(verdict);
    println!(
        "{}",
        Row {
            insn,
            seen,
            verdict
        }
    );
}

/// A read of machine state (`expected`: what this kernel itself loaded, if it knows): its row.
fn state_row(
    t: &mut Tally,
    cpl: u8,
    insn: &str,
    r: Result<u64, u64>,
    expected: Option<u64>,
    show: impl Fn(u64) -> String,
) {
    match r {
        Ok(v) => row(t, insn, &show(v), of_state_read(cpl, false, expected, v)),
        Err(vector) => row(
            t,
            insn,
            &format!("{} (UMIP at CPL {cpl})", fault_name(vector)),
            Verdict::Traps,
        ),
    }
}

/// A descriptor-table register read (SGDT/SIDT): the row with base and limit.
fn table_row(t: &mut Tally, cpl: u8, insn: &str, probe: Guarded, expected_base: Option<u64>) {
    let (r, out) = guarded(probe);
    let base = u64::from_le_bytes([
        out[2], out[3], out[4], out[5], out[6], out[7], out[8], out[9],
    ]);
    let limit = u16::from_le_bytes([out[0], out[1]]);
    state_row(t, cpl, insn, r.map(|_| base), expected_base, |b| {
        format!("base {b:#x} limit {limit:#x}")
    });
}

/// Runs every probe and prints the table; returns the poweroff code (0; 1 if the trap table is missing).
pub fn run() -> u32 {
    if !traps_ready() {
        println!("sensitive: the trap table is not installed (see the traps: line at boot)");
        return 1;
    }
    let native = backend() == Backend::Native;
    let cs = sx::mov_cs();
    let cpl = (cs & 3) as u8;
    println!(
        "sensitive: the Popek-Goldberg probes at CPL {cpl} ({} backend); verdicts: as in ring 0, REVEALS, SILENT, TRAPS, no trap",
        if native { "native" } else { "xen-pv" }
    );
    let mut t = Tally::default();

    // PUSHF shows the real IF and IOPL (at CPL > 0 not the ones a ring-0 kernel would have set); POPF of
    // a changed IF, then of IOPL 3.
    let flags = sx::pushf();
    let bit = |f: u64| u64::from(f & IF != 0);
    row(
        &mut t,
        "pushf",
        &format!("IF={} IOPL={}", bit(flags), iopl(flags)),
        of_privilege(cpl),
    );
    let after = sx::popf(flags ^ IF);
    row(
        &mut t,
        "popf IF",
        &format!(
            "asked IF {}->{}, got IF={}",
            bit(flags),
            1 - bit(flags),
            bit(after)
        ),
        of_popf((after ^ flags) & IF != 0),
    );
    let after = sx::popf(flags | IOPL_MASK);
    row(
        &mut t,
        "popf IOPL",
        &format!("asked IOPL {}->3, got IOPL={}", iopl(flags), iopl(after)),
        of_popf(iopl(after) == 3),
    );

    // Selectors: the RPL is the ring.
    row(
        &mut t,
        "mov cs",
        &format!("{cs:#x} (RPL {cpl})"),
        of_privilege(cpl),
    );
    let ss = sx::mov_ss();
    row(
        &mut t,
        "mov ss",
        &format!("{ss:#x} (RPL {})", ss & 3),
        of_privilege((ss & 3) as u8),
    );

    // Descriptor-table and machine-state reads (UMIP-guarded). The native backend owns its tables (also
    // under emulate, where a VMM returns the virtual values); the PV kernel owns none of them.
    let (gdt, idt) = if native {
        let (g, i) = crate::platform::native::table_bases();
        (Some(g), Some(i))
    } else {
        (None, None)
    };
    table_row(&mut t, cpl, "sgdt", Guarded::Sgdt, gdt);
    table_row(&mut t, cpl, "sidt", Guarded::Sidt, idt);
    let cr0 = if native {
        guarded(Guarded::Cr0).0.ok().map(|v| v & 0xffff)
    } else {
        None
    };
    state_row(&mut t, cpl, "smsw", guarded(Guarded::Smsw).0, cr0, |v| {
        format!("MSW {v:#x}")
    });
    let tss = native.then_some(u64::from(desc::TSS_SEL));
    state_row(&mut t, cpl, "str", guarded(Guarded::Str).0, tss, |v| {
        format!("TR {v:#x}")
    });
    // No kernel here uses an LDT, on any machine: LDTR 0 is what ring 0 would see too.
    state_row(
        &mut t,
        cpl,
        "sldt",
        guarded(Guarded::Sldt).0,
        Some(0),
        |v| format!("LDTR {v:#x}"),
    );

    // The kernel's own code segment through LAR, LSL, VERR.
    let access = sx::lar(cs);
    if access == u64::MAX {
        row(&mut t, "lar cs", "refused (ZF=0)", Verdict::Reveals);
    } else {
        let dpl = lar_dpl(access);
        row(
            &mut t,
            "lar cs",
            &format!("access {access:#x} (DPL {dpl})"),
            of_privilege(dpl),
        );
    }
    row(
        &mut t,
        "lsl cs",
        &format!("limit {:#x}", sx::lsl(cs)),
        of_unseen(cpl),
    );
    row(
        &mut t,
        "verr cs",
        &format!("readable={}", sx::verr(cs)),
        of_unseen(cpl),
    );

    // CPUID: the hypervisor bit and leaf 0x40000000's signature.
    let hv_bit = sx::cpuid(1)[2] & (1 << 31) != 0;
    let seen = if hv_bit {
        let hv = sx::cpuid(0x4000_0000);
        let sig = signature([hv[1], hv[2], hv[3]]);
        format!(
            "hypervisor bit 1, leaf 0x40000000 \"{}\"",
            core::str::from_utf8(&sig).unwrap_or("?")
        )
    } else {
        "hypervisor bit 0".into()
    };
    row(&mut t, "cpuid", &seen, of_cpuid(hv_bit, cpl));
    let (a, b) = (sx::rdtsc(), sx::rdtsc());
    row(
        &mut t,
        "rdtsc",
        if b > a {
            "the real TSC (counting)"
        } else {
            "not counting"
        },
        of_unseen(cpl),
    );
    println!("{t}");
    0
}
