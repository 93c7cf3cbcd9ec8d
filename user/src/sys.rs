//! Typed system calls. Every wrapper goes through [`call`], which uses the process's selected entry path
//! ([`set_path`]; `int 0x80` by default); [`call_on`] picks a path explicitly. Results are decoded with
//! `uapi::decode`: `Ok(value)` or `Err(errno)`.

use core::sync::atomic::{AtomicU8, Ordering};

use uapi::{DomInfo, Errno, HvCounters, MemInfo, ProcInfo, RingInfo, nr};

use crate::arch::x86_64::syscall::{raw_int80, raw_syscall};

/// How a system call enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `int 0x80`: the trap gate straight into the guest kernel.
    Int80 = 0,
    /// `syscall`: through the hypervisor, which bounces it to the guest kernel.
    Syscall = 1,
}

impl Path {
    /// Both paths, `int 0x80` first.
    pub const BOTH: [Path; 2] = [Path::Int80, Path::Syscall];

    /// A short name (`int80` or `syscall`).
    pub const fn name(self) -> &'static str {
        match self {
            Path::Int80 => "int80",
            Path::Syscall => "syscall",
        }
    }
}

/// The path the typed wrappers use (a [`Path`] discriminant).
static PATH: AtomicU8 = AtomicU8::new(Path::Int80 as u8);

/// Select the path every later system call of this process takes.
pub fn set_path(path: Path) {
    PATH.store(path as u8, Ordering::Relaxed);
}

/// The path system calls take now.
pub fn path() -> Path {
    if PATH.load(Ordering::Relaxed) == Path::Syscall as u8 {
        Path::Syscall
    } else {
        Path::Int80
    }
}

/// Make system call `nr` on `path`; the raw RAX value.
///
/// # Safety
/// As for [`raw_int80`]: the arguments must be valid for the call.
pub unsafe fn call_on(path: Path, nr: u64, args: [u64; 5]) -> u64 {
    let [a0, a1, a2, a3, a4] = args;
    match path {
        // SAFETY: forwarded from the caller.
        Path::Int80 => unsafe { raw_int80(nr, a0, a1, a2, a3, a4) },
        // SAFETY: forwarded from the caller.
        Path::Syscall => unsafe { raw_syscall(nr, a0, a1, a2, a3, a4) },
    }
}

/// Make system call `nr` on the selected path and decode the result.
///
/// # Safety
/// As for [`raw_int80`]: the arguments must be valid for the call.
pub unsafe fn call(nr: u64, args: [u64; 5]) -> Result<u64, Errno> {
    // SAFETY: forwarded from the caller.
    uapi::decode(unsafe { call_on(path(), nr, args) })
}

/// A call whose only pointer arguments are the ones the safe wrappers below build from slices they
/// borrow for the duration of the call.
fn checked(nr: u64, args: [u64; 5]) -> Result<u64, Errno> {
    // SAFETY: every caller passes pointers derived from live, exclusively or shared borrowed slices of
    // the stated length, writable where the call writes; the kernel touches nothing else.
    unsafe { call(nr, args) }
}

/// End the process with status `code & 0xff`.
pub fn exit(code: i32) -> ! {
    loop {
        // `exit` does not return; should it ever, try again rather than run on.
        let _ = checked(nr::EXIT, [code as u32 as u64, 0, 0, 0, 0]);
    }
}

/// Write `buf` to `fd` (1 and 2 are the console); the number of bytes written.
pub fn write(fd: u64, buf: &[u8]) -> Result<u64, Errno> {
    checked(nr::WRITE, [fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0])
}

/// Write all of `buf` to `fd`.
pub fn write_all(fd: u64, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        let n = write(fd, buf)? as usize;
        if n == 0 {
            return Err(Errno::EIO);
        }
        buf = &buf[n.min(buf.len())..];
    }
    Ok(())
}

/// Read up to `buf.len()` bytes of the current console line from `fd` (0); 0 at end of input.
pub fn read(fd: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    checked(
        nr::READ,
        [fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0],
    )
    .map(|n| n as usize)
}

/// This process's id.
pub fn getpid() -> u32 {
    checked(nr::GETPID, [0; 5]).unwrap_or(0) as u32
}

/// Let another runnable process run.
pub fn yield_now() -> Result<u64, Errno> {
    checked(nr::YIELD, [0; 5])
}

