//! The validation report of one experiment: versioned JSON, and a
//! self-contained HTML page in English or Chinese.

use serde::{Deserialize, Serialize};
use vigil_model::{Language, LocalizedText, Severity, Timestamp};

/// Version of the JSON shape; bumped when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;

/// What one experiment showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// JSON shape version ([`REPORT_VERSION`]).
    pub version: u32,
    /// The experiment.
    pub experiment_id: String,
    /// Its name.
    pub name: LocalizedText,
    /// Its description.
    pub description: LocalizedText,
    /// Injection kind (`cpu-hog`, …).
    pub injection_kind: String,
    /// What exactly was injected.
    pub injection: String,
    /// The playbook watched.
    pub patrol: String,
    /// Glob of the true root cause.
    pub expected_root_cause: String,
    /// Rank it had to reach.
    pub expected_top: usize,
    /// Start of the baseline.
    pub started: Timestamp,
    /// When the fault went in.
    pub injected_at: Option<Timestamp>,
    /// When it was undone.
    pub recovered_at: Option<Timestamp>,
    /// End of the experiment.
    pub ended: Timestamp,
    /// Coverage: did the fault move a signal of the root cause in the telemetry.
    pub visible: bool,
    /// The signals compared for coverage.
    pub signal_changes: Vec<SignalChange>,
    /// Findings first seen during the quiet baseline: false findings.
    pub baseline_findings: Vec<SeenFinding>,
    /// Findings first seen after the injection.
    pub findings: Vec<SeenFinding>,
    /// First time a finding pointed at the root cause (detection).
    pub detected_at: Option<Timestamp>,
    /// Best rank of the true root cause among the findings' candidates.
    pub root_cause_rank: Option<usize>,
    /// When the runner first saw the root cause within the expected rank
    /// (to within one poll interval).
    pub root_cause_at: Option<Timestamp>,
    /// Findings of the fault still open at the end of the recovery watch.
    pub recovery_findings_open: usize,
    /// What was undone.
    pub undone: Vec<String>,
    /// What went wrong (an undo that failed, a telemetry read).
    pub errors: Vec<String>,
    /// Ended early by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// Detected, ranked within `expected_top`, no false finding, no error.
    pub passed: bool,
}

impl ValidationReport {
    /// Seconds from injection to detection.
    pub fn time_to_detection_secs(&self) -> Option<i64> {
        Some(self.detected_at?.secs() - self.injected_at?.secs())
    }

    /// Seconds from injection to the root cause ranked within `expected_top`.
    pub fn time_to_root_cause_secs(&self) -> Option<i64> {
        Some(self.root_cause_at?.secs() - self.injected_at?.secs())
    }
}

/// One finding as the experiment saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenFinding {
    /// When the patrol first reported it.
    pub first_seen: Timestamp,
    /// What it is about.
    pub entity: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: Severity,
    /// Its top root-cause candidates, best first.
    pub candidates: Vec<String>,
    /// Where the true root cause ranks for it.
    pub rank_of_expected: Option<usize>,
}

/// One signal, baseline against fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalChange {
    /// The entity.
    pub entity: String,
    /// The signal.
    pub signal: String,
    /// Mean over the baseline (`None`: no data).
    pub baseline: Option<f64>,
    /// Mean while the fault was in.
    pub fault: Option<f64>,
}

