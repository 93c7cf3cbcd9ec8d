//! The hvm domain kind: an unmodified multiboot kernel in its own ring 0 under AMD SVM with nested paging.
//!
//! Pure, host-tested parts: the VMCB layout and first state ([`vmcb`]), exit decoding and counters
//! ([`exit`]), the nested page tables and their audit ([`npt`]), the CPUID the guest sees ([`cpuid`]), and
//! the exit handler ([`exits`]). The machine-facing parts (building, the run loop, teardown) are in
//! [`run`] with the bare-metal feature; the VMRUN sequence itself is in `arch/x86_64/entry.rs`.

#[cfg(feature = "baremetal")]
pub mod build;
pub mod cpuid;
pub mod exit;
pub mod exits;
pub mod npt;
#[cfg(feature = "baremetal")]
pub mod run;
pub mod vmcb;

use abi::types::Mfn;

use crate::devices::{Board, IoEffect};

/// The state of an hvm domain's vCPU beyond what every domain has (its FPU state is the domain's
/// `vcpu.fx`, its console the domain's `console`).
pub struct HvmVcpu {
    /// The VMCB: a hypervisor frame, never mapped for any guest.
    pub vmcb: Mfn,
    /// The nested page tables (hypervisor frames).
    pub npt: npt::Npt,
    /// Guest-physical memory: frames 0..nr_pages.
    pub nr_pages: u64,
    /// The guest's registers outside the VMCB.
    pub gprs: exits::GuestGprs,
    /// The emulated PC devices.
    pub board: Board,
    /// Exits by reason.
    pub exits: exit::ExitCounts,
    /// Direct console output (the input owner under `dom0_console=direct`) of the line being written.
    pub direct_out: heapless::Vec<u8, 160>,
}

impl exits::Devices for Board {
    fn io_in(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        Board::io_in(self, port, size, now_ns)
    }

    fn io_out(&mut self, port: u16, size: u8, value: u32, now_ns: u64) -> exits::IoOutcome {
        match Board::io_out(self, port, size, value, now_ns) {
            IoEffect::None => exits::IoOutcome::None,
            IoEffect::Output(b) => exits::IoOutcome::Output(b),
            IoEffect::Shutdown(c) => exits::IoOutcome::Shutdown(c),
        }
    }

    fn pending_vector(&self) -> Option<u8> {
        Board::pending_vector(self)
    }

    fn acknowledge(&mut self) -> Option<u8> {
        Board::acknowledge(self)
    }
}
