//! `vigil patrol …`, `vigil finding …` and `vigil report …`: playbooks, runs,
//! acknowledgements and stored reports from the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_model::{FindingMark, MarkKind, PatrolRun, TelemetrySource, Timestamp};
use vigil_playbooks::{load_all, Playbook};
use vigil_report::RenderOptions;
use vigil_store::embedded::{EmbeddedStore, ReportContent};

use crate::config::Config;
use crate::patrol::{outcome_of, PatrolOutput, Patrols};
use crate::wiring;

/// `vigil patrol` subcommands.
#[derive(Debug, Subcommand)]
pub enum PatrolCommand {
    /// List the playbooks (built-in and user), their schedules and last runs.
    List,
    /// Validate the built-in catalogue and the user playbooks directory.
    Check {
        /// Directory of playbooks; default: `patrol.playbooks_dir`.
        dir: Option<PathBuf>,
    },
    /// Run one playbook now and print where its report is.
    Run(RunArgs),
    /// Recent runs, latest first.
    History {
        /// Only this playbook.
        playbook: Option<String>,
        /// Runs shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Write the built-in catalogue's YAML files into a directory, to start your own.
    Export {
        /// Target directory (created).
        dir: PathBuf,
    },
}

/// `vigil patrol run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook id.
    pub id: String,
    /// End of the patrolled window (RFC 3339 or unix seconds); default: now.
    #[arg(long)]
    pub at: Option<String>,
}

/// `vigil finding` subcommands.
#[derive(Debug, Subcommand)]
pub enum FindingCommand {
    /// Acknowledge a finding: still reported, marked as being handled.
    Ack(MarkArgs),
    /// Suppress a finding: listed apart, not notified, until the mark expires.
    Suppress(MarkArgs),
    /// End the acknowledgement or suppression of a finding now.
    Unmark {
        /// The finding's fingerprint (as reports show it).
        fingerprint: String,
    },
    /// Marks in force now.
    Marks,
}

/// Arguments of `ack` and `suppress`.
#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The finding's fingerprint (as reports show it).
    pub fingerprint: String,
    /// Why (shown in reports).
    #[arg(long)]
    pub reason: String,
    /// How long it applies, e.g. `8h`, `7d`.
    #[arg(long = "for", default_value = "7d", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Who decided; default: `$USER`.
    #[arg(long)]
    pub by: Option<String>,
}

/// `vigil report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Stored reports, latest first.
    List {
        /// Only this playbook.
        playbook: Option<String>,
        /// Reports shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a stored report (JSON by run id, HTML by `RUN-en` / `RUN-zh`).
    Show {
        /// Report id.
        id: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Loads every playbook the config names.
pub fn playbooks(config: &Config) -> anyhow::Result<Vec<Playbook>> {
    Ok(load_all(config.patrol.playbooks_dir.as_deref())?)
}

/// The telemetry source the config names: ClickHouse when configured, else the embedded store.
pub async fn telemetry(
    config: &Config,
    state: &EmbeddedStore,
) -> anyhow::Result<Arc<dyn TelemetrySource>> {
    Ok(match wiring::connect_clickhouse(config).await? {
        Some(clickhouse) => Arc::new(clickhouse),
        None => Arc::new(state.clone()),
    })
}

/// Builds the patrol runner over `source` and `state` as the config says.
pub fn patrols(
    config: &Config,
    source: Arc<dyn TelemetrySource>,
    state: EmbeddedStore,
    playbooks: &[Playbook],
) -> anyhow::Result<Patrols> {
    let mut patrols = Patrols::new(source, state, playbooks, &config.notify)?;
    patrols.report_dir = Some(config.patrol.report_dir.clone());
    patrols.base_url = config.patrol.base_url.clone();
    patrols.options.analyzer = config.analyzer.clone();
    let offset = vigil_playbooks::parse_utc_offset(&config.patrol.utc_offset).unwrap_or(0);
    patrols.render = RenderOptions {
        utc_offset_minutes: offset / 60,
        ..RenderOptions::default()
    };
    Ok(patrols)
}

/// Parses `--at`: RFC 3339 or unix seconds.
pub fn parse_at(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(Timestamp(secs));
    }
    let time = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("--at {text:?}: expected RFC 3339 (2026-11-25T08:00:00Z) or unix seconds")
    })?;
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .context("--at is before 1970")?
        .as_secs();
    Ok(Timestamp(i64::try_from(secs).unwrap_or(i64::MAX)))
}

/// Seconds since the epoch, now.
pub fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Timestamp(i64::try_from(secs).unwrap_or(0))
}

