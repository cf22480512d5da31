//! Detector 4: slow MySQL statements and Redis commands, per normalised shape:
//! latency shifts against the shape's own history, new shapes that are slow,
//! and error shares. Blocking and long-poll commands (BLPOP, XREAD BLOCK,
//! SUBSCRIBE…) wait by design, so their latency is never scored.

use std::collections::BTreeMap;

use vigil_model::{EntityId, Severity, SignalKind, StatementStep, Timestamp};

use crate::config::{GuardConfig, StatementConfig};
use crate::guards::{held_runs, Flag, RunReport};
use crate::stats::{mad, median};
use crate::Anomaly;

/// Whether a command waits by design: its latency says nothing about the server.
pub fn is_blocking(request_type: &str, shape: &str, config: &StatementConfig) -> bool {
    let command = request_type.trim().to_ascii_uppercase();
    let command = command.split_whitespace().next().unwrap_or("");
    if !config.blocking_commands.iter().any(|c| c == command) {
        return false;
    }
    if command == "XREAD" || command == "XREADGROUP" {
        return shape.to_ascii_uppercase().contains("BLOCK");
    }
    true
}

/// Per-step columns of one shape.
struct ShapeSteps {
    count: Vec<f64>,
    errors: Vec<f64>,
    p99: Vec<f64>,
    total_ms: Vec<f64>,
    request_type: String,
}

/// Statement anomalies over steps `[start, start + len·step)`; steps before
/// index `from` are history.
pub fn statement_anomalies(
    steps: &[StatementStep],
    start: Timestamp,
    step_secs: u32,
    len: usize,
    from: usize,
    config: &StatementConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let step = i64::from(step_secs.max(1));
    let mut shapes: BTreeMap<(EntityId, String), ShapeSteps> = BTreeMap::new();
    let mut server_total: BTreeMap<EntityId, Vec<f64>> = BTreeMap::new();
    for s in steps {
        let offset = s.time.secs() - start.secs();
        if offset < 0 {
            continue;
        }
        let Ok(index) = usize::try_from(offset / step) else {
            continue;
        };
        if index >= len {
            continue;
        }
        let stats = &s.stats;
        let entry = shapes
            .entry((stats.server.clone(), stats.shape.clone()))
            .or_insert_with(|| ShapeSteps {
                count: vec![f64::NAN; len],
                errors: vec![f64::NAN; len],
                p99: vec![f64::NAN; len],
                total_ms: vec![0.0; len],
                request_type: stats.request_type.clone(),
            });
        entry.count[index] = stats.count as f64;
        entry.errors[index] = stats.errors as f64;
        entry.p99[index] = stats.latency_p99_ms;
        entry.total_ms[index] = stats.total_ms();
        server_total
            .entry(stats.server.clone())
            .or_insert_with(|| vec![0.0; len])[index] += stats.total_ms();
    }
    let mut anomalies = Vec::new();
    for ((server, shape), columns) in &shapes {
        let totals = server_total.get(server).map_or(&[][..], Vec::as_slice);
        if !is_blocking(&columns.request_type, shape, config) {
            anomalies.extend(latency(
                server, shape, columns, totals, start, step_secs, from, config, guards,
            ));
        }
        anomalies.extend(errors(
            server, shape, columns, start, step_secs, from, config, guards,
        ));
    }
    anomalies
}

