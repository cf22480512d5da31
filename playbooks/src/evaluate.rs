//! Running one playbook over telemetry: read through `&dyn TelemetrySource`,
//! analyse, let each check claim the findings of its detector, rank root
//! causes over the service graph, and gather the report's tables.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::debug;
use vigil_analyzer::merge::family;
use vigil_analyzer::{analyze, AnalysisInput, AnalyzerConfig};
use vigil_knowledge_graph::{
    owning_services, rank_root_causes, KnowledgeGraph, RankConfig, Symptom,
};
use vigil_model::{
    Anomaly, CallEdge, Coverage, CpuConsumer, EntityFilter, EntityId, EntityKind, Event, EventKind,
    Evidence, Finding, GraphLink, L7Protocol, LocalizedText, Profile, RelationKind, RequestSeries,
    ResourceMetric, ResourceSeries, SeriesQuery, Severity, SignalKind, SloStatus, StatementOrder,
    StatementQuery, StatementStats, StatementStepQuery, TelemetrySource, TimeRange, Timestamp,
    Topology, MINUTE_SECS,
};

use crate::definition::{Check, Detector, Playbook};
use crate::scope::any_matches;
use crate::PlaybookError;

/// Knobs of an evaluation that are not part of a playbook (deployment-wide).
#[derive(Clone, Debug, Default)]
pub struct EvaluationOptions {
    /// Detector settings before each check's parameters are applied.
    pub analyzer: AnalyzerConfig,
    /// Root-cause ranking weights.
    pub rank: RankConfig,
}

/// One finding claimed by a check, with what a report draws for it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedFinding {
    /// The finding, candidates filled when the playbook ranks root causes.
    pub finding: Finding,
    /// The check that claimed it.
    pub check_id: String,
    /// The check's name.
    pub check_name: LocalizedText,
    /// The check's runbook.
    pub runbook: LocalizedText,
    /// Calls around the top candidate's propagation path.
    pub neighbourhood: Vec<GraphLink>,
    /// Hottest stacks, for CPU findings.
    pub profile: Option<Profile>,
    /// Whether root causes are ranked for it: analyzer findings are; facts
    /// such as restarts, silence or a single instance are their own cause.
    pub rankable: bool,
}

/// Where an evaluation spent its time (for benchmarks and logs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Reading telemetry.
    pub read: Duration,
    /// Running detectors.
    pub analyze: Duration,
    /// Ranking root causes.
    pub rank: Duration,
    /// Report tables (statements, SLOs, CPU consumers, profiles).
    pub tables: Duration,
}

/// The result of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The window patrolled.
    pub window: TimeRange,
    /// Findings claimed by checks, worst first.
    pub findings: Vec<CheckedFinding>,
    /// Slowest SQL shapes.
    pub slow_sql: Vec<StatementStats>,
    /// Slowest Redis commands.
    pub slow_redis: Vec<StatementStats>,
    /// SLO table.
    pub slos: Vec<SloStatus>,
    /// Top CPU consumers.
    pub cpu_consumers: Vec<CpuConsumer>,
    /// What the patrol could see.
    pub coverage: Coverage,
    /// Where the time went.
    pub timings: Timings,
    /// Request-metric points analysed (for throughput figures).
    pub points: usize,
}

/// What the checks need read.
#[derive(Default)]
struct Needs {
    requests: bool,
    edges: bool,
    statements: bool,
    resources: BTreeSet<ResourceMetric>,
}

impl Needs {
    fn of(checks: &[Check]) -> Self {
        let mut needs = Self::default();
        for check in checks {
            match check.detector {
                Detector::SloBurn | Detector::Coverage => needs.requests = true,
                Detector::Latency | Detector::Errors => {
                    needs.requests = true;
                    needs.edges = true;
                }
                Detector::Mysql | Detector::Redis => {
                    needs.requests = true;
                    needs.statements = true;
                }
                Detector::Cpu => {
                    needs.requests = true;
                    needs.resources.insert(ResourceMetric::CpuCores);
                }
                Detector::Memory => {
                    needs.resources.insert(ResourceMetric::MemoryBytes);
                }
                Detector::Tcp => {
                    needs.resources.insert(ResourceMetric::TcpRetransmits);
                    needs.resources.insert(ResourceMetric::TcpResets);
                }
                Detector::Restarts | Detector::SingleInstance | Detector::Query => {}
            }
        }
        needs
    }
}

