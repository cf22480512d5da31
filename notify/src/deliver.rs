//! Sending one message to one channel: the transports (HTTP, SMTP), how each
//! receiver says "accepted", and the retry loop around them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::BackoffBuilder as _;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use vigil_model::{DeliveryOutcome, DeliveryRecord, Timestamp};

use crate::config::{
    ChannelConfig, ChannelKind, DeliverySettings, EmailConfig, Secret, SecretUrl, SmtpSecurity,
};
use crate::format::{self, WebhookTemplate};
use crate::message::Message;

/// Longest receiver answer quoted in an error, so records stay small.
const BODY_SNIPPET: usize = 200;

/// One configured channel, ready to send.
pub(crate) struct Channel {
    pub(crate) name: String,
    pub(crate) settings: DeliverySettings,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    transport: Transport,
}

enum Transport {
    Http {
        client: reqwest::Client,
        target: HttpTarget,
    },
    Email(Box<EmailTransport>),
}

struct EmailTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

enum HttpTarget {
    Webhook {
        url: SecretUrl,
        headers: HeaderMap,
        template: Box<WebhookTemplate>,
        secret: Option<Secret>,
    },
    Slack {
        url: SecretUrl,
    },
    DingTalk {
        url: SecretUrl,
        secret: Option<Secret>,
    },
    Feishu {
        url: SecretUrl,
        secret: Option<Secret>,
    },
    WeCom {
        url: SecretUrl,
    },
}

