//! The `xtask` binary itself, for tests that drive `cargo xtask run` the way a user does (a pipe or a real
//! terminal in front of it): [`xtask_binary`] builds it with cargo and returns the executable's path, read
//! from cargo's JSON messages rather than guessed from the target directory layout.
//!
//! Running a nested `cargo build` from a test is safe: `cargo test` holds the build directory lock only while
//! it compiles, not while the tests run (checked: the nested build finishes at once, no "Blocking waiting for
//! file lock"). The binary is then run directly, not through `cargo run`, so the test does not depend on
//! cargo's output or locks while QEMU runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::images::cargo;
use crate::workspace_root;

/// Builds the `xtask` binary (dev profile, the profile of the `cargo xtask` alias) and returns its path.
pub fn xtask_binary() -> Result<PathBuf, String> {
    let root = workspace_root();
    let out = Command::new(cargo())
        .args([
            "build",
            "--quiet",
            "-p",
            "xtask",
            "--bin",
            "xtask",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo to build xtask: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "building the xtask binary failed ({})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    executable_from_messages(&stdout).ok_or_else(|| {
        format!(
            "cargo built xtask but reported no executable\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The `executable` of the `xtask` binary's `compiler-artifact` message in cargo's JSON output.
pub fn executable_from_messages(json_lines: &str) -> Option<PathBuf> {
    json_lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "xtask")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_from_the_bin_artifact() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"xtask","kind":["lib"]},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"abi","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"xtask","kind":["bin"]},"executable":"/ws/target/debug/xtask"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages),
            Some(PathBuf::from("/ws/target/debug/xtask"))
        );
        assert_eq!(
            executable_from_messages(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
