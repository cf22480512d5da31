//! The API's contract: security (tokens and scopes, webhook signatures, body
//! limits, strict errors naming the field), OpenAPI against the routes,
//! metrics and health, MCP over HTTP, and parsers that never panic.

mod common;

use axum::body::Body;
use axum::http::{header, Request};
use common::{at_minute, get, post_json, router, send, state, MYSQL_START};
use proptest::prelude::*;
use serde_json::{json, Value};
use vigil_api::alerts::{parse, AlertSource};
use vigil_api::bench::alertmanager_payload;
use vigil_api::security::sign;
use vigil_api::{ApiConfig, AuthConfig, Scope, TokenConfig, WebhookConfig};

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";

fn secured() -> ApiConfig {
    ApiConfig {
        auth: AuthConfig {
            tokens: vec![
                TokenConfig {
                    name: "dashboard".to_owned(),
                    token: READ.to_owned(),
                    token_env: None,
                    scopes: vec![Scope::Read],
                },
                TokenConfig {
                    name: "alertmanager".to_owned(),
                    token: WRITE.to_owned(),
                    token_env: None,
                    scopes: vec![Scope::Read, Scope::Write],
                },
            ],
            allow_unauthenticated: false,
        },
        webhooks: WebhookConfig {
            hmac_secret: "webhook-secret".to_owned(),
            max_alerts_per_request: 20,
            ..WebhookConfig::default()
        },
        max_body_bytes: 64 * 1024,
        ..ApiConfig::default()
    }
}

