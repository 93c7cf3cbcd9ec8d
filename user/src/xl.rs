//! `xl`, the toolstack of domain 0 (pure part, host-tested): parsing its command line, naming domain
//! states and errors, and `xl migrate`'s rule for ending the pre-copy. The program is `src/bin/xl.rs`; the
//! system calls are `uapi::domctl`.

use core::fmt;

use uapi::Errno;
use uapi::domctl::{MAX_DOMAIN_MEM_KB, MAX_DOMAINS, MIN_DOMAIN_MEM_KB};
use uapi::dominf;

/// Memory of a domain `xl create` builds unless `-m` says otherwise, MiB.
pub const DEFAULT_MEM_MIB: u64 = 8;

/// What `xl help` prints.
pub const USAGE: &str = "usage: xl list
       xl create [-p] [-m MIB] [-n COUNT] IMAGE [GUEST COMMAND LINE]   (-p: paused)
       xl destroy|pause|unpause DOMID|FIRST-LAST
       xl mem-max DOMID MIB
       xl console DOMID   (serial input to DOMID; Ctrl-] c brings it back to domain 0)
       xl save DOMID NAME | xl snapshot DOMID NAME   (snapshot: the domain continues)
       xl restore [-p] NAME | xl clone DOMID | xl images | xl image-rm NAME
       xl image-dump NAME   (to the serial line, for cargo xtask save)
       xl migrate [--verify] DOMID | xl migrate-receive   (live migration over the second serial line;
         --verify: the destination checks every page against the source's before it takes the domain)";

/// A parsed `xl` command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Xl<'a> {
    /// `xl list`.
    List,
    /// `xl create`.
    Create {
        image: &'a str,
        mem_kb: u64,
        paused: bool,
        cmdline: &'a str,
        /// How many domains (`-n`; 1 by default).
        count: u32,
    },
    /// `xl destroy DOMID|FIRST-LAST`.
    Destroy(Ids),
    /// `xl pause DOMID|FIRST-LAST`.
    Pause(Ids),
    /// `xl unpause DOMID|FIRST-LAST`.
    Unpause(Ids),
    /// `xl mem-max DOMID MIB`.
    MemMax(u16, u64),
    /// `xl console DOMID`.
    Console(u16),
    /// `xl save DOMID NAME` (`false`) or `xl snapshot DOMID NAME` (`true`: the domain continues).
    Save { id: u16, name: &'a str, keep: bool },
    /// `xl restore [-p] NAME`.
    Restore { name: &'a str, paused: bool },
    /// `xl clone DOMID`.
    Clone(u16),
    /// `xl images`.
    Images,
    /// `xl image-rm NAME`.
    ImageRm(&'a str),
    /// `xl image-dump NAME`.
    ImageDump(&'a str),
    /// `xl migrate [--verify] DOMID`.
    Migrate { id: u16, verify: bool },
    /// `xl migrate-receive`.
    MigrateReceive,
    /// `xl help` (or no subcommand).
    Help,
}

/// Domain ids `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub first: u16,
    pub last: u16,
}

impl Ids {
    /// The ids in order.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

/// `DOMID` or `FIRST-LAST` (ascending, below the limit).
fn ids(word: Option<&str>) -> Result<Ids, &'static str> {
    let word = word.ok_or("missing DOMID")?;
    let (a, b) = word.split_once('-').unwrap_or((word, word));
    let (first, last) = (domid(Some(a))?, domid(Some(b))?);
    if first > last {
        return Err("FIRST-LAST must be ascending");
    }
    Ok(Ids { first, last })
}

fn domid(word: Option<&str>) -> Result<u16, &'static str> {
    let d: u16 = word
        .ok_or("missing DOMID")?
        .parse()
        .map_err(|_| "DOMID must be a number")?;
    if usize::from(d) >= MAX_DOMAINS {
        return Err("no such domain: ids are below the domain limit (128)");
    }
    Ok(d)
}

/// A saved-image name: 1..=16 letters, digits, `-`, `_` or `.`.
fn image_name(word: Option<&str>) -> Result<&str, &'static str> {
    let w = word.ok_or("missing NAME")?;
    let ok = w.len() <= uapi::domctl::SAVED_NAME_MAX
        && w.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
    if !ok {
        return Err("NAME: 1 to 16 letters, digits, '-', '_' or '.'");
    }
    Ok(w)
}

fn mib_to_kb(word: Option<&str>) -> Result<u64, &'static str> {
    let mib: u64 = word
        .ok_or("missing MIB")?
        .parse()
        .map_err(|_| "MIB must be a number")?;
    let kb = mib.checked_mul(1024).ok_or("too much memory")?;
    if !(MIN_DOMAIN_MEM_KB..=MAX_DOMAIN_MEM_KB).contains(&kb) {
        return Err("memory out of range (2..=256 MiB)");
    }
    Ok(kb)
}

