//! The guest OS's shell (issue 5), driven through the serial line: commands typed at each `pvsh$ ` prompt,
//! Ctrl-D at the end (the shell logs out with its last status, which becomes domain 0's poweroff code), and
//! the output checked — spawn/wait/exit statuses, 100 processes without a leaked frame, faults and Ctrl-C
//! ending only the program, both system-call paths, bad pointers, mmap, domains and event channels, and
//! the scripted demo of `cargo xtask run` with stdin not a terminal.
//!
//! Domain 0 runs with `dom0_console=direct` (its output reaches the serial line as it comes, no `(d0)`
//! prefix), which is what lets the prompt be seen before a newline; domain 1's lines keep their prefix.
//!
//! The single-machine scenarios run in every mode (`in_both_modes!`: one body, a `native`, a `pv`, an
//! `emulate` and an `hvm` test): the same kernel image as a PV domain, natively in ring 0, and unmodified
//! under the hypervisor's full virtualization, with the same expected output (emulate and hvm report SKIP
//! while the hypervisor cannot run them).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abi::exit::EXIT_OK;
use tests::{Outcome, Scenario, expect, run_scenario};
use xtask::Mode;
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::serial::{Line, parse_line};
use xtask::shell::{CTRL_C, DOM0_CONSOLE_DIRECT, PING_SERVER, SHELL, Session};

/// For each named body `fn name(mode: Mode)`, a module `name` with the tests `native` and `pv` running it.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn native() {
                    super::$name(xtask::Mode::Native)
                }
                #[test]
                fn pv() {
                    super::$name(xtask::Mode::Pv)
                }
                // The unmodified kernel under full virtualization: SKIP until the hypervisor runs it.
                #[test]
                fn emulate() {
                    if !tests::skip_if_unavailable(xtask::Mode::Emulate) {
                        super::$name(xtask::Mode::Emulate)
                    }
                }
                #[test]
                fn hvm() {
                    if !tests::skip_if_unavailable(xtask::Mode::Hvm) {
                        super::$name(xtask::Mode::Hvm)
                    }
                }
            }
        )*
    };
}

in_both_modes!(
    spawn_wait_and_exit_statuses,
    a_hundred_processes_leak_no_frame,
    faults_end_the_program_not_the_shell,
    ctrl_c_interrupts_the_foreground_program,
    both_system_call_paths_agree,
    bad_pointers_get_efault,
    mmap_munmap_and_stack_growth,
    ring_shows_the_kernel_cpl_of_the_mode,
    user_cannot_raise_interrupt_vectors_and_popf_cannot_mask,
);

/// Each prompt must come within this long of the previous typed line (a hung shell fails fast).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Boots `domains` (domain 0 the shell; natively the shell alone) in `mode` and types `session` at the
/// shell.
fn boot(mode: Mode, domains: &[&str], session: Session) -> Outcome {
    let mut s = Scenario::new(domains);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.input = session.into_input(Some(STEP_TIMEOUT));
    s.mode = mode;
    run_scenario(&s)
}

/// Boots the shell alone in `mode` and runs `commands`, then Ctrl-D.
fn shell(mode: Mode, commands: &[&str]) -> Outcome {
    boot(mode, &[SHELL], Session::of_commands(commands))
}

/// Domain 0's console lines: direct output (no prefix) and any `(d0) ` lines, prefix removed; neither the
/// hypervisor's lines nor other domains'.
fn dom0(o: &Outcome) -> Vec<&str> {
    o.output
        .lines()
        .filter_map(|l| match parse_line(l) {
            Line::Guest { domid: 0, text } | Line::Other(text) => Some(text),
            _ => None,
        })
        .collect()
}

/// The index of the first domain-0 line at or after `from` satisfying `pred`; fails the test otherwise.
#[track_caller]
fn find(o: &Outcome, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
    let lines = dom0(o);
    match lines.iter().skip(from).position(|l| pred(l)) {
        Some(i) => from + i,
        None => panic!("expected {what} (domain 0, from line {from} of its output)\n{o}"),
    }
}

/// The number right after `prefix` in `text` (`"pid 7."` with prefix `"pid "` → 7).
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The shell logged out, domain 0 (natively: the machine) powered off with code 0, and so did the whole
/// machine (under the hypervisor, which stayed alive to the end).
#[track_caller]
fn ends_cleanly(o: &Outcome) {
    find(o, 0, "`logout`", |l| l.contains("logout"));
    let e = expect(o).poweroff(0).exit(EXIT_OK);
    if o.mode.under_hypervisor() {
        e.hypervisor_alive_at_end();
    }
    assert!(o.crashed_domains().is_empty(), "no domain crashed\n{o}");
}

