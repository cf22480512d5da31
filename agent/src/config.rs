//! The agent's YAML configuration, close in spirit to DeepFlow's agent-group
//! config: a process matcher, enabled protocols and obfuscation, limits, the
//! circuit breaker, and where to export (ClickHouse, or `vigil serve`'s ingest
//! endpoint with `export.vigil`). Every key has a default; unknown keys
//! are errors naming the key; `VIGIL_AGENT_*` environment variables override.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_store::clickhouse::ClickHouseConfig;

use crate::error::AgentError;
use crate::l7::ParseOptions;

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// L7 request capture.
    pub capture: CaptureConfig,
    /// On-CPU profiling.
    pub profile: ProfileConfig,
    /// Per-process CPU/memory and TCP health.
    pub resources: ResourcesConfig,
    /// Resource limits of the agent itself.
    pub limits: LimitsConfig,
    /// Pausing collection while the host is overloaded.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Where rows go.
    pub export: ExportConfig,
    /// Docker container identity.
    pub docker: DockerConfig,
}

/// Which requests to capture and how to parse them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Capture at all.
    pub enabled: bool,
    /// Server ports whose requests are captured (server side: the local port).
    pub server_ports: Vec<u16>,
    /// When non-empty, only these pids are captured (if they serve a capture
    /// port). Empty: every process serving a capture port (on kernels before
    /// 6.5, found by a scan of listening sockets and followed as it forks).
    pub pids: Vec<u32>,
    /// Seconds between scans for processes listening on the capture ports
    /// (listen() and fork() are followed in the kernel between scans). Only
    /// where the kernel captures listed processes: with `pids`, or on kernels
    /// older than 6.5 (the syscall-exit trigger).
    pub server_scan_secs: u64,
    /// Enabled L7 protocols: `http`, `mysql`, `redis`.
    pub protocols: Vec<String>,
    /// Protocols whose payloads are obfuscated (SQL literals → `?`, Redis values dropped).
    pub obfuscate_protocols: Vec<String>,
    /// HTTP paths are grouped by this many leading segments.
    pub http_path_segments: usize,
    /// Size of the kernel's L7 ring buffer, MiB (a power of two). The agent
    /// is woken every `wakeup_bytes`, so the rest is slack for its stalls;
    /// it is mapped into the agent, so it counts in its resident memory.
    pub ring_buffer_mib: u32,
    /// The kernel wakes the agent each time the ring buffer's fill crosses a
    /// multiple of this many bytes (besides the timed drains).
    pub wakeup_bytes: u64,
    /// How often the agent drains the ring buffer, milliseconds.
    pub drain_interval_ms: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            server_ports: vec![80, 3306, 6379, 8080],
            pids: Vec::new(),
            server_scan_secs: 10,
            protocols: vec!["http".into(), "mysql".into(), "redis".into()],
            obfuscate_protocols: vec!["mysql".into(), "redis".into()],
            http_path_segments: 2,
            ring_buffer_mib: 4,
            wakeup_bytes: 256 * 1024,
            drain_interval_ms: 100,
        }
    }
}

impl CaptureConfig {
    /// The parser options this section asks for.
    pub fn parse_options(&self) -> ParseOptions {
        let on = |name: &str| self.protocols.iter().any(|p| p.eq_ignore_ascii_case(name));
        let obfuscated = |name: &str| {
            self.obfuscate_protocols
                .iter()
                .any(|p| p.eq_ignore_ascii_case(name))
        };
        ParseOptions {
            http: on("http"),
            mysql: on("mysql"),
            redis: on("redis"),
            obfuscate: obfuscated("mysql") || obfuscated("redis"),
            http_path_segments: self.http_path_segments,
        }
    }
}

/// On-CPU profiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Profile at all.
    pub enabled: bool,
    /// Processes (by `comm`) to profile.
    pub process_matcher: String,
    /// Samples per second per CPU. Profiles are stored per minute.
    pub frequency_hz: u64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            process_matcher: "^(mysqld|mariadbd|redis-server|nginx|node|java|python3?)$".into(),
            frequency_hz: 99,
        }
    }
}

/// Per-process CPU and memory, TCP health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Collect at all.
    pub enabled: bool,
    /// Processes (by `comm`) whose CPU and memory are recorded.
    pub process_matcher: String,
    /// Seconds between samples (the stored step is one minute).
    pub interval_secs: u64,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            process_matcher: "^(mysqld|mariadbd|redis-server|nginx|node|java|python3?)$".into(),
            interval_secs: 10,
        }
    }
}

