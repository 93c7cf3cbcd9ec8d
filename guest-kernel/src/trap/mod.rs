//! Traps: the virtual IDT of a PV guest (exceptions bounced by the hypervisor), the event and syscall
//! callbacks, the direct `int 0x80` gate, and a minimal "run this code in ring 3" harness.
//!
//! | module | what |
//! |---|---|
//! | [`frame`] | the saved-register frame, handler context and verdict, the return-path decision (pure) |
//! | [`registry`] | per-vector handlers (pure) |
//! | `dispatch` | (bare metal) boot installation, the Rust side of every entry, default handlers |
//! | `user` | (bare metal) ring-3 harness: a user address space, IRETQ to ring 3, the way back |
//!
//! The entry and exit assembly is in `arch::x86_64::trap_entry`, which documents which return path
//! (IRETQ or the `iret` hypercall) each entry uses.
//!
//! # Handlers
//!
//! [`HANDLERS`] holds one optional handler per exception vector, for `int 0x80` and for SYSCALL. A
//! handler may change the frame (skip the faulting instruction, set RAX) and answers
//! [`Disposition::Resume`], [`Disposition::Unhandled`] or [`Disposition::ExitUser`]. Scenarios install
//! theirs for a scope with [`TrapRegistry::scoped`]. At boot the kernel installs only the system-call
//! handlers (`int 0x80` and SYSCALL: `exit(code)` = RAX 0, `ping(x) = x + 1` = RAX 1).
//!
//! # The default: report, then kill what faulted
//!
//! An exception nobody handles is reported on the console (vector, ring, RIP, error code, CR2,
//! registers). From ring 3 the user program is killed: the kernel resumes where it entered ring 3, with
//! [`KILLED`] + vector as the program's result. From ring 1 there is no process to kill, so the kernel
//! itself stops with an error: for a fault (re-executing the instruction faults again) it clears its trap
//! table and resumes the faulting instruction, so that the hypervisor crashes the domain with its own
//! report of the fault (the isolation tests rely on that report); for a trap (#DB, #BP, #OF), or if the
//! table cannot be cleared, it shuts down with `SHUTDOWN_crash`.

pub mod frame;
pub mod registry;

#[cfg(feature = "baremetal")]
pub mod dispatch;
#[cfg(feature = "baremetal")]
pub mod user;

pub use frame::{Disposition, EntryKind, TrapCtx, TrapFrame};
pub use registry::{HandlerGuard, TrapHandler, TrapRegistry};

/// The kernel's trap handlers.
pub static HANDLERS: TrapRegistry = TrapRegistry::new();

/// A killed ring-3 program's result: this plus the vector that killed it.
pub const KILLED: u64 = 0xdead_0000;

/// System call numbers of the ring-3 harness (RAX; argument in RDI, result in RAX).
pub mod sys {
    /// `exit(code)`: end the program, `code` is its result.
    pub const EXIT: u64 = 0;
    /// `ping(x)`: returns `x + 1`.
    pub const PING: u64 = 1;
}
