//! The agent's own limits: a circuit breaker on relative system load
//! (load15 / cores; trips at `trigger`, recovers below `recover`), and caps
//! on its own memory (`max_memory`, MiB) and CPU (`max_millicpus`). Any of
//! them pauses collection; the bounded queues count what they drop.

use crate::config::{CircuitBreakerConfig, LimitsConfig};
use crate::resources::ProcUsage;

/// Keeps the agent's own heap compact: two malloc arenas for all threads
/// (see `sys::limit_malloc_arenas`). Call first thing in `main`, before any
/// thread starts.
pub fn compact_heap() {
    crate::sys::limit_malloc_arenas(2);
}

/// Hands the allocator's free memory back to the kernel (glibc's
/// `malloc_trim`): after a burst of allocations, such as loading the kernel
/// programs or a measured run.
pub fn release_free_memory() {
    crate::sys::release_free_memory();
}

/// `load15` from `/proc/loadavg` text.
pub fn parse_load15(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().nth(2)?.parse().ok()
}

/// Hysteresis on load15 / cores.
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreaker {
    trigger: f64,
    recover: f64,
    tripped: bool,
}

impl CircuitBreaker {
    /// A closed breaker with the configured thresholds.
    pub fn new(config: &CircuitBreakerConfig) -> Self {
        Self {
            trigger: config.relative_load_trigger,
            recover: config.relative_load_recover,
            tripped: false,
        }
    }

    /// Feeds one reading; returns whether collection should pause.
    pub fn update(&mut self, load15: f64, cores: usize) -> bool {
        let relative = load15 / cores.max(1) as f64;
        if self.tripped {
            if relative < self.recover {
                self.tripped = false;
            }
        } else if relative >= self.trigger {
            self.tripped = true;
        }
        self.tripped
    }

    /// Whether the breaker is tripped.
    pub fn tripped(&self) -> bool {
        self.tripped
    }
}

/// Why collection is paused, if it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PauseReasons {
    /// load15 / cores above the trigger (and not yet below the recovery level).
    pub overload: bool,
    /// The agent's resident memory is above `max_memory`.
    pub memory: bool,
    /// The agent's CPU is above `max_millicpus`.
    pub cpu: bool,
}

impl PauseReasons {
    /// Whether any limit asks for a pause.
    pub fn any(self) -> bool {
        self.overload || self.memory || self.cpu
    }
}

/// Watches the agent's own usage against its caps.
#[derive(Clone, Debug)]
pub struct SelfLimits {
    max_memory_bytes: u64,
    max_millicpus: u64,
    ticks_per_sec: u64,
    last: Option<(u64, u64)>,
    /// The last CPU figure, thousandths of a core.
    pub millicpus: u64,
}

impl SelfLimits {
    /// Caps from the config; `ticks_per_sec` converts `/proc` CPU ticks.
    pub fn new(config: &LimitsConfig, ticks_per_sec: u64) -> Self {
        Self {
            max_memory_bytes: config.max_memory.saturating_mul(1024 * 1024),
            max_millicpus: config.max_millicpus,
            ticks_per_sec: ticks_per_sec.max(1),
            last: None,
            millicpus: 0,
        }
    }

    /// Feeds the agent's usage at monotonic `now_ns`; returns (over memory, over CPU).
    pub fn check(&mut self, now_ns: u64, usage: ProcUsage) -> (bool, bool) {
        if let Some((then, ticks)) = self.last {
            let elapsed_ns = now_ns.saturating_sub(then);
            let cpu_ns = usage.cpu_ticks.saturating_sub(ticks) * 1_000_000_000 / self.ticks_per_sec;
            if let Some(millicpus) = (cpu_ns * 1000).checked_div(elapsed_ns) {
                self.millicpus = millicpus;
            }
        }
        self.last = Some((now_ns, usage.cpu_ticks));
        (
            usage.rss_bytes > self.max_memory_bytes,
            self.millicpus > self.max_millicpus,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_trips_at_trigger_and_recovers_below_recover() {
        let mut breaker = CircuitBreaker::new(&CircuitBreakerConfig::default());
        assert!(!breaker.update(3.0, 2)); // 1.5
        assert!(breaker.update(4.0, 2)); // 2.0 trips
        assert!(breaker.update(3.2, 2)); // 1.6: still tripped (hysteresis)
        assert!(!breaker.update(2.9, 2)); // 1.45 recovers
        assert!(!breaker.update(3.9, 2));
    }

    #[test]
    fn loadavg() {
        assert_eq!(parse_load15("0.52 0.58 0.59 1/234 5678\n"), Some(0.59));
        assert_eq!(parse_load15(""), None);
    }

    #[test]
    fn self_limits() {
        let config = LimitsConfig {
            max_memory: 64,
            max_millicpus: 100,
            queue_size: 1,
        };
        let mut limits = SelfLimits::new(&config, 100);
        let usage = |ticks, mib: u64| ProcUsage {
            cpu_ticks: ticks,
            rss_bytes: mib << 20,
        };
        assert_eq!(limits.check(0, usage(0, 10)), (false, false));
        // 5 ticks = 50 ms of CPU in 1 s: 50 millicpus.
        assert_eq!(limits.check(1_000_000_000, usage(5, 10)), (false, false));
        assert_eq!(limits.millicpus, 50);
        // 50 ticks in 1 s: 500 millicpus, and 100 MiB.
        assert_eq!(limits.check(2_000_000_000, usage(55, 100)), (true, true));
    }
}
