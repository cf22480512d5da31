//! Vigil's configuration file: YAML with defaults for every key, `VIGIL_*`
//! environment overrides, and validation at start that names the offending key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_store::clickhouse::ClickHouseConfig;

/// Prefix of environment variables that override config keys.
/// `VIGIL_STORE__EMBEDDED__PATH=/data/vigil.db` sets `store.embedded.path`.
pub const ENV_PREFIX: &str = "VIGIL_";

/// The whole configuration. Every key has a default, so an empty file is valid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where telemetry is read from and Vigil's state is kept.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// Patrols: where user playbooks and reports live.
    pub patrol: PatrolConfig,
    /// Notification channels and routes.
    pub notify: vigil_notify::NotifyConfig,
    /// The HTTP API of `vigil serve`: webhooks, chat, pages, MCP.
    pub api: vigil_api::ApiConfig,
    /// Detector defaults for every patrol (a playbook check's `params` still
    /// win): noise guards, baselines, CPU, statements. Name only what changes.
    pub analyzer: vigil_analyzer::AnalyzerConfig,
}

/// Patrol settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatrolConfig {
    /// Directory of user playbooks (`*.yaml`); a user playbook replaces the
    /// built-in with the same id.
    pub playbooks_dir: Option<PathBuf>,
    /// Directory HTML reports are written to (besides the state store).
    pub report_dir: PathBuf,
    /// Base URL of `vigil serve` as readers reach it, for links in notifications.
    pub base_url: Option<String>,
    /// UTC offset times in reports are shown in, e.g. `+08:00`.
    pub utc_offset: String,
    /// Playbook ids the scheduler leaves alone (manual runs still work).
    pub disabled: Vec<String>,
}

impl Default for PatrolConfig {
    fn default() -> Self {
        Self {
            playbooks_dir: None,
            report_dir: PathBuf::from("vigil-data/reports"),
            base_url: None,
            utc_offset: "+08:00".to_owned(),
            disabled: Vec::new(),
        }
    }
}

/// Telemetry and state storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The embedded store: telemetry when no ClickHouse is configured, and Vigil's state always.
    pub embedded: EmbeddedConfig,
    /// ClickHouse holding DeepFlow's tables and the agent's; when set, telemetry is read there.
    pub clickhouse: Option<ClickHouseConfig>,
}

/// The embedded single-file store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Database file; created with its directory when missing.
    pub path: PathBuf,
    /// Days of telemetry kept.
    pub retention_days: u32,
    /// Days of reports, patrol runs and deliveries kept (incidents are kept:
    /// similar past incidents are matched against them).
    pub report_retention_days: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("vigil-data/vigil.db"),
            retention_days: 14,
            report_retention_days: 90,
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `vigil=debug,info`.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a configuration was refused. Each names the file, the key, or the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not fit the schema (unknown key, wrong type, bad syntax).
    #[error("{origin}: {message}")]
    Parse {
        /// The file, plus the environment when overrides were applied.
        origin: String,
        /// The parser's message, which names the key path and line.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable.
        variable: String,
        /// What is wrong with it.
        message: String,
    },
    /// Values parse but make no sense together.
    #[error("{origin}: invalid configuration:\n{}", issues.iter().map(|(key, message)| format!("  {key}: {message}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        origin: String,
        /// `(key, problem)` pairs.
        issues: Vec<(String, String)>,
    },
}

