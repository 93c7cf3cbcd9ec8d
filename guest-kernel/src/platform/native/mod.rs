//! The native backend: the kernel in ring 0 on a bare (emulated) PC, no hypervisor. Selected at boot when
//! the kernel was entered through the multiboot entry (`arch::x86_64::entry`, `_start32` → `_start64` →
//! `boot::native_main`).
//!
//! Devices are legacy port I/O only (the set a trap-and-emulate monitor will emulate): the 16550 UART on
//! COM1 for the console and QEMU's `isa-debug-exit` to power off with a code.
//!
//! The pure parts are host-tested here: the UART's programming and line handling ([`uart`]), the multiboot
//! information ([`multiboot`]), the exit value ([`exit_value`]), and, for the parts of the backend still
//! to be wired (see below), the descriptor tables and STAR ([`desc`]) and the PIC/PIT programming and TSC
//! calibration arithmetic ([`pic_pit`]); the backend itself ([`backend`], bare metal only) issues the
//! instructions.
//!
//! State of this backend (honestly): console output and input (polled), page-table writes, address-space
//! switches and TLB flushes, the fault address, user segment bases and shutdown are native instructions;
//! the GDT/TSS/IDT, the PIC/PIT/RTC, the TSC clock and the SYSCALL MSRs are not written yet, so every
//! operation that needs them answers `-ENOSYS` and `boot::native_main` stops after the banner.

#[cfg(feature = "baremetal")]
pub mod backend;
pub mod desc;
pub mod multiboot;
pub mod pic_pit;
pub mod uart;

use super::Halt;

/// The `isa-debug-exit` value for a shutdown: the same values the hypervisor reports for a one-domain run
/// (`abi::exit`), so that tests and tools read a native run's exit like a PV one: poweroff with code 0 is
/// `EXIT_OK`, any other code or a crash is `EXIT_DOMAIN_FAILED`.
pub const fn exit_value(how: Halt, code: u32) -> u8 {
    match (how, code) {
        (Halt::Poweroff, 0) => abi::exit::EXIT_OK,
        _ => abi::exit::EXIT_DOMAIN_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_values_match_a_one_domain_pv_run() {
        assert_eq!(exit_value(Halt::Poweroff, 0), abi::exit::EXIT_OK);
        assert_eq!(exit_value(Halt::Poweroff, 7), abi::exit::EXIT_DOMAIN_FAILED);
        assert_eq!(exit_value(Halt::Crash, 0), abi::exit::EXIT_DOMAIN_FAILED);
        assert_eq!(exit_value(Halt::Crash, 1), abi::exit::EXIT_DOMAIN_FAILED);
    }
}
