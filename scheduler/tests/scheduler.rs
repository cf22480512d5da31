//! The scheduler's promises, driven through its public API under tokio's paused
//! time: `TokioClock` maps tokio's instants onto wall time, so hours of schedule
//! run instantly and every assertion is on exact instants, never on elapsed time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_model::{PatrolOutcome, PatrolRun, Timestamp};
use vigil_scheduler::{
    Clock, Job, JobContext, JobError, JobSpec, JobSummary, MemoryHistory, RunHistory, Scheduler,
    SchedulerError, SchedulerOptions, TokioClock, Trigger, TriggerError, ABANDONED_AT_SHUTDOWN,
};

/// 2024-01-01T00:00:00Z, a Monday.
const T0: i64 = 1_704_067_200;
const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
/// A schedule that does not fire during any test (1 January, midnight).
const YEARLY: &str = "0 0 1 1 *";

/// What one call of [`ScriptedJob::run`] saw.
#[derive(Clone, Debug)]
struct Call {
    run_id: String,
    trigger: Trigger,
    scheduled_for: Timestamp,
    started: Timestamp,
    cancel: CancellationToken,
}

/// A job that takes `work` of (paused) time, counts how many of its runs overlap,
/// and can honour or ignore cancellation.
struct ScriptedJob {
    clock: TokioClock,
    work: Duration,
    findings: u32,
    honours_cancel: bool,
    calls: Mutex<Vec<Call>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    saw_cancel: AtomicBool,
    dropped_unfinished: Arc<AtomicBool>,
}

impl ScriptedJob {
    fn new(clock: TokioClock, work: Duration) -> Self {
        Self {
            clock,
            work,
            findings: 0,
            honours_cancel: true,
            calls: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            saw_cancel: AtomicBool::new(false),
            dropped_unfinished: Arc::new(AtomicBool::new(false)),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }
}

/// Decrements the running count however the run ends, and notes a run dropped mid-work.
struct RunningGuard<'a> {
    job: &'a ScriptedJob,
    finished: bool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.job.running.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.job.dropped_unfinished.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Job for ScriptedJob {
    async fn run(&self, ctx: JobContext) -> Result<JobSummary, JobError> {
        self.calls.lock().expect("calls lock").push(Call {
            run_id: ctx.run_id.clone(),
            trigger: ctx.trigger,
            scheduled_for: ctx.scheduled_for,
            started: self.clock.now(),
            cancel: ctx.cancel.clone(),
        });
        let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now_running, Ordering::SeqCst);
        let mut guard = RunningGuard {
            job: self,
            finished: false,
        };
        if self.honours_cancel {
            tokio::select! {
                () = tokio::time::sleep(self.work) => {}
                () = ctx.cancel.cancelled() => {
                    self.saw_cancel.store(true, Ordering::SeqCst);
                    guard.finished = true;
                    return Err(JobError::new("cancelled"));
                }
            }
        } else {
            tokio::time::sleep(self.work).await;
        }
        guard.finished = true;
        Ok(JobSummary {
            findings: self.findings,
        })
    }
}

/// A scheduler at wall time `start`, running in the background until stopped.
struct Running {
    clock: TokioClock,
    history: Arc<MemoryHistory>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Lets the schedule play until wall time `until`, then shuts down and waits for it.
    async fn stop_at(self, until: i64) -> Arc<MemoryHistory> {
        self.clock.sleep_until(Timestamp(until)).await;
        self.stop().await
    }

    async fn stop(self) -> Arc<MemoryHistory> {
        self.shutdown.cancel();
        self.task.await.expect("scheduler task ends cleanly");
        self.history
    }
}

fn start(scheduler: Scheduler, clock: TokioClock, history: Arc<MemoryHistory>) -> Running {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    Running {
        clock,
        history,
        shutdown,
        task,
    }
}

fn scheduler(
    clock: TokioClock,
    history: &Arc<MemoryHistory>,
    options: SchedulerOptions,
) -> Scheduler {
    Scheduler::new(
        Arc::new(clock),
        Arc::clone(history) as Arc<dyn RunHistory>,
        options,
    )
}

fn seeded() -> SchedulerOptions {
    SchedulerOptions {
        jitter_seed: Some(7),
        ..SchedulerOptions::default()
    }
}

/// Final rows of the history, ordered by start.
fn finished_runs(history: &MemoryHistory) -> Vec<PatrolRun> {
    let mut runs = history.runs();
    assert!(
        runs.iter().all(|run| run.outcome != PatrolOutcome::Running),
        "every run was recorded again when it ended: {runs:?}"
    );
    runs.sort_by_key(|run| run.started);
    runs
}

