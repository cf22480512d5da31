//! Chunked columnar storage of per-minute series, and the rules for merging
//! minutes into coarser steps.
//!
//! One chunk holds one hour of one series family for one key (an entity, an
//! edge, an entity's resource metric): `columns × 60` little-endian `f64`,
//! column-major, `NaN` where nothing was measured. Hours keep a chunk small
//! enough to rewrite when a later batch overlaps it, and few enough rows
//! (24 a day per key) for inserts to stay cheap.

use vigil_model::{RequestMetrics, Series, Timestamp};

/// Seconds covered by one chunk.
pub(crate) const CHUNK_SECS: i64 = 3600;
/// Minutes in one chunk.
pub(crate) const CHUNK_MINUTES: usize = 60;
/// Columns of a request or edge chunk: requests, errors, mean, p50, p90, p99.
pub(crate) const REQUEST_COLUMNS: usize = 6;
/// Columns of a resource chunk: the one value.
pub(crate) const RESOURCE_COLUMNS: usize = 1;
/// The presence mask of a chunk whose every minute is written.
pub(crate) const ALL_MINUTES: u64 = (1 << CHUNK_MINUTES) - 1;

/// Start of the chunk holding minute `t`.
pub(crate) fn chunk_start_of(t: i64) -> i64 {
    t.div_euclid(CHUNK_SECS) * CHUNK_SECS
}

/// One hour of one series as a batch writes it: which minutes it sets and their values.
#[derive(Clone, Debug)]
pub(crate) struct ChunkWrite {
    /// Start of the hour.
    pub chunk_start: i64,
    /// `columns × 60` values, column-major.
    pub values: Vec<f64>,
    /// Bit `m` set when minute `m` carries a value in the batch.
    pub present: u64,
}

impl ChunkWrite {
    fn new(chunk_start: i64, columns: usize) -> Self {
        Self {
            chunk_start,
            values: vec![f64::NAN; columns * CHUNK_MINUTES],
            present: 0,
        }
    }

    /// Overwrites the minutes this write sets in `stored` (a decoded chunk), keeping the others.
    pub fn merge_into(&self, stored: &mut [f64]) {
        let columns = self.values.len() / CHUNK_MINUTES;
        for minute in 0..CHUNK_MINUTES {
            if self.present & (1 << minute) != 0 {
                for column in 0..columns {
                    let index = column * CHUNK_MINUTES + minute;
                    stored[index] = self.values[index];
                }
            }
        }
    }
}

/// Splits per-minute columns starting at `start` into hour chunks.
///
/// A minute counts as written when any column holds a value there; a minute
/// that is `NaN` in every column leaves what is stored untouched.
pub(crate) fn split_into_chunks(start: i64, columns: &[&[f64]]) -> Vec<ChunkWrite> {
    let column_count = columns.len();
    let len = columns.first().map_or(0, |column| column.len());
    let mut chunks: Vec<ChunkWrite> = Vec::new();
    for index in 0..len {
        if columns.iter().all(|column| column[index].is_nan()) {
            continue;
        }
        let minute_start = start + 60 * index as i64;
        let chunk_start = chunk_start_of(minute_start);
        let minute = usize::try_from((minute_start - chunk_start) / 60).unwrap_or(0);
        if chunks
            .last()
            .is_none_or(|chunk| chunk.chunk_start != chunk_start)
        {
            chunks.push(ChunkWrite::new(chunk_start, column_count));
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.present |= 1 << minute;
            for (column_index, column) in columns.iter().enumerate() {
                chunk.values[column_index * CHUNK_MINUTES + minute] = column[index];
            }
        }
    }
    chunks
}

/// The blob stored for `values`.
pub(crate) fn encode(values: &[f64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The values of a stored blob, or `None` when it is not `columns` chunk columns long.
pub(crate) fn decode(bytes: &[u8], columns: usize) -> Option<Vec<f64>> {
    if bytes.len() != columns * CHUNK_MINUTES * 8 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|raw| {
                let mut word = [0u8; 8];
                word.copy_from_slice(raw);
                f64::from_le_bytes(word)
            })
            .collect(),
    )
}

