//! `vigil-agent bench` (part of the binary, not the library): the capture's
//! cost on a real server under a real load generator. Runs alternate without
//! and with the capture attached, so a noisy shared machine moves both sides
//! alike, and the medians are compared. With `--clickhouse-url` one more run
//! goes through the whole pipeline (capture, parse, export into ClickHouse).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vigil_agent::bpf::CaptureTrigger;
use vigil_agent::capture::{Capture, CaptureSettings};
use vigil_agent::container::Identities;
use vigil_agent::export::{ExportCounters, Exporter, Spool};
use vigil_agent::limits::release_free_memory;
use vigil_agent::listeners::listening_pids;
use vigil_agent::resources::{children_cpu_us, clock_ticks, process_cpu_ns, read_usage};
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore};

/// The rate the CPU goal is stated at.
const REFERENCE_RATE: f64 = 100_000.0;

/// A load generator and how to read its throughput.
pub enum Workload {
    /// `redis-benchmark -t set,get`.
    Redis {
        /// Server port.
        port: u16,
        /// Requests per test (SET, then GET).
        requests: u64,
        /// Parallel connections.
        clients: u32,
        /// Commands per round trip (`-P`).
        pipeline: u32,
    },
    /// `mysqlslap` running `SELECT 1`.
    Mysql {
        /// Server port.
        port: u16,
        /// Queries per run.
        queries: u64,
        /// Parallel connections.
        clients: u32,
    },
}

/// How to run the benchmark.
pub struct BenchOptions {
    /// Runs per mode (alternating).
    pub runs: usize,
    /// What fires the capture; `None`: the kernel's best.
    pub trigger: Option<CaptureTrigger>,
    /// Also run the whole pipeline once, exporting into this ClickHouse.
    pub export: Option<ClickHouseConfig>,
}

impl Workload {
    fn port(&self) -> u16 {
        match self {
            Self::Redis { port, .. } | Self::Mysql { port, .. } => *port,
        }
    }

    /// Requests one run sends.
    fn requests(&self) -> u64 {
        match self {
            Self::Redis { requests, .. } => requests * 2,
            Self::Mysql { queries, .. } => *queries,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Redis {
                requests,
                clients,
                pipeline,
                ..
            } => format!("redis-benchmark -n {requests} -c {clients} -P {pipeline} -t set,get"),
            Self::Mysql {
                queries, clients, ..
            } => format!(
                "mysqlslap --concurrency={clients} --number-of-queries={queries} --query='SELECT 1'"
            ),
        }
    }

