//! The scheduler: fires jobs on their schedules and keeps the run-time promises
//! (no overlap, timeouts, jitter, one catch-up after downtime, graceful shutdown).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use vigil_model::{PatrolOutcome, PatrolRun, Timestamp};

use crate::clock::Clock;
use crate::history::RunHistory;
use crate::job::{Job, JobContext, JobSummary, Trigger};
use crate::schedule::CronSchedule;

/// Error text recorded for runs cut short by shutdown.
pub const ABANDONED_AT_SHUTDOWN: &str = "abandoned at shutdown";

/// One job's schedule and run-time limits, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// Unique id; recorded as the run's `playbook_id` and used to trigger it by hand.
    pub id: String,
    /// Cron expression: 5-field crontab, 6/7-field with seconds, or `@daily`-style
    /// (see [`CronSchedule`] for the exact forms).
    pub schedule: String,
    /// UTC offset the expression is read at, e.g. `+08:00` so `0 8 * * *` is 08:00 in China.
    pub utc_offset: String,
    /// Longest a run may take before it is cancelled and recorded as failed.
    pub timeout: Duration,
    /// Each scheduled or catch-up run waits a uniformly random delay in `[0, jitter)`
    /// first, so jobs sharing a schedule do not all hit the stores at once; manual
    /// runs start at once. The job counts as running while it waits.
    pub jitter: Duration,
    /// After downtime, run once at start if fires were missed.
    pub catch_up: bool,
}

impl JobSpec {
    /// A spec with the defaults: UTC, 10 minute timeout, no jitter, catch-up on.
    pub fn new(id: impl Into<String>, schedule: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            schedule: schedule.into(),
            utc_offset: "+00:00".to_owned(),
            timeout: Duration::from_secs(600),
            jitter: Duration::ZERO,
            catch_up: true,
        }
    }

    /// Checks every field and compiles the schedule, so config loading can refuse a
    /// bad job before the scheduler starts.
    pub fn validate(&self) -> Result<CronSchedule, SchedulerError> {
        let invalid = |field: &'static str, reason: String| SchedulerError::InvalidSpec {
            job_id: self.id.clone(),
            field,
            reason,
        };
        if self.id.trim().is_empty() || self.id.trim() != self.id {
            return Err(invalid(
                "id",
                "must be non-empty without leading or trailing spaces".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be longer than zero".to_owned()));
        }
        CronSchedule::parse(&self.schedule, &self.utc_offset).map_err(|error| {
            let field = match error {
                crate::ScheduleError::Offset { .. } => "utc_offset",
                crate::ScheduleError::Expression { .. } => "schedule",
            };
            invalid(field, error.to_string())
        })
    }
}

/// Settings that apply to every job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// At shutdown, how long running jobs may go on before they are cancelled and
    /// recorded as abandoned.
    pub shutdown_grace: Duration,
    /// Once a run's cancel token fires (timeout or shutdown), how long it gets to
    /// return before its future is dropped.
    pub cancel_grace: Duration,
    /// Seed for the jitter delays; `None` seeds from the OS. A fixed seed makes
    /// tests and simulations repeatable.
    pub jitter_seed: Option<u64>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            jitter_seed: None,
        }
    }
}

/// Why a job could not be added.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SchedulerError {
    /// A field of the spec is invalid.
    #[error("job `{job_id}`: invalid `{field}`: {reason}")]
    InvalidSpec {
        /// The job's id as written.
        job_id: String,
        /// The spec field at fault (`id`, `schedule`, `utc_offset`, `timeout`).
        field: &'static str,
        /// What is wrong, quoting the value.
        reason: String,
    },
    /// Another job already has this id.
    #[error("job `{job_id}` is defined twice")]
    DuplicateJob {
        /// The repeated id.
        job_id: String,
    },
}

/// Why a manual run was not started.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TriggerError {
    /// No job has this id.
    #[error("no job `{job_id}` is scheduled")]
    UnknownJob {
        /// The id asked for.
        job_id: String,
    },
    /// The job is running (or about to, after its jitter); runs never overlap.
    #[error("job `{job_id}` is already running (run `{run_id}`)")]
    AlreadyRunning {
        /// The job asked for.
        job_id: String,
        /// The run in progress.
        run_id: String,
    },
    /// The scheduler is shutting down and starts nothing new.
    #[error("the scheduler is shutting down; job `{job_id}` was not started")]
    ShuttingDown {
        /// The job asked for.
        job_id: String,
    },
}

