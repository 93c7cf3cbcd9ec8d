//! `cargo xtask qemu`: builds `qemu-system-x86_64` from the distribution's QEMU source package (Debian's,
//! fetched with `apt-get source`) with the repository's patch `xtask/qemu/null-ss-cpl.patch` (a null SS
//! loaded in 64-bit mode keeps DPL = CPL, so TCG's CPL stays right), into a cache outside the work tree:
//! `<cache>/qemu-<source version>-<recipe hash>/bin/qemu-system-x86_64`. Installs what is missing with
//! apt-get (a `deb-src` entry for the configured Debian mirror, the build dependencies); a second run finds
//! the cached binary. Only the x86_64-softmmu target, TCG and KVM, no tools, no docs, no UI.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::qemu::{QEMU, ensure_system_qemu, find_in_path, for_each_line, is_root};
use crate::qemu_choice::is_executable;

/// The patch applied to QEMU's source (`patch -p1`), kept in the repository.
pub const PATCH: &str = include_str!("../qemu/null-ss-cpl.patch");

/// The distribution package whose source version is built (it also provides the firmware the build uses).
pub const SYSTEM_PACKAGE: &str = "qemu-system-x86";

/// The source package.
pub const SOURCE_PACKAGE: &str = "qemu";

/// The file we add to `/etc/apt/sources.list.d` when no `deb-src` entry provides the QEMU source.
pub const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/ring1pv-deb-src.sources";

/// Debian packages the build needs (checked one by one; the missing ones are installed).
pub const BUILD_DEPS: [&str; 15] = [
    "gcc",
    "make",
    "pkg-config",
    "ninja-build",
    "meson",
    "python3",
    "flex",
    "bison",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "libfdt-dev",
    "zlib1g-dev",
    "dpkg-dev",
    "patch",
    "xz-utils",
];

/// QEMU's `configure` options: one target, TCG (and KVM), every optional feature off, the distribution's
/// firmware directories (the same as Debian's package uses), since the source package carries no blobs.
pub const CONFIGURE_ARGS: [&str; 13] = [
    "--target-list=x86_64-softmmu",
    "--with-pkgversion=ring1pv-null-ss-cpl",
    "--without-default-features",
    "--disable-docs",
    "--disable-tools",
    "--disable-user",
    "--disable-guest-agent",
    "--disable-debug-info",
    "--disable-werror",
    "--disable-install-blobs",
    "--enable-fdt=system",
    "--meson=meson",
    "--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu",
];

/// Parallel compile jobs by default (the build shares the machine).
pub const DEFAULT_JOBS: u32 = 2;

/// `cargo xtask qemu`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct QemuArgs {
    /// Parallel compile jobs (`ninja -j`); the build runs under `nice -n 19`.
    #[arg(long, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Build again even if the cached binary exists.
    #[arg(long)]
    pub rebuild: bool,
    /// Keep the unpacked source and the build tree next to the binary (they are removed by default).
    #[arg(long)]
    pub keep_build: bool,
}

/// 64-bit FNV-1a of `bytes`, as 16 hex digits: names the recipe in the cache directory.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The recipe's hash: the patch and the configure options (either changed means another build).
pub fn patch_hash() -> String {
    fnv1a_hex(format!("{PATCH}\n{}", CONFIGURE_ARGS.join("\n")).as_bytes())
}

/// The cache root: `$XDG_CACHE_HOME/ring1pv`, else `$HOME/.cache/ring1pv`, else `/tmp/ring1pv-cache`.
pub fn cache_root() -> PathBuf {
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(xdg) = nonempty("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("ring1pv")
    } else if let Some(home) = nonempty("HOME") {
        PathBuf::from(home).join(".cache/ring1pv")
    } else {
        PathBuf::from("/tmp/ring1pv-cache")
    }
}

/// A Debian version without its epoch (`1:7.2+dfsg-7` → `7.2+dfsg-7`), as file names carry it.
pub fn without_epoch(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, rest)| rest)
}

/// The cache directory name for a source version: `qemu-<version without epoch>-<recipe hash>`.
pub fn dir_name(source_version: &str, hash: &str) -> String {
    format!("qemu-{}-{hash}", without_epoch(source_version))
}