impl SignalChange {
    /// Whether the fault moved the signal: it has data during the fault, and
    /// it at least doubled, or appeared, or (CPU, ratios) rose by a visible step.
    pub fn moved(&self) -> bool {
        let Some(fault) = self.fault else {
            return false;
        };
        match self.baseline {
            None => fault > 0.0,
            Some(base) if base.abs() < 1e-9 => fault > 0.05,
            Some(base) => fault >= 2.0 * base || fault - base >= 0.25,
        }
    }
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.title }} · {{ name }}</title>
<style>
body{font:14px/1.5 system-ui,"Noto Sans CJK SC",sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}.muted{color:#666}
.verdict{display:inline-block;padding:.2em .8em;border-radius:1em;font-weight:600;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.95em}
</style></head><body>
<h1>{{ t.title }}: {{ name }}</h1>
<p class="muted">{{ description }}</p>
<p><span class="verdict {{ 'pass' if r.passed else 'fail' }}">{{ t.passed if r.passed else t.failed }}</span>
{% if r.interrupted %} {{ t.interrupted }}{% endif %}</p>
<table>
<tr><th>{{ t.injection }}</th><td><code>{{ r.injection_kind }}</code>: {{ r.injection }}</td></tr>
<tr><th>{{ t.patrol }}</th><td><code>{{ r.patrol }}</code></td></tr>
<tr><th>{{ t.expected }}</th><td><code>{{ r.expected_root_cause }}</code> ({{ t.top }} {{ r.expected_top }})</td></tr>
<tr><th>{{ t.timeline }}</th><td>{{ t.baseline }} {{ started }} · {{ t.injected }} {{ injected }} · {{ t.recovered }} {{ recovered }} · {{ t.ended }} {{ ended }}</td></tr>
</table>
<h2>{{ t.results }}</h2>
<table>
<tr><th>{{ t.coverage }}</th><td>{{ t.yes if r.visible else t.no }}</td></tr>
<tr><th>{{ t.detection }}</th><td>{{ t.yes if r.detected_at else t.no }}</td></tr>
<tr><th>{{ t.rank }}</th><td>{{ r.root_cause_rank if r.root_cause_rank else "—" }}</td></tr>
<tr><th>{{ t.ttd }}</th><td>{{ ttd }}</td></tr>
<tr><th>{{ t.ttrc }}</th><td>{{ ttrc }}</td></tr>
<tr><th>{{ t.false }}</th><td>{{ r.baseline_findings | length }}</td></tr>
<tr><th>{{ t.still_open }}</th><td>{{ r.recovery_findings_open }}</td></tr>
</table>
<h2>{{ t.signals }}</h2>
{% if r.signal_changes %}<table><tr><th>{{ t.entity }}</th><th>{{ t.signal }}</th><th>{{ t.baseline }}</th><th>{{ t.fault }}</th></tr>
{% for c in r.signal_changes %}<tr><td><code>{{ c.entity }}</code></td><td>{{ c.signal }}</td><td class="num">{{ fmt(c.baseline) }}</td><td class="num">{{ fmt(c.fault) }}</td></tr>
{% endfor %}</table>{% else %}<p>{{ t.no_signals }}</p>{% endif %}
{% for section, list in [(t.during, r.findings), (t.false, r.baseline_findings)] %}
<h2>{{ section }}</h2>
{% if list %}<table><tr><th>{{ t.first_seen }}</th><th>{{ t.finding }}</th><th>{{ t.candidates }}</th><th>{{ t.rank }}</th></tr>
{% for f in list %}<tr><td>{{ when(f.first_seen) }}</td><td><b>{{ f.severity }}</b> <code>{{ f.entity }}</code><br>{{ f.title }}</td>
<td>{% for c in f.candidates %}{{ loop.index }}. <code>{{ c }}</code><br>{% endfor %}</td><td>{{ f.rank_of_expected if f.rank_of_expected else "—" }}</td></tr>
{% endfor %}</table>{% else %}<p>{{ t.none }}</p>{% endif %}
{% endfor %}
<h2>{{ t.undone }}</h2>
<ul>{% for u in r.undone %}<li>{{ u }}</li>{% else %}<li>{{ t.none }}</li>{% endfor %}</ul>
{% if r.errors %}<h2>{{ t.errors }}</h2><ul>{% for e in r.errors %}<li>{{ e }}</li>{% endfor %}</ul>{% endif %}
<p class="muted">vigil chaos · {{ t.version }} {{ r.version }}</p>
</body></html>
"#;

fn labels(language: Language) -> serde_json::Value {
    let pairs: &[(&str, &str, &str)] = &[
        ("title", "Chaos validation", "混沌实验验证"),
        ("passed", "PASSED", "通过"),
        ("failed", "FAILED", "未通过"),
        ("interrupted", "(interrupted)", "（已中断）"),
        ("injection", "Injection", "注入故障"),
        ("patrol", "Patrol watched", "观察的巡检"),
        ("expected", "True root cause", "真实根因"),
        ("top", "must rank in the top", "需排在前"),
        ("timeline", "Timeline", "时间线"),
        ("baseline", "baseline", "基线"),
        ("injected", "injected", "注入"),
        ("recovered", "recovered", "恢复"),
        ("ended", "ended", "结束"),
        ("results", "Results", "结果"),
        (
            "coverage",
            "Visible in the telemetry (coverage)",
            "遥测中可见（覆盖）",
        ),
        ("detection", "Detected", "已检测到"),
        ("rank", "Rank of the true root cause", "真实根因排名"),
        ("ttd", "Time to detection", "检测耗时"),
        ("ttrc", "Time to root cause", "定位根因耗时"),
        (
            "false",
            "False findings during the baseline",
            "基线期间的误报",
        ),
        (
            "still_open",
            "Fault findings still open after recovery",
            "恢复后仍未关闭的发现",
        ),
        ("signals", "Signals of the root cause", "根因信号"),
        ("entity", "Entity", "实体"),
        ("signal", "Signal", "信号"),
        ("fault", "during the fault", "故障期间"),
        (
            "no_signals",
            "No telemetry matched the expected root cause.",
            "遥测中没有与预期根因匹配的数据。",
        ),
        ("during", "Findings after the injection", "注入后的发现"),
        ("first_seen", "First seen", "首次发现"),
        ("finding", "Finding", "发现"),
        ("candidates", "Root-cause candidates", "根因候选"),
        ("none", "None.", "无。"),
        ("undone", "Undone", "已撤销"),
        ("errors", "Errors", "错误"),
        ("yes", "yes", "是"),
        ("no", "no", "否"),
        ("version", "report version", "报告版本"),
    ];
    let mut map = serde_json::Map::new();
    for (key, en, zh) in pairs {
        let text = if language == Language::Zh { zh } else { en };
        map.insert((*key).to_owned(), serde_json::Value::from(*text));
    }
    serde_json::Value::Object(map)
}

/// `2026-11-25 08:00:00 UTC`.
fn utc(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs(), 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A time, or a dash.
fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "—".to_owned(), utc)
}

