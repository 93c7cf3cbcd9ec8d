//! `sysctl` (hypercall 35): system control for the control domain. The one command is
//! `XEN_SYSCTL_getdomaininfolist`, which tells domain 0 which domains exist: their state, memory and CPU time.
//!
//! `sysctl(op)`: the whole `xen_sysctl` is copied in and decoded into a [`SysctlRequest`] with no side
//! effect, checking in Xen's order the interface version (`-EACCES`), the caller's privilege (`-EPERM`) and
//! the command (`-ENOSYS`). The records are then built from the domain table and the scheduler
//! ([`DomainFacts`] → [`record`], pure), and written all or nothing (abi deviation i): the envelope's
//! writability is proven first by writing back what the guest put there, then the record array, then the
//! envelope with `num_domains`. The number of records is bounded by the domain table, whatever
//! `max_domains` says.

use abi::errno::Errno;
use abi::sched::SHUTDOWN_CRASH;
use abi::sysctl::{
    XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_HAP, XEN_DOMINF_HVM_GUEST, XEN_DOMINF_PAUSED,
    XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT,
    XEN_INVALID_SHARED_INFO_FRAME, XEN_SYSCTL_GETDOMAININFOLIST, XEN_SYSCTL_INTERFACE_VERSION,
    XenDomctlGetdomaininfo, XenSysctl,
};
use abi::types::{Gva, Mfn};
use zerocopy::IntoBytes;

use super::{Action, HypercallCtx, MachineMem};
use crate::domain::state::{DomainState, MAX_DOMAINS};
use crate::sched_policy::RunState;

/// A decoded `sysctl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlRequest {
    /// `XEN_SYSCTL_getdomaininfolist`: up to `max` records, from domain `first` on, to guest array `buffer`.
    GetDomainInfoList {
        /// The lowest domain id to report.
        first: u16,
        /// Room in `buffer`, in records.
        max: u32,
        /// Guest address of the record array.
        buffer: Gva,
    },
}

