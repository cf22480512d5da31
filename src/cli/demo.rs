//! `vigil demo`: the main job on the embedded default — simulate an estate with
//! planted faults, store it, run the daily-report playbook over it, write the
//! HTML reports and say how the findings compare with the ground truth.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use vigil_model::{EntityKind, TelemetrySource};

use crate::cli::patrol::{find, patrols, playbooks, print_output, run_recorded};
use crate::cli::simulate::{write_to_embedded, EstateArgs};
use crate::config::{Config, EmbeddedConfig};
use crate::wiring;

/// `vigil demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    estate: EstateArgs,
    /// Store file for the demo; default: the configured embedded store.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Directory for the HTML reports; default: `patrol.report_dir`.
    #[arg(long)]
    reports: Option<PathBuf>,
    /// The playbook to run over the estate.
    #[arg(long, default_value = "daily-report")]
    playbook: String,
}

/// Runs the demo.
pub async fn run(config: &Config, mut args: DemoArgs) -> anyhow::Result<()> {
    let embedded = EmbeddedConfig {
        path: args
            .db
            .clone()
            .unwrap_or_else(|| config.store.embedded.path.clone()),
        ..config.store.embedded.clone()
    };
    let history_days = *args.estate.history_days.get_or_insert(1);
    let estate = args.estate.estate()?;
    let topology = estate.topology();
    let count = |kind: EntityKind| {
        topology
            .entities
            .iter()
            .filter(|e| e.id.kind() == kind)
            .count()
    };
    println!(
        "Simulated estate (seed {}): {} services, {} containers on {} hosts, {} MySQL and {} Redis servers; {} h patrolled after {history_days} day(s) of history",
        args.estate.seed,
        count(EntityKind::Service),
        count(EntityKind::Container),
        count(EntityKind::Host),
        count(EntityKind::Database),
        count(EntityKind::Cache),
        args.estate.hours,
    );
    let store = wiring::open_embedded(&embedded).await?;
    let figures = write_to_embedded(&estate, &store).await?;
    println!(
        "Stored {} values in {} in {:.1} s\n",
        figures.written,
        embedded.path.display(),
        (figures.generate + figures.store).as_secs_f64(),
    );

    let all = playbooks(config)?;
    let mut playbook = find(&all, &args.playbook)?.clone();
    // Patrol exactly the simulated span after the history.
    playbook.window = Duration::from_secs(u64::from(args.estate.hours) * 3600);
    playbook.history_days = history_days;
    let source: Arc<dyn TelemetrySource> = Arc::new(store.clone());
    let mut patrols = patrols(config, source, store.clone(), &all)?;
    if let Some(dir) = &args.reports {
        patrols.report_dir = Some(dir.clone());
    }
    let output = run_recorded(&patrols, &store, &playbook, estate.range().end).await?;
    print_output(&playbook, &output);

    let findings: Vec<_> = output
        .evaluation
        .findings
        .iter()
        .map(|f| f.finding.clone())
        .collect();
    let score = vigil_playbooks::score(&findings, estate.faults(), topology);
    println!("\nPlanted faults (ground truth) and whether the patrol found their root cause:");
    for (fault, rank) in estate.faults().iter().zip(&score.root_rank) {
        let verdict = match rank {
            Some(rank) if *rank <= 3 => format!("found, root cause ranked #{rank}"),
            Some(rank) => format!("found, but root cause only ranked #{rank}"),
            None => "MISSED".to_owned(),
        };
        println!(
            "- {} on {} ({}): {verdict}",
            fault.kind, fault.root_cause, fault.detail
        );
    }
    println!(
        "{} of {} planted faults have their root cause in a finding's top 3; {} finding(s) not explained by a planted fault.",
        score.found_within(3),
        estate.faults().len(),
        score.unexplained.len()
    );
    if let Some((_, path)) = output.files.first() {
        println!("\nOpen the report: {}", path.display());
    }
    println!(
        "The data stays in {}; `vigil --help` lists what else runs on it.",
        embedded.path.display()
    );
    Ok(())
}
