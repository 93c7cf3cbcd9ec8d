//! The 16550 UART on COM1: its registers, the programming sequence (115200 baud 8N1, FIFOs), and output
//! line handling (`\n` goes out as `\r\n`, what a terminal needs and what the hypervisor's console does
//! for PV output). Pure; the backend performs the port writes.

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
/// The UART's input clock divided by 16: the baud rate at divisor 1.
pub const BASE_BAUD: u32 = 115_200;

/// Register offsets from the base port.
pub mod reg {
    /// Receive buffer (read) / transmit holding (write); divisor low byte with DLAB.
    pub const DATA: u16 = 0;
    /// Interrupt enable; divisor high byte with DLAB.
    pub const IER: u16 = 1;
    /// FIFO control (write).
    pub const FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
}

/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// LCR: 8 data bits, no parity, one stop bit.
pub const LCR_8N1: u8 = 0x03;
/// FCR: FIFOs on, both cleared, receive interrupt at every byte (typing is interactive).
pub const FCR_ENABLE_CLEAR_1: u8 = 0x07;
/// MCR: DTR | RTS.
pub const MCR_DTR_RTS: u8 = 0x03;
/// MCR: OUT2, which on a PC gates the UART's interrupt onto IRQ 4.
pub const MCR_OUT2: u8 = 0x08;
/// IER: interrupt when received data is available.
pub const IER_RX: u8 = 0x01;
/// LSR: a received byte is waiting.
pub const LSR_DATA_READY: u8 = 0x01;
/// LSR: the transmit holding register is empty.
pub const LSR_THR_EMPTY: u8 = 0x20;

/// The divisor for `baud`, if the UART can produce that rate exactly.
pub const fn divisor(baud: u32) -> Option<u16> {
    if baud == 0 || !BASE_BAUD.is_multiple_of(baud) || BASE_BAUD / baud > u16::MAX as u32 {
        None
    } else {
        Some((BASE_BAUD / baud) as u16)
    }
}

/// The port writes that program the UART at `base` for `divisor`, 8N1, FIFOs on, interrupts off.
pub const fn init_sequence(base: u16, divisor: u16) -> [(u16, u8); 7] {
    [
        (base + reg::IER, 0),
        (base + reg::LCR, LCR_DLAB),
        (base + reg::DATA, divisor as u8),
        (base + reg::IER, (divisor >> 8) as u8),
        (base + reg::LCR, LCR_8N1),
        (base + reg::FCR, FCR_ENABLE_CLEAR_1),
        (base + reg::MCR, MCR_DTR_RTS),
    ]
}

/// The port writes that turn on the receive interrupt (IRQ 4 on a PC).
pub const fn rx_interrupt_sequence(base: u16) -> [(u16, u8); 2] {
    [
        (base + reg::IER, IER_RX),
        (base + reg::MCR, MCR_DTR_RTS | MCR_OUT2),
    ]
}

/// Feed `bytes` to `out` as they go on the wire: every `\n` preceded by `\r`.
pub fn for_each_wire_byte(bytes: &[u8], mut out: impl FnMut(u8)) {
    for &b in bytes {
        if b == b'\n' {
            out(b'\r');
        }
        out(b);
    }
}

/// True if the line status says a received byte is waiting.
pub const fn rx_ready(lsr: u8) -> bool {
    lsr & LSR_DATA_READY != 0
}

/// True if the line status says another byte may be written.
pub const fn tx_ready(lsr: u8) -> bool {
    lsr & LSR_THR_EMPTY != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors() {
        assert_eq!(divisor(115_200), Some(1));
        assert_eq!(divisor(9600), Some(12));
        assert_eq!(divisor(50), Some(2304));
        assert_eq!(divisor(0), None);
        assert_eq!(divisor(100_000), None);
        assert_eq!(divisor(1), None, "115200 does not fit the 16-bit divisor");
    }

    #[test]
    fn programming_sets_the_divisor_under_dlab_then_8n1() {
        let seq = init_sequence(COM1, 0x0102);
        assert_eq!(seq[0], (0x3f9, 0), "interrupts off first");
        assert_eq!(seq[1], (0x3fb, 0x80));
        assert_eq!(seq[2], (0x3f8, 0x02), "divisor low byte");
        assert_eq!(seq[3], (0x3f9, 0x01), "divisor high byte");
        assert_eq!(seq[4], (0x3fb, 0x03), "8N1 clears DLAB");
        assert_eq!(seq[5], (0x3fa, 0x07), "FIFOs on, interrupt per byte");
        assert_eq!(seq[6], (0x3fc, 0x03));
        assert_eq!(rx_interrupt_sequence(COM1), [(0x3f9, 1), (0x3fc, 0x0b)]);
    }

    #[test]
    fn newlines_go_out_as_crlf_and_nothing_else_changes() {
        let mut wire = Vec::new();
        for_each_wire_byte(b"a\nb\r\n\n\x03", |b| wire.push(b));
        assert_eq!(wire, b"a\r\nb\r\r\n\r\n\x03");
        wire.clear();
        for_each_wire_byte(b"", |b| wire.push(b));
        assert!(wire.is_empty());
    }

    #[test]
    fn line_status_bits() {
        assert!(rx_ready(0x61) && tx_ready(0x61));
        assert!(!rx_ready(0x60) && tx_ready(0x60));
        assert!(rx_ready(0x01) && !tx_ready(0x01));
    }
}
