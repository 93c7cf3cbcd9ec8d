//! `domctl` (hypercall 36): domain control for the privileged domain — create, destroy, pause, unpause,
//! get info, max memory, get/set vCPU context, log-dirty control (`XEN_DOMCTL_SHADOW_OP`,
//! `domain::logdirty_ctl`), and the save protocol and image store (suspend request, resume, save, restore,
//! image put/delete/list/dump; `domain::save`) (the numbers, structures and rules are in `abi::domctl`).
//!
//! Decode, then perform. [`decode`] turns the envelope into a typed [`DomctlRequest`] with no side effect
//! (interface version `-EACCES`, privilege `-EPERM`, command `-ENOSYS`, then the argument's shape). The
//! handler then checks the target against the domain table and does what needs only the caller's view:
//! info and vCPU context are copied out, pause and unpause are scheduler flags. What changes another
//! domain's slot — create, destroy, max_mem, setvcpucontext — is handed back as [`Action::Domctl`] with a
//! [`DomctlOp`], which the trap code performs once the domain table is no longer borrowed
//! (`domain::control`). Everything that can fail because of the caller's input (a bad pointer, a domain
//! that does not exist, a context that would not validate, the domain limit, free memory) fails here,
//! before the operation is handed on, so an [`Action::Domctl`] fails only for reasons the handler cannot
//! see (an unknown image name: `-ENOENT`; a kernel image the builder refuses: `-EINVAL`).

use abi::domctl::{
    CREATE_CMDLINE_MAX, DOMCTL_CREATE_PAUSED, DomctlCreate, IMAGE_NAME_MAX, MAX_DOMAIN_MEM_KB,
    MIN_DOMAIN_MEM_KB, VcpuGuestContext, XEN_DOMCTL_CONSOLE_INPUT, XEN_DOMCTL_CREATEDOMAIN,
    XEN_DOMCTL_DESTROYDOMAIN, XEN_DOMCTL_GETDOMAININFO, XEN_DOMCTL_GETVCPUCONTEXT,
    XEN_DOMCTL_IMAGE_DELETE, XEN_DOMCTL_IMAGE_DUMP, XEN_DOMCTL_IMAGE_LIST, XEN_DOMCTL_IMAGE_PUT,
    XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_RESTORE,
    XEN_DOMCTL_RESUMEDOMAIN, XEN_DOMCTL_SAVE, XEN_DOMCTL_SETVCPUCONTEXT,
    XEN_DOMCTL_SUSPEND_REQUEST, XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl, XenDomctlMaxMem,
    XenDomctlVcpucontext,
};
use abi::errno::Errno;
use abi::types::Gva;

use super::{Action, HypercallCtx, MachineMem, sysctl, vcpu_context};
use crate::domain::state::{Domain, MAX_DOMAINS};

/// A validated `createdomain` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateParams {
    /// The available image to build from.
    pub image: heapless::String<IMAGE_NAME_MAX>,
    /// Memory in pages.
    pub pages: u64,
    /// The guest command line.
    pub cmdline: heapless::String<CREATE_CMDLINE_MAX>,
    /// Leave the new domain paused.
    pub paused: bool,
}

/// A decoded `domctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomctlRequest {
    /// Build and start a domain.
    Create(CreateParams),
    /// Destroy a domain.
    Destroy(u16),
    /// Pause (`true`) or unpause a domain.
    Pause(u16, bool),
    /// Report a domain.
    GetInfo(u16),
    /// Set a domain's memory ceiling, in pages.
    MaxMem(u16, u64),
    /// Read a domain's vCPU context into the guest buffer.
    GetVcpuContext(u16, Gva),
    /// Set a paused domain's vCPU context from the guest buffer.
    SetVcpuContext(u16, Gva),
    /// Give the serial input to a domain.
    ConsoleInput(u16),
    /// Suspend request, resume, save (`cmd`) on another domain.
    OnDomain(u32, u16),
    /// Restore, image put/delete/list (`cmd`): no target domain.
    Image(u32),
}

