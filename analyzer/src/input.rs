//! [`AnalysisInput`]: what the caller read for one analysis, and [`Context`], the
//! lookups over its topology and events that detectors and merging share.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_model::{
    EdgeMetrics, EntityId, EntityKind, Event, EventKind, RelationKind, RequestSeries,
    ResourceSeries, StatementStep, TimeRange, Timestamp, Topology, MINUTE_SECS,
};

/// Telemetry for one analysis: the window to report on plus the history before
/// it, all at one step (per-minute series; every series should start at the
/// same instant, the start of the history).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisInput {
    /// Anomalies are reported only where they overlap this range; everything
    /// before it is history that baselines learn from.
    pub window: TimeRange,
    /// Entities and relations (calls, instance-of, runs-on, exposes).
    pub topology: Topology,
    /// Request metrics of services, databases and caches.
    pub requests: Vec<RequestSeries>,
    /// Request metrics per call edge.
    pub edges: Vec<EdgeMetrics>,
    /// CPU, memory and TCP series of containers, processes and hosts.
    pub resources: Vec<ResourceSeries>,
    /// Per-step statement and command statistics.
    pub statements: Vec<StatementStep>,
    /// Deploys, restarts, OOM kills.
    pub events: Vec<Event>,
}

/// Lookups over the topology and events, built once per analysis.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Container or instance → the service it runs.
    service_of: BTreeMap<EntityId, EntityId>,
    /// Endpoint → the server exposing it.
    exposer: BTreeMap<EntityId, EntityId>,
    /// Entity → the hosts it runs on (directly or through its containers).
    hosts_of: BTreeMap<EntityId, BTreeSet<EntityId>>,
    /// Caller → callees.
    callees: BTreeMap<EntityId, BTreeSet<EntityId>>,
    /// Service → its containers.
    containers: BTreeMap<EntityId, Vec<EntityId>>,
    /// Container → CPU limit in cores.
    cpu_limits: BTreeMap<EntityId, f64>,
    /// Entity → deploy and restart times, sorted (container restarts also count
    /// for their service).
    warmups: BTreeMap<EntityId, Vec<Timestamp>>,
    /// Container → restart and OOM-kill times, sorted (memory segments).
    restarts: BTreeMap<EntityId, Vec<Timestamp>>,
}

