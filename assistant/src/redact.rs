//! Redaction of what leaves for an LLM: SQL literals, Redis values, and
//! optionally IP addresses and host names.
//!
//! SQL and Redis redaction is always on (statement shapes may still carry
//! literals when a driver does not parameterise; a Redis command's value is
//! user data). IPs and host names are replaced by stable pseudonyms (`ip_1`,
//! `host_1`) so the model can still tell entities apart, and
//! [`Redactor::restore`] puts the real names back into its answer.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What to redact besides SQL literals and Redis values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Replace IPv4 addresses by pseudonyms.
    pub ips: bool,
    /// Replace host names (host entities and dotted domain names) by pseudonyms.
    pub hostnames: bool,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            ips: true,
            hostnames: false,
        }
    }
}

/// Redacts text and JSON values, remembering pseudonyms to restore them.
#[derive(Debug)]
pub struct Redactor {
    config: RedactionConfig,
    sql_string: Regex,
    sql_number: Regex,
    ipv4: Regex,
    domain: Regex,
    hosts: Vec<String>,
    /// real → pseudonym, and the reverse.
    names: Mutex<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

/// Redis commands whose arguments after the key are values.
const REDIS_COMMANDS: [&str; 24] = [
    "SET", "SETEX", "PSETEX", "SETNX", "GETSET", "APPEND", "HSET", "HSETNX", "HMSET", "LPUSH",
    "RPUSH", "LSET", "SADD", "SREM", "ZADD", "PUBLISH", "MSET", "EVAL", "EVALSHA", "XADD", "LREM",
    "LINSERT", "GETEX", "HINCRBY",
];

const SQL_STARTS: [&str; 8] = [
    "select ", "insert ", "update ", "delete ", "replace ", "with ", "call ", "merge ",
];

impl Redactor {
    /// A redactor; `hosts` are host names to pseudonymise when `config.hostnames`.
    pub fn new(config: RedactionConfig, hosts: Vec<String>) -> Self {
        // reason: the patterns are constants, tested below; they cannot fail.
        #[allow(clippy::unwrap_used)]
        let compile = |pattern: &str| Regex::new(pattern).unwrap();
        let mut hosts = hosts;
        // Longest first so `host-12` is not replaced as `host-1` + `2`.
        hosts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        hosts.retain(|h| h.len() >= 3);
        Self {
            config,
            sql_string: compile(r"'(?:[^'\\]|\\.|'')*'|\x22(?:[^\x22\\]|\\.)*\x22"),
            sql_number: compile(r"(^|[\s=<>(,+\-*/])-?\d+(?:\.\d+)?\b"),
            ipv4: compile(r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b"),
            domain: compile(
                r"\b(?:[a-zA-Z0-9-]+\.)+(?:com|net|org|io|cn|local|internal|lan|corp)\b",
            ),
            hosts,
            names: Mutex::new((BTreeMap::new(), BTreeMap::new())),
        }
    }

    fn pseudonym(&self, real: &str, prefix: &str) -> String {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = names.0.get(real) {
            return found.clone();
        }
        let count = names.0.values().filter(|v| v.starts_with(prefix)).count();
        let made = format!("{prefix}{}", count + 1);
        names.0.insert(real.to_owned(), made.clone());
        names.1.insert(made.clone(), real.to_owned());
        made
    }

    /// Literals of one SQL statement replaced by `?`.
    pub fn sql(&self, text: &str) -> String {
        let text = self.sql_string.replace_all(text, "?");
        self.sql_number
            .replace_all(&text, |caps: &regex::Captures<'_>| format!("{}?", &caps[1]))
            .into_owned()
    }

    /// A Redis command with everything after its key replaced by `?`.
    pub fn redis(&self, text: &str) -> String {
        let mut parts = text.split_whitespace();
        let Some(command) = parts.next() else {
            return String::new();
        };
        let Some(key) = parts.next() else {
            return command.to_owned();
        };
        if parts.next().is_some() {
            format!("{command} {key} ?")
        } else {
            format!("{command} {key}")
        }
    }

    /// Free text redacted: SQL and Redis by shape, then IPs and host names.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if self.config.ips {
            out = self
                .ipv4
                .replace_all(&out, |caps: &regex::Captures<'_>| {
                    self.pseudonym(&caps[0], "ip_")
                })
                .into_owned();
        }
        if self.config.hostnames {
            for host in &self.hosts {
                if out.contains(host.as_str()) {
                    let alias = self.pseudonym(host, "host_");
                    out = out.replace(host.as_str(), &alias);
                }
            }
            out = self
                .domain
                .replace_all(&out, |caps: &regex::Captures<'_>| {
                    self.pseudonym(&caps[0], "host_")
                })
                .into_owned();
        }
        let lower = text.trim_start().to_lowercase();
        let first = text.split_whitespace().next().unwrap_or("").to_uppercase();
        out = if SQL_STARTS.iter().any(|s| lower.starts_with(s)) {
            self.sql(&out)
        } else if REDIS_COMMANDS.contains(&first.as_str()) {
            self.redis(&out)
        } else {
            // Quoted literals inside prose (e.g. an error message quoting SQL).
            if lower.contains(" where ") || lower.contains(" values") {
                self.sql(&out)
            } else {
                out
            }
        };
        out
    }

    /// Every string in a JSON value redacted (keys are Vigil's, kept).
    pub fn json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(self.text(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), self.json(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// Pseudonyms in a model's answer replaced by the real names.
    pub fn restore(&self, text: &str) -> String {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = text.to_owned();
        // Longest pseudonym first (`ip-12` before `ip-1`).
        let mut pairs: Vec<(&String, &String)> = names.1.iter().collect();
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| b.0.cmp(a.0)));
        for (alias, real) in pairs {
            out = out.replace(alias.as_str(), real);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(
            RedactionConfig {
                ips: true,
                hostnames: true,
            },
            vec!["db-primary".to_owned()],
        )
    }

    #[test]
    fn sql_literals_become_placeholders() {
        let r = redactor();
        assert_eq!(
            r.text("SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42"),
            "SELECT * FROM users WHERE email = ? AND id = ?"
        );
        assert_eq!(
            r.text("insert into t (a, b) values ('x', 3.5)"),
            "insert into t (a, b) values (?, ?)"
        );
        // Identifiers with digits are kept.
        assert_eq!(r.text("SELECT col1 FROM t2"), "SELECT col1 FROM t2");
    }

    #[test]
    fn redis_values_are_dropped_keys_kept() {
        let r = redactor();
        assert_eq!(r.text("SET session:42 secret-token"), "SET session:42 ?");
        assert_eq!(r.text("HSET cart:7 item 3"), "HSET cart:7 ?");
        assert_eq!(r.text("GET session:?"), "GET session:?");
    }

    #[test]
    fn ips_and_hosts_get_stable_pseudonyms_and_come_back() {
        let r = redactor();
        let out = r.text("database:mysqld@10.0.0.9:3306 on db-primary.corp.local and 10.0.0.9");
        assert!(!out.contains("10.0.0.9"), "{out}");
        assert!(!out.contains("db-primary"), "{out}");
        assert_eq!(out.matches("ip_1").count(), 2, "{out}");
        assert_eq!(
            r.restore(&out),
            "database:mysqld@10.0.0.9:3306 on db-primary.corp.local and 10.0.0.9"
        );
    }

    #[test]
    fn json_strings_are_redacted_recursively() {
        let r = redactor();
        let value =
            serde_json::json!({"rows": [{"shape": "SELECT * FROM t WHERE id = 7", "n": 3}]});
        let out = r.json(&value);
        assert_eq!(out["rows"][0]["shape"], "SELECT * FROM t WHERE id = ?");
        assert_eq!(out["rows"][0]["n"], 3);
    }
}
