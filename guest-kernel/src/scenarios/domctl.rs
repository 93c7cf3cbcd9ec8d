//! Domain control (`domctl`, hypercall 36). Scenario `test=domctl-hostile`: every other domain is refused
//! every command (-EPERM, even with garbage); domain 0 sends garbage — bad envelope pointers (-EFAULT),
//! wrong interface versions (-EACCES), unknown commands (-ENOSYS), ids past the limit
//! (-ESRCH), acting on itself (-EINVAL), sizes out of range (-EINVAL), an unknown image (-ENOENT), a
//! domain larger than the free memory (-ENOMEM; the memory of a destroyed one is free again) — and
//! sees itself still listed and running afterwards. Scenario `test=tick-forever`: print `tick N` every 100 ms until
//! destroyed (for `xl pause`: no ticks while paused).

use abi::domctl::{
    DomctlCreate, MAX_DOMAIN_MEM_KB, MAX_DOMAINS, XEN_DOMCTL_CREATEDOMAIN,
    XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_GETVCPUCONTEXT,
    XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_PAUSEDOMAIN,
    XEN_DOMCTL_SETVCPUCONTEXT, XEN_DOMCTL_SHADOW_OP, XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl,
    XenDomctlMaxMem, XenDomctlVcpucontext,
};
use abi::errno::Errno;
use abi::hypercall::nr;
use abi::sysctl::{XEN_DOMINF_RUNNING, XenDomctlGetdomaininfo};

use crate::boot::facts;
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

fn domctl_at(at: u64) -> Option<Errno> {
    let r = raw(nr::DOMCTL, [at, 0, 0, 0, 0]);
    if r < 0 { Errno::from_ret(r) } else { None }
}

fn domctl(op: &mut XenDomctl) -> Option<Errno> {
    domctl_at(op as *mut XenDomctl as u64)
}

fn expect(r: &mut Results, what: &str, got: Option<Errno>, want: Option<Errno>) {
    if r.check(got == want) {
        println!("  ok   {what}: {got:?}");
    } else {
        println!("  FAIL {what}: {got:?}, expected {want:?}");
    }
}

fn create(image: &str, kb: u64) -> XenDomctl {
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(&DomctlCreate::new(image, kb, "demo", 0).unwrap_or_default());
    op
}

fn every_command(target: u16) -> [XenDomctl; 9] {
    let mut ctxt = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, target);
    ctxt.set_arg(&XenDomctlVcpucontext {
        ctxt: 0x1000,
        ..Default::default()
    });
    let mut set = ctxt;
    set.cmd = XEN_DOMCTL_SETVCPUCONTEXT;
    let mut mem = XenDomctl::new(XEN_DOMCTL_MAX_MEM, target);
    mem.set_arg(&XenDomctlMaxMem { max_memkb: 1 << 20 });
    [
        create("guest", 4096),
        XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, target),
        XenDomctl::new(XEN_DOMCTL_PAUSEDOMAIN, target),
        XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, target),
        XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, target),
        mem,
        ctxt,
        set,
        XenDomctl::new(XEN_DOMCTL_SHADOW_OP, target),
    ]
}