/// The agent's own limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Resident memory above which collection pauses, MiB.
    pub max_memory: u64,
    /// CPU above which collection pauses, thousandths of a core.
    pub max_millicpus: u64,
    /// Requests queued for export before new ones are dropped (and counted).
    pub queue_size: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_memory: 256,
            max_millicpus: 1000,
            queue_size: 65_536,
        }
    }
}

/// Pause collection while load15 / cores is high.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Use the breaker.
    pub enabled: bool,
    /// Relative load (load15 / cores) at which collection pauses.
    pub relative_load_trigger: f64,
    /// Relative load below which it resumes.
    pub relative_load_recover: f64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            relative_load_trigger: 2.0,
            relative_load_recover: 1.5,
        }
    }
}

/// A running `vigil serve` to send batches to (its `POST /api/v1/ingest`),
/// for estates without ClickHouse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VigilExportConfig {
    /// Base URL of `vigil serve`, e.g. `http://10.0.0.2:8080`.
    pub url: String,
    /// A bearer token with the write scope (`api.auth.tokens`); empty when the server has no auth.
    pub token: String,
    /// Seconds a request may take before the batch is spooled.
    pub timeout_secs: u64,
    /// Requests per HTTP request at most (keep the body under the server's `api.ingest_max_body_bytes`).
    pub max_records_per_request: usize,
}

impl Default for VigilExportConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: String::new(),
            timeout_secs: 10,
            max_records_per_request: 5_000,
        }
    }
}

/// Where rows go and how they are buffered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// ClickHouse (the store's own config block).
    pub clickhouse: ClickHouseConfig,
    /// Instead of ClickHouse: a running `vigil serve` (embedded store).
    /// Mutually exclusive with `clickhouse` and `migrate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigil: Option<VigilExportConfig>,
    /// Create or upgrade Vigil's tables at start (`vigil db migrate` does the same).
    pub migrate: bool,
    /// Rows per insert at most.
    pub batch_size: usize,
    /// Milliseconds between inserts.
    pub flush_interval_ms: u64,
    /// Directory of the on-disk buffer used while ClickHouse is down.
    pub spool_dir: PathBuf,
    /// Bytes the buffer may hold; batches beyond are dropped and counted.
    pub spool_max_bytes: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            clickhouse: ClickHouseConfig::default(),
            vigil: None,
            migrate: false,
            batch_size: 10_000,
            flush_interval_ms: 1_000,
            spool_dir: PathBuf::from("/var/lib/vigil-agent/spool"),
            spool_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Docker container identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Ask the Docker Engine API for names, images and labels.
    pub enabled: bool,
    /// The Engine API's unix socket.
    pub socket: PathBuf,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: PathBuf::from("/var/run/docker.sock"),
        }
    }
}

