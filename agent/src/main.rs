//! The `vigil-agent` binary: `run` collects and exports, `check-config`
//! validates a config file, `bench` measures the capture's overhead with
//! redis-benchmark.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use vigil_agent::bpf::{ProbeOptions, Probes};
use vigil_agent::capture::{Capture, CaptureSettings};
use vigil_agent::config::AgentConfig;
use vigil_agent::container::{DockerClient, Identities};
use vigil_agent::export::{check_schema, Exporter, Sink, Spool, VigilSink};
use vigil_agent::limits::{parse_load15, CircuitBreaker, PauseReasons, SelfLimits};
use vigil_agent::profile::Profiler;
use vigil_agent::resources::{
    children_cpu_us, clock_ticks, host_ip, read_usage, tcp_series, usage_series, ProcSampler,
};
use vigil_agent::AgentError;
use vigil_model::{Profile, ResourceSeries, TimeRange, Timestamp};
use vigil_store::clickhouse::ClickHouseStore;

#[derive(Parser)]
#[command(name = "vigil-agent", version, about = "Vigil's per-host eBPF agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Collect and export until interrupted (root).
    Run {
        /// YAML config file; defaults apply without one.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config.
    CheckConfig {
        /// YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Overhead benchmark: redis-benchmark without and with the capture attached (root).
    Bench {
        /// Port of a running Redis.
        #[arg(long, default_value_t = 6379)]
        redis_port: u16,
        /// Requests per redis-benchmark run.
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Parallel clients.
        #[arg(long, default_value_t = 50)]
        clients: u32,
        /// Runs per mode (alternating), at least 3.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also run mysqlslap against MariaDB/MySQL on this port (user/password `vigil`).
        #[arg(long)]
        mysql_port: Option<u16>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<AgentConfig> {
    let mut config = match path {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    config.apply_env(std::env::vars())?;
    Ok(config)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

fn monotonic_ns(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Cmd::CheckConfig { config } => {
            let config = load_config(Some(&config))?;
            println!("{}", serde_norway::to_string(&config.redacted())?);
            Ok(())
        }
        Cmd::Run { config } => run(load_config(config.as_ref())?).await,
        Cmd::Bench {
            redis_port,
            requests,
            clients,
            runs,
            mysql_port,
        } => {
            let redis = Workload::Redis {
                port: redis_port,
                requests,
                clients,
            };
            bench(&redis, runs.max(3))?;
            if let Some(port) = mysql_port {
                bench(
                    &Workload::Mysql {
                        port,
                        queries: requests / 10,
                        clients: 20,
                    },
                    runs.max(3),
                )?;
            }
            Ok(())
        }
    }
}

/// Profiles and resource series produced by the telemetry thread.
enum Telemetry {
    Profiles(Vec<Profile>),
    Resources(Vec<ResourceSeries>),
}

/// Where everything is exported: ClickHouse, or a running `vigil serve`.
#[derive(Clone)]
enum Target {
    ClickHouse(Box<ClickHouseStore>),
    Vigil(VigilSink),
}

impl Target {
    /// Connects and checks versions: ClickHouse's schema, or `vigil serve`'s
    /// ingest protocol (a server that is down is only a warning: batches spool).
    async fn open(config: &AgentConfig) -> Result<Self> {
        if let Some(vigil) = &config.export.vigil {
            let sink = VigilSink::new(vigil)?;
            match sink.check().await {
                Ok(receipt) => tracing::info!(
                    endpoint = sink.endpoint(),
                    protocol = receipt.protocol,
                    "export target checked"
                ),
                Err(AgentError::Ingest(detail)) => tracing::warn!(
                    %detail,
                    "vigil serve not reachable yet; spooling until it is"
                ),
                Err(other) => return Err(other).context("checking export.vigil"),
            }
            return Ok(Self::Vigil(sink));
        }
        let store = ClickHouseStore::connect(config.export.clickhouse.clone())
            .await
            .context("connecting to ClickHouse (export.clickhouse)")?;
        if config.export.migrate {
            store.migrate().await.context("migrating Vigil's tables")?;
        }
        let version = check_schema(&store.applied_versions().await?)?;
        tracing::info!(
            server = store.server_version(),
            schema = version,
            "export target checked"
        );
        Ok(Self::ClickHouse(Box::new(store)))
    }

    async fn write(&self, item: &Telemetry) -> Result<(), AgentError> {
        match (self, item) {
            (Self::ClickHouse(store), Telemetry::Profiles(p)) => {
                Ok(store.write_profiles(p).await?)
            }
            (Self::ClickHouse(store), Telemetry::Resources(r)) => {
                Ok(store.write_resources(r).await?)
            }
            (Self::Vigil(sink), Telemetry::Profiles(p)) => sink.write_profiles(p).await,
            (Self::Vigil(sink), Telemetry::Resources(r)) => sink.write_resources(r).await,
        }
    }
}

fn spawn_exporter<S: Sink + 'static>(
    sink: S,
    config: &AgentConfig,
    receiver: std::sync::mpsc::Receiver<Vec<vigil_model::RequestRecord>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let exporter = Exporter::new(
        sink,
        Spool::open(&config.export.spool_dir, config.export.spool_max_bytes)?,
        config.export.batch_size,
    );
    tokio::spawn(exporter.run(
        receiver,
        Duration::from_millis(config.export.flush_interval_ms),
        stop,
    ));
    Ok(())
}

async fn run(config: AgentConfig) -> Result<()> {
    let host = host_ip().to_string();
    let target = Target::open(&config).await?;

    let identities = Identities::default();
    if config.docker.enabled {
        let identities = identities.clone();
        let client = DockerClient::new(&config.docker.socket);
        tokio::spawn(async move {
            loop {
                if let Err(e) = identities.refresh(&client).await {
                    tracing::debug!(error = %e, "docker identity refresh");
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let capture = if config.capture.enabled {
        let (capture, receiver) = Capture::start(
            CaptureSettings {
                probes: ProbeOptions {
                    server_ports: config.capture.server_ports.clone(),
                    wakeup_bytes: config.capture.wakeup_bytes,
                    ..ProbeOptions::default()
                },
                parse: config.capture.parse_options(),
                queue_batches: (config.limits.queue_size / 256).max(16),
                drain_interval: Duration::from_millis(config.capture.drain_interval_ms),
                pids: config.capture.pids.clone(),
                server_scan: Duration::from_secs(config.capture.server_scan_secs),
                proc_root: PathBuf::from("/proc"),
            },
            identities.clone(),
        )?;
        match &target {
            Target::ClickHouse(store) => {
                spawn_exporter((**store).clone(), &config, receiver, stop.clone())?;
            }
            Target::Vigil(sink) => spawn_exporter(sink.clone(), &config, receiver, stop.clone())?,
        }
        Some(capture)
    } else {
        None
    };

    // Profiles, resources, TCP health and the limits, on their own thread
    // (symbolisation and /proc reads block).
    let (sender, mut telemetry) = tokio::sync::mpsc::channel::<Telemetry>(64);
    let paused = Arc::new(AtomicBool::new(false));
    {
        let (config, identities, stop, paused, host) = (
            config.clone(),
            identities.clone(),
            stop.clone(),
            paused.clone(),
            host.clone(),
        );
        std::thread::Builder::new()
            .name("vigil-telemetry".into())
            .spawn(move || {
                if let Err(e) = telemetry_loop(&config, &identities, &stop, &paused, &host, &sender)
                {
                    tracing::error!(error = %e, "telemetry stopped");
                }
            })?;
    }
    {
        let target = target.clone();
        tokio::spawn(async move {
            while let Some(item) = telemetry.recv().await {
                if let Err(e) = target.write(&item).await {
                    tracing::warn!(error = %e, "profiles/resources not written");
                }
            }
        });
    }

    let mut was_paused = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = paused.load(Ordering::Relaxed);
        if now != was_paused {
            if let Some(capture) = &capture {
                capture.set_paused(now);
            }
            was_paused = now;
        }
    }
    tracing::info!("stopping");
    stop.store(true, Ordering::Relaxed);
    if let Some(capture) = capture {
        capture.stop();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

fn telemetry_loop(
    config: &AgentConfig,
    identities: &Identities,
    stop: &AtomicBool,
    paused: &AtomicBool,
    host: &str,
    sender: &tokio::sync::mpsc::Sender<Telemetry>,
) -> Result<()> {
    let mut probes = Probes::load(&ProbeOptions {
        l7: false,
        tcp: config.resources.enabled,
        profile_hz: config
            .profile
            .enabled
            .then_some(config.profile.frequency_hz),
        ..ProbeOptions::default()
    })?;
    let mut profiler = Profiler::new(&config.profile.process_matcher, host)?;
    let mut sampler = ProcSampler::new(&config.resources.process_matcher, host)?;
    let mut breaker = CircuitBreaker::new(&config.circuit_breaker);
    let mut limits = SelfLimits::new(&config.limits, clock_ticks());
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let start = std::time::Instant::now();
    let mut minute = Timestamp::from_secs(now_secs()).floor_to(60);
    let mut usage = Vec::new();
    let mut last_reasons = PauseReasons::default();
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        let now_ns = monotonic_ns(start);
        let load15 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| parse_load15(&t))
            .unwrap_or(0.0);
        let mut reasons = PauseReasons {
            overload: config.circuit_breaker.enabled && breaker.update(load15, cores),
            ..PauseReasons::default()
        };
        if let Some(own) = read_usage(std::path::Path::new("/proc"), std::process::id()) {
            (reasons.memory, reasons.cpu) = limits.check(now_ns, own);
        }
        if reasons != last_reasons {
            tracing::warn!(
                ?reasons,
                load15,
                millicpus = limits.millicpus,
                "collection pause state"
            );
            last_reasons = reasons;
        }
        paused.store(reasons.any(), Ordering::Relaxed);
        if reasons.any() {
            let _ = probes.set_profile_pids(&Default::default());
            continue;
        }
        if config.profile.enabled {
            if tick % 10 == 1 {
                profiler.refresh_targets(&mut probes)?;
            }
            profiler.collect(&mut probes)?;
        }
        if config.resources.enabled && tick.is_multiple_of(config.resources.interval_secs.max(1)) {
            usage.push(sampler.sample(now_ns, identities));
        }
        let current = Timestamp::from_secs(now_secs()).floor_to(60);
        if current != minute {
            let range = TimeRange::new(minute, current)?;
            let profiles = profiler.flush(range);
            if !profiles.is_empty() && sender.try_send(Telemetry::Profiles(profiles)).is_err() {
                tracing::warn!("profile queue full: a minute of profiles dropped");
            }
            let mut series = Vec::new();
            if let Some(last) = usage.last() {
                series.extend(usage_series(last, minute));
            }
            usage.clear();
            series.extend(tcp_series(&probes.take_tcp_counts()?, minute));
            if !series.is_empty() && sender.try_send(Telemetry::Resources(series)).is_err() {
                tracing::warn!("resource queue full: a minute of series dropped");
            }
            minute = current;
        }
    }
    Ok(())
}

/// Parses `redis-benchmark -q` output: requests per second summed over tests.
fn benchmark_rps(output: &str) -> f64 {
    output
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (_, rest) = line.split_once(": ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 2.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A load generator and how to read its throughput.
enum Workload {
    /// `redis-benchmark -t set,get`.
    Redis {
        port: u16,
        requests: u64,
        clients: u32,
    },
    /// `mysqlslap` running `SELECT 1`.
    Mysql {
        port: u16,
        queries: u64,
        clients: u32,
    },
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
            Self::Redis { requests, clients, .. } => format!("redis-benchmark -n {requests} -c {clients} -t set,get"),
            Self::Mysql { queries, clients, .. } => format!("mysqlslap --concurrency={clients} --number-of-queries={queries} --query='SELECT 1'"),
        }
    }

    /// Runs once; requests per second.
    fn run(&self) -> Result<f64> {
        match self {
            Self::Redis {
                port,
                requests,
                clients,
            } => {
                let out = Command::new("redis-benchmark")
                    .args([
                        "-q",
                        "-p",
                        &port.to_string(),
                        "-n",
                        &requests.to_string(),
                        "-c",
                        &clients.to_string(),
                        "-t",
                        "set,get",
                    ])
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
                    .args([
                        "--no-defaults",
                        "-h127.0.0.1",
                        &format!("-P{port}"),
                        "-uvigil",
                        "-pvigil",
                    ])
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
    let proc_root = std::path::Path::new("/proc");
    let server_ticks = || -> u64 {
        servers
            .iter()
            .filter_map(|pid| read_usage(proc_root, *pid))
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

fn bench(workload: &Workload, runs: usize) -> Result<()> {
    let port = workload.port();
    let me = std::process::id();
    let root = std::path::Path::new("/proc");
    // Found once, outside the measured runs: a scan costs the agent CPU too.
    let servers = vigil_agent::listeners::listening_pids(root, &[port])?;
    let (mut without, mut with) = (Vec::<RunCost>::new(), Vec::<RunCost>::new());
    let mut drain_ns_per_event = Vec::new();
    let (mut cpu_fraction, mut max_rss, mut lost, mut captured, mut sent) =
        (Vec::new(), 0u64, 0u64, 0u64, 0u64);
    for round in 0..runs {
        without.push(measured_run(workload, &servers)?);
        let (capture, receiver) =
            Capture::start(CaptureSettings::for_ports(&[port]), Identities::default())?;
        let consumer =
            std::thread::spawn(move || receiver.iter().map(|b| b.len() as u64).sum::<u64>());
        let before = read_usage(root, me).unwrap_or_default();
        let started = std::time::Instant::now();
        with.push(measured_run(workload, &servers)?);
        let elapsed = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let after = read_usage(root, me).unwrap_or_default();
        let counters = capture.counters.clone();
        capture.stop();
        let records = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("consumer panicked"))?;
        cpu_fraction
            .push((after.cpu_ticks - before.cpu_ticks) as f64 / clock_ticks() as f64 / elapsed);
        max_rss = max_rss.max(after.rss_bytes);
        drain_ns_per_event.push(
            counters.drain_cpu_ns.load(Ordering::Relaxed) as f64
                / counters.events.load(Ordering::Relaxed).max(1) as f64,
        );
        lost += counters.ring_full.load(Ordering::Relaxed)
            + counters.queue_drops.load(Ordering::Relaxed);
        captured += records;
        sent += workload.requests();
        let (a, b) = (without[round], with[round]);
        eprintln!(
            "round {}: without {:.0} req/s (server {:.2} µs, client {:.2} µs per request), with {:.0} req/s (server {:.2} µs, client {:.2} µs), agent CPU {:.1}% of a core, {} of {} requests captured",
            round + 1,
            a.throughput, a.server_us, a.client_us,
            b.throughput, b.server_us, b.client_us,
            cpu_fraction[round] * 100.0,
            records,
            workload.requests()
        );
    }
    let median_of = |runs: &[RunCost], field: fn(&RunCost) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        median(&mut values)
    };
    let (base, attached) = (
        median_of(&without, |r| r.throughput),
        median_of(&with, |r| r.throughput),
    );
    let (server_base, server_attached) = (
        median_of(&without, |r| r.server_us),
        median_of(&with, |r| r.server_us),
    );
    let (client_base, client_attached) = (
        median_of(&without, |r| r.client_us),
        median_of(&with, |r| r.client_us),
    );
    println!(
        "{}, {runs} alternating runs per mode (medians)",
        workload.describe()
    );
    println!("without agent: {base:.0} req/s");
    println!("with agent:    {attached:.0} req/s");
    println!("ratio:         {:.3}", attached / base);
    println!(
        "server CPU:    {server_base:.2} µs/request without, {server_attached:.2} with (ratio {:.3})",
        server_base / server_attached.max(1e-9)
    );
    println!(
        "client CPU:    {client_base:.2} µs/request without, {client_attached:.2} with (ratio {:.3})",
        client_base / client_attached.max(1e-9)
    );
    println!(
        "agent CPU:     {:.1}% of a core (median over attached runs)",
        median(&mut cpu_fraction) * 100.0
    );
    println!(
        "agent drain:   {:.0} ns of CPU per event to read and parse (median)",
        median(&mut drain_ns_per_event)
    );
    println!("agent RSS:     {:.1} MiB (max)", max_rss as f64 / 1048576.0);
    println!("captured:      {captured} of {sent} requests; kernel/queue drops: {lost}");
    Ok(())
}
