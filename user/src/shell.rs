//! The logic of `sh`, the guest OS's shell, without any system call: reading a line through a given
//! `read` function, `$?` expansion, parsing a line into a built-in or a program to run (with a trailing
//! `&` for the background), and the help text. The `sh` program performs what [`parse`] returns.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use uapi::Errno;

use crate::io::StrBuf;
use crate::num::parse_status;

/// The prompt (no newline).
pub const PROMPT: &str = "pvsh$ ";
/// The line printed once at start.
pub const BANNER: &str = "pvsh: type 'help' for commands";
/// Bytes of one input line, newline included; longer lines are refused.
pub const LINE_MAX: usize = 256;
/// Bytes of a line after `$?` expansion.
pub const EXPANDED_MAX: usize = 512;
/// Status of a command that was not found.
pub const STATUS_NOT_FOUND: u32 = 127;
/// Status of a program that could not be started for another reason.
pub const STATUS_CANNOT_RUN: u32 = 126;
/// Status of a misused built-in or a line the shell refused.
pub const STATUS_USAGE: u32 = 2;

/// A command in the `help` list.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// What to type.
    pub name: &'static str,
    /// Its arguments, as a usage string.
    pub usage: &'static str,
    /// A one-line description.
    pub what: &'static str,
}

const fn entry(name: &'static str, usage: &'static str, what: &'static str) -> Entry {
    Entry { name, usage, what }
}

/// The built-in commands, in `help` order.
pub const BUILTINS: &[Entry] = &[
    entry("help", "", "this list"),
    entry(
        "ps",
        "",
        "processes: state, pages, preemptions, syscalls, CPU",
    ),
    entry("mem", "", "kernel pages, domain reservation, kernel heap"),
    entry("uptime", "", "time since the hypervisor booted"),
    entry("domains", "", "the hypervisor's domains (domain 0 only)"),
    entry("echo", "WORDS", "print WORDS ($? is the last status)"),
    entry(
        "exit",
        "[N]",
        "end the shell with status N (default: last status)",
    ),
    entry(
        "poweroff",
        "[N]",
        "power the domain off with code N (default: last status)",
    ),
];

/// The programs (`user/src/bin/<name>.rs`), in `help` order.
pub const PROGRAMS: &[Entry] = &[
    entry("hello", "", "greet from ring 3"),
    entry(
        "ring",
        "",
        "the rings of this program, the kernel, the hypervisor",
    ),
    entry(
        "evtchn-ping",
        "[N]",
        "N event-channel round trips with the other domain",
    ),
    entry(
        "sleep",
        "SECONDS",
        "sleep (decimals and the suffix ms allowed)",
    ),
    entry(
        "count",
        "[MS]",
        "print count N every MS ms (default 100), forever",
    ),
    entry(
        "dirty",
        "PAGES [MS] [BUF]",
        "write a word in PAGES pages every MS ms; count N",
    ),
    entry(
        "spin",
        "[SECONDS]",
        "busy loop reporting its preemptions (Ctrl-C ends it)",
    ),
    entry(
        "fault",
        "[KIND]",
        "misbehave (kernel null other exec gp irq stack popf)",
    ),
    entry(
        "bench",
        "[ITER] [FILTER]",
        "the guest kernel's hypercall benchmarks (100 iterations)",
    ),
    entry("exitcode", "N", "exit with status N"),
    entry(
        "spawnloop",
        "N",
        "spawn and reap N children, checking their statuses",
    ),
    entry(
        "syscheck",
        "",
        "every system call via int 0x80 and syscall, compared",
    ),
    entry(
        "xl",
        "SUBCOMMAND",
        "toolstack: list create destroy pause unpause console",
    ),
    entry(
        "badptr",
        "",
        "bad pointers to every system call: all -EFAULT",
    ),
    entry(
        "mmaptest",
        "",
        "demand-zero mmap, splitting munmap, stack growth",
    ),
    entry(
        "osbench",
        "[ITER] [FILTER..]",
        "lmbench-style OS workloads (docs/COMPARISON.md)",
    ),
    entry(
        "sensitive",
        "",
        "Popek-Goldberg: x86 sensitive instructions, kernel ring",
    ),
    entry("sh", "", "a nested shell (exit returns to this one)"),
];

/// What one read of a command line gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// A complete line, without its newline.
    Line(&'a str),
    /// Ctrl-C was typed: the line was discarded.
    Interrupted,
    /// End of input (Ctrl-D on an empty line).
    End,
    /// The line did not fit in the buffer; all of it has been consumed.
    TooLong,
    /// The line is not UTF-8 text.
    NotText,
    /// `read` failed otherwise.
    Error(Errno),
}

