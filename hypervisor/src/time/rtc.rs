//! The CMOS real-time clock: reading its registers consistently and decoding them to Unix time. Pure: the
//! register reads go through a closure (the machine code does `out 0x70, reg | 0x80` (NMI stays
//! disabled), `in 0x71`).
//!
//! Register B says how the date registers are encoded: BCD unless [`STATUS_B_BINARY`], 12-hour (hour bit 7
//! = PM) unless [`STATUS_B_24H`]. The century is register 0x32 where present (the ACPI FADT's usual
//! `century` index, which QEMU and PCs implement); a missing or nonsensical century falls back to a window:
//! two-digit years 70..99 are 19xx, 00..69 are 20xx. Every decoded field is range-checked (bad BCD digits,
//! month 13, day 31 of April, hour 25 → [`RtcError`]): the bytes come from hardware the hypervisor does not
//! trust to be sane, and nothing here panics on any input.

/// Register index: seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Register index: minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Register index: hours.
pub const REG_HOURS: u8 = 0x04;
/// Register index: day of the month.
pub const REG_DAY: u8 = 0x07;
/// Register index: month.
pub const REG_MONTH: u8 = 0x08;
/// Register index: year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Register index: status A.
pub const REG_STATUS_A: u8 = 0x0A;
/// Register index: status B.
pub const REG_STATUS_B: u8 = 0x0B;
/// Register index: century (ACPI's conventional location).
pub const REG_CENTURY: u8 = 0x32;
/// Status A: an update is in progress; the date registers may be inconsistent.
pub const STATUS_A_UIP: u8 = 0x80;
/// Status B: 24-hour mode.
pub const STATUS_B_24H: u8 = 0x02;
/// Status B: binary (not BCD) mode.
pub const STATUS_B_BINARY: u8 = 0x04;
/// Hours register, 12-hour mode: PM.
pub const HOUR_PM: u8 = 0x80;

/// Why the RTC could not be read or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// A BCD byte with a digit above 9.
    BadBcd,
    /// A field outside its range (month 0, day 32, hour 24, 12-hour hour 0…).
    OutOfRange,
    /// Status A's update-in-progress bit never cleared.
    Timeout,
    /// Two consecutive reads never agreed.
    Unstable,
}

/// The raw date registers and status B.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcRegs {
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    /// Register 0x32; 0 if the machine has none.
    pub century: u8,
    pub status_b: u8,
}

/// A decoded calendar date and time (UTC, as PCs under hypervisors keep the RTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// Register reads while waiting for the update-in-progress bit to clear (an update takes under 2 ms).
const UIP_BUDGET: u32 = 1_000_000;
/// Snapshots taken before giving up on two consecutive ones agreeing.
const SNAPSHOTS: u32 = 16;

/// Read the registers consistently: wait until no update is in progress, read all of them, and repeat until
/// two consecutive snapshots agree. `read(reg)` returns CMOS register `reg`.
pub fn read_regs(mut read: impl FnMut(u8) -> u8) -> Result<RtcRegs, RtcError> {
    let mut snapshot = || -> Result<RtcRegs, RtcError> {
        let mut budget = UIP_BUDGET;
        while read(REG_STATUS_A) & STATUS_A_UIP != 0 {
            budget -= 1;
            if budget == 0 {
                return Err(RtcError::Timeout);
            }
        }
        Ok(RtcRegs {
            seconds: read(REG_SECONDS),
            minutes: read(REG_MINUTES),
            hours: read(REG_HOURS),
            day: read(REG_DAY),
            month: read(REG_MONTH),
            year: read(REG_YEAR),
            century: read(REG_CENTURY),
            status_b: read(REG_STATUS_B),
        })
    };
    let mut prev = snapshot()?;
    for _ in 1..SNAPSHOTS {
        let next = snapshot()?;
        if next == prev {
            return Ok(next);
        }
        prev = next;
    }
    Err(RtcError::Unstable)
}

/// A BCD byte's value.
const fn bcd(b: u8) -> Result<u8, RtcError> {
    let (hi, lo) = (b >> 4, b & 0xf);
    if hi > 9 || lo > 9 {
        Err(RtcError::BadBcd)
    } else {
        Ok(hi * 10 + lo)
    }
}

