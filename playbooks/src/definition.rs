//! The playbook format: what a patrol watches, how often, with which checks and
//! thresholds, and where its findings go.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_analyzer::AnalyzerConfig;
use vigil_model::{Language, LocalizedText, Severity};

use crate::scope::Pattern;

/// One patrol definition (one YAML file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Stable id: lower-case letters, digits and `-` (used in URLs and `vigil patrol run ID`).
    pub id: String,
    /// Name in English and Chinese.
    pub name: LocalizedText,
    /// What the patrol is for.
    #[serde(default)]
    pub description: LocalizedText,
    /// Whether the scheduler runs it (manual runs work either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cron schedule, crontab (5 fields) or with seconds (6–7 fields).
    pub schedule: String,
    /// UTC offset the schedule is read in, e.g. `+08:00`.
    #[serde(default = "utc")]
    pub utc_offset: String,
    /// How far back from the run's time the patrol looks.
    #[serde(default = "one_hour", with = "humantime_serde")]
    pub window: Duration,
    /// Days of history before the window that baselines learn from.
    #[serde(default = "seven")]
    pub history_days: u32,
    /// A run taking longer is abandoned.
    #[serde(default = "five_minutes", with = "humantime_serde")]
    pub timeout: Duration,
    /// Random delay before each run, so patrols of many instances do not align.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// After downtime, run once to catch up.
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// Which entities are patrolled.
    #[serde(default)]
    pub scope: Scope,
    /// Whether findings get root-cause candidates ranked over the service graph.
    #[serde(default = "yes")]
    pub root_cause: bool,
    /// Findings below this severity are left out.
    #[serde(default = "warning")]
    pub min_severity: Severity,
    /// When set, each run writes a report.
    #[serde(default)]
    pub report: Option<ReportSpec>,
    /// Notification routes (by name, from the `notify` config) findings are sent to.
    #[serde(default)]
    pub routes: Vec<String>,
    /// The checks, in the order they claim findings.
    pub checks: Vec<Check>,
    /// Per-service threshold overrides.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// Which entities a playbook patrols.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scope {
    /// Service name patterns (`*` and `?` wildcards); empty means every service.
    pub services: Vec<Pattern>,
    /// Host name patterns; empty means every host.
    pub hosts: Vec<Pattern>,
    /// Entity name patterns never patrolled (any kind).
    pub exclude: Vec<Pattern>,
}

/// What a report run writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSpec {
    /// Languages a report is written in; the first is the primary one.
    pub languages: Vec<Language>,
    /// Slow statements and commands listed per protocol.
    pub top_statements: usize,
    /// CPU consumers listed, with their hottest stacks.
    pub top_cpu_consumers: usize,
    /// SLO rows listed (worst budget first).
    pub slo_rows: usize,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            languages: vec![Language::En, Language::Zh],
            top_statements: 10,
            top_cpu_consumers: 5,
            slo_rows: 20,
        }
    }
}

/// One check: a detector with parameters, or a query with a threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Id, unique in the playbook.
    pub id: String,
    /// Name in English and Chinese; defaults to the detector's.
    #[serde(default)]
    pub name: LocalizedText,
    /// Which detector claims findings for this check.
    pub detector: Detector,
    /// Severity given to this check's findings (default: the detector's own).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Thresholds and guards.
    #[serde(default)]
    pub params: CheckParams,
    /// What to do, in English and Chinese; defaults to the built-in runbook.
    #[serde(default)]
    pub runbook: LocalizedText,
}

/// The detectors a check can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detector {
    /// SLO availability and latency burn rates.
    SloBurn,
    /// Latency anomalies of services, endpoints and call edges.
    Latency,
    /// Error-ratio anomalies of services, endpoints and call edges.
    Errors,
    /// MySQL: slow statement shapes, latency, errors, connection failures.
    Mysql,
    /// Redis: slow commands, latency, errors (blocking commands aware).
    Redis,
    /// CPU never released after a rise, and CPU saturation against the limit.
    Cpu,
    /// Memory growth (leaks), split at restarts.
    Memory,
    /// Restarts and OOM kills.
    Restarts,
    /// TCP retransmits and resets on hosts.
    Tcp,
    /// Services running a single instance (one failure from an outage).
    SingleInstance,
    /// Services or hosts that went silent: is the patrol itself blind?
    Coverage,
    /// A ClickHouse query returning one number, compared with a threshold.
    Query,
}

