//! A 16550A UART on COM1 (ports 0x3f8–0x3ff): receive buffer / transmit holding register, interrupt
//! enable, interrupt identification, FIFO control, line control (with the divisor latch behind DLAB),
//! modem control (with loopback), line status, modem status and scratch registers.
//!
//! Transmission is instant: a byte written to THR leaves at once (returned to the caller, which puts it on
//! the domain's console), so LSR's THRE and TEMT are always set when the guest looks. Reception is a
//! 16-byte FIFO filled by [`Uart::push_input`] (one byte without FIFOs); a byte arriving when it is full is
//! dropped and sets the overrun bit. Interrupts, by priority as IIR reports them: line status (overrun,
//! IER bit 2), received data (at the FIFO trigger level; below it, the character-timeout code at once —
//! the chip waits four character times first), THR empty (IER bit 1: set when THR empties or when the bit
//! is enabled with THR empty, cleared by reading IIR while it is the reported source or by writing THR),
//! modem status (IER bit 3, delta bits, only changing in loopback). As on a PC the interrupt reaches IRQ 4
//! only with MCR's OUT2 set (QEMU's model ignores OUT2; a guest relying on that gets no interrupt here, as
//! on real hardware). Baud rate, parity and stop bits are stored and have no effect.

/// COM1's first port.
pub const COM1: u16 = 0x3f8;
/// COM1's last port.
pub const COM1_LAST: u16 = 0x3ff;
/// The receive FIFO's size.
pub const FIFO_SIZE: usize = 16;

/// IER: received data available.
pub const IER_RDA: u8 = 0x01;
/// IER: transmit holding register empty.
pub const IER_THRE: u8 = 0x02;
/// IER: receiver line status.
pub const IER_RLS: u8 = 0x04;
/// IER: modem status.
pub const IER_MS: u8 = 0x08;
/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
pub const LSR_OE: u8 = 0x02;
/// LSR: transmit holding register empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;
/// IIR: no interrupt pending.
pub const IIR_NONE: u8 = 0x01;
/// IIR: modem status.
pub const IIR_MS: u8 = 0x00;
/// IIR: THR empty.
pub const IIR_THRE: u8 = 0x02;
/// IIR: received data available.
pub const IIR_RDA: u8 = 0x04;
/// IIR: receiver line status.
pub const IIR_RLS: u8 = 0x06;
/// IIR: character timeout (data below the FIFO trigger level).
pub const IIR_TIMEOUT: u8 = 0x0c;
/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// MCR: OUT2 (gates the interrupt onto IRQ 4).
pub const MCR_OUT2: u8 = 0x08;
/// MCR: loopback.
pub const MCR_LOOP: u8 = 0x10;

/// The receive FIFO: a ring of [`FIFO_SIZE`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFifo {
    buf: [u8; FIFO_SIZE],
    head: u8,
    len: u8,
}

