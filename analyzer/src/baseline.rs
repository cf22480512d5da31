//! Detector 1: deviation from a seasonal baseline, for latency quantiles, error
//! ratios, throughput and host TCP retransmits.
//!
//! The baseline of minute `t` is the median, over the previous days, of each
//! day's median around the same minute of day (±`smooth_minutes`); with two
//! weeks of history it uses the same weekday only. Its scale is the spread of
//! the baseline's own prediction errors over the history (median absolute
//! relative error), so a series whose daily peak repeats is predicted well and
//! scores low at its peak, while a noisy one needs a larger deviation.
//!
//! Why not MSTL per series: a decomposition per series per run costs orders of
//! magnitude more than this median-of-days profile (see `docs/benchmarks.md`),
//! and patrols score every series of an estate every few minutes. The profile
//! is robust to past incidents (medians), needs no fitting, and is exact on
//! repeated days, which is what a daily peak is.

use vigil_model::{EntityId, RequestMetric, Series, Severity, SignalKind, Timestamp};

use crate::config::{BaselineConfig, GuardConfig};
use crate::guards::{held_runs, Flag, RunReport};
use crate::stats::{median_in_place, small_median, MAD_TO_SIGMA};
use crate::Anomaly;

/// Which way a deviation must go, and how large it must be besides its z-score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Upwards only, at least `min_ratio` × baseline and `min_delta` above it
    /// (latency, retransmits).
    Up {
        /// Minimum observed / baseline.
        min_ratio: f64,
        /// Minimum observed − baseline.
        min_delta: f64,
    },
    /// Either way, beyond `min_ratio` or below its inverse (throughput).
    Both {
        /// Minimum factor either way.
        min_ratio: f64,
    },
}

/// Every how many history steps the prediction error is sampled for the scale.
const HISTORY_STRIDE: usize = 3;

/// Median of five finite values with six comparisons: twice drop the smallest
/// of two sorted pairs, which cannot be the median.
#[inline]
fn median_of_five(a: f64, b: f64, c: f64, d: f64, e: f64) -> f64 {
    let (mut a, mut b) = (a.min(b), a.max(b));
    let (mut c, mut d) = (c.min(d), c.max(d));
    if a > c {
        std::mem::swap(&mut a, &mut c);
        std::mem::swap(&mut b, &mut d);
    }
    // `a` is below b, c and d: drop it, take e.
    let (mut a, mut b) = (e.min(b), e.max(b));
    if a > c {
        std::mem::swap(&mut a, &mut c);
        std::mem::swap(&mut b, &mut d);
    }
    // `a` is the smallest of the four left; the median is the next.
    let _ = (a, d);
    b.min(c)
}

/// Reusable buffers: the detector allocates nothing per series once warm, which
/// is what makes 10 M points/s possible.
#[derive(Clone, Debug, Default)]
pub struct BaselineScorer {
    smoothed: Vec<f64>,
    expected: Vec<f64>,
    errors: Vec<f64>,
    flags: Vec<Flag>,
    z: Vec<f64>,
    /// Whether the last fit fell back to the recent level (no day of history).
    cold: bool,
}

/// Fewest finite minutes before the window a cold-start level needs.
const COLD_START_MIN_POINTS: usize = 5;

/// Steps per day for a step length, if the step divides a day.
pub fn period_for(step_secs: u32) -> Option<usize> {
    let step = step_secs as usize;
    (step > 0 && 86_400 % step == 0).then_some(86_400 / step)
}

