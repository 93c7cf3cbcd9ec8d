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
        };
        let mut op = XenDomctl::new(cmd, id);
        if let MachineOp::MaxMemKb(kb) = what {
            op.set_arg(&XenDomctlMaxMem { max_memkb: kb });
        }
        self.domctl(&mut op)
    }
}