fn old_run(job_id: &str, started: i64) -> PatrolRun {
    PatrolRun {
        id: format!("{job_id}-before-restart"),
        playbook_id: job_id.to_owned(),
        started: Timestamp(started),
        ended: Some(Timestamp(started + MINUTE)),
        outcome: PatrolOutcome::Clean,
        findings: 0,
        error: None,
    }
}

#[tokio::test(start_paused = true)]
async fn runs_never_overlap_and_fires_during_a_run_are_skipped() {
    let clock = TokioClock::starting_at(Timestamp(T0 + 30));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(150)));
    let mut scheduler = scheduler(clock, &history, seeded());
    scheduler
        .add(JobSpec::new("every-minute", "* * * * *"), job.clone())
        .expect("valid spec");

    let history = start(scheduler, clock, history)
        .stop_at(T0 + 9 * MINUTE + 45)
        .await;

    let runs = finished_runs(&history);
    let starts: Vec<i64> = runs.iter().map(|run| run.started.secs() - T0).collect();
    // 00:01 runs until 03:30, so 02:00 and 03:00 are skipped (not queued to 03:30);
    // 04:00 runs until 06:30; 07:00 until 09:30.
    assert_eq!(starts, vec![60, 240, 420]);
    for pair in runs.windows(2) {
        let ended = pair[0].ended.expect("finished run has an end");
        assert!(ended <= pair[1].started, "runs overlap: {pair:?}");
    }
    assert!(runs.iter().all(|run| run.outcome == PatrolOutcome::Clean));
    assert!(runs
        .iter()
        .all(|run| run.ended == Some(run.started.plus_secs(150))));
    assert_eq!(job.max_running.load(Ordering::SeqCst), 1);
    let ids: HashSet<&str> = runs.iter().map(|run| run.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "run ids are unique");
    let calls = job.calls();
    assert!(calls
        .iter()
        .all(|call| call.trigger == Trigger::Scheduled && call.scheduled_for == call.started));
}

#[tokio::test(start_paused = true)]
async fn one_catch_up_run_after_downtime_then_the_normal_schedule() {
    let clock = TokioClock::starting_at(Timestamp(T0 + 10 * HOUR + 30 * MINUTE));
    let history = Arc::new(MemoryHistory::new());
    history
        .record(&old_run("hourly", T0))
        .await
        .expect("memory history records");
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(60)));
    let mut scheduler = scheduler(clock, &history, seeded());
    scheduler
        .add(JobSpec::new("hourly", "0 * * * *"), job.clone())
        .expect("valid spec");

    let history = start(scheduler, clock, history)
        .stop_at(T0 + 12 * HOUR + 30 * MINUTE)
        .await;

    let seen: Vec<(Trigger, i64, i64)> = job
        .calls()
        .iter()
        .map(|call| {
            (
                call.trigger,
                call.scheduled_for.secs() - T0,
                call.started.secs() - T0,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            // Ten fires were missed; one run stands in for them, at start, for the latest.
            (Trigger::CatchUp, 10 * HOUR, 10 * HOUR + 30 * MINUTE),
            (Trigger::Scheduled, 11 * HOUR, 11 * HOUR),
            (Trigger::Scheduled, 12 * HOUR, 12 * HOUR),
        ]
    );
    assert_eq!(
        finished_runs(&history).len(),
        4,
        "the old run and three new ones"
    );
}

