//! Experiment definitions: YAML → validated [`Experiment`], with errors that
//! name the file, the line and the key.
//!
//! Values may refer to the environment as `${NAME}` (connection URLs and ports
//! differ between estates, and passwords do not belong in files); an unset
//! variable is an error that names it.

use std::path::Path;
use std::time::Duration;

use globset::Glob;
use serde::{Deserialize, Serialize};
use vigil_model::LocalizedText;

use crate::ChaosError;

/// One chaos experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Stable id (lowercase letters, digits, `-`).
    pub id: String,
    /// Display name.
    pub name: LocalizedText,
    /// What the experiment shows.
    #[serde(default)]
    pub description: LocalizedText,
    /// The playbook whose runs are watched (a fast one: it decides the time to detection).
    #[serde(default = "continuous")]
    pub patrol: String,
    /// Quiet time before the fault: every finding opened in it is a false finding.
    #[serde(with = "humantime_serde")]
    pub baseline: Duration,
    /// The fault.
    pub injection: Injection,
    /// Longest time the fault stays in while waiting for detection and root cause.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Time after the fault is undone, watching the findings close.
    #[serde(with = "humantime_serde", default = "no_time")]
    pub recovery: Duration,
    /// What the patrol should find.
    pub expect: Expectation,
}

fn continuous() -> String {
    "continuous".to_owned()
}

fn no_time() -> Duration {
    Duration::ZERO
}

/// What a successful experiment looks like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Glob over entity ids (`kind:name`) that are the true root cause, e.g.
    /// `service:redis-server@*` or `process:cpu-hog@*`.
    pub root_cause: String,
    /// The true root cause must rank at this place or better.
    #[serde(default = "top_three")]
    pub top: usize,
}

fn top_three() -> usize {
    3
}

/// A fault and how it is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Injection {
    /// A process that starts burning CPU and never releases it. It is started
    /// idle with the baseline, so it is a known process whose CPU shifts.
    CpuHog {
        /// Process name (`comm`, at most 15 bytes) the hog runs under.
        #[serde(default = "hog_name")]
        process_name: String,
        /// Busy threads.
        #[serde(default = "one")]
        threads: usize,
    },
    /// A lock on a hot table of a real MySQL/MariaDB, held in bursts.
    MysqlSlow {
        /// `mysql://user:password@host:port/database`.
        url: String,
        /// The hot table.
        table: String,
        /// How long each burst holds the lock, milliseconds.
        #[serde(default = "lock_hold_ms")]
        hold_ms: u64,
        /// Pause between bursts, milliseconds.
        #[serde(default = "lock_gap_ms")]
        gap_ms: u64,
    },
    /// A slow Redis: the server blocked in bursts (`DEBUG SLEEP`) or a big key
    /// read in full over and over.
    RedisSlow {
        /// `redis://host:port`.
        url: String,
        /// How the server is slowed.
        #[serde(default)]
        mode: RedisSlowMode,
        /// `debug-sleep`: each block, milliseconds. `big-key`: ignored.
        #[serde(default = "redis_block_ms")]
        block_ms: u64,
        /// Pause between bursts, milliseconds.
        #[serde(default = "redis_gap_ms")]
        gap_ms: u64,
        /// `big-key`: elements of the key.
        #[serde(default = "big_key_elements")]
        elements: usize,
    },
    /// An HTTP dependency that answers 5xx: a proxy on `listen` forwards to
    /// `upstream` and, while injected, fails a share of the requests.
    ErrorBurst {
        /// Address the proxy listens on (callers are pointed at it).
        listen: String,
        /// The real dependency, `http://host:port`.
        upstream: String,
        /// Share of requests failed while injected, 0–1.
        #[serde(default = "half")]
        ratio: f64,
        /// Status answered.
        #[serde(default = "bad_gateway")]
        status: u16,
    },
    /// Packets to a port delayed with `tc netem`.
    NetworkDelay {
        /// Interface (`lo` for services on one host).
        interface: String,
        /// Destination port whose packets are delayed.
        port: u16,
        /// Added delay, milliseconds.
        delay_ms: u64,
    },
}

/// How `redis-slow` slows the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisSlowMode {
    /// `DEBUG SLEEP` in bursts (needs `enable-debug-command`).
    #[default]
    DebugSleep,
    /// A big list read whole (`LRANGE key 0 -1`) back to back.
    BigKey,
}

fn hog_name() -> String {
    "cpu-hog".to_owned()
}
fn one() -> usize {
    1
}
fn lock_hold_ms() -> u64 {
    300
}
fn lock_gap_ms() -> u64 {
    200
}
fn redis_block_ms() -> u64 {
    200
}
fn redis_gap_ms() -> u64 {
    300
}
fn big_key_elements() -> usize {
    200_000
}
fn half() -> f64 {
    0.5
}
fn bad_gateway() -> u16 {
    502
}

impl Injection {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Injection::CpuHog { .. } => "cpu-hog",
            Injection::MysqlSlow { .. } => "mysql-slow",
            Injection::RedisSlow { .. } => "redis-slow",
            Injection::ErrorBurst { .. } => "error-burst",
            Injection::NetworkDelay { .. } => "network-delay",
        }
    }
}