/// Parse `xl`'s arguments; `Err` is a message for the user (print [`USAGE`] after it).
pub fn parse(args: &str) -> Result<Xl<'_>, &'static str> {
    let args = args.trim();
    let (sub, rest) = args.split_once(' ').unwrap_or((args, ""));
    let mut words = rest.split_whitespace();
    let cmd = match sub {
        "" | "help" | "-h" | "--help" => Xl::Help,
        "list" | "li" => Xl::List,
        "destroy" => Xl::Destroy(ids(words.next())?),
        "pause" => Xl::Pause(ids(words.next())?),
        "unpause" => Xl::Unpause(ids(words.next())?),
        "mem-max" => Xl::MemMax(domid(words.next())?, mib_to_kb(words.next())?),
        "console" => Xl::Console(domid(words.next())?),
        "save" | "snapshot" => Xl::Save {
            id: domid(words.next())?,
            name: image_name(words.next())?,
            keep: sub == "snapshot",
        },
        "restore" => match words.next() {
            Some("-p") => Xl::Restore {
                name: image_name(words.next())?,
                paused: true,
            },
            w => Xl::Restore {
                name: image_name(w)?,
                paused: false,
            },
        },
        "clone" => Xl::Clone(domid(words.next())?),
        "images" => Xl::Images,
        "image-rm" => Xl::ImageRm(image_name(words.next())?),
        "image-dump" => Xl::ImageDump(image_name(words.next())?),
        "migrate" => match words.next() {
            Some("--verify") => Xl::Migrate {
                id: domid(words.next())?,
                verify: true,
            },
            w => Xl::Migrate {
                id: domid(w)?,
                verify: false,
            },
        },
        "migrate-receive" => Xl::MigrateReceive,
        "create" => return parse_create(rest),
        _ => return Err("unknown subcommand"),
    };
    if words.next().is_some() {
        return Err("too many arguments");
    }
    Ok(cmd)
}

fn parse_create(rest: &str) -> Result<Xl<'_>, &'static str> {
    let (mut paused, mut mem_kb, mut count) = (false, DEFAULT_MEM_MIB * 1024, 1);
    let mut s = rest.trim_start();
    loop {
        let (word, after) = s.split_once(' ').unwrap_or((s, ""));
        match word {
            "-p" => paused = true,
            "-m" | "-n" => {
                let after = after.trim_start();
                let (value, tail) = after.split_once(' ').unwrap_or((after, ""));
                if word == "-m" {
                    mem_kb = mib_to_kb(Some(value))?;
                } else {
                    count = value.parse().map_err(|_| "COUNT must be a number")?;
                    if !(1..=MAX_DOMAINS as u32).contains(&count) {
                        return Err("COUNT out of range (1 to the domain limit)");
                    }
                }
                s = tail.trim_start();
                continue;
            }
            "" => return Err("missing IMAGE"),
            image => {
                let cmdline = after.trim();
                if cmdline.len() > uapi::domctl::CMDLINE_MAX {
                    return Err("guest command line too long (96 bytes at most)");
                }
                if image.len() > uapi::domctl::IMAGE_NAME_MAX {
                    return Err("image name too long");
                }
                return Ok(Xl::Create {
                    image,
                    mem_kb,
                    paused,
                    cmdline,
                    count,
                });
            }
        }
        s = after.trim_start();
    }
}

