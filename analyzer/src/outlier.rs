//! Detector 3: multivariate outliers of an entity against its own history
//! (a linfa Gaussian mixture over per-window features), and peer outliers: one
//! instance of a service behaving unlike its siblings.
//!
//! The mixture sees what single-metric baselines miss: a combination that is
//! unusual although each metric alone is within its band (latency up while
//! traffic is down). Its anomalies are `Info`: they add evidence to findings and
//! raise none alone, because a 4-D likelihood is harder for a human to check.

use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vigil_model::{
    EntityId, RequestMetric, RequestMetrics, ResourceMetric, Series, Severity, SignalKind,
};

use crate::config::{GuardConfig, OutlierConfig};
use crate::guards::{held_runs, Flag, RunReport};
use crate::stats::{mad, median};
use crate::Anomaly;

const FEATURES: [RequestMetric; 4] = [
    RequestMetric::LatencyP99,
    RequestMetric::LatencyP50,
    RequestMetric::ErrorRatio,
    RequestMetric::Requests,
];

/// Feature vectors per window: log p99, log p50, error ratio, log requests.
fn window_features(
    metrics: &RequestMetrics,
    width: usize,
    min_requests: f64,
) -> Vec<Option<[f64; 4]>> {
    let len = metrics.len();
    (0..len / width)
        .map(|w| {
            let range = w * width..(w + 1) * width;
            let n: f64 = metrics.requests[range.clone()]
                .iter()
                .filter(|v| v.is_finite())
                .sum();
            let e: f64 = metrics.errors[range.clone()]
                .iter()
                .filter(|v| v.is_finite())
                .sum();
            if n < min_requests * width as f64 {
                return None;
            }
            let p99 = median(&metrics.latency_p99_ms[range.clone()])?;
            let p50 = median(&metrics.latency_p50_ms[range])?;
            (p99 > 0.0 && p50 > 0.0).then(|| [p99.ln(), p50.ln(), e / n, n.ln()])
        })
        .collect()
}

/// Multivariate outliers of one serving entity.
pub fn multivariate_anomalies(
    entity: &EntityId,
    metrics: &RequestMetrics,
    from: usize,
    config: &OutlierConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let width = config.window_minutes * 60 / metrics.step_secs.max(1) as usize;
    if width == 0 || metrics.len() < 2 * width {
        return Vec::new();
    }
    let features = window_features(metrics, width, guards.min_requests_per_step);
    let first_scored = from.div_ceil(width);
    let history: Vec<[f64; 4]> = features[..first_scored.min(features.len())]
        .iter()
        .flatten()
        .copied()
        .collect();
    if history.len() < 50 {
        return Vec::new();
    }
    // Robust standardisation, so the mixture's covariance is well conditioned.
    let floors = [0.05, 0.05, 0.002, 0.05];
    let mut centers = [0.0; 4];
    let mut scales = [1.0; 4];
    for k in 0..4 {
        let column: Vec<f64> = history.iter().map(|f| f[k]).collect();
        centers[k] = median(&column).unwrap_or(0.0);
        scales[k] = mad(&column, centers[k]).unwrap_or(0.0).max(floors[k]);
    }
    let standardise =
        |f: &[f64; 4]| -> [f64; 4] { std::array::from_fn(|k| (f[k] - centers[k]) / scales[k]) };
    let mut records = Array2::<f64>::zeros((history.len(), 4));
    for (row, f) in history.iter().enumerate() {
        for (k, value) in standardise(f).into_iter().enumerate() {
            records[[row, k]] = value;
        }
    }
    let dataset = DatasetBase::from(records);
    let Ok(model) = GaussianMixtureModel::params_with_rng(
        config.components,
        ChaCha8Rng::seed_from_u64(config.seed),
    )
    .n_runs(1)
    .tolerance(1e-3)
    .reg_covariance(1e-2)
    .max_n_iterations(200)
    .fit(&dataset) else {
        return Vec::new();
    };
    let means = model.means();
    let precisions = model.precisions();
    let distance = |x: &[f64; 4]| -> f64 {
        (0..means.nrows())
            .map(|c| {
                let diff = Array1::from_iter((0..4).map(|k| x[k] - means[[c, k]]));
                let precision = precisions.index_axis(ndarray::Axis(0), c);
                diff.dot(&precision.dot(&diff))
            })
            .fold(f64::INFINITY, f64::min)
    };
    let len = metrics.len();
    let mut window_flags = vec![Flag::Unknown; features.len()];
    let mut d2 = vec![f64::NAN; len];
    let mut dominant = vec![0usize; features.len()];
    for (w, feature) in features.iter().enumerate().skip(first_scored) {
        let Some(f) = feature else { continue };
        let x = standardise(f);
        let d = distance(&x);
        dominant[w] = (0..4)
            .max_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs()))
            .unwrap_or(0);
        for value in &mut d2[w * width..(w + 1) * width] {
            *value = d;
        }
        window_flags[w] = if d >= config.threshold {
            Flag::Yes
        } else {
            Flag::No
        };
    }
    let runs = held_runs(&window_flags, config.hold_windows, 0);
    let zero = vec![0.0; len];
    let threshold = vec![config.threshold; len];
    runs.into_iter()
        .map(|(first, end)| {
            let worst = (first..end)
                .max_by(|&a, &b| d2[a * width].total_cmp(&d2[b * width]))
                .unwrap_or(first);
            let metric = FEATURES[dominant[worst]];
            let peak = d2[worst * width];
            RunReport {
                entity,
                signal: SignalKind::Request(metric),
                start: metrics.start,
                step_secs: metrics.step_secs,
                values: &d2,
                baseline: &zero,
                lower: &zero,
                upper: &threshold,
                run: (first * width, end * width),
                score: peak / config.threshold,
                severity: Severity::Info,
                summary: format!(
                    "{entity}'s latency, errors and traffic together are unlike its history (Mahalanobis² {peak:.0} to the nearest of {} mixture components), driven by {}",
                    config.components,
                    metric.as_str()
                ),
            }
            .anomaly()
        })
        .collect()
}

