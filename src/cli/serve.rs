//! `vigil serve`: the 24×7 process — every enabled playbook on its schedule,
//! the HTTP API (webhooks, chat, pages, MCP), retention once an hour, and a
//! graceful shutdown on Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_playbooks::Playbook;
use vigil_scheduler::{JobSpec, Scheduler, SchedulerOptions, SystemClock};

use crate::cli::patrol::{now, patrols, playbooks};
use crate::config::Config;
use crate::patrol::{PatrolJob, StoreHistory};
use crate::wiring;

/// `vigil serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Seconds running jobs get to finish at shutdown before they are abandoned.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

/// The scheduler job spec of a playbook.
pub fn job_spec(playbook: &Playbook) -> JobSpec {
    JobSpec {
        id: playbook.id.clone(),
        schedule: playbook.schedule.clone(),
        utc_offset: playbook.utc_offset.clone(),
        timeout: playbook.timeout,
        jitter: playbook.jitter,
        catch_up: playbook.catch_up,
    }
}

/// Runs `vigil serve` until a shutdown signal.
pub async fn run(config: &Config, args: ServeArgs) -> anyhow::Result<()> {
    let all = playbooks(config)?;
    let state = wiring::open_embedded(&config.store.embedded).await?;
    let (source, ingest) = wiring::telemetry_and_ingest(config, &state).await?;
    let patrols = Arc::new(patrols(config, source, state.clone(), &all)?);
    let options = SchedulerOptions {
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        ..SchedulerOptions::default()
    };
    let mut scheduler = Scheduler::new(
        Arc::new(SystemClock),
        Arc::new(StoreHistory(state.clone())),
        options,
    );
    let mut scheduled = Vec::new();
    for playbook in all {
        if !playbook.enabled || config.patrol.disabled.contains(&playbook.id) {
            continue;
        }
        scheduled.push(playbook.id.clone());
        scheduler
            .add(
                job_spec(&playbook),
                Arc::new(PatrolJob {
                    patrols: Arc::clone(&patrols),
                    playbook,
                }),
            )
            .context("scheduling playbooks")?;
    }
    tracing::info!(playbooks = %scheduled.join(", "), "scheduler started");

    let shutdown = CancellationToken::new();
    let retention = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => match state.apply_retention(now()).await {
                        Ok(stats) => tracing::debug!(?stats, "retention applied"),
                        Err(err) => tracing::warn!("retention failed: {err}"),
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        })
    };
    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing running patrols");
            shutdown.cancel();
        })
    };
    let notifier = if config.notify.channels.is_empty() {
        None
    } else {
        Some(Arc::new(
            vigil_notify::Notifier::new(config.notify.clone())
                .context("notifications of the API")?,
        ))
    };
    let deps = vigil_api::ApiDeps {
        source: Arc::clone(&patrols.source),
        store: Arc::new(state.clone()),
        scheduler: Some(scheduler.handle()),
        notifier,
        clock: None,
        ingest: Some(ingest),
    };
    let api = {
        let shutdown = shutdown.clone();
        let config = config.api.clone();
        tokio::spawn(async move {
            let result = vigil_api::serve(config, deps, shutdown.clone()).await;
            // Without its API the service is not doing its job: stop it all.
            shutdown.cancel();
            result
        })
    };
    scheduler.run(shutdown.clone()).await;
    shutdown.cancel();
    signals.abort();
    let _ = retention.await;
    match api.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err).context("the HTTP API stopped"),
        Err(err) => Err(anyhow::anyhow!("the HTTP API task failed: {err}")),
    }
}

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and systemd send).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