/// Evaluates `playbook` for the window ending at `end` (floored to the minute).
pub async fn evaluate(
    playbook: &Playbook,
    source: &dyn TelemetrySource,
    end: Timestamp,
    options: &EvaluationOptions,
) -> Result<Evaluation, PlaybookError> {
    let end = end.floor_to(MINUTE_SECS);
    let window_secs = i64::try_from(playbook.window.as_secs()).unwrap_or(i64::MAX / 4);
    let window = TimeRange {
        start: end.plus_secs(-window_secs),
        end,
    };
    let range = TimeRange {
        start: window
            .start
            .plus_secs(-i64::from(playbook.history_days) * 86_400),
        end,
    };
    let mut timings = Timings::default();
    let clock = Instant::now();
    let needs = Needs::of(&playbook.checks);
    let report = playbook.report.clone();
    let query = SeriesQuery {
        filter: EntityFilter::all(),
        range,
        step_secs: MINUTE_SECS,
    };
    let step = Instant::now();
    let topology = source.topology(range).await?;
    let lap = |what: &str, since: &mut Instant| {
        debug!(playbook = %playbook.id, what, ms = since.elapsed().as_millis(), "read");
        *since = Instant::now();
    };
    let mut since = step;
    lap("topology", &mut since);
    let requests = if needs.requests || report.is_some() {
        source.request_series(&query).await?
    } else {
        Vec::new()
    };
    lap("request series", &mut since);
    let edges = if needs.edges {
        source.edge_series(&query).await?
    } else {
        Vec::new()
    };
    lap("edge series", &mut since);
    let mut resource_metrics = needs.resources.clone();
    if report.as_ref().is_some_and(|r| r.top_cpu_consumers > 0) {
        resource_metrics.insert(ResourceMetric::CpuCores);
    }
    let mut resources = Vec::new();
    for metric in &resource_metrics {
        resources.extend(source.resource_series(&query, *metric).await?);
    }
    lap("resource series", &mut since);
    let statements = if needs.statements {
        source
            .statement_steps(&StatementStepQuery {
                server: None,
                protocol: None,
                range,
                step_secs: MINUTE_SECS,
            })
            .await?
    } else {
        Vec::new()
    };
    lap("statement steps", &mut since);
    let events = source.events(range).await?;
    lap("events", &mut since);
    timings.read = clock.elapsed();

    let input = AnalysisInput {
        window,
        topology,
        requests,
        edges,
        resources,
        statements,
        events,
    };
    let points = input
        .requests
        .iter()
        .map(|r| r.metrics.len())
        .sum::<usize>()
        + input
            .resources
            .iter()
            .map(|r| r.series.values.len())
            .sum::<usize>();

    let clock = Instant::now();
    let owners = owning_services(&input.topology);
    let analysed = run_detectors(playbook, &input, &owners, &options.analyzer);
    let mut findings = claim(playbook, analysed);
    findings.extend(restart_findings(playbook, &input, &owners));
    findings.extend(single_instance_findings(playbook, &input.topology));
    let coverage_check = playbook
        .checks
        .iter()
        .find(|c| c.detector == Detector::Coverage);
    let (coverage, silent_findings) = coverage(&input, window, coverage_check);
    findings.extend(silent_findings);
    let mut failed_checks = Vec::new();
    for check in playbook
        .checks
        .iter()
        .filter(|c| c.detector == Detector::Query)
    {
        match query_finding(source, check, window).await {
            Ok(found) => findings.extend(found),
            Err(err) => failed_checks.push((check.id.clone(), err.to_string())),
        }
    }
    findings.retain(|f| {
        f.finding.severity >= playbook.min_severity && playbook.scope.includes(&f.finding.entity)
    });
    timings.analyze = clock.elapsed();

    let clock = Instant::now();
    let calls = if playbook.root_cause || report.is_some() {
        source.call_edges(window).await?
    } else {
        Vec::new()
    };
    if playbook.root_cause {
        rank(&mut findings, &input, &calls, range, &options.rank);
    }
    timings.rank = clock.elapsed();

    let clock = Instant::now();
    for finding in &mut findings {
        finding.neighbourhood = neighbourhood(&finding.finding, &calls);
        if family_of(&finding.finding) == "cpu" {
            finding.profile = hottest_profile(source, &finding.finding, &owners, window).await;
        }
    }
    let (slow_sql, slow_redis, slos, cpu_consumers) = match &report {
        Some(spec) => (
            slow_statements(source, window, L7Protocol::Mysql, spec.top_statements).await?,
            slow_statements(source, window, L7Protocol::Redis, spec.top_statements).await?,
            slo_table(playbook, &input, &options.analyzer, spec.slo_rows),
            cpu_consumers(source, &input, &owners, window, spec.top_cpu_consumers).await,
        ),
        None => Default::default(),
    };
    timings.tables = clock.elapsed();

    findings.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then_with(|| onset(&a.finding).cmp(&onset(&b.finding)))
            .then_with(|| a.finding.entity.cmp(&b.finding.entity))
    });
    let mut coverage = coverage;
    coverage.checks_run = u32::try_from(playbook.checks.len()).unwrap_or(u32::MAX);
    coverage.checks_failed = failed_checks;
    Ok(Evaluation {
        window,
        findings,
        slow_sql,
        slow_redis,
        slos,
        cpu_consumers,
        coverage,
        timings,
        points,
    })
}