impl Config {
    /// Reads, overrides from the environment, and validates a config file.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string(), env)
    }

    /// Defaults, overridden from the environment, validated: for runs without a file.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_yaml("{}", "defaults", env)
    }

    /// Parses YAML `text` (`origin` names it in errors), applies `VIGIL_*` overrides
    /// from `env`, and validates. The environment is passed in so tests never touch
    /// the process environment.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let overrides: Vec<(&String, &String)> = env
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
            .collect();
        let config = if overrides.is_empty() {
            // Straight from the text, so errors carry line and column.
            let deserializer = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(deserializer)
                .map_err(|err| parse_error(origin, &err))?
        } else {
            let mut tree: serde_norway::Value =
                serde_norway::from_str(text).map_err(|err| ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: err.to_string(),
                })?;
            if tree.is_null() {
                tree = serde_norway::Value::Mapping(serde_norway::Mapping::new());
            }
            for (variable, value) in &overrides {
                apply_override(&mut tree, variable, value)?;
            }
            let names: Vec<&str> = overrides.iter().map(|(name, _)| name.as_str()).collect();
            let origin = format!("{origin} with {}", names.join(", "));
            serde_path_to_error::deserialize(tree).map_err(|err| parse_error(&origin, &err))?
        };
        let config: Config = config;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks values that parse but cannot work, naming each key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        if self.store.embedded.path.as_os_str().is_empty() {
            issues.push((
                "store.embedded.path".to_owned(),
                "must not be empty".to_owned(),
            ));
        }
        if self.store.embedded.retention_days == 0 {
            issues.push((
                "store.embedded.retention_days".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if let Err(vigil_analyzer::AnalyzerError::InvalidConfig { field, reason }) =
            self.analyzer.validate()
        {
            issues.push((format!("analyzer.{field}"), reason));
        }
        if let Some(clickhouse) = &self.store.clickhouse {
            if let Err(problems) = clickhouse.validate() {
                for problem in problems {
                    issues.push((format!("store.clickhouse.{}", problem.key), problem.message));
                }
            }
        }
        if vigil_playbooks::parse_utc_offset(&self.patrol.utc_offset).is_none() {
            issues.push((
                "patrol.utc_offset".to_owned(),
                format!("{:?} is not an offset like +08:00", self.patrol.utc_offset),
            ));
        }
        if let Some(dir) = &self.patrol.playbooks_dir {
            if !dir.is_dir() {
                issues.push((
                    "patrol.playbooks_dir".to_owned(),
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        if let Err(problems) = self.notify.validate() {
            for problem in problems {
                let key = if problem.key.starts_with("notify") {
                    problem.key
                } else {
                    format!("notify.{}", problem.key)
                };
                issues.push((key, problem.message));
            }
        }
        if let Err(problems) = self.api.validate() {
            for (key, message) in problems {
                issues.push((format!("api.{key}"), message));
            }
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            issues.push(("log.level".to_owned(), format!("not a valid filter: {err}")));
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                issues,
            })
        }
    }
}

fn parse_error(origin: &str, err: &serde_path_to_error::Error<serde_norway::Error>) -> ConfigError {
    let path = err.path().to_string();
    let message = if path == "." || path.is_empty() {
        err.inner().to_string()
    } else {
        format!("key {path}: {}", err.inner())
    };
    ConfigError::Parse {
        origin: origin.to_owned(),
        message,
    }
}

/// Sets the key named by `VIGIL_A__B__C` (case-insensitive, `__` between levels)
/// to `value` read as a YAML scalar, so numbers and booleans keep their types.
fn apply_override(
    tree: &mut serde_norway::Value,
    variable: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = variable[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Environment {
            variable: variable.to_owned(),
            message: "empty key segment (use __ between keys, e.g. VIGIL_STORE__EMBEDDED__PATH)"
                .to_owned(),
        });
    }
    let parsed: serde_norway::Value = serde_norway::from_str(value)
        .unwrap_or_else(|_| serde_norway::Value::String(value.to_owned()));
    let mut node = tree;
    for (depth, key) in path.iter().enumerate() {
        if node.is_null() {
            *node = serde_norway::Value::Mapping(serde_norway::Mapping::new());
        }
        let serde_norway::Value::Mapping(map) = node else {
            return Err(ConfigError::Environment {
                variable: variable.to_owned(),
                message: format!("{} is not a section", path[..depth].join(".")),
            });
        };
        let key = serde_norway::Value::String(key.clone());
        if depth + 1 == path.len() {
            map.insert(key, parsed);
            return Ok(());
        }
        node = map.entry(key).or_insert(serde_norway::Value::Null);
    }
    Ok(())
}

/// The configuration as YAML with secrets masked: passwords, signing secrets,
/// header values and webhook URLs' query strings (where tokens live), so the
/// effective config can be printed or pasted into an issue.
pub fn redacted(config: &Config) -> Result<serde_norway::Value, serde_norway::Error> {
    fn walk(value: &mut serde_norway::Value, key: Option<&str>) {
        match value {
            serde_norway::Value::Mapping(map) => {
                let masked = matches!(key, Some("headers"));
                for (name, inner) in map.iter_mut() {
                    let name = name.as_str().unwrap_or_default().to_owned();
                    if masked && inner.is_string() {
                        *inner = serde_norway::Value::String("***".to_owned());
                    } else {
                        walk(inner, Some(&name));
                    }
                }
            }
            serde_norway::Value::Sequence(items) => {
                for item in items {
                    walk(item, key);
                }
            }
            serde_norway::Value::String(text) => match key {
                Some("password" | "secret" | "token" | "api_key") => *text = "***".to_owned(),
                // Chat-bot URLs carry their token in the path or the query.
                Some("webhook_url") => {
                    let after_scheme = text.find("://").map_or(0, |i| i + 3);
                    if let Some(slash) = text[after_scheme..].find('/') {
                        *text = format!("{}/***", &text[..after_scheme + slash]);
                    }
                }
                Some("url") => {
                    if let Some((base, _)) = text.split_once('?') {
                        *text = format!("{base}?***");
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    let mut value = serde_norway::to_value(config)?;
    walk(&mut value, None);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_yaml("", "test.yaml", &no_env()).expect("valid");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "store:\n  embedded:\n    pth: x.db\n";
        let err = Config::from_yaml(text, "vigil.yaml", &no_env()).expect_err("unknown key");
        let message = err.to_string();
        assert!(message.contains("vigil.yaml"), "{message}");
        assert!(message.contains("store.embedded"), "{message}");
        assert!(message.contains("pth"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = "store:\n  embedded:\n    retention_days: lots\n";
        let err = Config::from_yaml(text, "vigil.yaml", &no_env()).expect_err("bad type");
        assert!(
            err.to_string().contains("store.embedded.retention_days"),
            "{err}"
        );
    }

    #[test]
    fn invalid_value_names_the_key() {
        let text = "store:\n  embedded:\n    retention_days: 0\nlog:\n  level: \"[\"\n";
        let err = Config::from_yaml(text, "vigil.yaml", &no_env()).expect_err("invalid");
        let message = err.to_string();
        assert!(
            message.contains("store.embedded.retention_days: must be at least 1"),
            "{message}"
        );
        assert!(message.contains("log.level"), "{message}");
    }

    #[test]
    fn environment_overrides_keys_with_types() {
        let env = BTreeMap::from([
            (
                "VIGIL_STORE__EMBEDDED__RETENTION_DAYS".to_owned(),
                "30".to_owned(),
            ),
            ("VIGIL_LOG__FORMAT".to_owned(), "json".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ]);
        let config =
            Config::from_yaml("log:\n  level: debug\n", "vigil.yaml", &env).expect("valid");
        assert_eq!(config.store.embedded.retention_days, 30);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.level, "debug");
    }

    #[test]
    fn environment_override_of_unknown_key_names_the_variable() {
        let env = BTreeMap::from([("VIGIL_STORE__NOPE".to_owned(), "1".to_owned())]);
        let err = Config::from_yaml("", "vigil.yaml", &env).expect_err("unknown");
        let message = err.to_string();
        assert!(message.contains("VIGIL_STORE__NOPE"), "{message}");
        assert!(message.contains("nope"), "{message}");
    }

    #[test]
    fn clickhouse_section_is_optional_and_validated() {
        let config = Config::from_yaml(
            "store:\n  clickhouse:\n    url: http://127.0.0.1:8123\n",
            "vigil.yaml",
            &no_env(),
        )
        .expect("valid");
        assert!(config.store.clickhouse.is_some());
        let err = Config::from_yaml(
            "store:\n  clickhouse:\n    url: ftp://nowhere\n",
            "vigil.yaml",
            &no_env(),
        )
        .expect_err("bad url");
        assert!(err.to_string().contains("store.clickhouse.url"), "{err}");
    }

    #[test]
    fn example_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["deploy/vigil.yaml", "deploy/vigil-clickhouse.yaml"] {
            Config::load(&root.join(name), &no_env()).unwrap_or_else(|err| panic!("{name}: {err}"));
        }
    }
}
