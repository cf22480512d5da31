//! Behavioural tests of the simulator: determinism, normal shape, each fault's
//! signal and its propagation, records against truth, config errors.

use std::collections::{BTreeMap, HashSet};

use vigil_model::{
    EntityId, EntityKind, EventKind, FaultKind, RelationKind, RequestMetric, ResourceMetric,
    SmolStr, TelemetryBatch, TimeRange, Timestamp,
};

use crate::{Estate, FaultSpec, SimConfig, SimError, DEFAULT_START};

/// 10:00 local on a Monday: busy enough for clear signals.
fn busy_start() -> Timestamp {
    DEFAULT_START.plus_secs(10 * 3600)
}

fn estate_with(faults: Vec<FaultSpec>, minutes: u32) -> Estate {
    Estate::new(SimConfig {
        start: busy_start(),
        minutes,
        faults,
        ..SimConfig::default()
    })
    .expect("valid config")
}

fn one_batch(estate: &Estate) -> TelemetryBatch {
    let mut batches: Vec<TelemetryBatch> = estate.batches(estate.config().minutes).collect();
    assert_eq!(batches.len(), 1);
    batches.pop().expect("one batch")
}

fn request_values(batch: &TelemetryBatch, entity: &EntityId, metric: RequestMetric) -> Vec<f64> {
    batch
        .requests
        .iter()
        .find(|s| &s.entity == entity)
        .unwrap_or_else(|| panic!("no series for {entity}"))
        .metrics
        .series(metric)
        .values
}

fn resource_values(batch: &TelemetryBatch, entity: &EntityId, metric: ResourceMetric) -> Vec<f64> {
    batch
        .resources
        .iter()
        .find(|s| &s.entity == entity && s.metric == metric)
        .unwrap_or_else(|| panic!("no {metric:?} for {entity}"))
        .series
        .values
        .clone()
}

fn mean(values: &[f64]) -> f64 {
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    present.iter().sum::<f64>() / present.len().max(1) as f64
}

/// Mean of `values` inside minutes `[from, to)`.
fn window_mean(values: &[f64], from: usize, to: usize) -> f64 {
    mean(&values[from..to])
}

fn callers(estate: &Estate, callee: &EntityId) -> Vec<EntityId> {
    estate
        .topology()
        .relations
        .iter()
        .filter(|r| r.kind == RelationKind::Calls && &r.to == callee)
        .map(|r| r.from.clone())
        .collect()
}

fn fault(kind: FaultKind, target: Option<EntityId>) -> FaultSpec {
    FaultSpec {
        kind,
        target,
        start_minute: 120,
        duration_minutes: 60,
    }
}

fn json(batches: &[TelemetryBatch]) -> String {
    serde_json::to_string(batches).expect("serialise")
}

#[test]
fn same_seed_gives_identical_batches_and_other_seeds_differ() {
    let config = SimConfig {
        minutes: 120,
        faults: FaultSpec::random_catalogue(3, 120),
        ..SimConfig::default()
    };
    let first: Vec<_> = Estate::new(config.clone())
        .expect("valid")
        .batches(30)
        .collect();
    let again: Vec<_> = Estate::new(config.clone())
        .expect("valid")
        .batches(30)
        .collect();
    assert_eq!(json(&first), json(&again));
    let other: Vec<_> = Estate::new(SimConfig {
        seed: config.seed + 1,
        ..config
    })
    .expect("valid")
    .batches(30)
    .collect();
    assert_ne!(json(&first), json(&other));
}

#[test]
fn values_do_not_depend_on_chunking() {
    let estate = estate_with(vec![fault(FaultKind::SlowMysql, None)], 240);
    let whole = one_batch(&estate);
    let chunks: Vec<_> = estate.batches(7).collect();
    assert_eq!(chunks.len(), 240usize.div_ceil(7));
    assert!(!chunks[0].topology.entities.is_empty());
    assert!(chunks[1].topology.entities.is_empty());
    for (index, series) in whole.requests.iter().enumerate() {
        let joined: Vec<f64> = chunks
            .iter()
            .flat_map(|c| c.requests[index].metrics.latency_p99_ms.clone())
            .collect();
        assert_eq!(joined.len(), series.metrics.len());
        for (a, b) in joined.iter().zip(&series.metrics.latency_p99_ms) {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{}: {a} vs {b}",
                series.entity
            );
        }
    }
}

