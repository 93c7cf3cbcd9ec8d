//! Host tests of `domctl`: decoding, privilege, hostile pointers and ids, and what the handler does itself.

use super::super::testing::*;
use super::*;
use abi::domctl::{MAX_DOMAINS as ABI_MAX_DOMAINS, XEN_DOMCTL_SHADOW_OP};
use abi::hypercall::nr::DOMCTL;
use abi::sysctl::{XEN_DOMINF_PAUSED, XenDomctlGetdomaininfo};
use zerocopy::{FromBytes, IntoBytes};

use crate::domain::state::DomainState;
use crate::hypercall::DomainMm;

const OP: u64 = RW_PAGE;
const SIZE: usize = core::mem::size_of::<XenDomctl>();

fn ret(e: Errno) -> Action {
    Action::Return(e.as_ret())
}

fn world(privileged: bool) -> World {
    let mut w = World::new();
    w.privileged = privileged;
    w.sched.0.start(1, 256).unwrap();
    w.sched.0.start(2, 256).unwrap();
    w
}

fn call(w: &mut World, op: &XenDomctl) -> Action {
    w.mem.frame_mut_for_test(10)[..SIZE].copy_from_slice(op.as_bytes());
    w.call(DOMCTL, [OP, 0, 0, 0, 0])
}

fn envelope(w: &mut World) -> XenDomctl {
    XenDomctl::read_from_bytes(&w.mem.frame_mut_for_test(10)[..SIZE]).unwrap()
}

fn create(image: &str, kb: u64, cmdline: &str) -> XenDomctl {
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(&DomctlCreate::new(image, kb, cmdline, 0).unwrap());
    op
}

fn every_command() -> [XenDomctl; 8] {
    let mut ctxt = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, 2);
    ctxt.set_arg(&XenDomctlVcpucontext {
        ctxt: RW_PAGE + 0x400,
        ..Default::default()
    });
    let mut set = ctxt;
    set.cmd = XEN_DOMCTL_SETVCPUCONTEXT;
    [
        create("guest", 4096, "demo"),
        XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 2),
        XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, 2),
        XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, 2),
        XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 2),
        XenDomctl::new(XEN_DOMCTL_MAX_MEM, 2),
        ctxt,
        set,
    ]
}

#[test]
fn the_limit_is_the_abis() {
    assert_eq!(MAX_DOMAINS, ABI_MAX_DOMAINS);
    assert_eq!(crate::sched_policy::NR_VCPUS, ABI_MAX_DOMAINS);
}

#[test]
fn unprivileged_callers_get_eperm_for_every_command() {
    let mut w = world(false);
    for op in every_command() {
        assert_eq!(call(&mut w, &op), ret(Errno::EPERM), "cmd {}", op.cmd);
        assert_eq!(envelope(&mut w), op, "nothing written");
    }
    assert!(!w.sched.0.paused(2));
}

#[test]
fn wrong_interface_version_is_eacces_before_privilege() {
    for privileged in [false, true] {
        let mut w = world(privileged);
        for mut op in every_command() {
            for v in [0, 0x14, 0x16, u32::MAX] {
                op.interface_version = v;
                assert_eq!(call(&mut w, &op), ret(Errno::EACCES));
            }
        }
    }
}

#[test]
fn unknown_commands_are_enosys() {
    let mut w = world(true);
    for cmd in [0, 6, 7, 14, 99, u32::MAX] {
        assert_eq!(
            call(&mut w, &XenDomctl::new(cmd, 2)),
            ret(Errno::ENOSYS),
            "cmd {cmd}"
        );
    }
}

#[test]
fn log_dirty_is_a_command_on_another_domain() {
    let op = XenDomctl::new(XEN_DOMCTL_SHADOW_OP, 2);
    assert_eq!(
        decode(&op, true, 0),
        Ok(DomctlRequest::OnDomain(XEN_DOMCTL_SHADOW_OP, 2))
    );
    assert_eq!(decode(&op, false, 1), Err(Errno::EPERM));
    assert_eq!(decode(&op, true, 2), Err(Errno::EINVAL), "on itself");
}

