//! Parsing the serial output (QEMU's stdout), one line at a time.
//!
//! Line formats (the contract with the hypervisor and the guest kernel):
//! - `[hv] LEVEL message`, LEVEL one of `ERROR WARN INFO DEBUG TRACE` padded to 5 characters, or `PANIC`, or
//!   `bt` for backtrace lines (`[hv] bt #<i> 0x<16 hex>`);
//! - `(d<N>) text`: the console of domain N;
//! - `[hv] ERROR domain <N> crashed: <reason>` and `[hv] INFO  domain <N> shut down: <reason> code <C>`;
//! - `(d<N>) Test result: SUCCESS|SKIP|ERROR|FAILURE[: detail]`, printed by XTF-style guest tests.

use std::fmt;

/// One classified serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `[hv] <tag> <message>`: tag is the level (`INFO`, `ERROR`, ...), `PANIC` or `bt`.
    Hypervisor {
        /// The first word after `[hv] `.
        tag: &'a str,
        /// The rest, leading spaces (level padding) removed.
        message: &'a str,
    },
    /// `(d<N>) text`: domain N's console.
    Guest {
        /// The domain id N.
        domid: u32,
        /// The text after `(dN) ` (one separating space removed).
        text: &'a str,
    },
    /// Anything else (firmware noise, partial lines).
    Other(&'a str),
}

/// Classifies one line (a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Line<'_> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(rest) = line.strip_prefix("[hv] ") {
        let rest = rest.trim_start_matches(' ');
        let (tag, message) = match rest.split_once(' ') {
            Some((tag, message)) => (tag, message.trim_start_matches(' ')),
            None => (rest, ""),
        };
        return Line::Hypervisor { tag, message };
    }
    if let Some(rest) = line.strip_prefix("(d")
        && let Some((id, text)) = rest.split_once(')')
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && let Ok(domid) = id.parse()
    {
        let text = text.strip_prefix(' ').unwrap_or(text);
        return Line::Guest { domid, text };
    }
    Line::Other(line)
}

/// The result of an XTF-style test, ordered by severity: the most severe of several wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestResult {
    /// The test passed.
    Success,
    /// The test could not run here (not a failure).
    Skip,
    /// The test could not reach a verdict (setup went wrong, crash, no result).
    Error,
    /// The test found a bug.
    Failure,
}

impl TestResult {
    /// Parses `SUCCESS`, `SKIP`, `ERROR` or `FAILURE`.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "SUCCESS" => Some(TestResult::Success),
            "SKIP" => Some(TestResult::Skip),
            "ERROR" => Some(TestResult::Error),
            "FAILURE" => Some(TestResult::Failure),
            _ => None,
        }
    }

    /// The most severe of the results (`Failure > Error > Skip > Success`); `None` if there are none.
    pub fn worst(results: impl IntoIterator<Item = TestResult>) -> Option<TestResult> {
        results.into_iter().max()
    }
}

impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TestResult::Success => "SUCCESS",
            TestResult::Skip => "SKIP",
            TestResult::Error => "ERROR",
            TestResult::Failure => "FAILURE",
        })
    }
}

/// Parses a guest console text `Test result: WORD[: detail]` into the result and its detail (maybe empty).
pub fn parse_test_result(text: &str) -> Option<(TestResult, &str)> {
    let rest = text.strip_prefix("Test result: ")?.trim_end();
    let (word, detail) = match rest.split_once(':') {
        Some((word, detail)) => (word.trim_end(), detail.trim()),
        None => (rest, ""),
    };
    Some((TestResult::parse(word)?, detail))
}

/// Parses a hypervisor message `domain <N> crashed: <reason>` (tag `ERROR`).
pub fn parse_crash(tag: &str, message: &str) -> Option<(u32, String)> {
    if tag != "ERROR" {
        return None;
    }
    let (domid, rest) = parse_domain_prefix(message)?;
    let reason = rest.strip_prefix("crashed:")?.trim();
    Some((domid, reason.to_string()))
}

/// Parses a hypervisor message `domain <N> shut down: <reason> code <C>` (tag `INFO`).
pub fn parse_shutdown(tag: &str, message: &str) -> Option<(u32, String, u32)> {
    if tag != "INFO" {
        return None;
    }
    let (domid, rest) = parse_domain_prefix(message)?;
    let rest = rest.strip_prefix("shut down:")?.trim();
    let (reason, code) = rest.rsplit_once(" code ")?;
    Some((domid, reason.trim().to_string(), code.trim().parse().ok()?))
}

