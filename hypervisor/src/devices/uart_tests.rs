//! Tests of the 16550A: divisor latch, instant transmission, interrupt identification by priority, FIFO
//! trigger levels, overrun, loopback and modem status, OUT2 gating.

use super::uart::*;

const DATA: u16 = 0;
const IER: u16 = 1;
const IIR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

#[test]
fn divisor_latch_and_line_control() {
    let mut u = Uart::new();
    u.write(LCR, 0x80);
    u.write(DATA, 0x01);
    u.write(IER, 0x00);
    assert_eq!((u.read(DATA), u.read(IER)), (0x01, 0x00));
    assert_eq!(u.divisor, 1);
    u.write(LCR, 0x03);
    assert_eq!(u.read(LCR), 0x03);
    assert_eq!(u.read(IER), 0, "IER again, not the divisor");
    u.write(SCR, 0x5a);
    assert_eq!(u.read(SCR), 0x5a);
}

#[test]
fn transmission_is_instant() {
    let mut u = Uart::new();
    assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT);
    assert_eq!(u.write(DATA, b'x'), Some(b'x'));
    assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT, "already sent");
    u.write(LCR, 0x80);
    assert_eq!(u.write(DATA, b'y'), None, "DLAB: the divisor, not THR");
}

#[test]
fn thr_empty_interrupt() {
    let mut u = Uart::new();
    u.write(MCR, MCR_OUT2);
    assert!(!u.irq_level());
    u.write(IER, IER_THRE);
    assert!(u.irq_level(), "enabling it with THR empty raises it");
    assert_eq!(u.read(IIR), IIR_THRE);
    assert!(!u.irq_level(), "reading IIR cleared it");
    assert_eq!(u.read(IIR), IIR_NONE);
    u.write(DATA, b'a');
    assert!(u.irq_level(), "THR empty again after the byte left");
    assert!(
        !u.take_retrigger(),
        "the line was low: an ordinary rising edge"
    );
    u.write(DATA, b'b');
    assert!(
        u.take_retrigger(),
        "written while pending: the line fell and rose"
    );
    assert!(!u.take_retrigger());
}

#[test]
fn rx_priority_and_trigger_levels() {
    let mut u = Uart::new();
    u.write(MCR, MCR_OUT2);
    u.write(2, 0x47); // FIFO on, cleared, trigger 4
    u.write(IER, IER_RDA | IER_THRE);
    assert_eq!(u.read(IIR), 0xc0 | IIR_THRE);
    u.push_input(1);
    assert_eq!(u.read(IIR), 0xc0 | IIR_TIMEOUT, "below the trigger level");
    for b in 2..=4 {
        u.push_input(b);
    }
    assert_eq!(u.read(IIR), 0xc0 | IIR_RDA);
    assert_eq!(u.read(LSR) & LSR_DR, LSR_DR);
    let got: Vec<u8> = (0..4).map(|_| u.read(DATA)).collect();
    assert_eq!(got, [1, 2, 3, 4]);
    assert_eq!(u.read(LSR) & LSR_DR, 0);
    assert_eq!(u.read(IIR), 0xc0 | IIR_NONE);
}

#[test]
fn overrun_and_line_status_interrupt() {
    let mut u = Uart::new();
    u.write(2, 0x07);
    u.write(IER, IER_RLS | IER_RDA);
    for b in 0..FIFO_SIZE as u8 {
        u.push_input(b);
    }
    assert_eq!(u.rx.len(), FIFO_SIZE);
    u.push_input(99);
    assert_eq!(u.rx.len(), FIFO_SIZE, "dropped");
    assert_eq!(u.read(IIR) & 0x0f, IIR_RLS, "line status outranks data");
    assert_eq!(u.read(LSR) & LSR_OE, LSR_OE);
    assert_eq!(u.read(LSR) & LSR_OE, 0, "cleared by reading LSR");
    assert_eq!(u.read(IIR) & 0x0f, IIR_RDA);
    assert_eq!(u.read(DATA), 0);
    // Without FIFOs one byte is held.
    u.write(2, 0x00);
    assert!(u.rx.is_empty(), "switching FIFOs off empties the receiver");
    u.push_input(7);
    u.push_input(8);
    assert_eq!(u.rx.len(), 1);
    assert_eq!(u.read(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
    assert_eq!(u.read(DATA), 7);
    assert_eq!(u.read(IIR), IIR_NONE, "no FIFO bits");
}

#[test]
fn fifo_reset_bit() {
    let mut u = Uart::new();
    u.write(2, 0x01);
    u.push_input(1);
    u.push_input(2);
    u.write(2, 0x03);
    assert!(u.rx.is_empty());
}

#[test]
fn loopback_and_modem_status() {
    let mut u = Uart::new();
    assert_eq!(u.read(MSR), 0xb0, "CTS, DSR, DCD of an attached terminal");
    u.write(MCR, MCR_LOOP);
    assert_eq!(u.read(MSR), 0x0b, "lines fell: delta CTS, DSR, DCD");
    assert_eq!(u.read(MSR), 0x00, "deltas cleared");
    u.write(MCR, MCR_LOOP | 0x0f);
    assert_eq!(u.read(MSR), 0xf0 | 0x0b);
    u.write(MCR, MCR_LOOP | 0x0b);
    assert_eq!(u.read(MSR) & 0x04, 0x04, "trailing edge of RI");
    assert_eq!(u.write(DATA, b'q'), None, "looped back, not sent");
    u.push_input(b'z');
    assert_eq!(u.rx.len(), 1, "the line is disconnected in loopback");
    assert_eq!(u.read(DATA), b'q');
    // Modem status interrupt (in loopback it stays inside the chip).
    u.write(IER, IER_MS);
    u.write(MCR, MCR_LOOP);
    assert_eq!(u.read(IIR), IIR_MS);
    assert!(!u.irq_level(), "loopback keeps the interrupt off IRQ 4");
}

#[test]
fn out2_gates_irq4() {
    let mut u = Uart::new();
    u.write(IER, IER_RDA);
    u.push_input(b'k');
    assert_eq!(u.read(IIR), IIR_RDA);
    assert!(!u.irq_level(), "OUT2 clear");
    u.write(MCR, 0x03 | MCR_OUT2);
    assert!(u.irq_level());
    u.read(DATA);
    assert!(!u.irq_level());
}

#[test]
fn input_room_is_what_the_receiver_takes_without_overrun() {
    let mut u = Uart::new();
    assert_eq!(u.rx_room(), 1, "no FIFO: a one-byte holding register");
    u.push_input(b'a');
    assert_eq!(u.rx_room(), 0);
    assert_eq!(u.read(DATA), b'a');
    u.write(2, 0x01); // FCR: FIFO on
    assert_eq!(u.rx_room(), 16);
    // A feeder that honours the room never overruns, however much input is queued.
    let mut queued: std::collections::VecDeque<u8> = (0..40u8).collect();
    let mut got = Vec::new();
    while !queued.is_empty() || u.read(LSR) & 1 != 0 {
        while u.rx_room() > 0 {
            let Some(b) = queued.pop_front() else { break };
            u.push_input(b);
        }
        while u.read(LSR) & 1 != 0 {
            got.push(u.read(DATA));
        }
    }
    assert_eq!(got, (0..40u8).collect::<Vec<_>>());
    assert_eq!(u.read(LSR) & 2, 0, "no overrun");
    u.write(MCR, 0x10); // loopback: line input is lost, so there is no room for it
    assert_eq!(u.rx_room(), 0);
}
