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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vigil_analyzer::{anomalies, AnalysisInput, AnalyzerConfig};
use vigil_knowledge_graph::{rank_root_causes, KnowledgeGraph, RankConfig, Symptom};
use vigil_model::{
    Anomaly, CallEdge, EntityFilter, EntityId, EntityKind, Event, RelationKind, RequestSeries,
    ResourceMetric, ResourceSeries, SeriesQuery, SignalKind, StatementOrder, StatementQuery,
    StatementStepQuery, TelemetrySource, TimeRange, Timestamp, Topology, MINUTE_SECS,
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
    /// Seconds (wall time) investigations of the same window reuse its
    /// topology, call edges and per-entity analysis through an
    /// [`InvestigationCache`]; 0 reads everything for every investigation.
    pub cache_secs: u64,
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
            cache_secs: 30,
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
        if self.cache_secs > 3600 {
            errors.push((
                "cache_secs".to_owned(),
                "must be between 0 and 3600".to_owned(),
            ));
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

/// What investigations of one window share, kept between alerts for
/// [`InvestigateOptions::cache_secs`] of wall time: the topology, call edges,
/// events and knowledge graph of the window, and each serving entity's
/// anomalies from its request series. An alert storm (many upstream services
/// alerting on one cause within a minute) then reads and analyses each entity
/// once; data arriving later is picked up when the entry expires.
///
/// Cheap to create; one per server. Holds at most [`InvestigationCache::WINDOWS`]
/// windows, dropping the oldest.
#[derive(Default)]
pub struct InvestigationCache {
    windows: Mutex<Vec<Arc<WindowCache>>>,
}

impl std::fmt::Debug for InvestigationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InvestigationCache")
            .field("windows", &windows.len())
            .finish()
    }
}

/// One window's shared reads and per-entity analysis.
struct WindowCache {
    window: TimeRange,
    options: InvestigateOptions,
    built: Instant,
    reads: tokio::sync::OnceCell<Arc<WindowReads>>,
    entities: Mutex<HashMap<EntityId, Arc<EntityAnalysis>>>,
    /// Held while reading and analysing entities, so concurrent alerts of
    /// one window (a storm) analyse each entity once instead of racing.
    analysing: tokio::sync::Mutex<()>,
}

/// Topology, call edges, events and the knowledge graph of one window.
struct WindowReads {
    topology: Topology,
    calls: Vec<CallEdge>,
    events: Vec<Event>,
    graph: KnowledgeGraph,
}

/// One serving entity's request series, analysed on its own.
struct EntityAnalysis {
    /// Whether the store has request metrics for it in the range.
    has_series: bool,
    /// Measured minutes before the window.
    history_points: usize,
    /// Its anomalies from request metrics (detectors see one series at a time).
    anomalies: Vec<Anomaly>,
}

impl InvestigationCache {
    /// Windows kept at most.
    pub const WINDOWS: usize = 8;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `window` for `options`: a fresh one when caching is off,
    /// or none is younger than `cache_secs`.
    fn window(&self, window: TimeRange, options: &InvestigateOptions) -> Arc<WindowCache> {
        let fresh = || {
            Arc::new(WindowCache {
                window,
                options: options.clone(),
                built: Instant::now(),
                reads: tokio::sync::OnceCell::new(),
                entities: Mutex::new(HashMap::new()),
                analysing: tokio::sync::Mutex::new(()),
            })
        };
        if options.cache_secs == 0 {
            return fresh();
        }
        let ttl = Duration::from_secs(options.cache_secs);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.retain(|entry| entry.built.elapsed() < ttl);
        if let Some(found) = windows
            .iter()
            .find(|entry| entry.window == window && &entry.options == options)
        {
            return Arc::clone(found);
        }
        let entry = fresh();
        if windows.len() >= Self::WINDOWS {
            windows.remove(0);
        }
        windows.push(Arc::clone(&entry));
        entry
    }
}

impl WindowCache {
    fn analysed(&self, ids: &[EntityId]) -> HashMap<EntityId, Arc<EntityAnalysis>> {
        let entities = self.entities.lock().unwrap_or_else(PoisonError::into_inner);
        ids.iter()
            .filter_map(|id| {
                entities
                    .get(id)
                    .map(|found| (id.clone(), Arc::clone(found)))
            })
            .collect()
    }

