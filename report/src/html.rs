//! The HTML page: a view model built from the report (all text already in the
//! report's language, all numbers formatted), rendered by one minijinja
//! template with HTML auto-escaping. Only the SVG this crate draws itself is
//! inserted unescaped (`*_svg` fields, escaped when they are built).

use serde::Serialize;
use vigil_model::{
    Anomaly, CpuConsumer, FindingStatus, Language, PatrolReport, ReportedFinding, Severity,
    StatementStats,
};

use crate::chart::{line_chart, ChartInput};
use crate::flame::flame_graph;
use crate::format::{self, datetime, offset_label, percent};
use crate::graph::{service_graph, GraphInput};
use crate::i18n::{self, Strings};
use crate::{RenderOptions, ReportError};

/// The template, compiled into the binary so the page needs no files at run time.
const TEMPLATE: &str = include_str!("../templates/report.html");

#[derive(Serialize)]
struct Page {
    t: &'static Strings,
    title: String,
    playbook: String,
    window: String,
    generated: String,
    zone: String,
    score: u8,
    score_class: &'static str,
    counts: Counts,
    new_findings: Vec<FindingView>,
    open_findings: Vec<FindingView>,
    suppressed: Vec<FindingView>,
    resolved: Vec<ResolvedView>,
    slow_sql: Vec<StatementView>,
    slow_redis: Vec<StatementView>,
    slos: Vec<SloView>,
    cpu: Vec<CpuView>,
    coverage: CoverageView,
    summary: Option<String>,
    report_id: String,
}

#[derive(Serialize)]
struct Counts {
    new: usize,
    still_open: usize,
    resolved: usize,
    suppressed: usize,
}

#[derive(Serialize)]
struct FindingView {
    anchor: String,
    severity: &'static str,
    severity_label: &'static str,
    status: &'static str,
    status_label: &'static str,
    title: String,
    entity: String,
    check: String,
    first_seen: String,
    mark: Option<MarkView>,
    candidates: Vec<CandidateView>,
    graph_svg: Option<String>,
    charts: Vec<ChartView>,
    notes: Vec<String>,
    flame: Option<FlameView>,
    runbook: String,
}

#[derive(Serialize)]
struct MarkView {
    label: &'static str,
    by: String,
    reason: String,
    until: String,
}

#[derive(Serialize)]
struct CandidateView {
    rank: usize,
    entity: String,
    confidence: String,
    confidence_pct: f64,
    signals: String,
    started: String,
}

#[derive(Serialize)]
struct ChartView {
    caption: String,
    svg: String,
    summary: String,
    baseline: String,
    observed: String,
    has_band: bool,
}

#[derive(Serialize)]
struct FlameView {
    document: String,
    height: u32,
    heaviest_frame: String,
}

#[derive(Serialize)]
struct ResolvedView {
    severity: &'static str,
    severity_label: &'static str,
    title: String,
    entity: String,
    first_seen: String,
    last_seen: String,
}

#[derive(Serialize)]
struct StatementView {
    server: String,
    verb: String,
    shape: String,
    count: String,
    errors: String,
    mean: String,
    p99: String,
    max: String,
}

#[derive(Serialize)]
struct SloView {
    service: String,
    objective: String,
    target: String,
    achieved: String,
    budget: String,
    burn: String,
    breached: bool,
}

#[derive(Serialize)]
struct CpuView {
    entity: String,
    service: String,
    mean: String,
    peak: String,
    limit: String,
    flame: Option<FlameView>,
}

#[derive(Serialize)]
struct Ratio {
    seen: u32,
    all: u32,
    percent: String,
}

#[derive(Serialize)]
struct CoverageView {
    state: &'static str,
    message: &'static str,
    services: Ratio,
    hosts: Ratio,
    checks: u32,
    silent: Vec<String>,
    without_data: Vec<String>,
    failed: Vec<(String, String)>,
}

fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn score_class(score: u8) -> &'static str {
    match score {
        90.. => "good",
        60..=89 => "fair",
        _ => "poor",
    }
}

/// Formats a value in the unit of its signal.
fn value_text(anomaly: &Anomaly, v: f64) -> String {
    match format::unit(&anomaly.signal) {
        "ms" => format::ms(v),
        "ratio" => percent(v, 2),
        "bytes" => format!("{} MiB", format::number(v / 1_048_576.0)),
        unit => format!("{} {unit}", format::number(v)),
    }
}

