//! A scoped, fast investigation of one symptom: what an alert webhook answers
//! within a second.
//!
//! A patrol reads the whole estate; an alert is about one entity. So this reads
//! the topology and call edges, takes the symptom's dependency closure (what it
//! calls, transitively, and where those run), reads request series of only
//! those entities over the window plus one day of history, runs the detectors,
//! then reads resources (CPU, memory) only where they can matter (near the
//! symptom or under an anomalous service), ranks root causes with
//! [`rank_root_causes`], and gathers evidence for the top candidates: their
//! anomalies in numbers, the slowest statements of a database or cache against
//! the day before, the callers affected and the propagation path.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vigil_analyzer::{anomalies, AnalysisInput, AnalyzerConfig};
use vigil_knowledge_graph::{rank_root_causes, KnowledgeGraph, RankConfig, Symptom};
use vigil_model::{
    Anomaly, CallEdge, EntityFilter, EntityId, EntityKind, RelationKind, ResourceMetric,
    SeriesQuery, SignalKind, StatementOrder, StatementQuery, StatementStepQuery, TelemetrySource,
    TimeRange, Timestamp, Topology, MINUTE_SECS,
};

use crate::AssistantError;

/// How an investigation is scoped. Every field has a default so a config
/// section names only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvestigateOptions {
    /// Minutes before the alert time that form the analysed window.
    pub lookback_minutes: u32,
    /// Minutes after the alert time included (alerts fire after the onset;
    /// data after it confirms a trend).
    pub after_minutes: u32,
    /// Days of history before the window for the seasonal baselines (1 is
    /// enough for alerts; patrols use a week).
    pub history_days: u32,
    /// How far down the dependency graph entities are read.
    pub max_hops: usize,
    /// Resources (CPU, memory) are read for services this close to the
    /// symptom, and for every anomalous service.
    pub resource_hops: usize,
    /// Suggestions returned.
    pub limit: usize,
    /// Slow statements listed per database or cache candidate.
    pub statements: usize,
    /// Detector settings.
    pub analyzer: AnalyzerConfig,
    /// Ranking weights.
    pub rank: RankConfig,
}

impl Default for InvestigateOptions {
    fn default() -> Self {
        Self {
            lookback_minutes: 30,
            after_minutes: 5,
            history_days: 1,
            max_hops: 8,
            resource_hops: 2,
            limit: 5,
            statements: 5,
            analyzer: AnalyzerConfig::default(),
            rank: RankConfig::default(),
        }
    }
}

impl InvestigateOptions {
    /// Checks the values, naming each bad key.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors = Vec::new();
        if self.lookback_minutes == 0 || self.lookback_minutes > 24 * 60 {
            errors.push((
                "lookback_minutes".to_owned(),
                "must be between 1 and 1440".to_owned(),
            ));
        }
        if self.history_days == 0 || self.history_days > 14 {
            errors.push((
                "history_days".to_owned(),
                "must be between 1 and 14".to_owned(),
            ));
        }
        if self.limit == 0 {
            errors.push(("limit".to_owned(), "must be at least 1".to_owned()));
        }
        if let Err(error) = self.analyzer.validate() {
            errors.push(("analyzer".to_owned(), error.to_string()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// One anomaly as evidence, in numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// Where it was seen (the candidate or one of its containers).
    pub entity: EntityId,
    /// The signal, e.g. `latency-p99`, `cpu-cores`, a statement shape.
    pub signal: String,
    /// Expected value.
    pub baseline: f64,
    /// Observed value.
    pub observed: f64,
    /// Detector strength (≥ 1 is anomalous).
    pub score: f64,
    /// When it started.
    pub since: Timestamp,
    /// The detector's sentence.
    pub summary: String,
}

/// A slow statement or command of a database or cache candidate, against the
/// same window a day earlier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementEvidence {
    /// `SELECT`, `GET`…
    pub request_type: String,
    /// Statement shape or command with its key pattern.
    pub shape: String,
    /// Executions in the window.
    pub count: u64,
    /// p99 in the window, ms.
    pub p99_ms: f64,
    /// Mean in the window, ms.
    pub mean_ms: f64,
    /// p99 of the same shape a day earlier, ms, when it ran then.
    pub p99_day_before_ms: Option<f64>,
}

/// A ranked root-cause suggestion with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// 1 for the best.
    pub rank: usize,
    /// The suspected cause.
    pub entity: EntityId,
    /// Ranking score.
    pub score: f64,
    /// Confidence in `[0, 1]`.
    pub confidence: f64,
    /// When the problem started on it.
    pub started_at: Option<Timestamp>,
    /// From the cause to the symptom.
    pub path: Vec<EntityId>,
    /// Its anomalies (and its containers'), strongest first.
    pub evidence: Vec<EvidenceItem>,
    /// Slowest statements, for databases and caches.
    pub slow_statements: Vec<StatementEvidence>,
    /// Callers whose requests it serves and that are anomalous themselves.
    pub affected_callers: Vec<EntityId>,
    /// Hottest stack of its on-CPU profile, for CPU causes.
    pub hot_stack: Option<String>,
}

/// The answer to "what is behind this symptom?".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Investigation {
    /// The entity investigated.
    pub symptom: EntityId,
    /// The alert time.
    pub at: Timestamp,
    /// The window analysed (history before it was read too).
    pub window: TimeRange,
    /// Ranked suggestions, best first.
    pub suggestions: Vec<Suggestion>,
    /// The symptom's own anomalies.
    pub symptom_evidence: Vec<EvidenceItem>,
    /// Entities whose telemetry was read.
    pub entities_read: usize,
    /// Anomalies found among them.
    pub anomalies: usize,
    /// What was missing, in plain words (no data for the symptom, no history…).
    pub missing: Vec<String>,
    /// Wall time of the investigation, ms.
    pub elapsed_ms: f64,
}