fn with_token(mut request: Request<Body>, token: &str) -> Request<Body> {
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

#[tokio::test]
async fn tokens_and_scopes_guard_every_route() {
    let app = router(state(secured(), at_minute(MYSQL_START)).await);
    assert_eq!(send(&app, get("/healthz")).await.0, 200);
    assert_eq!(send(&app, get("/api/v1/incidents")).await.0, 401);
    assert_eq!(
        send(
            &app,
            with_token(get("/api/v1/incidents"), "wrong-token-xxxxxxxx")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(&app, with_token(get("/api/v1/incidents"), READ))
            .await
            .0,
        200
    );
    let feedback = || post_json("/api/v1/incidents/nope/feedback", r#"{"correct": true}"#);
    assert_eq!(send(&app, with_token(feedback(), READ)).await.0, 403);
    assert_eq!(send(&app, with_token(feedback(), WRITE)).await.0, 404);
    let alert = alertmanager_payload("sec-1", "gateway", at_minute(MYSQL_START + 10));
    let webhook = |body: Vec<u8>| post_json("/api/v1/alerts/alertmanager", body);
    assert_eq!(send(&app, webhook(alert.clone())).await.0, 401);
    assert_eq!(
        send(&app, with_token(webhook(alert.clone()), READ)).await.0,
        403
    );
    // A valid signature stands in for a token; a tampered body does not.
    let mut signed = webhook(alert.clone());
    signed.headers_mut().insert(
        "x-vigil-signature",
        sign(b"webhook-secret", &alert).parse().expect("header"),
    );
    let (status, text) = send(&app, signed).await;
    assert_eq!(status, 200, "{text}");
    let mut tampered = webhook(alertmanager_payload(
        "sec-2",
        "gateway",
        at_minute(MYSQL_START),
    ));
    tampered.headers_mut().insert(
        "x-vigil-signature",
        sign(b"webhook-secret", &alert).parse().expect("header"),
    );
    assert_eq!(send(&app, tampered).await.0, 401);
}

#[tokio::test]
async fn bad_bodies_get_json_errors_naming_the_field() {
    let app = router(state(secured(), at_minute(MYSQL_START)).await);
    let (status, text) = send(
        &app,
        with_token(
            post_json(
                "/api/v1/alerts/alertmanager",
                r#"{"alerts":[{"status":"firing","labels":{},"startsAt":42}]}"#,
            ),
            WRITE,
        ),
    )
    .await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).expect("json error");
    assert_eq!(error["error"]["field"], "alerts[0].startsAt");
    let (status, text) = send(
        &app,
        with_token(
            post_json("/api/v1/chat", r#"{"question": "", "colour": 1}"#),
            READ,
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("colour"), "{text}");
    let big = vec![b' '; 70 * 1024];
    let status = send(&app, with_token(post_json("/api/v1/chat", big), READ))
        .await
        .0;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_and_each_route_answers() {
    let app = router(state(ApiConfig::default(), at_minute(MYSQL_START)).await);
    let (status, text) = send(&app, get("/api/openapi.json")).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&text).expect("json");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, methods) in document["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut listed: Vec<(String, String)> = vigil_api::openapi::ROUTES
        .iter()
        .map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    listed.sort();
    assert_eq!(documented, listed);
    for (method, path) in listed {
        let concrete = path.replace("{id}", "x");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&concrete)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Body::from("{}"))
            .expect("request");
        let status = send(&app, request).await.0;
        assert!(
            status != 405 && (status != 404 || path.contains("{id}")),
            "{method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn metrics_and_readiness_are_served() {
    let app = router(state(ApiConfig::default(), at_minute(MYSQL_START)).await);
    assert_eq!(send(&app, get("/readyz")).await.0, 200);
    let (status, text) = send(&app, get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(text.contains("vigil_api_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/readyz\""), "{text}");
}

#[tokio::test]
async fn mcp_over_http_lists_and_calls_vigils_tools() {
    let app = router(state(ApiConfig::default(), at_minute(MYSQL_START + 10)).await);
    let rpc = |body: Value| {
        Request::post("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header(header::HOST, "localhost")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (status, text) = send(
        &app,
        rpc(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"vigil\""), "{text}");
    let (status, text) = send(
        &app,
        rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for tool in [
        "list_anomalies",
        "rank_root_causes",
        "slow_statements",
        "process_profile",
        "metric_query",
        "latest_report",
    ] {
        assert!(text.contains(tool), "{tool} missing: {text}");
    }
    let (status, text) = send(
        &app,
        rpc(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "rank_root_causes", "arguments": {"entity": "gateway"}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let fixture = common::fixture().await;
    assert!(text.contains(fixture.mysql.root_cause.as_str()), "{text}");
}

#[test]
fn binding_everywhere_without_tokens_is_refused() {
    let config = ApiConfig {
        listen: "0.0.0.0:0".to_owned(),
        ..ApiConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let error = runtime
        .block_on(async {
            let deps = vigil_api::ApiDeps {
                source: common::fixture().await.telemetry.clone(),
                store: std::sync::Arc::new(
                    vigil_store::embedded::EmbeddedStore::open_in_memory().expect("store"),
                ),
                scheduler: None,
                notifier: None,
                clock: None,
                ingest: None,
            };
            vigil_api::serve(config, deps, tokio_util::sync::CancellationToken::new()).await
        })
        .expect_err("refused");
    assert!(error.to_string().contains("api.listen"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn webhook_parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for source in [AlertSource::Alertmanager, AlertSource::Grafana, AlertSource::Deepflow, AlertSource::Generic] {
            let _ = parse(source, &body);
        }
    }

    #[test]
    fn webhook_parsers_never_panic_on_near_valid_json(
        status in "[a-z]{0,10}",
        starts in "[0-9T:Z+.-]{0,30}",
        key in "\\PC{0,8}",
        value in "\\PC{0,20}",
    ) {
        let body = json!({"version": "4", "alerts": [{"status": status, "startsAt": starts,
            "labels": {key.clone(): value.clone()}, "fingerprint": value}]}).to_string();
        for source in [AlertSource::Alertmanager, AlertSource::Grafana, AlertSource::Generic] {
            let _ = parse(source, body.as_bytes());
        }
        let deepflow = json!({"event_level": status, "start_time": starts, "tags": {key: "x"}}).to_string();
        let _ = parse(AlertSource::Deepflow, deepflow.as_bytes());
    }

    #[test]
    fn chat_parsers_never_panic(question in "\\PC{0,300}", raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        let parsed = vigil_assistant::chat::parse_question(&question);
        prop_assert!(parsed.window_minutes >= 1 && parsed.window_minutes <= 1440);
        let body = json!({"question": question}).to_string();
        let _ = vigil_api::handlers::parse_chat(body.as_bytes());
        let _ = vigil_api::handlers::parse_chat(&raw);
    }
}