/// The analyzer config of the playbook's checks, and of each override.
fn run_detectors(
    playbook: &Playbook,
    input: &AnalysisInput,
    owners: &BTreeMap<String, String>,
    base: &AnalyzerConfig,
) -> Vec<Finding> {
    let mut config = base.clone();
    for check in &playbook.checks {
        check.params.apply(check.detector, &mut config);
    }
    let mut findings = analyze(input, &config);
    for over in &playbook.overrides {
        let mut special = config.clone();
        for (check_id, params) in &over.checks {
            if let Some(check) = playbook.checks.iter().find(|c| &c.id == check_id) {
                params.apply(check.detector, &mut special);
            }
        }
        let covered = |finding: &Finding| {
            let service = owning_service(owners, &finding.entity);
            service.is_some_and(|s| any_matches(&over.services, s.name()))
        };
        findings.retain(|f| !covered(f));
        findings.extend(analyze(input, &special).into_iter().filter(|f| covered(f)));
    }
    findings
}

/// The service an entity belongs to: itself, or the service its container,
/// instance or process runs (`owners` from [`owning_services`]).
fn owning_service(owners: &BTreeMap<String, String>, entity: &EntityId) -> Option<EntityId> {
    match entity.kind() {
        EntityKind::Service => Some(entity.clone()),
        _ => owners.get(entity.as_str()).and_then(|s| s.parse().ok()),
    }
}

/// The finding's leading anomaly family: the strongest anomaly of its own entity.
fn family_of(finding: &Finding) -> &'static str {
    finding
        .anomalies
        .iter()
        .max_by(|a, b| {
            (a.severity, a.entity == finding.entity)
                .cmp(&(b.severity, b.entity == finding.entity))
                .then_with(|| a.score.total_cmp(&b.score))
        })
        .map_or("unknown", |a| family(&a.signal))
}

/// Which detector a finding belongs to, from its entity and leading family.
fn detector_of(finding: &Finding) -> Option<Detector> {
    let family = family_of(finding);
    match finding.entity.kind() {
        EntityKind::Database => return Some(Detector::Mysql),
        EntityKind::Cache => return Some(Detector::Redis),
        _ => {}
    }
    match family {
        "slo" => Some(Detector::SloBurn),
        "latency" => Some(Detector::Latency),
        "errors" => Some(Detector::Errors),
        "cpu" => Some(Detector::Cpu),
        "memory" => Some(Detector::Memory),
        "network" => Some(Detector::Tcp),
        "statement" => Some(Detector::Mysql),
        "silence" => Some(Detector::Coverage),
        _ => None,
    }
}

