//! The agent ingest endpoint: a batch posted (in parts, one part twice) is read
//! back through `TelemetrySource` from the embedded store behind the trait;
//! wrong versions, oversize bodies and missing or read-only tokens are refused
//! with the right status and a message that says what to do.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use vigil_api::{ApiConfig, ApiDeps, AppState, AuthConfig, Scope, TokenConfig};
use vigil_model::{
    EntityFilter, EntityId, EntityKind, IngestBatch, L7Protocol, Peer, RequestRecord,
    ResponseStatus, SeriesQuery, StatementOrder, StatementQuery, TelemetrySource, TimeRange,
    Timestamp, INGEST_PROTOCOL_VERSION,
};
use vigil_store::embedded::EmbeddedStore;

const READ: &str = "read-token-0123456789";
const WRITE: &str = "agent-token-0123456789";
/// A minute boundary.
const T0: i64 = 1_700_000_040;

fn config() -> ApiConfig {
    let token = |name: &str, token: &str, scopes: Vec<Scope>| TokenConfig {
        name: name.to_owned(),
        token: token.to_owned(),
        token_env: None,
        scopes,
    };
    ApiConfig {
        auth: AuthConfig {
            tokens: vec![
                token("dashboard", READ, vec![Scope::Read]),
                token("agent", WRITE, vec![Scope::Read, Scope::Write]),
            ],
            allow_unauthenticated: false,
        },
        ingest_max_body_bytes: 64 * 1024,
        ..ApiConfig::default()
    }
}

fn app(telemetry: &Arc<EmbeddedStore>) -> Router {
    let deps = ApiDeps {
        source: telemetry.clone(),
        store: Arc::new(EmbeddedStore::open_in_memory().expect("state")),
        scheduler: None,
        notifier: None,
        clock: None,
        ingest: Some(telemetry.clone()),
    };
    vigil_api::router_with_state(
        Arc::new(AppState::new(config(), deps)),
        CancellationToken::new(),
    )
}

fn record(
    at_s: i64,
    ms: u64,
    command: &str,
    status: ResponseStatus,
    client_port: u16,
) -> RequestRecord {
    let peer = |port: u16, pid: u32, name: &str| Peer {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        port,
        pid,
        process_name: name.to_owned().into(),
        service: Default::default(),
        instance: Default::default(),
    };
    RequestRecord {
        start_us: u64::try_from(at_s).expect("time") * 1_000_000 + u64::from(client_port),
        duration_us: ms * 1000,
        protocol: L7Protocol::Redis,
        request_type: command.to_owned().into(),
        resource: format!("{command} cart:*").into(),
        endpoint: command.to_owned().into(),
        status,
        code: None,
        client: peer(client_port, 77, "checkout"),
        server: peer(6379, 9, "redis-server"),
        trace_id: Default::default(),
    }
}

