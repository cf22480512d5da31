//! Writers: DeepFlow's tables as its ingester would fill them (tests and demos)
//! and Vigil's own tables as the agent fills them. Each call is one batched
//! insert per table through the crate's typed `insert`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use vigil_model::{
    EntityKind, Event, Profile, RequestRecord, ResourceMetric, ResourceSeries, ResponseStatus,
    Topology,
};

use super::rows::{
    AgentRequestRow, ApplicationMapRow, ApplicationRow, EntityRow, EventRow, InProcessRow,
    L7FlowLogRow, ProfileStackRow, RelationRow, ResourceRow,
};
use super::{now_secs, schema, ClickHouseError, ClickHouseStore};

/// How [`ClickHouseStore::write_deepflow_profiles`] stores stacks in
/// `profile_location_str`, as DeepFlow's `compression_algo` column says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProfileCompression {
    /// Plain text (`compression_algo = ''`).
    None,
    /// zstd, DeepFlow's default (`compression_algo = 'zstd'`).
    #[default]
    Zstd,
}

/// eBPF, in DeepFlow's `signal_source`.
const SIGNAL_EBPF: u16 = 3;
/// OpenTelemetry, in DeepFlow's `signal_source`.
const SIGNAL_OTEL: u16 = 4;
/// TCP, in DeepFlow's `protocol`.
const PROTOCOL_TCP: u8 = 6;
/// Response, in DeepFlow's l7 `type`.
const TYPE_SESSION: u8 = 2;

/// The `agent_requests` row of `record`, borrowing its text. A named function,
/// not a closure: an iterator of closure-built rows is not `Send` across the
/// insert's awaits (rust-lang/rust#64552).
fn agent_row(record: &RequestRecord) -> AgentRequestRow<'_> {
    let addresses = addresses(record.client.ip, record.server.ip);
    AgentRequestRow {
        time: secs_of_us(record.start_us),
        start_time: record.start_us,
        response_duration: record.duration_us,
        is_ipv4: addresses.is_ipv4,
        ip4_0: addresses.ip4[0],
        ip4_1: addresses.ip4[1],
        ip6_0: addresses.ip6[0],
        ip6_1: addresses.ip6[1],
        client_port: record.client.port,
        server_port: record.server.port,
        l7_protocol: record.protocol.deepflow_code(),
        request_type: &record.request_type,
        request_resource: &record.resource,
        endpoint: &record.endpoint,
        response_status: record.status.deepflow_code(),
        response_code: record.code,
        signal_source: SIGNAL_EBPF,
        observation_point: "s-p",
        process_id_0: pid_i32(record.client.pid),
        process_id_1: pid_i32(record.server.pid),
        gprocess_id_0: gprocess_id(record.client.ip, record.client.pid),
        gprocess_id_1: gprocess_id(record.server.ip, record.server.pid),
        process_kname_0: &record.client.process_name,
        process_kname_1: &record.server.process_name,
        container_name_0: &record.client.service,
        container_name_1: &record.server.service,
        container_id_0: &record.client.instance,
        container_id_1: &record.server.instance,
        app_service: "",
        app_instance: "",
        trace_id: &record.trace_id,
    }
}

/// Addresses of both sides in DeepFlow's columns: `is_ipv4`, `ip4_0/1`, `ip6_0/1`.
struct Addresses {
    is_ipv4: u8,
    ip4: [u32; 2],
    ip6: [[u8; 16]; 2],
}

fn addresses(client: IpAddr, server: IpAddr) -> Addresses {
    match (client, server) {
        (IpAddr::V4(c), IpAddr::V4(s)) => Addresses {
            is_ipv4: 1,
            ip4: [u32::from(c), u32::from(s)],
            ip6: [[0; 16]; 2],
        },
        _ => Addresses {
            is_ipv4: 0,
            ip4: [0, 0],
            ip6: [v6_octets(client), v6_octets(server)],
        },
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A stand-in for DeepFlow's global process id: stable per (ip, pid), 0 when
/// the pid is unknown. FNV-1a of the text `{ip}#{pid}`, hashed as it is
/// written (one per agent row: no `String` is built).
fn gprocess_id(ip: IpAddr, pid: u32) -> u32 {
    if pid == 0 {
        return 0;
    }
    let mut hash = Fnv1a(0x811c_9dc5);
    let mut digits = itoa::Buffer::new();
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    hash.add(b".");
                }
                hash.add(digits.format(octet).as_bytes());
            }
        }
        // IPv6 text has zero compression rules: let Display write it.
        IpAddr::V6(_) => {
            let _ = write!(hash, "{ip}");
        }
    }
    hash.add(b"#");
    hash.add(digits.format(pid).as_bytes());
    hash.0.max(1)
}

