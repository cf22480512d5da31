//! The experiment runner: baseline → inject → watch → recover, with the fault
//! undone on every way out.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use globset::{Glob, GlobMatcher};
use tracing::{info, warn};
use vigil_model::{
    EntityFilter, EntityId, Finding, RequestMetric, ResourceMetric, SeriesQuery, StatementOrder,
    StatementQuery, TelemetrySource, TimeRange, Timestamp,
};

use crate::experiment::{Experiment, Injection};
use crate::inject::{injector, InjectorContext};
use crate::report::{SeenFinding, SignalChange, ValidationReport, REPORT_VERSION};
use crate::ChaosError;

/// A finding as the patrol reported it, and when it was first seen.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedFinding {
    /// When the patrol first reported it (its incident opened).
    pub first_seen: Timestamp,
    /// The finding as last reported, with its ranked root-cause candidates.
    pub finding: Finding,
}

/// Reads what a playbook's runs found.
#[async_trait]
pub trait PatrolObserver: Send + Sync {
    /// Findings of `playbook` first seen at or after `since`.
    async fn findings_since(
        &self,
        playbook: &str,
        since: Timestamp,
    ) -> Result<Vec<ObservedFinding>, ChaosError>;

    /// When the latest run of `playbook` started, if it ever ran.
    async fn last_run(&self, playbook: &str) -> Result<Option<Timestamp>, ChaosError>;
}

/// How the runner runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How often the patrol's findings are read while waiting.
    pub poll: Duration,
    /// Injector needs (the hog program, scratch space).
    pub context: InjectorContext,
}

/// A patrol run this recent counts as a running patrol.
const RECENT_RUN_SECS: i64 = 120;

