//! Noise guards shared by the detectors: flapping (a deviation must hold),
//! gap tolerance, and the evidence every anomaly carries.

use vigil_model::{
    Anomaly, EntityId, Evidence, Series, Severity, SignalKind, TimeRange, Timestamp,
};

/// How one point scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// Deviates.
    Yes,
    /// Normal.
    No,
    /// Not scored (gap, too little traffic, warm-up).
    Unknown,
}

/// Runs of deviating points that held for `hold` points in a row (unscored
/// points neither count nor break the streak), tolerating up to `max_gap`
/// non-deviating points inside a run. Returns `[start, end)` index pairs, start
/// at the first deviating point, end after the last.
pub fn held_runs(flags: &[Flag], hold: usize, max_gap: usize) -> Vec<(usize, usize)> {
    let hold = hold.max(1);
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    let mut last_yes = 0;
    let mut gap = 0;
    let mut streak = 0;
    let mut confirmed = false;
    for (index, flag) in flags.iter().enumerate() {
        match flag {
            Flag::Yes => {
                if start.is_none() {
                    start = Some(index);
                    confirmed = false;
                    streak = 0;
                }
                streak += 1;
                gap = 0;
                last_yes = index;
                if streak >= hold {
                    confirmed = true;
                }
            }
            Flag::No | Flag::Unknown => {
                if *flag == Flag::No {
                    streak = 0;
                }
                if let Some(first) = start {
                    gap += 1;
                    if gap > max_gap {
                        if confirmed {
                            runs.push((first, last_yes + 1));
                        }
                        start = None;
                        gap = 0;
                        streak = 0;
                    }
                }
            }
        }
    }
    if let (Some(first), true) = (start, confirmed) {
        runs.push((first, last_yes + 1));
    }
    runs
}

/// Index of the first step at or after `time` in a series starting at `start`.
pub fn index_at(start: Timestamp, step_secs: u32, time: Timestamp) -> usize {
    let step = i64::from(step_secs.max(1));
    let offset = time.secs() - start.secs();
    if offset <= 0 {
        0
    } else {
        usize::try_from((offset + step - 1) / step).unwrap_or(usize::MAX)
    }
}

/// Everything needed to turn a run into an [`Anomaly`].
pub struct RunReport<'a> {
    /// Where.
    pub entity: &'a EntityId,
    /// Which signal.
    pub signal: SignalKind,
    /// Time of index 0 of the arrays below.
    pub start: Timestamp,
    /// Seconds per step.
    pub step_secs: u32,
    /// Observed values.
    pub values: &'a [f64],
    /// Expected values (`NaN` where unknown).
    pub baseline: &'a [f64],
    /// Lower edge of the expected band.
    pub lower: &'a [f64],
    /// Upper edge of the expected band.
    pub upper: &'a [f64],
    /// The run, `[start, end)`.
    pub run: (usize, usize),
    /// Strength (≥ 1 anomalous).
    pub score: f64,
    /// Urgency.
    pub severity: Severity,
    /// One sentence.
    pub summary: String,
}

/// Points of context drawn before an anomaly.
const CHART_BEFORE: usize = 120;
/// Points of context drawn after an anomaly.
const CHART_AFTER: usize = 30;

impl RunReport<'_> {
    /// The anomaly, with the chart clipped to the run and some context.
    pub fn anomaly(self) -> Anomaly {
        let (first, end) = self.run;
        let len = self.values.len();
        let from = first.saturating_sub(CHART_BEFORE);
        let to = (end + CHART_AFTER).min(len);
        let at = |index: usize| {
            let index = i64::try_from(index).unwrap_or(i64::MAX / 4);
            self.start.plus_secs(index * i64::from(self.step_secs))
        };
        let clip = |values: &[f64]| Series {
            start: at(from),
            step_secs: self.step_secs,
            values: values
                .get(from..to)
                .map(<[f64]>::to_vec)
                .unwrap_or_default(),
        };
        let observed =
            crate::stats::median(self.values.get(first..end).unwrap_or(&[])).unwrap_or(f64::NAN);
        let baseline =
            crate::stats::median(self.baseline.get(first..end).unwrap_or(&[])).unwrap_or(f64::NAN);
        Anomaly {
            entity: self.entity.clone(),
            signal: self.signal,
            window: TimeRange {
                start: at(first),
                end: at(end.max(first + 1)),
            },
            score: self.score,
            severity: self.severity,
            evidence: Evidence {
                baseline,
                observed,
                series: Some(clip(self.values)),
                band: Some((clip(self.lower), clip(self.upper))),
                summary: self.summary,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(text: &str) -> Vec<Flag> {
        text.chars()
            .map(|c| match c {
                'y' => Flag::Yes,
                '?' => Flag::Unknown,
                _ => Flag::No,
            })
            .collect()
    }

    #[test]
    fn short_blips_and_flapping_are_not_runs() {
        assert!(held_runs(&flags("..yyyy..y.y.y.y.y.."), 5, 2).is_empty());
    }

    #[test]
    fn held_run_starts_at_first_deviation_and_bridges_small_gaps() {
        assert_eq!(held_runs(&flags("...yyyyy.yy....."), 5, 2), vec![(3, 11)]);
        assert_eq!(held_runs(&flags("..yy?yyy...."), 5, 2), vec![(2, 8)]);
        assert_eq!(held_runs(&flags("yyyyy"), 5, 0), vec![(0, 5)]);
    }
}
