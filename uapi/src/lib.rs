//! The guest OS's system-call ABI: what ring-3 programs and the PV guest kernel (ring 1) agree on.
//!
//! This is not the hypercall ABI (that is `abi`, Xen's); it is the interface of the small OS the guest
//! kernel offers its processes. Both entry paths take the same numbers and arguments and return the same
//! results:
//!
//! - `int 0x80`: the direct ring 3 → ring 1 trap gate (no hypervisor on the path);
//! - `syscall`: enters the hypervisor, which bounces it to the guest kernel's syscall callback.
//!
//! # Register convention (both paths)
//!
//! RAX = number ([`nr`]), arguments in RDI, RSI, RDX, R10, R8 (R10, not RCX: SYSCALL overwrites RCX and
//! R11, so user code must treat RCX and R11 as clobbered on both paths). The result is in RAX: a value
//! `>= 0`, or `-errno` with Xen's (= Linux's) numbers ([`Errno`]). Every other register is preserved.
//!
//! # Pointers
//!
//! Every pointer argument is checked against the calling process's own mappings before use: a range that
//! is not entirely inside user mappings with the needed access (or inside an anonymous region or the stack
//! growth area, which are populated on demand) gives `-EFAULT`; the kernel never faults on a user pointer.
//!
//! # Process layout (see the guest kernel's `proc` module)
//!
//! program at [`USER_IMAGE_BASE`] (ELF64 `PT_LOAD` segments), stack below [`USER_STACK_TOP`] growing on
//! demand down to [`USER_STACK_LIMIT`] bytes, anonymous mappings from [`mmap_base`]`(pid)` upwards.
#![no_std]
#![forbid(unsafe_code)]

pub use abi::bench;
pub use abi::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub mod domctl;

