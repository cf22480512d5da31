//! Signals measured on entities: request metrics, resources, slow requests,
//! statement statistics, profiles and events.

use serde::{Deserialize, Serialize};

use crate::entity::{EntityId, L7Protocol};
use crate::time::{TimeRange, Timestamp};

/// Regularly spaced values starting at `start`, one every `step_secs`.
///
/// A step with no data holds `NaN`: gaps stay visible instead of reading as zero,
/// so nothing downstream mistakes missing telemetry for a quiet service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Time of the first value.
    pub start: Timestamp,
    /// Seconds between values.
    pub step_secs: u32,
    /// The values; `NaN` where nothing was measured.
    #[serde(with = "nan_as_null")]
    pub values: Vec<f64>,
}

impl Series {
    /// A series of `len` missing values.
    pub fn empty(start: Timestamp, step_secs: u32, len: usize) -> Self {
        Self {
            start,
            step_secs,
            values: vec![f64::NAN; len],
        }
    }

    /// Time of the value at `index`.
    pub fn time_at(&self, index: usize) -> Timestamp {
        time_at(self.start, self.step_secs, index)
    }

    /// The range the series covers.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            start: self.start,
            end: self.time_at(self.values.len().max(1)),
        }
    }

    /// The index of the step holding `t`, if inside the series.
    pub fn index_of(&self, t: Timestamp) -> Option<usize> {
        let offset = t.secs() - self.start.secs();
        if offset < 0 {
            return None;
        }
        let index = usize::try_from(offset / i64::from(self.step_secs.max(1))).ok()?;
        (index < self.values.len()).then_some(index)
    }

    /// How many steps hold a measured value.
    pub fn present(&self) -> usize {
        self.values.iter().filter(|v| !v.is_nan()).count()
    }
}

fn time_at(start: Timestamp, step_secs: u32, index: usize) -> Timestamp {
    let index = i64::try_from(index).unwrap_or(i64::MAX / 2);
    start.plus_secs(index * i64::from(step_secs))
}

/// One of the request metrics kept per entity per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestMetric {
    /// Requests per step.
    Requests,
    /// Failed requests (server errors and timeouts) per step.
    Errors,
    /// Errors divided by requests.
    ErrorRatio,
    /// Mean latency, milliseconds.
    LatencyMean,
    /// Median latency, milliseconds.
    LatencyP50,
    /// 90th percentile latency, milliseconds.
    LatencyP90,
    /// 99th percentile latency, milliseconds.
    LatencyP99,
}

impl RequestMetric {
    /// Every request metric.
    pub const ALL: [RequestMetric; 7] = [
        Self::Requests,
        Self::Errors,
        Self::ErrorRatio,
        Self::LatencyMean,
        Self::LatencyP50,
        Self::LatencyP90,
        Self::LatencyP99,
    ];

    /// The metric's name as used in config and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Errors => "errors",
            Self::ErrorRatio => "error-ratio",
            Self::LatencyMean => "latency-mean",
            Self::LatencyP50 => "latency-p50",
            Self::LatencyP90 => "latency-p90",
            Self::LatencyP99 => "latency-p99",
        }
    }

    /// The unit values are in.
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Requests | Self::Errors => "req/step",
            Self::ErrorRatio => "ratio",
            _ => "ms",
        }
    }
}

/// Request metrics of one entity (or one call edge) as parallel columns.
///
/// Columns rather than a vector of points because detectors scan one metric over
/// many entities; every column has the same length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestMetrics {
    /// Time of the first step.
    pub start: Timestamp,
    /// Seconds per step.
    pub step_secs: u32,
    /// Requests per step; `NaN` where the entity was not observed.
    #[serde(with = "nan_as_null")]
    pub requests: Vec<f64>,
    /// Errors per step.
    #[serde(with = "nan_as_null")]
    pub errors: Vec<f64>,
    /// Mean latency, ms.
    #[serde(with = "nan_as_null")]
    pub latency_mean_ms: Vec<f64>,
    /// p50 latency, ms.
    #[serde(with = "nan_as_null")]
    pub latency_p50_ms: Vec<f64>,
    /// p90 latency, ms.
    #[serde(with = "nan_as_null")]
    pub latency_p90_ms: Vec<f64>,
    /// p99 latency, ms.
    #[serde(with = "nan_as_null")]
    pub latency_p99_ms: Vec<f64>,
}

