//! Time: one type for instants and one for ranges, used across the workspace.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Seconds in a minute: the native step of DeepFlow's `1m` tables and of Vigil's series.
pub const MINUTE_SECS: u32 = 60;

/// An instant as whole seconds since the Unix epoch, UTC.
///
/// Seconds are the resolution of every table Vigil reads (`time` columns are
/// `DateTime`); finer request timings live in durations, not instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn secs(self) -> i64 {
        self.0
    }

    /// The latest multiple of `step_secs` at or before this instant.
    pub fn floor_to(self, step_secs: u32) -> Self {
        let step = i64::from(step_secs.max(1));
        Self(self.0.div_euclid(step) * step)
    }

    /// This instant moved by `secs` (negative moves back).
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0 + secs)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A half-open interval `[start, end)` of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    /// First instant inside the range.
    pub start: Timestamp,
    /// First instant after the range.
    pub end: Timestamp,
}

impl TimeRange {
    /// A range from `start` up to (not including) `end`; refuses empty or inverted ranges.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, ModelError> {
        if end <= start {
            return Err(ModelError::EmptyRange {
                start: start.0,
                end: end.0,
            });
        }
        Ok(Self { start, end })
    }

    /// Length in seconds.
    pub fn duration_secs(&self) -> i64 {
        self.end.0 - self.start.0
    }

    /// Whether `t` lies inside the range.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the two ranges share any instant.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The range widened outwards to whole multiples of `step_secs`.
    pub fn aligned_to(&self, step_secs: u32) -> Self {
        let step = i64::from(step_secs.max(1));
        let start = self.start.floor_to(step_secs);
        let end = Timestamp((self.end.0 + step - 1).div_euclid(step) * step);
        Self { start, end }
    }

    /// How many steps of `step_secs` the range aligned to that step holds.
    pub fn step_count(&self, step_secs: u32) -> usize {
        let aligned = self.aligned_to(step_secs);
        usize::try_from(aligned.duration_secs() / i64::from(step_secs.max(1))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_handles_negative_instants() {
        assert_eq!(Timestamp(-1).floor_to(60), Timestamp(-60));
        assert_eq!(Timestamp(119).floor_to(60), Timestamp(60));
    }

    #[test]
    fn empty_range_is_refused() {
        assert!(TimeRange::new(Timestamp(5), Timestamp(5)).is_err());
        assert!(TimeRange::new(Timestamp(6), Timestamp(5)).is_err());
    }

    #[test]
    fn aligned_range_counts_partial_steps() {
        let range = TimeRange::new(Timestamp(30), Timestamp(150)).expect("valid");
        assert_eq!(
            range.aligned_to(60),
            TimeRange {
                start: Timestamp(0),
                end: Timestamp(180)
            }
        );
        assert_eq!(range.step_count(60), 3);
    }
}
