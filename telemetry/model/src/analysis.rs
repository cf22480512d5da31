//! What the analysis produces: anomalies with evidence, findings that group an
//! incident's symptoms, and ranked root-cause candidates.

use serde::{Deserialize, Serialize};

use crate::entity::EntityId;
use crate::signal::{RequestMetric, ResourceMetric, Series};
use crate::time::{TimeRange, Timestamp};

/// Which signal an anomaly was seen in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "metric")]
pub enum SignalKind {
    /// A request metric of a serving entity.
    Request(RequestMetric),
    /// A resource metric of a process, container or host.
    Resource(ResourceMetric),
    /// Latency or errors of one statement shape or command.
    Statement(String),
    /// An SLO's error budget burning too fast.
    SloBurn(String),
    /// Telemetry stopped arriving.
    Silence,
    /// A fact a playbook check established (restarts, a single instance, a
    /// query over its threshold), named by the check's detector.
    Check(String),
}

/// How urgently a human should look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention today.
    Warning,
    /// Needs attention now.
    Critical,
}

/// Why an anomaly was raised: what was expected, what was seen, and the points to draw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The expected value (baseline) in the anomaly window.
    pub baseline: f64,
    /// The value seen in the anomaly window.
    pub observed: f64,
    /// The series around the window, for charts.
    pub series: Option<Series>,
    /// Lower and upper edge of the expected band, aligned with `series`.
    pub band: Option<(Series, Series)>,
    /// One sentence a human can read.
    pub summary: String,
}

/// A deviation of one signal of one entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Where.
    pub entity: EntityId,
    /// In which signal.
    pub signal: SignalKind,
    /// From onset to end (or to the end of the data when still going).
    pub window: TimeRange,
    /// Strength, comparable across detectors: 0 normal, ≥ 1 anomalous.
    pub score: f64,
    /// Urgency.
    pub severity: Severity,
    /// Why.
    pub evidence: Evidence,
}

/// A ranked explanation of a symptom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCauseCandidate {
    /// The suspected root cause.
    pub entity: EntityId,
    /// Ranking score (higher ranks first).
    pub score: f64,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// The signals that point at it.
    pub signals: Vec<SignalKind>,
    /// From the candidate to the symptom, along which the problem propagated.
    pub path: Vec<EntityId>,
    /// When the problem started on the candidate.
    pub started_at: Option<Timestamp>,
}

/// One problem as a human should see it: the symptoms of one root entity, merged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identity across runs (same problem, same id) so reports can say
    /// new / still open / resolved.
    pub fingerprint: String,
    /// The entity the finding is about.
    pub entity: EntityId,
    /// Short human title.
    pub title: String,
    /// Worst severity among its anomalies.
    pub severity: Severity,
    /// The symptoms.
    pub anomalies: Vec<Anomaly>,
    /// Ranked root causes, best first.
    pub candidates: Vec<RootCauseCandidate>,
}
