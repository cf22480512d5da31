//! Delivery to real local HTTP receivers (wiremock): payload shapes,
//! signatures, acknowledgements, retries, rate limits and routes.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{json, Value};
use vigil_model::Severity;
use vigil_notify::{
    ChannelKind, DeliveryOutcome, DingTalkConfig, FeishuConfig, MessageKind, Notifier,
    NotifyConfig, NotifyError, Route, Secret, SecretUrl, SlackConfig, WeComConfig, WebhookConfig,
    WECOM_MAX_BYTES,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use common::{fast, message, notifier};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receiver(at: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("receiver got a JSON body")
}

fn webhook(url: String, secret: Option<&str>, template: Option<&str>) -> ChannelKind {
    ChannelKind::Webhook(WebhookConfig {
        url: SecretUrl::new(url),
        headers: BTreeMap::from([("Authorization".to_string(), Secret::new("Bearer t0k"))]),
        template: template.map(str::to_string),
        secret: secret.map(Secret::new),
    })
}

#[tokio::test]
async fn webhook_receives_templated_json_with_a_valid_signature() {
    let server = receiver("/hook", ResponseTemplate::new(200)).await;
    let url = format!("{}/hook", server.uri());
    let n = notifier(
        vec![("audit", fast(webhook(url, Some("s3cret"), None)))],
        vec![],
    );
    let records = n
        .send(&message("m-1", Severity::Critical, &["checkout"]))
        .await;

    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.outcome, DeliveryOutcome::Delivered);
    assert_eq!((record.attempts, record.http_status), (1, Some(200)));
    assert_eq!(record.route, vigil_notify::DEFAULT_ROUTE);
    assert_eq!(record.message_id, "m-1");

    let got = requests(&server).await;
    assert_eq!(got.len(), 1);
    let request = &got[0];
    let body = json_body(request);
    assert_eq!(body["title"], "Checkout latency");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["kind"], "alert");
    assert_eq!(body["services"], json!(["service:checkout"]));
    assert_eq!(body["link"], "https://vigil.example/reports/42");
    assert!(body["markdown"]
        .as_str()
        .expect("markdown is a string")
        .contains("**checkout** p99"));
    assert_eq!(body["findings"][1]["title"], "slow statement");

    let signature = request
        .headers
        .get("x-vigil-signature")
        .expect("signature header")
        .to_str()
        .expect("ASCII header");
    let expected = format!("sha256={}", hex(&hmac(b"s3cret", &request.body)));
    assert_eq!(signature, expected);
    assert_eq!(
        request.headers.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Bearer t0k"[..])
    );
    assert_eq!(
        request
            .headers
            .get("x-vigil-message-id")
            .map(|v| v.as_bytes()),
        Some(&b"m-1"[..])
    );
    assert_eq!(
        request.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn webhook_uses_a_custom_template_and_escapes_values() {
    let server = receiver("/hook", ResponseTemplate::new(204)).await;
    let template = r#"{"msg": {{ label ~ ": " ~ title }}, "count": {{ findings | length }},
        "names": [{% for f in findings %}{{ f.title }}{% if not loop.last %},{% endif %}{% endfor %}]}"#;
    let n = notifier(
        vec![(
            "custom",
            fast(webhook(
                format!("{}/hook", server.uri()),
                None,
                Some(template),
            )),
        )],
        vec![],
    );
    let mut m = message("m-2", Severity::Warning, &["checkout"]);
    m.title = "quote \" and \\ backslash".to_string();
    let records = n.send(&m).await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);

    let got = requests(&server).await;
    let body = json_body(&got[0]);
    assert_eq!(body["msg"], "WARNING: quote \" and \\ backslash");
    assert_eq!(body["count"], 2);
    assert_eq!(body["names"], json!(["checkout latency", "slow statement"]));
    assert!(got[0].headers.get("x-vigil-signature").is_none());
}

