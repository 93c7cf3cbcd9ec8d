//! A domain's vCPU state as Xen's `vcpu_guest_context` (`XEN_DOMCTL_getvcpucontext` /
//! `setvcpucontext`): [`to_context`] reports it, [`from_context`] checks a context handed in and turns it
//! into the parts to apply. Pure; the rules are in `abi::domctl` (deviation n).

use abi::domctl::{CpuUserRegs, VcpuGuestContext};
use abi::errno::Errno;
use abi::layout::{GUEST_KERNEL_SS, guest_va_allowed};
use abi::types::Mfn;
use abi::xen::{TI_IF, TrapInfo};
use zerocopy::FromZeros;

use crate::domain::state::{FxArea, Vcpu};
use crate::regs::EntryFrame;
use crate::vcpu::{TrapEntry, check_handler, decode_trap};

/// The MXCSR bits a context may set.
const MXCSR_SAFE: u32 = 0xffbf;

/// The registers in Xen's order.
fn user_regs(r: &EntryFrame) -> CpuUserRegs {
    CpuUserRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        error_code: r.error_code as u32,
        entry_vector: r.vector as u32,
        rip: r.rip,
        cs: r.cs as u16,
        rflags: r.rflags,
        rsp: r.rsp,
        ss: r.ss as u16,
        ..CpuUserRegs::default()
    }
}

/// The vCPU `v` of a domain whose page-table base is `base`, as a `vcpu_guest_context`.
pub fn to_context(v: &Vcpu, base: Mfn) -> VcpuGuestContext {
    let mut c = VcpuGuestContext::new_zeroed();
    c.fpu_ctxt = v.fx.0;
    c.user_regs = user_regs(&v.regs);
    [
        c.user_regs.es,
        c.user_regs.ds,
        c.user_regs.fs,
        c.user_regs.gs,
    ] = v.pv.selectors;
    for (vector, (t, out)) in v.pv.traps.iter().zip(c.trap_ctxt.iter_mut()).enumerate() {
        *out = TrapInfo {
            vector: vector as u8,
            flags: (t.dpl & 3) | if t.mask_events { TI_IF } else { 0 },
            cs: if t.address != 0 {
                abi::layout::GUEST_KERNEL_CS
            } else {
                0
            },
            _pad0: [0; 4],
            address: t.address,
        };
    }
    c.kernel_ss = u64::from(GUEST_KERNEL_SS);
    c.kernel_sp = v.pv.kernel_sp;
    c.ctrlreg[3] = base.0 << 12;
    c.event_callback_eip = v.pv.event_callback;
    c.failsafe_callback_eip = v.pv.failsafe_callback;
    c.syscall_callback_eip = v.pv.syscall_callback;
    c.fs_base = v.pv.fs_base;
    c.gs_base_user = v.pv.gs_base;
    c.gs_base_kernel = v.pv.gs_kernel;
    c
}

/// A data selector a guest can hold (and the hypervisor can reload for it in ring 0): null (any RPL) or
/// one of the guest data segments with its own RPL.
fn data_selector_ok(sel: u16) -> bool {
    sel <= 3 || sel == GUEST_KERNEL_SS || sel == abi::layout::GUEST_USER_SS
}

