//! Host tests of the trap, event and time hypercalls: `set_trap_table`, `stack_switch`, `set_callbacks`,
//! `callback_op`, `iret`, `set_segment_base`, `event_channel_op`, `set_timer_op`, `vcpu_op`, `sched_op`
//! block/poll and console input — what they do and what they refuse.

use abi::callback::{CALLBACKOP_REGISTER, CALLBACKTYPE_EVENT, CallbackRegister};
use abi::console::CONSOLEIO_READ;
use abi::errno::Errno;
use abi::event_channel::*;
use abi::hypercall::nr;
use abi::sched::{SCHEDOP_BLOCK, SCHEDOP_POLL, SchedPoll};
use abi::types::Maddr;
use abi::vcpu::*;
use abi::xen::{DOMID_SELF, IretContext, SEGBASE_FS, TrapInfo};
use zerocopy::IntoBytes;

use super::Action;
use super::testing::{FrameForTest, RO_PAGE, RW_PAGE, World};
use crate::sched_policy::RunState;

const ARG: u64 = RW_PAGE + 0x100;
const HANDLER: u64 = 0xffff_ffff_8000_1000;

fn err(e: Errno) -> Action {
    Action::Return(e.as_ret())
}

fn put(w: &mut World, va: u64, bytes: &[u8]) {
    w.mem.write_bytes(Maddr(10 * 4096 + (va - RW_PAGE)), bytes);
}

fn get<T: zerocopy::FromBytes + IntoBytes>(w: &mut World, va: u64) -> T {
    crate::mm::guest_mem::GuestView::new(&mut w.mem, w.dom.base, false)
        .read_obj(abi::types::Gva(va))
        .unwrap()
}

