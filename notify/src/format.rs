//! Payloads and signatures for each channel, as pure functions of a message,
//! so their shapes are tested without a network.

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{json, Value};
use vigil_model::{EntityId, Severity, Timestamp};

use crate::message::{severity_name, Message, MessageKind};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The generic webhook's default body, modelled on Coroot's webhook data:
/// status, title, severity, services, the digest, a link and the findings.
pub const DEFAULT_WEBHOOK_TEMPLATE: &str = r#"{
  "id": {{ id }},
  "kind": {{ kind }},
  "status": {{ status }},
  "title": {{ title }},
  "severity": {{ severity }},
  "services": {{ services }},
  "markdown": {{ markdown }},
  "text": {{ text }},
  "link": {{ link }},
  "created": {{ created }},
  "findings": {{ findings }}
}"#;

/// WeCom refuses markdown content over 4096 bytes.
pub const WECOM_MAX_BYTES: usize = 4096;
/// DingTalk's documented limit for a message's text.
pub const DINGTALK_MAX_BYTES: usize = 20_000;
/// Slack's limit on a section block's text (characters; bytes are stricter).
pub const SLACK_SECTION_MAX_BYTES: usize = 3000;
/// Slack's limit on a header block's text.
pub const SLACK_HEADER_MAX_BYTES: usize = 150;
/// Feishu cards must stay under 30 KB in all; leave room for the frame.
pub const FEISHU_MAX_BYTES: usize = 20_000;

const TRUNCATED: &str = "\n…(truncated)";

/// The compiled generic-webhook template; renders JSON with JSON auto-escaping,
/// so `{{ title }}` is a quoted, escaped string and `{{ services }}` an array.
#[derive(Debug)]
pub struct WebhookTemplate {
    env: minijinja::Environment<'static>,
}

impl WebhookTemplate {
    /// Compiles `source`, or the default template when `None`.
    pub fn new(source: Option<&str>) -> Result<Self, String> {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Json);
        env.add_template_owned(
            "body",
            source.unwrap_or(DEFAULT_WEBHOOK_TEMPLATE).to_string(),
        )
        .map_err(|e| format!("template does not compile: {e}"))?;
        Ok(Self { env })
    }

    /// Renders the body for `message`; fails unless the result is JSON.
    pub fn render(&self, message: &Message) -> Result<String, String> {
        let template = self
            .env
            .get_template("body")
            .map_err(|e| format!("template missing: {e}"))?;
        let text = template
            .render(minijinja::Value::from(minijinja::value::Serde(
                template_context(message),
            )))
            .map_err(|e| format!("template does not render: {e}"))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("template did not render JSON: {e}"))?;
        Ok(body.to_string())
    }

    /// Renders a sample message, so validation catches a template that cannot
    /// produce JSON before the first real incident does.
    pub fn check(&self) -> Result<(), String> {
        self.render(&sample_message()).map(|_| ())
    }
}

/// The template context: the message's fields, `status`, `findings` (from
/// `extra.findings`, else empty) and `extra` itself.
pub fn template_context(message: &Message) -> Value {
    let findings = message
        .extra
        .get("findings")
        .cloned()
        .unwrap_or_else(|| json!([]));
    json!({
        "id": message.id,
        "kind": message.kind.as_str(),
        "status": message.status(),
        "label": message.label(),
        "title": message.title,
        "severity": severity_name(message.severity),
        "services": message.services.iter().map(EntityId::as_str).collect::<Vec<_>>(),
        "service_names": message.services.iter().map(EntityId::name).collect::<Vec<_>>(),
        "markdown": message.markdown,
        "text": message.text,
        "has_html": message.html.is_some(),
        "link": message.link,
        "created": message.created.secs(),
        "findings": findings,
        "extra": message.extra,
    })
}

