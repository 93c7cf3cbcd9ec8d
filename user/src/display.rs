//! Output formatting shared by the shell and the programs: the `ps`, `mem` and `domains` tables, and
//! human-readable sizes and times. Everything writes to a `core::fmt::Write`, so it runs on the host.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use uapi::{DomInfo, MemInfo, ProcInfo, dominf};

use crate::io::StrBuf;

/// Nanoseconds shown as seconds with three decimals (`12.345`). Honours width and alignment.
#[derive(Clone, Copy, Debug)]
pub struct Secs(pub u64);

/// Nanoseconds shown as milliseconds with three decimals (`1.250`). Honours width and alignment.
#[derive(Clone, Copy, Debug)]
pub struct Millis(pub u64);

/// Bytes shown with a binary unit and one decimal (`512 B`, `4.0 KiB`, `1.5 MiB`). Honours width and
/// alignment.
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

/// `value / unit` with three decimals, padded as the formatter asks.
fn fixed3(f: &mut fmt::Formatter<'_>, value: u64, unit: u64) -> fmt::Result {
    let mut s = StrBuf::<32>::new();
    write!(s, "{}.{:03}", value / unit, value % unit / (unit / 1000))?;
    f.pad(s.as_str())
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fixed3(f, self.0, 1_000_000_000)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fixed3(f, self.0, 1_000_000)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let mut s = StrBuf::<32>::new();
        if self.0 < 1024 {
            write!(s, "{} B", self.0)?;
        } else {
            let mut unit = 1024u64;
            let mut i = 0;
            while i + 1 < UNITS.len() && self.0 / unit >= 1024 {
                unit *= 1024;
                i += 1;
            }
            let tenths = (u128::from(self.0) * 10 / u128::from(unit)) as u64;
            write!(s, "{}.{} {}", tenths / 10, tenths % 10, UNITS[i])?;
        }
        f.pad(s.as_str())
    }
}

/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;

/// The `ps` table's header line.
pub fn ps_header(w: &mut impl Write) -> fmt::Result {
    writeln!(
        w,
        "{:>5} {:>5} {:<8} {:<15} {:>6} {:>8} {:>9} {:>10}",
        "PID", "PPID", "STATE", "NAME", "PAGES", "PREEMPT", "SYSCALLS", "CPU(ms)"
    )
}

/// One `ps` table row.
pub fn ps_row(w: &mut impl Write, p: &ProcInfo) -> fmt::Result {
    writeln!(
        w,
        "{:>5} {:>5} {:<8} {:<15} {:>6} {:>8} {:>9} {:>10}",
        p.pid,
        p.ppid,
        uapi::state::name(p.state),
        uapi::name_str(&p.name),
        p.pages,
        p.preemptions,
        p.syscalls,
        Millis(p.cpu_ns)
    )
}

/// The `mem` report: the lines `total pages: N` and `free pages: N` exactly, then use, reservation, heap
/// and process count.
pub fn mem_report(w: &mut impl Write, m: &MemInfo) -> fmt::Result {
    let used = m.total_pages.saturating_sub(m.free_pages);
    writeln!(w, "total pages: {}", m.total_pages)?;
    writeln!(w, "free pages: {}", m.free_pages)?;
    writeln!(w, "used: {} pages ({})", used, Size(used * PAGE_SIZE))?;
    writeln!(
        w,
        "reservation: {} pages ({}), maximum {} pages",
        m.reservation,
        Size(m.reservation * PAGE_SIZE),
        m.max_reservation
    )?;
    writeln!(
        w,
        "kernel heap: {} used of {}",
        Size(m.heap_used),
        Size(m.heap_size)
    )?;
    writeln!(w, "processes: {}", m.processes)
}

/// The `uptime` line: `up <seconds, three decimals> s`.
pub fn uptime_line(w: &mut impl Write, ns: u64) -> fmt::Result {
    writeln!(w, "up {} s", Secs(ns))
}

/// A domain's state from its `XEN_DOMINF_*` flags (the most telling one wins).
pub fn dom_state(flags: u32) -> &'static str {
    if flags & dominf::DYING != 0 {
        "dying"
    } else if flags & dominf::SHUTDOWN != 0 {
        "shutdown"
    } else if flags & dominf::RUNNING != 0 {
        "running"
    } else if flags & dominf::BLOCKED != 0 {
        "blocked"
    } else if flags & dominf::PAUSED != 0 {
        "paused"
    } else {
        "runnable"
    }
}

