//! The COM1 16550 UART: the hypervisor's console (polled, 115200 8N1) and the debug-exit port.

use super::cpu::{inb, outb};

const COM1: u16 = 0x3f8;

/// Program COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, interrupts off.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB on
    outb(COM1, 0x01); // divisor 1 = 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1, DLAB off
    outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
    outb(COM1 + 4, 0x03); // DTR | RTS
}

/// Turn on COM1's receive-data interrupt (and OUT2, which gates the UART's IRQ line on a PC).
pub fn enable_rx_interrupt() {
    outb(COM1 + 1, 0x01);
    outb(COM1 + 4, 0x0b);
}

/// Take one received byte, if any.
pub fn try_read() -> Option<u8> {
    (inb(COM1 + 5) & 1 != 0).then(|| inb(COM1))
}

/// Send one byte, waiting for the transmit holding register to drain. `\n` becomes `\r\n`.
pub fn write_byte(b: u8) {
    if b == b'\n' {
        raw_byte(b'\r');
    }
    raw_byte(b);
}

fn raw_byte(b: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
        spins += 1;
    }
    outb(COM1, b);
}

/// Stop the machine with `status` through QEMU's `isa-debug-exit` device; halt if the device is absent.
pub fn debug_exit(status: u8) -> ! {
    super::cpu::outl(abi::exit::DEBUG_EXIT_PORT, u32::from(status));
    super::cpu::halt_forever()
}

/// The second 16550 (COM2): the live-migration line to another machine (binary, polled, never the console).
pub mod com2 {
    use super::super::cpu::{inb, outb};

    const PORT: u16 = 0x2f8;

    /// Program COM2 like COM1 (115200 8N1, FIFOs on, interrupts off); false if no UART answers (the
    /// scratch register does not keep a value).
    pub fn init() -> bool {
        outb(PORT + 7, 0x5a);
        if inb(PORT + 7) != 0x5a {
            return false;
        }
        outb(PORT + 1, 0x00);
        outb(PORT + 3, 0x80);
        outb(PORT, 0x01);
        outb(PORT + 1, 0x00);
        outb(PORT + 3, 0x03);
        outb(PORT + 2, 0xc7);
        outb(PORT + 4, 0x03);
        true
    }

    /// Take one received byte, if any.
    pub fn try_read() -> Option<u8> {
        (inb(PORT + 5) & 1 != 0).then(|| inb(PORT))
    }

    /// Is the transmitter ready for a byte?
    pub fn can_write() -> bool {
        inb(PORT + 5) & 0x20 != 0
    }

    /// Send one byte (the caller waited for [`can_write`]).
    pub fn put(b: u8) {
        outb(PORT, b);
    }
}
