//! Metric cases from model telemetry: the bridge between what a
//! `TelemetrySource` returns (topology, call edges, request and resource
//! series) and [`rank_case`](crate::case::rank_case).
//!
//! The caller reads the values (this crate does no IO); [`case_from_telemetry`]
//! turns them into a [`MetricCase`] with one column per entity and metric and a
//! [`CaseGraph`] of causal edges: calls (a fault in the server shows in the
//! client), placement (a host causes its containers, a container the service
//! whose instance runs in it). Entities without data (instances, processes)
//! are contracted away so their causes link straight to their effects.

use std::collections::{BTreeMap, BTreeSet};

use vigil_model::{
    CallEdge, EntityId, EntityKind, RelationKind, RequestSeries, ResourceMetric, ResourceSeries,
    Timestamp, Topology,
};

use crate::case::{CaseEdge, CaseGraph, CaseRelation, MetricCase, MetricColumn};

/// The metric name of a resource column.
fn resource_name(metric: ResourceMetric) -> &'static str {
    match metric {
        ResourceMetric::CpuCores => "cpu",
        ResourceMetric::MemoryBytes => "memory",
        ResourceMetric::TcpRetransmits => "retransmits",
        ResourceMetric::TcpResets => "resets",
    }
}

/// A metric case and its causal graph from telemetry read over one range at one
/// step. Columns: `latency`, `latency-p99` and `error-ratio` of every serving
/// entity, and each resource series under its metric's name; rows are aligned
/// by time (a step a series lacks reads as a gap). `reported` is when the
/// problem was reported.
pub fn case_from_telemetry(
    topology: &Topology,
    calls: &[CallEdge],
    requests: &[RequestSeries],
    resources: &[ResourceSeries],
    reported: Timestamp,
) -> (MetricCase, CaseGraph) {
    // The common time axis: every step any series has.
    let mut step_secs = u32::MAX;
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    let mut note = |start: Timestamp, step: u32, len: usize| {
        if len == 0 || step == 0 {
            return;
        }
        step_secs = step_secs.min(step);
        first = first.min(start.0);
        last = last.max(start.0 + i64::from(step) * (len as i64 - 1));
    };
    for series in requests {
        let m = &series.metrics;
        note(m.start, m.step_secs, m.requests.len());
    }
    for series in resources {
        let s = &series.series;
        note(s.start, s.step_secs, s.values.len());
    }
    let times: Vec<i64> = if first <= last {
        (0..=((last - first) / i64::from(step_secs)))
            .map(|i| first + i * i64::from(step_secs))
            .collect()
    } else {
        Vec::new()
    };
    let place = |start: Timestamp, step: u32, values: &[f64]| -> Vec<f64> {
        let mut out = vec![f64::NAN; times.len()];
        for (i, v) in values.iter().enumerate() {
            let t = start.0 + i64::from(step) * i as i64;
            if let Ok(row) = times.binary_search(&t) {
                out[row] = *v;
            }
        }
        out
    };

    let mut series: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for request in requests {
        let entity = request.entity.to_string();
        let m = &request.metrics;
        let ratio: Vec<f64> = m
            .requests
            .iter()
            .zip(&m.errors)
            .map(|(r, e)| if *r > 0.0 { e / r } else { f64::NAN })
            .collect();
        for (metric, values) in [
            ("latency", &m.latency_mean_ms),
            ("latency-p99", &m.latency_p99_ms),
            ("error-ratio", &ratio),
        ] {
            series.insert(
                (entity.clone(), metric.to_owned()),
                place(m.start, m.step_secs, values),
            );
        }
    }
    for resource in resources {
        let s = &resource.series;
        series.insert(
            (
                resource.entity.to_string(),
                resource_name(resource.metric).to_owned(),
            ),
            place(s.start, s.step_secs, &s.values),
        );
    }
    let with_data: BTreeSet<String> = series.keys().map(|(e, _)| e.clone()).collect();
    let columns = series
        .into_iter()
        .map(|((entity, metric), values)| MetricColumn {
            entity,
            metric,
            values,
        })
        .collect();
    let case = MetricCase::new(times, columns, reported.0);

    // Causal pairs over every entity, then contract the ones without data.
    let mut causes: BTreeSet<(String, String)> = BTreeSet::new();
    for call in calls {
        causes.insert((call.server.to_string(), call.client.to_string()));
    }
    for relation in &topology.relations {
        let (from, to) = (relation.from.to_string(), relation.to.to_string());
        match relation.kind {
            RelationKind::Calls => {
                causes.insert((to, from));
            }
            // An instance is one copy of its service: its trouble is the service's.
            RelationKind::InstanceOf => {
                causes.insert((from, to));
            }
            // What runs on a container or host suffers from its trouble.
            RelationKind::RunsOn => {
                causes.insert((to, from));
            }
            RelationKind::Exposes => {}
        }
    }
    causes.retain(|(a, b)| a != b);
    let hidden: BTreeSet<String> = causes
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .filter(|e| !with_data.contains(e))
        .collect();
    for node in hidden {
        let upstream: Vec<String> = causes
            .iter()
            .filter(|(_, b)| *b == node)
            .map(|(a, _)| a.clone())
            .collect();
        let downstream: Vec<String> = causes
            .iter()
            .filter(|(a, _)| *a == node)
            .map(|(_, b)| b.clone())
            .collect();
        causes.retain(|(a, b)| *a != node && *b != node);
        for a in &upstream {
            for b in &downstream {
                if a != b {
                    causes.insert((a.clone(), b.clone()));
                }
            }
        }
    }
    let graph = CaseGraph {
        nodes: with_data.into_iter().collect(),
        edges: causes
            .into_iter()
            .map(|(from, to)| CaseEdge {
                from,
                to,
                relation: CaseRelation::Causes,
            })
            .collect(),
    };
    (case, graph)
}

/// The service each instance, process and container of `topology` belongs to
/// (through `instance-of` and `runs-on`), keyed and valued by entity id text.
/// Scoring resolves a candidate through it, so a fault named at a service's
/// container counts for the service.
pub fn owning_services(topology: &Topology) -> BTreeMap<String, String> {
    let mut service_of_instance: BTreeMap<&EntityId, &EntityId> = BTreeMap::new();
    for relation in &topology.relations {
        if relation.kind == RelationKind::InstanceOf && relation.to.kind() == EntityKind::Service {
            service_of_instance.insert(&relation.from, &relation.to);
        }
    }
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (instance, service) in &service_of_instance {
        owners.insert(instance.to_string(), service.to_string());
    }
    // What an instance runs on (a container, a process's container…) is the
    // service's too, unless it is a host shared by many.
    let mut changed = true;
    while changed {
        changed = false;
        for relation in &topology.relations {
            if relation.kind != RelationKind::RunsOn || relation.to.kind() == EntityKind::Host {
                continue;
            }
            let (from, to) = (relation.from.to_string(), relation.to.to_string());
            if let Some(service) = owners.get(&from).cloned() {
                if let std::collections::btree_map::Entry::Vacant(slot) = owners.entry(to) {
                    slot.insert(service);
                    changed = true;
                }
            }
        }
    }
    owners
}

/// Resolves a ranking to owning services: each entity is replaced by its
/// service (see [`owning_services`]) and later duplicates are dropped.
pub fn resolve_to_services(ranking: &[String], owners: &BTreeMap<String, String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ranking
        .iter()
        .map(|e| owners.get(e).cloned().unwrap_or_else(|| e.clone()))
        .filter(|e| seen.insert(e.clone()))
        .collect()
}
