//! Shared builders for the integration tests: messages, fast channels and notifiers.

// reason: each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::json;
use vigil_model::{EntityId, EntityKind, Severity, Timestamp};
use vigil_notify::{
    ChannelConfig, ChannelKind, DeliverySettings, Message, MessageKind, Notifier, NotifyConfig,
    Route,
};

/// An alert about `services` with a digest, a link and two findings.
pub fn message(id: &str, severity: Severity, services: &[&str]) -> Message {
    Message {
        id: id.to_string(),
        kind: MessageKind::Alert,
        title: "Checkout latency".to_string(),
        severity,
        services: services
            .iter()
            .map(|s| EntityId::new(EntityKind::Service, s))
            .collect(),
        markdown: "## Findings\n- **checkout** p99 1.2s (baseline 180ms)\n- mysqld slow `SELECT`"
            .to_string(),
        text: "checkout p99 1.2s (baseline 180ms)".to_string(),
        html: None,
        link: Some("https://vigil.example/reports/42".to_string()),
        created: Timestamp::from_secs(1_750_000_000),
        extra: json!({"findings": [
            {"title": "checkout latency", "severity": "critical", "entity": "service:checkout"},
            {"title": "slow statement", "severity": "warning", "entity": "database:mysqld"},
        ]}),
    }
}

/// Delivery settings that retry quickly and do not rate limit.
pub fn fast_settings() -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_secs(5),
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        rate_limit_per_minute: 0,
    }
}

/// A channel of `kind` with [`fast_settings`].
pub fn fast(kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        kind,
        delivery: fast_settings(),
    }
}

/// A notifier over `channels` and `routes`.
pub fn notifier(channels: Vec<(&str, ChannelConfig)>, routes: Vec<Route>) -> Notifier {
    let config = NotifyConfig {
        channels: channels
            .into_iter()
            .map(|(name, channel)| (name.to_string(), channel))
            .collect(),
        routes,
    };
    Notifier::new(config).expect("test config is valid")
}
