//! What the emulator needs from the world around it (guest memory through the guest's own page tables,
//! devices, the TLB), its registers, and the outcomes it returns. The hypervisor implements [`Env`] over a
//! domain's frames and `Board`; the host tests over a flat memory.
#![forbid(unsafe_code)]

use crate::devices::IoEffect;

/// The general registers, RIP and the real RFLAGS bits of the guest (IF virtual, in `VCpu::vif`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 (encoding order).
    pub gpr: [u64; 16],
    /// RIP.
    pub rip: u64,
    /// RFLAGS (the arithmetic, TF, DF, AC, ID bits; IF and IOPL are virtual).
    pub rflags: u64,
}

/// Register numbers.
pub mod reg {
    /// RAX
    pub const RAX: usize = 0;
    /// RCX
    pub const RCX: usize = 1;
    /// RDX
    pub const RDX: usize = 2;
    /// RSP
    pub const RSP: usize = 4;
    /// RSI
    pub const RSI: usize = 6;
    /// RDI
    pub const RDI: usize = 7;
    /// R11
    pub const R11: usize = 11;
}

/// A failed guest memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFault {
    /// A page fault the guest takes: address and error code.
    Page(u64, u32),
    /// The domain must be crashed.
    Crash(&'static str),
}

/// The emulator's view of guest memory and devices.
pub trait Env {
    /// Read guest-virtual memory through the guest's tables with supervisor rights (`user`: CPL 3),
    /// setting accessed bits.
    fn read(&mut self, cr3: u64, va: u64, buf: &mut [u8], user: bool) -> Result<(), MemFault>;
    /// Write guest-virtual memory through the guest's tables, setting accessed and dirty bits.
    fn write(&mut self, cr3: u64, va: u64, bytes: &[u8], user: bool) -> Result<(), MemFault>;
    /// A port read.
    fn io_in(&mut self, port: u16, size: u8) -> u32;
    /// A port write.
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> IoEffect;
    /// A byte for the domain's console (the UART's output).
    fn console(&mut self, byte: u8);
    /// The host TSC.
    fn host_tsc(&self) -> u64;
    /// The guest loaded CR3 (guest-physical L4): switch the shadow root.
    fn load_cr3(&mut self, cr3: u64, pge: bool, nxe: bool) -> Result<(), &'static str>;
    /// INVLPG.
    fn invlpg(&mut self, va: u64);
    /// Drop every translation (`keep_global`: except global ones).
    fn flush_all(&mut self, keep_global: bool);
}

/// What the caller does after an emulated instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Resume the guest (RIP and registers updated).
    Continue,
    /// Deliver an exception through the guest's IDT (RIP at the faulting instruction); for #PF the
    /// emulator has set the virtual CR2.
    Exception {
        /// Vector.
        vector: u8,
        /// Error code, for the vectors that push one.
        error: Option<u32>,
    },
    /// INT n: deliver vector n as a software interrupt (RIP after the instruction; gate DPL checked).
    SoftInt(u8),
    /// HLT with the virtual IF set: sleep until an interrupt (RIP after the HLT).
    Block,
    /// The guest wrote to isa-debug-exit: shut the domain down with this code.
    Shutdown(u32),
    /// Crash the domain.
    Crash(&'static str),
}

/// Exception vectors.
pub mod vector {
    /// #DE
    pub const DE: u8 = 0;
    /// #DB
    pub const DB: u8 = 1;
    /// NMI
    pub const NMI: u8 = 2;
    /// #BP
    pub const BP: u8 = 3;
    /// #UD
    pub const UD: u8 = 6;
    /// #NM
    pub const NM: u8 = 7;
    /// #DF
    pub const DF: u8 = 8;
    /// #TS
    pub const TS: u8 = 10;
    /// #NP
    pub const NP: u8 = 11;
    /// #SS
    pub const SS: u8 = 12;
    /// #GP
    pub const GP: u8 = 13;
    /// #PF
    pub const PF: u8 = 14;
    /// #AC
    pub const AC: u8 = 17;

    /// True if the CPU pushes an error code for `v`.
    pub const fn has_error(v: u8) -> bool {
        matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
    }
}

/// `#GP(code)`.
pub const fn gp(code: u32) -> Outcome {
    Outcome::Exception {
        vector: vector::GP,
        error: Some(code),
    }
}

/// `#UD`.
pub const UD: Outcome = Outcome::Exception {
    vector: vector::UD,
    error: None,
};