/// An operation on another domain's slot, performed by the trap code after the handler (`domain::control`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomctlOp {
    /// Build the domain the envelope at this caller address describes (decoded and checked again there)
    /// and write its id into the envelope.
    Create(Gva),
    /// Destroy domain `id`.
    Destroy(u16),
    /// Set domain `id`'s ceiling to this many pages.
    MaxMem(u16, u64),
    /// Apply the context at this caller address (checked again there) to paused domain `id`.
    SetVcpuContext(u16, Gva),
    /// A save-protocol or image-store command `cmd` on domain `id` (0 when it names none) with the
    /// envelope at this caller address (`domain::save`).
    Save(u32, u16, Gva),
}

/// Decode a `createdomain` argument. Pure.
pub fn decode_create(c: &DomctlCreate) -> Result<CreateParams, Errno> {
    if c.flags & !DOMCTL_CREATE_PAUSED != 0
        || !(MIN_DOMAIN_MEM_KB..=MAX_DOMAIN_MEM_KB).contains(&c.max_memkb)
        || !c.max_memkb.is_multiple_of(4)
    {
        return Err(Errno::EINVAL);
    }
    let name = core::str::from_utf8(c.image_name()).map_err(|_| Errno::EINVAL)?;
    let cmdline = c
        .cmdline
        .get(..c.cmdline_len as usize)
        .and_then(|b| core::str::from_utf8(b).ok())
        .ok_or(Errno::EINVAL)?;
    if name.is_empty() || cmdline.contains('\0') {
        return Err(Errno::EINVAL);
    }
    Ok(CreateParams {
        image: heapless::String::try_from(name).map_err(|_| Errno::EINVAL)?,
        pages: c.max_memkb / 4,
        cmdline: heapless::String::try_from(cmdline).map_err(|_| Errno::EINVAL)?,
        paused: c.flags & DOMCTL_CREATE_PAUSED != 0,
    })
}