fn duration(secs: Option<i64>) -> String {
    secs.map_or_else(|| "—".to_owned(), |s| format!("{}m {:02}s", s / 60, s % 60))
}

/// The report as one self-contained HTML page.
pub fn render_html(report: &ValidationReport, language: Language) -> String {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_function("fmt", |v: Option<f64>| match v {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
        None => "—".to_owned(),
    });
    env.add_function("when", |secs: i64| utc(Timestamp(secs)));
    let context = minijinja::context! {
        lang => language.as_str(),
        t => minijinja::Value::from(minijinja::value::Serde(labels(language))),
        r => minijinja::Value::from(minijinja::value::Serde(report)),
        name => report.name.get(language),
        description => report.description.get(language),
        started => utc(report.started),
        injected => when(report.injected_at),
        recovered => when(report.recovered_at),
        ended => utc(report.ended),
        ttd => duration(report.time_to_detection_secs()),
        ttrc => duration(report.time_to_root_cause_secs()),
    };
    env.render_str(TEMPLATE, context)
        .unwrap_or_else(|err| format!("<!doctype html><p>report template error: {err}</p>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_the_verdict_and_figures_in_both_languages() {
        let report = ValidationReport {
            version: REPORT_VERSION,
            experiment_id: "redis-slow".into(),
            name: LocalizedText {
                en: "Slow Redis".into(),
                zh: "Redis 变慢".into(),
            },
            description: LocalizedText::default(),
            injection_kind: "redis-slow".into(),
            injection: "Redis blocked <200 ms>".into(),
            patrol: "continuous".into(),
            expected_root_cause: "cache:redis-server@*".into(),
            expected_top: 3,
            started: Timestamp(1_795_628_355),
            injected_at: Some(Timestamp(1_795_628_535)),
            recovered_at: Some(Timestamp(1_795_628_700)),
            ended: Timestamp(1_795_628_730),
            visible: true,
            signal_changes: vec![SignalChange {
                entity: "cache:redis-server@h:6379".into(),
                signal: "p99 latency ms".into(),
                baseline: Some(0.14),
                fault: Some(201.1),
            }],
            baseline_findings: Vec::new(),
            findings: Vec::new(),
            detected_at: Some(Timestamp(1_795_628_640)),
            root_cause_rank: Some(1),
            root_cause_at: Some(Timestamp(1_795_628_641)),
            recovery_findings_open: 0,
            undone: vec!["stopped the DEBUG SLEEP loop".into()],
            errors: Vec::new(),
            interrupted: false,
            passed: true,
        };
        assert_eq!(report.time_to_detection_secs(), Some(105));
        let en = render_html(&report, Language::En);
        assert!(en.contains("Chaos validation: Slow Redis"), "{en}");
        assert!(en.contains("PASSED") && en.contains("1m 45s") && en.contains("201"));
        assert!(en.contains("2026-11-25 17:39:15 UTC"), "{en}");
        assert!(en.contains("Redis blocked &lt;200 ms&gt;"), "escaped: {en}");
        let zh = render_html(&report, Language::Zh);
        assert!(
            zh.contains("混沌实验验证: Redis 变慢") && zh.contains("通过"),
            "{zh}"
        );
    }
}
