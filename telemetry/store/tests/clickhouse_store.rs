//! The ClickHouse store against a real server (`./scripts/test.sh` starts one
//! and sets `VIGIL_TEST_CLICKHOUSE_URL`). Every test uses its own databases.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use vigil_model::{
    Entity, EntityFilter, EntityId, EntityKind, Event, EventKind, FoldedStack, L7Protocol, Peer,
    Profile, RequestRecord, ResourceMetric, ResourceSeries, ResponseStatus, SampleQuery, Series,
    SeriesQuery, SourceError, StatementOrder, StatementQuery, TelemetrySource, TimeRange,
    Timestamp, Topology,
};
use vigil_store::clickhouse::{
    ClickHouseConfig, ClickHouseError, ClickHouseStore, ProfileCompression, RequestLog, MIGRATIONS,
};

/// 2023-11-14 21:00:00 UTC, a whole hour (so 3- and 5-minute steps align).
const T0: i64 = 1_699_995_600;

fn server_url() -> String {
    std::env::var("VIGIL_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "VIGIL_TEST_CLICKHOUSE_URL is not set: run ./scripts/test.sh (it starts ClickHouse \
             via scripts/services.sh and exports the URL)"
        )
    })
}

/// A config whose every database name is unique to this test.
fn fresh_config(request_log: RequestLog) -> ClickHouseConfig {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let tag = format!(
        "t{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    ClickHouseConfig {
        url: server_url(),
        request_log,
        ..ClickHouseConfig::default()
    }
    .with_database_suffix(&tag)
}

async fn fresh_store(request_log: RequestLog) -> ClickHouseStore {
    let store = ClickHouseStore::connect(fresh_config(request_log))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store.create_deepflow_mirror().await.expect("mirror");
    store
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn peer(ip_last: u8, port: u16, pid: u32, process: &str, service: &str) -> Peer {
    Peer {
        ip: ip(ip_last),
        port,
        pid,
        process_name: process.to_owned().into(),
        service: service.to_owned().into(),
        instance: Default::default(),
    }
}

fn record(
    at_secs: i64,
    duration_ms: u64,
    client: &Peer,
    server: &Peer,
    protocol: L7Protocol,
) -> RequestRecord {
    RequestRecord {
        start_us: u64::try_from(at_secs).expect("positive") * 1_000_000,
        duration_us: duration_ms * 1000,
        protocol,
        request_type: "GET".into(),
        resource: "/orders".into(),
        endpoint: "GET /orders".into(),
        status: ResponseStatus::Ok,
        code: Some(200),
        client: client.clone(),
        server: server.clone(),
        trace_id: Default::default(),
    }
}

fn range(minutes: i64) -> TimeRange {
    TimeRange::new(Timestamp(T0), Timestamp(T0 + 60 * minutes)).expect("valid range")
}

fn series_query(filter: EntityFilter, minutes: i64) -> SeriesQuery {
    SeriesQuery {
        filter,
        range: range(minutes),
        step_secs: 60,
    }
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance
}

/// The gateway (an OTel service "gateway" on 10.0.0.1:8080, pid 100) calls
/// "api" (OTel, 10.0.0.2:8080, pid 200) 100 times in minute 0 with durations
/// 1..=100 ms, five of them failing; api calls MySQL (no service name) 10
/// times with durations 10..=100 ms.
fn scenario() -> Vec<RequestRecord> {
    let gateway_as_client = peer(1, 40_000, 100, "gateway", "gateway");
    let gateway_as_server = peer(1, 8080, 100, "gateway", "gateway");
    let api_as_server = peer(2, 8080, 200, "api", "api");
    let api_as_client = peer(2, 41_000, 200, "api", "api");
    let mysql = peer(5, 3306, 500, "mysqld", "");
    let outside = peer(9, 50_000, 900, "curl", "");
    let mut records = Vec::new();
    for ms in 1..=100u64 {
        let mut r = record(
            T0 + (ms as i64 % 60),
            ms,
            &gateway_as_client,
            &api_as_server,
            L7Protocol::Http,
        );
        if ms % 20 == 0 {
            r.status = ResponseStatus::ServerError;
            r.code = Some(500);
        }
        records.push(r);
    }
    for i in 1..=10u64 {
        let mut r = record(T0 + 5, i * 10, &api_as_client, &mysql, L7Protocol::Mysql);
        r.request_type = "SELECT".into();
        r.resource = "SELECT * FROM orders WHERE id = ?".into();
        r.endpoint = r.resource.clone();
        r.code = None;
        records.push(r);
    }
    // Someone outside calls the gateway once, so the gateway is also a server.
    records.push(record(
        T0 + 1,
        3,
        &outside,
        &gateway_as_server,
        L7Protocol::Http,
    ));
    records
}

fn id(text: &str) -> EntityId {
    text.parse().expect("valid id")
}

#[tokio::test]
async fn migrate_twice_is_idempotent_and_recorded() {
    let store = ClickHouseStore::connect(fresh_config(RequestLog::Deepflow))
        .await
        .expect("connect");
    assert!(!store.server_version().is_empty());
    let first = store.migrate().await.expect("first migrate");
    let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        first.applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        all
    );
    assert!(first.already_applied.is_empty());
    let second = store.migrate().await.expect("second migrate");
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.already_applied, all);
    assert_eq!(second.current_version, *all.last().expect("some migration"));
    assert_eq!(store.applied_versions().await.expect("versions"), all);
}

