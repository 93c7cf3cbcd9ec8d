//! `osbench [ITERATIONS] [FILTER...]`: lmbench-style operating-system micro-benchmarks from ring 3 —
//! null system calls on both paths, console writes, process creation, context switches, page faults,
//! mapping — timed with the time-stamp counter and printed as `abi::bench` lines with the hypervisor's
//! entry counts beside them (see `user::osbench`). It knows nothing of hypervisors: the same binary runs
//! wherever the kernel runs, and `cargo xtask compare` puts the runs side by side.
//!
//! Internal roles (the same image spawned by itself): `osbench --exit` exits at once (the process
//! creation workload); `osbench --pong PARENT N` answers N+1 wake-ups (the context-switch workload).
//! Checks the tests run: `osbench --hostile` passes bad arguments to the calls osbench relies on and
//! expects each refused; `osbench --fault-in-handler` registers a handler at an unmapped address, so the
//! handler itself faults and the process must be killed.
#![no_std]
#![no_main]

use core::fmt::Write;
use core::hint::black_box;
use core::ptr;

use uapi::bench::{per_operation, subtract_overhead, summarize};
use uapi::{Errno, HvCounters, PROT_WRITE, nr};
use user::arch::x86_64::probe::{fault_entry, rdtsc, store_probe};
use user::io::StrBuf;
use user::osbench::{MAX_ITERATIONS, Options, WORKLOADS, parse_args, write_result};
use user::sys::{self, Path};
use user::{eprintln, num, println};

user::main!(main);

const PAGE: u64 = 4096;
/// Pages of the map/unmap workload.
const MAP_PAGES: u64 = 64;
/// Rounds of the compute loop.
const COMPUTE_ROUNDS: u64 = 1000;

fn main(args: &str) -> i32 {
    if args.trim() == "--exit" {
        return 0;
    }
    if let Some(rest) = args.trim().strip_prefix("--pong") {
        return pong(rest);
    }
    if args.trim() == "--hostile" {
        return hostile();
    }
    if args.trim() == "--fault-in-handler" {
        return fault_in_handler();
    }
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("osbench: {e}");
            eprintln!("usage: osbench [ITERATIONS (1..={MAX_ITERATIONS})] [FILTER...]");
            return 2;
        }
    };
    run_all(&opts)
}

fn run_all(opts: &Options<'_>) -> i32 {
    let overhead = timer_overhead();
    let hv = sys::hvcounters().unwrap_or_default();
    println!(
        "osbench: {} iterations; ticks per operation (TSC; instructions under icount), timer overhead \
         {overhead} subtracted; hypervisor counts {}",
        opts.iterations,
        if hv.virtualised != 0 {
            "beside each line"
        } else {
            "absent (not virtualised)"
        }
    );
    let mut failed = 0;
    for w in WORKLOADS.iter().filter(|w| opts.selected(w.name)) {
        if let Err(e) = run_one(w.name, opts.iterations as usize, overhead) {
            println!("osbench: {} failed: {e}", w.name);
            failed += 1;
        }
    }
    println!("osbench: done");
    i32::from(failed > 0)
}

/// The smallest cost of two back-to-back timer reads.
fn timer_overhead() -> u64 {
    (0..64)
        .map(|_| {
            let t0 = rdtsc();
            let t1 = rdtsc();
            t1.wrapping_sub(t0)
        })
        .min()
        .unwrap_or(0)
}

/// Time `op` once per sample.
fn each(samples: &mut [u64], mut op: impl FnMut() -> Result<(), Errno>) -> Result<(), Errno> {
    for s in samples.iter_mut() {
        let t0 = rdtsc();
        op()?;
        *s = rdtsc().wrapping_sub(t0);
    }
    Ok(())
}

fn run_one(name: &str, n: usize, overhead: u64) -> Result<(), Errno> {
    let mut buf = [0u64; MAX_ITERATIONS as usize];
    let samples = &mut buf[..n];
    let before = sys::hvcounters()?;
    let per = measure(name, samples)?;
    let after = sys::hvcounters()?;
    if name.starts_with("write_") {
        // End the line of blanks the console workloads wrote.
        println!();
    }
    let mut hv: HvCounters = after.since(&before);
    if hv.virtualised != 0 {
        // The second reading's own hypercall.
        hv.hypercalls = hv.hypercalls.saturating_sub(1);
    }
    subtract_overhead(samples, overhead);
    per_operation(samples, per);
    let stats = summarize(samples).ok_or(Errno::EINVAL)?;
    let mut line = StrBuf::<320>::new();
    let _ = write_result(&mut line, name, n as u64, &stats, n as u64 * per, &hv);
    println!("{}", line.as_str());
    Ok(())
}

