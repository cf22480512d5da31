//! `vigil bench …`: benchmarks whose figures go into `docs/benchmarks.md`.
//!
//! Each prints a Markdown table with the machine's core count and the date, and
//! measures a baseline in the same run (generation alone) so ratios hold on a
//! noisy shared machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use vigil_model::{
    EntityFilter, EntityKind, ResourceMetric, SampleQuery, SeriesQuery, StatementOrder,
    StatementQuery, TelemetrySource, TimeRange,
};
use vigil_sim::Estate;

use crate::cli::simulate::{write_to_clickhouse, write_to_embedded, EstateArgs, CHUNK_MINUTES};
use crate::config::{Config, EmbeddedConfig};
use crate::wiring;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Simulator throughput into a store, then query latency of the main
    /// `TelemetrySource` calls on what was written.
    Store(StoreBenchArgs),
    /// Root-cause ranking accuracy (AC@1, AC@3, Avg@5) on offline cases and speed.
    Rca(crate::cli::bench_rca::RcaBenchArgs),
    /// Analyzer accuracy on the simulator's fault catalogue, or baseline throughput.
    Detect(crate::cli::bench_detect::DetectBenchArgs),
    /// The daily-report playbook end to end: time per phase and accuracy.
    Patrol(crate::cli::bench_patrol::PatrolBenchArgs),
}

/// Which store a benchmark writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The embedded SQLite store (a fresh file).
    Embedded,
    /// The ClickHouse under `store.clickhouse` (fresh databases are not created:
    /// point the config at a scratch server).
    Clickhouse,
}

/// `vigil bench store` arguments.
#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    #[command(flatten)]
    estate: EstateArgs,
    /// Store to write and query.
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// Scratch file for the embedded store (deleted first).
    #[arg(long, default_value = "vigil-data/bench.db")]
    db: PathBuf,
    /// Raw request rows per call edge and minute (ClickHouse only).
    #[arg(long, default_value_t = 5)]
    records_per_edge_minute: u32,
    /// Times each query runs; the median and the maximum are reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Skip the write phase and query what the store already holds.
    #[arg(long)]
    queries_only: bool,
}

/// Runs a benchmark.
pub async fn run(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store_bench(config, args).await,
        BenchCommand::Rca(args) => crate::cli::bench_rca::run(args),
        BenchCommand::Detect(args) => crate::cli::bench_detect::run(args),
        BenchCommand::Patrol(args) => crate::cli::bench_patrol::run(config, args).await,
    }
}

async fn store_bench(config: &Config, args: StoreBenchArgs) -> anyhow::Result<()> {
    let estate = args.estate.estate()?;
    println!(
        "# vigil bench store: {} services × {} h, backend {:?}, {} cores, {}\n",
        args.estate.services,
        args.estate.hours,
        args.backend,
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );

    // Baseline: generation alone, no store.
    let generating = Instant::now();
    let mut generated_points = 0u64;
    let mut generated_rows = 0u64;
    for (index, batch) in estate.batches(CHUNK_MINUTES).enumerate() {
        generated_points += batch.point_count() as u64;
        if args.backend == Backend::Clickhouse {
            let chunk = chunk_range(&estate, index)?;
            generated_rows += estate
                .request_records(chunk, args.records_per_edge_minute)
                .count() as u64;
        }
    }
    let generation = generating.elapsed();
    println!("| phase | values | seconds | values/s |\n|---|---:|---:|---:|");
    let baseline = if args.backend == Backend::Clickhouse {
        generated_rows
    } else {
        generated_points
    };
    print_rate("generate only (baseline)", baseline, generation);

    let source: Box<dyn TelemetrySource> = match args.backend {
        Backend::Embedded => {
            let embedded = EmbeddedConfig {
                path: args.db.clone(),
                ..config.store.embedded.clone()
            };
            if !args.queries_only {
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = args.db.clone().into_os_string();
                    path.push(suffix);
                    let _ = std::fs::remove_file(path);
                }
            }
            let store = wiring::open_embedded(&embedded).await?;
            if !args.queries_only {
                let figures = write_to_embedded(&estate, &store).await?;
                print_rate(
                    "generate + write, embedded",
                    figures.written,
                    figures.generate + figures.store,
                );
                print_rate("write only, embedded", figures.written, figures.store);
                let size = std::fs::metadata(&args.db).map(|m| m.len()).unwrap_or(0);
                println!("\nstore file: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
            }
            Box::new(store)
        }
        Backend::Clickhouse => {
            let store = wiring::connect_clickhouse(config)
                .await?
                .context("--backend clickhouse needs store.clickhouse in the config")?;
            if !args.queries_only {
                store.create_deepflow_mirror().await?;
                store.migrate().await?;
                let figures =
                    write_to_clickhouse(&estate, &store, args.records_per_edge_minute).await?;
                print_rate(
                    "generate + write, clickhouse (rows)",
                    figures.written,
                    figures.generate + figures.store,
                );
                print_rate(
                    "write only, clickhouse (rows)",
                    figures.written,
                    figures.store,
                );
            }
            Box::new(store)
        }
    };
    query_latencies(source.as_ref(), &estate, args.repeats).await
}