#[tokio::test]
async fn request_metrics_are_aggregated_in_clickhouse() {
    let store = fresh_store(RequestLog::Deepflow).await;
    store
        .write_deepflow_records(&scenario())
        .await
        .expect("write");

    let series = store
        .request_series(&series_query(EntityFilter::all(), 2))
        .await
        .expect("series");
    let ids: Vec<&str> = series.iter().map(|s| s.entity.as_str()).collect();
    assert_eq!(
        ids,
        [
            "database:mysqld@10.0.0.5:3306",
            "service:api",
            "service:gateway"
        ]
    );
    let api = &series[1].metrics;
    assert_eq!(api.len(), 2);
    assert_eq!(
        api.requests[0], 100.0,
        "client-side rows must not be counted"
    );
    assert_eq!(api.errors[0], 5.0);
    assert!(
        close(api.latency_mean_ms[0], 50.5, 1e-9),
        "{}",
        api.latency_mean_ms[0]
    );
    assert!(
        close(api.latency_p50_ms[0], 50.5, 0.5),
        "{}",
        api.latency_p50_ms[0]
    );
    assert!(
        close(api.latency_p90_ms[0], 90.1, 0.5),
        "{}",
        api.latency_p90_ms[0]
    );
    assert!(
        close(api.latency_p99_ms[0], 99.0, 0.5),
        "{}",
        api.latency_p99_ms[0]
    );
    assert!(
        api.requests[1].is_nan() && api.latency_p99_ms[1].is_nan(),
        "missing minute is a gap"
    );

    // Five-minute steps merge exactly (quantiles are computed from the rows).
    let wide = store
        .request_series(&SeriesQuery {
            filter: EntityFilter::ids(&[id("service:api")]),
            range: range(5),
            step_secs: 300,
        })
        .await
        .expect("wide");
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[0].metrics.requests, vec![100.0]);
    assert!(close(wide[0].metrics.latency_p99_ms[0], 99.0, 0.5));

    let databases = store
        .request_series(&series_query(
            EntityFilter::kinds(&[EntityKind::Database]),
            1,
        ))
        .await
        .expect("databases");
    assert_eq!(databases.len(), 1);
    assert!(close(databases[0].metrics.latency_mean_ms[0], 55.0, 1e-9));

    let bad_step = store
        .request_series(&SeriesQuery {
            filter: EntityFilter::all(),
            range: range(1),
            step_secs: 90,
        })
        .await;
    assert!(matches!(bad_step, Err(SourceError::InvalidRequest(_))));
}

