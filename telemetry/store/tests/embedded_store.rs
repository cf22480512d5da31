//! The embedded store against hand-built batches: round trips through every
//! `TelemetrySource` method with exact values, idempotence, resampling, gaps,
//! retention, schema versions, damaged files and Vigil's state.

use std::time::Instant;

use vigil_model::{
    EdgeMetrics, Entity, EntityFilter, EntityId, EntityKind, Event, EventKind, FoldedStack,
    L7Protocol, Profile, Relation, RelationKind, RequestMetrics, RequestSample, RequestSeries,
    ResourceMetric, ResourceSeries, ResponseStatus, SampleQuery, Series, SeriesQuery, SourceError,
    StatementOrder, StatementQuery, StatementStats, StatementStep, TelemetryBatch, TelemetrySource,
    TimeRange, Timestamp, Topology,
};
use vigil_store::embedded::{
    EmbeddedOptions, EmbeddedStore, Incident, IncidentFeedback, IncidentStatus, PatrolOutcome,
    PatrolRun, ReportContent, StoreError, StoredReport,
};

const NAN: f64 = f64::NAN;
/// An hour boundary.
const HOUR: i64 = 1_699_999_200;
/// Two minutes before the next hour: the test series crosses a chunk boundary.
const START: i64 = HOUR + 58 * 60;

fn api() -> EntityId {
    EntityId::new(EntityKind::Service, "api")
}
fn mysql() -> EntityId {
    EntityId::new(EntityKind::Database, "mysql@10.0.0.5:3306")
}
fn host() -> EntityId {
    EntityId::new(EntityKind::Host, "h1")
}

fn range(start: i64, end: i64) -> TimeRange {
    TimeRange::new(Timestamp(start), Timestamp(end)).expect("valid range")
}

fn metrics() -> RequestMetrics {
    RequestMetrics {
        start: Timestamp(START),
        step_secs: 60,
        requests: vec![10.0, 30.0, NAN, 20.0],
        errors: vec![1.0, 3.0, NAN, 0.0],
        latency_mean_ms: vec![100.0, 200.0, NAN, 50.0],
        latency_p50_ms: vec![90.0, 150.0, NAN, 40.0],
        latency_p90_ms: vec![200.0, 400.0, NAN, 80.0],
        latency_p99_ms: vec![300.0, 500.0, NAN, 100.0],
    }
}

fn statement(
    shape: &str,
    count: u64,
    errors: u64,
    mean: f64,
    p99: f64,
    max: f64,
) -> StatementStats {
    StatementStats {
        server: mysql(),
        protocol: L7Protocol::Mysql,
        request_type: "SELECT".to_owned(),
        shape: shape.to_owned(),
        count,
        errors,
        latency_mean_ms: mean,
        latency_p99_ms: p99,
        latency_max_ms: max,
    }
}

fn sample(time: i64, duration_ms: f64, status: ResponseStatus) -> RequestSample {
    RequestSample {
        time: Timestamp(time),
        client: Some(api()),
        server: mysql(),
        protocol: L7Protocol::Mysql,
        request_type: "SELECT".to_owned(),
        resource: "SELECT * FROM t WHERE id = ?".to_owned(),
        duration_ms,
        status,
        code: status.is_server_error().then_some(1205),
        trace_id: (duration_ms > 100.0).then(|| "trace-1".to_owned()),
    }
}

fn stack(frames: &str, value: u64) -> FoldedStack {
    FoldedStack {
        frames: frames.to_owned(),
        value,
    }
}

