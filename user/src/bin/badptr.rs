//! `badptr`: passes bad pointers to every system call that takes one, on both entry paths, and checks
//! each call is refused with -EFAULT without harm: null, an unmapped page, the guest kernel's and the
//! hypervisor's addresses, a non-canonical address, a range running from a mapped page into an unmapped
//! one, a read-only page (its own text) for calls that write, and a length of `u64::MAX`.
//!
//! A length of `u64::MAX` makes the range wrap, so it is -EFAULT too, even for `spawn` and `bench`
//! whose lengths have limits (-EINVAL is for a sane range that is merely too long). One case is not made:
//! a null `wait` status pointer is valid (uapi: "may be 0 for don't care").
#![no_std]
#![no_main]

use uapi::{Errno, nr};
use user::arch::x86_64::cpu;
use user::sys::{self, Path};
use user::{eprintln, println};

user::main!(main);

/// Addresses no user pointer may reach.
const BAD: [(&str, u64); 5] = [
    ("null", 0),
    ("unmapped", 0x1000),
    ("kernel", 0xffff_ffff_8000_0000),
    ("hypervisor", 0xffff_8000_0000_0000),
    ("noncanonical", 0x8000_0000_0000_0000),
];

/// Valid things the calls need besides the pointer under test.
struct Ctx {
    /// An ended child (for `wait`).
    child: u64,
}

/// The valid program name `spawn` cases use when the name is not the pointer under test.
const NAME: &str = "exitcode";

/// One pointer-taking call.
struct Call {
    name: &'static str,
    nr: u64,
    /// The arguments with pointer `p` and length `len` under test.
    args: fn(p: u64, len: u64, ctx: &Ctx) -> [u64; 5],
    /// Bytes the call accesses through the pointer (the length passed, or the record it writes).
    size: u64,
    /// Whether the kernel writes through the pointer (then a read-only page must be refused too).
    writes: bool,
    /// Whether the call takes a length (then `u64::MAX` as the length is tried too).
    has_len: bool,
}

const CALLS: &[Call] = &[
    Call {
        name: "write",
        nr: nr::WRITE,
        args: |p, l, _| [1, p, l, 0, 0],
        size: 16,
        writes: false,
        has_len: true,
    },
    Call {
        name: "read",
        nr: nr::READ,
        args: |p, l, _| [0, p, l, 0, 0],
        size: 16,
        writes: true,
        has_len: true,
    },
    Call {
        name: "spawn-name",
        nr: nr::SPAWN,
        args: |p, l, _| [p, l, 0, 0, 0],
        size: 8,
        writes: false,
        has_len: true,
    },
    Call {
        name: "spawn-args",
        nr: nr::SPAWN,
        args: |p, l, _| [NAME.as_ptr() as u64, NAME.len() as u64, p, l, 0],
        size: 16,
        writes: false,
        has_len: true,
    },
    Call {
        name: "wait-status",
        nr: nr::WAIT,
        args: |p, _, c| [c.child, p, 0, 0, 0],
        size: size_of::<u32>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "ps",
        nr: nr::PS,
        args: |p, _, _| [p, 1, 0, 0, 0],
        size: size_of::<uapi::ProcInfo>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "meminfo",
        nr: nr::MEMINFO,
        args: |p, _, _| [p, 0, 0, 0, 0],
        size: size_of::<uapi::MemInfo>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "domains",
        nr: nr::DOMAINS,
        args: |p, _, _| [p, 1, 0, 0, 0],
        size: size_of::<uapi::DomInfo>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "ringinfo",
        nr: nr::RINGINFO,
        args: |p, _, _| [p, 0, 0, 0, 0],
        size: size_of::<uapi::RingInfo>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "hvcounters",
        nr: nr::HVCOUNTERS,
        args: |p, _, _| [p, 0, 0, 0, 0],
        size: size_of::<uapi::HvCounters>() as u64,
        writes: true,
        has_len: false,
    },
    Call {
        name: "bench-filter",
        nr: nr::BENCH,
        args: |p, l, _| [1, p, l, 0, 0],
        size: 8,
        writes: false,
        has_len: true,
    },
];