/// True if the flags say "shut down for a suspend, not dying": the domain waits to be saved.
pub fn suspended(flags: u32) -> bool {
    flags & dominf::SHUTDOWN != 0
        && flags & dominf::DYING == 0
        && (flags >> dominf::SHUTDOWN_SHIFT) & 0xff == dominf::REASON_SUSPEND
}

/// A domain's state for `xl list`, from its `dominf` flags.
pub fn state(flags: u32) -> &'static str {
    if flags & dominf::SHUTDOWN != 0 && !flags & dominf::DYING != 0 && suspended(flags) {
        "suspended"
    } else if flags & dominf::SHUTDOWN != 0 {
        "shutdown"
    } else if flags & dominf::PAUSED != 0 {
        "paused"
    } else if flags & dominf::RUNNING != 0 {
        "running"
    } else if flags & dominf::BLOCKED != 0 {
        "blocked"
    } else {
        "runnable"
    }
}

/// What an error of a save, restore or image-store call means.
pub fn image_error_text(e: Errno) -> &'static str {
    match e {
        Errno::EOPNOTSUPP => {
            "the domain's kernel does not take suspend requests (VIRQ_SUSPEND unbound)"
        }
        Errno::EBUSY => "the domain is already being saved (a suspend request is pending)",
        Errno::ETIMEDOUT => "the domain did not suspend in time (the request was withdrawn)",
        Errno::EEXIST => "an image with that name exists (xl image-rm NAME)",
        Errno::ENOSPC => {
            "the image store is full (8 images, 128 MiB) or the domain limit is reached"
        }
        Errno::ENOMEM => "not enough free memory",
        Errno::ENOENT => "no such image (xl images lists them)",
        Errno::EINVAL => "refused: not suspended, or the image is corrupt or inconsistent",
        e => error_text(e),
    }
}

/// What an error of a toolstack call means.
pub fn error_text(e: Errno) -> &'static str {
    match e {
        Errno::EPERM => "permission denied: only domain 0 controls domains",
        Errno::ENOSPC => "the domain limit is reached (128 domains, abi::domctl::MAX_DOMAINS)",
        Errno::ENOMEM => "not enough free memory for that domain",
        Errno::ENOENT => {
            "no such image (images are boot modules with image=NAME; `cargo xtask run` passes 'guest')"
        }
        Errno::ESRCH => "no such domain",
        Errno::EINVAL => {
            "invalid request (a domain cannot act on itself; unpause needs a paused domain)"
        }
        Errno::EOPNOTSUPP => "not virtualised: no hypervisor to ask",
        _ => "failed",
    }
}

/// Why `xl migrate`'s pre-copy ended (printed as `xl: migrate: pre-copy <this>`, which `cargo xtask migrate`
/// reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecopyStop {
    /// Round `round` sent at most the converged threshold: the stop-and-copy carries about that much.
    Converged { round: u64, pages: u64 },
    /// Round `round` (after round 0) sent `pages`, not a quarter fewer than the round before (`before`):
    /// the domain dirties pages about as fast as a round sends them, so further rounds would only resend
    /// its working set; the stop-and-copy carries about one round's dirty set.
    Steady { round: u64, pages: u64, before: u64 },
    /// `rounds` rounds after round 0 were run, the most allowed, and the dirty set was still shrinking.
    RoundLimit { rounds: u64 },
}

impl fmt::Display for PrecopyStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PrecopyStop::Converged { round, pages } => {
                write!(f, "converged: round {round} sent {pages} pages")
            }
            PrecopyStop::Steady {
                round,
                pages,
                before,
            } => write!(
                f,
                "stopped: the dirty set no longer shrinks (round {round} sent {pages} pages, the round before {before})"
            ),
            PrecopyStop::RoundLimit { rounds } => {
                write!(f, "hit the round limit ({rounds} rounds after round 0)")
            }
        }
    }
}

