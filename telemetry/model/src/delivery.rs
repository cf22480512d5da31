//! Delivery records: what happened to one notification on one channel.
//!
//! They live in the model so the store can keep them and the API can show them
//! without either knowing how notifications are sent.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The record of one message delivered (or not) to one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The message's id, also its idempotency key.
    pub message_id: String,
    /// The configured channel name (e.g. `ops-dingtalk`).
    pub channel: String,
    /// The route that chose the channel (the first, when several did).
    pub route: String,
    /// Attempts made; 0 when the message was never sent (rate limited).
    pub attempts: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// HTTP status of the last response, for HTTP channels that got one.
    pub http_status: Option<u16>,
    /// When the delivery finished.
    pub at: Timestamp,
    /// Wall time from the first attempt to the outcome, retries included.
    pub elapsed_ms: u64,
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver accepted the message.
    Delivered,
    /// Every attempt failed, or the receiver refused it for good.
    Failed {
        /// Why, without secrets (no tokens, no signed URLs).
        error: String,
    },
    /// Not sent: the channel's rate limit was exhausted.
    RateLimited,
}

impl DeliveryOutcome {
    /// Whether the receiver accepted the message.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_serialises_with_a_status_tag() {
        let failed = DeliveryOutcome::Failed {
            error: "HTTP 400".into(),
        };
        let json = serde_json::to_string(&failed).expect("outcome serialises");
        assert_eq!(json, r#"{"status":"failed","error":"HTTP 400"}"#);
        let back: DeliveryOutcome = serde_json::from_str(&json).expect("outcome parses");
        assert_eq!(back, failed);
    }
}