/// How one attempt ended.
enum Attempt {
    Accepted {
        status: Option<u16>,
    },
    /// Worth another try (network error, 5xx, 429, SMTP 4xx).
    Retry {
        error: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Trying again would get the same answer.
    Refused {
        error: String,
        status: Option<u16>,
    },
}

impl Channel {
    /// Builds the channel's transport; `config` was validated.
    pub(crate) fn new(
        name: &str,
        config: &ChannelConfig,
        client: &reqwest::Client,
    ) -> Result<Self, String> {
        let transport = match &config.kind {
            ChannelKind::Webhook(c) => {
                let mut headers = HeaderMap::new();
                for (key, value) in &c.headers {
                    let key = HeaderName::from_bytes(key.as_bytes())
                        .map_err(|_| format!("header {key:?} is not a valid name"))?;
                    let mut value = HeaderValue::from_str(value.expose())
                        .map_err(|_| format!("header {key} has an invalid value"))?;
                    value.set_sensitive(true);
                    headers.insert(key, value);
                }
                http(
                    client,
                    HttpTarget::Webhook {
                        url: c.url.clone(),
                        headers,
                        template: Box::new(WebhookTemplate::new(c.template.as_deref())?),
                        secret: c.secret.clone(),
                    },
                )
            }
            ChannelKind::Slack(c) => http(
                client,
                HttpTarget::Slack {
                    url: c.webhook_url.clone(),
                },
            ),
            ChannelKind::DingTalk(c) => http(
                client,
                HttpTarget::DingTalk {
                    url: c.webhook_url.clone(),
                    secret: c.secret.clone(),
                },
            ),
            ChannelKind::Feishu(c) => http(
                client,
                HttpTarget::Feishu {
                    url: c.webhook_url.clone(),
                    secret: c.secret.clone(),
                },
            ),
            ChannelKind::WeCom(c) => http(
                client,
                HttpTarget::WeCom {
                    url: c.webhook_url.clone(),
                },
            ),
            ChannelKind::Email(c) => {
                Transport::Email(Box::new(email_transport(c, config.delivery.timeout)?))
            }
        };
        let limiter = std::num::NonZeroU32::new(config.delivery.rate_limit_per_minute)
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_minute(n)));
        Ok(Self {
            name: name.to_string(),
            settings: config.delivery.clone(),
            limiter,
            transport,
        })
    }

    /// Takes a token from the rate limit; false when the channel is over it.
    pub(crate) fn admit(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }

    /// Sends with retries and returns the record; never panics, never logs secrets.
    pub(crate) async fn deliver(&self, message: &Message, route: &str) -> DeliveryRecord {
        let started = Instant::now();
        let settings = &self.settings;
        let retries = usize::try_from(settings.max_attempts.saturating_sub(1)).unwrap_or(0);
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(settings.initial_backoff)
            .with_max_delay(settings.max_backoff)
            .with_factor(2.0)
            .with_max_times(retries)
            .with_jitter()
            .build();
        let mut attempts = 0;
        let (outcome, http_status) = loop {
            attempts += 1;
            match self.attempt(message).await {
                Attempt::Accepted { status } => break (DeliveryOutcome::Delivered, status),
                Attempt::Refused { error, status } => {
                    break (DeliveryOutcome::Failed { error }, status)
                }
                Attempt::Retry {
                    error,
                    status,
                    retry_after,
                } => match backoff.next() {
                    None => {
                        let error = format!("gave up after {attempts} attempts: {error}");
                        break (DeliveryOutcome::Failed { error }, status);
                    }
                    Some(delay) => {
                        // The receiver's Retry-After wins when longer, within the cap.
                        let delay = retry_after
                            .map(|r| r.min(settings.max_backoff).max(delay))
                            .unwrap_or(delay);
                        tracing::debug!(
                            channel = %self.name,
                            message_id = %message.id,
                            attempt = attempts,
                            delay_ms = delay.as_millis() as u64,
                            %error,
                            "delivery attempt failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        };
        let record = DeliveryRecord {
            message_id: message.id.clone(),
            channel: self.name.clone(),
            route: route.to_string(),
            attempts,
            outcome,
            http_status,
            at: now(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        match &record.outcome {
            DeliveryOutcome::Delivered => tracing::info!(
                channel = %record.channel,
                route = %record.route,
                message_id = %record.message_id,
                attempts,
                "notification delivered"
            ),
            DeliveryOutcome::Failed { error } => tracing::warn!(
                channel = %record.channel,
                route = %record.route,
                message_id = %record.message_id,
                attempts,
                %error,
                "notification failed"
            ),
            DeliveryOutcome::RateLimited => {}
        }
        record
    }

    /// A record for a message the rate limit kept back.
    pub(crate) fn rate_limited(&self, message: &Message, route: &str) -> DeliveryRecord {
        tracing::warn!(
            channel = %self.name,
            route,
            message_id = %message.id,
            limit_per_minute = self.settings.rate_limit_per_minute,
            "notification rate limited; not sent"
        );
        DeliveryRecord {
            message_id: message.id.clone(),
            channel: self.name.clone(),
            route: route.to_string(),
            attempts: 0,
            outcome: DeliveryOutcome::RateLimited,
            http_status: None,
            at: now(),
            elapsed_ms: 0,
        }
    }

    async fn attempt(&self, message: &Message) -> Attempt {
        match &self.transport {
            Transport::Http { client, target } => {
                http_attempt(client, target, message, self.settings.timeout).await
            }
            Transport::Email(email) => email_attempt(email, message).await,
        }
    }
}

fn http(client: &reqwest::Client, target: HttpTarget) -> Transport {
    Transport::Http {
        client: client.clone(),
        target,
    }
}

/// The receivers' dialects of "accepted".
#[derive(Clone, Copy)]
enum Ack {
    /// Any 2xx.
    Status,
    /// HTTP 200 and `errcode == 0` (DingTalk, WeCom).
    Errcode(&'static str),
    /// 2xx and `code == 0` (Feishu; older hooks answer `StatusCode`).
    Code,
}

async fn http_attempt(
    client: &reqwest::Client,
    target: &HttpTarget,
    message: &Message,
    timeout: Duration,
) -> Attempt {
    let (url, body, headers, ack) = match http_request(target, message) {
        Ok(request) => request,
        Err(error) => {
            return Attempt::Refused {
                error,
                status: None,
            }
        }
    };
    let response = client
        .post(url)
        .timeout(timeout)
        .headers(headers)
        .header(CONTENT_TYPE, "application/json")
        .header("X-Vigil-Message-Id", sanitize_header(&message.id))
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            return Attempt::Retry {
                error: describe_reqwest(e, timeout),
                status: None,
                retry_after: None,
            }
        }
    };
    let status = response.status();
    let code = Some(status.as_u16());
    let retry_after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return Attempt::Retry {
            error: format!("HTTP {}{}", status.as_u16(), snippet(&text)),
            status: code,
            retry_after,
        };
    }
    if !status.is_success() {
        return Attempt::Refused {
            error: format!("HTTP {}{}", status.as_u16(), snippet(&text)),
            status: code,
        };
    }
    match check_ack(ack, status, &text) {
        Ok(()) => Attempt::Accepted { status: code },
        Err(error) => Attempt::Refused {
            error,
            status: code,
        },
    }
}

/// URL, body, extra headers and acknowledgement rule for one attempt; built
/// per attempt so signature timestamps are fresh on retries.
fn http_request(
    target: &HttpTarget,
    message: &Message,
) -> Result<(String, String, HeaderMap, Ack), String> {
    let mut headers = HeaderMap::new();
    Ok(match target {
        HttpTarget::Webhook {
            url,
            headers: configured,
            template,
            secret,
        } => {
            let body = template.render(message)?;
            headers.extend(configured.clone());
            if let Some(secret) = secret {
                let signature = format::webhook_signature(secret.expose(), body.as_bytes());
                let value = HeaderValue::from_str(&signature)
                    .map_err(|_| "signature is not a header value".to_string())?;
                headers.insert("X-Vigil-Signature", value);
            }
            (url.expose().to_string(), body, headers, Ack::Status)
        }
        HttpTarget::Slack { url } => (
            url.expose().to_string(),
            format::slack_body(message).to_string(),
            headers,
            Ack::Status,
        ),
        HttpTarget::DingTalk { url, secret } => {
            let url = match secret {
                Some(secret) => {
                    format::dingtalk_signed_url(url.expose(), secret.expose(), now_millis())
                }
                None => url.expose().to_string(),
            };
            let body = format::dingtalk_body(message).to_string();
            (url, body, headers, Ack::Errcode("DingTalk"))
        }
        HttpTarget::Feishu { url, secret } => {
            let sign = secret.as_ref().map(|secret| {
                let ts = now().secs();
                (ts, format::feishu_sign(secret.expose(), ts))
            });
            let body = format::feishu_body(message, sign).to_string();
            (url.expose().to_string(), body, headers, Ack::Code)
        }
        HttpTarget::WeCom { url } => (
            url.expose().to_string(),
            format::wecom_body(message).to_string(),
            headers,
            Ack::Errcode("WeCom"),
        ),
    })
}

fn check_ack(ack: Ack, status: StatusCode, text: &str) -> Result<(), String> {
    let json = || serde_json::from_str::<serde_json::Value>(text).ok();
    match ack {
        Ack::Status => Ok(()),
        Ack::Errcode(who) => {
            if status != StatusCode::OK {
                return Err(format!("{who} answered HTTP {}", status.as_u16()));
            }
            let body = json().ok_or_else(|| format!("{who} answered no JSON{}", snippet(text)))?;
            match body.get("errcode").and_then(serde_json::Value::as_i64) {
                Some(0) => Ok(()),
                Some(code) => Err(format!(
                    "{who} errcode {code}: {}",
                    body.get("errmsg")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                )),
                None => Err(format!("{who} answered without errcode{}", snippet(text))),
            }
        }
        Ack::Code => {
            let body = json().ok_or_else(|| format!("Feishu answered no JSON{}", snippet(text)))?;
            let code = body
                .get("code")
                .or_else(|| body.get("StatusCode"))
                .and_then(serde_json::Value::as_i64);
            match code {
                Some(0) => Ok(()),
                Some(code) => Err(format!(
                    "Feishu code {code}: {}",
                    body.get("msg")
                        .or_else(|| body.get("StatusMessage"))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                )),
                None => Err(format!("Feishu answered without code{}", snippet(text))),
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare on webhooks and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// reqwest's message without the URL (which may carry a token), plus its causes.
fn describe_reqwest(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", format::fit(text, BODY_SNIPPET))
    }
}

/// Message ids go into headers; drop anything a header cannot carry.
fn sanitize_header(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

fn email_transport(config: &EmailConfig, timeout: Duration) -> Result<EmailTransport, String> {
    let host = config.smtp_host.as_str();
    let builder = match config.security {
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("STARTTLS setup for {host}: {e}"))?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| format!("TLS setup for {host}: {e}"))?,
    };
    let mut builder = builder.port(config.port()).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let from = config
        .from
        .parse::<Mailbox>()
        .map_err(|e| format!("from address: {e}"))?;
    let to = config
        .to
        .iter()
        .map(|to| {
            to.parse::<Mailbox>()
                .map_err(|e| format!("to address {to:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmailTransport {
        transport: builder.build(),
        from,
        to,
    })
}

/// The email for `message`: subject `[LABEL] title`, a text part (with the
/// link) and, when the message has one, the HTML report as the alternative.
pub(crate) fn build_email(
    from: &Mailbox,
    to: &[Mailbox],
    message: &Message,
) -> Result<lettre::Message, String> {
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(format!("[{}] {}", message.label(), message.title))
        .message_id(Some(format!("<{}@vigil>", email_id(&message.id))));
    for to in to {
        builder = builder.to(to.clone());
    }
    let mut text = message.text.clone();
    if let Some(link) = &message.link {
        text.push_str(&format!("\n\nFull report: {link}\n"));
    }
    let built = match &message.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        None => builder.singlepart(SinglePart::plain(text)),
    };
    built.map_err(|e| format!("cannot build email: {e}"))
}

/// A `Message-ID` local part from the message id (atext characters only).
fn email_id(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+=".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "message".to_string()
    } else {
        cleaned
    }
}

async fn email_attempt(email: &EmailTransport, message: &Message) -> Attempt {
    let built = match build_email(&email.from, &email.to, message) {
        Ok(built) => built,
        Err(error) => {
            return Attempt::Refused {
                error,
                status: None,
            }
        }
    };
    match email.transport.send(built).await {
        Ok(_) => Attempt::Accepted { status: None },
        Err(e) if e.is_permanent() || e.is_client() => Attempt::Refused {
            error: format!("SMTP: {e}"),
            status: None,
        },
        Err(e) => Attempt::Retry {
            error: format!("SMTP: {e}"),
            status: None,
            retry_after: None,
        },
    }
}

/// Now, as the model's timestamp.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    )
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