impl RequestMetrics {
    /// `len` steps with nothing observed.
    pub fn empty(start: Timestamp, step_secs: u32, len: usize) -> Self {
        let gap = || vec![f64::NAN; len];
        Self {
            start,
            step_secs,
            requests: gap(),
            errors: gap(),
            latency_mean_ms: gap(),
            latency_p50_ms: gap(),
            latency_p90_ms: gap(),
            latency_p99_ms: gap(),
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Time of step `index`.
    pub fn time_at(&self, index: usize) -> Timestamp {
        time_at(self.start, self.step_secs, index)
    }

    /// One metric as a [`Series`]; the error ratio is derived (`NaN` without requests).
    pub fn series(&self, metric: RequestMetric) -> Series {
        let values = match metric {
            RequestMetric::Requests => self.requests.clone(),
            RequestMetric::Errors => self.errors.clone(),
            RequestMetric::ErrorRatio => self
                .requests
                .iter()
                .zip(&self.errors)
                .map(|(&requests, &errors)| {
                    if requests > 0.0 {
                        errors / requests
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
            RequestMetric::LatencyMean => self.latency_mean_ms.clone(),
            RequestMetric::LatencyP50 => self.latency_p50_ms.clone(),
            RequestMetric::LatencyP90 => self.latency_p90_ms.clone(),
            RequestMetric::LatencyP99 => self.latency_p99_ms.clone(),
        };
        Series {
            start: self.start,
            step_secs: self.step_secs,
            values,
        }
    }

    /// Writes one step's values.
    pub fn set(&mut self, index: usize, point: RequestPoint) {
        self.requests[index] = point.requests;
        self.errors[index] = point.errors;
        self.latency_mean_ms[index] = point.latency_mean_ms;
        self.latency_p50_ms[index] = point.latency_p50_ms;
        self.latency_p90_ms[index] = point.latency_p90_ms;
        self.latency_p99_ms[index] = point.latency_p99_ms;
    }

    /// Reads one step's values.
    pub fn get(&self, index: usize) -> RequestPoint {
        RequestPoint {
            requests: self.requests[index],
            errors: self.errors[index],
            latency_mean_ms: self.latency_mean_ms[index],
            latency_p50_ms: self.latency_p50_ms[index],
            latency_p90_ms: self.latency_p90_ms[index],
            latency_p99_ms: self.latency_p99_ms[index],
        }
    }
}

/// One step of [`RequestMetrics`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestPoint {
    /// Requests in the step.
    pub requests: f64,
    /// Errors in the step.
    pub errors: f64,
    /// Mean latency, ms.
    pub latency_mean_ms: f64,
    /// p50 latency, ms.
    pub latency_p50_ms: f64,
    /// p90 latency, ms.
    pub latency_p90_ms: f64,
    /// p99 latency, ms.
    pub latency_p99_ms: f64,
}

/// Request metrics of one serving entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestSeries {
    /// The entity that served the requests.
    pub entity: EntityId,
    /// Its metrics per step.
    pub metrics: RequestMetrics,
}

/// Request metrics of one client→server edge, per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeMetrics {
    /// The calling entity.
    pub client: EntityId,
    /// The called entity.
    pub server: EntityId,
    /// The protocol spoken on the edge.
    pub protocol: L7Protocol,
    /// Metrics per step.
    pub metrics: RequestMetrics,
}

/// A client→server edge summarised over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallEdge {
    /// The calling entity.
    pub client: EntityId,
    /// The called entity.
    pub server: EntityId,
    /// The protocol spoken on the edge.
    pub protocol: L7Protocol,
    /// Requests in the window.
    pub requests: u64,
    /// Errors in the window.
    pub errors: u64,
    /// Mean latency over the window, ms.
    pub latency_mean_ms: f64,
    /// p99 latency over the window, ms (see the store's docs for how it is merged).
    pub latency_p99_ms: f64,
}

/// A resource metric of a process, container or host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceMetric {
    /// CPU time used per second of wall time (1.0 = one full core).
    CpuCores,
    /// Resident memory, bytes.
    MemoryBytes,
    /// TCP segments retransmitted per step.
    TcpRetransmits,
    /// TCP resets and failed connection attempts per step.
    TcpResets,
}

impl ResourceMetric {
    /// Every resource metric.
    pub const ALL: [ResourceMetric; 4] = [
        Self::CpuCores,
        Self::MemoryBytes,
        Self::TcpRetransmits,
        Self::TcpResets,
    ];

    /// The metric's name as stored and configured.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CpuCores => "cpu-cores",
            Self::MemoryBytes => "memory-bytes",
            Self::TcpRetransmits => "tcp-retransmits",
            Self::TcpResets => "tcp-resets",
        }
    }

    /// Parses [`ResourceMetric::as_str`] output.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|metric| metric.as_str() == text)
    }
}

/// One resource metric of one entity over time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceSeries {
    /// The process, container or host measured.
    pub entity: EntityId,
    /// What was measured.
    pub metric: ResourceMetric,
    /// The values.
    pub series: Series,
}

/// How a request ended, with DeepFlow's `response_status` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseStatus {
    /// Succeeded (0).
    Ok,
    /// Outcome not known, e.g. no response seen (2).
    Unknown,
    /// The server failed (3).
    ServerError,
    /// The client's request was refused (4).
    ClientError,
}

impl ResponseStatus {
    /// From DeepFlow's `response_status`; unknown codes read as [`ResponseStatus::Unknown`].
    pub const fn from_deepflow_code(code: u8) -> Self {
        match code {
            0 => Self::Ok,
            3 => Self::ServerError,
            4 => Self::ClientError,
            _ => Self::Unknown,
        }
    }

