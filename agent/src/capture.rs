//! The L7 capture loop: a thread that drains the ring buffer every
//! `drain_interval` (sooner when the kernel says `wakeup_bytes` are queued),
//! turns events into records and queues them for export in a bounded channel,
//! counting what it drops. Where the kernel captures only listed processes
//! (the syscall-exit trigger, or `pids` in the settings), it rescans every
//! `server_scan` which processes serve the capture ports. Pausing (circuit
//! breaker, limits) empties the kernel's port and process filters, so paused
//! collection costs next to nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{
    self, Receiver, RecvError, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vigil_model::RequestRecord;

use crate::bpf::{CaptureTrigger, ProbeOptions, Probes};
use crate::collector::Collector;
use crate::container::Identities;
use crate::error::AgentError;
use crate::l7::ParseOptions;
use crate::listeners::listening_pids;
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
    /// Ports in the kernel's filter (0 while paused).
    pub capture_ports: AtomicU64,
    /// Processes the kernel captures (serving a capture port) after the last
    /// scan, where it filters by process (see [`Probes::filters_by_process`]);
    /// 0 otherwise.
    pub server_processes: AtomicU64,
    /// CPU nanoseconds the loop spent draining and parsing events (its cost
    /// per request is this over `events`).
    pub drain_cpu_ns: AtomicU64,
}

/// The capture's output: batches of records (one per drain), and the way
/// back for emptied batches. A batch holds a drain's records (megabytes at
/// high rates); filling a returned one again spares the allocator fresh pages,
/// whose faults cost the capture thread more than its parsing did.
#[derive(Debug)]
pub struct RecordBatches {
    batches: Receiver<Vec<RequestRecord>>,
    spare: SyncSender<Vec<RequestRecord>>,
    /// Records sent and not yet received: what bounds the queue.
    queued: Arc<AtomicUsize>,
}

/// Emptied batches kept for reuse.
const SPARE_BATCHES: usize = 4;
/// Batches the channel holds at most (records are bounded by `queue_records`).
const QUEUE_BATCHES: usize = 4096;

impl RecordBatches {
    /// The next batch, waiting for it.
    pub fn recv(&self) -> Result<Vec<RequestRecord>, RecvError> {
        self.batches.recv().map(|batch| self.dequeued(batch))
    }

    /// The next batch, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<RequestRecord>, RecvTimeoutError> {
        self.batches
            .recv_timeout(timeout)
            .map(|batch| self.dequeued(batch))
    }

    /// The next batch if one is queued.
    pub fn try_recv(&self) -> Result<Vec<RequestRecord>, TryRecvError> {
        self.batches.try_recv().map(|batch| self.dequeued(batch))
    }

    fn dequeued(&self, batch: Vec<RequestRecord>) -> Vec<RequestRecord> {
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        batch
    }

    /// Batches fed by the returned sender instead of a capture (tests of consumers).
    #[cfg(test)]
    pub(crate) fn channel(capacity: usize) -> (SyncSender<Vec<RequestRecord>>, Self) {
        let (sender, batches) = mpsc::sync_channel(capacity);
        let (spare, _) = mpsc::sync_channel(SPARE_BATCHES);
        // Records sent this way are not counted in: start above what tests receive.
        let queued = Arc::new(AtomicUsize::new(usize::MAX / 2));
        (
            sender,
            Self {
                batches,
                spare,
                queued,
            },
        )
    }

    /// Hands a batch back to be filled again (what it still holds is dropped).
    pub fn recycle(&self, mut batch: Vec<RequestRecord>) {
        batch.clear();
        // Full: enough spares already; this one is freed.
        let _ = self.spare.try_send(batch);
    }
}

/// A running capture loop.
#[derive(Debug)]
pub struct Capture {
    trigger: Option<CaptureTrigger>,
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
    /// Records the export queue holds; newer ones that would pass it are
    /// dropped (and counted).
    pub queue_records: usize,
    /// How often to drain.
    pub drain_interval: Duration,
    /// When non-empty, capture only these pids (those serving a capture port);
    /// the kernel then follows no new listeners or forks.
    pub pids: Vec<u32>,
    /// How often to rescan for processes serving the capture ports (where the
    /// kernel filters by process).
    pub server_scan: Duration,
    /// Where /proc is (the host's, with the host PID namespace).
    pub proc_root: PathBuf,
}

