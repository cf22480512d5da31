//! Conformance: the same simulated estate written to both stores answers every
//! `TelemetrySource` question the same way, and both agree with the simulator's
//! ground truth (the p99 it planted, the fault's window, the slowed statement).
//!
//! ClickHouse receives raw request rows in DeepFlow's shape and computes the
//! quantiles itself; the embedded store receives per-minute aggregates. Counts
//! therefore differ by design (ClickHouse holds a sample of the requests), and
//! quantiles agree within sampling error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use vigil_model::{
    EntityFilter, EntityId, EntityKind, FaultKind, RelationKind, RequestMetric, ResourceMetric,
    SampleQuery, SeriesQuery, StatementOrder, StatementQuery, StatementStepQuery, TelemetrySource,
    TimeRange, Timestamp,
};
use vigil_sim::{Estate, FaultSpec, SimConfig};
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore};
use vigil_store::embedded::{EmbeddedOptions, EmbeddedStore};

/// Raw rows per call edge and minute: enough for a p99 within a few percent.
const ROWS_PER_EDGE_MINUTE: u32 = 300;

fn estate() -> Estate {
    let config = SimConfig {
        seed: 11,
        services: 6,
        start: Timestamp::from_secs(1_704_067_200),
        minutes: 180,
        faults: vec![FaultSpec {
            kind: FaultKind::SlowMysql,
            target: None,
            start_minute: 90,
            duration_minutes: 60,
        }],
        ..SimConfig::default()
    };
    Estate::new(config).expect("valid estate")
}

async fn embedded(estate: &Estate, dir: &tempfile::TempDir) -> EmbeddedStore {
    let store = EmbeddedStore::open(
        &dir.path().join("conformance.db"),
        EmbeddedOptions::default(),
    )
    .await
    .expect("open embedded store");
    for batch in estate.batches(60) {
        store.write(&batch).await.expect("write batch");
    }
    store
}

async fn clickhouse(estate: &Estate) -> ClickHouseStore {
    let url = std::env::var("VIGIL_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "VIGIL_TEST_CLICKHOUSE_URL is not set: run ./scripts/test.sh, which starts ClickHouse"
        )
    });
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "conf{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let config = ClickHouseConfig {
        url,
        // Bulk writes of a whole estate on a loaded 2-core CI machine: a
        // generous timeout, so the test fails on wrong answers, not on load.
        timeout_secs: 180,
        ..ClickHouseConfig::default()
    }
    .with_database_suffix(&tag);
    let store = ClickHouseStore::connect(config).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
        .create_deepflow_mirror()
        .await
        .expect("DeepFlow mirror");
    store
        .write_topology(estate.topology())
        .await
        .expect("topology");
    let records: Vec<_> = estate
        .request_records(estate.range(), ROWS_PER_EDGE_MINUTE)
        .collect();
    store
        .write_deepflow_records(&records)
        .await
        .expect("request rows");
    for batch in estate.batches(60) {
        store
            .write_resources(&batch.resources)
            .await
            .expect("resources");
        store
            .write_profiles(&batch.profiles)
            .await
            .expect("profiles");
        store.write_events(&batch.events).await.expect("events");
    }
    store
}

fn slowed_database(estate: &Estate) -> (EntityId, TimeRange) {
    let fault = &estate.faults()[0];
    assert_eq!(fault.root_cause.kind(), EntityKind::Database);
    (fault.root_cause.clone(), fault.window)
}

fn mean(values: &[f64]) -> f64 {
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    assert!(!present.is_empty(), "no values");
    present.iter().sum::<f64>() / present.len() as f64
}

