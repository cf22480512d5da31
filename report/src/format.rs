//! Formatting of times, numbers and derived titles, shared by the HTML and
//! Markdown renderers so both say the same thing the same way.

use vigil_model::{Finding, Language, SignalKind, Timestamp};

use crate::i18n;

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), so the
/// crate needs no date library for one conversion.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Date and minute parts of `t` shifted by `offset_minutes`.
fn parts(t: Timestamp, offset_minutes: i32) -> (i64, u32, u32, i64, i64) {
    let local = t.secs() + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs / 3600, (secs % 3600) / 60)
}

/// `2026-11-25 09:30` in the local offset.
pub(crate) fn datetime(t: Timestamp, offset_minutes: i32) -> String {
    let (y, m, d, hh, mm) = parts(t, offset_minutes);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
}

/// `09:30` in the local offset (chart axes).
pub(crate) fn clock(t: Timestamp, offset_minutes: i32) -> String {
    let (_, _, _, hh, mm) = parts(t, offset_minutes);
    format!("{hh:02}:{mm:02}")
}

/// `UTC+08:00`: printed next to every local time so no reader guesses the zone.
pub(crate) fn offset_label(offset_minutes: i32) -> String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let abs = offset_minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", abs / 60, abs % 60)
}

/// A range as `2026-11-25 06:00 – 09:00` (the end's date only when it differs).
pub(crate) fn range(start: Timestamp, end: Timestamp, offset_minutes: i32) -> String {
    let a = datetime(start, offset_minutes);
    let b = datetime(end, offset_minutes);
    if a.get(..10) == b.get(..10) {
        format!("{a} – {}", clock(end, offset_minutes))
    } else {
        format!("{a} – {b}")
    }
}

/// Escapes text for XML and HTML (SVG labels are written by hand, not by the template).
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Thousands separators for counts: `12,345`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds as `0.42 ms`, `41.3 ms`, `412 ms` or `1.24 s`.
pub(crate) fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// A fraction as a percentage with `decimals` places: `0.9991` → `99.91%`.
pub(crate) fn percent(fraction: f64, decimals: usize) -> String {
    if fraction.is_finite() {
        format!("{:.*}%", decimals, fraction * 100.0)
    } else {
        "–".to_owned()
    }
}

/// A plain number with at most three significant decimals, for axes and summaries.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The unit a signal's chart is drawn in.
pub(crate) fn unit(signal: &SignalKind) -> &'static str {
    use vigil_model::ResourceMetric as R;
    match signal {
        SignalKind::Request(metric) => metric.unit(),
        SignalKind::Resource(R::CpuCores) => "cores",
        SignalKind::Resource(R::MemoryBytes) => "bytes",
        SignalKind::Resource(_) => "/step",
        SignalKind::Statement(_) => "ms",
        SignalKind::SloBurn(_) => "×",
        SignalKind::Silence | SignalKind::Check(_) => "",
    }
}

/// The finding's title in `language`: the analyzer's English title as is, and
/// in Chinese one derived from its strongest anomaly's signal and entity.
pub(crate) fn title(finding: &Finding, language: Language) -> String {
    if language == Language::En && !finding.title.is_empty() {
        return finding.title.clone();
    }
    // The symptom on the finding's own entity names it; else the strongest anomaly.
    let strongest = |own: bool| {
        finding
            .anomalies
            .iter()
            .filter(|a| !own || a.entity == finding.entity)
            .max_by(|a, b| {
                a.severity
                    .cmp(&b.severity)
                    .then(a.score.total_cmp(&b.score))
            })
    };
    let strongest = strongest(true).or_else(|| strongest(false));
    let Some(anomaly) = strongest else {
        return match language {
            Language::Zh => format!("{} 异常", finding.entity),
            Language::En => format!("{} anomalous", finding.entity),
        };
    };
    // Unknown (NaN) counts as a rise: anomalies are mostly rises.
    let rose = anomaly.evidence.observed >= anomaly.evidence.baseline
        || anomaly.evidence.observed.is_nan()
        || anomaly.evidence.baseline.is_nan();
    let signal = i18n::signal(language, &anomaly.signal);
    let direction = i18n::direction(language, &anomaly.signal, rose);
    match language {
        Language::Zh => format!("{}：{signal}{direction}", finding.entity.name()),
        Language::En => format!("{}: {signal}{direction}", finding.entity.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_use_the_offset() {
        // 2024-02-29 23:30 UTC is 2024-03-01 07:30 in China.
        let t = Timestamp(1_709_249_400);
        assert_eq!(datetime(t, 0), "2024-02-29 23:30");
        assert_eq!(datetime(t, 480), "2024-03-01 07:30");
        assert_eq!(offset_label(480), "UTC+08:00");
        assert_eq!(offset_label(-330), "UTC-05:30");
    }

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(ms(0.4217), "0.42 ms");
        assert_eq!(ms(412.4), "412 ms");
        assert_eq!(ms(1240.0), "1.24 s");
        assert_eq!(percent(0.9991, 2), "99.91%");
    }
}
