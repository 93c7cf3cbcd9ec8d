//! Two cascaded 8259A programmable interrupt controllers (master at 0x20/0x21, slave at 0xa0/0xa1 on the
//! master's line 2): initialisation words ICW1–ICW4, the mask (OCW1), end-of-interrupt and rotation
//! commands (OCW2), IRR/ISR reads, poll and special mask mode (OCW3), edge- or level-triggered inputs,
//! auto-EOI and the special fully nested mode; and the edge/level control registers (ELCR, ports 0x4d0 and
//! 0x4d1) that make single lines level-triggered (lines 0, 1, 2, 8 and 13 are always edge-triggered).
//!
//! Edge-triggered inputs latch a request in IRR on a rising edge; it stays until acknowledged (as QEMU's
//! model, which guests are tested against; a real 8259A would drop a request removed before INTA and
//! report a spurious IRQ 7 instead). ICW1 clears IMR, ISR and IRR and resets the edge detectors: a line
//! that is high must go low and high again to request. Not modelled: the 8080/8085 mode (an ICW4 with
//! bit 0 clear, or no ICW4, behaves as 8086 mode) and buffered mode (ICW4 bits 2–3).

/// The master's ELCR port.
pub const MASTER_ELCR: u16 = 0x4d0;
/// The slave's ELCR port.
pub const SLAVE_ELCR: u16 = 0x4d1;
/// ELCR bits that can be set on the master (not lines 0, 1, 2).
const MASTER_ELCR_MASK: u8 = 0xf8;
/// ELCR bits that can be set on the slave (not lines 8 and 13).
const SLAVE_ELCR_MASK: u8 = 0xde;

/// Master command port.
pub const MASTER_CMD: u16 = 0x20;
/// Master data port.
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u16 = 0xa0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xa1;
/// The master line the slave is cascaded on.
pub const CASCADE_LINE: u8 = 2;

/// Where a chip is in its initialisation sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitStep {
    /// Initialised: data port writes are OCW1 (the mask).
    Ready,
    /// The next data write is ICW2 (vector base).
    Icw2,
    /// The next data write is ICW3 (cascade wiring).
    Icw3,
    /// The next data write is ICW4 (mode).
    Icw4,
}

/// One 8259A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chip {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// Current input levels (for edge detection, and IRR in level mode).
    pub input: u8,
    /// Vector of line 0 (ICW2, low 3 bits clear).
    pub base: u8,
    /// Lowest-priority rotation: line `priority_add` has the highest priority.
    pub priority_add: u8,
    /// Initialisation progress.
    pub step: InitStep,
    /// ICW1: ICW4 follows.
    pub icw4_needed: bool,
    /// ICW1: single chip (no ICW3).
    pub single: bool,
    /// ICW1: level-triggered inputs.
    pub level_triggered: bool,
    /// ELCR: lines individually level-triggered.
    pub elcr: u8,
    /// ICW3 as written.
    pub icw3: u8,
    /// ICW4: automatic end of interrupt.
    pub auto_eoi: bool,
    /// ICW4: special fully nested mode.
    pub special_fully_nested: bool,
    /// OCW2: rotate priorities on automatic EOI.
    pub rotate_on_aeoi: bool,
    /// OCW3: command-port reads return ISR (else IRR).
    pub read_isr: bool,
    /// OCW3: the next command-port read is a poll.
    pub poll: bool,
    /// OCW3: special mask mode.
    pub special_mask: bool,
}