/// Checks one store against the simulator's ground truth; `exact_counts` for
/// the store that holds every request rather than a sample.
async fn check_against_truth(source: &dyn TelemetrySource, estate: &Estate, exact_counts: bool) {
    let backend = source.backend();
    let range = estate.range();
    let (database, window) = slowed_database(estate);

    // Topology: every serving entity and every call relation of the estate.
    let topology = source.topology(range).await.expect("topology");
    let ids: BTreeSet<&EntityId> = topology.entities.iter().map(|e| &e.id).collect();
    for entity in estate.serving_entities() {
        assert!(ids.contains(entity), "{backend}: topology lacks {entity}");
    }
    let true_calls: BTreeSet<(&EntityId, &EntityId)> = estate
        .topology()
        .relations
        .iter()
        .filter(|r| r.kind == RelationKind::Calls)
        .map(|r| (&r.from, &r.to))
        .collect();
    let edges = source.call_edges(range).await.expect("call edges");
    // Requests from outside the estate (its load balancer) enter the gateways:
    // they are edges too, but not of the simulated call graph.
    let estate_ids: BTreeSet<&EntityId> =
        estate.topology().entities.iter().map(|e| &e.id).collect();
    let seen_calls: BTreeSet<(&EntityId, &EntityId)> = edges
        .iter()
        .filter(|e| estate_ids.contains(&e.client))
        .map(|e| (&e.client, &e.server))
        .collect();
    assert_eq!(
        seen_calls, true_calls,
        "{backend}: call edges differ from the simulated call graph"
    );

    // Request series of the slowed database: p99 per minute against the planted one.
    let series = source
        .request_series(&SeriesQuery {
            filter: EntityFilter::ids(std::slice::from_ref(&database)),
            range,
            step_secs: 60,
        })
        .await
        .expect("request series");
    assert_eq!(series.len(), 1, "{backend}: one series for {database}");
    let metrics = &series[0].metrics;
    assert_eq!(metrics.len(), 180, "{backend}: a value per minute");
    let mut relative_errors = Vec::new();
    for index in 0..metrics.len() {
        let minute = metrics.time_at(index);
        let truth = estate
            .truth(&database, minute)
            .expect("truth for every minute");
        let observed = metrics.get(index);
        relative_errors
            .push((observed.latency_p99_ms - truth.latency_p99_ms).abs() / truth.latency_p99_ms);
        if exact_counts {
            assert!(
                (observed.requests - truth.requests).abs() < 1e-6,
                "{backend}: requests at {minute}: {} vs truth {}",
                observed.requests,
                truth.requests
            );
        }
    }
    relative_errors.sort_by(f64::total_cmp);
    let median_error = relative_errors[relative_errors.len() / 2];
    let tolerance = if exact_counts { 1e-9 } else { 0.15 };
    assert!(
        median_error <= tolerance,
        "{backend}: median relative p99 error {median_error:.3} > {tolerance}"
    );

    // The fault shows: p99 during the window well above the hour before it.
    let p99 = metrics.series(RequestMetric::LatencyP99);
    let before_start = p99
        .index_of(window.start.plus_secs(-3600))
        .expect("before window");
    let window_start = p99.index_of(window.start).expect("window start");
    let window_end = p99.index_of(window.end.plus_secs(-60)).expect("window end");
    let before = mean(&p99.values[before_start..window_start]);
    let during = mean(&p99.values[window_start..=window_end]);
    assert!(
        during > 2.0 * before,
        "{backend}: p99 {before:.2} ms before, {during:.2} ms during"
    );

    // Top statements on the database during the fault: the slowed shape first.
    let statements = source
        .top_statements(&StatementQuery {
            server: Some(database.clone()),
            protocol: None,
            range: window,
            order: StatementOrder::P99,
            limit: 3,
        })
        .await
        .expect("top statements");
    assert!(
        !statements.is_empty(),
        "{backend}: no statements on {database}"
    );
    let detail = &estate.faults()[0].detail;
    assert!(
        detail.contains(&statements[0].shape),
        "{backend}: slowest shape {:?} is not the slowed one ({detail})",
        statements[0].shape
    );

    // Statement steps: the slowed shape's p99 during the fault well above before it.
    let steps = source
        .statement_steps(&StatementStepQuery {
            server: Some(database.clone()),
            protocol: None,
            range,
            step_secs: 300,
        })
        .await
        .expect("statement steps");
    assert!(
        steps
            .windows(2)
            .all(|w| (w[0].time, &w[0].stats.server, &w[0].stats.shape)
                <= (w[1].time, &w[1].stats.server, &w[1].stats.shape)),
        "{backend}: statement steps not sorted by (time, server, shape)"
    );
    assert!(
        steps
            .iter()
            .all(|s| s.stats.server == database && s.time.secs() % 300 == 0),
        "{backend}: statement steps of another server or off the step grid"
    );
    let slowed = &statements[0].shape;
    let step_p99 = |from: Timestamp, to: Timestamp| {
        let values: Vec<f64> = steps
            .iter()
            .filter(|s| &s.stats.shape == slowed && s.time >= from && s.time < to)
            .map(|s| s.stats.latency_p99_ms)
            .collect();
        mean(&values)
    };
    let before_steps = step_p99(window.start.plus_secs(-3600), window.start);
    let during_steps = step_p99(window.start, window.end);
    assert!(
        during_steps > 2.0 * before_steps,
        "{backend}: {slowed:?} step p99 {before_steps:.2} ms before, {during_steps:.2} ms during"
    );
    // Per-minute steps of one server are the estate's per-minute steps of that server.
    let minutes = |server: Option<EntityId>| StatementStepQuery {
        server,
        protocol: None,
        range: window,
        step_secs: 60,
    };
    let key = |s: &vigil_model::StatementStep| {
        (
            s.time,
            s.stats.shape.clone(),
            s.stats.request_type.clone(),
            s.stats.protocol,
        )
    };
    let mut one = source
        .statement_steps(&minutes(Some(database.clone())))
        .await
        .expect("minute statement steps");
    let all = source
        .statement_steps(&minutes(None))
        .await
        .expect("minute statement steps");
    assert!(!one.is_empty(), "{backend}: no minute steps on {database}");
    let mut filtered: Vec<_> = all
        .into_iter()
        .filter(|s| s.stats.server == database)
        .collect();
    one.sort_by_key(key);
    filtered.sort_by_key(key);
    assert!(
        one == filtered,
        "{backend}: minute steps of {database} differ from the estate's ({} against {})",
        one.len(),
        filtered.len()
    );

    // Slow samples exist during the fault and honour the limit and threshold.
    let samples = source
        .slow_requests(&SampleQuery {
            server: Some(database.clone()),
            range: window,
            min_duration_ms: before * 2.0,
            include_errors: false,
            limit: 5,
        })
        .await
        .expect("slow requests");
    assert!(samples.len() <= 5);
    assert!(samples
        .iter()
        .all(|s| s.duration_ms >= before * 2.0 && s.server == database));
}