/// `domain <N> <rest>` → `(N, rest)`.
fn parse_domain_prefix(message: &str) -> Option<(u32, &str)> {
    let rest = message.strip_prefix("domain ")?;
    let (id, rest) = rest.split_once(' ')?;
    Some((id.parse().ok()?, rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervisor_lines_lose_the_level_padding() {
        assert_eq!(
            parse_line("[hv] INFO  domain 0 shut down: poweroff code 0"),
            Line::Hypervisor {
                tag: "INFO",
                message: "domain 0 shut down: poweroff code 0"
            }
        );
        assert_eq!(
            parse_line("[hv] ERROR domain 1 crashed: page fault\r"),
            Line::Hypervisor {
                tag: "ERROR",
                message: "domain 1 crashed: page fault"
            }
        );
        assert_eq!(
            parse_line("[hv] PANIC at foo"),
            Line::Hypervisor {
                tag: "PANIC",
                message: "at foo"
            }
        );
        assert_eq!(
            parse_line("[hv] bt #2 0xffffffff80001234"),
            Line::Hypervisor {
                tag: "bt",
                message: "#2 0xffffffff80001234"
            }
        );
        assert_eq!(
            parse_line("[hv] WARN"),
            Line::Hypervisor {
                tag: "WARN",
                message: ""
            }
        );
    }

    #[test]
    fn guest_lines_carry_the_domain_id() {
        assert_eq!(
            parse_line("(d0) hello, ring 1"),
            Line::Guest {
                domid: 0,
                text: "hello, ring 1"
            }
        );
        assert_eq!(
            parse_line("(d12)  two spaces"),
            Line::Guest {
                domid: 12,
                text: " two spaces"
            }
        );
        assert_eq!(parse_line("(d3)"), Line::Guest { domid: 3, text: "" });
        assert_eq!(parse_line("(dx) no"), Line::Other("(dx) no"));
        assert_eq!(parse_line("(d) no"), Line::Other("(d) no"));
        assert_eq!(parse_line("(d+1) no"), Line::Other("(d+1) no"));
        assert_eq!(
            parse_line("SeaBIOS (version 1.16)"),
            Line::Other("SeaBIOS (version 1.16)")
        );
        assert_eq!(parse_line("[hv]no space"), Line::Other("[hv]no space"));
    }

    #[test]
    fn test_results_parse_with_and_without_detail() {
        assert_eq!(
            parse_test_result("Test result: SUCCESS"),
            Some((TestResult::Success, ""))
        );
        assert_eq!(
            parse_test_result("Test result: SUCCESS \r"),
            Some((TestResult::Success, ""))
        );
        assert_eq!(
            parse_test_result("Test result: FAILURE: expected -38, got 0"),
            Some((TestResult::Failure, "expected -38, got 0"))
        );
        assert_eq!(
            parse_test_result("Test result: SKIP: no such feature"),
            Some((TestResult::Skip, "no such feature"))
        );
        assert_eq!(parse_test_result("Test result: MAYBE"), None);
        assert_eq!(parse_test_result("test result: SUCCESS"), None);
    }

    #[test]
    fn the_most_severe_result_wins() {
        use TestResult::*;
        assert_eq!(TestResult::worst([Success, Skip]), Some(Skip));
        assert_eq!(TestResult::worst([Error, Skip, Success]), Some(Error));
        assert_eq!(TestResult::worst([Success, Failure, Error]), Some(Failure));
        assert_eq!(TestResult::worst([]), None);
    }

    #[test]
    fn crash_and_shutdown_messages() {
        assert_eq!(
            parse_crash(
                "ERROR",
                "domain 0 crashed: page fault at 0xffff800000001000 (write)"
            ),
            Some((0, "page fault at 0xffff800000001000 (write)".to_string()))
        );
        assert_eq!(parse_crash("INFO", "domain 0 crashed: x"), None);
        assert_eq!(
            parse_crash("ERROR", "domain 0 rip=0x0000000000000000"),
            None
        );
        assert_eq!(
            parse_shutdown("INFO", "domain 1 shut down: poweroff code 0"),
            Some((1, "poweroff".to_string(), 0))
        );
        assert_eq!(
            parse_shutdown("INFO", "domain 2 shut down: crash code 7"),
            Some((2, "crash".to_string(), 7))
        );
        assert_eq!(parse_shutdown("INFO", "domain 2 shut down: poweroff"), None);
        assert_eq!(
            parse_shutdown("WARN", "domain 2 shut down: poweroff code 0"),
            None
        );
    }
}