/// 32-bit FNV-1a over whatever is written to it.
struct Fnv1a(u32);

impl Fnv1a {
    fn add(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u32::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.add(text.as_bytes());
        Ok(())
    }
}

fn secs_of_us(us: u64) -> u32 {
    u32::try_from(us / 1_000_000).unwrap_or(u32::MAX)
}

fn minute_of(secs: u32) -> u32 {
    secs - secs % 60
}

fn time_secs(t: vigil_model::Timestamp) -> u32 {
    u32::try_from(t.secs().max(0)).unwrap_or(u32::MAX)
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// Key of one `application_map.1m` row.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MapKey {
    time: u32,
    is_ipv4: u8,
    ip4: [u32; 2],
    ip6: [[u8; 16]; 2],
    server_port: u16,
    l7_protocol: u8,
    observation_point: &'static str,
    signal_source: u16,
    app_service: String,
    app_instance: String,
    endpoint: String,
    gprocess_id: [u32; 2],
}

/// Meters of one minute, as DeepFlow's `app_meter` accumulates them.
#[derive(Clone, Copy, Default)]
struct Meter {
    request: u32,
    response: u32,
    rrt_sum: f64,
    rrt_count: u64,
    rrt_max: u32,
    client_error: u32,
    server_error: u32,
    timeout: u32,
}

impl Meter {
    fn add(&mut self, record: &RequestRecord) {
        self.request = self.request.saturating_add(1);
        let duration = u32::try_from(record.duration_us).unwrap_or(u32::MAX);
        match record.status {
            ResponseStatus::Unknown => self.timeout = self.timeout.saturating_add(1),
            status => {
                self.response = self.response.saturating_add(1);
                self.rrt_sum += record.duration_us as f64;
                self.rrt_count += 1;
                self.rrt_max = self.rrt_max.max(duration);
                match status {
                    ResponseStatus::ServerError => {
                        self.server_error = self.server_error.saturating_add(1);
                    }
                    ResponseStatus::ClientError => {
                        self.client_error = self.client_error.saturating_add(1);
                    }
                    _ => {}
                }
            }
        }
    }
}

