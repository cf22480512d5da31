//! `vigil chaos`: list, check and run chaos experiments against a running
//! `vigil serve`, and write their validation reports.
//!
//! The patrol under test is the one `vigil serve` runs on its schedule; this
//! command only injects, reads the incidents that patrol opens in the shared
//! state store, and undoes the fault.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::{Args, Subcommand};
use vigil_chaos::{
    load, load_dir, network_delay_available, render_html, ChaosError, Experiment, Injection,
    InjectorContext, ObservedFinding, PatrolObserver, RunOptions, ValidationReport,
};
use vigil_model::{Finding, Language, Timestamp};
use vigil_store::embedded::EmbeddedStore;

use crate::config::Config;
use crate::wiring;

/// `vigil chaos …`.
#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// List the experiments in a directory.
    List(DirArgs),
    /// Validate experiments (all in the directory, or one file) and say which
    /// injectors this machine can run.
    Check {
        #[command(flatten)]
        dir: DirArgs,
        /// One experiment file instead of the directory.
        file: Option<PathBuf>,
    },
    /// Run one experiment against the patrols of a running `vigil serve`
    /// (same config), then write its validation report.
    Run(RunArgs),
    /// The CPU hog's process body (started by the cpu-hog injector).
    #[command(hide = true)]
    Burn {
        /// Busy threads once told to burn.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

/// Where experiments live.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// Directory of experiment files.
    #[arg(long, default_value = "playbooks/chaos", env = "VIGIL_CHAOS_DIR")]
    pub dir: PathBuf,
}

/// `vigil chaos run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment id (in `--dir`) or path to its file.
    pub experiment: String,
    #[command(flatten)]
    pub dir: DirArgs,
    /// Directory the validation report goes to (JSON, HTML in English and Chinese).
    #[arg(long, default_value = "vigil-data/chaos")]
    pub out: PathBuf,
    /// How often the patrol's findings are read.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Override the experiment's baseline.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub baseline: Option<Duration>,
    /// Override the experiment's hold time.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold: Option<Duration>,
    /// Override the experiment's recovery watch.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub recovery: Option<Duration>,
}

/// Runs the hog body; kept out of the async runtime and the config.
pub fn burn(threads: usize) -> anyhow::Result<()> {
    vigil_chaos::burn(threads).context("cpu hog")
}

/// Runs a `vigil chaos` subcommand.
pub async fn run(config: &Config, command: ChaosCommand) -> anyhow::Result<()> {
    match command {
        ChaosCommand::List(dir) => {
            for e in load_dir(&dir.dir)? {
                println!(
                    "{:<16} {:<14} baseline {:>6} hold {:>6}  {}  (root cause {})",
                    e.id,
                    e.injection.kind(),
                    humantime::format_duration(e.baseline).to_string(),
                    humantime::format_duration(e.hold).to_string(),
                    e.name.en,
                    e.expect.root_cause
                );
            }
            Ok(())
        }
        ChaosCommand::Check { dir, file } => {
            let experiments = match file {
                Some(file) => vec![load(&file)?],
                None => load_dir(&dir.dir)?,
            };
            for e in &experiments {
                let availability = match &e.injection {
                    Injection::NetworkDelay { interface, .. } => {
                        match network_delay_available(interface).await {
                            Ok(()) => "available".to_owned(),
                            Err(err) => err.to_string(),
                        }
                    }
                    _ => "ok".to_owned(),
                };
                println!("{:<16} valid; {availability}", e.id);
            }
            Ok(())
        }
        ChaosCommand::Run(args) => run_experiment(config, args).await,
        ChaosCommand::Burn { threads } => burn(threads),
    }
}

fn find(args: &RunArgs) -> anyhow::Result<Experiment> {
    let path = Path::new(&args.experiment);
    if path.is_file() {
        return Ok(load(path)?);
    }
    // `ID.yaml` first: the other files may need variables this run does not set.
    for ext in ["yaml", "yml"] {
        let file = args.dir.dir.join(format!("{}.{ext}", args.experiment));
        if file.is_file() {
            let experiment = load(&file)?;
            if experiment.id == args.experiment {
                return Ok(experiment);
            }
        }
    }
    load_dir(&args.dir.dir)?
        .into_iter()
        .find(|e| e.id == args.experiment)
        .with_context(|| {
            format!(
                "no experiment `{}` in {} (see `vigil chaos list`)",
                args.experiment,
                args.dir.dir.display()
            )
        })
}

