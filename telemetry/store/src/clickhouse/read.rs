//! [`TelemetrySource`] for [`ClickHouseStore`]: every method sends one or a few
//! aggregating queries; see the module docs of [`super`] for which rows count
//! and how entities are named.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::Deserialize;
use vigil_model::{
    CallEdge, EdgeMetrics, Entity, EntityFilter, EntityId, EntityKind, Event, EventKind,
    FoldedStack, L7Protocol, Profile, Relation, RelationKind, RequestMetrics, RequestPoint,
    RequestSample, RequestSeries, ResourceMetric, ResourceSeries, ResponseStatus, SampleQuery,
    Series, SeriesQuery, SourceError, StatementOrder, StatementQuery, StatementStats,
    StatementStep, StatementStepQuery, TelemetrySource, TimeRange, Timestamp, Topology,
};

use super::sql::{Bind, Sql};
use super::{schema, ClickHouseError, ClickHouseStore, RequestLog};

/// Rows Vigil counts: server-side observations only (see the module docs).
const SERVER_SIDE: &str = "startsWith(observation_point, 's')";

/// The request log a query reads, and how it names containers.
struct Log {
    table: String,
    /// Whether the table has `container_name_0/1` (Vigil's agent log).
    has_containers: bool,
}

/// DeepFlow `l7_protocol` codes whose servers are not services, with their kind.
fn non_service_codes(kinds: &[EntityKind]) -> Vec<(u8, EntityKind)> {
    (0..=u8::MAX)
        .map(|code| (code, L7Protocol::from_deepflow_code(code).server_kind()))
        .filter(|(_, kind)| {
            *kind != EntityKind::Service && (kinds.is_empty() || kinds.contains(kind))
        })
        .collect()
}

/// SQL for the server's entity kind from `l7_protocol`, per [`L7Protocol::server_kind`].
fn kind_sql() -> String {
    let codes = non_service_codes(&[]);
    let from: Vec<String> = codes.iter().map(|(code, _)| code.to_string()).collect();
    let to: Vec<String> = codes
        .iter()
        .map(|(_, kind)| format!("'{}'", kind.as_str()))
        .collect();
    format!(
        "transform(toUInt32(l7_protocol), [{}], [{}], 'service')",
        from.iter()
            .map(|c| format!("toUInt32({c})"))
            .collect::<Vec<_>>()
            .join(", "),
        to.join(", ")
    )
}

/// SQL for the text of side `side`'s address (0 client, 1 server).
fn ip_sql(side: u8) -> String {
    format!("if(is_ipv4 = 1, IPv4NumToString(ip4_{side}), IPv6NumToString(ip6_{side}))")
}

fn pid_key_sql(side: u8) -> String {
    format!("concat({}, '#', toString(process_id_{side}))", ip_sql(side))
}

fn server_key_sql() -> String {
    format!(
        "concat(toString(process_kname_1), '@', {}, ':', toString(server_port))",
        ip_sql(1)
    )
}

/// Identity maps loaded before a query (small: one entry per container or server process).
#[derive(Default)]
struct Identity {
    /// `process@ip:port` → container name.
    ports: (Vec<String>, Vec<String>),
    /// `ip#pid` → container name.
    pids: (Vec<String>, Vec<String>),
    /// `ip#pid` → full entity id of a client process.
    clients: (Vec<String>, Vec<String>),
}

/// `transform(key, keys, values, default)`, or just `default` for an empty map
/// (an empty array literal has no type on old servers).
fn transform(key: &str, map: &(Vec<String>, Vec<String>), default: Sql) -> Sql {
    if map.0.is_empty() {
        return default;
    }
    let mut sql = Sql::new(&format!("transform({key}, "));
    sql.bind(Bind::Strs(map.0.clone()))
        .push(", ")
        .bind(Bind::Strs(map.1.clone()))
        .push(", ")
        .append(default)
        .push(")");
    sql
}

impl Identity {
    /// The serving entity's name: app_service, else container, else `process@ip:port`.
    fn server_name(&self, log: &Log) -> Sql {
        let fallback = transform(&server_key_sql(), &self.ports, Sql::new(&server_key_sql()));
        let by_pid = transform(&pid_key_sql(1), &self.pids, fallback);
        let mut sql = Sql::new("if(app_service != '', toString(app_service), ");
        if log.has_containers {
            sql.push("if(container_name_1 != '', container_name_1, ")
                .append(by_pid)
                .push(")");
        } else {
            sql.append(by_pid);
        }
        sql.push(")");
        sql
    }

    /// The client's full entity id (see the module docs).
    fn client_id(&self, log: &Log) -> Sql {
        let mut fallback = format!(
            "concat('service:', toString(process_kname_0), '@', {})",
            ip_sql(0)
        );
        if log.has_containers {
            fallback = format!(
                "if(container_name_0 != '', concat('service:', container_name_0), {fallback})"
            );
        }
        let mut default = Sql::new(&fallback);
        if !self.pids.0.is_empty() {
            let mut sql = Sql::new(&format!("transform({}, ", pid_key_sql(0)));
            let ids: Vec<String> = self
                .pids
                .1
                .iter()
                .map(|name| format!("service:{name}"))
                .collect();
            sql.bind(Bind::Strs(self.pids.0.clone()))
                .push(", ")
                .bind(Bind::Strs(ids))
                .push(", ")
                .append(default)
                .push(")");
            default = sql;
        }
        transform(&pid_key_sql(0), &self.clients, default)
    }
}

/// The identity columns of the server side, which [`Identity::server_name`]
/// and [`kind_sql`] read: grouping by them first keeps those expressions valid
/// on the grouped rows.
fn server_columns(log: &Log) -> String {
    let mut columns = String::from(
        "app_service, is_ipv4, ip4_1, ip6_1, process_id_1, process_kname_1, server_port, l7_protocol",
    );
    if log.has_containers {
        columns.push_str(", container_name_1");
    }
    columns
}

/// The identity columns of both sides, which [`Identity::client_id`] reads too.
fn edge_columns(log: &Log) -> String {
    let mut columns = server_columns(log);
    columns.push_str(", ip4_0, ip6_0, process_id_0, process_kname_0");
    if log.has_containers {
        columns.push_str(", container_name_0");
    }
    columns
}