impl Chip {
    /// A chip programmed with vector base `base`, every line masked.
    pub const fn new(base: u8) -> Chip {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0xff,
            input: 0,
            base,
            priority_add: 0,
            step: InitStep::Ready,
            icw4_needed: false,
            single: false,
            level_triggered: false,
            elcr: 0,
            icw3: 0,
            auto_eoi: false,
            special_fully_nested: false,
            rotate_on_aeoi: false,
            read_isr: false,
            poll: false,
            special_mask: false,
        }
    }

    /// The priority (0 = highest) of the highest-priority line set in `mask`, or 8.
    fn priority(&self, mask: u8) -> u8 {
        (0..8)
            .find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
            .unwrap_or(8)
    }

    /// The line this chip would request now, with `master` saying whether it is the master (for the
    /// special fully nested mode).
    fn requested(&self, master: bool) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if master && self.special_fully_nested {
            in_service &= !(1 << CASCADE_LINE);
        }
        (p < self.priority(in_service)).then_some((p + self.priority_add) & 7)
    }

    /// The level-triggered lines.
    fn level_lines(&self) -> u8 {
        if self.level_triggered {
            0xff
        } else {
            self.elcr
        }
    }

    /// Set input `line` to `level`.
    fn set_level(&mut self, line: u8, level: bool) {
        let bit = 1u8 << (line & 7);
        if self.level_lines() & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.input & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.input |= bit;
        } else {
            self.input &= !bit;
        }
    }

    /// INTA for `line`: IRR to ISR (or auto-EOI).
    fn ack(&mut self, line: u8) {
        let bit = 1u8 << (line & 7);
        if self.level_lines() & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_add = (line + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn write_cmd(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1.
            self.irr = 0;
            self.isr = 0;
            self.imr = 0;
            self.priority_add = 0;
            self.read_isr = false;
            self.poll = false;
            self.special_mask = false;
            self.auto_eoi = false;
            self.rotate_on_aeoi = false;
            self.special_fully_nested = false;
            self.icw4_needed = v & 0x01 != 0;
            self.single = v & 0x02 != 0;
            self.level_triggered = v & 0x08 != 0;
            // Level-triggered lines request while high; the edge detectors of the others are reset (a
            // high line must fall and rise again).
            self.irr = self.input & self.level_lines();
            self.step = InitStep::Icw2;
        } else if v & 0x08 != 0 {
            // OCW3.
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2.
            let line = v & 7;
            match v >> 5 {
                0b001 | 0b101 => {
                    // Non-specific EOI (and rotate).
                    let p = self.priority(self.isr);
                    if p != 8 {
                        let l = (p + self.priority_add) & 7;
                        self.isr &= !(1 << l);
                        if v >> 5 == 0b101 {
                            self.priority_add = (l + 1) & 7;
                        }
                    }
                }
                0b011 => self.isr &= !(1 << line),
                0b111 => {
                    self.isr &= !(1 << line);
                    self.priority_add = (line + 1) & 7;
                }
                0b110 => self.priority_add = (line + 1) & 7,
                0b100 => self.rotate_on_aeoi = true,
                0b000 => self.rotate_on_aeoi = false,
                _ => {} // 0b010: no operation.
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.step {
            InitStep::Ready => self.imr = v,
            InitStep::Icw2 => {
                self.base = v & 0xf8;
                self.step = if !self.single {
                    InitStep::Icw3
                } else if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = v;
                self.step = if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.special_fully_nested = v & 0x10 != 0;
                self.step = InitStep::Ready;
            }
        }
    }
}

/// The master/slave pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pics {
    /// The master (lines 0–7).
    pub master: Chip,
    /// The slave (lines 8–15), on the master's line 2.
    pub slave: Chip,
}

impl Default for Pics {
    fn default() -> Self {
        Self::new()
    }
}

impl Pics {
    /// The pair as a PC BIOS leaves it: vectors 0x08 and 0x70, every line masked.
    pub const fn new() -> Pics {
        Pics {
            master: Chip::new(0x08),
            slave: Chip::new(0x70),
        }
    }

    /// Propagate the slave's request to the master's cascade line.
    fn cascade(&mut self) {
        let level = self.slave.requested(false).is_some();
        self.master.set_level(CASCADE_LINE, level);
    }

    /// Set input line `irq` (0–15) to `level`.
    pub fn set_level(&mut self, irq: u8, level: bool) {
        if irq >= 16 {
            return;
        }
        if irq < 8 {
            if irq != CASCADE_LINE {
                self.master.set_level(irq, level);
            }
        } else {
            self.slave.set_level(irq - 8, level);
        }
        self.cascade();
    }

    /// A rising then falling edge on line `irq` (an edge-triggered request that does not stay high).
    pub fn pulse(&mut self, irq: u8) {
        self.set_level(irq, true);
        self.set_level(irq, false);
    }

    /// True if line `irq` is masked (for a slave line: at the slave or the cascade).
    pub fn line_masked(&self, irq: u8) -> bool {
        match irq {
            0..=7 => self.master.imr & (1 << irq) != 0,
            8..=15 => {
                self.slave.imr & (1 << (irq - 8)) != 0 || self.master.imr & (1 << CASCADE_LINE) != 0
            }
            _ => true,
        }
    }

    /// The vector that would be delivered now.
    pub fn pending_vector(&self) -> Option<u8> {
        let line = self.master.requested(true)?;
        if line == CASCADE_LINE {
            let s = self.slave.requested(false).unwrap_or(7);
            Some(self.slave.base | s)
        } else {
            Some(self.master.base | line)
        }
    }

    /// INTA: acknowledge the pending request; its vector. A cascade request whose slave request vanished
    /// gives the slave's spurious vector (line 15), as the hardware does.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let line = self.master.requested(true)?;
        self.master.ack(line);
        let v = if line == CASCADE_LINE {
            match self.slave.requested(false) {
                Some(s) => {
                    self.slave.ack(s);
                    self.slave.base | s
                }
                None => self.slave.base | 7,
            }
        } else {
            self.master.base | line
        };
        self.cascade();
        Some(v)
    }

    /// A poll read of `chip`: 0x80 | line if a request is pending (acknowledged as by INTA), else 0.
    fn poll(&mut self, slave: bool) -> u8 {
        let r = if slave {
            self.slave.requested(false).inspect(|&l| self.slave.ack(l))
        } else {
            self.master.requested(true).inspect(|&l| self.master.ack(l))
        };
        self.cascade();
        r.map_or(0, |l| 0x80 | l)
    }

    /// A byte read of `port` (0x20, 0x21, 0xa0, 0xa1).
    pub fn read(&mut self, port: u16) -> u8 {
        let slave = port & 0x80 != 0;
        let data = port & 1 != 0;
        let chip = if slave {
            &mut self.slave
        } else {
            &mut self.master
        };
        if chip.poll {
            chip.poll = false;
            return self.poll(slave);
        }
        if data {
            chip.imr
        } else if chip.read_isr {
            chip.isr
        } else {
            chip.irr
        }
    }

    /// A read of an ELCR port (0x4d0 or 0x4d1).
    pub fn read_elcr(&self, port: u16) -> u8 {
        if port == SLAVE_ELCR {
            self.slave.elcr
        } else {
            self.master.elcr
        }
    }

    /// A write of an ELCR port: the lines that may be level-triggered take their bit.
    pub fn write_elcr(&mut self, port: u16, v: u8) {
        let chip = if port == SLAVE_ELCR {
            self.slave.elcr = v & SLAVE_ELCR_MASK;
            &mut self.slave
        } else {
            self.master.elcr = v & MASTER_ELCR_MASK;
            &mut self.master
        };
        // A line switched to level mode requests while high.
        chip.irr |= chip.input & chip.elcr;
        self.cascade();
    }

    /// True if either chip has a level-triggered line.
    pub fn any_level_triggered(&self) -> bool {
        self.master.level_lines() | self.slave.level_lines() != 0
    }

    /// A byte write of `v` to `port` (0x20, 0x21, 0xa0, 0xa1).
    pub fn write(&mut self, port: u16, v: u8) {
        let slave = port & 0x80 != 0;
        let chip = if slave {
            &mut self.slave
        } else {
            &mut self.master
        };
        if port & 1 != 0 {
            chip.write_data(v);
        } else {
            chip.write_cmd(v);
        }
        self.cascade();
    }
}
