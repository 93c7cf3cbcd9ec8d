//! `cargo xtask migrate`: two QEMUs, each running ring1pv, joined on the loopback by a TCP socket: on a
//! virtio console (`--link virtio`, the default) or on their second serial ports (`--link uart`, COM2). The destination's domain 0 waits in `xl migrate-receive`; the source's
//! domain 0 starts a shell domain running `count` (or `dirty PAGES`, `--dirty`) and migrates it with
//! `xl migrate`. The report: rounds, pages per round, why the pre-copy ended (converged, the dirty set
//! stopped shrinking, or the round limit), downtime (source: suspend to confirmation; destination: tail to
//! resume) and whether the counter continued on the destination without a gap. `--kill-destination` kills the destination's
//! QEMU as soon as the stream begins: the source must keep its domain running.

use std::sync::mpsc;
use std::time::Duration;

use crate::images::{Images, Profile, build_images};
use crate::scenario::{DEFAULT_HV_CMDLINE, Outcome, RunOptions, Scenario, run_scenario_with};
use crate::shell::{DOM0_CONSOLE_DIRECT, SHELL, Session, XL_IMAGE};

/// `cargo xtask migrate` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Memory of the migrated domain, MiB.
    #[arg(long, default_value_t = 16)]
    pub mem: u32,
    /// The workload's period (`count MS`), milliseconds.
    #[arg(long, default_value_t = 100)]
    pub period_ms: u32,
    /// Run `dirty PAGES MS` instead of `count MS`: write one word into the same PAGES pages every period,
    /// so every pre-copy round finds about PAGES pages dirty (pre-copy convergence).
    #[arg(long, value_name = "PAGES")]
    pub dirty: Option<u32>,
    /// Kill the destination's QEMU once the stream has begun (the source must keep its domain).
    #[arg(long)]
    pub kill_destination: bool,
    /// The device the two machines talk through.
    #[arg(long, value_enum, default_value_t = Link::Virtio)]
    pub link: Link,
    /// `xl migrate --verify`: the destination checks every data page against the source's digest and
    /// refuses the domain (which then continues on the source) if one differs.
    #[arg(long)]
    pub verify: bool,
    /// Migrate this many times (a fresh pair of machines each) and report the downtime's minimum, median
    /// and maximum against the goal (an idle 16 MiB domain: at most 50 ms).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
}

impl Default for MigrateArgs {
    fn default() -> Self {
        MigrateArgs {
            mem: 16,
            period_ms: 100,
            dirty: None,
            kill_destination: false,
            link: Link::Virtio,
            verify: false,
            runs: 1,
        }
    }
}

/// The device carrying the migration stream.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A virtio console (legacy virtio-serial PCI device, one port): whole frames per buffer.
    Virtio,
    /// The second 16550 (COM2): QEMU moves about 14 bytes per I/O-thread wake-up.
    Uart,
}

impl Link {
    fn describe(self) -> &'static str {
        match self {
            Link::Virtio => "a virtio console",
            Link::Uart => "COM2",
        }
    }

    /// QEMU arguments joining this machine to the socket on `port` (listening if `server`). `nodelay`:
    /// without it Nagle's algorithm holds a small frame (an ACK, the tail's first frame) back until the
    /// peer's delayed acknowledgement, about 40 ms on Linux's loopback — measured as one 37 ms wait in
    /// the middle of a 10 ms tail.
    fn qemu_args(self, port: u16, server: bool) -> Vec<String> {
        let listen = if server { ",server=on,wait=off" } else { "" };
        match self {
            Link::Uart => vec![
                "-serial".into(),
                format!("tcp:127.0.0.1:{port}{listen},nodelay=on"),
            ],
            Link::Virtio => vec![
                "-device".into(),
                "virtio-serial-pci,disable-modern=on,max_ports=1".into(),
                "-chardev".into(),
                format!("socket,id=mig,host=127.0.0.1,port={port}{listen},nodelay=on"),
                "-device".into(),
                "virtconsole,chardev=mig".into(),
            ],
        }
    }

    /// What identifies the listening QEMU's command line.
    fn listener_needle(self, port: u16) -> String {
        match self {
            Link::Uart => format!("127.0.0.1:{port},server=on"),
            Link::Virtio => format!("port={port},server=on"),
        }
    }
}