/// A run the scheduler has started (or fired and is delaying by jitter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveRun {
    /// The run's id.
    pub run_id: String,
    /// Why it started.
    pub trigger: Trigger,
    /// The fire time it is for.
    pub scheduled_for: Timestamp,
    /// When it started; `None` while it waits out its jitter.
    pub started: Option<Timestamp>,
}

/// One job as listed by [`SchedulerHandle::status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    /// The job's id.
    pub job_id: String,
    /// Its cron expression as written.
    pub schedule: String,
    /// The UTC offset the expression is read at.
    pub utc_offset: String,
    /// The next fire time; `None` once the schedule has ended or the scheduler is shutting down.
    pub next_fire: Option<Timestamp>,
    /// The run in progress, if any.
    pub running: Option<ActiveRun>,
}

/// Runs jobs on cron schedules until shut down.
///
/// Add jobs, take a [`SchedulerHandle`] for manual runs and listings, then `run`.
pub struct Scheduler {
    shared: Arc<Shared>,
}

/// Manual runs and listings, from anywhere (API handlers, the CLI); cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

struct JobEntry {
    spec: JobSpec,
    schedule: CronSchedule,
    job: Arc<dyn Job>,
    active: Option<ActiveRun>,
}

struct Registry {
    jobs: BTreeMap<String, JobEntry>,
    /// False from the moment shutdown begins: nothing new starts after that.
    accepting: bool,
}

struct Shared {
    clock: Arc<dyn Clock>,
    history: Arc<dyn RunHistory>,
    options: SchedulerOptions,
    registry: Mutex<Registry>,
    jitter_rng: Mutex<StdRng>,
    /// Every run task, so shutdown can wait for them.
    runs: TaskTracker,
    /// Fires when shutdown begins: stop firing, drop runs still waiting out jitter.
    stopping: CancellationToken,
    /// Fires when the shutdown grace is over: cancel runs still going.
    abandon: CancellationToken,
    /// Distinguishes this process's run ids from an earlier one's.
    run_id_nonce: u32,
    run_counter: AtomicU64,
}

/// Why `launch` did not start a run.
enum Refusal {
    UnknownJob,
    AlreadyRunning { run_id: String },
    ShuttingDown,
}

impl Refusal {
    fn into_trigger_error(self, job_id: &str) -> TriggerError {
        let job_id = job_id.to_owned();
        match self {
            Self::UnknownJob => TriggerError::UnknownJob { job_id },
            Self::AlreadyRunning { run_id } => TriggerError::AlreadyRunning { job_id, run_id },
            Self::ShuttingDown => TriggerError::ShuttingDown { job_id },
        }
    }
}

/// Everything a run task needs, taken from the registry when the run was launched.
struct PlannedRun {
    job: Arc<dyn Job>,
    job_id: String,
    run_id: String,
    trigger: Trigger,
    scheduled_for: Timestamp,
    jitter_delay: Duration,
    timeout: Duration,
}

/// Marks a job as running for as long as it lives; dropping it (run ended, task
/// dropped, panic) frees the job for its next run.
struct RunSlot {
    shared: Arc<Shared>,
    job_id: String,
    run_id: String,
}

impl RunSlot {
    fn mark_started(&self, started: Timestamp) {
        let mut registry = self.shared.registry();
        if let Some(active) = registry
            .jobs
            .get_mut(&self.job_id)
            .and_then(|entry| entry.active.as_mut())
            .filter(|active| active.run_id == self.run_id)
        {
            active.started = Some(started);
        }
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        if let Some(entry) = registry.jobs.get_mut(&self.job_id) {
            if entry
                .active
                .as_ref()
                .is_some_and(|active| active.run_id == self.run_id)
            {
                entry.active = None;
            }
        }
    }
}

/// How the wait on a run's job ended.
enum Ending {
    Returned(Result<Result<JobSummary, crate::JobError>, JoinError>),
    TimedOut,
    Abandoned,
}

impl Scheduler {
    /// A scheduler with no jobs, reading time from `clock` and recording runs in `history`.
    pub fn new(
        clock: Arc<dyn Clock>,
        history: Arc<dyn RunHistory>,
        options: SchedulerOptions,
    ) -> Self {
        let jitter_rng = options
            .jitter_seed
            .map_or_else(StdRng::from_entropy, StdRng::seed_from_u64);
        Self {
            shared: Arc::new(Shared {
                clock,
                history,
                options,
                registry: Mutex::new(Registry {
                    jobs: BTreeMap::new(),
                    accepting: true,
                }),
                jitter_rng: Mutex::new(jitter_rng),
                runs: TaskTracker::new(),
                stopping: CancellationToken::new(),
                abandon: CancellationToken::new(),
                run_id_nonce: rand::random(),
                run_counter: AtomicU64::new(0),
            }),
        }
    }