/// Resources, profiles and events are written as the same values to both stores.
async fn check_same_resources(a: &dyn TelemetrySource, b: &dyn TelemetrySource, estate: &Estate) {
    let range = estate.range();
    let containers = SeriesQuery {
        filter: EntityFilter::kinds(&[EntityKind::Container]),
        range,
        step_secs: 300,
    };
    for metric in [ResourceMetric::CpuCores, ResourceMetric::MemoryBytes] {
        let left = a
            .resource_series(&containers, metric)
            .await
            .expect("resources a");
        let right = b
            .resource_series(&containers, metric)
            .await
            .expect("resources b");
        assert_eq!(left.len(), right.len(), "{metric:?}: entity count");
        assert!(!left.is_empty(), "{metric:?}: no container series");
        for (l, r) in left.iter().zip(&right) {
            assert_eq!(l.entity, r.entity);
            assert_eq!(l.series.values.len(), r.series.values.len());
            for (x, y) in l.series.values.iter().zip(&r.series.values) {
                assert!(
                    (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{metric:?} of {}: {x} vs {y}",
                    l.entity
                );
            }
        }
    }
    let container = estate
        .topology()
        .entities
        .iter()
        .find(|e| e.id.kind() == EntityKind::Container)
        .map(|e| e.id.clone())
        .expect("a container");
    let left = a.profile(&container, range).await.expect("profile a");
    let right = b.profile(&container, range).await.expect("profile b");
    assert!(left.total() > 0, "no profile samples for {container}");
    assert_eq!(left.total(), right.total(), "profile totals of {container}");
    assert_eq!(
        left.stacks.first(),
        right.stacks.first(),
        "hottest stack of {container}"
    );
    let left = a.events(range).await.expect("events a");
    let right = b.events(range).await.expect("events b");
    assert_eq!(left, right, "events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_agree_with_the_simulated_truth() {
    let estate = estate();
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = embedded(&estate, &dir).await;
    let clickhouse = clickhouse(&estate).await;
    check_against_truth(&embedded, &estate, true).await;
    check_against_truth(&clickhouse, &estate, false).await;
    check_same_resources(&embedded, &clickhouse, &estate).await;
}
