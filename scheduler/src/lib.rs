//! The 24×7 scheduler: runs jobs on cron schedules.
//!
//! Owns time: schedules (cron expressions read at a fixed UTC offset), no-overlap,
//! timeouts, jitter, catch-up after downtime, graceful shutdown and run history.
//! Does not know what a job does: it runs opaque [`Job`]s, so it never depends on
//! playbooks or telemetry. Runs are recorded as the model's
//! [`PatrolRun`](vigil_model::PatrolRun) through [`RunHistory`]; the binary backs
//! it with the state store, [`MemoryHistory`] serves everything else.
//!
//! Time comes from a [`Clock`]: [`SystemClock`] in production, [`TokioClock`]
//! under tokio's paused time in tests, so days of schedule run in milliseconds.

mod clock;
mod history;
mod job;
mod schedule;
mod scheduler;

pub use clock::{Clock, SystemClock, TokioClock};
pub use history::{HistoryError, MemoryHistory, RunHistory};
pub use job::{Job, JobContext, JobError, JobSummary, Trigger};
pub use schedule::{CronSchedule, ScheduleError};
pub use scheduler::{
    ActiveRun, JobSpec, JobStatus, Scheduler, SchedulerError, SchedulerHandle, SchedulerOptions,
    TriggerError, ABANDONED_AT_SHUTDOWN,
};
