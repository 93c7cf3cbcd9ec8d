//! The guest command line: `demo`, `shell`, `ping-server`, `test=NAME`, `bench` or `bench-partner`, with optional `key=value` options
//! (e.g. `addr=0x200000`, `iterations=1000`).

/// What the command line asks the kernel to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// The default demonstration (also for an empty command line).
    Demo,
    /// Run the named scenario test.
    Test(&'a str),
    /// The benchmark suite (`bench`) or its partner domain (`bench-partner`); see `crate::bench`.
    Bench(BenchRole),
    /// `shell`: the small OS — processes, with the shell as process 1 on the console (`crate::proc`).
    Shell,
    /// `ping-server`: answer domain 0's `evtchn-ping` until it closes the channel.
    PingServer,
    /// `sensitive`: the Popek–Goldberg table of sensitive unprivileged instructions (`crate::sensitive`).
    Sensitive,
    /// Something this kernel does not understand.
    Unknown(&'a str),
}

/// Which side of the benchmark a domain runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchRole {
    /// `bench`: measure every operation and print one result line each.
    Measure,
    /// `bench-partner`: yield back and forth with the measuring domain, a bounded number of times.
    Partner,
}

/// Parse a command line into the command and its words.
pub fn parse(cmdline: &str) -> Command<'_> {
    let mut cmd = Command::Demo;
    for word in cmdline.split_whitespace() {
        match word.split_once('=') {
            Some(("test", name)) if !name.is_empty() => cmd = Command::Test(name),
            Some(_) => {}
            None if word == "demo" => cmd = Command::Demo,
            None if word == "bench" => cmd = Command::Bench(BenchRole::Measure),
            None if word == "bench-partner" => cmd = Command::Bench(BenchRole::Partner),
            None if word == "shell" => cmd = Command::Shell,
            None if word == "ping-server" => cmd = Command::PingServer,
            None if word == "sensitive" => cmd = Command::Sensitive,
            None => return Command::Unknown(word),
        }
    }
    cmd
}

/// The value of option `key` (`key=value`), if present.
pub fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// Parse a number written in decimal or with a `0x` prefix.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(""), Command::Demo);
        assert_eq!(parse("demo"), Command::Demo);
        assert_eq!(parse("test=hv-read addr=0x10"), Command::Test("hv-read"));
        assert_eq!(parse("  test=x  "), Command::Test("x"));
        assert_eq!(parse("bogus"), Command::Unknown("bogus"));
        assert_eq!(parse("test="), Command::Demo);
        assert_eq!(
            parse("bench iterations=20 filter=mmu"),
            Command::Bench(BenchRole::Measure)
        );
        assert_eq!(
            parse("bench-partner iterations=20"),
            Command::Bench(BenchRole::Partner)
        );
        assert_eq!(parse("benchmark"), Command::Unknown("benchmark"));
        assert_eq!(parse("shell"), Command::Shell);
        assert_eq!(parse("ping-server loglevel=x"), Command::PingServer);
        assert_eq!(parse("sensitive"), Command::Sensitive);
        assert_eq!(option("test=hv-read addr=0x10", "addr"), Some("0x10"));
        assert_eq!(option("test=hv-read", "addr"), None);
        assert_eq!(parse_u64("0x200000"), Some(0x20_0000));
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("0xzz"), None);
    }
}
