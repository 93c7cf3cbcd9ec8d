//! The 8254 programmable interval timer (channels 0–2 at ports 0x40–0x42, control word at 0x43) and the
//! PC's port 0x61 (channel 2's gate in bit 0, speaker enable in bit 1, the check disables in bits 2–3
//! kept as written, the refresh toggle in bit 4, channel 2's output in bit 5; bits 6–7, the NMI sources,
//! read 0).
//!
//! Counters are not stepped: each is a count loaded at a system time, and its value and output are
//! computed from the PIT input clocks (1,193,182 Hz) elapsed since. Modes 0–5 (6 and 7 alias 2 and 3),
//! binary or BCD, low/high/both byte access with the write and read flip-flops, the counter-latch and
//! read-back commands (count and status). Channel 0 drives IRQ 0: modes 2 and 3 raise it at every reload,
//! modes 0 and 4 once at the terminal count, and a control word or count that takes the output from low
//! to high (e.g. mode 2 programmed after a mode-0 count) is an edge too; [`Pit::advance`] reports at most
//! one edge however many periods passed (a domain that was not running gets one late tick, not a
//! burst). Gates of channels 0 and 1 are tied high (so modes 1 and 5 never trigger there); channel 2's
//! follows port 0x61.
//!
//! A new count written to a counting channel without a control word takes effect as on the chip: at once
//! in modes 0 and 4, at the end of the current period in modes 2 and 3, at the next gate trigger in modes 1
//! and 5 (status bit 6, null count, is set until then).

/// The PIT input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Channel 0's data port.
pub const PORT_CH0: u16 = 0x40;
/// The control-word port.
pub const PORT_CONTROL: u16 = 0x43;
/// The PC's system control port B.
pub const PORT_B: u16 = 0x61;

const NS_PER_S: u128 = 1_000_000_000;

/// Input clocks elapsed from `from` to `to`.
fn ticks_between(from: u64, to: u64) -> u64 {
    (u128::from(to.saturating_sub(from)) * u128::from(PIT_HZ) / NS_PER_S) as u64
}

/// The system time at which `ticks` input clocks have elapsed since `from` (saturating).
fn time_of_tick(from: u64, ticks: u64) -> u64 {
    let ns = (u128::from(ticks) * NS_PER_S).div_ceil(u128::from(PIT_HZ));
    u64::try_from(u128::from(from) + ns).unwrap_or(u64::MAX)
}

/// A binary value as four BCD digits (values are below 10,000 in BCD mode).
fn to_bcd(v: u32) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// Four BCD digits as a binary value (invalid digits are taken as their nibble value, as the chip would
/// count them).
fn from_bcd(v: u16) -> u32 {
    let d = |s: u16| u32::from((v >> s) & 0xf);
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// One counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Counting mode 0–5.
    pub mode: u8,
    /// Access: 1 low byte, 2 high byte, 3 low then high.
    pub access: u8,
    /// BCD counting.
    pub bcd: bool,
    /// The count register as written (raw 16 bits).
    pub count_reg: u16,
    /// The count in input clocks (1..=65536, or 1..=10000 in BCD).
    pub count: u32,
    /// Counting since this time (valid when `running`).
    pub start_ns: u64,
    /// A count has been loaded and the counter is counting (or armed, for gate-triggered modes).
    pub running: bool,
    /// Modes 1 and 5: the gate has triggered the count.
    pub triggered: bool,
    /// The gate input.
    pub gate: bool,
    /// Modes 0 and 4 with the gate low: clocks counted before the gate fell (counting paused).
    pub paused_ticks: Option<u64>,
    /// Write flip-flop: the low byte of a low-then-high write has been written.
    pub write_low: Option<u8>,
    /// Read flip-flop: the next read of a low-then-high access is the high byte.
    pub read_high: bool,
    /// A latched count (counter-latch or read-back) with its own flip-flop: bytes still to read.
    pub latched: Option<u16>,
    /// Latched-count flip-flop: the low byte has been read.
    pub latched_high: bool,
    /// A latched status byte (read-back), read before anything else.
    pub status: Option<u8>,
    /// A new count was written and not loaded yet (status bit 6).
    pub null_count: bool,
    /// The edge `advance` reports next (channel 0): the system time of the next IRQ edge.
    pub next_edge_ns: Option<u64>,
    /// A count written while counting, waiting to be loaded: its value in clocks and when (modes 2 and 3:
    /// the end of the current period; `None`: at the next gate trigger).
    pub next_count: Option<(u32, Option<u64>)>,
}