impl BaselineScorer {
    /// A scorer with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills `expected` for steps `from..len` and returns the relative scale of
    /// the prediction error (`NaN` without enough history).
    fn fit(&mut self, values: &[f64], period: usize, from: usize, config: &BaselineConfig) -> f64 {
        let len = values.len();
        let half = config.smooth_minutes.min(7);
        // Per-day smoothing: rolling median of each step's neighbourhood.
        let smoothed_len = len.saturating_sub(period);
        self.smoothed.clear();
        self.smoothed.reserve(smoothed_len);
        let mut window = [0.0f64; 16];
        for index in 0..smoothed_len {
            let lo = index.saturating_sub(half);
            let hi = (index + half + 1).min(len);
            // Fast path: a full window of five finite values (the default).
            if hi - lo == 5 {
                let w = &values[lo..hi];
                if w.iter().all(|v| v.is_finite()) {
                    self.smoothed
                        .push(median_of_five(w[0], w[1], w[2], w[3], w[4]));
                    continue;
                }
            }
            let mut used = 0;
            for &value in &values[lo..hi] {
                if value.is_finite() {
                    window[used] = value;
                    used += 1;
                }
            }
            self.smoothed.push(small_median(&mut window[..used]));
        }
        let days = config.history_days.min(14);
        let history_days = from / period;
        let weekly = history_days >= 14 && days >= 14;
        // Steps scored for the scale: the history that has a day before it.
        let first = period.min(len);
        self.expected.clear();
        self.expected.resize(len, f64::NAN);
        let mut lags = [0.0f64; 16];
        // The scale needs the history's prediction errors, but every third
        // step of a day of them estimates a MAD as well as all of them.
        let steps = (first..from.min(len))
            .filter(|t| (t - first).is_multiple_of(HISTORY_STRIDE))
            .chain(from.max(first)..len);
        for t in steps {
            let mut used = 0;
            let mut lag = if weekly { 7 * period } else { period };
            let mut count = 0;
            while lag <= t && count < days && used < lags.len() {
                let value = self.smoothed[t - lag];
                if value.is_finite() {
                    lags[used] = value;
                    used += 1;
                }
                count += 1;
                lag += if weekly { 7 * period } else { period };
                if weekly && count >= 2 {
                    break;
                }
            }
            self.expected[t] = if used == 0 {
                f64::NAN
            } else {
                small_median(&mut lags[..used])
            };
        }
        self.cold = false;
        if config.cold_start_minutes > 0 && from < len && !self.expected[from].is_finite() {
            // No day before the window: the recent level stands in for the
            // seasonal one (the scale below then falls back to short-term noise).
            let steps = (config.cold_start_minutes * period).div_ceil(1440);
            self.errors.clear();
            self.errors.extend(
                values[from.saturating_sub(steps)..from]
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite()),
            );
            if self.errors.len() >= COLD_START_MIN_POINTS {
                let level = median_in_place(&mut self.errors).unwrap_or(f64::NAN);
                for slot in &mut self.expected[from..] {
                    if !slot.is_finite() {
                        *slot = level;
                    }
                }
                self.cold = true;
                if level.abs() <= f64::EPSILON {
                    // Nothing to be relative to (no errors so far): the rule's
                    // absolute minimum decides.
                    return 1.0;
                }
                // The recent points' spread around their level, doubled like the
                // one-day fallback below for the variation it cannot see.
                for e in &mut self.errors {
                    *e = 2.0 * ((*e - level) / level).abs();
                }
                return median_in_place(&mut self.errors).map_or(f64::NAN, |m| m * MAD_TO_SIGMA);
            }
        }
        self.errors.clear();
        for t in (first..from.min(len)).step_by(HISTORY_STRIDE) {
            let (x, b) = (values[t], self.expected[t]);
            if x.is_finite() && b.is_finite() && b.abs() > f64::EPSILON {
                self.errors.push(((x - b) / b).abs());
            }
        }
        if self.errors.len() < period / (4 * HISTORY_STRIDE) {
            // One day of history: fall back to short-term noise around the
            // smoothed curve, doubled for the day-to-day variation it misses.
            self.errors.clear();
            for (&x, &m) in values.iter().zip(&self.smoothed).take(from) {
                if x.is_finite() && m.is_finite() && m.abs() > f64::EPSILON {
                    self.errors.push(2.0 * ((x - m) / m).abs());
                }
            }
        }
        median_in_place(&mut self.errors).map_or(f64::NAN, |m| m * MAD_TO_SIGMA)
    }

    /// Scores `series` from step `from` on and returns its anomalies.
    ///
    /// Indexes several parallel columns per step, hence index loops.
    ///
    /// `mask` marks steps not to score (too little traffic, warm-up); it may be
    /// shorter than the series. `floor` is the smallest scale in the series'
    /// unit (e.g. a count's Poisson noise is at least 1).
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // reason: walks several parallel columns by one index, each passed as its own slice
    pub fn detect(
        &mut self,
        entity: &EntityId,
        signal: &SignalKind,
        series: &Series,
        from: usize,
        mask: &[bool],
        rule: Rule,
        config: &BaselineConfig,
        guards: &GuardConfig,
    ) -> Vec<Anomaly> {
        let Some(period) = period_for(series.step_secs) else {
            return Vec::new();
        };
        let values = &series.values;
        let len = values.len();
        if from < period || from >= len {
            return Vec::new();
        }
        let scale = self.fit(values, period, from, config);
        if !scale.is_finite() {
            return Vec::new();
        }
        let counts = matches!(signal, SignalKind::Request(RequestMetric::Requests))
            || matches!(signal, SignalKind::Resource(_));
        self.flags.clear();
        self.z.clear();
        self.flags.resize(len, Flag::Unknown);
        self.z.resize(len, 0.0);
        for t in from..len {
            let (x, b) = (values[t], self.expected[t]);
            if !x.is_finite() || !b.is_finite() || mask.get(t).copied().unwrap_or(false) {
                continue;
            }
            // Counts are at least Poisson-noisy.
            let sigma = if counts {
                (scale * b.abs()).max(b.abs().sqrt()).max(1.0)
            } else {
                (scale * b.abs()).max(f64::EPSILON)
            };
            let z = (x - b) / sigma;
            self.z[t] = z;
            let deviates = match rule {
                Rule::Up {
                    min_ratio,
                    min_delta,
                } => z >= config.threshold && x >= b * min_ratio && x - b >= min_delta,
                Rule::Both { min_ratio } => {
                    z.abs() >= config.threshold && (x >= b * min_ratio || x * min_ratio <= b)
                }
            };
            self.flags[t] = if deviates { Flag::Yes } else { Flag::No };
        }
        let runs = held_runs(&self.flags, guards.hold_points, guards.max_gap_points);
        if runs.is_empty() {
            return Vec::new();
        }
        let band = |sign: f64| -> Vec<f64> {
            self.expected
                .iter()
                .map(|b| b + sign * config.threshold * scale * b.abs())
                .collect()
        };
        let (lower, upper) = (band(-1.0), band(1.0));
        runs.into_iter()
            .map(|run| {
                let peak = self.z[run.0..run.1]
                    .iter()
                    .fold(0.0f64, |m, z| m.max(z.abs()));
                let score = peak / config.threshold;
                let observed = crate::stats::median(&values[run.0..run.1]).unwrap_or(f64::NAN);
                let expected =
                    crate::stats::median(&self.expected[run.0..run.1]).unwrap_or(f64::NAN);
                let ratio = observed / expected;
                let severity = if score >= 3.0 && (ratio >= 3.0 || ratio <= 1.0 / 3.0) {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let against = if self.cold {
                    format!(
                        "its level over the {} min before (less than a day of history)",
                        config.cold_start_minutes
                    )
                } else {
                    "a seasonal baseline".to_owned()
                };
                let summary = format!(
                    "{} of {entity} was {} against {against} of {} ({:.1}×) for {} min",
                    signal_name(signal),
                    fmt_value(observed),
                    fmt_value(expected),
                    ratio,
                    (run.1 - run.0) * series.step_secs as usize / 60
                );
                RunReport {
                    entity,
                    signal: signal.clone(),
                    start: series.start,
                    step_secs: series.step_secs,
                    values,
                    baseline: &self.expected,
                    lower: &lower,
                    upper: &upper,
                    run,
                    score,
                    severity,
                    summary,
                }
                .anomaly()
            })
            .collect()
    }
}

