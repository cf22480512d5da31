//! Export with no ClickHouse (root; Redis from scripts/services.sh): captured
//! requests go through the HTTP sink to a real `vigil-api` server backed by the
//! embedded store, are read back through `TelemetrySource`, and survive the
//! server being down (spooled, then replayed, none lost); profiles and
//! resources go the same way; a server of another protocol version is refused
//! with a message naming both versions.

mod common;

use common::{redis_commands, unique_letters, wait_until};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_agent::config::VigilExportConfig;
use vigil_agent::export::{Exporter, Spool, VigilSink};
use vigil_agent::AgentError;
use vigil_api::{ApiConfig, ApiDeps, AuthConfig, Scope, TokenConfig};
use vigil_model::{
    EntityId, EntityKind, FoldedStack, L7Protocol, Profile, ResourceMetric, ResourceSeries, Series,
    StatementOrder, StatementQuery, TelemetrySource, TimeRange, Timestamp,
};
use vigil_store::embedded::EmbeddedStore;

const TOKEN: &str = "agent-ingest-token-0123456789";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `vigil serve`'s API on `address`, writing into `store`; stopped by cancelling the token.
async fn start_server(
    address: SocketAddr,
    store: &Arc<EmbeddedStore>,
) -> (CancellationToken, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .expect("bind the API port");
    let config = ApiConfig {
        listen: address.to_string(),
        auth: AuthConfig {
            tokens: vec![TokenConfig {
                name: "agent".to_owned(),
                token: TOKEN.to_owned(),
                token_env: None,
                scopes: vec![Scope::Read, Scope::Write],
            }],
            allow_unauthenticated: false,
        },
        ..ApiConfig::default()
    };
    let deps = ApiDeps {
        source: store.clone(),
        store: Arc::new(EmbeddedStore::open_in_memory().expect("state")),
        scheduler: None,
        notifier: None,
        clock: None,
        ingest: Some(store.clone()),
    };
    let shutdown = CancellationToken::new();
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            vigil_api::serve_on(listener, config, deps, shutdown)
                .await
                .expect("serve");
        })
    };
    (shutdown, task)
}

fn sink_config(address: SocketAddr) -> VigilExportConfig {
    VigilExportConfig {
        url: format!("http://{address}"),
        token: TOKEN.to_owned(),
        timeout_secs: 2,
        // Small bodies, so one export spans several requests.
        max_records_per_request: 7,
    }
}