/// Block for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) -> Result<u64, Errno> {
    checked(nr::SLEEP, [ns, 0, 0, 0, 0])
}

/// Start program `name` with argument string `args`; the child's pid.
pub fn spawn(name: &str, args: &str, flags: u64) -> Result<u32, Errno> {
    let (n, a) = (name.as_bytes(), args.as_bytes());
    checked(
        nr::SPAWN,
        [
            n.as_ptr() as u64,
            n.len() as u64,
            a.as_ptr() as u64,
            a.len() as u64,
            flags,
        ],
    )
    .map(|pid| pid as u32)
}

/// The `pid` argument of [`wait`] that means "any child".
pub const ANY_CHILD: u64 = u64::MAX;

/// Reap child `pid` (or [`ANY_CHILD`]): `(pid, status)`, or `(0, 0)` if none has ended and `flags` has
/// `WNOHANG`.
pub fn wait(pid: u64, flags: u64) -> Result<(u32, u32), Errno> {
    let mut status = 0u32;
    let got = checked(nr::WAIT, [pid, &raw mut status as u64, flags, 0, 0])?;
    Ok((got as u32, status))
}

/// A new anonymous, demand-zero region of `len` bytes; `addr` must be 0 (anything else is refused). The
/// region's address.
pub fn mmap(addr: u64, len: u64, prot: u64) -> Result<u64, Errno> {
    // No pointer is dereferenced: the kernel only adds a region to the address space.
    checked(nr::MMAP, [addr, len, prot, 0, 0])
}

/// Remove `[addr, addr + len)` from the address space.
///
/// # Safety
/// No live reference may point into the range.
pub unsafe fn munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    // SAFETY: the caller guarantees nothing refers to the pages that disappear.
    unsafe { call(nr::MUNMAP, [addr, len, 0, 0, 0]) }
}

/// Fill `buf` with one record per live process (by pid); the number of records.
pub fn ps(buf: &mut [ProcInfo]) -> Result<usize, Errno> {
    checked(nr::PS, [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0]).map(|n| n as usize)
}

/// The process `pid`'s record, if it lives (up to [`PS_MAX`] processes are looked at).
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let mut buf = [ProcInfo::default(); PS_MAX];
    let n = ps(&mut buf).ok()?;
    buf[..n.min(PS_MAX)].iter().copied().find(|p| p.pid == pid)
}

/// How many process records the programs ask `ps` for.
pub const PS_MAX: usize = 64;

/// Memory statistics.
pub fn meminfo() -> Result<MemInfo, Errno> {
    let mut info = MemInfo::default();
    checked(nr::MEMINFO, [&raw mut info as u64, 0, 0, 0, 0])?;
    Ok(info)
}

/// Nanoseconds since the hypervisor booted.
pub fn uptime() -> Result<u64, Errno> {
    checked(nr::UPTIME, [0; 5])
}

/// Fill `buf` with one record per domain (domain 0 only); the number of records.
pub fn domains(buf: &mut [DomInfo]) -> Result<usize, Errno> {
    checked(
        nr::DOMAINS,
        [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
    )
    .map(|n| n as usize)
}

/// Shut the domain down with exit code `code`. Returns only on failure.
pub fn poweroff(code: u32) -> Errno {
    match checked(nr::POWEROFF, [u64::from(code), 0, 0, 0, 0]) {
        Err(e) => e,
        Ok(_) => Errno::EIO,
    }
}

/// Have the kernel run the Popek–Goldberg probes in its own ring and print their table (0: done).
pub fn sensitive() -> Result<u64, Errno> {
    checked(nr::SENSITIVE, [0; 5])
}

/// Who runs in which ring.
pub fn ringinfo() -> Result<RingInfo, Errno> {
    let mut info = RingInfo::default();
    checked(nr::RINGINFO, [&raw mut info as u64, 0, 0, 0, 0])?;
    Ok(info)
}

/// Run the kernel's hypercall benchmarks with `iterations` rounds each; `filter` (empty: all) selects
/// operations whose name contains it; `flags`: `uapi::BENCH_QUIET` or 0.
pub fn bench(iterations: u64, filter: &str, flags: u64) -> Result<u64, Errno> {
    let f = filter.as_bytes();
    checked(
        nr::BENCH,
        [iterations, f.as_ptr() as u64, f.len() as u64, flags, 0],
    )
}

/// `rounds` event-channel round trips with the other domain; the total time in ns.
pub fn evtchn_ping(rounds: u64) -> Result<u64, Errno> {
    checked(nr::EVTCHN_PING, [rounds, 0, 0, 0, 0])
}

/// A new writable anonymous region of `len` bytes (demand-zero), as a slice owned by the caller for the
/// rest of the process's life (it is never unmapped through this slice).
pub fn mmap_rw(len: usize) -> Result<&'static mut [u8], Errno> {
    let addr = mmap(0, len as u64, uapi::PROT_WRITE)?;
    // SAFETY: the kernel returned a fresh region of at least `len` writable bytes (demand-zero, so
    // initialised) that overlaps nothing else in the address space; nobody else refers to it, and the
    // slice is the only way to reach it (removing it takes the unsafe `munmap`).
    Ok(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) })
}