/// A field's value in `lo..=hi`, decoded per `binary`.
const fn field(b: u8, binary: bool, lo: u8, hi: u8) -> Result<u8, RtcError> {
    let v = if binary {
        b
    } else {
        match bcd(b) {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
    if v < lo || v > hi {
        Err(RtcError::OutOfRange)
    } else {
        Ok(v)
    }
}

const fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Days in `month` (1..=12) of `year`.
pub const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Decode and check the registers.
pub fn decode(r: &RtcRegs) -> Result<DateTime, RtcError> {
    let binary = r.status_b & STATUS_B_BINARY != 0;
    let second = field(r.seconds, binary, 0, 59)?;
    let minute = field(r.minutes, binary, 0, 59)?;
    let hour = if r.status_b & STATUS_B_24H != 0 {
        field(r.hours, binary, 0, 23)?
    } else {
        // 12-hour: 12 AM is midnight, 12 PM is noon.
        let h = field(r.hours & !HOUR_PM, binary, 1, 12)? % 12;
        if r.hours & HOUR_PM != 0 { h + 12 } else { h }
    };
    let yy = field(r.year, binary, 0, 99)? as u16;
    let year = match field(r.century, binary, 19, 99) {
        Ok(c) => c as u16 * 100 + yy,
        Err(_) if yy >= 70 => 1900 + yy,
        Err(_) => 2000 + yy,
    };
    let month = field(r.month, binary, 1, 12)?;
    let day = field(r.day, binary, 1, days_in_month(year, month))?;
    Ok(DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// Days from 1970-01-01 to `year-month-day` (proleptic Gregorian; Howard Hinnant's `days_from_civil`).
pub const fn days_from_civil(year: u16, month: u8, day: u8) -> i64 {
    let y = year as i64 - if month <= 2 { 1 } else { 0 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch (0 for a date before it).
pub const fn unix_seconds(t: &DateTime) -> u64 {
    let days = days_from_civil(t.year, t.month, t.day);
    let secs = days * 86_400 + t.hour as i64 * 3600 + t.minute as i64 * 60 + t.second as i64;
    if secs < 0 { 0 } else { secs as u64 }
}

/// [`read_regs`], [`decode`] and [`unix_seconds`]: the RTC's time as Unix seconds.
pub fn read_unix_seconds(read: impl FnMut(u8) -> u8) -> Result<u64, RtcError> {
    let regs = read_regs(read)?;
    Ok(unix_seconds(&decode(&regs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCD_24H: u8 = STATUS_B_24H;
    const BIN_24H: u8 = STATUS_B_24H | STATUS_B_BINARY;

    fn regs([s, mi, h, d, mo, y, c, b]: [u8; 8]) -> RtcRegs {
        RtcRegs {
            seconds: s,
            minutes: mi,
            hours: h,
            day: d,
            month: mo,
            year: y,
            century: c,
            status_b: b,
        }
    }

    fn unix(r: RtcRegs) -> Result<u64, RtcError> {
        decode(&r).map(|t| unix_seconds(&t))
    }

    #[test]
    fn known_dates() {
        // 2024-02-29 12:34:56 UTC.
        let leap = regs([0x56, 0x34, 0x12, 0x29, 0x02, 0x24, 0x20, BCD_24H]);
        assert_eq!(unix(leap), Ok(1_709_210_096));
        assert_eq!(
            unix(regs([56, 34, 12, 29, 2, 24, 20, BIN_24H])),
            Ok(1_709_210_096)
        );
        // The epoch, and Y2K, without a century register (window).
        assert_eq!(unix(regs([0, 0, 0, 1, 1, 70, 0, BIN_24H])), Ok(0));
        assert_eq!(unix(regs([0, 0, 0, 1, 1, 0, 0, BIN_24H])), Ok(946_684_800));
        assert_eq!(
            unix(regs([0x59, 0x59, 0x23, 0x31, 0x12, 0x99, 0, BCD_24H])),
            Ok(946_684_799)
        );
        // 2038-01-19 03:14:08: past i32.
        assert_eq!(unix(regs([8, 14, 3, 19, 1, 38, 20, BIN_24H])), Ok(1 << 31));
        // 2100 is not a leap year; 2000 was.
        assert_eq!(
            unix(regs([0, 0, 0, 29, 2, 0, 21, BIN_24H])),
            Err(RtcError::OutOfRange)
        );
        assert!(unix(regs([0, 0, 0, 29, 2, 0, 20, BIN_24H])).is_ok());
        // A century register before the epoch clamps to 0.
        assert_eq!(unix(regs([0, 0, 0, 1, 1, 0, 19, BIN_24H])), Ok(0));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }

    #[test]
    fn twelve_hour_mode() {
        let at = |h: u8, b: u8| decode(&regs([0, 0, h, 1, 1, 0x24, 0x20, b])).map(|t| t.hour);
        assert_eq!(at(0x12, 0), Ok(0), "12 AM");
        assert_eq!(at(0x01, 0), Ok(1));
        assert_eq!(at(0x11, 0), Ok(11));
        assert_eq!(at(0x12 | HOUR_PM, 0), Ok(12), "12 PM");
        assert_eq!(at(0x01 | HOUR_PM, 0), Ok(13));
        assert_eq!(at(0x11 | HOUR_PM, 0), Ok(23));
        assert_eq!(at(12 | HOUR_PM, STATUS_B_BINARY), Ok(12));
        assert_eq!(at(0x00, 0), Err(RtcError::OutOfRange));
        assert_eq!(at(0x13, 0), Err(RtcError::OutOfRange));
        assert_eq!(at(0x1a, 0), Err(RtcError::BadBcd));
        assert_eq!(
            at(0x23 | HOUR_PM, BCD_24H),
            Err(RtcError::BadBcd),
            "PM bit in 24-hour mode"
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // Every value of every field, each in every mode; and a pseudo-random sweep of whole register sets.
        let base = regs([0, 0, 0x12, 1, 1, 0x24, 0x20, 0]);
        for mode in 0..=255u8 {
            for v in 0..=255u8 {
                for f in 0..7 {
                    let mut r = base;
                    r.status_b = mode;
                    *[
                        &mut r.seconds,
                        &mut r.minutes,
                        &mut r.hours,
                        &mut r.day,
                        &mut r.month,
                        &mut r.year,
                        &mut r.century,
                    ][f] = v;
                    if let Ok(t) = decode(&r) {
                        assert!(t.month >= 1 && t.month <= 12 && t.day >= 1);
                        assert!(t.day <= days_in_month(t.year, t.month));
                        assert!(t.hour < 24 && t.minute < 60 && t.second < 60);
                        assert!((1900..=9999).contains(&t.year));
                        unix_seconds(&t);
                    }
                }
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            let _ = decode(&regs(b));
        }
    }

    /// A CMOS that is mid-update for the first reads and ticks over between the first two snapshots.
    #[test]
    fn reads_wait_for_a_stable_snapshot() {
        let mut reads = 0u32;
        let mut cmos = |reg: u8| {
            reads += 1;
            match reg {
                REG_STATUS_A if reads < 5 => STATUS_A_UIP,
                REG_STATUS_A => 0,
                REG_SECONDS if reads < 12 => 0x59,
                REG_SECONDS => 0x00,
                REG_MINUTES if reads < 12 => 0x59,
                REG_MINUTES => 0x00,
                REG_HOURS => 0x10,
                REG_DAY => 0x01,
                REG_MONTH => 0x06,
                REG_YEAR => 0x25,
                REG_CENTURY => 0x20,
                REG_STATUS_B => BCD_24H,
                _ => 0xff,
            }
        };
        let r = read_regs(&mut cmos).unwrap();
        assert_eq!(
            (r.minutes, r.seconds),
            (0, 0),
            "the later, consistent snapshot"
        );
        assert_eq!(unix(r), Ok(1_748_772_000));
        // Stuck update-in-progress, or a register that never reads the same twice.
        assert_eq!(read_regs(|_| 0xff), Err(RtcError::Timeout));
        let mut n = 0u8;
        let flaky = |reg: u8| {
            n = n.wrapping_add(1);
            if reg == REG_STATUS_A { 0 } else { n }
        };
        assert_eq!(read_regs(flaky), Err(RtcError::Unstable));
        assert_eq!(read_unix_seconds(|_| 0), Err(RtcError::OutOfRange));
    }
}