/// System-call numbers (RAX).
pub mod nr {
    /// `exit(code) -> !`: end the calling process with status `code & 0xff`.
    pub const EXIT: u64 = 0;
    /// `write(fd, buf, len) -> len`: fd 1 and 2 are the console; other fds `-EBADF`.
    pub const WRITE: u64 = 1;
    /// `read(fd, buf, len) -> n`: fd 0 is the console (in a domain whose kernel runs the shell and takes
    /// console input; `-ENODEV` elsewhere; the hypervisor sends input to domain 0 unless `xl console` moved
    /// it), in line mode:
    /// blocks until a line is complete, returns at most `len` bytes of it (the rest on the next read),
    /// `0` at end of input (Ctrl-D on an empty line), `-EINTR` if Ctrl-C was typed while no foreground
    /// program ran (the line is discarded). `buf` is checked before blocking.
    pub const READ: u64 = 2;
    /// `getpid() -> pid`.
    pub const GETPID: u64 = 3;
    /// `yield() -> 0`: let another runnable process run.
    pub const YIELD: u64 = 4;
    /// `sleep(ns) -> 0`: block for at least `ns` nanoseconds.
    pub const SLEEP: u64 = 5;
    /// `spawn(name, name_len, args, args_len, flags) -> pid`: start program `name` (see the program table)
    /// as a child of the caller; `args` (at most [`MAX_ARGS`] bytes) is copied to the top of the child's
    /// stack and given to it in RDI (pointer) and RSI (length). `-ENOENT` for an unknown program, `-EAGAIN`
    /// when the process table is full, `-ENOMEM` when memory runs out, `-EINVAL` for bad flags or lengths.
    pub const SPAWN: u64 = 6;
    /// `wait(pid, status, flags) -> pid`: reap the child `pid` (or any child if `pid == u64::MAX`) once it
    /// has ended, writing its status (u32) to `status` (may be 0 for "don't care"). With [`super::WNOHANG`],
    /// returns 0 if none has ended yet. `-ECHILD` if there is no such child.
    pub const WAIT: u64 = 7;
    /// `mmap(addr, len, prot) -> addr`: a new anonymous, demand-zero region of `len` bytes (rounded up to
    /// pages, at most [`MMAP_MAX`]); `addr` must be 0 (the kernel chooses). `prot`: [`super::PROT_WRITE`],
    /// [`super::PROT_EXEC`] (reads always allowed). `-EINVAL`, `-ENOMEM`.
    pub const MMAP: u64 = 8;
    /// `munmap(addr, len) -> 0`: remove the pages of `[addr, addr + len)` (page aligned, inside anonymous
    /// regions; regions are split as needed) and free them. `-EINVAL` otherwise.
    pub const MUNMAP: u64 = 9;
    /// `ps(buf, max) -> n`: up to `max` [`super::ProcInfo`] records, one per live process, by pid.
    pub const PS: u64 = 10;
    /// `meminfo(buf) -> 0`: one [`super::MemInfo`].
    pub const MEMINFO: u64 = 11;
    /// `uptime() -> ns`: system time since the hypervisor booted.
    pub const UPTIME: u64 = 12;
    /// `domains(buf, max) -> n`: up to `max` [`super::DomInfo`] records from the hypervisor
    /// (`sysctl getdomaininfolist`; domain 0 only, `-EPERM` elsewhere).
    pub const DOMAINS: u64 = 13;
    /// `poweroff(code) -> !`: shut the domain down (`SCHEDOP_shutdown`, poweroff) with exit code `code`.
    pub const POWEROFF: u64 = 14;
    /// `ringinfo(buf) -> 0`: one [`super::RingInfo`].
    pub const RINGINFO: u64 = 15;
    /// `bench(iterations, filter, filter_len, flags) -> 0`: run the kernel's hypercall benchmark suite
    /// (the operations of [`super::BENCH_OPERATIONS`] whose name contains `filter`, except those that need a
    /// partner domain) and print one `BENCH` line per operation; with [`super::BENCH_QUIET`] in `flags`
    /// without its header and `BENCH done` line. `-EINVAL` for 0 or too many iterations or unknown flags.
    pub const BENCH: u64 = 16;
    /// `evtchn_ping(rounds) -> ns`: `rounds` (1..=[`super::EVTCHN_PING_MAX`]) event-channel round trips with the ping server in the other
    /// domain (set up by the kernel at boot); returns the total time in ns. `-ENODEV` without a server,
    /// `-ETIMEDOUT` if a reply does not come within a second.
    pub const EVTCHN_PING: u64 = 17;
    /// `hvcounters(buf) -> 0`: one [`super::HvCounters`]: how often the hypervisor was entered on this
    /// domain's behalf so far (its `counters` hypercall). Without a hypervisor (or one that does not
    /// count) `virtualised` is 0 and every count 0.
    pub const HVCOUNTERS: u64 = 18;
    /// `notify(pid) -> 0`: post a wake-up to `pid`, which must be the caller's parent or child (`-EPERM`
    /// otherwise, `-ESRCH` if it does not exist or has ended). Wake-ups do not queue: several before an
    /// `await_notify` count as one.
    pub const NOTIFY: u64 = 19;
    /// `await_notify() -> 0`: block until a wake-up was posted to the caller (return at once if one is
    /// pending), and consume it. The kernel's smallest blocking primitive (a binary semaphore per process).
    /// The end of the caller's parent or of one of its children is a wake-up too (a `notify` to the
    /// ended process then fails), so a partner's death never leaves the other waiting forever.
    pub const AWAIT_NOTIFY: u64 = 20;
    /// `fault_handler(entry) -> 0`: from now on a page fault that would kill the caller (a protection
    /// violation or an unmapped address) runs `entry` instead, in ring 3 on the faulting stack (below a
    /// 128-byte red zone, 16-byte aligned, with a zero return address pushed), with RDI = fault address,
    /// RSI = page-fault error code, RDX = faulting RIP; `entry` must end with [`FAULT_RETURN`]. A fault
    /// while the handler runs kills the process. `entry` 0 removes the handler; otherwise it must be a user
    /// address (`-EFAULT`). FPU/SSE state is not saved around the handler.
    pub const FAULT_HANDLER: u64 = 21;
    /// `fault_return(resume) -> !`: leave the fault handler: every register as it was at the fault (the
    /// kernel's own copy; nothing is read from user memory), resuming at the faulting instruction
    /// (`resume` 0) or at `resume`. `-EINVAL` if no handler is running, `-EFAULT` for a `resume` outside
    /// user space.
    pub const FAULT_RETURN: u64 = 22;
    /// `sensitive() -> 0`: the kernel runs the Popek–Goldberg probes (the sensitive unprivileged
    /// instructions) in its own ring and prints their table on the console (the boot command `sensitive`
    /// does the same).
    pub const SENSITIVE: u64 = 23;
}

