//! The trap-related hypercalls: `set_trap_table` (0), `stack_switch` (3), `set_callbacks` (4),
//! `callback_op` (30), `iret` (23) and `set_segment_base` (25). Delivery itself (bounce frames) is in
//! `crate::vcpu`; the contract is in `abi::traps`.

use abi::callback::{
    CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER, CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE,
    CALLBACKTYPE_SYSCALL, CallbackRegister, CallbackUnregister,
};
use abi::errno::Errno;
use abi::layout::{GUEST_KERNEL_SS, guest_va_allowed};
use abi::types::{Gva, PAGE_SIZE};
use abi::xen::{
    IretContext, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL, TrapInfo,
};
use zerocopy::FromBytes;

use super::{Action, HypercallCtx, MachineMem};
use crate::mm::walk;
use crate::regs::{EntryFrame, rflags, sanitize_in_place};
use crate::vcpu::{VcpuState, check_handler, decode_trap};

/// Most entries one `set_trap_table` call reads (a full IDT plus the terminator).
const MAX_TRAP_ENTRIES: u64 = 257;

/// `set_trap_table(table)`: entries until one with address 0; a null pointer clears the table. The whole
/// table is read and checked before anything changes.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn set_trap_table<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let table = ctx.args()[0];
    if table == 0 {
        ctx.vcpu.traps = [Default::default(); 256];
        ctx.vcpu.gates_dirty = true;
        return Action::Return(0);
    }
    let mut new = ctx.vcpu.traps;
    for i in 0..MAX_TRAP_ENTRIES {
        let Some(at) = Gva(table).checked_add(i * 16) else {
            return Action::Return(Errno::EFAULT.as_ret());
        };
        let t: TrapInfo = match ctx.guest().read_obj(at) {
            Ok(t) => t,
            Err(e) => return Action::Return(e.as_ret()),
        };
        if t.address == 0 {
            ctx.vcpu.traps = new;
            ctx.vcpu.gates_dirty = true;
            return Action::Return(0);
        }
        match decode_trap(&t) {
            Ok(e) => new[usize::from(t.vector)] = e,
            Err(_) => return Action::Return(Errno::EINVAL.as_ret()),
        }
    }
    Action::Return(Errno::E2BIG.as_ret())
}

/// `stack_switch(ss, rsp)`: the ring-1 stack for traps from ring 3.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn stack_switch<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    Action::Return(stack_switch_on(ctx.vcpu, ctx.args()))
}

/// `stack_switch` on `vcpu` with the call's `args` (the full handler and the light one, `hypercall::light`,
/// share it; a guest kernel calls it on every switch between processes).
pub fn stack_switch_on(vcpu: &mut VcpuState, args: [u64; 5]) -> i64 {
    let [ss, rsp, ..] = args;
    if ss & !3 != u64::from(GUEST_KERNEL_SS & !3) || rsp == 0 || !guest_va_allowed(rsp) {
        return Errno::EINVAL.as_ret();
    }
    vcpu.kernel_sp = rsp;
    vcpu.gates_dirty = true;
    0
}

/// `set_callbacks(event, failsafe, syscall)`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn set_callbacks<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    Action::Return(set_callbacks_on(ctx.vcpu, ctx.args()))
}

/// `set_callbacks` on `vcpu` with the call's `args` (the full handler and the light one share it).
pub fn set_callbacks_on(vcpu: &mut VcpuState, args: [u64; 5]) -> i64 {
    let [event, failsafe, syscall, ..] = args;
    match (
        check_handler(event),
        check_handler(failsafe),
        check_handler(syscall),
    ) {
        (Ok(e), Ok(f), Ok(s)) => {
            vcpu.event_callback = e;
            vcpu.failsafe_callback = f;
            vcpu.syscall_callback = s;
            0
        }
        _ => Errno::EINVAL.as_ret(),
    }
}