/// `domctl-hostile`: see the module documentation.
pub fn domctl_hostile(_cmdline: &str, r: &mut Results) {
    let me = facts().domid as u16;
    if me != 0 {
        for target in [0, me, 1, 200] {
            for mut op in every_command(target) {
                let cmd = op.cmd;
                expect(
                    r,
                    &alloc_free_label("unprivileged cmd", cmd, target),
                    domctl(&mut op),
                    Some(Errno::EPERM),
                );
            }
        }
        return;
    }
    for (what, at) in [
        ("null envelope", 0),
        ("envelope at the hypervisor's image", 0x20_0000),
        ("envelope in the entry region", abi::layout::ENTRY_REGION_VA),
        ("non-canonical envelope", 0x0000_8000_0000_0000),
        ("envelope at the top of memory", u64::MAX - 64),
    ] {
        expect(r, what, domctl_at(at), Some(Errno::EFAULT));
    }
    for v in [
        0,
        XEN_DOMCTL_INTERFACE_VERSION - 1,
        XEN_DOMCTL_INTERFACE_VERSION + 1,
        u32::MAX,
    ] {
        let mut op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 0);
        op.interface_version = v;
        expect(
            r,
            "wrong interface version",
            domctl(&mut op),
            Some(Errno::EACCES),
        );
    }
    for cmd in [0, 99, u32::MAX] {
        expect(
            r,
            "unknown command",
            domctl(&mut XenDomctl::new(cmd, 1)),
            Some(Errno::ENOSYS),
        );
    }
    for d in [MAX_DOMAINS as u16, 0x7ff0, u16::MAX] {
        for cmd in [
            XEN_DOMCTL_DESTROYDOMAIN,
            XEN_DOMCTL_PAUSEDOMAIN,
            XEN_DOMCTL_GETDOMAININFO,
        ] {
            expect(
                r,
                "a domain id past the limit",
                domctl(&mut XenDomctl::new(cmd, d)),
                Some(Errno::ESRCH),
            );
        }
    }
    for cmd in [
        XEN_DOMCTL_DESTROYDOMAIN,
        XEN_DOMCTL_PAUSEDOMAIN,
        XEN_DOMCTL_UNPAUSEDOMAIN,
    ] {
        expect(
            r,
            "acting on itself (domain 0)",
            domctl(&mut XenDomctl::new(cmd, 0)),
            Some(Errno::EINVAL),
        );
    }
    for kb in [0, 4, MAX_DOMAIN_MEM_KB + 4, u64::MAX - 3] {
        expect(
            r,
            "createdomain with a memory size out of range",
            domctl(&mut create("guest", kb)),
            Some(Errno::EINVAL),
        );
    }
    let mut mem = XenDomctl::new(XEN_DOMCTL_MAX_MEM, 0);
    mem.set_arg(&XenDomctlMaxMem {
        max_memkb: u64::MAX,
    });
    expect(
        r,
        "max_mem of 2^64-1 KiB",
        domctl(&mut mem),
        Some(Errno::EINVAL),
    );
    expect(
        r,
        "createdomain from an unknown image",
        domctl(&mut create("no-such-image", 4096)),
        Some(Errno::ENOENT),
    );
    // Memory runs out: a 256 MiB domain (paused, so it costs no CPU) fits once, not twice.
    let mut big = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    big.set_arg(
        &DomctlCreate::new(
            "guest",
            MAX_DOMAIN_MEM_KB,
            "test=idle-forever",
            abi::domctl::DOMCTL_CREATE_PAUSED,
        )
        .unwrap_or_default(),
    );
    let first = domctl(&mut big);
    let id = big.domain;
    expect(r, "a 256 MiB domain", first, None);
    let mut again = big;
    expect(
        r,
        "a second 256 MiB domain: not enough memory",
        domctl(&mut again),
        Some(Errno::ENOMEM),
    );
    if first.is_none() {
        expect(
            r,
            "destroy the big domain",
            domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, id)),
            None,
        );
        let mut third = big;
        expect(
            r,
            "its memory is free again: a 256 MiB domain fits",
            domctl(&mut third),
            None,
        );
        let _ = domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, third.domain));
    }
    let mut ctxt = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, 1);
    ctxt.set_arg(&XenDomctlVcpucontext {
        vcpu: 0,
        ctxt: 0x20_0000,
        ..Default::default()
    });
    let want = if domain_exists(1) {
        Some(Errno::EFAULT)
    } else {
        Some(Errno::ESRCH)
    };
    expect(
        r,
        "getvcpucontext into the hypervisor's image",
        domctl(&mut ctxt),
        want,
    );
    let mut info = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, 0);
    let ok = domctl(&mut info).is_none()
        && info.arg::<XenDomctlGetdomaininfo>().flags & XEN_DOMINF_RUNNING != 0;
    expect(
        r,
        "domain 0 still listed and running",
        if ok { None } else { Some(Errno::EIO) },
        None,
    );
}