/// Highest system-call number.
pub const NR_MAX: u64 = nr::SENSITIVE;

/// `spawn` flag: the child is the console's foreground program (Ctrl-C ends it) while it lives.
pub const SPAWN_FOREGROUND: u64 = 1;
/// `wait` flag: do not block.
pub const WNOHANG: u64 = 1;
/// `mmap` protection: writable.
pub const PROT_WRITE: u64 = 2;
/// `mmap` protection: executable.
pub const PROT_EXEC: u64 = 4;

/// Most processes alive at once (zombies included); `spawn` beyond it fails with `-EAGAIN`.
pub const MAX_PROCS: usize = 64;
/// `bench` flag: print only the result lines (no header, no `BENCH done`).
pub const BENCH_QUIET: u64 = 1;
/// Most `evtchn_ping` rounds in one call (about a second or two under QEMU's emulation).
pub const EVTCHN_PING_MAX: u64 = 10_000;

/// The operations of the kernel's benchmark suite (the `bench` system call and `cargo xtask bench`), in
/// the order it runs them. No name is part of another, so a name used as the filter selects exactly it.
pub const BENCH_OPERATIONS: &[&str] = &[
    "floor_ring1_int_fastpath",
    "null_hypercall",
    "xen_version",
    "console_write_16",
    "mmu_update_single",
    "mmu_update_batch64_per_pte",
    "update_va_mapping_invlpg",
    "tlb_flush_local",
    "new_baseptr",
    "multicall8_per_call",
    "address_space_create_destroy",
    "evtchn_send_self",
    "evtchn_pingpong_interdomain",
    "set_timer_op",
    "yield_domain_switch",
    "pf_bounce",
    "syscall_int80_direct",
    "syscall_bounce",
];

/// The benchmark operations that need the `bench-partner` domain (booted by `cargo xtask bench`, absent
/// when the suite runs from the shell).
pub const BENCH_PARTNER_OPERATIONS: [&str; 2] =
    ["evtchn_pingpong_interdomain", "yield_domain_switch"];

/// Most bytes of a `spawn` argument string.
pub const MAX_ARGS: usize = 256;
/// Most bytes of a program name.
pub const MAX_NAME: usize = 15;
/// Largest single `mmap`.
pub const MMAP_MAX: u64 = 64 << 20;

/// Where programs are linked.
pub const USER_IMAGE_BASE: u64 = 0x40_0000;
/// The initial user stack pointer region ends here (exclusive).
pub const USER_STACK_TOP: u64 = 0x7fff_ffff_0000;
/// How far the stack may grow below [`USER_STACK_TOP`].
pub const USER_STACK_LIMIT: u64 = 256 * 1024;

/// Size of each process's window for anonymous mappings.
pub const MMAP_WINDOW: u64 = 1 << 30;

/// Where process `pid`'s anonymous mappings start: a window of [`MMAP_WINDOW`] bytes distinct for every pid
/// below 65536, so that one process's addresses are never valid in another's address space.
pub const fn mmap_base(pid: u32) -> u64 {
    0x1000_0000_0000 + (pid as u64 & 0xffff) * MMAP_WINDOW
}

/// Exit status of a process killed by an exception it caused (page fault, #GP, #UD, ...): 128 + SIGSEGV.
pub const STATUS_FAULT: u32 = 139;
/// Exit status of a process ended by Ctrl-C: 128 + SIGINT.
pub const STATUS_INTERRUPTED: u32 = 130;

/// Process states in [`ProcInfo::state`].
pub mod state {
    /// Ready to run.
    pub const RUNNABLE: u32 = 0;
    /// Running now (the caller of `ps`).
    pub const RUNNING: u32 = 1;
    /// In `sleep`.
    pub const SLEEPING: u32 = 2;
    /// In `wait`.
    pub const WAITING: u32 = 3;
    /// In `read` on the console.
    pub const READING: u32 = 4;
    /// Waiting for an event-channel reply.
    pub const EVENT: u32 = 5;
    /// Ended, not reaped yet.
    pub const ZOMBIE: u32 = 6;
    /// In `await_notify`.
    pub const NOTIFY: u32 = 7;

