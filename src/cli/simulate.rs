//! `vigil simulate`: write a simulated estate into the configured store, and the
//! writing routine `demo` and `bench` share.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use vigil_model::{TimeRange, Timestamp};
use vigil_sim::{Estate, FaultSpec, SimConfig};
use vigil_store::clickhouse::ClickHouseStore;
use vigil_store::embedded::EmbeddedStore;

use crate::config::Config;
use crate::progress::Progress;
use crate::wiring;

/// Minutes of telemetry generated and written at a time: bounds memory for large estates.
pub const CHUNK_MINUTES: u32 = 60;

/// Shape of a simulated estate, shared by `simulate`, `demo` and `bench`.
#[derive(Debug, Clone, Args)]
pub struct EstateArgs {
    /// Application services (MySQL and Redis servers come on top).
    #[arg(long, default_value_t = 40)]
    pub services: usize,
    /// Hours of per-minute telemetry.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Seed: the same seed gives the same estate, telemetry and faults.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Plant one fault of each kind of the catalogue (`--no-faults` for a healthy estate).
    #[arg(long)]
    pub no_faults: bool,
    /// Start of the span, unix seconds; default: the span ends at the current hour.
    #[arg(long)]
    pub start: Option<i64>,
    /// Fault-free days before the `--hours` span, for baselines to learn from
    /// (default: 0 for `simulate`, 1 for `demo`).
    #[arg(long)]
    pub history_days: Option<u32>,
}

impl EstateArgs {
    /// Builds the estate these arguments describe.
    pub fn estate(&self) -> anyhow::Result<Estate> {
        let history = self
            .history_days
            .unwrap_or(0)
            .checked_mul(1440)
            .context("--history-days is too large")?;
        let faulty = self.hours.checked_mul(60).context("--hours is too large")?;
        let minutes = faulty
            .checked_add(history)
            .context("--hours plus --history-days is too large")?;
        let start = match self.start {
            Some(secs) => Timestamp::from_secs(secs).floor_to(60),
            None => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or(0);
                let now = i64::try_from(now).unwrap_or(0);
                Timestamp::from_secs(now)
                    .floor_to(3600)
                    .plus_secs(-i64::from(minutes) * 60)
            }
        };
        let faults = if self.no_faults {
            Vec::new()
        } else {
            FaultSpec::random_catalogue(self.seed, faulty)
                .into_iter()
                .map(|mut spec| {
                    spec.start_minute += history;
                    spec
                })
                .collect()
        };
        let config = SimConfig {
            seed: self.seed,
            services: self.services,
            start,
            minutes,
            faults,
            ..SimConfig::default()
        };
        Estate::new(config).context("invalid simulated estate")
    }
}

/// `vigil simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    estate: EstateArgs,
    /// Raw request rows per call edge and minute written to ClickHouse (DeepFlow's `l7_flow_log`).
    #[arg(long, default_value_t = 10)]
    records_per_edge_minute: u32,
    /// Create DeepFlow-shaped tables first (for a ClickHouse without DeepFlow, e.g. a demo).
    #[arg(long)]
    create_deepflow_tables: bool,
}

/// What writing an estate took.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteFigures {
    /// Data points (embedded) or rows (ClickHouse) written.
    pub written: u64,
    /// Time spent generating telemetry.
    pub generate: Duration,
    /// Time spent in the store.
    pub store: Duration,
}

impl WriteFigures {
    /// Throughput of generation plus writing.
    pub fn per_second(&self) -> f64 {
        self.written as f64 / (self.generate + self.store).as_secs_f64().max(1e-9)
    }
}

/// Writes every batch of `estate` into the embedded store.
pub async fn write_to_embedded(
    estate: &Estate,
    store: &EmbeddedStore,
) -> anyhow::Result<WriteFigures> {
    let chunks = u64::from(estate.config().minutes.div_ceil(CHUNK_MINUTES));
    let mut progress = Progress::new("embedded", chunks);
    let mut figures = WriteFigures::default();
    let mut generated_at = Instant::now();
    for batch in estate.batches(CHUNK_MINUTES) {
        figures.generate += generated_at.elapsed();
        let writing = Instant::now();
        store
            .write(&batch)
            .await
            .context("writing to the embedded store")?;
        figures.store += writing.elapsed();
        figures.written += batch.point_count() as u64;
        progress.advance(1);
        generated_at = Instant::now();
    }
    progress.finish();
    Ok(figures)
}

/// Writes `estate` into ClickHouse: request rows into DeepFlow's tables, the rest
/// into Vigil's own tables (as `vigil-agent` would).
pub async fn write_to_clickhouse(
    estate: &Estate,
    store: &ClickHouseStore,
    records_per_edge_minute: u32,
) -> anyhow::Result<WriteFigures> {
    let range = estate.range();
    let chunks = u64::from(estate.config().minutes.div_ceil(CHUNK_MINUTES));
    let mut progress = Progress::new("clickhouse", chunks);
    let mut figures = WriteFigures::default();
    store
        .write_topology(estate.topology())
        .await
        .context("writing the topology to ClickHouse")?;
    let mut generated_at = Instant::now();
    for (index, batch) in estate.batches(CHUNK_MINUTES).enumerate() {
        let chunk_start = range
            .start
            .plus_secs(i64::try_from(index).unwrap_or(0) * i64::from(CHUNK_MINUTES) * 60);
        let chunk_end = chunk_start
            .plus_secs(i64::from(CHUNK_MINUTES) * 60)
            .min(range.end);
        let chunk = TimeRange::new(chunk_start, chunk_end)?;
        let records: Vec<_> = estate
            .request_records(chunk, records_per_edge_minute)
            .collect();
        figures.generate += generated_at.elapsed();
        let writing = Instant::now();
        store
            .write_deepflow_records(&records)
            .await
            .context("writing request rows")?;
        store
            .write_resources(&batch.resources)
            .await
            .context("writing resources")?;
        store
            .write_profiles(&batch.profiles)
            .await
            .context("writing profiles")?;
        store
            .write_events(&batch.events)
            .await
            .context("writing events")?;
        figures.store += writing.elapsed();
        let resource_rows: usize = batch.resources.iter().map(|s| s.series.values.len()).sum();
        let profile_rows: usize = batch.profiles.iter().map(|p| p.stacks.len()).sum();
        figures.written +=
            (records.len() + resource_rows + profile_rows + batch.events.len()) as u64;
        progress.advance(1);
        generated_at = Instant::now();
    }
    progress.finish();
    Ok(figures)
}

/// Runs `vigil simulate`.
pub async fn run(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let estate = args.estate.estate()?;
    let figures = match wiring::connect_clickhouse(config).await? {
        Some(store) => {
            if args.create_deepflow_tables {
                store.create_deepflow_mirror().await?;
            }
            store.migrate().await?;
            write_to_clickhouse(&estate, &store, args.records_per_edge_minute).await?
        }
        None => {
            let store = wiring::open_embedded(&config.store.embedded).await?;
            write_to_embedded(&estate, &store).await?
        }
    };
    println!(
        "wrote {} values for {} services over {} h in {:.1} s ({:.0}/s)",
        figures.written,
        args.estate.services,
        args.estate.hours,
        (figures.generate + figures.store).as_secs_f64(),
        figures.per_second()
    );
    for fault in estate.faults() {
        println!(
            "planted {} on {} from {} to {}: {}",
            fault.kind, fault.root_cause, fault.window.start, fault.window.end, fault.detail
        );
    }
    Ok(())
}