impl Detector {
    /// Every detector.
    pub const ALL: [Self; 12] = [
        Self::SloBurn,
        Self::Latency,
        Self::Errors,
        Self::Mysql,
        Self::Redis,
        Self::Cpu,
        Self::Memory,
        Self::Restarts,
        Self::Tcp,
        Self::SingleInstance,
        Self::Coverage,
        Self::Query,
    ];

    /// The name used in YAML.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SloBurn => "slo-burn",
            Self::Latency => "latency",
            Self::Errors => "errors",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Restarts => "restarts",
            Self::Tcp => "tcp",
            Self::SingleInstance => "single-instance",
            Self::Coverage => "coverage",
            Self::Query => "query",
        }
    }

    /// The parameters this detector reads (others are refused at load).
    pub const fn params(self) -> &'static [&'static str] {
        match self {
            Self::SloBurn => &["objective", "min_requests_per_minute"],
            Self::Latency => &[
                "threshold",
                "min_ratio",
                "min_delta_ms",
                "min_requests_per_minute",
                "hold_minutes",
            ],
            Self::Errors => &[
                "threshold",
                "error_min_delta",
                "min_requests_per_minute",
                "hold_minutes",
            ],
            Self::Mysql | Self::Redis => &[
                "threshold",
                "min_ratio",
                "slow_ms",
                "error_min_delta",
                "min_count_per_minute",
            ],
            Self::Cpu => &["threshold", "persist_minutes", "saturation_share"],
            Self::Memory => &["window_minutes"],
            Self::Restarts => &["min_restarts"],
            Self::Tcp => &["min_ratio", "min_delta"],
            Self::SingleInstance => &[],
            Self::Coverage => &["silent_minutes"],
            Self::Query => &["query", "above", "below", "entity"],
        }
    }

    /// Built-in name.
    pub fn default_name(self) -> LocalizedText {
        let (en, zh) = match self {
            Self::SloBurn => ("SLO burn rate", "SLO 错误预算消耗"),
            Self::Latency => ("Latency anomalies", "延迟异常"),
            Self::Errors => ("Error anomalies", "错误率异常"),
            Self::Mysql => ("MySQL health", "MySQL 健康"),
            Self::Redis => ("Redis health", "Redis 健康"),
            Self::Cpu => ("CPU not released / saturated", "CPU 不释放 / 饱和"),
            Self::Memory => ("Memory growth", "内存增长"),
            Self::Restarts => ("Restarts and OOM kills", "重启与 OOM"),
            Self::Tcp => ("TCP retransmits and resets", "TCP 重传与重置"),
            Self::SingleInstance => ("Single-instance risk", "单实例风险"),
            Self::Coverage => ("Telemetry coverage", "遥测覆盖"),
            Self::Query => ("Query threshold", "查询阈值"),
        };
        LocalizedText {
            en: en.to_owned(),
            zh: zh.to_owned(),
        }
    }

    /// Built-in runbook.
    pub fn default_runbook(self) -> LocalizedText {
        let (en, zh) = match self {
            Self::SloBurn => (
                "The error budget burns faster than the objective allows. Look at the root-cause candidates first; if a recent deploy is among them, roll it back. Otherwise shed or rate-limit the failing path.",
                "错误预算消耗速度超出目标。先看根因候选；若近期发布在其中，先回滚；否则对故障路径限流或降级。",
            ),
            Self::Latency => (
                "Latency rose against its baseline. Follow the propagation path to the deepest anomalous dependency; check its slow statements or CPU. If only this service is slow, check its CPU limit, GC and thread pools.",
                "延迟高于基线。沿传播路径找到最深的异常依赖，查看其慢语句或 CPU。若只有本服务变慢，检查 CPU 限额、GC 与线程池。",
            ),
            Self::Errors => (
                "The error ratio rose. Check the failing calls' status codes and the dependency on the propagation path; recent deploys and config changes are the usual suspects.",
                "错误率上升。查看失败调用的状态码及传播路径上的依赖；近期发布与配置变更最常见。",
            ),
            Self::Mysql => (
                "MySQL is slow or failing. Check the slow statement shapes below: missing indexes (EXPLAIN), lock waits (SHOW ENGINE INNODB STATUS, information_schema.innodb_trx), long transactions, and connection limits.",
                "MySQL 变慢或报错。查看下方慢 SQL：缺失索引（EXPLAIN）、锁等待（SHOW ENGINE INNODB STATUS、information_schema.innodb_trx）、长事务与连接数上限。",
            ),
            Self::Redis => (
                "Redis is slow or failing. Check the slow commands below and SLOWLOG GET; look for big keys (redis-cli --bigkeys), O(N) commands (KEYS, SMEMBERS, HGETALL on large keys), and CPU saturation of the single Redis thread.",
                "Redis 变慢或报错。查看下方慢命令与 SLOWLOG GET；排查大 key（redis-cli --bigkeys）、O(N) 命令（KEYS、大 key 上的 SMEMBERS/HGETALL）以及单线程 CPU 饱和。",
            ),
            Self::Cpu => (
                "CPU rose without more traffic and does not come back, or the container runs at its limit. Look at the flame graph: a hot loop, a stuck thread or a runaway retry. Restarting releases it for now; fix the hot path.",
                "CPU 在流量未增加时上升且不回落，或容器持续打满限额。查看火焰图：热循环、卡死线程或失控重试。重启可暂时释放，需修复热点路径。",
            ),
            Self::Memory => (
                "Memory grows steadily between restarts: a leak. Take a heap profile, compare two dumps an hour apart, and check caches without bounds.",
                "内存在重启之间持续增长，疑似泄漏。采集堆快照，对比间隔一小时的两次转储，检查无上限的缓存。",
            ),
            Self::Restarts => (
                "The container restarted or was OOM-killed. Read its last logs and exit code (docker inspect); raise the memory limit only after ruling out a leak.",
                "容器重启或被 OOM 杀死。查看最后日志与退出码（docker inspect）；排除内存泄漏后再提高内存限额。",
            ),
            Self::Tcp => (
                "TCP retransmits or resets rose on the host: packet loss, a saturated link, or a peer refusing connections. Check the NIC (ethtool -S), tc qdisc and the peers named in the evidence.",
                "主机 TCP 重传或重置上升：丢包、链路饱和或对端拒绝连接。检查网卡（ethtool -S）、tc qdisc 以及证据中的对端。",
            ),
            Self::SingleInstance => (
                "The service runs one instance: one crash is an outage. Run at least two, on different hosts.",
                "服务只有一个实例：一次崩溃即中断。至少运行两个实例，并分布在不同主机。",
            ),
            Self::Coverage => (
                "Telemetry stopped arriving from these services or hosts, so the patrol is blind to them. Check the agent on the host (vigil-agent / deepflow-agent), the otel-collector, and the service itself.",
                "这些服务或主机的遥测数据中断，巡检对其不可见。检查主机上的采集器（vigil-agent / deepflow-agent）、otel-collector 以及服务本身。",
            ),
            Self::Query => (
                "A custom query crossed its threshold; see the playbook for what it measures.",
                "自定义查询超过阈值；含义见巡检剧本。",
            ),
        };
        LocalizedText {
            en: en.to_owned(),
            zh: zh.to_owned(),
        }
    }
}

