//! Building the two bare-metal images: the hypervisor and the PV guest kernel.
//!
//! Each image is a separate `cargo build` with its own target directory, because their code models differ
//! (the hypervisor is `code-model=small`, the guest kernel `code-model=kernel`). Linker arguments come from each
//! crate's `build.rs`; nothing here adds any. Inherited `RUSTFLAGS` variants are removed from the child's
//! environment so the flags below are exactly the ones used.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace_root;

/// The target triple both images are built for (bare metal, linked by each crate's `build.rs`).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// `RUSTFLAGS` of the hypervisor build.
pub const HYPERVISOR_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=small -C no-redzone=yes -C force-frame-pointers=yes";

/// `RUSTFLAGS` of the guest kernel build.
pub const GUEST_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=kernel -C force-frame-pointers=yes";

/// Environment variables that would add to or replace our `RUSTFLAGS`; removed from every child cargo.
pub const INHERITED_FLAG_VARS: [&str; 3] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
];

/// Release (the default) or debug build profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// `--release`: optimized, with line tables.
    #[default]
    Release,
    /// The `dev` profile.
    Debug,
}

impl Profile {
    /// `release` or `debug`: the directory name under `target/<...>/<triple>/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }

    /// The profile picked by a `--debug` flag.
    pub fn from_debug_flag(debug: bool) -> Self {
        if debug {
            Profile::Debug
        } else {
            Profile::Release
        }
    }
}

/// One of the two bare-metal images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The ring-0 hypervisor (`hypervisor` package and binary).
    Hypervisor,
    /// The ring-1 PV guest kernel (`guest-kernel` package and binary).
    GuestKernel,
}

impl Component {
    /// Both components, in build order.
    pub const ALL: [Component; 2] = [Component::Hypervisor, Component::GuestKernel];

    /// The package name, which is also the binary name.
    pub fn package(self) -> &'static str {
        match self {
            Component::Hypervisor => "hypervisor",
            Component::GuestKernel => "guest-kernel",
        }
    }

    /// The `RUSTFLAGS` this component is built with.
    pub fn rustflags(self) -> &'static str {
        match self {
            Component::Hypervisor => HYPERVISOR_RUSTFLAGS,
            Component::GuestKernel => GUEST_RUSTFLAGS,
        }
    }

    /// The component's own target directory, relative to the workspace root's `target/`.
    fn target_subdir(self) -> &'static str {
        match self {
            Component::Hypervisor => "hv",
            Component::GuestKernel => "guest",
        }
    }

    /// `<root>/target/hv` or `<root>/target/guest`.
    pub fn target_dir(self, root: &Path) -> PathBuf {
        root.join("target").join(self.target_subdir())
    }

    /// Where `cargo build` leaves the ELF image.
    pub fn output(self, root: &Path, profile: Profile) -> PathBuf {
        self.target_dir(root)
            .join(TARGET)
            .join(profile.dir_name())
            .join(self.package())
    }
}

/// A cargo invocation for one bare-metal component: arguments plus the environment it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoInvocation {
    /// Arguments after `cargo`.
    pub args: Vec<String>,
    /// Value of `CARGO_TARGET_DIR`.
    pub target_dir: PathBuf,
    /// Value of `RUSTFLAGS`.
    pub rustflags: &'static str,
}

impl CargoInvocation {
    /// `cargo build -p <c> --bin <c> --features baremetal --target <triple> [--release]`.
    pub fn build(root: &Path, component: Component, profile: Profile) -> Self {
        let package = component.package();
        let mut args: Vec<String> = [
            "build",
            "-p",
            package,
            "--bin",
            package,
            "--features",
            "baremetal",
            "--target",
            TARGET,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if profile == Profile::Release {
            args.push("--release".into());
        }
        CargoInvocation {
            args,
            target_dir: component.target_dir(root),
            rustflags: component.rustflags(),
        }
    }

    /// `cargo clippy -p <c> --features baremetal --target <triple> -- -D warnings`, same target dir and flags as
    /// the build (so the lints see the bare-metal code exactly as it is compiled).
    pub fn clippy(root: &Path, component: Component) -> Self {
        let args = [
            "clippy",
            "-p",
            component.package(),
            "--features",
            "baremetal",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        CargoInvocation {
            args,
            target_dir: component.target_dir(root),
            rustflags: component.rustflags(),
        }
    }

    /// The command, run from the workspace root, with inherited flag variables removed and ours set.
    pub fn command(&self, root: &Path) -> Command {
        let mut cmd = Command::new(cargo());
        cmd.args(&self.args).current_dir(root);
        for var in INHERITED_FLAG_VARS {
            cmd.env_remove(var);
        }
        cmd.env("CARGO_TARGET_DIR", &self.target_dir)
            .env("RUSTFLAGS", self.rustflags);
        cmd
    }

    /// A shell-like rendering for messages, e.g. `RUSTFLAGS="..." CARGO_TARGET_DIR=... cargo build ...`.
    pub fn display(&self) -> String {
        format!(
            "CARGO_TARGET_DIR={} RUSTFLAGS=\"{}\" cargo {}",
            self.target_dir.display(),
            self.rustflags,
            self.args.join(" ")
        )
    }
}

/// The cargo executable to run: plain `cargo` from `PATH` (the rustup proxy, which honours the toolchain).
pub fn cargo() -> &'static str {
    "cargo"
}

/// The two built ELF images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// The hypervisor ELF, booted with QEMU's `-kernel` (multiboot).
    pub hypervisor: PathBuf,
    /// The guest kernel ELF, passed once per domain as a multiboot module.
    pub guest: PathBuf,
}