/// The `domains` table's header line.
pub fn domains_header(w: &mut impl Write) -> fmt::Result {
    writeln!(
        w,
        "{:>5} {:<8} {:>8} {:>9} {:>12}",
        "DOM", "STATE", "PAGES", "MAXPAGES", "CPU(ms)"
    )
}

/// One `domains` table row (the domid right-aligned first).
pub fn domain_row(w: &mut impl Write, d: &DomInfo) -> fmt::Result {
    writeln!(
        w,
        "{:>5} {:<8} {:>8} {:>9} {:>12}",
        d.domid,
        dom_state(d.flags),
        d.tot_pages,
        d.max_pages,
        Millis(d.cpu_time_ns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(Secs(12_345_678_901).to_string(), "12.345");
        assert_eq!(Secs(5_000_000).to_string(), "0.005");
        assert_eq!(format!("[{:>8}]", Secs(1_000_000_000)), "[   1.000]");
        assert_eq!(Millis(1_250_000).to_string(), "1.250");
        assert_eq!(Millis(999).to_string(), "0.000");
        assert_eq!(Size(512).to_string(), "512 B");
        assert_eq!(Size(4096).to_string(), "4.0 KiB");
        assert_eq!(Size(1536 * 1024).to_string(), "1.5 MiB");
        assert_eq!(Size(3 << 30).to_string(), "3.0 GiB");
        assert_eq!(Size(u64::MAX).to_string(), "16777215.9 TiB");
        assert_eq!(format!("[{:<9}]", Size(2048)), "[2.0 KiB  ]");
    }

    fn proc(pid: u32, name: &str) -> ProcInfo {
        ProcInfo {
            pid,
            ppid: 1,
            state: uapi::state::SLEEPING,
            pages: 12,
            preemptions: 3,
            syscalls: 45,
            cpu_ns: 2_500_000,
            name: uapi::name_field(name),
            ..ProcInfo::default()
        }
    }

    #[test]
    fn ps_table() {
        let mut s = String::new();
        ps_header(&mut s).unwrap();
        ps_row(&mut s, &proc(7, "spin")).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("  PID  PPID STATE"));
        for col in ["STATE", "NAME", "PAGES", "PREEMPT", "SYSCALLS", "CPU(ms)"] {
            assert!(lines[0].contains(col), "{col}");
        }
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            ["7", "1", "sleeping", "spin", "12", "3", "45", "2.500"]
        );
        assert!(lines[1].starts_with("    7 "));
        // Columns line up: every row is as wide as the header.
        assert_eq!(lines[0].len(), lines[1].len());
    }

    #[test]
    fn mem_lines() {
        let m = MemInfo {
            total_pages: 4096,
            free_pages: 3000,
            reservation: 4352,
            max_reservation: 8192,
            processes: 3,
            heap_used: 12 * 1024,
            heap_size: 1 << 20,
        };
        let mut s = String::new();
        mem_report(&mut s, &m).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines.contains(&"total pages: 4096"));
        assert!(lines.contains(&"free pages: 3000"));
        assert!(s.contains("used: 1096 pages (4.2 MiB)"));
        assert!(s.contains("reservation: 4352 pages (17.0 MiB), maximum 8192 pages"));
        assert!(s.contains("kernel heap: 12.0 KiB used of 1.0 MiB"));
        assert!(s.contains("processes: 3"));
    }

    #[test]
    fn uptime_has_three_decimals() {
        let mut s = String::new();
        uptime_line(&mut s, 65_432_100_000).unwrap();
        assert_eq!(s, "up 65.432 s\n");
    }

    #[test]
    fn domain_states_and_rows() {
        assert_eq!(dom_state(dominf::RUNNING), "running");
        assert_eq!(dom_state(dominf::BLOCKED), "blocked");
        assert_eq!(dom_state(dominf::SHUTDOWN | dominf::BLOCKED), "shutdown");
        assert_eq!(dom_state(dominf::DYING | dominf::SHUTDOWN), "dying");
        assert_eq!(dom_state(dominf::PAUSED), "paused");
        assert_eq!(dom_state(0), "runnable");
        let mut s = String::new();
        domains_header(&mut s).unwrap();
        let d = DomInfo {
            domid: 1,
            flags: dominf::BLOCKED,
            tot_pages: 2048,
            max_pages: 4096,
            cpu_time_ns: 1_234_567_890,
            nr_vcpus: 1,
            weight: 0,
        };
        domain_row(&mut s, &d).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("  DOM STATE"));
        assert!(lines[1].starts_with("    1 blocked"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["1", "blocked", "2048", "4096", "1234.567"]);
        assert_eq!(lines[0].len(), lines[1].len());
    }
}
