//! Notifications: routes messages by severity and service to generic webhooks,
//! Slack, DingTalk, Feishu/Lark, WeCom and email, with retries, rate limits and
//! a record of every delivery attempt.
//!
//! Owns the channel formats and delivery. Does not own what a message says
//! (reports render it) or when it is sent (the binary decides).
//!
//! ```yaml
//! notify:
//!   channels:
//!     ops-dingtalk:
//!       type: dingtalk
//!       webhook_url: "https://oapi.dingtalk.com/robot/send?access_token=…"
//!       secret: "SEC…"
//!       rate_limit_per_minute: 20   # the robot's own limit; 0 = none
//!     oncall-mail:
//!       type: email
//!       smtp_host: smtp.example.com
//!       security: starttls          # none | starttls | tls
//!       username: vigil
//!       password: "…"
//!       from: "Vigil <vigil@example.com>"
//!       to: [oncall@example.com]
//!       max_attempts: 4
//!       initial_backoff: 1s
//!       max_backoff: 30s
//!       timeout: 10s
//!   routes:
//!     - name: critical
//!       min_severity: critical
//!       services: ["order-*", "checkout"]
//!       kinds: [alert, patrol]
//!       channels: [ops-dingtalk, oncall-mail]
//! ```
//!
//! Every send returns one [`DeliveryRecord`] per channel: delivered, failed
//! (with an error free of tokens) or rate limited. Secrets never reach logs:
//! config `Debug` output shows `***` and URLs as `scheme://host/…`.

mod config;
mod deliver;
mod format;
mod message;

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use vigil_model::Severity;

pub use config::{
    redact_url, ChannelConfig, ChannelKind, ConfigProblem, DeliverySettings, DingTalkConfig,
    EmailConfig, FeishuConfig, NotifyConfig, Route, Secret, SecretUrl, SlackConfig, SmtpSecurity,
    WeComConfig, WebhookConfig,
};
pub use format::{
    dingtalk_body, dingtalk_sign, feishu_body, feishu_sign, slack_body, template_context,
    truncate_utf8, webhook_signature, wecom_body, WebhookTemplate, DEFAULT_WEBHOOK_TEMPLATE,
    WECOM_MAX_BYTES,
};
pub use message::{Message, MessageKind};
pub use vigil_model::{DeliveryOutcome, DeliveryRecord};

/// Why a notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The configuration failed validation.
    #[error("invalid notification config: {}", join_problems(.0))]
    Config(Vec<ConfigProblem>),
    /// A channel's transport could not be set up (e.g. TLS for SMTP).
    #[error("notification channel {channel}: {reason}")]
    Channel {
        /// The channel's name.
        channel: String,
        /// What failed, without secrets.
        reason: String,
    },
    /// The shared HTTP client could not be built (TLS initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where one message goes: a channel, and the route that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Channel name.
    pub channel: String,
    /// Name of the first route that picked the channel.
    pub route: String,
}

/// Name of the implicit route used when the configuration has none.
pub const DEFAULT_ROUTE: &str = "default";

struct CompiledRoute {
    name: String,
    min_severity: Severity,
    services: Option<GlobSet>,
    kinds: Vec<MessageKind>,
    channels: Vec<String>,
}

impl CompiledRoute {
    fn matches(&self, message: &Message) -> bool {
        if message.severity < self.min_severity {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&message.kind) {
            return false;
        }
        match &self.services {
            None => true,
            Some(set) => message
                .services
                .iter()
                .any(|s| set.is_match(s.name()) || set.is_match(s.as_str())),
        }
    }
}

/// Delivers messages to the configured channels. Cheap to share behind an
/// `Arc`; rate limits are per channel and live as long as the notifier.
pub struct Notifier {
    channels: BTreeMap<String, Arc<deliver::Channel>>,
    routes: Vec<CompiledRoute>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Notifier {
    /// Validates `config` and sets up every channel.
    pub fn new(config: NotifyConfig) -> Result<Self, NotifyError> {
        config.validate().map_err(NotifyError::Config)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("vigil-notify/", env!("CARGO_PKG_VERSION")))
            // Webhooks do not redirect; following one would resend a signed body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(e.without_url().to_string()))?;
        let mut channels = BTreeMap::new();
        for (name, channel) in &config.channels {
            let built = deliver::Channel::new(name, channel, &client).map_err(|reason| {
                NotifyError::Channel {
                    channel: name.clone(),
                    reason,
                }
            })?;
            channels.insert(name.clone(), Arc::new(built));
        }
        let routes = if config.routes.is_empty() {
            vec![CompiledRoute {
                name: DEFAULT_ROUTE.to_string(),
                min_severity: Severity::Info,
                services: None,
                kinds: Vec::new(),
                channels: config.channels.keys().cloned().collect(),
            }]
        } else {
            config
                .routes
                .iter()
                .enumerate()
                .map(compile_route)
                .collect::<Result<_, _>>()?
        };
        Ok(Self { channels, routes })
    }

    /// The channels `message` goes to, each once, with the first route that
    /// chose it, in channel-name order.
    pub fn targets(&self, message: &Message) -> Vec<Target> {
        let mut chosen: BTreeMap<&str, &str> = BTreeMap::new();
        for route in self.routes.iter().filter(|r| r.matches(message)) {
            for channel in &route.channels {
                chosen
                    .entry(channel.as_str())
                    .or_insert(route.name.as_str());
            }
        }
        chosen
            .into_iter()
            .map(|(channel, route)| Target {
                channel: channel.to_string(),
                route: route.to_string(),
            })
            .collect()
    }

    /// Sends `message` to every target concurrently, with retries, and
    /// returns one record per channel (in channel-name order). A channel over
    /// its rate limit is not sent to and is recorded as `RateLimited`.
    pub async fn send(&self, message: &Message) -> Vec<DeliveryRecord> {
        let targets = self.targets(message);
        if targets.is_empty() {
            tracing::debug!(message_id = %message.id, "no route matches; nothing sent");
            return Vec::new();
        }
        let shared = Arc::new(message.clone());
        let mut tasks = tokio::task::JoinSet::new();
        let mut records = Vec::with_capacity(targets.len());
        for target in targets {
            let Some(channel) = self.channels.get(&target.channel).cloned() else {
                continue;
            };
            if !channel.admit() {
                records.push(channel.rate_limited(message, &target.route));
                continue;
            }
            let message = Arc::clone(&shared);
            tasks.spawn(async move { channel.deliver(&message, &target.route).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::error!(message_id = %message.id, error = %e, "delivery task died")
                }
            }
        }
        records.sort_by(|a, b| a.channel.cmp(&b.channel));
        records
    }
}

fn compile_route((index, route): (usize, &Route)) -> Result<CompiledRoute, NotifyError> {
    let problem = |message: String| {
        NotifyError::Config(vec![ConfigProblem {
            key: format!("notify.routes[{index}].services"),
            message,
        }])
    };
    let services = if route.services.is_empty() {
        None
    } else {
        let mut builder = GlobSetBuilder::new();
        for pattern in &route.services {
            builder.add(Glob::new(pattern).map_err(|e| problem(e.to_string()))?);
        }
        Some(builder.build().map_err(|e| problem(e.to_string()))?)
    };
    Ok(CompiledRoute {
        name: route.name.clone(),
        min_severity: route.min_severity,
        services,
        kinds: route.kinds.clone(),
        channels: route.channels.clone(),
    })
}
