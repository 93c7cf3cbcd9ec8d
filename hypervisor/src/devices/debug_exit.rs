//! QEMU's isa-debug-exit device at port 0xf4: a write of `v` (any size) shuts the domain down with exit
//! code `v`; reads return all ones. (QEMU itself exits with `(v << 1) | 1`; here the domain's shutdown
//! code is `v` itself and the hypervisor's exit status follows its usual rule.)

use super::IoEffect;

/// The port.
pub const PORT: u16 = 0xf4;

/// The device (stateless).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugExit;

impl DebugExit {
    /// A write of `v`.
    pub fn write(&self, v: u32) -> IoEffect {
        IoEffect::Shutdown(v)
    }
}