/// The triggers and fire times a fresh hourly scheduler started at 10:30 runs until 12:30.
async fn hourly_after_restart(catch_up: bool, previous: Option<PatrolRun>) -> Vec<(Trigger, i64)> {
    let clock = TokioClock::starting_at(Timestamp(T0 + 10 * HOUR + 30 * MINUTE));
    let history = Arc::new(MemoryHistory::new());
    if let Some(previous) = previous {
        history
            .record(&previous)
            .await
            .expect("memory history records");
    }
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(60)));
    let mut scheduler = scheduler(clock, &history, seeded());
    let spec = JobSpec {
        catch_up,
        ..JobSpec::new("hourly", "0 * * * *")
    };
    scheduler.add(spec, job.clone()).expect("valid spec");
    start(scheduler, clock, history)
        .stop_at(T0 + 12 * HOUR + 30 * MINUTE)
        .await;
    job.calls()
        .iter()
        .map(|call| (call.trigger, call.scheduled_for.secs() - T0))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn no_catch_up_when_disabled_current_or_never_run() {
    let normal = vec![
        (Trigger::Scheduled, 11 * HOUR),
        (Trigger::Scheduled, 12 * HOUR),
    ];
    assert_eq!(
        hourly_after_restart(false, Some(old_run("hourly", T0))).await,
        normal,
        "catch_up: false"
    );
    assert_eq!(
        hourly_after_restart(true, Some(old_run("hourly", T0 + 10 * HOUR + 5))).await,
        normal,
        "the 10:00 fire already ran (5 s late, as jitter would make it)"
    );
    assert_eq!(
        hourly_after_restart(true, None).await,
        normal,
        "a job that never ran has nothing to catch up"
    );
    assert_eq!(
        hourly_after_restart(true, Some(old_run("hourly", T0 + 9 * HOUR))).await[0],
        (Trigger::CatchUp, 10 * HOUR),
        "control: one missed fire is caught up"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_cancelled_and_recorded_as_timed_out() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(600)));
    let mut scheduler = scheduler(clock, &history, seeded());
    let spec = JobSpec {
        timeout: Duration::from_secs(60),
        ..JobSpec::new("slow", YEARLY)
    };
    scheduler.add(spec, job.clone()).expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    let started = handle.trigger("slow").await.expect("manual run starts");
    clock.sleep_until(Timestamp(T0 + 10 * MINUTE)).await;
    let history = running.stop().await;

    let runs = finished_runs(&history);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.id, started.id);
    assert_eq!(run.outcome, PatrolOutcome::Failed);
    assert_eq!(run.error.as_deref(), Some("timed out after 60s"));
    assert_eq!(
        run.ended,
        Some(Timestamp(T0 + 60)),
        "it returned when cancelled"
    );
    assert!(
        job.saw_cancel.load(Ordering::SeqCst),
        "the job observed its cancel token"
    );
    assert!(!job.dropped_unfinished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_run_that_ignores_cancellation_is_dropped_after_the_grace() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob {
        honours_cancel: false,
        ..ScriptedJob::new(clock, Duration::from_secs(600))
    });
    let options = SchedulerOptions {
        cancel_grace: Duration::from_secs(5),
        ..seeded()
    };
    let mut scheduler = scheduler(clock, &history, options);
    let spec = JobSpec {
        timeout: Duration::from_secs(60),
        ..JobSpec::new("stubborn", YEARLY)
    };
    scheduler.add(spec, job.clone()).expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    handle.trigger("stubborn").await.expect("manual run starts");
    clock.sleep_until(Timestamp(T0 + 2 * MINUTE)).await;
    assert!(
        job.dropped_unfinished.load(Ordering::SeqCst),
        "its future was dropped"
    );
    assert!(job.calls()[0].cancel.is_cancelled());
    assert!(
        handle.trigger("stubborn").await.is_ok(),
        "the dropped run freed the job for the next one"
    );
    let history = running.stop().await;

    let first = &finished_runs(&history)[0];
    assert_eq!(first.error.as_deref(), Some("timed out after 60s"));
    assert_eq!(
        first.ended,
        Some(Timestamp(T0 + 65)),
        "timeout plus the 5 s grace"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_fire_within_bounds_and_repeats_with_the_seed() {
    async fn delays(seed: u64) -> Vec<i64> {
        let clock = TokioClock::starting_at(Timestamp(T0));
        let history = Arc::new(MemoryHistory::new());
        let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(1)));
        let options = SchedulerOptions {
            jitter_seed: Some(seed),
            ..SchedulerOptions::default()
        };
        let mut scheduler = scheduler(clock, &history, options);
        let spec = JobSpec {
            jitter: Duration::from_secs(40),
            ..JobSpec::new("jittery", "* * * * *")
        };
        scheduler.add(spec, job.clone()).expect("valid spec");
        let history = start(scheduler, clock, history)
            .stop_at(T0 + 30 * MINUTE + 50)
            .await;
        let runs = finished_runs(&history);
        let calls = job.calls();
        assert_eq!(calls.len(), runs.len());
        for (call, run) in calls.iter().zip(&runs) {
            assert_eq!(call.run_id, run.id);
            assert_eq!(call.started, run.started);
        }
        calls
            .iter()
            .map(|call| call.started.secs() - call.scheduled_for.secs())
            .collect()
    }

    let first = delays(42).await;
    assert_eq!(first.len(), 30, "every fire from 00:01 to 00:30 ran once");
    assert!(
        first.iter().all(|delay| (0..40).contains(delay)),
        "{first:?}"
    );
    let mut distinct = first.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 5, "delays vary: {first:?}");
    assert_eq!(delays(42).await, first, "same seed, same delays");
    assert_ne!(delays(43).await, first, "another seed, other delays");
}

