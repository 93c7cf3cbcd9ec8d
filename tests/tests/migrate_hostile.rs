//! Live migration's bad input (issue 15, "Bad input"): a host-side fake peer (`tests::migpeer`) on the
//! machine's second serial port. As a hostile source it feeds a receiving hypervisor broken streams — bad
//! CRC, wrong version, oversize and wrong lengths, unknown kinds, pfns and page counts out of range, a
//! second START, hostile and corrupt tails, ABORT, silence, a frame cut off — each refused with a clear
//! line and its errno, the machine's free memory as before, and a valid stream accepted afterwards
//! (`test=migrate-hostile-rx`). As a destination it lets domain 0 drive the source side into a second
//! migration, the same domain twice, a domain destroyed or crashing between rounds, a crashed domain
//! (`test=migrate-hostile-tx`). The destination that disappears mid-stream is `tests/tests/migrate.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tests::migpeer::{Peer, rx_case};
use tests::{Scenario, TestResult, expect, images};
use xtask::scenario::{RunOptions, run_scenario_with};
use xtask::shell::XL_IMAGE;

/// The receive cases in the guest's order (`guest-kernel/src/scenarios/migrate_hostile.rs`) and a line
/// the receiving hypervisor must print for each (beyond "incoming migration dropped").
const RX_LINES: &[(&str, &str)] = &[
    ("bad-crc", "a frame refused on COM2: Crc"),
    ("wrong-version", "a frame refused on COM2: Magic"),
    ("oversize-length", "a frame refused on COM2: Length"),
    ("unknown-kind", "a frame refused on COM2: Kind"),
    ("wrong-size-for-kind", "a frame refused on COM2: Length"),
    ("page-before-start", "a frame of kind 2 refused (EINVAL)"),
    ("count-zero", "a frame of kind 1 refused (EINVAL)"),
    ("count-above-limit", "a frame of kind 1 refused (EINVAL)"),
    ("start-twice", "a frame of kind 1 refused (EINVAL)"),
    ("pfn-beyond-count", "a frame of kind 2 refused (EINVAL)"),
    ("hash-beyond-count", "a frame of kind 12 refused (EINVAL)"),
    (
        "hash-unknown-then-abort",
        "incoming migration dropped (EINTR)",
    ),
    ("tail-before-begin", "a frame of kind 6 refused (EINVAL)"),
    ("tail-too-long", "a frame of kind 5 refused (EINVAL)"),
    ("tail-offset-wraps", "a frame of kind 6 refused (EINVAL)"),
    ("tail-past-its-length", "a frame of kind 6 refused (EINVAL)"),
    ("tail-bad-checksum", "the tail's checksum is wrong"),
    ("tail-truncated", "the tail image is refused"),
    ("tail-corrupt-image", "the tail image is refused"),
    ("abort-mid-stream", "incoming migration dropped (EINTR)"),
    ("silence", "the stream went silent (10 s without a frame)"),
    (
        "cut-mid-frame",
        "the stream went silent (10 s without a frame)",
    ),
    (
        "kept-pages-refused",
        "restore of the migration stream refused: a pinned page table failed validation",
    ),
    (
        "kept-pages-valid",
        "(saved from domain 77): 8 pages, 4 page tables (1 pinned) revalidated, 1 event channels kept, 0 interdomain closed",
    ),
    ("valid", "runs here: 0 pages received"),
];

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

fn scenario(test: &str, port: u16, timeout: Duration) -> Scenario {
    let mut s = Scenario::new(&[test]);
    s.images = vec![XL_IMAGE.to_string()];
    s.timeout = timeout;
    s.extra_args = vec![
        "-serial".into(),
        format!("tcp:127.0.0.1:{port},server=on,wait=off"),
    ];
    s
}