    /// Adds a job; refuses an invalid spec or a repeated id, naming the job.
    pub fn add(&mut self, spec: JobSpec, job: Arc<dyn Job>) -> Result<(), SchedulerError> {
        let schedule = spec.validate()?;
        let mut registry = self.shared.registry();
        if registry.jobs.contains_key(&spec.id) {
            return Err(SchedulerError::DuplicateJob { job_id: spec.id });
        }
        registry.jobs.insert(
            spec.id.clone(),
            JobEntry {
                spec,
                schedule,
                job,
                active: None,
            },
        );
        Ok(())
    }

    /// A handle for manual runs and listings; works before and while `run` runs.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs the schedule until `shutdown` fires, then shuts down gracefully: stops
    /// firing, lets running jobs finish within `shutdown_grace`, then cancels the
    /// rest and records them as failed ("abandoned at shutdown"). Returns when
    /// every run has ended and been recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let jobs: Vec<(String, CronSchedule, bool)> = shared
            .registry()
            .jobs
            .values()
            .map(|entry| {
                (
                    entry.spec.id.clone(),
                    entry.schedule.clone(),
                    entry.spec.catch_up,
                )
            })
            .collect();
        info!(jobs = jobs.len(), "scheduler started");
        let mut fire_loops = JoinSet::new();
        for (job_id, schedule, catch_up) in jobs {
            fire_loops.spawn(Arc::clone(&shared).fire_loop(job_id, schedule, catch_up));
        }

        shutdown.cancelled().await;
        shared.begin_shutdown();
        while let Some(ended) = fire_loops.join_next().await {
            if let Err(failure) = ended {
                error!(%failure, "a job's fire loop failed");
            }
        }
        let in_flight = shared.runs.len();
        if in_flight > 0 {
            info!(in_flight, grace = ?shared.options.shutdown_grace, "shutdown: waiting for running jobs");
        }
        let finished_in_grace = tokio::select! {
            biased;
            () = shared.runs.wait() => true,
            () = shared.clock.sleep(shared.options.shutdown_grace) => false,
        };
        if !finished_in_grace {
            warn!(
                remaining = shared.runs.len(),
                "shutdown grace is over: cancelling runs still going"
            );
            shared.abandon.cancel();
            shared.runs.wait().await;
        }
        info!("scheduler stopped");
    }
}

impl SchedulerHandle {
    /// Starts a run of `job_id` now, without jitter, and returns its `Running`
    /// history row once recorded; the run goes on in the background. Refuses while
    /// the job is running, for an unknown id, and once shutdown has begun.
    pub async fn trigger(&self, job_id: &str) -> Result<PatrolRun, TriggerError> {
        let now = self.shared.clock.now();
        let started = self
            .shared
            .launch(job_id, Trigger::Manual, now)
            .map_err(|refusal| refusal.into_trigger_error(job_id))?;
        started.await.map_err(|_| TriggerError::ShuttingDown {
            job_id: job_id.to_owned(),
        })
    }

    /// Every job with its schedule, next fire time and current run, sorted by id.
    pub fn status(&self) -> Vec<JobStatus> {
        let now = self.shared.clock.now();
        let registry = self.shared.registry();
        registry
            .jobs
            .values()
            .map(|entry| JobStatus {
                job_id: entry.spec.id.clone(),
                schedule: entry.spec.schedule.clone(),
                utc_offset: entry.spec.utc_offset.clone(),
                next_fire: registry
                    .accepting
                    .then(|| entry.schedule.next_after(now))
                    .flatten(),
                running: entry.active.clone(),
            })
            .collect()
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The lock is never held across a panic point that leaves the registry
        // inconsistent, so a poisoned lock's data is still good.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_shutdown(&self) {
        self.registry().accepting = false;
        self.stopping.cancel();
        self.runs.close();
        info!("shutdown: no new runs will start");
    }

    fn next_run_id(&self, job_id: &str, scheduled_for: Timestamp) -> String {
        let counter = self.run_counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!(
            "{job_id}-{}-{:08x}-{counter}",
            scheduled_for.secs(),
            self.run_id_nonce
        )
    }

    fn jitter_delay(&self, jitter: Duration) -> Duration {
        let bound = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        if bound == 0 {
            return Duration::ZERO;
        }
        let mut rng = self
            .jitter_rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Duration::from_nanos(rng.gen_range(0..bound))
    }