#[tokio::test]
async fn edges_statements_and_samples() {
    let store = fresh_store(RequestLog::Deepflow).await;
    store
        .write_deepflow_records(&scenario())
        .await
        .expect("write");

    let edges = store.call_edges(range(1)).await.expect("edges");
    let pairs: Vec<(&str, &str)> = edges
        .iter()
        .map(|e| (e.client.as_str(), e.server.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("service:api", "database:mysqld@10.0.0.5:3306"),
            ("service:curl@10.0.0.9", "service:gateway"),
            ("service:gateway", "service:api"),
        ]
    );
    let gateway_api = &edges[2];
    assert_eq!(gateway_api.protocol, L7Protocol::Http);
    assert_eq!((gateway_api.requests, gateway_api.errors), (100, 5));
    assert!(close(gateway_api.latency_mean_ms, 50.5, 1e-9));
    assert!(close(gateway_api.latency_p99_ms, 99.0, 0.5));

    let edge_series = store
        .edge_series(&series_query(EntityFilter::ids(&[id("service:api")]), 1))
        .await
        .expect("edge series");
    assert_eq!(edge_series.len(), 2, "edges where api is client or server");
    assert_eq!(
        edge_series[0].server.as_str(),
        "database:mysqld@10.0.0.5:3306"
    );
    assert_eq!(edge_series[0].metrics.requests, vec![10.0]);
    assert_eq!(edge_series[1].client.as_str(), "service:gateway");
    assert_eq!(edge_series[1].metrics.errors, vec![5.0]);

    let statements = store
        .top_statements(&StatementQuery {
            server: None,
            protocol: None,
            range: range(1),
            order: StatementOrder::P99,
            limit: 10,
        })
        .await
        .expect("statements");
    assert_eq!(statements.len(), 1, "HTTP is not a statement");
    let select = &statements[0];
    assert_eq!(select.server.as_str(), "database:mysqld@10.0.0.5:3306");
    assert_eq!(select.protocol, L7Protocol::Mysql);
    assert_eq!(select.request_type, "SELECT");
    assert_eq!(select.shape, "SELECT * FROM orders WHERE id = ?");
    assert_eq!((select.count, select.errors), (10, 0));
    assert!(close(select.latency_mean_ms, 55.0, 1e-9));
    assert!(close(select.latency_max_ms, 100.0, 1e-9));
    assert!(
        close(select.latency_p99_ms, 99.1, 0.5),
        "{}",
        select.latency_p99_ms
    );

    let samples = store
        .slow_requests(&SampleQuery {
            server: Some(id("service:api")),
            range: range(1),
            min_duration_ms: 98.0,
            include_errors: true,
            limit: 5,
        })
        .await
        .expect("samples");
    let durations: Vec<f64> = samples.iter().map(|s| s.duration_ms).collect();
    assert_eq!(durations, [100.0, 99.0, 98.0, 80.0, 60.0]);
    assert_eq!(samples[0].status, ResponseStatus::ServerError);
    assert_eq!(samples[0].code, Some(500));
    assert_eq!(
        samples[0].client.as_ref().map(EntityId::as_str),
        Some("service:gateway")
    );
    assert_eq!(samples[1].status, ResponseStatus::Ok);
    assert_eq!(samples[0].trace_id, None);
}

#[tokio::test]
async fn vigil_tables_round_trip() {
    let store = fresh_store(RequestLog::Deepflow).await;
    let container = id("container:orders-1");
    let host = id("host:h1");
    let mut cpu = Series::empty(Timestamp(T0), 60, 3);
    cpu.values = vec![0.5, f64::NAN, 1.5];
    let mut retransmits = Series::empty(Timestamp(T0), 60, 3);
    retransmits.values = vec![1.0, 2.0, 3.0];
    store
        .write_resources(&[
            ResourceSeries {
                entity: container.clone(),
                metric: ResourceMetric::CpuCores,
                series: cpu,
            },
            ResourceSeries {
                entity: host.clone(),
                metric: ResourceMetric::TcpRetransmits,
                series: retransmits,
            },
        ])
        .await
        .expect("resources");
    let cpu = store
        .resource_series(
            &series_query(EntityFilter::all(), 3),
            ResourceMetric::CpuCores,
        )
        .await
        .expect("cpu");
    assert_eq!(cpu.len(), 1);
    assert_eq!(cpu[0].entity, container);
    assert_eq!(cpu[0].series.values[0], 0.5);
    assert!(cpu[0].series.values[1].is_nan());
    assert_eq!(cpu[0].series.values[2], 1.5);
    let summed = store
        .resource_series(
            &SeriesQuery {
                filter: EntityFilter::kinds(&[EntityKind::Host]),
                range: range(3),
                step_secs: 180,
            },
            ResourceMetric::TcpRetransmits,
        )
        .await
        .expect("retransmits");
    assert_eq!(summed.len(), 1);
    assert_eq!(
        summed[0].series.values,
        vec![6.0],
        "counts add up over a step"
    );

    let profile = Profile {
        entity: container.clone(),
        range: range(1),
        unit: "cpu-us".to_owned(),
        stacks: vec![
            FoldedStack {
                frames: "orders;main;serve".to_owned(),
                value: 300,
            },
            FoldedStack {
                frames: "orders;main;gc".to_owned(),
                value: 100,
            },
        ],
    };
    store
        .write_profiles(std::slice::from_ref(&profile))
        .await
        .expect("profiles");
    // DeepFlow also profiled the same container (as app_service), compressed and not.
    store
        .write_deepflow_profiles(std::slice::from_ref(&profile), ProfileCompression::Zstd)
        .await
        .expect("zstd profiles");
    store
        .write_deepflow_profiles(&[profile], ProfileCompression::None)
        .await
        .expect("plain profiles");
    let read = store.profile(&container, range(1)).await.expect("profile");
    assert_eq!(read.unit, "cpu-us");
    assert_eq!(
        read.stacks,
        vec![
            FoldedStack {
                frames: "orders;main;serve".to_owned(),
                value: 900
            },
            FoldedStack {
                frames: "orders;main;gc".to_owned(),
                value: 300
            },
        ]
    );

    let events = vec![
        Event {
            time: Timestamp(T0 + 30),
            entity: container.clone(),
            kind: EventKind::Deploy,
            detail: "v2".into(),
        },
        Event {
            time: Timestamp(T0 + 10),
            entity: host.clone(),
            kind: EventKind::Restart,
            detail: String::new(),
        },
        Event {
            time: Timestamp(T0 + 600),
            entity: host.clone(),
            kind: EventKind::OomKill,
            detail: String::new(),
        },
    ];
    store.write_events(&events).await.expect("events");
    let read = store.events(range(1)).await.expect("events");
    assert_eq!(
        read,
        vec![events[1].clone(), events[0].clone()],
        "oldest first, in range only"
    );
}

