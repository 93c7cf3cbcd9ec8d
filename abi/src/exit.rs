//! Exit statuses the hypervisor reports through QEMU's `isa-debug-exit` device (port 0xf4).
//!
//! QEMU turns a value `v` written to the port into the process exit status `(v << 1) | 1`; `xtask` maps it
//! back, so `cargo xtask run` exits with exactly these values. A QEMU exit status of 0 means the machine reset
//! or quit without the hypervisor reporting anything (e.g. a triple fault with `-no-reboot`).

/// The `isa-debug-exit` I/O port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Every domain shut down with reason poweroff and code 0.
pub const EXIT_OK: u8 = 0;
/// Some domain shut down with a non-zero code or a reason other than poweroff.
pub const EXIT_DOMAIN_FAILED: u8 = 1;
/// Some domain was crashed by the hypervisor (`crash_domain`).
pub const EXIT_DOMAIN_CRASHED: u8 = 2;
/// Bad boot input: no modules at all, or some module could not become a domain (not an ELF64 x86_64
/// executable, segments outside the guest range, not enough memory). The domains that could be built still
/// ran to completion first.
pub const EXIT_BOOT_ERROR: u8 = 3;
/// The hypervisor itself panicked or took an unexpected fault. Distinctive on purpose.
pub const EXIT_HYPERVISOR_PANIC: u8 = 0x3d;

/// The start of the hypervisor's warning line when its boot-time CPU fidelity probe finds that ring-1 code
/// with a null SS runs at CPL 0 (QEMU TCG's defect): on that CPU model guests are not isolated from the
/// hypervisor. `cargo xtask run` repeats the line at the end of a run.
pub const CPU_FIDELITY_WARNING: &str =
    "cpu-fidelity: guests are NOT isolated from the hypervisor on this CPU model";

/// The word every line of the CPU fidelity probe carries (the WARN line above, the INFO line when the probe
/// passes, and the status in the isolation-audit line), for tools that look for them.
pub const CPU_FIDELITY_MARKER: &str = "cpu-fidelity";

#[cfg(test)]
mod fidelity_tests {
    use super::*;

    #[test]
    fn the_warning_carries_the_marker_tools_look_for() {
        assert!(CPU_FIDELITY_WARNING.starts_with(CPU_FIDELITY_MARKER));
    }
}
