//! The agent → server ingest protocol ([`IngestBatch`], versioned by
//! [`INGEST_PROTOCOL_VERSION`]), the [`TelemetryIngest`] trait a server writes
//! it through, and [`aggregate_records`]: the pure aggregation of raw
//! [`RequestRecord`]s into the per-minute [`TelemetryBatch`] the embedded store
//! keeps.
//!
//! The aggregation names entities and computes figures the way
//! `ClickHouseStore` does over the agent's request log (server-side rows,
//! no container snapshots), so the same records read the same from either
//! store: the server is its container name (`Peer::service`) else
//! `process@ip:port`, its kind comes from the protocol; a client is named like
//! the same process is named when it serves (by ip and pid among the records
//! aggregated together), else by its container, else `service:process@ip`;
//! quantiles interpolate linearly between order statistics, as ClickHouse's
//! `quantile` does below 8192 values.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::batch::{StatementStep, TelemetryBatch};
use crate::entity::{Entity, EntityId, EntityKind, L7Protocol, Relation, RelationKind};
use crate::record::RequestRecord;
use crate::signal::{
    EdgeMetrics, Profile, RequestMetrics, RequestPoint, RequestSample, RequestSeries,
    ResourceSeries, StatementStats,
};
use crate::source::SourceError;
use crate::time::{Timestamp, MINUTE_SECS};

/// Version of the agent ↔ server ingest protocol. Bump it when
/// [`IngestBatch`] (or what its parts mean) changes incompatibly.
pub const INGEST_PROTOCOL_VERSION: u32 = 1;

/// What an agent sends to `vigil serve` in one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    /// The sender's [`INGEST_PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Raw requests, as captured.
    #[serde(default)]
    pub records: Vec<RequestRecord>,
    /// On-CPU profiles (one minute each).
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Resource series (60 s steps).
    #[serde(default)]
    pub resources: Vec<ResourceSeries>,
}

impl IngestBatch {
    /// An empty batch of this build's protocol (also the agent's start-up handshake).
    pub fn new() -> Self {
        Self {
            protocol: INGEST_PROTOCOL_VERSION,
            ..Self::default()
        }
    }

    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.profiles.is_empty() && self.resources.is_empty()
    }
}

/// `None` when an agent speaking `agent` can talk to this server; otherwise
/// the message, naming both versions and the side to upgrade.
pub fn protocol_mismatch(agent: u32) -> Option<String> {
    let server = INGEST_PROTOCOL_VERSION;
    if agent == server {
        return None;
    }
    let upgrade = if agent < server {
        "upgrade vigil-agent to the server's release"
    } else {
        "upgrade vigil serve to the agent's release"
    };
    Some(format!(
        "agent speaks ingest protocol version {agent}, this server speaks version {server}: {upgrade}"
    ))
}

/// What one ingest stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReceipt {
    /// The server's [`INGEST_PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Request records accepted.
    pub records: usize,
    /// Profiles accepted.
    pub profiles: usize,
    /// Resource series accepted.
    pub resources: usize,
    /// Minutes of request aggregates (re)computed.
    pub minutes: usize,
}

/// Where ingested telemetry is written. Stores implement it; the API writes
/// through it without knowing which store it is.
#[async_trait]
pub trait TelemetryIngest: Send + Sync {
    /// `clickhouse` or `embedded`, for messages.
    fn backend(&self) -> &'static str;

    /// Stores a batch. Writing the same records again must not count them twice.
    async fn ingest(&self, batch: &IngestBatch) -> Result<IngestReceipt, SourceError>;
}

/// Which requests become [`RequestSample`]s.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateOptions {
    /// Requests at least this slow are kept as samples (failed ones always are).
    pub sample_min_duration_ms: f64,
    /// At most this many samples per server and minute, slowest first.
    pub samples_per_server_minute: usize,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        Self {
            sample_min_duration_ms: 100.0,
            samples_per_server_minute: 100,
        }
    }
}

/// The minute (unix seconds, floored) a record falls in, as ClickHouse buckets it.
pub fn record_minute(record: &RequestRecord) -> i64 {
    let secs = i64::try_from(record.start_us / 1_000_000).unwrap_or(i64::MAX);
    secs - secs.rem_euclid(i64::from(MINUTE_SECS))
}

