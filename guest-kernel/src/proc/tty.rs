//! The console line discipline (pure): turns the bytes typed on domain 0's console into lines for `read`,
//! with echo, backspace, Ctrl-U, Ctrl-C and Ctrl-D — the "cooked mode" of a Unix terminal, in miniature.
//!
//! Input is edited in a line buffer and echoed; Enter (CR or LF; the LF of a CR LF pair is dropped)
//! completes the line, which joins the queue `read` takes from. Ctrl-C throws the edited line away and is
//! reported to the caller (who interrupts the foreground program); Ctrl-D on an empty line queues an end of
//! input (a later `read` returns 0). Escape sequences (arrow keys, ...) are swallowed whole.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Longest line (longer input is ignored until Enter, Ctrl-U or backspace).
pub const LINE_MAX: usize = 255;
/// Most completed lines queued before new ones are dropped.
pub const QUEUE_MAX: usize = 16;

/// What typing a byte means to the rest of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Nothing beyond editing.
    None,
    /// A line (or an end of input) became available.
    Ready,
    /// Ctrl-C.
    Interrupt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    /// A line with its newline, and how much of it was read already.
    Line(Vec<u8>, usize),
    /// Ctrl-D on an empty line.
    Eof,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [` or `ESC O`, until a final byte.
    Sequence,
}

/// The line discipline.
#[derive(Debug)]
pub struct LineDiscipline {
    edit: Vec<u8>,
    queue: VecDeque<Chunk>,
    after_cr: bool,
    esc: Esc,
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDiscipline {
    /// Empty.
    pub const fn new() -> LineDiscipline {
        LineDiscipline {
            edit: Vec::new(),
            queue: VecDeque::new(),
            after_cr: false,
            esc: Esc::None,
        }
    }

    /// Feed one typed byte; `echo` receives what to print.
    pub fn feed(&mut self, b: u8, echo: &mut impl FnMut(&[u8])) -> Signal {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.esc {
            Esc::Start => {
                self.esc = if b == b'[' || b == b'O' {
                    Esc::Sequence
                } else {
                    Esc::None
                };
                return Signal::None;
            }
            Esc::Sequence => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                }
                return Signal::None;
            }
            Esc::None => {}
        }
        match b {
            b'\n' if after_cr => Signal::None,
            b'\r' | b'\n' => {
                self.after_cr = b == b'\r';
                echo(b"\r\n");
                let mut line = core::mem::take(&mut self.edit);
                line.push(b'\n');
                self.push(Chunk::Line(line, 0))
            }
            0x7f | 0x08 => {
                if self.edit.pop().is_some() {
                    echo(b"\x08 \x08");
                }
                Signal::None
            }
            0x15 => {
                for _ in 0..self.edit.len() {
                    echo(b"\x08 \x08");
                }
                self.edit.clear();
                Signal::None
            }
            0x03 => {
                self.edit.clear();
                echo(b"^C\r\n");
                Signal::Interrupt
            }
            0x04 => {
                if self.edit.is_empty() {
                    self.push(Chunk::Eof)
                } else {
                    Signal::None
                }
            }
            0x1b => {
                self.esc = Esc::Start;
                Signal::None
            }
            b'\t' | 0x20..=0x7e => {
                if self.edit.len() < LINE_MAX {
                    self.edit.push(b);
                    echo(&[b]);
                }
                Signal::None
            }
            _ => Signal::None,
        }
    }

    fn push(&mut self, c: Chunk) -> Signal {
        if self.queue.len() >= QUEUE_MAX {
            return Signal::None;
        }
        self.queue.push_back(c);
        Signal::Ready
    }

    /// True if `read` would return at once (a line or an end of input is queued).
    pub fn has_input(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Take up to `buf.len()` bytes of the first queued line (`Some(0)` for an end of input, `None` if
    /// nothing is queued). A line longer than `buf` is returned over several calls.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.queue.front_mut()? {
            Chunk::Eof => {
                self.queue.pop_front();
                Some(0)
            }
            Chunk::Line(line, off) => {
                let n = buf.len().min(line.len() - *off);
                buf[..n].copy_from_slice(&line[*off..*off + n]);
                *off += n;
                if *off == line.len() {
                    self.queue.pop_front();
                }
                Some(n)
            }
        }
    }

    /// Forget every queued end of input (Ctrl-D typed while a program that never read it ran), keeping
    /// the lines typed ahead; returns how many were dropped. The kernel calls it when the foreground
    /// program ends, so that a Ctrl-D meant for it does not log the shell out afterwards.
    pub fn drop_end_of_input(&mut self) -> usize {
        let before = self.queue.len();
        self.queue.retain(|c| *c != Chunk::Eof);
        before - self.queue.len()
    }

    /// The line being edited (for tests and debugging).
    pub fn editing(&self) -> &[u8] {
        &self.edit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: &mut LineDiscipline, bytes: &[u8]) -> (Vec<u8>, Vec<Signal>) {
        let mut echo = Vec::new();
        let mut sig = Vec::new();
        for &b in bytes {
            let s = t.feed(b, &mut |e| echo.extend_from_slice(e));
            if s != Signal::None {
                sig.push(s);
            }
        }
        (echo, sig)
    }

    fn read_all(t: &mut LineDiscipline) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        while let Some(n) = t.read(&mut buf) {
            if n == 0 {
                out.extend_from_slice(b"<EOF>");
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn lines_with_echo_and_crlf() {
        let mut t = LineDiscipline::new();
        let (echo, sig) = typed(&mut t, b"ls\r\nps\n");
        assert_eq!(echo, b"ls\r\nps\r\n");
        assert_eq!(sig, [Signal::Ready, Signal::Ready]);
        assert_eq!(read_all(&mut t), b"ls\nps\n");
        assert!(!t.has_input());
    }

    #[test]
    fn editing_keys() {
        let mut t = LineDiscipline::new();
        let (echo, _) = typed(&mut t, b"helx\x7flo\x08o\r");
        assert_eq!(echo, b"helx\x08 \x08lo\x08 \x08o\r\n");
        assert_eq!(read_all(&mut t), b"hello\n");
        // Backspace on an empty line echoes nothing; Ctrl-U erases the line.
        let (echo, _) = typed(&mut t, b"\x7fabc\x15d\r");
        assert_eq!(echo, b"abc\x08 \x08\x08 \x08\x08 \x08d\r\n");
        assert_eq!(read_all(&mut t), b"d\n");
    }

    #[test]
    fn ctrl_c_and_ctrl_d() {
        let mut t = LineDiscipline::new();
        let (echo, sig) = typed(&mut t, b"spin\x03");
        assert_eq!(echo, b"spin^C\r\n");
        assert_eq!(sig, [Signal::Interrupt]);
        assert!(!t.has_input() && t.editing().is_empty());
        // Ctrl-D only ends input on an empty line.
        let (_, sig) = typed(&mut t, b"x\x04\x7f\x04");
        assert_eq!(sig, [Signal::Ready]);
        assert_eq!(read_all(&mut t), b"<EOF>");
    }

    #[test]
    fn ctrl_d_for_a_program_that_ended_is_dropped() {
        let mut t = LineDiscipline::new();
        // Typed while a program ran: a line ahead, Ctrl-D, another line, Ctrl-D.
        typed(&mut t, b"ps\r\x04hello\r\x04");
        assert_eq!(t.drop_end_of_input(), 2);
        assert_eq!(read_all(&mut t), b"ps\nhello\n");
        assert_eq!(t.drop_end_of_input(), 0);
        // A Ctrl-D typed afterwards, at the shell's prompt, still ends its input.
        typed(&mut t, b"\x04");
        assert_eq!(read_all(&mut t), b"<EOF>");
    }

    #[test]
    fn escape_sequences_are_swallowed() {
        let mut t = LineDiscipline::new();
        let (echo, _) = typed(&mut t, b"a\x1b[A\x1bOBb\x1b[1;5Cc\r");
        assert_eq!(echo, b"abc\r\n");
        assert_eq!(read_all(&mut t), b"abc\n");
    }

    #[test]
    fn limits() {
        let mut t = LineDiscipline::new();
        let long = [b'x'; LINE_MAX + 20];
        let (echo, _) = typed(&mut t, &long);
        assert_eq!(echo.len(), LINE_MAX);
        typed(&mut t, b"\r");
        let mut buf = [0u8; 1000];
        assert_eq!(t.read(&mut buf), Some(LINE_MAX + 1));
        for _ in 0..QUEUE_MAX + 5 {
            typed(&mut t, b"q\r");
        }
        let mut lines = 0;
        while t.read(&mut buf).is_some() {
            lines += 1;
        }
        assert_eq!(lines, QUEUE_MAX);
        // Control bytes other than the editing keys are ignored.
        let (echo, sig) = typed(&mut t, b"\x01\x02\x07");
        assert!(echo.is_empty() && sig.is_empty());
    }
}
