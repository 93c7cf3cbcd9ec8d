//! `cargo xtask run` in a real terminal: a private tmux server runs the xtask binary in a 200x50 pane, and the
//! test types like a user (`send-keys`) and reads the screen (`capture-pane`): the shell's prompt shows,
//! `hello` runs, Ctrl-C reaches the guest as a byte and interrupts `spin` (QEMU's stdio chardev has
//! `signal=off`), and `poweroff 0` ends the whole run with status 0.
//!
//! Skipped, saying so, only when tmux is not installed (`.ci/run` installs it).

use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// The tmux session (and window) name.
const SESSION: &str = "pvsh";
/// How long the first prompt may take (the xtask binary builds the images first if they are stale).
const FIRST_PROMPT: Duration = Duration::from_secs(600);
/// How long anything else may take.
const STEP: Duration = Duration::from_secs(60);

/// A tmux server on a private socket, killed when dropped (also when the test fails).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Tmux {
            socket: format!("pvsh-test-{}-{nanos}", std::process::id()),
        }
    }

    /// `tmux -L <socket> -f /dev/null <args>` (no user configuration).
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux {args:?}: {e}"))
    }

    /// Like [`Tmux::run`], failing the test if tmux fails.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's whole history and screen, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", SESSION]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    #[track_caller]
    fn type_line(&self, text: &str) {
        self.ok(&["send-keys", "-t", SESSION, "-l", text]);
        self.ok(&["send-keys", "-t", SESSION, "Enter"]);
    }

    /// Polls the screen until `pred` holds; fails the test with the screen after `timeout`.
    #[track_caller]
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True once the pane's process has ended (`#{pane_dead}`; the pane stays, `remain-on-exit`). tmux
    /// 3.3 does not always learn the exit status (`#{pane_dead_status}` stays empty now and then), so the
    /// command prints its own status (see [`STATUS_LINE`]).
    fn pane_dead(&self) -> bool {
        let out = self.run(&["display-message", "-p", "-t", SESSION, "#{pane_dead}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends the pane's processes (xtask and its QEMU get SIGHUP) and the server.
        let _ = self.run(&["kill-server"]);
    }
}

/// What the pane prints after xtask ended, followed by its exit status.
const STATUS_LINE: &str = "xtask exit status: ";

/// Lines that are the shell's prompt (the xtask notice mentions the prompt too, but not at a line start).
fn prompts(screen: &str) -> usize {
    screen.lines().filter(|l| l.starts_with("pvsh$")).count()
}

#[test]
fn the_shell_in_a_real_terminal() {
    if xtask::qemu::find_in_path("tmux").is_none() {
        // Written to the real stderr, not through `eprintln!`, so that libtest's capture does not hide it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_shell_in_a_real_terminal: tmux is not installed (apt-get install tmux; .ci/run \
             installs it)"
        );
        return;
    }
    let xtask = xtask::selfbin::xtask_binary().unwrap_or_else(|e| panic!("{e}"));
    let root = xtask::workspace_root();
    let command = format!(
        "{} run; echo \"{STATUS_LINE}$?\"",
        xtask::qemu::shell_quote(&xtask.to_string_lossy())
    );
    let tmux = Tmux::new();
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "200",
        "-y",
        "50",
        "-c",
        &root.to_string_lossy(),
        &command,
        ";",
        "set-option",
        "-g",
        "remain-on-exit",
        "on",
    ]);

    let screen = tmux.wait_for("the first prompt", FIRST_PROMPT, |s| prompts(s) >= 1);
    for told in ["Ctrl-C interrupts", "poweroff", "Ctrl-A then X"] {
        assert!(
            screen.contains(told),
            "xtask's notice mentions {told:?}:\n{screen}"
        );
    }
    tmux.type_line("hello");
    tmux.wait_for("hello's greeting", STEP, |s| {
        s.contains("Hello from ring 3! I am pid ")
    });
    tmux.wait_for("the second prompt", STEP, |s| prompts(s) >= 2);

    tmux.type_line("spin");
    tmux.wait_for("spin's first report", STEP, |s| s.contains("spin: pid"));
    tmux.ok(&["send-keys", "-t", SESSION, "C-c"]);
    tmux.wait_for("`[exit 130]` after Ctrl-C", STEP, |s| {
        s.lines().any(|l| l.trim() == "[exit 130]")
    });
    tmux.wait_for("the prompt after Ctrl-C", STEP, |s| prompts(s) >= 3);
    assert!(
        !tmux.pane_dead(),
        "xtask and QEMU still run after Ctrl-C:\n{}",
        tmux.screen()
    );

    // After Ctrl-C the last status is 130; `poweroff 0` powers off with code 0 whatever it was.
    tmux.type_line("poweroff 0");
    let screen = tmux.wait_for("xtask to end after `poweroff 0`", STEP, |s| {
        s.lines().any(|l| l.starts_with(STATUS_LINE))
    });
    assert!(
        screen.lines().any(|l| l == format!("{STATUS_LINE}0")),
        "xtask ended with status 0:\n{screen}"
    );
    assert!(
        screen.contains("[hv] INFO  all domains finished: exit status 0"),
        "{screen}"
    );
    let start = Instant::now();
    while !tmux.pane_dead() {
        assert!(
            start.elapsed() < STEP,
            "the pane's shell did not end after xtask:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