fn batch() -> TelemetryBatch {
    TelemetryBatch {
        topology: Topology {
            entities: vec![
                Entity::new(api()).with("ip", "10.0.0.2"),
                Entity::new(mysql()),
                Entity::new(host()),
            ],
            relations: vec![
                Relation {
                    from: api(),
                    to: mysql(),
                    kind: RelationKind::Calls,
                },
                Relation {
                    from: api(),
                    to: host(),
                    kind: RelationKind::RunsOn,
                },
            ],
        },
        requests: vec![RequestSeries {
            entity: api(),
            metrics: metrics(),
        }],
        edges: vec![EdgeMetrics {
            client: api(),
            server: mysql(),
            protocol: L7Protocol::Mysql,
            metrics: metrics(),
        }],
        resources: vec![ResourceSeries {
            entity: host(),
            metric: ResourceMetric::CpuCores,
            series: Series {
                start: Timestamp(START),
                step_secs: 60,
                values: vec![0.5, 1.5, NAN, 1.0],
            },
        }],
        statements: vec![
            StatementStep {
                time: Timestamp(START),
                stats: statement("SELECT * FROM t WHERE id = ?", 100, 1, 2.0, 10.0, 20.0),
            },
            StatementStep {
                time: Timestamp(START + 60),
                stats: statement("SELECT * FROM t WHERE id = ?", 300, 0, 4.0, 5.0, 8.0),
            },
            StatementStep {
                time: Timestamp(START + 60),
                stats: statement("UPDATE t SET v = ? WHERE id = ?", 10, 5, 50.0, 60.0, 70.0),
            },
        ],
        samples: vec![
            sample(START + 5, 900.0, ResponseStatus::Ok),
            sample(START + 6, 50.0, ResponseStatus::ServerError),
            sample(START + 7, 10.0, ResponseStatus::Ok),
        ],
        profiles: vec![
            Profile {
                entity: api(),
                range: range(START, START + 60),
                unit: "samples".to_owned(),
                stacks: vec![stack("main;a", 5), stack("main;b", 3)],
            },
            Profile {
                entity: api(),
                range: range(START + 60, START + 120),
                unit: "samples".to_owned(),
                stacks: vec![stack("main;a", 2), stack("main;c", 10)],
            },
        ],
        events: vec![
            Event {
                time: Timestamp(START + 90),
                entity: api(),
                kind: EventKind::Restart,
                detail: "exit 137".to_owned(),
            },
            Event {
                time: Timestamp(START + 30),
                entity: api(),
                kind: EventKind::Deploy,
                detail: "v2".to_owned(),
            },
        ],
    }
}

fn series_query(step_secs: u32) -> SeriesQuery {
    SeriesQuery {
        filter: EntityFilter::all(),
        range: range(START, START + 240),
        step_secs,
    }
}

/// Compares float columns treating NaN as equal to NaN.
fn assert_values(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            a == e || (a.is_nan() && e.is_nan()),
            "{actual:?} vs {expected:?}"
        );
    }
}

fn assert_metrics(actual: &RequestMetrics, expected: &RequestMetrics) {
    assert_eq!(actual.start, expected.start);
    assert_eq!(actual.step_secs, expected.step_secs);
    assert_values(&actual.requests, &expected.requests);
    assert_values(&actual.errors, &expected.errors);
    assert_values(&actual.latency_mean_ms, &expected.latency_mean_ms);
    assert_values(&actual.latency_p50_ms, &expected.latency_p50_ms);
    assert_values(&actual.latency_p90_ms, &expected.latency_p90_ms);
    assert_values(&actual.latency_p99_ms, &expected.latency_p99_ms);
}

async fn open(dir: &tempfile::TempDir, options: EmbeddedOptions) -> EmbeddedStore {
    EmbeddedStore::open(&dir.path().join("vigil.db"), options)
        .await
        .expect("open store")
}