/// The wall clock in whole seconds.
fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Runs `experiment`: prepares the injector, watches a quiet baseline, injects,
/// waits until the expected root cause ranks in the top places or the hold
/// time runs out, recovers, and watches the recovery. `shutdown` resolving
/// (Ctrl-C, SIGTERM) ends the experiment early; the fault is undone on every
/// path, and an interrupted run still returns its report, marked interrupted.
pub async fn run(
    experiment: &Experiment,
    observer: &dyn PatrolObserver,
    telemetry: &dyn TelemetrySource,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ValidationReport, ChaosError> {
    let expected = Glob::new(&experiment.expect.root_cause)
        .map_err(|e| ChaosError::Invalid {
            origin: experiment.id.clone(),
            line: None,
            key: "expect.root_cause".to_owned(),
            message: e.to_string(),
        })?
        .compile_matcher();
    let mut injector = injector(&experiment.injection, &options.context);
    let mut report = ValidationReport {
        version: REPORT_VERSION,
        experiment_id: experiment.id.clone(),
        name: experiment.name.clone(),
        description: experiment.description.clone(),
        injection_kind: experiment.injection.kind().to_owned(),
        injection: injector.describe(),
        patrol: experiment.patrol.clone(),
        expected_root_cause: experiment.expect.root_cause.clone(),
        expected_top: experiment.expect.top,
        started: now(),
        injected_at: None,
        recovered_at: None,
        ended: now(),
        visible: false,
        signal_changes: Vec::new(),
        baseline_findings: Vec::new(),
        findings: Vec::new(),
        detected_at: None,
        root_cause_rank: None,
        root_cause_at: None,
        recovery_findings_open: 0,
        undone: Vec::new(),
        errors: Vec::new(),
        interrupted: false,
        passed: false,
    };
    tokio::pin!(shutdown);

    let outcome = {
        let phases = phases(
            experiment,
            injector.as_mut(),
            observer,
            &expected,
            options,
            &mut report,
        );
        tokio::select! {
            result = phases => result,
            () = &mut shutdown => Err(ChaosError::Interrupted),
        }
    };
    // Undo first, whatever happened above.
    if report.injected_at.is_some() {
        report.recovered_at = Some(now());
    }
    match injector.recover().await {
        Ok(done) => report.undone = done,
        Err(err) => {
            warn!("undoing the fault failed: {err}");
            report.errors.push(format!("undo: {err}"));
        }
    }
    drop(injector);
    match outcome {
        Ok(()) => {}
        Err(ChaosError::Interrupted) => report.interrupted = true,
        Err(err) => {
            report.errors.push(err.to_string());
            report.ended = now();
            return Err(err);
        }
    }
    if !report.interrupted && !experiment.recovery.is_zero() {
        let watched = tokio::select! {
            () = tokio::time::sleep(experiment.recovery) => true,
            () = &mut shutdown => false,
        };
        report.interrupted |= !watched;
        if watched {
            // Findings of the fault still open after recovery (the patrol has
            // not closed them yet); new ones opened during recovery count too.
            if let Some(at) = report.injected_at {
                match observer.findings_since(&experiment.patrol, at).await {
                    Ok(found) => {
                        let recovered = report.recovered_at.unwrap_or(at);
                        report.recovery_findings_open = found
                            .iter()
                            .filter(|f| {
                                f.finding.anomalies.iter().any(|a| a.window.end > recovered)
                            })
                            .count();
                    }
                    Err(err) => report.errors.push(err.to_string()),
                }
            }
        }
    }
    report.ended = now();
    if let (Some(injected), Some(recovered)) = (report.injected_at, report.recovered_at) {
        coverage(
            &experiment.injection,
            &expected,
            telemetry,
            TimeRange {
                // The baseline's first, partial minute is quiet too.
                start: report.started.floor_to(60),
                end: injected,
            },
            TimeRange {
                start: injected,
                end: recovered,
            },
            &mut report,
        )
        .await;
    }
    report.passed = !report.interrupted
        && report.errors.is_empty()
        && report.baseline_findings.is_empty()
        && report.detected_at.is_some()
        && report
            .root_cause_rank
            .is_some_and(|rank| rank <= experiment.expect.top);
    Ok(report)
}

/// Prepare, baseline, inject and watch; fills `report` as it goes.
async fn phases(
    experiment: &Experiment,
    injector: &mut dyn crate::inject::Injector,
    observer: &dyn PatrolObserver,
    expected: &GlobMatcher,
    options: &RunOptions,
    report: &mut ValidationReport,
) -> Result<(), ChaosError> {
    injector.prepare().await?;
    report.started = now();
    info!(experiment = %experiment.id, baseline = ?experiment.baseline, "baseline");
    tokio::time::sleep(experiment.baseline).await;
    // Injecting with nobody watching proves nothing: the patrol must have run
    // during the baseline (a schedule of a minute or so, in `vigil serve`).
    let last = observer.last_run(&experiment.patrol).await?;
    let fresh_since = report.started.min(now().plus_secs(-RECENT_RUN_SECS));
    if last.is_none_or(|t| t < fresh_since) {
        return Err(ChaosError::Observe(format!(
            "playbook `{}` has not run during the baseline nor in the last two minutes{}: is `vigil serve` running with the same config, with the playbook enabled on a short schedule?",
            experiment.patrol,
            last.map(|t| format!(" (last run started at {t})")).unwrap_or_default()
        )));
    }
    report.baseline_findings = observer
        .findings_since(&experiment.patrol, report.started)
        .await?
        .iter()
        .map(|f| seen(f, expected))
        .collect();

    // Stamped before the call: injecting may itself take time (a first
    // DEBUG SLEEP, filling a big key) and that time is already the fault.
    let injected = now();
    report.injected_at = Some(injected);
    injector.inject().await?;
    info!(experiment = %experiment.id, fault = %injector.describe(), "injected");
    let deadline = tokio::time::Instant::now() + experiment.hold;
    loop {
        let polled_at = now();
        let found = observer
            .findings_since(&experiment.patrol, injected)
            .await?;
        report.findings = found.iter().map(|f| seen(f, expected)).collect();
        if report.detected_at.is_none() {
            report.detected_at = report
                .findings
                .iter()
                .filter(|f| f.rank_of_expected.is_some())
                .map(|f| f.first_seen)
                .min();
        }
        let best = report
            .findings
            .iter()
            .filter_map(|f| f.rank_of_expected)
            .min();
        if let Some(rank) = best {
            if report.root_cause_rank.is_none_or(|r| rank < r) {
                report.root_cause_rank = Some(rank);
            }
            if rank <= experiment.expect.top && report.root_cause_at.is_none() {
                report.root_cause_at = Some(polled_at);
                info!(experiment = %experiment.id, rank, "root cause ranked");
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            info!(experiment = %experiment.id, "hold time over");
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(options.poll.min(left)).await;
    }
}

/// Where the expected root cause ranks for one finding: its place among the
/// candidates, or first when the finding is about the root cause itself and
/// no candidate outranks it.
fn rank_of(finding: &Finding, expected: &GlobMatcher) -> Option<usize> {
    let matches = |id: &EntityId| expected.is_match(id.as_str());
    if let Some(index) = finding.candidates.iter().position(|c| matches(&c.entity)) {
        return Some(index + 1);
    }
    (matches(&finding.entity) && finding.candidates.is_empty()).then_some(1)
}

fn seen(observed: &ObservedFinding, expected: &GlobMatcher) -> SeenFinding {
    let finding = &observed.finding;
    SeenFinding {
        first_seen: observed.first_seen,
        entity: finding.entity.to_string(),
        title: finding.title.clone(),
        severity: finding.severity,
        candidates: finding
            .candidates
            .iter()
            .take(5)
            .map(|c| c.entity.to_string())
            .collect(),
        rank_of_expected: rank_of(finding, expected),
    }
}

/// Was the fault visible in the telemetry: the signals the injection moves,
/// on the entities matching the expected root cause, baseline against fault.
async fn coverage(
    injection: &Injection,
    expected: &GlobMatcher,
    telemetry: &dyn TelemetrySource,
    baseline: TimeRange,
    fault: TimeRange,
    report: &mut ValidationReport,
) {
    let whole = TimeRange {
        start: baseline.start,
        end: fault.end,
    };
    let topology = match telemetry.topology(whole).await {
        Ok(topology) => topology,
        Err(err) => {
            report.errors.push(format!("coverage: topology: {err}"));
            return;
        }
    };
    let mut ids: Vec<EntityId> = topology
        .entities
        .iter()
        .map(|e| e.id.clone())
        .filter(|id| expected.is_match(id.as_str()))
        .collect();
    let mut changes = Vec::new();
    let query = |ids: &[EntityId]| SeriesQuery {
        filter: EntityFilter::ids(ids),
        range: TimeRange {
            start: whole.start.floor_to(60),
            end: whole.end.floor_to(60).plus_secs(60),
        },
        step_secs: 60,
    };
    // Whole minutes only: the minute the fault went in belongs to neither side.
    let in_range =
        |t: Timestamp, range: TimeRange| t >= range.start && t.plus_secs(60) <= range.end;
    let mean = |pairs: &[(Timestamp, f64)], range: TimeRange| {
        let picked: Vec<f64> = pairs
            .iter()
            .filter(|(t, v)| in_range(*t, range) && v.is_finite())
            .map(|(_, v)| *v)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    };
    if matches!(injection, Injection::CpuHog { .. }) {
        // A hog that did not exist before the experiment is not in the
        // topology; its resource rows are.
        match telemetry
            .resource_series(&query(&[]), ResourceMetric::CpuCores)
            .await
        {
            Ok(series) => {
                for one in series
                    .iter()
                    .filter(|s| expected.is_match(s.entity.as_str()))
                {
                    let pairs: Vec<(Timestamp, f64)> = one
                        .series
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (one.series.time_at(i), *v))
                        .collect();
                    changes.push(SignalChange {
                        entity: one.entity.to_string(),
                        signal: "cpu cores".to_owned(),
                        baseline: mean(&pairs, baseline),
                        fault: mean(&pairs, fault),
                    });
                }
            }
            Err(err) => report.errors.push(format!("coverage: CPU: {err}")),
        }
    } else {
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            match telemetry.request_series(&query(&ids)).await {
                Ok(series) => {
                    for one in &series {
                        for (metric, name) in [
                            (RequestMetric::LatencyP99, "p99 latency ms"),
                            (RequestMetric::ErrorRatio, "error ratio"),
                        ] {
                            let series = one.metrics.series(metric);
                            let pairs: Vec<(Timestamp, f64)> = series
                                .values
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (series.time_at(i), *v))
                                .collect();
                            changes.push(SignalChange {
                                entity: one.entity.to_string(),
                                signal: name.to_owned(),
                                baseline: mean(&pairs, baseline),
                                fault: mean(&pairs, fault),
                            });
                        }
                    }
                }
                Err(err) => report.errors.push(format!("coverage: requests: {err}")),
            }
            // The slowest statement or command on the server, by p99.
            let mut slowest: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
            for (slot, range) in [(0, baseline), (1, fault)] {
                let statements = telemetry
                    .top_statements(&StatementQuery {
                        server: None,
                        protocol: None,
                        range,
                        order: StatementOrder::P99,
                        limit: 50,
                    })
                    .await;
                match statements {
                    Ok(statements) => {
                        for s in statements.iter().filter(|s| ids.contains(&s.server)) {
                            let entry = slowest.entry(s.server.to_string()).or_default();
                            let value = if slot == 0 {
                                &mut entry.0
                            } else {
                                &mut entry.1
                            };
                            *value = Some(value.unwrap_or(0.0).max(s.latency_p99_ms));
                        }
                    }
                    Err(err) => report.errors.push(format!("coverage: statements: {err}")),
                }
            }
            for (entity, (before, during)) in slowest {
                changes.push(SignalChange {
                    entity,
                    signal: "slowest statement p99 ms".to_owned(),
                    baseline: before,
                    fault: during,
                });
            }
        }
    }
    report.visible = changes.iter().any(SignalChange::moved);
    report.signal_changes = changes;
}