fn spawn_wait_and_exit_statuses(mode: Mode) {
    let o = shell(mode, &["hello", "exitcode 7", "echo $?", "nosuch", "hello"]);
    let hello = find(&o, 0, "hello's greeting", |l| {
        l.starts_with("Hello from ring 3! I am pid ") && l.ends_with('.')
    });
    let pid = number_after(dom0(&o)[hello], "I am pid ").unwrap_or(0);
    assert!(
        pid >= 2,
        "hello runs as a child of pid 1, got pid {pid}\n{o}"
    );
    let exit7 = find(&o, hello, "`[exit 7]`", |l| l.trim() == "[exit 7]");
    find(&o, exit7 + 1, "`7` from `echo $?`", |l| l.trim() == "7");
    let missing = find(&o, exit7, "the unknown command reported", |l| {
        l.contains("pvsh: nosuch: command not found")
    });
    find(&o, missing, "hello again", |l| {
        l.starts_with("Hello from ring 3! I am pid ")
    });
    ends_cleanly(&o);
}

fn a_hundred_processes_leak_no_frame(mode: Mode) {
    let o = shell(mode, &["mem", "spawnloop 100", "mem"]);
    let free: Vec<u64> = dom0(&o)
        .iter()
        .filter(|l| l.trim_start().starts_with("free pages: "))
        .filter_map(|l| number_after(l, "free pages: "))
        .collect();
    assert_eq!(free.len(), 2, "two `free pages: N` lines\n{o}");
    let first = find(&o, 0, "the first `free pages:`", |l| {
        l.trim_start().starts_with("free pages: ")
    });
    let done = find(&o, first, "spawnloop's report", |l| {
        l.contains("spawnloop: 100 children spawned and reaped, every exit status right")
    });
    find(&o, done, "the second `free pages:`", |l| {
        l.trim_start().starts_with("free pages: ")
    });
    assert_eq!(
        free[0], free[1],
        "free pages before and after 100 processes\n{o}"
    );
    ends_cleanly(&o);
}

fn faults_end_the_program_not_the_shell(mode: Mode) {
    let o = shell(mode, &["fault kernel", "fault other", "hello", "ps"]);
    let lines = dom0(&o);
    let killed = lines
        .iter()
        .filter(|l| l.contains("killed: page fault"))
        .count();
    let statuses = lines.iter().filter(|l| l.trim() == "[exit 139]").count();
    assert_eq!(
        (killed, statuses),
        (2, 2),
        "two `killed: page fault` lines and two `[exit 139]`\n{o}"
    );
    let first = find(&o, 0, "the first kill", |l| {
        l.contains("killed: page fault")
    });
    let second = find(&o, first + 1, "the second kill", |l| {
        l.contains("killed: page fault")
    });
    let last_status = find(&o, second, "its status", |l| l.trim() == "[exit 139]");
    let hello = find(&o, last_status, "hello after the faults", |l| {
        l.starts_with("Hello from ring 3! I am pid ")
    });
    find(&o, hello, "`ps` listing pid 1 (sh)", |l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.first() == Some(&"1") && words.get(3) == Some(&"sh")
    });
    ends_cleanly(&o);
}

fn ctrl_c_interrupts_the_foreground_program(mode: Mode) {
    let session = Session::new()
        .command("spin")
        .when("spin: pid", &[CTRL_C])
        .command("hello")
        .logout();
    let o = boot(mode, &[SHELL], session);
    let spin = find(&o, 0, "spin's first report", |l| l.contains("spin: pid"));
    let status = find(&o, spin, "`[exit 130]`", |l| l.trim() == "[exit 130]");
    find(&o, status, "hello's greeting after Ctrl-C", |l| {
        l.starts_with("Hello from ring 3! I am pid ")
    });
    ends_cleanly(&o);
}

fn both_system_call_paths_agree(mode: Mode) {
    let o = shell(mode, &["syscheck"]);
    let at = find(&o, 0, "syscheck's verdict", |l| {
        l.starts_with("syscheck: ") && l.ends_with(" calls, int 0x80 and syscall agree")
    });
    let calls = number_after(dom0(&o)[at], "syscheck: ").unwrap_or(0);
    assert!(calls > 0, "syscheck compared some calls\n{o}");
    ends_cleanly(&o);
}

fn bad_pointers_get_efault(mode: Mode) {
    let o = shell(mode, &["badptr"]);
    let at = find(&o, 0, "badptr's verdict", |l| {
        l.starts_with("badptr: ") && l.ends_with(" bad-pointer calls, every one -EFAULT")
    });
    let calls = number_after(dom0(&o)[at], "badptr: ").unwrap_or(0);
    assert!(calls > 0, "badptr made some calls\n{o}");
    ends_cleanly(&o);
}

fn mmap_munmap_and_stack_growth(mode: Mode) {
    let o = shell(mode, &["mmaptest"]);
    find(&o, 0, "`mmaptest: ok`", |l| l.starts_with("mmaptest: ok"));
    ends_cleanly(&o);
}