#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // reason: walks several parallel columns by one index, each passed as its own slice
fn latency(
    server: &EntityId,
    shape: &str,
    columns: &ShapeSteps,
    server_total: &[f64],
    start: Timestamp,
    step_secs: u32,
    from: usize,
    config: &StatementConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let len = columns.p99.len();
    let min_count = config.min_count_per_step as f64;
    let scored = |t: usize| columns.count[t] >= min_count && columns.p99[t] > 0.0;
    let history: Vec<f64> = (0..from.min(len))
        .filter(|&t| scored(t))
        .map(|t| columns.p99[t].ln())
        .collect();
    let is_new = history.len() < 30;
    let (center, spread) = if is_new {
        (config.new_shape_slow_ms.ln(), 0.0)
    } else {
        let center = median(&history).unwrap_or(0.0);
        (center, mad(&history, center).unwrap_or(0.0).max(0.05))
    };
    let margin = if is_new {
        0.0
    } else {
        (config.threshold * spread).max(config.min_ratio.ln())
    };
    let mut flags = vec![Flag::Unknown; len];
    for t in from..len {
        if scored(t) {
            flags[t] = if columns.p99[t].ln() - center >= margin {
                Flag::Yes
            } else {
                Flag::No
            };
        }
    }
    let runs = held_runs(&flags, guards.hold_points, guards.max_gap_points);
    let baseline = vec![center.exp(); len];
    let lower = vec![0.0; len];
    let upper = vec![(center + margin).exp(); len];
    runs.into_iter()
        .map(|run| {
            let observed = median(&columns.p99[run.0..run.1]).unwrap_or(f64::NAN);
            let share = |from: usize, to: usize| -> f64 {
                let own: f64 = columns.total_ms[from..to].iter().sum();
                let all: f64 = server_total.get(from..to).map_or(0.0, |s| s.iter().sum());
                if all > 0.0 {
                    own / all
                } else {
                    f64::NAN
                }
            };
            let share_before = share(run.0.saturating_sub(60), run.0);
            let share_during = share(run.0, run.1);
            let ratio = observed / center.exp();
            let summary = if is_new {
                format!(
                    "new statement shape `{shape}` on {server} runs with p99 {observed:.1} ms ({:.0}% of the server's time)",
                    share_during * 100.0
                )
            } else {
                format!(
                    "`{shape}` on {server} slowed to p99 {observed:.1} ms from {:.1} ms ({ratio:.1}×); its share of the server's time went from {:.0}% to {:.0}%",
                    center.exp(),
                    share_before * 100.0,
                    share_during * 100.0
                )
            };
            RunReport {
                entity: server,
                signal: SignalKind::Statement(shape.to_owned()),
                start,
                step_secs,
                values: &columns.p99,
                baseline: &baseline,
                lower: &lower,
                upper: &upper,
                run,
                score: if margin > 0.0 {
                    (observed.ln() - center) / margin
                } else {
                    1.0
                },
                severity: if ratio >= 5.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                summary,
            }
            .anomaly()
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // reason: each argument is one column or setting of the analysis; a struct would only rename them
fn errors(
    server: &EntityId,
    shape: &str,
    columns: &ShapeSteps,
    start: Timestamp,
    step_secs: u32,
    from: usize,
    config: &StatementConfig,
    guards: &GuardConfig,
) -> Vec<Anomaly> {
    let len = columns.count.len();
    let (mut n0, mut e0) = (0.0, 0.0);
    for t in 0..from.min(len) {
        if columns.count[t].is_finite() && columns.errors[t].is_finite() {
            n0 += columns.count[t];
            e0 += columns.errors[t];
        }
    }
    let p0 = if n0 > 0.0 { e0 / n0 } else { 0.0 };
    let share: Vec<f64> = columns
        .count
        .iter()
        .zip(&columns.errors)
        .map(|(&n, &e)| if n > 0.0 { e / n } else { f64::NAN })
        .collect();
    let mut flags = vec![Flag::Unknown; len];
    for t in from..len {
        let n = columns.count[t];
        if n.is_nan() || n < config.min_count_per_step as f64 || !share[t].is_finite() {
            continue;
        }
        let sd = (n * p0 * (1.0 - p0)).sqrt().max(0.5);
        let z = (columns.errors[t] - n * p0) / sd;
        flags[t] = if share[t] - p0 >= config.error_min_delta && z >= config.threshold {
            Flag::Yes
        } else {
            Flag::No
        };
    }
    let runs = held_runs(&flags, guards.hold_points, guards.max_gap_points);
    let baseline = vec![p0; len];
    let lower = vec![0.0; len];
    let upper = vec![p0 + config.error_min_delta; len];
    runs.into_iter()
        .map(|run| {
            let observed = median(&share[run.0..run.1]).unwrap_or(f64::NAN);
            RunReport {
                entity: server,
                signal: SignalKind::Statement(shape.to_owned()),
                start,
                step_secs,
                values: &share,
                baseline: &baseline,
                lower: &lower,
                upper: &upper,
                run,
                score: (observed - p0) / config.error_min_delta,
                severity: Severity::Warning,
                summary: format!(
                    "`{shape}` on {server} fails {:.1}% of executions against a usual {:.2}%",
                    observed * 100.0,
                    p0 * 100.0
                ),
            }
            .anomaly()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{EntityKind, L7Protocol, StatementStats};

    fn steps(command: &str, shape: &str, slow_from: usize, len: usize) -> Vec<StatementStep> {
        let server = EntityId::new(EntityKind::Cache, "redis-server@10.0.0.9:6379");
        (0..len)
            .map(|t| {
                let jitter = 1.0 + 0.05 * (((t * 7919) % 100) as f64 / 50.0 - 1.0);
                let p99 = if t >= slow_from { 30.0 } else { 1.2 } * jitter;
                StatementStep {
                    time: Timestamp(t as i64 * 60),
                    stats: StatementStats {
                        server: server.clone(),
                        protocol: L7Protocol::Redis,
                        request_type: command.to_owned(),
                        shape: shape.to_owned(),
                        count: 500,
                        errors: 0,
                        latency_mean_ms: p99 / 3.0,
                        latency_p99_ms: p99,
                        latency_max_ms: p99 * 2.0,
                    },
                }
            })
            .collect()
    }

    fn detect(steps: &[StatementStep]) -> Vec<Anomaly> {
        statement_anomalies(
            steps,
            Timestamp(0),
            60,
            2880,
            1440,
            &StatementConfig::default(),
            &GuardConfig::default(),
        )
    }

    #[test]
    fn a_slow_command_is_found_at_its_onset() {
        let anomalies = detect(&steps("HGETALL", "HGETALL cart:?", 2000, 2880));
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert_eq!(anomalies[0].window.start, Timestamp(2000 * 60));
    }

    #[test]
    fn blocking_commands_are_ignored() {
        assert!(detect(&steps("BLPOP", "BLPOP queue:?", 2000, 2880)).is_empty());
        assert!(detect(&steps(
            "XREAD",
            "XREAD BLOCK ? STREAMS events:?",
            2000,
            2880
        ))
        .is_empty());
        // XREAD without BLOCK is an ordinary read.
        assert_eq!(
            detect(&steps("XREAD", "XREAD STREAMS events:?", 2000, 2880)).len(),
            1
        );
    }

    #[test]
    fn steady_shapes_are_normal() {
        assert!(detect(&steps("GET", "GET session:?", 5000, 2880)).is_empty());
    }
}