#[cfg(test)]
mod tests {
    use vigil_model::{EntityKind, RootCauseCandidate, Severity};

    use super::*;

    fn finding(entity: &str, candidates: &[&str]) -> Finding {
        let id = |text: &str| text.parse::<EntityId>().expect("entity id");
        Finding {
            fingerprint: "f".into(),
            entity: id(entity),
            title: "t".into(),
            severity: Severity::Warning,
            anomalies: Vec::new(),
            candidates: candidates
                .iter()
                .map(|c| RootCauseCandidate {
                    entity: id(c),
                    score: 1.0,
                    confidence: 0.5,
                    signals: Vec::new(),
                    path: Vec::new(),
                    started_at: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_rank_is_the_place_among_candidates_or_first_for_the_cause_itself() {
        let redis = Glob::new("cache:redis-server@*")
            .expect("glob")
            .compile_matcher();
        let symptom = finding(
            "service:cart",
            &["database:mariadbd@h:3306", "cache:redis-server@h:6379"],
        );
        assert_eq!(rank_of(&symptom, &redis), Some(2));
        assert_eq!(
            rank_of(&finding("cache:redis-server@h:6379", &[]), &redis),
            Some(1)
        );
        // A finding about the cause whose ranking puts something else first
        // does not count as first.
        assert_eq!(
            rank_of(
                &finding("cache:redis-server@h:6379", &["service:cart"]),
                &redis
            ),
            None
        );
        assert_eq!(
            rank_of(&finding("service:cart", &["service:orders"]), &redis),
            None
        );
        assert_eq!(
            EntityId::new(EntityKind::Cache, "redis-server@h:6379").as_str(),
            "cache:redis-server@h:6379"
        );
    }

    #[test]
    fn a_signal_moved_when_it_doubled_appeared_or_stepped_up() {
        let change = |baseline, fault| SignalChange {
            entity: "e".into(),
            signal: "s".into(),
            baseline,
            fault,
        };
        assert!(change(Some(1.0), Some(2.5)).moved());
        assert!(!change(Some(1.0), Some(1.2)).moved());
        assert!(change(Some(0.0), Some(0.7)).moved(), "CPU from idle");
        assert!(!change(Some(0.0), Some(0.0)).moved());
        assert!(change(None, Some(3.0)).moved(), "a new signal");
        assert!(!change(Some(1.0), None).moved(), "no data during the fault");
    }
}
