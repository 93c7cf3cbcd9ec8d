//! Parsing the numbers programs take as arguments: counts, exit statuses and durations.
#![forbid(unsafe_code)]

/// A non-negative integer: decimal, or hexadecimal with a `0x` prefix. `None` for anything else
/// (signs, spaces, overflow, empty).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The argument string of a program that takes at most one argument: `Some(None)` if it is empty,
/// `Some(Some(v))` if it is one word that `parse` accepts, `None` otherwise (show the usage).
pub fn optional_arg<T>(args: &str, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    let mut words = args.split_ascii_whitespace();
    match (words.next(), words.next()) {
        (None, _) => Some(None),
        (Some(w), None) => parse(w).map(Some),
        _ => None,
    }
}

/// The argument string of a program that takes exactly one argument, parsed by `parse`.
pub fn single_arg<T>(args: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    optional_arg(args, parse).flatten()
}

/// An exit status: an integer from 0 to 255.
pub fn parse_status(s: &str) -> Option<u32> {
    parse_u64(s).filter(|&v| v <= 255).map(|v| v as u32)
}

/// A duration in nanoseconds: seconds with optional decimals (`2`, `0.5`, `1.25s`), or milliseconds with
/// the suffix `ms` (`250ms`, `0.5ms`). At most nine decimals are meaningful; more are cut off.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let (number, unit_ns) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1_000_000u64)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1_000_000_000)
    } else {
        (s, 1_000_000_000)
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
        return None;
    }
    let whole_ns = if whole.is_empty() {
        0
    } else {
        whole.parse::<u64>().ok()?.checked_mul(unit_ns)?
    };
    // The fraction of one unit, in ns: digit by digit, each worth a tenth of the previous one.
    let mut frac_ns = 0u64;
    let mut place = unit_ns;
    for b in frac.bytes() {
        place /= 10;
        frac_ns += u64::from(b - b'0') * place;
    }
    whole_ns.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("100"), Some(100));
        assert_eq!(parse_u64("0x1f"), Some(31));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x",
            "12a",
            "18446744073709551616",
            "1.5",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_status("0"), Some(0));
        assert_eq!(parse_status("255"), Some(255));
        assert_eq!(parse_status("256"), None);
        assert_eq!(parse_status("x"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("2"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Some(500_000_000));
        assert_eq!(parse_duration_ns(".25"), Some(250_000_000));
        assert_eq!(parse_duration_ns("3."), Some(3_000_000_000));
        assert_eq!(parse_duration_ns("1.25s"), Some(1_250_000_000));
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_duration_ns("0.5ms"), Some(500_000));
        assert_eq!(parse_duration_ns("0.0000000019"), Some(1));
        assert_eq!(parse_duration_ns("0"), Some(0));
        for bad in [
            "",
            ".",
            "s",
            "ms",
            "-1",
            "1.2.3",
            "abc",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_duration_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn argument_strings() {
        assert_eq!(optional_arg("", parse_u64), Some(None));
        assert_eq!(optional_arg("  7 ", parse_u64), Some(Some(7)));
        assert_eq!(optional_arg("x", parse_u64), None);
        assert_eq!(optional_arg("1 2", parse_u64), None);
        assert_eq!(single_arg("", parse_u64), None);
        assert_eq!(single_arg("0x10", parse_u64), Some(16));
        assert_eq!(single_arg("300", parse_status), None);
    }
}
