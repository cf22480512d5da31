//! Alert webhook payloads (Alertmanager v4, Grafana unified alerting,
//! DeepFlow alert events, a generic shape) parsed strictly into one [`Alert`]
//! shape. Errors name the field (`alerts[0].startsAt`); parsing never panics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_model::Timestamp;

/// Which payload shape a webhook speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertSource {
    /// Prometheus Alertmanager webhook v4.
    Alertmanager,
    /// Grafana unified alerting.
    Grafana,
    /// DeepFlow alert events.
    Deepflow,
    /// Vigil's generic shape.
    Generic,
}

impl AlertSource {
    /// The name in URLs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Grafana => "grafana",
            Self::Deepflow => "deepflow",
            Self::Generic => "generic",
        }
    }
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertStatus {
    /// Still firing.
    Firing,
    /// Over.
    Resolved,
}

/// One alert, whatever its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Where it came from.
    pub source: AlertSource,
    /// Stable identity (the sender's, or a hash of source and labels).
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Labels (alert and common labels merged).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started.
    pub starts_at: Timestamp,
    /// When it ended, if it did.
    pub ends_at: Option<Timestamp>,
    /// A title for humans.
    pub title: String,
    /// Link back to the sender.
    pub generator_url: Option<String>,
}

/// A payload that does not parse, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    /// JSON path of the field (`.` for the document).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserialises `body` as `T`, naming the field of the first error.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        ParseError::at(
            if path.is_empty() {
                ".".to_owned()
            } else {
                path
            },
            error.inner().to_string(),
        )
    })?;
    deserializer
        .end()
        .map_err(|e| ParseError::at(".", format!("trailing data: {e}")))?;
    Ok(value)
}