impl Channel {
    const fn new(gate: bool) -> Channel {
        Channel {
            mode: 0,
            access: 3,
            bcd: false,
            count_reg: 0,
            count: 65_536,
            start_ns: 0,
            running: false,
            triggered: false,
            gate,
            paused_ticks: None,
            write_low: None,
            read_high: false,
            latched: None,
            latched_high: false,
            status: None,
            null_count: true,
            next_edge_ns: None,
            next_count: None,
        }
    }

    /// Clocks counted so far (0 if not counting).
    fn elapsed(&self, now: u64) -> u64 {
        if !self.running {
            return 0;
        }
        if let Some(t) = self.paused_ticks {
            return t;
        }
        match self.mode {
            1 | 5 if !self.triggered => 0,
            _ => ticks_between(self.start_ns, now),
        }
    }

    /// This channel with a due pending count loaded.
    fn settled(&self, now: u64) -> Channel {
        let mut c = *self;
        if let Some((count, Some(at))) = c.next_count
            && now >= at
        {
            c.count = count;
            c.start_ns = at;
            c.next_count = None;
            c.null_count = false;
        }
        c
    }

    /// The counter's value now (binary).
    fn value(&self, now: u64) -> u32 {
        self.settled(now).value_settled(now)
    }

    fn value_settled(&self, now: u64) -> u32 {
        let n = u64::from(self.count);
        if !self.running || (matches!(self.mode, 1 | 5) && !self.triggered) {
            return self.count % self.modulus();
        }
        let t = self.elapsed(now);
        let v = match self.mode {
            2 => n - t % n,
            3 => {
                // Counts down by two from an even count, reloading at each half period.
                let half_period = t % n;
                let first_half = n.div_ceil(2);
                let in_half = if half_period < first_half {
                    half_period
                } else {
                    half_period - first_half
                };
                (n & !1).saturating_sub(2 * in_half).max(2)
            }
            // Modes 0, 1, 4, 5: count down once, then keep wrapping.
            _ => {
                let m = u64::from(self.modulus());
                (n + m - t % m) % m
            }
        };
        (v as u32) % self.modulus()
    }

    /// 65536, or 10000 in BCD.
    fn modulus(&self) -> u32 {
        if self.bcd { 10_000 } else { 65_536 }
    }

    /// The output pin now.
    pub fn out(&self, now: u64) -> bool {
        self.settled(now).out_settled(now)
    }

    fn out_settled(&self, now: u64) -> bool {
        if !self.running {
            // After a control word: low in mode 0, high in the others.
            return self.mode != 0;
        }
        let n = u64::from(self.count);
        match self.mode {
            0 => self.elapsed(now) >= n,
            1 => !self.triggered || self.elapsed(now) >= n,
            2 => !self.gate || n == 1 || self.elapsed(now) % n != n - 1,
            3 => !self.gate || self.elapsed(now) % n < n.div_ceil(2),
            // 4 and 5: low for one clock at the terminal count.
            _ => {
                if self.mode == 5 && !self.triggered {
                    return true;
                }
                self.elapsed(now) != n
            }
        }
    }

    /// The time of the first IRQ edge after `after` (the output's rising edges that request IRQ 0).
    fn edge_after(&self, after: u64) -> Option<u64> {
        match self.next_count {
            // The reload at the end of the period is itself the edge.
            Some((_, Some(at))) if after < at => Some(at),
            _ => self.settled(after).edge_after_settled(after),
        }
    }

    fn edge_after_settled(&self, after: u64) -> Option<u64> {
        if !self.running || self.paused_ticks.is_some() || !self.gate {
            return None;
        }
        let n = u64::from(self.count);
        match self.mode {
            // Terminal count once (mode 4: the output rises one clock later).
            0 | 4 => {
                let at = time_of_tick(self.start_ns, if self.mode == 0 { n } else { n + 1 });
                (at > after).then_some(at)
            }
            2 | 3 => {
                let k = ticks_between(self.start_ns, after) / n + 1;
                let mut at = time_of_tick(self.start_ns, k * n);
                if at <= after {
                    at = time_of_tick(self.start_ns, (k + 1) * n);
                }
                // Past the end of time (u64 nanoseconds: 584 years) there is no next edge.
                (at > after).then_some(at)
            }
            _ => None,
        }
    }