async fn check_everything(store: &EmbeddedStore) {
    // Request series at one minute: exact, with the gap kept.
    let series = store
        .request_series(&series_query(60))
        .await
        .expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].entity, api());
    assert_metrics(&series[0].metrics, &metrics());

    // Edges.
    let edges = store.edge_series(&series_query(60)).await.expect("edges");
    assert_eq!(edges.len(), 1);
    assert_eq!(
        (edges[0].client.clone(), edges[0].server.clone()),
        (api(), mysql())
    );
    assert_metrics(&edges[0].metrics, &metrics());
    let only_host = SeriesQuery {
        filter: EntityFilter::ids(&[host()]),
        ..series_query(60)
    };
    assert!(store
        .edge_series(&only_host)
        .await
        .expect("edges")
        .is_empty());

    let call_edges = store
        .call_edges(range(START, START + 240))
        .await
        .expect("call edges");
    assert_eq!(call_edges.len(), 1);
    let edge = &call_edges[0];
    assert_eq!((edge.requests, edge.errors), (60, 4));
    assert!(
        (edge.latency_mean_ms - 8000.0 / 60.0).abs() < 1e-9,
        "{edge:?}"
    );
    // p99s 100 (20 requests), 300 (10), 500 (30): 99% of 60 requests is reached at 500.
    assert_eq!(edge.latency_p99_ms, 500.0);

    // Resources.
    let cpu = store
        .resource_series(&series_query(60), ResourceMetric::CpuCores)
        .await
        .expect("cpu");
    assert_eq!(cpu.len(), 1);
    assert_eq!(cpu[0].entity, host());
    assert_values(&cpu[0].series.values, &[0.5, 1.5, NAN, 1.0]);
    assert!(store
        .resource_series(&series_query(60), ResourceMetric::MemoryBytes)
        .await
        .expect("memory")
        .is_empty());

    // Statements, in each order.
    let statements = |order, limit| StatementQuery {
        server: None,
        protocol: None,
        range: range(START, START + 240),
        order,
        limit,
    };
    let by_time = store
        .top_statements(&statements(StatementOrder::TotalTime, 10))
        .await
        .expect("statements");
    assert_eq!(by_time.len(), 2);
    let select = &by_time[0];
    assert_eq!(select.shape, "SELECT * FROM t WHERE id = ?");
    assert_eq!((select.count, select.errors), (400, 1));
    assert_eq!(select.latency_mean_ms, 3.5);
    assert_eq!(select.latency_p99_ms, 10.0);
    assert_eq!(select.latency_max_ms, 20.0);
    for order in [StatementOrder::P99, StatementOrder::Errors] {
        let top = store
            .top_statements(&statements(order, 1))
            .await
            .expect("top");
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].shape, "UPDATE t SET v = ? WHERE id = ?");
    }
    let redis_only = StatementQuery {
        protocol: Some(L7Protocol::Redis),
        ..statements(StatementOrder::P99, 10)
    };
    assert!(store
        .top_statements(&redis_only)
        .await
        .expect("none")
        .is_empty());

    // Samples.
    let samples = |include_errors| SampleQuery {
        server: Some(mysql()),
        range: range(START, START + 240),
        min_duration_ms: 100.0,
        include_errors,
        limit: 10,
    };
    let slow = store.slow_requests(&samples(true)).await.expect("samples");
    assert_eq!(
        slow,
        vec![
            sample(START + 5, 900.0, ResponseStatus::Ok),
            sample(START + 6, 50.0, ResponseStatus::ServerError)
        ]
    );
    let slow = store.slow_requests(&samples(false)).await.expect("samples");
    assert_eq!(slow, vec![sample(START + 5, 900.0, ResponseStatus::Ok)]);

    // Profiles merge over the range, heaviest first.
    let profile = store
        .profile(&api(), range(START, START + 240))
        .await
        .expect("profile");
    assert_eq!(profile.unit, "samples");
    assert_eq!(
        profile.stacks,
        vec![stack("main;c", 10), stack("main;a", 7), stack("main;b", 3)]
    );
    let first_minute = store
        .profile(&api(), range(START, START + 60))
        .await
        .expect("profile");
    assert_eq!(
        first_minute.stacks,
        vec![stack("main;a", 5), stack("main;b", 3)]
    );
    let none = store
        .profile(&host(), range(START, START + 240))
        .await
        .expect("empty profile");
    assert!(none.stacks.is_empty());

    // Events oldest first.
    let events = store
        .events(range(START, START + 240))
        .await
        .expect("events");
    let kinds: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
    assert_eq!(kinds, vec![EventKind::Deploy, EventKind::Restart]);

    // Topology seen in the range, and not long before it.
    let topology = store
        .topology(range(START, START + 60))
        .await
        .expect("topology");
    let mut expected = batch().topology;
    expected.normalise();
    assert_eq!(topology, expected);
}