/// Days since the epoch of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2024-01-02T03:04:05.123Z`, `…+08:00`) to unix seconds;
/// Alertmanager's zero time (`0001-01-01T00:00:00Z`) gives `None`.
pub fn parse_rfc3339(text: &str) -> Result<Option<Timestamp>, String> {
    let bytes = text.as_bytes();
    let bad = || format!("{text:?} is not an RFC 3339 time like 2024-01-02T03:04:05Z");
    if bytes.len() < 20 || !text.is_ascii() {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(range)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':' =>
        {
            let hours: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return Err(bad()),
    };
    if year <= 1 {
        return Ok(None);
    }
    let days = days_from_civil(year, month, day);
    Ok(Some(Timestamp(
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
    )))
}

/// Formats unix seconds as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn format_rfc3339(t: Timestamp) -> String {
    let secs = t.secs();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn fingerprint_of(source: AlertSource, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_str().as_bytes());
    for (key, value) in labels {
        hasher.update([0]);
        hasher.update(key.as_bytes());
        hasher.update([1]);
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn status_of(text: &str, field: &str) -> Result<AlertStatus, ParseError> {
    match text.to_ascii_lowercase().as_str() {
        "firing" | "alerting" | "pending" | "fatal" | "error" | "warning" | "info" | "no-data"
        | "nodata" | "critical" => Ok(AlertStatus::Firing),
        "resolved" | "ok" | "normal" | "recovery" | "recovered" => Ok(AlertStatus::Resolved),
        other => Err(ParseError::at(
            field,
            format!("unknown status {other:?}; expected firing or resolved"),
        )),
    }
}

/// Alertmanager (and Grafana) webhook body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerPayload {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    title: Option<String>,
    alerts: Vec<AlertmanagerAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

fn from_alertmanager(source: AlertSource, body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    let payload: AlertmanagerPayload = parse_json(body)?;
    if source == AlertSource::Alertmanager {
        if let Some(version) = &payload.version {
            if version != "4" {
                return Err(ParseError::at(
                    "version",
                    format!("unsupported Alertmanager webhook version {version:?}; expected \"4\""),
                ));
            }
        }
    }
    if let Some(status) = &payload.status {
        status_of(status, "status")?;
    }
    let mut alerts = Vec::with_capacity(payload.alerts.len());
    for (index, raw) in payload.alerts.into_iter().enumerate() {
        let field = |name: &str| format!("alerts[{index}].{name}");
        let mut labels = payload.common_labels.clone();
        labels.extend(raw.labels);
        let mut annotations = payload.common_annotations.clone();
        annotations.extend(raw.annotations);
        let starts_at = parse_rfc3339(&raw.starts_at)
            .map_err(|m| ParseError::at(field("startsAt"), m))?
            .ok_or_else(|| ParseError::at(field("startsAt"), "zero time"))?;
        let ends_at = match raw.ends_at.as_deref() {
            None | Some("") => None,
            Some(text) => parse_rfc3339(text).map_err(|m| ParseError::at(field("endsAt"), m))?,
        };
        let status = status_of(&raw.status, &field("status"))?;
        let title = labels
            .get("alertname")
            .cloned()
            .or_else(|| annotations.get("summary").cloned())
            .or_else(|| payload.title.clone())
            .unwrap_or_else(|| "alert".to_owned());
        let fingerprint = raw
            .fingerprint
            .filter(|f| !f.trim().is_empty() && f.len() <= 128)
            .unwrap_or_else(|| fingerprint_of(source, &labels));
        alerts.push(Alert {
            source,
            fingerprint: format!("{}:{fingerprint}", source.as_str()),
            status,
            labels,
            annotations,
            starts_at,
            ends_at,
            title,
            generator_url: raw.generator_url,
        });
    }
    Ok(alerts)
}

/// DeepFlow alert event (the body is one event or a list of them).
#[derive(Debug, Deserialize)]
struct DeepflowEvent {
    #[serde(default)]
    alarm_id: Option<serde_json::Value>,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    event_level: Option<String>,
    #[serde(default)]
    alarm_target: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn from_deepflow(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    // Parsed per shape (not as an untagged enum) so errors name the field.
    let value: serde_json::Value = parse_json(body)?;
    let events: Vec<DeepflowEvent> = if value.is_array() {
        parse_json(body)?
    } else {
        vec![parse_json(body)?]
    };
    let mut alerts = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        let field = |name: &str| {
            if index == 0 {
                name.to_owned()
            } else {
                format!("[{index}].{name}")
            }
        };
        let level = event.event_level.unwrap_or_else(|| "warning".to_owned());
        let status = status_of(&level, &field("event_level"))?;
        let starts_at = match (event.timestamp, event.start_time.as_deref()) {
            (Some(ts), _) if (0..=i64::from(u32::MAX) * 10).contains(&ts) => Timestamp(ts),
            (Some(ts), _) if ts > 0 && ts / 1000 <= i64::from(u32::MAX) * 10 => {
                Timestamp(ts / 1000)
            }
            (None, Some(text)) => parse_rfc3339(text)
                .map_err(|m| ParseError::at(field("start_time"), m))?
                .ok_or_else(|| ParseError::at(field("start_time"), "zero time"))?,
            _ => {
                return Err(ParseError::at(
                    field("timestamp"),
                    "needs timestamp (unix seconds or ms) or start_time (RFC 3339)",
                ))
            }
        };
        let mut labels = event.tags;
        if let Some(target) = event.alarm_target {
            labels.entry("entity".to_owned()).or_insert(target);
        }
        let title = event
            .policy_name
            .unwrap_or_else(|| "DeepFlow alert".to_owned());
        labels.insert("alertname".to_owned(), title.clone());
        let id = event.alarm_id.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        let fingerprint = id
            .filter(|f| !f.is_empty() && f.len() <= 128)
            .unwrap_or_else(|| fingerprint_of(AlertSource::Deepflow, &labels));
        let mut annotations = BTreeMap::new();
        if let Some(message) = event.message {
            annotations.insert("message".to_owned(), message);
        }
        alerts.push(Alert {
            source: AlertSource::Deepflow,
            fingerprint: format!("deepflow:{fingerprint}"),
            status,
            labels,
            annotations,
            starts_at,
            ends_at: None,
            title,
            generator_url: None,
        });
    }
    Ok(alerts)
}

/// Vigil's generic shape: one alert or `{"alerts": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericAlert {
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    title: Option<String>,
    /// Unix seconds or RFC 3339.
    #[serde(default)]
    at: Option<serde_json::Value>,
}

fn from_generic(body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    // Untagged enums hide field errors; try the list shape strictly first.
    let value: serde_json::Value = parse_json(body)?;
    let list: Vec<GenericAlert> = if value.get("alerts").is_some() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrapper {
            alerts: Vec<GenericAlert>,
        }
        let wrapper: Wrapper = parse_json(body)?;
        wrapper.alerts
    } else {
        vec![parse_json::<GenericAlert>(body)?]
    };
    let mut alerts = Vec::new();
    for (index, raw) in list.into_iter().enumerate() {
        let field = |name: &str| format!("alerts[{index}].{name}");
        let status = match &raw.status {
            Some(status) => status_of(status, &field("status"))?,
            None => AlertStatus::Firing,
        };
        let starts_at = match &raw.at {
            None => None,
            Some(serde_json::Value::Number(n)) => Some(Timestamp(
                n.as_i64()
                    .filter(|v| (0..=i64::from(u32::MAX) * 10).contains(v))
                    .ok_or_else(|| ParseError::at(field("at"), "unix seconds out of range"))?,
            )),
            Some(serde_json::Value::String(text)) => {
                parse_rfc3339(text).map_err(|m| ParseError::at(field("at"), m))?
            }
            Some(_) => {
                return Err(ParseError::at(
                    field("at"),
                    "expected unix seconds or an RFC 3339 string",
                ))
            }
        };
        let mut labels = raw.labels;
        if let Some(entity) = raw.entity {
            labels.insert("entity".to_owned(), entity);
        }
        if labels.is_empty() {
            return Err(ParseError::at(
                field("entity"),
                "an alert needs an entity or labels naming one",
            ));
        }
        let title = raw
            .title
            .or_else(|| labels.get("alertname").cloned())
            .unwrap_or_else(|| "alert".to_owned());
        let fingerprint = raw
            .fingerprint
            .filter(|f| !f.trim().is_empty() && f.len() <= 128)
            .unwrap_or_else(|| fingerprint_of(AlertSource::Generic, &labels));
        alerts.push(Alert {
            source: AlertSource::Generic,
            fingerprint: format!("generic:{fingerprint}"),
            status,
            labels,
            annotations: raw.annotations,
            // Filled with the server's clock by the caller when absent.
            starts_at: starts_at.unwrap_or(Timestamp(0)),
            ends_at: None,
            title,
            generator_url: None,
        });
    }
    Ok(alerts)
}