fn chart(anomaly: &Anomaly, language: Language, options: &RenderOptions) -> Option<ChartView> {
    let series = anomaly.evidence.series.as_ref()?;
    let caption = format!(
        "{} · {}",
        anomaly.entity,
        i18n::signal(language, &anomaly.signal)
    );
    let svg = line_chart(&ChartInput {
        series,
        band: anomaly.evidence.band.as_ref(),
        window: anomaly.window,
        unit: format::unit(&anomaly.signal),
        label: &caption,
        offset_minutes: options.utc_offset_minutes,
    });
    Some(ChartView {
        caption,
        svg,
        summary: anomaly.evidence.summary.clone(),
        baseline: value_text(anomaly, anomaly.evidence.baseline),
        observed: value_text(anomaly, anomaly.evidence.observed),
        has_band: anomaly.evidence.band.is_some(),
    })
}

fn flame_view(profile: &vigil_model::Profile, language: Language) -> Option<FlameView> {
    let title = match language {
        Language::En => format!("On-CPU: {}", profile.entity),
        Language::Zh => format!("CPU 火焰图：{}", profile.entity),
    };
    flame_graph(profile, &title).map(|f| FlameView {
        document: f.document,
        height: f.height,
        heaviest_frame: f.heaviest_frame,
    })
}

fn finding_view(
    n: usize,
    reported: &ReportedFinding,
    language: Language,
    options: &RenderOptions,
) -> FindingView {
    let finding = &reported.finding;
    let offset = options.utc_offset_minutes;
    let title = format::title(finding, language);
    let candidates = finding
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| CandidateView {
            rank: i + 1,
            entity: c.entity.to_string(),
            confidence: percent(c.confidence, 0),
            confidence_pct: (c.confidence.clamp(0.0, 1.0) * 100.0).round(),
            signals: c
                .signals
                .iter()
                .map(|s| i18n::signal(language, s))
                .collect::<Vec<_>>()
                .join(", "),
            started: c
                .started_at
                .map_or_else(|| "–".to_owned(), |t| datetime(t, offset)),
        })
        .collect();
    let path = finding
        .candidates
        .first()
        .map_or(&[][..], |c| c.path.as_slice());
    let graph_label = format!("{} – {}", i18n::strings(language).propagation, title);
    let graph_svg = service_graph(&GraphInput {
        links: &reported.neighbourhood,
        path,
        symptom: &finding.entity,
        id: n,
        label: &graph_label,
    });
    let mark = reported.mark.as_ref().map(|m| MarkView {
        label: i18n::mark(language, m.kind),
        by: m.by.clone(),
        reason: m.reason.clone(),
        until: datetime(m.expires, offset),
    });
    let status = match reported.status {
        FindingStatus::New => "new",
        FindingStatus::StillOpen => "still-open",
    };
    FindingView {
        anchor: format!("finding-{n}"),
        severity: severity_class(finding.severity),
        severity_label: i18n::severity(language, finding.severity),
        status,
        status_label: i18n::status(language, reported.status),
        title,
        entity: finding.entity.to_string(),
        check: reported.check_name.get(language).to_owned(),
        first_seen: datetime(reported.first_seen, offset),
        mark,
        candidates,
        graph_svg,
        charts: finding
            .anomalies
            .iter()
            .filter_map(|a| chart(a, language, options))
            .collect(),
        // Symptoms without a series still say what was seen, in a sentence.
        notes: finding
            .anomalies
            .iter()
            .filter(|a| a.evidence.series.is_none())
            .map(|a| {
                let summary = a.evidence.summary.trim();
                if summary.is_empty() {
                    format!(
                        "{} · {}: {} → {}",
                        a.entity,
                        i18n::signal(language, &a.signal),
                        value_text(a, a.evidence.baseline),
                        value_text(a, a.evidence.observed)
                    )
                } else {
                    format!("{} · {}", a.entity, summary)
                }
            })
            .collect(),
        flame: reported
            .profile
            .as_ref()
            .and_then(|p| flame_view(p, language)),
        runbook: reported.runbook.get(language).trim().to_owned(),
    }
}

fn statement_view(s: &StatementStats) -> StatementView {
    StatementView {
        server: s.server.to_string(),
        verb: s.request_type.clone(),
        shape: s.shape.clone(),
        count: format::count(s.count),
        errors: format::count(s.errors),
        mean: format::ms(s.latency_mean_ms),
        p99: format::ms(s.latency_p99_ms),
        max: format::ms(s.latency_max_ms),
    }
}