#[tokio::test]
async fn round_trip_through_every_source_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, EmbeddedOptions::default()).await;
    assert_eq!(store.backend(), "embedded");
    let stats = store.write(&batch()).await.expect("write");
    assert_eq!(stats.points, batch().point_count());
    assert_eq!(stats.entities_added, 3);
    check_everything(&store).await;
    let earlier = store
        .topology(range(HOUR - 7200, HOUR))
        .await
        .expect("topology");
    assert!(earlier.entities.is_empty() && earlier.relations.is_empty());

    // And again after reopening the file.
    drop(store);
    let reopened = open(&dir, EmbeddedOptions::default()).await;
    check_everything(&reopened).await;
}

#[tokio::test]
async fn rewriting_a_batch_changes_nothing_and_later_minutes_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, EmbeddedOptions::default()).await;
    store.write(&batch()).await.expect("first write");
    store.write(&batch()).await.expect("second write");
    check_everything(&store).await;

    // A later batch setting only the second minute replaces that minute alone.
    let mut update = RequestMetrics::empty(Timestamp(START), 60, 4);
    update.requests[1] = 99.0;
    update.errors[1] = 9.0;
    let stats = store
        .write(&TelemetryBatch {
            requests: vec![RequestSeries {
                entity: api(),
                metrics: update,
            }],
            ..TelemetryBatch::default()
        })
        .await
        .expect("update");
    assert_eq!(stats.chunks_merged, 1);
    let series = store
        .request_series(&series_query(60))
        .await
        .expect("series");
    let mut expected = metrics();
    expected.requests[1] = 99.0;
    expected.errors[1] = 9.0;
    expected.latency_mean_ms[1] = NAN;
    expected.latency_p50_ms[1] = NAN;
    expected.latency_p90_ms[1] = NAN;
    expected.latency_p99_ms[1] = NAN;
    assert_metrics(&series[0].metrics, &expected);
}