fn post(body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/api/v1/ingest").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(body.into()).expect("request")
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn batch(records: Vec<RequestRecord>) -> String {
    serde_json::to_string(&IngestBatch {
        records,
        ..IngestBatch::new()
    })
    .expect("json")
}

#[tokio::test]
async fn posted_batches_read_back_through_telemetry_source() {
    let telemetry = Arc::new(EmbeddedStore::open_in_memory().expect("store"));
    let app = app(&telemetry);
    // Minute 0: 9 fast GETs and one failed slow SET, sent in two parts; minute 2: 3 GETs.
    let first: Vec<_> = (0..5)
        .map(|i| record(T0 + i, 2, "GET", ResponseStatus::Ok, 40_000 + i as u16))
        .collect();
    let mut second: Vec<_> = (5..9)
        .map(|i| record(T0 + i, 4, "GET", ResponseStatus::Ok, 40_000 + i as u16))
        .collect();
    second.push(record(
        T0 + 30,
        250,
        "SET",
        ResponseStatus::ServerError,
        41_000,
    ));
    let later: Vec<_> = (0..3)
        .map(|i| {
            record(
                T0 + 120 + i,
                8,
                "GET",
                ResponseStatus::Ok,
                42_000 + i as u16,
            )
        })
        .collect();
    for part in [&first, &second, &second, &later] {
        let (status, receipt) = send(&app, post(batch(part.clone()), Some(WRITE))).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["records"], json!(part.len()));
        assert_eq!(receipt["protocol"], json!(INGEST_PROTOCOL_VERSION));
    }

    let range = TimeRange::new(Timestamp(T0), Timestamp(T0 + 180)).expect("range");
    let cache = EntityId::new(EntityKind::Cache, "redis-server@10.0.0.5:6379");
    let series = telemetry
        .request_series(&SeriesQuery {
            filter: EntityFilter::ids(std::slice::from_ref(&cache)),
            range,
            step_secs: 60,
        })
        .await
        .expect("series");
    assert_eq!(series.len(), 1, "{series:?}");
    let metrics = &series[0].metrics;
    // Both parts of minute 0 count (the resent part once), as ClickHouse would count the rows.
    assert_eq!(metrics.requests[0], 10.0);
    assert_eq!(metrics.errors[0], 1.0);
    assert!((metrics.latency_mean_ms[0] - (5.0 * 2.0 + 4.0 * 4.0 + 250.0) / 10.0).abs() < 1e-9);
    // Ten values: the median interpolates between the 5th (2 ms) and 6th (4 ms).
    assert_eq!(metrics.latency_p50_ms[0], 3.0);
    assert!(metrics.requests[1].is_nan());
    assert_eq!(metrics.requests[2], 3.0);

    let statements = telemetry
        .top_statements(&StatementQuery {
            server: Some(cache.clone()),
            protocol: Some(L7Protocol::Redis),
            range,
            order: StatementOrder::TotalTime,
            limit: 10,
        })
        .await
        .expect("statements");
    let by_shape = |shape: &str| {
        statements
            .iter()
            .find(|s| s.shape == shape)
            .unwrap_or_else(|| panic!("no {shape} in {statements:?}"))
    };
    assert_eq!(by_shape("GET cart:*").count, 12);
    let set = by_shape("SET cart:*");
    assert_eq!((set.count, set.errors, set.latency_max_ms), (1, 1, 250.0));

    let edges = telemetry.call_edges(range).await.expect("edges");
    assert!(
        edges
            .iter()
            .any(|e| e.server == cache && e.client.as_str() == "service:checkout@10.0.0.5"),
        "{edges:?}"
    );
}

#[tokio::test]
async fn wrong_version_oversize_and_missing_tokens_are_refused_clearly() {
    let telemetry = Arc::new(EmbeddedStore::open_in_memory().expect("store"));
    let app = app(&telemetry);
    let one = batch(vec![record(T0, 1, "GET", ResponseStatus::Ok, 40_000)]);

    let (status, body) = send(&app, post(one.clone(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(&app, post(one.clone(), Some(READ))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("write scope"));

    let newer = INGEST_PROTOCOL_VERSION + 1;
    let (status, body) = send(
        &app,
        post(
            json!({"protocol": newer, "future_field": []}).to_string(),
            Some(WRITE),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "protocol_version");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("version {newer}"))
            && message.contains(&format!("version {INGEST_PROTOCOL_VERSION}"))
            && message.contains("upgrade vigil serve"),
        "{message}"
    );
    let (status, body) = send(&app, post(json!({"protocol": 0}).to_string(), Some(WRITE))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("upgrade vigil-agent"));

    let (status, body) = send(&app, post(r#"{"records": []}"#, Some(WRITE))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "protocol");

    let (status, body) = send(
        &app,
        post(
            json!({"protocol": INGEST_PROTOCOL_VERSION, "records": [{"start_us": "soon"}]})
                .to_string(),
            Some(WRITE),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["field"]
            .as_str()
            .expect("field")
            .starts_with("records[0]"),
        "{body}"
    );

    // Above api.ingest_max_body_bytes (64 KiB here), yet far below what the
    // general limit would allow for this route.
    let big = batch(
        (0..400)
            .map(|i| record(T0, 1, "GET", ResponseStatus::Ok, 40_000 + i))
            .collect(),
    );
    assert!(big.len() > 64 * 1024);
    let (status, _) = send(&app, post(big, Some(WRITE))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing refused was stored; the endpoint is counted in the metrics.
    let range = TimeRange::new(Timestamp(T0), Timestamp(T0 + 60)).expect("range");
    let series = telemetry
        .request_series(&SeriesQuery {
            filter: EntityFilter::all(),
            range,
            step_secs: 60,
        })
        .await
        .expect("series");
    assert!(series.is_empty(), "{series:?}");
    let request = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {READ}"))
        .body(Body::empty())
        .expect("request");
    let (_, text) = send(&app, request).await;
    let text = text
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| text.to_string());
    assert!(
        text.contains("vigil_api_ingest_batches_total{outcome=\"version_mismatch\"} 2"),
        "{text}"
    );
}
