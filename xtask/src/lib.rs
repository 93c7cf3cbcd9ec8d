//! The library half of `xtask`: building the bare-metal images, booting them in QEMU and reading the serial output.
//!
//! The `xtask` binary (`cargo xtask ...`) is a thin CLI over this; the `tests` crate uses it to boot scenarios.
//!
//! - [`images`]: the three `cargo build` invocations (user programs, hypervisor, guest kernel) and their outputs.
//! - [`qemu`]: the QEMU command line, installing QEMU, mapping its exit status.
//! - [`qemu_choice`]: which QEMU binary boots (the fixed one when built, `--qemu`, `RING1PV_QEMU`).
//! - [`qemu_build`]: `cargo xtask qemu`, building the patched QEMU into a cache outside the work tree.
//! - [`kernel_file`]: `--kernel FILE`: what a kernel file is (ELF entry, multiboot header), which modes run it.
//! - [`kvm`]: `--accel kvm` where KVM cannot run: the decision before booting, QEMU's MSR abort after.
//! - [`runner`]: running QEMU with a timeout, streaming its serial output, typing scripted input.
//! - [`input`]: what the serial input is ([`qemu::Input`]); scripted steps matched in the output stream.
//! - [`shell`]: the guest OS's shell as xtask drives it (prompt, default domains, demo script, sessions).
//! - [`serial`]: parsing the serial output lines (`[hv] ...`, `(dN) ...`).
//! - [`scenario`]: a scenario (domains + hypervisor command line) and its [`Outcome`].
//! - [`symbolize`]: appending `<function at file:line>` to addresses in hypervisor log lines.
//! - [`runcmd`]: `cargo xtask run`'s input mode (terminal, script, none) and its console display.
//! - [`testcmd`]: `cargo xtask test`, the full check suite.
//! - [`bench`]: `cargo xtask bench`, the latency measurements (passes, table, JSON, SVG).
//! - [`compare`]: `cargo xtask compare`, osbench in each mode side by side (table, JSON, SVG).
//! - [`fuzz`]: `cargo xtask fuzz`, the hypercall fuzzer's runs, one boot per seed, and their checks.
//! - [`selfbin`]: building the `xtask` binary itself, for tests that run it like a user.
#![forbid(unsafe_code)]

pub mod bench;
pub mod compare;
pub mod fuzz;
pub mod images;
pub mod input;
pub mod kernel_file;
pub mod kvm;
pub mod migratecmd;
pub mod mode;
pub mod qemu;
pub mod qemu_build;
pub mod qemu_choice;
pub mod runcmd;
pub mod runner;
pub mod savecmd;
pub mod scenario;
pub mod selfbin;
pub mod serial;
pub mod shell;
pub mod symbolize;
pub mod testcmd;

use std::path::PathBuf;

pub use images::{Images, Profile, build_images, build_images_quiet};
pub use mode::Mode;
pub use qemu::{Accel, Exit, ensure_qemu};
pub use scenario::{Outcome, Scenario, Verdict, run_scenario};
pub use serial::TestResult;
pub use symbolize::{Symbolizer, symbol_address};

/// The workspace root: the parent of the `xtask` crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = super::workspace_root();
        let manifest =
            std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace Cargo.toml");
        assert!(manifest.contains("[workspace]"));
    }
}
