//! Building the bare-metal components: the ring-3 user programs, the hypervisor, the PV guest kernel and the
//! mini test kernel.
//!
//! Each component is a separate `cargo build` with its own target directory, because their code models
//! differ (the hypervisor and the user programs are `code-model=small`, the guest kernel `code-model=kernel`).
//! The user programs are built first: the guest kernel's `build.rs` embeds every `user/src/bin/<stem>.rs`
//! program from the directory named by [`GUEST_USER_PROGRAMS`]. Linker arguments come from each crate's
//! `build.rs`; nothing here adds any. Inherited `RUSTFLAGS` variants are removed from the child's environment
//! so the flags below are exactly the ones used.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace_root;

/// The target triple every component is built for (bare metal, linked by each crate's `build.rs`).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// `RUSTFLAGS` of the hypervisor build.
pub const HYPERVISOR_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=small -C no-redzone=yes -C force-frame-pointers=yes";

/// `RUSTFLAGS` of the guest kernel build.
pub const GUEST_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=kernel -C force-frame-pointers=yes";

/// `RUSTFLAGS` of the mini test kernel build (its interrupts arrive on the kernel's own stack: no red zone).
pub const MINI_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=small -C no-redzone=yes -C force-frame-pointers=yes";

/// `RUSTFLAGS` of the user programs build.
pub const USER_RUSTFLAGS: &str =
    "-C relocation-model=static -C code-model=small -C force-frame-pointers=yes";

/// The environment variable that tells the guest kernel's `build.rs` where the built user programs are (an
/// absolute directory holding one ELF per `user/src/bin/<stem>.rs`); unset, it embeds no programs.
pub const GUEST_USER_PROGRAMS: &str = "GUEST_USER_PROGRAMS";

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

/// One of the bare-metal components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The ring-3 programs of the guest OS (`user` package, one binary per `user/src/bin/<stem>.rs`).
    User,
    /// The ring-0 hypervisor (`hypervisor` package and binary).
    Hypervisor,
    /// The ring-1 PV guest kernel (`guest-kernel` package and binary), which embeds the user programs.
    GuestKernel,
    /// The minimal multiboot test kernel that is not ring1pv's (`testkernels/mini`, package and binary
    /// `mini`), for the full-virtualization modes' `--kernel FILE`.
    Mini,
}

impl Component {
    /// Every component, in build order (the user programs before the guest kernel that embeds them).
    pub const ALL: [Component; 4] = [
        Component::User,
        Component::Hypervisor,
        Component::GuestKernel,
        Component::Mini,
    ];

    /// The package name (also the binary name of the hypervisor and the guest kernel).
    pub fn package(self) -> &'static str {
        match self {
            Component::User => "user",
            Component::Hypervisor => "hypervisor",
            Component::GuestKernel => "guest-kernel",
            Component::Mini => "mini",
        }
    }

    /// The `RUSTFLAGS` this component is built with.
    pub fn rustflags(self) -> &'static str {
        match self {
            Component::User => USER_RUSTFLAGS,
            Component::Hypervisor => HYPERVISOR_RUSTFLAGS,
            Component::GuestKernel => GUEST_RUSTFLAGS,
            Component::Mini => MINI_RUSTFLAGS,
        }
    }

    /// The component's own target directory, relative to the workspace root's `target/`.
    fn target_subdir(self) -> &'static str {
        match self {
            Component::User => "user",
            Component::Hypervisor => "hv",
            Component::GuestKernel => "guest",
            Component::Mini => "mini",
        }
    }

    /// `<root>/target/user`, `<root>/target/hv`, `<root>/target/guest` or `<root>/target/mini`.
    pub fn target_dir(self, root: &Path) -> PathBuf {
        root.join("target").join(self.target_subdir())
    }

    /// The directory `cargo build` leaves the binaries in: `<target dir>/<triple>/<profile>`.
    pub fn output_dir(self, root: &Path, profile: Profile) -> PathBuf {
        self.target_dir(root).join(TARGET).join(profile.dir_name())
    }

    /// Where `cargo build` leaves the ELF image (for [`Component::User`]: the directory of the programs).
    pub fn output(self, root: &Path, profile: Profile) -> PathBuf {
        match self {
            Component::User => self.output_dir(root, profile),
            _ => self.output_dir(root, profile).join(self.package()),
        }
    }

    /// The binaries to build: `--bin <package>`, or `--bins` for the user programs.
    fn bin_args(self) -> Vec<String> {
        match self {
            Component::User => vec!["--bins".into()],
            _ => vec!["--bin".into(), self.package().into()],
        }
    }
}

