//! What a patrol produces for humans: a report of findings with their status
//! against the previous report, evidence, root causes and remediation, plus
//! the estate-wide tables (slow statements, SLOs, coverage).
//!
//! Playbooks build it, the report crate renders it (HTML, Markdown, JSON),
//! notifications digest it and the API serves it; all share this one shape.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::analysis::{Finding, Severity};
use crate::entity::EntityId;
use crate::signal::{Profile, StatementStats};
use crate::time::{TimeRange, Timestamp};
use crate::ModelError;

/// The language a report or answer is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Language {
    /// Both languages, English first.
    pub const ALL: [Self; 2] = [Self::En, Self::Zh];

    /// The tag used in config and URLs: `en` or `zh`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "en" | "en-us" | "en-gb" | "english" => Ok(Self::En),
            "zh" | "zh-cn" | "zh-hans" | "chinese" | "中文" => Ok(Self::Zh),
            _ => Err(ModelError::UnknownName {
                what: "language",
                given: text.to_owned(),
                expected: "en, zh".to_owned(),
            }),
        }
    }
}

/// Text written in both languages (playbook names, runbooks).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizedText {
    /// English.
    pub en: String,
    /// Chinese; falls back to English when empty.
    #[serde(default)]
    pub zh: String,
}

impl LocalizedText {
    /// The same text in both languages (ids, names that need no translation).
    pub fn same(text: &str) -> Self {
        Self {
            en: text.to_owned(),
            zh: text.to_owned(),
        }
    }

    /// The text in `language`, English when that translation is missing.
    pub fn get(&self, language: Language) -> &str {
        match language {
            Language::Zh if !self.zh.is_empty() => &self.zh,
            _ => &self.en,
        }
    }
}

/// A finding's place in the sequence of reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingStatus {
    /// Not in the previous report.
    New,
    /// Also in the previous report: the same problem, still there.
    StillOpen,
}

/// What an operator decided about a finding, until an expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkKind {
    /// Seen and being handled: still reported, marked as acknowledged.
    Acknowledged,
    /// Known and accepted: listed apart from the active findings, not notified.
    Suppressed,
}

impl MarkKind {
    /// The name as stored and typed on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Suppressed => "suppressed",
        }
    }
}

/// An acknowledgement or suppression of one finding (by fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingMark {
    /// The finding's stable fingerprint.
    pub fingerprint: String,
    /// Acknowledged or suppressed.
    pub kind: MarkKind,
    /// Why, in the operator's words.
    pub reason: String,
    /// Who decided.
    pub by: String,
    /// When it was decided.
    pub created: Timestamp,
    /// When it stops applying.
    pub expires: Timestamp,
}

impl FindingMark {
    /// Whether the mark applies at `now`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.created <= now && now < self.expires
    }
}

/// A call between two entities, drawn in a finding's propagation picture.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GraphLink {
    /// Caller (or dependant).
    pub from: EntityId,
    /// Callee (or dependency).
    pub to: EntityId,
}

/// One finding as a report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportedFinding {
    /// The analysis result (anomalies with evidence series, ranked candidates).
    pub finding: Finding,
    /// New or still open since the previous report.
    pub status: FindingStatus,
    /// When this fingerprint was first reported.
    pub first_seen: Timestamp,
    /// Id of the check that raised it.
    pub check_id: String,
    /// Name of that check.
    pub check_name: LocalizedText,
    /// What to do about it.
    pub runbook: LocalizedText,
    /// Acknowledgement or suppression in force, if any.
    pub mark: Option<FindingMark>,
    /// The service graph around the propagation path of the top candidate,
    /// for drawing: calls among the path's entities and their neighbours.
    pub neighbourhood: Vec<GraphLink>,
    /// For CPU findings: the hottest stacks of the process or service.
    pub profile: Option<Profile>,
}

/// A finding of the previous report that is gone from this one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedFinding {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its entity.
    pub entity: EntityId,
    /// Its title when last seen.
    pub title: String,
    /// Its severity when last seen.
    pub severity: Severity,
    /// When it was first reported.
    pub first_seen: Timestamp,
    /// The last report it was in.
    pub last_seen: Timestamp,
}

/// One service-level objective and how it stands over the report's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// The service.
    pub service: EntityId,
    /// `availability` or `latency`.
    pub objective: String,
    /// Target fraction of good requests, e.g. 0.999.
    pub target: f64,
    /// Latency threshold for the latency objective, ms.
    pub threshold_ms: Option<f64>,
    /// Fraction of good requests in the window.
    pub achieved: f64,
    /// Fraction of the window's error budget left (negative: overspent).
    pub budget_remaining: f64,
    /// Worst one-hour burn rate in the window (1 = exactly on budget).
    pub worst_burn_rate: f64,
}

/// A process or container that burned the most CPU, with its hottest stacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuConsumer {
    /// The container or process.
    pub entity: EntityId,
    /// The service it runs, when known.
    pub service: Option<EntityId>,
    /// Mean cores over the window.
    pub mean_cores: f64,
    /// Peak cores (per-minute) in the window.
    pub peak_cores: f64,
    /// Its CPU limit, cores, when set.
    pub limit_cores: Option<f64>,
    /// On-CPU profile over the window, when one was collected.
    pub profile: Option<Profile>,
}

