//! Export to ClickHouse (batched inserts through `vigil-store`) or, with no
//! ClickHouse, to a running `vigil serve` ([`VigilSink`]: JSON batches of the
//! versioned ingest protocol to `POST /api/v1/ingest`). While the target is
//! down, an ordered, bounded on-disk spool is replayed (oldest first) before
//! anything new is written. Nothing is lost below the spool's bound; batches
//! above it are dropped and counted.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vigil_model::{
    IngestBatch, IngestReceipt, Profile, RequestRecord, ResourceSeries, INGEST_PROTOCOL_VERSION,
};
use vigil_store::clickhouse::{ClickHouseStore, MIGRATIONS};

use crate::capture::RecordBatches;
use crate::config::VigilExportConfig;
use crate::error::AgentError;

/// Version of the spool's file format (first line of every segment).
pub const SPOOL_FORMAT: u32 = 1;
/// Oldest schema version of Vigil's ClickHouse tables this agent can write to:
/// it needs the request log, resources (1) and profiles (2).
pub const MIN_SCHEMA_VERSION: u32 = 2;

/// The newest schema version this agent knows (from the store it was built with).
pub fn known_schema_version() -> u32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Checks the server's applied schema versions against this agent's; the
/// error says which side to upgrade.
pub fn check_schema(applied: &[u32]) -> Result<u32, AgentError> {
    let known = known_schema_version();
    let Some(server) = applied.iter().copied().max() else {
        return Err(AgentError::Version(format!(
            "ClickHouse has no Vigil tables (schema version 0); this agent needs version {MIN_SCHEMA_VERSION}..={known}: run `vigil db migrate` or set export.migrate: true"
        )));
    };
    if server < MIN_SCHEMA_VERSION {
        return Err(AgentError::Version(format!(
            "ClickHouse's Vigil schema is version {server}, this agent needs at least {MIN_SCHEMA_VERSION}: run `vigil db migrate` with the matching server"
        )));
    }
    if server > known {
        return Err(AgentError::Version(format!(
            "ClickHouse's Vigil schema is version {server}, newer than this agent knows ({known}): upgrade vigil-agent to the server's release"
        )));
    }
    Ok(server)
}

/// Where batches go.
pub trait Sink: Send + Sync {
    /// Writes one batch; an error means nothing of it was stored.
    fn write(
        &self,
        records: &[RequestRecord],
    ) -> impl Future<Output = Result<(), AgentError>> + Send;
}

impl Sink for ClickHouseStore {
    async fn write(&self, records: &[RequestRecord]) -> Result<(), AgentError> {
        Ok(self.write_agent_records(records).await?)
    }
}

/// The ingest endpoint under `vigil serve`'s base URL.
pub const INGEST_PATH: &str = "/api/v1/ingest";

/// Sends batches to a running `vigil serve` (`export.vigil`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct VigilSink {
    client: reqwest::Client,
    endpoint: String,
    token: String,
    max_records: usize,
}

