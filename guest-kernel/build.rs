//! Build script: when building the bare-metal image, link it with our linker script as a static, non-PIE
//! executable without the C runtime; and embed the ring-3 programs.
//!
//! Programs: for every `user/src/bin/<name>.rs`, the binary `$GUEST_USER_PROGRAMS/<name>` (built by
//! `cargo xtask build` before the kernel) is embedded, giving `OUT_DIR/programs.rs`, a table of
//! `(name, bytes)`. Without `GUEST_USER_PROGRAMS` (host builds and tests) the table is empty.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GUEST_USER_PROGRAMS");
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
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let table = match std::env::var_os("GUEST_USER_PROGRAMS") {
        Some(bin_dir) => programs(Path::new(&dir), Path::new(&bin_dir)),
        None => String::new(),
    };
    let src = format!(
        "/// The embedded ring-3 programs: (name, ELF image).\npub static PROGRAMS: &[(&str, &[u8])] = &[\n{table}];\n"
    );
    std::fs::write(out.join("programs.rs"), src).expect("write programs.rs");
}

/// The table entries for every program source in `user/src/bin`.
fn programs(manifest: &Path, bin_dir: &Path) -> String {
    let src_dir = manifest.join("../user/src/bin");
    println!("cargo:rerun-if-changed={}", src_dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&src_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", src_dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut table = String::new();
    for name in names {
        let path = bin_dir.join(&name);
        assert!(
            path.is_file(),
            "GUEST_USER_PROGRAMS is set but {} is missing (build the user programs first)",
            path.display()
        );
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    table
}
