//! Performing the `domctl` operations that change another domain's slot ([`DomctlOp`]), after the
//! handler (`hypercall::domctl`) checked them and the trap code released the domain table. The result goes
//! into the caller's RAX. The caller is the current domain; nothing else ran in between (one CPU, no
//! interrupts in ring 0), so what the handler checked still holds, and the data it read from the caller is
//! read again here from the same, unchanged memory and checked again.

use abi::domctl::{DomctlCreate, XenDomctl};
use abi::errno::Errno;
use abi::types::Gva;

use super::images::IMAGES;
use super::lifecycle::{create_domain, stop_domain};
use super::state::DomainState;
use crate::arch::paging::IdentityMem;
use crate::hypercall::domctl::{DomctlOp, decode_create};
use crate::hypercall::vcpu_context;
use crate::mm::guest_mem::GuestView;
use crate::regs::frame_ring;
use crate::setup::{DOMAINS, HV, MACHINE, SCHED};

/// Perform `op` for the current domain and put the result (0 or `-errno`) in its RAX.
pub fn perform(op: DomctlOp) {
    let result = match run(op) {
        Ok(()) => 0,
        Err(e) => e.as_ret(),
    };
    let mut table = DOMAINS.lock();
    if let Some(caller) = table.current_mut() {
        caller.vcpu.regs.rax = result as u64;
    }
}

/// Read a `T` from the current domain's memory at `at`.
fn read_caller<T: zerocopy::FromBytes + zerocopy::IntoBytes>(at: Gva) -> Result<T, Errno> {
    let mut table = DOMAINS.lock();
    let caller = table.current_mut().ok_or(Errno::ESRCH)?;
    let user = frame_ring(&caller.vcpu.regs) == 3;
    GuestView::new(&mut IdentityMem, caller.mm.base, user).read_obj(at)
}

fn run(op: DomctlOp) -> Result<(), Errno> {
    match op {
        DomctlOp::Destroy(id) => destroy(id),
        DomctlOp::MaxMem(id, pages) => {
            let mut table = DOMAINS.lock();
            let d = table.any_mut(id)?;
            d.mm.max_pages = pages;
            Ok(())
        }
        DomctlOp::SetVcpuContext(id, at) => {
            let c: abi::domctl::VcpuGuestContext = read_caller(at)?;
            let mut table = DOMAINS.lock();
            let d = table.live_mut(id)?;
            let base = d.mm.base;
            vcpu_context::from_context(&mut d.vcpu, base, &c)?;
            log::info!("domain {id}: vCPU context set by the control domain");
            Ok(())
        }
        DomctlOp::Create(at) => create(at),
        DomctlOp::Save(cmd, id, at) => save_op(cmd, id, at),
    }
}

/// Write `bytes` into the current domain's memory at `at`.
fn write_caller(at: Gva, bytes: &[u8]) -> Result<(), Errno> {
    let mut table = DOMAINS.lock();
    let caller = table.current_mut().ok_or(Errno::ESRCH)?;
    let user = frame_ring(&caller.vcpu.regs) == 3;
    GuestView::new(&mut IdentityMem, caller.mm.base, user).write(at, bytes)
}