    fn status_byte(&self, now: u64) -> u8 {
        u8::from(self.out(now)) << 7
            | u8::from(self.null_count) << 6
            | (self.access & 3) << 4
            | (self.mode & 7) << 1
            | u8::from(self.bcd)
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched.is_none() {
            let v = self.value(now);
            self.latched = Some(if self.bcd { to_bcd(v) } else { v as u16 });
            self.latched_high = false;
        }
    }

    /// A control word selecting this channel (not a latch command).
    fn set_mode(&mut self, access: u8, mode: u8, bcd: bool) {
        self.access = access;
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = bcd;
        self.running = false;
        self.triggered = false;
        self.paused_ticks = None;
        self.write_low = None;
        self.read_high = false;
        self.latched = None;
        self.status = None;
        self.null_count = true;
        self.next_edge_ns = None;
        self.next_count = None;
    }

    /// Load a due pending count.
    fn settle(&mut self, now: u64) {
        *self = self.settled(now);
    }

    /// A count written as `reg`: loaded now (and counting starts), at the end of the period, or at the
    /// next trigger.
    fn load(&mut self, reg: u16, now: u64) {
        self.settle(now);
        self.count_reg = reg;
        let raw = if self.bcd {
            from_bcd(reg)
        } else {
            u32::from(reg)
        };
        let count = if raw == 0 { self.modulus() } else { raw };
        let counting = self.running && self.paused_ticks.is_none() && self.gate;
        match self.mode {
            2 | 3 if counting => {
                let end = self.edge_after_settled(now);
                self.next_count = Some((count, end));
                self.null_count = true;
                self.next_edge_ns = self.edge_after(now);
                return;
            }
            1 | 5 if self.running => {
                self.next_count = Some((count, None));
                self.null_count = true;
                return;
            }
            _ => {}
        }
        self.count = count;
        self.next_count = None;
        self.start_ns = now;
        self.running = true;
        self.triggered = false;
        self.null_count = false;
        // A low gate holds modes 0, 2, 3 and 4 at the loaded count (1 and 5 wait for a rising gate).
        self.paused_ticks = if self.gate || matches!(self.mode, 1 | 5) {
            None
        } else {
            Some(0)
        };
        self.next_edge_ns = self.edge_after(now);
    }

    fn write(&mut self, v: u8, now: u64) {
        match self.access {
            1 => self.load(u16::from(v), now),
            2 => self.load(u16::from(v) << 8, now),
            _ => match self.write_low.take() {
                None => {
                    self.write_low = Some(v);
                    if self.mode == 0 {
                        // Writing the first byte stops a mode-0 count; OUT goes low.
                        self.running = false;
                        self.next_edge_ns = None;
                    }
                }
                Some(lo) => self.load(u16::from(lo) | u16::from(v) << 8, now),
            },
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        self.settle(now);
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some(l) = self.latched {
            let (byte, done) = match self.access {
                1 => (l as u8, true),
                2 => ((l >> 8) as u8, true),
                _ if !self.latched_high => {
                    self.latched_high = true;
                    (l as u8, false)
                }
                _ => ((l >> 8) as u8, true),
            };
            if done {
                self.latched = None;
                self.latched_high = false;
            }
            return byte;
        }
        let v = self.value(now);
        let v = if self.bcd { to_bcd(v) } else { v as u16 };
        match self.access {
            1 => v as u8,
            2 => (v >> 8) as u8,
            _ => {
                self.read_high = !self.read_high;
                if self.read_high {
                    v as u8
                } else {
                    (v >> 8) as u8
                }
            }
        }
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        if gate == self.gate {
            return;
        }
        self.settle(now);
        self.gate = gate;
        if !self.running {
            return;
        }
        match (self.mode, gate) {
            // Modes 0 and 4: the gate pauses and resumes counting.
            (0 | 4, false) => self.paused_ticks = Some(ticks_between(self.start_ns, now)),
            (0 | 4, true) => {
                if let Some(t) = self.paused_ticks.take() {
                    // Resume where counting stopped.
                    let back = time_of_tick(0, t);
                    self.start_ns = now.saturating_sub(back);
                }
            }
            // Modes 2 and 3: a low gate stops the counter (output high); a pending count waits for the
            // next trigger.
            (2 | 3, false) => {
                self.paused_ticks = Some(self.elapsed(now));
                if let Some((c, _)) = self.next_count {
                    self.next_count = Some((c, None));
                }
            }
            // Modes 1, 2, 3, 5: a rising gate (re)starts the count from the count register.
            (_, true) => {
                if let Some((c, _)) = self.next_count.take() {
                    self.count = c;
                    self.null_count = false;
                }
                self.start_ns = now;
                self.triggered = true;
                self.paused_ticks = None;
            }
            // Modes 1 and 5 ignore a falling gate.
            (_, false) => {}
        }
        self.next_edge_ns = self.edge_after(now);
    }
}

/// The three channels and port 0x61's writable bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pit {
    /// Channels 0, 1 and 2.
    pub channels: [Channel; 3],
    /// Port 0x61 bit 1: speaker data enable (stored, no sound).
    pub speaker: bool,
    /// Port 0x61 bits 2 and 3: parity and channel check disables (stored; no NMI sources exist).
    pub check_bits: u8,
    /// Channel 0's output rose because of a write (a control word setting it high after a count that
    /// left it low): an IRQ 0 edge not reported yet.
    pub written_edge: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    /// The PIT as QEMU resets it and a BIOS leaves it: channel 0 running the 18.2 Hz tick (mode 3, count
    /// 65536, both bytes) since system time 0, so a kernel that unmasks IRQ 0 without programming the PIT
    /// gets the BIOS tick as on a PC; channels 1 and 2 idle; channel 2's gate off.
    pub fn new() -> Pit {
        let mut tick = Channel::new(true);
        tick.mode = 3;
        tick.load(0, 0);
        Pit {
            channels: [tick, Channel::new(true), Channel::new(false)],
            speaker: false,
            check_bits: 0,
            written_edge: false,
        }
    }