/// `callback_op(cmd, arg)`: register or unregister one callback.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn callback_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [cmd, arg, ..] = ctx.args();
    let r = match cmd {
        CALLBACKOP_REGISTER => ctx
            .guest()
            .read_obj::<CallbackRegister>(Gva(arg))
            .and_then(|r| {
                let address = check_handler(r.address).map_err(|_| Errno::EINVAL)?;
                set_callback(ctx, r.r#type, address)
            }),
        CALLBACKOP_UNREGISTER => ctx
            .guest()
            .read_obj::<CallbackUnregister>(Gva(arg))
            .and_then(|r| set_callback(ctx, r.r#type, 0)),
        _ => Err(Errno::ENOSYS),
    };
    Action::from(r.map(|()| 0))
}

fn set_callback<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    ty: u16,
    address: u64,
) -> Result<(), Errno> {
    let slot = match ty {
        CALLBACKTYPE_EVENT => &mut ctx.vcpu.event_callback,
        CALLBACKTYPE_FAILSAFE => &mut ctx.vcpu.failsafe_callback,
        CALLBACKTYPE_SYSCALL => &mut ctx.vcpu.syscall_callback,
        _ => return Err(Errno::EINVAL),
    };
    *slot = address;
    Ok(())
}

/// `set_segment_base(which, base)`: FS base, user GS base, kernel GS base, or a user GS selector.
///
/// A base must be canonical (WRMSR would fault in ring 0) and, like every address a guest names here,
/// outside the hypervisor's reserved range: -EINVAL otherwise, and nothing changes. Xen checks only
/// canonicality; a base in the reserved range would give no access (paging still applies) but has no
/// legitimate use, so it is refused like a handler or stack there.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn set_segment_base<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [which, base, ..] = ctx.args();
    if which != SEGBASE_GS_USER_SEL && !guest_va_allowed(base) {
        return Action::Return(Errno::EINVAL.as_ret());
    }
    match which {
        SEGBASE_FS => ctx.vcpu.fs_base = base,
        SEGBASE_GS_USER => ctx.vcpu.gs_base = base,
        SEGBASE_GS_KERNEL => ctx.vcpu.gs_kernel = base,
        // Loading a user GS selector is something ring 1 can do itself.
        SEGBASE_GS_USER_SEL => return Action::Return(Errno::ENOSYS.as_ret()),
        _ => return Action::Return(Errno::EINVAL.as_ret()),
    }
    ctx.vcpu.segments_dirty = true;
    Action::Return(0)
}

/// The registers after `iret` with `c`: RAX/R11/RCX and the frame from the context; `None` if RIP is
/// unusable (the domain is crashed). Ring and flags are sanitized like every frame.
pub fn apply_iret(regs: &EntryFrame, c: &IretContext) -> Option<EntryFrame> {
    let mut r = *regs;
    apply_iret_in_place(&mut r, c).then_some(r)
}

/// [`apply_iret`] on the caller's frame itself (no copy of the frame): true if it was applied; on false
/// (RIP unusable) `r` is unchanged.
pub fn apply_iret_in_place(r: &mut EntryFrame, c: &IretContext) -> bool {
    let old = (r.rax, r.r11, r.rcx, r.rip, r.cs, r.rflags, r.rsp, r.ss);
    r.rax = c.rax;
    r.r11 = c.r11;
    r.rcx = c.rcx;
    r.rip = c.rip;
    r.cs = c.cs & 0xffff;
    r.rflags = c.rflags | rflags::IF;
    r.rsp = c.rsp;
    r.ss = c.ss & 0xffff;
    if sanitize_in_place(r).is_ok() {
        return true;
    }
    // A refused frame is left as sanitize_in_place found it: put the caller's registers back.
    (r.rax, r.r11, r.rcx, r.rip, r.cs, r.rflags, r.rsp, r.ss) = old;
    false
}

