//! `vigil demo`: the main job on the embedded default — simulate an estate with
//! faults, store it, and show what the store holds about each planted fault.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use vigil_model::{
    EntityFilter, EntityId, EntityKind, FaultKind, PlantedFault, RelationKind, RequestMetric,
    ResourceMetric, SeriesQuery, StatementOrder, StatementQuery, TelemetrySource, TimeRange,
    Timestamp, Topology,
};

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
}

/// Runs the demo.
pub async fn run(config: &Config, args: DemoArgs) -> anyhow::Result<()> {
    let embedded = EmbeddedConfig {
        path: args
            .db
            .clone()
            .unwrap_or_else(|| config.store.embedded.path.clone()),
        ..config.store.embedded.clone()
    };
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
        "Simulated estate (seed {}): {} services, {} containers on {} hosts, {} MySQL and {} Redis servers, {} h of minutes",
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
        "Stored {} values in {} in {:.1} s ({:.1} M values/s)\n",
        figures.written,
        embedded.path.display(),
        (figures.generate + figures.store).as_secs_f64(),
        figures.per_second() / 1e6
    );

    println!("Planted faults (ground truth) and what the store shows on the root cause:");
    for fault in estate.faults() {
        println!(
            "- {} on {}, {} to {} ({})",
            fault.kind,
            fault.root_cause,
            clock(fault.window.start),
            clock(fault.window.end),
            fault.detail
        );
        match fault_signal(&store, estate.topology(), fault).await? {
            Some(line) => println!("    {line}"),
            None => println!("    no signal stored for this entity (the store is blind to it)"),
        }
    }

    let statements = store
        .top_statements(&StatementQuery {
            server: None,
            protocol: None,
            range: estate.range(),
            order: StatementOrder::P99,
            limit: 5,
        })
        .await?;
    println!("\nSlowest statements and commands over the span (p99):");
    for stats in statements {
        println!(
            "  {:>9.1} ms  {:>9} calls  {}  {}",
            stats.latency_p99_ms, stats.count, stats.server, stats.shape
        );
    }
    println!(
        "\nThe data stays in {}; `vigil --help` lists what else runs on it.",
        embedded.path.display()
    );
    Ok(())
}

/// What the store shows about a planted fault: for a process-level fault (CPU,
/// memory) on a service, the resource of its worst container; else the signals
/// of the root cause itself.
async fn fault_signal(
    source: &dyn TelemetrySource,
    topology: &Topology,
    fault: &PlantedFault,
) -> anyhow::Result<Option<String>> {
    let metric = match fault.kind {
        FaultKind::CpuNotReleased => ResourceMetric::CpuCores,
        FaultKind::MemoryLeak => ResourceMetric::MemoryBytes,
        _ => return before_and_during(source, &fault.root_cause, fault.window).await,
    };
    let mut worst: Option<(f64, String)> = None;
    for container in containers_of(topology, &fault.root_cause) {
        let Some((before, during)) =
            resource_means(source, &container, metric, fault.window).await?
        else {
            continue;
        };
        let ratio = during / before.max(f64::EPSILON);
        if worst
            .as_ref()
            .is_none_or(|(worst_ratio, _)| ratio > *worst_ratio)
        {
            let line = format!("{container}: {}", resource_change(metric, before, during));
            worst = Some((ratio, line));
        }
    }
    Ok(worst.map(|(_, line)| line))
}

/// Containers that run instances of `service`.
fn containers_of(topology: &Topology, service: &EntityId) -> Vec<EntityId> {
    let instances: Vec<&EntityId> = topology
        .relations
        .iter()
        .filter(|r| r.kind == RelationKind::InstanceOf && &r.to == service)
        .map(|r| &r.from)
        .collect();
    topology
        .relations
        .iter()
        .filter(|r| {
            r.kind == RelationKind::RunsOn
                && r.to.kind() == EntityKind::Container
                && instances.contains(&&r.from)
        })
        .map(|r| r.to.clone())
        .collect()
}

/// Mean of a resource metric of `entity` in the hour before `window` and during it.
async fn resource_means(
    source: &dyn TelemetrySource,
    entity: &EntityId,
    metric: ResourceMetric,
    window: TimeRange,
) -> anyhow::Result<Option<(f64, f64)>> {
    let before = TimeRange::new(window.start.plus_secs(-3600), window.start)?;
    let mut means = Vec::new();
    for range in [before, window] {
        let query = SeriesQuery {
            filter: EntityFilter::ids(std::slice::from_ref(entity)),
            range,
            step_secs: 60,
        };
        let series = source.resource_series(&query, metric).await?;
        means.push(
            series
                .first()
                .and_then(|s| mean_of_present(&s.series.values)),
        );
    }
    Ok(match means[..] {
        [Some(before), Some(during)] => Some((before, during)),
        _ => None,
    })
}

/// "cpu-cores 0.31 before → 0.95 during", memory in MiB.
fn resource_change(metric: ResourceMetric, before: f64, during: f64) -> String {
    match metric {
        ResourceMetric::MemoryBytes => format!(
            "memory {:.0} MiB before → {:.0} MiB during",
            before / 1_048_576.0,
            during / 1_048_576.0
        ),
        _ => format!(
            "{} {before:.3} before → {during:.3} during",
            metric.as_str()
        ),
    }
}

fn mean_of_present(values: &[f64]) -> Option<f64> {
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// The signals that best show a problem on `entity`: their means in the hour
/// before `window` and during it.
async fn before_and_during(
    source: &dyn TelemetrySource,
    entity: &EntityId,
    window: TimeRange,
) -> anyhow::Result<Option<String>> {
    let mut lines = Vec::new();
    if entity.kind().serves_requests() {
        let before = TimeRange::new(window.start.plus_secs(-3600), window.start)?;
        let mut series = Vec::new();
        for range in [before, window] {
            let query = SeriesQuery {
                filter: EntityFilter::ids(std::slice::from_ref(entity)),
                range,
                step_secs: 60,
            };
            series.push(source.request_series(&query).await?.into_iter().next());
        }
        for metric in [RequestMetric::LatencyP99, RequestMetric::ErrorRatio] {
            let means: Vec<Option<f64>> = series
                .iter()
                .map(|s| {
                    s.as_ref()
                        .and_then(|s| mean_of_present(&s.metrics.series(metric).values))
                })
                .collect();
            if let [Some(before), Some(during)] = means[..] {
                lines.push(format!(
                    "{} {before:.3} before → {during:.3} during",
                    metric.as_str()
                ));
            }
        }
    } else {
        let metrics: &[ResourceMetric] = match entity.kind() {
            EntityKind::Host => &[ResourceMetric::TcpRetransmits],
            _ => &[ResourceMetric::CpuCores, ResourceMetric::MemoryBytes],
        };
        for &metric in metrics {
            if let Some((before, during)) = resource_means(source, entity, metric, window).await? {
                lines.push(resource_change(metric, before, during));
            }
        }
    }
    Ok((!lines.is_empty()).then(|| lines.join("; ")))
}

/// An instant as `YYYY-MM-DDTHH:MM:SSZ`.
fn clock(t: Timestamp) -> String {
    let secs = u64::try_from(t.secs()).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}