/// Fill `samples` for workload `name`; returns the operations per sample.
fn measure(name: &str, samples: &mut [u64]) -> Result<u64, Errno> {
    match name {
        "null_syscall_int80" => each(samples, || null_call(Path::Int80)).map(|()| 1),
        "null_syscall_syscall" => each(samples, || null_call(Path::Syscall)).map(|()| 1),
        "write_1b" => each(samples, || sys::write(1, b" ").map(drop)).map(|()| 1),
        "write_1k" => {
            let mut k = [b' '; 1024];
            k[1023] = b'\r';
            each(samples, || sys::write(1, &k).map(drop)).map(|()| 1)
        }
        "spawn_exit_wait" => each(samples, || spawn_wait("osbench", "--exit")).map(|()| 1),
        "spawn_image" => each(samples, || spawn_wait("exitcode", "0")).map(|()| 1),
        "ctxsw_pingpong" => pingpong(samples).map(|()| 2),
        "page_fault_zero" => page_faults(samples).map(|()| 1),
        "prot_fault" => prot_faults(samples).map(|()| 1),
        "mmap_unmap_64" => each(samples, map_unmap).map(|()| 1),
        "compute_loop" => each(samples, || {
            black_box(compute(black_box(COMPUTE_ROUNDS)));
            Ok(())
        })
        .map(|()| 1),
        _ => Err(Errno::ENOSYS),
    }
}

fn null_call(path: Path) -> Result<(), Errno> {
    // SAFETY: getpid takes no pointers and changes nothing.
    uapi::decode(unsafe { sys::call_on(path, nr::GETPID, [0; 5]) }).map(drop)
}

fn spawn_wait(program: &str, args: &str) -> Result<(), Errno> {
    let pid = sys::spawn(program, args, 0)?;
    match sys::wait(u64::from(pid), 0)? {
        (got, 0) if got == pid => Ok(()),
        _ => Err(Errno::ECHILD),
    }
}

/// One sample: wake the partner and wait for its answer (two switches).
fn pingpong(samples: &mut [u64]) -> Result<(), Errno> {
    let mut args = StrBuf::<48>::new();
    let _ = write!(args, "--pong {} {}", sys::getpid(), samples.len());
    let child = sys::spawn("osbench", args.as_str(), 0)?;
    // A first round trip untimed: the partner's start.
    let warm = sys::notify(child).and_then(|_| sys::await_notify());
    let timed = warm.and_then(|_| {
        each(samples, || {
            sys::notify(child)?;
            sys::await_notify().map(drop)
        })
    });
    let reaped = sys::wait(u64::from(child), 0);
    timed?;
    match reaped? {
        (_, 0) => Ok(()),
        _ => Err(Errno::ECHILD),
    }
}

/// `--pong PARENT N`: answer N + 1 wake-ups from PARENT.
fn pong(rest: &str) -> i32 {
    let mut w = rest.split_ascii_whitespace();
    let (Some(parent), Some(n)) = (
        w.next().and_then(num::parse_u64),
        w.next().and_then(num::parse_u64),
    ) else {
        return 2;
    };
    for _ in 0..=n {
        if sys::await_notify().is_err() || sys::notify(parent as u32).is_err() {
            return 1;
        }
    }
    0
}

/// One demand-zero fault per sample, each on a fresh page of one region.
fn page_faults(samples: &mut [u64]) -> Result<(), Errno> {
    let len = samples.len() as u64 * PAGE;
    let base = sys::mmap(0, len, PROT_WRITE)?;
    let mut page = base;
    let r = each(samples, || {
        // SAFETY: `page` lies in the fresh writable region this function owns; nothing refers to it.
        unsafe { ptr::write_volatile(page as *mut u8, 1) };
        page += PAGE;
        Ok(())
    });
    // SAFETY: no reference into the region survives; only raw addresses were used.
    unsafe { sys::munmap(base, len) }?;
    r
}

/// A store to a read-only page, handled by `probe::fault_entry`, which resumes after the store.
fn prot_faults(samples: &mut [u64]) -> Result<(), Errno> {
    let page = sys::mmap(0, PAGE, 0)?;
    // SAFETY: reading the fresh read-only region maps its (zero) page; nothing else refers to it.
    let _ = unsafe { ptr::read_volatile(page as *const u8) };
    // SAFETY: `fault_entry` follows the handler protocol (it ends with fault_return and never returns).
    unsafe { sys::set_fault_handler(fault_entry()) }?;
    let r = each(samples, || {
        // SAFETY: the store faults (the page is read-only) and the handler resumes after it.
        unsafe { store_probe(page) };
        Ok(())
    });
    // SAFETY: removing the handler is always allowed.
    let removed = unsafe { sys::set_fault_handler(0) };
    // SAFETY: as above, a raw address only.
    let untouched = unsafe { ptr::read_volatile(page as *const u8) } == 0;
    // SAFETY: no reference into the region survives.
    unsafe { sys::munmap(page, PAGE) }?;
    r?;
    removed?;
    if untouched { Ok(()) } else { Err(Errno::EIO) }
}

