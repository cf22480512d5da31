//! Configuration: channels (where messages go), routes (which messages go
//! where) and per-channel delivery settings, with validation that names the key.
//!
//! The shape is YAML-friendly: each channel is one flat mapping tagged by
//! `type`, with the common delivery settings (`timeout`, `max_attempts`, …)
//! beside the channel's own fields.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vigil_model::Severity;

use crate::message::MessageKind;

/// Everything the notifier needs: named channels and the routes that pick them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Channels by name; route entries refer to these names.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Routes, in order. With none, every message goes to every channel, so a
    /// single configured channel works without writing a route.
    pub routes: Vec<Route>,
}

/// Which messages go to which channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name kept in delivery records, so a delivery can be traced to its route.
    pub name: String,
    /// Messages below this severity do not match.
    #[serde(default = "lowest_severity")]
    pub min_severity: Severity,
    /// Glob patterns on service names (`checkout`, `order-*`) or whole ids
    /// (`service:order-*`); empty matches every message.
    #[serde(default)]
    pub services: Vec<String>,
    /// Message kinds that match; empty matches all.
    #[serde(default)]
    pub kinds: Vec<MessageKind>,
    /// Channel names to deliver to.
    pub channels: Vec<String>,
}

fn lowest_severity() -> Severity {
    Severity::Info
}

/// One channel: its kind with the kind's own fields, and how to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    /// The kind of receiver and its fields.
    pub kind: ChannelKind,
    /// Timeouts, retries and rate limit.
    pub delivery: DeliverySettings,
}

impl ChannelConfig {
    /// A channel with default delivery settings.
    pub fn new(kind: ChannelKind) -> Self {
        Self {
            kind,
            delivery: DeliverySettings::default(),
        }
    }
}

/// The keys of [`DeliverySettings`], split off a channel mapping before the rest
/// is read as a [`ChannelKind`] (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, and unknown keys must be refused).
const DELIVERY_KEYS: [&str; 5] = [
    "timeout",
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "rate_limit_per_minute",
];

impl<'de> Deserialize<'de> for ChannelConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut delivery = serde_json::Map::new();
        for key in DELIVERY_KEYS {
            if let Some(value) = map.remove(key) {
                delivery.insert(key.to_string(), value);
            }
        }
        let kind = ChannelKind::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(e.to_string()))?;
        let delivery = DeliverySettings::deserialize(serde_json::Value::Object(delivery))
            .map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(Self { kind, delivery })
    }
}

impl Serialize for ChannelConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut map = match serde_json::to_value(&self.kind).map_err(S::Error::custom)? {
            serde_json::Value::Object(map) => map,
            _ => return Err(S::Error::custom("channel kind is not a mapping")),
        };
        if let serde_json::Value::Object(delivery) =
            serde_json::to_value(&self.delivery).map_err(S::Error::custom)?
        {
            map.extend(delivery);
        }
        map.serialize(serializer)
    }
}

/// The receiver kinds, tagged by `type` in configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelKind {
    /// Any HTTP endpoint; the body is a JSON template.
    Webhook(WebhookConfig),
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// A DingTalk custom robot.
    #[serde(rename = "dingtalk")]
    DingTalk(DingTalkConfig),
    /// A Feishu/Lark custom bot.
    #[serde(alias = "lark")]
    Feishu(FeishuConfig),
    /// A WeCom (WeChat Work) group robot.
    #[serde(rename = "wecom")]
    WeCom(WeComConfig),
    /// Email over SMTP.
    Email(EmailConfig),
}

impl ChannelKind {
    /// The `type` name, for logs and messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Slack(_) => "slack",
            Self::DingTalk(_) => "dingtalk",
            Self::Feishu(_) => "feishu",
            Self::WeCom(_) => "wecom",
            Self::Email(_) => "email",
        }
    }
}

/// A generic webhook: POSTs the rendered template as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: SecretUrl,
    /// Extra headers (e.g. `Authorization`); values are treated as secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A minijinja template that renders the JSON body, with JSON
    /// auto-escaping (`{{ title }}` becomes a quoted JSON string). Defaults to
    /// [`crate::DEFAULT_WEBHOOK_TEMPLATE`].
    #[serde(default)]
    pub template: Option<String>,
    /// When set, `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (its path is the secret).
    pub webhook_url: SecretUrl,
}

