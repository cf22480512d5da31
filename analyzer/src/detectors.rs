//! The one place detectors are registered: which detector runs on which
//! series, with which guards.

use std::collections::BTreeMap;

use vigil_model::{
    Anomaly, EntityId, EntityKind, RequestMetric, ResourceMetric, Series, Severity, SignalKind,
};

use crate::baseline::{error_ratio_anomalies, BaselineScorer, Rule};
use crate::config::AnalyzerConfig;
use crate::cpu::cpu_anomalies;
use crate::guards::index_at;
use crate::input::{AnalysisInput, Context};
use crate::memory::memory_anomalies;
use crate::outlier::{multivariate_anomalies, peer_anomalies};
use crate::slo::slo_anomalies;
use crate::statements::statement_anomalies;

/// Every detector over `input`; anomalies that end before the window are dropped.
pub fn detect_all(
    input: &AnalysisInput,
    context: &Context,
    config: &AnalyzerConfig,
) -> Vec<Anomaly> {
    let guards = &config.guards;
    let window = input.window;
    let mut anomalies = Vec::new();
    let mut scorer = BaselineScorer::new();
    let mut requests_of: BTreeMap<&EntityId, &[f64]> = BTreeMap::new();

    for series in &input.requests {
        let m = &series.metrics;
        let entity = &series.entity;
        requests_of.insert(entity, &m.requests);
        let from = index_at(m.start, m.step_secs, window.start);
        let mut warmup = vec![false; m.len()];
        context.warmup_mask(
            entity,
            m.start,
            m.step_secs,
            m.len(),
            guards.warmup_minutes,
            &mut warmup,
        );
        let mut quiet = warmup.clone();
        for (t, q) in quiet.iter_mut().enumerate() {
            // `NaN` (no data) is not enough traffic either.
            *q |= m.requests[t].is_nan() || m.requests[t] < guards.min_requests_per_step;
        }
        for &metric in &config.baseline.latency_metrics {
            anomalies.extend(scorer.detect(
                entity,
                &SignalKind::Request(metric),
                &m.series(metric),
                from,
                &quiet,
                Rule::Up {
                    min_ratio: config.baseline.latency_min_ratio,
                    min_delta: config.baseline.latency_min_delta_ms,
                },
                &config.baseline,
                guards,
            ));
        }
        // Traffic alone rarely is the problem: informative, never a finding by itself.
        anomalies.extend(
            scorer
                .detect(
                    entity,
                    &SignalKind::Request(RequestMetric::Requests),
                    &m.series(RequestMetric::Requests),
                    from,
                    &warmup,
                    Rule::Both {
                        min_ratio: config.baseline.throughput_min_ratio,
                    },
                    &config.baseline,
                    guards,
                )
                .into_iter()
                .map(|mut a| {
                    a.severity = Severity::Info;
                    a
                }),
        );
        anomalies.extend(error_ratio_anomalies(
            entity,
            m.start,
            m.step_secs,
            &m.requests,
            &m.errors,
            from,
            &warmup,
            &config.baseline,
            guards,
        ));
        anomalies.extend(slo_anomalies(entity, m, from, &config.slo, guards));
        if config.outlier.multivariate {
            anomalies.extend(multivariate_anomalies(
                entity,
                m,
                from,
                &config.outlier,
                guards,
            ));
        }
    }

    let mut by_service: BTreeMap<(EntityId, ResourceMetric), Vec<(&EntityId, &Series)>> =
        BTreeMap::new();
    for resource in &input.resources {
        let series = &resource.series;
        let entity = &resource.entity;
        let from = index_at(series.start, series.step_secs, window.start);
        let mut warmup = vec![false; series.values.len()];
        context.warmup_mask(
            entity,
            series.start,
            series.step_secs,
            series.values.len(),
            guards.warmup_minutes,
            &mut warmup,
        );
        match (entity.kind(), resource.metric) {
            (EntityKind::Container | EntityKind::Process, ResourceMetric::CpuCores) => {
                let requests = context
                    .service_of(entity)
                    .and_then(|service| requests_of.get(service).copied())
                    .filter(|r| r.len() == series.values.len());
                anomalies.extend(cpu_anomalies(
                    entity,
                    series,
                    requests,
                    context.cpu_limit(entity),
                    from,
                    &warmup,
                    &config.cpu,
                    guards,
                ));
            }
            (EntityKind::Container | EntityKind::Process, ResourceMetric::MemoryBytes) => {
                anomalies.extend(memory_anomalies(
                    entity,
                    series,
                    context.restarts(entity),
                    None,
                    from,
                    &config.memory,
                    guards,
                ));
            }
            (EntityKind::Host, ResourceMetric::TcpRetransmits | ResourceMetric::TcpResets) => {
                anomalies.extend(scorer.detect(
                    entity,
                    &SignalKind::Resource(resource.metric),
                    series,
                    from,
                    &[],
                    Rule::Up {
                        min_ratio: config.baseline.retransmit_min_ratio,
                        min_delta: config.baseline.retransmit_min_delta,
                    },
                    &config.baseline,
                    guards,
                ));
            }
            _ => {}
        }
        if entity.kind() == EntityKind::Container
            && matches!(
                resource.metric,
                ResourceMetric::CpuCores | ResourceMetric::MemoryBytes
            )
        {
            if let Some(service) = context.service_of(entity) {
                by_service
                    .entry((service.clone(), resource.metric))
                    .or_default()
                    .push((entity, series));
            }
        }
    }
    for ((_, metric), containers) in &by_service {
        let Some((_, first)) = containers.first() else {
            continue;
        };
        let from = index_at(first.start, first.step_secs, window.start);
        let masks: Vec<Vec<bool>> = containers
            .iter()
            .map(|(entity, series)| {
                let mut mask = vec![false; series.values.len()];
                context.warmup_mask(
                    entity,
                    series.start,
                    series.step_secs,
                    series.values.len(),
                    guards.warmup_minutes,
                    &mut mask,
                );
                mask
            })
            .collect();
        anomalies.extend(peer_anomalies(
            *metric,
            containers,
            from,
            &masks,
            &config.outlier,
            guards,
        ));
    }

    if let Some(first) = input.requests.first() {
        let start = first.metrics.start;
        let step = first.metrics.step_secs;
        let len = index_at(start, step, window.end);
        let from = index_at(start, step, window.start);
        anomalies.extend(statement_anomalies(
            &input.statements,
            start,
            step,
            len,
            from,
            &config.statements,
            guards,
        ));
    }
    anomalies.retain(|a| a.window.end > window.start && a.window.start < window.end);
    anomalies
}