/// Parses and validates one experiment; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Experiment, ChaosError> {
    let expanded = expand_env(text, origin)?;
    let deserializer = serde_norway::Deserializer::from_str(&expanded);
    let experiment: Experiment = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        // The injection is an internally tagged enum, which serde buffers,
        // so errors inside it lose their place: find the named key instead.
        let line = match inner.location() {
            Some(l) if l.line() > 1 => l.line(),
            _ => unknown_field(&message)
                .and_then(|field| line_of(&expanded, &format!("{field}:")))
                .unwrap_or(0),
        };
        ChaosError::Definition {
            origin: origin.to_owned(),
            line,
            key: if key == "." { String::new() } else { key },
            message,
        }
    })?;
    validate(&experiment, text, origin)?;
    Ok(experiment)
}

/// Reads one experiment file.
pub fn load(path: &Path) -> Result<Experiment, ChaosError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| ChaosError::Read {
        origin: origin.clone(),
        message: err.to_string(),
    })?;
    parse(&text, &origin)
}

/// Every `*.yaml`/`*.yml` experiment under `dir`, sorted by id; two files
/// with one id are an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Experiment>, ChaosError> {
    let entries = std::fs::read_dir(dir).map_err(|err| ChaosError::Read {
        origin: dir.display().to_string(),
        message: err.to_string(),
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut experiments: Vec<(String, Experiment)> = Vec::new();
    for file in files {
        let experiment = load(&file)?;
        let origin = file.display().to_string();
        if let Some((first, _)) = experiments.iter().find(|(_, e)| e.id == experiment.id) {
            return Err(ChaosError::Invalid {
                origin,
                line: None,
                key: "id".to_owned(),
                message: format!("`{}` is already defined in {first}", experiment.id),
            });
        }
        experiments.push((origin, experiment));
    }
    experiments.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    Ok(experiments.into_iter().map(|(_, e)| e).collect())
}

/// Replaces `${NAME}` with the environment's value; `$$` is a literal `$`.
fn expand_env(text: &str, origin: &str) -> Result<String, ChaosError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err(invalid(text, origin, "${", "`${` without a closing `}`"));
            };
            let name = &body[..close];
            let value = std::env::var(name).map_err(|_| {
                invalid(
                    text,
                    origin,
                    &format!("${{{name}}}"),
                    &format!("environment variable {name} is not set"),
                )
            })?;
            out.push_str(&value);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The field an "unknown field `x`" error names.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split_once("unknown field `")?.1;
    Some(rest.split_once('`')?.0)
}

/// The first line (1-based) holding `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|index| index + 1)
}

fn invalid(text: &str, origin: &str, needle: &str, message: &str) -> ChaosError {
    ChaosError::Invalid {
        origin: origin.to_owned(),
        line: line_of(text, needle),
        key: needle.trim_end_matches(':').to_owned(),
        message: message.to_owned(),
    }
}

