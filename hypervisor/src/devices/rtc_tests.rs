//! Tests of the CMOS RTC: formats (BCD/binary, 12/24-hour), the century, day of week, UIP timing, setting
//! the clock with and without SET, CMOS RAM, memory-size bytes, the civil calendar.

use super::rtc::*;

const S: u64 = 1_000_000_000;
/// 1999-12-31 23:59:58 UTC (a Friday).
const Y2K_MINUS_2: u64 = 946_684_798;
const Y2K_MINUS_2_I: i64 = Y2K_MINUS_2 as i64;

fn reg(r: &mut Rtc, i: u8, now: u64) -> u8 {
    r.write(PORT_INDEX, i, now);
    r.read(PORT_DATA, now)
}

fn set(r: &mut Rtc, i: u8, v: u8, now: u64) {
    r.write(PORT_INDEX, i, now);
    r.write(PORT_DATA, v, now);
}

#[test]
fn century_rollover_in_bcd() {
    let mut r = Rtc::new(Y2K_MINUS_2);
    let fields =
        |r: &mut Rtc, now| [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(|i| reg(r, i, now));
    assert_eq!(
        fields(&mut r, S),
        [0x59, 0x59, 0x23, 6, 0x31, 0x12, 0x99, 0x19]
    );
    assert_eq!(
        fields(&mut r, 2 * S),
        [0x00, 0x00, 0x00, 7, 0x01, 0x01, 0x00, 0x20]
    );
}

#[test]
fn binary_and_12_hour() {
    // 1970-01-01 15:04:05.
    let mut r = Rtc::new(15 * 3600 + 4 * 60 + 5);
    set(&mut r, REG_B, B_DM_BINARY, 0);
    assert_eq!(reg(&mut r, 0x04, 0), 0x80 | 3, "3 PM");
    assert_eq!(reg(&mut r, 0x02, 0), 4);
    assert_eq!(reg(&mut r, 0x09, 0), 70);
    assert_eq!(reg(&mut r, 0x32, 0), 19);
    assert_eq!(reg(&mut r, 0x06, 0), 5, "Thursday");
    set(&mut r, REG_B, 0, 0);
    assert_eq!(reg(&mut r, 0x04, 0), 0x83, "3 PM in BCD");
    let mut midnight = Rtc::new(0);
    set(&mut midnight, REG_B, 0, 0);
    assert_eq!(reg(&mut midnight, 0x04, 0), 0x12, "12 AM");
    let mut noon = Rtc::new(12 * 3600);
    set(&mut noon, REG_B, 0, 0);
    assert_eq!(reg(&mut noon, 0x04, 0), 0x92, "12 PM");
}

#[test]
fn update_in_progress_window() {
    let mut r = Rtc::new(0);
    assert_eq!(reg(&mut r, REG_A, 0) & A_UIP, 0);
    assert_eq!(reg(&mut r, REG_A, S - UIP_NS - 1) & A_UIP, 0);
    assert_eq!(reg(&mut r, REG_A, S - UIP_NS) & A_UIP, A_UIP);
    assert_eq!(reg(&mut r, REG_A, S - 1) & A_UIP, A_UIP);
    assert_eq!(reg(&mut r, REG_A, S) & A_UIP, 0);
    assert_eq!(
        reg(&mut r, REG_A, 0) & 0x7f,
        0x26,
        "divider and rate as a BIOS sets them"
    );
    set(&mut r, REG_A, 0xa6, 0);
    assert_eq!(r.reg_a, 0x26, "UIP is read-only");
}

#[test]
fn setting_the_clock_under_set() {
    let mut r = Rtc::new(Y2K_MINUS_2);
    set(&mut r, REG_B, B_SET | B_24H, 10 * S);
    let frozen = reg(&mut r, 0x00, 10 * S);
    assert_eq!(reg(&mut r, 0x00, 50 * S), frozen, "frozen while SET");
    assert_eq!(
        reg(&mut r, REG_A, 11 * S - 1) & A_UIP,
        0,
        "no update while SET"
    );
    // Write 2024-02-29 12:30:00.
    for (i, v) in [
        (0x32, 0x20),
        (0x09, 0x24),
        (0x08, 0x02),
        (0x07, 0x29),
        (0x04, 0x12),
        (0x02, 0x30),
        (0x00, 0x00),
    ] {
        set(&mut r, i, v, 50 * S);
    }
    set(&mut r, REG_B, B_24H, 60 * S);
    assert_eq!(r.secs(60 * S), 1_709_209_800);
    assert_eq!(
        r.secs(65 * S),
        1_709_209_805,
        "runs on from the written time"
    );
    assert_eq!(reg(&mut r, 0x06, 65 * S), 5, "a Thursday");
}

#[test]
fn setting_a_field_while_running() {
    let mut r = Rtc::new(Y2K_MINUS_2);
    set(&mut r, 0x02, 0x10, 0); // minute 10: 23:10:58
    assert_eq!(r.secs(0), Y2K_MINUS_2_I - 49 * 60);
    assert_eq!(r.secs(3 * S), Y2K_MINUS_2_I - 49 * 60 + 3);
    set(&mut r, 0x06, 0x01, 0); // day of week is derived: ignored
    assert_eq!(reg(&mut r, 0x06, 0), 6);
    // Garbage never panics and stays within the calendar.
    for v in [0xff, 0x99, 0x00, 0xaa] {
        for i in [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32] {
            set(&mut r, i, v, 0);
        }
    }
    let s = r.secs(0);
    assert!((0..=253_402_300_799).contains(&s));
}

#[test]
fn cmos_ram_and_status_registers() {
    let mut r = Rtc::new(0);
    assert_eq!(r.read(PORT_INDEX, 0), 0xff, "index is write-only");
    set(&mut r, 0x40, 0x12, 0);
    assert_eq!(reg(&mut r, 0x40, 0), 0x12);
    assert_eq!(reg(&mut r, 0xc0, 0), 0x12, "NMI bit ignored");
    set(&mut r, 0x01, 0x33, 0);
    assert_eq!(reg(&mut r, 0x01, 0), 0x33, "alarm seconds: storage");
    assert_eq!(reg(&mut r, REG_C, 0), 0);
    assert_eq!(reg(&mut r, REG_D, 0), 0x80, "valid RAM and time");
    set(&mut r, REG_D, 0, 0);
    assert_eq!(reg(&mut r, REG_D, 0), 0x80);
    assert_eq!(
        (reg(&mut r, 0x15, 0), reg(&mut r, 0x16, 0)),
        (0x80, 0x02),
        "640 KiB"
    );
    r.set_memory_kib(32 * 1024);
    assert_eq!(
        (reg(&mut r, 0x17, 0), reg(&mut r, 0x18, 0)),
        (0x00, 0x7c),
        "31 MiB"
    );
    assert_eq!(
        (reg(&mut r, 0x34, 0), reg(&mut r, 0x35, 0)),
        (0x00, 0x01),
        "16 MiB / 64 KiB"
    );
    r.set_memory_kib(128 * 1024);
    assert_eq!(
        (reg(&mut r, 0x30, 0), reg(&mut r, 0x31, 0)),
        (0xff, 0xff),
        "capped at 64 MiB"
    );
    assert_eq!(
        (reg(&mut r, 0x34, 0), reg(&mut r, 0x35, 0)),
        (0x00, 0x07),
        "112 MiB / 64 KiB"
    );
}

#[test]
fn civil_calendar_round_trip() {
    for days in (-800_000i64..3_000_000).step_by(7) {
        let (y, m, d) = civil_from_days(days);
        assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        assert_eq!(days_from_civil(y, m, d), days);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(20_789), (2026, 12, 2));
    assert_eq!(
        Fields::from_secs(20_789 * 86_400).dow,
        4,
        "2026-12-02 is a Wednesday"
    );
}

#[test]
fn periodic_interrupt_flags() {
    let mut r = Rtc::new(0);
    // Rate 6: 1024 Hz (32 ticks of 32,768 Hz: 976,562.5 ns).
    set(&mut r, REG_B, B_24H | B_PIE, 0);
    assert_eq!(r.next_irq_ns(), Some(976_563));
    r.advance(976_562);
    assert!(!r.irq_level());
    r.advance(976_563);
    assert!(r.irq_level());
    assert_eq!(
        r.next_irq_ns(),
        None,
        "already raised: no new edge until C is read"
    );
    assert_eq!(reg(&mut r, REG_C, 976_563), C_IRQF | C_PF);
    assert_eq!(reg(&mut r, REG_C, 976_563), 0, "reading C cleared it");
    assert_eq!(r.next_irq_ns(), Some(1_953_125));
    // Rate 0 or a stopped divider: no periodic interrupt.
    set(&mut r, REG_A, 0x20, 976_563);
    assert_eq!(r.next_irq_ns(), None);
    set(&mut r, REG_A, 0x63, 976_563);
    r.advance(10 * S);
    assert_eq!(reg(&mut r, REG_C, 10 * S) & C_PF, 0);
}

/// Register C without PF (set whenever the periodic divider runs, whether enabled or not).
fn c_no_pf(r: &mut Rtc, now: u64) -> u8 {
    reg(r, REG_C, now) & !C_PF
}

#[test]
fn update_ended_and_alarm() {
    let mut r = Rtc::new(0);
    set(&mut r, REG_B, B_24H | B_UIE, 0);
    assert_eq!(r.next_irq_ns(), Some(S));
    r.advance(S - 1);
    assert!(!r.irq_level());
    r.advance(S);
    assert_eq!(c_no_pf(&mut r, S), C_IRQF | C_UF);
    // Alarm at 00:00:05, BCD.
    set(&mut r, 0x01, 0x05, S);
    set(&mut r, 0x03, 0x00, S);
    set(&mut r, 0x05, 0x00, S);
    set(&mut r, REG_B, B_24H | B_AIE, S);
    r.advance(4 * S);
    assert_eq!(
        c_no_pf(&mut r, 4 * S),
        C_UF,
        "flags set, not enabled: no IRQF"
    );
    r.advance(5 * S);
    assert_eq!(c_no_pf(&mut r, 5 * S), C_IRQF | C_AF | C_UF);
    r.advance(6 * S);
    assert_eq!(c_no_pf(&mut r, 6 * S) & C_AF, 0, "once a day");
    // Away for two days: the alarm flag once.
    r.advance(2 * 86_400 * S);
    assert_eq!(c_no_pf(&mut r, 2 * 86_400 * S), C_IRQF | C_AF | C_UF);
    // Don't-care seconds: any second of 00:00 matches; 01:00 to 02:00 does not.
    let d2 = 2 * 86_400 * S;
    r.advance(d2 + 3600 * S);
    c_no_pf(&mut r, d2 + 3600 * S);
    set(&mut r, 0x01, 0xc0, d2 + 3600 * S);
    r.advance(d2 + 7200 * S);
    assert_eq!(c_no_pf(&mut r, d2 + 7200 * S) & C_AF, 0);
    r.advance(d2 + (86_400 + 30) * S);
    assert_eq!(c_no_pf(&mut r, d2 + (86_400 + 30) * S) & C_AF, C_AF);
    // An impossible alarm (minute 0x61) never matches, even over days.
    set(&mut r, 0x03, 0x61, 3 * 86_400 * S);
    r.advance(10 * 86_400 * S);
    assert_eq!(c_no_pf(&mut r, 10 * 86_400 * S) & C_AF, 0);
}

#[test]
fn no_updates_while_set() {
    let mut r = Rtc::new(0);
    set(&mut r, REG_B, B_SET | B_24H | B_UIE, 0);
    assert_eq!(r.reg_b & B_UIE, 0, "SET clears UIE");
    set(&mut r, REG_B, B_SET | B_24H | B_AIE, 0);
    r.advance(5 * S);
    assert_eq!(c_no_pf(&mut r, 5 * S), 0);
    assert_eq!(r.next_irq_ns(), None);
}
