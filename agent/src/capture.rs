//! The L7 capture loop: a thread that drains the ring buffer every
//! `drain_interval`, turns events into records and queues them for export in a
//! bounded channel, counting what it drops. Pausing (circuit breaker, limits)
//! empties the kernel's port filter, so paused collection costs next to nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vigil_model::RequestRecord;

use crate::bpf::{ProbeOptions, Probes};
use crate::collector::Collector;
use crate::container::Identities;
use crate::error::AgentError;
use crate::l7::ParseOptions;
use crate::wire::L7Event;

/// Counters of the capture loop, shared with whoever watches it.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Ring-buffer records read.
    pub events: AtomicU64,
    /// Records produced.
    pub records: AtomicU64,
    /// Records dropped because the export queue was full.
    pub queue_drops: AtomicU64,
    /// Events no parser recognised.
    pub unparsed: AtomicU64,
    /// Events the kernel could not queue (ring buffer full).
    pub ring_full: AtomicU64,
    /// 1 while the kernel's port filter is emptied (collection paused), else 0.
    pub paused_in_kernel: AtomicU64,
}

/// A running capture loop.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The loop's counters.
    pub counters: Arc<CaptureCounters>,
}

/// Settings of [`Capture::start`].
#[derive(Clone, Debug)]
pub struct CaptureSettings {
    /// Kernel side.
    pub probes: ProbeOptions,
    /// Parsers.
    pub parse: ParseOptions,
    /// Batches (one per drain) the export queue holds.
    pub queue_batches: usize,
    /// How often to drain.
    pub drain_interval: Duration,
}

impl Capture {
    /// Loads the probes (failing if they cannot load) and starts the loop.
    /// Records arrive in batches on the returned receiver.
    pub fn start(
        settings: CaptureSettings,
        identities: Identities,
    ) -> Result<(Self, Receiver<Vec<RequestRecord>>), AgentError> {
        let probes = Probes::load(&settings.probes)?;
        let (sender, receiver) = mpsc::sync_channel(settings.queue_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        let collector = Collector::new(settings.parse.clone(), identities);
        let thread = {
            let (stop, paused, counters) = (stop.clone(), paused.clone(), counters.clone());
            std::thread::Builder::new()
                .name("vigil-capture".into())
                .spawn(move || {
                    run(
                        probes, collector, sender, &settings, &stop, &paused, &counters,
                    )
                })
                .map_err(|e| AgentError::Ebpf(format!("spawn capture thread: {e}")))?
        };
        Ok((
            Self {
                stop,
                paused,
                thread: Some(thread),
                counters,
            },
            receiver,
        ))
    }

    /// Pauses or resumes collection.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Stops the loop after a last drain.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut probes: Probes,
    mut collector: Collector,
    sender: SyncSender<Vec<RequestRecord>>,
    settings: &CaptureSettings,
    stop: &AtomicBool,
    paused: &AtomicBool,
    counters: &CaptureCounters,
) {
    let mut kernel_paused = false;
    let mut drains: u64 = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let want_pause = paused.load(Ordering::Relaxed);
        if want_pause != kernel_paused {
            let ports: &[u16] = if want_pause {
                &[]
            } else {
                &settings.probes.server_ports
            };
            if let Err(e) = probes.set_server_ports(ports) {
                tracing::warn!(error = %e, "cannot change the kernel port filter");
            }
            kernel_paused = want_pause;
            counters
                .paused_in_kernel
                .store(u64::from(want_pause), Ordering::SeqCst);
            tracing::info!(paused = want_pause, "capture paused state changed");
        }
        let mut batch = Vec::new();
        let events = probes.drain(|raw| {
            if let Some(event) = L7Event::parse(raw) {
                batch.extend(collector.records(&event));
            }
        });
        counters.events.fetch_add(events as u64, Ordering::Relaxed);
        counters
            .unparsed
            .store(collector.unparsed, Ordering::Relaxed);
        counters
            .ring_full
            .store(probes.stats().ring_full, Ordering::Relaxed);
        if !batch.is_empty() {
            let n = batch.len() as u64;
            counters.records.fetch_add(n, Ordering::Relaxed);
            match sender.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    counters.queue_drops.fetch_add(n, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if stopping {
            return;
        }
        drains += 1;
        if drains.is_multiple_of(600) {
            collector.resync_clock();
        }
        std::thread::sleep(settings.drain_interval);
    }
}