#[tokio::test]
async fn identity_prefers_app_service_then_container_then_process() {
    let store = fresh_store(RequestLog::Deepflow).await;
    let client = peer(1, 40_000, 100, "gateway", "");
    // 1. Declares an OpenTelemetry service name.
    let otel = peer(2, 8080, 200, "java", "checkout");
    // 2. No service name, but the agent knows its container.
    let contained = peer(3, 9000, 300, "orders-bin", "");
    // 3. Neither: named by process, address and port; kind from the protocol.
    let bare_mysql = peer(5, 3306, 500, "mysqld", "");
    let bare_redis = peer(7, 6379, 700, "redis-server", "");
    let records = vec![
        record(T0, 1, &client, &otel, L7Protocol::Http),
        record(T0, 1, &client, &contained, L7Protocol::Http),
        record(T0, 1, &client, &bare_mysql, L7Protocol::Mysql),
        record(T0, 1, &client, &bare_redis, L7Protocol::Redis),
    ];
    store.write_deepflow_records(&records).await.expect("write");
    let topology = Topology {
        entities: vec![
            Entity::new(id("container:orders"))
                .with("ip", "10.0.0.3")
                .with("ports", "9000,9001")
                .with("process_name", "orders-bin"),
            Entity::new(id("container:edge-gw"))
                .with("ip", "10.0.0.1")
                .with("pid", "100"),
            // A container on the OTel service's address must not override app_service.
            Entity::new(id("container:checkout-1"))
                .with("ip", "10.0.0.2")
                .with("pid", "200")
                .with("port", "8080")
                .with("process_name", "java"),
        ],
        relations: vec![],
    };
    store.write_topology(&topology).await.expect("topology");

    let series = store
        .request_series(&series_query(EntityFilter::all(), 1))
        .await
        .expect("series");
    let ids: Vec<&str> = series.iter().map(|s| s.entity.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cache:redis-server@10.0.0.7:6379",
            "database:mysqld@10.0.0.5:3306",
            "service:checkout",
            "service:orders",
        ]
    );
    // The client has no service name and never serves: its container names it.
    let edges = store.call_edges(range(1)).await.expect("edges");
    assert!(
        edges.iter().all(|e| e.client.as_str() == "service:edge-gw"),
        "{edges:?}"
    );
    assert_eq!(edges.len(), 4);

    let topology = store.topology(range(1)).await.expect("topology");
    let entity_ids: Vec<&str> = topology.entities.iter().map(|e| e.id.as_str()).collect();
    for expected in [
        "container:orders",
        "database:mysqld@10.0.0.5:3306",
        "service:checkout",
        "service:edge-gw",
        "service:orders",
    ] {
        assert!(
            entity_ids.contains(&expected),
            "{expected} missing from {entity_ids:?}"
        );
    }
    let mysql = topology
        .entities
        .iter()
        .find(|e| e.id.as_str() == "database:mysqld@10.0.0.5:3306")
        .expect("mysql");
    assert_eq!(
        mysql.attributes.get("port").map(String::as_str),
        Some("3306")
    );
    assert_eq!(
        mysql.attributes.get("process_name").map(String::as_str),
        Some("mysqld")
    );
    assert_eq!(topology.relations.len(), 4);
}

