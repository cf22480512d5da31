//! What the scheduler runs: opaque jobs, and what they are told and tell back.

use std::fmt;

use async_trait::async_trait;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use vigil_model::Timestamp;

/// Work the scheduler runs; it never knows what the work is (a patrol, a report, a cleanup).
#[async_trait]
pub trait Job: Send + Sync {
    /// Does one run. Long runs should watch `ctx.cancel` and return soon after it
    /// fires (timeout or shutdown); a run that does not is dropped after a grace period.
    async fn run(&self, ctx: JobContext) -> Result<JobSummary, JobError>;
}

/// Why a run started, so a job and whoever reads history can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The schedule fired.
    Scheduled,
    /// Fires were missed while the scheduler was down; one run stands in for them.
    CatchUp,
    /// Someone asked for a run now.
    Manual,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheduled => "scheduled",
            Self::CatchUp => "catch-up",
            Self::Manual => "manual",
        })
    }
}

/// What a run is told about itself.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// Unique id of this run; also the id of its history row.
    pub run_id: String,
    /// The job's id from its spec.
    pub job_id: String,
    /// The fire time this run is for (before jitter); for a manual run, when it was asked for.
    /// Jobs use it to pick their window so a late or catch-up run covers the right period.
    pub scheduled_for: Timestamp,
    /// Why the run started.
    pub trigger: Trigger,
    /// Fires when the run should stop: its timeout passed or the scheduler is shutting down.
    pub cancel: CancellationToken,
}

/// What a successful run reports; decides the outcome recorded in history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobSummary {
    /// Findings produced: more than zero records the run as `Findings`, zero as `Clean`.
    pub findings: u32,
}

/// Why a run failed, in the job's words; recorded as the run's error.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct JobError {
    message: String,
}

impl JobError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The failure's description.
    pub fn message(&self) -> &str {
        &self.message
    }
}