#[tokio::test]
async fn resampling_sums_counts_weights_means_and_bounds_quantiles() {
    let store = EmbeddedStore::open_in_memory().expect("open");
    store.write(&batch()).await.expect("write");
    let series = store
        .request_series(&series_query(120))
        .await
        .expect("series");
    let expected = RequestMetrics {
        start: Timestamp(START),
        step_secs: 120,
        requests: vec![40.0, 20.0],
        errors: vec![4.0, 0.0],
        latency_mean_ms: vec![175.0, 50.0],
        latency_p50_ms: vec![150.0, 40.0],
        latency_p90_ms: vec![400.0, 80.0],
        latency_p99_ms: vec![500.0, 100.0],
    };
    assert_metrics(&series[0].metrics, &expected);
    let cpu = store
        .resource_series(&series_query(120), ResourceMetric::CpuCores)
        .await
        .expect("cpu");
    assert_values(&cpu[0].series.values, &[1.0, 1.0]);

    // A 10-minute step widens to whole steps; missing minutes stay out of the sums.
    let wide = store
        .request_series(&series_query(600))
        .await
        .expect("series");
    let metrics = &wide[0].metrics;
    assert_eq!(metrics.start, Timestamp(START).floor_to(600));
    assert_eq!(metrics.requests.len(), 2);
    assert_values(&metrics.requests, &[40.0, 20.0]);

    let invalid = store.request_series(&series_query(90)).await;
    assert!(
        matches!(invalid, Err(SourceError::InvalidRequest(_))),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn gaps_stay_nan_and_entities_without_data_are_left_out() {
    let store = EmbeddedStore::open_in_memory().expect("open");
    store.write(&batch()).await.expect("write");
    let query = SeriesQuery {
        filter: EntityFilter::ids(&[api(), host()]),
        range: range(START - 120, START + 300),
        step_secs: 60,
    };
    let series = store.request_series(&query).await.expect("series");
    assert_eq!(series.len(), 1, "host serves no requests");
    assert_values(
        &series[0].metrics.requests,
        &[NAN, NAN, 10.0, 30.0, NAN, 20.0, NAN],
    );
    let kinds = SeriesQuery {
        filter: EntityFilter::kinds(&[EntityKind::Database]),
        ..query
    };
    assert!(store
        .request_series(&kinds)
        .await
        .expect("series")
        .is_empty());
}

#[tokio::test]
async fn a_refused_batch_keeps_what_was_stored() {
    let store = EmbeddedStore::open_in_memory().expect("open");
    store.write(&batch()).await.expect("write");
    let mut bad = batch();
    bad.requests[0].metrics.requests[0] = 1e9;
    bad.edges[0].metrics.step_secs = 300;
    let error = store
        .write(&bad)
        .await
        .expect_err("five-minute steps are refused");
    assert!(matches!(error, StoreError::InvalidBatch(_)), "{error}");
    assert!(error.to_string().contains("60 s steps"), "{error}");
    let mut ragged = batch();
    ragged.requests[0].metrics.errors.pop();
    assert!(store.write(&ragged).await.is_err());
    check_everything(&store).await;
}

#[tokio::test]
async fn retention_deletes_old_telemetry_and_keeps_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        retention_days: 7,
        report_retention_days: 30,
    };
    let store = open(&dir, options).await;
    let day = 86_400;
    let mut old = batch();
    old.requests[0].metrics.start = Timestamp(START - 10 * day);
    old.requests[0].entity = EntityId::new(EntityKind::Service, "retired");
    old.topology = Topology::default();
    old.edges.clear();
    old.resources.clear();
    old.statements.clear();
    old.profiles.clear();
    old.samples = vec![sample(START - 10 * day, 900.0, ResponseStatus::Ok)];
    old.events.clear();
    store.write(&old).await.expect("old");
    store.write(&batch()).await.expect("new");
    store
        .save_report(&report("old-report", START - 40 * day))
        .await
        .expect("report");
    store
        .save_report(&report("new-report", START))
        .await
        .expect("report");

    let stats = store
        .apply_retention(Timestamp(START + 3600))
        .await
        .expect("retention");
    assert_eq!(stats.chunks, 2, "the old series spans two hours");
    assert_eq!(stats.state, 1);
    assert!(stats.rows >= 1);
    let all_time = SeriesQuery {
        filter: EntityFilter::all(),
        range: range(START - 11 * day, START + 3600),
        step_secs: 3600,
    };
    let series = store.request_series(&all_time).await.expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].entity, api());
    let retired = store
        .topology(range(START - 11 * day, START - 9 * day))
        .await
        .expect("topology");
    assert!(retired.entities.is_empty());
    assert!(store.report("old-report").await.expect("get").is_none());
    assert!(store.report("new-report").await.expect("get").is_some());
    check_everything(&store).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigil.db");
    drop(open(&dir, EmbeddedOptions::default()).await);
    {
        let connection = rusqlite::Connection::open(&path).expect("raw open");
        connection
            .execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (99, 'future', 0)",
                [],
            )
            .expect("fake a newer version");
    }
    let error = EmbeddedStore::open(&path, EmbeddedOptions::default())
        .await
        .expect_err("newer schema");
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 99, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("upgrade Vigil") && message.contains("vigil.db"),
        "{message}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_by_path_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.db");
    let garbage = "this is not an SQLite database, it is a text file long enough ".repeat(100);
    std::fs::write(&path, &garbage).expect("write garbage");
    let error = EmbeddedStore::open(&path, EmbeddedOptions::default())
        .await
        .expect_err("not a database");
    assert!(
        matches!(error, StoreError::NotADatabase { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("notes.db"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        garbage
    );
    let source: SourceError = error.into();
    assert!(matches!(
        source,
        SourceError::Unavailable {
            backend: "embedded",
            ..
        }
    ));
}

fn report(id: &str, created: i64) -> StoredReport {
    StoredReport {
        id: id.to_owned(),
        playbook_id: Some("daily".to_owned()),
        patrol_run_id: None,
        created: Timestamp(created),
        language: "zh-CN".to_owned(),
        title: "每日巡检".to_owned(),
        content: ReportContent::Markdown("# 正常".to_owned()),
    }
}

#[tokio::test]
async fn state_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, EmbeddedOptions::default()).await;
    let mut run = PatrolRun {
        id: "run-1".to_owned(),
        playbook_id: "daily".to_owned(),
        started: Timestamp(START),
        ended: None,
        outcome: PatrolOutcome::Running,
        findings: 0,
        error: None,
    };
    store.save_patrol_run(&run).await.expect("save run");
    run.ended = Some(Timestamp(START + 30));
    run.outcome = PatrolOutcome::Findings;
    run.findings = 2;
    store.save_patrol_run(&run).await.expect("finish run");
    assert_eq!(
        store.patrol_run("run-1").await.expect("get"),
        Some(run.clone())
    );
    assert_eq!(
        store
            .list_patrol_runs(Some("daily"), 10)
            .await
            .expect("list"),
        vec![run]
    );
    assert!(store
        .list_patrol_runs(Some("weekly"), 10)
        .await
        .expect("list")
        .is_empty());

    let json_report = StoredReport {
        content: ReportContent::Json(serde_json::json!({"findings": [1, 2]})),
        ..report("r2", START + 60)
    };
    store.save_report(&report("r1", START)).await.expect("save");
    store.save_report(&json_report).await.expect("save");
    let reports = store.list_reports(None, 10).await.expect("list");
    assert_eq!(reports, vec![json_report, report("r1", START)]);

    let incident = Incident {
        id: "inc-1".to_owned(),
        fingerprint: "latency:service:api".to_owned(),
        status: IncidentStatus::Open,
        opened: Timestamp(START),
        resolved: None,
        payload: serde_json::json!({"suggestions": ["database:mysql"]}),
        feedback: None,
    };
    store.save_incident(&incident).await.expect("save");
    assert_eq!(
        store
            .open_incident("latency:service:api")
            .await
            .expect("open"),
        Some(incident.clone())
    );
    let feedback = IncidentFeedback {
        correct: true,
        actual_cause: None,
        comment: "slow disk".to_owned(),
        given: Timestamp(START + 600),
    };
    assert!(store
        .set_incident_feedback("inc-1", &feedback)
        .await
        .expect("feedback"));
    assert!(store
        .resolve_incident("inc-1", Timestamp(START + 900))
        .await
        .expect("resolve"));
    assert!(!store
        .resolve_incident("inc-1", Timestamp(START + 901))
        .await
        .expect("again"));
    let stored = store.incident("inc-1").await.expect("get").expect("exists");
    assert_eq!(stored.status, IncidentStatus::Resolved);
    assert_eq!(stored.resolved, Some(Timestamp(START + 900)));
    assert_eq!(stored.feedback, Some(feedback));
    assert!(store
        .open_incident("latency:service:api")
        .await
        .expect("open")
        .is_none());
    assert_eq!(
        store
            .list_incidents(Some(IncidentStatus::Resolved), 5)
            .await
            .expect("list")
            .len(),
        1
    );
}