    /// DeepFlow's `response_status` code.
    pub const fn deepflow_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Unknown => 2,
            Self::ServerError => 3,
            Self::ClientError => 4,
        }
    }

    /// Whether this outcome counts as an error of the server (what error ratios count).
    pub const fn is_server_error(self) -> bool {
        matches!(self, Self::ServerError)
    }
}

/// One slow or failed request, kept as an example for evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestSample {
    /// When the request started.
    pub time: Timestamp,
    /// The caller, when known.
    pub client: Option<EntityId>,
    /// The server.
    pub server: EntityId,
    /// Protocol.
    pub protocol: L7Protocol,
    /// HTTP method, SQL verb or Redis command.
    pub request_type: String,
    /// Normalised resource: URL path, SQL shape with literals as `?`, Redis key pattern.
    pub resource: String,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Outcome.
    pub status: ResponseStatus,
    /// Protocol-level code (HTTP status, MySQL error number), when any.
    pub code: Option<i32>,
    /// Distributed trace id, when any.
    pub trace_id: Option<String>,
}

/// Latency and errors of one statement shape or command on one server, over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementStats {
    /// The database or cache server.
    pub server: EntityId,
    /// Protocol.
    pub protocol: L7Protocol,
    /// SQL verb or Redis command.
    pub request_type: String,
    /// Normalised statement or key pattern.
    pub shape: String,
    /// Executions in the window.
    pub count: u64,
    /// Failed executions.
    pub errors: u64,
    /// Mean latency, ms.
    pub latency_mean_ms: f64,
    /// p99 latency, ms.
    pub latency_p99_ms: f64,
    /// Slowest execution, ms.
    pub latency_max_ms: f64,
}

impl StatementStats {
    /// Time spent in this shape over the window, ms (what "top by total time" sorts on).
    pub fn total_ms(&self) -> f64 {
        self.latency_mean_ms * self.count as f64
    }
}

/// One call stack with how often it was seen, root first, frames joined by `;`
/// (the "folded" format flame-graph tools read).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FoldedStack {
    /// Frames from root to leaf, separated by `;`.
    pub frames: String,
    /// Samples (or CPU microseconds, see [`Profile::unit`]) attributed to this stack.
    pub value: u64,
}

/// On-CPU profile of one process over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The profiled process (or service, when the source only knows that).
    pub entity: EntityId,
    /// The window the samples fall in.
    pub range: TimeRange,
    /// What [`FoldedStack::value`] counts: `samples` or `cpu-us`.
    pub unit: String,
    /// Stacks, heaviest first.
    pub stacks: Vec<FoldedStack>,
}

impl Profile {
    /// Sum of all stacks' values.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|stack| stack.value).sum()
    }
}

/// Something that happened to an entity, which may explain a change in its signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A new version was rolled out.
    Deploy,
    /// The process or container restarted.
    Restart,
    /// Configuration changed.
    ConfigChange,
    /// Memory exhausted and the process was killed.
    OomKill,
}

impl EventKind {
    /// Every event kind.
    pub const ALL: [EventKind; 4] = [
        Self::Deploy,
        Self::Restart,
        Self::ConfigChange,
        Self::OomKill,
    ];

    /// The kind's name as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Restart => "restart",
            Self::ConfigChange => "config-change",
            Self::OomKill => "oom-kill",
        }
    }

    /// Parses [`EventKind::as_str`] output.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// An event on an entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub time: Timestamp,
    /// What it happened to.
    pub entity: EntityId,
    /// What happened.
    pub kind: EventKind,
    /// Free text (version, exit code…).
    pub detail: String,
}

/// Serialises `NaN` as `null` so gaps survive JSON, which has no NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        let options: Vec<Option<f64>> = values
            .iter()
            .map(|v| if v.is_nan() { None } else { Some(*v) })
            .collect();
        options.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        let options = Vec::<Option<f64>>::deserialize(deserializer)?;
        Ok(options.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ratio_is_missing_without_requests() {
        let mut metrics = RequestMetrics::empty(Timestamp(0), 60, 2);
        metrics.requests = vec![10.0, 0.0];
        metrics.errors = vec![1.0, 0.0];
        let ratio = metrics.series(RequestMetric::ErrorRatio);
        assert!((ratio.values[0] - 0.1).abs() < 1e-12);
        assert!(ratio.values[1].is_nan());
    }

    #[test]
    fn gaps_survive_json() {
        let series = Series {
            start: Timestamp(60),
            step_secs: 60,
            values: vec![1.0, f64::NAN],
        };
        let json = serde_json::to_string(&series).expect("serialise");
        assert!(json.contains("[1.0,null]"), "{json}");
        let back: Series = serde_json::from_str(&json).expect("deserialise");
        assert!(back.values[1].is_nan());
    }

    #[test]
    fn index_of_finds_the_step() {
        let series = Series::empty(Timestamp(600), 60, 10);
        assert_eq!(series.index_of(Timestamp(659)), Some(0));
        assert_eq!(series.index_of(Timestamp(660)), Some(1));
        assert_eq!(series.index_of(Timestamp(599)), None);
        assert_eq!(series.index_of(Timestamp(1200)), None);
    }
}