/// Human name of a signal for summaries.
pub fn signal_name(signal: &SignalKind) -> String {
    match signal {
        SignalKind::Request(metric) => metric.as_str().to_owned(),
        SignalKind::Resource(metric) => metric.as_str().to_owned(),
        SignalKind::Statement(shape) => format!("statement `{shape}`"),
        SignalKind::SloBurn(name) => format!("SLO {name}"),
        SignalKind::Silence => "telemetry".to_owned(),
        SignalKind::Check(name) => name.clone(),
    }
}

/// A value with sensible precision for summaries.
pub fn fmt_value(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Error ratio against its history: the pooled hourly median ratio as baseline,
/// a binomial z-score, and a minimum rise so tiny services do not flap.
#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
pub fn error_ratio_anomalies(
    entity: &EntityId,
    start: Timestamp,
    step_secs: u32,
    requests: &[f64],
    errors: &[f64],
    from: usize,
    mask: &[bool],
    config: &BaselineConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let len = requests.len().min(errors.len());
    if from >= len || from == 0 {
        return Vec::new();
    }
    let per_hour = (3600 / step_secs.max(1) as usize).max(1);
    let mut hourly: Vec<f64> = requests[..from]
        .chunks(per_hour)
        .zip(errors[..from].chunks(per_hour))
        .filter_map(|(r, e)| {
            let (r, e) = (finite_sum(r), finite_sum(e));
            (r > 0.0).then_some(e / r)
        })
        .collect();
    let Some(p0) = median_in_place(&mut hourly) else {
        return Vec::new();
    };
    let ratio: Vec<f64> = requests
        .iter()
        .zip(errors)
        .map(|(&r, &e)| if r > 0.0 { e / r } else { f64::NAN })
        .collect();
    let mut flags = vec![Flag::Unknown; len];
    let mut z = vec![0.0; len];
    for t in from..len {
        let (n, e) = (requests[t], errors[t]);
        if !n.is_finite() || !e.is_finite() || n < guards.min_requests_per_step {
            continue;
        }
        if mask.get(t).copied().unwrap_or(false) {
            continue;
        }
        let expected = n * p0;
        let sd = (n * p0 * (1.0 - p0)).sqrt().max(0.5);
        z[t] = (e - expected) / sd;
        let deviates = z[t] >= config.threshold && e / n - p0 >= config.error_min_delta;
        flags[t] = if deviates { Flag::Yes } else { Flag::No };
    }
    let runs = held_runs(&flags, guards.hold_points, guards.max_gap_points);
    let baseline = vec![p0; len];
    let lower = vec![0.0; len];
    let upper = vec![p0 + config.error_min_delta; len];
    runs.into_iter()
        .map(|run| {
            let observed = crate::stats::median(&ratio[run.0..run.1]).unwrap_or(f64::NAN);
            let peak = z[run.0..run.1].iter().fold(0.0f64, |m, v| m.max(*v));
            let severity = if observed - p0 >= 0.1 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            RunReport {
                entity,
                signal: SignalKind::Request(RequestMetric::ErrorRatio),
                start,
                step_secs,
                values: &ratio,
                baseline: &baseline,
                lower: &lower,
                upper: &upper,
                run,
                score: peak / config.threshold,
                severity,
                summary: format!(
                    "{entity} failed {:.1}% of requests against a usual {:.2}% for {} min",
                    observed * 100.0,
                    p0 * 100.0,
                    (run.1 - run.0) * step_secs as usize / 60
                ),
            }
            .anomaly()
        })
        .collect()
}

fn finite_sum(values: &[f64]) -> f64 {
    values.iter().filter(|v| v.is_finite()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::EntityKind;

    /// Three days of a daily curve with ±3 % deterministic noise.
    fn daily(days: usize) -> Vec<f64> {
        (0..days * 1440)
            .map(|t| {
                let hour = (t % 1440) as f64 / 60.0;
                let curve = 20.0 + 12.0 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos();
                let noise = (((t * 2_654_435_761) % 1000) as f64 / 1000.0 - 0.5) * 0.06;
                curve * (1.0 + noise)
            })
            .collect()
    }

    /// A new service: a week of range, but data only for the last 40 minutes.
    fn new_service(level: f64, shift_from: usize, factor: f64) -> (Series, usize) {
        let len = 7 * 1440 + 15;
        let from = len - 15;
        let mut values = vec![f64::NAN; len];
        for (i, v) in values.iter_mut().enumerate().skip(len - 40) {
            // ±4 % deterministic noise.
            *v = level * (1.0 + 0.04 * ((i * 7919 % 13) as f64 / 6.0 - 1.0));
        }
        for v in &mut values[from + shift_from..] {
            *v *= factor;
        }
        (series(values), from)
    }

    #[test]
    fn without_a_day_of_history_the_recent_level_is_the_baseline() {
        let entity = EntityId::new(EntityKind::Service, "cart");
        let signal = SignalKind::Request(RequestMetric::LatencyP99);
        let (s, from) = new_service(20.0, 5, 8.0);
        let detect = |config: &BaselineConfig| {
            BaselineScorer::new().detect(
                &entity,
                &signal,
                &s,
                from,
                &[],
                LATENCY,
                config,
                &GuardConfig::default(),
            )
        };
        let anomalies = detect(&BaselineConfig::default());
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].window.start, s.time_at(from + 5));
        assert!(
            anomalies[0]
                .evidence
                .summary
                .contains("less than a day of history"),
            "{}",
            anomalies[0].evidence.summary
        );
        let waits = BaselineConfig {
            cold_start_minutes: 0,
            ..BaselineConfig::default()
        };
        assert!(detect(&waits).is_empty(), "cold start off waits for a day");
        let (steady, from) = new_service(20.0, 5, 1.0);
        let quiet = BaselineScorer::new().detect(
            &entity,
            &signal,
            &steady,
            from,
            &[],
            LATENCY,
            &BaselineConfig::default(),
            &GuardConfig::default(),
        );
        assert!(quiet.is_empty(), "noise alone is no anomaly: {quiet:?}");
    }

    fn series(values: Vec<f64>) -> Series {
        Series {
            start: Timestamp(1_704_067_200),
            step_secs: 60,
            values,
        }
    }

    const LATENCY: Rule = Rule::Up {
        min_ratio: 1.5,
        min_delta: 2.0,
    };

    #[test]
    fn median_of_five_matches_sorting() {
        let mut state = 12345u64;
        for _ in 0..10_000 {
            let v: Vec<f64> = (0..5)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    ((state >> 33) % 7) as f64
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(
                median_of_five(v[0], v[1], v[2], v[3], v[4]),
                sorted[2],
                "{v:?}"
            );
        }
    }

    #[test]
    fn a_daily_peak_with_noise_is_not_an_anomaly() {
        let entity = EntityId::new(EntityKind::Service, "checkout");
        let signal = SignalKind::Request(RequestMetric::LatencyP99);
        let anomalies = BaselineScorer::new().detect(
            &entity,
            &signal,
            &series(daily(3)),
            2 * 1440,
            &[],
            LATENCY,
            &BaselineConfig::default(),
            &GuardConfig::default(),
        );
        assert!(anomalies.is_empty(), "{anomalies:?}");
    }

    #[test]
    fn a_planted_shift_is_found_at_its_onset() {
        let mut values = daily(3);
        let onset = 2 * 1440 + 600;
        for v in &mut values[onset..onset + 45] {
            *v *= 2.5;
        }
        let entity = EntityId::new(EntityKind::Service, "checkout");
        let signal = SignalKind::Request(RequestMetric::LatencyP99);
        let s = series(values);
        let anomalies = BaselineScorer::new().detect(
            &entity,
            &signal,
            &s,
            2 * 1440,
            &[],
            LATENCY,
            &BaselineConfig::default(),
            &GuardConfig::default(),
        );
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].window.start, s.time_at(onset));
        assert_eq!(anomalies[0].window.end, s.time_at(onset + 45));
        assert!(anomalies[0].evidence.observed > 2.0 * anomalies[0].evidence.baseline);
    }

    #[test]
    fn masked_steps_are_not_scored() {
        let mut values = daily(3);
        let onset = 2 * 1440 + 600;
        for v in &mut values[onset..onset + 8] {
            *v *= 3.0;
        }
        let mut mask = vec![false; values.len()];
        mask[onset..onset + 10].iter_mut().for_each(|m| *m = true);
        let entity = EntityId::new(EntityKind::Service, "checkout");
        let signal = SignalKind::Request(RequestMetric::LatencyP99);
        let anomalies = BaselineScorer::new().detect(
            &entity,
            &signal,
            &series(values),
            2 * 1440,
            &mask,
            LATENCY,
            &BaselineConfig::default(),
            &GuardConfig::default(),
        );
        assert!(anomalies.is_empty());
    }

    #[test]
    fn an_error_burst_is_found_and_background_errors_are_not() {
        let len = 3 * 1440;
        let requests = vec![200.0; len];
        let mut errors: Vec<f64> = (0..len)
            .map(|t| if t % 17 == 0 { 1.0 } else { 0.0 })
            .collect();
        let onset = 2 * 1440 + 100;
        for e in &mut errors[onset..onset + 20] {
            *e = 30.0;
        }
        let entity = EntityId::new(EntityKind::Service, "payment");
        let anomalies = error_ratio_anomalies(
            &entity,
            Timestamp(0),
            60,
            &requests,
            &errors,
            2 * 1440,
            &[],
            &BaselineConfig::default(),
            &GuardConfig::default(),
        );
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].window.start, Timestamp(onset as i64 * 60));
    }
}
