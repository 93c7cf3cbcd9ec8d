//! Build script: when building the bare-metal image, link it with our linker script as a static, non-PIE
//! executable without the C runtime.
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
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