/// How often the hypervisor was entered on this domain's behalf so far (all zero natively).
pub fn hvcounters() -> Result<HvCounters, Errno> {
    let mut c = HvCounters::default();
    checked(nr::HVCOUNTERS, [&raw mut c as u64, 0, 0, 0, 0])?;
    Ok(c)
}

/// Post a wake-up to `pid` (the caller's parent or child).
pub fn notify(pid: u32) -> Result<u64, Errno> {
    checked(nr::NOTIFY, [u64::from(pid), 0, 0, 0, 0])
}

/// Block until a wake-up was posted to this process, and consume it.
pub fn await_notify() -> Result<u64, Errno> {
    checked(nr::AWAIT_NOTIFY, [0; 5])
}

/// Run `entry` on a page fault that would kill this process (0: no handler); see
/// `uapi::nr::FAULT_HANDLER` for how it is entered and that it must end with `fault_return`.
///
/// # Safety
/// `entry` must be code that follows that protocol (it runs on the faulting stack, with the faulting
/// context's registers otherwise intact) and never returns.
pub unsafe fn set_fault_handler(entry: u64) -> Result<u64, Errno> {
    // SAFETY: no memory is passed; the caller vouches for the code at `entry`.
    unsafe { call(nr::FAULT_HANDLER, [entry, 0, 0, 0, 0]) }
}

/// `dom_create`: build and start a domain from an image the hypervisor keeps; its id.
pub fn dom_create(req: &uapi::domctl::DomCreate) -> Result<u16, Errno> {
    checked(
        uapi::domctl::nr::DOM_CREATE,
        [req as *const uapi::domctl::DomCreate as u64, 0, 0, 0, 0],
    )
    .map(|id| id as u16)
}

/// `dom_control`: one of `uapi::domctl::op` on domain `id` (`arg`: KiB for `MAX_MEM`).
pub fn dom_control(op: u64, id: u64, arg: u64) -> Result<(), Errno> {
    checked(uapi::domctl::nr::DOM_CONTROL, [op, id, arg, 0, 0]).map(|_| ())
}

/// `dom_image`: one of `uapi::domctl::image` with an image name (`SAVE`: on domain `id`; `RESTORE`:
/// `arg` 1 for paused).
pub fn dom_image(op: u64, id: u16, name: &str, arg: u64) -> Result<u64, Errno> {
    checked(
        uapi::domctl::nr::DOM_IMAGE,
        [
            op,
            u64::from(id),
            name.as_ptr() as u64,
            name.len() as u64,
            arg,
        ],
    )
}

/// `dom_image(LIST)`: the stored images; how many were written.
pub fn dom_images(buf: &mut [uapi::domctl::ImageInfo]) -> Result<usize, Errno> {
    checked(
        uapi::domctl::nr::DOM_IMAGE,
        [
            uapi::domctl::image::LIST,
            0,
            buf.as_mut_ptr() as u64,
            0,
            buf.len() as u64,
        ],
    )
    .map(|n| n as usize)
}

/// `dom_list`: records of the domains with id `first` and above; the number written.
pub fn dom_list(first: u16, buf: &mut [DomInfo]) -> Result<usize, Errno> {
    checked(
        uapi::domctl::nr::DOM_LIST,
        [
            u64::from(first),
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
        ],
    )
    .map(|n| n as usize)
}
