//! `syscheck`: makes the same system calls through both entry paths, `int 0x80` (straight into the guest
//! kernel) and `syscall` (through the hypervisor), and checks that the results agree with each other and
//! with what the call must return.
#![no_std]
#![no_main]

use core::fmt;

use uapi::{PROT_WRITE, nr};
use user::arch::x86_64::cpu;
use user::sys::{self, Path};
use user::{Errno, println};

user::main!(main);

/// What the two results must satisfy.
#[derive(Clone, Copy)]
enum Rule {
    /// Both succeed with the same value.
    Same,
    /// Both give exactly this.
    Exactly(Result<u64, Errno>),
    /// Both succeed with a positive value, the second larger.
    Increasing,
}

/// One call: its name, how to make it (on the selected path), and the rule.
struct Check {
    name: &'static str,
    call: fn() -> Result<u64, Errno>,
    rule: Rule,
}

const MESSAGE: &[u8] = b"syscheck: (a short write to fd 1)\n";

const CHECKS: &[Check] = &[
    Check {
        name: "getpid",
        call: getpid,
        rule: Rule::Same,
    },
    Check {
        name: "write fd 1",
        call: || sys::write(1, MESSAGE),
        rule: Rule::Exactly(Ok(MESSAGE.len() as u64)),
    },
    Check {
        name: "write fd 7",
        call: || sys::write(7, b"x"),
        rule: Rule::Exactly(Err(Errno::EBADF)),
    },
    Check {
        name: "unknown 999",
        call: unknown,
        rule: Rule::Exactly(Err(Errno::ENOSYS)),
    },
    Check {
        name: "uptime",
        call: sys::uptime,
        rule: Rule::Increasing,
    },
    Check {
        name: "yield",
        call: sys::yield_now,
        rule: Rule::Exactly(Ok(0)),
    },
    Check {
        name: "meminfo total_pages",
        call: || sys::meminfo().map(|m| m.total_pages),
        rule: Rule::Same,
    },
    Check {
        name: "ps count",
        call: ps_count,
        rule: Rule::Same,
    },
    Check {
        name: "mmap+munmap",
        call: mmap_round_trip,
        rule: Rule::Exactly(Ok(0)),
    },
    Check {
        name: "wait no child",
        call: || sys::wait(sys::ANY_CHILD, 0).map(|(p, _)| u64::from(p)),
        rule: Rule::Exactly(Err(Errno::ECHILD)),
    },
    Check {
        name: "spawn missing",
        call: || sys::spawn("no-such-prog", "", 0).map(u64::from),
        rule: Rule::Exactly(Err(Errno::ENOENT)),
    },
    Check {
        name: "sleep 1ms",
        call: || sys::sleep_ns(1_000_000),
        rule: Rule::Exactly(Ok(0)),
    },
    Check {
        name: "ringinfo user_cs",
        call: || sys::ringinfo().map(|r| r.user_cs),
        rule: Rule::Same,
    },
];

fn main(_args: &str) -> i32 {
    let mut mismatches = 0;
    for check in CHECKS {
        sys::set_path(Path::Int80);
        let a = (check.call)();
        sys::set_path(Path::Syscall);
        let b = (check.call)();
        sys::set_path(Path::Int80);
        let ok = match check.rule {
            Rule::Same => a.is_ok() && a == b,
            Rule::Exactly(want) => a == want && b == want,
            Rule::Increasing => matches!((a, b), (Ok(x), Ok(y)) if x > 0 && y > x),
        };
        if !ok {
            mismatches += 1;
        }
        println!(
            "syscheck: {}: int80={} syscall={} {}",
            check.name,
            Value(a),
            Value(b),
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    if mismatches == 0 {
        println!(
            "syscheck: {} calls, int 0x80 and syscall agree",
            CHECKS.len()
        );
        0
    } else {
        println!("syscheck: FAILED {mismatches} mismatches");
        1
    }
}

/// A result as a number or `-ERRNO`.
struct Value(Result<u64, Errno>);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "{v}"),
            Err(e) => write!(f, "-{}", e.name()),
        }
    }
}

fn getpid() -> Result<u64, Errno> {
    // SAFETY: getpid takes no arguments and touches no memory.
    unsafe { sys::call(nr::GETPID, [0; 5]) }
}

fn unknown() -> Result<u64, Errno> {
    // SAFETY: an unknown number must be refused without looking at the (zero) arguments.
    unsafe { sys::call(999, [0; 5]) }
}

fn ps_count() -> Result<u64, Errno> {
    let mut buf = [uapi::ProcInfo::default(); sys::PS_MAX];
    sys::ps(&mut buf).map(|n| n as u64)
}

/// Map a page, write to it, unmap it: the result of the munmap.
fn mmap_round_trip() -> Result<u64, Errno> {
    let addr = sys::mmap(0, 4096, PROT_WRITE)?;
    // SAFETY: a fresh writable page that nothing else refers to.
    unsafe { cpu::store_u64(addr, 0x5a5a) };
    // SAFETY: no reference into the page exists; it is unmapped exactly once.
    unsafe { sys::munmap(addr, 4096) }
}