    /// Claims the job's run slot and starts a run task; the receiver gets the
    /// `Running` row once recorded (dropped if the run never starts).
    fn launch(
        self: &Arc<Self>,
        job_id: &str,
        trigger: Trigger,
        scheduled_for: Timestamp,
    ) -> Result<oneshot::Receiver<PatrolRun>, Refusal> {
        let (planned, task_token) = {
            let mut registry = self.registry();
            if !registry.accepting {
                return Err(Refusal::ShuttingDown);
            }
            let entry = registry.jobs.get_mut(job_id).ok_or(Refusal::UnknownJob)?;
            if let Some(active) = &entry.active {
                return Err(Refusal::AlreadyRunning {
                    run_id: active.run_id.clone(),
                });
            }
            let run_id = self.next_run_id(job_id, scheduled_for);
            let jitter_delay = match trigger {
                Trigger::Manual => Duration::ZERO,
                Trigger::Scheduled | Trigger::CatchUp => self.jitter_delay(entry.spec.jitter),
            };
            entry.active = Some(ActiveRun {
                run_id: run_id.clone(),
                trigger,
                scheduled_for,
                started: None,
            });
            let planned = PlannedRun {
                job: Arc::clone(&entry.job),
                job_id: job_id.to_owned(),
                run_id,
                trigger,
                scheduled_for,
                jitter_delay,
                timeout: entry.spec.timeout,
            };
            // Taken under the lock, so shutdown (which closes the tracker after
            // refusing new runs under the same lock) always waits for this run.
            (planned, self.runs.token())
        };
        let slot = RunSlot {
            shared: Arc::clone(self),
            job_id: planned.job_id.clone(),
            run_id: planned.run_id.clone(),
        };
        let (started_tx, started_rx) = oneshot::channel();
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let _tracked = task_token;
            shared.execute(planned, slot, started_tx).await;
        });
        Ok(started_rx)
    }

    /// One run, start to recorded end.
    async fn execute(
        &self,
        planned: PlannedRun,
        slot: RunSlot,
        started_tx: oneshot::Sender<PatrolRun>,
    ) {
        let PlannedRun {
            job,
            job_id,
            run_id,
            trigger,
            scheduled_for,
            jitter_delay,
            timeout,
        } = planned;
        if !jitter_delay.is_zero() {
            debug!(job_id, run_id, delay = ?jitter_delay, "jitter before starting");
            tokio::select! {
                biased;
                () = self.stopping.cancelled() => {
                    info!(job_id, run_id, "shutdown began during the jitter delay; run not started");
                    return;
                }
                () = self.clock.sleep(jitter_delay) => {}
            }
        }

        let started = self.clock.now();
        slot.mark_started(started);
        let mut run = PatrolRun {
            id: run_id.clone(),
            playbook_id: job_id.clone(),
            started,
            ended: None,
            outcome: PatrolOutcome::Running,
            findings: 0,
            error: None,
        };
        self.record(&run).await;
        // The manual caller may have stopped waiting; the run goes on regardless.
        let _ = started_tx.send(run.clone());
        info!(job_id, run_id, %trigger, scheduled_for = scheduled_for.secs(), "run started");

        let cancel = CancellationToken::new();
        let ctx = JobContext {
            run_id: run_id.clone(),
            job_id: job_id.clone(),
            scheduled_for,
            trigger,
            cancel: cancel.clone(),
        };
        // Its own task, so a panicking job is caught as a failed run.
        let mut task = tokio::spawn(async move { job.run(ctx).await });
        let ending = tokio::select! {
            biased;
            joined = &mut task => Ending::Returned(joined),
            () = self.clock.sleep(timeout) => Ending::TimedOut,
            () = self.abandon.cancelled() => Ending::Abandoned,
        };
        let result = match ending {
            Ending::Returned(Ok(Ok(summary))) => Ok(summary),
            Ending::Returned(Ok(Err(job_error))) => Err(job_error.message().to_owned()),
            Ending::Returned(Err(join_error)) => Err(describe_join_error(join_error)),
            Ending::TimedOut => {
                warn!(job_id, run_id, ?timeout, "run timed out: cancelling");
                cancel.cancel();
                self.stop_within_grace(&job_id, &run_id, task).await;
                Err(format!("timed out after {timeout:?}"))
            }
            Ending::Abandoned => {
                warn!(job_id, run_id, "run abandoned at shutdown: cancelling");
                cancel.cancel();
                self.stop_within_grace(&job_id, &run_id, task).await;
                Err(ABANDONED_AT_SHUTDOWN.to_owned())
            }
        };

        run.ended = Some(self.clock.now());
        match result {
            Ok(summary) => {
                run.findings = summary.findings;
                run.outcome = if summary.findings > 0 {
                    PatrolOutcome::Findings
                } else {
                    PatrolOutcome::Clean
                };
                info!(job_id, run_id, findings = summary.findings, "run finished");
            }
            Err(message) => {
                warn!(job_id, run_id, error = %message, "run failed");
                run.outcome = PatrolOutcome::Failed;
                run.error = Some(message);
            }
        }
        self.record(&run).await;
        drop(slot);
    }

    /// After cancelling a run's token: give it `cancel_grace` to return, then drop it.
    async fn stop_within_grace(
        &self,
        job_id: &str,
        run_id: &str,
        mut task: tokio::task::JoinHandle<Result<JobSummary, crate::JobError>>,
    ) {
        tokio::select! {
            biased;
            _ = &mut task => {}
            () = self.clock.sleep(self.options.cancel_grace) => {
                warn!(job_id, run_id, grace = ?self.options.cancel_grace, "run ignored cancellation; dropping it");
                task.abort();
            }
        }
    }

    async fn record(&self, run: &PatrolRun) {
        if let Err(failure) = self.history.record(run).await {
            error!(run_id = run.id, %failure, "could not record the run in history");
        }
    }

    /// Fires one job on its schedule until shutdown (after one catch-up run if due).
    async fn fire_loop(self: Arc<Self>, job_id: String, schedule: CronSchedule, catch_up: bool) {
        let started_at = self.clock.now();
        if catch_up {
            self.catch_up(&job_id, &schedule, started_at).await;
        }
        let mut after = started_at;
        loop {
            let Some(fire) = schedule.next_after(after) else {
                info!(job_id, "the schedule has no further fire times");
                return;
            };
            tokio::select! {
                biased;
                () = self.stopping.cancelled() => return,
                () = self.clock.sleep_until(fire) => {}
            }
            match self.launch(&job_id, Trigger::Scheduled, fire) {
                Ok(_started) => {}
                Err(Refusal::AlreadyRunning { run_id }) => {
                    info!(
                        job_id,
                        fire = fire.secs(),
                        running = run_id,
                        "still running: this fire is skipped, not queued"
                    );
                }
                Err(Refusal::ShuttingDown | Refusal::UnknownJob) => return,
            }
            // Resume from now (less a second, so a fire due this very second is kept):
            // fires the wall clock jumped over are skipped, not replayed in a burst.
            let now = self.clock.now();
            let resume_after = fire.max(now.plus_secs(-1));
            if let Some(missed) = schedule.next_after(fire) {
                if missed <= resume_after {
                    warn!(
                        job_id,
                        first_missed = missed.secs(),
                        now = now.secs(),
                        "the wall clock passed fire times; they are skipped"
                    );
                }
            }
            after = resume_after;
        }
    }

    /// Starts one catch-up run when history shows the latest due fire was missed.
    async fn catch_up(self: &Arc<Self>, job_id: &str, schedule: &CronSchedule, now: Timestamp) {
        let last = match self.history.last_run(job_id).await {
            Ok(last) => last,
            Err(failure) => {
                warn!(job_id, %failure, "cannot read run history; no catch-up");
                return;
            }
        };
        let Some(last) = last else {
            debug!(job_id, "never ran: nothing to catch up");
            return;
        };
        let Some(due) = schedule.latest_at_or_before(now) else {
            return;
        };
        if last.started >= due {
            return;
        }
        info!(
            job_id,
            missed_fire = due.secs(),
            last_started = last.started.secs(),
            "fires were missed while down: starting one catch-up run"
        );
        match self.launch(job_id, Trigger::CatchUp, due) {
            Ok(_started) => {}
            Err(Refusal::AlreadyRunning { run_id }) => {
                info!(
                    job_id,
                    running = run_id,
                    "already running: no catch-up needed"
                );
            }
            Err(Refusal::ShuttingDown | Refusal::UnknownJob) => {}
        }
    }
}

fn describe_join_error(join_error: JoinError) -> String {
    if join_error.is_panic() {
        format!("panicked: {}", panic_message(join_error.into_panic()))
    } else {
        "the run's task was cancelled".to_owned()
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(
            || "(no message)".to_owned(),
            |message| (*message).to_owned(),
        ),
    }
}