/// The entity that carries request metrics for `id`: instances and containers
/// belong to their service, endpoints to their server.
pub(crate) fn owner_of(topology: &Topology, id: &EntityId) -> EntityId {
    match id.kind() {
        EntityKind::Instance => topology
            .relations
            .iter()
            .find(|r| r.kind == RelationKind::InstanceOf && &r.from == id)
            .map_or_else(|| id.clone(), |r| r.to.clone()),
        EntityKind::Container | EntityKind::Process => {
            let instance = topology
                .relations
                .iter()
                .find(|r| r.kind == RelationKind::RunsOn && &r.to == id)
                .map(|r| r.from.clone());
            match instance {
                Some(instance) if instance.kind() == EntityKind::Instance => {
                    owner_of(topology, &instance)
                }
                _ => id.clone(),
            }
        }
        EntityKind::Endpoint => topology
            .relations
            .iter()
            .find(|r| r.kind == RelationKind::Exposes && &r.to == id)
            .map_or_else(|| id.clone(), |r| r.from.clone()),
        _ => id.clone(),
    }
}

/// Service → its containers (through instances), from the topology.
fn containers_by_service(topology: &Topology) -> BTreeMap<EntityId, Vec<EntityId>> {
    let mut service_of: BTreeMap<&EntityId, &EntityId> = BTreeMap::new();
    for relation in &topology.relations {
        if relation.kind == RelationKind::InstanceOf {
            service_of.insert(&relation.from, &relation.to);
        }
    }
    let mut out: BTreeMap<EntityId, Vec<EntityId>> = BTreeMap::new();
    for relation in &topology.relations {
        if relation.kind == RelationKind::RunsOn
            && relation.to.kind() == EntityKind::Container
            && relation.from.kind() == EntityKind::Instance
        {
            if let Some(service) = service_of.get(&relation.from) {
                out.entry((*service).clone())
                    .or_default()
                    .push(relation.to.clone());
            }
        }
    }
    out
}

/// The window of an investigation at `at`, whole minutes.
pub(crate) fn window_at(at: Timestamp, options: &InvestigateOptions) -> TimeRange {
    let at = at.floor_to(MINUTE_SECS);
    TimeRange {
        start: at.plus_secs(-i64::from(options.lookback_minutes.max(1)) * 60),
        end: at.plus_secs(i64::from(options.after_minutes) * 60 + 60),
    }
}

