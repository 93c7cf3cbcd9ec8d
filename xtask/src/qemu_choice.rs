//! Which QEMU binary boots the machine — the one place every command (`run`, `gdb`, `test`, `bench`, the
//! `tests` harness) asks: the patched QEMU built by `cargo xtask qemu` when it is in the cache, else the
//! distribution's `qemu-system-x86_64` on `PATH`; `--qemu` or the [`QEMU_ENV`] variable choose explicitly.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::qemu::QEMU;
use crate::qemu_build;

/// The environment variable that chooses the QEMU (`system`, `fixed`, `auto` or a path); `cargo xtask test
/// --qemu X` passes its choice to the `tests` harness through it, and `cargo test -p tests` reads it.
pub const QEMU_ENV: &str = "RING1PV_QEMU";

/// What the user asked for (`--qemu` or [`QEMU_ENV`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The fixed QEMU if it has been built, else the distribution's (the default).
    Auto,
    /// The distribution's `qemu-system-x86_64` on `PATH`.
    System,
    /// The fixed QEMU; an error if it has not been built.
    Fixed,
    /// This binary.
    Path(PathBuf),
}

impl Request {
    /// Parses a `--qemu` / [`QEMU_ENV`] value: `auto` (or empty), `system`, `fixed`, or a path.
    pub fn parse(text: &str) -> Request {
        match text.trim() {
            "" | "auto" => Request::Auto,
            "system" => Request::System,
            "fixed" => Request::Fixed,
            path => Request::Path(PathBuf::from(path)),
        }
    }

    /// The value that [`Request::parse`] reads back.
    pub fn to_value(&self) -> String {
        match self {
            Request::Auto => "auto".into(),
            Request::System => "system".into(),
            Request::Fixed => "fixed".into(),
            Request::Path(p) => p.to_string_lossy().into_owned(),
        }
    }
}

/// Where a chosen QEMU comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Built by `cargo xtask qemu`: null SS keeps CPL.
    Fixed,
    /// The distribution's, found on `PATH` (QEMU 7.2's TCG lets a null SS reach CPL 0).
    System,
    /// A binary the user named.
    Explicit,
}

/// The QEMU that boots the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// The program: a path, or [`QEMU`] (looked up on `PATH`) for the distribution's.
    pub program: PathBuf,
    /// Where it comes from.
    pub kind: Kind,
}

impl Qemu {
    /// The distribution's QEMU on `PATH`.
    pub fn system() -> Qemu {
        Qemu {
            program: PathBuf::from(QEMU),
            kind: Kind::System,
        }
    }

    /// True for the QEMU built by `cargo xtask qemu`.
    pub fn is_fixed(&self) -> bool {
        self.kind == Kind::Fixed
    }

    /// The one line that tells the user which QEMU is used.
    pub fn describe(&self) -> String {
        let program = self.program.display();
        match self.kind {
            Kind::Fixed => format!(
                "xtask: QEMU: {program} (patched by `cargo xtask qemu`: a null SS keeps CPL; `--qemu system` \
                 for the distribution's)"
            ),
            Kind::System => format!(
                "xtask: QEMU: {program} on PATH, the distribution's (its TCG lets a ring-1 null SS reach CPL 0; \
                 `cargo xtask qemu` builds a fixed one)"
            ),
            Kind::Explicit => format!("xtask: QEMU: {program} (chosen with --qemu or {QEMU_ENV})"),
        }
    }
}

/// Decides which QEMU a request names, given the fixed QEMU's path if it has been built. Pure.
pub fn resolve(request: &Request, fixed: Option<PathBuf>) -> Result<Qemu, String> {
    match (request, fixed) {
        (Request::Auto | Request::Fixed, Some(program)) => Ok(Qemu {
            program,
            kind: Kind::Fixed,
        }),
        (Request::Auto, None) | (Request::System, _) => Ok(Qemu::system()),
        (Request::Fixed, None) => Err(format!(
            "the fixed QEMU has not been built (expected {}); run `cargo xtask qemu`",
            qemu_build::binary_path_hint()
        )),
        (Request::Path(path), _) => Ok(Qemu {
            program: path.clone(),
            kind: Kind::Explicit,
        }),
    }
}

static REQUEST: OnceLock<Request> = OnceLock::new();
static CHOSEN: OnceLock<Result<Qemu, String>> = OnceLock::new();

/// Records the `--qemu` option (call before anything boots; later calls are ignored).
pub fn set_request(request: Request) {
    let _ = REQUEST.set(request);
}

/// The request given with `--qemu`, if any (to pass on to child processes through [`QEMU_ENV`]).
pub fn explicit_request() -> Option<&'static Request> {
    REQUEST.get()
}

/// The request in force: `--qemu`, else [`QEMU_ENV`], else [`Request::Auto`].
pub fn request() -> Request {
    if let Some(r) = REQUEST.get() {
        return r.clone();
    }
    std::env::var(QEMU_ENV)
        .map(|v| Request::parse(&v))
        .unwrap_or(Request::Auto)
}

/// The QEMU every boot of this process uses (decided once).
pub fn chosen() -> Result<&'static Qemu, String> {
    CHOSEN
        .get_or_init(|| resolve(&request(), qemu_build::cached_binary()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The program of the chosen QEMU, or [`QEMU`] if the choice failed (for display only).
pub fn program_for_display() -> PathBuf {
    chosen().map_or_else(|_| PathBuf::from(QEMU), |q| q.program.clone())
}

/// True if `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print_back() {
        assert_eq!(Request::parse(""), Request::Auto);
        assert_eq!(Request::parse("auto"), Request::Auto);
        assert_eq!(Request::parse("system"), Request::System);
        assert_eq!(Request::parse(" fixed "), Request::Fixed);
        assert_eq!(
            Request::parse("/opt/q/qemu"),
            Request::Path("/opt/q/qemu".into())
        );
        for r in [
            Request::Auto,
            Request::System,
            Request::Fixed,
            Request::Path("./q".into()),
        ] {
            assert_eq!(Request::parse(&r.to_value()), r);
        }
    }

    #[test]
    fn auto_prefers_the_fixed_qemu_and_falls_back_to_the_system_one() {
        let fixed = PathBuf::from("/cache/qemu-7.2-x/bin/qemu-system-x86_64");
        let q = resolve(&Request::Auto, Some(fixed.clone())).unwrap();
        assert_eq!(
            (q.program.as_path(), q.kind),
            (fixed.as_path(), Kind::Fixed)
        );
        assert!(q.is_fixed() && q.describe().contains("patched"));
        let q = resolve(&Request::Auto, None).unwrap();
        assert_eq!(q, Qemu::system());
        assert!(q.describe().contains("cargo xtask qemu"));
        assert_eq!(
            resolve(&Request::System, Some(fixed.clone())).unwrap(),
            Qemu::system()
        );
        assert!(
            resolve(&Request::Fixed, None)
                .unwrap_err()
                .contains("cargo xtask qemu")
        );
        assert!(resolve(&Request::Fixed, Some(fixed)).unwrap().is_fixed());
        let q = resolve(&Request::Path("/my/qemu".into()), None).unwrap();
        assert_eq!(q.kind, Kind::Explicit);
        assert!(q.describe().starts_with("xtask: QEMU: /my/qemu"));
        assert_eq!(q.describe().lines().count(), 1);
    }
}