#[tokio::test(start_paused = true)]
async fn manual_trigger_runs_now_and_is_refused_while_running() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob {
        findings: 2,
        ..ScriptedJob::new(clock, Duration::from_secs(100))
    });
    let mut scheduler = scheduler(clock, &history, seeded());
    scheduler
        .add(JobSpec::new("report", YEARLY), job.clone())
        .expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    let first = handle.trigger("report").await.expect("manual run starts");
    assert_eq!(first.playbook_id, "report");
    assert_eq!(first.outcome, PatrolOutcome::Running);
    assert_eq!(first.started, Timestamp(T0));

    let refused = handle.trigger("report").await.expect_err("already running");
    assert_eq!(
        refused,
        TriggerError::AlreadyRunning {
            job_id: "report".to_owned(),
            run_id: first.id.clone(),
        }
    );
    let unknown = handle.trigger("nope").await.expect_err("unknown job");
    assert!(unknown.to_string().contains("`nope`"), "{unknown}");

    let status = handle.status();
    assert_eq!(status.len(), 1);
    let active = status[0].running.as_ref().expect("listed as running");
    assert_eq!(active.run_id, first.id);
    assert_eq!(active.trigger, Trigger::Manual);
    assert_eq!(active.started, Some(Timestamp(T0)));
    // Next 1 January, 00:00 UTC.
    assert_eq!(status[0].next_fire, Some(Timestamp(1_735_689_600)));

    clock.sleep_until(Timestamp(T0 + 2 * MINUTE)).await;
    assert_eq!(handle.status()[0].running, None);
    let second = handle
        .trigger("report")
        .await
        .expect("free again once ended");
    assert_ne!(second.id, first.id);
    let history = running.stop_at(T0 + 5 * MINUTE).await;

    let runs = finished_runs(&history);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, first.id);
    assert_eq!(runs[0].outcome, PatrolOutcome::Findings);
    assert_eq!(runs[0].findings, 2);
    assert_eq!(runs[0].ended, Some(Timestamp(T0 + 100)));
    assert!(job
        .calls()
        .iter()
        .all(|call| call.trigger == Trigger::Manual));
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_run_that_finishes_within_the_grace() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(20)));
    let options = SchedulerOptions {
        shutdown_grace: Duration::from_secs(60),
        ..seeded()
    };
    let mut scheduler = scheduler(clock, &history, options);
    scheduler
        .add(JobSpec::new("quick", YEARLY), job.clone())
        .expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    handle.trigger("quick").await.expect("manual run starts");
    let history = running.stop().await;

    let runs = finished_runs(&history);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, PatrolOutcome::Clean);
    assert_eq!(runs[0].ended, Some(Timestamp(T0 + 20)));
    assert!(!job.calls()[0].cancel.is_cancelled());
    assert_eq!(
        handle.trigger("quick").await,
        Err(TriggerError::ShuttingDown {
            job_id: "quick".to_owned()
        }),
        "nothing starts after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_run_still_going_after_the_grace() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(600)));
    let options = SchedulerOptions {
        shutdown_grace: Duration::from_secs(30),
        ..seeded()
    };
    let mut scheduler = scheduler(clock, &history, options);
    scheduler
        .add(JobSpec::new("long", YEARLY), job.clone())
        .expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    handle.trigger("long").await.expect("manual run starts");
    let history = running.stop().await;

    let runs = finished_runs(&history);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, PatrolOutcome::Failed);
    assert_eq!(runs[0].error.as_deref(), Some(ABANDONED_AT_SHUTDOWN));
    assert_eq!(runs[0].ended, Some(Timestamp(T0 + 30)));
    assert!(job.saw_cancel.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_fire_waiting_out_its_jitter_at_shutdown_never_starts() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(1)));
    let mut scheduler = scheduler(clock, &history, seeded());
    let spec = JobSpec {
        jitter: Duration::from_secs(3600),
        ..JobSpec::new("late", "* * * * *")
    };
    scheduler.add(spec, job.clone()).expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    clock.sleep_until(Timestamp(T0 + MINUTE + 1)).await;
    let pending = handle.status()[0].running.clone();
    let history = running.stop().await;

    // With a seeded hour of jitter, the 00:01 fire is still waiting a second later.
    let pending = pending.expect("the fire claimed the job");
    assert_eq!(pending.started, None);
    assert_eq!(pending.scheduled_for, Timestamp(T0 + MINUTE));
    assert!(job.calls().is_empty());
    assert!(
        history.runs().is_empty(),
        "nothing recorded for a run that never started"
    );
}