/// The error body `vigil serve` answers with.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl VigilSink {
    /// A sink for `config` (validated by [`crate::config::AgentConfig::validate`]).
    pub fn new(config: &VigilExportConfig) -> Result<Self, AgentError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(config.timeout_secs.clamp(1, 5)))
            .build()
            .map_err(|e| AgentError::Ingest(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint: format!("{}{INGEST_PATH}", config.url.trim_end_matches('/')),
            token: config.token.clone(),
            max_records: config.max_records_per_request.max(1),
        })
    }

    /// Where batches go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Posts one batch. A protocol version mismatch is [`AgentError::Version`]
    /// with the server's message (naming both versions and the side to upgrade).
    pub async fn send(&self, batch: &IngestBatch) -> Result<IngestReceipt, AgentError> {
        let mut request = self.client.post(&self.endpoint).json(batch);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AgentError::Ingest(format!("{}: {e}", self.endpoint)))?;
        let status = response.status();
        if status.is_success() {
            return response.json::<IngestReceipt>().await.map_err(|e| {
                AgentError::Ingest(format!("{}: unreadable answer: {e}", self.endpoint))
            });
        }
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), text.trim().to_owned()),
        };
        if code == "protocol_version" {
            return Err(AgentError::Version(format!(
                "vigil serve at {} refused this agent's ingest protocol version {INGEST_PROTOCOL_VERSION}: {message}",
                self.endpoint
            )));
        }
        let hint = match status.as_u16() {
            401 => " (set export.vigil.token to a token with the write scope)",
            403 => " (export.vigil.token needs the write scope)",
            404 => " (is export.vigil.url a vigil serve of this release?)",
            413 => {
                " (lower export.vigil.max_records_per_request or raise api.ingest_max_body_bytes)"
            }
            _ => "",
        };
        let text = format!("{} answered {status}: {message}{hint}", self.endpoint);
        // Refusals that waiting will not fix are configuration problems; the
        // rest (5xx, timeouts) mean the server is down or busy.
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(AgentError::Config(format!("export.vigil: {text}")))
        } else {
            Err(AgentError::Ingest(text))
        }
    }

    /// The start-up handshake: an empty batch, which checks the address, the
    /// token and the protocol version without storing anything.
    pub async fn check(&self) -> Result<IngestReceipt, AgentError> {
        self.send(&IngestBatch::new()).await
    }

    /// Sends profiles.
    pub async fn write_profiles(&self, profiles: &[Profile]) -> Result<(), AgentError> {
        self.send(&IngestBatch {
            profiles: profiles.to_vec(),
            ..IngestBatch::new()
        })
        .await
        .map(|_| ())
    }

    /// Sends resource series.
    pub async fn write_resources(&self, resources: &[ResourceSeries]) -> Result<(), AgentError> {
        self.send(&IngestBatch {
            resources: resources.to_vec(),
            ..IngestBatch::new()
        })
        .await
        .map(|_| ())
    }
}

