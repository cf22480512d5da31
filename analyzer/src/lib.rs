//! Anomaly detection: pure, deterministic functions from telemetry series to
//! anomalies with evidence.
//!
//! Owns the detectors (baseline deviation, persistent level shifts, multivariate
//! outliers, slow statements, SLO burn, memory growth) and the noise guards.
//! Does not own fetching: callers read series through `TelemetrySource` and pass
//! them in. No IO, no clock, no randomness without a seed.
//!
//! # Layout
//! - [`analyze`] is the entry point: [`AnalysisInput`] (a window plus its
//!   history) and [`AnalyzerConfig`] in, [`Finding`]s out.
//! - One module per detector, each a pure function of series returning
//!   [`Anomaly`]s whose evidence holds baseline vs observed, the chart series and
//!   its expected band, and one sentence: [`baseline`] (latency, errors,
//!   throughput, retransmits against a seasonal baseline), [`cpu`] (CPU never
//!   released, saturation), [`outlier`] (linfa Gaussian mixture; peers),
//!   [`statements`] (slow MySQL / Redis shapes), [`slo`] (burn rates),
//!   [`memory`] (leaks). `detectors` is the one place they are registered.
//! - [`guards`] (flapping, gaps) and [`merge`] (one finding per root entity, over
//!   the topology) keep noise down; minimum traffic and warm-up after deploys
//!   and restarts are applied where detectors are registered.
//!
//! Does not own root-cause ranking across the graph (`vigil-knowledge-graph`
//! fills [`Finding::candidates`]) nor deciding what is new or resolved (patrols).

pub mod baseline;
pub mod config;
pub mod cpu;
mod detectors;
pub mod guards;
pub mod input;
pub mod memory;
pub mod merge;
pub mod outlier;
pub mod slo;
pub mod statements;
pub mod stats;

pub use config::{
    AnalyzerConfig, BaselineConfig, BurnRule, CpuConfig, GuardConfig, LatencyObjective,
    MemoryConfig, OutlierConfig, SloConfig, StatementConfig,
};
pub use input::{AnalysisInput, Context};
pub use vigil_model::{Anomaly, Finding};

/// Why an analysis cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzerError {
    /// A configuration value is out of range.
    #[error("invalid analyzer config: {field}: {reason}")]
    InvalidConfig {
        /// The field, e.g. `guards.hold_points`.
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// Every anomaly in `input`'s window, before merging (for charts and tests).
pub fn anomalies(input: &AnalysisInput, config: &AnalyzerConfig) -> Vec<Anomaly> {
    let context = Context::new(&input.topology, &input.events);
    detectors::detect_all(input, &context, config)
}

/// Runs every detector over `input` and merges the anomalies into findings,
/// one per root entity and incident, most severe first.
///
/// Pure and deterministic: the same input and config give the same findings.
/// Validate `config` with [`AnalyzerConfig::validate`] where it is loaded; an
/// invalid one here only makes detectors find less.
pub fn analyze(input: &AnalysisInput, config: &AnalyzerConfig) -> Vec<Finding> {
    let context = Context::new(&input.topology, &input.events);
    let anomalies = detectors::detect_all(input, &context, config);
    merge::merge(anomalies, &context, &config.guards)
}