/// Address text of one side, as ClickHouse prints the agent's columns: IPv4
/// when both sides are IPv4, else both as IPv6 (IPv4-mapped).
fn ip_text(record: &RequestRecord, ip: IpAddr) -> String {
    match (record.client.ip, record.server.ip, ip) {
        (IpAddr::V4(_), IpAddr::V4(_), ip) => ip.to_string(),
        (_, _, IpAddr::V4(v4)) => v4.to_ipv6_mapped().to_string(),
        (_, _, ip) => ip.to_string(),
    }
}

/// The serving entity of a record.
pub fn server_id(record: &RequestRecord) -> EntityId {
    let kind = record.protocol.server_kind();
    if !record.server.service.is_empty() {
        return EntityId::new(kind, &record.server.service);
    }
    let name = format!(
        "{}@{}:{}",
        record.server.process_name,
        ip_text(record, record.server.ip),
        record.server.port
    );
    EntityId::new(kind, &name)
}

/// `ip#pid` of the client side (the key servers are looked up by).
fn client_key(record: &RequestRecord) -> String {
    format!(
        "{}#{}",
        ip_text(record, record.client.ip),
        record.client.pid
    )
}

/// The calling entity of a record, given the server processes seen (`ip#pid` → id).
fn client_id(record: &RequestRecord, servers: &HashMap<String, EntityId>) -> EntityId {
    if let Some(id) = servers.get(&client_key(record)) {
        return id.clone();
    }
    if !record.client.service.is_empty() {
        return EntityId::new(EntityKind::Service, &record.client.service);
    }
    let name = format!(
        "{}@{}",
        record.client.process_name,
        ip_text(record, record.client.ip)
    );
    EntityId::new(EntityKind::Service, &name)
}

/// The `level` quantile of ascending `sorted`, interpolating linearly between
/// neighbours (ClickHouse's `quantile`); NaN when empty.
pub fn quantile(sorted: &[f64], level: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let last = sorted.len() - 1;
    let index = (level * last as f64).clamp(0.0, last as f64);
    let low = index.floor() as usize;
    let fraction = index - low as f64;
    if low >= last {
        return sorted[last];
    }
    sorted[low] + fraction * (sorted[low + 1] - sorted[low])
}

/// Durations (µs) and outcomes of one group of requests.
#[derive(Default)]
struct Group {
    durations_us: Vec<f64>,
    errors: u64,
}

impl Group {
    fn add(&mut self, record: &RequestRecord) {
        self.durations_us.push(record.duration_us as f64);
        if record.status.is_server_error() {
            self.errors += 1;
        }
    }

    fn sorted(&mut self) -> &[f64] {
        self.durations_us.sort_by(f64::total_cmp);
        &self.durations_us
    }

    fn mean_ms(&self) -> f64 {
        self.durations_us.iter().sum::<f64>() / self.durations_us.len() as f64 / 1000.0
    }

    fn point(&mut self) -> RequestPoint {
        let mean = self.mean_ms();
        let (requests, errors) = (self.durations_us.len() as f64, self.errors as f64);
        let sorted = self.sorted();
        RequestPoint {
            requests,
            errors,
            latency_mean_ms: mean,
            latency_p50_ms: quantile(sorted, 0.5) / 1000.0,
            latency_p90_ms: quantile(sorted, 0.9) / 1000.0,
            latency_p99_ms: quantile(sorted, 0.99) / 1000.0,
        }
    }
}

/// Per-minute metrics of one key as a [`RequestMetrics`] from its first to its
/// last minute (`NaN` in minutes without requests).
fn metrics_of(minutes: BTreeMap<i64, Group>) -> Option<RequestMetrics> {
    let first = *minutes.keys().next()?;
    let last = *minutes.keys().next_back()?;
    let len = usize::try_from((last - first) / i64::from(MINUTE_SECS) + 1).ok()?;
    let mut metrics = RequestMetrics::empty(Timestamp(first), MINUTE_SECS, len);
    for (minute, mut group) in minutes {
        let index = usize::try_from((minute - first) / i64::from(MINUTE_SECS)).ok()?;
        metrics.set(index, group.point());
    }
    Some(metrics)
}