/// Read one line with `read` (the `read` system call on fd 0, which returns at most the buffer's length of
/// the current line, the line's newline included, and the rest on the next call).
pub fn read_line<'b>(
    buf: &'b mut [u8],
    mut read: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> Input<'b> {
    let n = match read(buf) {
        Err(Errno::EINTR) => return Input::Interrupted,
        Err(e) => return Input::Error(e),
        Ok(0) => return Input::End,
        Ok(n) => n.min(buf.len()),
    };
    if buf[n - 1] != b'\n' && n == buf.len() {
        // The line goes on: consume it up to its end so that it is not taken for the next command.
        loop {
            match read(buf) {
                Err(Errno::EINTR) => return Input::Interrupted,
                Err(e) => return Input::Error(e),
                Ok(0) => return Input::TooLong,
                Ok(m) => {
                    let m = m.min(buf.len());
                    if m < buf.len() || buf[m - 1] == b'\n' {
                        return Input::TooLong;
                    }
                }
            }
        }
    }
    // A line without a newline shorter than the buffer is the last one (Ctrl-D after some text).
    let line = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match core::str::from_utf8(line) {
        Ok(s) => Input::Line(s),
        Err(_) => Input::NotText,
    }
}

/// The line with every `$?` replaced by `status`, in `out`. `Err` if it does not fit.
pub fn expand<'o, const N: usize>(
    line: &str,
    status: u32,
    out: &'o mut StrBuf<N>,
) -> Result<&'o str, fmt::Error> {
    out.clear();
    let mut rest = line;
    while let Some(at) = rest.find("$?") {
        write!(out, "{}{}", &rest[..at], status)?;
        rest = &rest[at + 2..];
    }
    out.write_str(rest)?;
    Ok(out.as_str())
}

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing to do.
    Empty,
    /// `help`.
    Help,
    /// `ps`.
    Ps,
    /// `mem`.
    Mem,
    /// `uptime`.
    Uptime,
    /// `domains`.
    Domains,
    /// `echo`, with the text after it (print with [`Words`]).
    Echo(&'a str),
    /// `exit`, with its status if given.
    Exit(Option<u32>),
    /// `poweroff`, with its exit code if given.
    Poweroff(Option<u32>),
    /// Run a program: `spawn(name, args)`; in the background if the line ended with `&`.
    Run {
        name: &'a str,
        args: &'a str,
        background: bool,
    },
}

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// A built-in that takes no arguments got some.
    NoArgs(&'static str),
    /// A built-in's status argument is not a number from 0 to 255 (or there are several).
    BadStatus(&'static str, &'a str),
    /// No program has this name (it is longer than any program name may be).
    NotFound(&'a str),
    /// The arguments exceed `uapi::MAX_ARGS` bytes.
    ArgsTooLong,
}

impl ParseError<'_> {
    /// The status the shell sets after this error.
    pub fn status(&self) -> u32 {
        match self {
            ParseError::NotFound(_) => STATUS_NOT_FOUND,
            _ => STATUS_USAGE,
        }
    }
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoArgs(b) => write!(f, "pvsh: {b}: takes no arguments"),
            ParseError::BadStatus(b, arg) => write!(f, "pvsh: {b}: bad status '{arg}' (0..255)"),
            ParseError::NotFound(name) => write!(f, "pvsh: {name}: command not found"),
            ParseError::ArgsTooLong => {
                write!(
                    f,
                    "pvsh: arguments too long (at most {} bytes)",
                    uapi::MAX_ARGS
                )
            }
        }
    }
}

/// Parse an (expanded) command line.
pub fn parse(line: &str) -> Result<Command<'_>, ParseError<'_>> {
    let mut line = line.trim();
    let background = match line.strip_suffix('&') {
        Some(rest) => {
            line = rest.trim_end();
            true
        }
        None => false,
    };
    let (name, rest) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((name, rest)) => (name, rest.trim()),
        None => (line, ""),
    };
    let no_args = |cmd: Command<'static>, builtin: &'static str| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::NoArgs(builtin))
        }
    };
    let status = |builtin: &'static str| {
        if rest.is_empty() {
            Ok(None)
        } else {
            parse_status(rest)
                .map(Some)
                .ok_or(ParseError::BadStatus(builtin, rest))
        }
    };
    match name {
        "" => Ok(Command::Empty),
        "help" => no_args(Command::Help, "help"),
        "ps" => no_args(Command::Ps, "ps"),
        "mem" => no_args(Command::Mem, "mem"),
        "uptime" => no_args(Command::Uptime, "uptime"),
        "domains" => no_args(Command::Domains, "domains"),
        "echo" => Ok(Command::Echo(rest)),
        "exit" => status("exit").map(Command::Exit),
        "poweroff" => status("poweroff").map(Command::Poweroff),
        _ if name.len() > uapi::MAX_NAME => Err(ParseError::NotFound(name)),
        _ if rest.len() > uapi::MAX_ARGS => Err(ParseError::ArgsTooLong),
        _ => Ok(Command::Run {
            name,
            args: rest,
            background,
        }),
    }
}