/// The `iret_context` at `at` (the caller's RSP), as [`HypercallCtx::read_obj`] reads it. Within one
/// page (the usual case: the top of the caller's stack) it is read in place from the frame found by one
/// walk of the caller's tables, which checks what `HypercallCtx::read` checks for a one-page range (a
/// canonical, non-reserved address; a present 4 KiB mapping with the caller's ring's permission at
/// every level), so the words are copied once, not through a zeroed buffer and a returned copy.
#[inline(always)]
fn read_iret_context<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    at: Gva,
) -> Result<IretContext, Errno> {
    const LEN: usize = size_of::<IretContext>();
    if at.page_offset() as usize + LEN > PAGE_SIZE as usize {
        return ctx.read_obj(at);
    }
    let access = walk::Access {
        write: false,
        user: ctx.user,
    };
    let ma = walk::translate(&*ctx.mem, ctx.dom.base, at, access).map_err(|_| Errno::EFAULT)?;
    let off = at.page_offset() as usize;
    let frame = ctx.mem.frame_mut(ma.mfn());
    IretContext::read_from_bytes(&frame[off..off + LEN]).map_err(|_| Errno::EFAULT)
}

/// `iret`: return from a bounce through the `iret_context` at the guest's RSP, restoring the event mask.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn iret<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let at = Gva(ctx.regs.rsp);
    let c: IretContext = match read_iret_context(ctx, at) {
        Ok(c) => c,
        Err(_) => return Action::Crash("iret with an unreadable iret_context"),
    };
    if !apply_iret_in_place(ctx.regs, &c) {
        return Action::Crash("iret to a non-canonical or hypervisor address");
    }
    ctx.set_events_masked(c.rflags & rflags::IF == 0);
    Action::Resume
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iret_sanitizes() {
        let regs = EntryFrame {
            rsp: 0x1000,
            ..Default::default()
        };
        let c = IretContext {
            rax: 1,
            r11: 2,
            rcx: 3,
            flags: 0,
            rip: 0xffff_ffff_8000_0100,
            cs: 0x08 | 0xff << 32,
            rflags: u64::MAX,
            rsp: 0x5000,
            ss: 0,
        };
        let r = apply_iret(&regs, &c).unwrap();
        assert_eq!(
            (r.rax, r.r11, r.rcx, r.rip, r.rsp),
            (1, 2, 3, 0xffff_ffff_8000_0100, 0x5000)
        );
        assert_eq!(r.cs, 0x19, "ring 0 requested, ring 1 given");
        assert_eq!(r.rflags & (rflags::IOPL | rflags::NT | rflags::VM), 0);
        let user = IretContext {
            cs: 0x33,
            ss: 0x2b,
            rflags: rflags::IF | 3 << 12,
            ..c
        };
        let r = apply_iret(&regs, &user).unwrap();
        assert_eq!((r.cs, r.ss, r.rflags & rflags::IOPL), (0x33, 0x2b, 0));
        assert_eq!(
            apply_iret(
                &regs,
                &IretContext {
                    rip: 0x0000_8000_0000_0000,
                    ..c
                }
            ),
            None
        );
        assert_eq!(
            apply_iret(
                &regs,
                &IretContext {
                    rip: abi::layout::ENTRY_REGION_VA,
                    ..c
                }
            ),
            None
        );
        // In place: a refused context leaves the frame exactly as it was.
        let mut f = EntryFrame {
            rax: 7,
            rip: 0x4000,
            cs: 0x19,
            rflags: 0x202,
            rsp: 0x1000,
            ss: 0x21,
            ..Default::default()
        };
        let before = f;
        let bad = IretContext {
            rip: 0x0000_8000_0000_0000,
            ..c
        };
        assert!(!apply_iret_in_place(&mut f, &bad));
        assert_eq!(f, before);
        assert!(apply_iret_in_place(&mut f, &c));
        assert_eq!(Some(f), apply_iret(&before, &c));
    }
}

#[cfg(test)]
mod iret_read_tests {
    use abi::hypercall::nr;
    use abi::xen::IretContext;
    use zerocopy::IntoBytes;