/// The save protocol and the image store (`domain::save`), with the caller's envelope at `at`.
fn save_op(cmd: u32, id: u16, at: Gva) -> Result<(), Errno> {
    use abi::domctl::{
        DOMCTL_RESTORE_PAUSED, DomctlImage, SavedImageInfo, XEN_DOMCTL_IMAGE_DELETE,
        XEN_DOMCTL_IMAGE_LIST, XEN_DOMCTL_IMAGE_PUT, XEN_DOMCTL_RESTORE, XEN_DOMCTL_RESUMEDOMAIN,
        XEN_DOMCTL_SAVE, XEN_DOMCTL_SUSPEND_REQUEST,
    };
    use zerocopy::IntoBytes;
    let mut op: XenDomctl = read_caller(at)?;
    if cmd == abi::domctl::XEN_DOMCTL_SHADOW_OP {
        let mut sop: abi::domctl::XenDomctlShadowOp = op.arg();
        super::logdirty_ctl::shadow_op(id, &mut sop, |to, b| write_caller(Gva(to), b))?;
        op.set_arg(&sop);
        return write_caller(at, op.as_bytes());
    }
    let mut arg: DomctlImage = op.arg();
    let name = || super::save_store::valid_name(arg.name_bytes());
    match cmd {
        XEN_DOMCTL_SUSPEND_REQUEST => return super::save::request(id),
        XEN_DOMCTL_RESUMEDOMAIN => return super::save::resume(id),
        XEN_DOMCTL_SAVE => arg.bytes = super::save::save(id, name()?)? as u64,
        XEN_DOMCTL_RESTORE => {
            op.domain = super::save::restore(name()?, arg.flags & DOMCTL_RESTORE_PAUSED != 0)?;
        }
        XEN_DOMCTL_IMAGE_PUT => {
            let (buf, len) = (arg.buf, arg.len);
            return super::save_images::put(name()?, len, |out| {
                let mut table = DOMAINS.lock();
                let caller = table.current_mut().ok_or(Errno::ESRCH)?;
                let user = frame_ring(&caller.vcpu.regs) == 3;
                GuestView::new(&mut IdentityMem, caller.mm.base, user).read(Gva(buf), out)
            });
        }
        XEN_DOMCTL_IMAGE_DELETE => return super::save_images::delete(name()?),
        abi::domctl::XEN_DOMCTL_IMAGE_DUMP => return super::save_images::dump(name()?),
        abi::domctl::XEN_DOMCTL_MIGRATE => {
            let (pages, dest) = super::migrate::migrate(id, arg.flags)?;
            arg.bytes = pages;
            arg.len = u64::from(dest);
        }
        abi::domctl::XEN_DOMCTL_MIGRATE_RECEIVE => {
            let (id, pages) = super::migrate::receive()?;
            op.domain = id;
            arg.bytes = pages;
        }
        XEN_DOMCTL_IMAGE_LIST => {
            let mut out = [SavedImageInfo::default(); abi::domctl::MAX_SAVED_IMAGES];
            let max = (arg.len as usize).min(out.len());
            let n = super::save_images::list(&mut out[..max]);
            write_caller(Gva(arg.buf), out[..n].as_bytes())?;
            arg.len = n as u64;
            arg.bytes = crate::setup::MACHINE
                .lock()
                .as_ref()
                .map_or(0, |m| m.frames.free_count() * 4096);
        }
        _ => return Err(Errno::ENOSYS),
    }
    op.set_arg(&arg);
    write_caller(at, op.as_bytes())
}

/// Stop domain `id` if it still runs, release its memory and free its slot at once.
fn destroy(id: u16) -> Result<(), Errno> {
    let mut table = DOMAINS.lock();
    let i = usize::from(id);
    let slot = table.slots.get_mut(i).ok_or(Errno::ESRCH)?;
    let d = slot.as_mut().ok_or(Errno::ESRCH)?;
    if d.runnable() {
        // A deliberate destroy is not a failure of the domain: it leaves no trace in the exit status.
        stop_domain(
            d,
            DomainState::Shutdown {
                reason: abi::sched::ShutdownReason::Poweroff,
                code: 0,
            },
        );
        log::info!("domain {id} destroyed by the control domain");
        *slot = None;
        table.shared_info[i] = None;
        if table.segments_loaded == Some(i) {
            table.segments_loaded = None;
        }
        if crate::console::input_owner() == id {
            crate::console::set_input_owner(0);
            log::info!("console input: domain 0 (domain {id} is gone)");
        }
    } else {
        // Stopped, not yet reaped: reap it now (its result counts as usual).
        table.reap();
    }
    Ok(())
}

/// Build the domain the caller's envelope at `at` describes and write its id there.
fn create(at: Gva) -> Result<(), Errno> {
    let op: XenDomctl = read_caller(at)?;
    let p = decode_create(&op.arg::<DomctlCreate>())?;
    let image = IMAGES
        .lock()
        .find(&p.image)
        .map(|i| (i.start, i.end))
        .ok_or(Errno::ENOENT)?;
    let id = DOMAINS.lock().free_id().ok_or(Errno::ENOSPC)?;
    let free = MACHINE.lock().as_ref().map_or(0, |m| m.frames.free_count());
    if free < p.pages + 1 {
        return Err(Errno::ENOMEM);
    }
    let hv = HV.get().ok_or(Errno::EIO)?;
    if let Err(e) = create_domain(
        id,
        image,
        &p.cmdline,
        p.pages,
        hv,
        crate::sched_policy::DEFAULT_WEIGHT,
    ) {
        log::warn!(
            "domain {id}: createdomain from image '{}' failed: {e}",
            p.image
        );
        return Err(Errno::EINVAL);
    }
    DOMAINS.lock().last_created = id;
    if p.paused {
        let _ = SCHED.lock().0.set_paused(usize::from(id), true);
    }
    log::info!(
        "domain {id} created by the control domain from image '{}'{}",
        p.image,
        if p.paused { ", paused" } else { "" }
    );
    let mut out = op;
    out.domain = id;
    let mut table = DOMAINS.lock();
    let caller = table.current_mut().ok_or(Errno::ESRCH)?;
    let user = frame_ring(&caller.vcpu.regs) == 3;
    GuestView::new(&mut IdentityMem, caller.mm.base, user).write_obj(at, &out)
}
