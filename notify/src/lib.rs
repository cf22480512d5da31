//! Notifications: routes messages by severity and service to generic webhooks,
//! Slack, DingTalk, Feishu/Lark, WeCom and email, with retries, rate limits and
//! a record of every delivery attempt.
//!
//! Owns the channel formats and delivery. Does not own what a message says
//! (reports render it) or when it is sent (the binary decides).
