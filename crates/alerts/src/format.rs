//! Small, language-aware formatting helpers shared by the renderer.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::lang::{Strings, Unit};

/// Longest reason shown; container health output can be pages long.
const MAX_REASON_CHARS: usize = 300;

/// `2026-11-23 14:05:09 -05 (America/Lima)`: ISO order so no reader misreads the
/// day and month, the offset in effect at that instant (DST-aware), then the zone.
pub fn time(at_ms: i64, tz: &TimeZone) -> String {
    let Ok(ts) = Timestamp::from_millisecond(at_ms) else {
        // Out of jiff's range: only reachable with corrupt input; show the raw value.
        return format!("@{at_ms} ms");
    };
    let zoned = ts.to_zoned(tz.clone());
    let mut out = match jiff::fmt::strtime::format("%Y-%m-%d %H:%M:%S %:::z", &zoned) {
        Ok(s) => s,
        Err(_) => zoned.to_string(),
    };
    if let Some(name) = tz.iana_name() {
        let _ = write!(out, " ({name})");
    }
    out
}

/// Human duration with the two most significant units: `3 min 20 s`, `2 h 5 min`.
pub fn duration(ms: i64, s: &Strings) -> String {
    let total = u64::try_from(ms.max(0)).unwrap_or(0) / 1000;
    let parts = [
        (Unit::Day, total / 86_400),
        (Unit::Hour, total / 3_600 % 24),
        (Unit::Minute, total / 60 % 60),
        (Unit::Second, total % 60),
    ];
    let Some(first) = parts.iter().position(|&(_, n)| n > 0) else {
        return format!("0 {}", (s.unit)(Unit::Second, 0));
    };
    parts
        .iter()
        .skip(first)
        .take(2)
        .filter(|&&(_, n)| n > 0)
        .map(|&(u, n)| format!("{n} {}", (s.unit)(u, n)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `12.3 ms`, with the language's decimal separator.
pub fn latency(ms: Option<f64>, s: &Strings) -> String {
    match ms {
        Some(v) if v.is_finite() => {
            let text = format!("{v:.1} ms");
            if s.decimal_separator == '.' {
                text
            } else {
                text.replace('.', &s.decimal_separator.to_string())
            }
        }
        _ => s.not_available.to_owned(),
    }
}

/// Fills `{name}` placeholders in one pass; inserted values are never re-scanned,
/// so a reason containing `{target}` stays as it is.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let replaced = after.find('}').and_then(|close| {
            let name = &after[..close];
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v, close))
        });
        match replaced {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One line, bounded length: what is safe to put in a title or a code span.
pub fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX_REASON_CHARS {
        let mut cut: String = flat.chars().take(MAX_REASON_CHARS).collect();
        cut.push('…');
        cut
    } else {
        flat
    }
}

/// A Markdown code span that survives backticks inside the reason.
pub fn code(text: &str) -> String {
    let body = one_line(text);
    let longest_run = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    // CommonMark strips one space on each side, so padding keeps edge backticks intact.
    if body.starts_with('`') || body.ends_with('`') {
        format!("{fence} {body} {fence}")
    } else {
        format!("{fence}{body}{fence}")
    }
}

/// Escapes Markdown punctuation in a free-form name (target names are user-chosen).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '<'
                | '>'
                | '#'
                | '|'
                | '~'
                | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Language;

    #[test]
    fn durations_use_two_units() {
        let en = Language::English.strings();
        let cases = [
            (0, "0 s"),
            (999, "0 s"),
            (-5, "0 s"),
            (45_000, "45 s"),
            (200_000, "3 min 20 s"),
            (3_600_000, "1 h"),
            (7_500_000, "2 h 5 min"),
            (7_205_000, "2 h"),
            (100_800_000, "1 d 4 h"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(ms, en), want, "{ms}");
        }
        assert_eq!(
            duration(90_000_000, Language::Spanish.strings()),
            "1 día 1 h"
        );
        assert_eq!(
            duration(180_000_000, Language::Spanish.strings()),
            "2 días 2 h"
        );
        assert_eq!(duration(200_000, Language::Thai.strings()), "3 นาที 20 วินาที");
    }

    #[test]
    fn latency_has_one_decimal() {
        let en = Language::English.strings();
        assert_eq!(latency(Some(12.34), en), "12.3 ms");
        assert_eq!(latency(None, en), "n/a");
        assert_eq!(latency(Some(f64::NAN), en), "n/a");
    }

    #[test]
    fn fill_is_single_pass() {
        assert_eq!(
            fill(
                "{target} is {x} {unknown",
                &[("target", "{x}"), ("x", "down")]
            ),
            "{x} is down {unknown"
        );
        assert_eq!(fill("{a}{b}", &[("a", "1"), ("b", "2")]), "12");
        assert_eq!(fill("{nope}", &[]), "{nope}");
    }

    #[test]
    fn code_spans_and_escapes() {
        assert_eq!(code("HTTP 503"), "`HTTP 503`");
        assert_eq!(code("a `b` c"), "``a `b` c``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("line1\nline2"), "`line1 line2`");
        assert!(code(&"x".repeat(1000)).chars().count() < 310);
        assert_eq!(escape("my_api*[1]"), "my\\_api\\*\\[1\\]");
    }

    #[test]
    fn time_outside_range_does_not_panic() {
        assert_eq!(time(i64::MAX, &TimeZone::UTC), format!("@{} ms", i64::MAX));
    }
}