/// Decode an envelope the caller handed in. Pure. In Xen's order: a wrong interface version is `-EACCES`,
/// an unprivileged caller `-EPERM`, an unknown command `-ENOSYS`.
pub fn decode(op: &XenSysctl, privileged: bool) -> Result<SysctlRequest, Errno> {
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    if !privileged {
        return Err(Errno::EPERM);
    }
    match op.cmd {
        XEN_SYSCTL_GETDOMAININFOLIST => {
            let l = op.getdomaininfolist();
            Ok(SysctlRequest::GetDomainInfoList {
                first: l.first_domain,
                max: l.max_domains,
                buffer: Gva(l.buffer),
            })
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// What the hypervisor knows about one domain, gathered from the domain table and the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainFacts {
    /// Domain id.
    pub id: u16,
    /// Life-cycle state.
    pub state: DomainState,
    /// Its vCPU is on the CPU (only the caller's can be).
    pub running: bool,
    /// Its vCPU is blocked waiting for an event.
    pub blocked: bool,
    /// Paused by the control domain (`XEN_DOMCTL_pausedomain`).
    pub paused: bool,
    /// Frames it owns (the shared-info page not counted).
    pub tot_pages: u64,
    /// The most frames it may own.
    pub max_pages: u64,
    /// Its shared-info page.
    pub shared_info: Mfn,
    /// Real time its vCPU has held the CPU (ns).
    pub cpu_ns: u64,
    /// An hvm domain (SVM with nested paging): `XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP`.
    pub hvm: bool,
    /// It suspended itself for the toolstack (`SHUTDOWN_suspend`, memory kept: `domain::save`).
    pub suspended: bool,
}

/// The `xen_domctl_getdomaininfo` record of one domain. Pure. `gpaddr_bits` is the CPU's physical-address
/// width. A stopped domain has already released its memory (abi deviation i): shut down *and* dying, with no
/// pages and no shared-info frame.
pub fn record(f: &DomainFacts, gpaddr_bits: u8) -> XenDomctlGetdomaininfo {
    let mut info = XenDomctlGetdomaininfo {
        domain: f.id,
        max_pages: f.max_pages,
        cpu_time: f.cpu_ns,
        nr_online_vcpus: 1,
        max_vcpu_id: 0,
        gpaddr_bits,
        ..Default::default()
    };
    let stopped = |reason: u32| {
        XEN_DOMINF_DYING
            | XEN_DOMINF_SHUTDOWN
            | ((reason & XEN_DOMINF_SHUTDOWNMASK) << XEN_DOMINF_SHUTDOWNSHIFT)
    };
    match f.state {
        DomainState::Runnable => {
            info.flags = if f.running {
                XEN_DOMINF_RUNNING
            } else if f.blocked {
                XEN_DOMINF_BLOCKED
            } else {
                0
            } | if f.paused { XEN_DOMINF_PAUSED } else { 0 }
                | if f.suspended {
                    // Xen's view of a suspended domain: shut down (reason suspend), not dying.
                    XEN_DOMINF_SHUTDOWN
                        | ((abi::sched::ShutdownReason::Suspend.as_u32() & XEN_DOMINF_SHUTDOWNMASK)
                            << XEN_DOMINF_SHUTDOWNSHIFT)
                } else {
                    0
                };
            info.tot_pages = f.tot_pages;
            info.shared_info_frame = f.shared_info.0;
        }
        DomainState::Shutdown { reason, .. } => {
            info.flags = stopped(reason.as_u32());
            info.shared_info_frame = XEN_INVALID_SHARED_INFO_FRAME;
        }
        DomainState::Crashed => {
            info.flags = stopped(SHUTDOWN_CRASH);
            info.shared_info_frame = XEN_INVALID_SHARED_INFO_FRAME;
        }
    }
    if f.hvm {
        info.flags |= XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP;
    }
    info
}

/// What is known about domain `id` at system time `now`, if it exists.
pub(crate) fn facts<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    id: usize,
    now: u64,
) -> Option<DomainFacts> {
    let sched = &ctx.sched.get().0;
    let cpu_ns = sched.cpu_ns_at(id, now).unwrap_or(0);
    if id == usize::from(ctx.domid) {
        // The caller: it is on the CPU right now.
        return Some(DomainFacts {
            id: ctx.domid,
            state: DomainState::Runnable,
            running: true,
            blocked: false,
            paused: false,
            tot_pages: ctx.dom.tot_pages,
            max_pages: ctx.dom.max_pages,
            shared_info: ctx.dom.shared_info,
            cpu_ns,
            hvm: false,
            suspended: false,
        });
    }
    let d = ctx.others.get(id)?;
    Some(DomainFacts {
        id: d.id,
        state: d.state,
        running: false,
        blocked: matches!(sched.state(id), Some(RunState::Blocked { .. })),
        paused: sched.paused(id),
        tot_pages: d.mm.tot_pages,
        max_pages: d.mm.max_pages,
        shared_info: d.mm.shared_info,
        cpu_ns,
        hvm: d.hvm.is_some(),
        suspended: matches!(d.suspend, crate::domain::state::Suspend::Suspended(_)),
    })
}

/// The records of the existing domains from id `first` on, in ascending id order, at most `max` of them;
/// returns them and their number. Bounded by the domain table whatever `max` is.
fn collect<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    first: u16,
    max: u32,
) -> ([XenDomctlGetdomaininfo; MAX_DOMAINS], usize) {
    let now = ctx.env.now_ns();
    let bits = u8::try_from(ctx.policy.maxphyaddr).unwrap_or(u8::MAX);
    let mut out = [XenDomctlGetdomaininfo::default(); MAX_DOMAINS];
    let mut n = 0;
    for id in usize::from(first)..MAX_DOMAINS {
        if n as u64 >= u64::from(max) {
            break;
        }
        if let Some(f) = facts(ctx, id, now) {
            out[n] = record(&f, bits);
            n += 1;
        }
    }
    (out, n)
}

/// Handle `sysctl(op)`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn sysctl<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let at = Gva(ctx.args()[0]);
    Action::from(run(ctx, at).map(|()| 0))
}