/// Assigns analysed findings to the playbook's checks; findings no check asked
/// for are dropped. A database or cache finding falls back to the latency or
/// errors check when the playbook has no MySQL/Redis check.
fn claim(playbook: &Playbook, findings: Vec<Finding>) -> Vec<CheckedFinding> {
    let mut claimed = Vec::new();
    for mut finding in findings {
        let Some(detector) = detector_of(&finding) else {
            continue;
        };
        let fallback = match family_of(&finding) {
            "errors" => Detector::Errors,
            "slo" => Detector::SloBurn,
            _ => Detector::Latency,
        };
        let check = playbook
            .checks
            .iter()
            .find(|c| c.detector == detector)
            .or_else(|| {
                matches!(detector, Detector::Mysql | Detector::Redis)
                    .then(|| playbook.checks.iter().find(|c| c.detector == fallback))
                    .flatten()
            });
        let Some(check) = check else {
            continue;
        };
        if let Some(severity) = check.severity {
            finding.severity = severity;
        }
        claimed.push(checked(finding, check));
    }
    claimed
}

fn checked(finding: Finding, check: &Check) -> CheckedFinding {
    let name = if check.name.en.is_empty() {
        check.detector.default_name()
    } else {
        check.name.clone()
    };
    let runbook = if check.runbook.en.is_empty() {
        check.detector.default_runbook()
    } else {
        check.runbook.clone()
    };
    CheckedFinding {
        finding,
        check_id: check.id.clone(),
        check_name: name,
        runbook,
        neighbourhood: Vec::new(),
        profile: None,
        rankable: true,
    }
}

/// A playbook-level finding as claimed by `check`: not ranked, its entity is
/// the one candidate.
fn checked_fact(finding: Finding, check: &Check) -> CheckedFinding {
    let mut checked = checked(finding, check);
    checked.rankable = false;
    let entity = checked.finding.entity.clone();
    checked.finding.candidates = vec![vigil_model::RootCauseCandidate {
        entity: entity.clone(),
        score: 1.0,
        confidence: 1.0,
        signals: checked
            .finding
            .anomalies
            .iter()
            .map(|a| a.signal.clone())
            .collect(),
        path: vec![entity],
        started_at: checked.finding.anomalies.first().map(|a| a.window.start),
    }];
    checked
}

/// A finding built by a playbook-level check (not the analyzer), with a
/// time-free fingerprint so it keeps its identity across runs.
fn plain_finding(
    entity: EntityId,
    kind: &str,
    signal: SignalKind,
    severity: Severity,
    window: TimeRange,
    title: String,
    (baseline, observed): (f64, f64),
) -> Finding {
    Finding {
        fingerprint: format!("{kind}:{entity}"),
        title: title.clone(),
        severity,
        anomalies: vec![Anomaly {
            entity: entity.clone(),
            signal,
            window,
            score: 1.0,
            severity,
            evidence: Evidence {
                baseline,
                observed,
                series: None,
                band: None,
                summary: title,
            },
        }],
        entity,
        candidates: Vec::new(),
    }
}

/// How long after a deploy its containers' restarts count as the rollout.
const ROLLOUT_SECS: i64 = 15 * 60;

