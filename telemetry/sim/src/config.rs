//! What to simulate: the estate's size and shape, the span, and the faults to plant.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vigil_model::{EntityId, FaultKind, Timestamp};

/// Most services an estate may have: keeps names, addresses and memory bounded.
pub const MAX_SERVICES: usize = 100_000;
/// Most instances one service may run.
pub const MAX_INSTANCES_PER_SERVICE: u32 = 64;
/// Most hosts an estate may have: addresses are `10.0.x.y` with `x < 256`, `1 ≤ y ≤ 250`.
pub const MAX_HOSTS: usize = 64_000;
/// Longest span: 400 days of minutes.
pub const MAX_MINUTES: u32 = 400 * 1440;

/// 2024-01-01T00:00:00Z, a Monday: the default start so weekly seasonality starts on a weekday.
pub const DEFAULT_START: Timestamp = Timestamp(1_704_067_200);

/// How to build the simulated estate. Every field has a sane default, so configs
/// (YAML, JSON, code) name only what they change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every random choice: the same config gives the same estate and telemetry.
    pub seed: u64,
    /// Instrumented application services (gateways, APIs, workers). MySQL and
    /// Redis servers come on top (see `mysql_servers`, `redis_servers`).
    pub services: usize,
    /// Start of the simulated span; a whole minute.
    pub start: Timestamp,
    /// Length of the span in minutes.
    pub minutes: u32,
    /// Faults to plant.
    pub faults: Vec<FaultSpec>,
    /// Application hosts; `None` sizes them to about six instances a host.
    /// Each MySQL and Redis server gets a dedicated host on top.
    pub hosts: Option<usize>,
    /// Instances (containers) per service.
    pub instances_per_service: u32,
    /// MySQL servers; `None` means one per ten services.
    pub mysql_servers: Option<usize>,
    /// Redis servers; `None` means one per twenty services.
    pub redis_servers: Option<usize>,
    /// Mean external requests per minute entering each gateway, over a whole week.
    pub gateway_requests_per_minute: f64,
    /// Local time of the estate's users relative to UTC, hours: daily seasonality
    /// peaks in the local afternoon.
    pub utc_offset_hours: i32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            services: 12,
            start: DEFAULT_START,
            minutes: 1440,
            faults: Vec::new(),
            hosts: None,
            instances_per_service: 2,
            mysql_servers: None,
            redis_servers: None,
            gateway_requests_per_minute: 3000.0,
            utc_offset_hours: 0,
        }
    }
}

impl SimConfig {
    /// MySQL servers the estate will have.
    pub fn mysql_server_count(&self) -> usize {
        self.mysql_servers.unwrap_or(self.services.div_ceil(10))
    }

    /// Redis servers the estate will have.
    pub fn redis_server_count(&self) -> usize {
        self.redis_servers.unwrap_or(self.services.div_ceil(20))
    }

