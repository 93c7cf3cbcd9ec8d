//! Scenarios `test=migrate-hostile-rx` and `test=migrate-hostile-tx` (domain 0, COM2 joined to a host-side
//! fake migration peer, `tests/tests/migrate_hostile.rs`): live migration's bad input.
//!
//! - rx: domain 0 calls `XEN_DOMCTL_MIGRATE_RECEIVE` once per case of [`RX_CASES`], printing the case's
//!   name first; the peer, seeing the name and the hypervisor's "waiting" line, sends that case's stream
//!   (bad CRC, wrong version, oversize length, unknown kind, pfns and counts out of range, a second
//!   START, hostile tails, ABORT, silence, a frame cut short, pages received and then a tail the restore
//!   refuses, and last a small valid domain, with and without pages received before its tail). Each must
//!   end with the case's errno and the machine's free memory as it was before it: nothing received is
//!   kept; the valid one must run here (it is destroyed, and the memory comes back too).
//! - tx: the source side with the peer answering as a destination: a second migration while one is under
//!   way and the same domain twice (-EBUSY), phases for a domain not being migrated (-EINVAL), the stop
//!   and copy of a domain that has not suspended (refused; the domain runs on), a domain destroyed
//!   between rounds and one that crashes between rounds (-ESRCH; the migration is dropped), a crashed
//!   domain (-ESRCH), and after each a new migration starts (no stale -EBUSY); free memory as before.

use abi::domctl::{
    DomctlImage, MIGRATE_CANCEL, MIGRATE_FINAL, MIGRATE_ROUND, MIGRATE_START, VcpuGuestContext,
    XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_GETVCPUCONTEXT, XEN_DOMCTL_MIGRATE,
    XEN_DOMCTL_MIGRATE_RECEIVE, XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_SETVCPUCONTEXT,
    XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl, XenDomctlVcpucontext,
};
use abi::errno::Errno;
use abi::sysctl::{XEN_DOMINF_DYING, XEN_DOMINF_SHUTDOWN, XenDomctlGetdomaininfo};
use abi::xen::TrapInfo;
use zerocopy::FromZeros;

use super::save_hostile::{create, destroy, domctl, expect, free_bytes, wait_for};
use crate::println;
use crate::xtf::Results;

/// The receive cases, in order: name (the peer's key) and the errno the receive must end with.
pub const RX_CASES: &[(&str, Option<Errno>)] = &[
    ("bad-crc", Some(Errno::EIO)),
    ("wrong-version", Some(Errno::EIO)),
    ("oversize-length", Some(Errno::EIO)),
    ("unknown-kind", Some(Errno::EIO)),
    ("wrong-size-for-kind", Some(Errno::EIO)),
    ("page-before-start", Some(Errno::EINVAL)),
    ("count-zero", Some(Errno::EINVAL)),
    ("count-above-limit", Some(Errno::EINVAL)),
    ("start-twice", Some(Errno::EINVAL)),
    ("pfn-beyond-count", Some(Errno::EINVAL)),
    ("hash-beyond-count", Some(Errno::EINVAL)),
    ("hash-unknown-then-abort", Some(Errno::EINTR)),
    ("tail-before-begin", Some(Errno::EINVAL)),
    ("tail-too-long", Some(Errno::EINVAL)),
    ("tail-offset-wraps", Some(Errno::EINVAL)),
    ("tail-past-its-length", Some(Errno::EINVAL)),
    ("tail-bad-checksum", Some(Errno::EINVAL)),
    ("tail-truncated", Some(Errno::EINVAL)),
    ("tail-corrupt-image", Some(Errno::EINVAL)),
    ("abort-mid-stream", Some(Errno::EINTR)),
    ("silence", Some(Errno::EIO)),
    ("cut-mid-frame", Some(Errno::EIO)),
    ("kept-pages-refused", Some(Errno::EINVAL)),
    ("kept-pages-valid", None),
    ("valid", None),
];