#[test]
fn traffic_has_daily_seasonality_and_a_calm_normal_day() {
    let estate = Estate::new(SimConfig::default()).expect("valid");
    let batch = one_batch(&estate);
    let gateway = EntityId::new(EntityKind::Service, "gateway");
    let requests = request_values(&batch, &gateway, RequestMetric::Requests);
    let peak = window_mean(&requests, 13 * 60, 17 * 60);
    let trough = window_mean(&requests, 60, 5 * 60);
    assert!(peak / trough > 2.5, "peak {peak} trough {trough}");

    // No faults: p99 stays within a modest band, error ratios stay small.
    for series in &batch.requests {
        let p99 = &series.metrics.latency_p99_ms;
        let mut sorted: Vec<f64> = p99.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        assert!(
            max / median < 1.8,
            "{}: p99 max {max} vs median {median}",
            series.entity
        );
        let requests: f64 = series.metrics.requests.iter().sum();
        let errors: f64 = series.metrics.errors.iter().sum();
        assert!(
            errors / requests < 0.01,
            "{}: {errors}/{requests}",
            series.entity
        );
    }
    assert!(estate.faults().is_empty());
}

#[test]
fn batches_agree_with_truth() {
    let estate = estate_with(vec![fault(FaultKind::ErrorBurst, None)], 180);
    let batch = one_batch(&estate);
    for series in batch.requests.iter().take(20) {
        for minute in [0usize, 130] {
            let truth = estate
                .truth(&series.entity, series.metrics.time_at(minute))
                .expect("serving entity");
            let point = series.metrics.get(minute);
            assert_eq!(truth.requests, point.requests);
            assert_eq!(truth.errors, point.errors);
            assert_eq!(
                truth.latency_p99_ms.to_bits(),
                point.latency_p99_ms.to_bits()
            );
        }
    }
    let host = EntityId::new(EntityKind::Host, "host-1");
    assert!(estate.truth(&host, busy_start()).is_none());
    assert!(estate
        .truth(&batch.requests[0].entity, DEFAULT_START)
        .is_none());
}

/// Runs a slow-server fault and checks the server, its callers and their callers.
fn check_slow_server(kind: FaultKind) {
    let estate = estate_with(vec![fault(kind, None)], 240);
    let planted = &estate.faults()[0];
    let server = planted.root_cause.clone();
    let expected_kind = if kind == FaultKind::SlowMysql {
        EntityKind::Database
    } else {
        EntityKind::Cache
    };
    assert_eq!(server.kind(), expected_kind);
    assert_eq!(planted.window.start, busy_start().plus_secs(120 * 60));
    let batch = one_batch(&estate);
    let p99 = request_values(&batch, &server, RequestMetric::LatencyP99);
    let before = window_mean(&p99, 60, 120);
    let during = window_mean(&p99, 125, 180);
    let after = window_mean(&p99, 185, 240);
    let ratio = during / before;
    assert!((2.0..=25.0).contains(&ratio), "{server} p99 ×{ratio}");
    assert!(
        (after / before - 1.0).abs() < 0.2,
        "{server} did not recover"
    );

    let mut deeper = Vec::new();
    // Light callers barely notice; the heaviest caller's p99 must.
    let mut strongest: f64 = 0.0;
    for caller in callers(&estate, &server) {
        let mean_latency = request_values(&batch, &caller, RequestMetric::LatencyMean);
        let p99 = request_values(&batch, &caller, RequestMetric::LatencyP99);
        let rise = window_mean(&mean_latency, 125, 180) - window_mean(&mean_latency, 60, 120);
        assert!(rise > 0.5, "{caller} mean rose by {rise} ms");
        strongest = strongest.max(window_mean(&p99, 125, 180) / window_mean(&p99, 60, 120));
        deeper.extend(callers(&estate, &caller));
    }
    assert!(strongest > 1.1, "callers' p99 rose at most ×{strongest}");
    assert!(!deeper.is_empty(), "the server's callers have callers");
    for caller in deeper {
        let mean_latency = request_values(&batch, &caller, RequestMetric::LatencyMean);
        let rise = window_mean(&mean_latency, 125, 180) - window_mean(&mean_latency, 60, 120);
        assert!(rise > 0.2, "{caller} (two hops up) mean rose by {rise} ms");
    }
    // The slowed shape's statistics carry the slowdown.
    let shape = planted
        .detail
        .split('`')
        .nth(1)
        .expect("detail quotes the shape");
    let shape_p99 = |from: i64, to: i64| -> f64 {
        batch
            .statements
            .iter()
            .filter(|s| s.stats.server == server && s.stats.shape == shape)
            .filter(|s| {
                let minute = (s.time.secs() - busy_start().secs()) / 60;
                (from..to).contains(&minute)
            })
            .map(|s| s.stats.latency_p99_ms)
            .fold(0.0, f64::max)
    };
    assert!(shape_p99(125, 180) > 4.0 * shape_p99(60, 120));
}

