//! Configuration of the detectors and noise guards. Every field has a default,
//! so a YAML section names only what it changes.

use serde::{Deserialize, Serialize};
use vigil_model::{EntityId, RequestMetric, Severity};

use crate::AnalyzerError;

/// Everything the analysis can be tuned with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerConfig {
    /// Noise guards shared by every detector.
    pub guards: GuardConfig,
    /// Seasonal baseline deviation (latency, errors, throughput, retransmits).
    pub baseline: BaselineConfig,
    /// CPU level shifts not explained by traffic, and CPU saturation.
    pub cpu: CpuConfig,
    /// Multivariate (linfa) and peer outliers.
    pub outlier: OutlierConfig,
    /// Slow MySQL statements and Redis commands.
    pub statements: StatementConfig,
    /// SLO burn rates.
    pub slo: SloConfig,
    /// Memory growth.
    pub memory: MemoryConfig,
}

impl AnalyzerConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), AnalyzerError> {
        let bad = |field: &str, reason: &str| {
            Err(AnalyzerError::InvalidConfig {
                field: field.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.guards.hold_points == 0 {
            return bad("guards.hold_points", "must be at least 1");
        }
        if !is_positive(self.baseline.threshold) {
            return bad("baseline.threshold", "must be positive");
        }
        if self.baseline.history_days == 0 {
            return bad("baseline.history_days", "must be at least 1");
        }
        if self.baseline.latency_min_ratio.is_nan() || self.baseline.latency_min_ratio < 1.0 {
            return bad("baseline.latency_min_ratio", "must be at least 1");
        }
        if !is_positive(self.cpu.threshold) {
            return bad("cpu.threshold", "must be positive");
        }
        if !(0.0 < self.cpu.saturation_share && self.cpu.saturation_share <= 1.0) {
            return bad("cpu.saturation_share", "must be in (0, 1]");
        }
        if self.outlier.components == 0 {
            return bad("outlier.components", "must be at least 1");
        }
        if self.outlier.window_minutes == 0 {
            return bad("outlier.window_minutes", "must be at least 1");
        }
        if !(0.0 < self.slo.availability_objective && self.slo.availability_objective < 1.0) {
            return bad("slo.availability_objective", "must be in (0, 1)");
        }
        for (index, rule) in self.slo.burn_rules.iter().enumerate() {
            if rule.long_minutes == 0 || rule.short_minutes == 0 || !is_positive(rule.factor) {
                return bad(
                    &format!("slo.burn_rules[{index}]"),
                    "windows must be at least one minute and the factor positive",
                );
            }
        }
        for (index, objective) in self.slo.latency_objectives.iter().enumerate() {
            let valid = is_positive(objective.threshold_ms)
                && 0.0 < objective.objective
                && objective.objective < 1.0;
            if !valid {
                return bad(
                    &format!("slo.latency_objectives[{index}]"),
                    "threshold_ms must be positive and objective in (0, 1)",
                );
            }
        }
        if self.memory.window_minutes < 3 {
            return bad("memory.window_minutes", "must be at least 3");
        }
        Ok(())
    }
}

/// Whether `value` is a number above zero (`NaN` is not).
fn is_positive(value: f64) -> bool {
    value > 0.0
}

/// Guards against noise, applied by every detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Request steps with fewer requests than this are not scored for latency
    /// and errors: a quantile of three requests is noise.
    pub min_requests_per_step: f64,
    /// Minutes after a deploy or restart of an entity during which its signals
    /// are not scored (caches warm, JITs compile, pools fill).
    pub warmup_minutes: u32,
    /// A deviation must hold for this many consecutive scored points (flapping guard).
    pub hold_points: usize,
    /// Unscored or normal points allowed inside one anomaly before it ends.
    pub max_gap_points: usize,
    /// Anomalies of one root entity closer than this in time form one finding.
    pub merge_gap_minutes: u32,
    /// Symptoms (request metrics, SLO burn) of one entity chain over this
    /// shorter gap only, so two incidents an hour apart stay two.
    pub symptom_gap_minutes: u32,
    /// Findings whose worst anomaly is below this are dropped: weaker anomalies
    /// only add evidence to findings raised by stronger ones.
    pub min_finding_severity: Severity,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            min_requests_per_step: 10.0,
            warmup_minutes: 10,
            hold_points: 5,
            max_gap_points: 2,
            merge_gap_minutes: 60,
            symptom_gap_minutes: 15,
            min_finding_severity: Severity::Warning,
        }
    }
}