/// Check `c` for a domain whose page-table base is `base` and apply it to `v`, or change nothing and say
/// why (`-EINVAL`): a page-table base other than the current one, LDT or GDT frames, debug registers, a
/// handler, callback, kernel stack, segment base or data selector the guest itself could not register or
/// load. The registers are
/// taken as they are: every return to a guest sanitizes them (and crashes the domain if they cannot be).
pub fn from_context(v: &mut Vcpu, base: Mfn, c: &VcpuGuestContext) -> Result<(), Errno> {
    let cr3_ok = c.ctrlreg[3] == base.0 << 12
        && c.ctrlreg.iter().enumerate().all(|(i, &r)| i == 3 || r == 0);
    if !cr3_ok
        || c.ldt_base != 0
        || c.ldt_ents != 0
        || c.gdt_ents != 0
        || c.gdt_frames.iter().any(|&f| f != 0)
        || c.debugreg.iter().any(|&d| d != 0)
    {
        return Err(Errno::EINVAL);
    }
    let mut traps = [TrapEntry::default(); 256];
    for (t, out) in c.trap_ctxt.iter().zip(traps.iter_mut()) {
        *out = decode_trap(t).map_err(|_| Errno::EINVAL)?;
    }
    let callbacks = [
        c.event_callback_eip,
        c.failsafe_callback_eip,
        c.syscall_callback_eip,
    ];
    for cb in callbacks {
        check_handler(cb).map_err(|_| Errno::EINVAL)?;
    }
    let sp_ok = c.kernel_sp == 0 || guest_va_allowed(c.kernel_sp);
    let bases_ok = [c.fs_base, c.gs_base_user, c.gs_base_kernel]
        .iter()
        .all(|&b| guest_va_allowed(b));
    // The scheduler loads the data selectors with `mov` in ring 0 when the domain next runs, where a
    // selector the guest could not have loaded itself (a code, system or out-of-range descriptor, or an RPL
    // above the descriptor's DPL) would #GP in the hypervisor: only null and the guests' data segments.
    let u = &c.user_regs;
    if ![u.es, u.ds, u.fs, u.gs]
        .iter()
        .all(|&s| data_selector_ok(s))
    {
        return Err(Errno::EINVAL);
    }
    if !sp_ok || !bases_ok {
        return Err(Errno::EINVAL);
    }
    v.regs = EntryFrame {
        r15: u.r15,
        r14: u.r14,
        r13: u.r13,
        r12: u.r12,
        r11: u.r11,
        r10: u.r10,
        r9: u.r9,
        r8: u.r8,
        rbp: u.rbp,
        rdi: u.rdi,
        rsi: u.rsi,
        rdx: u.rdx,
        rcx: u.rcx,
        rbx: u.rbx,
        rax: u.rax,
        vector: u64::from(u.entry_vector),
        error_code: u64::from(u.error_code),
        rip: u.rip,
        cs: u64::from(u.cs),
        rflags: u.rflags,
        rsp: u.rsp,
        ss: u64::from(u.ss),
    };
    v.fx = FxArea(c.fpu_ctxt);
    // FXRSTOR of reserved MXCSR bits would fault in ring 0 on the way back: keep only the bits every
    // SSE2 CPU has (DAZ, bit 6, is not guaranteed).
    let mxcsr = u32::from_le_bytes([
        c.fpu_ctxt[24],
        c.fpu_ctxt[25],
        c.fpu_ctxt[26],
        c.fpu_ctxt[27],
    ]);
    v.fx.0[24..28].copy_from_slice(&(mxcsr & MXCSR_SAFE).to_le_bytes());
    v.pv.traps = traps;
    [
        v.pv.event_callback,
        v.pv.failsafe_callback,
        v.pv.syscall_callback,
    ] = callbacks;
    v.pv.kernel_sp = c.kernel_sp;
    v.pv.fs_base = c.fs_base;
    v.pv.gs_base = c.gs_base_user;
    v.pv.gs_kernel = c.gs_base_kernel;
    v.pv.selectors = [u.es, u.ds, u.fs, u.gs];
    v.pv.segments_dirty = true;
    v.pv.gates_dirty = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::VcpuState;

    fn vcpu() -> Vcpu {
        let mut pv = VcpuState::default();
        pv.traps[14] = TrapEntry {
            address: 0xffff_ffff_8000_1000,
            dpl: 0,
            mask_events: true,
        };
        pv.traps[0x80] = TrapEntry {
            address: 0xffff_ffff_8000_2000,
            dpl: 3,
            mask_events: false,
        };
        pv.event_callback = 0xffff_ffff_8000_3000;
        pv.kernel_sp = 0xffff_ffff_8010_0000;
        pv.fs_base = 0x7000_0000;
        pv.selectors = [0x2b, 0x2b, 0, 0];
        Vcpu {
            regs: EntryFrame {
                rax: 1,
                rbx: 2,
                r15: 15,
                rip: 0xffff_ffff_8000_0040,
                cs: 0x19,
                ss: 0x21,
                rsp: 0xffff_ffff_8008_0000,
                rflags: 0x202,
                ..EntryFrame::default()
            },
            fx: FxArea::initial(),
            pv,
        }
    }

    #[test]
    fn round_trip() {
        let v = vcpu();
        let c = to_context(&v, Mfn(0x1234));
        assert_eq!(c.ctrlreg[3], 0x1234 << 12);
        assert_eq!(c.user_regs.rbx, 2);
        assert_eq!(c.trap_ctxt[0x80].flags & 3, 3);
        assert_eq!(c.trap_ctxt[14].flags & TI_IF, TI_IF);
        let mut w = Vcpu {
            regs: EntryFrame::default(),
            fx: FxArea([0; 512]),
            pv: VcpuState::default(),
        };
        from_context(&mut w, Mfn(0x1234), &c).unwrap();
        assert_eq!(w.regs, v.regs);
        assert_eq!(w.fx.0, v.fx.0);
        assert_eq!(w.pv.traps, v.pv.traps);
        assert_eq!(w.pv.event_callback, v.pv.event_callback);
        assert_eq!(w.pv.kernel_sp, v.pv.kernel_sp);
        assert_eq!(w.pv.fs_base, v.pv.fs_base);
        assert_eq!(w.pv.selectors, v.pv.selectors);
        assert!(w.pv.gates_dirty && w.pv.segments_dirty);
    }

    #[test]
    fn hostile_contexts_change_nothing() {
        let good = to_context(&vcpu(), Mfn(7));
        let mut cases: Vec<(&str, VcpuGuestContext)> = Vec::new();
        let mut c = good;
        c.ctrlreg[3] = 8 << 12;
        cases.push(("another page-table base", c));
        let mut c = good;
        c.ctrlreg[4] = 1;
        cases.push(("another control register", c));
        let mut c = good;
        c.gdt_ents = 1;
        cases.push(("a GDT", c));
        let mut c = good;
        c.ldt_base = 0x1000;
        cases.push(("an LDT", c));
        let mut c = good;
        c.debugreg[7] = 0x400;
        cases.push(("debug registers", c));
        let mut c = good;
        c.trap_ctxt[3].address = 0xffff_8080_0000_0000;
        cases.push(("a handler in the entry region", c));
        let mut c = good;
        c.trap_ctxt[3].cs = 0x08;
        cases.push(("a ring-0 handler selector", c));
        let mut c = good;
        c.event_callback_eip = 0x8000_0000_0000_0000;
        cases.push(("a non-canonical callback", c));
        let mut c = good;
        c.kernel_sp = 0xffff_8000_0000_1000;
        cases.push(("a kernel stack in the hypervisor's range", c));
        let mut c = good;
        c.gs_base_kernel = 0xffff_8010_0000_0000;
        cases.push(("a segment base in the hypervisor's range", c));
        for (what, sel) in [
            ("a code selector in DS", 0x08u16),
            ("the TSS selector in ES", 0x40),
            ("a selector past the GDT in FS", 0x1000),
            ("a data selector with RPL above its DPL in GS", 0x23),
        ] {
            let mut c = good;
            match what.rsplit(' ').next() {
                Some("DS") => c.user_regs.ds = sel,
                Some("ES") => c.user_regs.es = sel,
                Some("FS") => c.user_regs.fs = sel,
                _ => c.user_regs.gs = sel,
            }
            cases.push((what, c));
        }
        for (what, c) in cases {
            let mut v = vcpu();
            let before = (v.regs, v.pv.traps, v.pv.event_callback, v.pv.kernel_sp);
            assert_eq!(
                from_context(&mut v, Mfn(7), &c),
                Err(Errno::EINVAL),
                "{what}"
            );
            assert_eq!(
                (v.regs, v.pv.traps, v.pv.event_callback, v.pv.kernel_sp),
                before,
                "{what}: nothing applied"
            );
        }
    }

    #[test]
    fn reserved_mxcsr_bits_are_dropped() {
        let mut c = to_context(&vcpu(), Mfn(7));
        c.fpu_ctxt[24..28].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        let mut v = vcpu();
        from_context(&mut v, Mfn(7), &c).unwrap();
        assert_eq!(&v.fx.0[24..28], &0xffbfu32.to_le_bytes());
    }
}