#[test]
fn slow_mysql_slows_the_database_and_propagates_upstream() {
    check_slow_server(FaultKind::SlowMysql);
}

#[test]
fn slow_redis_slows_the_cache_and_propagates_upstream() {
    check_slow_server(FaultKind::SlowRedis);
}

#[test]
fn error_burst_propagates_to_callers_with_decay() {
    let estate = estate_with(vec![fault(FaultKind::ErrorBurst, None)], 240);
    let planted = &estate.faults()[0];
    let batch = one_batch(&estate);
    let ratio = |entity: &EntityId, from: usize, to: usize| {
        window_mean(
            &request_values(&batch, entity, RequestMetric::ErrorRatio),
            from,
            to,
        )
    };
    let root = planted.root_cause.clone();
    let root_ratio = ratio(&root, 125, 180);
    assert!(root_ratio > 0.06, "{root}: {root_ratio}");
    assert!(ratio(&root, 60, 120) < 0.01);
    assert!(ratio(&root, 185, 240) < 0.01);
    let direct = callers(&estate, &root);
    assert!(!direct.is_empty());
    for caller in &direct {
        let during = ratio(caller, 125, 180);
        assert!(during > 0.02 && during < root_ratio, "{caller}: {during}");
        assert!(ratio(caller, 60, 120) < 0.01);
        for upstream in callers(&estate, caller) {
            let two_hops = ratio(&upstream, 125, 180);
            assert!(
                two_hops > ratio(&upstream, 60, 120) + 0.002,
                "{upstream}: {two_hops}"
            );
        }
    }
    assert!(batch
        .samples
        .iter()
        .any(|s| s.server == root && s.code == Some(500)));
}

#[test]
fn cpu_not_released_burns_cpu_without_traffic_and_shows_a_hot_stack() {
    let estate = estate_with(vec![fault(FaultKind::CpuNotReleased, None)], 240);
    let planted = &estate.faults()[0];
    assert_eq!(planted.root_cause.kind(), EntityKind::Service);
    let container_name = planted
        .detail
        .split_whitespace()
        .next()
        .and_then(|word| word.strip_prefix("container:"))
        .expect("detail names the container");
    let container = EntityId::new(EntityKind::Container, container_name);
    let chunks: Vec<_> = estate.batches(60).collect();
    let batch = one_batch(&estate);
    let cpu = resource_values(&batch, &container, ResourceMetric::CpuCores);
    let before = window_mean(&cpu, 60, 120);
    let during = window_mean(&cpu, 125, 180);
    assert!(
        before < 0.6 && during > before + 0.3 && during > 0.7,
        "cpu {before} → {during}"
    );
    assert!(
        cpu[125..180].iter().all(|&c| c < 1.0),
        "pinned exactly at the limit"
    );
    assert!(window_mean(&cpu, 185, 240) < 0.6);
    let requests = request_values(&batch, &planted.root_cause, RequestMetric::Requests);
    let traffic_change = window_mean(&requests, 125, 180) / window_mean(&requests, 60, 120);
    assert!(traffic_change < 1.2, "traffic ×{traffic_change}");

    let profile_of = |chunk: &TelemetryBatch| {
        chunk
            .profiles
            .iter()
            .find(|p| p.entity == container)
            .expect("profile per container")
            .clone()
    };
    let hot = profile_of(&chunks[2]);
    assert!(hot.stacks[0]
        .frames
        .ends_with("main;worker::run;crypto::hash_loop"));
    assert!(hot.stacks[0].value as f64 > 0.5 * hot.total() as f64);
    let calm = profile_of(&chunks[0]);
    assert!(calm.stacks.iter().all(|s| !s.frames.contains("hash_loop")));
}