/// The binary inside a cache directory.
pub fn binary_in(dir: &Path) -> PathBuf {
    dir.join("bin").join(QEMU)
}

/// The installed distribution QEMU's source version (`1:7.2+dfsg-7+deb12u18`), if it is installed.
pub fn installed_source_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${source:Version}", SYSTEM_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// The fixed QEMU if it has been built with the current patch and options: the one for the installed distribution
/// version if there is one, else any (newest name first).
pub fn cached_binary() -> Option<PathBuf> {
    let suffix = format!("-{}", patch_hash());
    let mut dirs: Vec<PathBuf> = fs::read_dir(cache_root())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("qemu-") && n.ends_with(&suffix))
                && is_executable(&binary_in(p))
        })
        .collect();
    dirs.sort();
    if dirs.len() > 1
        && let Some(version) = installed_source_version()
    {
        let wanted = dir_name(&version, &patch_hash());
        if let Some(dir) = dirs.iter().find(|d| d.ends_with(&wanted)) {
            return Some(binary_in(dir));
        }
    }
    dirs.last().map(|d| binary_in(d))
}

/// Where the fixed QEMU is expected, for messages.
pub fn binary_path_hint() -> String {
    let version = installed_source_version().unwrap_or_else(|| "<version>".into());
    binary_in(&cache_root().join(dir_name(&version, &patch_hash())))
        .display()
        .to_string()
}

/// `deb-src` stanzas for the Debian `deb` stanzas of a deb822 `.sources` text (other repositories left out).
pub fn deb_src_from_deb822(text: &str) -> String {
    let mut out = String::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|w| w == "deb"));
        let debian = field("URIs").is_some_and(|u| u.contains("debian"));
        if !is_deb || !debian || field("Enabled").is_some_and(|e| e == "no") {
            continue;
        }
        for line in stanza.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            if line.to_ascii_lowercase().starts_with("types:") {
                out.push_str("Types: deb-src\n");
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// `deb-src` stanzas for the Debian `deb` lines of a one-line-format `sources.list` text.
pub fn deb_src_from_one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut words = rest.split_whitespace().peekable();
        let mut options = Vec::new();
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                options.push(w.trim_matches(|c| c == '[' || c == ']').to_string());
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let components: Vec<&str> = words.collect();
        if !uri.contains("debian") || components.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "Types: deb-src\nURIs: {uri}\nSuites: {suite}\nComponents: {}\n",
            components.join(" ")
        ));
        for option in options.iter().filter(|o| !o.is_empty()) {
            if let Some(keyring) = option.strip_prefix("signed-by=") {
                out.push_str(&format!("Signed-By: {keyring}\n"));
            }
        }
        out.push('\n');
    }
    out
}