impl Images {
    /// Where the images of `profile` are (or will be) after a build, whether or not they exist.
    pub fn paths(root: &Path, profile: Profile) -> Self {
        Images {
            hypervisor: Component::Hypervisor.output(root, profile),
            guest: Component::GuestKernel.output(root, profile),
        }
    }
}

/// Builds both images, cargo's output going to this process's stdout/stderr.
pub fn build_images(profile: Profile) -> Result<Images, String> {
    build(profile, false)
}

/// Builds both images with cargo's output captured; it is returned inside the error when a build fails.
/// Used by the `tests` crate so a passing run stays quiet.
pub fn build_images_quiet(profile: Profile) -> Result<Images, String> {
    build(profile, true)
}

fn build(profile: Profile, quiet: bool) -> Result<Images, String> {
    let root = workspace_root();
    for component in Component::ALL {
        let invocation = CargoInvocation::build(&root, component, profile);
        let mut cmd = invocation.command(&root);
        let (status, captured) = if quiet {
            cmd.stdin(Stdio::null()).output().map(|out| {
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                (out.status, text)
            })
        } else {
            cmd.status().map(|status| (status, String::new()))
        }
        .map_err(|e| format!("cannot run cargo to build {}: {e}", component.package()))?;
        if !status.success() {
            return Err(format!(
                "building {} failed ({status})\n  command: {}\n{captured}",
                component.package(),
                invocation.display()
            ));
        }
        let output = component.output(&root, profile);
        if !output.is_file() {
            return Err(format!(
                "cargo built {} but {} does not exist",
                component.package(),
                output.display()
            ));
        }
    }
    Ok(Images::paths(&root, profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_build_invocation_matches_the_contract() {
        let root = Path::new("/ws");
        let inv = CargoInvocation::build(root, Component::Hypervisor, Profile::Release);
        assert_eq!(
            inv.args.join(" "),
            "build -p hypervisor --bin hypervisor --features baremetal --target x86_64-unknown-linux-gnu --release"
        );
        assert_eq!(inv.target_dir, Path::new("/ws/target/hv"));
        assert_eq!(
            inv.rustflags,
            "-C relocation-model=static -C code-model=small -C no-redzone=yes -C force-frame-pointers=yes"
        );
        assert_eq!(
            Component::Hypervisor.output(root, Profile::Release),
            Path::new("/ws/target/hv/x86_64-unknown-linux-gnu/release/hypervisor")
        );
    }

    #[test]
    fn guest_debug_build_invocation_matches_the_contract() {
        let root = Path::new("/ws");
        let inv = CargoInvocation::build(root, Component::GuestKernel, Profile::Debug);
        assert_eq!(
            inv.args.join(" "),
            "build -p guest-kernel --bin guest-kernel --features baremetal --target x86_64-unknown-linux-gnu"
        );
        assert_eq!(inv.target_dir, Path::new("/ws/target/guest"));
        assert_eq!(
            inv.rustflags,
            "-C relocation-model=static -C code-model=kernel -C force-frame-pointers=yes"
        );
        assert_eq!(
            Images::paths(root, Profile::Debug).guest,
            Path::new("/ws/target/guest/x86_64-unknown-linux-gnu/debug/guest-kernel")
        );
    }

    #[test]
    fn clippy_invocation_uses_the_build_target_dir_and_flags() {
        let root = Path::new("/ws");
        let inv = CargoInvocation::clippy(root, Component::GuestKernel);
        assert_eq!(
            inv.args.join(" "),
            "clippy -p guest-kernel --features baremetal --target x86_64-unknown-linux-gnu -- -D warnings"
        );
        assert_eq!(inv.target_dir, Component::GuestKernel.target_dir(root));
        assert_eq!(inv.rustflags, GUEST_RUSTFLAGS);
    }

    #[test]
    fn command_removes_inherited_flags_and_sets_ours() {
        let root = Path::new("/ws");
        let cmd =
            CargoInvocation::build(root, Component::Hypervisor, Profile::Release).command(root);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        for var in ["CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"] {
            assert!(
                envs.contains(&(var.to_string(), None)),
                "{var} not removed: {envs:?}"
            );
        }
        assert!(envs.contains(&(
            "RUSTFLAGS".to_string(),
            Some(HYPERVISOR_RUSTFLAGS.to_string())
        )));
        assert!(envs.contains(&(
            "CARGO_TARGET_DIR".to_string(),
            Some("/ws/target/hv".to_string())
        )));
        assert_eq!(cmd.get_current_dir(), Some(root));
    }

    #[test]
    fn release_is_the_default_profile() {
        assert_eq!(Profile::default(), Profile::Release);
        assert_eq!(Profile::from_debug_flag(true), Profile::Debug);
        assert_eq!(Profile::from_debug_flag(false).dir_name(), "release");
    }
}