#[test]
fn memory_leak_grows_until_oom_kill() {
    let estate = estate_with(vec![fault(FaultKind::MemoryLeak, None)], 240);
    let planted = &estate.faults()[0];
    let container_name = planted
        .detail
        .split_whitespace()
        .next()
        .and_then(|word| word.strip_prefix("container:"))
        .expect("detail names the container");
    let container = EntityId::new(EntityKind::Container, container_name);
    let batch = one_batch(&estate);
    let memory = resource_values(&batch, &container, ResourceMetric::MemoryBytes);
    let before = window_mean(&memory, 60, 120);
    let peak = memory[120..180].iter().copied().fold(0.0, f64::max);
    assert!(peak > 1.6 * before, "memory {before} → {peak}");
    assert!(memory[125] < memory[135] && memory[135] < memory[145]);
    assert!((window_mean(&memory, 185, 240) / before - 1.0).abs() < 0.05);
    let kills: Vec<_> = batch
        .events
        .iter()
        .filter(|e| e.kind == EventKind::OomKill && e.entity == container)
        .collect();
    assert!(!kills.is_empty());
    assert!(kills.iter().all(|e| planted.window.contains(e.time)));
}

#[test]
fn network_delay_slows_crossing_edges_but_not_servers() {
    let estate = estate_with(vec![fault(FaultKind::NetworkDelay, None)], 240);
    let planted = &estate.faults()[0];
    assert_eq!(planted.root_cause.kind(), EntityKind::Host);
    let batch = one_batch(&estate);
    let retransmits = resource_values(&batch, &planted.root_cause, ResourceMetric::TcpRetransmits);
    assert!(window_mean(&retransmits, 125, 180) > 5.0 * window_mean(&retransmits, 60, 120) + 50.0);

    let mut slowed = 0;
    for edge in &batch.edges {
        let p99 = edge.metrics.series(RequestMetric::LatencyP99).values;
        if window_mean(&p99, 125, 180) > 1.5 * window_mean(&p99, 60, 120) {
            slowed += 1;
            // The server itself is as fast as before: the delay is on the wire.
            let server = request_values(&batch, &edge.server, RequestMetric::LatencyP99);
            let change = window_mean(&server, 125, 180) / window_mean(&server, 60, 120);
            if edge.server.kind() != EntityKind::Service {
                assert!((change - 1.0).abs() < 0.15, "{}: ×{change}", edge.server);
            }
            let client = request_values(&batch, &edge.client, RequestMetric::LatencyMean);
            assert!(window_mean(&client, 125, 180) > window_mean(&client, 60, 120) + 1.0);
        }
    }
    assert!(slowed >= 1, "no edge slowed");
}