    fn remember(&self, analysed: &HashMap<EntityId, Arc<EntityAnalysis>>) {
        let mut entities = self.entities.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, analysis) in analysed {
            entities.insert(id.clone(), Arc::clone(analysis));
        }
    }
}

/// Investigates `symptom` at `at`: reads the symptom's dependency closure only,
/// detects anomalies, ranks root causes and gathers evidence for the top ones.
///
/// Instances, containers and endpoints are investigated as their service or
/// server. Fails when the entity is not in the window's topology or telemetry
/// cannot be read; missing data is reported in [`Investigation::missing`].
/// Nothing is kept between calls; [`investigate_cached`] shares reads and
/// analysis between investigations of the same window.
pub async fn investigate(
    source: &dyn TelemetrySource,
    symptom: &EntityId,
    at: Timestamp,
    options: &InvestigateOptions,
) -> Result<Investigation, AssistantError> {
    let options = InvestigateOptions {
        cache_secs: 0,
        ..options.clone()
    };
    investigate_cached(source, &InvestigationCache::new(), symptom, at, &options).await
}

/// [`investigate`], reusing what `cache` holds for the same window (see
/// [`InvestigationCache`]); the answer is the same as without the cache for
/// the same data.
///
/// Reads in two stages: request series of the closure's services, databases
/// and caches (only those not analysed yet in this window), then resources
/// and statements only where they can matter; the second analysis sees only
/// those and the request series they are compared with.
pub async fn investigate_cached(
    source: &dyn TelemetrySource,
    cache: &InvestigationCache,
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
    let entry = cache.window(window, options);
    let reads = entry
        .reads
        .get_or_try_init(|| async {
            let (topology, calls, events) = tokio::join!(
                source.topology(range),
                source.call_edges(window),
                source.events(range)
            );
            let (topology, calls, events) = (topology?, calls?, events?);
            let mut graph = KnowledgeGraph::from_topology(&topology);
            graph.apply_window(window, &topology, &calls, &[]);
            Ok::<_, AssistantError>(Arc::new(WindowReads {
                topology,
                calls,
                events,
                graph,
            }))
        })
        .await
        .map(Arc::clone)?;
    let graph = &reads.graph;
    let calls = &reads.calls;
    let symptom = owner_of(&reads.topology, symptom);
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

    // Stage 1: request series of the serving entities not analysed yet in
    // this window. Request detectors see one series at a time, so each
    // entity's anomalies do not depend on which others are read with it.
    let mut input = AnalysisInput {
        window,
        topology: reads.topology.clone(),
        requests: Vec::new(),
        edges: Vec::new(),
        resources: Vec::new(),
        statements: Vec::new(),
        events: reads.events.clone(),
    };
    let analysing = entry.analysing.lock().await;
    let mut analysed = entry.analysed(&serving);
    let unread: Vec<EntityId> = serving
        .iter()
        .filter(|id| !analysed.contains_key(*id))
        .cloned()
        .collect();
    let mut series: BTreeMap<EntityId, RequestSeries> = BTreeMap::new();
    let mut stray: Vec<Anomaly> = Vec::new();
    let containers = containers_by_service(&input.topology);
    // Resources of what is near the symptom do not depend on the analysis:
    // they are read while it runs.
    let near = resource_ids(
        &hops,
        &containers,
        &input.topology,
        &BTreeSet::new(),
        options,
    );
    let (mut cpu, mut memory) = if unread.is_empty() {
        read_resources(source, &near, range).await?
    } else {
        let requests = source
            .request_series(&SeriesQuery {
                filter: EntityFilter::ids(&unread),
                range,
                step_secs: MINUTE_SECS,
            })
            .await?;
        let (analysis, resources) = tokio::join!(
            analyse_in_parallel(&input, requests, &options.analyzer),
            read_resources(source, &near, range)
        );
        let (requests, found) = analysis;
        let mut by_entity: HashMap<EntityId, Vec<Anomaly>> = HashMap::new();
        for anomaly in found {
            if unread.contains(&anomaly.entity) {
                by_entity
                    .entry(anomaly.entity.clone())
                    .or_default()
                    .push(anomaly);
            } else {
                stray.push(anomaly);
            }
        }
        series = requests
            .into_iter()
            .map(|s| (s.entity.clone(), s))
            .collect();
        let fresh: HashMap<EntityId, Arc<EntityAnalysis>> = unread
            .iter()
            .map(|id| {
                let found = series.get(id);
                let analysis = EntityAnalysis {
                    has_series: found.is_some(),
                    history_points: found.map_or(0, |s| history_points(s, window)),
                    anomalies: by_entity.remove(id).unwrap_or_default(),
                };
                (id.clone(), Arc::new(analysis))
            })
            .collect();
        entry.remember(&fresh);
        analysed.extend(fresh);
        resources?
    };
    drop(analysing);
    // In the order one analysis of every series would give (by entity id).
    let first: Vec<Anomaly> = serving
        .iter()
        .filter_map(|id| analysed.get(id))
        .flat_map(|analysis| analysis.anomalies.iter().cloned())
        .chain(stray)
        .collect();
    let anomalous: BTreeSet<EntityId> = first.iter().map(|a| a.entity.clone()).collect();

    // Stage 2: resources of anomalous entities too, statements of anomalous servers.
    let resource_ids = resource_ids(&hops, &containers, &input.topology, &anomalous, options);
    let extra: BTreeSet<EntityId> = resource_ids.difference(&near).cloned().collect();
    if !extra.is_empty() {
        let (extra_cpu, extra_memory) = read_resources(source, &extra, range).await?;
        cpu.extend(extra_cpu);
        memory.extend(extra_memory);
        // One read's order: by entity within each metric.
        cpu.sort_by(|a, b| a.entity.cmp(&b.entity));
        memory.sort_by(|a, b| a.entity.cmp(&b.entity));
    }
    input.resources.extend(cpu);
    input.resources.extend(memory);
    let resource_ids: Vec<EntityId> = resource_ids.into_iter().collect();
    let servers: Vec<EntityId> = anomalous
        .iter()
        .filter(|id| matches!(id.kind(), EntityKind::Database | EntityKind::Cache))
        .cloned()
        .collect();
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
        // Request series are needed only to explain CPU by traffic (the
        // services of the containers read) and to align statements (any one
        // series): request anomalies were all found in stage 1.
        let mut needed: BTreeSet<EntityId> = containers
            .iter()
            .filter(|(_, found)| found.iter().any(|c| resource_ids.binary_search(c).is_ok()))
            .map(|(service, _)| service.clone())
            .filter(|service| analysed.get(service).is_some_and(|a| a.has_series))
            .collect();
        if analysed.get(&symptom).is_some_and(|a| a.has_series) {
            needed.insert(symptom.clone());
        }
        if needed.is_empty() {
            if let Some(any) = serving
                .iter()
                .find(|id| analysed.get(*id).is_some_and(|a| a.has_series))
            {
                needed.insert(any.clone());
            }
        }
        let to_read: Vec<EntityId> = needed
            .iter()
            .filter(|id| !series.contains_key(*id))
            .cloned()
            .collect();
        if !to_read.is_empty() {
            let read = source
                .request_series(&SeriesQuery {
                    filter: EntityFilter::ids(&to_read),
                    range,
                    step_secs: MINUTE_SECS,
                })
                .await?;
            series.extend(read.into_iter().map(|s| (s.entity.clone(), s)));
        }
        input.requests = series
            .into_iter()
            .filter(|(id, _)| needed.contains(id))
            .map(|(_, s)| s)
            .collect();
        let (_, second) = analyse_in_parallel(&input, Vec::new(), &options.analyzer).await;
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
    let symptom_analysis = analysed.get(&symptom).filter(|a| a.has_series);
    if symptom_analysis.is_none() {
        missing.push(format!(
            "no request metrics for {symptom} in the window; only its dependencies were analysed"
        ));
    }
    let history_points = symptom_analysis.map_or(0, |a| a.history_points);
    if history_points < 1440 && missing.is_empty() {
        missing.push(format!(
            "only {history_points} minutes of history before the window (a day is needed for seasonal baselines); findings may be weaker"
        ));
    }

    let candidates = rank_root_causes(
        graph,
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
        let affected_callers = affected_callers(calls, &candidate.entity, &found);
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

/// The CPU and memory series of `ids` over `range` (empty without ids).
async fn read_resources(
    source: &dyn TelemetrySource,
    ids: &BTreeSet<EntityId>,
    range: TimeRange,
) -> Result<(Vec<ResourceSeries>, Vec<ResourceSeries>), AssistantError> {
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let ids: Vec<EntityId> = ids.iter().cloned().collect();
    let query = SeriesQuery {
        filter: EntityFilter::ids(&ids),
        range,
        step_secs: MINUTE_SECS,
    };
    let (cpu, memory) = tokio::join!(
        source.resource_series(&query, ResourceMetric::CpuCores),
        source.resource_series(&query, ResourceMetric::MemoryBytes)
    );
    Ok((cpu?, memory?))
}

/// Entities whose resources (CPU, memory) can matter: containers of services
/// within [`InvestigateOptions::resource_hops`] of the symptom or anomalous,
/// such hosts, processes and containers, and the hosts all of them run on.
fn resource_ids(
    hops: &BTreeMap<EntityId, usize>,
    containers: &BTreeMap<EntityId, Vec<EntityId>>,
    topology: &Topology,
    anomalous: &BTreeSet<EntityId>,
    options: &InvestigateOptions,
) -> BTreeSet<EntityId> {
    let mut ids: BTreeSet<EntityId> = BTreeSet::new();
    for (id, hop) in hops {
        let near = *hop <= options.resource_hops || anomalous.contains(id);
        match id.kind() {
            EntityKind::Service if near => {
                if let Some(found) = containers.get(id) {
                    ids.extend(found.iter().cloned());
                }
            }
            EntityKind::Host | EntityKind::Process | EntityKind::Container if near => {
                ids.insert(id.clone());
            }
            _ => {}
        }
    }
    // Hosts of what we read resources of, for saturation and neighbours.
    for relation in &topology.relations {
        if relation.kind == RelationKind::RunsOn
            && relation.to.kind() == EntityKind::Host
            && (ids.contains(&relation.from) || anomalous.contains(&relation.from))
        {
            ids.insert(relation.to.clone());
        }
    }
    ids
}

/// Runs the detectors over `input` with `requests` as its request series
/// (`input`'s own when empty), off the async runtime: request series in
/// contiguous parts, one per core, when there are many (detectors see one
/// series at a time, so the parts' anomalies in order are one run's).
/// Returns the request series and the anomalies.
async fn analyse_in_parallel(
    input: &AnalysisInput,
    requests: Vec<RequestSeries>,
    config: &AnalyzerConfig,
) -> (Vec<RequestSeries>, Vec<Anomaly>) {
    let whole = requests.is_empty();
    let requests = if whole {
        input.requests.clone()
    } else {
        requests
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let parts = if whole || requests.len() < 64 {
        1
    } else {
        cores.clamp(1, 4)
    };
    let size = requests.len().div_ceil(parts).max(1);
    let mut chunks: Vec<Vec<RequestSeries>> = Vec::new();
    let mut rest = requests.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(size).collect());
    }
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(index, requests)| {
            let part = AnalysisInput {
                window: input.window,
                topology: input.topology.clone(),
                requests,
                edges: Vec::new(),
                // Resources and statements once, with the first part.
                resources: if index == 0 {
                    input.resources.clone()
                } else {
                    Vec::new()
                },
                statements: if index == 0 {
                    input.statements.clone()
                } else {
                    Vec::new()
                },
                events: input.events.clone(),
            };
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                let found = anomalies(&part, &config);
                (part.requests, found)
            })
        })
        .collect();
    let mut requests = Vec::new();
    let mut found = Vec::new();
    for task in tasks {
        match task.await {
            Ok((part, anomalies)) => {
                requests.extend(part);
                found.extend(anomalies);
            }
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("analysis task cancelled: {error}"),
        }
    }
    (requests, found)
}

/// Measured minutes of `series` before `window`.
fn history_points(series: &RequestSeries, window: TimeRange) -> usize {
    let metrics = &series.metrics;
    (0..metrics.len())
        .filter(|&i| metrics.time_at(i) < window.start && metrics.requests[i].is_finite())
        .count()
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
