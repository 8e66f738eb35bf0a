//! Canonical JSON: the one textual form a record has, whoever produced it.
//!
//! Two records that mean the same thing must serialise to the same bytes, so that their
//! fingerprints match across systems: object keys sorted (by UTF-8 bytes), no white space,
//! numbers normalised (`1`, `1.0`, `1.00` and `1e0` are all `1`), and strings that are
//! timestamps with a UTC offset rewritten to UTC (`2024-01-01 10:00:00+02` and
//! `2024-01-01T08:00:00Z` are both `2024-01-01T08:00:00Z`).

use serde_json::Value;
use std::fmt::Write;

/// Plain decimal rendering is used while it stays within this many characters of padding
/// zeros; beyond it the canonical form is scientific, so `1e1000000` cannot blow up memory.
const MAX_PLAIN_ZEROS: i64 = 40;

/// Appends the canonical JSON text of `value` to `out`.
pub fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let text = n.to_string();
            out.push_str(&canonical_number(&text).unwrap_or(text));
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_value(&map[key], out);
            }
            out.push('}');
        }
    }
}

/// The canonical JSON text of `value`.
pub fn to_canonical(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// Writes a JSON string value, normalising it first if it is a timestamp with an offset.
pub fn write_string(s: &str, out: &mut String) {
    match canonical_timestamp(s) {
        Some(ts) => write_json_string(&ts, out),
        None => write_json_string(s, out),
    }
}

/// Writes `s` as a JSON string literal with the minimal escaping serde_json uses.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escaping: copy them whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Normalises the text of a JSON (or SQL numeric) number: no sign on zero, no leading
/// zeros, no trailing fractional zeros, exponent folded in. `None` if `text` is not a number
/// (`NaN` and `Infinity` are not JSON numbers and are left to the caller).
/// Hand-written on purpose: it runs for every numeric value of every fingerprint (capture's
/// per-row path and every inbound record), on text of any length, exactly (no f64), and no
/// well-kept crate normalises decimal text without parsing it into a big number first.
pub fn canonical_number(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(pos) => (&rest[..pos], rest[pos + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(pos) => (&mantissa[..pos], &mantissa[pos + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = 0.<digits> * 10^point, with digits free of leading and trailing zeros.
    let all: String = format!("{int_part}{frac_part}");
    let leading = all.bytes().take_while(|&b| b == b'0').count();
    let point = int_part.len() as i64 - leading as i64 + exponent;
    let mut out = String::with_capacity(all.len() + 8);
    push_digits(negative, &all[leading..], point, &mut out);
    Some(out)
}

/// Appends the canonical number `±0.<digits> × 10^point`. `digits` must be ASCII digits
/// without leading zeros; trailing zeros are dropped here, and no digits at all is zero.
pub fn push_digits(negative: bool, digits: &str, point: i64, out: &mut String) {
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        out.push('0');
        return;
    }
    let n = digits.len() as i64;
    if negative {
        out.push('-');
    }
    if point >= n && point - n <= MAX_PLAIN_ZEROS {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (point - n) as usize));
    } else if point > 0 && point < n {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if point <= 0 && -point <= MAX_PLAIN_ZEROS {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(digits);
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}", point - 1);
    }
}

/// Appends the canonical form of a PostgreSQL `numeric` given in its stored form: base-10000
/// digits, the weight of the first one (`value = Σ digits[i] × 10000^(weight − i)`) and the
/// sign. The same text [`canonical_number`] gives for the type's output, without printing it.
pub fn push_base10000(negative: bool, weight: i32, digits: &[i16], out: &mut String) {
    let mut buf = [0u8; 256];
    let mut text = Vec::new();
    let decimal: &mut [u8] = if digits.len() * 4 <= buf.len() {
        &mut buf[..digits.len() * 4]
    } else {
        text.resize(digits.len() * 4, 0);
        &mut text
    };
    for (i, &d) in digits.iter().enumerate() {
        let d = d.clamp(0, 9999) as u16;
        decimal[i * 4..i * 4 + 4].copy_from_slice(&[
            b'0' + (d / 1000) as u8,
            b'0' + (d / 100 % 10) as u8,
            b'0' + (d / 10 % 10) as u8,
            b'0' + (d % 10) as u8,
        ]);
    }
    let leading = decimal.iter().take_while(|&&b| b == b'0').count();
    let point = (weight as i64 + 1) * 4 - leading as i64;
    let digits = std::str::from_utf8(&decimal[leading..]).expect("ASCII digits");
    push_digits(negative, digits, point, out);
}

/// Rewrites a timestamp that carries a UTC offset (`Z`, `+02`, `+02:00`, `-0530`) to
/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` in UTC. Accepts `T` or a space between date and time, as
/// ISO 8601 and PostgreSQL's own output do. `None` for anything else, including timestamps
/// without an offset (they name no instant, so they are compared as written).
pub fn canonical_timestamp(s: &str) -> Option<String> {
    instant(s).map(|(secs, micros)| format_utc(secs, micros))
}

/// The instant a timestamp with a UTC offset names, as seconds since 1970-01-01 UTC and
/// microseconds; `None` for anything else (see [`canonical_timestamp`]).
pub fn instant(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let frac = &s[start..end];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        let mut padded = frac.to_string();
        padded.truncate(6);
        while padded.len() < 6 {
            padded.push('0');
        }
        micros = padded.parse().ok()?;
        i = end;
    }
    let offset_secs: i64 = match &s[i..] {
        "Z" | "z" => 0,
        rest => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (h, m) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
                _ => return None,
            };
            if h > 15 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let total = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some((total, micros))
}

/// Formats seconds since 1970-01-01 UTC (plus microseconds) as canonical UTC text.
pub fn format_utc(total_secs: i64, micros: i64) -> String {
    let mut out = String::with_capacity(28);
    write_utc(total_secs, micros, &mut out);
    out
}

/// Appends what [`format_utc`] returns, without allocating (the capture trigger's hot path:
/// every timestamp of every captured row goes through here).
pub fn write_utc(total_secs: i64, micros: i64, out: &mut String) {
    let days = total_secs.div_euclid(86_400);
    let secs = total_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}");
    }
    // YYYY-MM-DDTHH:MM:SS.ffffffZ
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let two = |buf: &mut [u8], at: usize, v: i64| {
        buf[at] = b'0' + (v / 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    };
    if (0..=9999).contains(&y) {
        two(&mut buf, 0, y / 100);
        two(&mut buf, 2, y % 100);
    }
    two(&mut buf, 5, m);
    two(&mut buf, 8, d);
    two(&mut buf, 11, secs / 3600);
    two(&mut buf, 14, secs % 3600 / 60);
    two(&mut buf, 17, secs % 60);
    let start = if (0..=9999).contains(&y) { 0 } else { 4 };
    let end = if micros > 0 {
        let mut frac = micros;
        for i in (20..26).rev() {
            buf[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let mut end = 26;
        while buf[end - 1] == b'0' {
            end -= 1;
        }
        end
    } else {
        19
    };
    out.push_str(std::str::from_utf8(&buf[start..end]).expect("ASCII"));
    out.push('Z');
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    out.push_str(std::str::from_utf8(&buf[start..]).expect("ASCII digits"));
}

/// Appends a signed integer in decimal.
pub fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_padded(out, n.unsigned_abs(), 1);
}

/// Formats a local date-time (seconds since 1970-01-01 of a zone-less clock, plus
/// microseconds) as `YYYY-MM-DDTHH:MM:SS[.ffffff]`, the form `to_jsonb` gives a `timestamp`.
/// `None` outside years 1..=9999, which PostgreSQL writes differently (BC, five digits).
pub fn format_local(total_secs: i64, micros: i64) -> Option<String> {
    let mut out = format_utc(total_secs, micros);
    out.pop();
    let year: i64 = out.get(..4)?.parse().ok()?;
    (out.len() >= 19 && (1..=9999).contains(&year) && !out.starts_with('-')).then_some(out)
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`; `None` outside years 1..=9999.
pub fn format_date(days: i64) -> Option<String> {
    let (y, m, d) = civil_from_days(days);
    (1..=9999).contains(&y).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// Formats an interval as an ISO 8601 duration with a sign on each part, as PostgreSQL's
/// `IntervalStyle = iso_8601` does: `P1Y2M3DT4H5M6.5S`, `PT0S` for zero.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years as i64, 'Y'), (months as i64, 'M'), (days as i64, 'D')] {
        if n != 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    if micros != 0 {
        out.push('T');
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let (h, m, s, f) = (abs / 3_600_000_000, abs / 60_000_000 % 60, abs / 1_000_000 % 60, abs % 1_000_000);
        if h != 0 {
            let _ = write!(out, "{sign}{h}H");
        }
        if m != 0 {
            let _ = write!(out, "{sign}{m}M");
        }
        if s != 0 || f != 0 {
            let _ = write!(out, "{sign}{s}");
            if f != 0 {
                let frac = format!("{f:06}");
                let _ = write!(out, ".{}", frac.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
/// Hand-written rather than a date crate's: capture runs it for every timestamp and date
/// column of every captured row (the per-row path bench/capture measures), where a few
/// integer operations beat building a date value, and it has no errors to handle.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_that_are_equal_print_the_same() {
        for (input, want) in [
            ("1", "1"),
            ("1.0", "1"),
            ("1.00", "1"),
            ("1e0", "1"),
            ("10E-1", "1"),
            ("0.10", "0.1"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("007", "7"),
            ("+3.50", "3.5"),
            ("-12.340", "-12.34"),
            ("1.5e3", "1500"),
            ("123456789012345678901234567890.000", "123456789012345678901234567890"),
            ("0.000001", "0.000001"),
            ("1e100", "1e100"),
            ("-2.50e-100", "-2.5e-100"),
        ] {
            assert_eq!(canonical_number(input).as_deref(), Some(want), "input {input}");
        }
    }

    #[test]
    fn stored_numerics_print_as_their_text_does() {
        // (sign, weight, base-10000 digits) and the numeric's text output.
        for (negative, weight, digits, text) in [
            (false, 0, &[500][..], "500.00".to_string()),
            (false, 0, &[1], "1.0000".to_string()),
            (true, 0, &[12, 3400], "-12.3400".to_string()),
            (false, -1, &[1000], "0.1000".to_string()),
            (false, -3, &[1], "0.000000000001".to_string()),
            (false, 2, &[12, 3456, 7890, 1200], "1234567890.12".to_string()),
            (false, 0, &[], "0.00".to_string()),
            (true, 0, &[], "0".to_string()),
            (false, 11, &[1], format!("1{}", "0".repeat(44))),
            (false, -12, &[25], format!("0.{}25", "0".repeat(46))),
            (false, 1, &[9999, 9999], "99999999".to_string()),
        ] {
            let mut out = String::new();
            push_base10000(negative, weight, digits, &mut out);
            assert_eq!(Some(out), canonical_number(&text), "{text}");
        }
        let long = vec![1234; 100];
        let mut out = String::new();
        push_base10000(false, 0, &long, &mut out);
        assert_eq!(out, format!("1234.{}", "1234".repeat(99)));
    }

    #[test]
    fn non_numbers_are_refused() {
        for input in ["", "-", ".", "abc", "1.2.3", "NaN", "Infinity", "1e", "0x10"] {
            assert_eq!(canonical_number(input), None, "input {input:?}");
        }
    }

    #[test]
    fn huge_exponents_stay_small() {
        let out = canonical_number("1e1000000").unwrap();
        assert_eq!(out, "1e1000000");
    }

    #[test]
    fn timestamps_with_offsets_become_utc() {
        for (input, want) in [
            ("2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00Z"),
            ("2024-01-01 10:00:00+02", "2024-01-01T08:00:00Z"),
            ("2024-01-01T08:00:00Z", "2024-01-01T08:00:00Z"),
            ("2024-01-01T08:00:00.500000Z", "2024-01-01T08:00:00.5Z"),
            ("2024-03-01T01:30:00+05:30", "2024-02-29T20:00:00Z"),
            ("1999-12-31T23:00:00-0100", "2000-01-01T00:00:00Z"),
            ("2024-01-01 10:00:00.123456789+00", "2024-01-01T10:00:00.123456Z"),
        ] {
            assert_eq!(canonical_timestamp(input).as_deref(), Some(want), "input {input}");
        }
    }

    #[test]
    fn instants_order_across_offsets_and_fractions() {
        let a = instant("2024-01-01T10:00:00.5+02:00").unwrap();
        let b = instant("2024-01-01 08:00:00Z").unwrap();
        assert!(a > b, "half a second later");
        assert_eq!(instant("2024-01-01T08:00:00.5Z"), Some(a));
    }

    #[test]
    fn other_strings_are_not_timestamps() {
        for input in [
            "2024-01-01T10:00:00",
            "2024-02-30T10:00:00Z",
            "2024-01-01T25:00:00Z",
            "hello world, this is long",
            "2024-01-01T10:00:00+2",
        ] {
            assert_eq!(canonical_timestamp(input), None, "input {input}");
        }
    }

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1.0, "a": {"y": [1, 2.50], "x": null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,2.5]},"b":1}"#).unwrap();
        assert_eq!(to_canonical(&a), to_canonical(&b));
        assert_eq!(to_canonical(&a), r#"{"a":{"x":null,"y":[1,2.5]},"b":1}"#);
    }

    #[test]
    fn strings_are_escaped_like_json() {
        let v = json!({"s": "a\"b\\c\nd\u{1}"});
        let text = to_canonical(&v);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn local_times_dates_and_intervals() {
        // 2024-05-01 12:00:00.5 as seconds since 1970.
        assert_eq!(format_local(1_714_564_800, 500_000).as_deref(), Some("2024-05-01T12:00:00.5"));
        assert_eq!(format_local(-62_135_596_800 - 1, 0), None, "year 0 is written as BC by PostgreSQL");
        assert_eq!(format_date(19_844).as_deref(), Some("2024-05-01"));
        assert_eq!(format_interval(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(format_interval(0, 0, 0), "PT0S");
        assert_eq!(format_interval(-1, 0, -90_000_000), "P-1MT-1M-30S");
    }

    #[test]
    fn hand_written_number_formatting_matches_std() {
        for n in [0i64, 7, -7, 10, 12345, i64::MAX, i64::MIN] {
            let mut s = String::new();
            push_int(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        let mut s = String::new();
        push_padded(&mut s, 5, 4);
        assert_eq!(s, "0005");
        for (secs, micros) in
            [(0, 0), (1_714_564_800, 500_000), (1_714_564_800, 120), (-1, 999_999), (253_402_300_799, 1)]
        {
            let std = {
                let days = i64::div_euclid(secs, 86_400);
                let rem = i64::rem_euclid(secs, 86_400);
                let (y, m, d) = civil_from_days(days);
                let mut t = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
                if micros > 0 {
                    t.push('.');
                    t.push_str(format!("{micros:06}").trim_end_matches('0'));
                }
                t + "Z"
            };
            assert_eq!(format_utc(secs, micros), std);
        }
    }

    #[test]
    fn round_trip_of_civil_dates() {
        for days in [-800_000, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