#[test]
fn record_quantiles_approximate_truth() {
    let estate = estate_with(vec![fault(FaultKind::SlowMysql, None)], 240);
    let database = estate.faults()[0].root_cause.clone();
    let database_name = database.name().to_owned();
    let api = estate
        .serving_entities()
        .find(|id| id.name().ends_with("-api"))
        .expect("an API")
        .clone();
    // Ten minutes pooled, so the API's p99 rests on thousands of records.
    for minute in [100u32, 150] {
        let start = busy_start().plus_secs(i64::from(minute) * 60);
        let range = TimeRange::new(start, start.plus_secs(600)).expect("range");
        let mut database_ms = Vec::new();
        let mut api_ms = Vec::new();
        for record in estate.request_records(range, 20_000) {
            assert!(record.start_us / 1_000_000 >= start.secs() as u64);
            let server = format!(
                "{}@{}:{}",
                record.server.process_name, record.server.ip, record.server.port
            );
            if server == database_name {
                assert!(record.server.service.is_empty());
                database_ms.push(record.duration_us as f64 / 1000.0);
            } else if record.server.service == api.name() {
                api_ms.push(record.duration_us as f64 / 1000.0);
            }
        }
        for (entity, mut durations) in [(&database, database_ms), (&api, api_ms)] {
            assert!(
                durations.len() > 3000,
                "{entity}: {} records",
                durations.len()
            );
            durations.sort_by(f64::total_cmp);
            let quantile = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
            let truths: Vec<_> = (0..10)
                .map(|m| {
                    estate
                        .truth(entity, start.plus_secs(m * 60))
                        .expect("truth")
                })
                .collect();
            let p50 = truths.iter().map(|t| t.latency_p50_ms).sum::<f64>() / 10.0;
            let p99 = truths.iter().map(|t| t.latency_p99_ms).sum::<f64>() / 10.0;
            for (q, planted) in [(0.5, p50), (0.99, p99)] {
                let observed = quantile(q);
                // Records are client-side: they add a network round trip of at most 0.25 ms.
                let low = planted * 0.88;
                let high = planted * 1.12 + 0.25;
                assert!(
                    (low..=high).contains(&observed),
                    "{entity} minute {minute} q{q}: {observed} vs {planted}"
                );
            }
        }
    }
}

#[test]
fn records_look_like_deepflow_rows() {
    let estate = estate_with(Vec::new(), 10);
    let records: Vec<_> = estate.request_records(estate.range(), 3).collect();
    let again: Vec<_> = estate.request_records(estate.range(), 3).collect();
    assert_eq!(records, again);
    assert!(!records.is_empty());
    let mysql = records
        .iter()
        .find(|r| r.server.process_name == "mysqld")
        .expect("a MySQL record");
    assert_eq!(mysql.server.port, 3306);
    assert!(mysql.resource.contains('?'));
    assert!(!mysql.client.service.is_empty());
    let http = records
        .iter()
        .find(|r| r.server.port != 3306 && r.server.port != 6379)
        .expect("HTTP");
    assert!(!http.server.service.is_empty() && !http.trace_id.is_empty());
    assert_eq!(http.code, Some(200));
    // At most per_edge_minute per edge and minute.
    let mut per_edge: BTreeMap<(SmolStr, SmolStr, u64), usize> = BTreeMap::new();
    for r in &records {
        let key = (
            r.client.instance.clone(),
            r.resource.clone(),
            r.start_us / 60_000_000,
        );
        *per_edge.entry(key).or_default() += 1;
    }
    assert!(per_edge.values().all(|&n| n <= 3 * 3));
}

#[test]
fn ids_follow_store_conventions_and_names_are_unique_at_scale() {
    let estate = Estate::new(SimConfig {
        services: 10_000,
        minutes: 1,
        ..SimConfig::default()
    })
    .expect("valid");
    let services: Vec<_> = estate
        .topology()
        .entities
        .iter()
        .filter(|e| e.id.kind() == EntityKind::Service)
        .collect();
    assert_eq!(services.len(), 10_000);
    let ids: HashSet<_> = estate.topology().entities.iter().map(|e| &e.id).collect();
    assert_eq!(ids.len(), estate.topology().entities.len());
    let names: HashSet<_> = services.iter().map(|e| e.id.name()).collect();
    assert!(names.contains("gateway") && names.contains("order-api"));
    for entity in &estate.topology().entities {
        if entity.id.kind() == EntityKind::Container {
            assert!(entity.attributes.contains_key("cpu_limit_cores"));
            assert!(entity.attributes["ip"].starts_with("10.0."));
        }
        if entity.id.kind() == EntityKind::Database {
            assert!(
                entity.id.name().starts_with("mysqld@10.0.") && entity.id.name().ends_with(":3306")
            );
        }
        if entity.id.kind() == EntityKind::Cache {
            assert!(
                entity.id.name().starts_with("redis-server@10.0.")
                    && entity.id.name().ends_with(":6379")
            );
        }
    }
    let instance = EntityId::new(EntityKind::Instance, "order-api-1");
    assert!(estate
        .topology()
        .relations
        .iter()
        .any(|r| r.from == instance
            && r.kind == RelationKind::InstanceOf
            && r.to == EntityId::new(EntityKind::Service, "order-api")));
}