impl RxFifo {
    const fn new() -> RxFifo {
        RxFifo {
            buf: [0; FIFO_SIZE],
            head: 0,
            len: 0,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, b: u8) {
        let at = (usize::from(self.head) + self.len()) % FIFO_SIZE;
        self.buf[at] = b;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[usize::from(self.head)];
        self.head = ((usize::from(self.head) + 1) % FIFO_SIZE) as u8;
        self.len -= 1;
        Some(b)
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// The UART's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Received bytes.
    pub rx: RxFifo,
    /// Interrupt enable (4 bits).
    pub ier: u8,
    /// FIFO control as last written (enable bit and trigger level).
    pub fcr: u8,
    /// Line control.
    pub lcr: u8,
    /// Modem control (5 bits).
    pub mcr: u8,
    /// Line status error bits (overrun), cleared by reading LSR.
    pub lsr_errors: u8,
    /// Modem status delta bits (low nibble), cleared by reading MSR.
    pub msr_delta: u8,
    /// Scratch.
    pub scr: u8,
    /// Divisor latch.
    pub divisor: u16,
    /// A THR-empty interrupt is pending.
    pub thre_pending: bool,
    /// The interrupt output fell and rose within the last access (the PIC needs a new edge).
    retrigger: bool,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// The UART after reset: no interrupts, FIFOs off, divisor 12 (9600 baud).
    pub const fn new() -> Uart {
        Uart {
            rx: RxFifo::new(),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_delta: 0,
            scr: 0,
            divisor: 12,
            thre_pending: false,
            retrigger: false,
        }
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & 1 != 0
    }

    /// How many bytes the receiver holds.
    fn capacity(&self) -> usize {
        if self.fifo_enabled() { FIFO_SIZE } else { 1 }
    }

    /// The receive interrupt trigger level.
    fn trigger_level(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        [1, 4, 8, 14][usize::from(self.fcr >> 6)]
    }

    /// How many more input bytes the receiver takes now without an overrun (0 in loopback, where line
    /// input is lost anyway).
    pub fn rx_room(&self) -> usize {
        if self.mcr & MCR_LOOP != 0 {
            return 0;
        }
        self.capacity().saturating_sub(self.rx.len())
    }

    /// A byte arriving on the serial line (input for the domain); lost in loopback, where the receiver
    /// listens to the transmitter instead of the line.
    pub fn push_input(&mut self, b: u8) {
        if self.mcr & MCR_LOOP == 0 {
            self.receive(b);
        }
    }

    /// A byte entering the receiver.
    fn receive(&mut self, b: u8) {
        if self.rx.len() >= self.capacity() {
            self.lsr_errors |= LSR_OE;
        } else {
            self.rx.push(b);
        }
    }

    fn msr(&self) -> u8 {
        let lines = if self.mcr & MCR_LOOP != 0 {
            // Loopback: RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD.
            let m = self.mcr;
            (m & 0x02) << 3 | (m & 0x01) << 5 | (m & 0x04) << 4 | (m & 0x08) << 4
        } else {
            // A terminal is attached: CTS, DSR and carrier.
            0xb0
        };
        lines | self.msr_delta
    }

    fn lsr(&self) -> u8 {
        u8::from(!self.rx.is_empty()) | self.lsr_errors | LSR_THRE | LSR_TEMT
    }

    /// The interrupt identification code of the highest-priority pending interrupt.
    pub fn iir_code(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            if self.rx.len() >= self.trigger_level() {
                IIR_RDA
            } else {
                IIR_TIMEOUT
            }
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_delta != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    /// The level of the IRQ 4 line: an interrupt pending and OUT2 set (not in loopback, where the
    /// interrupt stays inside the chip).
    pub fn irq_level(&self) -> bool {
        self.iir_code() != IIR_NONE && self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2
    }

    /// True (once) if the interrupt output fell and rose again since the last call.
    pub fn take_retrigger(&mut self) -> bool {
        core::mem::take(&mut self.retrigger)
    }

    /// A byte read of register `reg` (0–7).
    pub fn read(&mut self, reg: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.divisor as u8,
            0 => self.rx.pop().unwrap_or(0),
            1 if dlab => (self.divisor >> 8) as u8,
            1 => self.ier,
            2 => {
                let code = self.iir_code();
                if code == IIR_THRE {
                    self.thre_pending = false;
                }
                code | if self.fifo_enabled() { 0xc0 } else { 0 }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let v = self.lsr();
                self.lsr_errors = 0;
                v
            }
            6 => {
                let v = self.msr();
                self.msr_delta = 0;
                v
            }
            7 => self.scr,
            _ => 0xff,
        }
    }

    /// A byte write of `v` to register `reg` (0–7); a byte to transmit is returned.
    pub fn write(&mut self, reg: u16, v: u8) -> Option<u8> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(v),
            0 => {
                // THR empties at once: a THR-empty interrupt falls on the write and rises again (the
                // output only falls if nothing else keeps it up).
                if self.ier & IER_THRE != 0 && self.thre_pending {
                    self.thre_pending = false;
                    self.retrigger = self.iir_code() == IIR_NONE;
                }
                self.thre_pending = true;
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(v);
                    return None;
                }
                return Some(v);
            }
            1 if dlab => self.divisor = (self.divisor & 0x00ff) | u16::from(v) << 8,
            1 => {
                let old = self.ier;
                self.ier = v & 0x0f;
                if old & IER_THRE == 0 && self.ier & IER_THRE != 0 {
                    // Enabling the THRE interrupt with THR empty raises it.
                    self.thre_pending = true;
                }
            }
            2 => {
                // Switching the FIFOs on or off, or the receiver reset bit, empties the receiver.
                if (v ^ self.fcr) & 1 != 0 || v & 2 != 0 {
                    self.rx.clear();
                }
                self.fcr = v & 0xc1;
            }
            3 => self.lcr = v,
            4 => {
                let old_msr = self.msr();
                self.mcr = v & 0x1f;
                let new_msr = self.msr();
                // Delta CTS, DSR, DCD; trailing edge of RI.
                let changed = (old_msr ^ new_msr) & 0xb0;
                self.msr_delta |= (changed >> 4) & 0x0b;
                if old_msr & 0x40 != 0 && new_msr & 0x40 == 0 {
                    self.msr_delta |= 0x04;
                }
            }
            7 => self.scr = v,
            _ => {} // LSR and MSR are read-only (factory test writes ignored).
        }
        None
    }
}