/// Runs a command to completion, failing with `what` if it does not succeed.
fn run_step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// An `apt-get` command, non-interactive.
fn apt_get(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// True if `apt-cache showsrc` knows the QEMU source package.
fn source_known() -> bool {
    Command::new("apt-cache")
        .args(["showsrc", SOURCE_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Package: qemu"))
}

/// Makes the QEMU source package available to apt: adds [`DEB_SRC_FILE`] built from the configured Debian
/// `deb` entries when no `deb-src` entry provides it, then `apt-get update`.
fn ensure_deb_src() -> Result<(), String> {
    if source_known() {
        return Ok(());
    }
    let mut stanzas = String::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        stanzas.push_str(&deb_src_from_one_line(&text));
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files
        .iter()
        .filter(|f| f.as_path() != Path::new(DEB_SRC_FILE))
    {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => stanzas.push_str(&deb_src_from_deb822(&text)),
            Some("list") => stanzas.push_str(&deb_src_from_one_line(&text)),
            _ => {}
        }
    }
    if stanzas.trim().is_empty() {
        return Err(
            "no Debian `deb` entry in /etc/apt/sources.list{,.d} to derive a deb-src entry from"
                .into(),
        );
    }
    eprintln!("xtask: qemu: adding {DEB_SRC_FILE} (deb-src for the configured Debian mirror)");
    let header = "# Added by `cargo xtask qemu` (ring1pv): the QEMU source package.\n";
    fs::write(DEB_SRC_FILE, format!("{header}{stanzas}"))
        .map_err(|e| format!("{DEB_SRC_FILE}: {e}"))?;
    run_step(&mut apt_get(&["update"]), "apt-get update")?;
    if source_known() {
        Ok(())
    } else {
        Err(format!(
            "apt still has no source package `{SOURCE_PACKAGE}` after adding {DEB_SRC_FILE}"
        ))
    }
}

/// True if the Debian package is installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the missing [`BUILD_DEPS`].
fn ensure_build_deps() -> Result<(), String> {
    let missing: Vec<&str> = BUILD_DEPS.into_iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: qemu: installing build dependencies: {}",
        missing.join(" ")
    );
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    run_step(&mut apt_get(&args), "apt-get install (build dependencies)")
}

/// Runs `cmd` under `nice -n 19` in `dir`, appending its output to `log`; every `progress_every`-th line
/// (ninja's `[n/N]` lines) is shown. On failure the log's tail is in the error.
fn run_logged(
    program: &str,
    args: &[&str],
    dir: &Path,
    log: &Path,
    progress_every: usize,
) -> Result<(), String> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new("nice")
        .args(["-n", "19", program])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let stderr = child.stderr.take();
    let err_log = log.to_path_buf();
    let err_thread = std::thread::spawn(move || {
        let Some(stderr) = stderr else { return };
        let Ok(mut f) = fs::OpenOptions::new().append(true).open(err_log) else {
            return;
        };
        for_each_line(stderr, |l| writeln!(f, "{l}").is_ok());
    });
    let mut count = 0usize;
    if let Some(stdout) = child.stdout.take() {
        for_each_line(stdout, |line| {
            count += 1;
            if progress_every > 0 && count.is_multiple_of(progress_every) && line.starts_with('[') {
                eprintln!(
                    "xtask: qemu: {}",
                    line.split(' ').next().unwrap_or_default()
                );
            }
            writeln!(file, "{line}").is_ok()
        });
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = err_thread.join();
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "`{program} {}` failed ({status}); last lines of {}:\n{}",
        args.join(" "),
        log.display(),
        tail.join("\n")
    ))
}

/// Formats a duration as minutes and seconds.
pub fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// `cargo xtask qemu`: returns the exit status (0 when the binary is there).
pub fn run(args: &QemuArgs) -> Result<u8, String> {
    let start = Instant::now();
    let path = build(args)?;
    println!("{}", path.display());
    eprintln!(
        "xtask: qemu: ready ({}); `cargo xtask run/test/bench` use it from now on (`--qemu system` for the \
         distribution's)",
        minutes(start.elapsed())
    );
    Ok(0)
}

