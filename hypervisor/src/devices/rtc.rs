//! The MC146818 CMOS real-time clock at ports 0x70 (index; bit 7, the NMI mask, ignored) and 0x71 (data):
//! the time registers (seconds, minutes, hours, day of week, day, month, year, and the century at 0x32)
//! computed from a wall clock, status registers A–D, and the rest of the 128 bytes of CMOS RAM as plain
//! storage (base memory 640 KiB at 0x15–0x16, the extended memory sizes when the hypervisor sets them
//! with [`Rtc::set_memory_kib`], the rest zero).
//!
//! Time: `wallclock_secs` (seconds since 1970 at system time 0) plus the system time, plus whatever offset
//! the guest set by writing time registers. Register B selects binary or BCD (DM, bit 2) and 24- or
//! 12-hour (bit 1; PM in bit 7 of the hour); SET (bit 7) freezes the registers while the guest writes them,
//! and the clock runs on from the written time when it is cleared. Register A's UIP (bit 7) is set during
//! the last 244 µs before each second boundary, as on the chip: a reader that sees UIP clear has 244 µs to
//! read a consistent time.
//!
//! Interrupts (IRQ 8, through the slave PIC): register C's flags PF (periodic, at the rate in A's low
//! bits, on the 32,768 Hz grid since system time 0), UF (update ended, at each second boundary) and AF
//! (alarm: the time after an update matches alarm registers 1, 3, 5, where a value with its two top bits
//! set matches anything) are set whether or not enabled; IRQF and the IRQ 8 line are up while an enabled
//! flag is set, and reading C clears them all. Events are computed when the Board advances, so a domain
//! that was not running sees each flag once (coalesced), as a guest that did not read C in time would.
//! No updates or UF/AF while SET. Not modelled: daylight saving (bit 0 of B), square-wave output, the
//! divider chain's reset states (time always runs; only the periodic interrupt needs divider 010).

/// The index port.
pub const PORT_INDEX: u16 = 0x70;
/// The data port.
pub const PORT_DATA: u16 = 0x71;
/// Status register A.
pub const REG_A: u8 = 0x0a;
/// Status register B.
pub const REG_B: u8 = 0x0b;
/// Status register C.
pub const REG_C: u8 = 0x0c;
/// Status register D.
pub const REG_D: u8 = 0x0d;
/// The century register (BCD or binary like the others).
pub const REG_CENTURY: u8 = 0x32;
/// Register A: update in progress.
pub const A_UIP: u8 = 0x80;
/// Register B: SET (updates halted).
pub const B_SET: u8 = 0x80;
/// Register B: binary data mode.
pub const B_DM_BINARY: u8 = 0x04;
/// Register B: 24-hour mode.
pub const B_24H: u8 = 0x02;
/// Register B: periodic interrupt enable.
pub const B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const B_UIE: u8 = 0x10;
/// Register C: an enabled interrupt flag is set.
pub const C_IRQF: u8 = 0x80;
/// Register C: periodic flag.
pub const C_PF: u8 = 0x40;
/// Register C: alarm flag.
pub const C_AF: u8 = 0x20;
/// Register C: update-ended flag.
pub const C_UF: u8 = 0x10;
const NS: u64 = 1_000_000_000;
/// How long before each second boundary UIP is set, in ns.
pub const UIP_NS: u64 = 244_000;
/// The latest time the clock shows: 9999-12-31 23:59:59.
const MAX_SECS: i64 = 253_402_300_799;

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1–12, day 1–31) of day `z` since 1970-01-01.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// A broken-down time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// Day of week, 1 = Sunday.
    pub dow: u32,
}