fn cpu_view(c: &CpuConsumer, language: Language) -> CpuView {
    CpuView {
        entity: c.entity.to_string(),
        service: c
            .service
            .as_ref()
            .map_or_else(|| "–".to_owned(), ToString::to_string),
        mean: format!("{:.2}", c.mean_cores),
        peak: format!("{:.2}", c.peak_cores),
        limit: c
            .limit_cores
            .map_or_else(|| "–".to_owned(), |l| format!("{l:.2}")),
        flame: c.profile.as_ref().and_then(|p| flame_view(p, language)),
    }
}

fn coverage_view(report: &PatrolReport, t: &'static Strings) -> CoverageView {
    let c = &report.coverage;
    let blind =
        c.services > 0 && c.services_with_data == 0 || c.services == 0 && c.hosts_with_data == 0;
    let partly = c.services_with_data < c.services
        || c.hosts_with_data < c.hosts
        || !c.silent.is_empty()
        || !c.without_data.is_empty()
        || !c.checks_failed.is_empty();
    let (state, message) = if blind {
        ("blind", t.blind_warning)
    } else if partly {
        ("partial", t.partly_blind_warning)
    } else {
        ("full", t.full_coverage)
    };
    let ratio = |seen: u32, all: u32| Ratio {
        seen,
        all,
        percent: if all == 0 {
            "–".to_owned()
        } else {
            percent(f64::from(seen) / f64::from(all), 0)
        },
    };
    CoverageView {
        state,
        message,
        services: ratio(c.services_with_data, c.services),
        hosts: ratio(c.hosts_with_data, c.hosts),
        checks: c.checks_run,
        silent: c.silent.iter().map(ToString::to_string).collect(),
        without_data: c.without_data.iter().map(ToString::to_string).collect(),
        failed: c.checks_failed.clone(),
    }
}

/// Renders the page; errors only if the built-in template is broken.
pub(crate) fn render(
    report: &PatrolReport,
    options: &RenderOptions,
) -> Result<String, ReportError> {
    let language = report.language;
    let t = i18n::strings(language);
    let offset = options.utc_offset_minutes;
    let mut n = 0usize;
    let mut views = |findings: &[ReportedFinding], keep: &dyn Fn(&ReportedFinding) -> bool| {
        findings
            .iter()
            .filter(|f| keep(f))
            .map(|f| {
                n += 1;
                finding_view(n, f, language, options)
            })
            .collect::<Vec<_>>()
    };
    let new_findings = views(&report.findings, &|f| f.status == FindingStatus::New);
    let open_findings = views(&report.findings, &|f| f.status == FindingStatus::StillOpen);
    let suppressed = views(&report.suppressed, &|_| true);
    let playbook = report.playbook_name.get(language).to_owned();
    let page = Page {
        t,
        title: format!("{} · {}", playbook, t.report),
        playbook,
        window: format::range(report.window.start, report.window.end, offset),
        generated: datetime(report.generated, offset),
        zone: offset_label(offset),
        score: report.health_score,
        score_class: score_class(report.health_score),
        counts: Counts {
            new: new_findings.len(),
            still_open: open_findings.len(),
            resolved: report.resolved.len(),
            suppressed: suppressed.len(),
        },
        new_findings,
        open_findings,
        suppressed,
        resolved: report
            .resolved
            .iter()
            .map(|r| ResolvedView {
                severity: severity_class(r.severity),
                severity_label: i18n::severity(language, r.severity),
                title: r.title.clone(),
                entity: r.entity.to_string(),
                first_seen: datetime(r.first_seen, offset),
                last_seen: datetime(r.last_seen, offset),
            })
            .collect(),
        slow_sql: report.slow_sql.iter().map(statement_view).collect(),
        slow_redis: report.slow_redis.iter().map(statement_view).collect(),
        slos: report
            .slos
            .iter()
            .map(|s| SloView {
                service: s.service.to_string(),
                objective: match s.threshold_ms {
                    Some(ms) => format!("{} ≤ {}", s.objective, format::ms(ms)),
                    None => s.objective.clone(),
                },
                target: percent(s.target, 2),
                achieved: percent(s.achieved, 3),
                budget: percent(s.budget_remaining, 0),
                burn: format!("{:.1}×", s.worst_burn_rate),
                breached: s.budget_remaining < 0.0 || s.achieved < s.target,
            })
            .collect(),
        cpu: report
            .cpu_consumers
            .iter()
            .map(|c| cpu_view(c, language))
            .collect(),
        coverage: coverage_view(report, t),
        summary: report
            .summary
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        report_id: report.id.clone(),
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    let template = env.get_template("report.html")?;
    Ok(template.render(minijinja::Value::from(minijinja::value::Serde(&page)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses() {
        let mut env = minijinja::Environment::new();
        env.add_template("report.html", TEMPLATE)
            .expect("the built-in template parses");
    }
}