/// Thresholds and guards of one check; which apply depends on the detector
/// ([`Detector::params`]), and the loader refuses the others by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckParams {
    /// Robust z-score that flags a point.
    pub threshold: Option<f64>,
    /// The value must also be at least this many times its baseline.
    pub min_ratio: Option<f64>,
    /// Latency must also rise at least this many milliseconds.
    pub min_delta_ms: Option<f64>,
    /// Minimum absolute rise (retransmits per minute).
    pub min_delta: Option<f64>,
    /// The error ratio must rise at least this much (0.02 = two points).
    pub error_min_delta: Option<f64>,
    /// Minutes with fewer requests are not scored.
    pub min_requests_per_minute: Option<f64>,
    /// Executions per minute below which a statement is not scored.
    pub min_count_per_minute: Option<u64>,
    /// Minutes a deviation must hold.
    pub hold_minutes: Option<usize>,
    /// Availability objective, e.g. 0.999.
    pub objective: Option<f64>,
    /// A statement shape unseen before is slow above this p99, ms.
    pub slow_ms: Option<f64>,
    /// Minutes a CPU rise must persist to count as never released.
    pub persist_minutes: Option<usize>,
    /// Share of the CPU limit counted as saturated.
    pub saturation_share: Option<f64>,
    /// Minutes per memory-growth fit.
    pub window_minutes: Option<usize>,
    /// Restarts in the window that make a finding.
    pub min_restarts: Option<u32>,
    /// Minutes without data after which a service counts as silent.
    pub silent_minutes: Option<u32>,
    /// The query (read-only, one number).
    pub query: Option<String>,
    /// Raise when the number is above this.
    pub above: Option<f64>,
    /// Raise when the number is below this.
    pub below: Option<f64>,
    /// The entity the query's finding is about (`service:checkout`).
    pub entity: Option<String>,
}

