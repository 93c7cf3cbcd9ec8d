//! One domain limit across the layers (issue 15): `abi::domctl::MAX_DOMAINS` bounds the CLI's `--domains`
//! (one more is refused with a message naming the limit), the domains the hypervisor starts from boot
//! modules (the module past it is not started, with a line naming `abi::domctl::MAX_DOMAINS`, and the exit
//! status says boot error) and, with the kept images, the multiboot modules it takes
//! (`MAX_BOOT_MODULES`; more is a clear boot error). The run-time side — `xl create` and the create domctl
//! reach the same number and then get -ENOSPC — is `tests/tests/xl.rs`.

use std::path::PathBuf;
use std::str::FromStr;

use abi::domctl::{MAX_BOOT_MODULES, MAX_DOMAINS, MAX_IMAGES};
use abi::exit::EXIT_BOOT_ERROR;
use tests::{Scenario, expect, run_scenario};
use xtask::mode::Domains;

#[test]
fn the_cli_takes_the_abis_limit_and_refuses_one_more() {
    assert!(Domains::from_str(&MAX_DOMAINS.to_string()).is_ok());
    let Err(err) = Domains::from_str(&(MAX_DOMAINS + 1).to_string()) else {
        panic!("one past the limit is accepted");
    };
    assert!(err.contains(&MAX_DOMAINS.to_string()), "{err}");
    let kinds = vec!["pv"; MAX_DOMAINS + 1].join(",");
    let Err(err) = Domains::from_str(&kinds) else {
        panic!("one kind too many is accepted");
    };
    assert!(err.contains(&MAX_DOMAINS.to_string()), "{err}");
    // Every domain a module, plus the images `xl create` may use.
    assert_eq!(MAX_BOOT_MODULES, MAX_DOMAINS + MAX_IMAGES);
}

fn junk_module() -> PathBuf {
    let dir = xtask::workspace_root().join("target").join("test-modules");
    std::fs::create_dir_all(&dir).expect("create target/test-modules");
    let path = dir.join("limits-junk.bin");
    std::fs::write(&path, [0x5a; 512]).expect("write the module");
    path
}

/// Domain 0 a real kernel that finishes; `n - 1` more domain modules that are not ELF (each takes a
/// domain id and is refused).
fn boot_with_modules(n: usize) -> Scenario {
    let mut domains = vec!["test=unknown-hypercall".to_string()];
    domains.extend((1..n).map(|i| format!("junk{i}")));
    let mut s = Scenario::new(&domains);
    let junk = junk_module();
    for i in 1..n {
        s.custom_images.insert(i, junk.clone());
    }
    s.timeout = std::time::Duration::from_secs(90);
    s
}

#[test]
fn a_boot_module_past_the_domain_limit_is_not_started_with_a_clear_line() {
    let o = run_scenario(&boot_with_modules(MAX_DOMAINS + 1));
    let last = MAX_DOMAINS - 1;
    expect(&o)
        .contains(&format!("domain {last}: not created"))
        .contains(&format!(
            "module {MAX_DOMAINS}: not started: the domain limit is {MAX_DOMAINS} (abi::domctl::MAX_DOMAINS)"
        ))
        .poweroff(0)
        .no_panic()
        .exit(EXIT_BOOT_ERROR);
    assert!(
        !o.output
            .contains(&format!("domain {MAX_DOMAINS}: not created")),
        "no domain id {MAX_DOMAINS}\n{o}"
    );
}

#[test]
fn more_boot_modules_than_the_hypervisor_takes_is_a_clear_boot_error() {
    let n = MAX_BOOT_MODULES + 1;
    let o = run_scenario(&boot_with_modules(n));
    expect(&o)
        .contains(&format!(
            "bad multiboot information: {n} boot modules (limit {MAX_BOOT_MODULES})"
        ))
        .no_panic()
        .exit(EXIT_BOOT_ERROR);
}