fn domain_exists(d: u16) -> bool {
    domctl(&mut XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d)).is_none()
}

/// "what cmd N on domain D" in a fixed buffer.
fn alloc_free_label(what: &str, cmd: u32, target: u16) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("{what} {cmd} on domain {target}"));
    s
}

/// `tick-forever`: see the module documentation.
pub fn tick_forever(_cmdline: &str, _r: &mut Results) {
    let mut n = 0u64;
    loop {
        n += 1;
        println!("tick {n} at {} ms", crate::time::now() / 1_000_000);
        if let Err(e) = crate::time::sleep(100_000_000) {
            println!("tick-forever: sleep failed: {e:?}");
            return;
        }
    }
}

/// `idle-forever`: boot, then sleep until destroyed (the cheapest live domain, for `domctl-limit`).
pub fn idle_forever(_cmdline: &str, _r: &mut Results) {
    while crate::time::sleep(10_000_000_000).is_ok() {}
}

/// `domctl-limit` (domain 0): create 2 MiB `idle-forever` domains from image `guest` until the hypervisor
/// refuses; the refusal must be -ENOSPC after exactly `MAX_DOMAINS - 1` domains (ids 1, 2, ... in order),
/// with every domain listed; then destroy them all, see the list shrink to domain 0, and see an id freed
/// by destroy used again.
pub fn domctl_limit(_cmdline: &str, r: &mut Results) {
    let mut made = 0usize;
    let mut in_order = true;
    let refusal = loop {
        let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
        op.set_arg(&DomctlCreate::new("guest", 2048, "test=idle-forever", 0).unwrap_or_default());
        match domctl(&mut op) {
            None => {
                made += 1;
                in_order &= usize::from(op.domain) == made;
            }
            Some(e) => break e,
        }
        if made > MAX_DOMAINS {
            break Errno::EIO;
        }
    };
    println!("  created {made} domains, then {refusal:?}");
    expect(
        r,
        "the refusal past the limit",
        Some(refusal),
        Some(Errno::ENOSPC),
    );
    let want = MAX_DOMAINS - 1;
    let ok = made == want && in_order;
    expect(
        r,
        "MAX_DOMAINS - 1 domains created, ids in order",
        if ok { None } else { Some(Errno::EIO) },
        None,
    );
    let listed = (0..MAX_DOMAINS as u16)
        .filter(|&d| domain_exists(d))
        .count();
    println!("  {listed} domains listed");
    expect(
        r,
        "every domain listed",
        if listed == MAX_DOMAINS {
            None
        } else {
            Some(Errno::EIO)
        },
        None,
    );
    let mut destroyed = 0;
    for d in 1..MAX_DOMAINS as u16 {
        if domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, d)).is_none() {
            destroyed += 1;
        }
    }
    println!("  destroyed {destroyed}");
    let listed = (0..MAX_DOMAINS as u16)
        .filter(|&d| domain_exists(d))
        .count();
    expect(
        r,
        "only domain 0 left",
        if listed == 1 { None } else { Some(Errno::EIO) },
        None,
    );
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(&DomctlCreate::new("guest", 2048, "test=idle-forever", 0).unwrap_or_default());
    let again = domctl(&mut op);
    expect(
        r,
        "a freed id is used again (domain 1)",
        again.or((op.domain != 1).then_some(Errno::EIO)),
        None,
    );
    let _ = domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, op.domain));
}