/// Builds the fixed QEMU unless it is cached; returns its path.
pub fn build(args: &QemuArgs) -> Result<PathBuf, String> {
    // The distribution's QEMU names the version to build and provides the firmware directories.
    ensure_system_qemu()?;
    let version = installed_source_version().ok_or_else(|| {
        format!("cannot read the source version of {SYSTEM_PACKAGE} (dpkg-query)")
    })?;
    let dir = cache_root().join(dir_name(&version, &patch_hash()));
    let binary = binary_in(&dir);
    if is_executable(&binary) && !args.rebuild {
        eprintln!("xtask: qemu: already built: {}", binary.display());
        return Ok(binary);
    }
    if !is_root() || find_in_path("apt-get").is_none() {
        return Err(format!(
            "building QEMU needs apt-get as root (deb-src entry, source package, build dependencies); run \
             `sudo cargo xtask qemu` or as root (cache: {})",
            dir.display()
        ));
    }
    eprintln!(
        "xtask: qemu: building QEMU {version} with xtask/qemu/null-ss-cpl.patch into {}",
        dir.display()
    );
    ensure_deb_src()?;
    ensure_build_deps()?;

    let work = dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let build_dir = work.join("build");
    fs::create_dir_all(&build_dir).map_err(|e| format!("{}: {e}", build_dir.display()))?;
    let log = dir.join("build.log");
    let _ = fs::remove_file(&log);
    let started = Instant::now();

    let pinned = format!("{SOURCE_PACKAGE}={version}");
    run_step(
        apt_get(&["source", "--download-only", &pinned]).current_dir(&work),
        "apt-get source",
    )?;
    let dsc = format!("{SOURCE_PACKAGE}_{}.dsc", without_epoch(&version));
    run_step(
        Command::new("dpkg-source")
            .args(["-x", &dsc, "src"])
            .current_dir(&work)
            .stdout(Stdio::null()),
        "dpkg-source -x",
    )?;
    let patch_file = work.join("null-ss-cpl.patch");
    fs::write(&patch_file, PATCH).map_err(|e| format!("{}: {e}", patch_file.display()))?;
    run_step(
        Command::new("patch")
            .args(["-p1", "--forward", "--batch", "-d", "src", "-i"])
            .arg(&patch_file)
            .current_dir(&work),
        "patch (xtask/qemu/null-ss-cpl.patch)",
    )?;

    eprintln!(
        "xtask: qemu: configure, then ninja -j{} under nice -n 19 (log: {}; this takes a while)",
        args.jobs,
        log.display()
    );
    run_logged("../src/configure", &CONFIGURE_ARGS, &build_dir, &log, 0)?;
    let jobs = format!("-j{}", args.jobs);
    run_logged("ninja", &[&jobs, QEMU], &build_dir, &log, 100)?;

    let built = build_dir.join(QEMU);
    let version_out = Command::new(&built)
        .arg("--version")
        .output()
        .map_err(|e| format!("the built {} does not run: {e}", built.display()))?;
    let first = String::from_utf8_lossy(&version_out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let bin_dir = dir.join("bin");
    fs::create_dir_all(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let tmp = bin_dir.join(format!("{QEMU}.tmp"));
    fs::copy(&built, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, &binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let took = started.elapsed();
    let info = format!(
        "source package: {SOURCE_PACKAGE} {version}\npatch: xtask/qemu/null-ss-cpl.patch (recipe fnv1a {})\n\
         configure: {}\nbuilt with: ninja {jobs} under nice -n 19\nbuild time: {} ({} s)\n{first}\n",
        patch_hash(),
        CONFIGURE_ARGS.join(" "),
        minutes(took),
        took.as_secs()
    );
    let _ = fs::write(dir.join("BUILD-INFO"), info);
    if !args.keep_build {
        let _ = fs::remove_dir_all(&work);
    }
    eprintln!(
        "xtask: qemu: built {first} in {} (download, unpack, configure, compile)",
        minutes(took)
    );
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_names_version_and_patch() {
        assert_eq!(
            without_epoch("1:7.2+dfsg-7+deb12u18"),
            "7.2+dfsg-7+deb12u18"
        );
        assert_eq!(without_epoch("7.2"), "7.2");
        assert_eq!(
            dir_name("1:7.2+dfsg-7+deb12u18", "0123456789abcdef"),
            "qemu-7.2+dfsg-7+deb12u18-0123456789abcdef"
        );
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(patch_hash().len(), 16);
        assert!(binary_in(Path::new("/c/q")).ends_with("bin/qemu-system-x86_64"));
    }

    #[test]
    fn the_patch_keeps_cpl_in_the_null_ss_helper() {
        assert!(PATCH.contains("+++ b/target/i386/tcg/seg_helper.c"));
        assert!(PATCH.contains("cpl << DESC_DPL_SHIFT"));
    }

    #[test]
    fn deb_src_entries_come_from_the_debian_deb_entries() {
        let deb822 = "Types: deb\n# mirror\nURIs: http://deb.debian.org/debian\nSuites: bookworm \
                      bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n";
        assert_eq!(
            deb_src_from_deb822(deb822),
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        );
        assert_eq!(
            deb_src_from_deb822("Types: deb-src\nURIs: http://deb.debian.org/debian\n"),
            ""
        );
        let one_line = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main contrib\n\
                        deb-src http://deb.debian.org/debian bookworm main\n\
                        deb https://packages.cloud.google.com/apt cloud-sdk main\n";
        assert_eq!(
            deb_src_from_one_line(one_line),
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main contrib\n\
             Signed-By: /k.gpg\n\n"
        );
    }
}
