//! `sh` (pvsh): the guest OS's shell, pid 1 on domain 0's console. Reads a line at a time (the kernel's
//! line discipline does the editing), runs built-ins itself and everything else with `spawn` + `wait`
//! (or in the background with a trailing `&`). Parsing lives in `user::shell`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt::Write;

use user::io::{Buffered, StrBuf};
use user::jobs::{Jobs, SpawnError};
use user::shell::{self, Command, Input, Words};
use user::{Errno, display, print, println, sys};

user::main!(main);

fn main(_args: &str) -> i32 {
    println!("{}", shell::BANNER);
    // The line buffer lives in an anonymous mapping: a real use of `mmap`, and it gives pid 1 a mapping
    // that `fault other` can aim at from another process.
    let mut fallback = [0u8; shell::LINE_MAX];
    let buf: &mut [u8] = match sys::mmap_rw(shell::LINE_MAX) {
        Ok(mapped) => mapped,
        Err(_) => &mut fallback,
    };
    let mut status: u32 = 0;
    let mut expanded = StrBuf::<{ shell::EXPANDED_MAX }>::new();
    let mut jobs = Jobs::new();
    loop {
        reap_background(&mut jobs);
        print!("{}", shell::PROMPT);
        let line = match shell::read_line(buf, |b| sys::read(0, b)) {
            Input::Line(line) => line,
            Input::Interrupted => {
                println!();
                continue;
            }
            Input::End => {
                println!("logout");
                return status as i32;
            }
            Input::TooLong => {
                println!(
                    "pvsh: line too long (at most {} bytes)",
                    shell::LINE_MAX - 1
                );
                status = shell::STATUS_USAGE;
                continue;
            }
            Input::NotText => {
                println!("pvsh: the line is not UTF-8 text");
                status = shell::STATUS_USAGE;
                continue;
            }
            Input::Error(e) => {
                println!("pvsh: cannot read the console: {e}");
                return 1;
            }
        };
        let Ok(line) = shell::expand(line, status, &mut expanded) else {
            println!("pvsh: line too long after expanding $?");
            status = shell::STATUS_USAGE;
            continue;
        };
        status = match shell::parse(line) {
            Ok(Command::Empty) => status,
            Ok(Command::Exit(code)) => return code.unwrap_or(status) as i32,
            Ok(Command::Poweroff(code)) => {
                failed("poweroff", sys::poweroff(code.unwrap_or(status)))
            }
            Ok(Command::Run {
                name,
                args,
                background,
            }) => spawn(name, args, background, &mut jobs),
            Ok(builtin) => run_builtin(builtin),
            Err(e) => {
                println!("{e}");
                e.status()
            }
        };
    }
}

/// Perform a built-in that prints something; its status.
fn run_builtin(command: Command<'_>) -> u32 {
    let mut out = Buffered::new(|b: &[u8]| {
        let _ = sys::write_all(1, b);
    });
    let written = match command {
        Command::Help => shell::help(&mut out),
        Command::Ps => return ps(&mut out),
        Command::Domains => return domains(&mut out),
        Command::Mem => match sys::meminfo() {
            Ok(m) => display::mem_report(&mut out, &m),
            Err(e) => return failed("mem", e),
        },
        Command::Uptime => match sys::uptime() {
            Ok(ns) => display::uptime_line(&mut out, ns),
            Err(e) => return failed("uptime", e),
        },
        Command::Echo(text) => writeln!(out, "{}", Words(text)),
        // Handled by the caller.
        Command::Empty | Command::Exit(_) | Command::Poweroff(_) | Command::Run { .. } => Ok(()),
    };
    if written.is_ok() { 0 } else { 1 }
}

/// Print `<what>: <errno>`; status 1.
fn failed(what: &str, e: Errno) -> u32 {
    println!("{what}: {e}");
    1
}

/// The `ps` built-in.
fn ps(out: &mut impl core::fmt::Write) -> u32 {
    let mut procs = [uapi::ProcInfo::default(); sys::PS_MAX];
    match sys::ps(&mut procs) {
        Ok(n) => {
            let _ = display::ps_header(out);
            for p in &procs[..n.min(procs.len())] {
                let _ = display::ps_row(out, p);
            }
            0
        }
        Err(e) => failed("ps", e),
    }
}

/// The `domains` built-in.
fn domains(out: &mut impl core::fmt::Write) -> u32 {
    let mut doms = [uapi::DomInfo::default(); 16];
    match sys::domains(&mut doms) {
        Ok(n) => {
            let _ = display::domains_header(out);
            for d in &doms[..n.min(doms.len())] {
                let _ = display::domain_row(out, d);
            }
            0
        }
        Err(Errno::EPERM) => {
            println!("domains: only domain 0 may list domains");
            1
        }
        Err(e) => failed("domains", e),
    }
}

/// Start program `name`; in the foreground wait for it and return its status.
fn spawn(name: &str, args: &str, background: bool, jobs: &mut Jobs) -> u32 {
    let flags = if background {
        0
    } else {
        uapi::SPAWN_FOREGROUND
    };
    let pid = match sys::spawn(name, args, flags) {
        Ok(pid) => pid,
        Err(Errno::ENOENT) => {
            println!("pvsh: {name}: command not found");
            return shell::STATUS_NOT_FOUND;
        }
        Err(e) => {
            println!("pvsh: {name}: cannot run: {}", SpawnError(e));
            return shell::STATUS_CANNOT_RUN;
        }
    };
    if background {
        jobs.started(pid);
        println!("[{pid}] started");
        return 0;
    }
    match sys::wait(u64::from(pid), 0) {
        Ok((_, status)) => {
            if status != 0 {
                println!("[exit {status}]");
            }
            status
        }
        Err(e) => failed("pvsh: wait", e),
    }
}

/// Reap every child that has ended: report the shell's own background jobs; children it adopted (the
/// orphans of a program ended by Ctrl-C) are reaped silently.
fn reap_background(jobs: &mut Jobs) {
    while let Ok((pid, status)) = sys::wait(sys::ANY_CHILD, uapi::WNOHANG) {
        if pid == 0 {
            break;
        }
        if jobs.ended(pid) {
            println!("[{pid}] done, status {status}");
        }
    }
}