impl AgentConfig {
    /// Parses YAML; errors name the offending key.
    pub fn from_yaml(text: &str) -> Result<Self, AgentError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let de = serde_norway::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            AgentError::Config(format!("{path}: {}", e.into_inner()))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a file (see [`AgentConfig::from_yaml`]).
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
        Self::from_yaml(&text)
    }

    /// Applies `VIGIL_AGENT_*` overrides from `vars` (usually `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), AgentError> {
        for (name, value) in vars {
            let bad =
                |key: &str| AgentError::Config(format!("{name} ({key}): cannot parse {value:?}"));
            match name.as_str() {
                "VIGIL_AGENT_CLICKHOUSE_URL" => self.export.clickhouse.url = value.clone(),
                "VIGIL_AGENT_CLICKHOUSE_DATABASE" => {
                    self.export.clickhouse.database = value.clone()
                }
                "VIGIL_AGENT_VIGIL_URL" => {
                    self.export.vigil.get_or_insert_with(Default::default).url = value.clone();
                }
                "VIGIL_AGENT_VIGIL_TOKEN" => {
                    self.export.vigil.get_or_insert_with(Default::default).token = value.clone();
                }
                "VIGIL_AGENT_SPOOL_DIR" => self.export.spool_dir = PathBuf::from(&value),
                "VIGIL_AGENT_SERVER_PORTS" => {
                    self.capture.server_ports = value
                        .split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| s.trim().parse().map_err(|_| bad("capture.server_ports")))
                        .collect::<Result<_, _>>()?;
                }
                "VIGIL_AGENT_PROFILE_MATCHER" => self.profile.process_matcher = value.clone(),
                "VIGIL_AGENT_MAX_MEMORY" => {
                    self.limits.max_memory = value.parse().map_err(|_| bad("limits.max_memory"))?;
                }
                "VIGIL_AGENT_MAX_MILLICPUS" => {
                    self.limits.max_millicpus =
                        value.parse().map_err(|_| bad("limits.max_millicpus"))?;
                }
                _ => {}
            }
        }
        self.validate()
    }

    /// The config with its secrets (ClickHouse password, `vigil serve` token)
    /// masked, for printing.
    pub fn redacted(&self) -> Self {
        let mask = |secret: &mut String| {
            if !secret.is_empty() {
                *secret = "********".to_owned();
            }
        };
        let mut config = self.clone();
        mask(&mut config.export.clickhouse.password);
        if let Some(vigil) = &mut config.export.vigil {
            mask(&mut vigil.token);
        }
        config
    }

    /// Checks values serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), AgentError> {
        let problem =
            |key: &str, message: &str| Err(AgentError::Config(format!("{key}: {message}")));
        for protocol in self
            .capture
            .protocols
            .iter()
            .chain(&self.capture.obfuscate_protocols)
        {
            if !["http", "mysql", "redis"].contains(&protocol.to_ascii_lowercase().as_str()) {
                return problem(
                    "capture.protocols",
                    &format!("unknown protocol {protocol:?} (http, mysql, redis)"),
                );
            }
        }
        if regex::Regex::new(&self.profile.process_matcher).is_err() {
            return problem("profile.process_matcher", "not a valid regular expression");
        }
        if regex::Regex::new(&self.resources.process_matcher).is_err() {
            return problem(
                "resources.process_matcher",
                "not a valid regular expression",
            );
        }
        if !(1..=1000).contains(&self.profile.frequency_hz) {
            return problem("profile.frequency_hz", "must be 1..=1000");
        }
        if self.circuit_breaker.relative_load_recover > self.circuit_breaker.relative_load_trigger {
            return problem(
                "circuit_breaker.relative_load_recover",
                "must not exceed relative_load_trigger",
            );
        }
        if let Some(vigil) = &self.export.vigil {
            if self.export.clickhouse != ClickHouseConfig::default() {
                return problem(
                    "export.vigil",
                    "export.vigil and export.clickhouse are mutually exclusive: remove one",
                );
            }
            if self.export.migrate {
                return problem(
                    "export.migrate",
                    "migrates ClickHouse tables; not with export.vigil (vigil serve owns its store)",
                );
            }
            if !(vigil.url.starts_with("http://") || vigil.url.starts_with("https://")) {
                return problem(
                    "export.vigil.url",
                    &format!(
                        "{:?} is not an http:// or https:// URL of vigil serve",
                        vigil.url
                    ),
                );
            }
            if vigil.timeout_secs == 0 {
                return problem("export.vigil.timeout_secs", "must be at least 1");
            }
            if vigil.max_records_per_request == 0 {
                return problem("export.vigil.max_records_per_request", "must be at least 1");
            }
        }
        if self.capture.server_scan_secs == 0 {
            return problem("capture.server_scan_secs", "must be at least 1");
        }
        let ring = self.capture.ring_buffer_mib;
        if !ring.is_power_of_two() || ring > 1024 {
            return problem(
                "capture.ring_buffer_mib",
                &format!("{ring} is not a power of two from 1 to 1024"),
            );
        }
        if self.capture.wakeup_bytes == 0 || self.capture.wakeup_bytes >= u64::from(ring) << 20 {
            return problem(
                "capture.wakeup_bytes",
                &format!(
                    "must be above 0 and below the ring buffer's {ring} MiB (capture.ring_buffer_mib)"
                ),
            );
        }
        if self.export.batch_size == 0 {
            return problem("export.batch_size", "must be at least 1");
        }
        if self.limits.queue_size == 0 {
            return problem("limits.queue_size", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_masks_the_secrets() {
        let mut config = AgentConfig::default();
        config.export.clickhouse.password = "hunter2".into();
        config.export.vigil = Some(VigilExportConfig {
            token: "write-token".into(),
            ..VigilExportConfig::default()
        });
        let printed = serde_norway::to_string(&config.redacted()).expect("yaml");
        assert!(
            !printed.contains("hunter2") && !printed.contains("write-token"),
            "{printed}"
        );
        assert_eq!(printed.matches("********").count(), 2, "{printed}");
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let example = include_str!("../vigil-agent.example.yaml");
        assert_eq!(
            AgentConfig::from_yaml(example).expect("example"),
            AgentConfig::default()
        );
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(
            AgentConfig::from_yaml("").expect("empty"),
            AgentConfig::default()
        );
    }

    #[test]
    fn partial_yaml_keeps_defaults() {
        let config = AgentConfig::from_yaml(
            "capture:\n  server_ports: [16379]\nlimits:\n  max_millicpus: 500\nexport:\n  clickhouse:\n    url: http://127.0.0.1:18123\n",
        )
        .expect("config");
        assert_eq!(config.capture.server_ports, [16379]);
        assert_eq!(config.limits.max_millicpus, 500);
        assert_eq!(config.limits.max_memory, 256);
        assert_eq!(config.export.clickhouse.url, "http://127.0.0.1:18123");
        assert_eq!(config.circuit_breaker.relative_load_trigger, 2.0);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = AgentConfig::from_yaml("capture:\n  server_portz: [1]\n").expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("capture") && text.contains("server_portz"),
            "{text}"
        );
        let err = AgentConfig::from_yaml("profile:\n  process_matcher: '('\n").expect_err("regex");
        assert!(err.to_string().contains("profile.process_matcher"), "{err}");
    }

    #[test]
    fn ring_buffer_sizes_are_checked() {
        let err = AgentConfig::from_yaml("capture:\n  ring_buffer_mib: 3\n").expect_err("not 2^n");
        assert!(err.to_string().contains("capture.ring_buffer_mib"), "{err}");
        let err =
            AgentConfig::from_yaml("capture:\n  ring_buffer_mib: 1\n  wakeup_bytes: 1048576\n")
                .expect_err("wake-up past the ring");
        assert!(err.to_string().contains("capture.wakeup_bytes"), "{err}");
        let config = AgentConfig::from_yaml("capture:\n  ring_buffer_mib: 16\n").expect("valid");
        assert_eq!(config.capture.ring_buffer_mib, 16);
    }

    #[test]
    fn env_overrides() {
        let mut config = AgentConfig::default();
        config
            .apply_env([
                ("VIGIL_AGENT_SERVER_PORTS".to_owned(), "1,2".to_owned()),
                ("VIGIL_AGENT_MAX_MEMORY".to_owned(), "64".to_owned()),
            ])
            .expect("env");
        assert_eq!(config.capture.server_ports, [1, 2]);
        assert_eq!(config.limits.max_memory, 64);
        let err = config
            .apply_env([("VIGIL_AGENT_MAX_MEMORY".to_owned(), "lots".to_owned())])
            .expect_err("bad");
        assert!(err.to_string().contains("limits.max_memory"));
    }

    #[test]
    fn vigil_export_is_validated_and_exclusive_with_clickhouse() {
        let config = AgentConfig::from_yaml(
            "export:\n  vigil:\n    url: http://127.0.0.1:8080\n    token: t\n",
        )
        .expect("vigil export");
        let vigil = config.export.vigil.expect("vigil");
        assert_eq!(
            (vigil.url.as_str(), vigil.token.as_str()),
            ("http://127.0.0.1:8080", "t")
        );
        let both = AgentConfig::from_yaml(
            "export:\n  vigil:\n    url: http://127.0.0.1:8080\n  clickhouse:\n    url: http://127.0.0.1:18123\n",
        )
        .expect_err("exclusive")
        .to_string();
        assert!(
            both.contains("export.vigil") && both.contains("export.clickhouse"),
            "{both}"
        );
        let bad = AgentConfig::from_yaml("export:\n  vigil:\n    url: 127.0.0.1:8080\n")
            .expect_err("url")
            .to_string();
        assert!(bad.contains("export.vigil.url"), "{bad}");
        let migrate =
            AgentConfig::from_yaml("export:\n  migrate: true\n  vigil:\n    url: http://h:1\n")
                .expect_err("migrate")
                .to_string();
        assert!(migrate.contains("export.migrate"), "{migrate}");
        let mut env = AgentConfig::default();
        env.apply_env([
            (
                "VIGIL_AGENT_VIGIL_URL".to_owned(),
                "http://10.0.0.2:8080".to_owned(),
            ),
            ("VIGIL_AGENT_VIGIL_TOKEN".to_owned(), "secret".to_owned()),
        ])
        .expect("env");
        let vigil = env.export.vigil.expect("vigil from env");
        assert_eq!(vigil.url, "http://10.0.0.2:8080");
        assert_eq!(vigil.token, "secret");
        let err = AgentConfig::default()
            .apply_env([("VIGIL_AGENT_VIGIL_URL".to_owned(), "nope".to_owned())])
            .expect_err("bad env url")
            .to_string();
        assert!(err.contains("export.vigil.url"), "{err}");
    }
}