#[test]
fn bad_envelope_pointers_fault() {
    let mut w = world(true);
    for at in [
        0,
        RO_PAGE + 0x1000,
        RO_PAGE + 4096 - 8,
        0xffff_8080_0000_0000,
        0x8000_0000_0000_0000,
        u64::MAX - 8,
    ] {
        assert_eq!(
            w.call(DOMCTL, [at, 0, 0, 0, 0]),
            ret(Errno::EFAULT),
            "{at:#x}"
        );
    }
    // A read-only envelope: getdomaininfo and createdomain must write it.
    let op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 2);
    w.mem.frame_mut_for_test(11)[..SIZE].copy_from_slice(op.as_bytes());
    assert_eq!(w.call(DOMCTL, [RO_PAGE, 0, 0, 0, 0]), ret(Errno::EFAULT));
    let op = create("guest", 4096, "");
    w.mem.frame_mut_for_test(11)[..SIZE].copy_from_slice(op.as_bytes());
    assert_eq!(w.call(DOMCTL, [RO_PAGE, 0, 0, 0, 0]), ret(Errno::EFAULT));
}

#[test]
fn bad_domain_ids() {
    let mut w = world(true);
    for d in [3u16, 7, MAX_DOMAINS as u16, 0x7ff0, 0x7ff2, u16::MAX] {
        for cmd in [
            XEN_DOMCTL_DESTROYDOMAIN,
            XEN_DOMCTL_PAUSEDOMAIN,
            XEN_DOMCTL_UNPAUSEDOMAIN,
            XEN_DOMCTL_GETDOMAININFO,
            XEN_DOMCTL_MAX_MEM,
        ] {
            assert_eq!(
                call(&mut w, &XenDomctl::new(cmd, d)),
                ret(Errno::ESRCH),
                "cmd {cmd} dom {d}"
            );
        }
    }
    // A stopped domain cannot be paused (it is about to be reaped).
    let mm = DomainMm {
        base: abi::types::Mfn(16),
        tot_pages: 0,
        max_pages: 3,
        shared_info: abi::types::Mfn(19),
        flush_tlb: false,
        preemptions: 0,
        time_offset_ns: 0,
    };
    w.others[5] = Some(other_domain(5, DomainState::Crashed, mm));
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, 5)),
        ret(Errno::ESRCH)
    );
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 5)),
        Action::Domctl(DomctlOp::Destroy(5))
    );
}

#[test]
fn acting_on_oneself_is_refused() {
    let mut w = world(true);
    for cmd in [
        XEN_DOMCTL_DESTROYDOMAIN,
        XEN_DOMCTL_PAUSEDOMAIN,
        XEN_DOMCTL_UNPAUSEDOMAIN,
    ] {
        assert_eq!(
            call(&mut w, &XenDomctl::new(cmd, 1)),
            ret(Errno::EINVAL),
            "cmd {cmd}"
        );
    }
    // Domain 0 destroying domain 0 is the same request, decoded with caller 0.
    let op = XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, 0);
    assert_eq!(decode(&op, true, 0), Err(Errno::EINVAL));
    let mut ctxt = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, 1);
    ctxt.set_arg(&XenDomctlVcpucontext {
        ctxt: RW_PAGE,
        ..Default::default()
    });
    assert_eq!(call(&mut w, &ctxt), ret(Errno::EINVAL));
    // Its own info is fine.
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 1)),
        Action::Return(0)
    );
    assert_eq!(envelope(&mut w).arg::<XenDomctlGetdomaininfo>().domain, 1);
}

#[test]
fn pause_and_unpause_show_in_the_info() {
    let mut w = world(true);
    let info = |w: &mut World| {
        assert_eq!(
            call(w, &XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 2)),
            Action::Return(0)
        );
        envelope(w).arg::<XenDomctlGetdomaininfo>()
    };
    assert_eq!(info(&mut w).flags & XEN_DOMINF_PAUSED, 0);
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, 2)),
        ret(Errno::EINVAL),
        "not paused"
    );
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, 2)),
        Action::Return(0)
    );
    assert!(w.sched.0.paused(2));
    let i = info(&mut w);
    assert_eq!(
        (i.domain, i.flags & XEN_DOMINF_PAUSED),
        (2, XEN_DOMINF_PAUSED)
    );
    assert_eq!(i.tot_pages, 3);
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, 2)),
        Action::Return(0)
    );
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, 2)),
        Action::Return(0)
    );
    assert!(!w.sched.0.paused(2));
    assert_eq!(info(&mut w).flags & XEN_DOMINF_PAUSED, 0);
}