/// Requests are sent in bodies of at most `max_records_per_request`. When a
/// later body fails, earlier ones of the batch were stored; the whole batch is
/// then spooled and sent again, which the server stores once (it ignores
/// requests it already has).
impl Sink for VigilSink {
    async fn write(&self, records: &[RequestRecord]) -> Result<(), AgentError> {
        for chunk in records.chunks(self.max_records) {
            self.send(&IngestBatch {
                records: chunk.to_vec(),
                ..IngestBatch::new()
            })
            .await?;
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SpoolHeader {
    vigil_spool: u32,
    records: usize,
}

/// An ordered on-disk buffer of batches: one file per batch, named by sequence number.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: BTreeMap<u64, u64>,
    used: u64,
    next: u64,
}

impl Spool {
    /// Opens (creating) `dir`, picking up what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, AgentError> {
        fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| AgentError::io(dir, e))? {
            let entry = entry.map_err(|e| AgentError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(seq) = name
                .strip_suffix(".jsonl")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry
                .metadata()
                .map_err(|e| AgentError::io(entry.path(), e))?
                .len();
            segments.insert(seq, size);
        }
        let used = segments.values().sum();
        let next = segments.keys().next_back().map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            segments,
            used,
            next,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.jsonl"))
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes on disk.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Appends a batch; `Ok(false)` when it does not fit under the bound (dropped).
    pub fn push(&mut self, records: &[RequestRecord]) -> Result<bool, AgentError> {
        let mut text = serde_json::to_string(&SpoolHeader {
            vigil_spool: SPOOL_FORMAT,
            records: records.len(),
        })
        .map_err(|e| AgentError::Config(e.to_string()))?;
        text.push('\n');
        for record in records {
            text.push_str(
                &serde_json::to_string(record).map_err(|e| AgentError::Config(e.to_string()))?,
            );
            text.push('\n');
        }
        let size = text.len() as u64;
        if self.used + size > self.max_bytes {
            return Ok(false);
        }
        let seq = self.next;
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(|e| AgentError::io(&tmp, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| AgentError::io(&tmp, e))?;
        file.sync_data().map_err(|e| AgentError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| AgentError::io(&path, e))?;
        self.segments.insert(seq, size);
        self.used += size;
        self.next += 1;
        Ok(true)
    }

    /// The oldest batch and its sequence number.
    pub fn oldest(&self) -> Result<Option<(u64, Vec<RequestRecord>)>, AgentError> {
        let Some(&seq) = self.segments.keys().next() else {
            return Ok(None);
        };
        let path = self.path(seq);
        let file = fs::File::open(&path).map_err(|e| AgentError::io(&path, e))?;
        let mut lines = BufReader::new(file).lines();
        let header: SpoolHeader = lines
            .next()
            .transpose()
            .map_err(|e| AgentError::io(&path, e))?
            .and_then(|line| serde_json::from_str(&line).ok())
            .ok_or_else(|| {
                AgentError::Version(format!("{}: not a Vigil spool segment", path.display()))
            })?;
        if header.vigil_spool != SPOOL_FORMAT {
            return Err(AgentError::Version(format!(
                "{}: spool format {} written by another agent version; this agent reads format {SPOOL_FORMAT}",
                path.display(),
                header.vigil_spool
            )));
        }
        let mut records = Vec::with_capacity(header.records);
        for line in lines {
            let line = line.map_err(|e| AgentError::io(&path, e))?;
            records.push(
                serde_json::from_str(&line)
                    .map_err(|e| AgentError::Version(format!("{}: {e}", path.display())))?,
            );
        }
        Ok(Some((seq, records)))
    }

    /// Removes batch `seq` once it is stored.
    pub fn remove(&mut self, seq: u64) -> Result<(), AgentError> {
        let path = self.path(seq);
        fs::remove_file(&path).map_err(|e| AgentError::io(&path, e))?;
        if let Some(size) = self.segments.remove(&seq) {
            self.used -= size;
        }
        Ok(())
    }
}

/// Counters of the exporter.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Records stored directly.
    pub written: AtomicU64,
    /// Records put in the spool.
    pub spooled: AtomicU64,
    /// Records stored from the spool.
    pub replayed: AtomicU64,
    /// Records dropped because the spool was full.
    pub dropped: AtomicU64,
    /// Batches waiting in the spool.
    pub spool_batches: AtomicU64,
}

/// Writes batches to a sink, spooling while it fails.
#[derive(Debug)]
pub struct Exporter<S> {
    sink: S,
    spool: Spool,
    batch_size: usize,
    /// After a failed write, the sink is not tried again for this long
    /// (batches go straight to the spool): one attempt per flush interval
    /// however many batches arrive. Zero when exporting by hand.
    retry_interval: Duration,
    /// When the sink may be tried again.
    retry_at: Option<Instant>,
    /// Shared counters.
    pub counters: Arc<ExportCounters>,
}

impl<S: Sink> Exporter<S> {
    /// An exporter writing to `sink` in batches of at most `batch_size`.
    pub fn new(sink: S, spool: Spool, batch_size: usize) -> Self {
        let counters = Arc::new(ExportCounters::default());
        counters
            .spool_batches
            .store(spool.len() as u64, Ordering::Relaxed);
        Self {
            sink,
            spool,
            batch_size: batch_size.max(1),
            retry_interval: Duration::ZERO,
            retry_at: None,
            counters,
        }
    }

    /// Whether the sink may be tried now (no failure within `retry_interval`).
    fn may_try_sink(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn sink_failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.retry_interval);
    }

    /// Replays the spool, oldest first, until it is empty or a write fails.
    /// Returns whether it is empty.
    pub async fn replay(&mut self) -> Result<bool, AgentError> {
        while let Some((seq, records)) = self.spool.oldest()? {
            if let Err(e) = self.sink.write(&records).await {
                tracing::debug!(error = %e, "spool replay deferred");
                self.sink_failed();
                return Ok(false);
            }
            self.spool.remove(seq)?;
            self.counters
                .replayed
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            self.counters
                .spool_batches
                .store(self.spool.len() as u64, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn spool_batch(&mut self, records: &[RequestRecord]) -> Result<(), AgentError> {
        if self.spool.push(records)? {
            self.counters
                .spooled
                .fetch_add(records.len() as u64, Ordering::Relaxed);
        } else {
            self.counters
                .dropped
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            tracing::warn!(records = records.len(), "spool full: batch dropped");
        }
        self.counters
            .spool_batches
            .store(self.spool.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Exports `records` in order after whatever is spooled.
    pub async fn export(&mut self, records: &[RequestRecord]) -> Result<(), AgentError> {
        let mut sink_up = self.may_try_sink() && self.replay().await?;
        for chunk in records.chunks(self.batch_size) {
            if sink_up {
                match self.sink.write(chunk).await {
                    Ok(()) => {
                        self.counters
                            .written
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "export failed; spooling to disk");
                        self.sink_failed();
                        sink_up = false;
                    }
                }
            }
            self.spool_batch(chunk)?;
        }
        Ok(())
    }

    /// Exports what arrives in `batches`: a full batch (`batch_size`) as soon
    /// as it is there, the rest every `interval` (the first at once: that
    /// replays a spool left from before), until `stop` is set (then what is
    /// left, once). Holding at most about a batch keeps memory flat at any
    /// rate. A failed sink is tried again an `interval` later, not per batch.
    pub async fn run(
        mut self,
        batches: RecordBatches,
        interval: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<(), AgentError> {
        self.retry_interval = interval;
        let poll = interval.min(Duration::from_millis(100));
        let mut pending: Vec<RequestRecord> = Vec::new();
        let mut flushed_at: Option<Instant> = None;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            while let Ok(mut batch) = batches.try_recv() {
                pending.append(&mut batch);
                batches.recycle(batch);
            }
            let due = stopping || flushed_at.is_none_or(|at| at.elapsed() >= interval);
            let ready = if due {
                pending.len()
            } else {
                pending.len() - pending.len() % self.batch_size
            };
            // Due with nothing new still exports: that replays the spool.
            if ready > 0 || due {
                self.export(&pending[..ready]).await?;
                pending.drain(..ready);
            }
            if due {
                flushed_at = Some(Instant::now());
            }
            if stopping {
                return Ok(());
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    use vigil_model::{L7Protocol, Peer, ResponseStatus};

    use super::*;

    fn record(n: u64) -> RequestRecord {
        let peer = Peer {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 6379,
            pid: 1,
            process_name: "redis-server".into(),
            service: Default::default(),
            instance: Default::default(),
        };
        RequestRecord {
            start_us: n,
            duration_us: 10,
            protocol: L7Protocol::Redis,
            request_type: "GET".into(),
            resource: format!("GET k{n}").into(),
            endpoint: "GET".into(),
            status: ResponseStatus::Ok,
            code: None,
            client: peer.clone(),
            server: peer,
            trace_id: Default::default(),
        }
    }

    #[derive(Default)]
    struct FlakySink {
        up: AtomicBool,
        attempts: AtomicU64,
        stored: Mutex<Vec<u64>>,
    }

    impl Sink for &FlakySink {
        async fn write(&self, records: &[RequestRecord]) -> Result<(), AgentError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if !self.up.load(Ordering::Relaxed) {
                return Err(AgentError::Docker("down".into()));
            }
            self.stored
                .lock()
                .expect("lock")
                .extend(records.iter().map(|r| r.start_us));
            Ok(())
        }
    }

    #[tokio::test]
    async fn outage_spools_in_order_and_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FlakySink::default();
        sink.up.store(true, Ordering::Relaxed);
        let mut exporter =
            Exporter::new(&sink, Spool::open(dir.path(), 1 << 20).expect("spool"), 2);
        exporter
            .export(&[record(1), record(2), record(3)])
            .await
            .expect("export");
        sink.up.store(false, Ordering::Relaxed);
        exporter
            .export(&[record(4), record(5)])
            .await
            .expect("export");
        exporter.export(&[record(6)]).await.expect("export");
        assert_eq!(exporter.counters.spooled.load(Ordering::Relaxed), 3);
        // A restarted agent picks the spool up.
        drop(exporter);
        let mut exporter =
            Exporter::new(&sink, Spool::open(dir.path(), 1 << 20).expect("spool"), 2);
        sink.up.store(true, Ordering::Relaxed);
        exporter.export(&[record(7)]).await.expect("export");
        assert_eq!(*sink.stored.lock().expect("lock"), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(exporter.counters.replayed.load(Ordering::Relaxed), 3);
        assert!(Spool::open(dir.path(), 1 << 20).expect("spool").is_empty());
    }

    #[tokio::test]
    async fn above_the_bound_batches_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FlakySink::default();
        let one = {
            let mut probe = Spool::open(&dir.path().join("probe"), u64::MAX).expect("spool");
            probe.push(&[record(1)]).expect("push");
            probe.used_bytes()
        };
        let mut exporter = Exporter::new(
            &sink,
            Spool::open(&dir.path().join("s"), one * 2).expect("spool"),
            1,
        );
        exporter
            .export(&[record(1), record(2), record(3)])
            .await
            .expect("export");
        assert_eq!(exporter.counters.spooled.load(Ordering::Relaxed), 2);
        assert_eq!(exporter.counters.dropped.load(Ordering::Relaxed), 1);
        sink.up.store(true, Ordering::Relaxed);
        exporter.export(&[]).await.expect("export");
        assert_eq!(*sink.stored.lock().expect("lock"), [1, 2]);
    }

    /// A full batch goes out at once, not at the next interval, so the
    /// exporter holds about a batch at any rate; the rest goes out on stop.
    #[tokio::test]
    async fn full_batches_are_written_before_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink: &'static FlakySink = Box::leak(Box::default());
        sink.up.store(true, Ordering::Relaxed);
        let exporter = Exporter::new(sink, Spool::open(dir.path(), 1 << 20).expect("spool"), 10);
        let (sender, batches) = RecordBatches::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let run = tokio::spawn(exporter.run(batches, Duration::from_secs(3600), stop.clone()));
        // Past the first flush, which is due at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.send((1..=14).map(record).collect()).expect("send");
        sender.send((15..=25).map(record).collect()).expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.stored.lock().expect("lock").len() < 20 {
            assert!(Instant::now() < deadline, "full batches were held back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            sink.stored.lock().expect("lock").len(),
            20,
            "the partial batch waits"
        );
        stop.store(true, Ordering::Relaxed);
        run.await.expect("join").expect("run");
        assert_eq!(
            *sink.stored.lock().expect("lock"),
            (1..=25).collect::<Vec<u64>>()
        );
    }

    /// While the sink is down, batches go to the spool without a write
    /// attempt each: the sink is tried again an interval after it failed.
    #[tokio::test]
    async fn a_failed_sink_is_retried_per_interval_not_per_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink: &'static FlakySink = Box::leak(Box::default());
        let exporter = Exporter::new(sink, Spool::open(dir.path(), 1 << 20).expect("spool"), 5);
        let counters = exporter.counters.clone();
        let (sender, batches) = RecordBatches::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let run = tokio::spawn(exporter.run(batches, Duration::from_millis(1500), stop.clone()));
        for start in [1, 6, 11, 16] {
            sender
                .send((start..start + 5).map(record).collect())
                .expect("send");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.spooled.load(Ordering::Relaxed) < 20 {
            assert!(Instant::now() < deadline, "batches were not spooled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attempts = sink.attempts.load(Ordering::Relaxed);
        assert!(
            attempts <= 2,
            "{attempts} write attempts for 4 batches in one interval"
        );
        // Back up: the next try replays the spool, in order.
        sink.up.store(true, Ordering::Relaxed);
        while sink.stored.lock().expect("lock").len() < 20 {
            assert!(Instant::now() < deadline, "the spool was not replayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        run.await.expect("join").expect("run");
        assert_eq!(
            *sink.stored.lock().expect("lock"),
            (1..=20).collect::<Vec<u64>>()
        );
    }

    #[test]
    fn schema_versions_are_checked_with_clear_errors() {
        let known = known_schema_version();
        assert_eq!(check_schema(&[1, 2, known]).expect("ok"), known);
        let none = check_schema(&[]).expect_err("empty").to_string();
        assert!(none.contains("vigil db migrate"), "{none}");
        let old = check_schema(&[1]).expect_err("old").to_string();
        assert!(old.contains("at least 2"), "{old}");
        let new = check_schema(&[known + 1]).expect_err("new").to_string();
        assert!(new.contains("upgrade vigil-agent"), "{new}");
    }

    #[test]
    fn foreign_spool_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("00000000000000000001.jsonl"),
            "{\"vigil_spool\":99,\"records\":0}\n",
        )
        .expect("write");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let err = spool.oldest().expect_err("format").to_string();
        assert!(err.contains("format 99"), "{err}");
    }
}
