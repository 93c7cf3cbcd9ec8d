//! The emulated legacy PC device set of an `emulate` or `hvm` domain: one [`Board`] per domain holding two
//! cascaded 8259A PICs ([`pic`]), the 8254 PIT with port 0x61 ([`pit`]), a 16550 UART on COM1 ([`uart`]),
//! the MC146818 CMOS RTC ([`rtc`]) and QEMU's isa-debug-exit ([`debug_exit`]).
//!
//! Pure and host-tested: the hypervisor's trap paths hand every port access of the guest to
//! [`Board::io_in`] / [`Board::io_out`] with the current system time, and ask [`Board::pending_vector`] /
//! [`Board::acknowledge`] when it may inject an interrupt. Nothing here touches the machine, allocates or
//! panics: a guest programming garbage only changes its own Board. Interrupt sources: the PIT's channel
//! 0 on line 0, the UART on line 4, the RTC on line 8 (slave line 0).
//!
//! Time is the hypervisor's monotonic system time in nanoseconds (`now_ns`); the PIT counts at
//! 1,193,182 Hz of it, the RTC shows `wallclock_secs + now_ns / 1e9` (the wall clock at system time 0,
//! like the PV wallclock). A time earlier than one already seen is treated as that time.
//!
//! Wide accesses to the byte-wide devices behave as on the ISA bus: an access of size 2 or 4 at port `p`
//! is split into byte accesses at `p`, `p + 1`, ... (so `outw` to 0x20 writes 0x20 then 0x21). The
//! isa-debug-exit port takes the whole value. Sizes other than 1, 2 and 4 read all ones and write nothing.
#![forbid(unsafe_code)]

pub mod debug_exit;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;

#[cfg(test)]
mod board_proptest;
#[cfg(test)]
mod board_tests;
#[cfg(test)]
mod guest_tests;
#[cfg(test)]
mod pic_tests;
#[cfg(test)]
mod pit_tests;
#[cfg(test)]
mod rtc_tests;
#[cfg(test)]
mod uart_tests;

use core::fmt;

use debug_exit::DebugExit;
use pic::Pics;
use pit::Pit;
use rtc::Rtc;
use uart::Uart;

/// What a port write did beyond changing device state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEffect {
    /// Nothing to do.
    None,
    /// A byte the guest wrote to COM1's transmit holding register: send it to the domain's console.
    Output(u8),
    /// The guest wrote `v` to isa-debug-exit: shut the domain down with exit code `v`.
    Shutdown(u32),
}

/// The PIC line of the PIT's channel 0.
pub const IRQ_TIMER: u8 = 0;
/// The PIC line of COM1.
pub const IRQ_COM1: u8 = 4;
/// The PIC line of the RTC (slave line 0).
pub const IRQ_RTC: u8 = 8;

/// One domain's devices.
#[derive(Clone, Debug)]
pub struct Board {
    pic: Pics,
    pit: Pit,
    uart: Uart,
    rtc: Rtc,
    exit: DebugExit,
    /// The latest time seen (time never goes backwards for the devices).
    now_ns: u64,
}

/// All ones of an access of `size` bytes (0 for an invalid size).
const fn ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => 0,
    }
}

impl Board {
    /// A board in the state a PC BIOS leaves it: PICs at vectors 0x08 / 0x70 with every line masked, the
    /// PIT's channel 0 running the 18.2 Hz BIOS tick (masked), the UART reset, the RTC showing
    /// `wallclock_secs` (seconds since 1970 at system time 0) in 24-hour BCD.
    pub fn new(wallclock_secs: u64) -> Board {
        Board {
            pic: Pics::new(),
            pit: Pit::new(),
            uart: Uart::new(),
            rtc: Rtc::new(wallclock_secs),
            exit: DebugExit,
            now_ns: 0,
        }
    }

    fn clock(&mut self, now_ns: u64) -> u64 {
        self.now_ns = self.now_ns.max(now_ns);
        self.now_ns
    }

    /// A port read of `size` (1, 2 or 4) bytes; unknown ports read all ones.
    pub fn io_in(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        let now = self.clock(now_ns);
        self.advance(now);
        if !matches!(size, 1 | 2 | 4) {
            return u32::MAX;
        }
        if port == debug_exit::PORT {
            return ones(size);
        }
        let mut v = 0u32;
        for i in 0..size {
            let b = self.in_byte(port.wrapping_add(u16::from(i)), now);
            v |= u32::from(b) << (8 * i);
        }
        self.sync_lines();
        v
    }