/// Per-minute columns over a minute-aligned window, filled from chunks.
#[derive(Clone, Debug)]
pub(crate) struct MinuteGrid {
    /// First minute of the window.
    pub start: i64,
    /// Minutes in the window.
    pub minutes: usize,
    /// `columns` vectors of `minutes` values.
    pub columns: Vec<Vec<f64>>,
}

impl MinuteGrid {
    /// A window of `minutes` missing minutes from `start`.
    pub fn new(start: i64, minutes: usize, columns: usize) -> Self {
        Self {
            start,
            minutes,
            columns: vec![vec![f64::NAN; minutes]; columns],
        }
    }

    /// Copies the minutes of a decoded chunk that fall inside the window.
    pub fn fill(&mut self, chunk_start: i64, values: &[f64]) {
        for minute in 0..CHUNK_MINUTES {
            let offset = chunk_start + 60 * minute as i64 - self.start;
            if offset < 0 {
                continue;
            }
            let Ok(index) = usize::try_from(offset / 60) else {
                continue;
            };
            if index >= self.minutes {
                break;
            }
            for (column_index, column) in self.columns.iter_mut().enumerate() {
                column[index] = values[column_index * CHUNK_MINUTES + minute];
            }
        }
    }

    /// Whether any minute holds a value.
    pub fn has_data(&self) -> bool {
        self.columns
            .iter()
            .any(|column| column.iter().any(|v| !v.is_nan()))
    }

    /// The request columns resampled to `step_secs` (see [`resample_requests`]).
    pub fn to_request_metrics(&self, step_secs: u32) -> RequestMetrics {
        resample_requests(self, step_secs)
    }

    /// The single column resampled to `step_secs` by `merge`.
    pub fn to_series(&self, step_secs: u32, merge: fn(&[f64]) -> f64) -> Series {
        let per_step = minutes_per_step(step_secs);
        Series {
            start: Timestamp(self.start),
            step_secs,
            values: self.columns[0].chunks(per_step).map(merge).collect(),
        }
    }
}

fn minutes_per_step(step_secs: u32) -> usize {
    usize::try_from(step_secs / 60).unwrap_or(1).max(1)
}

/// Sum of the present values; `NaN` when none is present.
pub(crate) fn sum_present(values: &[f64]) -> f64 {
    let mut total = 0.0;
    let mut any = false;
    for value in values.iter().filter(|v| !v.is_nan()) {
        total += value;
        any = true;
    }
    if any {
        total
    } else {
        f64::NAN
    }
}

/// Mean of the present values; `NaN` when none is present.
pub(crate) fn mean_present(values: &[f64]) -> f64 {
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    match present.len() {
        0 => f64::NAN,
        1 => present[0],
        n => present.iter().sum::<f64>() / n as f64,
    }
}

/// Largest present value; `NaN` when none is present.
pub(crate) fn max_present(values: &[f64]) -> f64 {
    values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::max)
}

/// Mean of `values` weighted by `weights` over the places where both are present.
///
/// A lone value is returned as is (so resampling to one minute is exact); when
/// no weight is positive the present values count equally.
pub(crate) fn weighted_mean(values: &[f64], weights: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = values
        .iter()
        .zip(weights)
        .filter(|(value, _)| !value.is_nan())
        .map(|(&value, &weight)| (value, if weight > 0.0 { weight } else { 0.0 }))
        .collect();
    if pairs.len() == 1 {
        return pairs[0].0;
    }
    let total_weight: f64 = pairs.iter().map(|(_, weight)| weight).sum();
    if total_weight > 0.0 {
        pairs
            .iter()
            .map(|(value, weight)| value * weight)
            .sum::<f64>()
            / total_weight
    } else {
        mean_present(values)
    }
}