async fn run_experiment(config: &Config, args: RunArgs) -> anyhow::Result<()> {
    let mut experiment = find(&args)?;
    if let Some(d) = args.baseline {
        experiment.baseline = d;
    }
    if let Some(d) = args.hold {
        experiment.hold = d;
    }
    if let Some(d) = args.recovery {
        experiment.recovery = d;
    }
    let state = wiring::open_embedded(&config.store.embedded).await?;
    let telemetry = crate::cli::patrol::telemetry(config, &state).await?;
    let observer = StoreObserver { state };
    let exe = std::env::current_exe().context("locating the vigil binary for the cpu hog")?;
    let options = RunOptions {
        poll: args.poll,
        context: InjectorContext {
            hog_command: vec![
                exe.display().to_string(),
                "chaos".to_owned(),
                "burn".to_owned(),
            ],
            work_dir: std::env::temp_dir().join(format!("vigil-chaos-{}", std::process::id())),
        },
    };
    let outcome = vigil_chaos::run(
        &experiment,
        &observer,
        telemetry.as_ref(),
        &options,
        crate::cli::serve::wait_for_signal(),
    )
    .await;
    let _ = std::fs::remove_dir_all(&options.context.work_dir);
    let report = outcome?;
    let files = write_report(&report, &args.out)?;
    print_summary(&report);
    for file in files {
        println!("  {}", file.display());
    }
    if report.interrupted {
        bail!(
            "experiment {} interrupted; the fault was undone",
            report.experiment_id
        );
    }
    if !report.passed {
        bail!("experiment {} did not pass", report.experiment_id);
    }
    Ok(())
}

/// Writes `ID-START.json` and `ID-START.{en,zh}.html` under `out`.
pub fn write_report(report: &ValidationReport, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!("{}-{}", report.experiment_id, report.started.secs());
    let mut files = Vec::new();
    let json = out.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    files.push(json);
    for language in Language::ALL {
        let html = out.join(format!("{stem}.{language}.html"));
        std::fs::write(&html, render_html(report, language))
            .with_context(|| format!("cannot write {}", html.display()))?;
        files.push(html);
    }
    Ok(files)
}

fn print_summary(report: &ValidationReport) {
    let secs = |s: Option<i64>| s.map_or_else(|| "—".to_owned(), |s| format!("{s} s"));
    println!(
        "{}: {}  visible {}  detected {}  rank {}  time to detection {}  time to root cause {}  false findings {}",
        report.experiment_id,
        if report.passed { "PASSED" } else { "FAILED" },
        if report.visible { "yes" } else { "no" },
        if report.detected_at.is_some() { "yes" } else { "no" },
        report
            .root_cause_rank
            .map_or_else(|| "—".to_owned(), |r| r.to_string()),
        secs(report.time_to_detection_secs()),
        secs(report.time_to_root_cause_secs()),
        report.baseline_findings.len(),
    );
    for error in &report.errors {
        println!("  error: {error}");
    }
}

/// Reads the incidents a playbook's runs opened in the state store that
/// `vigil serve` writes (SQLite in WAL mode: one writer, readers beside it).
struct StoreObserver {
    state: EmbeddedStore,
}

#[async_trait]
impl PatrolObserver for StoreObserver {
    async fn findings_since(
        &self,
        playbook: &str,
        since: Timestamp,
    ) -> Result<Vec<ObservedFinding>, ChaosError> {
        let incidents = self
            .state
            .list_incidents(None, 10_000)
            .await
            .map_err(|e| ChaosError::Observe(e.to_string()))?;
        let mut found = Vec::new();
        for incident in incidents {
            if incident.payload["playbook_id"] != playbook || incident.opened < since {
                continue;
            }
            let finding: Finding = serde_json::from_value(incident.payload["finding"].clone())
                .map_err(|e| {
                    ChaosError::Observe(format!(
                        "incident {} has no readable finding: {e}",
                        incident.id
                    ))
                })?;
            found.push(ObservedFinding {
                first_seen: incident.opened,
                finding,
            });
        }
        found.sort_by_key(|f| f.first_seen);
        Ok(found)
    }

    async fn last_run(&self, playbook: &str) -> Result<Option<Timestamp>, ChaosError> {
        let runs = self
            .state
            .list_patrol_runs(Some(playbook), 1)
            .await
            .map_err(|e| ChaosError::Observe(e.to_string()))?;
        Ok(runs.first().map(|run| run.started))
    }
}
