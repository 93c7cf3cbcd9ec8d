//! What QEMU's serial input is ([`Input`]), and scripted typing: a list of (trigger, bytes) steps matched
//! against the serial byte stream as it arrives ([`Typist`]).
//!
//! Triggers are searched in the raw byte stream, not in whole lines, so a prompt without a newline (a
//! shell's `pvsh$ `) is seen as soon as it is printed. Each step is used once and in order, and the bytes of
//! step *k* are typed only when its trigger appears in output that came after step *k − 1*'s trigger: an
//! occurrence that was already consumed (or that came earlier) never fires a later step.

use std::collections::VecDeque;
use std::time::Duration;

/// One scripted step: when `trigger` appears on the serial line, type `bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Text to wait for (matched anywhere in the byte stream; an empty trigger fires at once).
    pub trigger: String,
    /// What to type then.
    pub bytes: Vec<u8>,
}

impl Step {
    /// A step from borrowed parts.
    pub fn new(trigger: &str, bytes: &[u8]) -> Self {
        Step {
            trigger: trigger.to_string(),
            bytes: bytes.to_vec(),
        }
    }

    /// A short description for messages: `` `pvsh$ ` → "hello\n" ``.
    pub fn describe(&self) -> String {
        format!("`{}` → \"{}\"", self.trigger, self.bytes.escape_ascii())
    }
}

/// A runtime list of steps and how patient to be with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// If set, QEMU is killed (the run counts as timed out) when a trigger does not appear within this long
    /// after the previous step fired (or after the start), or when QEMU has not exited this long after the
    /// last step fired.
    pub step_timeout: Option<Duration>,
}

/// Where QEMU's serial input comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Input {
    /// `/dev/null` (tests, non-interactive runs).
    #[default]
    Null,
    /// The user's terminal: the serial line and QEMU's monitor share a multiplexed stdio chardev with
    /// `signal=off`, so Ctrl-C reaches the guest as a byte and Ctrl-A X quits QEMU.
    Terminal,
    /// Scripted typing from a fixed table (each pair used once, in order; see the module documentation).
    Expect(&'static [(&'static str, &'static [u8])]),
    /// Scripted typing from a runtime list, with an optional per-step timeout.
    Script(Script),
}

impl Input {
    /// The scripted steps (empty unless [`Input::Expect`] or [`Input::Script`]).
    pub fn steps(&self) -> Vec<Step> {
        match self {
            Input::Expect(pairs) => pairs.iter().map(|(t, b)| Step::new(t, b)).collect(),
            Input::Script(script) => script.steps.clone(),
            Input::Null | Input::Terminal => Vec::new(),
        }
    }

    /// The per-step timeout of a [`Input::Script`].
    pub fn step_timeout(&self) -> Option<Duration> {
        match self {
            Input::Script(script) => script.step_timeout,
            _ => None,
        }
    }

    /// True if QEMU's stdin must be a pipe we write to.
    pub fn is_scripted(&self) -> bool {
        matches!(self, Input::Expect(_) | Input::Script(_))
    }
}

/// Matches the steps against the serial byte stream.
#[derive(Clone, Debug)]
pub struct Typist {
    steps: VecDeque<Step>,
    /// Output not yet searched past: everything after the last consumed trigger, trimmed to what could still
    /// hold the start of the current trigger.
    window: Vec<u8>,
    fired: usize,
    total: usize,
}

impl Typist {
    /// A typist for these steps.
    pub fn new(steps: Vec<Step>) -> Self {
        let total = steps.len();
        Typist {
            steps: steps.into(),
            window: Vec::new(),
            fired: 0,
            total,
        }
    }

    /// Takes newly arrived serial bytes; returns what to type now, in order (one entry per step that fired).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut typed = Vec::new();
        if self.steps.is_empty() {
            return typed;
        }
        self.window.extend_from_slice(chunk);
        while let Some(step) = self.steps.front() {
            let trigger = step.trigger.as_bytes();
            match find(&self.window, trigger) {
                Some(at) => {
                    self.window.drain(..at + trigger.len());
                    typed.push(step.bytes.clone());
                    self.steps.pop_front();
                    self.fired += 1;
                }
                None => {
                    // Keep only a tail that could be the start of the trigger.
                    let keep = trigger.len().saturating_sub(1);
                    let cut = self.window.len().saturating_sub(keep);
                    self.window.drain(..cut);
                    break;
                }
            }
        }
        if self.steps.is_empty() {
            self.window = Vec::new();
        }
        typed
    }

    /// Fires the steps whose trigger is empty and that are due now (before any output).
    pub fn start(&mut self) -> Vec<Vec<u8>> {
        self.feed(&[])
    }

    /// The step being waited for, if any.
    pub fn next_step(&self) -> Option<&Step> {
        self.steps.front()
    }

    /// Steps that fired so far.
    pub fn fired(&self) -> usize {
        self.fired
    }

    /// Steps in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Where the script stands, for messages (`None` if there was no script).
    pub fn progress(&self) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        Some(match self.next_step() {
            Some(step) => format!(
                "the script was waiting for step {} of {}: {}",
                self.fired + 1,
                self.total,
                step.describe()
            ),
            None => format!("all {} scripted steps were typed", self.total),
        })
    }
}

