//! PCI configuration access (mechanism #1: address at port 0xCF8, data at 0xCFC) and the 16/32-bit port
//! I/O a legacy-interface device's I/O BAR needs. Only bus 0 is scanned (QEMU's machines put their devices
//! there); the hypervisor enumerates nothing else and routes no interrupts.

use core::arch::asm;

use super::cpu::{inb, outb, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Bus, device and function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

impl Bdf {
    fn address(self, offset: u8) -> u32 {
        (1 << 31)
            | u32::from(self.bus) << 16
            | u32::from(self.dev & 31) << 11
            | u32::from(self.func & 7) << 8
            | u32::from(offset & 0xfc)
    }

    /// The configuration dword at `offset` (rounded down to a multiple of 4).
    pub fn read32(self, offset: u8) -> u32 {
        outl(CONFIG_ADDRESS, self.address(offset));
        inl(CONFIG_DATA)
    }

    /// Write the configuration dword at `offset` (rounded down to a multiple of 4).
    pub fn write32(self, offset: u8, val: u32) {
        outl(CONFIG_ADDRESS, self.address(offset));
        outl(CONFIG_DATA, val);
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// The first function on bus 0 with this vendor and device id.
pub fn find(vendor: u16, device: u16) -> Option<Bdf> {
    let want = u32::from(device) << 16 | u32::from(vendor);
    for dev in 0..32 {
        let f0 = Bdf {
            bus: 0,
            dev,
            func: 0,
        };
        let id = f0.read32(0);
        if id & 0xffff == 0xffff {
            continue;
        }
        // Header type bit 7: a multi-function device.
        let funcs = if f0.read32(0x0c) >> 16 & 0x80 != 0 {
            8
        } else {
            1
        };
        for func in 0..funcs {
            let b = Bdf { bus: 0, dev, func };
            if b.read32(0) == want {
                return Some(b);
            }
        }
    }
    None
}

/// Turn on I/O-space decoding and bus mastering (the device may then read and write our memory); memory
/// space decoding and the legacy interrupt line are left as they are (INTx disabled: we poll).
pub fn enable_io_and_bus_master(b: Bdf) {
    let cmd = b.read32(0x04) & 0xffff;
    // Bit 0 I/O space, bit 2 bus master, bit 10 INTx disable; the status half is write-one-to-clear: 0.
    b.write32(0x04, cmd | 1 | 1 << 2 | 1 << 10);
}

/// Base port of BAR `n` if it is an I/O BAR with an address assigned.
pub fn io_bar(b: Bdf, n: u8) -> Option<u16> {
    let bar = b.read32(0x10 + 4 * (n & 7));
    let base = bar & !3;
    (bar & 1 == 1 && base != 0 && base <= 0xffff).then_some(base as u16)
}

/// A byte from an I/O port.
pub fn io_read8(port: u16) -> u8 {
    inb(port)
}

/// A byte to an I/O port.
pub fn io_write8(port: u16, v: u8) {
    outb(port, v)
}

/// A 16-bit word from an I/O port.
pub fn io_read16(port: u16) -> u16 {
    let v: u16;
    // SAFETY: port I/O has no memory effects visible to Rust; the callers own the device they address.
    unsafe {
        asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
    }
    v
}

/// A 16-bit word to an I/O port.
pub fn io_write16(port: u16, v: u16) {
    // SAFETY: as for `io_read16`. Not `nomem`: a queue notification must not be reordered before the
    // stores into the rings it announces.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nostack, preserves_flags)) }
}

/// A 32-bit word from an I/O port.
pub fn io_read32(port: u16) -> u32 {
    inl(port)
}

/// A 32-bit word to an I/O port.
pub fn io_write32(port: u16, v: u32) {
    outl(port, v)
}

fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `io_read16`.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    }
    v
}