fn clock(at: Timestamp) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.secs()).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Runs `vigil patrol`.
pub async fn run(config: &Config, command: PatrolCommand) -> anyhow::Result<()> {
    match command {
        PatrolCommand::List => {
            let playbooks = playbooks(config)?;
            let state = wiring::open_embedded(&config.store.embedded).await?;
            println!(
                "{:<16} {:<14} {:<8} {:>6} {:<8} last run",
                "id", "schedule", "window", "checks", "enabled"
            );
            for playbook in playbooks {
                let last = state
                    .list_patrol_runs(Some(&playbook.id), 1)
                    .await?
                    .into_iter()
                    .next()
                    .map_or_else(
                        || "never".to_owned(),
                        |r| format!("{} {}", clock(r.started), r.outcome.as_str()),
                    );
                let enabled = playbook.enabled && !config.patrol.disabled.contains(&playbook.id);
                println!(
                    "{:<16} {:<14} {:<8} {:>6} {:<8} {last}",
                    playbook.id,
                    playbook.schedule,
                    humantime::format_duration(playbook.window).to_string(),
                    playbook.checks.len(),
                    if enabled { "yes" } else { "no" },
                );
            }
            Ok(())
        }
        PatrolCommand::Check { dir } => {
            let dir = dir.or_else(|| config.patrol.playbooks_dir.clone());
            let playbooks = load_all(dir.as_deref())?;
            for playbook in &playbooks {
                vigil_scheduler::JobSpec {
                    id: playbook.id.clone(),
                    schedule: playbook.schedule.clone(),
                    utc_offset: playbook.utc_offset.clone(),
                    timeout: playbook.timeout,
                    jitter: playbook.jitter,
                    catch_up: playbook.catch_up,
                }
                .validate()
                .with_context(|| format!("playbook {}", playbook.id))?;
            }
            println!("{} playbooks are valid.", playbooks.len());
            Ok(())
        }
        PatrolCommand::Export { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in vigil_playbooks::builtin_sources() {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
            Ok(())
        }
        PatrolCommand::History { playbook, limit } => {
            let state = wiring::open_embedded(&config.store.embedded).await?;
            for run in state.list_patrol_runs(playbook.as_deref(), limit).await? {
                println!(
                    "{}  {:<16} {:<9} {:>4} findings  {}{}",
                    clock(run.started),
                    run.playbook_id,
                    run.outcome.as_str(),
                    run.findings,
                    run.id,
                    run.error.map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
            Ok(())
        }
        PatrolCommand::Run(args) => {
            let at = args
                .at
                .as_deref()
                .map(parse_at)
                .transpose()?
                .unwrap_or_else(now);
            let all = playbooks(config)?;
            let playbook = find(&all, &args.id)?;
            let state = wiring::open_embedded(&config.store.embedded).await?;
            let source = telemetry(config, &state).await?;
            let patrols = patrols(config, source, state.clone(), &all)?;
            let output = run_recorded(&patrols, &state, playbook, at).await?;
            print_output(playbook, &output);
            Ok(())
        }
    }
}

/// Finds a playbook by id, listing the known ones when absent.
pub fn find<'a>(playbooks: &'a [Playbook], id: &str) -> anyhow::Result<&'a Playbook> {
    playbooks.iter().find(|p| p.id == id).ok_or_else(|| {
        let known: Vec<&str> = playbooks.iter().map(|p| p.id.as_str()).collect();
        anyhow::anyhow!("no playbook {id:?}; known: {}", known.join(", "))
    })
}

/// Runs a playbook outside the scheduler, recording the run in the history.
pub async fn run_recorded(
    patrols: &Patrols,
    state: &EmbeddedStore,
    playbook: &Playbook,
    at: Timestamp,
) -> anyhow::Result<PatrolOutput> {
    let started = now();
    // Milliseconds, not the second of `started`: a demo and a run by hand (two
    // processes) can start in the same second, and one id would overwrite the other.
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut run = PatrolRun {
        id: format!("{}-{}-manual-{started_ms}", playbook.id, at.secs()),
        playbook_id: playbook.id.clone(),
        started,
        ended: None,
        outcome: vigil_model::PatrolOutcome::Running,
        findings: 0,
        error: None,
    };
    state.save_patrol_run(&run).await?;
    let result = patrols.run(playbook, &run.id, at).await;
    run.ended = Some(now());
    match &result {
        Ok(output) => {
            run.findings = u32::try_from(output.evaluation.findings.len()).unwrap_or(u32::MAX);
            run.outcome = outcome_of(output.evaluation.findings.len());
        }
        Err(err) => {
            run.outcome = vigil_model::PatrolOutcome::Failed;
            run.error = Some(format!("{err:#}"));
        }
    }
    state.save_patrol_run(&run).await?;
    result
}

/// Prints what a run found and where its reports are.
pub fn print_output(playbook: &Playbook, output: &PatrolOutput) {
    let evaluation = &output.evaluation;
    let t = &evaluation.timings;
    println!(
        "{}: {} findings over {} … {} (read {:.2} s, analyse {:.2} s, rank {:.2} s, tables {:.2} s)",
        playbook.id,
        evaluation.findings.len(),
        clock(evaluation.window.start),
        clock(evaluation.window.end),
        t.read.as_secs_f64(),
        t.analyze.as_secs_f64(),
        t.rank.as_secs_f64(),
        t.tables.as_secs_f64()
    );
    if let Some(report) = &output.report {
        println!(
            "Health {} / 100: {} new, {} still open, {} resolved, {} suppressed",
            report.health_score,
            report
                .findings
                .iter()
                .filter(|f| f.status == vigil_model::FindingStatus::New)
                .count(),
            report
                .findings
                .iter()
                .filter(|f| f.status == vigil_model::FindingStatus::StillOpen)
                .count(),
            report.resolved.len(),
            report.suppressed.len()
        );
    }
    for checked in &evaluation.findings {
        let top: Vec<String> = checked
            .finding
            .candidates
            .iter()
            .take(3)
            .map(|c| format!("{} ({:.0}%)", c.entity, 100.0 * c.confidence))
            .collect();
        println!(
            "  [{:?}] {}\n      fingerprint {}; root cause: {}",
            checked.finding.severity,
            checked.finding.title,
            checked.finding.fingerprint,
            if top.is_empty() {
                "not ranked".to_owned()
            } else {
                top.join(", ")
            }
        );
    }
    if output.opened + output.resolved > 0 {
        println!(
            "Incidents: {} opened, {} resolved",
            output.opened, output.resolved
        );
    }
    if output.delivered.1 > 0 {
        println!(
            "Notifications: {} of {} delivered",
            output.delivered.0, output.delivered.1
        );
    }
    for (language, path) in &output.files {
        println!("Report ({language}): {}", path.display());
    }
}

/// Runs `vigil finding`.
pub async fn run_finding(config: &Config, command: FindingCommand) -> anyhow::Result<()> {
    let state = wiring::open_embedded(&config.store.embedded).await?;
    let at = now();
    let mark = |args: MarkArgs, kind| -> anyhow::Result<FindingMark> {
        anyhow::ensure!(!args.reason.trim().is_empty(), "--reason must not be empty");
        anyhow::ensure!(
            !args.fingerprint.trim().is_empty(),
            "the fingerprint must not be empty"
        );
        let secs = i64::try_from(args.duration.as_secs()).unwrap_or(i64::MAX / 2);
        Ok(FindingMark {
            fingerprint: args.fingerprint,
            kind,
            reason: args.reason,
            by: args
                .by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".to_owned()),
            created: at,
            expires: at.plus_secs(secs.max(60)),
        })
    };
    match command {
        FindingCommand::Ack(args) => {
            let mark = mark(args, MarkKind::Acknowledged)?;
            state.save_mark(&mark).await?;
            println!(
                "{} acknowledged until {}",
                mark.fingerprint,
                clock(mark.expires)
            );
        }
        FindingCommand::Suppress(args) => {
            let mark = mark(args, MarkKind::Suppressed)?;
            state.save_mark(&mark).await?;
            println!(
                "{} suppressed until {}",
                mark.fingerprint,
                clock(mark.expires)
            );
        }
        FindingCommand::Unmark { fingerprint } => {
            let ended = state.clear_marks(&fingerprint, at).await?;
            println!("{ended} marks of {fingerprint} ended");
        }
        FindingCommand::Marks => {
            for mark in state.active_marks(at).await? {
                println!(
                    "{:<12} until {}  {}  by {}: {}",
                    mark.kind.as_str(),
                    clock(mark.expires),
                    mark.fingerprint,
                    mark.by,
                    mark.reason
                );
            }
        }
    }
    Ok(())
}

/// Runs `vigil report`.
pub async fn run_report(config: &Config, command: ReportCommand) -> anyhow::Result<()> {
    let state = wiring::open_embedded(&config.store.embedded).await?;
    match command {
        ReportCommand::List { playbook, limit } => {
            for report in state.list_reports(playbook.as_deref(), limit).await? {
                let format = match report.content {
                    ReportContent::Json(_) => "json",
                    ReportContent::Html(_) => "html",
                    ReportContent::Markdown(_) => "markdown",
                    ReportContent::Text(_) => "text",
                };
                println!(
                    "{}  {:<40} {:<4} {:<8} {}",
                    clock(report.created),
                    report.id,
                    report.language,
                    format,
                    report.title
                );
            }
        }
        ReportCommand::Show { id, out } => {
            let report = state
                .report(&id)
                .await?
                .with_context(|| format!("no report {id:?}; `vigil report list` shows them"))?;
            let text = match report.content {
                ReportContent::Json(value) => serde_json::to_string_pretty(&value)?,
                ReportContent::Html(text)
                | ReportContent::Markdown(text)
                | ReportContent::Text(text) => text,
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!("{}", path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}