#[tokio::test]
async fn slack_gets_blocks_with_header_mrkdwn_and_button() {
    let server = receiver(
        "/services/T1/B2/xyz",
        ResponseTemplate::new(200).set_body_string("ok"),
    )
    .await;
    let kind = ChannelKind::Slack(SlackConfig {
        webhook_url: SecretUrl::new(format!("{}/services/T1/B2/xyz", server.uri())),
    });
    let n = notifier(vec![("slack", fast(kind))], vec![]);
    let records = n
        .send(&message("m-3", Severity::Critical, &["checkout"]))
        .await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);

    let body = json_body(&requests(&server).await[0]);
    assert_eq!(body["text"], "[CRITICAL] Checkout latency");
    let blocks = body["blocks"].as_array().expect("blocks array");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "[CRITICAL] Checkout latency");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let section = blocks[1]["text"]["text"].as_str().expect("section text");
    assert!(section.starts_with("*Findings*"), "{section}");
    assert!(section.contains("*checkout* p99"), "{section}");
    assert_eq!(blocks[2]["type"], "actions");
    assert_eq!(
        blocks[2]["elements"][0]["url"],
        "https://vigil.example/reports/42"
    );
}

fn dingtalk(server: &MockServer, secret: Option<&str>) -> ChannelKind {
    ChannelKind::DingTalk(DingTalkConfig {
        webhook_url: SecretUrl::new(format!("{}/robot/send?access_token=tok123", server.uri())),
        secret: secret.map(Secret::new),
    })
}

#[tokio::test]
async fn dingtalk_url_is_signed_and_body_is_markdown() {
    let ok = ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"}));
    let server = receiver("/robot/send", ok).await;
    let secret = "SECabc123";
    let n = notifier(
        vec![("ding", fast(dingtalk(&server, Some(secret))))],
        vec![],
    );
    let records = n
        .send(&message("m-4", Severity::Warning, &["checkout"]))
        .await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);

    let got = requests(&server).await;
    let request = &got[0];
    let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
    assert_eq!(query["access_token"], "tok123");
    let timestamp = &query["timestamp"];
    assert!(timestamp.parse::<i64>().expect("numeric timestamp") > 1_600_000_000_000);
    let expected = base64::engine::general_purpose::STANDARD.encode(hmac(
        secret.as_bytes(),
        format!("{timestamp}\n{secret}").as_bytes(),
    ));
    assert_eq!(query["sign"], expected, "sign verifies with the secret");

    let body = json_body(request);
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["markdown"]["title"], "Checkout latency");
    let text = body["markdown"]["text"].as_str().expect("markdown text");
    assert!(
        text.starts_with("#### [WARNING] Checkout latency"),
        "{text}"
    );
    assert!(text.contains("**checkout** p99"), "{text}");
    assert!(
        text.contains("(https://vigil.example/reports/42)"),
        "{text}"
    );
}

#[tokio::test]
async fn dingtalk_errcode_is_a_failure_even_with_http_200() {
    let refused = ResponseTemplate::new(200)
        .set_body_json(json!({"errcode": 310000, "errmsg": "sign not match"}));
    let server = receiver("/robot/send", refused).await;
    let n = notifier(
        vec![("ding", fast(dingtalk(&server, Some("SECx"))))],
        vec![],
    );
    let records = n.send(&message("m-5", Severity::Critical, &[])).await;

    let record = &records[0];
    let DeliveryOutcome::Failed { error } = &record.outcome else {
        panic!("expected a failure, got {:?}", record.outcome);
    };
    assert!(error.contains("errcode 310000"), "{error}");
    assert!(error.contains("sign not match"), "{error}");
    assert_eq!(record.attempts, 1, "an errcode is not retried");
    assert_eq!(record.http_status, Some(200));
    assert!(!error.contains("tok123"), "no token in the error: {error}");
}