/// After pre-copy round `round` sent `pages` (and the round before sent `before`; `None` for round 0):
/// why to stop now, or `None` for one more round. Stops when a round sent at most `converged` pages,
/// when the dirty set no longer shrinks by a quarter a round, or after `max_rounds` rounds after round 0.
pub fn precopy_stop(
    round: u64,
    before: Option<u64>,
    pages: u64,
    max_rounds: u64,
    converged: u64,
) -> Option<PrecopyStop> {
    if pages <= converged {
        return Some(PrecopyStop::Converged { round, pages });
    }
    if let Some(before) = before
        && u128::from(pages) * 4 > u128::from(before) * 3
    {
        return Some(PrecopyStop::Steady {
            round,
            pages,
            before,
        });
    }
    (round >= max_rounds).then_some(PrecopyStop::RoundLimit { rounds: round })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands() {
        assert_eq!(parse(""), Ok(Xl::Help));
        assert_eq!(parse("list"), Ok(Xl::List));
        let one = |d| Ids { first: d, last: d };
        assert_eq!(parse("destroy 3"), Ok(Xl::Destroy(one(3))));
        assert_eq!(parse("pause 127"), Ok(Xl::Pause(one(127))));
        assert_eq!(parse("unpause  2 "), Ok(Xl::Unpause(one(2))));
        assert_eq!(
            parse("destroy 1-127"),
            Ok(Xl::Destroy(Ids {
                first: 1,
                last: 127
            }))
        );
        assert_eq!(
            parse("destroy 1-127").map(|x| match x {
                Xl::Destroy(i) => i.iter().count(),
                _ => 0,
            }),
            Ok(127)
        );
        assert!(parse("destroy 5-4").is_err());
        assert!(parse("destroy 1-128").is_err());
        assert!(parse("destroy -3").is_err());
        assert_eq!(parse("mem-max 2 16"), Ok(Xl::MemMax(2, 16384)));
        assert!(parse("pause 128").is_err());
        assert!(parse("pause").is_err());
        assert!(parse("pause x").is_err());
        assert!(parse("pause 1 2").is_err());
        assert!(parse("mem-max 1 100000").is_err());
        assert!(parse("mem-max 1 1").is_err());
        assert_eq!(parse("console 1"), Ok(Xl::Console(1)));
        assert_eq!(
            parse("save 1 img-1"),
            Ok(Xl::Save {
                id: 1,
                name: "img-1",
                keep: false
            })
        );
        assert_eq!(
            parse("snapshot 3 s.0"),
            Ok(Xl::Save {
                id: 3,
                name: "s.0",
                keep: true
            })
        );
        assert_eq!(
            parse("restore -p x"),
            Ok(Xl::Restore {
                name: "x",
                paused: true
            })
        );
        assert_eq!(parse("clone 2"), Ok(Xl::Clone(2)));
        assert_eq!(parse("images"), Ok(Xl::Images));
        assert_eq!(parse("image-rm a"), Ok(Xl::ImageRm("a")));
        assert_eq!(parse("image-dump a"), Ok(Xl::ImageDump("a")));
        assert_eq!(
            parse("migrate 3"),
            Ok(Xl::Migrate {
                id: 3,
                verify: false
            })
        );
        assert_eq!(
            parse("migrate --verify 3"),
            Ok(Xl::Migrate {
                id: 3,
                verify: true
            })
        );
        assert!(parse("migrate --verify").is_err());
        assert!(parse("migrate 3 --verify").is_err());
        assert_eq!(parse("migrate-receive"), Ok(Xl::MigrateReceive));
        assert!(parse("migrate").is_err());
        for bad in [
            "save 1",
            "save x n",
            "save 1 a/b",
            "save 1 seventeen-letters",
            "restore",
            "clone",
            "image-rm",
            "save 1 a b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create() {
        assert_eq!(
            parse("create guest"),
            Ok(Xl::Create {
                image: "guest",
                mem_kb: 8192,
                paused: false,
                cmdline: "",
                count: 1
            })
        );
        assert_eq!(
            parse("create -p -m 4 -n 127 guest test=ticker  x=1 "),
            Ok(Xl::Create {
                image: "guest",
                mem_kb: 4096,
                paused: true,
                cmdline: "test=ticker  x=1",
                count: 127
            })
        );
        assert!(parse("create -n 0 guest").is_err());
        assert!(parse("create -n 129 guest").is_err());
        assert!(parse("create -n x guest").is_err());
        assert!(parse("create").is_err());
        assert!(parse("create -m").is_err());
        assert!(parse("create -m 1 guest").is_err());
        assert!(parse("create -m 99999999999999999 guest").is_err());
        assert!(parse(&format!("create guest {}", "x".repeat(97))).is_err());
        assert!(parse("create a-name-longer-than-16").is_err());
    }

    #[test]
    fn states_and_errors() {
        assert_eq!(state(dominf::RUNNING), "running");
        assert_eq!(state(dominf::BLOCKED | dominf::PAUSED), "paused");
        assert_eq!(state(dominf::SHUTDOWN | dominf::DYING), "shutdown");
        assert_eq!(state(0), "runnable");
        let susp = dominf::SHUTDOWN | dominf::PAUSED | (2 << dominf::SHUTDOWN_SHIFT);
        assert_eq!(state(susp), "suspended");
        assert_eq!(state(susp | dominf::DYING), "shutdown");
        // The limit named in the messages is the one every layer uses.
        assert!(error_text(Errno::ENOSPC).contains(&format!("({MAX_DOMAINS} domains")));
        assert!(
            parse(&format!("pause {MAX_DOMAINS}"))
                .is_err_and(|e| e.contains(&format!("({MAX_DOMAINS})")))
        );
        assert!(error_text(Errno::EOPNOTSUPP).contains("not virtualised"));
    }

    #[test]
    fn precopy_stops_when_converged_steady_or_at_the_limit() {
        let stop = |round, before, pages| precopy_stop(round, before, pages, 3, 64);
        // Round 0 of an idle domain goes on; a round sending at most 64 pages converged.
        assert_eq!(stop(0, None, 4096), None);
        assert_eq!(
            stop(1, Some(4096), 64),
            Some(PrecopyStop::Converged {
                round: 1,
                pages: 64
            })
        );
        assert_eq!(
            stop(0, None, 10),
            Some(PrecopyStop::Converged {
                round: 0,
                pages: 10
            })
        );
        // A steady writer of 300 pages a round: round 1 shrank, round 2 did not: 3 rounds + the final.
        assert_eq!(stop(1, Some(4096), 310), None);
        assert_eq!(
            stop(2, Some(310), 305),
            Some(PrecopyStop::Steady {
                round: 2,
                pages: 305,
                before: 310
            })
        );
        // Shrinking by exactly a quarter is still shrinking; less is steady; growing is steady.
        assert_eq!(stop(2, Some(400), 300), None);
        assert!(matches!(
            stop(2, Some(400), 301),
            Some(PrecopyStop::Steady { .. })
        ));
        assert!(matches!(
            stop(1, Some(100), 4000),
            Some(PrecopyStop::Steady { .. })
        ));
        // Still shrinking at the limit: stop there; never more than max_rounds after round 0.
        assert_eq!(
            stop(3, Some(1000), 500),
            Some(PrecopyStop::RoundLimit { rounds: 3 })
        );
        let mut before = None;
        let mut pages = 100_000u64;
        for round in 0..10 {
            if stop(round, before, pages).is_some() {
                assert!(round <= 3);
                break;
            }
            assert!(round < 3);
            before = Some(pages);
            pages = pages * 3 / 4;
        }
        // No overflow on absurd counts.
        assert!(stop(1, Some(u64::MAX), u64::MAX).is_some());
        let shown = PrecopyStop::RoundLimit { rounds: 3 }.to_string();
        assert!(shown.contains("round limit"), "{shown}");
    }
}