/// A synthetic day of `entities` services, each calling the next, for throughput figures.
fn synthetic_day(entities: usize) -> TelemetryBatch {
    let minutes = 1440;
    let day_start = HOUR - HOUR % 86_400;
    let column = |seed: usize, scale: f64| -> Vec<f64> {
        (0..minutes)
            .map(|m| scale * (1.0 + ((m + seed) % 17) as f64))
            .collect()
    };
    let metrics = |seed: usize| RequestMetrics {
        start: Timestamp(day_start),
        step_secs: 60,
        requests: column(seed, 10.0),
        errors: column(seed, 0.1),
        latency_mean_ms: column(seed, 2.0),
        latency_p50_ms: column(seed, 1.5),
        latency_p90_ms: column(seed, 4.0),
        latency_p99_ms: column(seed, 9.0),
    };
    let id = |index: usize| EntityId::new(EntityKind::Service, &format!("svc-{index:05}"));
    TelemetryBatch {
        requests: (0..entities)
            .map(|i| RequestSeries {
                entity: id(i),
                metrics: metrics(i),
            })
            .collect(),
        edges: (0..entities)
            .map(|i| EdgeMetrics {
                client: id(i),
                server: id((i + 1) % entities),
                protocol: L7Protocol::Http,
                metrics: metrics(i + 3),
            })
            .collect(),
        resources: (0..entities)
            .map(|i| ResourceSeries {
                entity: id(i),
                metric: ResourceMetric::CpuCores,
                series: Series {
                    start: Timestamp(day_start),
                    step_secs: 60,
                    values: column(i, 0.01),
                },
            })
            .collect(),
        ..TelemetryBatch::default()
    }
}