/// Seasonal baseline deviation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// Request metrics scored against their baseline.
    pub latency_metrics: Vec<RequestMetric>,
    /// Days of history the baseline looks back at (at most 14 are used). With 14 or
    /// more, the baseline uses the same weekday only (weekly seasonality).
    pub history_days: usize,
    /// Minutes either side of the same minute of day that the baseline pools.
    pub smooth_minutes: usize,
    /// Robust z-score (deviation over the prediction error's scale) to flag a point.
    pub threshold: f64,
    /// Latency must also be at least this many times its baseline.
    pub latency_min_ratio: f64,
    /// …and at least this many milliseconds above it.
    pub latency_min_delta_ms: f64,
    /// The error ratio must rise at least this much (0.02 = two percentage points).
    pub error_min_delta: f64,
    /// Throughput flags only beyond this factor either way (traffic moves a lot
    /// for benign reasons: campaigns, weekends, batch jobs).
    pub throughput_min_ratio: f64,
    /// Host TCP retransmits must be at least this many times their baseline…
    pub retransmit_min_ratio: f64,
    /// …and at least this many more per step.
    pub retransmit_min_delta: f64,
    /// Without a day of history (a new estate or service), score against the
    /// median of this many minutes before the window instead of finding
    /// nothing for a day; 0 waits for a full day.
    pub cold_start_minutes: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            latency_metrics: vec![RequestMetric::LatencyP50, RequestMetric::LatencyP99],
            history_days: 7,
            smooth_minutes: 2,
            threshold: 6.0,
            latency_min_ratio: 1.5,
            latency_min_delta_ms: 2.0,
            error_min_delta: 0.02,
            throughput_min_ratio: 3.0,
            retransmit_min_ratio: 4.0,
            retransmit_min_delta: 50.0,
            cold_start_minutes: 60,
        }
    }
}

/// CPU that rises without traffic and does not come back, and saturation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuConfig {
    /// Robust z-score of the CPU left unexplained by traffic.
    pub threshold: f64,
    /// The unexplained CPU must also be at least this share of the CPU limit
    /// (or of one core without a limit).
    pub min_extra_share: f64,
    /// Minutes the shift must last without coming back to count as "never released".
    pub persist_minutes: usize,
    /// Share of the CPU limit counted as saturated.
    pub saturation_share: f64,
    /// Minutes of saturation before it is an anomaly.
    pub saturation_minutes: usize,
    /// Expected run length of the BOCPD prior (minutes) used to place the onset.
    pub changepoint_hazard: f64,
}

impl Default for CpuConfig {
    fn default() -> Self {
        Self {
            threshold: 8.0,
            min_extra_share: 0.15,
            persist_minutes: 20,
            saturation_share: 0.9,
            saturation_minutes: 15,
            changepoint_hazard: 250.0,
        }
    }
}

/// Multivariate outliers against an entity's own history, and peer outliers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Whether the multivariate (Gaussian mixture) detector runs.
    pub multivariate: bool,
    /// Minutes per feature window.
    pub window_minutes: usize,
    /// Mixture components.
    pub components: usize,
    /// Squared Mahalanobis distance to the nearest component that flags a window
    /// (χ² with 4 degrees of freedom: 40 is a tail probability near 4·10⁻⁸).
    pub threshold: f64,
    /// Windows in a row before a multivariate outlier is reported.
    pub hold_windows: usize,
    /// Peer outliers need at least this many instances of a service.
    pub min_peers: usize,
    /// An instance's CPU or memory share among its peers must move by at least
    /// this factor from its usual share.
    pub peer_min_ratio: f64,
    /// Minutes a peer deviation must hold.
    pub peer_hold_minutes: usize,
    /// Seed of the mixture's initialisation: fixed so results are reproducible.
    pub seed: u64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            multivariate: true,
            window_minutes: 5,
            components: 2,
            threshold: 40.0,
            hold_windows: 2,
            min_peers: 3,
            peer_min_ratio: 1.6,
            peer_hold_minutes: 10,
            seed: 7,
        }
    }
}