/// Aggregates raw records into per-minute request series per server, edge
/// series per (client, server, protocol), statement statistics per database
/// or cache shape, slow and failed samples, and the topology they imply.
///
/// Pure: the same records (in any order) give the same batch. Give it every
/// record of the minutes concerned: a store replaces a minute's values with
/// what a batch says about it.
pub fn aggregate_records(records: &[RequestRecord], options: &AggregateOptions) -> TelemetryBatch {
    let mut servers: HashMap<String, EntityId> = HashMap::new();
    let mut server_entities: BTreeMap<EntityId, Entity> = BTreeMap::new();
    for record in records {
        let id = server_id(record);
        if record.server.pid != 0 {
            let key = format!(
                "{}#{}",
                ip_text(record, record.server.ip),
                record.server.pid
            );
            servers
                .entry(key)
                .and_modify(|known| {
                    if id < *known {
                        *known = id.clone();
                    }
                })
                .or_insert_with(|| id.clone());
        }
        server_entities.entry(id.clone()).or_insert_with(|| {
            Entity::new(id)
                .with("ip", ip_text(record, record.server.ip))
                .with("port", record.server.port.to_string())
                .with("process_name", record.server.process_name.clone())
                .with("protocol", record.protocol.name())
        });
    }

    type StatementKey = (EntityId, L7Protocol, String, String);
    let mut requests: BTreeMap<EntityId, BTreeMap<i64, Group>> = BTreeMap::new();
    let mut edges: BTreeMap<(EntityId, EntityId, L7Protocol), BTreeMap<i64, Group>> =
        BTreeMap::new();
    let mut statements: BTreeMap<(i64, StatementKey), (Group, f64)> = BTreeMap::new();
    let mut candidates: BTreeMap<(EntityId, i64), Vec<RequestSample>> = BTreeMap::new();
    let mut clients: BTreeMap<EntityId, Entity> = BTreeMap::new();
    for record in records {
        let minute = record_minute(record);
        let server = server_id(record);
        let client = client_id(record, &servers);
        requests
            .entry(server.clone())
            .or_default()
            .entry(minute)
            .or_default()
            .add(record);
        edges
            .entry((client.clone(), server.clone(), record.protocol))
            .or_default()
            .entry(minute)
            .or_default()
            .add(record);
        if matches!(server.kind(), EntityKind::Database | EntityKind::Cache) {
            let (group, max) = statements
                .entry((
                    minute,
                    (
                        server.clone(),
                        record.protocol,
                        record.request_type.to_string(),
                        record.resource.to_string(),
                    ),
                ))
                .or_insert_with(|| (Group::default(), 0.0));
            group.add(record);
            *max = max.max(record.duration_us as f64);
        }
        let duration_ms = record.duration_us as f64 / 1000.0;
        if record.status.is_server_error() || duration_ms >= options.sample_min_duration_ms {
            let secs = i64::try_from(record.start_us / 1_000_000).unwrap_or(i64::MAX);
            candidates
                .entry((server.clone(), minute))
                .or_default()
                .push(RequestSample {
                    time: Timestamp(secs),
                    client: Some(client.clone()),
                    server: server.clone(),
                    protocol: record.protocol,
                    request_type: record.request_type.to_string(),
                    resource: record.resource.to_string(),
                    duration_ms,
                    status: record.status,
                    code: record.code,
                    trace_id: (!record.trace_id.is_empty()).then(|| record.trace_id.to_string()),
                });
        }
        clients
            .entry(client.clone())
            .or_insert_with(|| Entity::new(client));
    }

    let mut batch = TelemetryBatch::default();
    for (entity, minutes) in requests {
        if let Some(metrics) = metrics_of(minutes) {
            batch.requests.push(RequestSeries { entity, metrics });
        }
    }
    for ((client, server, protocol), minutes) in edges {
        if let Some(metrics) = metrics_of(minutes) {
            batch.topology.relations.push(Relation {
                from: client.clone(),
                to: server.clone(),
                kind: RelationKind::Calls,
            });
            batch.edges.push(EdgeMetrics {
                client,
                server,
                protocol,
                metrics,
            });
        }
    }
    for ((minute, (server, protocol, request_type, shape)), (mut group, max_us)) in statements {
        let latency_mean_ms = group.mean_ms();
        let errors = group.errors;
        let sorted = group.sorted();
        batch.statements.push(StatementStep {
            time: Timestamp(minute),
            stats: StatementStats {
                server,
                protocol,
                request_type,
                shape,
                count: sorted.len() as u64,
                errors,
                latency_mean_ms,
                latency_p99_ms: quantile(sorted, 0.99) / 1000.0,
                latency_max_ms: max_us / 1000.0,
            },
        });
    }
    for (_, mut samples) in candidates {
        samples.sort_by(|a, b| {
            b.duration_ms
                .total_cmp(&a.duration_ms)
                .then_with(|| a.time.cmp(&b.time))
                .then_with(|| a.resource.cmp(&b.resource))
        });
        samples.truncate(options.samples_per_server_minute);
        batch.samples.extend(samples);
    }
    for (id, entity) in clients {
        server_entities.entry(id).or_insert(entity);
    }
    batch.topology.entities = server_entities.into_values().collect();
    batch.topology.normalise();
    batch
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::record::Peer;
    use crate::signal::ResponseStatus;
    use smol_str::SmolStr;

    fn peer(ip: [u8; 4], port: u16, pid: u32, name: &str) -> Peer {
        Peer {
            ip: IpAddr::V4(Ipv4Addr::from(ip)),
            port,
            pid,
            process_name: name.into(),
            service: SmolStr::default(),
            instance: SmolStr::default(),
        }
    }

    fn record(
        start_s: u64,
        ms: u64,
        protocol: L7Protocol,
        client: Peer,
        server: Peer,
    ) -> RequestRecord {
        RequestRecord {
            start_us: start_s * 1_000_000,
            duration_us: ms * 1000,
            protocol,
            request_type: "GET".into(),
            resource: "GET user:*".into(),
            endpoint: "GET".into(),
            status: ResponseStatus::Ok,
            code: None,
            client,
            server,
            trace_id: SmolStr::default(),
        }
    }

    #[test]
    fn quantiles_interpolate_like_clickhouse() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&values, 0.5), 2.5);
        assert!((quantile(&values, 0.9) - 3.7).abs() < 1e-9);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn records_aggregate_per_server_minute_with_clients_named_as_servers() {
        let redis = peer([10, 0, 0, 5], 6379, 7, "redis-server");
        let api = peer([10, 0, 0, 9], 8080, 42, "api");
        let api_as_client = peer([10, 0, 0, 9], 50_000, 42, "api");
        let curl = peer([10, 0, 0, 1], 40_000, 3, "curl");
        let mut slow = record(
            125,
            300,
            L7Protocol::Redis,
            api_as_client.clone(),
            redis.clone(),
        );
        slow.status = ResponseStatus::ServerError;
        let records = vec![
            record(
                120,
                10,
                L7Protocol::Redis,
                api_as_client.clone(),
                redis.clone(),
            ),
            slow,
            record(250, 20, L7Protocol::Redis, api_as_client, redis),
            record(121, 5, L7Protocol::Http, curl, api),
        ];
        let batch = aggregate_records(&records, &AggregateOptions::default());
        let cache = EntityId::new(EntityKind::Cache, "redis-server@10.0.0.5:6379");
        let service = EntityId::new(EntityKind::Service, "api@10.0.0.9:8080");
        let series = batch
            .requests
            .iter()
            .find(|s| s.entity == cache)
            .expect("cache series");
        assert_eq!(series.metrics.start, Timestamp(120));
        assert_eq!(series.metrics.requests.len(), 3);
        assert_eq!(series.metrics.requests[0], 2.0);
        assert_eq!(series.metrics.errors[0], 1.0);
        assert_eq!(series.metrics.latency_mean_ms[0], 155.0);
        assert!(series.metrics.requests[1].is_nan());
        assert_eq!(series.metrics.requests[2], 1.0);
        // The client of the cache is the api process, named as it serves.
        assert!(batch
            .edges
            .iter()
            .any(|e| e.client == service && e.server == cache));
        assert!(batch
            .topology
            .relations
            .iter()
            .any(|r| r.from == service && r.to == cache && r.kind == RelationKind::Calls));
        let statements: Vec<_> = batch
            .statements
            .iter()
            .filter(|s| s.time == Timestamp(120))
            .collect();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].stats.count, 2);
        assert_eq!(statements[0].stats.latency_max_ms, 300.0);
        assert_eq!(batch.samples.len(), 1);
        assert_eq!(batch.samples[0].client.as_ref(), Some(&service));
        let shuffled: Vec<_> = records.iter().rev().cloned().collect();
        // NaN gaps compare unequal; their JSON (null) does not.
        let json = |b: &TelemetryBatch| serde_json::to_string(b).expect("json");
        assert_eq!(
            json(&aggregate_records(&shuffled, &AggregateOptions::default())),
            json(&batch)
        );
    }

    #[test]
    fn version_mismatches_name_both_sides() {
        assert!(protocol_mismatch(INGEST_PROTOCOL_VERSION).is_none());
        let newer = protocol_mismatch(INGEST_PROTOCOL_VERSION + 1).expect("newer");
        assert!(newer.contains("upgrade vigil serve"), "{newer}");
        let older = protocol_mismatch(0).expect("older");
        assert!(
            older.contains("upgrade vigil-agent") && older.contains("version 0"),
            "{older}"
        );
    }
}