/// `XEN_DOMCTL_MIGRATE_RECEIVE`: the new domain's id.
fn receive() -> Result<u16, Errno> {
    let mut op = XenDomctl::new(XEN_DOMCTL_MIGRATE_RECEIVE, 0);
    op.set_arg(&DomctlImage::default());
    domctl(&mut op).map_or(Ok(op.domain), Err)
}

/// `XEN_DOMCTL_MIGRATE` phase `phase` of domain `d`.
fn migrate(d: u16, phase: u32) -> Option<Errno> {
    let mut op = XenDomctl::new(XEN_DOMCTL_MIGRATE, d);
    op.set_arg(&DomctlImage {
        flags: phase,
        ..DomctlImage::default()
    });
    domctl(&mut op)
}

/// `migrate-hostile-rx`: see the module documentation.
pub fn migrate_hostile_rx(_cmdline: &str, r: &mut Results) {
    for &(name, want) in RX_CASES {
        let before = free_bytes();
        println!("migrate-hostile: case {name}");
        let got = receive();
        expect(r, name, got.err(), want);
        if let Ok(d) = got {
            let runs = !gone_or_crashed(d);
            expect(
                r,
                "the migrated domain runs here",
                (!runs).then_some(Errno::ESRCH),
                None,
            );
            expect(r, "destroy it", destroy(d), None);
        }
        let after = free_bytes();
        expect(
            r,
            "free memory as before the stream (nothing received is kept)",
            (after != before).then_some(Errno::ENOMEM),
            None,
        );
        if after != before {
            println!("  free before {before} after {after}");
        }
    }
}

/// Domain `d` no longer exists, or is shut down or dying (a crashed domain is reaped soon after).
fn gone_or_crashed(d: u16) -> bool {
    let mut op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d);
    domctl(&mut op).is_some()
        || op.arg::<XenDomctlGetdomaininfo>().flags & (XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN) != 0
}

/// Make the running domain `d` crash: paused, its vCPU set to run at address 0 with no trap handlers
/// and no stack, unpaused.
fn crash(r: &mut Results, d: u16) {
    static CTX: spin::Mutex<Option<VcpuGuestContext>> = spin::Mutex::new(None);
    let mut slot = CTX.lock();
    let ctx = slot.get_or_insert_with(VcpuGuestContext::new_zeroed);
    let pause = |cmd| domctl(&mut XenDomctl::new(cmd, d));
    expect(r, "pause it", pause(XEN_DOMCTL_PAUSEDOMAIN), None);
    let mut get = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, d);
    get.set_arg(&XenDomctlVcpucontext {
        ctxt: ctx as *mut VcpuGuestContext as u64,
        ..Default::default()
    });
    expect(r, "get its vCPU context", domctl(&mut get), None);
    ctx.trap_ctxt = [TrapInfo::default(); 256];
    ctx.event_callback_eip = 0;
    ctx.failsafe_callback_eip = 0;
    ctx.syscall_callback_eip = 0;
    ctx.user_regs.rip = 0;
    ctx.user_regs.rsp = 0;
    ctx.kernel_sp = 0;
    let mut set = get;
    set.cmd = XEN_DOMCTL_SETVCPUCONTEXT;
    expect(
        r,
        "set a context that faults at once",
        domctl(&mut set),
        None,
    );
    expect(r, "unpause it", pause(XEN_DOMCTL_UNPAUSEDOMAIN), None);
    let crashed = wait_for(10_000, || gone_or_crashed(d));
    expect(
        r,
        "it crashes",
        (!crashed).then_some(Errno::ETIMEDOUT),
        None,
    );
}

/// Create a shell domain and start migrating it (START succeeds once its kernel has bound
/// VIRQ_SUSPEND; the peer acknowledges round 0).
fn shell_migrating(r: &mut Results) -> Option<u16> {
    let d = match create(4096, "shell", 0) {
        Ok(d) => d,
        Err(e) => {
            expect(r, "create a shell domain", Some(e), None);
            return None;
        }
    };
    let mut last = None;
    let started = wait_for(30_000, || {
        last = migrate(d, MIGRATE_START);
        last != Some(Errno::EOPNOTSUPP)
    });
    expect(
        r,
        "start migrating a shell domain",
        if started {
            last
        } else {
            Some(Errno::ETIMEDOUT)
        },
        None,
    );
    Some(d)
}

