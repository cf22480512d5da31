//! Picks and opens the concrete parts named by the configuration.

use std::sync::Arc;

use anyhow::Context;
use vigil_model::{TelemetryIngest, TelemetrySource};
use vigil_store::clickhouse::ClickHouseStore;
use vigil_store::embedded::{EmbeddedOptions, EmbeddedStore};

use crate::config::{Config, EmbeddedConfig, LogConfig, LogFormat};

/// Starts logging to stderr as configured; `RUST_LOG` wins over the file's level.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling twice) is harmless: keep the first.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens (creating when missing) the embedded store.
pub async fn open_embedded(config: &EmbeddedConfig) -> anyhow::Result<EmbeddedStore> {
    if let Some(dir) = config
        .path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let options = EmbeddedOptions {
        retention_days: config.retention_days,
        report_retention_days: config.report_retention_days,
    };
    EmbeddedStore::open(&config.path, options)
        .await
        .with_context(|| format!("cannot open the embedded store {}", config.path.display()))
}

/// Connects to the configured ClickHouse, if any.
pub async fn connect_clickhouse(config: &Config) -> anyhow::Result<Option<ClickHouseStore>> {
    let Some(clickhouse) = &config.store.clickhouse else {
        return Ok(None);
    };
    let store = ClickHouseStore::connect(clickhouse.clone())
        .await
        .context("cannot use the ClickHouse configured under store.clickhouse")?;
    Ok(Some(store))
}

/// The telemetry `vigil serve` reads, and where agents' batches sent to its
/// ingest endpoint are written: the same store, ClickHouse when configured
/// (agent rows then land in Vigil's tables, read with `request_log: agent`),
/// else the embedded store.
pub async fn telemetry_and_ingest(
    config: &Config,
    state: &EmbeddedStore,
) -> anyhow::Result<(Arc<dyn TelemetrySource>, Arc<dyn TelemetryIngest>)> {
    Ok(match connect_clickhouse(config).await? {
        Some(clickhouse) => {
            let clickhouse = Arc::new(clickhouse);
            (clickhouse.clone(), clickhouse)
        }
        None => {
            let embedded = Arc::new(state.clone());
            (embedded.clone(), embedded)
        }
    })
}
