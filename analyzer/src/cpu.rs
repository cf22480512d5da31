//! Detector 2: CPU that shifts up, is not explained by traffic, and is not
//! released ("CPU never released"), and sustained saturation against a limit.
//!
//! CPU is regressed on the service's requests over the history (`cpu ≈ idle +
//! cost · requests`), so a busy afternoon raises the expected CPU with it. What
//! the traffic does not explain is the residual: a shift in the residual that
//! lasts `persist_minutes` without coming back is reported, with its onset
//! placed by Bayesian online change-point detection (augurs' BOCPD).

use augurs_changepoint::{dist::NormalGamma, Detector, NormalGammaDetector};
use vigil_model::{EntityId, ResourceMetric, Series, Severity, SignalKind};

use crate::config::{CpuConfig, GuardConfig};
use crate::guards::{held_runs, Flag, RunReport};
use crate::stats::{least_squares, mad, median};
use crate::Anomaly;

/// CPU anomalies of one container.
///
/// `requests` is the traffic of the service it runs (aligned step for step
/// with `cpu`, `None` when unknown: then the residual is against a flat level);
/// `limit` its CPU limit in cores.
#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
pub fn cpu_anomalies(
    container: &EntityId,
    cpu: &Series,
    requests: Option<&[f64]>,
    limit: Option<f64>,
    from: usize,
    mask: &[bool],
    config: &CpuConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let values = &cpu.values;
    let len = values.len();
    if from >= len || from < 60 {
        return Vec::new();
    }
    let mut anomalies =
        shift_anomalies(container, cpu, requests, limit, from, mask, config, guards);
    if let Some(limit) = limit {
        anomalies.extend(saturation_anomalies(
            container, cpu, limit, from, config, guards,
        ));
    }
    anomalies
}

#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
fn shift_anomalies(
    container: &EntityId,
    cpu: &Series,
    requests: Option<&[f64]>,
    limit: Option<f64>,
    from: usize,
    mask: &[bool],
    config: &CpuConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let values = &cpu.values;
    let len = values.len();
    let traffic: Vec<f64> = match requests {
        Some(r) if r.len() == len => r.to_vec(),
        _ => vec![0.0; len],
    };
    let fit = least_squares(&traffic[..from], &values[..from]);
    let (intercept, slope) = match fit {
        Some(fit) if fit.slope >= 0.0 => (fit.intercept, fit.slope),
        _ => (median(&values[..from]).unwrap_or(f64::NAN), 0.0),
    };
    if !intercept.is_finite() {
        return Vec::new();
    }
    let explained: Vec<f64> = traffic
        .iter()
        .map(|&r| intercept + slope * if r.is_finite() { r } else { 0.0 })
        .collect();
    let residual: Vec<f64> = values.iter().zip(&explained).map(|(y, e)| y - e).collect();
    let Some(center) = median(&residual[..from]) else {
        return Vec::new();
    };
    let unit = limit.unwrap_or(1.0);
    let scale = mad(&residual[..from], center)
        .unwrap_or(f64::NAN)
        .max(0.005 * unit);
    if !scale.is_finite() {
        return Vec::new();
    }
    let min_extra = config.min_extra_share * unit;
    let mut flags = vec![Flag::Unknown; len];
    for t in from..len {
        if !residual[t].is_finite() || mask.get(t).copied().unwrap_or(false) {
            continue;
        }
        let extra = residual[t] - center;
        flags[t] = if extra / scale >= config.threshold && extra >= min_extra {
            Flag::Yes
        } else {
            Flag::No
        };
    }
    let runs = held_runs(&flags, config.persist_minutes, guards.max_gap_points);
    let expected: Vec<f64> = explained.iter().map(|e| e + center).collect();
    let lower: Vec<f64> = expected
        .iter()
        .map(|e| e - config.threshold * scale)
        .collect();
    let upper: Vec<f64> = expected
        .iter()
        .map(|e| e + config.threshold * scale)
        .collect();
    runs.into_iter()
        .map(|(first, end)| {
            let onset = changepoint_onset(&residual, first, scale, config).unwrap_or(first);
            let run = (onset.min(first), end);
            let extra = median(&residual[run.0..run.1]).unwrap_or(0.0) - center;
            let before = per_request(values, &traffic, run.0.saturating_sub(60), run.0);
            let during = per_request(values, &traffic, run.0, run.1);
            let traffic_note = match (before, during) {
                (Some(b), Some(d)) if b > 0.0 => {
                    format!("CPU per request {:.1}× what it was before", d / b)
                }
                _ => "traffic does not explain it".to_owned(),
            };
            let limit_note = limit
                .map(|l| format!(" ({:.0}% of its {l}-core limit)", 100.0 * extra / l))
                .unwrap_or_default();
            RunReport {
                entity: container,
                signal: SignalKind::Resource(ResourceMetric::CpuCores),
                start: cpu.start,
                step_secs: cpu.step_secs,
                values,
                baseline: &expected,
                lower: &lower,
                upper: &upper,
                run,
                score: extra / scale / config.threshold,
                severity: Severity::Warning,
                summary: format!(
                    "{container} uses {extra:.2} more cores than its traffic explains{limit_note} and has not released them for {} min; {traffic_note}",
                    (run.1 - run.0) * cpu.step_secs as usize / 60
                ),
            }
            .anomaly()
        })
        .collect()
}

