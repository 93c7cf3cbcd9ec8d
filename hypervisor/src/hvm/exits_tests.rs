//! Host tests of the exit handler and the injection logic, with a fake device model.

use super::*;
use crate::hvm::vmcb::InitialState;

#[derive(Default)]
struct FakeDevices {
    pending: Option<u8>,
    acked: Vec<u8>,
    outs: Vec<(u16, u8, u32)>,
    in_value: u32,
}

impl Devices for FakeDevices {
    fn io_in(&mut self, _port: u16, _size: u8, _now: u64) -> u32 {
        self.in_value
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32, _now: u64) -> IoOutcome {
        self.outs.push((port, size, value));
        match port {
            0x3f8 => IoOutcome::Output(value as u8),
            0xf4 => IoOutcome::Shutdown(value),
            _ => IoOutcome::None,
        }
    }
    fn pending_vector(&self) -> Option<u8> {
        self.pending
    }
    fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pending.take();
        self.acked.extend(v);
        v
    }
}

fn vmcb() -> Vmcb {
    Vmcb::initial(&InitialState {
        entry: 0x1000,
        info: 0x9000,
        asid: 1,
        n_cr3: 0x5000,
        iopm_pa: 0,
        msrpm_pa: 0,
    })
}

fn host(leaf: u32, _: u32) -> Regs {
    Regs {
        eax: leaf,
        ebx: 0x11,
        ecx: 0x22 | if leaf == 0x8000_0001 { 4 } else { 0 },
        edx: 0x33,
    }
}

fn run(
    v: &mut Vmcb,
    g: &mut GuestGprs,
    d: &mut FakeDevices,
    code: u64,
    i1: u64,
    i2: u64,
) -> (Action, Vec<u8>) {
    v.exitcode = code;
    v.exitinfo1 = i1;
    v.exitinfo2 = i2;
    let mut out = Vec::new();
    let a = handle(v, g, d, 0, host, &mut |b| out.push(b));
    (a, out)
}

#[test]
fn uart_output_and_debug_exit() {
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    v.rax = 0xdead_be41;
    let (a, out) = run(&mut v, &mut g, &mut d, 0x7b, 0x03f8_0010, 0x1002);
    assert_eq!((a, out), (Action::Resume, vec![0x41]));
    assert_eq!(v.rip, 0x1002, "I/O exits resume at EXITINFO2");
    assert_eq!(d.outs, [(0x3f8, 1, 0x41)], "only AL goes out");
    v.rax = 3;
    let (a, _) = run(&mut v, &mut g, &mut d, 0x7b, 0x00f4_0040, 0x1008);
    assert_eq!(a, Action::Shutdown(3));
}

#[test]
fn port_input_merges_by_size() {
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    d.in_value = 0xaabb_ccdd;
    v.rax = 0x1111_2222_3333_4444;
    run(&mut v, &mut g, &mut d, 0x7b, 0x0060_0011, 0x2000);
    assert_eq!(v.rax, 0x1111_2222_3333_44dd);
    run(&mut v, &mut g, &mut d, 0x7b, 0x0060_0021, 0x2000);
    assert_eq!(v.rax, 0x1111_2222_3333_ccdd);
    run(&mut v, &mut g, &mut d, 0x7b, 0x0060_0041, 0x2000);
    assert_eq!(v.rax, 0xaabb_ccdd, "a 32-bit IN zero-extends");
    let (a, _) = run(&mut v, &mut g, &mut d, 0x7b, 0x0060_0045, 0x2000);
    assert_eq!(a, Action::Crash(Crash::StringIo { port: 0x60 }));
}

#[test]
fn cpuid_hides_svm_and_advances() {
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    v.rax = 0x8000_0001;
    let (a, _) = run(&mut v, &mut g, &mut d, 0x72, 0, 0);
    assert_eq!(a, Action::Resume);
    assert_eq!(v.rip, 0x1002);
    assert_eq!(g.rcx & 4, 0);
    v.rax = 0x4000_0000;
    run(&mut v, &mut g, &mut d, 0x72, 0, 0);
    assert_eq!(v.rax, u64::from(crate::hvm::cpuid::HV_MAX_LEAF));
}

#[test]
fn efer_is_emulated_and_svme_hidden() {
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    g.rcx = 0xc000_0080;
    run(&mut v, &mut g, &mut d, 0x7c, 0, 0);
    assert_eq!((v.rax, g.rdx), (0, 0), "SVME is not shown");
    assert_eq!(v.rip, 0x1002);
    v.rax = (efer::LME | efer::NXE | efer::SCE) & 0xffff_ffff;
    run(&mut v, &mut g, &mut d, 0x7c, 1, 0);
    assert_eq!(v.efer, efer::LME | efer::NXE | efer::SCE | efer::SVME);
    assert_eq!(v.eventinj, 0);
    // Clearing SVME is not possible; setting it is refused with #GP (the guest sees no SVM).
    v.rax = efer::SVME;
    let rip = v.rip;
    run(&mut v, &mut g, &mut d, 0x7c, 1, 0);
    assert_eq!(v.eventinj, EventInfo::exception(exit::GP, Some(0)).0);
    assert_eq!(v.rip, rip, "a fault does not advance");
    assert_ne!(v.efer & efer::SVME, 0);
    // LME cannot change while paging is on.
    v.cr0 |= CR0_PG;
    v.rax = efer::SCE;
    run(&mut v, &mut g, &mut d, 0x7c, 1, 0);
    assert!(EventInfo(v.eventinj).valid());
    assert_ne!(v.efer & efer::LME, 0);
    // Any other intercepted MSR: #GP.
    g.rcx = 0xc001_0117;
    run(&mut v, &mut g, &mut d, 0x7c, 0, 0);
    assert_eq!(v.eventinj, EventInfo::exception(exit::GP, Some(0)).0);
}

