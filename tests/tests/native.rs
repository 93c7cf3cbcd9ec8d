//! The same guest-kernel image booted natively (QEMU's multiboot loader enters `_start32`, ring 0, no
//! hypervisor) and as a PV domain: the backend is chosen at boot from the entry, the banner names it and
//! the ring, the command line arrives, and the kernel's shutdown reaches `isa-debug-exit` with the same
//! exit values a one-domain PV run ends with.

use abi::exit::EXIT_DOMAIN_FAILED;
use tests::{expect, images};
use xtask::mode::{self, Mode};

/// Boots `cmdline` once in `mode` (the default scenario settings: 512 MiB, TCG, 60 s).
fn boot(mode: Mode, cmdline: &str) -> tests::Outcome {
    match mode::run(images(), mode, cmdline) {
        Ok(o) => o,
        Err(e) => panic!("cannot boot {cmdline:?} in mode {mode}: {e}"),
    }
}

/// The banner line (domain 0's console) in `mode`.
#[track_caller]
fn banner(o: &tests::Outcome, mode: Mode) -> String {
    let prefix = format!("guest kernel running in ring {} (CS=", mode.kernel_ring());
    match o
        .domain_output(0)
        .into_iter()
        .find(|l| l.starts_with(&prefix))
    {
        Some(l) => l.to_string(),
        None => panic!("no banner starting {prefix:?} in mode {mode}\n{o}"),
    }
}

#[test]
fn one_image_picks_its_backend_from_the_entry_in_each_mode() {
    // One body for both modes: only the expectations the mode itself names differ.
    for mode in Mode::ALL {
        // Emulate and hvm: SKIP until the hypervisor runs them (then this same body checks them).
        if tests::skip_if_unavailable(mode) {
            continue;
        }
        let o = boot(mode, "nosuchword");
        let line = banner(&o, mode);
        assert!(
            line.contains(&format!(" on {};", mode.backend_name())),
            "the banner names the {} backend\n{o}",
            mode.backend_name()
        );
        assert!(
            line.ends_with("command line 'nosuchword'"),
            "the command line arrives without the loader's image name\n{o}"
        );
        let cpl = line
            .split("(CS=0x")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|cs| u16::from_str_radix(cs, 16).ok())
            .map(|cs| cs & 3);
        assert_eq!(
            cpl,
            Some(u16::from(mode.kernel_ring())),
            "CS's RPL is the kernel's ring\n{o}"
        );
        // The same kernel code runs the command line in both modes, with the same result.
        expect(&o).contains("unknown command 'nosuchword'");
        // The native backend's own report of its code (PV asks the hypervisor instead).
        if mode != Mode::Pv {
            expect(&o).contains("native: shut down: poweroff code 2");
        }
        // What the machine records: natively the kernel's line; under emulate and hvm the hypervisor's,
        // whose code is the value the unmodified kernel wrote to isa-debug-exit — the machine exit status
        // (`abi::exit`) a one-domain run would end with, not the kernel's code.
        let code = match mode {
            Mode::Native | Mode::Pv => 2,
            Mode::Emulate | Mode::Hvm => u32::from(EXIT_DOMAIN_FAILED),
        };
        assert_eq!(
            o.shutdowns(),
            [(0, "poweroff".to_string(), code)],
            "mode {mode}\n{o}"
        );
        expect(&o).exit(EXIT_DOMAIN_FAILED);
    }
}

#[test]
fn native_boot_reads_multiboot_and_exits_through_isa_debug_exit() {
    let o = boot(Mode::Native, "test=hv-read extra=1");
    let line = banner(&o, Mode::Native);
    assert!(
        line.contains("(CS=0x8)"),
        "the boot GDT's ring-0 code segment\n{o}"
    );
    assert!(
        line.contains("command line 'test=hv-read extra=1'"),
        "the multiboot command line, image name dropped\n{o}"
    );
    // 512 MiB machine: the multiboot memory size says a little under 512 MiB.
    let mib: u64 = line
        .split("on native; ")
        .nth(1)
        .and_then(|r| r.split(" MiB").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (500..=512).contains(&mib),
        "memory from the multiboot info, got {mib} MiB\n{o}"
    );
    // Natively there is no hypervisor: nothing on the line is the hypervisor's or prefixed.
    assert!(
        o.hypervisor_lines().is_empty(),
        "no [hv] lines natively\n{o}"
    );
    assert!(
        !o.output.lines().any(|l| l.starts_with("(d")),
        "no (dN) prefixes natively\n{o}"
    );
    // The backend set itself up: TSC calibrated, memory manager on the identity P2M, traps installed.
    expect(&o)
        .contains("(calibrated against the PIT)")
        .contains("identity P2M")
        .contains("mapped with 4 KiB pages: text read-only, rodata and data no-execute")
        .contains("traps: table ok, stack ok, callbacks ok");
    // The XTF scenarios test the hypervisor: natively the kernel says so and powers off with code 2,
    // which it maps to the value a PV domain's non-zero poweroff gives.
    expect(&o).contains("exercises the hypervisor: not available natively");
    assert_eq!(o.shutdowns(), [(0, "poweroff".to_string(), 2)], "\n{o}");
    expect(&o).exit(EXIT_DOMAIN_FAILED);
}
