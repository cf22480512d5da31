//! Detector 5: SLO burn rate, multi-window (Google SRE workbook): a rule fires
//! when both its long and its short window burn the error budget at least
//! `factor` times faster than sustainable. Availability counts failed requests;
//! latency objectives estimate the share of requests slower than the bound
//! from each step's p50 and p90 (a log-normal through both).

use vigil_model::{EntityId, RequestMetrics, SignalKind};

use crate::config::{GuardConfig, SloConfig};
use crate::guards::{held_runs, Flag, RunReport};
use crate::stats::normal_sf;
use crate::Anomaly;

/// z of the 90th percentile of a standard normal.
const Z90: f64 = 1.281_551_565_544_601;

/// Burn-rate anomalies of one serving entity; steps before `from` are history
/// (they still fill the long windows).
pub fn slo_anomalies(
    entity: &EntityId,
    metrics: &RequestMetrics,
    from: usize,
    config: &SloConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let mut anomalies = burn(
        entity,
        metrics,
        &metrics.errors,
        1.0 - config.availability_objective,
        &format!("availability {}%", config.availability_objective * 100.0),
        from,
        config,
        guards,
    );
    for objective in &config.latency_objectives {
        if objective.entity.as_ref().is_some_and(|e| e != entity) {
            continue;
        }
        let slow: Vec<f64> = (0..metrics.len())
            .map(|t| {
                let (n, p50, p90) = (
                    metrics.requests[t],
                    metrics.latency_p50_ms[t],
                    metrics.latency_p90_ms[t],
                );
                if !(n > 0.0 && p50 > 0.0 && p90 > 0.0) {
                    return f64::NAN;
                }
                let sigma = ((p90 / p50).ln() / Z90).max(1e-6);
                n * normal_sf((objective.threshold_ms / p50).ln() / sigma)
            })
            .collect();
        anomalies.extend(burn(
            entity,
            metrics,
            &slow,
            1.0 - objective.objective,
            &format!(
                "latency {}% under {} ms",
                objective.objective * 100.0,
                objective.threshold_ms
            ),
            from,
            config,
            guards,
        ));
    }
    anomalies
}

#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
fn burn(
    entity: &EntityId,
    metrics: &RequestMetrics,
    bad: &[f64],
    budget: f64,
    name: &str,
    from: usize,
    config: &SloConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let len = metrics.len().min(bad.len());
    if from >= len || budget <= 0.0 {
        return Vec::new();
    }
    // Prefix sums of requests, bad requests and steps with data.
    let mut requests = vec![0.0; len + 1];
    let mut failures = vec![0.0; len + 1];
    let mut present = vec![0.0; len + 1];
    for t in 0..len {
        let (n, b) = (metrics.requests[t], bad[t]);
        let ok = n.is_finite() && b.is_finite() && n > 0.0;
        requests[t + 1] = requests[t] + if ok { n } else { 0.0 };
        failures[t + 1] = failures[t] + if ok { b } else { 0.0 };
        present[t + 1] = present[t] + if ok { 1.0 } else { 0.0 };
    }
    let rate = |t: usize, window: usize| -> Option<f64> {
        let lo = (t + 1).saturating_sub(window);
        let n = requests[t + 1] - requests[lo];
        let covered = present[t + 1] - present[lo];
        (covered >= config.min_coverage * window as f64
            && n >= guards.min_requests_per_step * covered)
            .then(|| (failures[t + 1] - failures[lo]) / n / budget)
    };
    let ratio: Vec<f64> = (0..len)
        .map(|t| {
            let n = metrics.requests[t];
            if n > 0.0 && bad[t].is_finite() {
                bad[t] / n
            } else {
                f64::NAN
            }
        })
        .collect();
    if config.skip_unmet_objectives
        && requests[from] > 0.0
        && failures[from] / requests[from] >= budget
    {
        return Vec::new();
    }
    let mut anomalies = Vec::new();
    for rule in &config.burn_rules {
        let mut flags = vec![Flag::Unknown; len];
        let mut burn_long = vec![f64::NAN; len];
        for t in from..len {
            if let (Some(long), Some(short)) =
                (rate(t, rule.long_minutes), rate(t, rule.short_minutes))
            {
                burn_long[t] = long;
                flags[t] = if long >= rule.factor && short >= rule.factor {
                    Flag::Yes
                } else {
                    Flag::No
                };
            }
        }
        let runs = held_runs(&flags, 1, guards.max_gap_points);
        let baseline = vec![budget; len];
        let lower = vec![0.0; len];
        let upper = vec![budget * rule.factor; len];
        for run in runs {
            let peak = burn_long[run.0..run.1].iter().fold(0.0f64, |m, v| {
                if v.is_finite() {
                    m.max(*v)
                } else {
                    m
                }
            });
            anomalies.push(
                RunReport {
                    entity,
                    signal: SignalKind::SloBurn(name.to_owned()),
                    start: metrics.start,
                    step_secs: metrics.step_secs,
                    values: &ratio,
                    baseline: &baseline,
                    lower: &lower,
                    upper: &upper,
                    run,
                    score: peak / rule.factor,
                    severity: rule.severity,
                    summary: format!(
                        "{entity} burns its {name} error budget {peak:.1}× faster than sustainable over {} min (rule {}× over {}/{} min)",
                        rule.long_minutes, rule.factor, rule.long_minutes, rule.short_minutes
                    ),
                }
                .anomaly(),
            );
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{EntityKind, Severity, Timestamp};

    fn metrics(len: usize, burst: Option<(usize, usize, f64)>) -> RequestMetrics {
        let mut m = RequestMetrics::empty(Timestamp(0), 60, len);
        for t in 0..len {
            m.requests[t] = 1000.0;
            m.errors[t] = if t % 3 == 0 { 1.0 } else { 0.0 };
            m.latency_p50_ms[t] = 10.0;
            m.latency_p90_ms[t] = 20.0;
            if let Some((from, to, ratio)) = burst {
                if (from..to).contains(&t) {
                    m.errors[t] = 1000.0 * ratio;
                }
            }
        }
        m
    }

    #[test]
    fn background_errors_do_not_burn() {
        let entity = EntityId::new(EntityKind::Service, "cart-api");
        let anomalies = slo_anomalies(
            &entity,
            &metrics(2000, None),
            1000,
            &SloConfig::default(),
            &GuardConfig::default(),
        );
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn a_fast_burn_pages() {
        let entity = EntityId::new(EntityKind::Service, "cart-api");
        let anomalies = slo_anomalies(
            &entity,
            &metrics(2000, Some((1500, 1560, 0.1))),
            1000,
            &SloConfig::default(),
            &GuardConfig::default(),
        );
        let fast = anomalies
            .iter()
            .find(|a| a.severity == Severity::Critical)
            .expect("14.4× rule fires");
        // 10% errors against a 0.1% budget: the hour window passes 14.4× after ~9 min.
        let onset = fast.window.start.secs() / 60;
        assert!((1500..1515).contains(&onset), "{onset}");
    }
}