/// Parses a webhook body of `source` into alerts.
pub fn parse(source: AlertSource, body: &[u8]) -> Result<Vec<Alert>, ParseError> {
    match source {
        AlertSource::Alertmanager | AlertSource::Grafana => from_alertmanager(source, body),
        AlertSource::Deepflow => from_deepflow(body),
        AlertSource::Generic => from_generic(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z"),
            Ok(Some(Timestamp(0)))
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.123456789Z"),
            Ok(Some(Timestamp(1_704_164_645)))
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T11:04:05+08:00"),
            Ok(Some(Timestamp(1_704_164_645)))
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Ok(None));
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2024-13-02T03:04:05Z").is_err());
        for secs in [0, 1_704_164_645, 951_782_400, 4_102_444_799] {
            let text = format_rfc3339(Timestamp(secs));
            assert_eq!(parse_rfc3339(&text), Ok(Some(Timestamp(secs))), "{text}");
        }
    }

    #[test]
    fn alertmanager_payload_merges_common_labels() {
        let body = br#"{"version":"4","groupKey":"g","status":"firing","receiver":"vigil",
            "groupLabels":{},"commonLabels":{"job":"api"},"commonAnnotations":{},"externalURL":"http://am",
            "alerts":[{"status":"firing","labels":{"alertname":"HighLatency","service":"gateway"},
            "annotations":{"summary":"p99 high"},"startsAt":"2024-01-02T03:04:05Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom","fingerprint":"abc123"}]}"#;
        let alerts = parse(AlertSource::Alertmanager, body).expect("parses");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].fingerprint, "alertmanager:abc123");
        assert_eq!(alerts[0].labels["job"], "api");
        assert_eq!(alerts[0].title, "HighLatency");
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(alerts[0].status, AlertStatus::Firing);
    }

    #[test]
    fn errors_name_the_field() {
        let body = br#"{"alerts":[{"status":"firing","labels":{},"startsAt":"soon"}]}"#;
        let error = parse(AlertSource::Alertmanager, body).expect_err("bad time");
        assert_eq!(error.field, "alerts[0].startsAt");
        let body = br#"{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2024-01-02T03:04:05Z"}]}"#;
        let error = parse(AlertSource::Alertmanager, body).expect_err("bad label");
        assert_eq!(error.field, "alerts[0].labels.a");
        let error = parse(
            AlertSource::Generic,
            br#"{"entity":"service:x","colour":"red"}"#,
        )
        .expect_err("unknown field");
        assert!(error.message.contains("colour"), "{error}");
    }

    #[test]
    fn deepflow_and_generic_shapes_parse() {
        let alerts = parse(
            AlertSource::Deepflow,
            br#"{"alarm_id": 7, "policy_name": "slow mysql", "event_level": "error",
                 "alarm_target": "database:mysqld@10.0.0.9:3306", "timestamp": 1704164645000}"#,
        )
        .expect("parses");
        assert_eq!(alerts[0].starts_at, Timestamp(1_704_164_645));
        assert_eq!(alerts[0].fingerprint, "deepflow:7");
        let recovered = parse(
            AlertSource::Deepflow,
            br#"{"alarm_id": 7, "event_level": "recovery", "timestamp": 1704164645}"#,
        )
        .expect("parses");
        assert_eq!(recovered[0].status, AlertStatus::Resolved);
        let alerts = parse(
            AlertSource::Generic,
            br#"{"alerts": [{"entity": "gateway", "at": "2024-01-02T03:04:05Z"}]}"#,
        )
        .expect("parses");
        assert_eq!(alerts[0].labels["entity"], "gateway");
    }
}