/// The weighted `quantile` (0..=1) of `values`: the smallest present value at
/// which the cumulative weight reaches `quantile` of the total.
///
/// Used to merge per-minute p99s into a window's p99: it is exact when every
/// minute has the same latency distribution and otherwise an estimate that
/// stays within the per-minute p99s. Without positive weights the values count equally.
pub(crate) fn weighted_quantile(values: &[f64], weights: &[f64], quantile: f64) -> f64 {
    let mut pairs: Vec<(f64, f64)> = values
        .iter()
        .zip(weights)
        .filter(|(value, _)| !value.is_nan())
        .map(|(&value, &weight)| (value, if weight > 0.0 { weight } else { 0.0 }))
        .collect();
    if pairs.is_empty() {
        return f64::NAN;
    }
    if pairs.iter().all(|(_, weight)| *weight == 0.0) {
        for pair in &mut pairs {
            pair.1 = 1.0;
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|(_, weight)| weight).sum();
    let target = quantile * total;
    let mut cumulative = 0.0;
    for (value, weight) in &pairs {
        cumulative += weight;
        if cumulative >= target {
            return *value;
        }
    }
    pairs.last().map_or(f64::NAN, |(value, _)| *value)
}

/// Request columns (requests, errors, mean, p50, p90, p99) resampled to `step_secs`.
///
/// Requests and errors are summed; the mean latency is the request-weighted
/// mean; each quantile is the maximum of the minutes' quantiles, an upper bound
/// of the true quantile over the step (exact at a one-minute step). Steps without
/// any measured minute stay `NaN`.
pub(crate) fn resample_requests(grid: &MinuteGrid, step_secs: u32) -> RequestMetrics {
    let per_step = minutes_per_step(step_secs);
    let steps = grid.minutes.div_ceil(per_step);
    let mut metrics = RequestMetrics::empty(Timestamp(grid.start), step_secs, steps);
    let [requests, errors, mean, p50, p90, p99] = match grid.columns.as_slice() {
        [a, b, c, d, e, f] => [a, b, c, d, e, f],
        _ => return metrics,
    };
    for step in 0..steps {
        let from = step * per_step;
        let to = (from + per_step).min(grid.minutes);
        let weights = &requests[from..to];
        metrics.requests[step] = sum_present(weights);
        metrics.errors[step] = sum_present(&errors[from..to]);
        metrics.latency_mean_ms[step] = weighted_mean(&mean[from..to], weights);
        metrics.latency_p50_ms[step] = max_present(&p50[from..to]);
        metrics.latency_p90_ms[step] = max_present(&p90[from..to]);
        metrics.latency_p99_ms[step] = max_present(&p99[from..to]);
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_keep_nan() {
        let values: Vec<f64> = (0..60)
            .map(|m| if m % 2 == 0 { m as f64 } else { f64::NAN })
            .collect();
        let back = decode(&encode(&values), 1).expect("right length");
        for (a, b) in values.iter().zip(&back) {
            assert!(a == b || (a.is_nan() && b.is_nan()));
        }
        assert!(decode(&[0u8; 7], 1).is_none());
    }

    #[test]
    fn split_spans_hours_and_skips_empty_minutes() {
        let requests = [1.0, f64::NAN, 3.0];
        let chunks = split_into_chunks(3600 - 60, &[&requests]);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].chunk_start, 0);
        assert_eq!(chunks[0].present, 1 << 59);
        assert_eq!(chunks[1].chunk_start, 3600);
        assert_eq!(chunks[1].present, 1 << 1);
        assert_eq!(chunks[1].values[1], 3.0);
    }

    #[test]
    fn merge_keeps_minutes_the_write_does_not_set() {
        let mut stored = vec![7.0; 60];
        let write = split_into_chunks(60, &[&[9.0]]).remove(0);
        write.merge_into(&mut stored);
        assert_eq!(stored[0], 7.0);
        assert_eq!(stored[1], 9.0);
    }

    #[test]
    fn weighted_quantile_follows_the_weights() {
        let values = [10.0, 100.0];
        assert_eq!(weighted_quantile(&values, &[999.0, 1.0], 0.99), 10.0);
        assert_eq!(weighted_quantile(&values, &[98.0, 2.0], 0.99), 100.0);
        assert!(weighted_quantile(&[f64::NAN], &[1.0], 0.99).is_nan());
    }

    #[test]
    fn weighted_mean_of_one_value_is_exact() {
        assert_eq!(weighted_mean(&[0.1, f64::NAN], &[3.0, 5.0]), 0.1);
        assert_eq!(weighted_mean(&[1.0, 4.0], &[3.0, 1.0]), 1.75);
        assert_eq!(weighted_mean(&[1.0, 3.0], &[0.0, 0.0]), 2.0);
    }
}
