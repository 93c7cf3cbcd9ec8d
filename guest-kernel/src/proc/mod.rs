//! Processes: ring-3 programs with their own address spaces, system calls on both entry paths, a
//! preemptive round-robin scheduler on the virtual timer, demand-zero memory, and the console's line
//! discipline — the small OS the `shell` command runs.
//!
//! | module | what |
//! |---|---|
//! | [`table`] | pids, parents, states, run queue, exit and reaping (pure) |
//! | [`vma`] | image, stack and `mmap` regions; what a page fault means (pure) |
//! | [`decode`] | system-call registers → typed request (pure) |
//! | [`faulthandler`] | a process's own page-fault handler: entry, saved registers, return (pure) |
//! | [`tty`] | the console line discipline (pure) |
//! | [`programs`] | the embedded ELF programs |
//! | `kernel` | (bare metal) the scheduler, process creation and exit, the trap hooks |
//! | `loader` | (bare metal) ELF → address space, first stack, first frame |
//! | `usercopy` | (bare metal) checked copies from and to user memory |
//! | `syscall` | (bare metal) what each system call does |
//! | `ping` | (bare metal) `evtchn_ping` and the `ping-server` domain |
//!
//! # How a process runs
//!
//! Each process has an address space (`mm::AddressSpace`: the kernel half shared, the user half its own)
//! and a 32 KiB kernel stack. The kernel stack of the running process is registered with the hypervisor
//! (`stack_switch`), so a trap from its ring-3 code — the direct `int 0x80` gate, a bounced `syscall`,
//! an exception, the event upcall — lands on it, where the common trap path saves the frame and FPU state.
//! A system call that must wait blocks the process and switches (`guest_switch_context`) to another
//! process's kernel stack; the trap frame stays where it is until the process is switched back and
//! returns from the trap. The kernel itself runs with events masked; it never takes a trap from
//! another process in the middle of its work. Events are enabled in user mode and while the kernel is idle
//! (`SCHEDOP_block` unmasks atomically).
//!
//! Preemption: the periodic timer (10 ms) counts ticks; when a trap from user mode returns and the
//! current process has had a tick's worth of time while another is runnable, it is switched out.
//!
//! A process that faults is killed with a message (`kernel: pid N (name) killed: ...`), its address space
//! torn down (every page back to the allocator at once), its kernel stack when its parent reaps it.
//! When the first process (the shell) ends, the domain powers off with its status.

pub mod decode;
pub mod faulthandler;
pub mod programs;
pub mod table;
pub mod toolstack;
pub mod tty;
pub mod vma;

#[cfg(feature = "baremetal")]
mod kernel;
#[cfg(feature = "baremetal")]
mod loader;
#[cfg(feature = "baremetal")]
pub mod ping;
#[cfg(feature = "baremetal")]
pub mod suspend;
#[cfg(feature = "baremetal")]
mod syscall;
#[cfg(feature = "baremetal")]
mod usercopy;

#[cfg(feature = "baremetal")]
pub use kernel::{active, return_to_user, run_init};