/// Whether the patrol could see what it patrols: is it blind anywhere?
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Services in the topology.
    pub services: u32,
    /// Services with request data in the window.
    pub services_with_data: u32,
    /// Services that sent data earlier but went silent in the window.
    pub silent: Vec<EntityId>,
    /// Services in the topology that never sent request data.
    pub without_data: Vec<EntityId>,
    /// Hosts in the topology.
    pub hosts: u32,
    /// Hosts with resource data in the window.
    pub hosts_with_data: u32,
    /// Checks that ran.
    pub checks_run: u32,
    /// Checks that failed, with why (the rest of the report is still valid).
    pub checks_failed: Vec<(String, String)>,
}

/// How a patrol run ended (or that it has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatrolOutcome {
    /// Still running (or the process died before recording an end).
    Running,
    /// Finished and found nothing worth reporting.
    Clean,
    /// Finished with findings.
    Findings,
    /// Could not finish; see the run's error.
    Failed,
}

impl PatrolOutcome {
    /// Every outcome.
    pub const ALL: [Self; 4] = [Self::Running, Self::Clean, Self::Findings, Self::Failed];

    /// The outcome's name as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Clean => "clean",
            Self::Findings => "findings",
            Self::Failed => "failed",
        }
    }
}

/// One execution of a playbook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatrolRun {
    /// Unique id chosen by the scheduler.
    pub id: String,
    /// The playbook that ran.
    pub playbook_id: String,
    /// When it started.
    pub started: Timestamp,
    /// When it ended; `None` while running.
    pub ended: Option<Timestamp>,
    /// How it ended.
    pub outcome: PatrolOutcome,
    /// Findings it produced.
    pub findings: u32,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// One patrol's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatrolReport {
    /// Unique id (also the stored report's id).
    pub id: String,
    /// The playbook that produced it.
    pub playbook_id: String,
    /// The playbook's name.
    pub playbook_name: LocalizedText,
    /// The patrol run that produced it.
    pub run_id: String,
    /// Language the report is written in.
    pub language: Language,
    /// When it was produced.
    pub generated: Timestamp,
    /// The window patrolled.
    pub window: TimeRange,
    /// The previous report of the same playbook that statuses compare against.
    pub previous_report_id: Option<String>,
    /// 0 (on fire) to 100 (nothing found), from active findings' severities.
    pub health_score: u8,
    /// Active findings: new first, then still open; each by severity, worst first.
    pub findings: Vec<ReportedFinding>,
    /// Suppressed findings, listed apart.
    pub suppressed: Vec<ReportedFinding>,
    /// Findings of the previous report that are gone.
    pub resolved: Vec<ResolvedFinding>,
    /// Slowest SQL statement shapes in the window (by p99).
    pub slow_sql: Vec<StatementStats>,
    /// Slowest Redis commands in the window (by p99).
    pub slow_redis: Vec<StatementStats>,
    /// Objectives and how they stand.
    pub slos: Vec<SloStatus>,
    /// Top CPU consumers with their hottest stacks.
    pub cpu_consumers: Vec<CpuConsumer>,
    /// Whether the patrol saw everything.
    pub coverage: Coverage,
    /// A short summary written by an LLM, when one is configured (never the
    /// only place a fact appears).
    pub summary: Option<String>,
}

impl PatrolReport {
    /// Health score from active findings: critical costs 25, warning 10, info 2.
    pub fn score(findings: &[ReportedFinding]) -> u8 {
        let cost: u32 = findings
            .iter()
            .map(|f| match f.finding.severity {
                Severity::Critical => 25,
                Severity::Warning => 10,
                Severity::Info => 2,
            })
            .sum();
        100u32.saturating_sub(cost) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_common_tags() {
        assert_eq!("zh-CN".parse::<Language>(), Ok(Language::Zh));
        assert_eq!("EN".parse::<Language>(), Ok(Language::En));
        assert!("fr".parse::<Language>().is_err());
    }

    #[test]
    fn localized_text_falls_back_to_english() {
        let text = LocalizedText {
            en: "Slow Redis".to_owned(),
            zh: String::new(),
        };
        assert_eq!(text.get(Language::Zh), "Slow Redis");
        let text = LocalizedText {
            en: "Slow Redis".to_owned(),
            zh: "Redis 变慢".to_owned(),
        };
        assert_eq!(text.get(Language::Zh), "Redis 变慢");
    }

    #[test]
    fn marks_apply_only_until_they_expire() {
        let mark = FindingMark {
            fingerprint: "f".to_owned(),
            kind: MarkKind::Suppressed,
            reason: "known".to_owned(),
            by: "ops".to_owned(),
            created: Timestamp(100),
            expires: Timestamp(200),
        };
        assert!(!mark.active_at(Timestamp(99)));
        assert!(mark.active_at(Timestamp(100)));
        assert!(!mark.active_at(Timestamp(200)));
    }
}