#[test]
fn huge_and_tiny_memory_sizes_are_refused() {
    let mut w = world(true);
    for kb in [
        0,
        4,
        MIN_DOMAIN_MEM_KB - 4,
        MAX_DOMAIN_MEM_KB + 4,
        u64::MAX,
        u64::MAX - 3,
    ] {
        assert_eq!(
            call(&mut w, &create("guest", kb, "")),
            ret(Errno::EINVAL),
            "{kb} KiB"
        );
    }
    assert_eq!(
        call(&mut w, &create("guest", 4097 + 1, "")),
        ret(Errno::EINVAL),
        "not whole pages"
    );
    for kb in [MAX_DOMAIN_MEM_KB + 1, u64::MAX] {
        let mut op = XenDomctl::new(XEN_DOMCTL_MAX_MEM, 2);
        op.set_arg(&XenDomctlMaxMem { max_memkb: kb });
        assert_eq!(call(&mut w, &op), ret(Errno::EINVAL));
    }
    // Valid but more than the machine has free (the fake machine has 32 free frames).
    assert_eq!(call(&mut w, &create("guest", 4096, "")), ret(Errno::ENOMEM));
    let mut op = XenDomctl::new(XEN_DOMCTL_MAX_MEM, 2);
    op.set_arg(&XenDomctlMaxMem { max_memkb: 8192 });
    assert_eq!(call(&mut w, &op), Action::Domctl(DomctlOp::MaxMem(2, 2048)));
}

#[test]
fn garbage_create_arguments() {
    let mut w = world(true);
    let mut op = create("guest", 4096, "demo");
    let mut c: DomctlCreate = op.arg();
    c.flags = 2;
    op.set_arg(&c);
    assert_eq!(call(&mut w, &op), ret(Errno::EINVAL), "unknown flag");
    let mut c: DomctlCreate = create("guest", 4096, "demo").arg();
    c.cmdline_len = 97;
    op.set_arg(&c);
    assert_eq!(
        call(&mut w, &op),
        ret(Errno::EINVAL),
        "command line too long"
    );
    c.cmdline_len = u32::MAX;
    op.set_arg(&c);
    assert_eq!(call(&mut w, &op), ret(Errno::EINVAL));
    let mut c: DomctlCreate = create("guest", 4096, "demo").arg();
    c.cmdline[1] = 0xff;
    op.set_arg(&c);
    assert_eq!(call(&mut w, &op), ret(Errno::EINVAL), "not UTF-8");
    let mut c: DomctlCreate = create("guest", 4096, "demo").arg();
    c.image = [0; 16];
    op.set_arg(&c);
    assert_eq!(call(&mut w, &op), ret(Errno::EINVAL), "no image name");
    c.image = [0xc3; 16];
    op.set_arg(&c);
    assert_eq!(
        call(&mut w, &op),
        ret(Errno::EINVAL),
        "image name not UTF-8"
    );
    let ok = decode_create(&create("guest", 8192, "ticker").arg()).unwrap();
    assert_eq!(
        (ok.image.as_str(), ok.pages, ok.cmdline.as_str()),
        ("guest", 2048, "ticker")
    );
}

#[test]
fn create_needs_a_free_id() {
    let mut w = world(true);
    let mm = DomainMm {
        base: abi::types::Mfn(16),
        tot_pages: 3,
        max_pages: 3,
        shared_info: abi::types::Mfn(19),
        flush_tlb: false,
        preemptions: 0,
        time_offset_ns: 0,
    };
    for i in (0..MAX_DOMAINS).filter(|&i| i != 1) {
        w.others[i] = Some(other_domain(i as u16, DomainState::Runnable, mm));
    }
    let small = create("guest", MIN_DOMAIN_MEM_KB, "");
    assert_eq!(
        call(&mut w, &small),
        ret(Errno::ENOSPC),
        "the table is full"
    );
    w.others[77] = None;
    // A free id, but the fake machine's 32 free frames are too few for 2 MiB.
    assert_eq!(call(&mut w, &small), ret(Errno::ENOMEM));
}

#[test]
fn vcpu_context_requests() {
    let mut w = world(true);
    let mut op = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, 2);
    for (vcpu, ctxt, want) in [
        (1, RW_PAGE, Errno::EINVAL),
        (u32::MAX, RW_PAGE, Errno::EINVAL),
        (0, 0, Errno::EFAULT),
        // 5168 bytes from the writable page run into the read-only one.
        (0, RW_PAGE + 0x200, Errno::EFAULT),
        (0, 0xffff_8080_0000_0000, Errno::EFAULT),
    ] {
        op.set_arg(&XenDomctlVcpucontext {
            vcpu,
            ctxt,
            ..Default::default()
        });
        assert_eq!(call(&mut w, &op), ret(want), "get vcpu {vcpu} at {ctxt:#x}");
    }
    // Setting needs a paused target.
    op.cmd = XEN_DOMCTL_SETVCPUCONTEXT;
    op.set_arg(&XenDomctlVcpucontext {
        ctxt: RW_PAGE + 0x200,
        ..Default::default()
    });
    assert_eq!(call(&mut w, &op), ret(Errno::EINVAL), "not paused");
    w.sched.0.set_paused(2, true).unwrap();
    assert_eq!(
        call(&mut w, &op),
        ret(Errno::EINVAL),
        "a readable context with another CR3"
    );
    op.set_arg(&XenDomctlVcpucontext {
        ctxt: RO_PAGE + 0x800,
        ..Default::default()
    });
    assert_eq!(
        call(&mut w, &op),
        ret(Errno::EFAULT),
        "runs into unmapped memory"
    );
}

