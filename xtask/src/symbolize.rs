//! Symbolization of hypervisor log lines: every `0x<16 hex digits>` in a `[hv]` line that falls inside the
//! executable sections of the hypervisor (or guest kernel) ELF gets ` <function at file:line>` appended.
//!
//! Addresses in the hypervisor's entry alias region (`abi::layout::ENTRY_REGION_VA`, 1 MiB) are the entry code
//! seen through its read-only alias; they map back to the image as `addr - ENTRY_REGION_VA + __entry_start`.
//! Symbolization is best effort: a missing or unreadable ELF only means lines stay as they are.

use std::path::Path;

use addr2line::Loader;
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use crate::images::Images;
use crate::serial::{Line, parse_line};

/// Start of the hypervisor's entry alias region.
pub const ENTRY_ALIAS_START: u64 = abi::layout::ENTRY_REGION_VA;
/// End (exclusive) of the entry alias region.
pub const ENTRY_ALIAS_END: u64 = ENTRY_ALIAS_START + 0x10_0000;
/// The hypervisor symbol at the start of what the alias region maps.
pub const ENTRY_START_SYMBOL: &str = "__entry_start";

/// Every `0x` followed by exactly 16 hex digits (not part of a longer hex run), in order, without repeats.
pub fn extract_addresses(line: &str) -> Vec<u64> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 18 <= bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let digits = &bytes[i + 2..i + 18];
        let ends_word = bytes.get(i + 18).is_none_or(|b| !b.is_ascii_hexdigit());
        if starts_word
            && bytes[i] == b'0'
            && matches!(bytes[i + 1], b'x' | b'X')
            && digits.iter().all(u8::is_ascii_hexdigit)
            && ends_word
        {
            // 16 hex digits always fit in a u64; the str is ASCII here.
            if let Some(addr) = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u64::from_str_radix(d, 16).ok())
                && !found.contains(&addr)
            {
                found.push(addr);
            }
            i += 18;
        } else {
            i += 1;
        }
    }
    found
}

/// Maps an address in the entry alias region back to the hypervisor image; other addresses are unchanged.
pub fn map_entry_alias(addr: u64, entry_start: Option<u64>) -> u64 {
    match entry_start {
        Some(base) if (ENTRY_ALIAS_START..ENTRY_ALIAS_END).contains(&addr) => {
            (addr - ENTRY_ALIAS_START).wrapping_add(base)
        }
        _ => addr,
    }
}

/// For `[hv] bt #<i> ...` lines, the frame index `i`.
pub fn backtrace_index(line: &str) -> Option<u32> {
    match parse_line(line) {
        Line::Hypervisor { tag: "bt", message } => message
            .strip_prefix('#')?
            .split_whitespace()
            .next()?
            .parse()
            .ok(),
        _ => None,
    }
}

/// Removes a legacy-mangling hash suffix (`::h0123456789abcdef`) from a demangled name.
pub fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// Shortens a source path: relative to the workspace root, or `<rustc>/library/...` for the standard library.
pub fn short_path<'a>(file: &'a str, root: &str) -> &'a str {
    if !root.is_empty()
        && let Some(rest) = file.strip_prefix(root)
        && let Some(rest) = rest.strip_prefix('/')
    {
        return rest;
    }
    if let Some(idx) = file.find("/library/")
        && file.starts_with("/rustc/")
    {
        return &file[idx + 1..];
    }
    file
}

/// One ELF image: its debug info and the ranges of its executable sections.
struct Elf {
    loader: Loader,
    text: Vec<(u64, u64)>,
    entry_start: Option<u64>,
    /// Every named symbol in a text section (assembly labels included), sorted by address: the fallback
    /// `label+0xoff` where debug info and sized function symbols say nothing.
    labels: Vec<(u64, String)>,
}

