//! Detector 6: memory growth. Resident memory is split into segments at
//! restarts and OOM kills (and at sharp drops the events missed); within a
//! segment a sliding least-squares line must grow faster than
//! `min_growth_per_hour` of the segment's starting level and explain most of the
//! variance, for `hold_points` windows in a row.

use vigil_model::{EntityId, ResourceMetric, Series, Severity, SignalKind, Timestamp};

use crate::config::{GuardConfig, MemoryConfig};
use crate::guards::{held_runs, index_at, Flag, RunReport};
use crate::stats::{median, Sums};

use crate::Anomaly;

/// Memory-growth anomalies of one container. `restarts` are its restart and
/// OOM-kill times; `limit` its memory limit in bytes, if any.
#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
pub fn memory_anomalies(
    container: &EntityId,
    memory: &Series,
    restarts: &[Timestamp],
    limit: Option<f64>,
    from: usize,
    config: &MemoryConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let values = &memory.values;
    let len = values.len();
    if from >= len {
        return Vec::new();
    }
    // Segment boundaries: restarts, and drops below `drop_split_share`.
    let mut starts: Vec<usize> = restarts
        .iter()
        .map(|&time| index_at(memory.start, memory.step_secs, time))
        .filter(|&index| index < len)
        .collect();
    let mut previous = f64::NAN;
    for (index, &value) in values.iter().enumerate() {
        if value.is_finite() {
            if previous.is_finite() && value < previous * config.drop_split_share {
                starts.push(index);
            }
            previous = value;
        }
    }
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    let steps_per_hour = 3600.0 / f64::from(memory.step_secs.max(1));
    let window = config.window_minutes * 60 / memory.step_secs.max(1) as usize;
    let warmup = guards.warmup_minutes as usize * 60 / memory.step_secs.max(1) as usize;
    let mut flags = vec![Flag::Unknown; len];
    let mut growth = vec![0.0; len];
    let mut trend = vec![f64::NAN; len];
    let mut onset_of = vec![0usize; len];
    for (segment, &first) in starts.iter().enumerate() {
        let end = starts.get(segment + 1).copied().unwrap_or(len);
        // Skip the warm-up after a restart: heaps and caches fill legitimately.
        let first = if first == 0 { 0 } else { first + warmup };
        if end <= first + window {
            continue;
        }
        let level = median(&values[first..(first + 5).min(end)]).unwrap_or(f64::NAN);
        if level.is_nan() || level <= 0.0 {
            continue;
        }
        let mut sums = Sums::default();
        for t in first..end {
            sums.add(t as f64, values[t]);
            if t >= first + window {
                let old = t - window;
                sums.remove(old as f64, values[old]);
            }
            if t + 1 < first + window || t < from {
                continue;
            }
            let Some(fit) = sums.fit() else { continue };
            let per_hour = fit.slope * steps_per_hour / level;
            growth[t] = per_hour;
            trend[t] = fit.intercept + fit.slope * t as f64;
            onset_of[t] = t + 1 - window;
            flags[t] = if per_hour >= config.min_growth_per_hour
                && fit.r_squared >= config.min_r_squared
            {
                Flag::Yes
            } else {
                Flag::No
            };
        }
    }
    let runs = held_runs(&flags, guards.hold_points, guards.max_gap_points);
    let lower: Vec<f64> = vec![0.0; len];
    let upper: Vec<f64> = vec![limit.unwrap_or(f64::NAN); len];
    runs.into_iter()
        .map(|(first, end)| {
            // The leak started after the last point, walking back from the first
            // flagged window's end, that still sat in the band before it.
            let earliest = onset_of[first];
            let before = &values[earliest.saturating_sub(window)..earliest.max(1)];
            let level = median(before).unwrap_or(f64::NAN);
            let noise = crate::stats::mad(before, level).unwrap_or(0.0);
            let onset = (earliest..=first)
                .rev()
                .find(|&t| values[t] <= level + 3.0 * noise)
                .map_or(earliest, |t| (t + 1).min(first));
            let run = (onset.max(from.saturating_sub(window)), end);
            let rate = median(&growth[first..end]).unwrap_or(0.0);
            let last = values[..end]
                .iter()
                .rev()
                .find(|v| v.is_finite())
                .copied()
                .unwrap_or(f64::NAN);
            let per_minute = rate * last / 60.0;
            let eta = limit
                .filter(|l| *l > last && per_minute > 0.0)
                .map(|l| {
                    format!(
                        "; at this rate it reaches its limit in {:.0} min",
                        (l - last) / per_minute
                    )
                })
                .unwrap_or_default();
            let ooms = restarts
                .iter()
                .filter(|&&time| {
                    let index = index_at(memory.start, memory.step_secs, time);
                    index >= run.0 && index <= end + window
                })
                .count();
            let oom_note = if ooms > 0 {
                format!("; {ooms} restarts or OOM kills in the period")
            } else {
                String::new()
            };
            RunReport {
                entity: container,
                signal: SignalKind::Resource(ResourceMetric::MemoryBytes),
                start: memory.start,
                step_secs: memory.step_secs,
                values,
                baseline: &trend,
                lower: &lower,
                upper: &upper,
                run,
                score: rate / config.min_growth_per_hour,
                severity: if ooms > 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                summary: format!(
                    "memory of {container} grows {:.0}% per hour in a straight line{eta}{oom_note}",
                    rate * 100.0
                ),
            }
            .anomaly()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::EntityKind;

    fn flat(len: usize) -> Vec<f64> {
        (0..len)
            .map(|t| 4e8 * (1.0 + 0.004 * (((t * 7919) % 100) as f64 / 50.0 - 1.0)))
            .collect()
    }

    fn detect(values: Vec<f64>, restarts: &[Timestamp]) -> Vec<Anomaly> {
        let container = EntityId::new(EntityKind::Container, "cart-api-2");
        let series = Series {
            start: Timestamp(0),
            step_secs: 60,
            values,
        };
        memory_anomalies(
            &container,
            &series,
            restarts,
            Some(1e9),
            1440,
            &MemoryConfig::default(),
            &GuardConfig::default(),
        )
    }

    #[test]
    fn steady_memory_is_normal() {
        assert!(detect(flat(2880), &[]).is_empty());
    }

    #[test]
    fn a_leak_is_found_near_its_onset() {
        let mut values = flat(2880);
        let onset = 1440 + 200;
        for (i, v) in values[onset..onset + 90].iter_mut().enumerate() {
            *v += 5e6 * i as f64;
        }
        let anomalies = detect(values, &[]);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        let start = anomalies[0].window.start.secs() / 60;
        assert!((start - onset as i64).abs() <= 10, "{start} vs {onset}");
    }

    #[test]
    fn a_restart_splits_segments() {
        // Sawtooth of restarts every 20 minutes with short growth: each segment
        // is shorter than the window, so no leak is claimed from the drops.
        let mut values = flat(2880);
        let mut restarts = Vec::new();
        for start in (1440..2880).step_by(20) {
            restarts.push(Timestamp(start as i64 * 60));
            for (i, v) in values[start..start + 20].iter_mut().enumerate() {
                *v += 1e6 * i as f64;
            }
        }
        assert!(detect(values, &restarts).is_empty());
    }
}