impl Fields {
    /// The fields of `secs` since 1970.
    pub const fn from_secs(secs: i64) -> Fields {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Fields {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            min: (rem / 60 % 60) as u32,
            sec: (rem % 60) as u32,
            // 1970-01-01 was a Thursday (5).
            dow: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    /// Seconds since 1970 (out-of-range fields roll over as arithmetic, months and days clamped).
    pub const fn to_secs(&self) -> i64 {
        let m = if self.month < 1 {
            1
        } else if self.month > 12 {
            12
        } else {
            self.month
        };
        let d = if self.day < 1 { 1 } else { self.day };
        days_from_civil(self.year, m, d) * 86_400
            + self.hour as i64 * 3600
            + self.min as i64 * 60
            + self.sec as i64
    }
}

/// The clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtc {
    /// Wall clock at system time 0.
    pub wall0: u64,
    /// Seconds the guest moved the clock by.
    pub offset: i64,
    /// The selected register.
    pub index: u8,
    /// Register A's writable bits.
    pub reg_a: u8,
    /// Register B.
    pub reg_b: u8,
    /// While SET: the time the registers show.
    pub frozen: Option<i64>,
    /// CMOS RAM (the time and status registers' bytes unused; the alarm registers at 1, 3, 5).
    pub ram: [u8; 128],
    /// Register C's flags (PF, AF, UF).
    pub flags: u8,
    /// Events are accounted up to this system time.
    pub checked_ns: u64,
}

const fn bcd(v: u32) -> u8 {
    ((v / 10 % 10) << 4 | (v % 10)) as u8
}

const fn unbcd(v: u8) -> u32 {
    (v >> 4) as u32 * 10 + (v & 0xf) as u32
}

impl Rtc {
    /// A clock showing `wall0` seconds since 1970 at system time 0: 24-hour BCD, as a PC BIOS sets it.
    pub fn new(wall0: u64) -> Rtc {
        let mut ram = [0u8; 128];
        // Base memory: 640 KiB.
        ram[0x15] = 0x80;
        ram[0x16] = 0x02;
        Rtc {
            wall0,
            offset: 0,
            index: 0,
            reg_a: 0x26,
            reg_b: B_24H,
            frozen: None,
            ram,
            flags: 0,
            checked_ns: 0,
        }
    }