#[test]
fn console_input_goes_to_a_live_domain_only() {
    let mut w = world(false);
    let op = XenDomctl::new(abi::domctl::XEN_DOMCTL_CONSOLE_INPUT, 2);
    assert_eq!(call(&mut w, &op), ret(Errno::EPERM));
    let mut w = world(true);
    for d in [3u16, MAX_DOMAINS as u16, u16::MAX] {
        let op = XenDomctl::new(abi::domctl::XEN_DOMCTL_CONSOLE_INPUT, d);
        assert_eq!(call(&mut w, &op), ret(Errno::ESRCH), "domain {d}");
    }
    assert_eq!(crate::console::input_owner(), 0, "unchanged by refusals");
    assert_eq!(call(&mut w, &op), Action::Return(0));
    assert_eq!(crate::console::input_owner(), 2);
    // The caller may take it back.
    let back = XenDomctl::new(abi::domctl::XEN_DOMCTL_CONSOLE_INPUT, 1);
    assert_eq!(call(&mut w, &back), Action::Return(0));
    assert_eq!(crate::console::input_owner(), 1);
    crate::console::set_input_owner(0);
}

#[test]
fn save_commands_decode_and_are_refused_on_oneself_and_for_the_unprivileged() {
    use abi::domctl::{
        XEN_DOMCTL_IMAGE_DELETE, XEN_DOMCTL_IMAGE_DUMP, XEN_DOMCTL_IMAGE_LIST,
        XEN_DOMCTL_IMAGE_PUT, XEN_DOMCTL_RESTORE, XEN_DOMCTL_RESUMEDOMAIN, XEN_DOMCTL_SAVE,
        XEN_DOMCTL_SUSPEND_REQUEST,
    };
    let on_domain = [
        XEN_DOMCTL_SUSPEND_REQUEST,
        XEN_DOMCTL_RESUMEDOMAIN,
        XEN_DOMCTL_SAVE,
    ];
    let store = [
        XEN_DOMCTL_RESTORE,
        XEN_DOMCTL_IMAGE_PUT,
        XEN_DOMCTL_IMAGE_DELETE,
        XEN_DOMCTL_IMAGE_LIST,
        XEN_DOMCTL_IMAGE_DUMP,
    ];
    for cmd in on_domain {
        assert_eq!(
            decode(&XenDomctl::new(cmd, 2), true, 0),
            Ok(DomctlRequest::OnDomain(cmd, 2))
        );
        assert_eq!(decode(&XenDomctl::new(cmd, 0), true, 0), Err(Errno::EINVAL));
        assert_eq!(
            decode(&XenDomctl::new(cmd, ABI_MAX_DOMAINS as u16), true, 0),
            Err(Errno::ESRCH)
        );
    }
    for cmd in store {
        assert_eq!(
            decode(&XenDomctl::new(cmd, 9), true, 0),
            Ok(DomctlRequest::Image(cmd))
        );
    }
    for cmd in on_domain.into_iter().chain(store) {
        assert_eq!(decode(&XenDomctl::new(cmd, 2), false, 3), Err(Errno::EPERM));
    }
    // The handler checks the target and hands a save on to the trap code with the envelope's address.
    let mut w = world(true);
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_SAVE, 2)),
        Action::Domctl(DomctlOp::Save(XEN_DOMCTL_SAVE, 2, Gva(OP)))
    );
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_SAVE, 5)),
        ret(Errno::ESRCH),
        "no domain 5"
    );
    assert_eq!(
        call(&mut w, &XenDomctl::new(XEN_DOMCTL_IMAGE_LIST, 0)),
        Action::Domctl(DomctlOp::Save(XEN_DOMCTL_IMAGE_LIST, 0, Gva(OP)))
    );
}