impl ClickHouseStore {
    /// **Tests and demos only.** Writes requests into the DeepFlow mirror as
    /// DeepFlow 6.6 would: two `l7_flow_log` rows per request (the client
    /// process's eBPF view `c-p`, and the server's view — `s-app` with
    /// `app_service` when the server declared a service name, else eBPF `s-p`),
    /// plus the per-minute `application.1m` (server side) and
    /// `application_map.1m` (both sides) aggregates computed here.
    ///
    /// `time` is the second the request started, so minutes match the simulator's.
    pub async fn write_deepflow_records(
        &self,
        records: &[RequestRecord],
    ) -> Result<(), ClickHouseError> {
        let mut l7 = Vec::with_capacity(records.len() * 2);
        let mut maps: BTreeMap<MapKey, Meter> = BTreeMap::new();
        for record in records {
            let addresses = addresses(record.client.ip, record.server.ip);
            let gpids = [
                gprocess_id(record.client.ip, record.client.pid),
                gprocess_id(record.server.ip, record.server.pid),
            ];
            let declared = !record.server.service.is_empty();
            let server_view = if declared {
                (
                    "s-app",
                    SIGNAL_OTEL,
                    record.server.service.to_string(),
                    record.server.instance.to_string(),
                )
            } else {
                ("s-p", SIGNAL_EBPF, String::new(), String::new())
            };
            let views = [
                ("c-p", SIGNAL_EBPF, String::new(), String::new()),
                server_view,
            ];
            let time = secs_of_us(record.start_us);
            for (observation_point, signal_source, app_service, app_instance) in views {
                l7.push(L7FlowLogRow {
                    time,
                    start_time: record.start_us,
                    end_time: record.start_us.saturating_add(record.duration_us),
                    response_duration: record.duration_us,
                    is_ipv4: addresses.is_ipv4,
                    ip4_0: addresses.ip4[0],
                    ip4_1: addresses.ip4[1],
                    ip6_0: addresses.ip6[0],
                    ip6_1: addresses.ip6[1],
                    protocol: PROTOCOL_TCP,
                    client_port: record.client.port,
                    server_port: record.server.port,
                    l7_protocol: record.protocol.deepflow_code(),
                    l7_protocol_str: record.protocol.name(),
                    kind: TYPE_SESSION,
                    request_type: record.request_type.to_string(),
                    request_domain: String::new(),
                    request_resource: record.resource.to_string(),
                    endpoint: record.endpoint.to_string(),
                    response_status: record.status.deepflow_code(),
                    response_code: record.code,
                    response_exception: String::new(),
                    signal_source,
                    observation_point: observation_point.to_owned(),
                    process_id_0: pid_i32(record.client.pid),
                    process_id_1: pid_i32(record.server.pid),
                    process_kname_0: record.client.process_name.to_string(),
                    process_kname_1: record.server.process_name.to_string(),
                    gprocess_id_0: gpids[0],
                    gprocess_id_1: gpids[1],
                    trace_id: record.trace_id.to_string(),
                    span_id: String::new(),
                    app_service: app_service.clone(),
                    app_instance: app_instance.clone(),
                    agent_id: 1,
                });
                let key = MapKey {
                    time: minute_of(time),
                    is_ipv4: addresses.is_ipv4,
                    ip4: addresses.ip4,
                    ip6: addresses.ip6,
                    server_port: record.server.port,
                    l7_protocol: record.protocol.deepflow_code(),
                    observation_point,
                    signal_source,
                    app_service,
                    app_instance,
                    endpoint: record.endpoint.to_string(),
                    gprocess_id: gpids,
                };
                maps.entry(key).or_default().add(record);
            }
        }
        let mut applications: BTreeMap<MapKey, Meter> = BTreeMap::new();
        let mut map_rows = Vec::with_capacity(maps.len());
        for (key, meter) in maps {
            if key.observation_point.starts_with('s') {
                let mut single = key.clone();
                single.ip4[0] = 0;
                single.ip6[0] = [0; 16];
                single.gprocess_id[0] = 0;
                let total = applications.entry(single).or_default();
                merge(total, &meter);
            }
            map_rows.push(ApplicationMapRow {
                time: key.time,
                is_ipv4: key.is_ipv4,
                ip4_0: key.ip4[0],
                ip4_1: key.ip4[1],
                ip6_0: key.ip6[0],
                ip6_1: key.ip6[1],
                server_port: key.server_port,
                protocol: PROTOCOL_TCP,
                l7_protocol: key.l7_protocol,
                observation_point: key.observation_point.to_owned(),
                signal_source: key.signal_source,
                app_service: key.app_service,
                app_instance: key.app_instance,
                endpoint: key.endpoint,
                gprocess_id_0: key.gprocess_id[0],
                gprocess_id_1: key.gprocess_id[1],
                agent_id: 1,
                request: meter.request,
                response: meter.response,
                rrt_sum: meter.rrt_sum,
                rrt_count: meter.rrt_count,
                rrt_max: meter.rrt_max,
                client_error: meter.client_error,
                server_error: meter.server_error,
                timeout: meter.timeout,
            });
        }
        let app_rows: Vec<ApplicationRow> = applications
            .into_iter()
            .map(|(key, meter)| ApplicationRow {
                time: key.time,
                is_ipv4: key.is_ipv4,
                ip4: key.ip4[1],
                ip6: key.ip6[1],
                server_port: key.server_port,
                protocol: PROTOCOL_TCP,
                l7_protocol: key.l7_protocol,
                role: 1,
                observation_point: key.observation_point.to_owned(),
                signal_source: key.signal_source,
                app_service: key.app_service,
                app_instance: key.app_instance,
                endpoint: key.endpoint,
                gprocess_id: key.gprocess_id[1],
                agent_id: 1,
                request: meter.request,
                response: meter.response,
                rrt_sum: meter.rrt_sum,
                rrt_count: meter.rrt_count,
                rrt_max: meter.rrt_max,
                client_error: meter.client_error,
                server_error: meter.server_error,
                timeout: meter.timeout,
            })
            .collect();
        self.insert(&self.l7_flow_log_table(), &l7).await?;
        self.insert(&self.application_table(), &app_rows).await?;
        self.insert(&self.application_map_table(), &map_rows).await
    }