/// The names of the user programs: the stems of `<root>/user/src/bin/*.rs`, sorted (what the guest kernel
/// embeds, and what a user build must produce).
pub fn user_program_names(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("user").join("src").join("bin");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
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
    /// Further environment variables (for the guest kernel: [`GUEST_USER_PROGRAMS`]).
    pub env: Vec<(&'static str, PathBuf)>,
}

impl CargoInvocation {
    /// `cargo build -p <c> --bin <c> --features baremetal --target <triple> [--release]`, or for the user
    /// programs `cargo build -p user --features baremetal --bins --target <triple> [--release]`. The guest
    /// kernel gets [`GUEST_USER_PROGRAMS`] pointing at the user programs of the same profile.
    pub fn build(root: &Path, component: Component, profile: Profile) -> Self {
        let package = component.package();
        let mut args: Vec<String> = vec!["build".into(), "-p".into(), package.into()];
        let bins = component.bin_args();
        let features = ["--features".to_string(), "baremetal".to_string()];
        if component == Component::User {
            args.extend(features);
            args.extend(bins);
        } else {
            args.extend(bins);
            args.extend(features);
        }
        args.extend(["--target".to_string(), TARGET.to_string()]);
        if profile == Profile::Release {
            args.push("--release".into());
        }
        CargoInvocation {
            args,
            target_dir: component.target_dir(root),
            rustflags: component.rustflags(),
            env: Self::env_for(root, component, profile),
        }
    }

    /// The extra environment of a component: the guest kernel's [`GUEST_USER_PROGRAMS`].
    fn env_for(
        root: &Path,
        component: Component,
        profile: Profile,
    ) -> Vec<(&'static str, PathBuf)> {
        match component {
            Component::GuestKernel => {
                vec![(GUEST_USER_PROGRAMS, Component::User.output(root, profile))]
            }
            _ => Vec::new(),
        }
    }

    /// `cargo clippy -p <c> --features baremetal --target <triple> -- -D warnings`, same target dir and flags as
    /// the build (so the lints see the bare-metal code exactly as it is compiled). The guest kernel embeds the
    /// user programs of the release build ([`GUEST_USER_PROGRAMS`]), which must exist: `cargo xtask test`
    /// builds them first.
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
            env: Self::env_for(root, component, Profile::Release),
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
        for (var, value) in &self.env {
            cmd.env(var, value);
        }
        cmd
    }

    /// A shell-like rendering for messages, e.g. `RUSTFLAGS="..." CARGO_TARGET_DIR=... cargo build ...`.
    pub fn display(&self) -> String {
        let env: String = self
            .env
            .iter()
            .map(|(var, value)| format!("{var}={} ", value.display()))
            .collect();
        format!(
            "{env}CARGO_TARGET_DIR={} RUSTFLAGS=\"{}\" cargo {}",
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

/// The built ELF images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// The hypervisor ELF, booted with QEMU's `-kernel` (multiboot).
    pub hypervisor: PathBuf,
    /// The guest kernel ELF (with the user programs embedded), passed once per domain as a multiboot module.
    pub guest: PathBuf,
    /// The directory of the user program ELFs the guest kernel embedded.
    pub programs: PathBuf,
    /// The mini test kernel ELF (a multiboot kernel that is not ring1pv's; `--kernel` runs it).
    pub mini: PathBuf,
}

impl Images {
    /// Where the images of `profile` are (or will be) after a build, whether or not they exist.
    pub fn paths(root: &Path, profile: Profile) -> Self {
        Images {
            hypervisor: Component::Hypervisor.output(root, profile),
            guest: Component::GuestKernel.output(root, profile),
            programs: Component::User.output(root, profile),
            mini: Component::Mini.output(root, profile),
        }
    }
}

/// Builds every component (user programs, hypervisor, guest kernel), cargo's output going to this process's
/// stdout/stderr.
pub fn build_images(profile: Profile) -> Result<Images, String> {
    build(profile, false)
}

/// Builds every component with cargo's output captured; it is returned inside the error when a build fails.
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
        let missing = missing_outputs(&root, component, profile)?;
        if !missing.is_empty() {
            return Err(format!(
                "cargo built {} but {} does not exist",
                component.package(),
                missing.join(", ")
            ));
        }
    }
    Ok(Images::paths(&root, profile))
}