#[tokio::test(start_paused = true)]
async fn five_field_cron_at_plus_eight_fires_at_the_right_utc_instant() {
    // 2023-12-31T20:00Z is 04:00 on 1 January in China.
    let clock = TokioClock::starting_at(Timestamp(T0 - 4 * HOUR));
    let history = Arc::new(MemoryHistory::new());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(30)));
    let mut scheduler = scheduler(clock, &history, seeded());
    let spec = JobSpec {
        utc_offset: "+08:00".to_owned(),
        ..JobSpec::new("daily-report", "0 8 * * *")
    };
    scheduler.add(spec, job.clone()).expect("valid spec");
    let handle = scheduler.handle();
    assert_eq!(handle.status()[0].next_fire, Some(Timestamp(T0)));

    start(scheduler, clock, history).stop_at(T0 + HOUR).await;

    let calls = job.calls();
    assert_eq!(calls.len(), 1);
    // 08:00 at +08:00 is 00:00 UTC.
    assert_eq!(calls[0].scheduled_for, Timestamp(T0));
    assert_eq!(calls[0].started, Timestamp(T0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_job_is_recorded_as_failed_and_can_run_again() {
    struct Panics;
    #[async_trait]
    impl Job for Panics {
        async fn run(&self, _ctx: JobContext) -> Result<JobSummary, JobError> {
            panic!("index out of range");
        }
    }

    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let mut scheduler = scheduler(clock, &history, seeded());
    scheduler
        .add(JobSpec::new("buggy", YEARLY), Arc::new(Panics))
        .expect("valid spec");
    let handle = scheduler.handle();
    let running = start(scheduler, clock, history);

    handle.trigger("buggy").await.expect("first run starts");
    clock.sleep_until(Timestamp(T0 + 1)).await;
    handle
        .trigger("buggy")
        .await
        .expect("the panic freed the job");
    let history = running.stop_at(T0 + 2).await;

    let runs = finished_runs(&history);
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run.outcome, PatrolOutcome::Failed);
        assert_eq!(run.error.as_deref(), Some("panicked: index out of range"));
    }
}

#[test]
fn invalid_specs_are_refused_naming_the_job_and_field() {
    let clock = TokioClock::starting_at(Timestamp(T0));
    let history = Arc::new(MemoryHistory::new());
    let mut scheduler = scheduler(clock, &history, seeded());
    let job = Arc::new(ScriptedJob::new(clock, Duration::from_secs(1)));

    let bad_cron = scheduler
        .add(JobSpec::new("daily-report", "0 61 * * *"), job.clone())
        .expect_err("minute 61");
    let text = bad_cron.to_string();
    assert!(
        text.contains("`daily-report`") && text.contains("`schedule`"),
        "{text}"
    );
    assert!(text.contains("0 61 * * *"), "{text}");

    let bad_offset = scheduler
        .add(
            JobSpec {
                utc_offset: "CST".to_owned(),
                ..JobSpec::new("daily-report", "0 8 * * *")
            },
            job.clone(),
        )
        .expect_err("CST is ambiguous");
    assert!(matches!(
        bad_offset,
        SchedulerError::InvalidSpec { ref job_id, field: "utc_offset", .. } if job_id == "daily-report"
    ));

    let zero_timeout = scheduler
        .add(
            JobSpec {
                timeout: Duration::ZERO,
                ..JobSpec::new("instant", "0 8 * * *")
            },
            job.clone(),
        )
        .expect_err("zero timeout");
    assert!(matches!(
        zero_timeout,
        SchedulerError::InvalidSpec {
            field: "timeout",
            ..
        }
    ));

    scheduler
        .add(JobSpec::new("daily-report", "0 8 * * *"), job.clone())
        .expect("valid spec");
    assert_eq!(
        scheduler.add(JobSpec::new("daily-report", "0 9 * * *"), job),
        Err(SchedulerError::DuplicateJob {
            job_id: "daily-report".to_owned()
        })
    );
}
