//! The `vigil-agent` binary: `run` collects and exports, `check-config`
//! validates a config file, `bench` measures the capture's overhead with
//! redis-benchmark and mysqlslap.

mod bench;

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bench::{bench, BenchOptions, Workload};
use clap::{Parser, Subcommand};
use vigil_agent::bpf::{CaptureTrigger, ProbeOptions, Probes};
use vigil_agent::capture::{Capture, CaptureSettings, RecordBatches};
use vigil_agent::config::AgentConfig;
use vigil_agent::container::{DockerClient, Identities};
use vigil_agent::export::{check_schema, Exporter, Sink, Spool, VigilSink};
use vigil_agent::limits::{parse_load15, CircuitBreaker, PauseReasons, SelfLimits};
use vigil_agent::profile::Profiler;
use vigil_agent::resources::{
    clock_ticks, host_ip, read_usage, tcp_series, usage_series, ProcSampler,
};
use vigil_agent::AgentError;
use vigil_model::{Profile, ResourceSeries, TimeRange, Timestamp};
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore};

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
    /// Overhead benchmark: redis-benchmark (and mysqlslap) without and with
    /// the capture attached, alternating (root).
    Bench {
        /// Port of a running Redis.
        #[arg(long, default_value_t = 6379)]
        redis_port: u16,
        /// Requests per redis-benchmark test (SET, then GET).
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
        /// Parallel clients.
        #[arg(long, default_value_t = 50)]
        clients: u32,
        /// Redis commands per round trip (redis-benchmark -P).
        #[arg(long, default_value_t = 1)]
        pipeline: u32,
        /// Runs per mode (alternating), at least 3.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also run mysqlslap against MariaDB/MySQL on this port (user/password `vigil`).
        #[arg(long)]
        mysql_port: Option<u16>,
        /// Queries per mysqlslap run.
        #[arg(long, default_value_t = 100_000)]
        mysql_queries: u64,
        /// What fires the capture (default: the best this kernel offers).
        #[arg(long, value_enum)]
        trigger: Option<TriggerArg>,
        /// Also run the whole pipeline once, exporting into this ClickHouse
        /// (database `vigil_bench`).
        #[arg(long)]
        clickhouse_url: Option<String>,
    },
}

/// `--trigger` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TriggerArg {
    /// sock_recv_length / sock_send_length (kernel 6.5+).
    Socket,
    /// sys_exit (any BTF kernel).
    SyscallExit,
}

impl From<TriggerArg> for CaptureTrigger {
    fn from(arg: TriggerArg) -> Self {
        match arg {
            TriggerArg::Socket => Self::Socket,
            TriggerArg::SyscallExit => Self::SyscallExit,
        }
    }
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

fn main() -> Result<()> {
    // Before the runtime's threads exist: each would otherwise get an arena.
    vigil_agent::limits::compact_heap();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async_main())
}

async fn async_main() -> Result<()> {
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
            pipeline,
            runs,
            mysql_port,
            mysql_queries,
            trigger,
            clickhouse_url,
        } => {
            let options = BenchOptions {
                runs: runs.max(3),
                trigger: trigger.map(CaptureTrigger::from),
                export: clickhouse_url.map(|url| ClickHouseConfig {
                    url,
                    database: "vigil_bench".to_owned(),
                    ..ClickHouseConfig::default()
                }),
            };
            let redis = Workload::Redis {
                port: redis_port,
                requests,
                clients,
                pipeline: pipeline.max(1),
            };
            bench(&redis, &options).await?;
            if let Some(port) = mysql_port {
                let mysql = Workload::Mysql {
                    port,
                    queries: mysql_queries,
                    clients: 20,
                };
                bench(&mysql, &options).await?;
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
    receiver: RecordBatches,
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
                    ring_buffer_bytes: config.capture.ring_buffer_mib << 20,
                    wakeup_bytes: config.capture.wakeup_bytes,
                    ..ProbeOptions::default()
                },
                parse: config.capture.parse_options(),
                queue_records: config.limits.queue_size,
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