fn chunk_range(estate: &Estate, index: usize) -> anyhow::Result<TimeRange> {
    let range = estate.range();
    let start = range
        .start
        .plus_secs(i64::try_from(index).unwrap_or(0) * i64::from(CHUNK_MINUTES) * 60);
    let end = start
        .plus_secs(i64::from(CHUNK_MINUTES) * 60)
        .min(range.end);
    Ok(TimeRange::new(start, end)?)
}

fn print_rate(phase: &str, values: u64, took: Duration) {
    println!(
        "| {phase} | {values} | {:.2} | {:.0} |",
        took.as_secs_f64(),
        values as f64 / took.as_secs_f64().max(1e-9)
    );
}

/// Times the main `TelemetrySource` calls over the whole span.
async fn query_latencies(
    source: &dyn TelemetrySource,
    estate: &Estate,
    repeats: usize,
) -> anyhow::Result<()> {
    let range = estate.range();
    let last_hour = TimeRange::new(range.end.plus_secs(-3600).max(range.start), range.end)?;
    let services = SeriesQuery {
        filter: EntityFilter::kinds(&[EntityKind::Service]),
        range,
        step_secs: 60,
    };
    let one_service = estate
        .topology()
        .entities
        .iter()
        .find(|e| e.id.kind() == EntityKind::Service)
        .map(|e| e.id.clone())
        .context("the estate has no service")?;
    let one_container = estate
        .topology()
        .entities
        .iter()
        .find(|e| e.id.kind() == EntityKind::Container)
        .map(|e| e.id.clone())
        .context("the estate has no container")?;
    let single = SeriesQuery {
        filter: EntityFilter::ids(std::slice::from_ref(&one_service)),
        range,
        step_secs: 60,
    };
    let containers_last_hour = SeriesQuery {
        filter: EntityFilter::kinds(&[EntityKind::Container]),
        range: last_hour,
        step_secs: 60,
    };
    println!("\n| query (whole span unless said) | result size | median ms | max ms |\n|---|---:|---:|---:|");
    macro_rules! time_query {
        ($name:expr, $call:expr) => {{
            let mut took = Vec::with_capacity(repeats);
            let mut size = 0usize;
            for _ in 0..repeats.max(1) {
                let started = Instant::now();
                let result = $call.await.with_context(|| format!("query {}", $name))?;
                took.push(started.elapsed().as_secs_f64() * 1e3);
                size = result_size(&result);
            }
            took.sort_by(f64::total_cmp);
            println!(
                "| {} | {} | {:.1} | {:.1} |",
                $name,
                size,
                took[took.len() / 2],
                took[took.len() - 1]
            );
        }};
    }
    time_query!("topology", source.topology(range));
    time_query!(
        "request_series, one service, step 1 min",
        source.request_series(&single)
    );
    time_query!(
        "request_series, all services, step 1 min",
        source.request_series(&services)
    );
    time_query!(
        "request_series, all services, step 5 min",
        source.request_series(&SeriesQuery {
            step_secs: 300,
            ..services.clone()
        })
    );
    time_query!("edge_series, one service", source.edge_series(&single));
    time_query!("call_edges", source.call_edges(range));
    time_query!(
        "resource_series cpu, all containers, last hour",
        source.resource_series(&containers_last_hour, ResourceMetric::CpuCores)
    );
    time_query!(
        "top_statements by p99, limit 20",
        source.top_statements(&StatementQuery {
            server: None,
            protocol: None,
            range,
            order: StatementOrder::P99,
            limit: 20,
        })
    );
    time_query!(
        "slow_requests ≥ 100 ms, limit 50",
        source.slow_requests(&SampleQuery {
            server: None,
            range,
            min_duration_ms: 100.0,
            include_errors: true,
            limit: 50,
        })
    );
    time_query!(
        "profile, one container",
        source.profile(&one_container, range)
    );
    time_query!("events", source.events(range));
    Ok(())
}

/// How many items a query returned, for the table.
trait ResultSize {
    fn size(&self) -> usize;
}

impl<T> ResultSize for Vec<T> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl ResultSize for vigil_model::Topology {
    fn size(&self) -> usize {
        self.entities.len() + self.relations.len()
    }
}

impl ResultSize for vigil_model::Profile {
    fn size(&self) -> usize {
        self.stacks.len()
    }
}

fn result_size(result: &impl ResultSize) -> usize {
    result.size()
}