/// Restarts and OOM kills in the window, per service (containers roll up).
fn restart_findings(
    playbook: &Playbook,
    input: &AnalysisInput,
    owners: &BTreeMap<String, String>,
) -> Vec<CheckedFinding> {
    let Some(check) = playbook
        .checks
        .iter()
        .find(|c| c.detector == Detector::Restarts)
    else {
        return Vec::new();
    };
    let minimum = check.params.min_restarts.unwrap_or(1).max(1);
    let owner_of =
        |entity: &EntityId| owning_service(owners, entity).unwrap_or_else(|| entity.clone());
    // A restart within minutes after a deploy of its service is the rollout,
    // not a crash.
    let deploys: BTreeMap<EntityId, Vec<Timestamp>> = input
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Deploy)
        .fold(BTreeMap::new(), |mut map, e| {
            map.entry(owner_of(&e.entity))
                .or_insert_with(Vec::new)
                .push(e.time);
            map
        });
    let planned = |owner: &EntityId, at: Timestamp| {
        deploys.get(owner).is_some_and(|times| {
            times
                .iter()
                .any(|&d| d <= at && at.secs() - d.secs() <= ROLLOUT_SECS)
        })
    };
    let mut per_owner: BTreeMap<EntityId, Vec<&Event>> = BTreeMap::new();
    for event in input.events.iter().filter(|e| {
        matches!(e.kind, EventKind::Restart | EventKind::OomKill) && input.window.contains(e.time)
    }) {
        let owner = owner_of(&event.entity);
        if event.kind == EventKind::Restart && planned(&owner, event.time) {
            continue;
        }
        per_owner.entry(owner).or_default().push(event);
    }
    per_owner
        .into_iter()
        .filter(|(_, events)| events.len() >= minimum as usize)
        .map(|(owner, events)| {
            let ooms = events
                .iter()
                .filter(|e| e.kind == EventKind::OomKill)
                .count();
            let first = events
                .iter()
                .map(|e| e.time)
                .min()
                .unwrap_or(input.window.start);
            let last = events
                .iter()
                .map(|e| e.time)
                .max()
                .unwrap_or(input.window.end);
            let severity = check.severity.unwrap_or(if ooms > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            });
            let title = format!(
                "{owner} restarted {} times ({ooms} OOM kills) in the window",
                events.len()
            );
            let span = TimeRange {
                start: first,
                end: last.plus_secs(60),
            };
            checked_fact(
                plain_finding(
                    owner,
                    "restarts",
                    SignalKind::Check("restarts".to_owned()),
                    severity,
                    span,
                    title,
                    (0.0, events.len() as f64),
                ),
                check,
            )
        })
        .collect()
}

/// Services that serve traffic from a single instance.
fn single_instance_findings(playbook: &Playbook, topology: &Topology) -> Vec<CheckedFinding> {
    let Some(check) = playbook
        .checks
        .iter()
        .find(|c| c.detector == Detector::SingleInstance)
    else {
        return Vec::new();
    };
    let mut instances: BTreeMap<&EntityId, BTreeSet<&EntityId>> = BTreeMap::new();
    for relation in &topology.relations {
        if relation.kind == RelationKind::InstanceOf && relation.to.kind() == EntityKind::Service {
            instances
                .entry(&relation.to)
                .or_default()
                .insert(&relation.from);
        }
    }
    let window = TimeRange {
        start: Timestamp(0),
        end: Timestamp(1),
    };
    instances
        .into_iter()
        .filter(|(_, set)| set.len() == 1)
        .map(|(service, _)| {
            let title = format!("{service} runs a single instance");
            checked_fact(
                plain_finding(
                    service.clone(),
                    "single-instance",
                    SignalKind::Check("single-instance".to_owned()),
                    check.severity.unwrap_or(Severity::Info),
                    window,
                    title,
                    (2.0, 1.0),
                ),
                check,
            )
        })
        .collect()
}