fn sample_message() -> Message {
    Message {
        id: "sample".into(),
        kind: MessageKind::Alert,
        title: "Sample \"quoted\" title".into(),
        severity: Severity::Warning,
        services: vec![EntityId::new(vigil_model::EntityKind::Service, "checkout")],
        markdown: "**bold**\nline".into(),
        text: "text".into(),
        html: None,
        link: Some("https://vigil.example/r/1".into()),
        created: Timestamp::from_secs(0),
        extra: json!({"findings": [{"title": "f", "severity": "warning"}]}),
    }
}

/// `sha256=<hex>` HMAC-SHA256 of `body` keyed by `secret`, for `X-Vigil-Signature`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let tag = hmac_sha256(secret.as_bytes(), body);
    let mut hex = String::with_capacity(7 + tag.len() * 2);
    hex.push_str("sha256=");
    for byte in tag {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// DingTalk's signature: base64(HMAC-SHA256 keyed by the secret over
/// `"{timestamp_ms}\n{secret}"`), not yet URL-encoded.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), message.as_bytes()))
}

/// The DingTalk URL with `&timestamp=…&sign=…` appended (sign URL-encoded).
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let sign = url_encode_base64(&dingtalk_sign(secret, timestamp_ms));
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timestamp={timestamp_ms}&sign={sign}")
}

/// Feishu's signature: base64(HMAC-SHA256 keyed by `"{timestamp_secs}\n{secret}"`
/// over an empty message).
pub fn feishu_sign(secret: &str, timestamp_secs: i64) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail; keep the error
    // path anyway rather than panic in a library.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Percent-encodes the three base64 characters that are not URL-safe.
fn url_encode_base64(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// char boundary.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` if it fits in `max_bytes`, else a prefix plus a truncation marker,
/// the whole still within `max_bytes`.
pub fn fit(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let room = max_bytes.saturating_sub(TRUNCATED.len());
    let mut out = truncate_utf8(text, room).to_string();
    if out.len() + TRUNCATED.len() <= max_bytes {
        out.push_str(TRUNCATED);
    }
    out
}

fn link_line(message: &Message) -> String {
    match &message.link {
        Some(link) => format!("\n\n[Open the full report]({link})"),
        None => String::new(),
    }
}

/// Slack incoming-webhook body: a fallback `text` and header/section/button blocks.
pub fn slack_body(message: &Message) -> Value {
    let header = fit(
        &format!("[{}] {}", message.label(), message.title),
        SLACK_HEADER_MAX_BYTES,
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header}}),
        json!({"type": "section", "text": {
            "type": "mrkdwn",
            "text": fit(&markdown_to_slack(&message.markdown), SLACK_SECTION_MAX_BYTES),
        }}),
    ];
    if let Some(link) = &message.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open report"},
            "url": link,
        }]}));
    }
    json!({"text": format!("[{}] {}", message.label(), message.title), "blocks": blocks})
}

/// DingTalk robot body: a markdown message.
pub fn dingtalk_body(message: &Message) -> Value {
    let text = format!(
        "#### [{}] {}\n\n{}{}",
        message.label(),
        message.title,
        message.markdown,
        link_line(message)
    );
    json!({
        "msgtype": "markdown",
        "markdown": {"title": message.title, "text": fit(&text, DINGTALK_MAX_BYTES)},
    })
}

/// The Feishu card's header colour: red, orange, blue, or green when resolved.
pub fn feishu_colour(message: &Message) -> &'static str {
    match (message.kind, message.severity) {
        (MessageKind::Resolved, _) => "green",
        (_, Severity::Critical) => "red",
        (_, Severity::Warning) => "orange",
        (_, Severity::Info) => "blue",
    }
}

