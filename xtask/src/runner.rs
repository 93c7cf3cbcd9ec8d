//! Running QEMU: spawning it with its [`Input`], streaming the serial output as lines (and, after a short
//! pause, as the unfinished line so far, so a prompt shows), typing scripted input when its trigger
//! appears, and killing it at a timeout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::input::{Input, Typist};
use crate::qemu::Exit;

/// Lines longer than this are cut into pieces (a hostile console must not make us buffer without bound).
pub const MAX_LINE: usize = 64 * 1024;
/// At most this much serial output is kept in memory; the rest is still streamed but not kept.
const MAX_KEPT_OUTPUT: usize = 64 * 1024 * 1024;
/// An unfinished line is shown ([`SerialSink::partial`]) once no byte arrived for this long.
pub const PARTIAL_DELAY: Duration = Duration::from_millis(40);
/// Longest sleep of the streaming loop between checks of the deadlines.
const POLL: Duration = Duration::from_millis(200);

/// Receives the serial output as it arrives.
pub trait SerialSink {
    /// A complete line (without `\n` and a trailing `\r`).
    fn line(&mut self, line: &str);

    /// The unfinished line so far, after [`PARTIAL_DELAY`] without output (a prompt waiting for input). Each
    /// call carries the whole text of the line so far; the same line may be reported again, longer, and is
    /// finally reported whole to [`SerialSink::line`].
    fn partial(&mut self, _text: &str) {}
}

impl<F: FnMut(&str)> SerialSink for F {
    fn line(&mut self, line: &str) {
        self(line)
    }
}

/// What a finished QEMU run produced.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The serial output, one line per `\n`, `\r` removed (capped at 64 MiB).
    pub output: String,
    /// QEMU's own stderr (its error messages).
    pub stderr: String,
    /// How it ended.
    pub exit: Exit,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// For scripted input: where the script stood at the end (see [`Typist::progress`]).
    pub script: Option<String>,
}

/// Cuts a byte stream into lines incrementally (lossy UTF-8, `\n` and a trailing `\r` removed, lines longer
/// than [`MAX_LINE`] cut).
#[derive(Clone, Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
}

impl LineSplitter {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes, calling `f` for each completed line; stops early (returning false) when `f` does.
    pub fn push(&mut self, mut bytes: &[u8], f: &mut dyn FnMut(String) -> bool) -> bool {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.line.len();
            let (take, newline) = match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (bytes.len().min(room), false),
            };
            self.line.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if newline {
                self.line.pop();
            }
            if (newline || self.line.len() >= MAX_LINE) && !f(self.take_line()) {
                return false;
            }
        }
        true
    }

    /// The unfinished line so far (`None` if empty).
    pub fn partial(&self) -> Option<String> {
        let text = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned())
    }

    /// The unfinished line as a last line, if any (at end of input).
    pub fn finish(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        text
    }
}

/// Splits a byte stream into lines (see [`LineSplitter`]). Stops when `f` returns false, at end of file or
/// on a read error.
pub fn for_each_line(mut input: impl Read, mut f: impl FnMut(String) -> bool) {
    let mut splitter = LineSplitter::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !splitter.push(&buf[..n], &mut f) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(last) = splitter.finish() {
        f(last);
    }
}

/// [`run_with`] the chosen QEMU ([`crate::qemu_choice::chosen`]).
pub fn run(
    args: &[OsString],
    input: &Input,
    timeout: Option<Duration>,
    echo_stderr: bool,
    sink: &mut dyn SerialSink,
) -> Result<Captured, String> {
    let qemu = crate::qemu_choice::chosen()?;
    run_with(&qemu.program, args, input, timeout, echo_stderr, sink)
}