/// A DingTalk custom robot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// `https://oapi.dingtalk.com/robot/send?access_token=…`.
    pub webhook_url: SecretUrl,
    /// The robot's signing secret (`SEC…`), when "additional signature" is on.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// A Feishu/Lark custom bot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// `https://open.feishu.cn/open-apis/bot/v2/hook/…` (or the Lark host).
    pub webhook_url: SecretUrl,
    /// The bot's signing secret, when signature verification is on.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// A WeCom group robot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`.
    pub webhook_url: SecretUrl,
}

/// Email over SMTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name.
    pub smtp_host: String,
    /// Port; defaults by `security` (25, 587 or 465).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// How the connection is protected.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Login name, when the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sender, `Vigil <vigil@example.com>` or a bare address.
    pub from: String,
    /// Recipients; at least one.
    pub to: Vec<String>,
}

impl EmailConfig {
    /// The configured port, or the usual one for the security mode.
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.security {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        })
    }
}

/// SMTP connection security.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain text; only for a relay on localhost or a trusted network.
    None,
    /// Upgrade with STARTTLS (required, not opportunistic).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// How one channel delivers: timeouts, retries and its rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Time allowed for one attempt.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles after each retry.
    #[serde(with = "human_duration")]
    pub initial_backoff: Duration,
    /// Cap on any wait, the receiver's `Retry-After` included.
    #[serde(with = "human_duration")]
    pub max_backoff: Duration,
    /// Messages allowed per minute (with a burst of the same size); 0 = no limit.
    pub rate_limit_per_minute: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            rate_limit_per_minute: 20,
        }
    }
}

/// Durations as humantime text (`10s`, `1m 30s`, `250ms`).
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret string (signing secret, password, header value). Its `Debug`
/// prints `***` so configs can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for signing and sending, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL that may carry a token (in its path for Slack and Feishu, in its
/// query for DingTalk and WeCom). `Debug` and [`SecretUrl::redacted`] show
/// only scheme and host.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The URL itself; only for sending.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Scheme and host only, safe for logs and records.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://host[:port]/…`: drops the path, query and user info, which is
/// where webhook tokens live.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("?");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if parsed.path() == "/" && parsed.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", parsed.scheme())
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