#[tokio::test]
async fn feishu_card_is_signed_and_carries_title_and_link() {
    let ok =
        ResponseTemplate::new(200).set_body_json(json!({"code": 0, "msg": "success", "data": {}}));
    let server = receiver("/open-apis/bot/v2/hook/abc", ok).await;
    let secret = "feishu-secret";
    let kind = ChannelKind::Feishu(FeishuConfig {
        webhook_url: SecretUrl::new(format!("{}/open-apis/bot/v2/hook/abc", server.uri())),
        secret: Some(Secret::new(secret)),
    });
    let n = notifier(vec![("lark", fast(kind))], vec![]);
    let records = n
        .send(&message("m-6", Severity::Critical, &["checkout"]))
        .await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);

    let body = json_body(&requests(&server).await[0]);
    let timestamp = body["timestamp"].as_str().expect("timestamp string");
    assert!(timestamp.parse::<i64>().expect("numeric timestamp") > 1_600_000_000);
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac(format!("{timestamp}\n{secret}").as_bytes(), b""));
    assert_eq!(body["sign"], expected, "sign verifies with the secret");

    assert_eq!(body["msg_type"], "interactive");
    let card = &body["card"];
    assert_eq!(
        card["header"]["title"]["content"],
        "[CRITICAL] Checkout latency"
    );
    assert_eq!(card["header"]["template"], "red");
    assert_eq!(card["elements"][0]["text"]["tag"], "lark_md");
    let content = card["elements"][0]["text"]["content"]
        .as_str()
        .expect("lark_md content");
    assert!(content.starts_with("**Findings**"), "{content}");
    assert_eq!(
        card["elements"][1]["actions"][0]["url"],
        "https://vigil.example/reports/42"
    );
}

#[tokio::test]
async fn feishu_nonzero_code_fails() {
    let refused = ResponseTemplate::new(200)
        .set_body_json(json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}));
    let server = receiver("/hook", refused).await;
    let kind = ChannelKind::Feishu(FeishuConfig {
        webhook_url: SecretUrl::new(format!("{}/hook", server.uri())),
        secret: None,
    });
    let n = notifier(vec![("lark", fast(kind))], vec![]);
    let records = n.send(&message("m-7", Severity::Info, &[])).await;
    let DeliveryOutcome::Failed { error } = &records[0].outcome else {
        panic!("expected a failure, got {:?}", records[0].outcome);
    };
    assert!(error.contains("code 19021"), "{error}");
    let body = json_body(&requests(&server).await[0]);
    assert!(body.get("sign").is_none(), "unsigned without a secret");
}

#[tokio::test]
async fn wecom_truncates_long_chinese_markdown_on_a_char_boundary() {
    let ok = ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"}));
    let server = receiver("/cgi-bin/webhook/send", ok).await;
    let kind = ChannelKind::WeCom(WeComConfig {
        webhook_url: SecretUrl::new(format!("{}/cgi-bin/webhook/send?key=k-1", server.uri())),
    });
    let n = notifier(vec![("wecom", fast(kind))], vec![]);
    let mut m = message("m-8", Severity::Critical, &["checkout"]);
    // 3-byte characters, with a 1-byte offset so a naive byte cut would split one.
    m.markdown = format!("x{}", "订单服务延迟升高，数据库慢查询。".repeat(200));
    assert!(m.markdown.len() > 2 * WECOM_MAX_BYTES);
    let records = n.send(&m).await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);

    let got = requests(&server).await;
    // The raw body must be valid UTF-8 JSON; serde would refuse a split character.
    let raw = std::str::from_utf8(&got[0].body).expect("body is UTF-8");
    let body: Value = serde_json::from_str(raw).expect("body is JSON");
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().expect("content");
    assert!(content.len() <= WECOM_MAX_BYTES, "{} bytes", content.len());
    assert!(
        content.len() > WECOM_MAX_BYTES - 64,
        "kept most of the text"
    );
    assert!(
        content.contains("[CRITICAL]</font> Checkout latency"),
        "{content}"
    );
    assert!(content.contains("订单服务延迟升高"));
    assert!(content.ends_with("(truncated)"));
}