/// Spawns the QEMU `program` with `args`, streams its serial output to `sink`, types `input`'s script, and
/// waits for it to exit, killing it after `timeout` (or at the script's step timeout). QEMU's stderr is
/// collected and, if `echo_stderr`, also copied to ours.
pub fn run_with(
    program: &Path,
    args: &[OsString],
    input: &Input,
    timeout: Option<Duration>,
    echo_stderr: bool,
    sink: &mut dyn SerialSink,
) -> Result<Captured, String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(match input {
        Input::Null => Stdio::null(),
        Input::Terminal => Stdio::inherit(),
        Input::Expect(_) | Input::Script(_) => Stdio::piped(),
    });
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill(&mut child);
        return Err("QEMU's output pipes are missing".into());
    };

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    let err_reader = thread::spawn(move || collect_stderr(stderr, echo_stderr));

    let mut stream = Stream {
        typist: Typist::new(input.steps()),
        stdin: child.stdin.take(),
        splitter: LineSplitter::new(),
        output: String::new(),
        sink,
        shown_partial: None,
    };
    let deadline = timeout.map(|t| start + t);
    let step_timeout = input.step_timeout();
    let mut step_deadline = step_timeout.map(|t| start + t);
    let mut last_byte = start;
    let mut timed_out = false;
    if stream.type_bytes(&[]) {
        step_deadline = step_timeout.map(|t| Instant::now() + t);
    }
    // Stream until QEMU closes its stdout (it exited) or a deadline passes.
    loop {
        let now = Instant::now();
        let next_deadline = [deadline, step_deadline].into_iter().flatten().min();
        if next_deadline.is_some_and(|d| now >= d) {
            timed_out = true;
            break;
        }
        let mut wait = next_deadline.map_or(POLL, |d| (d - now).min(POLL));
        if stream.partial_pending() {
            wait = wait.min((last_byte + PARTIAL_DELAY).saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(chunk) => {
                last_byte = Instant::now();
                if stream.type_bytes(&chunk) {
                    step_deadline = step_timeout.map(|t| Instant::now() + t);
                }
                stream.lines(&chunk);
            }
            Err(RecvTimeoutError::Timeout) => {
                if last_byte.elapsed() >= PARTIAL_DELAY {
                    stream.show_partial();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Reap QEMU (stdout closed means it is exiting; still honour the deadlines).
    let status = loop {
        if timed_out {
            let _ = child.kill();
            break child.wait().ok();
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None)
                if [deadline, step_deadline]
                    .into_iter()
                    .flatten()
                    .any(|d| Instant::now() >= d) =>
            {
                timed_out = true
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill(&mut child);
                return Err(format!("cannot wait for QEMU: {e}"));
            }
        }
    };
    let _ = reader.join();
    for chunk in rx.try_iter() {
        stream.type_bytes(&chunk);
        stream.lines(&chunk);
    }
    if let Some(last) = stream.splitter.finish() {
        stream.keep(&last);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let output = stream.output;
    let hv_spoke = output.lines().any(|l| l.starts_with("[hv]"));
    let exit = match (timed_out, status) {
        (true, _) => Exit::Timeout,
        (false, Some(status)) => Exit::from_exit_status(status, hv_spoke),
        (false, None) => Exit::Signal(0),
    };
    Ok(Captured {
        output,
        stderr,
        exit,
        elapsed: start.elapsed(),
        script: stream.typist.progress(),
    })
}

/// The state of one run's output stream.
struct Stream<'a> {
    typist: Typist,
    stdin: Option<std::process::ChildStdin>,
    splitter: LineSplitter,
    output: String,
    sink: &'a mut dyn SerialSink,
    /// The unfinished line as last shown to the sink.
    shown_partial: Option<String>,
}

impl Stream<'_> {
    /// Types whatever steps `chunk` fires; true if any fired.
    fn type_bytes(&mut self, chunk: &[u8]) -> bool {
        let typed = self.typist.feed(chunk);
        if let Some(w) = self.stdin.as_mut() {
            for bytes in &typed {
                // A closed pipe means QEMU is exiting; that is reported by its exit status.
                let _ = w.write_all(bytes).and_then(|()| w.flush());
            }
        }
        !typed.is_empty()
    }

    /// Splits `chunk` into lines, passing complete ones on.
    fn lines(&mut self, chunk: &[u8]) {
        let mut done = Vec::new();
        self.splitter.push(chunk, &mut |line| {
            done.push(line);
            true
        });
        for line in done {
            self.keep(&line);
        }
    }

    fn keep(&mut self, line: &str) {
        self.shown_partial = None;
        self.sink.line(line);
        if self.output.len() + line.len() < MAX_KEPT_OUTPUT {
            self.output.push_str(line);
            self.output.push('\n');
        }
    }

    /// True if an unfinished line has grown since it was last shown.
    fn partial_pending(&self) -> bool {
        self.splitter.partial() != self.shown_partial
    }

    fn show_partial(&mut self) {
        let partial = self.splitter.partial();
        if partial != self.shown_partial
            && let Some(text) = &partial
        {
            self.sink.partial(text);
        }
        self.shown_partial = partial;
    }
}

/// Kills a child we started (by its handle) and reaps it; errors mean it already exited.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn collect_stderr(mut stderr: impl Read, echo: bool) -> String {
    let mut collected = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if echo {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&buf[..n]);
                    let _ = err.flush();
                }
                if collected.len() < MAX_LINE * 16 {
                    collected.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&collected).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_lossily_and_capped() {
        let mut lines = Vec::new();
        for_each_line(&b"one\r\ntwo\n\xffbad\nlast"[..], |l| {
            lines.push(l);
            true
        });
        assert_eq!(lines, ["one", "two", "\u{fffd}bad", "last"]);

        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut sizes = Vec::new();
        for_each_line(&long[..], |l| {
            sizes.push(l.len());
            true
        });
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10]);

        let mut count = 0;
        for_each_line(&b"a\nb\nc\n"[..], |_| {
            count += 1;
            false
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn the_splitter_keeps_the_unfinished_line() {
        let mut s = LineSplitter::new();
        let mut lines = Vec::new();
        let mut collect = |l: String| {
            lines.push(l);
            true
        };
        assert!(s.push(b"(d1) x\r\npvsh$ ", &mut collect));
        assert_eq!(s.partial().as_deref(), Some("pvsh$ "));
        assert!(s.push(b"hel", &mut collect));
        assert_eq!(s.partial().as_deref(), Some("pvsh$ hel"));
        assert!(s.push(b"lo\r", &mut collect));
        assert_eq!(s.partial().as_deref(), Some("pvsh$ hello"));
        assert!(s.push(b"\n", &mut collect));
        assert_eq!(s.partial(), None);
        assert_eq!(s.finish(), None);
        assert!(s.push(b"tail", &mut collect));
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(lines, ["(d1) x", "pvsh$ hello"]);
    }

    #[test]
    fn closures_are_sinks_that_ignore_partials() {
        let mut seen = Vec::new();
        {
            let mut f = |l: &str| seen.push(l.to_string());
            let sink: &mut dyn SerialSink = &mut f;
            sink.partial("pvsh$ ");
            sink.line("done");
        }
        assert_eq!(seen, ["done"]);
    }
}