    /// Record the machine's memory size in the CMOS bytes BIOS-era kernels read: KiB above 1 MiB at
    /// 0x17–0x18 and 0x30–0x31 (at most 65,535), 64 KiB blocks above 16 MiB at 0x34–0x35.
    pub fn set_memory_kib(&mut self, kib: u64) {
        let ext = kib.saturating_sub(1024).min(0xffff) as u16;
        let high = (kib.saturating_sub(16 * 1024) / 64).min(0xffff) as u16;
        for (at, v) in [(0x17, ext), (0x30, ext), (0x34, high)] {
            self.ram[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The running clock's seconds at `now`.
    fn live_secs(&self, now: u64) -> i64 {
        let s = i128::from(self.wall0) + i128::from(now / 1_000_000_000) + i128::from(self.offset);
        s.clamp(0, i128::from(MAX_SECS)) as i64
    }

    /// The seconds the registers show at `now`.
    pub fn secs(&self, now: u64) -> i64 {
        self.frozen.unwrap_or_else(|| self.live_secs(now))
    }

    fn binary(&self) -> bool {
        self.reg_b & B_DM_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() { v as u8 } else { bcd(v) }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            u32::from(v)
        } else {
            unbcd(v)
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.reg_b & B_24H != 0 {
            return self.encode(h);
        }
        let pm = if h >= 12 { 0x80 } else { 0 };
        let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.reg_b & B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 { h + 12 } else { h }
    }

    /// Register `reg`'s value at `now`.
    pub fn register(&self, reg: u8, now: u64) -> u8 {
        let f = Fields::from_secs(self.secs(now));
        match reg {
            0x00 => self.encode(f.sec),
            0x02 => self.encode(f.min),
            0x04 => self.encode_hour(f.hour),
            0x06 => self.encode(f.dow),
            0x07 => self.encode(f.day),
            0x08 => self.encode(f.month),
            0x09 => self.encode(f.year.rem_euclid(100) as u32),
            REG_CENTURY => self.encode(f.year.div_euclid(100).clamp(0, 99) as u32),
            REG_A => {
                let in_update =
                    self.frozen.is_none() && now % 1_000_000_000 >= 1_000_000_000 - UIP_NS;
                self.reg_a | if in_update { A_UIP } else { 0 }
            }
            REG_B => self.reg_b,
            REG_C => self.flags | if self.irq_level() { C_IRQF } else { 0 },
            // Valid RAM and time.
            REG_D => 0x80,
            _ => self.ram[usize::from(reg & 0x7f)],
        }
    }

    fn set_time_register(&mut self, reg: u8, v: u8, now: u64) {
        let mut f = Fields::from_secs(self.secs(now));
        let n = self.decode(v);
        match reg {
            0x00 => f.sec = n,
            0x02 => f.min = n,
            0x04 => f.hour = self.decode_hour(v),
            0x07 => f.day = n,
            0x08 => f.month = n,
            0x09 => f.year = f.year.div_euclid(100) * 100 + i64::from(n % 100),
            REG_CENTURY => f.year = i64::from(n) * 100 + f.year.rem_euclid(100),
            _ => return,
        }
        let secs = f.to_secs().clamp(0, MAX_SECS);
        match &mut self.frozen {
            Some(s) => *s = secs,
            None => self.offset = secs - (self.live_secs(now) - self.offset),
        }
    }

    /// A byte read of port 0x70 or 0x71.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        if port == PORT_INDEX {
            // The index register is write-only.
            return 0xff;
        }
        self.advance(now);
        let v = self.register(self.index, now);
        if self.index == REG_C {
            self.flags = 0;
        }
        v
    }

    /// The IRQ 8 line: an enabled flag is set.
    pub fn irq_level(&self) -> bool {
        self.flags & (self.reg_b & (B_PIE | B_AIE | B_UIE)) != 0
    }

    /// The periodic interrupt's period as a power of two of 32,768 Hz ticks, if it runs.
    fn periodic_shift(&self) -> Option<u32> {
        let rate = u32::from(self.reg_a & 0x0f);
        if rate == 0 || self.reg_a & 0x70 != 0x20 {
            return None;
        }
        // Rates 1 and 2 give the same periods as 8 and 9.
        Some(if rate <= 2 { rate + 6 } else { rate - 1 })
    }

    /// 32,768 Hz ticks since system time 0.
    fn ticks_32k(now: u64) -> u64 {
        (u128::from(now) * 32_768 / u128::from(NS)) as u64
    }

    /// True if the alarm registers match the time `secs`.
    fn alarm_matches(&self, secs: i64) -> bool {
        let f = Fields::from_secs(secs);
        let hit = |alarm: u8, now: u8| alarm & 0xc0 == 0xc0 || alarm == now;
        hit(self.ram[1], self.encode(f.sec))
            && hit(self.ram[3], self.encode(f.min))
            && hit(self.ram[5], self.encode_hour(f.hour))
    }

    /// True if some time of day matches the alarm registers.
    fn alarm_satisfiable(&self) -> bool {
        let any = |alarm: u8, n: u32, enc: &dyn Fn(u32) -> u8| {
            alarm & 0xc0 == 0xc0 || (0..n).any(|v| enc(v) == alarm)
        };
        any(self.ram[1], 60, &|v| self.encode(v))
            && any(self.ram[3], 60, &|v| self.encode(v))
            && any(self.ram[5], 24, &|v| self.encode_hour(v))
    }

    /// Set the flags of the events between the last call and `now`.
    pub fn advance(&mut self, now: u64) {
        let from = self.checked_ns;
        if now <= from {
            return;
        }
        self.checked_ns = now;
        if let Some(shift) = self.periodic_shift()
            && Self::ticks_32k(now) >> shift > Self::ticks_32k(from) >> shift
        {
            self.flags |= C_PF;
        }
        let (s0, s1) = (from / NS, now / NS);
        if self.frozen.is_some() || s1 == s0 {
            return;
        }
        self.flags |= C_UF;
        // The time shown after the update at boundary k is the live time at k (offset unchanged since
        // `from`: writes advance the clock first). A day or more of boundaries meets every time of day.
        let hit = if s1 - s0 >= 86_400 {
            self.alarm_satisfiable()
        } else {
            let base = self.live_secs(s1 * NS) - s1 as i64;
            (s0 + 1..=s1).any(|k| self.alarm_matches(base + k as i64))
        };
        if hit {
            self.flags |= C_AF;
        }
    }

    /// When the next enabled interrupt is due (none while one is already raised).
    pub fn next_irq_ns(&self) -> Option<u64> {
        if self.irq_level() {
            return None;
        }
        let from = self.checked_ns;
        let periodic = (self.reg_b & B_PIE != 0)
            .then(|| self.periodic_shift())
            .flatten()
            .map(|shift| {
                let next = ((Self::ticks_32k(from) >> shift) + 1) << shift;
                let ns = (u128::from(next) * u128::from(NS)).div_ceil(32_768);
                u64::try_from(ns).unwrap_or(u64::MAX)
            });
        let update = (self.reg_b & (B_UIE | B_AIE) != 0 && self.frozen.is_none())
            .then(|| (from / NS + 1).saturating_mul(NS));
        let next = match (periodic, update) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.filter(|&t| t > from)
    }

    /// A byte write of port 0x70 or 0x71.
    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        if port == PORT_INDEX {
            self.index = v & 0x7f;
            return;
        }
        self.advance(now);
        match self.index {
            0x00 | 0x02 | 0x04 | 0x07 | 0x08 | 0x09 | REG_CENTURY => {
                self.set_time_register(self.index, v, now)
            }
            // Day of week: derived from the date.
            0x06 => {}
            REG_A => self.reg_a = v & 0x7f,
            REG_B => {
                let was_set = self.frozen.is_some();
                let set = v & B_SET != 0;
                if set && !was_set {
                    self.frozen = Some(self.live_secs(now));
                } else if !set && let Some(s) = self.frozen.take() {
                    self.offset = s - (self.live_secs(now) - self.offset);
                }
                // SET clears the update-ended interrupt enable.
                self.reg_b = if set { v & !0x10 } else { v };
            }
            REG_C | REG_D => {}
            r => self.ram[usize::from(r)] = v,
        }
    }
}
