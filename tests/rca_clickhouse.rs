//! Root-cause ranking end to end through ClickHouse: for each fault kind of the
//! simulator's catalogue, a small estate with that one fault is written into a
//! real ClickHouse in DeepFlow's shape, read back through `TelemetrySource`
//! only, turned into the knowledge graph and a metric case, and ranked for a
//! symptom on a caller of the fault. The planted root cause must be in the top
//! three (containers resolved to the service they serve).
//!
//! Needs `VIGIL_TEST_CLICKHOUSE_URL` (`./scripts/test.sh` starts ClickHouse).

mod common;

use std::collections::BTreeSet;

use vigil_knowledge_graph::{
    case_from_telemetry, owning_services, rank_case, resolve_to_services, CaseRankConfig,
    KnowledgeGraph,
};
use vigil_model::{
    EntityFilter, EntityId, EntityKind, FaultKind, PlantedFault, ResourceMetric, SeriesQuery,
    TelemetrySource, Timestamp,
};
use vigil_sim::{Estate, FaultSpec, SimConfig};

/// Raw request rows per call edge and minute: enough for stable per-minute
/// means and p99s, few enough to keep the test quick.
const ROWS_PER_EDGE_MINUTE: u32 = 50;
const MINUTES: u32 = 180;
const FAULT_START: u32 = 150;

fn estate(kind: FaultKind, seed: u64) -> Estate {
    let config = SimConfig {
        seed,
        services: 8,
        start: Timestamp::from_secs(1_704_067_200),
        minutes: MINUTES,
        faults: vec![FaultSpec {
            kind,
            target: None,
            start_minute: FAULT_START,
            duration_minutes: MINUTES - FAULT_START,
        }],
        ..SimConfig::default()
    };
    Estate::new(config).expect("valid estate")
}

/// Ranks the fault of `estate` from what `source` returns; the ranking is
/// resolved to services, best first.
async fn rank_through(
    source: &dyn TelemetrySource,
    estate: &Estate,
    fault: &PlantedFault,
) -> (EntityId, Vec<String>) {
    let range = estate.range();
    let topology = source.topology(range).await.expect("topology");
    let calls = source.call_edges(range).await.expect("call edges");
    let query = SeriesQuery {
        filter: EntityFilter::all(),
        range,
        step_secs: 60,
    };
    let requests = source.request_series(&query).await.expect("request series");
    let mut resources = Vec::new();
    for metric in [
        ResourceMetric::CpuCores,
        ResourceMetric::MemoryBytes,
        ResourceMetric::TcpRetransmits,
    ] {
        resources.extend(
            source
                .resource_series(&query, metric)
                .await
                .expect("resource series"),
        );
    }

    let mut graph = KnowledgeGraph::from_topology(&topology);
    graph.apply_window(range, &topology, &calls, &[]);

    // The symptom: the most upstream service of the estate (not the outside
    // clients call edges also name) whose dependencies include the root cause
    // (a gateway, typically), as an alert on it would be.
    let symptom = topology
        .entities
        .iter()
        .map(|entity| entity.id.clone())
        .filter(|id| {
            matches!(id.kind(), EntityKind::Service) && *id != fault.root_cause && {
                graph
                    .dependencies(id)
                    .is_ok_and(|deps| deps.iter().any(|(d, _)| *d == fault.root_cause))
            }
        })
        .max_by_key(|id| (graph.dependencies(id).map_or(0, |d| d.len()), id.clone()))
        .expect("a caller of the root cause");
    // Candidates: the symptom, its dependencies and what is co-located with them.
    let mut candidates: BTreeSet<String> = BTreeSet::from([symptom.to_string()]);
    let dependencies = graph.dependencies(&symptom).expect("known symptom");
    for (id, _) in &dependencies {
        candidates.insert(id.to_string());
    }
    for id in dependencies
        .iter()
        .map(|(id, _)| id.clone())
        .chain([symptom.clone()])
    {
        for near in graph.co_located(&id).expect("known entity") {
            candidates.insert(near.to_string());
        }
    }

    let (case, case_graph) =
        case_from_telemetry(&topology, &calls, &requests, &resources, fault.window.start);
    let ranked =
        rank_case(&case, Some(&case_graph), &CaseRankConfig::default()).expect("rankable case");
    let ranking: Vec<String> = ranked
        .into_iter()
        .map(|r| r.entity)
        .filter(|e| candidates.contains(e))
        .collect();
    (
        symptom,
        resolve_to_services(&ranking, &owning_services(&topology)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_ranks_its_planted_root_cause_in_the_top_three() {
    let mut failures = Vec::new();
    for (index, kind) in FaultKind::ALL.into_iter().enumerate() {
        let estate = estate(kind, 40 + index as u64);
        let fault = estate.faults()[0].clone();
        let expected_kind = match kind {
            FaultKind::CpuNotReleased | FaultKind::MemoryLeak => EntityKind::Service,
            FaultKind::SlowMysql => EntityKind::Database,
            FaultKind::SlowRedis => EntityKind::Cache,
            FaultKind::NetworkDelay => EntityKind::Host,
            FaultKind::ErrorBurst => fault.root_cause.kind(),
        };
        assert_eq!(
            fault.root_cause.kind(),
            expected_kind,
            "{kind:?}: {fault:?}"
        );
        let store = common::scratch_clickhouse("rca").await;
        common::write_estate(&store, &estate, ROWS_PER_EDGE_MINUTE).await;
        let (symptom, ranking) = rank_through(&store, &estate, &fault).await;
        let root = fault.root_cause.to_string();
        let top: Vec<&String> = ranking.iter().take(3).collect();
        eprintln!(
            "{}: root {root}, symptom {symptom}, top {top:?}",
            kind.as_str()
        );
        if !top.contains(&&root) {
            failures.push(format!(
                "{}: planted {root} not in the top 3 for symptom {symptom}: {:?}",
                kind.as_str(),
                ranking.iter().take(8).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
