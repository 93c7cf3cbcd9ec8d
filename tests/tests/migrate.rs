//! Live migration between two QEMUs on the loopback (`cargo xtask migrate`, docs/ARCHITECTURE.md "Live
//! migration"): a shell domain running `count` moves to the second machine and its counter goes on from
//! the next value — over the virtio console (the default link) and over COM2 (`--link uart`); a destination
//! killed mid-stream leaves the source's domain running.

use tests::images;
use xtask::migratecmd::{Link, MigrateArgs, migrate};

fn args(kill_destination: bool, link: Link) -> MigrateArgs {
    MigrateArgs {
        mem: 16,
        period_ms: 100,
        kill_destination,
        link,
        // A write log-dirty lost would leave a page differing at the destination: refused there.
        verify: !kill_destination,
    }
}

#[test]
fn a_counting_domain_moves_to_the_second_machine_without_a_gap() {
    moves_without_a_gap(Link::Virtio, "virtio console at");
}

#[test]
fn the_uart_link_still_carries_a_migration() {
    moves_without_a_gap(Link::Uart, "the migration link is COM2");
}

fn moves_without_a_gap(link: Link, link_line: &str) {
    let r = migrate(images(), &args(false, link)).unwrap_or_else(|e| panic!("{e}"));
    let show = || {
        format!(
            "--- source ---\n{}\n--- destination ---\n{}",
            r.source, r.dest
        )
    };
    for (side, l) in ["source", "destination"].iter().zip(&r.links) {
        assert!(
            l.as_deref().is_some_and(|l| l.contains(link_line)),
            "the {side} did not use the {link:?} link: {l:?}\n{}",
            show()
        );
    }
    assert!(r.final_line.is_some(), "no stop-and-copy\n{}", show());
    assert!(
        !r.rounds.is_empty() && r.rounds.len() <= 5,
        "rounds {:?}\n{}",
        r.rounds,
        show()
    );
    assert!(
        r.dest_line.is_some(),
        "the destination did not resume it\n{}",
        show()
    );
    assert!(
        r.dest.contains("migrate: verify: all"),
        "the destination did not verify the pages\n{}",
        show()
    );
    let (a, b) = (r.last_source_count, r.first_dest_count);
    assert!(
        a.is_some() && b == a.map(|a| a + 1),
        "source last {a:?}, destination first {b:?}\n{}",
        show()
    );
    assert!(
        r.source.contains("xl destroy") || !r.source.contains("migration abandoned"),
        "{}",
        show()
    );
}

#[test]
fn a_destination_killed_mid_stream_leaves_the_source_running() {
    let r = migrate(images(), &args(true, Link::Virtio)).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.final_line.is_none(), "{}", r.source);
    assert!(
        r.source.contains("migration abandoned"),
        "the source did not notice\n{}",
        r.source
    );
    assert!(
        r.source_counts_after_failure > 0,
        "the source's domain stopped counting\n{}",
        r.source
    );
}