/// What the patrol saw, and silent services as findings when the playbook has
/// a coverage check.
fn coverage(
    input: &AnalysisInput,
    window: TimeRange,
    check: Option<&Check>,
) -> (Coverage, Vec<CheckedFinding>) {
    let silent_minutes = check
        .and_then(|c| c.params.silent_minutes)
        .unwrap_or(15)
        .max(1);
    let services: Vec<&EntityId> = input
        .topology
        .entities
        .iter()
        .map(|e| &e.id)
        .filter(|id| id.kind() == EntityKind::Service)
        .collect();
    let by_entity: BTreeMap<&EntityId, &RequestSeries> =
        input.requests.iter().map(|r| (&r.entity, r)).collect();
    let mut coverage = Coverage {
        services: u32::try_from(services.len()).unwrap_or(u32::MAX),
        ..Coverage::default()
    };
    let mut findings = Vec::new();
    let tail_start = window
        .end
        .plus_secs(-i64::from(silent_minutes) * 60)
        .max(window.start);
    for service in services {
        let Some(series) = by_entity.get(service) else {
            coverage.without_data.push(service.clone());
            continue;
        };
        let m = &series.metrics;
        let has = |from: Timestamp, to: Timestamp| {
            (0..m.len()).any(|i| {
                let t = m.time_at(i);
                t >= from && t < to && m.requests[i].is_finite() && m.requests[i] > 0.0
            })
        };
        let before = has(Timestamp(i64::MIN), tail_start);
        let in_window = has(window.start, window.end);
        let in_tail = has(tail_start, window.end);
        if in_window {
            coverage.services_with_data += 1;
        }
        if !before && !in_window {
            coverage.without_data.push(service.clone());
        } else if before && !in_tail {
            coverage.silent.push(service.clone());
            if let Some(check) = check {
                let title = format!("{service} sent no requests in the last {silent_minutes} min");
                findings.push(checked_fact(
                    plain_finding(
                        service.clone(),
                        "silence",
                        SignalKind::Silence,
                        check.severity.unwrap_or(Severity::Warning),
                        TimeRange {
                            start: tail_start,
                            end: window.end,
                        },
                        title,
                        (1.0, 0.0),
                    ),
                    check,
                ));
            }
        }
    }
    let hosts: BTreeSet<&EntityId> = input
        .topology
        .entities
        .iter()
        .map(|e| &e.id)
        .filter(|id| id.kind() == EntityKind::Host)
        .collect();
    coverage.hosts = u32::try_from(hosts.len()).unwrap_or(u32::MAX);
    let hosts_with_data: BTreeSet<&EntityId> = input
        .resources
        .iter()
        .filter(|r| hosts.contains(&r.entity) && r.series.present() > 0)
        .map(|r| &r.entity)
        .collect();
    let hosts_via_containers: BTreeSet<&EntityId> = input
        .topology
        .relations
        .iter()
        .filter(|r| r.kind == RelationKind::RunsOn && hosts.contains(&r.to))
        .filter(|r| {
            input
                .resources
                .iter()
                .any(|s| s.entity == r.from && s.series.present() > 0)
        })
        .map(|r| &r.to)
        .collect();
    coverage.hosts_with_data =
        u32::try_from(hosts_with_data.union(&hosts_via_containers).count()).unwrap_or(u32::MAX);
    (coverage, findings)
}

/// A query check: one number from the source compared with its threshold.
async fn query_finding(
    source: &dyn TelemetrySource,
    check: &Check,
    window: TimeRange,
) -> Result<Option<CheckedFinding>, PlaybookError> {
    let sql = check.params.query.as_deref().unwrap_or_default();
    let value = source.query_scalar(sql, window).await?;
    let above = check.params.above.is_some_and(|t| value > t);
    let below = check.params.below.is_some_and(|t| value < t);
    if !(above || below) {
        return Ok(None);
    }
    let entity = check
        .params
        .entity
        .as_deref()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| EntityId::new(EntityKind::Service, &check.id));
    let threshold = check.params.above.or(check.params.below).unwrap_or(0.0);
    let name = if check.name.en.is_empty() {
        check.id.clone()
    } else {
        check.name.en.clone()
    };
    let title = format!(
        "{name}: {value:.3} is {} {threshold}",
        if above { "above" } else { "below" }
    );
    Ok(Some(checked_fact(
        plain_finding(
            entity,
            &format!("query-{}", check.id),
            SignalKind::Check(check.id.clone()),
            check.severity.unwrap_or(Severity::Warning),
            window,
            title,
            (threshold, value),
        ),
        check,
    )))
}

/// Onset of a finding: its first warning-or-worse anomaly.
fn onset(finding: &Finding) -> Timestamp {
    finding
        .anomalies
        .iter()
        .filter(|a| a.severity > Severity::Info)
        .map(|a| a.window.start)
        .min()
        .or_else(|| finding.anomalies.iter().map(|a| a.window.start).min())
        .unwrap_or(Timestamp(0))
}