/// Text shown as its whitespace-separated words joined by single spaces (what `echo` prints).
#[derive(Clone, Copy, Debug)]
pub struct Words<'a>(pub &'a str);

impl fmt::Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.0.split_ascii_whitespace().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

/// The `help` text: built-ins, then programs.
pub fn help(w: &mut impl Write) -> fmt::Result {
    writeln!(w, "built-in commands:")?;
    for e in BUILTINS {
        help_line(w, e)?;
    }
    writeln!(
        w,
        "programs (end the line with & to run one in the background):"
    )?;
    for e in PROGRAMS {
        help_line(w, e)?;
    }
    Ok(())
}

/// `  name usage   description`, descriptions aligned.
fn help_line(w: &mut impl Write, e: &Entry) -> fmt::Result {
    let mut cmd = StrBuf::<40>::new();
    write!(cmd, "{} {}", e.name, e.usage)?;
    writeln!(w, "  {:<21} {}", cmd.as_str(), e.what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &'static str, args: &'static str, background: bool) -> Command<'static> {
        Command::Run {
            name,
            args,
            background,
        }
    }

    #[test]
    fn builtins_and_programs() {
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse("   \t "), Ok(Command::Empty));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse(" ps "), Ok(Command::Ps));
        assert_eq!(parse("mem"), Ok(Command::Mem));
        assert_eq!(parse("uptime"), Ok(Command::Uptime));
        assert_eq!(parse("domains"), Ok(Command::Domains));
        assert_eq!(parse("ps -a"), Err(ParseError::NoArgs("ps")));
        assert_eq!(parse("hello"), Ok(run("hello", "", false)));
        assert_eq!(parse("sleep  0.5 "), Ok(run("sleep", "0.5", false)));
        assert_eq!(parse("bench 10  hyp"), Ok(run("bench", "10  hyp", false)));
        assert_eq!(parse("helloworld"), Ok(run("helloworld", "", false)));
    }

    #[test]
    fn background() {
        assert_eq!(parse("spin 5 &"), Ok(run("spin", "5", true)));
        assert_eq!(parse("spin 5&"), Ok(run("spin", "5", true)));
        assert_eq!(parse("hello &  "), Ok(run("hello", "", true)));
        assert_eq!(parse("&"), Ok(Command::Empty));
        // Built-ins run at once whatever the suffix.
        assert_eq!(parse("ps &"), Ok(Command::Ps));
    }

    #[test]
    fn exit_and_poweroff_statuses() {
        assert_eq!(parse("exit"), Ok(Command::Exit(None)));
        assert_eq!(parse("exit 3"), Ok(Command::Exit(Some(3))));
        assert_eq!(parse("poweroff"), Ok(Command::Poweroff(None)));
        assert_eq!(parse("poweroff 255"), Ok(Command::Poweroff(Some(255))));
        assert_eq!(parse("exit 256"), Err(ParseError::BadStatus("exit", "256")));
        assert_eq!(
            parse("poweroff 1 2"),
            Err(ParseError::BadStatus("poweroff", "1 2"))
        );
        assert_eq!(ParseError::BadStatus("exit", "x").status(), STATUS_USAGE);
    }

    #[test]
    fn unknown_and_oversized() {
        let long = "a-name-longer-than-fifteen";
        assert_eq!(parse(long), Err(ParseError::NotFound(long)));
        assert_eq!(ParseError::NotFound(long).status(), STATUS_NOT_FOUND);
        assert_eq!(
            ParseError::NotFound("nosuch").to_string(),
            "pvsh: nosuch: command not found"
        );
        let line = format!("hello {}", "x".repeat(uapi::MAX_ARGS + 1));
        assert_eq!(parse(&line), Err(ParseError::ArgsTooLong));
        let line = format!("hello {}", "x".repeat(uapi::MAX_ARGS));
        assert!(matches!(parse(&line), Ok(Command::Run { .. })));
    }

    #[test]
    fn echo_words_and_status_expansion() {
        let mut out = StrBuf::<EXPANDED_MAX>::new();
        let line = expand("echo  status $? and $?$?", 127, &mut out).unwrap();
        assert_eq!(line, "echo  status 127 and 127127");
        let Ok(Command::Echo(text)) = parse(line) else {
            panic!("not echo")
        };
        assert_eq!(Words(text).to_string(), "status 127 and 127127");
        assert_eq!(parse("echo"), Ok(Command::Echo("")));
        assert_eq!(Words("").to_string(), "");
        let mut out = StrBuf::<EXPANDED_MAX>::new();
        assert_eq!(expand("exit $?", 4, &mut out), Ok("exit 4"));
        assert_eq!(parse("exit 4"), Ok(Command::Exit(Some(4))));
        let mut small = StrBuf::<8>::new();
        assert!(expand("$?$?$?", 255, &mut small).is_err());
        assert_eq!(expand("$ ? $", 1, &mut small), Ok("$ ? $"));
    }

    /// A `read` that hands out the scripted results one by one, chunked like the console.
    fn scripted(
        script: &[Result<&'static [u8], Errno>],
    ) -> impl FnMut(&mut [u8]) -> Result<usize, Errno> {
        let mut pending: Vec<Result<Vec<u8>, Errno>> =
            script.iter().rev().map(|r| r.map(<[u8]>::to_vec)).collect();
        move |buf: &mut [u8]| match pending.pop().expect("read past the script") {
            Err(e) => Err(e),
            Ok(mut line) => {
                let n = line.len().min(buf.len());
                buf[..n].copy_from_slice(&line[..n]);
                if n < line.len() {
                    pending.push(Ok(line.split_off(n)));
                }
                Ok(n)
            }
        }
    }

    #[test]
    fn reading_lines() {
        let mut buf = [0u8; 8];
        let mut read = scripted(&[
            Ok(b"ps\n"),
            Ok(b"ps\r\n"),
            Ok(b"last"),
            Err(Errno::EINTR),
            Ok(b""),
            Err(Errno::ENODEV),
            Ok(b"\xff\n"),
        ]);
        assert_eq!(read_line(&mut buf, &mut read), Input::Line("ps"));
        assert_eq!(read_line(&mut buf, &mut read), Input::Line("ps"));
        assert_eq!(read_line(&mut buf, &mut read), Input::Line("last"));
        assert_eq!(read_line(&mut buf, &mut read), Input::Interrupted);
        assert_eq!(read_line(&mut buf, &mut read), Input::End);
        assert_eq!(read_line(&mut buf, &mut read), Input::Error(Errno::ENODEV));
        assert_eq!(read_line(&mut buf, &mut read), Input::NotText);
    }

    #[test]
    fn long_lines_are_consumed_whole() {
        let mut buf = [0u8; 8];
        // Exactly fits with its newline; then 8 bytes + newline; then 20 bytes + newline; then a command.
        let mut read = scripted(&[
            Ok(b"1234567\n"),
            Ok(b"12345678\n"),
            Ok(b"12345678901234567890\n"),
            Ok(b"hello\n"),
        ]);
        assert_eq!(read_line(&mut buf, &mut read), Input::Line("1234567"));
        assert_eq!(read_line(&mut buf, &mut read), Input::TooLong);
        assert_eq!(read_line(&mut buf, &mut read), Input::TooLong);
        assert_eq!(read_line(&mut buf, &mut read), Input::Line("hello"));
        // Ctrl-C in the middle of draining a long line.
        let mut read = scripted(&[Ok(b"1234567890123456"), Err(Errno::EINTR)]);
        assert_eq!(read_line(&mut buf, &mut read), Input::Interrupted);
    }

    #[test]
    fn help_lists_everything() {
        let mut s = String::new();
        help(&mut s).unwrap();
        for e in BUILTINS.iter().chain(PROGRAMS) {
            let line = format!("  {} {}", e.name, e.usage);
            assert!(s.lines().any(|l| l.starts_with(&line)), "{}", e.name);
            assert!(s.contains(e.what), "{}", e.name);
        }
        assert!(s.lines().all(|l| l.len() <= 80), "{s}");
    }

    #[test]
    fn program_table_matches_the_binaries() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = PROGRAMS.iter().map(|e| e.name.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for p in PROGRAMS {
            assert!(p.name.len() <= uapi::MAX_NAME, "{}", p.name);
            assert!(
                !BUILTINS.iter().any(|b| b.name == p.name),
                "{} is shadowed by a built-in",
                p.name
            );
            // Every program name reaches `spawn` unchanged.
            assert!(
                matches!(parse(p.name), Ok(Command::Run { name, .. }) if name == p.name),
                "{}",
                p.name
            );
        }
        for b in BUILTINS {
            assert!(
                !matches!(parse(b.name), Ok(Command::Run { .. })),
                "{}",
                b.name
            );
        }
    }
}