    /// Runs once; requests per second.
    fn run(&self) -> Result<f64> {
        match self {
            Self::Redis {
                port,
                requests,
                clients,
                pipeline,
            } => {
                let out = Command::new("redis-benchmark")
                    .args(["-q", "-p", &port.to_string()])
                    .args(["-n", &requests.to_string()])
                    .args(["-c", &clients.to_string()])
                    .args(["-P", &pipeline.to_string()])
                    .args(["-t", "set,get"])
                    .output()
                    .context("running redis-benchmark (apt-get install redis-tools)")?;
                if !out.status.success() {
                    bail!(
                        "redis-benchmark failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Ok(benchmark_rps(&String::from_utf8_lossy(&out.stdout)))
            }
            Self::Mysql {
                port,
                queries,
                clients,
            } => {
                let out = Command::new("mysqlslap")
                    .args(["--no-defaults", "-h127.0.0.1", &format!("-P{port}")])
                    .args(["-uvigil", "-pvigil"])
                    .arg(format!("--concurrency={clients}"))
                    .arg(format!("--number-of-queries={queries}"))
                    .args([
                        "--iterations=1",
                        "--query=SELECT 1",
                        "--create-schema=vigil_test",
                    ])
                    .output()
                    .context("running mysqlslap (apt-get install mariadb-client)")?;
                if !out.status.success() {
                    bail!("mysqlslap failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let secs: f64 = text
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("Average number of seconds to run all queries:")
                    })
                    .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                    .context("mysqlslap printed no average time")?;
                Ok(*queries as f64 / secs.max(1e-6))
            }
        }
    }
}

/// Parses `redis-benchmark -q` output: requests per second over all its
/// tests, each of the same number of requests (so all requests over all
/// time: the harmonic mean of the tests' rates).
fn benchmark_rps(output: &str) -> f64 {
    let rates: Vec<f64> = output
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (_, rest) = line.split_once(": ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .filter(|rate| *rate > 0.0)
        .collect();
    rates.len() as f64
        / rates
            .iter()
            .map(|rate| 1.0 / rate)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU spent per request by the server processes and by the load generator in one run.
#[derive(Clone, Copy, Debug, Default)]
struct RunCost {
    /// Requests per second.
    throughput: f64,
    /// Server CPU (all listening processes), µs per request.
    server_us: f64,
    /// Load generator CPU, µs per request.
    client_us: f64,
}

/// Runs the workload once, measuring the CPU that the servers on its port
/// and the load generator spend per request. CPU per request is steadier
/// than throughput on a shared machine, and it says on which side a cost lands.
fn measured_run(workload: &Workload, servers: &BTreeSet<u32>) -> Result<RunCost> {
    let server_ticks = || -> u64 {
        servers
            .iter()
            .filter_map(|pid| read_usage(Path::new("/proc"), *pid))
            .map(|u| u.cpu_ticks)
            .sum()
    };
    let (server_before, client_before) = (server_ticks(), children_cpu_us());
    let throughput = workload.run()?;
    let (server_after, client_after) = (server_ticks(), children_cpu_us());
    let requests = workload.requests().max(1) as f64;
    Ok(RunCost {
        throughput,
        // Saturating: a server that exits mid-run takes its ticks with it.
        server_us: server_after.saturating_sub(server_before) as f64 * 1e6
            / clock_ticks() as f64
            / requests,
        client_us: client_after.saturating_sub(client_before) as f64 / requests,
    })
}

/// Where an attached run's records go.
enum Consumer {
    /// Counted and dropped: the capture's own cost.
    Drop,
    /// Exported into ClickHouse: the whole pipeline's cost.
    Export(Box<Exporter<ClickHouseStore>>),
}

/// One run with the capture attached.
#[derive(Clone, Copy, Debug, Default)]
struct Attached {
    cost: RunCost,
    /// This process's CPU (capture, parsing, consumer) over the run and its
    /// last drain, fraction of a core.
    agent_cores: f64,
    /// The same per record captured, ns.
    agent_ns_per_request: f64,
    /// The capture thread's CPU per kernel event, ns.
    drain_ns_per_event: f64,
    /// This process's peak resident memory while loading the programs
    /// (parsing the kernel's BTF), then during the run (VmHWM, reset between).
    load_peak_rss_bytes: u64,
    peak_rss_bytes: u64,
    /// Records the capture produced.
    records: u64,
    /// Events the kernel or the queue dropped.
    lost: u64,
}

async fn attached_run(
    workload: &Workload,
    servers: &BTreeSet<u32>,
    trigger: Option<CaptureTrigger>,
    consumer: Consumer,
) -> Result<Attached> {
    let mut settings = CaptureSettings::for_ports(&[workload.port()]);
    settings.probes.trigger = trigger;
    // Each run starts from what it needs: memory freed by earlier runs (and
    // their peaks) do not count against this one.
    release_free_memory();
    reset_peak_rss();
    let (capture, receiver) = Capture::start(settings, Identities::default())?;
    // Loading parses the kernel's BTF: a transient peak, reported apart.
    let load_peak_rss_bytes = peak_rss_bytes();
    reset_peak_rss();
    let stop_export = Arc::new(AtomicBool::new(false));
    let consumer = match consumer {
        Consumer::Drop => tokio::task::spawn_blocking(move || {
            while let Ok(batch) = receiver.recv() {
                receiver.recycle(batch);
            }
            Ok(())
        }),
        Consumer::Export(exporter) => {
            let stop = stop_export.clone();
            tokio::spawn(async move {
                exporter
                    .run(receiver, Duration::from_secs(1), stop)
                    .await
                    .map_err(anyhow::Error::from)
            })
        }
    };
    let (cpu_before, started) = (process_cpu_ns(), Instant::now());
    let cost = measured_run(workload, servers)?;
    // The last drain, then the consumer's last batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counters = capture.counters.clone();
    capture.stop();
    stop_export.store(true, Ordering::Relaxed);
    consumer.await.context("consumer")??;
    let cpu_ns = process_cpu_ns().saturating_sub(cpu_before) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    let events = counters.events.load(Ordering::Relaxed).max(1) as f64;
    let records = counters.records.load(Ordering::Relaxed);
    Ok(Attached {
        cost,
        agent_cores: cpu_ns / 1e9 / elapsed,
        agent_ns_per_request: cpu_ns / records.max(1) as f64,
        drain_ns_per_event: counters.drain_cpu_ns.load(Ordering::Relaxed) as f64 / events,
        load_peak_rss_bytes,
        peak_rss_bytes: peak_rss_bytes(),
        records,
        lost: counters.ring_full.load(Ordering::Relaxed)
            + counters.queue_drops.load(Ordering::Relaxed),
    })
}

/// Resets this process's peak resident memory (VmHWM) to its current RSS.
fn reset_peak_rss() {
    // Linux 4.0+: "5" to clear_refs resets the peak. Without it the peak
    // stays the load-time one, which the report then shows.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory (VmHWM), bytes; 0 if unreadable.
fn peak_rss_bytes() -> u64 {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .ok()
        .and_then(|status| status.vmhwm)
        .unwrap_or(0)
        * 1024
}

/// Percent of a core that `ns_per_request` of CPU is at `REFERENCE_RATE`.
fn percent_at_reference(ns_per_request: f64) -> f64 {
    ns_per_request * REFERENCE_RATE / 1e9 * 100.0
}

/// Runs the benchmark and prints its report.
pub async fn bench(workload: &Workload, options: &BenchOptions) -> Result<()> {
    // Found once, outside the measured runs: a scan costs the agent CPU too.
    let servers = listening_pids(Path::new("/proc"), &[workload.port()])?;
    if servers.is_empty() {
        bail!("nothing listens on port {}", workload.port());
    }
    let trigger = match options.trigger {
        Some(trigger) => trigger,
        None => CaptureTrigger::for_this_kernel()?,
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 1..=options.runs {
        // Which mode goes first alternates, so neither always follows the other.
        let (alone, attached) = if round % 2 == 1 {
            let alone = measured_run(workload, &servers)?;
            let attached = attached_run(workload, &servers, Some(trigger), Consumer::Drop).await?;
            (alone, attached)
        } else {
            let attached = attached_run(workload, &servers, Some(trigger), Consumer::Drop).await?;
            (measured_run(workload, &servers)?, attached)
        };
        eprintln!(
            "round {round}: without {:.0} req/s (server {:.2} µs/request), with {:.0} req/s (server {:.2} µs/request), agent {:.1}% of a core, {} of {} requests captured, {} lost",
            alone.throughput,
            alone.server_us,
            attached.cost.throughput,
            attached.cost.server_us,
            attached.agent_cores * 100.0,
            attached.records,
            workload.requests(),
            attached.lost,
        );
        without.push(alone);
        with.push(attached);
    }
    let of_alone = |field: fn(&RunCost) -> f64| median(without.iter().map(field).collect());
    let of_attached = |field: fn(&Attached) -> f64| median(with.iter().map(field).collect());
    let (base, attached) = (
        of_alone(|r| r.throughput),
        of_attached(|a| a.cost.throughput),
    );
    let (server_base, server_attached) =
        (of_alone(|r| r.server_us), of_attached(|a| a.cost.server_us));
    let (client_base, client_attached) =
        (of_alone(|r| r.client_us), of_attached(|a| a.cost.client_us));
    let agent_ns = of_attached(|a| a.agent_ns_per_request);
    let sent = workload.requests() * options.runs as u64;
    println!(
        "{}, {} alternating runs per mode (medians), capture fired by {trigger:?}",
        workload.describe(),
        options.runs
    );
    println!("without agent:  {base:.0} req/s");
    println!("with agent:     {attached:.0} req/s");
    println!("ratio:          {:.3}", attached / base);
    println!(
        "server CPU:     {server_base:.2} µs/request without, {server_attached:.2} with (+{:.2})",
        server_attached - server_base
    );
    println!(
        "client CPU:     {client_base:.2} µs/request without, {client_attached:.2} with (+{:.2})",
        client_attached - client_base
    );
    println!(
        "agent CPU:      {:.1}% of a core at {attached:.0} req/s; {agent_ns:.0} ns/record, so {:.1}% at {REFERENCE_RATE:.0} req/s",
        of_attached(|a| a.agent_cores) * 100.0,
        percent_at_reference(agent_ns),
    );
    println!(
        "agent drain:    {:.0} ns of capture-thread CPU per kernel event",
        of_attached(|a| a.drain_ns_per_event)
    );
    let max_mib =
        |field: fn(&Attached) -> u64| with.iter().map(field).max().unwrap_or(0) as f64 / 1048576.0;
    println!(
        "agent RSS:      {:.1} MiB (peak during the runs; {:.1} MiB while loading the programs)",
        max_mib(|a| a.peak_rss_bytes),
        max_mib(|a| a.load_peak_rss_bytes),
    );
    println!(
        "captured:       {} of {sent} requests; kernel/queue drops: {}",
        with.iter().map(|a| a.records).sum::<u64>(),
        with.iter().map(|a| a.lost).sum::<u64>()
    );
    if let Some(config) = &options.export {
        export_run(workload, &servers, trigger, config).await?;
    }
    Ok(())
}

/// One attached run through the whole pipeline into ClickHouse. Its
/// throughput is not compared: a ClickHouse on the same machine takes CPU
/// that a real deployment's remote one would not.
async fn export_run(
    workload: &Workload,
    servers: &BTreeSet<u32>,
    trigger: CaptureTrigger,
    config: &ClickHouseConfig,
) -> Result<()> {
    let store = ClickHouseStore::connect(config.clone())
        .await
        .context("connecting to ClickHouse (--clickhouse-url)")?;
    store.migrate().await.context("migrating Vigil's tables")?;
    let spool_dir = tempfile_dir()?;
    let exporter = Exporter::new(
        store,
        Spool::open(&spool_dir, 256 << 20)?,
        vigil_agent::config::AgentConfig::default()
            .export
            .batch_size,
    );
    let counters: Arc<ExportCounters> = exporter.counters.clone();
    let run = attached_run(
        workload,
        servers,
        Some(trigger),
        Consumer::Export(Box::new(exporter)),
    )
    .await;
    let _ = std::fs::remove_dir_all(&spool_dir);
    let run = run?;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "with export into ClickHouse {} (database {}): {:.0} req/s, agent {:.1}% of a core; {:.0} ns/record, so {:.1}% at {REFERENCE_RATE:.0} req/s; peak RSS {:.1} MiB",
        config.url,
        config.database,
        run.cost.throughput,
        run.agent_cores * 100.0,
        run.agent_ns_per_request,
        percent_at_reference(run.agent_ns_per_request),
        run.peak_rss_bytes as f64 / 1048576.0,
    );
    println!(
        "stored:         {} of {} captured ({} requests sent); spooled {}, dropped {}, kernel/queue drops {}",
        load(&counters.written) + load(&counters.replayed),
        run.records,
        workload.requests(),
        load(&counters.spooled),
        load(&counters.dropped),
        run.lost,
    );
    Ok(())
}

/// A fresh directory for the export run's spool.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("vigil-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_benchmark_rate_is_all_requests_over_all_time() {
        // 1 s of SET at 60k/s and 0.5 s of GET at 120k/s: 120k requests in 1.5 s.
        let out = "SET: rps=0.0 (overall: -nan)\r SET: 60000.00 requests per second, p50=0.3 msec\nGET: 120000.00 requests per second, p50=0.3 msec\n";
        assert!((benchmark_rps(out) - 80_000.0).abs() < 1e-6);
    }

    #[test]
    fn cpu_per_request_is_stated_at_the_reference_rate() {
        // 300 ns a request at 100k requests a second is 3 % of a core.
        assert!((percent_at_reference(300.0) - 3.0).abs() < 1e-9);
    }
}
