//! A simulated estate with planted faults, written once per test binary into
//! an in-memory embedded store, and API state over it.

#![allow(dead_code)] // reason: each test binary uses a different part of the fixture.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use vigil_api::{ApiConfig, ApiDeps, AppState};
use vigil_model::{
    EntityId, EntityKind, FaultKind, PlantedFault, RelationKind, TelemetrySource, Timestamp,
};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};
use vigil_store::embedded::EmbeddedStore;

/// The estate: 40 services over 27 h; a slow MySQL (the one `order-api`
/// calls) from minute 1470 for 40 minutes, a slow Redis from minute 1560.
pub struct Fixture {
    pub telemetry: Arc<EmbeddedStore>,
    pub mysql: PlantedFault,
    pub redis: PlantedFault,
    pub gateway: EntityId,
}

pub const MYSQL_START: u32 = 1470;
pub const REDIS_START: u32 = 1560;

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

fn config(faults: Vec<FaultSpec>) -> SimConfig {
    SimConfig {
        seed: 42,
        services: 40,
        start: DEFAULT_START,
        minutes: 1620,
        faults,
        ..SimConfig::default()
    }
}

async fn build() -> Fixture {
    // The layout does not depend on the faults: find order-api's database first.
    let plain = Estate::new(config(Vec::new())).expect("estate");
    let order = EntityId::new(EntityKind::Service, "order-api");
    let database = plain
        .topology()
        .relations
        .iter()
        .find(|r| {
            r.kind == RelationKind::Calls && r.from == order && r.to.kind() == EntityKind::Database
        })
        .map(|r| r.to.clone())
        .expect("order-api calls a database");
    let estate = Estate::new(config(vec![
        FaultSpec {
            kind: FaultKind::SlowMysql,
            target: Some(database),
            start_minute: MYSQL_START,
            duration_minutes: 40,
        },
        FaultSpec {
            kind: FaultKind::SlowRedis,
            target: None,
            start_minute: REDIS_START,
            duration_minutes: 50,
        },
    ]))
    .expect("estate");
    let store = EmbeddedStore::open_in_memory().expect("store");
    for batch in estate.batches(180) {
        store.write(&batch).await.expect("write");
    }
    let faults = estate.faults();
    let mysql = faults
        .iter()
        .find(|f| f.kind == FaultKind::SlowMysql)
        .expect("mysql")
        .clone();
    let redis = faults
        .iter()
        .find(|f| f.kind == FaultKind::SlowRedis)
        .expect("redis")
        .clone();
    Fixture {
        telemetry: Arc::new(store),
        mysql,
        redis,
        gateway: EntityId::new(EntityKind::Service, "gateway"),
    }
}

pub async fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build).await
}

/// Minutes after the estate's start.
pub fn at_minute(minute: u32) -> Timestamp {
    DEFAULT_START.plus_secs(i64::from(minute) * 60)
}

/// State over the fixture's telemetry, a fresh state store, and a clock pinned at `now`.
pub async fn state(config: ApiConfig, now: Timestamp) -> Arc<AppState> {
    let fixture = fixture().await;
    let source: Arc<dyn TelemetrySource> = fixture.telemetry.clone();
    let deps = ApiDeps {
        source,
        store: Arc::new(EmbeddedStore::open_in_memory().expect("state store")),
        scheduler: None,
        notifier: None,
        clock: Some(Arc::new(move || now)),
        ingest: None,
    };
    Arc::new(AppState::new(config, deps))
}

pub fn router(state: Arc<AppState>) -> Router {
    vigil_api::router_with_state(state, CancellationToken::new())
}

/// Sends a request; returns status and body text.
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}
