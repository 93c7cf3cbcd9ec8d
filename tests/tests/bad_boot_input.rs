//! Bad boot input gets a clear message and does not take down the other domains: a module that is not an
//! ELF64 x86_64 executable, an image with a segment in the hypervisor's reserved range, not enough memory,
//! and no module at all.

use std::path::PathBuf;

use abi::exit::{EXIT_BOOT_ERROR, EXIT_OK};
use tests::{Scenario, expect, images, run_scenario};

/// Write `bytes` as a module file under the workspace's target directory and return its path.
fn module_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = xtask::workspace_root().join("target").join("test-modules");
    std::fs::create_dir_all(&dir).expect("create target/test-modules");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test module");
    path
}

/// The guest kernel image, patched by `patch`.
fn patched_guest(name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut elf = std::fs::read(&images().guest).expect("read the guest image");
    patch(&mut elf);
    module_file(name, &elf)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Boot `bad` as domain 0 and a good `demo` as domain 1; domain 1 must run normally, domain 0 must be
/// refused with a message containing `why`, and the exit status must say "boot error".
#[track_caller]
fn refused_while_neighbour_runs(bad: PathBuf, why: &str) {
    let mut s = Scenario::new(&["demo", "demo"]);
    s.custom_images.insert(0, bad);
    let outcome = run_scenario(&s);
    expect(&outcome)
        .line("domain 0 refused with the reason", |l| {
            l.contains("domain 0: not created") && l.contains(why)
        })
        .poweroff(1)
        .no_panic()
        .exit(EXIT_BOOT_ERROR);
}

#[test]
fn a_module_that_is_not_elf_is_refused() {
    refused_while_neighbour_runs(module_file("junk.bin", &[0x5a; 3000]), "ELF");
}

#[test]
fn an_elf32_module_is_refused() {
    // EI_CLASS = ELFCLASS32.
    refused_while_neighbour_runs(patched_guest("elf32.elf", |e| e[4] = 1), "ELF");
}

#[test]
fn a_module_for_another_machine_is_refused() {
    // e_machine = EM_386.
    refused_while_neighbour_runs(
        patched_guest("i386.elf", |e| {
            e[18..20].copy_from_slice(&3u16.to_le_bytes())
        }),
        "machine",
    );
}

#[test]
fn a_segment_in_the_reserved_range_is_refused() {
    let bad = patched_guest("reserved.elf", |e| {
        // The first program header's p_vaddr (and p_paddr) moved into the hypervisor's entry region.
        let phoff = u64_at(e, 0x20) as usize;
        let va = abi::layout::ENTRY_REGION_VA.to_le_bytes();
        e[phoff + 0x10..phoff + 0x18].copy_from_slice(&va);
        e[phoff + 0x18..phoff + 0x20].copy_from_slice(&va);
    });
    refused_while_neighbour_runs(bad, "reserved");
}

#[test]
fn not_enough_memory_for_a_second_domain() {
    let mut s = Scenario::new(&["demo", "demo"]);
    s.memory_mib = 128;
    s.hv_cmdline = "loglevel=info dom_mem=100M".into();
    let outcome = run_scenario(&s);
    expect(&outcome)
        .line("domain 1 refused for memory", |l| {
            l.contains("domain 1: not created: not enough memory")
        })
        .poweroff(0)
        .no_panic()
        .exit(EXIT_BOOT_ERROR);
}

#[test]
fn no_modules_at_all() {
    let outcome = run_scenario(&Scenario::new::<&str>(&[]));
    expect(&outcome)
        .contains("no guest modules")
        .no_panic()
        .exit(EXIT_BOOT_ERROR);
}

#[test]
fn good_modules_still_exit_ok() {
    // The control for the tests above: the same scenario without a bad module.
    let outcome = run_scenario(&Scenario::new(&["demo", "demo"]));
    expect(&outcome).poweroff(0).poweroff(1).exit(EXIT_OK);
}