impl Context {
    /// Indexes `topology` and `events`.
    pub fn new(topology: &Topology, events: &[Event]) -> Self {
        let mut context = Self::default();
        let mut instance_container: Vec<(EntityId, EntityId)> = Vec::new();
        let mut runs_on: Vec<(EntityId, EntityId)> = Vec::new();
        for relation in &topology.relations {
            match relation.kind {
                RelationKind::InstanceOf => {
                    context
                        .service_of
                        .insert(relation.from.clone(), relation.to.clone());
                }
                RelationKind::Exposes => {
                    context
                        .exposer
                        .insert(relation.to.clone(), relation.from.clone());
                }
                RelationKind::Calls => {
                    context
                        .callees
                        .entry(relation.from.clone())
                        .or_default()
                        .insert(relation.to.clone());
                }
                RelationKind::RunsOn => {
                    if relation.from.kind() == EntityKind::Instance
                        && relation.to.kind() == EntityKind::Container
                    {
                        instance_container.push((relation.from.clone(), relation.to.clone()));
                    }
                    runs_on.push((relation.from.clone(), relation.to.clone()));
                }
            }
        }
        for (instance, container) in instance_container {
            if let Some(service) = context.service_of.get(&instance).cloned() {
                context
                    .containers
                    .entry(service.clone())
                    .or_default()
                    .push(container.clone());
                context.service_of.insert(container, service);
            }
        }
        for (from, to) in runs_on {
            if to.kind() == EntityKind::Host {
                context
                    .hosts_of
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone());
                if let Some(service) = context.service_of.get(&from).cloned() {
                    context.hosts_of.entry(service).or_default().insert(to);
                }
            }
        }
        for entity in &topology.entities {
            if let Some(limit) = entity
                .attributes
                .get("cpu_limit_cores")
                .and_then(|text| text.parse::<f64>().ok())
                .filter(|limit| *limit > 0.0)
            {
                context.cpu_limits.insert(entity.id.clone(), limit);
            }
        }
        for event in events {
            match event.kind {
                EventKind::Deploy | EventKind::Restart => {
                    context
                        .warmups
                        .entry(event.entity.clone())
                        .or_default()
                        .push(event.time);
                    if let Some(service) = context.service_of.get(&event.entity).cloned() {
                        context.warmups.entry(service).or_default().push(event.time);
                    }
                }
                EventKind::ConfigChange => {}
                EventKind::OomKill => {}
            }
            if matches!(event.kind, EventKind::Restart | EventKind::OomKill) {
                context
                    .restarts
                    .entry(event.entity.clone())
                    .or_default()
                    .push(event.time);
            }
        }
        for times in context
            .warmups
            .values_mut()
            .chain(context.restarts.values_mut())
        {
            times.sort_unstable();
            times.dedup();
        }
        for containers in context.containers.values_mut() {
            containers.sort();
        }
        context
    }

    /// The entity a symptom on `entity` belongs to: containers and instances
    /// belong to their service, endpoints to their server; others to themselves.
    pub fn owner(&self, entity: &EntityId) -> EntityId {
        match entity.kind() {
            EntityKind::Container | EntityKind::Instance | EntityKind::Process => self
                .service_of
                .get(entity)
                .cloned()
                .unwrap_or_else(|| entity.clone()),
            EntityKind::Endpoint => self
                .exposer
                .get(entity)
                .cloned()
                .unwrap_or_else(|| entity.clone()),
            _ => entity.clone(),
        }
    }

    /// The service a container or instance runs, if known.
    pub fn service_of(&self, entity: &EntityId) -> Option<&EntityId> {
        self.service_of.get(entity)
    }

    /// Containers of a service, sorted.
    pub fn containers_of(&self, service: &EntityId) -> &[EntityId] {
        self.containers.get(service).map_or(&[], Vec::as_slice)
    }

    /// What `caller` calls directly.
    pub fn callees(&self, caller: &EntityId) -> impl Iterator<Item = &EntityId> + '_ {
        self.callees.get(caller).into_iter().flatten()
    }

    /// Hosts an entity runs on (services through their containers).
    pub fn hosts_of(&self, entity: &EntityId) -> impl Iterator<Item = &EntityId> + '_ {
        self.hosts_of.get(entity).into_iter().flatten()
    }

    /// CPU limit of a container, cores.
    pub fn cpu_limit(&self, container: &EntityId) -> Option<f64> {
        self.cpu_limits.get(container).copied()
    }

    /// Restart and OOM-kill times of an entity, sorted.
    pub fn restarts(&self, entity: &EntityId) -> &[Timestamp] {
        self.restarts.get(entity).map_or(&[], Vec::as_slice)
    }

    /// Marks as unscorable the steps of a series (`start`, `step_secs`, `len`)
    /// that fall within `warmup_minutes` after a deploy or restart of `entity`.
    pub fn warmup_mask(
        &self,
        entity: &EntityId,
        start: Timestamp,
        step_secs: u32,
        len: usize,
        warmup_minutes: u32,
        mask: &mut [bool],
    ) {
        let Some(times) = self.warmups.get(entity) else {
            return;
        };
        let step = i64::from(step_secs.max(1));
        let span = i64::from(warmup_minutes) * i64::from(MINUTE_SECS);
        for time in times {
            let first = (time.secs() - start.secs()).div_euclid(step);
            let last = (time.secs() + span - start.secs()).div_euclid(step);
            for index in first.max(0)..=last {
                match usize::try_from(index) {
                    Ok(index) if index < len && index < mask.len() => mask[index] = true,
                    _ => {}
                }
            }
        }
    }
}