/// Decode an envelope from domain `caller`. Pure. In Xen's order: a wrong interface version is `-EACCES`,
/// an unprivileged caller `-EPERM`, an unknown command `-ENOSYS`; then a domain id beyond the table
/// `-ESRCH`, and a request no domain state allows `-EINVAL` (the caller acting on itself where that makes
/// no sense, a vCPU other than 0, sizes out of range) or `-EFAULT` (a null context pointer).
pub fn decode(op: &XenDomctl, privileged: bool, caller: u16) -> Result<DomctlRequest, Errno> {
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    if !privileged {
        return Err(Errno::EPERM);
    }
    let known = [
        XEN_DOMCTL_CREATEDOMAIN,
        XEN_DOMCTL_DESTROYDOMAIN,
        XEN_DOMCTL_PAUSEDOMAIN,
        XEN_DOMCTL_UNPAUSEDOMAIN,
        XEN_DOMCTL_GETDOMAININFO,
        XEN_DOMCTL_MAX_MEM,
        XEN_DOMCTL_SETVCPUCONTEXT,
        XEN_DOMCTL_GETVCPUCONTEXT,
        XEN_DOMCTL_CONSOLE_INPUT,
        XEN_DOMCTL_RESUMEDOMAIN,
        XEN_DOMCTL_SUSPEND_REQUEST,
        XEN_DOMCTL_SAVE,
        XEN_DOMCTL_RESTORE,
        XEN_DOMCTL_IMAGE_PUT,
        XEN_DOMCTL_IMAGE_DELETE,
        XEN_DOMCTL_IMAGE_LIST,
        XEN_DOMCTL_IMAGE_DUMP,
        abi::domctl::XEN_DOMCTL_MIGRATE,
        abi::domctl::XEN_DOMCTL_MIGRATE_RECEIVE,
        abi::domctl::XEN_DOMCTL_SHADOW_OP,
    ];
    if !known.contains(&op.cmd) {
        return Err(Errno::ENOSYS);
    }
    if op.cmd == XEN_DOMCTL_CREATEDOMAIN {
        return decode_create(&op.arg()).map(DomctlRequest::Create);
    }
    if matches!(
        op.cmd,
        XEN_DOMCTL_RESTORE
            | XEN_DOMCTL_IMAGE_PUT
            | XEN_DOMCTL_IMAGE_DELETE
            | XEN_DOMCTL_IMAGE_LIST
            | XEN_DOMCTL_IMAGE_DUMP
            | abi::domctl::XEN_DOMCTL_MIGRATE_RECEIVE
    ) {
        return Ok(DomctlRequest::Image(op.cmd));
    }
    let d = op.domain;
    if usize::from(d) >= MAX_DOMAINS {
        return Err(Errno::ESRCH);
    }
    // Acting on oneself: a domain cannot destroy, pause or rewrite the vCPU it is running on.
    let not_self = || {
        if d == caller {
            Err(Errno::EINVAL)
        } else {
            Ok(d)
        }
    };
    let vcpu_ctxt = || {
        let v: XenDomctlVcpucontext = op.arg();
        match (v.vcpu, v.ctxt) {
            (0, 0) => Err(Errno::EFAULT),
            (0, p) => Ok(Gva(p)),
            _ => Err(Errno::EINVAL),
        }
    };
    Ok(match op.cmd {
        XEN_DOMCTL_DESTROYDOMAIN => DomctlRequest::Destroy(not_self()?),
        XEN_DOMCTL_PAUSEDOMAIN => DomctlRequest::Pause(not_self()?, true),
        XEN_DOMCTL_UNPAUSEDOMAIN => DomctlRequest::Pause(not_self()?, false),
        XEN_DOMCTL_GETDOMAININFO => DomctlRequest::GetInfo(d),
        XEN_DOMCTL_MAX_MEM => {
            let kb = op.arg::<XenDomctlMaxMem>().max_memkb;
            if kb > MAX_DOMAIN_MEM_KB {
                return Err(Errno::EINVAL);
            }
            DomctlRequest::MaxMem(d, kb / 4)
        }
        XEN_DOMCTL_GETVCPUCONTEXT => DomctlRequest::GetVcpuContext(not_self()?, vcpu_ctxt()?),
        XEN_DOMCTL_CONSOLE_INPUT => DomctlRequest::ConsoleInput(d),
        XEN_DOMCTL_RESUMEDOMAIN
        | XEN_DOMCTL_SUSPEND_REQUEST
        | XEN_DOMCTL_SAVE
        | abi::domctl::XEN_DOMCTL_MIGRATE
        | abi::domctl::XEN_DOMCTL_SHADOW_OP => DomctlRequest::OnDomain(op.cmd, not_self()?),
        _ => DomctlRequest::SetVcpuContext(not_self()?, vcpu_ctxt()?),
    })
}

/// Handle `domctl(op)`.
pub fn domctl<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let at = Gva(ctx.args()[0]);
    match run(ctx, at) {
        Ok(Some(op)) => Action::Domctl(op),
        Ok(None) => Action::Return(0),
        Err(e) => Action::Return(e.as_ret()),
    }
}

/// Domain `d` other than the caller, if it exists and has not stopped (`-ESRCH` otherwise).
fn live_other<'a, M: MachineMem>(
    ctx: &HypercallCtx<'a, '_, M>,
    d: u16,
) -> Result<&'a Domain, Errno> {
    ctx.others
        .get(usize::from(d))
        .filter(|t| t.runnable())
        .ok_or(Errno::ESRCH)
}

