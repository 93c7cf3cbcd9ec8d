//! The mini test kernel (`testkernels/mini`), a multiboot v1 kernel that is not ring1pv's guest kernel:
//! booted natively by QEMU's multiboot loader, it prints over the UART, takes exactly ten PIT interrupts
//! through the remapped PIC, takes a page fault and handles it by mapping a page into its own tables (the
//! read then runs again and sees the page's contents), and exits through isa-debug-exit. Under the
//! hypervisor's hvm mode (`--mode hvm --kernel mini`) it must print the same lines; that test reports
//! SKIP while the hypervisor cannot run hvm domains (before the hvm mode lands, or without SVM). Under
//! the emulate mode (`--mode emulate --kernel mini`: entered at `_start64`, deprivileged to ring 1, on
//! the hypervisor's boot tables) it prints what a deprivileged kernel on tables it did not build sees.

use abi::exit::EXIT_OK;
use tests::{Outcome, expect, images};
use xtask::mode::{self, Mode};

/// What the kernel prints, in order, in every mode it runs in.
const EXPECTED: [&str; 6] = [
    "mini: hello from the mini test kernel (not ring1pv's guest kernel)",
    "mini: long mode, ring 0",
    "mini: PIC remapped to 0x20, PIT channel 0 at 100 Hz",
    "mini: 10 timer interrupts",
    "mini: page fault at 0x4000000000 (error code 0x0): mapped a page there, the read gives 0x21667020696e696d",
    "mini: summary: 10 ticks, 1 page fault at 0x4000000000, all as expected",
];

/// Boots the mini kernel once in `mode` with an empty command line.
fn boot(mode: Mode) -> Outcome {
    let mut s = mode::scenario(mode, "");
    s.kernel = Some(images().mini.clone());
    s.timeout = std::time::Duration::from_secs(45);
    match xtask::run_scenario(images(), &s) {
        Ok(o) => o,
        Err(e) => panic!("cannot boot the mini kernel in mode {mode}: {e}"),
    }
}

/// Domain 0's `mini: ` lines (natively: the machine's).
fn mini_lines(o: &Outcome) -> Vec<&str> {
    o.domain_output(0)
        .into_iter()
        .filter(|l| l.starts_with("mini: "))
        .collect()
}

#[test]
fn mini_boots_natively_takes_timer_interrupts_and_a_page_fault() {
    let o = boot(Mode::Native);
    assert_eq!(mini_lines(&o), EXPECTED, "\n{o}");
    assert_eq!(o.shutdowns(), [(0, "poweroff".to_string(), 0)], "\n{o}");
    expect(&o).exit(EXIT_OK);
    assert!(
        o.hypervisor_lines().is_empty(),
        "no hypervisor natively\n{o}"
    );
}

#[test]
fn mini_under_hvm_prints_the_same_lines() {
    let o = boot(Mode::Hvm);
    if let Some(why) = mode::unsupported(Mode::Hvm, &o) {
        println!("Test result: SKIP ({why})");
        return;
    }
    assert_eq!(mini_lines(&o), EXPECTED, "the same output as natively\n{o}");
    // Its isa-debug-exit write of 0 is domain 0's poweroff with code 0.
    expect(&o).poweroff(0).exit(EXIT_OK).no_panic();
    // The hypervisor counted its exits (CONTRACTS 4): port I/O at least.
    expect(&o).line("the exits line of domain 0", |l| {
        l.contains("exits: domain 0 (hvm): total=") && l.contains(" ioio=")
    });
}

/// What it prints under emulate: reading CS (never trapped) shows ring 1, and the page-fault handler,
/// seeing a CR3 that is not its own `_start32` tables, resumes after the read instead of mapping a page.
const EXPECTED_EMULATE: [&str; 6] = [
    EXPECTED[0],
    "mini: long mode, ring 1",
    EXPECTED[2],
    EXPECTED[3],
    "mini: page fault at 0x4000000000 (error code 0x0) handled, resumed after the read (not its tables)",
    EXPECTED[5],
];

#[test]
fn mini_under_emulate_runs_deprivileged_on_the_loaders_tables() {
    let o = boot(Mode::Emulate);
    if let Some(why) = mode::unsupported(Mode::Emulate, &o) {
        println!("Test result: SKIP ({why})");
        return;
    }
    assert_eq!(mini_lines(&o), EXPECTED_EMULATE, "\n{o}");
    // Every step went as expected (its own check), so it wrote 0 to isa-debug-exit: domain 0's poweroff.
    expect(&o).poweroff(0).exit(EXIT_OK).no_panic();
    // Its privileged instructions were trapped and emulated: port I/O, and the true page fault reflected
    // to its handler, are counted (CONTRACTS 4).
    expect(&o).line("the exits line of domain 0", |l| {
        l.contains("exits: domain 0 (emulate): total=")
            && l.contains(" io=")
            && l.contains(" true-pf=1")
    });
}

#[test]
fn the_built_kernels_are_checked_for_the_modes_that_can_run_them() {
    let images = images();
    for mode in [Mode::Native, Mode::Emulate, Mode::Hvm] {
        assert_eq!(xtask::kernel_file::check_path(mode, &images.mini), Ok(()));
    }
    // mini is entered only through its 32-bit multiboot entry: not a PV kernel.
    let err = xtask::kernel_file::check_path(Mode::Pv, &images.mini).unwrap_err();
    assert!(err.contains("not a PV kernel"), "{err}");
    // ring1pv's guest kernel carries both entries.
    for mode in Mode::ALL {
        assert_eq!(xtask::kernel_file::check_path(mode, &images.guest), Ok(()));
    }
}
