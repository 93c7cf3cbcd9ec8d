//! XTF-style test results: SUCCESS, SKIP, ERROR (the test itself is broken) or FAILURE (the hypervisor is
//! broken). When a test reports several, the most severe wins.

/// A test outcome, ordered by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything checked out.
    Success,
    /// The test could not run here.
    Skip,
    /// The test is broken.
    Error,
    /// The hypervisor misbehaved.
    Failure,
}

impl Outcome {
    /// The word printed after `Test result: `.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Skip => "SKIP",
            Outcome::Error => "ERROR",
            Outcome::Failure => "FAILURE",
        }
    }

    /// The exit code the kernel shuts down with: 0, 3, 4, 5 as XTF's runner uses.
    pub fn exit_code(self) -> u32 {
        match self {
            Outcome::Success => 0,
            Outcome::Skip => 3,
            Outcome::Error => 4,
            Outcome::Failure => 5,
        }
    }
}

/// Accumulates the worst outcome of a test run.
#[derive(Clone, Copy, Debug)]
pub struct Results {
    worst: Outcome,
}

impl Results {
    /// Nothing reported yet.
    pub const fn new() -> Results {
        Results {
            worst: Outcome::Success,
        }
    }

    /// Record an outcome.
    pub fn report(&mut self, o: Outcome) {
        self.worst = self.worst.max(o);
    }

    /// Record a failure unless `ok`.
    pub fn check(&mut self, ok: bool) -> bool {
        if !ok {
            self.report(Outcome::Failure);
        }
        ok
    }

    /// The most severe outcome so far.
    pub fn outcome(&self) -> Outcome {
        self.worst
    }
}

impl Default for Results {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_severe_wins() {
        let mut r = Results::new();
        assert_eq!(r.outcome(), Outcome::Success);
        r.report(Outcome::Skip);
        r.report(Outcome::Failure);
        r.report(Outcome::Error);
        assert_eq!(r.outcome(), Outcome::Failure);
        assert!(!r.check(false));
        assert_eq!(Outcome::Error.exit_code(), 4);
        assert_eq!(Outcome::Failure.as_str(), "FAILURE");
    }
}