    use super::super::Action;
    use super::super::testing::{FrameForTest, RO_PAGE, RW_PAGE, World};

    /// The `iret_context` is read wherever the caller's RSP puts it: in one page (in place, after one
    /// walk), across the writable and the read-only page (the general copy), and refused (the domain
    /// crashed) where any of its bytes is unmapped.
    #[test]
    fn the_context_is_read_in_one_page_or_across_two() {
        let c = IretContext {
            rax: 5,
            r11: 6,
            rcx: 7,
            rip: RW_PAGE + 0x10,
            cs: 0x19,
            rflags: 0x202,
            rsp: RW_PAGE + 0x800,
            ss: 0x21,
            ..Default::default()
        };
        let bytes = c.as_bytes();
        // Frames 10 and 11 map RW_PAGE and RO_PAGE, adjacent: a context may straddle them.
        for at in [
            RW_PAGE + 0x100,
            RO_PAGE + 0x1000 - bytes.len() as u64,
            RO_PAGE - 8,
            RO_PAGE - 0x40,
        ] {
            let mut w = World::new();
            for (i, b) in bytes.iter().enumerate() {
                let va = at + i as u64;
                let frame = if va < RO_PAGE { 10 } else { 11 };
                w.mem.frame_mut_for_test(frame)[(va & 0xfff) as usize] = *b;
            }
            w.regs.rsp = at;
            assert_eq!(w.call(nr::IRET, [0; 5]), Action::Resume, "at {at:#x}");
            assert_eq!(
                (w.regs.rax, w.regs.r11, w.regs.rcx, w.regs.rip, w.regs.rsp),
                (5, 6, 7, RW_PAGE + 0x10, RW_PAGE + 0x800),
                "at {at:#x}"
            );
        }
        // Running off the read-only page into the unmapped one, or unmapped altogether.
        for at in [RO_PAGE + 0x1000 - 8, RO_PAGE + 0x1000, 0] {
            let mut w = World::new();
            w.regs.rsp = at;
            assert!(
                matches!(w.call(nr::IRET, [0; 5]), Action::Crash(_)),
                "at {at:#x}"
            );
        }
    }
}

#[cfg(test)]
mod segment_base_tests {
    use abi::errno::Errno;
    use abi::hypercall::nr;
    use abi::layout::{ENTRY_REGION_VA, RESERVED_VA_END, RESERVED_VA_START};
    use abi::xen::{SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER};

    use super::super::Action;
    use super::super::testing::World;

    #[test]
    fn hypervisor_range_bases_refused_and_nothing_changes() {
        let mut w = World::new();
        for which in [SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL] {
            assert_eq!(
                w.call(nr::SET_SEGMENT_BASE, [which, 0x7000, 0, 0, 0]),
                Action::Return(0)
            );
            w.vcpu.segments_dirty = false;
            for base in [
                ENTRY_REGION_VA,
                RESERVED_VA_START,
                RESERVED_VA_END - 1,
                0x0000_8000_0000_0000,
                0xffff_7fff_ffff_ffff,
                u64::MAX >> 1,
            ] {
                assert_eq!(
                    w.call(nr::SET_SEGMENT_BASE, [which, base, 0, 0, 0]),
                    Action::Return(Errno::EINVAL.as_ret()),
                    "which {which}, base {base:#x}"
                );
            }
            let v = &w.vcpu;
            let now = [v.fs_base, v.gs_base, v.gs_kernel][which as usize];
            assert_eq!(now, 0x7000, "which {which}: the old base stays");
            assert!(!w.vcpu.segments_dirty);
            // Just above the reserved range, below the hole, and the top of the address space: guest addresses.
            for base in [RESERVED_VA_END, 0x0000_7fff_ffff_f000, u64::MAX] {
                assert_eq!(
                    w.call(nr::SET_SEGMENT_BASE, [which, base, 0, 0, 0]),
                    Action::Return(0),
                    "which {which}, base {base:#x}"
                );
            }
        }
    }
}