/// Slow statements and commands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatementConfig {
    /// Executions per step below which a shape's step is not scored.
    pub min_count_per_step: u64,
    /// A shape's latency must be at least this many times its baseline.
    pub min_ratio: f64,
    /// Robust z-score in log latency to flag a step.
    pub threshold: f64,
    /// A shape unseen in the history is reported when its p99 exceeds this (ms).
    pub new_shape_slow_ms: f64,
    /// The error share of a shape must rise at least this much.
    pub error_min_delta: f64,
    /// Commands never scored for latency because they block by design
    /// (upper case; `XREAD`/`XREADGROUP` only when the shape says `BLOCK`).
    pub blocking_commands: Vec<String>,
}

impl Default for StatementConfig {
    fn default() -> Self {
        Self {
            min_count_per_step: 5,
            min_ratio: 2.0,
            threshold: 6.0,
            new_shape_slow_ms: 100.0,
            error_min_delta: 0.05,
            blocking_commands: [
                "BLPOP",
                "BRPOP",
                "BRPOPLPUSH",
                "BLMOVE",
                "BLMPOP",
                "BZPOPMIN",
                "BZPOPMAX",
                "BZMPOP",
                "XREAD",
                "XREADGROUP",
                "WAIT",
                "WAITAOF",
                "SUBSCRIBE",
                "PSUBSCRIBE",
                "SSUBSCRIBE",
                "MONITOR",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// One multi-window burn-rate rule (Google SRE workbook, chapter 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRule {
    /// Long window, minutes.
    pub long_minutes: usize,
    /// Short window, minutes (stops the alert soon after the burn stops).
    pub short_minutes: usize,
    /// Burn rate both windows must reach.
    pub factor: f64,
    /// How urgent.
    pub severity: Severity,
}

/// A latency objective: `objective` of requests faster than `threshold_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyObjective {
    /// The entity; `None` applies to every service.
    #[serde(default)]
    pub entity: Option<EntityId>,
    /// Latency bound, ms.
    pub threshold_ms: f64,
    /// Share of requests that must be faster, e.g. 0.99.
    pub objective: f64,
}

/// SLO burn rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SloConfig {
    /// Share of requests that must succeed (every serving entity).
    pub availability_objective: f64,
    /// Latency objectives; none by default (a bound needs a human decision).
    pub latency_objectives: Vec<LatencyObjective>,
    /// Burn-rate rules.
    pub burn_rules: Vec<BurnRule>,
    /// Share of the long window that must hold data.
    pub min_coverage: f64,
    /// Stay silent on entities whose history already misses the availability
    /// objective: a default objective tighter than a service's normal error
    /// ratio would page on every blip. The baseline detector still watches
    /// their errors; set an objective that fits them to get burn alerts.
    pub skip_unmet_objectives: bool,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            availability_objective: 0.999,
            latency_objectives: Vec::new(),
            burn_rules: vec![
                BurnRule {
                    long_minutes: 60,
                    short_minutes: 5,
                    factor: 14.4,
                    severity: Severity::Critical,
                },
                BurnRule {
                    long_minutes: 360,
                    short_minutes: 30,
                    factor: 6.0,
                    severity: Severity::Warning,
                },
            ],
            min_coverage: 0.5,
            skip_unmet_objectives: true,
        }
    }
}

/// Memory growth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Minutes per regression window.
    pub window_minutes: usize,
    /// Growth per hour, as a share of the segment's starting level, that counts as a leak.
    pub min_growth_per_hour: f64,
    /// The regression must explain at least this share of the variance.
    pub min_r_squared: f64,
    /// A drop below this share of the previous value splits segments (a restart
    /// the events missed).
    pub drop_split_share: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            window_minutes: 30,
            min_growth_per_hour: 0.1,
            min_r_squared: 0.8,
            drop_split_share: 0.5,
        }
    }
}