    /// True if channel 0 raised an IRQ 0 edge by `now` not reported before (at most one, however many
    /// were due).
    pub fn advance(&mut self, now: u64) -> bool {
        let written = core::mem::take(&mut self.written_edge);
        let c = &mut self.channels[0];
        c.settle(now);
        let due = match c.next_edge_ns {
            Some(at) if at <= now => {
                c.next_edge_ns = c.edge_after(now);
                true
            }
            _ => false,
        };
        due || written
    }

    /// When channel 0's next IRQ edge is due.
    pub fn next_irq_ns(&self) -> Option<u64> {
        self.channels[0].next_edge_ns
    }

    /// A byte read of 0x40–0x43 (the control port reads as floating bus).
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].read(now),
            _ => 0xff,
        }
    }

    /// A byte write to 0x40–0x43.
    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        let before = self.channels[0].out(now);
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].write(v, now),
            PORT_CONTROL => self.control(v, now),
            _ => {}
        }
        if !before && self.channels[0].out(now) {
            self.written_edge = true;
        }
    }

    fn control(&mut self, v: u8, now: u64) {
        let sel = v >> 6;
        if sel == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1-3 select.
            for (i, c) in self.channels.iter_mut().enumerate() {
                if v & (2 << i) == 0 {
                    continue;
                }
                c.settle(now);
                if v & 0x10 == 0 && c.status.is_none() {
                    c.status = Some(c.status_byte(now));
                }
                if v & 0x20 == 0 {
                    c.latch_count(now);
                }
            }
            return;
        }
        let c = &mut self.channels[usize::from(sel)];
        let access = (v >> 4) & 3;
        if access == 0 {
            c.latch_count(now);
        } else {
            c.set_mode(access, (v >> 1) & 7, v & 1 != 0);
        }
    }

    /// A read of port 0x61.
    pub fn read_port_b(&self, now: u64) -> u8 {
        let c2 = &self.channels[2];
        // Bit 4 toggles with every DRAM refresh request (every 15.085 µs, 18 input clocks).
        let refresh = (ticks_between(0, now) / 18) & 1 != 0;
        u8::from(c2.gate)
            | u8::from(self.speaker) << 1
            | self.check_bits
            | u8::from(refresh) << 4
            | u8::from(c2.out(now)) << 5
    }

    /// A write of port 0x61: channel 2's gate, the speaker enable and the check bits.
    pub fn write_port_b(&mut self, v: u8, now: u64) {
        self.speaker = v & 2 != 0;
        self.check_bits = v & 0x0c;
        self.channels[2].set_gate(v & 1 != 0, now);
    }
}