/// The first position of `needle` in `haystack` (an empty needle is found at 0).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typist(steps: &[(&str, &str)]) -> Typist {
        Typist::new(
            steps
                .iter()
                .map(|(t, b)| Step::new(t, b.as_bytes()))
                .collect(),
        )
    }

    fn typed(out: Vec<Vec<u8>>) -> Vec<String> {
        out.into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn a_prompt_without_newline_fires_its_step() {
        let mut t = typist(&[("pvsh$ ", "hello\n")]);
        assert!(t.feed(b"booting\r\n").is_empty());
        assert_eq!(typed(t.feed(b"pvsh$ ")), ["hello\n"]);
        assert!(t.next_step().is_none());
        assert_eq!(t.fired(), 1);
    }

    #[test]
    fn each_step_needs_its_own_occurrence_of_the_trigger() {
        let mut t = typist(&[("pvsh$ ", "a\n"), ("pvsh$ ", "b\n"), ("pvsh$ ", "\x04")]);
        assert_eq!(typed(t.feed(b"pvsh$ ")), ["a\n"]);
        // The echo of the typed line completes the prompt's line: no new prompt, nothing typed.
        assert!(t.feed(b"a\r\n").is_empty());
        assert!(t.feed(b"output of a\r\n").is_empty());
        assert_eq!(typed(t.feed(b"pvsh$ ")), ["b\n"]);
        assert_eq!(typed(t.feed(b"b\r\npvsh$ ")), ["\x04"]);
        assert!(t.feed(b"pvsh$ ").is_empty());
        assert_eq!(t.progress().unwrap(), "all 3 scripted steps were typed");
    }

    #[test]
    fn triggers_split_across_chunks_are_found() {
        let mut t = typist(&[("spin: pid", "\x03")]);
        assert!(t.feed(b"xx spi").is_empty());
        assert!(t.feed(b"n: p").is_empty());
        assert_eq!(typed(t.feed(b"id 3\r\n")), ["\x03"]);
    }

    #[test]
    fn two_prompts_in_one_chunk_fire_two_steps_in_order() {
        let mut t = typist(&[("> ", "1"), ("> ", "2"), ("> ", "3")]);
        assert_eq!(typed(t.feed(b"> x > y")), ["1", "2"]);
        assert_eq!(typed(t.feed(b" > ")), ["3"]);
    }

    #[test]
    fn text_before_the_previous_trigger_does_not_fire_the_next_step() {
        // "ready" is printed before "go", but the steps are in the order go, ready.
        let mut t = typist(&[("go", "1"), ("ready", "2")]);
        assert_eq!(typed(t.feed(b"ready go")), ["1"]);
        assert!(t.feed(b" and on").is_empty());
        assert_eq!(typed(t.feed(b" ready")), ["2"]);
    }

    #[test]
    fn the_window_stays_small_without_a_match() {
        let mut t = typist(&[("pvsh$ ", "x")]);
        for _ in 0..1000 {
            assert!(t.feed(&[b'.'; 4096]).is_empty());
        }
        assert!(t.window.len() < 6);
        assert_eq!(
            t.progress().unwrap(),
            "the script was waiting for step 1 of 1: `pvsh$ ` → \"x\""
        );
    }

    #[test]
    fn an_empty_trigger_fires_at_the_start() {
        let mut t = typist(&[("", "early"), ("late", "l")]);
        assert_eq!(typed(t.start()), ["early"]);
        assert_eq!(typed(t.feed(b"late")), ["l"]);
        assert_eq!(typist(&[]).progress(), None);
    }

    #[test]
    fn inputs_list_their_steps() {
        static PAIRS: [(&str, &[u8]); 2] = [("a", b"1"), ("b", b"2")];
        let fixed = Input::Expect(&PAIRS);
        assert_eq!(fixed.steps(), [Step::new("a", b"1"), Step::new("b", b"2")]);
        assert!(fixed.is_scripted());
        assert_eq!(fixed.step_timeout(), None);
        let owned = Input::Script(Script {
            steps: vec![Step::new("c", b"3")],
            step_timeout: Some(Duration::from_secs(5)),
        });
        assert_eq!(owned.steps(), [Step::new("c", b"3")]);
        assert_eq!(owned.step_timeout(), Some(Duration::from_secs(5)));
        assert!(!Input::Terminal.is_scripted() && Input::Null.steps().is_empty());
        assert_eq!(Input::default(), Input::Null);
    }
}
