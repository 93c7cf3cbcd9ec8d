//! The toolstack's operations on the PV backend: `domctl` (hypercall 36) with Xen's envelope, for the
//! kernel's [`Platform::machine_create`](super::Platform::machine_create) and
//! [`Platform::machine_control`](super::Platform::machine_control).

use abi::domctl::{
    DomctlCreate, XEN_DOMCTL_CONSOLE_INPUT, XEN_DOMCTL_CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN,
    XEN_DOMCTL_MAX_MEM, XEN_DOMCTL_PAUSEDOMAIN, XEN_DOMCTL_UNPAUSEDOMAIN, XenDomctl,
    XenDomctlMaxMem,
};
use abi::errno::Errno;
use abi::hypercall::nr;

use super::MachineOp;
use super::xen_pv::{XenPv, raw};

impl XenPv {
    /// `domctl(op)`: the hypervisor's answer; `op` is updated in place (e.g. the new domain's id).
    pub fn domctl(&self, op: &mut XenDomctl) -> Result<(), Errno> {
        let r = raw(nr::DOMCTL, [op as *mut XenDomctl as u64, 0, 0, 0, 0]);
        if r < 0 {
            Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL))
        } else {
            Ok(())
        }
    }

    /// `XEN_DOMCTL_createdomain` from the kernel's request (the two layouts are the same bytes).
    pub fn create_domain(&self, req: &uapi::domctl::DomCreate) -> Result<u16, Errno> {
        let mut op = XenDomctl::new(XEN_DOMCTL_CREATEDOMAIN, 0);
        let c = DomctlCreate {
            image: req.image,
            max_memkb: req.mem_kb,
            flags: req.flags,
            cmdline_len: req.cmdline_len,
            cmdline: req.cmdline,
        };
        op.set_arg(&c);
        self.domctl(&mut op)?;
        Ok(op.domain)
    }

    /// Destroy, pause, unpause, set the ceiling of, or give the console to domain `id`.
    pub fn control_domain(&self, id: u16, what: MachineOp) -> Result<(), Errno> {
        let cmd = match what {
            MachineOp::Destroy => XEN_DOMCTL_DESTROYDOMAIN,
            MachineOp::Pause => XEN_DOMCTL_PAUSEDOMAIN,
            MachineOp::Unpause => XEN_DOMCTL_UNPAUSEDOMAIN,
            MachineOp::MaxMemKb(_) => XEN_DOMCTL_MAX_MEM,
            MachineOp::ConsoleInput => XEN_DOMCTL_CONSOLE_INPUT,
            MachineOp::Suspend => abi::domctl::XEN_DOMCTL_SUSPEND_REQUEST,
            MachineOp::Resume => abi::domctl::XEN_DOMCTL_RESUMEDOMAIN,
        };
        let mut op = XenDomctl::new(cmd, id);
        if let MachineOp::MaxMemKb(kb) = what {
            op.set_arg(&XenDomctlMaxMem { max_memkb: kb });
        }
        self.domctl(&mut op)
    }

    /// The image-store commands (ours, abi deviation o).
    pub fn image_op(&self, op: super::ImageOp<'_>) -> Result<u64, Errno> {
        use super::ImageOp;
        use abi::domctl::{
            DOMCTL_RESTORE_PAUSED, DomctlImage, XEN_DOMCTL_IMAGE_DELETE, XEN_DOMCTL_IMAGE_LIST,
            XEN_DOMCTL_RESTORE, XEN_DOMCTL_SAVE,
        };
        let named = |n: &str| DomctlImage::named(n).ok_or(Errno::EINVAL);
        let (cmd, dom, mut arg) = match &op {
            ImageOp::Save { id, name } => (XEN_DOMCTL_SAVE, *id, named(name)?),
            ImageOp::Restore { name, paused } => {
                let mut a = named(name)?;
                a.flags = if *paused { DOMCTL_RESTORE_PAUSED } else { 0 };
                (XEN_DOMCTL_RESTORE, 0, a)
            }
            ImageOp::Delete { name } => (XEN_DOMCTL_IMAGE_DELETE, 0, named(name)?),
            ImageOp::Dump { name } => (abi::domctl::XEN_DOMCTL_IMAGE_DUMP, 0, named(name)?),
            ImageOp::Migrate { id, phase } => {
                let mut a = named("migrate")?;
                a.flags = *phase;
                (abi::domctl::XEN_DOMCTL_MIGRATE, *id, a)
            }
            ImageOp::MigrateReceive => (
                abi::domctl::XEN_DOMCTL_MIGRATE_RECEIVE,
                0,
                named("migrate")?,
            ),
            ImageOp::List { out } => (
                XEN_DOMCTL_IMAGE_LIST,
                0,
                DomctlImage {
                    buf: out.as_ptr() as u64,
                    len: out.len() as u64,
                    ..DomctlImage::default()
                },
            ),
        };
        let mut x = XenDomctl::new(cmd, dom);
        x.set_arg(&arg);
        self.domctl(&mut x)?;
        arg = x.arg();
        Ok(match op {
            ImageOp::Save { .. } => arg.bytes,
            ImageOp::Restore { .. } => u64::from(x.domain),
            ImageOp::Delete { .. } | ImageOp::Dump { .. } => 0,
            ImageOp::List { .. } => arg.len,
            ImageOp::Migrate { .. } => arg.bytes | (arg.len << 32),
            ImageOp::MigrateReceive => u64::from(x.domain) | (arg.bytes << 32),
        })
    }

    /// `SCHEDOP_shutdown(SHUTDOWN_suspend)` with the start-info frame in RDX (Xen's protocol): true if
    /// this continues in a restored domain (the call returned 0), false if in place (1).
    pub fn suspend(&self, start_info: abi::types::Mfn) -> Result<bool, Errno> {
        let s = abi::xen::SchedShutdown {
            reason: abi::sched::ShutdownReason::Suspend.as_u32(),
        };
        let r = raw(
            nr::SCHED_OP,
            [
                abi::sched::SCHEDOP_SHUTDOWN,
                &raw const s as u64,
                start_info.0,
                0,
                0,
            ],
        );
        match r {
            0 => Ok(true),
            1 => Ok(false),
            r => Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL)),
        }
    }
}