fn run<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    at: Gva,
) -> Result<Option<DomctlOp>, Errno> {
    let op: XenDomctl = ctx.guest().read_obj(at)?;
    match decode(&op, ctx.privileged, ctx.domid)? {
        DomctlRequest::GetInfo(d) => {
            let now = ctx.env.now_ns();
            let f = sysctl::facts(ctx, usize::from(d), now).ok_or(Errno::ESRCH)?;
            let mut out = op;
            out.set_arg(&sysctl::record(
                &f,
                u8::try_from(ctx.policy.maxphyaddr).unwrap_or(u8::MAX),
            ));
            ctx.guest().write_obj(at, &out)?;
            Ok(None)
        }
        DomctlRequest::Pause(d, pause) => {
            let t = live_other(ctx, d)?;
            if !pause && !ctx.sched.get().0.paused(usize::from(d)) {
                return Err(Errno::EINVAL);
            }
            // A suspended domain continues only through resumedomain (its suspend call must return 1);
            // unpausing it would run it away from its save point while it still counts as suspended.
            if !pause && matches!(t.suspend, crate::domain::state::Suspend::Suspended(_)) {
                return Err(Errno::EINVAL);
            }
            ctx.sched.get().0.set_paused(usize::from(d), pause)?;
            Ok(None)
        }
        DomctlRequest::GetVcpuContext(d, buf) => {
            let t = live_other(ctx, d)?;
            let c = vcpu_context::to_context(&t.vcpu, t.mm.base);
            ctx.guest().write_obj(buf, &c)?;
            Ok(None)
        }
        DomctlRequest::SetVcpuContext(d, buf) => {
            let t = live_other(ctx, d)?;
            if !ctx.sched.get().0.paused(usize::from(d)) {
                return Err(Errno::EINVAL);
            }
            let c: VcpuGuestContext = ctx.guest().read_obj(buf)?;
            // Validate on a copy: the real vCPU changes only when the operation is performed.
            let mut copy = t.vcpu;
            vcpu_context::from_context(&mut copy, t.mm.base, &c)?;
            Ok(Some(DomctlOp::SetVcpuContext(d, buf)))
        }
        DomctlRequest::ConsoleInput(d) => {
            if d != ctx.domid {
                live_other(ctx, d)?;
            }
            crate::console::set_input_owner(d);
            log::info!("console input: domain {d} (Ctrl-] c gives it back to domain 0)");
            Ok(None)
        }
        DomctlRequest::MaxMem(d, pages) => {
            if d != ctx.domid {
                live_other(ctx, d)?;
            }
            Ok(Some(DomctlOp::MaxMem(d, pages)))
        }
        DomctlRequest::OnDomain(cmd, d) => {
            // A migration's later phases reach `migrate` even when its domain has died meanwhile: it
            // drops the migration and tells the destination (ABORT); `migrate` checks the domain itself.
            if cmd != abi::domctl::XEN_DOMCTL_MIGRATE {
                live_other(ctx, d)?;
            }
            // The result (an image's size) may go into the envelope: prove it writable now.
            ctx.guest().write_obj(at, &op)?;
            Ok(Some(DomctlOp::Save(cmd, d, at)))
        }
        DomctlRequest::Image(cmd) => {
            ctx.guest().write_obj(at, &op)?;
            if cmd == XEN_DOMCTL_RESTORE && !(1..MAX_DOMAINS).any(|i| ctx.others.is_free(i)) {
                return Err(Errno::ENOSPC);
            }
            Ok(Some(DomctlOp::Save(cmd, 0, at)))
        }
        DomctlRequest::Destroy(d) => {
            ctx.others.get(usize::from(d)).ok_or(Errno::ESRCH)?;
            Ok(Some(DomctlOp::Destroy(d)))
        }
        DomctlRequest::Create(p) => {
            // Prove the envelope writable (the id goes there) by writing back what the caller put there.
            ctx.guest().write_obj(at, &op)?;
            // Id 0 is never handed out (`DomainTable::free_id`).
            let free = (1..MAX_DOMAINS).any(|i| ctx.others.is_free(i));
            if !free {
                return Err(Errno::ENOSPC);
            }
            // The new domain's frames and its shared_info page.
            if ctx.machine.get().frames.free_count() < p.pages + 1 {
                return Err(Errno::ENOMEM);
            }
            Ok(Some(DomctlOp::Create(at)))
        }
    }
}

#[cfg(test)]
#[path = "domctl_tests.rs"]
mod tests;
