//! The domain list (`sysctl(XEN_SYSCTL_getdomaininfolist)`), scenario `test=domains`: domain 0 lists the
//! domains and checks that it sees itself (running, its own memory, its shared-info frame, CPU time that
//! grows) and the others with sane fields, watches another domain shut down, and checks the hostile cases
//! (bad buffers and envelopes: -EFAULT with nothing written; wrong version: -EACCES; unknown command:
//! -ENOSYS). Every other domain checks that it is refused (-EPERM). Option `expect=N`: exactly N domains.

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::sched::SHUTDOWN_POWEROFF;
use abi::sysctl::{
    XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN,
    XEN_INVALID_SHARED_INFO_FRAME, XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_INTERFACE_VERSION,
    XenDomctlGetdomaininfo, XenSysctl,
};

use crate::boot::{facts, platform};
use crate::platform::xen_pv::{XEN_PV, raw};
use crate::println;
use crate::xtf::{Outcome, Results};

/// Room for every domain the hypervisor can run, and more.
const ROOM: usize = 16;

fn check(r: &mut Results, ok: bool, what: core::fmt::Arguments<'_>) -> bool {
    if r.check(ok) {
        println!("  ok   {what}");
    } else {
        println!("  FAIL {what}");
    }
    ok
}

fn show(x: &XenDomctlGetdomaininfo) {
    println!(
        "  domain {}: flags {:#x}, {} pages (max {}), shared_info frame {:#x}, cpu {} us, {} vcpu(s)",
        x.domain,
        x.flags,
        x.tot_pages,
        x.max_pages,
        x.shared_info_frame,
        x.cpu_time / 1000,
        x.nr_online_vcpus
    );
}

/// `sysctl` on an envelope at any address (for the hostile cases).
fn sysctl_raw(op: u64) -> i64 {
    raw(nr::SYSCTL, [op, 0, 0, 0, 0])
}

fn errno_of(r: i64) -> Option<Errno> {
    if r < 0 { Errno::from_ret(r) } else { None }
}

/// `domains`: see the module documentation.
pub fn domains(cmdline: &str, r: &mut Results) {
    if facts().domid != 0 {
        unprivileged(r);
        return;
    }
    let expect = crate::cmdline::option(cmdline, "expect").and_then(crate::cmdline::parse_u64);
    let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
    let n = match XEN_PV.domain_info_list(0, &mut list) {
        Ok(n) => n,
        Err(e) => {
            println!("  FAIL the domain list: {e:?}");
            r.report(Outcome::Failure);
            return;
        }
    };
    println!("{n} domain(s):");
    for x in &list[..n] {
        show(x);
    }
    check_list(r, &list[..n], expect);
    check_self(r, &list[..n]);
    check_others(r, &list[..n]);
    check_bounds(r);
    check_cpu_time_grows(r, &list[..n]);
    watch_shutdown(r, &list[..n]);
    hostile(r, cmdline);
}

fn check_list(r: &mut Results, list: &[XenDomctlGetdomaininfo], expect: Option<u64>) {
    let ascending = list.windows(2).all(|w| w[0].domain < w[1].domain);
    check(
        r,
        ascending,
        format_args!("ids ascending, each listed once"),
    );
    match expect {
        Some(e) => check(
            r,
            list.len() as u64 == e,
            format_args!("{} domains listed, {e} expected", list.len()),
        ),
        None => check(
            r,
            list.len() >= 2,
            format_args!("this domain and at least one other listed ({})", list.len()),
        ),
    };
}

fn check_self(r: &mut Results, list: &[XenDomctlGetdomaininfo]) {
    let Some(me) = list.iter().find(|x| x.domain == 0) else {
        check(r, false, format_args!("domain 0 lists itself"));
        return;
    };
    let si = facts().start_info;
    check(
        r,
        me.flags == XEN_DOMINF_RUNNING,
        format_args!(
            "itself: running, not blocked or shut down ({:#x})",
            me.flags
        ),
    );
    let cur = platform().current_reservation();
    let max = platform().maximum_reservation();
    check(
        r,
        cur == Ok(me.tot_pages) && max == Ok(me.max_pages) && me.max_pages == si.nr_pages,
        format_args!(
            "itself: {} pages of {} max, as memory_op says ({cur:?}, {max:?}); start_info {}",
            me.tot_pages, me.max_pages, si.nr_pages
        ),
    );
    check(
        r,
        me.shared_info_frame == si.shared_info >> 12,
        format_args!(
            "itself: shared_info frame {:#x} is start_info's (machine address {:#x})",
            me.shared_info_frame, si.shared_info
        ),
    );
    check(
        r,
        me.cpu_time > 0,
        format_args!("itself: {} ns of CPU time", me.cpu_time),
    );
    check(
        r,
        me.nr_online_vcpus == 1 && me.max_vcpu_id == 0,
        format_args!("itself: one vCPU"),
    );
    check(
        r,
        me.ssidref == 0 && me.handle == [0; 16] && me.cpupool == 0 && me.gpaddr_bits >= 32,
        format_args!(
            "itself: no label, handle or pool; {}-bit addresses",
            me.gpaddr_bits
        ),
    );
}