impl CaptureSettings {
    /// Settings for `server_ports` with everything else at its default.
    pub fn for_ports(server_ports: &[u16]) -> Self {
        Self {
            probes: ProbeOptions {
                server_ports: server_ports.to_vec(),
                ..ProbeOptions::default()
            },
            parse: ParseOptions::default(),
            queue_records: 65_536,
            drain_interval: Duration::from_millis(100),
            pids: Vec::new(),
            server_scan: Duration::from_secs(10),
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// The processes serving `ports` now, as far as this capture may see them.
    fn scan_servers(&self, ports: &[u16]) -> Result<BTreeSet<u32>, AgentError> {
        let mut pids = listening_pids(&self.proc_root, ports)?;
        if !self.pids.is_empty() {
            pids.retain(|pid| self.pids.contains(pid));
        }
        if self.probes.exclude_self {
            pids.remove(&std::process::id());
        }
        Ok(pids)
    }
}

impl Capture {
    /// Loads the probes (failing if they cannot load) and starts the loop.
    /// Records arrive in [`RecordBatches`].
    pub fn start(
        settings: CaptureSettings,
        identities: Identities,
    ) -> Result<(Self, RecordBatches), AgentError> {
        let mut probes_options = settings.probes.clone();
        probes_options.narrow_to_pids = !settings.pids.is_empty();
        probes_options.follow_servers = settings.pids.is_empty();
        let mut probes = Probes::load(&probes_options)?;
        // Where the kernel filters by process, the first scan runs before
        // returning: requests to servers already running are captured from
        // the start.
        let servers = if probes.filters_by_process() {
            let servers = settings.scan_servers(&settings.probes.server_ports)?;
            probes.set_server_pids(&servers, None)?;
            tracing::info!(
                ports = ?settings.probes.server_ports,
                processes = ?servers,
                trigger = ?probes.trigger(),
                "capturing the processes that serve these ports"
            );
            servers
        } else {
            tracing::info!(
                ports = ?settings.probes.server_ports,
                trigger = ?probes.trigger(),
                "capturing requests to these ports (every socket's own port is checked)"
            );
            BTreeSet::new()
        };
        // The channel's own bound is only a backstop: `queued` bounds records.
        let (sender, receiver) = mpsc::sync_channel(QUEUE_BATCHES);
        let (spare, spares) = mpsc::sync_channel(SPARE_BATCHES);
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        counters
            .server_processes
            .store(servers.len() as u64, Ordering::Relaxed);
        counters
            .capture_ports
            .store(settings.probes.server_ports.len() as u64, Ordering::Relaxed);
        let collector = Collector::new(settings.parse.clone(), identities);
        let trigger = probes.trigger();
        let thread = {
            let (stop, paused, counters, queued) = (
                stop.clone(),
                paused.clone(),
                counters.clone(),
                queued.clone(),
            );
            std::thread::Builder::new()
                .name("vigil-capture".into())
                .spawn(move || {
                    run(
                        probes,
                        collector,
                        Queue {
                            sender,
                            spares,
                            queued,
                        },
                        &settings,
                        servers,
                        &stop,
                        &paused,
                        &counters,
                    )
                })
                .map_err(|e| AgentError::Ebpf(format!("spawn capture thread: {e}")))?
        };
        Ok((
            Self {
                trigger,
                stop,
                paused,
                thread: Some(thread),
                counters,
            },
            RecordBatches {
                batches: receiver,
                spare,
                queued,
            },
        ))
    }

    /// What fires the kernel side of this capture.
    pub fn trigger(&self) -> Option<CaptureTrigger> {
        self.trigger
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

/// How often the wall-clock offset of kernel timestamps is re-read.
const CLOCK_RESYNC: Duration = Duration::from_secs(60);

/// The capture thread's end of [`RecordBatches`].
struct Queue {
    sender: SyncSender<Vec<RequestRecord>>,
    spares: Receiver<Vec<RequestRecord>>,
    queued: Arc<AtomicUsize>,
}

/// The consumer is gone.
struct Disconnected;

impl Queue {
    /// Queues what of `batch` fits under `max_records` queued records (the
    /// rest, the newest, is dropped and counted) and leaves `batch` empty,
    /// ready to be filled again: a spare when the records went out, else
    /// the same buffer.
    fn send(
        &self,
        batch: &mut Vec<RequestRecord>,
        max_records: usize,
        counters: &CaptureCounters,
    ) -> Result<(), Disconnected> {
        let room = max_records.saturating_sub(self.queued.load(Ordering::Relaxed));
        if batch.len() > room {
            let dropped = batch.len() - room;
            counters
                .queue_drops
                .fetch_add(dropped as u64, Ordering::Relaxed);
            batch.truncate(room);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        // A drain's worth: the next one is likely alike, so a new buffer is sized so.
        let next = self
            .spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(n + n / 4));
        self.queued.fetch_add(n, Ordering::Relaxed);
        match self.sender.try_send(std::mem::replace(batch, next)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut unsent)) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                counters.queue_drops.fetch_add(n as u64, Ordering::Relaxed);
                unsent.clear();
                *batch = unsent;
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(Disconnected),
        }
    }
}

#[allow(clippy::too_many_arguments)] // reason: the loop's whole state, passed once from `start`
fn run(
    mut probes: Probes,
    mut collector: Collector,
    queue: Queue,
    settings: &CaptureSettings,
    mut last_scan: BTreeSet<u32>,
    stop: &AtomicBool,
    paused: &AtomicBool,
    counters: &CaptureCounters,
) {
    let mut kernel_paused = false;
    let mut clock_synced_at = Instant::now();
    let mut scanned_at = Instant::now();
    // The batch being filled: kept when nothing was sent, replaced by a spare
    // (or a new one sized like it) when it was.
    let mut batch = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let want_pause = paused.load(Ordering::Relaxed);
        if want_pause != kernel_paused {
            let ports: &[u16] = if want_pause {
                &[]
            } else {
                &settings.probes.server_ports
            };
            match probes.set_server_ports(ports) {
                Ok(()) => counters
                    .capture_ports
                    .store(ports.len() as u64, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "cannot change the kernel port filter"),
            }
            kernel_paused = want_pause;
            if probes.filters_by_process() {
                // Paused: no process is looked at. Resumed: scan now.
                let servers = if want_pause {
                    Ok(BTreeSet::new())
                } else {
                    settings.scan_servers(ports)
                };
                rescan(&mut probes, servers, false, &mut last_scan, counters);
                scanned_at = Instant::now();
            }
            counters
                .paused_in_kernel
                .store(u64::from(want_pause), Ordering::SeqCst);
            tracing::info!(paused = want_pause, "capture paused state changed");
        }
        if probes.filters_by_process()
            && !kernel_paused
            && scanned_at.elapsed() >= settings.server_scan
        {
            let servers = settings.scan_servers(&settings.probes.server_ports);
            rescan(&mut probes, servers, true, &mut last_scan, counters);
            scanned_at = Instant::now();
        }
        let drain_started = crate::sys::thread_cpu_ns();
        collector.forget_names();
        let events = probes.drain(|raw| {
            if let Some(event) = L7Event::parse(raw) {
                collector.records_into(&event, &mut batch);
            }
        });
        counters.drain_cpu_ns.fetch_add(
            crate::sys::thread_cpu_ns().saturating_sub(drain_started),
            Ordering::Relaxed,
        );
        counters.events.fetch_add(events as u64, Ordering::Relaxed);
        counters
            .unparsed
            .store(collector.unparsed, Ordering::Relaxed);
        counters
            .ring_full
            .store(probes.stats().ring_full, Ordering::Relaxed);
        counters
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match queue.send(&mut batch, settings.queue_records, counters) {
            Ok(()) => {}
            Err(Disconnected) => return,
        }
        if stopping {
            return;
        }
        if clock_synced_at.elapsed() >= CLOCK_RESYNC {
            collector.resync_clock();
            clock_synced_at = Instant::now();
        }
        probes.wait_for_events(settings.drain_interval);
    }
}

/// Applies a scan of server processes to the kernel's filter. With `gentle`,
/// a process the kernel holds stays until it is missing from two scans in a
/// row (`last_scan` and this one); otherwise the filter becomes the scan.
fn rescan(
    probes: &mut Probes,
    servers: Result<BTreeSet<u32>, AgentError>,
    gentle: bool,
    last_scan: &mut BTreeSet<u32>,
    counters: &CaptureCounters,
) {
    let servers = match servers {
        Ok(servers) => servers,
        Err(e) => {
            tracing::warn!(error = %e, "cannot scan for processes serving the capture ports");
            return;
        }
    };
    if let Err(e) = probes.set_server_pids(&servers, gentle.then_some(&*last_scan)) {
        tracing::warn!(error = %e, "cannot update the kernel's server processes");
    }
    counters
        .server_processes
        .store(probes.server_pids().len() as u64, Ordering::Relaxed);
    *last_scan = servers;
}