/// What a migration run showed.
#[derive(Debug, Default)]
pub struct Report {
    /// Pages per round (round 0 first), from the source's `xl migrate`.
    pub rounds: Vec<u64>,
    /// Why the source's pre-copy ended (`xl: migrate: pre-copy <this>`): starts with `converged` (a round
    /// sent at most xl's threshold), `stopped` (the dirty set no longer shrank) or `hit the round limit`.
    pub precopy_stop: Option<String>,
    /// The source's stop-and-copy line (pages, downtime), if the migration completed.
    pub final_line: Option<String>,
    /// The destination's line ("runs here ... tail to resume N ms").
    pub dest_line: Option<String>,
    /// The last counter value the source printed, and the first the destination printed.
    pub last_source_count: Option<u64>,
    /// See [`Report::last_source_count`].
    pub first_dest_count: Option<u64>,
    /// Counter values the source printed after `xl migrate` failed (its domain kept running).
    pub source_counts_after_failure: usize,
    /// The source's and the destination's log lines naming the link their hypervisor opened.
    pub links: [Option<String>; 2],
    /// Both consoles.
    pub source: String,
    /// See [`Report::source`].
    pub dest: String,
}

const STEP: Duration = Duration::from_secs(90);

fn counts(output: &str) -> impl Iterator<Item = u64> + '_ {
    output.lines().filter_map(|l| {
        // `(dN) count K` while domain 0 has the console, `count K` while the domain has it.
        let l = l.trim();
        let l = match l.strip_prefix("(d") {
            Some(r) => r.split_once(") ")?.1,
            None => l,
        };
        l.strip_prefix("count ")?.parse().ok()
    })
}

/// The command the migrated domain's shell runs.
fn workload(args: &MigrateArgs) -> String {
    match args.dirty {
        Some(pages) => format!("dirty {pages} {}", args.period_ms),
        None => format!("count {}", args.period_ms),
    }
}

/// The pages of a `mem` MiB domain.
pub fn domain_pages(mem_mib: u32) -> u64 {
    u64::from(mem_mib) * 256
}