/// Ranks root causes of every finding over one graph of the window.
fn rank(
    findings: &mut [CheckedFinding],
    input: &AnalysisInput,
    calls: &[CallEdge],
    range: TimeRange,
    config: &RankConfig,
) {
    let mut graph = KnowledgeGraph::from_topology(&input.topology);
    graph.apply_window(range, &input.topology, calls, &[]);
    let anomalies: Vec<Anomaly> = findings
        .iter()
        .filter(|f| f.rankable)
        .flat_map(|f| f.finding.anomalies.iter().cloned())
        .collect();
    for checked in findings.iter_mut().filter(|f| f.rankable) {
        let finding = &mut checked.finding;
        let symptom = Symptom {
            entity: finding.entity.clone(),
            at: onset(finding),
        };
        // Evidence near this finding only: other incidents of the day must not
        // lend their anomalies to this one's candidates.
        let nearby: Vec<Anomaly> = anomalies
            .iter()
            .filter(|a| {
                a.window.start.secs() < symptom.at.secs() + 3600
                    && a.window.end.secs() > symptom.at.secs() - 3600
            })
            .cloned()
            .collect();
        match rank_root_causes(&graph, &symptom, &nearby, config) {
            Ok(candidates) if !candidates.is_empty() => finding.candidates = candidates,
            _ => {
                // Not in the graph (e.g. a host seen only in resources): the
                // finding's own entity is the one candidate.
                finding.candidates = vec![vigil_model::RootCauseCandidate {
                    entity: finding.entity.clone(),
                    score: 1.0,
                    confidence: 0.5,
                    signals: finding.anomalies.iter().map(|a| a.signal.clone()).collect(),
                    path: vec![finding.entity.clone()],
                    started_at: Some(symptom.at),
                }];
            }
        }
    }
}

/// Calls among the top candidate's path and their direct neighbours, at most 24.
fn neighbourhood(finding: &Finding, calls: &[CallEdge]) -> Vec<GraphLink> {
    let mut focus: BTreeSet<&EntityId> = BTreeSet::from([&finding.entity]);
    if let Some(top) = finding.candidates.first() {
        focus.insert(&top.entity);
        focus.extend(top.path.iter());
    }
    let mut links: BTreeSet<GraphLink> = BTreeSet::new();
    for call in calls {
        if focus.contains(&call.client) || focus.contains(&call.server) {
            links.insert(GraphLink {
                from: call.client.clone(),
                to: call.server.clone(),
            });
        }
    }
    // Path links first so truncation never drops the propagation path.
    let mut ordered: Vec<GraphLink> = links
        .iter()
        .filter(|l| focus.contains(&l.from) && focus.contains(&l.to))
        .cloned()
        .collect();
    ordered.extend(
        links
            .into_iter()
            .filter(|l| !(focus.contains(&l.from) && focus.contains(&l.to))),
    );
    ordered.truncate(24);
    ordered
}

/// The profile of the CPU finding's hottest container (or its service).
async fn hottest_profile(
    source: &dyn TelemetrySource,
    finding: &Finding,
    owners: &BTreeMap<String, String>,
    window: TimeRange,
) -> Option<Profile> {
    let mut targets: Vec<EntityId> = finding
        .anomalies
        .iter()
        .filter(|a| a.signal == SignalKind::Resource(ResourceMetric::CpuCores))
        .map(|a| a.entity.clone())
        .collect();
    targets.push(finding.entity.clone());
    if let Some(service) = owning_service(owners, &finding.entity) {
        targets.push(service);
    }
    let span = finding
        .anomalies
        .iter()
        .map(|a| a.window)
        .reduce(|a, b| TimeRange {
            start: a.start.min(b.start),
            end: a.end.max(b.end),
        })
        .and_then(|r| TimeRange::new(r.start.max(window.start), r.end.min(window.end)).ok())
        .unwrap_or(window);
    for target in targets {
        if let Ok(profile) = source.profile(&target, span).await {
            if !profile.stacks.is_empty() {
                return Some(trim_profile(profile, 200));
            }
        }
    }
    None
}

/// Keeps the heaviest `limit` stacks: a flame graph of the rest is unreadable.
fn trim_profile(mut profile: Profile, limit: usize) -> Profile {
    profile
        .stacks
        .sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
    profile.stacks.truncate(limit);
    profile
}

async fn slow_statements(
    source: &dyn TelemetrySource,
    window: TimeRange,
    protocol: L7Protocol,
    limit: usize,
) -> Result<Vec<StatementStats>, PlaybookError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    Ok(source
        .top_statements(&StatementQuery {
            server: None,
            protocol: Some(protocol),
            range: window,
            order: StatementOrder::P99,
            limit,
        })
        .await?)
}

