//! Run history: where the scheduler records runs and learns, after downtime, when a job last ran.

use std::error::Error;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use thiserror::Error;
use vigil_model::PatrolRun;

/// A run history store failed; the scheduler logs it and keeps running jobs.
#[derive(Debug, Error)]
#[error("run history store failed: {source}")]
pub struct HistoryError {
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

impl HistoryError {
    /// Wraps the store's own error (SQLite, IO, …) so implementations keep the cause.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Where runs are recorded: once when a run starts (`Running`) and again, under
/// the same id, when it ends. Catch-up after downtime reads it back.
#[async_trait]
pub trait RunHistory: Send + Sync {
    /// Inserts `run`, or replaces the stored run with the same `id`.
    async fn record(&self, run: &PatrolRun) -> Result<(), HistoryError>;

    /// The job's most recently started run, whatever its outcome; `None` if it never ran.
    async fn last_run(&self, job_id: &str) -> Result<Option<PatrolRun>, HistoryError>;
}

/// Run history kept in memory: used when there is no state store, and in tests.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    runs: Mutex<Vec<PatrolRun>>,
}

impl MemoryHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every recorded run in the order first recorded, for listings and assertions.
    pub fn runs(&self) -> Vec<PatrolRun> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl RunHistory for MemoryHistory {
    async fn record(&self, run: &PatrolRun) -> Result<(), HistoryError> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        match runs.iter_mut().find(|stored| stored.id == run.id) {
            Some(stored) => *stored = run.clone(),
            None => runs.push(run.clone()),
        }
        Ok(())
    }

    async fn last_run(&self, job_id: &str) -> Result<Option<PatrolRun>, HistoryError> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        // max_by_key keeps the last of equal keys: the later-recorded run wins a tie.
        Ok(runs
            .iter()
            .filter(|run| run.playbook_id == job_id)
            .max_by_key(|run| run.started)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{PatrolOutcome, Timestamp};

    fn run(id: &str, job: &str, started: i64, outcome: PatrolOutcome) -> PatrolRun {
        PatrolRun {
            id: id.to_owned(),
            playbook_id: job.to_owned(),
            started: Timestamp(started),
            ended: None,
            outcome,
            findings: 0,
            error: None,
        }
    }

    #[tokio::test]
    async fn record_replaces_by_id_and_last_run_is_latest_start() {
        let history = MemoryHistory::new();
        history
            .record(&run("a-1", "a", 100, PatrolOutcome::Running))
            .await
            .expect("memory history records");
        history
            .record(&run("a-2", "a", 300, PatrolOutcome::Clean))
            .await
            .expect("memory history records");
        history
            .record(&run("b-1", "b", 500, PatrolOutcome::Clean))
            .await
            .expect("memory history records");
        history
            .record(&run("a-1", "a", 100, PatrolOutcome::Failed))
            .await
            .expect("memory history records");

        let runs = history.runs();
        assert_eq!(runs.len(), 3, "a-1 was replaced, not duplicated");
        assert_eq!(runs[0].outcome, PatrolOutcome::Failed);
        let last = history.last_run("a").await.expect("reads").expect("a ran");
        assert_eq!(last.id, "a-2");
        assert_eq!(history.last_run("c").await.expect("reads"), None);
    }

    #[test]
    fn history_error_keeps_its_cause() {
        let error = HistoryError::new("disk full");
        assert_eq!(error.to_string(), "run history store failed: disk full");
        assert!(error.source().is_some());
    }
}