/// Peer outliers among the containers of one service: each container's share of
/// the siblings' total against its usual share.
pub fn peer_anomalies(
    metric: ResourceMetric,
    containers: &[(&EntityId, &Series)],
    from: usize,
    masks: &[Vec<bool>],
    config: &OutlierConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    if containers.len() < config.min_peers.max(2) {
        return Vec::new();
    }
    let len = containers
        .iter()
        .map(|(_, s)| s.values.len())
        .min()
        .unwrap_or(0);
    if from >= len {
        return Vec::new();
    }
    let total: Vec<f64> = (0..len)
        .map(|t| containers.iter().map(|(_, s)| s.values[t]).sum())
        .collect();
    let mut anomalies = Vec::new();
    for (index, (container, series)) in containers.iter().enumerate() {
        let share: Vec<f64> = (0..len)
            .map(|t| {
                let v = series.values[t];
                if v.is_finite() && total[t] > 0.0 {
                    v / total[t]
                } else {
                    f64::NAN
                }
            })
            .collect();
        let Some(usual) = median(&share[..from]).filter(|u| *u > 0.0) else {
            continue;
        };
        let mask = masks.get(index).map_or(&[][..], Vec::as_slice);
        let flags: Vec<Flag> = (0..len)
            .map(|t| {
                if t < from || !share[t].is_finite() || mask.get(t).copied().unwrap_or(false) {
                    Flag::Unknown
                } else if share[t] >= usual * config.peer_min_ratio {
                    Flag::Yes
                } else {
                    Flag::No
                }
            })
            .collect();
        let runs = held_runs(&flags, config.peer_hold_minutes, guards.max_gap_points);
        let baseline = vec![usual; len];
        let lower = vec![0.0; len];
        let upper = vec![usual * config.peer_min_ratio; len];
        for run in runs {
            let observed = median(&share[run.0..run.1]).unwrap_or(f64::NAN);
            anomalies.push(
                RunReport {
                    entity: container,
                    signal: SignalKind::Resource(metric),
                    start: series.start,
                    step_secs: series.step_secs,
                    values: &share,
                    baseline: &baseline,
                    lower: &lower,
                    upper: &upper,
                    run,
                    score: observed / usual / config.peer_min_ratio,
                    severity: Severity::Warning,
                    summary: format!(
                        "{container} takes {:.0}% of its service's {} against a usual {:.0}%: it behaves unlike its {} siblings",
                        observed * 100.0,
                        metric.as_str(),
                        usual * 100.0,
                        containers.len() - 1
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
    use vigil_model::{EntityKind, Timestamp};

    fn normal_metrics(len: usize) -> RequestMetrics {
        let mut m = RequestMetrics::empty(Timestamp(0), 60, len);
        for t in 0..len {
            let hour = (t % 1440) as f64 / 60.0;
            let load = 1.0 + 0.5 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos();
            let jitter = 1.0 + 0.03 * (((t * 7919) % 100) as f64 / 50.0 - 1.0);
            m.requests[t] = (800.0 * load).round();
            m.errors[t] = (t % 4 == 0) as u8 as f64;
            m.latency_p50_ms[t] = 10.0 * (1.0 + 0.1 * (load - 1.0)) * jitter;
            m.latency_p99_ms[t] = 40.0 * (1.0 + 0.1 * (load - 1.0)) * jitter;
        }
        m
    }

    #[test]
    fn usual_days_are_not_multivariate_outliers() {
        let entity = EntityId::new(EntityKind::Service, "search-api");
        let anomalies = multivariate_anomalies(
            &entity,
            &normal_metrics(3 * 1440),
            2 * 1440,
            &OutlierConfig::default(),
            &GuardConfig::default(),
        );
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn latency_up_with_traffic_down_is_a_multivariate_outlier() {
        let mut m = normal_metrics(3 * 1440);
        for t in 2 * 1440 + 600..2 * 1440 + 660 {
            m.latency_p99_ms[t] *= 2.0;
            m.latency_p50_ms[t] *= 1.6;
            m.requests[t] *= 0.5;
        }
        let entity = EntityId::new(EntityKind::Service, "search-api");
        let anomalies = multivariate_anomalies(
            &entity,
            &m,
            2 * 1440,
            &OutlierConfig::default(),
            &GuardConfig::default(),
        );
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].window.start, Timestamp((2 * 1440 + 600) * 60));
    }

    #[test]
    fn one_instance_unlike_its_siblings_is_a_peer_outlier() {
        let ids: Vec<EntityId> = (1..=3)
            .map(|i| EntityId::new(EntityKind::Container, &format!("api-{i}")))
            .collect();
        let series: Vec<Series> = (0..3)
            .map(|i| Series {
                start: Timestamp(0),
                step_secs: 60,
                values: (0..2880)
                    .map(|t| if i == 1 && t >= 2000 { 0.9 } else { 0.2 })
                    .collect(),
            })
            .collect();
        let containers: Vec<(&EntityId, &Series)> = ids.iter().zip(&series).collect();
        let anomalies = peer_anomalies(
            ResourceMetric::CpuCores,
            &containers,
            1440,
            &[],
            &OutlierConfig::default(),
            &GuardConfig::default(),
        );
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].entity, ids[1]);
    }
}