/// Availability per service over the window against the objective, worst first.
fn slo_table(
    playbook: &Playbook,
    input: &AnalysisInput,
    base: &AnalyzerConfig,
    rows: usize,
) -> Vec<SloStatus> {
    if rows == 0 {
        return Vec::new();
    }
    let objective = playbook
        .checks
        .iter()
        .find(|c| c.detector == Detector::SloBurn)
        .and_then(|c| c.params.objective)
        .unwrap_or(base.slo.availability_objective);
    let budget = 1.0 - objective;
    let mut table: Vec<SloStatus> = Vec::new();
    for series in &input.requests {
        if series.entity.kind() != EntityKind::Service || !playbook.scope.includes(&series.entity) {
            continue;
        }
        let m = &series.metrics;
        let inside: Vec<usize> = (0..m.len())
            .filter(|&i| input.window.contains(m.time_at(i)))
            .collect();
        let total: f64 = inside.iter().map(|&i| finite(m.requests[i])).sum();
        if total <= 0.0 {
            continue;
        }
        let errors: f64 = inside.iter().map(|&i| finite(m.errors[i])).sum();
        let achieved = 1.0 - errors / total;
        let mut worst_burn: f64 = 0.0;
        let hour = (3600 / i64::from(m.step_secs.max(1))) as usize;
        if inside.len() >= hour && hour > 0 {
            let mut requests = 0.0;
            let mut failed = 0.0;
            for (k, &i) in inside.iter().enumerate() {
                requests += finite(m.requests[i]);
                failed += finite(m.errors[i]);
                if k >= hour {
                    let j = inside[k - hour];
                    requests -= finite(m.requests[j]);
                    failed -= finite(m.errors[j]);
                }
                if k + 1 >= hour && requests > 0.0 {
                    worst_burn = worst_burn.max((failed / requests) / budget);
                }
            }
        } else if total > 0.0 {
            worst_burn = (errors / total) / budget;
        }
        table.push(SloStatus {
            service: series.entity.clone(),
            objective: "availability".to_owned(),
            target: objective,
            threshold_ms: None,
            achieved,
            budget_remaining: 1.0 - (1.0 - achieved) / budget,
            worst_burn_rate: worst_burn,
        });
    }
    table.sort_by(|a, b| {
        a.budget_remaining
            .total_cmp(&b.budget_remaining)
            .then_with(|| a.service.cmp(&b.service))
    });
    table.truncate(rows);
    table
}

fn finite(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// Containers (or processes) burning the most CPU in the window, with profiles.
async fn cpu_consumers(
    source: &dyn TelemetrySource,
    input: &AnalysisInput,
    owners: &BTreeMap<String, String>,
    window: TimeRange,
    limit: usize,
) -> Vec<CpuConsumer> {
    if limit == 0 {
        return Vec::new();
    }
    let limits: BTreeMap<&EntityId, f64> = input
        .topology
        .entities
        .iter()
        .filter_map(|e| {
            e.attributes
                .get("cpu_limit_cores")
                .and_then(|v| v.parse().ok())
                .map(|v| (&e.id, v))
        })
        .collect();
    let mut ranked: Vec<(f64, f64, &ResourceSeries)> = input
        .resources
        .iter()
        .filter(|r| {
            r.metric == ResourceMetric::CpuCores
                && matches!(r.entity.kind(), EntityKind::Container | EntityKind::Process)
        })
        .filter_map(|r| {
            let values: Vec<f64> = (0..r.series.values.len())
                .filter(|&i| window.contains(r.series.time_at(i)))
                .map(|i| r.series.values[i])
                .filter(|v| v.is_finite())
                .collect();
            if values.is_empty() {
                return None;
            }
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let peak = values.iter().copied().fold(f64::MIN, f64::max);
            Some((mean, peak, r))
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.2.entity.cmp(&b.2.entity))
    });
    ranked.truncate(limit);
    let mut consumers = Vec::new();
    for (mean, peak, series) in ranked {
        let service = owning_service(owners, &series.entity);
        let mut profile = None;
        for target in std::iter::once(&series.entity).chain(service.as_ref()) {
            if let Ok(found) = source.profile(target, window).await {
                if !found.stacks.is_empty() {
                    profile = Some(trim_profile(found, 200));
                    break;
                }
            }
        }
        consumers.push(CpuConsumer {
            entity: series.entity.clone(),
            service,
            mean_cores: mean,
            peak_cores: peak,
            limit_cores: limits.get(&series.entity).copied(),
            profile,
        });
    }
    consumers
}