/// The outputs of a component's build that are not there (for the user programs: one per program name).
fn missing_outputs(
    root: &Path,
    component: Component,
    profile: Profile,
) -> Result<Vec<String>, String> {
    let output = component.output(root, profile);
    let files = match component {
        Component::User => user_program_names(root)?
            .into_iter()
            .map(|name| output.join(name))
            .collect(),
        _ => vec![output],
    };
    Ok(files
        .into_iter()
        .filter(|f| !f.is_file())
        .map(|f| f.display().to_string())
        .collect())
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
    fn user_build_invocation_matches_the_contract() {
        let root = Path::new("/ws");
        let inv = CargoInvocation::build(root, Component::User, Profile::Release);
        assert_eq!(
            inv.args.join(" "),
            "build -p user --features baremetal --bins --target x86_64-unknown-linux-gnu --release"
        );
        assert_eq!(inv.target_dir, Path::new("/ws/target/user"));
        assert_eq!(
            inv.rustflags,
            "-C relocation-model=static -C code-model=small -C force-frame-pointers=yes"
        );
        assert!(inv.env.is_empty());
        let debug = CargoInvocation::build(root, Component::User, Profile::Debug);
        assert_eq!(
            debug.args.join(" "),
            "build -p user --features baremetal --bins --target x86_64-unknown-linux-gnu"
        );
        assert_eq!(
            Images::paths(root, Profile::Debug).programs,
            Path::new("/ws/target/user/x86_64-unknown-linux-gnu/debug")
        );
    }

    #[test]
    fn user_programs_are_built_before_the_guest_kernel_that_embeds_them() {
        let order = Component::ALL;
        let pos = |c| order.iter().position(|&x| x == c).unwrap();
        assert!(pos(Component::User) < pos(Component::GuestKernel));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn the_guest_kernel_is_told_where_the_programs_of_its_profile_are() {
        let root = Path::new("/ws");
        for (profile, dir) in [(Profile::Release, "release"), (Profile::Debug, "debug")] {
            let inv = CargoInvocation::build(root, Component::GuestKernel, profile);
            let programs = PathBuf::from(format!("/ws/target/user/x86_64-unknown-linux-gnu/{dir}"));
            assert_eq!(inv.env, [(GUEST_USER_PROGRAMS, programs.clone())]);
            let cmd = inv.command(root);
            assert!(
                cmd.get_envs()
                    .any(|(k, v)| k == GUEST_USER_PROGRAMS && v == Some(programs.as_os_str())),
                "{:?}",
                cmd.get_envs().collect::<Vec<_>>()
            );
            assert!(inv.display().starts_with(&format!(
                "GUEST_USER_PROGRAMS={} CARGO_TARGET_DIR=/ws/target/guest ",
                programs.display()
            )));
        }
        // The hypervisor build does not get the variable.
        let hv = CargoInvocation::build(root, Component::Hypervisor, Profile::Release);
        assert!(hv.env.is_empty());
        assert!(
            !hv.command(root)
                .get_envs()
                .any(|(k, _)| k == GUEST_USER_PROGRAMS)
        );
    }

    #[test]
    fn clippy_of_the_user_programs_and_of_the_guest_with_its_programs() {
        let root = Path::new("/ws");
        let user = CargoInvocation::clippy(root, Component::User);
        assert_eq!(
            user.args.join(" "),
            "clippy -p user --features baremetal --target x86_64-unknown-linux-gnu -- -D warnings"
        );
        assert_eq!(user.target_dir, Path::new("/ws/target/user"));
        assert_eq!(user.rustflags, USER_RUSTFLAGS);
        assert!(user.env.is_empty());
        let guest = CargoInvocation::clippy(root, Component::GuestKernel);
        assert_eq!(
            guest.env,
            [(
                GUEST_USER_PROGRAMS,
                PathBuf::from("/ws/target/user/x86_64-unknown-linux-gnu/release")
            )]
        );
    }

    #[test]
    fn program_names_come_from_the_bin_sources() {
        let root = std::env::temp_dir().join(format!("xtask-images-test-{}", std::process::id()));
        let bin = root.join("user/src/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for f in ["sh.rs", "hello.rs", "evtchn-ping.rs", "notes.txt"] {
            std::fs::write(bin.join(f), "").unwrap();
        }
        assert_eq!(
            user_program_names(&root).unwrap(),
            ["evtchn-ping", "hello", "sh"]
        );
        let out = Component::User.output(&root, Profile::Release);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("hello"), "").unwrap();
        let missing = missing_outputs(&root, Component::User, Profile::Release).unwrap();
        assert_eq!(
            missing,
            [
                out.join("evtchn-ping").display().to_string(),
                out.join("sh").display().to_string()
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert!(user_program_names(&root).is_err());
    }

    #[test]
    fn the_mini_kernel_is_built_like_a_bare_metal_kernel_without_a_red_zone() {
        let root = Path::new("/ws");
        let inv = CargoInvocation::build(root, Component::Mini, Profile::Release);
        assert_eq!(
            inv.args.join(" "),
            "build -p mini --bin mini --features baremetal --target x86_64-unknown-linux-gnu --release"
        );
        assert_eq!(inv.target_dir, Path::new("/ws/target/mini"));
        assert!(inv.rustflags.contains("no-redzone=yes"));
        assert!(inv.env.is_empty());
        assert_eq!(
            Images::paths(root, Profile::Release).mini,
            Path::new("/ws/target/mini/x86_64-unknown-linux-gnu/release/mini")
        );
    }

    #[test]
    fn release_is_the_default_profile() {
        assert_eq!(Profile::default(), Profile::Release);
        assert_eq!(Profile::from_debug_flag(true), Profile::Debug);
        assert_eq!(Profile::from_debug_flag(false).dir_name(), "release");
    }
}