    /// A port write of `size` (1, 2 or 4) bytes of `value`; unknown ports ignore it.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32, now_ns: u64) -> IoEffect {
        let now = self.clock(now_ns);
        self.advance(now);
        if !matches!(size, 1 | 2 | 4) {
            return IoEffect::None;
        }
        let value = value & ones(size);
        if port == debug_exit::PORT {
            return self.exit.write(value);
        }
        let mut effect = IoEffect::None;
        for i in 0..size {
            let b = (value >> (8 * i)) as u8;
            let e = self.out_byte(port.wrapping_add(u16::from(i)), b, now);
            if e != IoEffect::None
                && (effect == IoEffect::None || matches!(e, IoEffect::Shutdown(_)))
            {
                effect = e;
            }
        }
        // A write that raised the PIT's output (e.g. mode 2 after a stopped mode-0 count) is an edge now.
        if self.pit.advance(now) {
            self.pic.pulse(IRQ_TIMER);
        }
        self.sync_lines();
        effect
    }

    fn in_byte(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 => self.pic.read(port),
            pic::MASTER_ELCR | pic::SLAVE_ELCR => self.pic.read_elcr(port),
            0x40..=0x43 => self.pit.read(port, now),
            pit::PORT_B => self.pit.read_port_b(now),
            uart::COM1..=uart::COM1_LAST => self.uart.read(port - uart::COM1),
            rtc::PORT_INDEX | rtc::PORT_DATA => self.rtc.read(port, now),
            debug_exit::PORT => 0xff,
            _ => 0xff,
        }
    }

    fn out_byte(&mut self, port: u16, v: u8, now: u64) -> IoEffect {
        match port {
            0x20 | 0x21 | 0xa0 | 0xa1 => self.pic.write(port, v),
            pic::MASTER_ELCR | pic::SLAVE_ELCR => self.pic.write_elcr(port, v),
            0x40..=0x43 => self.pit.write(port, v, now),
            pit::PORT_B => self.pit.write_port_b(v, now),
            uart::COM1..=uart::COM1_LAST => {
                let e = self.uart.write(port - uart::COM1, v);
                if let Some(b) = e {
                    return IoEffect::Output(b);
                }
            }
            rtc::PORT_INDEX | rtc::PORT_DATA => self.rtc.write(port, v, now),
            debug_exit::PORT => return self.exit.write(u32::from(v)),
            _ => {}
        }
        IoEffect::None
    }

    /// Bring the UART's and the RTC's interrupt lines to the PIC: for the UART an edge if it re-raised its
    /// interrupt during the access (e.g. the transmitter emptied again after a THR write).
    fn sync_lines(&mut self) {
        if self.uart.take_retrigger() {
            self.pic.set_level(IRQ_COM1, false);
        }
        self.pic.set_level(IRQ_COM1, self.uart.irq_level());
        self.pic.set_level(IRQ_RTC, self.rtc.irq_level());
    }

    /// Raise the interrupts due by `now_ns`: at most one IRQ 0 edge however many timer periods passed
    /// (periods missed while the domain was not running are coalesced, not queued).
    pub fn advance(&mut self, now_ns: u64) {
        let now = self.clock(now_ns);
        if self.pit.advance(now) {
            self.pic.pulse(IRQ_TIMER);
        }
        self.rtc.advance(now);
        self.sync_lines();
    }

    /// When the next timer interrupt (PIT on IRQ 0, RTC on IRQ 8) is due, for a HLT sleep: `None` if
    /// neither will raise one on an unmasked line.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let pit = (!self.pic.line_masked(IRQ_TIMER))
            .then(|| self.pit.next_irq_ns())
            .flatten();
        let rtc = (!self.pic.line_masked(IRQ_RTC))
            .then(|| self.rtc.next_irq_ns())
            .flatten();
        match (pit, rtc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The vector the PICs would deliver now (none if nothing is pending, masked, or of lower priority
    /// than what is in service).
    pub fn pending_vector(&self) -> Option<u8> {
        self.pic.pending_vector()
    }

    /// The interrupt acknowledge cycle: the pending request moves from IRR to ISR (unless auto-EOI) and
    /// its vector is returned.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.pic.acknowledge();
        self.sync_lines();
        v
    }

    /// A byte of serial input for the domain (into the UART's receive FIFO; dropped with an overrun if the
    /// FIFO is full).
    pub fn push_input(&mut self, byte: u8) {
        self.uart.push_input(byte);
        self.sync_lines();
    }

    /// How many bytes of serial input [`Board::push_input`] can take now without an overrun: a feeder
    /// holds the rest back until the guest has read these.
    pub fn input_room(&self) -> usize {
        self.uart.rx_room()
    }

    /// Move serial input from `next` into the UART while its receiver has room (the rest stays with the
    /// caller's queue for a later call): the one feeder of both the emulate and the hvm kinds.
    pub fn feed_input(&mut self, mut next: impl FnMut() -> Option<u8>) {
        while self.input_room() > 0 {
            let Some(b) = next() else { break };
            self.push_input(b);
        }
    }

    /// Record the domain's memory size in the CMOS memory-size bytes (see [`Rtc::set_memory_kib`]).
    pub fn set_memory_kib(&mut self, kib: u64) {
        self.rtc.set_memory_kib(kib);
    }

    /// The PICs (for inspection and the debug key).
    pub fn pic(&self) -> &Pics {
        &self.pic
    }

    /// The PIT (for inspection).
    pub fn pit(&self) -> &Pit {
        &self.pit
    }

    /// The UART (for inspection).
    pub fn uart(&self) -> &Uart {
        &self.uart
    }

    /// The RTC (for inspection).
    pub fn rtc(&self) -> &Rtc {
        &self.rtc
    }
}

/// One line of device state for a debug key: the PICs' vector bases and registers, PIT channel 0, the
/// UART's interrupt state and the RTC's status registers.
impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, s) = (&self.pic.master, &self.pic.slave);
        let c0 = &self.pit.channels[0];
        write!(
            f,
            "pic base {:#04x}/{:#04x} irr {:02x}/{:02x} isr {:02x}/{:02x} imr {:02x}/{:02x}; \
             pit0 mode {} count {}{}; uart ier {:x} iir {:x} rx {}; rtc b {:02x} c {:02x}",
            m.base,
            s.base,
            m.irr,
            s.irr,
            m.isr,
            s.isr,
            m.imr,
            s.imr,
            c0.mode,
            c0.count,
            if c0.running { "" } else { " (stopped)" },
            self.uart.ier,
            self.uart.iir_code(),
            self.uart.rx.len(),
            self.rtc.reg_b,
            self.rtc.flags,
        )
    }
}