#[test]
fn svm_instructions_get_ud_and_fatal_exits_crash() {
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    for code in 0x80..=0x86 {
        let (a, _) = run(&mut v, &mut g, &mut d, code, 0, 0);
        assert_eq!(a, Action::Resume);
        assert_eq!(
            v.eventinj,
            EventInfo::exception(exit::UD, None).0,
            "{code:#x}"
        );
        assert_eq!(v.rip, 0x1000);
    }
    assert_eq!(
        run(&mut v, &mut g, &mut d, 0x7f, 0, 0).0,
        Action::Crash(Crash::TripleFault)
    );
    assert_eq!(
        run(&mut v, &mut g, &mut d, 0x400, 1 << 32 | 6, 0x4000_0000).0,
        Action::Crash(Crash::NestedFault {
            gpa: 0x4000_0000,
            code: 1 << 32 | 6
        })
    );
    assert_eq!(
        run(&mut v, &mut g, &mut d, 0xffff_ffff, 0, 0).0,
        Action::Crash(Crash::Invalid)
    );
    assert_eq!(
        run(&mut v, &mut g, &mut d, 0x13, 0, 0).0,
        Action::Crash(Crash::Unexpected(0x13))
    );
    assert_eq!(
        run(&mut v, &mut g, &mut d, 0x60, 0, 0).0,
        Action::Reschedule
    );
    assert_eq!(run(&mut v, &mut g, &mut d, 0x78, 0, 0).0, Action::Halt);
}

#[test]
fn injection_waits_for_the_window() {
    let (mut v, mut d) = (vmcb(), FakeDevices::default());
    prepare_entry(&mut v, &mut d);
    assert_eq!((v.eventinj, v.vintr & vintr::V_IRQ), (0, 0));
    d.pending = Some(0x20);
    // IF clear: ask for a VINTR exit, do not acknowledge.
    prepare_entry(&mut v, &mut d);
    assert_eq!(v.eventinj, 0);
    assert_ne!(v.vintr & vintr::V_IRQ, 0);
    assert_ne!(v.intercept_misc1 & misc1::VINTR, 0);
    assert!(d.acked.is_empty());
    // The VINTR exit; IF now set: inject.
    v.rflags |= 1 << 9;
    let mut g = GuestGprs::default();
    assert_eq!(run(&mut v, &mut g, &mut d, 0x64, 0, 0).0, Action::Resume);
    prepare_entry(&mut v, &mut d);
    assert_eq!(v.eventinj, EventInfo::interrupt(0x20).0);
    assert_eq!(v.vintr & vintr::V_IRQ, 0);
    assert_eq!(d.acked, [0x20]);
    // In an interrupt shadow: wait.
    d.pending = Some(0x21);
    v.eventinj = 0;
    v.interrupt_shadow = 1;
    prepare_entry(&mut v, &mut d);
    assert_eq!(v.eventinj, 0);
    assert_ne!(v.vintr & vintr::V_IRQ, 0);
}

#[test]
fn interrupted_delivery_is_reinjected_first() {
    let (mut v, mut d) = (vmcb(), FakeDevices::default());
    v.rflags |= 1 << 9;
    d.pending = Some(0x21);
    v.exitintinfo = EventInfo::interrupt(0x20).0;
    prepare_entry(&mut v, &mut d);
    assert_eq!(v.eventinj, EventInfo::interrupt(0x20).0);
    assert_eq!(v.exitintinfo, 0);
    assert!(d.acked.is_empty(), "the new one waits");
    assert!(interrupt_deliverable(&v, &d));
}

#[test]
fn sti_hlt_takes_the_interrupt_right_after_the_hlt() {
    // `sti; hlt; cli`: the HLT exit comes inside STI's shadow; the interrupt must go in after the HLT,
    // not wait for an instruction that never runs with IF set.
    let (mut v, mut g, mut d) = (vmcb(), GuestGprs::default(), FakeDevices::default());
    v.rflags |= 1 << 9;
    v.interrupt_shadow = 1;
    let (a, _) = run(&mut v, &mut g, &mut d, 0x78, 0, 0);
    assert_eq!(a, Action::Halt);
    assert_eq!(v.rip, 0x1001);
    assert!(!v.in_shadow(), "completing the HLT ends the shadow");
    d.pending = Some(0x20);
    assert!(interrupt_deliverable(&v, &d));
    prepare_entry(&mut v, &mut d);
    assert_eq!(v.eventinj, EventInfo::interrupt(0x20).0);
}

#[test]
fn osxsave_is_refused() {
    let mut v = vmcb();
    assert_eq!(check_state(&v), None);
    v.cr4 |= 0x20 | 0x200;
    assert_eq!(check_state(&v), None, "PAE and OSFXSR are fine");
    v.cr4 |= CR4_PKE;
    assert_eq!(check_state(&v), Some(Crash::ExtendedState("CR4.PKE")));
    v.cr4 |= CR4_OSXSAVE;
    assert_eq!(check_state(&v), Some(Crash::ExtendedState("CR4.OSXSAVE")));
}

#[test]
fn device_timer_has_a_floor() {
    assert_eq!(device_timer(None, 100), None);
    assert_eq!(device_timer(Some(1_000_000), 0), Some(1_000_000));
    assert_eq!(
        device_timer(Some(10), 1_000),
        Some(1_000 + MIN_DEVICE_TIMER_NS)
    );
    assert_eq!(device_timer(Some(5), u64::MAX), Some(u64::MAX));
}