fn validate(experiment: &Experiment, text: &str, origin: &str) -> Result<(), ChaosError> {
    let fail = |key: &str, message: String| {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let mut error = invalid(text, origin, &format!("{leaf}:"), &message);
        if let ChaosError::Invalid { key: k, .. } = &mut error {
            *k = key.to_owned();
        }
        Err(error)
    };
    let id_ok = !experiment.id.is_empty()
        && experiment.id.len() <= 64
        && !experiment.id.starts_with('-')
        && experiment
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return fail(
            "id",
            format!(
                "`{}` is not an id: use lowercase letters, digits and `-`",
                experiment.id
            ),
        );
    }
    if experiment.hold.is_zero() {
        return fail("hold", "must be longer than zero".to_owned());
    }
    if let Err(err) = Glob::new(&experiment.expect.root_cause) {
        return fail("expect.root_cause", format!("not a glob: {err}"));
    }
    if !experiment.expect.root_cause.contains(':') {
        return fail(
            "expect.root_cause",
            "must match entity ids `kind:name`, e.g. `service:redis-server@*`".to_owned(),
        );
    }
    if experiment.expect.top == 0 {
        return fail("expect.top", "must be at least 1".to_owned());
    }
    match &experiment.injection {
        Injection::CpuHog {
            process_name,
            threads,
        } => {
            let name_ok = !process_name.is_empty()
                && process_name.len() <= 15
                && process_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return fail(
                    "injection.process_name",
                    format!("`{process_name}`: 1–15 letters, digits, `-` or `_` (a kernel comm)"),
                );
            }
            if *threads == 0 || *threads > 256 {
                return fail("injection.threads", "must be 1–256".to_owned());
            }
        }
        Injection::MysqlSlow {
            url,
            table,
            hold_ms,
            ..
        } => {
            if !url.starts_with("mysql://") {
                return fail("injection.url", "must start with mysql://".to_owned());
            }
            if table.is_empty()
                || !table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return fail(
                    "injection.table",
                    format!("`{table}`: letters, digits, `_` and `.` only"),
                );
            }
            if *hold_ms == 0 {
                return fail("injection.hold_ms", "must be longer than zero".to_owned());
            }
        }
        Injection::RedisSlow {
            url,
            block_ms,
            elements,
            mode,
            ..
        } => {
            if !url.starts_with("redis://") {
                return fail("injection.url", "must start with redis://".to_owned());
            }
            if *mode == RedisSlowMode::DebugSleep && *block_ms == 0 {
                return fail("injection.block_ms", "must be longer than zero".to_owned());
            }
            if *mode == RedisSlowMode::BigKey && *elements == 0 {
                return fail("injection.elements", "must be at least 1".to_owned());
            }
        }
        Injection::ErrorBurst {
            listen,
            upstream,
            ratio,
            status,
        } => {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return fail(
                    "injection.listen",
                    format!("`{listen}` is not an address like 127.0.0.1:8081 or [::1]:8081"),
                );
            }
            if !upstream.starts_with("http://") {
                return fail("injection.upstream", "must start with http://".to_owned());
            }
            if !(0.0..=1.0).contains(ratio) || ratio.is_nan() {
                return fail("injection.ratio", "must be between 0 and 1".to_owned());
            }
            if !(500..=599).contains(status) {
                return fail("injection.status", "must be a 5xx status".to_owned());
            }
        }
        Injection::NetworkDelay {
            interface,
            delay_ms,
            ..
        } => {
            let name_ok = !interface.is_empty()
                && interface.len() <= 15
                && interface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
            if !name_ok {
                return fail(
                    "injection.interface",
                    format!("`{interface}` is not an interface name"),
                );
            }
            if *delay_ms == 0 || *delay_ms > 60_000 {
                return fail("injection.delay_ms", "must be 1–60000".to_owned());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "\
id: redis-slow
name: {en: Slow Redis, zh: Redis 变慢}
baseline: 2m
hold: 5m
injection:
  kind: redis-slow
  url: redis://127.0.0.1:6379
expect:
  root_cause: \"service:redis-server@*\"
";

    #[test]
    fn a_minimal_experiment_gets_defaults() {
        let experiment = parse(REDIS, "redis.yaml").expect("parses");
        assert_eq!(experiment.patrol, "continuous");
        assert_eq!(experiment.expect.top, 3);
        assert_eq!(experiment.recovery, Duration::ZERO);
        assert_eq!(
            experiment.injection,
            Injection::RedisSlow {
                url: "redis://127.0.0.1:6379".into(),
                mode: RedisSlowMode::DebugSleep,
                block_ms: 200,
                gap_ms: 300,
                elements: 200_000,
            }
        );
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let text = REDIS.replace("  url:", "  colour: red\n  url:");
        let err = parse(&text, "redis.yaml")
            .expect_err("unknown key")
            .to_string();
        assert!(err.starts_with("redis.yaml:7:"), "{err}");
        assert!(err.contains("injection") && err.contains("colour"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_line() {
        let text = REDIS.replace("redis://127.0.0.1:6379", "http://127.0.0.1:6379");
        let err = parse(&text, "redis.yaml").expect_err("bad url").to_string();
        assert_eq!(
            err, "redis.yaml:7: injection.url: must start with redis://",
            "{err}"
        );
    }

    #[test]
    fn environment_references_are_expanded_and_missing_ones_named() {
        let text = REDIS.replace("redis://127.0.0.1:6379", "${VIGIL_CHAOS_TEST_NOT_SET}");
        let err = parse(&text, "redis.yaml").expect_err("unset").to_string();
        assert_eq!(
            err,
            "redis.yaml:7: ${VIGIL_CHAOS_TEST_NOT_SET}: environment variable VIGIL_CHAOS_TEST_NOT_SET is not set"
        );
        let text = REDIS.replace("redis://127.0.0.1:6379", "${PATH}");
        let err = parse(&text, "redis.yaml").expect_err("PATH is no redis URL");
        assert!(err.to_string().contains("injection.url"), "{err}");
        assert_eq!(expand_env("a $$ b $c", "x").expect("plain"), "a $ b $c");
    }

    #[test]
    fn the_shipped_experiments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/chaos");
        // The shipped files take their addresses from the environment.
        for (name, value) in [
            ("VIGIL_CHAOS_MYSQL_URL", "mysql://u:p@127.0.0.1:3306/db"),
            ("VIGIL_CHAOS_REDIS_URL", "redis://127.0.0.1:6379"),
            ("VIGIL_CHAOS_PROXY_PORT", "18090"),
            ("VIGIL_CHAOS_UPSTREAM_URL", "http://127.0.0.1:18083"),
            ("VIGIL_CHAOS_DELAY_PORT", "18083"),
        ] {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
        let experiments = load_dir(&dir).expect("shipped experiments are valid");
        let kinds: Vec<&str> = experiments.iter().map(|e| e.injection.kind()).collect();
        for kind in [
            "cpu-hog",
            "mysql-slow",
            "redis-slow",
            "error-burst",
            "network-delay",
        ] {
            assert!(
                kinds.contains(&kind),
                "no shipped {kind} experiment: {kinds:?}"
            );
        }
    }
}
