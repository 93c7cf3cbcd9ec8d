//! The shell's own background jobs (pure): which children it started with `&`, so that it reports the end
//! of those only — orphans the kernel hands to pid 1 (the children of a program ended with Ctrl-C) are
//! reaped silently — and the words it prints when a program cannot be started.
#![forbid(unsafe_code)]

use core::fmt;

use uapi::Errno;

/// Most background jobs remembered at once (the process table's size: there cannot be more).
pub const MAX_JOBS: usize = uapi::MAX_PROCS;

/// The pids of the shell's running background jobs.
#[derive(Clone, Debug)]
pub struct Jobs {
    pids: [u32; MAX_JOBS],
    len: usize,
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new()
    }
}

impl Jobs {
    /// None.
    pub const fn new() -> Jobs {
        Jobs {
            pids: [0; MAX_JOBS],
            len: 0,
        }
    }

    /// The shell started `pid` in the background (ignored if already known or, impossibly, full).
    pub fn started(&mut self, pid: u32) {
        if !self.pids[..self.len].contains(&pid) && self.len < MAX_JOBS {
            self.pids[self.len] = pid;
            self.len += 1;
        }
    }

    /// A child `pid` was reaped: true (and forgotten) if it was one of the shell's jobs, which the shell
    /// then reports; false for a child the shell never started.
    pub fn ended(&mut self, pid: u32) -> bool {
        match self.pids[..self.len].iter().position(|&p| p == pid) {
            Some(i) => {
                self.pids[i] = self.pids[self.len - 1];
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Jobs still running.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if none runs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why `spawn` failed, in words: `too many processes (limit 64)` rather than `EAGAIN`.
pub struct SpawnError(pub Errno);

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Errno::EAGAIN => write!(f, "too many processes (limit {})", uapi::MAX_PROCS),
            Errno::ENOMEM => f.write_str("out of memory"),
            Errno::EINVAL => write!(f, "arguments too long (at most {} bytes)", uapi::MAX_ARGS),
            e => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shells_own_jobs_are_reported() {
        let mut j = Jobs::new();
        j.started(7);
        j.started(9);
        j.started(7);
        assert_eq!(j.len(), 2);
        // An orphan of an interrupted program (never started by the shell): not reported.
        assert!(!j.ended(4446));
        assert!(j.ended(9));
        assert!(!j.ended(9), "reported once");
        assert!(j.ended(7));
        assert!(j.is_empty());
        // Fills up without panicking.
        for p in 0..(MAX_JOBS as u32 + 10) {
            j.started(p + 100);
        }
        assert_eq!(j.len(), MAX_JOBS);
    }

    #[test]
    fn spawn_errors_explain_themselves() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            SpawnError(Errno::EAGAIN).to_string(),
            "too many processes (limit 64)"
        );
        assert_eq!(SpawnError(Errno::ENOMEM).to_string(), "out of memory");
        assert!(
            SpawnError(Errno::EINVAL)
                .to_string()
                .contains("at most 256 bytes")
        );
        assert!(!SpawnError(Errno::EIO).to_string().is_empty());
    }
}