#[test]
fn hostile_streams_are_refused_nothing_is_kept_and_a_valid_one_runs() {
    let port = free_port();
    let s = scenario("test=migrate-hostile-rx", port, Duration::from_secs(180));
    let (tx, rx) = mpsc::channel::<String>();
    let peer = std::thread::spawn(move || {
        let mut p = Peer::new(port);
        let mut done = Vec::new();
        while let Ok(name) = rx.recv() {
            let r = rx_case(&mut p, &name);
            done.push((name, r));
        }
        done
    });
    let mut pending: Option<String> = None;
    let mut sink = |line: &str| {
        if let Some((_, name)) = line.split_once("migrate-hostile: case ") {
            pending = Some(name.trim().to_string());
        }
        if line.contains("migrate: waiting for a migration on COM2")
            && let Some(name) = pending.take()
        {
            let _ = tx.send(name);
        }
    };
    let o = run_scenario_with(
        images(),
        &s,
        RunOptions {
            input: s.input.clone(),
            ..RunOptions::default()
        },
        &mut sink,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(tx);
    let sent = peer.join().expect("the peer's thread");
    let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = RX_LINES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "cases sent\n{o}");
    for (name, r) in &sent {
        assert!(r.is_ok(), "case {name}: the peer: {r:?}\n{o}");
    }
    // Each case's hypervisor lines lie between its announcement and the next's.
    for (i, (name, line)) in RX_LINES.iter().enumerate() {
        let from = o
            .output
            .find(&format!("migrate-hostile: case {name}"))
            .unwrap_or_else(|| panic!("case {name} not announced\n{o}"));
        let to = RX_LINES
            .get(i + 1)
            .and_then(|(n, _)| o.output.find(&format!("migrate-hostile: case {n}")))
            .unwrap_or(o.output.len());
        let part = &o.output[from..to];
        assert!(
            part.contains(line),
            "case {name}: no line {line:?}\n{part}\n--- all ---\n{o}"
        );
        let dropped = part.contains("nothing of it is kept");
        assert_eq!(
            dropped,
            !name.ends_with("valid"),
            "case {name}: dropped {dropped}\n{part}"
        );
        assert!(
            part.contains(&format!("(d0)   ok   {name}:")),
            "case {name}: wrong errno\n{part}"
        );
    }
    // A frame given back twice (say by a failed restore that adopted it and then by the receive) shows
    // only as an ERROR line: free memory would look the same.
    assert!(
        !o.output.contains("[hv] ERROR"),
        "the hypervisor reported an error\n{o}"
    );
    expect(&o)
        .result(0, TestResult::Success)
        .no_panic()
        .hypervisor_alive_at_end();
}

#[test]
fn the_source_refuses_busy_crashed_and_destroyed_domains_and_keeps_nothing() {
    let port = free_port();
    let s = scenario("test=migrate-hostile-tx", port, Duration::from_secs(150));
    let stop = AtomicBool::new(false);
    let (o, seen) = std::thread::scope(|scope| {
        let peer = scope.spawn(|| {
            let mut p = Peer::new(port);
            p.connect()?;
            p.answer_rounds(&|| stop.load(Ordering::Relaxed))
        });
        let o = run_scenario_with(
            images(),
            &s,
            RunOptions {
                input: s.input.clone(),
                ..RunOptions::default()
            },
            &mut |_: &str| {},
        );
        stop.store(true, Ordering::Relaxed);
        (o, peer.join().expect("the peer's thread"))
    });
    let o = o.unwrap_or_else(|e| panic!("{e}"));
    let (starts, aborts) = seen.unwrap_or_else(|e| panic!("the peer: {e}\n{o}"));
    expect(&o)
        .result(0, TestResult::Success)
        .contains("migration abandoned (ESRCH); it stays here")
        .contains("migration cancelled; it stays here")
        .no_panic()
        .hypervisor_alive_at_end();
    // Four migrations started (the first, after the refused stop-and-copy, after the cancel, the crashing
    // domain's); each ended with an ABORT on the wire.
    assert_eq!((starts, aborts), (4, 4), "STARTs and ABORTs seen\n{o}");
}