/// Calls made, and those not refused with -EFAULT.
#[derive(Default)]
struct Tally {
    made: u32,
    failed: u32,
}

impl Tally {
    /// Make `call` with `(p, len)` on both paths; both must give -EFAULT.
    fn check(&mut self, call: &Call, case: &str, p: u64, len: u64, ctx: &Ctx) {
        for path in Path::BOTH {
            // SAFETY: every pointer passed is one the kernel must refuse before touching memory; the only
            // mapped memory involved (the scratch page) is reached by this program through raw addresses
            // alone, so even a kernel that wrongly wrote to it would break no Rust reference.
            let got =
                uapi::decode(unsafe { sys::call_on(path, call.nr, (call.args)(p, len, ctx)) });
            self.made += 1;
            if got != Err(Errno::EFAULT) {
                self.failed += 1;
                match got {
                    Ok(v) => println!("badptr: {} {case} {}: got {v}", call.name, path.name()),
                    Err(e) => println!(
                        "badptr: {} {case} {}: got -{}",
                        call.name,
                        path.name(),
                        e.name()
                    ),
                }
            }
        }
    }
}

fn main(_args: &str) -> i32 {
    let Some(scratch) = scratch_page() else {
        println!("badptr: FAILED cannot set up a mapped page before an unmapped one");
        return 1;
    };
    let child = match sys::spawn(NAME, "7", 0) {
        Ok(pid) => u64::from(pid),
        Err(e) => {
            println!("badptr: FAILED spawn {NAME}: {e}");
            return 1;
        }
    };
    let ctx = Ctx { child };
    let edge = scratch + 4096;
    let dom0 = sys::domains(&mut [uapi::DomInfo::default(); 16]) != Err(Errno::EPERM);
    let mut t = Tally::default();
    for call in CALLS {
        if call.nr == nr::DOMAINS && !dom0 {
            eprintln!("badptr: domains skipped (not domain 0: -EPERM before any pointer check)");
            continue;
        }
        for (case, addr) in BAD {
            if call.nr == nr::WAIT && addr == 0 {
                // uapi: a null status pointer means "don't care" and is valid.
                continue;
            }
            t.check(call, case, addr, call.size, &ctx);
        }
        t.check(call, "straddle", edge - call.size / 2, call.size, &ctx);
        if call.writes {
            t.check(call, "readonly", uapi::USER_IMAGE_BASE, call.size, &ctx);
        }
        if call.has_len {
            t.check(call, "hugelen", scratch, u64::MAX, &ctx);
        }
    }
    // The refused waits must not have reaped the child: a good wait still finds it with its status.
    let total = t.made + 1;
    match sys::wait(child, 0) {
        Ok((pid, 7)) if u64::from(pid) == child => {}
        other => {
            t.failed += 1;
            println!(
                "badptr: wait after the refused waits: got {other:?}, expected pid {child} status 7"
            );
        }
    }
    // Reap anything a wrongly accepted spawn started.
    while sys::wait(sys::ANY_CHILD, 0).is_ok() {}
    if t.failed > 0 {
        println!("badptr: FAILED {} of {total}", t.failed);
        return 1;
    }
    println!("badptr: {} bad-pointer calls, every one -EFAULT", t.made);
    0
}

/// A mapped (and touched) writable page whose successor is not mapped; its address.
fn scratch_page() -> Option<u64> {
    let base = sys::mmap(0, 2 * 4096, uapi::PROT_WRITE).ok()?;
    // SAFETY: the first page of a fresh writable mapping nobody else refers to.
    unsafe { cpu::store_u64(base, 1) };
    // SAFETY: nothing refers to the second page.
    unsafe { sys::munmap(base + 4096, 4096) }.ok()?;
    Some(base)
}