fn check_others(r: &mut Results, list: &[XenDomctlGetdomaininfo]) {
    let own_frame = facts().start_info.shared_info >> 12;
    for x in list.iter().filter(|x| x.domain != 0) {
        let sane = if x.flags & XEN_DOMINF_SHUTDOWN != 0 {
            // Stopped: its memory is already given back (abi deviation i).
            x.flags & XEN_DOMINF_DYING != 0
                && x.flags & (XEN_DOMINF_RUNNING | XEN_DOMINF_BLOCKED) == 0
                && x.tot_pages == 0
                && x.shared_info_frame == XEN_INVALID_SHARED_INFO_FRAME
        } else {
            // Alive: waiting for the CPU or blocked, never running while this domain runs.
            x.flags & !XEN_DOMINF_BLOCKED == 0
                && x.tot_pages > 0
                && x.tot_pages <= x.max_pages
                && x.shared_info_frame != XEN_INVALID_SHARED_INFO_FRAME
                && x.shared_info_frame != own_frame
        };
        check(
            r,
            sane && x.nr_online_vcpus == 1 && x.max_vcpu_id == 0,
            format_args!("domain {}: sane fields (flags {:#x})", x.domain, x.flags),
        );
    }
}

fn check_bounds(r: &mut Results) {
    // Room for one: exactly one record, the rest of the array as it was.
    let mut two = [XenDomctlGetdomaininfo::default(); 2];
    two[1].domain = 0xbeef;
    let got = XEN_PV.domain_info_list(1, &mut two[..1]);
    check(
        r,
        got == Ok(1) && two[0].domain == 1 && two[1].domain == 0xbeef,
        format_args!(
            "from domain 1 with room for one: {got:?}, domain {}",
            two[0].domain
        ),
    );
    for first in [abi::xen::DOMID_FIRST_RESERVED, 100, u16::MAX] {
        let got = XEN_PV.domain_info_list(first, &mut two);
        check(
            r,
            got == Ok(0),
            format_args!("from domain {first}: nothing ({got:?})"),
        );
    }
    let got = XEN_PV.domain_info_list(0, &mut []);
    check(r, got == Ok(0), format_args!("no room: nothing ({got:?})"));
    // A huge max_domains is bounded by the domains there are (domain 1 may have finished and been reaped).
    let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
    let mut op = XenSysctl::getdomaininfolist_request(0, u32::MAX, list.as_mut_ptr() as u64);
    let ret = sysctl_raw(&raw mut op as u64);
    let n = op.getdomaininfolist().num_domains;
    check(
        r,
        ret == 0 && n >= 1 && (n as usize) < ROOM && list[n as usize] == Default::default(),
        format_args!("max_domains 2^32-1: {n} records ({ret})"),
    );
}

fn find(list: &[XenDomctlGetdomaininfo], id: u16) -> Option<XenDomctlGetdomaininfo> {
    list.iter().find(|x| x.domain == id).copied()
}

fn check_cpu_time_grows(r: &mut Results, before: &[XenDomctlGetdomaininfo]) {
    let t0 = find(before, 0).map_or(0, |x| x.cpu_time);
    // Compute for 5 ms of system time.
    let until = crate::time::now() + 5_000_000;
    while crate::time::now() < until {
        core::hint::spin_loop();
    }
    let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
    let n = XEN_PV.domain_info_list(0, &mut list).unwrap_or(0);
    let t1 = find(&list[..n], 0).map_or(0, |x| x.cpu_time);
    check(
        r,
        t1 > t0,
        format_args!("CPU time grows while computing: {t0} -> {t1} ns"),
    );
}

/// Wait (up to 20 s) until domain 1 has shut down: a finished domain is reaped (abi deviation n), so it
/// leaves the list; if it is seen stopped before that, it must be reported shut down and dying.
fn watch_shutdown(r: &mut Results, first: &[XenDomctlGetdomaininfo]) {
    let Some(running) = find(first, 1) else {
        return;
    };
    let mut stopped_ok = true;
    let mut gone = false;
    let deadline = crate::time::now().saturating_add(20_000_000_000);
    while crate::time::now() < deadline {
        let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
        let n = XEN_PV.domain_info_list(1, &mut list).unwrap_or(0);
        match find(&list[..n], 1) {
            None => {
                gone = true;
                break;
            }
            Some(x) if x.flags & XEN_DOMINF_SHUTDOWN != 0 => {
                show(&x);
                stopped_ok &= x.flags & XEN_DOMINF_DYING != 0
                    && x.shutdown_reason() == Some(SHUTDOWN_POWEROFF)
                    && x.tot_pages == 0;
            }
            Some(_) => {}
        }
        if crate::time::sleep(10_000_000).is_err() {
            break;
        }
    }
    check(
        r,
        gone && stopped_ok,
        format_args!(
            "domain 1 shut down and was reaped: no longer listed (it had {} pages)",
            running.tot_pages
        ),
    );
}