/// Executions of `shape` on any Redis server in the last hour, read through `TelemetrySource`.
async fn executions(source: &dyn TelemetrySource, shape: &str) -> u64 {
    let now = now_secs();
    let range = TimeRange::new(Timestamp(now - 3600), Timestamp(now + 120)).expect("range");
    source
        .top_statements(&StatementQuery {
            server: None,
            protocol: Some(L7Protocol::Redis),
            range,
            order: StatementOrder::TotalTime,
            limit: 1000,
        })
        .await
        .expect("statements")
        .iter()
        .filter(|s| s.shape == shape)
        .map(|s| s.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_requests_reach_vigil_serve_and_survive_its_outage() {
    let redis_port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    let tok = unique_letters();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        EmbeddedStore::open(&dir.path().join("vigil.db"), Default::default())
            .await
            .expect("embedded store"),
    );
    let address: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let (shutdown, server) = start_server(address, &store).await;

    let sink = VigilSink::new(&sink_config(address)).expect("sink");
    let receipt = sink.check().await.expect("handshake");
    assert_eq!(receipt.protocol, vigil_model::INGEST_PROTOCOL_VERSION);
    let exporter = Exporter::new(
        sink.clone(),
        Spool::open(&dir.path().join("spool"), 64 << 20).expect("spool"),
        1000,
    );
    let counters = exporter.counters.clone();
    let (capture, records) = common::capture(&[redis_port], true);
    let stop = Arc::new(AtomicBool::new(false));
    let export = tokio::spawn(exporter.run(
        records.into_receiver(),
        Duration::from_millis(200),
        stop.clone(),
    ));

    // Server up: batches are stored directly.
    let before: String = (0..20)
        .map(|i| format!("SET before:{tok}:{i} v\n"))
        .collect();
    redis_commands(redis_port, &before);
    wait_until(Duration::from_secs(20), "direct writes", || {
        counters.written.load(Ordering::Relaxed) >= 20
    })
    .await;

    // Server down: requests go to the spool.
    shutdown.cancel();
    server.await.expect("server stopped");
    let during: String = (0..30)
        .map(|i| format!("SET during:{tok}:{i} v\n"))
        .collect();
    redis_commands(redis_port, &during);
    wait_until(Duration::from_secs(20), "spooling", || {
        counters.spooled.load(Ordering::Relaxed) >= 30
    })
    .await;
    assert!(counters.spool_batches.load(Ordering::Relaxed) > 0);

    // Back up on the same address: the spool is replayed, nothing is lost.
    let (shutdown, server) = start_server(address, &store).await;
    wait_until(Duration::from_secs(30), "replay", || {
        counters.spool_batches.load(Ordering::Relaxed) == 0
            && counters.replayed.load(Ordering::Relaxed) >= 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    export.await.expect("join").expect("exporter");
    capture.stop();
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);

    let source: &dyn TelemetrySource = store.as_ref();
    assert_eq!(executions(source, &format!("SET before:{tok}:*")).await, 20);
    assert_eq!(executions(source, &format!("SET during:{tok}:*")).await, 30);

    // Profiles and resources take the same road.
    let minute = Timestamp(now_secs()).floor_to(60);
    let range = TimeRange::new(minute, minute.plus_secs(60)).expect("range");
    let entity = EntityId::new(EntityKind::Process, &format!("busy-{tok}@127.0.0.1"));
    sink.write_profiles(&[Profile {
        entity: entity.clone(),
        range,
        unit: "samples".to_owned(),
        stacks: vec![FoldedStack {
            frames: "busy;main;spin".to_owned(),
            value: 99,
        }],
    }])
    .await
    .expect("profiles");
    let mut cpu = Series::empty(minute, 60, 1);
    cpu.values[0] = 0.5;
    sink.write_resources(&[ResourceSeries {
        entity: entity.clone(),
        metric: ResourceMetric::CpuCores,
        series: cpu,
    }])
    .await
    .expect("resources");
    let profile = source.profile(&entity, range).await.expect("profile");
    assert_eq!(profile.total(), 99);
    let series = source
        .resource_series(
            &vigil_model::SeriesQuery {
                filter: vigil_model::EntityFilter::ids(&[entity]),
                range,
                step_secs: 60,
            },
            ResourceMetric::CpuCores,
        )
        .await
        .expect("resources");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].series.values[0], 0.5);

    shutdown.cancel();
    server.await.expect("server stopped");
}

#[tokio::test]
async fn a_wrong_token_or_protocol_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        EmbeddedStore::open(&dir.path().join("vigil.db"), Default::default())
            .await
            .expect("store"),
    );
    let address: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let (shutdown, server) = start_server(address, &store).await;
    let wrong = VigilSink::new(&VigilExportConfig {
        token: "not-the-token-0123456789".to_owned(),
        ..sink_config(address)
    })
    .expect("sink");
    let err = wrong.check().await.expect_err("wrong token");
    assert!(
        matches!(&err, AgentError::Config(m) if m.contains("export.vigil.token")),
        "{err}"
    );
    let newer = vigil_model::IngestBatch {
        protocol: vigil_model::INGEST_PROTOCOL_VERSION + 1,
        ..vigil_model::IngestBatch::new()
    };
    let sink = VigilSink::new(&sink_config(address)).expect("sink");
    let err = sink.send(&newer).await.expect_err("version");
    assert!(
        matches!(&err, AgentError::Version(m) if m.contains("upgrade vigil serve")),
        "{err}"
    );
    shutdown.cancel();
    server.await.expect("server stopped");
}