impl Elf {
    fn load(path: &Path) -> Option<Elf> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let text: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address().saturating_add(s.size())))
            .collect();
        let entry_start = file
            .symbols()
            .find(|s| s.name() == Ok(ENTRY_START_SYMBOL))
            .map(|s| s.address());
        let mut labels: Vec<(u64, String)> = file
            .symbols()
            .filter(|s| {
                matches!(s.kind(), SymbolKind::Text | SymbolKind::Unknown)
                    && s.section_index().is_some()
            })
            .filter_map(|s| Some((s.address(), s.name().ok()?.to_string())))
            .filter(|(addr, name)| {
                !name.is_empty() && !name.starts_with(".L") && in_ranges(&text, *addr)
            })
            .collect();
        labels.sort();
        let loader = Loader::new(path).ok()?;
        Some(Elf {
            loader,
            text,
            entry_start,
            labels,
        })
    }

    /// `label+0xoff` for the closest label at or below `addr` in the same text section.
    fn nearest_label(&self, addr: u64) -> Option<String> {
        let (name, offset) = nearest_label(&self.labels, &self.text, addr)?;
        let name = strip_hash(&addr2line::demangle_auto(name.into(), None)).to_string();
        Some(if offset == 0 {
            name
        } else {
            format!("{name}+{offset:#x}")
        })
    }

    fn in_text(&self, addr: u64) -> bool {
        in_ranges(&self.text, addr)
    }

    /// `function at file:line` for `probe`; when the code there was inlined, also the function it was inlined
    /// into and the call site there: `f at a.rs:1, inlined into g at b.rs:2`.
    fn describe(&self, probe: u64, root: &str) -> Option<String> {
        // Innermost first: each frame's function and the line in it (for outer frames, the inlined call site).
        let mut frames: Vec<(Option<String>, Option<String>)> = Vec::new();
        if let Ok(mut iter) = self.loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let name = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.demangle().ok())
                    .map(|n| strip_hash(&n).to_string());
                let location = frame
                    .location
                    .as_ref()
                    .and_then(|l| format_location(l.file, l.line, root));
                frames.push((name, location));
            }
        }
        if frames
            .iter()
            .all(|(name, location)| name.is_none() && location.is_none())
        {
            let name = self
                .loader
                .find_symbol(probe)
                .map(|s| strip_hash(&addr2line::demangle_auto(s.into(), None)).to_string());
            let location = self
                .loader
                .find_location(probe)
                .ok()
                .flatten()
                .and_then(|l| format_location(l.file, l.line, root));
            frames = vec![(name, location)];
        }
        if let Some((name @ None, _)) = frames.first_mut() {
            *name = self.nearest_label(probe);
        }
        let describe_frame =
            |(name, location): &(Option<String>, Option<String>)| match (name, location) {
                (Some(name), Some(location)) => Some(format!("{name} at {location}")),
                (Some(name), None) => Some(name.clone()),
                (None, Some(location)) => Some(location.clone()),
                (None, None) => None,
            };
        let mut text = describe_frame(frames.first()?)?;
        if frames.len() > 1
            && let Some(outer) = frames.last().and_then(describe_frame)
        {
            text.push_str(", inlined into ");
            text.push_str(&outer);
        }
        Some(text)
    }
}

/// The closest label at or below `addr` (labels sorted by address) that lies in the same range of `text` as
/// `addr`, with `addr`'s offset from it.
pub fn nearest_label<'a>(
    labels: &'a [(u64, String)],
    text: &[(u64, u64)],
    addr: u64,
) -> Option<(&'a str, u64)> {
    let idx = labels.partition_point(|(a, _)| *a <= addr).checked_sub(1)?;
    let (start, name) = &labels[idx];
    let same_range = text
        .iter()
        .any(|&(s, e)| (s..e).contains(start) && (s..e).contains(&addr));
    same_range.then(|| (name.as_str(), addr - start))
}

fn in_ranges(ranges: &[(u64, u64)], addr: u64) -> bool {
    ranges
        .iter()
        .any(|&(start, end)| (start..end).contains(&addr))
}

fn format_location(file: Option<&str>, line: Option<u32>, root: &str) -> Option<String> {
    let file = short_path(file?, root);
    Some(match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    })
}

/// Resolves addresses in hypervisor log lines against the hypervisor and guest kernel ELFs.
pub struct Symbolizer {
    hypervisor: Option<Elf>,
    guest: Option<Elf>,
    root: String,
}

impl Symbolizer {
    /// Loads both images' debug info; an image that cannot be read is simply not used.
    pub fn new(images: &Images, workspace_root: &Path) -> Self {
        Symbolizer {
            hypervisor: Elf::load(&images.hypervisor),
            guest: Elf::load(&images.guest),
            root: workspace_root.to_string_lossy().into_owned(),
        }
    }

    /// A symbolizer that resolves nothing.
    pub fn disabled() -> Self {
        Symbolizer {
            hypervisor: None,
            guest: None,
            root: String::new(),
        }
    }