#[test]
fn trap_table_is_checked_whole_before_use() {
    let mut w = World::new();
    let t = |vector, address, flags| TrapInfo {
        vector,
        flags,
        cs: 0x19,
        address,
        ..Default::default()
    };
    let good = [t(14, HANDLER, 4), t(0x80, HANDLER + 0x10, 3), t(0, 0, 0)];
    put(&mut w, ARG, good.as_bytes());
    assert_eq!(
        w.call(nr::SET_TRAP_TABLE, [ARG, 0, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.vcpu.traps[14].address, HANDLER);
    assert!(w.vcpu.traps[14].mask_events);
    assert_eq!(w.vcpu.direct_gate(), Some(HANDLER + 0x10));
    // A bad entry anywhere refuses the whole table: nothing changes.
    for bad in [
        0x0000_8000_0000_0000,
        abi::layout::ENTRY_REGION_VA,
        abi::mm::RO_MPT_VIRT_START,
    ] {
        let table = [t(3, HANDLER + 0x20, 3), t(13, bad, 0), t(0, 0, 0)];
        put(&mut w, ARG, table.as_bytes());
        assert_eq!(
            w.call(nr::SET_TRAP_TABLE, [ARG, 0, 0, 0, 0]),
            err(Errno::EINVAL),
            "{bad:#x}"
        );
        assert_eq!(w.vcpu.traps[3].address, 0);
    }
    let ring0 = [
        TrapInfo {
            cs: 0x08,
            ..t(3, HANDLER, 0)
        },
        t(0, 0, 0),
    ];
    put(&mut w, ARG, ring0.as_bytes());
    assert_eq!(
        w.call(nr::SET_TRAP_TABLE, [ARG, 0, 0, 0, 0]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.call(nr::SET_TRAP_TABLE, [0x1000, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    // A table without a terminator that runs into unmapped memory faults.
    w.mem
        .write_bytes(Maddr(11 * 4096 + 0xff0), t(3, HANDLER, 3).as_bytes());
    assert_eq!(
        w.call(nr::SET_TRAP_TABLE, [RO_PAGE + 0xff0, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    assert_eq!(w.vcpu.traps[3].address, 0);
    // Null clears.
    assert_eq!(
        w.call(nr::SET_TRAP_TABLE, [0, 0, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.vcpu.direct_gate(), None);
}

#[test]
fn stacks_callbacks_and_segment_bases() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::STACK_SWITCH, [0x21, HANDLER, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.vcpu.kernel_sp, HANDLER);
    for (ss, sp) in [
        (0x10, HANDLER),
        (0x21, 0),
        (0x21, 0x0000_8000_0000_0000),
        (0x21, abi::layout::ENTRY_REGION_VA),
    ] {
        assert_eq!(
            w.call(nr::STACK_SWITCH, [ss, sp, 0, 0, 0]),
            err(Errno::EINVAL),
            "{ss:#x} {sp:#x}"
        );
    }
    assert_eq!(
        w.call(nr::SET_CALLBACKS, [HANDLER, 0, HANDLER + 8, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(
        (w.vcpu.event_callback, w.vcpu.syscall_callback),
        (HANDLER, HANDLER + 8)
    );
    assert_eq!(
        w.call(
            nr::SET_CALLBACKS,
            [HANDLER, abi::layout::ENTRY_REGION_VA, 0, 0, 0]
        ),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.vcpu.event_callback, HANDLER,
        "a refused call changes nothing"
    );
    let reg = CallbackRegister {
        r#type: CALLBACKTYPE_EVENT,
        address: HANDLER + 0x40,
        ..Default::default()
    };
    put(&mut w, ARG, reg.as_bytes());
    assert_eq!(
        w.call(nr::CALLBACK_OP, [CALLBACKOP_REGISTER, ARG, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.vcpu.event_callback, HANDLER + 0x40);
    let bad = CallbackRegister {
        r#type: 99,
        address: HANDLER,
        ..Default::default()
    };
    put(&mut w, ARG, bad.as_bytes());
    assert_eq!(
        w.call(nr::CALLBACK_OP, [CALLBACKOP_REGISTER, ARG, 0, 0, 0]),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.call(nr::SET_SEGMENT_BASE, [SEGBASE_FS, 0x7000, 0, 0, 0]),
        Action::Return(0)
    );
    assert!(w.vcpu.segments_dirty);
    assert_eq!(
        w.call(
            nr::SET_SEGMENT_BASE,
            [SEGBASE_FS, 0x0000_8000_0000_0000, 0, 0, 0]
        ),
        err(Errno::EINVAL)
    );
    assert_eq!(
        w.call(nr::SET_SEGMENT_BASE, [9, 0, 0, 0, 0]),
        err(Errno::EINVAL)
    );
}

#[test]
fn iret_restores_and_sanitizes() {
    let mut w = World::new();
    let c = IretContext {
        rax: 7,
        rip: HANDLER,
        cs: 0x08,
        rflags: u64::MAX,
        rsp: RW_PAGE + 0x800,
        ss: 0,
        ..Default::default()
    };
    put(&mut w, ARG, c.as_bytes());
    w.regs.rsp = ARG;
    w.mem.frame_mut_for_test(15)[1] = 1;
    assert_eq!(w.call(nr::IRET, [0; 5]), Action::Resume);
    assert_eq!(
        (w.regs.rax, w.regs.rip, w.regs.cs, w.regs.rsp),
        (7, HANDLER, 0x19, RW_PAGE + 0x800)
    );
    assert_eq!(w.regs.rflags & crate::regs::rflags::IOPL, 0);
    assert_eq!(
        w.mem.frame_mut_for_test(15)[1],
        0,
        "IF set in the context unmasks events"
    );
    let bad = IretContext {
        rip: 0x0000_8000_0000_0000,
        ..c
    };
    put(&mut w, ARG, bad.as_bytes());
    w.regs.rsp = ARG;
    assert!(matches!(w.call(nr::IRET, [0; 5]), Action::Crash(_)));
    w.regs.rsp = 0x1000;
    assert!(matches!(w.call(nr::IRET, [0; 5]), Action::Crash(_)));
}

fn evtchn(w: &mut World, cmd: u64, arg: &[u8]) -> Action {
    put(w, ARG, arg);
    w.call(nr::EVENT_CHANNEL_OP, [cmd, ARG, 0, 0, 0])
}

#[test]
fn event_channels_through_the_hypercall() {
    let mut w = World::new();
    let a = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 2,
        port: 0,
    };
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_ALLOC_UNBOUND, a.as_bytes()),
        Action::Return(0)
    );
    let out: EvtchnAllocUnbound = get(&mut w, ARG);
    assert_ne!(out.port, 0);
    // A VIRQ, then a send to an IPI port sets our own pending bit and selector.
    let v = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_BIND_VIRQ, v.as_bytes()),
        Action::Return(0)
    );
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_BIND_VIRQ, v.as_bytes()),
        err(Errno::EEXIST)
    );
    let ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_BIND_IPI, ipi.as_bytes()),
        Action::Return(0)
    );
    let port = get::<EvtchnBindIpi>(&mut w, ARG).port;
    w.mem.frame_mut_for_test(15)[1] = 0;
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_SEND, EvtchnSend { port }.as_bytes()),
        Action::Return(0)
    );
    let si = w.mem.frame_mut_for_test(15);
    assert_eq!(si[0], 1, "upcall pending");
    assert_ne!(
        si[0x800 + (port as usize / 8)] & (1 << (port % 8)),
        0,
        "port pending"
    );
    // Hostile: ports out of range, free ports, another domain, unknown commands, bad pointers.
    for p in [0u32, 1023, 1024, 4096, u32::MAX] {
        assert_eq!(
            evtchn(&mut w, EVTCHNOP_SEND, EvtchnSend { port: p }.as_bytes()),
            err(Errno::EINVAL),
            "port {p}"
        );
        assert_eq!(
            evtchn(&mut w, EVTCHNOP_CLOSE, EvtchnClose { port: p }.as_bytes()),
            err(Errno::EINVAL),
            "port {p}"
        );
    }
    let foreign = EvtchnAllocUnbound {
        dom: 2,
        remote_dom: 1,
        port: 0,
    };
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_ALLOC_UNBOUND, foreign.as_bytes()),
        err(Errno::EPERM)
    );
    let nobody = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 5,
        port: 0,
    };
    assert_eq!(
        evtchn(&mut w, EVTCHNOP_ALLOC_UNBOUND, nobody.as_bytes()),
        err(Errno::ESRCH)
    );
    assert_eq!(
        w.call(nr::EVENT_CHANNEL_OP, [99, ARG, 0, 0, 0]),
        err(Errno::ENOSYS)
    );
    assert_eq!(
        w.call(nr::EVENT_CHANNEL_OP, [EVTCHNOP_SEND, 0x1000, 0, 0, 0]),
        err(Errno::EFAULT)
    );
}

#[test]
fn timers_block_and_poll() {
    let mut w = World::new();
    w.sched.0.start(1, 256).unwrap();
    w.now_ns = 1_000_000;
    assert_eq!(
        w.call(nr::SET_TIMER_OP, [5_000_000, 0, 0, 0, 0]),
        Action::Return(0)
    );
    assert_eq!(w.sched.0.singleshot(1), Some(5_000_000));
    assert_eq!(w.call(nr::SET_TIMER_OP, [0, 0, 0, 0, 0]), Action::Return(0));
    assert_eq!(w.sched.0.singleshot(1), None);
    let t = VcpuSetSingleshotTimer {
        timeout_abs_ns: 10,
        flags: VCPU_SSHOTTMR_FUTURE,
        ..Default::default()
    };
    put(&mut w, ARG, t.as_bytes());
    assert_eq!(
        w.call(nr::VCPU_OP, [VCPUOP_SET_SINGLESHOT_TIMER, 0, ARG, 0, 0]),
        err(Errno::ETIME)
    );
    assert_eq!(
        w.call(nr::VCPU_OP, [VCPUOP_SET_SINGLESHOT_TIMER, 1, ARG, 0, 0]),
        err(Errno::ENOENT)
    );
    assert_eq!(
        w.call(nr::VCPU_OP, [VCPUOP_SET_SINGLESHOT_TIMER, 0, 0x1000, 0, 0]),
        err(Errno::EFAULT)
    );
    let p = VcpuSetPeriodicTimer { period_ns: 10 };
    put(&mut w, ARG, p.as_bytes());
    assert_eq!(
        w.call(nr::VCPU_OP, [VCPUOP_SET_PERIODIC_TIMER, 0, ARG, 0, 0]),
        err(Errno::EINVAL)
    );
    // Block with nothing pending sleeps and unmasks events; with something pending it returns at once.
    w.mem.frame_mut_for_test(15)[1] = 1;
    assert_eq!(
        w.call(nr::SCHED_OP, [SCHEDOP_BLOCK, 0, 0, 0, 0]),
        Action::Yield
    );
    assert_eq!(w.mem.frame_mut_for_test(15)[1], 0);
    assert!(matches!(w.sched.0.state(1), Some(RunState::Blocked { .. })));
    w.sched.0.wake(1);
    w.mem.frame_mut_for_test(15)[0] = 1;
    assert_eq!(
        w.call(nr::SCHED_OP, [SCHEDOP_BLOCK, 0, 0, 0, 0]),
        Action::Return(0)
    );
    // Poll: hostile counts and pointers.
    let ports = [3u32, 4];
    put(&mut w, ARG + 0x40, ports.as_bytes());
    for (n, at) in [(0u32, ARG + 0x40), (17, ARG + 0x40), (2, 0x1000)] {
        let sp = SchedPoll {
            ports: at,
            nr_ports: n,
            timeout: 0,
            ..Default::default()
        };
        put(&mut w, ARG, sp.as_bytes());
        assert!(
            matches!(w.call(nr::SCHED_OP, [SCHEDOP_POLL, ARG, 0, 0, 0]), Action::Return(r) if r < 0),
            "{n} {at:#x}"
        );
    }
    let big = [4096u32];
    put(&mut w, ARG + 0x40, big.as_bytes());
    let sp = SchedPoll {
        ports: ARG + 0x40,
        nr_ports: 1,
        timeout: 0,
        ..Default::default()
    };
    put(&mut w, ARG, sp.as_bytes());
    assert_eq!(
        w.call(nr::SCHED_OP, [SCHEDOP_POLL, ARG, 0, 0, 0]),
        err(Errno::EINVAL)
    );
    // A poll on an idle port blocks and registers the port.
    put(&mut w, ARG + 0x40, ports.as_bytes());
    let sp = SchedPoll {
        ports: ARG + 0x40,
        nr_ports: 2,
        timeout: 9_000_000,
        ..Default::default()
    };
    put(&mut w, ARG, sp.as_bytes());
    assert_eq!(
        w.call(nr::SCHED_OP, [SCHEDOP_POLL, ARG, 0, 0, 0]),
        Action::Yield
    );
    assert!(w.sched.1.polls(1, 4));
}

#[test]
fn console_input_is_domain_0s() {
    let mut w = World::new();
    assert_eq!(
        w.call(nr::CONSOLE_IO, [CONSOLEIO_READ, 16, ARG, 0, 0]),
        err(Errno::EPERM)
    );
}