fn run<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, at: Gva) -> Result<(), Errno> {
    let original: XenSysctl = ctx.guest().read_obj(at)?;
    match decode(&original, ctx.privileged)? {
        SysctlRequest::GetDomainInfoList { first, max, buffer } => {
            let (records, n) = collect(ctx, first, max);
            let mut op = original;
            let mut list = op.getdomaininfolist();
            list.num_domains = n as u32;
            op.set_getdomaininfolist(&list);
            let mut guest = ctx.guest();
            // All or nothing: prove the envelope writable by rewriting the bytes the guest put there (no
            // change), then write the records (all checked before the first byte moves), then the count.
            guest.write_obj(at, &original)?;
            if n > 0 {
                guest.write(buffer, records[..n].as_bytes())?;
            }
            guest.write_obj(at, &op)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use abi::hypercall::nr::{MULTICALL, SYSCTL};
    use abi::sched::ShutdownReason;
    use abi::sysctl::XenSysctlGetdomaininfolist;
    use abi::xen::MulticallEntry;
    use zerocopy::FromBytes;

    use crate::hypercall::DomainMm;

    /// Where the tests put the envelope and the record array (in the writable page, frame 10).
    const OP: u64 = RW_PAGE;
    const BUF: u64 = RW_PAGE + 0x200;
    const REC: usize = core::mem::size_of::<XenDomctlGetdomaininfo>();
    /// What the record area holds before a call, to see whether anything was written.
    const FILL: u8 = 0xa5;

    fn ret(e: Errno) -> Action {
        Action::Return(e.as_ret())
    }

    /// A privileged domain 1 (with domain 2 runnable), its page filled with [`FILL`].
    fn world() -> World {
        let mut w = World::new();
        w.privileged = true;
        w.mem.frame_mut_for_test(10).fill(FILL);
        w
    }

    fn put(w: &mut World, op: &XenSysctl) {
        w.mem.frame_mut_for_test(10)[..136].copy_from_slice(op.as_bytes());
    }

    fn envelope(w: &mut World) -> XenSysctl {
        XenSysctl::read_from_bytes(&w.mem.frame_mut_for_test(10)[..136]).unwrap()
    }

    fn records(w: &mut World, n: usize) -> Vec<XenDomctlGetdomaininfo> {
        let page = w.mem.frame_mut_for_test(10);
        let base = (BUF - RW_PAGE) as usize;
        (0..n)
            .map(|i| {
                XenDomctlGetdomaininfo::read_from_bytes(&page[base + i * REC..base + (i + 1) * REC])
                    .unwrap()
            })
            .collect()
    }

    /// Nothing past `n` records (and nothing at all if `n` is 0) was written to the record area.
    fn untouched_after(w: &mut World, n: usize) -> bool {
        let base = (BUF - RW_PAGE) as usize;
        w.mem.frame_mut_for_test(10)[base + n * REC..]
            .iter()
            .all(|&b| b == FILL)
    }

    /// List from `first`, room for `max`, into `buf`; the envelope at [`OP`].
    fn list(w: &mut World, first: u16, max: u32, buf: u64) -> Action {
        put(w, &XenSysctl::getdomaininfolist_request(first, max, buf));
        w.call(SYSCTL, [OP, 0, 0, 0, 0])
    }

    fn num_domains(w: &mut World) -> u32 {
        envelope(w).getdomaininfolist().num_domains
    }

    #[test]
    fn lists_itself_and_the_other_domain() {
        let mut w = world();
        assert_eq!(list(&mut w, 0, 8, BUF), Action::Return(0));
        assert_eq!(num_domains(&mut w), 2);
        let r = records(&mut w, 2);
        // The caller (domain 1): on the CPU, its own memory facts.
        assert_eq!(r[0].domain, 1);
        assert_eq!(r[0].flags, XEN_DOMINF_RUNNING);
        assert_eq!((r[0].tot_pages, r[0].max_pages), (14, 16));
        assert_eq!(r[0].shared_info_frame, 15);
        // Domain 2: runnable, waiting for the CPU (neither running nor blocked).
        assert_eq!(r[1].domain, 2);
        assert_eq!(r[1].flags, 0);
        assert_eq!((r[1].tot_pages, r[1].max_pages), (3, 3));
        assert_eq!(r[1].shared_info_frame, 19);
        for x in &r {
            assert_eq!((x.nr_online_vcpus, x.max_vcpu_id), (1, 0));
            assert_eq!((x.ssidref, x.cpupool, x.handle), (0, 0, [0; 16]));
            assert_eq!(x.gpaddr_bits, MAXPHYADDR as u8);
            assert_eq!((x.outstanding_pages, x.shr_pages, x.paged_pages), (0, 0, 0));
            assert_eq!((x._pad1, x._pad2), (0, [0; 7]));
            assert_eq!(x.arch_config, Default::default());
        }
        assert!(untouched_after(&mut w, 2));
        // The rest of the envelope is written back as it came.
        let e = envelope(&mut w);
        assert_eq!(e.cmd, XEN_SYSCTL_GETDOMAININFOLIST);
        assert_eq!(e.interface_version, XEN_SYSCTL_INTERFACE_VERSION);
        let l = e.getdomaininfolist();
        assert_eq!((l.first_domain, l.max_domains, l.buffer), (0, 8, BUF));
    }

    #[test]
    fn hvm_domains_carry_the_hvm_and_hap_flags() {
        let f = DomainFacts {
            id: 4,
            state: DomainState::Runnable,
            running: false,
            blocked: true,
            paused: false,
            tot_pages: 10,
            max_pages: 10,
            shared_info: Mfn(9),
            cpu_ns: 0,
            hvm: true,
            suspended: false,
        };
        let r = record(&f, 48);
        assert_eq!(
            r.flags,
            XEN_DOMINF_BLOCKED | XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP
        );
        let pv = record(&DomainFacts { hvm: false, ..f }, 48);
        assert_eq!(pv.flags, XEN_DOMINF_BLOCKED);
    }

    #[test]
    fn flags_follow_the_domain_state() {
        let mut w = world();
        let mm = |shared| DomainMm {
            base: Mfn(40),
            tot_pages: 100,
            max_pages: 120,
            shared_info: Mfn(shared),
            flush_tlb: false,
            preemptions: 0,
            time_offset_ns: 0,
        };
        w.others[0] = Some(other_domain(0, DomainState::Runnable, mm(41)));
        w.others[3] = Some(other_domain(3, DomainState::Crashed, mm(42)));
        let reboot = DomainState::Shutdown {
            reason: ShutdownReason::Reboot,
            code: 7,
        };
        w.others[5] = Some(other_domain(5, reboot, mm(43)));
        let poweroff = DomainState::Shutdown {
            reason: ShutdownReason::Poweroff,
            code: 0,
        };
        w.others[7] = Some(other_domain(7, poweroff, mm(44)));
        w.sched.0.start(0, 256).unwrap();
        w.sched.0.start(2, 256).unwrap();
        assert!(w.sched.0.block(0, None));
        assert_eq!(list(&mut w, 0, 8, BUF), Action::Return(0));
        assert_eq!(num_domains(&mut w), 6);
        let r = records(&mut w, 6);
        let ids: Vec<u16> = r.iter().map(|x| x.domain).collect();
        assert_eq!(ids, [0, 1, 2, 3, 5, 7], "ascending ids, free slots skipped");
        assert_eq!(r[0].flags, XEN_DOMINF_BLOCKED);
        assert_eq!((r[0].tot_pages, r[0].shared_info_frame), (100, 41));
        assert_eq!(r[1].flags, XEN_DOMINF_RUNNING);
        assert_eq!(r[2].flags, 0);
        let dead = XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN;
        assert_eq!(r[3].flags, dead | (SHUTDOWN_CRASH << 16));
        assert_eq!(r[3].shutdown_reason(), Some(SHUTDOWN_CRASH));
        assert_eq!(r[4].flags, dead | (ShutdownReason::Reboot.as_u32() << 16));
        assert_eq!(r[5].flags, dead, "poweroff is reason 0");
        assert_eq!(r[5].shutdown_reason(), Some(0));
        for x in &r[3..] {
            // Their memory is gone; the limit stays.
            assert_eq!(x.tot_pages, 0);
            assert_eq!(x.max_pages, 120);
            assert_eq!(x.shared_info_frame, XEN_INVALID_SHARED_INFO_FRAME);
        }
    }

    #[test]
    fn cpu_time_is_real_ns_including_the_current_run() {
        let mut w = world();
        w.sched.0.start(1, 256).unwrap();
        w.sched.0.start(2, 1024).unwrap();
        // Domain 1 runs 1..4 ms, domain 2 4..6 ms, domain 1 again from 6 ms; the call comes at 9 ms.
        assert_eq!(w.sched.0.pick(1_000_000), Some(1));
        w.sched.0.yield_now(1);
        assert_eq!(w.sched.0.pick(4_000_000), Some(2));
        w.sched.0.yield_now(2);
        assert_eq!(w.sched.0.pick(6_000_000), Some(1));
        w.now_ns = 9_000_000;
        assert_eq!(list(&mut w, 0, 8, BUF), Action::Return(0));
        let r = records(&mut w, 2);
        assert_eq!(
            r[0].cpu_time, 6_000_000,
            "charged 3 ms plus the current run's 3 ms"
        );
        assert_eq!(r[1].cpu_time, 2_000_000, "real ns, whatever the weight");
        // Reading charged nothing: the scheduler's books are unchanged.
        assert_eq!(w.sched.0.cpu_ns(1), Some(3_000_000));
    }

    #[test]
    fn first_domain_and_max_domains_bound_the_list() {
        let mut w = world();
        assert_eq!(list(&mut w, 2, 8, BUF), Action::Return(0));
        assert_eq!(num_domains(&mut w), 1);
        assert_eq!(records(&mut w, 1)[0].domain, 2);
        assert!(untouched_after(&mut w, 1));

        let mut w = world();
        assert_eq!(list(&mut w, 0, 1, BUF), Action::Return(0));
        assert_eq!(num_domains(&mut w), 1);
        assert_eq!(records(&mut w, 1)[0].domain, 1);
        assert!(untouched_after(&mut w, 1), "room for one: one written");

        // A huge count is bounded by the domains there are.
        for max in [u32::MAX, 1 << 31, 9] {
            let mut w = world();
            assert_eq!(list(&mut w, 0, max, BUF), Action::Return(0));
            assert_eq!(num_domains(&mut w), 2);
            assert!(untouched_after(&mut w, 2));
        }

        // Past the last domain, or no room: nothing listed, and the buffer is not even looked at.
        for (first, max, buf) in [
            (3, 8, BUF),
            (MAX_DOMAINS as u16, 8, BUF),
            (abi::xen::DOMID_SELF, 8, BUF),
            (u16::MAX, u32::MAX, BUF),
            (0, 0, BUF),
            (0, 0, 0),
            (9, 1, u64::MAX),
        ] {
            let mut w = world();
            assert_eq!(
                list(&mut w, first, max, buf),
                Action::Return(0),
                "{first} {max}"
            );
            assert_eq!(num_domains(&mut w), 0);
            assert!(untouched_after(&mut w, 0));
        }
    }

    #[test]
    fn unprivileged_callers_are_refused() {
        let mut w = world();
        w.privileged = false;
        let op = XenSysctl::getdomaininfolist_request(0, 8, BUF);
        put(&mut w, &op);
        assert_eq!(w.call(SYSCTL, [OP, 0, 0, 0, 0]), ret(Errno::EPERM));
        assert_eq!(envelope(&mut w), op, "nothing written back");
        assert!(untouched_after(&mut w, 0));
        // Any command, known or not: privilege is checked before the command.
        for cmd in [1, 7, u32::MAX] {
            put(&mut w, &XenSysctl::new(cmd));
            assert_eq!(w.call(SYSCTL, [OP, 0, 0, 0, 0]), ret(Errno::EPERM));
        }
        // A bad envelope is a fault before anything else, as in Xen.
        assert_eq!(w.call(SYSCTL, [0x1000, 0, 0, 0, 0]), ret(Errno::EFAULT));
    }

    #[test]
    fn a_wrong_interface_version_is_eacces() {
        for privileged in [true, false] {
            for v in [0, 0x14, 0x16, 8, u32::MAX] {
                let mut w = world();
                w.privileged = privileged;
                let mut op = XenSysctl::getdomaininfolist_request(0, 8, BUF);
                op.interface_version = v;
                put(&mut w, &op);
                assert_eq!(
                    w.call(SYSCTL, [OP, 0, 0, 0, 0]),
                    ret(Errno::EACCES),
                    "{v:#x}"
                );
                assert_eq!(envelope(&mut w), op);
                assert!(untouched_after(&mut w, 0));
            }
        }
    }

    #[test]
    fn unknown_commands_are_enosys() {
        for cmd in [0, 1, 3, 5, 7, 9, 100, u32::MAX] {
            let mut w = world();
            let op = XenSysctl::new(cmd);
            put(&mut w, &op);
            assert_eq!(
                w.call(SYSCTL, [OP, 0, 0, 0, 0]),
                ret(Errno::ENOSYS),
                "{cmd}"
            );
            assert_eq!(envelope(&mut w), op);
        }
    }

    #[test]
    fn a_bad_record_buffer_faults_with_nothing_written() {
        for buf in [
            0,                            // null
            0x1000,                       // unmapped
            0x20_0000,                    // the hypervisor's image address
            abi::layout::ENTRY_REGION_VA, // mapped, but the hypervisor's
            0x0000_8000_0000_0000,        // non-canonical
            RO_PAGE,                      // read-only
            RW_PAGE + 0x1000 - 100,       // the second record would run into the read-only page
            RO_PAGE + 0x1000 - 50,        // runs into an unmapped page
            u64::MAX - 50,                // wraps
        ] {
            let mut w = world();
            let op = XenSysctl::getdomaininfolist_request(0, 8, buf);
            put(&mut w, &op);
            assert_eq!(
                w.call(SYSCTL, [OP, 0, 0, 0, 0]),
                ret(Errno::EFAULT),
                "buffer {buf:#x}"
            );
            assert_eq!(envelope(&mut w), op, "num_domains not written");
            let page = w.mem.frame_mut_for_test(10);
            assert!(page[136..].iter().all(|&b| b == FILL), "no record written");
        }
    }

    #[test]
    fn a_bad_envelope_faults_with_nothing_written() {
        for at in [
            0,
            0x1000,
            0x20_0000,
            abi::layout::ENTRY_REGION_VA,
            0x0000_8000_0000_0000,
            RO_PAGE + 0x1000 - 100, // runs into an unmapped page
            u64::MAX - 8,
        ] {
            let mut w = world();
            put(&mut w, &XenSysctl::getdomaininfolist_request(0, 8, BUF));
            assert_eq!(
                w.call(SYSCTL, [at, 0, 0, 0, 0]),
                ret(Errno::EFAULT),
                "{at:#x}"
            );
            assert!(untouched_after(&mut w, 0));
        }
        // A valid envelope in a read-only page: it decodes, but cannot be written back, so the records are
        // not written either.
        let mut w = world();
        let op = XenSysctl::getdomaininfolist_request(0, 8, BUF);
        w.mem.frame_mut_for_test(11)[..136].copy_from_slice(op.as_bytes());
        assert_eq!(w.call(SYSCTL, [RO_PAGE, 0, 0, 0, 0]), ret(Errno::EFAULT));
        assert!(untouched_after(&mut w, 0));
        assert_eq!(
            XenSysctl::read_from_bytes(&w.mem.frame_mut_for_test(11)[..136]).unwrap(),
            op
        );
        // The same, straddling the writable and the read-only page: not even its writable part changes.
        let mut w = world();
        let (head, tail) = op.as_bytes().split_at(100);
        w.mem.frame_mut_for_test(10)[0x1000 - 100..].copy_from_slice(head);
        w.mem.frame_mut_for_test(11)[..36].copy_from_slice(tail);
        let at = RW_PAGE + 0x1000 - 100;
        assert_eq!(w.call(SYSCTL, [at, 0, 0, 0, 0]), ret(Errno::EFAULT));
        assert_eq!(&w.mem.frame_mut_for_test(10)[0x1000 - 100..], head);
        let page = w.mem.frame_mut_for_test(10);
        assert!(page[..0x1000 - 100].iter().all(|&b| b == FILL));
    }

    #[test]
    fn other_argument_registers_are_ignored() {
        let mut w = world();
        put(&mut w, &XenSysctl::getdomaininfolist_request(0, 8, BUF));
        assert_eq!(
            w.call(SYSCTL, [OP, u64::MAX, u64::MAX, u64::MAX, u64::MAX]),
            Action::Return(0)
        );
        assert_eq!(num_domains(&mut w), 2);
    }

    #[test]
    fn works_inside_a_multicall() {
        let mut w = world();
        put(&mut w, &XenSysctl::getdomaininfolist_request(2, 8, BUF));
        let entry = MulticallEntry {
            op: SYSCTL,
            result: 0,
            args: [OP, 0, 0, 0, 0, 0],
        };
        let at = RW_PAGE + 0xf00;
        w.mem.frame_mut_for_test(10)[0xf00..0xf40].copy_from_slice(entry.as_bytes());
        assert_eq!(w.call(MULTICALL, [at, 1, 0, 0, 0]), Action::Return(0));
        let back =
            MulticallEntry::read_from_bytes(&w.mem.frame_mut_for_test(10)[0xf00..0xf40]).unwrap();
        assert_eq!(back.result, 0);
        assert_eq!(num_domains(&mut w), 1);
        assert_eq!(records(&mut w, 1)[0].domain, 2);
    }

    #[test]
    fn decode_is_pure_and_reads_the_union() {
        let mut op = XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST);
        op.set_getdomaininfolist(&XenSysctlGetdomaininfolist {
            first_domain: 4,
            max_domains: 3,
            buffer: 0x1234_5000,
            num_domains: 99,
            ..Default::default()
        });
        assert_eq!(
            decode(&op, true),
            Ok(SysctlRequest::GetDomainInfoList {
                first: 4,
                max: 3,
                buffer: Gva(0x1234_5000)
            })
        );
        assert_eq!(decode(&op, false), Err(Errno::EPERM));
    }
}
