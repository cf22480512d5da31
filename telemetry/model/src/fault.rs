//! The catalogue of fault kinds, shared by the simulator, chaos experiments and
//! the accuracy benchmarks that check what the analysis found.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::entity::EntityId;
use crate::time::TimeRange;
use crate::ModelError;

/// A kind of fault Vigil is built to recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A process keeps burning CPU after its traffic falls.
    CpuNotReleased,
    /// One statement shape or lock contention slows MySQL; callers slow down.
    SlowMysql,
    /// A big key, a blocking command or a saturated host slows Redis.
    SlowRedis,
    /// A dependency returns errors; callers' error ratios rise.
    ErrorBurst,
    /// Latency and TCP retransmits rise between two hosts.
    NetworkDelay,
    /// A process's memory grows without bound.
    MemoryLeak,
}

impl FaultKind {
    /// The whole catalogue.
    pub const ALL: [FaultKind; 6] = [
        Self::CpuNotReleased,
        Self::SlowMysql,
        Self::SlowRedis,
        Self::ErrorBurst,
        Self::NetworkDelay,
        Self::MemoryLeak,
    ];

    /// The kind's name as written in config and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CpuNotReleased => "cpu-not-released",
            Self::SlowMysql => "slow-mysql",
            Self::SlowRedis => "slow-redis",
            Self::ErrorBurst => "error-burst",
            Self::NetworkDelay => "network-delay",
            Self::MemoryLeak => "memory-leak",
        }
    }
}

impl FromStr for FaultKind {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ModelError::UnknownName {
                what: "fault kind",
                given: text.to_owned(),
                expected: Self::ALL.map(Self::as_str).join(", "),
            })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ground truth of one injected fault: what was broken, where, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlantedFault {
    /// What kind of fault.
    pub kind: FaultKind,
    /// The entity where the fault was injected: the true root cause.
    pub root_cause: EntityId,
    /// When the fault was active.
    pub window: TimeRange,
    /// Specifics (the slowed statement, the delayed host pair…).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in FaultKind::ALL {
            assert_eq!(kind.as_str().parse::<FaultKind>(), Ok(kind));
        }
        let err = "disk-full".parse::<FaultKind>().expect_err("unknown");
        assert!(err.to_string().contains("cpu-not-released"), "{err}");
    }
}
