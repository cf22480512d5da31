//! From an evaluation to a report: which findings are new, still open or
//! resolved since the previous report, which are acknowledged or suppressed,
//! and the health score.

use std::collections::BTreeMap;

use vigil_model::{
    EntityId, FindingMark, FindingStatus, Language, MarkKind, PatrolReport, ReportedFinding,
    ResolvedFinding, Severity, Timestamp,
};

use crate::definition::Playbook;
use crate::evaluate::Evaluation;

/// A finding as the previous run left it.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviousFinding {
    /// Stable identity.
    pub fingerprint: String,
    /// Its entity.
    pub entity: EntityId,
    /// Title when last seen.
    pub title: String,
    /// Severity when last seen.
    pub severity: Severity,
    /// When it was first reported.
    pub first_seen: Timestamp,
    /// When it was last reported.
    pub last_seen: Timestamp,
}

/// What the previous run of the same playbook reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreviousState {
    /// The previous report's id, when there was one.
    pub report_id: Option<String>,
    /// Its findings (active and suppressed).
    pub findings: Vec<PreviousFinding>,
}

impl PreviousState {
    /// The state a stored report leaves for the next one.
    pub fn from_report(report: &PatrolReport) -> Self {
        let findings = report
            .findings
            .iter()
            .chain(&report.suppressed)
            .map(|f| PreviousFinding {
                fingerprint: f.finding.fingerprint.clone(),
                entity: f.finding.entity.clone(),
                title: f.finding.title.clone(),
                severity: f.finding.severity,
                first_seen: f.first_seen,
                last_seen: report.generated,
            })
            .collect();
        Self {
            report_id: Some(report.id.clone()),
            findings,
        }
    }
}

/// Ids and time of the report being written.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportIdentity {
    /// Report id.
    pub report_id: String,
    /// The run that produced it.
    pub run_id: String,
    /// Language it is written in.
    pub language: Language,
    /// When it was produced.
    pub generated: Timestamp,
}

/// Builds the report of `evaluation`, comparing with `previous` and applying
/// the marks in force at `identity.generated`.
pub fn assemble(
    playbook: &Playbook,
    evaluation: &Evaluation,
    previous: &PreviousState,
    marks: &[FindingMark],
    identity: &ReportIdentity,
) -> PatrolReport {
    let now = identity.generated;
    let before: BTreeMap<&str, &PreviousFinding> = previous
        .findings
        .iter()
        .map(|f| (f.fingerprint.as_str(), f))
        .collect();
    let active_marks: BTreeMap<&str, &FindingMark> = marks
        .iter()
        .filter(|m| m.active_at(now))
        .map(|m| (m.fingerprint.as_str(), m))
        .collect();
    let mut findings = Vec::new();
    let mut suppressed = Vec::new();
    for checked in &evaluation.findings {
        let fingerprint = checked.finding.fingerprint.as_str();
        let earlier = before.get(fingerprint);
        let reported = ReportedFinding {
            finding: checked.finding.clone(),
            status: if earlier.is_some() {
                FindingStatus::StillOpen
            } else {
                FindingStatus::New
            },
            first_seen: earlier.map_or(now, |p| p.first_seen),
            check_id: checked.check_id.clone(),
            check_name: checked.check_name.clone(),
            runbook: checked.runbook.clone(),
            mark: active_marks.get(fingerprint).map(|m| (*m).clone()),
            neighbourhood: checked.neighbourhood.clone(),
            profile: checked.profile.clone(),
        };
        match &reported.mark {
            Some(mark) if mark.kind == MarkKind::Suppressed => suppressed.push(reported),
            _ => findings.push(reported),
        }
    }
    // New first, then still open; within each, worst severity first.
    findings.sort_by(|a, b| {
        (a.status != FindingStatus::New)
            .cmp(&(b.status != FindingStatus::New))
            .then_with(|| b.finding.severity.cmp(&a.finding.severity))
    });
    let present: std::collections::BTreeSet<&str> = evaluation
        .findings
        .iter()
        .map(|f| f.finding.fingerprint.as_str())
        .collect();
    let resolved = previous
        .findings
        .iter()
        .filter(|p| !present.contains(p.fingerprint.as_str()))
        .map(|p| ResolvedFinding {
            fingerprint: p.fingerprint.clone(),
            entity: p.entity.clone(),
            title: p.title.clone(),
            severity: p.severity,
            first_seen: p.first_seen,
            last_seen: p.last_seen,
        })
        .collect();
    PatrolReport {
        id: identity.report_id.clone(),
        playbook_id: playbook.id.clone(),
        playbook_name: playbook.name.clone(),
        run_id: identity.run_id.clone(),
        language: identity.language,
        generated: now,
        window: evaluation.window,
        previous_report_id: previous.report_id.clone(),
        health_score: PatrolReport::score(&findings),
        findings,
        suppressed,
        resolved,
        slow_sql: evaluation.slow_sql.clone(),
        slow_redis: evaluation.slow_redis.clone(),
        slos: evaluation.slos.clone(),
        cpu_consumers: evaluation.cpu_consumers.clone(),
        coverage: evaluation.coverage.clone(),
        summary: None,
    }
}