    /// True if at least one image could be loaded.
    pub fn is_active(&self) -> bool {
        self.hypervisor.is_some() || self.guest.is_some()
    }

    /// `function at file:line` for an address, trying the entry alias, the hypervisor, then the guest kernel.
    /// `return_address` looks up `addr - 1` (the call instruction, for backtrace frames above the first).
    pub fn resolve(&self, addr: u64, return_address: bool) -> Option<String> {
        let probe = |a: u64| if return_address { a.wrapping_sub(1) } else { a };
        if let Some(hv) = &self.hypervisor {
            let mapped = map_entry_alias(addr, hv.entry_start);
            if hv.in_text(mapped) {
                return hv.describe(probe(mapped), &self.root);
            }
        }
        if let Some(guest) = &self.guest
            && guest.in_text(addr)
        {
            return guest.describe(probe(addr), &self.root);
        }
        None
    }

    /// The line with ` <function at file:line>` appended for each resolvable address. Only failure reports
    /// are annotated ([`is_report_line`]); other lines come back unchanged.
    pub fn annotate(&self, line: &str) -> String {
        let mut out = line.to_string();
        if !self.is_active() || !is_report_line(line) {
            return out;
        }
        let return_address = backtrace_index(line).is_some_and(|i| i > 0);
        for addr in extract_addresses(line) {
            if let Some(text) = self.resolve(addr, return_address) {
                out.push_str(" <");
                out.push_str(&text);
                out.push('>');
            }
        }
        out
    }
}

/// True for the lines of a failure report: a hypervisor panic or fault (`[hv] PANIC`), its backtrace
/// (`[hv] bt #N`), and a domain crash report (`[hv] ERROR`). Informational lines that merely mention an
/// address are left alone.
pub fn is_report_line(line: &str) -> bool {
    ["[hv] PANIC", "[hv] bt #", "[hv] ERROR"]
        .iter()
        .any(|p| line.starts_with(p))
}