fn hostile(r: &mut Results, cmdline: &str) {
    let hv = crate::cmdline::option(cmdline, "addr")
        .and_then(crate::cmdline::parse_u64)
        .unwrap_or(0x20_0000);
    // Bad record buffers: -EFAULT, and the envelope's num_domains is not written.
    for (what, buf) in [
        ("null buffer", 0),
        ("buffer at the hypervisor's image", hv),
        ("buffer in the entry region", abi::layout::ENTRY_REGION_VA),
        ("non-canonical buffer", 0x0000_8000_0000_0000),
        ("buffer at the top of memory", u64::MAX - 64),
    ] {
        let mut op = XenSysctl::getdomaininfolist_request(0, 8, buf);
        let mut l = op.getdomaininfolist();
        l.num_domains = 0xdead;
        op.set_getdomaininfolist(&l);
        let before = op;
        let ret = sysctl_raw(&raw mut op as u64);
        check(
            r,
            errno_of(ret) == Some(Errno::EFAULT) && op == before,
            format_args!("{what}: {:?}, envelope untouched", errno_of(ret)),
        );
    }
    // Bad envelopes: -EFAULT.
    for (what, at) in [
        ("null envelope", 0),
        ("envelope at the hypervisor's image", hv),
        ("envelope in the entry region", abi::layout::ENTRY_REGION_VA),
        ("non-canonical envelope", 0x0000_8000_0000_0000),
    ] {
        let ret = sysctl_raw(at);
        check(
            r,
            errno_of(ret) == Some(Errno::EFAULT),
            format_args!("{what}: {:?}", errno_of(ret)),
        );
    }
    // A wrong interface version (Xen: -EACCES) and an unknown command (-ENOSYS) write nothing back.
    let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
    for version in [
        0,
        XEN_SYSCTL_INTERFACE_VERSION - 1,
        XEN_SYSCTL_INTERFACE_VERSION + 1,
    ] {
        let mut op = XenSysctl::getdomaininfolist_request(0, 8, list.as_mut_ptr() as u64);
        op.interface_version = version;
        let before = op;
        let ret = sysctl_raw(&raw mut op as u64);
        check(
            r,
            errno_of(ret) == Some(Errno::EACCES) && op == before && list[0] == Default::default(),
            format_args!("interface version {version:#x}: {:?}", errno_of(ret)),
        );
    }
    for cmd in [0, XEN_SYSCTL_GETDOMAININFOLIST - 1, 1000, u32::MAX] {
        let mut op = XenSysctl::getdomaininfolist_request(0, 8, list.as_mut_ptr() as u64);
        op.cmd = cmd;
        let ret = sysctl_raw(&raw mut op as u64);
        check(
            r,
            errno_of(ret) == Some(Errno::ENOSYS) && list[0] == Default::default(),
            format_args!("command {cmd}: {:?}", errno_of(ret)),
        );
    }
}

/// Any domain but 0: the list is the control domain's.
fn unprivileged(r: &mut Results) {
    let mut list = [XenDomctlGetdomaininfo::default(); ROOM];
    let got = XEN_PV.domain_info_list(0, &mut list);
    check(
        r,
        got == Err(Errno::EPERM) && list[0] == Default::default(),
        format_args!(
            "domain {}: the domain list is refused ({got:?})",
            facts().domid
        ),
    );
    // As in Xen, the version is checked before the privilege, and a bad envelope is a fault first of all.
    let mut op = XenSysctl::getdomaininfolist_request(0, 8, list.as_mut_ptr() as u64);
    op.interface_version = 0;
    let ret = sysctl_raw(&raw mut op as u64);
    check(
        r,
        errno_of(ret) == Some(Errno::EACCES),
        format_args!("wrong version: {:?}", errno_of(ret)),
    );
    let ret = sysctl_raw(abi::layout::ENTRY_REGION_VA);
    check(
        r,
        errno_of(ret) == Some(Errno::EFAULT),
        format_args!("envelope in the entry region: {:?}", errno_of(ret)),
    );
    // A finished domain is reaped at once (abi deviation n): stay alive long enough for domain 0 to see
    // this one listed before it finishes.
    let _ = crate::time::sleep(2_000_000_000);
}