#[test]
fn random_catalogue_plants_every_kind_without_overlap() {
    let faults = FaultSpec::random_catalogue(11, 1440);
    assert_eq!(faults.len(), FaultKind::ALL.len());
    let estate = Estate::new(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .expect("valid");
    let planted = estate.faults();
    let kinds: HashSet<_> = planted.iter().map(|f| f.kind).collect();
    assert_eq!(kinds.len(), FaultKind::ALL.len());
    for (i, a) in planted.iter().enumerate() {
        for b in &planted[i + 1..] {
            assert!(!a.window.overlaps(&b.window));
        }
    }
    assert!(FaultSpec::random_catalogue(1, 5).len() < FaultKind::ALL.len());
}

#[test]
fn config_errors_name_the_field() {
    let field = |config: SimConfig| -> String {
        Estate::new(config)
            .map(|_| ())
            .expect_err("invalid")
            .field()
    };
    assert_eq!(
        field(SimConfig {
            services: 0,
            ..SimConfig::default()
        }),
        "services"
    );
    assert_eq!(
        field(SimConfig {
            minutes: 0,
            ..SimConfig::default()
        }),
        "minutes"
    );
    assert_eq!(
        field(SimConfig {
            start: Timestamp(30),
            ..SimConfig::default()
        }),
        "start"
    );
    assert_eq!(
        field(SimConfig {
            instances_per_service: 0,
            ..SimConfig::default()
        }),
        "instances_per_service"
    );
    assert_eq!(
        field(SimConfig {
            gateway_requests_per_minute: f64::NAN,
            ..SimConfig::default()
        }),
        "gateway_requests_per_minute"
    );
    let with_fault = |spec: FaultSpec| SimConfig {
        faults: vec![spec],
        ..SimConfig::default()
    };
    let late = FaultSpec {
        start_minute: 1400,
        ..fault(FaultKind::ErrorBurst, None)
    };
    assert_eq!(field(with_fault(late)), "faults[0].start_minute");
    let empty = FaultSpec {
        duration_minutes: 0,
        ..fault(FaultKind::ErrorBurst, None)
    };
    assert_eq!(field(with_fault(empty)), "faults[0].duration_minutes");
    let missing = fault(
        FaultKind::ErrorBurst,
        Some(EntityId::new(EntityKind::Service, "nope")),
    );
    let error = Estate::new(with_fault(missing))
        .map(|_| ())
        .expect_err("unknown target");
    assert_eq!(error.field(), "faults[0].target");
    assert!(error.to_string().contains("service:nope"), "{error}");
    let wrong_kind = fault(
        FaultKind::SlowMysql,
        Some(EntityId::new(EntityKind::Service, "gateway")),
    );
    assert!(matches!(
        Estate::new(with_fault(wrong_kind)),
        Err(SimError::FaultTarget { index: 0, .. })
    ));
    let no_mysql = SimConfig {
        mysql_servers: Some(0),
        ..with_fault(fault(FaultKind::SlowMysql, None))
    };
    assert_eq!(field(no_mysql), "faults[0].target");
}

#[test]
fn explicit_targets_are_honoured() {
    let host = EntityId::new(EntityKind::Host, "host-1");
    let container = EntityId::new(EntityKind::Container, "order-api-2");
    let estate = estate_with(
        vec![
            FaultSpec {
                start_minute: 0,
                duration_minutes: 30,
                ..fault(FaultKind::NetworkDelay, Some(host.clone()))
            },
            fault(FaultKind::CpuNotReleased, Some(container)),
        ],
        240,
    );
    assert_eq!(estate.faults()[0].root_cause, host);
    assert_eq!(
        estate.faults()[1].root_cause,
        EntityId::new(EntityKind::Service, "order-api")
    );
    assert!(estate.faults()[1]
        .detail
        .starts_with("container:order-api-2 "));
}