    /// A short name for a state.
    pub const fn name(s: u32) -> &'static str {
        match s {
            RUNNABLE => "ready",
            RUNNING => "running",
            SLEEPING => "sleeping",
            WAITING => "waiting",
            READING => "reading",
            EVENT => "event",
            ZOMBIE => "zombie",
            NOTIFY => "notify",
            _ => "?",
        }
    }
}

/// One process, as `ps` reports it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ProcInfo {
    pub pid: u32,
    /// Parent pid (0 for the first process).
    pub ppid: u32,
    /// One of [`state`].
    pub state: u32,
    /// Exit status (zombies only).
    pub status: u32,
    /// User pages mapped now.
    pub pages: u64,
    /// Times the timer took the CPU away from it.
    pub preemptions: u64,
    /// System calls made.
    pub syscalls: u64,
    /// CPU time used, ns.
    pub cpu_ns: u64,
    /// Start of its first anonymous mapping (0: none).
    pub mmap_lo: u64,
    /// Program name, NUL-padded.
    pub name: [u8; 16],
}

/// Memory, as `meminfo` reports it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemInfo {
    /// Pages (pfns) the kernel manages.
    pub total_pages: u64,
    /// Of those, free.
    pub free_pages: u64,
    /// Pages the hypervisor says this domain holds (`current_reservation`).
    pub reservation: u64,
    /// Most pages it may hold (`maximum_reservation`).
    pub max_reservation: u64,
    /// Live processes (zombies included).
    pub processes: u64,
    /// Kernel heap bytes in use.
    pub heap_used: u64,
    /// Kernel heap size in bytes.
    pub heap_size: u64,
}

/// Domain-state flags in [`DomInfo::flags`] (Xen's `XEN_DOMINF_*` bits).
pub mod dominf {
    /// Being destroyed.
    pub const DYING: u32 = 1 << 0;
    /// A hardware-virtualized guest (`kind=hvm`).
    pub const HVM_GUEST: u32 = 1 << 1;
    /// Shut down (reason in bits 16..23 of the flags).
    pub const SHUTDOWN: u32 = 1 << 2;
    /// Paused.
    pub const PAUSED: u32 = 1 << 3;
    /// Its vCPU is blocked.
    pub const BLOCKED: u32 = 1 << 4;
    /// Its vCPU is running now.
    pub const RUNNING: u32 = 1 << 5;
    /// Shift of the shutdown reason.
    pub const SHUTDOWN_SHIFT: u32 = 16;
    /// The shutdown reason of a domain that suspended itself for a save (Xen's `SHUTDOWN_suspend`).
    pub const REASON_SUSPEND: u32 = 2;
}

/// One domain, as `domains` reports it (from the hypervisor's `xen_domctl_getdomaininfo`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomInfo {
    pub domid: u32,
    /// [`dominf`] bits.
    pub flags: u32,
    /// Pages it holds.
    pub tot_pages: u64,
    /// Most pages it may hold.
    pub max_pages: u64,
    /// CPU time used, ns.
    pub cpu_time_ns: u64,
    /// vCPUs.
    pub nr_vcpus: u32,
    /// Scheduling weight (0: not reported).
    pub weight: u32,
}

/// Who runs where, as `ringinfo` reports it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RingInfo {
    /// CS of the calling user code, as saved in its trap frame.
    pub user_cs: u64,
    /// The guest kernel's own CS (read with `mov %cs`).
    pub kernel_cs: u64,
    /// `xen_version(XENVER_version)`: major << 16 | minor.
    pub hv_version: u32,
    /// `xen_version(XENVER_get_features)` submap 0.
    pub hv_features: u32,
    /// `xen_version(XENVER_capabilities)`, NUL-padded (e.g. `xen-3.0-x86_64`).
    pub hv_caps: [u8; 32],
    /// This domain's id.
    pub domid: u32,
    pub _pad: u32,
}