/// Map 64 pages, touch each, unmap them.
fn map_unmap() -> Result<(), Errno> {
    let len = MAP_PAGES * PAGE;
    let base = sys::mmap(0, len, PROT_WRITE)?;
    for i in 0..MAP_PAGES {
        // SAFETY: inside the fresh writable region this function owns.
        unsafe { ptr::write_volatile((base + i * PAGE) as *mut u8, 1) };
    }
    // SAFETY: only raw addresses into the region were used.
    unsafe { sys::munmap(base, len) }.map(drop)
}

/// Integer work with no memory traffic and no kernel entry.
fn compute(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    x
}

/// Bad arguments to `notify`, `fault_handler`, `fault_return` and `hvcounters`: each must be refused with
/// the documented errno, and nothing must have changed.
fn hostile() -> i32 {
    let raw = |n: u64, a: [u64; 5], path: Path| {
        // SAFETY: every pointer passed below is one the kernel must refuse without touching memory.
        uapi::decode(unsafe { sys::call_on(path, n, a) })
    };
    let me = u64::from(sys::getpid());
    let cases: [(&str, u64, [u64; 5], Errno); 12] = [
        ("notify pid 0", nr::NOTIFY, [0, 0, 0, 0, 0], Errno::ESRCH),
        (
            "notify a huge pid",
            nr::NOTIFY,
            [1 << 40, 0, 0, 0, 0],
            Errno::ESRCH,
        ),
        (
            "notify u64::MAX",
            nr::NOTIFY,
            [u64::MAX, 0, 0, 0, 0],
            Errno::ESRCH,
        ),
        (
            "notify a free pid",
            nr::NOTIFY,
            [60_000, 0, 0, 0, 0],
            Errno::ESRCH,
        ),
        ("notify itself", nr::NOTIFY, [me, 0, 0, 0, 0], Errno::EPERM),
        (
            "fault_handler in the kernel",
            nr::FAULT_HANDLER,
            [0xffff_ffff_8000_0000, 0, 0, 0, 0],
            Errno::EFAULT,
        ),
        (
            "fault_handler non-canonical",
            nr::FAULT_HANDLER,
            [0x8000_0000_0000_0000, 0, 0, 0, 0],
            Errno::EFAULT,
        ),
        (
            "fault_handler in page 0",
            nr::FAULT_HANDLER,
            [0x10, 0, 0, 0, 0],
            Errno::EFAULT,
        ),
        (
            "fault_return without a fault",
            nr::FAULT_RETURN,
            [0, 0, 0, 0, 0],
            Errno::EINVAL,
        ),
        (
            "fault_return to the kernel",
            nr::FAULT_RETURN,
            [0xffff_ffff_8000_0000, 0, 0, 0, 0],
            Errno::EINVAL,
        ),
        (
            "hvcounters at null",
            nr::HVCOUNTERS,
            [0, 0, 0, 0, 0],
            Errno::EFAULT,
        ),
        (
            "hvcounters in the kernel",
            nr::HVCOUNTERS,
            [0xffff_ffff_8000_0000, 0, 0, 0, 0],
            Errno::EFAULT,
        ),
    ];
    let mut failed = 0;
    for path in Path::BOTH {
        for (what, n, a, want) in cases {
            let got = raw(n, a, path);
            if got != Err(want) {
                println!(
                    "osbench: hostile: {what} ({}): got {got:?}, expected {want:?}",
                    path.name()
                );
                failed += 1;
            }
        }
    }
    // A good call still works after the refused ones.
    if sys::hvcounters().is_err() {
        println!("osbench: hostile: hvcounters with a good buffer failed");
        failed += 1;
    }
    if failed > 0 {
        println!("osbench: hostile: FAILED {failed}");
        return 1;
    }
    println!("osbench: hostile: {} bad calls refused", 2 * cases.len());
    0
}

/// Register a handler at an unmapped (but user) address and fault: the handler's own fetch faults, and
/// a fault while the handler runs must kill the process (status 139), not loop.
fn fault_in_handler() -> i32 {
    let Ok(page) = sys::mmap(0, PAGE, 0) else {
        return 1;
    };
    // SAFETY: `page + PAGE * 16` is a user address with nothing mapped; the kernel only records it.
    if unsafe { sys::set_fault_handler(page + PAGE * 16) }.is_err() {
        return 1;
    }
    println!("osbench: faulting with a handler that faults");
    // SAFETY: the store faults (read-only page); the handler faults too; the kernel ends the process.
    unsafe { store_probe(page) };
    println!("osbench: FAILED still running after a fault in the handler");
    1
}