fn source_scenario(args: &MigrateArgs, port: u16) -> Scenario {
    let mut session = Session::new()
        .command(&format!("xl create -m {} guest shell", args.mem))
        .command("sleep 3")
        .command("xl console 1")
        .when(
            "has the console input now",
            format!("{}\n", workload(args)).as_bytes(),
        )
        .console_to_domain_0("count 5")
        .command(if args.verify {
            "xl migrate --verify 1"
        } else {
            "xl migrate 1"
        });
    if args.kill_destination {
        session = session
            .command("sleep 2")
            .command("xl list")
            .command("xl destroy 1");
    }
    let mut s = Scenario::new(&[SHELL]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.images = vec![XL_IMAGE.to_string()];
    s.timeout = Duration::from_secs(240);
    s.input = session.logout().into_input(Some(STEP));
    s.extra_args = args.link.qemu_args(port, false);
    s
}

fn dest_scenario(link: Link, port: u16) -> Scenario {
    let session = Session::new()
        .command("xl migrate-receive")
        .command("sleep 3")
        .command("xl list")
        .command("xl destroy 1")
        .logout();
    let mut s = Scenario::new(&[SHELL]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.images = vec![XL_IMAGE.to_string()];
    s.timeout = Duration::from_secs(240);
    s.input = session.into_input(Some(STEP));
    s.extra_args = link.qemu_args(port, true);
    s
}

/// Kill the QEMU (started by this process) that listens with `needle` in its command line.
fn kill_listener(needle: &str) {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Only our own child: its parent is this process.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .unwrap_or("");
        if cmd.contains(needle) && parent == me {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Run one migration between two fresh machines.
pub fn migrate(images: &Images, args: &MigrateArgs) -> Result<Report, String> {
    let port = free_port()?;
    let dest = dest_scenario(args.link, port);
    let source = source_scenario(args, port);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let kill = args.kill_destination;
    let needle = args.link.listener_needle(port);
    let (d, s) = std::thread::scope(|scope| {
        let dh = scope.spawn(|| {
            let mut ready = Some(ready_tx);
            let mut sink = |line: &str| {
                if let Some(t) = ready.take() {
                    let _ = t.send(());
                }
                if kill && line.contains("migrate: incoming domain") {
                    kill_listener(&needle);
                }
            };
            run_scenario_with(
                images,
                &dest,
                RunOptions {
                    input: dest.input.clone(),
                    ..RunOptions::default()
                },
                &mut sink,
            )
        });
        // The source connects at start: the destination must be listening (it is once it prints).
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        let sh = scope.spawn(|| {
            run_scenario_with(
                images,
                &source,
                RunOptions {
                    input: source.input.clone(),
                    ..RunOptions::default()
                },
                &mut |_: &str| {},
            )
        });
        (dh.join(), sh.join())
    });
    let d: Outcome = d.map_err(|_| "the destination's thread panicked".to_string())??;
    let s: Outcome = s.map_err(|_| "the source's thread panicked".to_string())??;
    let dir = images
        .hypervisor
        .parent()
        .unwrap_or(std::path::Path::new("."));
    for (name, o) in [("migrate-source.log", &s), ("migrate-destination.log", &d)] {
        let _ = std::fs::write(dir.join(name), &o.output);
    }
    let mut r = Report {
        source: s.output.clone(),
        dest: d.output.clone(),
        ..Report::default()
    };
    for l in s.output.lines() {
        if let Some(rest) = l.split_once("xl: migrate: round ").map(|x| x.1)
            && let Some((_, p)) = rest.split_once(": ")
            && let Some(n) = p.strip_suffix(" pages").and_then(|n| n.trim().parse().ok())
        {
            r.rounds.push(n);
        }
        if let Some((_, why)) = l.split_once("xl: migrate: pre-copy ") {
            r.precopy_stop = Some(why.trim().to_string());
        }
        if l.contains("xl: migrate: stop-and-copy") {
            r.final_line = Some(l.trim().to_string());
        }
    }
    let link_line = |o: &str| {
        o.lines()
            .find(|l| l.contains("the migration link"))
            .map(|l| l.trim().to_string())
    };
    r.links = [link_line(&s.output), link_line(&d.output)];
    r.dest_line = d
        .output
        .lines()
        .find(|l| l.contains("runs here:"))
        .map(|l| l.trim().to_string());
    // The source's domain prints until its suspend (and is destroyed after the confirmation).
    r.last_source_count = counts(&s.output).last();
    r.first_dest_count = counts(&d.output).next();
    if let Some(fail) = s
        .output
        .find("did not take domain")
        .or(s.output.find("failed; domain"))
    {
        r.source_counts_after_failure = counts(&s.output[fail..]).count();
    }
    Ok(r)
}

/// `cargo xtask migrate`.
pub fn run(args: &MigrateArgs) -> Result<u8, String> {
    let images = build_images(Profile::Release)?;
    let mut downtimes = Vec::new();
    for i in 0..args.runs.max(1) {
        if args.runs > 1 {
            eprintln!("xtask: migration {} of {}", i + 1, args.runs);
        }
        downtimes.extend(run_once(&images, args)?);
    }
    if let Some((min, median, max)) = spread(&mut downtimes) {
        eprintln!(
            "xtask: downtime over {} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms (goal for an idle 16 MiB domain: <= 50 ms; TCG wall time, so host load counts)",
            downtimes.len(),
            min as f64 / 1000.0,
            median as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
    Ok(0)
}

/// The downtime in a source's stop-and-copy line (`... downtime N us ...`).
fn downtime_us(line: &str) -> Option<u64> {
    let rest = &line[line.find("downtime ")? + "downtime ".len()..];
    let (n, unit) = rest.split_once(' ')?;
    unit.starts_with("us").then(|| n.parse().ok())?
}

/// (minimum, median, maximum) of `v` (sorted in place); the median of an even count is the lower middle.
fn spread(v: &mut [u64]) -> Option<(u64, u64, u64)> {
    v.sort_unstable();
    Some((*v.first()?, v[(v.len() - 1) / 2], *v.last()?))
}

/// One migration and its report; the downtime it measured (source clock, microseconds), if it reported one.
fn run_once(images: &Images, args: &MigrateArgs) -> Result<Option<u64>, String> {
    eprintln!(
        "xtask: migrating a {} MiB shell domain running `{}` between two machines (link: {} over the loopback){}",
        args.mem,
        workload(args),
        args.link.describe(),
        if args.kill_destination {
            "; the destination is killed mid-stream"
        } else {
            ""
        }
    );
    let r = migrate(images, args)?;
    for (side, l) in ["source", "destination"].iter().zip(&r.links) {
        eprintln!(
            "xtask: {side}'s link: {}",
            l.as_deref().unwrap_or("(not reported)")
        );
    }
    let pages = domain_pages(args.mem);
    for (i, p) in r.rounds.iter().enumerate() {
        eprintln!(
            "xtask: round {i}: {p} pages ({:.1}% of {pages})",
            *p as f64 * 100.0 / pages as f64
        );
    }
    if let Some(why) = &r.precopy_stop {
        eprintln!(
            "xtask: pre-copy {why}; {} rounds in all with the stop-and-copy",
            r.rounds.len() + 1
        );
    }
    if let Some(l) = &r.final_line {
        eprintln!("xtask: source: {l}");
    }
    if let Some(l) = &r.dest_line {
        eprintln!("xtask: destination: {l}");
    }
    if args.kill_destination {
        if r.final_line.is_none() && r.source_counts_after_failure > 0 {
            eprintln!(
                "xtask: the destination vanished; the source kept its domain ({} counter lines afterwards)",
                r.source_counts_after_failure
            );
            return Ok(None);
        }
        return Err(format!(
            "the source did not survive the destination's loss\n--- source ---\n{}",
            tail(&r.source, 40)
        ));
    }
    match (r.last_source_count, r.first_dest_count, &r.final_line) {
        (Some(a), Some(b), Some(_)) if b == a + 1 => {
            eprintln!(
                "xtask: the counter went on without a gap: source last {a}, destination first {b}"
            );
            Ok(r.final_line.as_deref().and_then(downtime_us))
        }
        (a, b, _) => Err(format!(
            "migration failed or the counter did not continue (source last {a:?}, destination first {b:?})\n--- source ---\n{}\n--- destination ---\n{}",
            tail(&r.source, 40),
            tail(&r.dest, 40)
        )),
    }
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_downtime_is_read_from_the_stop_and_copy_line() {
        let l = "xl: migrate: stop-and-copy: 43 pages; domain 1 runs on the destination as domain 1; downtime 93752 us (suspend to confirmation, source clock); 3 rounds, 792 ms in all";
        assert_eq!(downtime_us(l), Some(93752));
        assert_eq!(downtime_us("downtime 12 ms"), None);
        assert_eq!(downtime_us("no such word"), None);
        assert_eq!(downtime_us("downtime x us"), None);
    }

    #[test]
    fn spread_is_min_median_max() {
        assert_eq!(spread(&mut []), None);
        assert_eq!(spread(&mut [5]), Some((5, 5, 5)));
        assert_eq!(spread(&mut [9, 1, 5]), Some((1, 5, 9)));
        assert_eq!(spread(&mut [4, 1, 3, 2]), Some((1, 2, 4)));
    }
}