/// `l7_protocol` condition for servers of one of `kinds` (see [`kind_sql`]),
/// with literal protocol codes so the primary key can use it.
fn kind_cond(kinds: &[EntityKind]) -> String {
    let codes = |list: Vec<(u8, EntityKind)>| {
        list.iter()
            .map(|(code, _)| code.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    let wanted = codes(non_service_codes(kinds));
    if !kinds.is_empty() && !wanted.is_empty() {
        parts.push(format!("l7_protocol IN ({wanted})"));
    }
    if kinds.is_empty() || kinds.contains(&EntityKind::Service) {
        let all = codes(non_service_codes(&[]));
        parts.push(if all.is_empty() {
            "1".to_owned()
        } else {
            format!("l7_protocol NOT IN ({all})")
        });
    }
    if parts.is_empty() {
        return "0".to_owned();
    }
    format!("({})", parts.join(" OR "))
}

/// Condition that side `side`'s address reads as `ip` in [`ip_sql`], on raw
/// columns when the text parses, else on the text itself.
fn ip_cond(side: u8, ip: &str) -> Sql {
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        let mut sql = Sql::new(&format!("(is_ipv4 = 1 AND ip4_{side} = "));
        sql.bind(Bind::U32(u32::from(v4))).push(")");
        return sql;
    }
    if ip.parse::<std::net::Ipv6Addr>().is_ok() {
        let mut sql = Sql::new(&format!("(is_ipv4 = 0 AND ip6_{side} = IPv6StringToNum("));
        sql.bind(Bind::Str(ip.to_owned())).push("))");
        return sql;
    }
    let mut sql = Sql::new(&format!("{} = ", ip_sql(side)));
    sql.bind(Bind::Str(ip.to_owned()));
    sql
}

/// Condition that a row's `ip#pid` key of side `side` ([`pid_key_sql`]) is `key`.
fn pid_key_cond(side: u8, key: &str) -> Sql {
    if let Some((ip, pid)) = key.rsplit_once('#') {
        if let Ok(pid) = pid.parse::<u32>() {
            let mut sql = Sql::new(&format!("(process_id_{side} = "));
            sql.bind(Bind::U32(pid))
                .push(" AND ")
                .append(ip_cond(side, ip))
                .push(")");
            return sql;
        }
    }
    let mut sql = Sql::new(&format!("{} = ", pid_key_sql(side)));
    sql.bind(Bind::Str(key.to_owned()));
    sql
}

/// Condition that a row's `process@ip:port` key ([`server_key_sql`]) is
/// `key`; `None` when `key` has not that shape (no row can have it).
fn server_key_cond(key: &str) -> Option<Sql> {
    let (process, address) = key.rsplit_once('@')?;
    let (ip, port) = address.rsplit_once(':')?;
    let mut sql = Sql::new("(process_kname_1 = ");
    sql.bind(Bind::Str(process.to_owned()))
        .push(" AND server_port = ");
    match port.parse::<u16>() {
        Ok(port) => sql.bind(Bind::U32(u32::from(port))),
        Err(_) => return None,
    };
    sql.push(" AND ").append(ip_cond(1, ip)).push(")");
    Some(sql)
}

/// Condition that a client's fallback name `process@ip` is `name`.
fn client_key_cond(name: &str) -> Option<Sql> {
    let (process, ip) = name.rsplit_once('@')?;
    let mut sql = Sql::new("(process_kname_0 = ");
    sql.bind(Bind::Str(process.to_owned()))
        .push(" AND ")
        .append(ip_cond(0, ip))
        .push(")");
    Some(sql)
}

/// `(a OR b OR …)`, or `0` for none.
fn any_of(conds: Vec<Sql>) -> Sql {
    let mut sql = Sql::new("(0");
    for cond in conds {
        sql.push(" OR ").append(cond);
    }
    sql.push(")");
    sql
}

impl Identity {
    /// A cheap condition on raw columns that holds for every row whose server
    /// [`Self::server_name`] is `name` (and possibly others): a prefilter
    /// before the exact identity is computed.
    fn server_name_cond(&self, log: &Log, name: &str) -> Sql {
        let mut conds = Vec::new();
        let mut by_app = Sql::new("app_service = ");
        by_app.bind(Bind::Str(name.to_owned()));
        conds.push(by_app);
        if log.has_containers {
            let mut by_container = Sql::new("container_name_1 = ");
            by_container.bind(Bind::Str(name.to_owned()));
            conds.push(by_container);
        }
        for (key, value) in self.pids.0.iter().zip(&self.pids.1) {
            if value == name {
                conds.push(pid_key_cond(1, key));
            }
        }
        for (key, value) in self.ports.0.iter().zip(&self.ports.1) {
            if value == name {
                conds.extend(server_key_cond(key));
            }
        }
        conds.extend(server_key_cond(name));
        any_of(conds)
    }

    /// A superset condition on raw columns for rows whose server matches `filter`.
    fn server_prefilter(&self, log: &Log, filter: &EntityFilter) -> Sql {
        let mut sql = Sql::new("(1");
        if !filter.kinds.is_empty() {
            sql.push(" AND ").push(&kind_cond(&filter.kinds));
        }
        if !filter.ids.is_empty() {
            let ids = filter
                .ids
                .iter()
                .map(|id| {
                    let mut cond = Sql::new(&format!("({} AND ", kind_cond(&[id.kind()])));
                    cond.append(self.server_name_cond(log, id.name())).push(")");
                    cond
                })
                .collect();
            sql.push(" AND ").append(any_of(ids));
        }
        sql.push(")");
        sql
    }

    /// A superset condition on raw columns for rows whose client
    /// ([`Self::client_id`]) is one of `filter`'s ids; `1` without ids.
    fn client_prefilter(&self, log: &Log, filter: &EntityFilter) -> Sql {
        if filter.ids.is_empty() {
            return Sql::new("1");
        }
        let mut conds = Vec::new();
        for id in &filter.ids {
            for (key, value) in self.clients.0.iter().zip(&self.clients.1) {
                if value == id.as_str() {
                    conds.push(pid_key_cond(0, key));
                }
            }
            if id.kind() != EntityKind::Service {
                continue;
            }
            for (key, value) in self.pids.0.iter().zip(&self.pids.1) {
                if value == id.name() {
                    conds.push(pid_key_cond(0, key));
                }
            }
            if log.has_containers {
                let mut by_container = Sql::new("container_name_0 = ");
                by_container.bind(Bind::Str(id.name().to_owned()));
                conds.push(by_container);
            }
            conds.extend(client_key_cond(id.name()));
        }
        any_of(conds)
    }
}

/// `has(list, expr)` conditions for an entity filter on SQL `kind` and `id` expressions.
fn filter_sql(filter: &EntityFilter, kind: &str, id: &str) -> Sql {
    let mut sql = Sql::new("1");
    if !filter.kinds.is_empty() {
        let kinds = filter.kinds.iter().map(|k| k.as_str().to_owned()).collect();
        sql.push(" AND has(")
            .bind(Bind::Strs(kinds))
            .push(&format!(", {kind})"));
    }
    if !filter.ids.is_empty() {
        let ids = filter.ids.iter().map(|i| i.as_str().to_owned()).collect();
        sql.push(" AND has(")
            .bind(Bind::Strs(ids))
            .push(&format!(", {id})"));
    }
    sql
}

fn range_sql(sql: &mut Sql, range: &TimeRange) {
    sql.push("time >= toDateTime(")
        .bind(Bind::U32(secs(range.start.secs())))
        .push(") AND time < toDateTime(")
        .bind(Bind::U32(secs(range.end.secs())))
        .push(")");
}

fn bucket_sql(sql: &mut Sql, step: u32) {
    sql.push("toUInt32(intDiv(toUInt32(time), ")
        .bind(Bind::U32(step))
        .push(") * ")
        .bind(Bind::U32(step))
        .push(") AS bucket");
}

fn secs(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// An entity id from a kind and a name read from the server; unknown kinds read as services.
fn entity(kind: &str, name: &str) -> EntityId {
    let kind = kind.parse().unwrap_or(EntityKind::Service);
    EntityId::new(kind, name)
}

/// An entity id from `kind:name` text read from the server.
fn parse_id(text: &str) -> EntityId {
    match text.split_once(':') {
        Some((kind, name)) => entity(kind, name),
        None => EntityId::new(EntityKind::Service, text),
    }
}

const METRICS_SQL: &str = "toUInt64(count()) AS requests, \
     toUInt64(countIf(response_status = 3)) AS errors, \
     toFloat64(avg(response_duration) / 1000) AS mean_ms, \
     arrayMap(x -> toFloat64(x / 1000), quantiles(0.5, 0.9, 0.99)(response_duration)) AS quantiles_ms";

/// Per-shape statistics of the statement queries, every column cast to its Rust type.
const STATEMENT_SQL: &str = "toUInt8(l7_protocol) AS protocol, toString(request_type) AS verb, \
     toString(request_resource) AS shape, toUInt64(count()) AS executions, \
     toUInt64(countIf(response_status = 3)) AS errors, \
     toFloat64(avg(response_duration) / 1000) AS mean_ms, \
     toFloat64(quantile(0.99)(response_duration) / 1000) AS p99_ms, \
     toFloat64(max(response_duration) / 1000) AS max_ms";

/// DeepFlow protocol codes a statement query reads: the one asked for, else
/// every database and cache protocol.
fn statement_codes(protocol: Option<L7Protocol>) -> Vec<u32> {
    match protocol {
        Some(protocol) => vec![u32::from(protocol.deepflow_code())],
        None => non_service_codes(&[EntityKind::Database, EntityKind::Cache])
            .into_iter()
            .map(|(code, _)| u32::from(code))
            .collect(),
    }
}

fn point(requests: u64, errors: u64, mean_ms: f64, quantiles_ms: &[f64]) -> RequestPoint {
    let q = |i: usize| quantiles_ms.get(i).copied().unwrap_or(f64::NAN);
    RequestPoint {
        requests: requests as f64,
        errors: errors as f64,
        latency_mean_ms: mean_ms,
        latency_p50_ms: q(0),
        latency_p90_ms: q(1),
        latency_p99_ms: q(2),
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct SeriesRow {
    kind: String,
    name: String,
    bucket: u32,
    requests: u64,
    errors: u64,
    mean_ms: f64,
    quantiles_ms: Vec<f64>,
}

#[derive(clickhouse::Row, Deserialize)]
struct EdgeSeriesRow {
    client_id: String,
    kind: String,
    name: String,
    protocol: u8,
    bucket: u32,
    requests: u64,
    errors: u64,
    mean_ms: f64,
    quantiles_ms: Vec<f64>,
}

#[derive(clickhouse::Row, Deserialize)]
struct EdgeRow {
    client_id: String,
    kind: String,
    name: String,
    protocol: u8,
    p99_ms: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct EdgeCountRow {
    client_id: String,
    kind: String,
    name: String,
    protocol: u8,
    requests: u64,
    errors: u64,
    mean_ms: f64,
    hashes: Vec<u64>,
}

#[derive(clickhouse::Row, Deserialize)]
struct EdgeP99Row {
    edge: u32,
    p99_ms: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct EdgeMeterRow {
    edge: String,
    requests: u64,
    errors: u64,
    rrt_sum: f64,
    rrt_count: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct KeyRow {
    key: String,
    value: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct SnapshotRow {
    entity: String,
    names: Vec<String>,
    values: Vec<String>,
}

#[derive(clickhouse::Row, Deserialize)]
struct RelationRow {
    from_id: String,
    to_id: String,
    relation: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct ServerRow {
    kind: String,
    name: String,
    ip: String,
    port: u32,
    process_name: String,
    protocol: u8,
}

#[derive(clickhouse::Row, Deserialize)]
struct ResourceRow {
    entity: String,
    bucket: u32,
    value: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct StatementRow {
    kind: String,
    name: String,
    protocol: u8,
    verb: String,
    shape: String,
    executions: u64,
    errors: u64,
    mean_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct StatementStepRow {
    kind: String,
    name: String,
    protocol: u8,
    verb: String,
    shape: String,
    bucket: u32,
    executions: u64,
    errors: u64,
    mean_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct SampleRow {
    at: u32,
    client_id: String,
    kind: String,
    name: String,
    protocol: u8,
    verb: String,
    resource: String,
    duration_ms: f64,
    status: u8,
    code: Option<i32>,
    trace: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct StackRow {
    frames: String,
    unit: String,
    value: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct BlobRow {
    stack: Vec<u8>,
    algo: String,
    value: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct EventRow {
    at: u32,
    entity: String,
    kind: String,
    detail: String,
}

/// The request-log query's FROM/WHERE part for `range`, server-side rows only.
fn from_where(log: &Log, range: &TimeRange) -> Sql {
    let mut sql = Sql::new(&format!(" FROM {} WHERE ", log.table));
    range_sql(&mut sql, range);
    sql.push(&format!(" AND {SERVER_SIDE}"));
    sql
}

impl ClickHouseStore {
    fn log(&self) -> Log {
        match self.config.request_log {
            RequestLog::Deepflow => Log {
                table: self.l7_flow_log_table(),
                has_containers: false,
            },
            RequestLog::Agent => Log {
                table: self.vigil_table(&schema::AGENT_REQUESTS),
                has_containers: true,
            },
        }
    }

    /// Latest placement snapshot of every entity (optionally of one kind).
    /// A missing `entities` table (Vigil's migrations not run) reads as empty.
    async fn snapshots(
        &self,
        kind: Option<EntityKind>,
    ) -> Result<Vec<SnapshotRow>, ClickHouseError> {
        let table = self.vigil_table(&schema::ENTITIES);
        let mut sql = Sql::new(&format!(
            "SELECT entity, argMax(attribute_names, time) AS names, \
             argMax(attribute_values, time) AS values FROM {table}"
        ));
        if let Some(kind) = kind {
            sql.push(" WHERE kind = ")
                .bind(Bind::Str(kind.as_str().to_owned()));
        }
        sql.push(" GROUP BY entity ORDER BY entity");
        match self.fetch(sql, &table, "reading entity placement").await {
            Err(ClickHouseError::Schema { detail, .. }) => {
                tracing::warn!(%table, %detail, "no placement table; run `vigil db migrate`; naming without container names");
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Loads the identity maps; with `clients`, also the range's server processes by ip and pid.
    async fn identity(
        &self,
        log: &Log,
        range: &TimeRange,
        clients: bool,
    ) -> Result<Identity, ClickHouseError> {
        let mut identity = Identity::default();
        for row in self.snapshots(Some(EntityKind::Container)).await? {
            let name = parse_id(&row.entity).name().to_owned();
            let attributes: HashMap<&str, &str> = row
                .names
                .iter()
                .map(String::as_str)
                .zip(row.values.iter().map(String::as_str))
                .collect();
            let Some(ip) = attributes.get("ip") else {
                continue;
            };
            if let Some(pid) = attributes
                .get("pid")
                .filter(|pid| !pid.is_empty() && **pid != "0")
            {
                identity.pids.0.push(format!("{ip}#{pid}"));
                identity.pids.1.push(name.clone());
            }
            let process = attributes.get("process_name").copied().unwrap_or_default();
            let ports = attributes.get("ports").copied().unwrap_or_default();
            let port = attributes.get("port").copied().unwrap_or_default();
            for port in ports
                .split(',')
                .chain([port])
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                identity.ports.0.push(format!("{process}@{ip}:{port}"));
                identity.ports.1.push(name.clone());
            }
        }
        if clients {
            let mut sql = Sql::new(&format!(
                "SELECT {} AS key, any(concat({}, ':', ",
                pid_key_sql(1),
                kind_sql()
            ));
            sql.append(identity.server_name(log)).push(")) AS value");
            // Grouped by the raw identity columns first: the names are then
            // computed once per server process, not once per request.
            let columns = server_columns(log);
            sql.push(&format!(" FROM (SELECT {columns}"));
            sql.append(from_where(log, range));
            sql.push(&format!(
                " AND process_id_1 != 0 GROUP BY {columns}) GROUP BY key ORDER BY key"
            ));
            let rows: Vec<KeyRow> = self
                .fetch(sql, &log.table, "loading server processes")
                .await?;
            for row in rows {
                identity.clients.0.push(row.key);
                identity.clients.1.push(row.value);
            }
        }
        Ok(identity)
    }

    async fn request_series_inner(
        &self,
        query: &SeriesQuery,
    ) -> Result<Vec<RequestSeries>, ClickHouseError> {
        let log = self.log();
        let step = query.step_secs;
        let range = query.range.aligned_to(step);
        let identity = self.identity(&log, &range, false).await?;
        let mut sql = Sql::new(
            "SELECT kind, name, bucket, requests, errors, mean_ms, quantiles_ms FROM (SELECT ",
        );
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        bucket_sql(&mut sql, step);
        sql.push(", ")
            .push(METRICS_SQL)
            .append(from_where(&log, &range));
        sql.push(" AND ")
            .append(identity.server_prefilter(&log, &query.filter));
        sql.push(" GROUP BY kind, name, bucket) WHERE ")
            .append(filter_sql(&query.filter, "kind", "concat(kind, ':', name)"))
            .push(" ORDER BY kind, name, bucket");
        let rows: Vec<SeriesRow> = self.fetch(sql, &log.table, "request series").await?;
        let count = range.step_count(step);
        let mut series: BTreeMap<EntityId, RequestMetrics> = BTreeMap::new();
        for row in rows {
            let id = entity(&row.kind, &row.name);
            let metrics = series
                .entry(id)
                .or_insert_with(|| RequestMetrics::empty(range.start, step, count));
            if let Some(index) = step_index(&range, step, row.bucket, count) {
                metrics.set(
                    index,
                    point(row.requests, row.errors, row.mean_ms, &row.quantiles_ms),
                );
            }
        }
        Ok(series
            .into_iter()
            .map(|(entity, metrics)| RequestSeries { entity, metrics })
            .collect())
    }

    async fn edge_series_inner(
        &self,
        query: &SeriesQuery,
    ) -> Result<Vec<EdgeMetrics>, ClickHouseError> {
        let log = self.log();
        let step = query.step_secs;
        let range = query.range.aligned_to(step);
        let identity = self.identity(&log, &range, true).await?;
        let mut sql = Sql::new(
            "SELECT client_id, kind, name, protocol, bucket, requests, errors, mean_ms, quantiles_ms FROM (SELECT ",
        );
        sql.append(identity.client_id(&log)).push(" AS client_id, ");
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        sql.push("toUInt8(l7_protocol) AS protocol, ");
        bucket_sql(&mut sql, step);
        sql.push(", ")
            .push(METRICS_SQL)
            .append(from_where(&log, &range));
        sql.push(" AND (")
            .append(identity.client_prefilter(&log, &query.filter))
            .push(" OR ")
            .append(identity.server_prefilter(&log, &query.filter))
            .push(")");
        sql.push(" GROUP BY client_id, kind, name, protocol, bucket) WHERE (")
            .append(filter_sql(
                &query.filter,
                "splitByChar(':', client_id)[1]",
                "client_id",
            ))
            .push(") OR (")
            .append(filter_sql(&query.filter, "kind", "concat(kind, ':', name)"))
            .push(") ORDER BY client_id, kind, name, protocol, bucket");
        let rows: Vec<EdgeSeriesRow> = self.fetch(sql, &log.table, "edge series").await?;
        let count = range.step_count(step);
        let mut edges: BTreeMap<(EntityId, EntityId, L7Protocol), RequestMetrics> = BTreeMap::new();
        for row in rows {
            let key = (
                parse_id(&row.client_id),
                entity(&row.kind, &row.name),
                L7Protocol::from_deepflow_code(row.protocol),
            );
            let metrics = edges
                .entry(key)
                .or_insert_with(|| RequestMetrics::empty(range.start, step, count));
            if let Some(index) = step_index(&range, step, row.bucket, count) {
                metrics.set(
                    index,
                    point(row.requests, row.errors, row.mean_ms, &row.quantiles_ms),
                );
            }
        }
        Ok(edges
            .into_iter()
            .map(|((client, server, protocol), metrics)| EdgeMetrics {
                client,
                server,
                protocol,
                metrics,
            })
            .collect())
    }

    async fn call_edges_inner(&self, range: TimeRange) -> Result<Vec<CallEdge>, ClickHouseError> {
        let log = self.log();
        let identity = self.identity(&log, &range, true).await?;
        let client = identity.client_id(&log);
        let server = identity.server_name(&log);
        let columns = edge_columns(&log);
        // Counts are exact sums, so they are taken per raw identity tuple
        // first (a few thousand rows) and the names computed on those rows only.
        let mut sql = Sql::new("SELECT ");
        sql.append(client.clone()).push(" AS client_id, ");
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(server.clone())
            .push(" AS name, ");
        sql.push(
            "toUInt8(l7_protocol) AS protocol, toUInt64(sum(n)) AS requests, \
             toUInt64(sum(e)) AS errors, toFloat64(sum(d) / sum(n) / 1000) AS mean_ms, \
             groupArray(h) AS hashes",
        );
        sql.push(&format!(
            " FROM (SELECT {columns}, cityHash64({columns}) AS h, count() AS n, \
             countIf(response_status = 3) AS e, sum(response_duration) AS d"
        ));
        sql.append(from_where(&log, &range));
        sql.push(&format!(
            " GROUP BY {columns}) GROUP BY client_id, kind, name, protocol \
             ORDER BY client_id, kind, name, protocol"
        ));
        let rows: Vec<EdgeCountRow> = self.fetch(sql, &log.table, "call edges").await?;
        let p99 = self.edge_p99(&log, &range, &columns, &rows).await?;
        let mut edges: BTreeMap<String, CallEdge> = BTreeMap::new();
        for (index, row) in rows.into_iter().enumerate() {
            let key = format!(
                "{}\t{}:{}\t{}",
                row.client_id, row.kind, row.name, row.protocol
            );
            edges.insert(
                key,
                CallEdge {
                    client: parse_id(&row.client_id),
                    server: entity(&row.kind, &row.name),
                    protocol: L7Protocol::from_deepflow_code(row.protocol),
                    requests: row.requests,
                    errors: row.errors,
                    latency_mean_ms: row.mean_ms,
                    latency_p99_ms: p99.get(index).copied().unwrap_or(f64::NAN),
                },
            );
        }
        if self.config.request_log == RequestLog::Deepflow && !edges.is_empty() {
            self.complete_edge_counts(&log, &range, client, server, &mut edges)
                .await?;
        }
        let mut edges: Vec<CallEdge> = edges.into_values().collect();
        edges.sort_by(|a, b| {
            (&a.client, &a.server, a.protocol).cmp(&(&b.client, &b.server, b.protocol))
        });
        Ok(edges)
    }

    /// The p99 latency of each edge in `edges` (in order), over the raw rows:
    /// each row finds its edge through the hash of its identity columns,
    /// looked up in a map built from `edges`' hashes. On a hash collision
    /// between tuples of different edges, the names are computed per row instead.
    async fn edge_p99(
        &self,
        log: &Log,
        range: &TimeRange,
        columns: &str,
        edges: &[EdgeCountRow],
    ) -> Result<Vec<f64>, ClickHouseError> {
        let mut p99 = vec![f64::NAN; edges.len()];
        if edges.is_empty() {
            return Ok(p99);
        }
        let mut owner: HashMap<u64, u32> = HashMap::new();
        let mut collision = false;
        for (index, edge) in edges.iter().enumerate() {
            let index = u32::try_from(index + 1).unwrap_or(u32::MAX);
            for hash in &edge.hashes {
                if owner
                    .insert(*hash, index)
                    .is_some_and(|other| other != index)
                {
                    collision = true;
                }
            }
        }
        if collision || owner.len() != edges.iter().map(|e| e.hashes.len()).sum::<usize>() {
            return self.edge_p99_per_row(log, range, edges).await;
        }
        let (hashes, indices): (Vec<u64>, Vec<u32>) = owner.into_iter().unzip();
        let mut sql = Sql::new(&format!(
            "SELECT toUInt32(transform(cityHash64({columns}), CAST("
        ));
        sql.bind(Bind::U64s(hashes))
            .push(" AS Array(UInt64)), CAST(")
            .bind(Bind::U32s(indices))
            .push(
                " AS Array(UInt32)), toUInt32(0))) AS edge, \
                 toFloat64(quantile(0.99)(response_duration) / 1000) AS p99_ms",
            )
            .append(from_where(log, range))
            .push(" GROUP BY edge");
        let rows: Vec<EdgeP99Row> = self.fetch(sql, &log.table, "edge latency").await?;
        for row in rows {
            if let Some(slot) = (row.edge as usize)
                .checked_sub(1)
                .and_then(|index| p99.get_mut(index))
            {
                *slot = row.p99_ms;
            }
        }
        Ok(p99)
    }

    /// [`Self::edge_p99`] with names computed per raw row (the slow, always exact way).
    async fn edge_p99_per_row(
        &self,
        log: &Log,
        range: &TimeRange,
        edges: &[EdgeCountRow],
    ) -> Result<Vec<f64>, ClickHouseError> {
        let identity = self.identity(log, range, true).await?;
        let mut sql = Sql::new("SELECT ");
        sql.append(identity.client_id(log)).push(" AS client_id, ");
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(log))
            .push(" AS name, ");
        sql.push(
            "toUInt8(l7_protocol) AS protocol, \
             toFloat64(quantile(0.99)(response_duration) / 1000) AS p99_ms",
        );
        sql.append(from_where(log, range));
        sql.push(" GROUP BY client_id, kind, name, protocol");
        let rows: Vec<EdgeRow> = self.fetch(sql, &log.table, "call edges").await?;
        let p99: HashMap<(String, String, String, u8), f64> = rows
            .into_iter()
            .map(|row| {
                (
                    (row.client_id, row.kind, row.name, row.protocol),
                    row.p99_ms,
                )
            })
            .collect();
        Ok(edges
            .iter()
            .map(|edge| {
                let key = (
                    edge.client_id.clone(),
                    edge.kind.clone(),
                    edge.name.clone(),
                    edge.protocol,
                );
                p99.get(&key).copied().unwrap_or(f64::NAN)
            })
            .collect())
    }

    /// Replaces request, error and mean figures of `edges` by those of
    /// `application_map.1m`, which counts every request even when DeepFlow
    /// throttles its request log. Rows are matched to edges through the
    /// process-level key (`gprocess_id_0/1`, addresses, port, protocol) seen in
    /// `l7_flow_log`; p99 stays from `l7_flow_log` (the map has no quantiles).
    async fn complete_edge_counts(
        &self,
        log: &Log,
        range: &TimeRange,
        client: Sql,
        server: Sql,
        edges: &mut BTreeMap<String, CallEdge>,
    ) -> Result<(), ClickHouseError> {
        let key_sql = format!(
            "concat(toString(gprocess_id_0), '/', toString(gprocess_id_1), '/', {}, '/', {}, '/', \
             toString(server_port), '/', toString(l7_protocol))",
            ip_sql(0),
            ip_sql(1)
        );
        let mut sql = Sql::new(&format!("SELECT {key_sql} AS key, any(concat("));
        sql.append(client)
            .push(", '\\t', ")
            .push(&kind_sql())
            .push(", ':', ")
            .append(server)
            .push(", '\\t', toString(l7_protocol))) AS value");
        // Keys and names per raw identity tuple, not per request.
        let columns = format!("{}, gprocess_id_0, gprocess_id_1", edge_columns(log));
        sql.push(&format!(" FROM (SELECT {columns}"))
            .append(from_where(log, range))
            .push(&format!(" GROUP BY {columns}) GROUP BY key ORDER BY key"));
        let keys: Vec<KeyRow> = self.fetch(sql, &log.table, "edge keys").await?;
        let map = (
            keys.iter().map(|row| row.key.clone()).collect::<Vec<_>>(),
            keys.iter().map(|row| row.value.clone()).collect::<Vec<_>>(),
        );
        let table = self.application_map_table();
        // Summed per raw key first (exact), so the key text and its lookup
        // are computed per key, not per row of the map.
        let raw = "gprocess_id_0, gprocess_id_1, is_ipv4, ip4_0, ip6_0, ip4_1, ip6_1, server_port, l7_protocol";
        let mut sql = Sql::new("SELECT edge, requests, errors, rrt_sum, rrt_count FROM (SELECT ");
        sql.append(transform(&key_sql, &map, Sql::new("''")))
            .push(
                " AS edge, toUInt64(sum(q)) AS requests, toUInt64(sum(e)) AS errors, \
                 toFloat64(sum(s)) AS rrt_sum, toUInt64(sum(c)) AS rrt_count",
            )
            .push(&format!(
                " FROM (SELECT {raw}, sum(request) AS q, sum(server_error) AS e, \
                 sum(rrt_sum) AS s, sum(rrt_count) AS c FROM {table} WHERE "
            ));
        range_sql(&mut sql, range);
        sql.push(&format!(
            " AND {SERVER_SIDE} GROUP BY {raw}) GROUP BY edge) WHERE edge != '' ORDER BY edge"
        ));
        let rows: Vec<EdgeMeterRow> = self.fetch(sql, &table, "edge counts").await?;
        for row in rows {
            if let Some(edge) = edges.get_mut(&row.edge) {
                edge.requests = row.requests;
                edge.errors = row.errors;
                if row.rrt_count > 0 {
                    edge.latency_mean_ms = row.rrt_sum / row.rrt_count as f64 / 1000.0;
                }
            }
        }
        Ok(())
    }

    async fn topology_inner(&self, range: TimeRange) -> Result<Topology, ClickHouseError> {
        let mut topology = Topology::default();
        for row in self.snapshots(None).await? {
            let mut entity = Entity::new(parse_id(&row.entity));
            for (name, value) in row.names.into_iter().zip(row.values) {
                entity.attributes.insert(name, value);
            }
            topology.entities.push(entity);
        }
        let table = self.vigil_table(&schema::RELATIONS);
        let sql = Sql::new(&format!(
            "SELECT from_entity AS from_id, to_entity AS to_id, kind AS relation FROM {table} \
             GROUP BY from_id, to_id, relation ORDER BY from_id, to_id, relation"
        ));
        let relations: Vec<RelationRow> = match self.fetch(sql, &table, "reading relations").await {
            Err(ClickHouseError::Schema { .. }) => Vec::new(),
            other => other?,
        };
        for row in relations {
            if let Ok(kind) = row.relation.parse::<RelationKind>() {
                topology.relations.push(Relation {
                    from: parse_id(&row.from_id),
                    to: parse_id(&row.to_id),
                    kind,
                });
            }
        }
        let log = self.log();
        let identity = self.identity(&log, &range, false).await?;
        let mut sql = Sql::new("SELECT ");
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        sql.push(&format!(
            "any({}) AS ip, toUInt32(any(server_port)) AS port, any(toString(process_kname_1)) AS process_name, \
             toUInt8(any(l7_protocol)) AS protocol",
            ip_sql(1)
        ));
        // Grouped by the raw identity columns first (a few thousand rows),
        // so names are computed per server process, not per request.
        let columns = server_columns(&log);
        sql.push(&format!(" FROM (SELECT {columns}"))
            .append(from_where(&log, &range))
            .push(&format!(
                " GROUP BY {columns}) GROUP BY kind, name ORDER BY kind, name"
            ));
        let servers: Vec<ServerRow> = self.fetch(sql, &log.table, "servers").await?;
        for row in servers {
            topology.entities.push(
                Entity::new(entity(&row.kind, &row.name))
                    .with("ip", row.ip)
                    .with("port", row.port.to_string())
                    .with("process_name", row.process_name)
                    .with(
                        "protocol",
                        L7Protocol::from_deepflow_code(row.protocol).name(),
                    ),
            );
        }
        for edge in self.call_edges_inner(range).await? {
            topology.entities.push(Entity::new(edge.client.clone()));
            topology.relations.push(Relation {
                from: edge.client,
                to: edge.server,
                kind: RelationKind::Calls,
            });
        }
        topology.normalise();
        Ok(topology)
    }

    async fn resource_series_inner(
        &self,
        query: &SeriesQuery,
        metric: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, ClickHouseError> {
        let step = query.step_secs;
        let range = query.range.aligned_to(step);
        let table = self.vigil_table(&schema::RESOURCE_METRICS);
        let (column, aggregate) = match metric {
            ResourceMetric::CpuCores => ("cpu_cores", "avg"),
            ResourceMetric::MemoryBytes => ("memory_bytes", "avg"),
            ResourceMetric::TcpRetransmits => ("tcp_retransmits", "sum"),
            ResourceMetric::TcpResets => ("tcp_resets", "sum"),
        };
        let mut sql = Sql::new("SELECT entity, ");
        bucket_sql(&mut sql, step);
        sql.push(&format!(
            ", toFloat64({aggregate}({column})) AS value FROM {table} WHERE "
        ));
        range_sql(&mut sql, &range);
        sql.push(&format!(" AND NOT isNaN({column}) AND "))
            .append(filter_sql(
                &query.filter,
                "splitByChar(':', entity)[1]",
                "entity",
            ))
            .push(" GROUP BY entity, bucket ORDER BY entity, bucket");
        let rows: Vec<ResourceRow> = self.fetch(sql, &table, "resource series").await?;
        let count = range.step_count(step);
        let mut series: BTreeMap<EntityId, Series> = BTreeMap::new();
        for row in rows {
            let values = series
                .entry(parse_id(&row.entity))
                .or_insert_with(|| Series::empty(range.start, step, count));
            if let Some(index) = step_index(&range, step, row.bucket, count) {
                values.values[index] = row.value;
            }
        }
        Ok(series
            .into_iter()
            .map(|(entity, series)| ResourceSeries {
                entity,
                metric,
                series,
            })
            .collect())
    }

    async fn top_statements_inner(
        &self,
        query: &StatementQuery,
    ) -> Result<Vec<StatementStats>, ClickHouseError> {
        let log = self.log();
        let identity = self.identity(&log, &query.range, false).await?;
        let codes = statement_codes(query.protocol);
        let mut sql = Sql::new(
            "SELECT kind, name, protocol, verb, shape, executions, errors, mean_ms, p99_ms, max_ms FROM (SELECT ",
        );
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        sql.push(STATEMENT_SQL);
        sql.append(from_where(&log, &query.range));
        sql.push(" AND has(")
            .bind(Bind::U32s(codes))
            .push(", toUInt32(l7_protocol))");
        sql.push(" GROUP BY kind, name, protocol, verb, shape)");
        if let Some(server) = &query.server {
            sql.push(" WHERE concat(kind, ':', name) = ")
                .bind(Bind::Str(server.as_str().to_owned()));
        }
        let order = match query.order {
            StatementOrder::P99 => "p99_ms DESC",
            StatementOrder::TotalTime => "mean_ms * executions DESC",
            StatementOrder::Errors => "errors DESC",
        };
        sql.push(&format!(
            " ORDER BY {order}, kind, name, verb, shape LIMIT "
        ))
        .bind(Bind::U64(query.limit as u64));
        let rows: Vec<StatementRow> = self.fetch(sql, &log.table, "top statements").await?;
        Ok(rows
            .into_iter()
            .map(|row| StatementStats {
                server: entity(&row.kind, &row.name),
                protocol: L7Protocol::from_deepflow_code(row.protocol),
                request_type: row.verb,
                shape: row.shape,
                count: row.executions,
                errors: row.errors,
                latency_mean_ms: row.mean_ms,
                latency_p99_ms: row.p99_ms,
                latency_max_ms: row.max_ms,
            })
            .collect())
    }

    async fn statement_steps_inner(
        &self,
        query: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, ClickHouseError> {
        let log = self.log();
        let step = query.step_secs;
        let range = query.range.aligned_to(step);
        let identity = self.identity(&log, &range, false).await?;
        let mut sql = Sql::new(
            "SELECT kind, name, protocol, verb, shape, bucket, executions, errors, mean_ms, p99_ms, max_ms FROM (SELECT ",
        );
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        bucket_sql(&mut sql, step);
        sql.push(", ").push(STATEMENT_SQL);
        sql.append(from_where(&log, &range));
        sql.push(" AND has(")
            .bind(Bind::U32s(statement_codes(query.protocol)))
            .push(", toUInt32(l7_protocol))");
        sql.push(" GROUP BY kind, name, protocol, verb, shape, bucket)");
        if let Some(server) = &query.server {
            sql.push(" WHERE concat(kind, ':', name) = ")
                .bind(Bind::Str(server.as_str().to_owned()));
        }
        let rows: Vec<StatementStepRow> = self.fetch(sql, &log.table, "statement steps").await?;
        let mut steps: Vec<StatementStep> = rows
            .into_iter()
            .map(|row| StatementStep {
                time: Timestamp(i64::from(row.bucket)),
                stats: StatementStats {
                    server: entity(&row.kind, &row.name),
                    protocol: L7Protocol::from_deepflow_code(row.protocol),
                    request_type: row.verb,
                    shape: row.shape,
                    count: row.executions,
                    errors: row.errors,
                    latency_mean_ms: row.mean_ms,
                    latency_p99_ms: row.p99_ms,
                    latency_max_ms: row.max_ms,
                },
            })
            .collect();
        // Sorted here rather than in SQL so the order is the entity ids' (as
        // in every other store), not ClickHouse's order of kind and name.
        steps.sort_by(|a, b| {
            (a.time, &a.stats.server, &a.stats.shape, a.stats.protocol)
                .cmp(&(b.time, &b.stats.server, &b.stats.shape, b.stats.protocol))
                .then_with(|| a.stats.request_type.cmp(&b.stats.request_type))
        });
        Ok(steps)
    }

    async fn slow_requests_inner(
        &self,
        query: &SampleQuery,
    ) -> Result<Vec<RequestSample>, ClickHouseError> {
        let log = self.log();
        let identity = self.identity(&log, &query.range, true).await?;
        let mut sql = Sql::new(
            "SELECT at, client_id, kind, name, protocol, verb, resource, duration_ms, status, code, trace FROM (SELECT toUInt32(time) AS at, ",
        );
        sql.append(identity.client_id(&log)).push(" AS client_id, ");
        sql.push(&kind_sql())
            .push(" AS kind, ")
            .append(identity.server_name(&log))
            .push(" AS name, ");
        sql.push(
            "toUInt8(l7_protocol) AS protocol, toString(request_type) AS verb, \
             toString(request_resource) AS resource, toFloat64(response_duration / 1000) AS duration_ms, \
             toUInt8(response_status) AS status, CAST(response_code AS Nullable(Int32)) AS code, \
             toString(trace_id) AS trace",
        );
        sql.append(from_where(&log, &query.range));
        let min_us = (query.min_duration_ms.max(0.0) * 1000.0).ceil() as u64;
        sql.push(" AND (response_duration >= ")
            .bind(Bind::U64(min_us));
        if query.include_errors {
            sql.push(" OR response_status = 3");
        }
        sql.push("))");
        if let Some(server) = &query.server {
            sql.push(" WHERE concat(kind, ':', name) = ")
                .bind(Bind::Str(server.as_str().to_owned()));
        }
        sql.push(" ORDER BY duration_ms DESC, at, client_id LIMIT ")
            .bind(Bind::U64(query.limit as u64));
        let rows: Vec<SampleRow> = self.fetch(sql, &log.table, "slow requests").await?;
        Ok(rows
            .into_iter()
            .map(|row| RequestSample {
                time: vigil_model::Timestamp(i64::from(row.at)),
                client: Some(parse_id(&row.client_id)),
                server: entity(&row.kind, &row.name),
                protocol: L7Protocol::from_deepflow_code(row.protocol),
                request_type: row.verb,
                resource: row.resource,
                duration_ms: row.duration_ms,
                status: ResponseStatus::from_deepflow_code(row.status),
                code: row.code,
                trace_id: (!row.trace.is_empty()).then_some(row.trace),
            })
            .collect())
    }

    async fn profile_inner(
        &self,
        id: &EntityId,
        range: TimeRange,
    ) -> Result<Profile, ClickHouseError> {
        let table = self.vigil_table(&schema::PROFILE_STACKS);
        let mut sql = Sql::new(&format!(
            "SELECT frames, any(unit) AS unit, toUInt64(sum(value)) AS value FROM {table} WHERE "
        ));
        range_sql(&mut sql, &range);
        sql.push(" AND (entity = ")
            .bind(Bind::Str(id.as_str().to_owned()))
            .push(" OR container_name = ")
            .bind(Bind::Str(id.name().to_owned()))
            .push(") GROUP BY frames");
        let own: Vec<StackRow> = match self.fetch(sql, &table, "profile stacks").await {
            Err(ClickHouseError::Schema { .. }) => Vec::new(),
            other => other?,
        };
        let mut unit = None;
        let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
        for row in own {
            unit.get_or_insert(row.unit);
            *stacks.entry(row.frames).or_default() += row.value;
        }
        if self.config.request_log == RequestLog::Deepflow {
            for (frames, value) in self.deepflow_stacks(id, &range).await? {
                *stacks.entry(frames).or_default() += value;
            }
        }
        let mut stacks: Vec<FoldedStack> = stacks
            .into_iter()
            .map(|(frames, value)| FoldedStack { frames, value })
            .collect();
        stacks.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
        Ok(Profile {
            entity: id.clone(),
            range,
            unit: unit.unwrap_or_else(|| "cpu-us".to_owned()),
            stacks,
        })
    }

    /// On-CPU stacks of `id` from DeepFlow's `profile.in_process`: rows whose
    /// `app_service` is the entity's name, or whose process is one of the
    /// container's pids. Summed per (compressed) stack in ClickHouse, then
    /// decompressed here; a missing table reads as no stacks.
    async fn deepflow_stacks(
        &self,
        id: &EntityId,
        range: &TimeRange,
    ) -> Result<Vec<(String, u64)>, ClickHouseError> {
        let mut pids: Vec<u32> = Vec::new();
        for row in self.snapshots(Some(EntityKind::Container)).await? {
            if parse_id(&row.entity).name() != id.name() {
                continue;
            }
            for (name, value) in row.names.iter().zip(&row.values) {
                if name == "pid" {
                    pids.extend(value.parse::<u32>().ok());
                }
            }
        }
        let table = self.in_process_table();
        let mut sql = Sql::new(&format!(
            "SELECT profile_location_str AS stack, toString(compression_algo) AS algo, \
             toUInt64(sum(profile_value)) AS value FROM {table} WHERE "
        ));
        range_sql(&mut sql, range);
        sql.push(" AND profile_event_type = 'on-cpu' AND (app_service = ")
            .bind(Bind::Str(id.name().to_owned()));
        if !pids.is_empty() {
            sql.push(" OR has(")
                .bind(Bind::U32s(pids))
                .push(", toUInt32(process_id))");
        }
        sql.push(") GROUP BY stack, algo");
        let rows: Vec<BlobRow> = match self.fetch(sql, &table, "DeepFlow profile").await {
            Err(ClickHouseError::Schema { detail, .. }) => {
                tracing::debug!(%table, %detail, "no DeepFlow profiles");
                Vec::new()
            }
            other => other?,
        };
        let mut stacks = Vec::with_capacity(rows.len());
        for row in rows {
            match decode_stack(&row.stack, &row.algo) {
                Some(frames) => stacks.push((frames, row.value)),
                None => {
                    tracing::warn!(algo = %row.algo, "skipping a profile stack that does not decode")
                }
            }
        }
        Ok(stacks)
    }

    async fn events_inner(&self, range: TimeRange) -> Result<Vec<Event>, ClickHouseError> {
        let table = self.vigil_table(&schema::EVENTS);
        let mut sql = Sql::new(&format!(
            "SELECT toUInt32(time) AS at, entity, kind, detail FROM {table} WHERE "
        ));
        range_sql(&mut sql, &range);
        sql.push(" ORDER BY at, entity, kind, detail");
        let rows: Vec<EventRow> = self.fetch(sql, &table, "events").await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let Some(kind) = EventKind::parse(&row.kind) else {
                    tracing::warn!(kind = %row.kind, "skipping an event of unknown kind");
                    return None;
                };
                Some(Event {
                    time: vigil_model::Timestamp(i64::from(row.at)),
                    entity: parse_id(&row.entity),
                    kind,
                    detail: row.detail,
                })
            })
            .collect())
    }
}

/// The index of `bucket` in a series of `count` steps from `range.start`.
fn step_index(range: &TimeRange, step: u32, bucket: u32, count: usize) -> Option<usize> {
    let offset = i64::from(bucket) - range.start.secs();
    if offset < 0 {
        return None;
    }
    let index = usize::try_from(offset / i64::from(step.max(1))).ok()?;
    (index < count).then_some(index)
}

/// A DeepFlow `profile_location_str` as text: plain, or zstd per `compression_algo`.
fn decode_stack(bytes: &[u8], algo: &str) -> Option<String> {
    match algo {
        "" | "none" => String::from_utf8(bytes.to_vec()).ok(),
        "zstd" => zstd::decode_all(bytes)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok()),
        _ => None,
    }
}

#[async_trait]
impl TelemetrySource for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn topology(&self, range: TimeRange) -> Result<Topology, SourceError> {
        Ok(self.topology_inner(range).await?)
    }

    async fn request_series(&self, query: &SeriesQuery) -> Result<Vec<RequestSeries>, SourceError> {
        query.validate()?;
        Ok(self.request_series_inner(query).await?)
    }

    async fn edge_series(&self, query: &SeriesQuery) -> Result<Vec<EdgeMetrics>, SourceError> {
        query.validate()?;
        Ok(self.edge_series_inner(query).await?)
    }

    async fn call_edges(&self, range: TimeRange) -> Result<Vec<CallEdge>, SourceError> {
        Ok(self.call_edges_inner(range).await?)
    }

    async fn resource_series(
        &self,
        query: &SeriesQuery,
        metric: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, SourceError> {
        query.validate()?;
        Ok(self.resource_series_inner(query, metric).await?)
    }

    async fn top_statements(
        &self,
        query: &StatementQuery,
    ) -> Result<Vec<StatementStats>, SourceError> {
        Ok(self.top_statements_inner(query).await?)
    }

    async fn statement_steps(
        &self,
        query: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, SourceError> {
        query.validate()?;
        Ok(self.statement_steps_inner(query).await?)
    }

    async fn slow_requests(&self, query: &SampleQuery) -> Result<Vec<RequestSample>, SourceError> {
        Ok(self.slow_requests_inner(query).await?)
    }

    async fn profile(&self, entity: &EntityId, range: TimeRange) -> Result<Profile, SourceError> {
        Ok(self.profile_inner(entity, range).await?)
    }

    async fn events(&self, range: TimeRange) -> Result<Vec<Event>, SourceError> {
        Ok(self.events_inner(range).await?)
    }

    /// Runs a playbook's query read-only (`readonly = 2`: settings may change,
    /// data may not), with `{start}`/`{end}` replaced by the window's unix
    /// seconds; the query's `value` column of its first row is the answer.
    async fn query_scalar(&self, query: &str, range: TimeRange) -> Result<f64, SourceError> {
        if query.contains('?') {
            return Err(SourceError::InvalidRequest(
                "a query check must not contain `?`; use {start} and {end} for the window"
                    .to_owned(),
            ));
        }
        let text = query
            .replace("{start}", &range.start.secs().to_string())
            .replace("{end}", &range.end.secs().to_string());
        let sql = format!("SELECT toFloat64(value) AS value FROM ({text}) LIMIT 1");
        let rows: Vec<ScalarRow> = self
            .timed(
                self.client
                    .query(&sql)
                    .with_setting("readonly", "2")
                    .fetch_all::<ScalarRow>(),
                "query check",
                "query",
            )
            .await?;
        rows.first()
            .map(|row| row.value)
            .ok_or_else(|| SourceError::Query {
                backend: "clickhouse",
                detail: "the query returned no row".to_owned(),
            })
    }
}

/// The one number a query check returns.
#[derive(clickhouse::Row, Deserialize)]
struct ScalarRow {
    value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_follows_the_model() {
        assert_eq!(
            kind_sql(),
            "transform(toUInt32(l7_protocol), [toUInt32(60), toUInt32(61), toUInt32(80)], \
             ['database', 'database', 'cache'], 'service')"
        );
    }

    #[test]
    fn empty_identity_maps_add_no_transform() {
        let identity = Identity::default();
        let log = Log {
            table: "flow_log.l7_flow_log".into(),
            has_containers: false,
        };
        let sql = identity.server_name(&log);
        assert!(!sql.text().contains("transform"), "{}", sql.text());
        assert!(!sql.text().contains('?'));
    }

    #[test]
    fn prefilters_use_raw_columns() {
        assert_eq!(
            kind_cond(&[EntityKind::Service]),
            "(l7_protocol NOT IN (60, 61, 80))"
        );
        assert_eq!(kind_cond(&[EntityKind::Cache]), "(l7_protocol IN (80))");
        assert_eq!(kind_cond(&[EntityKind::Container]), "0");
        let sql = server_key_cond("redis-server@10.0.0.5:6379").expect("a process key");
        assert_eq!(
            sql.text(),
            "(process_kname_1 = ? AND server_port = ? AND (is_ipv4 = 1 AND ip4_1 = ?))"
        );
        assert!(server_key_cond("checkout").is_none());
        assert!(server_key_cond("a@10.0.0.5:http").is_none());
        assert!(pid_key_cond(0, "::1#42")
            .text()
            .contains("ip6_0 = IPv6StringToNum(?)"));
        let log = Log {
            table: "flow_log.l7_flow_log".into(),
            has_containers: false,
        };
        let filter = EntityFilter::ids(&[EntityId::new(EntityKind::Service, "checkout")]);
        let sql = Identity::default().server_prefilter(&log, &filter);
        assert!(!sql.text().contains("transform"), "{}", sql.text());
    }

    #[test]
    fn stacks_decode_plain_and_zstd() {
        let frames = "main;work;hash";
        assert_eq!(decode_stack(frames.as_bytes(), "").as_deref(), Some(frames));
        let packed = zstd::encode_all(frames.as_bytes(), 3).expect("compress");
        assert_eq!(decode_stack(&packed, "zstd").as_deref(), Some(frames));
        assert_eq!(decode_stack(b"\xff\xfe", "zstd"), None);
        assert_eq!(decode_stack(frames.as_bytes(), "lz77"), None);
    }
}