#[tokio::test]
async fn retries_server_errors_then_delivers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let n = notifier(
        vec![(
            "hook",
            fast(webhook(format!("{}/h", server.uri()), None, None)),
        )],
        vec![],
    );
    let records = n.send(&message("m-9", Severity::Critical, &[])).await;
    let record = &records[0];
    assert_eq!(record.outcome, DeliveryOutcome::Delivered);
    assert_eq!(record.attempts, 3);
    assert_eq!(record.http_status, Some(200));
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let n = notifier(
        vec![(
            "hook",
            fast(webhook(format!("{}/h", server.uri()), None, None)),
        )],
        vec![],
    );
    let records = n.send(&message("m-10", Severity::Warning, &[])).await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);
    assert_eq!(records[0].attempts, 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = receiver(
        "/h",
        ResponseTemplate::new(400).set_body_string("bad payload"),
    )
    .await;
    let n = notifier(
        vec![(
            "hook",
            fast(webhook(format!("{}/h", server.uri()), None, None)),
        )],
        vec![],
    );
    let records = n.send(&message("m-11", Severity::Critical, &[])).await;
    let record = &records[0];
    assert_eq!(
        record.outcome,
        DeliveryOutcome::Failed {
            error: "HTTP 400: bad payload".to_string()
        }
    );
    assert_eq!(record.attempts, 1);
    assert_eq!(record.http_status, Some(400));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let server = receiver("/h", ResponseTemplate::new(503)).await;
    let mut channel = fast(webhook(format!("{}/h", server.uri()), None, None));
    channel.delivery.max_attempts = 2;
    let n = notifier(vec![("hook", channel)], vec![]);
    let records = n.send(&message("m-12", Severity::Critical, &[])).await;
    let DeliveryOutcome::Failed { error } = &records[0].outcome else {
        panic!("expected a failure, got {:?}", records[0].outcome);
    };
    assert!(
        error.starts_with("gave up after 2 attempts: HTTP 503"),
        "{error}"
    );
    assert_eq!(records[0].attempts, 2);
    assert_eq!(records[0].http_status, Some(503));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn network_errors_are_retried_and_never_leak_the_token() {
    // Bind then drop a listener: the port is then (almost surely) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address").port()
    };
    let kind = ChannelKind::WeCom(WeComConfig {
        webhook_url: SecretUrl::new(format!(
            "http://127.0.0.1:{port}/cgi-bin/webhook/send?key=TOPSECRETKEY"
        )),
    });
    let mut channel = fast(kind);
    channel.delivery.max_attempts = 2;
    let n = notifier(vec![("wecom", channel)], vec![]);
    let records = n.send(&message("m-13", Severity::Critical, &[])).await;
    let DeliveryOutcome::Failed { error } = &records[0].outcome else {
        panic!("expected a failure, got {:?}", records[0].outcome);
    };
    assert_eq!(records[0].attempts, 2);
    assert_eq!(records[0].http_status, None);
    assert!(error.starts_with("gave up after 2 attempts"), "{error}");
    assert!(!error.contains("TOPSECRETKEY"), "token leaked: {error}");
    assert!(!error.contains("/cgi-bin"), "path leaked: {error}");
}

#[tokio::test]
async fn rate_limit_keeps_the_third_message_back() {
    let server = receiver("/h", ResponseTemplate::new(200)).await;
    let mut channel = fast(webhook(format!("{}/h", server.uri()), None, None));
    channel.delivery.rate_limit_per_minute = 2;
    let n = notifier(vec![("hook", channel)], vec![]);
    let mut outcomes = Vec::new();
    for i in 0..3 {
        let records = n
            .send(&message(&format!("rl-{i}"), Severity::Critical, &[]))
            .await;
        assert_eq!(records.len(), 1);
        outcomes.push((records[0].outcome.clone(), records[0].attempts));
    }
    assert_eq!(
        outcomes,
        vec![
            (DeliveryOutcome::Delivered, 1),
            (DeliveryOutcome::Delivered, 1),
            (DeliveryOutcome::RateLimited, 0),
        ]
    );
    assert_eq!(requests(&server).await.len(), 2, "the third was not sent");
}