/// Hostile ring-3 code against the gates: `int 0x20` (natively the PIT's vector, an interrupt gate of DPL
/// 0) is a #GP that ends only the program; POPF cannot clear IF from ring 3 and does not fault either.
fn user_cannot_raise_interrupt_vectors_and_popf_cannot_mask(mode: Mode) {
    let o = shell(mode, &["fault irq", "fault popf", "hello"]);
    let raised = find(&o, 0, "the int 0x20 attempt", |l| {
        l.contains("fault: raising the interrupt vector 0x20")
    });
    let killed = find(&o, raised, "the #GP kill", |l| {
        l.contains("killed: general protection fault")
    });
    find(&o, killed, "its status", |l| l.trim() == "[exit 139]");
    let popf = find(&o, killed, "popf's report", |l| {
        l.starts_with("fault: popf with IF clear in ring 3")
    });
    assert!(
        dom0(&o)[popf].contains("IF 1 before, 1 after, no fault"),
        "POPF left IF set without faulting\n{o}"
    );
    find(&o, popf, "hello afterwards", |l| {
        l.starts_with("Hello from ring 3! I am pid ")
    });
    ends_cleanly(&o);
}

fn ring_shows_the_kernel_cpl_of_the_mode(mode: Mode) {
    let o = shell(mode, &["ring"]);
    let user = find(&o, 0, "the user program's CPL", |l| {
        l.starts_with("user program: CS=0x33 -> CPL 3")
    });
    let kernel_cpl = format!("-> CPL {} (RingInfo.kernel_cs)", mode.kernel_ring());
    find(&o, user, "the kernel's CPL for this mode", |l| {
        l.starts_with("guest kernel: CS=") && l.ends_with(&kernel_cpl)
    });
    // Only the PV backend knows its hypervisor; the unmodified kernel (native, emulate, hvm) sees none.
    let pv = mode == Mode::Pv;
    let hypervisor = if pv {
        "hypervisor: "
    } else {
        "hypervisor: none"
    };
    find(&o, user, "what ring says of the hypervisor", |l| {
        l.starts_with(hypervisor) && pv != l.starts_with("hypervisor: none")
    });
    ends_cleanly(&o);
}

#[test]
fn domains_and_event_channel_round_trips() {
    let o = boot(
        Mode::Pv,
        &[SHELL, PING_SERVER],
        Session::of_commands(&["domains", "evtchn-ping 50"]),
    );
    let header = find(&o, 0, "the `domains` header", |l| {
        l.contains("DOM") && l.contains("STATE")
    });
    let first_word = |l: &str| l.split_whitespace().next().map(str::to_string);
    let lines = dom0(&o);
    let rows: Vec<Option<String>> = lines
        .iter()
        .skip(header + 1)
        .take(2)
        .map(|l| first_word(l))
        .collect();
    assert_eq!(
        rows,
        [Some("0".to_string()), Some("1".to_string())],
        "`domains` lists domain 0 and domain 1\n{o}"
    );
    find(&o, header, "50 round trips", |l| {
        l.contains("evtchn-ping: 50 round trips")
    });
    ends_cleanly(&o);
    expect(&o).poweroff(1);
}

/// `cargo xtask run` with stdin not a terminal types the demo script and ends by itself with status 0. The
/// xtask binary is built (dev profile, like the `cargo xtask` alias) and run directly.
#[test]
fn the_scripted_demo_ends_by_itself() {
    let xtask = xtask::selfbin::xtask_binary().unwrap_or_else(|e| panic!("{e}"));
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(&xtask)
            .arg("run")
            .current_dir(xtask::workspace_root()),
        Duration::from_secs(600),
    );
    let shown = format!("----- stdout -----\n{stdout}\n----- stderr -----\n{stderr}");
    assert_eq!(status, Some(0), "xtask run exits with status 0\n{shown}");
    for needed in [
        "Hello from ring 3! I am pid ",
        "killed: page fault",
        "[exit 139]",
        "[exit 3]",
        "evtchn-ping: ",
        "logout",
        "[hv] INFO  all domains finished: exit status 0",
    ] {
        assert!(
            stdout.contains(needed),
            "the demo shows {needed:?}\n{shown}"
        );
    }
    assert!(
        stderr.contains("xtask: scripted: "),
        "xtask said it types a script\n{shown}"
    );
}

/// Runs `cmd` with stdin null and its output captured, in its own process group; kills the group (the
/// xtask binary and its QEMU) if it has not finished after `timeout`. Returns the exit code and output.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if start.elapsed() > timeout => {
                // The group we created: the xtask binary and the QEMU it started.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("cannot wait for {cmd:?}: {e}"),
        }
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}
