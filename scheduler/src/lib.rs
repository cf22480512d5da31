//! The 24×7 scheduler: runs jobs on cron schedules.
//!
//! Owns time: schedules, no-overlap, timeouts, jitter, catch-up after downtime,
//! graceful shutdown and run history.
//! Does not know what a job does: it runs opaque jobs, so it never depends on
//! playbooks or telemetry.
