//! Build script: the bare-metal image is linked with our linker script as a static, non-PIE executable
//! without the C runtime (the same flags as the guest kernel's image).

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if std::env::var_os("CARGO_FEATURE_BAREMETAL").is_some() {
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