fn route(
    name: &str,
    min: Severity,
    services: &[&str],
    kinds: &[MessageKind],
    channels: &[&str],
) -> Route {
    Route {
        name: name.to_string(),
        min_severity: min,
        services: services.iter().map(|s| s.to_string()).collect(),
        kinds: kinds.to_vec(),
        channels: channels.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn routes_filter_by_severity_service_glob_and_kind() {
    let server = receiver("/pager", ResponseTemplate::new(200)).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let hook = |p: &str| fast(webhook(format!("{}/{p}", server.uri()), None, None));
    let n = notifier(
        vec![
            ("pager", hook("pager")),
            ("orders", hook("orders")),
            ("digest", hook("digest")),
        ],
        vec![
            route("critical", Severity::Critical, &[], &[], &["pager"]),
            route(
                "order-team",
                Severity::Warning,
                &["order-*", "database:mysqld*"],
                &[],
                &["orders", "pager"],
            ),
            route(
                "patrols",
                Severity::Info,
                &[],
                &[MessageKind::Patrol],
                &["digest"],
            ),
        ],
    );
    let names = |m: &vigil_notify::Message| {
        n.targets(m)
            .into_iter()
            .map(|t| format!("{}<-{}", t.channel, t.route))
            .collect::<Vec<_>>()
    };

    // Critical on checkout: only the critical route.
    assert_eq!(
        names(&message("a", Severity::Critical, &["checkout"])),
        ["pager<-critical"]
    );
    // Warning on order-api: the glob matches; pager comes once, via order-team.
    assert_eq!(
        names(&message("b", Severity::Warning, &["checkout", "order-api"])),
        ["orders<-order-team", "pager<-order-team"]
    );
    // Critical on order-api: pager is chosen by both routes, reported by the first.
    assert_eq!(
        names(&message("c", Severity::Critical, &["order-api"])),
        ["orders<-order-team", "pager<-critical"]
    );
    // Info on order-api: below order-team's floor; not a patrol.
    assert!(names(&message("d", Severity::Info, &["order-api"])).is_empty());
    // A patrol report at info: only the digest.
    let mut patrol = message("e", Severity::Info, &["checkout"]);
    patrol.kind = MessageKind::Patrol;
    assert_eq!(names(&patrol), ["digest<-patrols"]);

    // The same routing really sends: one request per chosen channel.
    let records = n
        .send(&message("c", Severity::Critical, &["order-api"]))
        .await;
    let sent: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.channel.as_str(), r.route.as_str()))
        .collect();
    assert_eq!(sent, [("orders", "order-team"), ("pager", "critical")]);
    assert!(records.iter().all(|r| r.outcome.is_delivered()));
    let mut paths: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/orders", "/pager"]);
}

#[tokio::test]
async fn one_failing_channel_does_not_stop_the_others() {
    let good = receiver("/ok", ResponseTemplate::new(200)).await;
    let bad = receiver("/bad", ResponseTemplate::new(404)).await;
    let n = notifier(
        vec![
            (
                "a-bad",
                fast(webhook(format!("{}/bad", bad.uri()), None, None)),
            ),
            (
                "b-good",
                fast(webhook(format!("{}/ok", good.uri()), None, None)),
            ),
        ],
        vec![],
    );
    let records = n.send(&message("m-14", Severity::Critical, &[])).await;
    assert_eq!(records.len(), 2);
    assert!(matches!(records[0].outcome, DeliveryOutcome::Failed { .. }));
    assert_eq!(records[1].outcome, DeliveryOutcome::Delivered);
}

#[test]
fn invalid_config_is_refused_naming_the_key() {
    let yaml = r#"
channels:
  ops:
    type: slack
    webhook_url: "hooks.slack.com/services/x"
routes:
  - name: all
    channels: [ops, missing]
"#;
    let config: NotifyConfig = serde_norway::from_str(yaml).expect("config parses");
    let err = Notifier::new(config).expect_err("config is invalid");
    let NotifyError::Config(problems) = &err else {
        panic!("expected config problems, got {err}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "notify.channels.ops.webhook_url",
            "notify.routes[0].channels[1]"
        ]
    );
    let text = err.to_string();
    assert!(text.contains("notify.channels.ops.webhook_url"), "{text}");
}