impl CheckParams {
    /// Names of the parameters that are set.
    pub fn set_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let mut note = |set: bool, name: &'static str| {
            if set {
                names.push(name);
            }
        };
        note(self.threshold.is_some(), "threshold");
        note(self.min_ratio.is_some(), "min_ratio");
        note(self.min_delta_ms.is_some(), "min_delta_ms");
        note(self.min_delta.is_some(), "min_delta");
        note(self.error_min_delta.is_some(), "error_min_delta");
        note(
            self.min_requests_per_minute.is_some(),
            "min_requests_per_minute",
        );
        note(self.min_count_per_minute.is_some(), "min_count_per_minute");
        note(self.hold_minutes.is_some(), "hold_minutes");
        note(self.objective.is_some(), "objective");
        note(self.slow_ms.is_some(), "slow_ms");
        note(self.persist_minutes.is_some(), "persist_minutes");
        note(self.saturation_share.is_some(), "saturation_share");
        note(self.window_minutes.is_some(), "window_minutes");
        note(self.min_restarts.is_some(), "min_restarts");
        note(self.silent_minutes.is_some(), "silent_minutes");
        note(self.query.is_some(), "query");
        note(self.above.is_some(), "above");
        note(self.below.is_some(), "below");
        note(self.entity.is_some(), "entity");
        names
    }

    /// Applies the detector parameters that are set onto an analyzer config.
    pub fn apply(&self, detector: Detector, config: &mut AnalyzerConfig) {
        match detector {
            Detector::SloBurn => {
                if let Some(v) = self.objective {
                    config.slo.availability_objective = v;
                }
            }
            Detector::Latency => {
                if let Some(v) = self.threshold {
                    config.baseline.threshold = v;
                }
                if let Some(v) = self.min_ratio {
                    config.baseline.latency_min_ratio = v;
                }
                if let Some(v) = self.min_delta_ms {
                    config.baseline.latency_min_delta_ms = v;
                }
            }
            Detector::Errors => {
                if let Some(v) = self.threshold {
                    config.baseline.threshold = v;
                }
                if let Some(v) = self.error_min_delta {
                    config.baseline.error_min_delta = v;
                }
            }
            Detector::Mysql | Detector::Redis => {
                if let Some(v) = self.threshold {
                    config.statements.threshold = v;
                }
                if let Some(v) = self.min_ratio {
                    config.statements.min_ratio = v;
                }
                if let Some(v) = self.slow_ms {
                    config.statements.new_shape_slow_ms = v;
                }
                if let Some(v) = self.error_min_delta {
                    config.statements.error_min_delta = v;
                }
                if let Some(v) = self.min_count_per_minute {
                    config.statements.min_count_per_step = v;
                }
            }
            Detector::Cpu => {
                if let Some(v) = self.threshold {
                    config.cpu.threshold = v;
                }
                if let Some(v) = self.persist_minutes {
                    config.cpu.persist_minutes = v;
                }
                if let Some(v) = self.saturation_share {
                    config.cpu.saturation_share = v;
                }
            }
            Detector::Memory => {
                if let Some(v) = self.window_minutes {
                    config.memory.window_minutes = v;
                }
            }
            Detector::Tcp => {
                if let Some(v) = self.min_ratio {
                    config.baseline.retransmit_min_ratio = v;
                }
                if let Some(v) = self.min_delta {
                    config.baseline.retransmit_min_delta = v;
                }
            }
            Detector::Restarts
            | Detector::SingleInstance
            | Detector::Coverage
            | Detector::Query => {}
        }
        if let Some(v) = self.min_requests_per_minute {
            config.guards.min_requests_per_step = v;
        }
        if let Some(v) = self.hold_minutes {
            config.guards.hold_points = v;
        }
    }
}

/// Thresholds for some services that differ from the playbook's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Service name patterns the override applies to.
    pub services: Vec<Pattern>,
    /// Check id → parameters replacing that check's (only those set).
    pub checks: std::collections::BTreeMap<String, CheckParams>,
}

fn yes() -> bool {
    true
}
fn utc() -> String {
    "+00:00".to_owned()
}
fn one_hour() -> Duration {
    Duration::from_secs(3600)
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn seven() -> u32 {
    7
}
fn warning() -> Severity {
    Severity::Warning
}
