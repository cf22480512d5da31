//! [`ClickHouseConfig`]: where the ClickHouse server is and which databases hold
//! DeepFlow's tables and Vigil's own, as written in the app's YAML config.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which request log the reader aggregates requests, edges, statements and samples from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestLog {
    /// DeepFlow's `flow_log.l7_flow_log`, with `flow_metrics.application_map.1m`
    /// for complete call-edge counts (DeepFlow may throttle its request log).
    #[default]
    Deepflow,
    /// Vigil's agent's own `agent_requests` table, for estates without DeepFlow.
    Agent,
}

/// Connection and database settings of the ClickHouse store.
///
/// Every field has a default matching a stock DeepFlow 6.6 install, so an empty
/// `clickhouse: {}` block works against a local server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123` (DeepFlow's ClickHouse answers on 8123).
    pub url: String,
    /// User name.
    pub user: String,
    /// Password; never printed (`Debug` redacts it).
    pub password: String,
    /// Database of Vigil's own tables (agent request log, resources, profiles, events, placement).
    pub database: String,
    /// DeepFlow's flow-log database (`l7_flow_log`).
    pub flow_log_database: String,
    /// DeepFlow's flow-metrics database (`application.1m`, `application_map.1m`).
    pub flow_metrics_database: String,
    /// DeepFlow's profile database (`in_process`).
    pub profile_database: String,
    /// Cluster name for `ON CLUSTER` DDL. When set, Vigil's tables are
    /// `<name>_local` (ReplicatedMergeTree) plus a Distributed `<name>`, and
    /// queries go to the Distributed ones.
    pub cluster: Option<String>,
    /// Seconds any one request (connect, query, insert) may take before it fails.
    pub timeout_secs: u64,
    /// Which request log to read.
    pub request_log: RequestLog,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".to_owned(),
            user: "default".to_owned(),
            password: String::new(),
            database: "vigil".to_owned(),
            flow_log_database: "flow_log".to_owned(),
            flow_metrics_database: "flow_metrics".to_owned(),
            profile_database: "profile".to_owned(),
            cluster: None,
            timeout_secs: 30,
            request_log: RequestLog::Deepflow,
        }
    }
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("database", &self.database)
            .field("flow_log_database", &self.flow_log_database)
            .field("flow_metrics_database", &self.flow_metrics_database)
            .field("profile_database", &self.profile_database)
            .field("cluster", &self.cluster)
            .field("timeout_secs", &self.timeout_secs)
            .field("request_log", &self.request_log)
            .finish()
    }
}

/// One thing wrong with a [`ClickHouseConfig`], naming the offending key so the
/// user can find it in the YAML file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, relative to the `clickhouse` block (e.g. `url`, `cluster`).
    pub key: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl ClickHouseConfig {
    /// This config with `_<suffix>` appended to every database name, so that
    /// several Vigil instances (or tests) share one server without sharing tables.
    pub fn with_database_suffix(mut self, suffix: &str) -> Self {
        for name in [
            &mut self.database,
            &mut self.flow_log_database,
            &mut self.flow_metrics_database,
            &mut self.profile_database,
        ] {
            name.push('_');
            name.push_str(suffix);
        }
        self
    }

    /// Checks every field and reports all problems at once.
    ///
    /// Database and cluster names are spliced into SQL and DDL text, so they
    /// must be plain identifiers (letters, digits, `_`, not starting with a digit).
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |key: &'static str, message: String| {
            problems.push(ConfigProblem { key, message });
        };
        if self.url.starts_with("https://") {
            problem(
                "url",
                format!(
                    "{}: https is not supported by this build; use http:// (e.g. behind a TLS-terminating proxy)",
                    self.url
                ),
            );
        } else if !self.url.starts_with("http://") || self.url.len() <= "http://".len() {
            problem(
                "url",
                format!(
                    "{:?} is not an HTTP URL; expected e.g. http://127.0.0.1:8123",
                    self.url
                ),
            );
        }
        if self.user.is_empty() {
            problem(
                "user",
                "must not be empty (ClickHouse's default user is `default`)".to_owned(),
            );
        }
        let names = [
            ("database", &self.database),
            ("flow_log_database", &self.flow_log_database),
            ("flow_metrics_database", &self.flow_metrics_database),
            ("profile_database", &self.profile_database),
        ];
        for (key, name) in names {
            if !is_identifier(name) {
                problem(key, identifier_message(name));
            }
        }
        if let Some(cluster) = &self.cluster {
            if !is_identifier(cluster) {
                problem("cluster", identifier_message(cluster));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > 3600 {
            problem(
                "timeout_secs",
                format!(
                    "must be between 1 and 3600 seconds, got {}",
                    self.timeout_secs
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

/// Whether `name` can be spliced into SQL unquoted.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn identifier_message(name: &str) -> String {
    format!(
        "{name:?} is not a plain identifier (letters, digits and `_`, not starting with a digit)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_suffix_applies_to_every_database() {
        let config = ClickHouseConfig::default().with_database_suffix("t1");
        assert_eq!(config.database, "vigil_t1");
        assert_eq!(config.flow_log_database, "flow_log_t1");
        assert_eq!(config.flow_metrics_database, "flow_metrics_t1");
        assert_eq!(config.profile_database, "profile_t1");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn defaults_are_valid_and_match_deepflow() {
        let config = ClickHouseConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.database, "vigil");
        assert_eq!(config.flow_log_database, "flow_log");
        assert_eq!(config.flow_metrics_database, "flow_metrics");
        assert_eq!(config.profile_database, "profile");
    }

    #[test]
    fn every_problem_names_its_key() {
        let config = ClickHouseConfig {
            url: "127.0.0.1:8123".into(),
            database: "vigil; DROP".into(),
            cluster: Some("1bad".into()),
            timeout_secs: 0,
            ..ClickHouseConfig::default()
        };
        let problems = config.validate().expect_err("invalid");
        let keys: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["url", "database", "cluster", "timeout_secs"]);
        assert!(
            problems[0].to_string().starts_with("url: "),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = ClickHouseConfig {
            password: "hunter2".into(),
            ..ClickHouseConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn deserialises_with_defaults_and_refuses_unknown_keys() {
        let config: ClickHouseConfig =
            serde_json::from_str(r#"{"url":"http://ch:8123","cluster":"c1"}"#).expect("valid");
        assert_eq!(config.url, "http://ch:8123");
        assert_eq!(config.cluster.as_deref(), Some("c1"));
        assert_eq!(config.database, "vigil");
        assert!(serde_json::from_str::<ClickHouseConfig>(r#"{"urll":"x"}"#).is_err());
    }
}
