//! `vigil bench patrol`: the daily-report playbook end to end on a simulated
//! estate in the embedded store — speed (where the time goes) and accuracy
//! (planted root causes in the top three, findings no fault explains).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use vigil_model::TelemetrySource;

use crate::cli::patrol::{find, patrols, playbooks, run_recorded};
use crate::cli::simulate::{write_to_embedded, EstateArgs};
use crate::config::{Config, EmbeddedConfig};
use crate::wiring;

/// `vigil bench patrol` arguments.
#[derive(Debug, Args)]
pub struct PatrolBenchArgs {
    #[command(flatten)]
    estate: EstateArgs,
    /// Seeds run one after another (seed, seed+1, …); accuracy sums over them.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Scratch directory for the stores and reports (emptied first).
    #[arg(long, default_value = "vigil-data/bench-patrol")]
    dir: PathBuf,
}

/// Runs the benchmark.
pub async fn run(config: &Config, mut args: PatrolBenchArgs) -> anyhow::Result<()> {
    let history_days = *args.estate.history_days.get_or_insert(1);
    println!(
        "# vigil bench patrol: daily-report over {} services × {} h after {history_days} day(s) of history, {} seed(s), {} cores, {}\n",
        args.estate.services,
        args.estate.hours,
        args.seeds,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("| seed | findings | root in top 3 | unexplained | write s | read s | analyse s | rank s | tables s | render+store s | patrol total s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let (mut faults, mut found, mut unexplained, mut total) = (0, 0, 0, Duration::ZERO);
    let first_seed = args.estate.seed;
    for seed in first_seed..first_seed + args.seeds {
        args.estate.seed = seed;
        let estate = args.estate.estate()?;
        let embedded = EmbeddedConfig {
            path: args.dir.join(format!("seed-{seed}.db")),
            ..config.store.embedded.clone()
        };
        let store = wiring::open_embedded(&embedded).await?;
        let written = write_to_embedded(&estate, &store).await?;
        let all = playbooks(config)?;
        let mut playbook = find(&all, "daily-report")?.clone();
        playbook.window = Duration::from_secs(u64::from(args.estate.hours) * 3600);
        playbook.history_days = history_days;
        let source: Arc<dyn TelemetrySource> = Arc::new(store.clone());
        let mut runner = patrols(config, source, store.clone(), &all)?;
        runner.report_dir = Some(args.dir.join("reports"));
        let clock = Instant::now();
        let output = run_recorded(&runner, &store, &playbook, estate.range().end).await?;
        let elapsed = clock.elapsed();
        total += elapsed;
        let t = &output.evaluation.timings;
        let evaluated = t.read + t.analyze + t.rank + t.tables;
        let findings: Vec<_> = output
            .evaluation
            .findings
            .iter()
            .map(|f| f.finding.clone())
            .collect();
        let score = vigil_playbooks::score(&findings, estate.faults(), estate.topology());
        faults += estate.faults().len();
        found += score.found_within(3);
        unexplained += score.unexplained.len();
        println!(
            "| {seed} | {} | {}/{} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            findings.len(),
            score.found_within(3),
            estate.faults().len(),
            score.unexplained.len(),
            (written.generate + written.store).as_secs_f64(),
            t.read.as_secs_f64(),
            t.analyze.as_secs_f64(),
            t.rank.as_secs_f64(),
            t.tables.as_secs_f64(),
            elapsed.saturating_sub(evaluated).as_secs_f64(),
            elapsed.as_secs_f64(),
        );
        for line in &score.unexplained {
            println!("  unexplained (seed {seed}): {line}");
        }
    }
    let service_days =
        args.seeds as f64 * args.estate.services as f64 * f64::from(args.estate.hours) / 24.0;
    println!(
        "\nRoot cause in the top 3: {found}/{faults}. Unexplained findings: {unexplained} ({:.2} per 100 service-days). Mean patrol time: {:.2} s.",
        100.0 * unexplained as f64 / service_days.max(1.0),
        total.as_secs_f64() / args.seeds.max(1) as f64
    );
    Ok(())
}