/// CPU seconds per request over `[from, to)`.
fn per_request(cpu: &[f64], requests: &[f64], from: usize, to: usize) -> Option<f64> {
    let (mut c, mut r) = (0.0, 0.0);
    for t in from..to.min(cpu.len()).min(requests.len()) {
        if cpu[t].is_finite() && requests[t].is_finite() {
            c += cpu[t];
            r += requests[t];
        }
    }
    (r > 0.0).then_some(c / r)
}

/// The change point BOCPD places nearest before the start of a held run, on
/// the standardised residual around it.
fn changepoint_onset(
    residual: &[f64],
    first: usize,
    scale: f64,
    config: &CpuConfig,
) -> Option<usize> {
    let lo = first.saturating_sub(30);
    let hi = (first + 30).min(residual.len());
    let window: Vec<f64> = residual[lo..hi]
        .iter()
        .map(|r| if r.is_finite() { r / scale } else { 0.0 })
        .collect();
    let center = median(&window[..(first - lo).max(1)]).unwrap_or(0.0);
    let standardised: Vec<f64> = window.iter().map(|v| (v - center) / 10.0).collect();
    let mut detector = NormalGammaDetector::normal_gamma(
        config.changepoint_hazard,
        NormalGamma::new_unchecked(0.0, 1.0, 1.0, 1.0),
    );
    detector
        .detect_changepoints(&standardised)
        .into_iter()
        // The detector reports the last step of the old run; the shift starts after it.
        .map(|index| lo + index + 1)
        .filter(|&index| index > lo && index <= first)
        .max()
}

fn saturation_anomalies(
    container: &EntityId,
    cpu: &Series,
    limit: f64,
    from: usize,
    config: &CpuConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let values = &cpu.values;
    let len = values.len();
    let mut flags = vec![Flag::Unknown; len];
    for t in from..len {
        if values[t].is_finite() {
            flags[t] = if values[t] >= config.saturation_share * limit {
                Flag::Yes
            } else {
                Flag::No
            };
        }
    }
    let runs = held_runs(&flags, config.saturation_minutes, guards.max_gap_points);
    let ceiling = vec![config.saturation_share * limit; len];
    let zero = vec![0.0; len];
    let limit_line = vec![limit; len];
    runs.into_iter()
        .map(|run| {
            let used = median(&values[run.0..run.1]).unwrap_or(f64::NAN);
            RunReport {
                entity: container,
                signal: SignalKind::Resource(ResourceMetric::CpuCores),
                start: cpu.start,
                step_secs: cpu.step_secs,
                values,
                baseline: &ceiling,
                lower: &zero,
                upper: &limit_line,
                run,
                score: used / (config.saturation_share * limit),
                severity: Severity::Critical,
                summary: format!(
                    "{container} ran at {:.0}% of its {limit}-core CPU limit for {} min (throttled)",
                    100.0 * used / limit,
                    (run.1 - run.0) * cpu.step_secs as usize / 60
                ),
            }
            .anomaly()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{EntityKind, Timestamp};

    fn traffic(len: usize) -> Vec<f64> {
        (0..len)
            .map(|t| {
                let hour = (t % 1440) as f64 / 60.0;
                600.0 + 400.0 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos()
            })
            .collect()
    }

    fn cpu_for(requests: &[f64]) -> Vec<f64> {
        requests
            .iter()
            .enumerate()
            .map(|(t, r)| {
                let noise = (((t * 2_654_435_761) % 1000) as f64 / 1000.0 - 0.5) * 0.02;
                0.03 + r * 0.0003 + noise
            })
            .collect()
    }

    fn run(cpu: Vec<f64>, requests: &[f64]) -> Vec<Anomaly> {
        let container = EntityId::new(EntityKind::Container, "order-api-1");
        let series = Series {
            start: Timestamp(0),
            step_secs: 60,
            values: cpu,
        };
        cpu_anomalies(
            &container,
            &series,
            Some(requests),
            Some(1.0),
            2 * 1440,
            &[],
            &CpuConfig::default(),
            &GuardConfig::default(),
        )
    }

    #[test]
    fn cpu_following_traffic_is_normal() {
        let requests = traffic(3 * 1440);
        let anomalies = run(cpu_for(&requests), &requests);
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn cpu_that_stays_up_while_traffic_falls_is_never_released() {
        let requests = traffic(3 * 1440);
        let mut cpu = cpu_for(&requests);
        let onset = 2 * 1440 + 900;
        for c in &mut cpu[onset..] {
            *c += 0.5;
        }
        let anomalies = run(cpu, &requests);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        let start = anomalies[0].window.start.secs() / 60;
        assert!(
            (start - onset as i64).abs() <= 1,
            "onset {start} vs {onset}"
        );
        assert!(anomalies[0].evidence.summary.contains("not released"));
    }

    #[test]
    fn cpu_that_falls_back_is_not_never_released() {
        let requests = traffic(3 * 1440);
        let mut cpu = cpu_for(&requests);
        let onset = 2 * 1440 + 900;
        for c in &mut cpu[onset..onset + 12] {
            *c += 0.5;
        }
        assert!(run(cpu, &requests).is_empty());
    }

    #[test]
    fn sustained_saturation_is_reported() {
        let requests = traffic(3 * 1440);
        let mut cpu = cpu_for(&requests);
        let onset = 2 * 1440 + 300;
        for c in &mut cpu[onset..onset + 30] {
            *c = 0.97;
        }
        let anomalies = run(cpu, &requests);
        assert!(anomalies.iter().any(|a| a.severity == Severity::Critical));
    }
}