/// Hypervisor entries on this domain's behalf, as `hvcounters` reports them (monotonic; subtract two
/// readings).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvCounters {
    /// 1 if the kernel runs on a hypervisor that counts; 0 natively (every count is then 0).
    pub virtualised: u32,
    pub _pad: u32,
    /// Hypercalls the kernel made.
    pub hypercalls: u64,
    /// Exceptions the hypervisor bounced to the kernel (page faults from user code, ...).
    pub exceptions: u64,
    /// `syscall` instructions bounced to the kernel.
    pub syscalls: u64,
    /// Event upcalls (timer, console, event channels).
    pub upcalls: u64,
}

impl HvCounters {
    /// What happened between `earlier` and `self` (wrapping).
    pub fn since(&self, earlier: &HvCounters) -> HvCounters {
        HvCounters {
            virtualised: self.virtualised,
            _pad: 0,
            hypercalls: self.hypercalls.wrapping_sub(earlier.hypercalls),
            exceptions: self.exceptions.wrapping_sub(earlier.exceptions),
            syscalls: self.syscalls.wrapping_sub(earlier.syscalls),
            upcalls: self.upcalls.wrapping_sub(earlier.upcalls),
        }
    }
}

/// `XENFEAT_supervisor_mode_kernel`: set if guest kernels run in ring 0 (never, under this hypervisor).
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;

static_assertions::const_assert_eq!(core::mem::size_of::<ProcInfo>(), 72);
static_assertions::const_assert_eq!(core::mem::size_of::<MemInfo>(), 56);
static_assertions::const_assert_eq!(core::mem::size_of::<DomInfo>(), 40);
static_assertions::const_assert_eq!(core::mem::size_of::<RingInfo>(), 64);
static_assertions::const_assert_eq!(core::mem::size_of::<HvCounters>(), 40);

/// A NUL-padded name field as a string (up to the first NUL; `"?"` if not UTF-8).
pub fn name_str(name: &[u8]) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    core::str::from_utf8(&name[..end]).unwrap_or("?")
}

/// A name into a NUL-padded field (truncated to fit, leaving at least one NUL).
pub fn name_field(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = s.len().min(MAX_NAME);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// The result of a system call as the kernel returns it.
pub fn ret(r: Result<u64, Errno>) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => e.as_ret() as u64,
    }
}

/// A raw RAX value as a result.
pub fn decode(rax: u64) -> Result<u64, Errno> {
    let v = rax as i64;
    if (-4095..0).contains(&v) {
        Err(Errno::from_code(-v).unwrap_or(Errno::EINVAL))
    } else {
        Ok(rax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(name_str(&name_field("evtchn-ping")), "evtchn-ping");
        assert_eq!(
            name_str(&name_field("a-very-long-program-name")).len(),
            MAX_NAME
        );
        assert_eq!(name_str(&[b'x'; 16]), "xxxxxxxxxxxxxxxx");
    }

    #[test]
    fn results_round_trip() {
        assert_eq!(decode(ret(Ok(7))), Ok(7));
        assert_eq!(decode(ret(Err(Errno::EFAULT))), Err(Errno::EFAULT));
        assert_eq!(decode(u64::MAX - 5000), Ok(u64::MAX - 5000));
    }

    #[test]
    fn bench_names_select_exactly_themselves() {
        for (i, a) in BENCH_OPERATIONS.iter().enumerate() {
            for (j, b) in BENCH_OPERATIONS.iter().enumerate() {
                assert!(i == j || !b.contains(a), "{a} is part of {b}");
            }
        }
        for p in BENCH_PARTNER_OPERATIONS {
            assert!(BENCH_OPERATIONS.contains(&p));
        }
    }

    #[test]
    fn mmap_windows_are_disjoint() {
        for pid in [1u32, 2, 77, 0xfffe] {
            assert_eq!(mmap_base(pid + 1) - mmap_base(pid), MMAP_WINDOW);
        }
    }
}

// Every pid's mmap window lies below the stack's growth area, in the user half.
static_assertions::const_assert!(
    mmap_base(0xffff) + MMAP_WINDOW < USER_STACK_TOP - USER_STACK_LIMIT
);
static_assertions::const_assert!(USER_STACK_TOP < 0x8000_0000_0000);
