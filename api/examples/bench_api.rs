//! Webhook latency on a 1,000-service simulated estate, and a server for `wrk`.
//!
//! ```text
//! cargo run --release -p vigil-api --example bench_api -- [DB] [--requests N] [--cold] [--serve ADDR]
//! ```
//! Writes the estate (1,000 services, 26 h, a slow MySQL planted at 25 h) into
//! DB (default `/tmp/vigil-bench-1000.db`) unless it already holds it, measures
//! N webhooks in-process (each a new incident, so each a full investigation;
//! with `--cold` the investigation cache is off, `investigate.cache_secs: 0`,
//! so no alert reuses another's reads or analysis), then with `--serve` serves
//! the API on ADDR until interrupted, its clock pinned at the fault so `wrk`
//! can post alerts about it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use vigil_api::bench::webhook_latency;
use vigil_api::{ApiConfig, ApiDeps, AppState};
use vigil_model::{EntityId, EntityKind, FaultKind, TelemetrySource, Timestamp};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};
use vigil_store::embedded::{EmbeddedOptions, EmbeddedStore};

const SERVICES: usize = 1000;
const MINUTES: u32 = 1560;
const FAULT_START: u32 = 1500;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path = PathBuf::from("/tmp/vigil-bench-1000.db");
    let mut requests = 200usize;
    let mut serve: Option<String> = None;
    let mut cold = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--requests" => requests = args.next().and_then(|v| v.parse().ok()).unwrap_or(200),
            "--serve" => serve = args.next(),
            "--cold" => cold = true,
            other => path = PathBuf::from(other),
        }
    }
    let config = SimConfig {
        seed: 1000,
        services: SERVICES,
        start: DEFAULT_START,
        minutes: MINUTES,
        faults: vec![FaultSpec {
            kind: FaultKind::SlowMysql,
            target: None,
            start_minute: FAULT_START,
            duration_minutes: 50,
        }],
        ..SimConfig::default()
    };
    let estate = Estate::new(config)?;
    let fresh = !path.exists();
    let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).await?;
    if fresh {
        let clock = Instant::now();
        for batch in estate.batches(120) {
            store.write(&batch).await?;
        }
        eprintln!("wrote the estate in {:.1} s", clock.elapsed().as_secs_f64());
    }
    let fault = estate.faults()[0].clone();
    let at = fault.window.start.plus_secs(600);
    eprintln!(
        "planted {} on {} at {}",
        fault.kind, fault.root_cause, fault.window.start
    );
    let topology = estate.topology();
    let mut targets: Vec<(EntityId, Timestamp)> = topology
        .entities
        .iter()
        .filter(|e| e.id.kind() == EntityKind::Service)
        .filter(|e| {
            e.attributes
                .get("role")
                .is_some_and(|r| r == "gateway" || r == "api")
        })
        .map(|e| (e.id.clone(), at))
        .collect();
    targets.truncate(100);
    let source: Arc<dyn TelemetrySource> = Arc::new(store.clone());
    let deps = ApiDeps {
        source,
        store: Arc::new(EmbeddedStore::open_in_memory()?),
        scheduler: None,
        notifier: None,
        clock: Some(Arc::new(move || at)),
        ingest: None,
    };
    let mut api = ApiConfig::default();
    if cold {
        api.investigate.cache_secs = 0;
    }
    let state = Arc::new(AppState::new(api.clone(), deps.clone()));
    // Warm-up: the first request builds the entity index.
    let _ = webhook_latency(Arc::clone(&state), &targets[..1], 1).await;
    let figures = webhook_latency(state, &targets, requests).await;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Some(address) = serve {
        let config = ApiConfig {
            listen: address,
            ..api
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        eprintln!("serving on {} (gateway alerts at {at})", config.listen);
        vigil_api::serve(config, deps, shutdown).await?;
    }
    Ok(())
}