/// One thing wrong with a configuration, named by its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, like `notify.channels.ops.webhook_url` or `notify.routes[0].channels[1]`.
    pub key: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl ConfigProblem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl NotifyConfig {
    /// Every problem at once, so a user fixes the file in one pass.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        for (name, channel) in &self.channels {
            validate_channel(name, channel, &mut problems);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("notify.routes[{i}]");
            if route.name.trim().is_empty() {
                problems.push(ConfigProblem::new(
                    format!("{key}.name"),
                    "must not be empty",
                ));
            } else if !seen.insert(route.name.as_str()) {
                problems.push(ConfigProblem::new(
                    format!("{key}.name"),
                    format!("route name {:?} is used twice", route.name),
                ));
            }
            if route.channels.is_empty() {
                problems.push(ConfigProblem::new(
                    format!("{key}.channels"),
                    "must name at least one channel",
                ));
            }
            for (j, channel) in route.channels.iter().enumerate() {
                if !self.channels.contains_key(channel) {
                    problems.push(ConfigProblem::new(
                        format!("{key}.channels[{j}]"),
                        format!(
                            "unknown channel {channel:?}; configured: {}",
                            self.channel_names()
                        ),
                    ));
                }
            }
            for (j, pattern) in route.services.iter().enumerate() {
                if let Err(e) = globset::Glob::new(pattern) {
                    problems.push(ConfigProblem::new(
                        format!("{key}.services[{j}]"),
                        format!("invalid glob {pattern:?}: {e}"),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn channel_names(&self) -> String {
        if self.channels.is_empty() {
            return "(none)".to_string();
        }
        self.channels.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn validate_channel(name: &str, channel: &ChannelConfig, problems: &mut Vec<ConfigProblem>) {
    let key = format!("notify.channels.{name}");
    match &channel.kind {
        ChannelKind::Webhook(c) => {
            check_url(&format!("{key}.url"), &c.url, problems);
            for (header, value) in &c.headers {
                let k = format!("{key}.headers.{header}");
                if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problems.push(ConfigProblem::new(k.clone(), "not a valid header name"));
                }
                if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                    problems.push(ConfigProblem::new(k, "not a valid header value"));
                }
            }
            if let Err(e) =
                crate::format::WebhookTemplate::new(c.template.as_deref()).and_then(|t| t.check())
            {
                problems.push(ConfigProblem::new(format!("{key}.template"), e));
            }
            check_secret(&format!("{key}.secret"), c.secret.as_ref(), problems);
        }
        ChannelKind::Slack(c) => check_url(&format!("{key}.webhook_url"), &c.webhook_url, problems),
        ChannelKind::DingTalk(c) => {
            check_url(&format!("{key}.webhook_url"), &c.webhook_url, problems);
            check_secret(&format!("{key}.secret"), c.secret.as_ref(), problems);
        }
        ChannelKind::Feishu(c) => {
            check_url(&format!("{key}.webhook_url"), &c.webhook_url, problems);
            check_secret(&format!("{key}.secret"), c.secret.as_ref(), problems);
        }
        ChannelKind::WeCom(c) => check_url(&format!("{key}.webhook_url"), &c.webhook_url, problems),
        ChannelKind::Email(c) => validate_email(&key, c, problems),
    }
    let d = &channel.delivery;
    if d.max_attempts == 0 {
        problems.push(ConfigProblem::new(
            format!("{key}.max_attempts"),
            "must be at least 1 (the first attempt counts)",
        ));
    }
    if d.timeout.is_zero() {
        problems.push(ConfigProblem::new(
            format!("{key}.timeout"),
            "must be more than zero",
        ));
    }
    if d.initial_backoff > d.max_backoff {
        problems.push(ConfigProblem::new(
            format!("{key}.initial_backoff"),
            format!(
                "{} is more than max_backoff {}",
                humantime::format_duration(d.initial_backoff),
                humantime::format_duration(d.max_backoff)
            ),
        ));
    }
}

fn validate_email(key: &str, c: &EmailConfig, problems: &mut Vec<ConfigProblem>) {
    if c.smtp_host.trim().is_empty() {
        problems.push(ConfigProblem::new(
            format!("{key}.smtp_host"),
            "must not be empty",
        ));
    }
    if c.from.parse::<lettre::message::Mailbox>().is_err() {
        problems.push(ConfigProblem::new(
            format!("{key}.from"),
            format!("{:?} is not an email address", c.from),
        ));
    }
    if c.to.is_empty() {
        problems.push(ConfigProblem::new(
            format!("{key}.to"),
            "must list at least one recipient",
        ));
    }
    for (i, to) in c.to.iter().enumerate() {
        if to.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(ConfigProblem::new(
                format!("{key}.to[{i}]"),
                format!("{to:?} is not an email address"),
            ));
        }
    }
    match (&c.username, &c.password) {
        (Some(_), None) => problems.push(ConfigProblem::new(
            format!("{key}.password"),
            "username is set but password is not",
        )),
        (None, Some(_)) => problems.push(ConfigProblem::new(
            format!("{key}.username"),
            "password is set but username is not",
        )),
        _ => {}
    }
}

fn check_url(key: &str, url: &SecretUrl, problems: &mut Vec<ConfigProblem>) {
    // The parse error never echoes the URL, which may hold a token.
    match reqwest::Url::parse(url.expose()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        Ok(parsed) => problems.push(ConfigProblem::new(
            key,
            format!(
                "must be an http(s) URL with a host, got scheme {:?}",
                parsed.scheme()
            ),
        )),
        Err(e) => problems.push(ConfigProblem::new(key, format!("not a URL: {e}"))),
    }
}

fn check_secret(key: &str, secret: Option<&Secret>, problems: &mut Vec<ConfigProblem>) {
    if secret.is_some_and(|s| s.expose().trim().is_empty()) {
        problems.push(ConfigProblem::new(
            key,
            "is empty; remove it to send unsigned",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
channels:
  ops-dingtalk:
    type: dingtalk
    webhook_url: "https://oapi.dingtalk.com/robot/send?access_token=abc"
    secret: SEC123
    max_attempts: 3
    initial_backoff: 500ms
  oncall-mail:
    type: email
    smtp_host: smtp.example.com
    security: tls
    username: vigil
    password: hunter2
    from: "Vigil <vigil@example.com>"
    to: [oncall@example.com]
  audit:
    type: webhook
    url: "https://hooks.example.com/vigil"
    headers:
      Authorization: "Bearer t0k"
    secret: s3cret
routes:
  - name: critical-to-chat
    min_severity: critical
    services: ["order-*", "checkout"]
    kinds: [alert, patrol]
    channels: [ops-dingtalk]
  - name: everything
    channels: [audit, oncall-mail]
"#;

    fn parse(yaml: &str) -> NotifyConfig {
        serde_norway::from_str(yaml).expect("example config parses")
    }

    #[test]
    fn example_parses_with_defaults_and_validates() {
        let config = parse(EXAMPLE);
        config.validate().expect("example config is valid");
        let ding = &config.channels["ops-dingtalk"];
        assert_eq!(ding.delivery.max_attempts, 3);
        assert_eq!(ding.delivery.initial_backoff, Duration::from_millis(500));
        assert_eq!(ding.delivery.rate_limit_per_minute, 20);
        assert_eq!(ding.delivery.timeout, Duration::from_secs(10));
        let ChannelKind::Email(mail) = &config.channels["oncall-mail"].kind else {
            panic!("oncall-mail should be an email channel");
        };
        assert_eq!(mail.port(), 465);
        assert_eq!(config.routes[0].min_severity, Severity::Critical);
        assert_eq!(config.routes[1].min_severity, Severity::Info);
    }

    #[test]
    fn round_trips_through_yaml() {
        let config = parse(EXAMPLE);
        let text = serde_norway::to_string(&config).expect("config serialises");
        assert_eq!(parse(&text), config);
    }

    #[test]
    fn debug_output_hides_secrets_and_tokens() {
        let debug = format!("{:?}", parse(EXAMPLE));
        for secret in ["abc", "SEC123", "hunter2", "t0k", "s3cret", "/vigil"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert!(debug.contains("https://oapi.dingtalk.com/…"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let yaml =
            "channels:\n  x:\n    type: slack\n    webhook_url: https://h/x\n    colour: red\n";
        let err = serde_norway::from_str::<NotifyConfig>(yaml).expect_err("unknown key refused");
        assert!(err.to_string().contains("colour"), "{err}");
        let yaml = "channels:\n  x:\n    type: pager\n    url: https://h/x\n";
        let err = serde_norway::from_str::<NotifyConfig>(yaml).expect_err("unknown type refused");
        assert!(err.to_string().contains("pager"), "{err}");
    }

    #[test]
    fn validation_names_each_bad_key() {
        let yaml = r#"
channels:
  ops:
    type: wecom
    webhook_url: "not a url"
  hook:
    type: webhook
    url: "ftp://example.com/x"
    template: "{ \"a\": {{ title }"
    max_attempts: 0
  mail:
    type: email
    smtp_host: ""
    from: "nobody"
    to: []
    username: u
    initial_backoff: 1m
    max_backoff: 10s
routes:
  - name: r
    services: ["order-[", "ok-*"]
    channels: [ops, pager]
  - name: r
    channels: []
"#;
        let problems = parse(yaml).validate().expect_err("config is invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "notify.channels.ops.webhook_url",
            "notify.channels.hook.url",
            "notify.channels.hook.template",
            "notify.channels.hook.max_attempts",
            "notify.channels.mail.smtp_host",
            "notify.channels.mail.from",
            "notify.channels.mail.to",
            "notify.channels.mail.password",
            "notify.channels.mail.initial_backoff",
            "notify.routes[0].services[0]",
            "notify.routes[0].channels[1]",
            "notify.routes[1].name",
            "notify.routes[1].channels",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        assert!(!keys.contains(&"notify.routes[0].services[1]"));
        let unknown = problems
            .iter()
            .find(|p| p.key == "notify.routes[0].channels[1]")
            .expect("unknown channel reported");
        assert!(unknown.message.contains("pager"), "{unknown}");
        assert!(
            unknown
                .to_string()
                .starts_with("notify.routes[0].channels[1]: "),
            "{unknown}"
        );
    }

    #[test]
    fn redaction_keeps_scheme_and_host_only() {
        assert_eq!(
            redact_url("https://oapi.dingtalk.com/robot/send?access_token=abc"),
            "https://oapi.dingtalk.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8080/hook/T1/B2/xyz"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(redact_url("https://h.example"), "https://h.example");
        assert_eq!(redact_url("garbage"), "<invalid url>");
    }
}