/// The address of the symbol `name` in the ELF file at `path` (e.g. the hypervisor's `HV_CANARY`, which the
/// isolation tests attack).
pub fn symbol_address(path: &Path, name: &str) -> Result<u64, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .ok_or_else(|| format!("{}: no symbol {name}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failure_reports_are_annotated() {
        assert!(is_report_line("[hv] bt #3 0x0000000000207e72"));
        assert!(is_report_line("[hv] PANIC   rip=0x0000000000206674"));
        assert!(is_report_line(
            "[hv] ERROR   rip=0xffffffff800004b7 rsp=0xffffffff8001ee80"
        ));
        assert!(!is_report_line(
            "[hv] INFO  entry region at 0xffff808000000000"
        ));
        assert!(!is_report_line("(d0) rip=0x0000000000206674"));
    }

    #[test]
    fn addresses_need_exactly_sixteen_hex_digits() {
        assert_eq!(
            extract_addresses("[hv] bt #0 0xffffffff80001234"),
            [0xffff_ffff_8000_1234]
        );
        assert_eq!(
            extract_addresses(
                "[hv] ERROR rip=0xffff808000000010 rsp=0x0000000000001000 cr2=0xFFFF808000000010"
            ),
            [0xffff_8080_0000_0010, 0x1000]
        );
        assert!(
            extract_addresses("[hv] INFO  short 0x1234 and long 0x00000000000000001").is_empty()
        );
        assert!(extract_addresses("[hv] INFO  glued a0x0000000000001000").is_empty());
        assert_eq!(
            extract_addresses("0x0000000000000001,0x0000000000000002"),
            [1, 2]
        );
        assert!(extract_addresses("[hv] INFO  not hex 0x000000000000000g").is_empty());
        assert!(extract_addresses("").is_empty());
        assert!(extract_addresses("[hv] é 0x").is_empty());
    }

    #[test]
    fn entry_alias_maps_to_the_image() {
        let base = Some(0xffff_ffff_8020_0000);
        assert_eq!(
            map_entry_alias(0xffff_8080_0000_0123, base),
            0xffff_ffff_8020_0123
        );
        assert_eq!(
            map_entry_alias(0xffff_8080_000f_ffff, base),
            0xffff_ffff_802f_ffff
        );
        assert_eq!(
            map_entry_alias(0xffff_8080_0010_0000, base),
            0xffff_8080_0010_0000
        );
        assert_eq!(
            map_entry_alias(0xffff_807f_ffff_ffff, base),
            0xffff_807f_ffff_ffff
        );
        assert_eq!(
            map_entry_alias(0xffff_8080_0000_0123, None),
            0xffff_8080_0000_0123
        );
    }

    #[test]
    fn nearest_label_stays_in_its_section() {
        let labels = vec![
            (0x1000, "entry_stubs".to_string()),
            (0x108c, "exit_stub".to_string()),
            (0x3000, "other".to_string()),
        ];
        let text = [(0x1000, 0x2000), (0x3000, 0x4000)];
        assert_eq!(
            nearest_label(&labels, &text, 0x1010),
            Some(("entry_stubs", 0x10))
        );
        assert_eq!(
            nearest_label(&labels, &text, 0x108c),
            Some(("exit_stub", 0))
        );
        assert_eq!(
            nearest_label(&labels, &text, 0x1fff),
            Some(("exit_stub", 0xf73))
        );
        assert_eq!(nearest_label(&labels, &text, 0x2500), None);
        assert_eq!(nearest_label(&labels, &text, 0x0fff), None);
        assert_eq!(nearest_label(&labels, &text, 0x3004), Some(("other", 4)));
    }

    #[test]
    fn backtrace_lines() {
        assert_eq!(backtrace_index("[hv] bt #0 0xffffffff80001234"), Some(0));
        assert_eq!(backtrace_index("[hv] bt #12 0xffffffff80001234"), Some(12));
        assert_eq!(backtrace_index("[hv] ERROR rip=0xffffffff80001234"), None);
        assert_eq!(backtrace_index("(d0) bt #1 0xffffffff80001234"), None);
    }

    #[test]
    fn names_and_paths_are_shortened() {
        assert_eq!(
            strip_hash("hypervisor::mm::map::h0123456789abcdef"),
            "hypervisor::mm::map"
        );
        assert_eq!(strip_hash("hypervisor::mm::map"), "hypervisor::mm::map");
        assert_eq!(strip_hash("a::hello"), "a::hello");
        assert_eq!(
            short_path("/work/main/hypervisor/src/lib.rs", "/work/main"),
            "hypervisor/src/lib.rs"
        );
        assert_eq!(
            short_path(
                "/rustc/0123abcd/library/core/src/panicking.rs",
                "/work/main"
            ),
            "library/core/src/panicking.rs"
        );
        assert_eq!(
            short_path("/elsewhere/x.rs", "/work/main"),
            "/elsewhere/x.rs"
        );
    }

    #[test]
    fn lines_pass_through_without_images() {
        let s = Symbolizer::disabled();
        assert!(!s.is_active());
        assert_eq!(
            s.annotate("[hv] bt #0 0xffffffff80001234"),
            "[hv] bt #0 0xffffffff80001234"
        );
    }

    /// Resolves a function of this very test binary (an ELF with debug info) by its link-time address.
    #[test]
    fn resolves_against_a_real_elf() {
        let exe = std::env::current_exe().expect("current exe");
        let data = std::fs::read(&exe).expect("read exe");
        let file = object::File::parse(&*data).expect("parse exe");
        let symbol = file
            .symbols()
            .find(|s| {
                s.name()
                    .is_ok_and(|n| n.contains("extract_addresses") && n.contains("symbolize"))
            })
            .expect("symbol for extract_addresses");
        let addr = symbol.address();
        let images = Images {
            hypervisor: exe.clone(),
            guest: "/nonexistent".into(),
            programs: "/nonexistent".into(),
            mini: "/nonexistent".into(),
        };
        let symbolizer = Symbolizer::new(&images, &crate::workspace_root());
        assert!(symbolizer.is_active());
        let line = format!("[hv] ERROR rip={addr:#018x}");
        let annotated = symbolizer.annotate(&line);
        assert!(annotated.starts_with(&line), "{annotated}");
        assert!(annotated.contains("extract_addresses"), "{annotated}");
        assert!(annotated.contains("xtask/src/symbolize.rs:"), "{annotated}");
        // Guest lines are left alone, and addresses outside any text section are not annotated.
        assert_eq!(
            symbolizer.annotate(&format!("(d0) {line}")),
            format!("(d0) {line}")
        );
        assert_eq!(
            symbolizer.annotate("[hv] INFO  0xffff800000000000"),
            "[hv] INFO  0xffff800000000000"
        );
    }
}