fn evidence_of(anomaly: &Anomaly) -> EvidenceItem {
    EvidenceItem {
        entity: anomaly.entity.clone(),
        signal: signal_name(&anomaly.signal),
        baseline: anomaly.evidence.baseline,
        observed: anomaly.evidence.observed,
        score: anomaly.score,
        since: anomaly.window.start,
        summary: anomaly.evidence.summary.clone(),
    }
}

/// A short name of a signal for messages: `latency-p99`, `cpu-cores`, `statement SELECT …`.
pub fn signal_name(signal: &SignalKind) -> String {
    match signal {
        SignalKind::Request(metric) => metric.as_str().to_owned(),
        SignalKind::Resource(metric) => metric.as_str().to_owned(),
        SignalKind::Statement(shape) => format!("statement {shape}"),
        SignalKind::SloBurn(objective) => format!("slo-burn {objective}"),
        SignalKind::Silence => "silence".to_owned(),
        SignalKind::Check(name) => name.clone(),
    }
}

/// Investigates `symptom` at `at`: reads the symptom's dependency closure only,
/// detects anomalies, ranks root causes and gathers evidence for the top ones.
///
/// Instances, containers and endpoints are investigated as their service or
/// server. Fails when the entity is not in the window's topology or telemetry
/// cannot be read; missing data is reported in [`Investigation::missing`].
pub async fn investigate(
    source: &dyn TelemetrySource,
    symptom: &EntityId,
    at: Timestamp,
    options: &InvestigateOptions,
) -> Result<Investigation, AssistantError> {
    let clock = Instant::now();
    let window = window_at(at, options);
    let range = TimeRange {
        start: window
            .start
            .plus_secs(-i64::from(options.history_days.max(1)) * 86_400),
        end: window.end,
    };
    let (topology, calls) = tokio::join!(source.topology(range), source.call_edges(window));
    let topology = topology?;
    let calls = calls?;
    let symptom = owner_of(&topology, symptom);
    let mut graph = KnowledgeGraph::from_topology(&topology);
    graph.apply_window(window, &topology, &calls, &[]);
    if graph.node(&symptom).is_none() {
        return Err(AssistantError::UnknownEntity(symptom));
    }
    let dependencies = graph
        .dependencies(&symptom)
        .map_err(|_| AssistantError::UnknownEntity(symptom.clone()))?;
    let hops: BTreeMap<EntityId, usize> = std::iter::once((symptom.clone(), 0))
        .chain(
            dependencies
                .into_iter()
                .filter(|(_, hops)| *hops <= options.max_hops),
        )
        .collect();
    let serving: Vec<EntityId> = hops
        .keys()
        .filter(|id| {
            matches!(
                id.kind(),
                EntityKind::Service | EntityKind::Database | EntityKind::Cache
            )
        })
        .cloned()
        .collect();

    // Stage 1: request series of the serving entities, and events.
    let query = SeriesQuery {
        filter: EntityFilter::ids(&serving),
        range,
        step_secs: MINUTE_SECS,
    };
    let (requests, events) = tokio::join!(source.request_series(&query), source.events(range));
    let requests = requests?;
    let events = events?;
    let mut input = AnalysisInput {
        window,
        topology,
        requests,
        edges: Vec::new(),
        resources: Vec::new(),
        statements: Vec::new(),
        events,
    };
    let first = anomalies(&input, &options.analyzer);
    let anomalous: BTreeSet<EntityId> = first.iter().map(|a| a.entity.clone()).collect();

    // Stage 2: resources where they can matter, statements of anomalous servers.
    let containers = containers_by_service(&input.topology);
    let mut resource_ids: BTreeSet<EntityId> = BTreeSet::new();
    for (id, hop) in &hops {
        let near = *hop <= options.resource_hops || anomalous.contains(id);
        match id.kind() {
            EntityKind::Service if near => {
                if let Some(found) = containers.get(id) {
                    resource_ids.extend(found.iter().cloned());
                }
            }
            EntityKind::Host | EntityKind::Process if near => {
                resource_ids.insert(id.clone());
            }
            EntityKind::Container if near => {
                resource_ids.insert(id.clone());
            }
            _ => {}
        }
    }
    // Hosts of what we read resources of, for saturation and neighbours.
    for relation in &input.topology.relations {
        if relation.kind == RelationKind::RunsOn
            && relation.to.kind() == EntityKind::Host
            && (resource_ids.contains(&relation.from) || anomalous.contains(&relation.from))
        {
            resource_ids.insert(relation.to.clone());
        }
    }
    let resource_ids: Vec<EntityId> = resource_ids.into_iter().collect();
    let servers: Vec<EntityId> = anomalous
        .iter()
        .filter(|id| matches!(id.kind(), EntityKind::Database | EntityKind::Cache))
        .cloned()
        .collect();
    if !resource_ids.is_empty() {
        let query = SeriesQuery {
            filter: EntityFilter::ids(&resource_ids),
            range,
            step_secs: MINUTE_SECS,
        };
        let (cpu, memory) = tokio::join!(
            source.resource_series(&query, ResourceMetric::CpuCores),
            source.resource_series(&query, ResourceMetric::MemoryBytes)
        );
        input.resources.extend(cpu?);
        input.resources.extend(memory?);
    }
    for server in &servers {
        input.statements.extend(
            source
                .statement_steps(&StatementStepQuery {
                    server: Some(server.clone()),
                    protocol: None,
                    range,
                    step_secs: MINUTE_SECS,
                })
                .await?,
        );
    }
    let mut found = first;
    if !input.resources.is_empty() || !input.statements.is_empty() {
        let second = anomalies(&input, &options.analyzer);
        let seen: BTreeSet<(EntityId, SignalKind)> = found
            .iter()
            .map(|a| (a.entity.clone(), a.signal.clone()))
            .collect();
        found.extend(
            second
                .into_iter()
                .filter(|a| !seen.contains(&(a.entity.clone(), a.signal.clone()))),
        );
    }

    let mut missing = Vec::new();
    if !input.requests.iter().any(|r| r.entity == symptom) {
        missing.push(format!(
            "no request metrics for {symptom} in the window; only its dependencies were analysed"
        ));
    }
    let history_points = input
        .requests
        .iter()
        .find(|r| r.entity == symptom)
        .map(|r| {
            (0..r.metrics.len())
                .filter(|&i| {
                    r.metrics.time_at(i) < window.start && r.metrics.requests[i].is_finite()
                })
                .count()
        })
        .unwrap_or(0);
    if history_points < 1440 && missing.is_empty() {
        missing.push(format!(
            "only {history_points} minutes of history before the window (a day is needed for seasonal baselines); findings may be weaker"
        ));
    }

    let candidates = rank_root_causes(
        &graph,
        &Symptom {
            entity: symptom.clone(),
            at: at.floor_to(MINUTE_SECS),
        },
        &found,
        &RankConfig {
            limit: options.limit,
            ..options.rank.clone()
        },
    )
    .map_err(|_| AssistantError::UnknownEntity(symptom.clone()))?;

    let mut suggestions = Vec::new();
    for (index, candidate) in candidates.into_iter().enumerate() {
        let own: BTreeSet<&EntityId> = std::iter::once(&candidate.entity)
            .chain(containers.get(&candidate.entity).into_iter().flatten())
            .collect();
        let mut evidence: Vec<EvidenceItem> = found
            .iter()
            .filter(|a| own.contains(&a.entity))
            .map(evidence_of)
            .collect();
        evidence.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.signal.cmp(&b.signal))
        });
        evidence.truncate(4);
        let slow_statements = if matches!(
            candidate.entity.kind(),
            EntityKind::Database | EntityKind::Cache
        ) {
            statement_evidence(source, &candidate.entity, window, options.statements).await?
        } else {
            Vec::new()
        };
        let affected_callers = affected_callers(&calls, &candidate.entity, &found);
        let cpu = candidate
            .signals
            .contains(&SignalKind::Resource(ResourceMetric::CpuCores))
            || evidence.iter().any(|e| e.signal == "cpu-cores");
        let mut hot_stack = None;
        if cpu {
            // The burning container's profile first, then the service's.
            let mut targets: Vec<EntityId> = evidence
                .iter()
                .filter(|e| e.signal == "cpu-cores")
                .map(|e| e.entity.clone())
                .collect();
            targets.push(candidate.entity.clone());
            targets.dedup();
            for target in targets {
                hot_stack = hottest_stack(source, &target, window).await;
                if hot_stack.is_some() {
                    break;
                }
            }
        }
        suggestions.push(Suggestion {
            rank: index + 1,
            entity: candidate.entity,
            score: candidate.score,
            confidence: candidate.confidence,
            started_at: candidate.started_at,
            path: candidate.path,
            evidence,
            slow_statements,
            affected_callers,
            hot_stack,
        });
    }
    let mut symptom_evidence: Vec<EvidenceItem> = found
        .iter()
        .filter(|a| a.entity == symptom)
        .map(evidence_of)
        .collect();
    symptom_evidence.sort_by(|a, b| b.score.total_cmp(&a.score));
    symptom_evidence.truncate(4);
    if found.is_empty() {
        missing.push(
            "no anomaly in the symptom's dependencies in this window: nothing to rank".to_owned(),
        );
    }
    Ok(Investigation {
        symptom,
        at,
        window,
        suggestions,
        symptom_evidence,
        entities_read: serving.len() + resource_ids.len(),
        anomalies: found.len(),
        missing,
        elapsed_ms: clock.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Callers of `server` that are anomalous themselves (or all callers when none is).
fn affected_callers(calls: &[CallEdge], server: &EntityId, found: &[Anomaly]) -> Vec<EntityId> {
    let anomalous: BTreeSet<&EntityId> = found.iter().map(|a| &a.entity).collect();
    let callers: BTreeSet<&EntityId> = calls
        .iter()
        .filter(|c| &c.server == server)
        .map(|c| &c.client)
        .collect();
    let hit: Vec<EntityId> = callers
        .iter()
        .filter(|c| anomalous.contains(*c))
        .map(|c| (*c).clone())
        .collect();
    let mut out = if hit.is_empty() {
        callers.into_iter().cloned().collect()
    } else {
        hit
    };
    out.truncate(10);
    out
}

async fn statement_evidence(
    source: &dyn TelemetrySource,
    server: &EntityId,
    window: TimeRange,
    limit: usize,
) -> Result<Vec<StatementEvidence>, AssistantError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let day_before = TimeRange {
        start: window.start.plus_secs(-86_400),
        end: window.end.plus_secs(-86_400),
    };
    let query = |range| StatementQuery {
        server: Some(server.clone()),
        protocol: None,
        range,
        order: StatementOrder::P99,
        limit: limit.max(20),
    };
    let (current, earlier) = (query(window), query(day_before));
    let (now, before) = tokio::join!(
        source.top_statements(&current),
        source.top_statements(&earlier)
    );
    let before: BTreeMap<String, f64> = before
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.shape, s.latency_p99_ms))
        .collect();
    let mut out: Vec<StatementEvidence> = now?
        .into_iter()
        .map(|s| StatementEvidence {
            p99_day_before_ms: before.get(&s.shape).copied(),
            request_type: s.request_type,
            shape: s.shape,
            count: s.count,
            p99_ms: s.latency_p99_ms,
            mean_ms: s.latency_mean_ms,
        })
        .collect();
    // Slowest relative to the day before first: that is what changed.
    out.sort_by(|a, b| {
        let ratio =
            |s: &StatementEvidence| s.p99_ms / s.p99_day_before_ms.unwrap_or(s.p99_ms).max(1e-6);
        ratio(b)
            .total_cmp(&ratio(a))
            .then_with(|| b.p99_ms.total_cmp(&a.p99_ms))
    });
    out.truncate(limit);
    Ok(out)
}

async fn hottest_stack(
    source: &dyn TelemetrySource,
    entity: &EntityId,
    window: TimeRange,
) -> Option<String> {
    let profile = source.profile(entity, window).await.ok()?;
    let total = profile.total().max(1);
    profile
        .stacks
        .iter()
        .max_by(|a, b| a.value.cmp(&b.value).then_with(|| b.frames.cmp(&a.frames)))
        .map(|stack| {
            let frames: Vec<&str> = stack.frames.split(';').collect();
            let tail = frames[frames.len().saturating_sub(4)..].join(";");
            format!(
                "{tail} ({:.0}% of samples)",
                100.0 * stack.value as f64 / total as f64
            )
        })
}