/// `domctl-vcpu` (domain 0): create a domain paused from image `guest`, read its vCPU context (the start
/// of day: RIP at the kernel's entry, RSI the start_info address, ring-1 selectors), refuse a context with
/// another page-table base, write the same context back with a marker in R15 and read it again, raise
/// its memory ceiling, unpause it and see it run, then destroy it.
pub fn domctl_vcpu(_cmdline: &str, r: &mut Results) {
    let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
    op.set_arg(
        &DomctlCreate::new(
            "guest",
            4096,
            "test=idle-forever",
            abi::domctl::DOMCTL_CREATE_PAUSED,
        )
        .unwrap_or_default(),
    );
    expect(r, "createdomain, paused", domctl(&mut op), None);
    let d = op.domain;
    let mut ctx = <abi::domctl::VcpuGuestContext as zerocopy::FromZeros>::new_zeroed();
    let mut get = XenDomctl::new(XEN_DOMCTL_GETVCPUCONTEXT, d);
    get.set_arg(&XenDomctlVcpucontext {
        ctxt: &raw mut ctx as u64,
        ..Default::default()
    });
    expect(r, "getvcpucontext", domctl(&mut get), None);
    let u = ctx.user_regs;
    println!(
        "  domain {d}: rip {:#x} rsi {:#x} rsp {:#x} cs {:#x} ss {:#x} cr3 {:#x}",
        u.rip, u.rsi, u.rsp, u.cs, u.ss, ctx.ctrlreg[3]
    );
    let start = u.rip == crate::arch::x86_64::entry::pv_entry()
        && u.rsi > u.rip
        && u.cs == abi::layout::GUEST_KERNEL_CS
        && u.ss == abi::layout::GUEST_KERNEL_SS
        && ctx.ctrlreg[3] != 0;
    expect(
        r,
        "the start of day",
        if start { None } else { Some(Errno::EIO) },
        None,
    );
    let mut info = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d);
    let paused = domctl(&mut info).is_none()
        && info.arg::<XenDomctlGetdomaininfo>().flags & abi::sysctl::XEN_DOMINF_PAUSED != 0;
    expect(
        r,
        "listed as paused",
        if paused { None } else { Some(Errno::EIO) },
        None,
    );
    let mut bad = ctx;
    bad.ctrlreg[3] += 0x1000;
    let mut set = XenDomctl::new(XEN_DOMCTL_SETVCPUCONTEXT, d);
    set.set_arg(&XenDomctlVcpucontext {
        ctxt: &raw const bad as u64,
        ..Default::default()
    });
    expect(
        r,
        "setvcpucontext with another page-table base",
        domctl(&mut set),
        Some(Errno::EINVAL),
    );
    let mut marked = ctx;
    marked.user_regs.r15 = 0x1501_f00d;
    set.set_arg(&XenDomctlVcpucontext {
        ctxt: &raw const marked as u64,
        ..Default::default()
    });
    expect(r, "setvcpucontext", domctl(&mut set), None);
    ctx = <abi::domctl::VcpuGuestContext as zerocopy::FromZeros>::new_zeroed();
    expect(r, "getvcpucontext again", domctl(&mut get), None);
    let same = ctx.user_regs.r15 == 0x1501_f00d && ctx.user_regs.rip == u.rip;
    expect(
        r,
        "the context set is the context read",
        if same { None } else { Some(Errno::EIO) },
        None,
    );
    let mut mem = XenDomctl::new(XEN_DOMCTL_MAX_MEM, d);
    mem.set_arg(&XenDomctlMaxMem { max_memkb: 8192 });
    expect(r, "max_mem 8 MiB", domctl(&mut mem), None);
    let mut info = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d);
    let _ = domctl(&mut info);
    let i = info.arg::<XenDomctlGetdomaininfo>();
    expect(
        r,
        "its ceiling is 2048 pages, it holds 1024",
        if (i.max_pages, i.tot_pages) == (2048, 1024) {
            None
        } else {
            Some(Errno::EIO)
        },
        None,
    );
    expect(
        r,
        "unpause",
        domctl(&mut XenDomctl::new(XEN_DOMCTL_UNPAUSEDOMAIN, d)),
        None,
    );
    let _ = crate::time::sleep(300_000_000);
    let _ = domctl(&mut info);
    let ran = info.arg::<XenDomctlGetdomaininfo>().cpu_time > 0;
    expect(
        r,
        "it ran after the unpause",
        if ran { None } else { Some(Errno::EIO) },
        None,
    );
    expect(
        r,
        "destroy",
        domctl(&mut XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, d)),
        None,
    );
    expect(
        r,
        "gone",
        if domain_exists(d) {
            Some(Errno::EIO)
        } else {
            None
        },
        None,
    );
}
