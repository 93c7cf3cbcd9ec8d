//! The CMOS real-time clock's registers to seconds since 1970: BCD or binary (status B bit 2), 12- or
//! 24-hour (status B bit 1, PM in bit 7 of the hour), the century register when it is plausible. Pure.

/// The registers as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw {
    pub sec: u8,
    pub min: u8,
    pub hour: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    pub century: u8,
    pub status_b: u8,
}

const fn bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xf)
}

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

/// Seconds since the Unix epoch, or `None` if the fields are out of range.
pub fn unix_seconds(r: &Raw) -> Option<u64> {
    let binary = r.status_b & 0x04 != 0;
    let h24 = r.status_b & 0x02 != 0;
    let conv = |v: u8| if binary { v } else { bcd(v) };
    let pm = r.hour & 0x80 != 0;
    let mut hour = conv(r.hour & 0x7f);
    if !h24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let (sec, min, day, month, yy) = (
        conv(r.sec),
        conv(r.min),
        conv(r.day),
        conv(r.month),
        conv(r.year),
    );
    let century = conv(r.century);
    let year = if (19..=30).contains(&century) {
        u32::from(century) * 100 + u32::from(yy)
    } else {
        2000 + u32::from(yy)
    };
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let days = days_from_civil(i64::from(year), u32::from(month), u32::from(day));
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bcd_fields: [u8; 6], century: u8, status_b: u8) -> Raw {
        let [sec, min, hour, day, month, year] = bcd_fields;
        Raw {
            sec,
            min,
            hour,
            day,
            month,
            year,
            century,
            status_b,
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
    }

    #[test]
    fn bcd_24_hour_with_century() {
        // 2026-12-02 03:12:27 in BCD, 24-hour mode.
        let r = raw([0x27, 0x12, 0x03, 0x02, 0x12, 0x26], 0x20, 0x02);
        assert_eq!(
            unix_seconds(&r),
            Some(20_789 * 86_400 + 3 * 3600 + 12 * 60 + 27)
        );
    }

    #[test]
    fn binary_12_hour_pm_and_midnight() {
        // Binary, 12-hour: 0x80 | 3 is 3 PM; 12 AM is hour 0.
        let pm = raw([0, 0, 0x83, 1, 1, 70], 19, 0x04);
        assert_eq!(unix_seconds(&pm), Some(15 * 3600));
        // Without a plausible century register the year is 20yy.
        let no_century = raw([0, 0, 0, 1, 1, 26], 0, 0x06);
        assert_eq!(unix_seconds(&no_century), Some(20_454 * 86_400));
        let midnight = raw([0, 0, 12, 1, 1, 70], 19, 0x04);
        assert_eq!(
            unix_seconds(&midnight),
            Some(0),
            "12 AM, year 1970 from the century"
        );
    }

    #[test]
    fn nonsense_is_refused() {
        assert_eq!(
            unix_seconds(&raw([0x60, 0, 0, 1, 1, 0x26], 0x20, 0x02)),
            None
        );
        assert_eq!(unix_seconds(&raw([0, 0, 0, 0, 1, 0x26], 0x20, 0x02)), None);
        assert_eq!(
            unix_seconds(&raw([0, 0, 0, 1, 0x13, 0x26], 0x20, 0x02)),
            None
        );
    }
}