/// `migrate-hostile-tx`: see the module documentation.
pub fn migrate_hostile_tx(_cmdline: &str, r: &mut Results) {
    let before = free_bytes();
    expect(
        r,
        "migrate domain 0 itself",
        migrate(0, MIGRATE_START),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "migrate no domain",
        migrate(77, MIGRATE_START),
        Some(Errno::ESRCH),
    );
    expect(
        r,
        "a round with no migration under way",
        migrate(77, MIGRATE_ROUND),
        Some(Errno::EINVAL),
    );
    let idle = match create(2048, "test=idle-forever", 0) {
        Ok(d) => d,
        Err(e) => return expect(r, "create an idle domain", Some(e), None),
    };
    let Some(d) = shell_migrating(r) else { return };
    println!("migrate-hostile: one migration under way (domain {d})");
    expect(
        r,
        "the same domain migrated twice",
        migrate(d, MIGRATE_START),
        Some(Errno::EBUSY),
    );
    expect(
        r,
        "a second migration while one is under way",
        migrate(idle, MIGRATE_START),
        Some(Errno::EBUSY),
    );
    expect(
        r,
        "a round for a domain not being migrated",
        migrate(idle, MIGRATE_ROUND),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "a stop-and-copy for a domain not being migrated",
        migrate(idle, MIGRATE_FINAL),
        Some(Errno::EINVAL),
    );
    expect(r, "an unknown phase", migrate(d, 9), Some(Errno::EINVAL));
    expect(r, "a pre-copy round", migrate(d, MIGRATE_ROUND), None);
    expect(
        r,
        "the stop-and-copy of a domain that has not suspended",
        migrate(d, MIGRATE_FINAL),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "it runs on (the source is never lost)",
        gone_or_crashed(d).then_some(Errno::ESRCH),
        None,
    );
    expect(
        r,
        "the refused migration is over: a new one starts",
        migrate(d, MIGRATE_START),
        None,
    );
    expect(r, "cancel it", migrate(d, MIGRATE_CANCEL), None);
    expect(
        r,
        "cancelled: nothing under way",
        migrate(d, MIGRATE_ROUND),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "start again after the cancel",
        migrate(d, MIGRATE_START),
        None,
    );
    expect(r, "destroy it between rounds", destroy(d), None);
    expect(
        r,
        "the next round of the destroyed domain",
        migrate(d, MIGRATE_ROUND),
        Some(Errno::ESRCH),
    );
    expect(
        r,
        "dropped with it: no round under way",
        migrate(d, MIGRATE_ROUND),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "and the idle domain is refused for its kernel, not as busy",
        migrate(idle, MIGRATE_START),
        Some(Errno::EOPNOTSUPP),
    );
    if let Some(c) = shell_migrating(r) {
        println!("migrate-hostile: domain {c} crashes between rounds");
        crash(r, c);
        expect(
            r,
            "the next round of the crashed domain",
            migrate(c, MIGRATE_ROUND),
            Some(Errno::ESRCH),
        );
        expect(
            r,
            "dropped with it: no round under way",
            migrate(c, MIGRATE_ROUND),
            Some(Errno::EINVAL),
        );
        expect(
            r,
            "migrate the crashed domain",
            migrate(c, MIGRATE_START),
            Some(Errno::ESRCH),
        );
        let _ = destroy(c);
    }
    expect(
        r,
        "no stale migration: the idle domain is refused for its kernel, not as busy",
        migrate(idle, MIGRATE_START),
        Some(Errno::EOPNOTSUPP),
    );
    expect(r, "destroy the idle domain", destroy(idle), None);
    let after = free_bytes();
    expect(
        r,
        "free memory as before",
        (after != before).then_some(Errno::ENOMEM),
        None,
    );
    if after != before {
        println!("  free before {before} after {after}");
    }
}