#[tokio::test]
async fn agent_request_log_names_by_container() {
    let store = fresh_store(RequestLog::Agent).await;
    let client = peer(1, 40_000, 100, "nginx", "web");
    let server = peer(3, 9000, 300, "orders-bin", "orders");
    let records: Vec<RequestRecord> = (1..=10)
        .map(|ms| record(T0 + ms as i64, ms, &client, &server, L7Protocol::Http))
        .collect();
    store.write_agent_records(&records).await.expect("write");
    let series = store
        .request_series(&series_query(EntityFilter::all(), 1))
        .await
        .expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].entity.as_str(), "service:orders");
    assert_eq!(series[0].metrics.requests, vec![10.0]);
    let edges = store.call_edges(range(1)).await.expect("edges");
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].client.as_str(), "service:web");
    assert!(close(edges[0].latency_mean_ms, 5.5, 1e-9));
}

#[tokio::test]
async fn missing_column_is_a_schema_error_naming_table_and_column() {
    let config = fresh_config(RequestLog::Deepflow);
    let raw = clickhouse::Client::default()
        .with_url(config.url.clone())
        .with_validation(false);
    let database = config.flow_log_database.clone();
    raw.query(&format!("CREATE DATABASE {database}"))
        .execute()
        .await
        .expect("create database");
    raw.query(&format!(
        "CREATE TABLE {database}.l7_flow_log (time DateTime, is_ipv4 UInt8, ip4_0 UInt32, ip4_1 UInt32, \
         ip6_0 FixedString(16), ip6_1 FixedString(16), server_port UInt16, l7_protocol UInt8, \
         response_status UInt8, observation_point String, app_service String, process_kname_1 String, \
         process_id_1 Int32) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(time) ORDER BY time"
    ))
    .execute()
    .await
    .expect("create table without response_duration");
    let store = ClickHouseStore::connect(config).await.expect("connect");
    let error = store
        .request_series(&series_query(EntityFilter::all(), 1))
        .await
        .expect_err("response_duration is missing");
    match error {
        SourceError::Schema {
            backend,
            table,
            detail,
        } => {
            assert_eq!(backend, "clickhouse");
            assert_eq!(table, format!("{database}.l7_flow_log"));
            assert!(detail.contains("response_duration"), "{detail}");
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_server_fails_fast_naming_the_url() {
    let _ = server_url();
    let config = ClickHouseConfig {
        url: "http://127.0.0.1:1".to_owned(),
        timeout_secs: 5,
        ..ClickHouseConfig::default()
    };
    let started = std::time::Instant::now();
    let error = ClickHouseStore::connect(config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(started.elapsed().as_secs() < 10);
    assert!(
        matches!(error, ClickHouseError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("http://127.0.0.1:1"), "{error}");
    match SourceError::from(error) {
        SourceError::Unavailable {
            backend, address, ..
        } => {
            assert_eq!(backend, "clickhouse");
            assert_eq!(address, "http://127.0.0.1:1");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }

    let invalid = ClickHouseStore::connect(ClickHouseConfig {
        url: "ftp://x".into(),
        ..ClickHouseConfig::default()
    })
    .await
    .expect_err("invalid url");
    assert!(invalid.to_string().contains("url"), "{invalid}");
}

#[tokio::test]
async fn query_checks_read_one_number_and_cannot_write() {
    let store = fresh_store(RequestLog::Deepflow).await;
    store
        .write_deepflow_records(&scenario())
        .await
        .expect("write records");
    let table = format!("{}.l7_flow_log", store.config().flow_log_database);
    let count = store
        .query_scalar(
            &format!(
                "SELECT count() AS value FROM {table} WHERE time >= toDateTime({{start}}) AND time < toDateTime({{end}})"
            ),
            range(60),
        )
        .await
        .expect("a count");
    assert!(count > 0.0, "{count}");
    let outside = store
        .query_scalar(
            &format!("SELECT count() AS value FROM {table} WHERE time >= toDateTime({{end}})"),
            range(60),
        )
        .await
        .expect("a count");
    assert_eq!(outside, 0.0);
    let write = store
        .query_scalar(
            &format!("SELECT 1 AS value FROM {table}; DROP TABLE {table}"),
            range(60),
        )
        .await;
    assert!(write.is_err(), "multiple statements are refused");
    let count_after = store
        .query_scalar(&format!("SELECT count() AS value FROM {table}"), range(60))
        .await
        .expect("the table is still there");
    assert!(count_after > 0.0);
    let question = store
        .query_scalar("SELECT 1 AS value WHERE 1 = ?", range(60))
        .await;
    assert!(matches!(question, Err(SourceError::InvalidRequest(_))));
}
