//! Build script: when building the bare-metal programs, link each one with our linker script as a static,
//! non-PIE executable without the C runtime. DWARF is stripped at link time (the symbol table stays):
//! the guest kernel embeds every program whole, and the release profile's line tables would otherwise make
//! each ~700 KiB instead of ~30 KiB.
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_BAREMETAL").is_some() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        for arg in [
            format!("-T{dir}/linker.ld"),
            "-nostartfiles".into(),
            "-nostdlib".into(),
            "-static".into(),
            "-no-pie".into(),
            "-Wl,--build-id=none".into(),
            "-Wl,--strip-debug".into(),
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