    /// **Tests and demos only.** Writes on-CPU profiles into DeepFlow's
    /// `profile.in_process` mirror, one row per stack at the profile's start,
    /// with `app_service` = the entity's name and values in microseconds.
    pub async fn write_deepflow_profiles(
        &self,
        profiles: &[Profile],
        compression: ProfileCompression,
    ) -> Result<(), ClickHouseError> {
        let mut rows = Vec::new();
        for profile in profiles {
            for stack in &profile.stacks {
                let (location, algo) = match compression {
                    ProfileCompression::None => (stack.frames.as_bytes().to_vec(), ""),
                    ProfileCompression::Zstd => (
                        zstd::encode_all(stack.frames.as_bytes(), 3).map_err(|error| {
                            ClickHouseError::Query {
                                what: "compressing a profile stack".to_owned(),
                                detail: error.to_string(),
                            }
                        })?,
                        "zstd",
                    ),
                };
                rows.push(InProcessRow {
                    time: time_secs(profile.range.start),
                    app_service: profile.entity.name().to_owned(),
                    profile_location_str: location,
                    compression_algo: algo.to_owned(),
                    profile_value: i64::try_from(stack.value).unwrap_or(i64::MAX),
                    profile_value_unit: "us".to_owned(),
                    profile_event_type: "on-cpu".to_owned(),
                    profile_language_type: "eBPF".to_owned(),
                    process_id: 0,
                    gprocess_id: 0,
                    process_start_time: 0,
                    is_ipv4: 1,
                    ip4: 0,
                    ip6: [0; 16],
                    trace_id: String::new(),
                    span_name: String::new(),
                    tag_names: Vec::new(),
                    tag_values: Vec::new(),
                });
            }
        }
        self.insert(&self.in_process_table(), &rows).await
    }

    /// Writes requests into Vigil's `agent_requests` as the agent exports
    /// them: one server-side row (`s-p`, eBPF) per request, with the peers'
    /// resolved names ([`vigil_model::Peer::service`]) as container names and
    /// their instances as container ids.
    pub async fn write_agent_records(
        &self,
        records: &[RequestRecord],
    ) -> Result<(), ClickHouseError> {
        self.insert_rows::<AgentRequestRow<'static>, _>(
            &self.vigil_table(&schema::AGENT_REQUESTS),
            records.iter().map(agent_row),
        )
        .await
    }

    /// Writes resource series into `resource_metrics`: one row per entity and
    /// minute, the metrics not given as NaN; NaN values (gaps) are not written.
    pub async fn write_resources(&self, series: &[ResourceSeries]) -> Result<(), ClickHouseError> {
        let mut rows: BTreeMap<(String, u32), ResourceRow> = BTreeMap::new();
        for one in series {
            for (index, value) in one.series.values.iter().enumerate() {
                if value.is_nan() {
                    continue;
                }
                let time = time_secs(one.series.time_at(index));
                let row = rows
                    .entry((one.entity.as_str().to_owned(), time))
                    .or_insert_with(|| ResourceRow {
                        time,
                        entity: one.entity.as_str().to_owned(),
                        cpu_cores: f64::NAN,
                        memory_bytes: f64::NAN,
                        tcp_retransmits: f64::NAN,
                        tcp_resets: f64::NAN,
                    });
                let slot = match one.metric {
                    ResourceMetric::CpuCores => &mut row.cpu_cores,
                    ResourceMetric::MemoryBytes => &mut row.memory_bytes,
                    ResourceMetric::TcpRetransmits => &mut row.tcp_retransmits,
                    ResourceMetric::TcpResets => &mut row.tcp_resets,
                };
                *slot = *value;
            }
        }
        let rows: Vec<ResourceRow> = rows.into_values().collect();
        self.insert(&self.vigil_table(&schema::RESOURCE_METRICS), &rows)
            .await
    }

    /// Writes profiles into `profile_stacks`, one row per stack at the profile's start.
    pub async fn write_profiles(&self, profiles: &[Profile]) -> Result<(), ClickHouseError> {
        let mut rows = Vec::new();
        for profile in profiles {
            let container_name = if profile.entity.kind() == EntityKind::Container {
                profile.entity.name().to_owned()
            } else {
                String::new()
            };
            for stack in &profile.stacks {
                rows.push(ProfileStackRow {
                    time: time_secs(profile.range.start),
                    entity: profile.entity.as_str().to_owned(),
                    container_name: container_name.clone(),
                    pid: 0,
                    process_name: stack
                        .frames
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    frames: stack.frames.clone(),
                    value: stack.value,
                    unit: profile.unit.clone(),
                });
            }
        }
        self.insert(&self.vigil_table(&schema::PROFILE_STACKS), &rows)
            .await
    }

    /// Writes events into `events`.
    pub async fn write_events(&self, events: &[Event]) -> Result<(), ClickHouseError> {
        let rows: Vec<EventRow> = events
            .iter()
            .map(|event| EventRow {
                time: time_secs(event.time),
                entity: event.entity.as_str().to_owned(),
                kind: event.kind.as_str().to_owned(),
                detail: event.detail.clone(),
            })
            .collect();
        self.insert(&self.vigil_table(&schema::EVENTS), &rows).await
    }

    /// Writes a placement/identity snapshot (entities with attributes, and
    /// relations), stamped now. Later snapshots of an entity replace earlier ones.
    pub async fn write_topology(&self, topology: &Topology) -> Result<(), ClickHouseError> {
        let time = now_secs();
        let entities: Vec<EntityRow> = topology
            .entities
            .iter()
            .map(|entity| EntityRow {
                time,
                entity: entity.id.as_str().to_owned(),
                kind: entity.id.kind().as_str().to_owned(),
                attribute_names: entity.attributes.keys().cloned().collect(),
                attribute_values: entity.attributes.values().cloned().collect(),
            })
            .collect();
        let relations: Vec<RelationRow> = topology
            .relations
            .iter()
            .map(|relation| RelationRow {
                time,
                from_entity: relation.from.as_str().to_owned(),
                to_entity: relation.to.as_str().to_owned(),
                kind: relation.kind.as_str().to_owned(),
            })
            .collect();
        self.insert(&self.vigil_table(&schema::ENTITIES), &entities)
            .await?;
        self.insert(&self.vigil_table(&schema::RELATIONS), &relations)
            .await
    }

    /// `flow_log.l7_flow_log` in the configured database.
    pub(crate) fn l7_flow_log_table(&self) -> String {
        format!("{}.l7_flow_log", self.config.flow_log_database)
    }

    /// `flow_metrics.` + backquoted `application.1m`.
    pub(crate) fn application_table(&self) -> String {
        format!("{}.`application.1m`", self.config.flow_metrics_database)
    }

    /// `flow_metrics.` + backquoted `application_map.1m`.
    pub(crate) fn application_map_table(&self) -> String {
        format!("{}.`application_map.1m`", self.config.flow_metrics_database)
    }

    /// `profile.in_process` in the configured database.
    pub(crate) fn in_process_table(&self) -> String {
        format!("{}.in_process", self.config.profile_database)
    }
}