/// Write throughput on a synthetic 1,000-service day. Run with
/// `cargo test --release -p vigil-store --test embedded_store -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure; run in release mode"]
async fn write_throughput_of_a_thousand_service_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, EmbeddedOptions::default()).await;
    let batch = synthetic_day(1000);
    let started = Instant::now();
    let stats = store.write(&batch).await.expect("write");
    let first = started.elapsed();
    let started = Instant::now();
    let rewrite = store.write(&batch).await.expect("rewrite");
    let second = started.elapsed();
    let bytes = std::fs::metadata(dir.path().join("vigil.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{} points: first write {:.2?} ({:.2} M points/s), rewrite {:.2?} ({:.2} M points/s), {} chunks, file {} MB",
        stats.points,
        first,
        stats.points as f64 / first.as_secs_f64() / 1e6,
        second,
        rewrite.points as f64 / second.as_secs_f64() / 1e6,
        stats.chunks_written,
        bytes / 1_000_000
    );
    let started = Instant::now();
    let query = SeriesQuery {
        filter: EntityFilter::all(),
        range: range(HOUR - HOUR % 86_400, HOUR - HOUR % 86_400 + 86_400),
        step_secs: 300,
    };
    let series = store.request_series(&query).await.expect("read");
    println!(
        "read {} day series at 5 min in {:.2?}",
        series.len(),
        started.elapsed()
    );
    assert_eq!(series.len(), 1000);
}

#[tokio::test]
async fn marks_apply_until_they_expire_and_deliveries_are_kept() {
    use vigil_model::{DeliveryOutcome, DeliveryRecord, FindingMark, MarkKind};
    let store = EmbeddedStore::open_in_memory().expect("open");
    let mark = |kind, created, expires| FindingMark {
        fingerprint: "latency:service:checkout".to_owned(),
        kind,
        reason: "known, fix rolling out".to_owned(),
        by: "alice".to_owned(),
        created: Timestamp(created),
        expires: Timestamp(expires),
    };
    store
        .save_mark(&mark(MarkKind::Acknowledged, 100, 1_000))
        .await
        .expect("save");
    store
        .save_mark(&mark(MarkKind::Suppressed, 200, 500))
        .await
        .expect("save");
    let at = |t| store.active_marks(Timestamp(t));
    assert!(at(50).await.expect("marks").is_empty());
    assert_eq!(
        at(150).await.expect("marks")[0].kind,
        MarkKind::Acknowledged
    );
    let both = at(300).await.expect("marks");
    assert_eq!(both.len(), 1, "the latest mark per finding wins: {both:?}");
    assert_eq!(both[0].kind, MarkKind::Suppressed);
    assert_eq!(
        at(600).await.expect("marks")[0].kind,
        MarkKind::Acknowledged
    );
    assert_eq!(
        store
            .clear_marks("latency:service:checkout", Timestamp(700))
            .await
            .expect("clear"),
        1
    );
    assert!(at(701).await.expect("marks").is_empty());

    let record = |id: &str, outcome| DeliveryRecord {
        message_id: id.to_owned(),
        channel: "ops".to_owned(),
        route: "critical".to_owned(),
        attempts: 2,
        outcome,
        http_status: Some(200),
        at: Timestamp(1_000),
        elapsed_ms: 12,
    };
    store
        .save_deliveries(&[
            record("a", DeliveryOutcome::Delivered),
            record(
                "b",
                DeliveryOutcome::Failed {
                    error: "HTTP 500".to_owned(),
                },
            ),
        ])
        .await
        .expect("save deliveries");
    let kept = store.list_deliveries(10).await.expect("list");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].message_id, "b", "latest first");
    assert!(matches!(kept[0].outcome, DeliveryOutcome::Failed { .. }));
}