/// Feishu/Lark custom-bot body: an interactive card, signed when `sign` is set.
pub fn feishu_body(message: &Message, sign: Option<(i64, String)>) -> Value {
    let mut elements = vec![json!({
        "tag": "div",
        "text": {"tag": "lark_md", "content": fit(&markdown_to_lark(&message.markdown), FEISHU_MAX_BYTES)},
    })];
    if let Some(link) = &message.link {
        elements.push(json!({"tag": "action", "actions": [{
            "tag": "button",
            "text": {"tag": "plain_text", "content": "Open report"},
            "type": "primary",
            "url": link,
        }]}));
    }
    let mut body = json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": format!("[{}] {}", message.label(), message.title)},
                "template": feishu_colour(message),
            },
            "elements": elements,
        },
    });
    if let (Some((timestamp, sign)), Some(map)) = (sign, body.as_object_mut()) {
        map.insert("timestamp".into(), Value::String(timestamp.to_string()));
        map.insert("sign".into(), Value::String(sign));
    }
    body
}

/// WeCom robot body: markdown content cut to 4096 bytes on a char boundary.
pub fn wecom_body(message: &Message) -> Value {
    let colour = match (message.kind, message.severity) {
        (MessageKind::Resolved, _) => "info",
        (_, Severity::Critical) => "warning",
        _ => "comment",
    };
    let content = format!(
        "## <font color=\"{colour}\">[{}]</font> {}\n{}{}",
        message.label(),
        message.title,
        message.markdown,
        link_line(message)
    );
    json!({"msgtype": "markdown", "markdown": {"content": fit(&content, WECOM_MAX_BYTES)}})
}

/// Slack's mrkdwn is not Markdown: `*bold*`, `<url|text>` links, no headings.
pub fn markdown_to_slack(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let line = match trimmed.strip_prefix('#') {
                Some(rest) => format!("*{}*", rest.trim_start_matches('#').trim()),
                None => line.replace("**", "*"),
            };
            convert_links(&line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lark's `lark_md` has no headings; they become bold lines.
fn markdown_to_lark(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| match line.trim_start().strip_prefix('#') {
            Some(rest) => format!("**{}**", rest.trim_start_matches('#').trim()),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[text](url)` → `<url|text>`.
fn convert_links(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let parsed = after.find("](").and_then(|close| {
            let url_part = &after[close + 2..];
            url_part
                .find(')')
                .map(|end| (&after[..close], &url_part[..end], &url_part[end + 1..]))
        });
        match parsed {
            Some((text, url, tail)) if !url.contains(' ') => {
                out.push_str(&rest[..open]);
                out.push_str(&format!("<{url}|{text}>"));
                rest = tail;
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_escapes_and_fills_fields() {
        let template = WebhookTemplate::new(None).expect("default template compiles");
        let body = template.render(&sample_message()).expect("renders JSON");
        let value: Value = serde_json::from_str(&body).expect("body is JSON");
        assert_eq!(value["title"], "Sample \"quoted\" title");
        assert_eq!(value["services"], json!(["service:checkout"]));
        assert_eq!(value["status"], "firing");
        assert_eq!(value["findings"][0]["title"], "f");
    }

    #[test]
    fn template_that_is_not_json_is_refused() {
        let template = WebhookTemplate::new(Some("title: {{ title }}")).expect("compiles");
        let err = template.check().expect_err("not JSON");
        assert!(err.contains("did not render JSON"), "{err}");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("aé", 2), "a");
        let long = "告警".repeat(2000);
        let cut = fit(&long, 100);
        assert!(cut.len() <= 100);
        assert!(cut.ends_with("(truncated)"));
    }

    #[test]
    fn slack_conversion_handles_headings_bold_and_links() {
        let out = markdown_to_slack("## Findings\n**checkout** is slow, see [run](https://v/r/1)");
        assert_eq!(
            out,
            "*Findings*\n*checkout* is slow, see <https://v/r/1|run>"
        );
        assert_eq!(markdown_to_slack("a [b] c"), "a [b] c");
    }

    #[test]
    fn dingtalk_url_encodes_the_signature() {
        let url = dingtalk_signed_url("https://d/robot/send?access_token=t", "SEC", 1_000);
        assert!(url.starts_with("https://d/robot/send?access_token=t&timestamp=1000&sign="));
        let sign = url.rsplit("sign=").next().expect("sign present");
        assert!(!sign.contains('+') && !sign.contains('/') && !sign.contains('='));
    }
}