fn merge(total: &mut Meter, meter: &Meter) {
    total.request = total.request.saturating_add(meter.request);
    total.response = total.response.saturating_add(meter.response);
    total.rrt_sum += meter.rrt_sum;
    total.rrt_count += meter.rrt_count;
    total.rrt_max = total.rrt_max.max(meter.rrt_max);
    total.client_error = total.client_error.saturating_add(meter.client_error);
    total.server_error = total.server_error.saturating_add(meter.server_error);
    total.timeout = total.timeout.saturating_add(meter.timeout);
}

/// `vigil serve` in front of ClickHouse: an agent's batch goes to Vigil's
/// tables as if the agent had written them itself (raw requests, profiles,
/// resources). ClickHouse aggregates at read time, so nothing is aggregated here.
#[async_trait::async_trait]
impl vigil_model::TelemetryIngest for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn ingest(
        &self,
        batch: &vigil_model::IngestBatch,
    ) -> Result<vigil_model::IngestReceipt, vigil_model::SourceError> {
        if !batch.records.is_empty() {
            self.write_agent_records(&batch.records).await?;
        }
        if !batch.profiles.is_empty() {
            self.write_profiles(&batch.profiles).await?;
        }
        if !batch.resources.is_empty() {
            self.write_resources(&batch.resources).await?;
        }
        Ok(vigil_model::IngestReceipt {
            protocol: vigil_model::INGEST_PROTOCOL_VERSION,
            records: batch.records.len(),
            profiles: batch.profiles.len(),
            resources: batch.resources.len(),
            minutes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id as first defined: FNV-1a of the formatted text. Stored ids must
    /// not change, or one process would have two across an upgrade.
    fn reference(ip: IpAddr, pid: u32) -> u32 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in format!("{ip}#{pid}").bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        hash.max(1)
    }

    #[test]
    fn gprocess_ids_hash_the_address_and_pid_text() {
        for (ip, pid) in [
            ("127.0.0.1", 1),
            ("10.0.255.7", 4_294_967_295),
            ("0.0.0.0", 42),
            ("::1", 7),
            ("2001:db8::8a2e:370:7334", 31_337),
            ("::ffff:192.0.2.1", 9),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(gprocess_id(ip, pid), reference(ip, pid), "{ip}#{pid}");
        }
        assert_eq!(gprocess_id("10.0.0.1".parse().expect("ip"), 0), 0);
    }
}