    /// Application hosts the estate will have.
    pub fn app_host_count(&self) -> usize {
        self.hosts.unwrap_or_else(|| {
            let instances = self.services * self.instances_per_service as usize;
            instances.div_ceil(6).max(2)
        })
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |field: &str, reason: String| {
            Err(SimError::InvalidField {
                field: field.to_owned(),
                reason,
            })
        };
        if self.services == 0 || self.services > MAX_SERVICES {
            return invalid(
                "services",
                format!("must be 1..={MAX_SERVICES}, got {}", self.services),
            );
        }
        if self.minutes == 0 || self.minutes > MAX_MINUTES {
            return invalid(
                "minutes",
                format!("must be 1..={MAX_MINUTES}, got {}", self.minutes),
            );
        }
        if self.start.secs() % 60 != 0 {
            return invalid(
                "start",
                format!("must be a whole minute, got {}", self.start.secs()),
            );
        }
        if self.instances_per_service == 0 || self.instances_per_service > MAX_INSTANCES_PER_SERVICE
        {
            return invalid(
                "instances_per_service",
                format!(
                    "must be 1..={MAX_INSTANCES_PER_SERVICE}, got {}",
                    self.instances_per_service
                ),
            );
        }
        if self.hosts == Some(0) {
            return invalid("hosts", "must be at least 1 when set".to_owned());
        }
        let total_hosts =
            self.app_host_count() + self.mysql_server_count() + self.redis_server_count();
        if total_hosts > MAX_HOSTS {
            return invalid(
                "hosts",
                format!(
                    "application hosts plus one per MySQL and Redis server come to {total_hosts}, more than {MAX_HOSTS}"
                ),
            );
        }
        if !(self.gateway_requests_per_minute.is_finite()
            && self.gateway_requests_per_minute > 0.0
            && self.gateway_requests_per_minute <= 1e7)
        {
            return invalid(
                "gateway_requests_per_minute",
                format!(
                    "must be a number in (0, 1e7], got {}",
                    self.gateway_requests_per_minute
                ),
            );
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return invalid(
                "utc_offset_hours",
                format!("must be -12..=14, got {}", self.utc_offset_hours),
            );
        }
        for (index, fault) in self.faults.iter().enumerate() {
            if fault.duration_minutes == 0 {
                return invalid(
                    &format!("faults[{index}].duration_minutes"),
                    "must be at least 1".to_owned(),
                );
            }
            let end = u64::from(fault.start_minute) + u64::from(fault.duration_minutes);
            if end > u64::from(self.minutes) {
                return invalid(
                    &format!("faults[{index}].start_minute"),
                    format!(
                        "the fault runs to minute {end}, past the span of {} minutes",
                        self.minutes
                    ),
                );
            }
        }
        Ok(())
    }
}

/// One fault to plant. The simulator turns it into a [`vigil_model::PlantedFault`]
/// (the ground truth) when the estate is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What breaks.
    pub kind: FaultKind,
    /// Where: a service, instance or container (cpu-not-released, memory-leak),
    /// a `database:` (slow-mysql), a `cache:` (slow-redis), a service, database or
    /// cache (error-burst), a `host:` (network-delay). `None` picks a suitable
    /// entity deterministically from the seed.
    #[serde(default)]
    pub target: Option<EntityId>,
    /// First minute of the fault, counted from the span's start.
    pub start_minute: u32,
    /// How long it lasts, minutes.
    pub duration_minutes: u32,
}

impl FaultSpec {
    /// One fault of every kind, in a seed-shuffled order, each in its own sixth
    /// of the span so none overlap: the standard scenario for demos and benchmarks.
    ///
    /// Each fault lasts two thirds of its slot, at most two hours; spans too short
    /// to give every fault at least three minutes get fewer faults.
    pub fn random_catalogue(seed: u64, minutes: u32) -> Vec<FaultSpec> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6361_7461_6c6f_6775);
        let mut kinds = FaultKind::ALL.to_vec();
        kinds.shuffle(&mut rng);
        let mut slots = kinds.len() as u32;
        while slots > 0 && minutes / slots < 4 {
            slots -= 1;
        }
        if slots == 0 {
            return Vec::new();
        }
        let slot = minutes / slots;
        let duration = (slot * 2 / 3).clamp(3, 120);
        kinds
            .into_iter()
            .take(slots as usize)
            .enumerate()
            .map(|(index, kind)| {
                let slack = slot - duration;
                let offset = if slack > 0 {
                    rng.gen_range(0..=slack)
                } else {
                    0
                };
                FaultSpec {
                    kind,
                    target: None,
                    start_minute: index as u32 * slot + offset,
                    duration_minutes: duration,
                }
            })
            .collect()
    }
}

/// Why an estate could not be built. Every variant names the config field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A field is out of range.
    #[error("invalid simulator config: {field}: {reason}")]
    InvalidField {
        /// The field, e.g. `services` or `faults[2].start_minute`.
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A fault's target is not in the estate or cannot carry that kind of fault.
    #[error("invalid simulator config: faults[{index}].target: {reason}")]
    FaultTarget {
        /// Index of the fault in `faults`.
        index: usize,
        /// What is wrong with the target.
        reason: String,
    },
}

impl SimError {
    /// The config field the error is about, e.g. `faults[1].target`.
    pub fn field(&self) -> String {
        match self {
            Self::InvalidField { field, .. } => field.clone(),
            Self::FaultTarget { index, .. } => format!("faults[{index}].target"),
        }
    }
}
