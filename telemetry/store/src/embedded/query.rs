//! Reading telemetry back: the synchronous halves of the
//! [`vigil_model::TelemetrySource`] methods.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{params, Row, ToSql};
use vigil_model::{
    CallEdge, EdgeMetrics, Entity, EntityId, Event, EventKind, FoldedStack, L7Protocol, Profile,
    Relation, RelationKind, RequestSample, RequestSeries, ResourceMetric, ResourceSeries,
    ResponseStatus, SampleQuery, SeriesQuery, StatementOrder, StatementQuery, StatementStats,
    StatementStep, StatementStepQuery, TimeRange, Timestamp, Topology, MINUTE_SECS,
};

use super::chunk::{self, MinuteGrid, CHUNK_SECS, REQUEST_COLUMNS, RESOURCE_COLUMNS};
use super::database::Database;
use super::error::StoreError;

/// Quantile used to merge per-minute p99s over a window.
const P99: f64 = 0.99;

/// The minute-aligned window a query reads, and the chunk starts covering it.
struct Window {
    start: i64,
    end: i64,
    minutes: usize,
    first_chunk: i64,
}

impl Window {
    fn new(range: TimeRange, step_secs: u32) -> Self {
        let aligned = range.aligned_to(step_secs.max(MINUTE_SECS));
        let start = aligned.start.secs();
        let end = aligned.end.secs();
        Self {
            start,
            end,
            minutes: usize::try_from((end - start) / 60).unwrap_or(0),
            first_chunk: chunk::chunk_start_of(start),
        }
    }

    fn chunk_starts(&self) -> impl Iterator<Item = i64> + '_ {
        (0..)
            .map(|hour| self.first_chunk + hour * CHUNK_SECS)
            .take_while(|start| *start < self.end)
    }
}

fn protocol_of(code: i64) -> L7Protocol {
    L7Protocol::from_deepflow_code(u8::try_from(code).unwrap_or(u8::MAX))
}

/// Order of statement steps within a step: (server, shape, protocol, verb).
fn statement_identity(stats: &StatementStats) -> (&EntityId, &str, L7Protocol, &str) {
    (
        &stats.server,
        &stats.shape,
        stats.protocol,
        &stats.request_type,
    )
}

fn count_of(value: f64) -> u64 {
    if value.is_nan() || value <= 0.0 {
        0
    } else {
        value.round() as u64
    }
}

impl Database {
    /// Fills one grid per key from the chunk rows `rows` yields as `(key, chunk_start, blob)`.
    fn fill_grids<K: Ord>(
        &self,
        table: &'static str,
        window: &Window,
        columns: usize,
        grids: &mut BTreeMap<K, MinuteGrid>,
        key: K,
        (chunk_start, blob): (i64, &[u8]),
    ) -> Result<(), StoreError> {
        let values = chunk::decode(blob, columns).ok_or_else(|| StoreError::Damaged {
            path: self.path.clone(),
            table,
            detail: format!("chunk at {chunk_start} is {} bytes", blob.len()),
        })?;
        grids
            .entry(key)
            .or_insert_with(|| MinuteGrid::new(window.start, window.minutes, columns))
            .fill(chunk_start, &values);
        Ok(())
    }

    /// Minute grids of every entity passing `query.filter` in `table` (request or resource chunks).
    fn entity_grids(
        &self,
        query: &SeriesQuery,
        table: &'static str,
        metric: Option<ResourceMetric>,
    ) -> Result<BTreeMap<EntityId, MinuteGrid>, StoreError> {
        let window = Window::new(query.range, query.step_secs);
        let columns = if metric.is_some() {
            RESOURCE_COLUMNS
        } else {
            REQUEST_COLUMNS
        };
        let metric_name = metric.map_or("", ResourceMetric::as_str);
        let mut grids = BTreeMap::new();
        if !query.filter.ids.is_empty() {
            // A few named entities: look their chunks up one by one.
            let sql = match metric {
                Some(_) => "SELECT data FROM resource_chunk WHERE chunk_start = ?1 AND entity = ?2 AND metric = ?3",
                None => "SELECT data FROM request_chunk WHERE chunk_start = ?1 AND entity = ?2 AND ?3 = ''",
            };
            let mut select = self
                .connection
                .prepare_cached(sql)
                .map_err(self.error(table))?;
            for id in query
                .filter
                .ids
                .iter()
                .filter(|id| query.filter.matches(id))
            {
                let Some(&row) = self.entity_rows.get(id) else {
                    continue;
                };
                for chunk_start in window.chunk_starts() {
                    let mut rows = select
                        .query(params![chunk_start, row, metric_name])
                        .map_err(self.error(table))?;
                    if let Some(found) = rows.next().map_err(self.error(table))? {
                        let blob: Vec<u8> = found.get(0).map_err(self.error(table))?;
                        self.fill_grids(
                            table,
                            &window,
                            columns,
                            &mut grids,
                            id.clone(),
                            (chunk_start, &blob),
                        )?;
                    }
                }
            }
        } else {
            let sql = match metric {
                Some(_) => {
                    "SELECT entity, chunk_start, data FROM resource_chunk
                            WHERE chunk_start >= ?1 AND chunk_start < ?2 AND metric = ?3"
                }
                None => {
                    "SELECT entity, chunk_start, data FROM request_chunk
                         WHERE chunk_start >= ?1 AND chunk_start < ?2 AND ?3 = ''"
                }
            };
            let mut select = self
                .connection
                .prepare_cached(sql)
                .map_err(self.error(table))?;
            let mut rows = select
                .query(params![window.first_chunk, window.end, metric_name])
                .map_err(self.error(table))?;
            while let Some(found) = rows.next().map_err(self.error(table))? {
                let row: i64 = found.get(0).map_err(self.error(table))?;
                let id = self.entity(row, table)?;
                if !query.filter.matches(id) {
                    continue;
                }
                let chunk_start: i64 = found.get(1).map_err(self.error(table))?;
                let blob: Vec<u8> = found.get(2).map_err(self.error(table))?;
                self.fill_grids(
                    table,
                    &window,
                    columns,
                    &mut grids,
                    id.clone(),
                    (chunk_start, &blob),
                )?;
            }
        }
        grids.retain(|_, grid| grid.has_data());
        Ok(grids)
    }

    /// Minute grids of every edge in the window whose ends pass `accept`.
    fn edge_grids(
        &self,
        window: &Window,
        named: &[EntityId],
        accept: impl Fn(&EntityId, &EntityId) -> bool,
    ) -> Result<BTreeMap<(EntityId, EntityId, L7Protocol), MinuteGrid>, StoreError> {
        let table = "edge_chunk";
        let mut grids = BTreeMap::new();
        let mut fill = |found: &rusqlite::Row<'_>| -> Result<(), StoreError> {
            let client = self.entity(found.get(0).map_err(self.error(table))?, table)?;
            let server = self.entity(found.get(1).map_err(self.error(table))?, table)?;
            if !accept(client, server) {
                return Ok(());
            }
            let protocol = protocol_of(found.get(2).map_err(self.error(table))?);
            let chunk_start: i64 = found.get(3).map_err(self.error(table))?;
            let blob: Vec<u8> = found.get(4).map_err(self.error(table))?;
            let key = (client.clone(), server.clone(), protocol);
            self.fill_grids(
                table,
                window,
                REQUEST_COLUMNS,
                &mut grids,
                key,
                (chunk_start, &blob),
            )
        };
        if named.is_empty() {
            let mut select = self
                .connection
                .prepare_cached(
                    "SELECT client, server, protocol, chunk_start, data FROM edge_chunk
                     WHERE chunk_start >= ?1 AND chunk_start < ?2",
                )
                .map_err(self.error(table))?;
            let mut rows = select
                .query(params![window.first_chunk, window.end])
                .map_err(self.error(table))?;
            while let Some(found) = rows.next().map_err(self.error(table))? {
                fill(found)?;
            }
        } else {
            // A few named entities: use the by-client and by-server indexes
            // instead of reading every edge of the window.
            let mut select = self
                .connection
                .prepare_cached(
                    "SELECT client, server, protocol, chunk_start, data FROM edge_chunk
                     WHERE client = ?1 AND chunk_start >= ?2 AND chunk_start < ?3
                     UNION ALL
                     SELECT client, server, protocol, chunk_start, data FROM edge_chunk
                     WHERE server = ?1 AND client != ?1 AND chunk_start >= ?2 AND chunk_start < ?3",
                )
                .map_err(self.error(table))?;
            let rows: BTreeSet<i64> = named
                .iter()
                .filter_map(|id| self.entity_rows.get(id).copied())
                .collect();
            for row in rows {
                let mut found_rows = select
                    .query(params![row, window.first_chunk, window.end])
                    .map_err(self.error(table))?;
                while let Some(found) = found_rows.next().map_err(self.error(table))? {
                    fill(found)?;
                }
            }
        }
        grids.retain(|_, grid| grid.has_data());
        Ok(grids)
    }

    /// See [`vigil_model::TelemetrySource::request_series`].
    pub fn request_series(&self, query: &SeriesQuery) -> Result<Vec<RequestSeries>, StoreError> {
        let grids = self.entity_grids(query, "request_chunk", None)?;
        Ok(grids
            .into_iter()
            .map(|(entity, grid)| RequestSeries {
                entity,
                metrics: grid.to_request_metrics(query.step_secs),
            })
            .collect())
    }

    /// See [`vigil_model::TelemetrySource::edge_series`].
    pub fn edge_series(&self, query: &SeriesQuery) -> Result<Vec<EdgeMetrics>, StoreError> {
        let window = Window::new(query.range, query.step_secs);
        let filter = &query.filter;
        let grids = self.edge_grids(&window, &filter.ids, |client, server| {
            filter.matches(client) || filter.matches(server)
        })?;
        Ok(grids
            .into_iter()
            .map(|((client, server, protocol), grid)| EdgeMetrics {
                client,
                server,
                protocol,
                metrics: grid.to_request_metrics(query.step_secs),
            })
            .collect())
    }

    /// See [`vigil_model::TelemetrySource::call_edges`].
    pub fn call_edges(&self, range: TimeRange) -> Result<Vec<CallEdge>, StoreError> {
        let window = Window::new(range, MINUTE_SECS);
        let grids = self.edge_grids(&window, &[], |_, _| true)?;
        Ok(grids
            .into_iter()
            .map(|((client, server, protocol), grid)| {
                let requests = &grid.columns[0];
                CallEdge {
                    client,
                    server,
                    protocol,
                    requests: count_of(chunk::sum_present(requests)),
                    errors: count_of(chunk::sum_present(&grid.columns[1])),
                    latency_mean_ms: chunk::weighted_mean(&grid.columns[2], requests),
                    latency_p99_ms: chunk::weighted_quantile(&grid.columns[5], requests, P99),
                }
            })
            .collect())
    }

    /// See [`vigil_model::TelemetrySource::resource_series`].
    pub fn resource_series(
        &self,
        query: &SeriesQuery,
        metric: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, StoreError> {
        let grids = self.entity_grids(query, "resource_chunk", Some(metric))?;
        let merge: fn(&[f64]) -> f64 = match metric {
            ResourceMetric::CpuCores | ResourceMetric::MemoryBytes => chunk::mean_present,
            ResourceMetric::TcpRetransmits | ResourceMetric::TcpResets => chunk::sum_present,
        };
        Ok(grids
            .into_iter()
            .map(|(entity, grid)| ResourceSeries {
                entity,
                metric,
                series: grid.to_series(query.step_secs, merge),
            })
            .collect())
    }

    /// Statement minutes in `window`, merged per shape and per bucket of
    /// `step_secs` (epoch-aligned, as ClickHouse buckets); `None` merges the
    /// whole window into one bucket at its start.
    ///
    /// Merge rules: counts and errors summed, mean weighted by count, p99 the
    /// count-weighted 99th percentile of the minutes' p99s, max of maxima.
    fn merged_statements(
        &self,
        server: Option<&EntityId>,
        protocol: Option<L7Protocol>,
        window: &Window,
        step_secs: Option<u32>,
    ) -> Result<Vec<(i64, StatementStats)>, StoreError> {
        let table = "statement_minute";
        let Some((server_row, protocol)) = self.statement_filter(server, protocol) else {
            return Ok(Vec::new());
        };
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT s.id, s.server, s.protocol, s.request_type, s.shape,
                        m.count, m.errors, m.latency_mean_ms, m.latency_p99_ms, m.latency_max_ms,
                        m.minute
                 FROM statement_minute m JOIN statement_shape s ON s.id = m.shape
                 WHERE m.minute >= ?1 AND m.minute < ?2
                   AND (?3 IS NULL OR s.server = ?3) AND (?4 IS NULL OR s.protocol = ?4)",
            )
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![window.start, window.end, server_row, protocol])
            .map_err(self.error(table))?;
        struct Minutes {
            stats: StatementStats,
            counts: Vec<f64>,
            means: Vec<f64>,
            p99s: Vec<f64>,
        }
        let mut shapes: HashMap<(i64, i64), Minutes> = HashMap::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let shape: i64 = row.get(0).map_err(self.error(table))?;
            let count: i64 = row.get(5).map_err(self.error(table))?;
            let errors: i64 = row.get(6).map_err(self.error(table))?;
            let mean: f64 = row.get(7).map_err(self.error(table))?;
            let p99: f64 = row.get(8).map_err(self.error(table))?;
            let max: f64 = row.get(9).map_err(self.error(table))?;
            let minute: i64 = row.get(10).map_err(self.error(table))?;
            let bucket = match step_secs {
                Some(step) => minute - minute.rem_euclid(i64::from(step.max(1))),
                None => window.start,
            };
            let entry = match shapes.entry((shape, bucket)) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let server = self.entity(row.get(1).map_err(self.error(table))?, table)?;
                    entry.insert(Minutes {
                        stats: StatementStats {
                            server: server.clone(),
                            protocol: protocol_of(row.get(2).map_err(self.error(table))?),
                            request_type: row.get(3).map_err(self.error(table))?,
                            shape: row.get(4).map_err(self.error(table))?,
                            count: 0,
                            errors: 0,
                            latency_mean_ms: f64::NAN,
                            latency_p99_ms: f64::NAN,
                            latency_max_ms: f64::NAN,
                        },
                        counts: Vec::new(),
                        means: Vec::new(),
                        p99s: Vec::new(),
                    })
                }
            };
            entry.stats.count += u64::try_from(count).unwrap_or(0);
            entry.stats.errors += u64::try_from(errors).unwrap_or(0);
            entry.stats.latency_max_ms = chunk::max_present(&[entry.stats.latency_max_ms, max]);
            entry.counts.push(count as f64);
            entry.means.push(mean);
            entry.p99s.push(p99);
        }
        Ok(shapes
            .into_iter()
            .map(|((_, bucket), mut minutes)| {
                minutes.stats.latency_mean_ms =
                    chunk::weighted_mean(&minutes.means, &minutes.counts);
                minutes.stats.latency_p99_ms =
                    chunk::weighted_quantile(&minutes.p99s, &minutes.counts, P99);
                (bucket, minutes.stats)
            })
            .collect())
    }

    /// See [`vigil_model::TelemetrySource::top_statements`].
    pub fn top_statements(
        &self,
        query: &StatementQuery,
    ) -> Result<Vec<StatementStats>, StoreError> {
        let window = Window::new(query.range, MINUTE_SECS);
        let mut merged: Vec<StatementStats> = self
            .merged_statements(query.server.as_ref(), query.protocol, &window, None)?
            .into_iter()
            .map(|(_, stats)| stats)
            .collect();
        merged.sort_by(|a, b| {
            let primary = match query.order {
                StatementOrder::P99 => b.latency_p99_ms.total_cmp(&a.latency_p99_ms),
                StatementOrder::TotalTime => b.total_ms().total_cmp(&a.total_ms()),
                StatementOrder::Errors => b.errors.cmp(&a.errors),
            };
            primary.then_with(|| {
                (&a.server, a.protocol, &a.request_type, &a.shape).cmp(&(
                    &b.server,
                    b.protocol,
                    &b.request_type,
                    &b.shape,
                ))
            })
        });
        merged.truncate(query.limit);
        Ok(merged)
    }

    /// See [`vigil_model::TelemetrySource::statement_steps`].
    pub fn statement_steps(
        &self,
        query: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, StoreError> {
        let window = Window::new(query.range, query.step_secs);
        if query.step_secs == MINUTE_SECS {
            return self.minute_statement_steps(query.server.as_ref(), query.protocol, &window);
        }
        let mut steps: Vec<StatementStep> = self
            .merged_statements(
                query.server.as_ref(),
                query.protocol,
                &window,
                Some(query.step_secs),
            )?
            .into_iter()
            .map(|(bucket, stats)| StatementStep {
                time: Timestamp(bucket),
                stats,
            })
            .collect();
        steps.sort_by(|a, b| {
            (a.time, statement_identity(&a.stats)).cmp(&(b.time, statement_identity(&b.stats)))
        });
        Ok(steps)
    }

    /// SQL filter values for statements of `server` (any when `None`) and
    /// `protocol`; `None` when the server is unknown, so nothing can match.
    fn statement_filter(
        &self,
        server: Option<&EntityId>,
        protocol: Option<L7Protocol>,
    ) -> Option<(Option<i64>, Option<i64>)> {
        let server_row = match server {
            Some(server) => Some(*self.entity_rows.get(server)?),
            None => None,
        };
        Some((server_row, protocol.map(|p| i64::from(p.deepflow_code()))))
    }

    /// Per-minute steps are the stored rows: no merging, shapes read once and
    /// ordered by an integer rank, rows streamed in primary-key order (a
    /// day of 1,000 services is millions of rows).
    fn minute_statement_steps(
        &self,
        server: Option<&EntityId>,
        protocol: Option<L7Protocol>,
        window: &Window,
    ) -> Result<Vec<StatementStep>, StoreError> {
        let table = "statement_shape";
        let Some((server_row, protocol)) = self.statement_filter(server, protocol) else {
            return Ok(Vec::new());
        };
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT id, server, protocol, request_type, shape FROM statement_shape
                 WHERE (?1 IS NULL OR server = ?1) AND (?2 IS NULL OR protocol = ?2)",
            )
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![server_row, protocol])
            .map_err(self.error(table))?;
        let mut shapes: Vec<(i64, StatementStats)> = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let server = self.entity(row.get(1).map_err(self.error(table))?, table)?;
            shapes.push((
                row.get(0).map_err(self.error(table))?,
                StatementStats {
                    server: server.clone(),
                    protocol: protocol_of(row.get(2).map_err(self.error(table))?),
                    request_type: row.get(3).map_err(self.error(table))?,
                    shape: row.get(4).map_err(self.error(table))?,
                    count: 0,
                    errors: 0,
                    latency_mean_ms: f64::NAN,
                    latency_p99_ms: f64::NAN,
                    latency_max_ms: f64::NAN,
                },
            ));
        }
        shapes.sort_by(|a, b| statement_identity(&a.1).cmp(&statement_identity(&b.1)));
        let rank: HashMap<i64, usize> = shapes
            .iter()
            .enumerate()
            .map(|(rank, (id, _))| (*id, rank))
            .collect();

        let table = "statement_minute";
        // One server's shapes: seek each (minute, shape) of its shapes through
        // the primary key instead of scanning every shape of the estate in
        // the window (a day of 1,000 services is about a million rows).
        let sql = if server_row.is_some() {
            "WITH RECURSIVE minutes(minute) AS (
                 SELECT ?1 WHERE ?1 < ?2
                 UNION ALL SELECT minute + 60 FROM minutes WHERE minute + 60 < ?2)
             SELECT m.minute, m.shape, m.count, m.errors, m.latency_mean_ms, m.latency_p99_ms,
                    m.latency_max_ms
             FROM minutes JOIN statement_minute m ON m.minute = minutes.minute
             WHERE m.shape IN (SELECT id FROM statement_shape WHERE server = ?3)"
        } else {
            "SELECT minute, shape, count, errors, latency_mean_ms, latency_p99_ms, latency_max_ms
             FROM statement_minute WHERE minute >= ?1 AND minute < ?2 AND ?3 IS NULL
             ORDER BY minute"
        };
        let mut select = self
            .connection
            .prepare_cached(sql)
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![window.start, window.end, server_row])
            .map_err(self.error(table))?;
        let mut ranked: Vec<(i64, usize, StatementStep)> = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let shape: i64 = row.get(1).map_err(self.error(table))?;
            let Some(&position) = rank.get(&shape) else {
                continue;
            };
            let minute: i64 = row.get(0).map_err(self.error(table))?;
            let mut stats = shapes[position].1.clone();
            stats.count =
                u64::try_from(row.get::<_, i64>(2).map_err(self.error(table))?).unwrap_or(0);
            stats.errors =
                u64::try_from(row.get::<_, i64>(3).map_err(self.error(table))?).unwrap_or(0);
            stats.latency_mean_ms = row.get(4).map_err(self.error(table))?;
            stats.latency_p99_ms = row.get(5).map_err(self.error(table))?;
            stats.latency_max_ms = row.get(6).map_err(self.error(table))?;
            ranked.push((
                minute,
                position,
                StatementStep {
                    time: Timestamp(minute),
                    stats,
                },
            ));
        }
        ranked.sort_unstable_by_key(|(minute, position, _)| (*minute, *position));
        Ok(ranked.into_iter().map(|(_, _, step)| step).collect())
    }

    /// See [`vigil_model::TelemetrySource::slow_requests`].
    ///
    /// "Failed" means any status other than OK: server and client errors and
    /// requests without a response (timeouts).
    pub fn slow_requests(&self, query: &SampleQuery) -> Result<Vec<RequestSample>, StoreError> {
        let table = "request_sample";
        let server_row = match &query.server {
            Some(server) => match self.entity_rows.get(server) {
                Some(&row) => Some(row),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT time, client, server, protocol, request_type, resource, duration_ms,
                        status, code, trace_id
                 FROM request_sample
                 WHERE time >= ?1 AND time < ?2 AND (?3 IS NULL OR server = ?3)
                   AND (duration_ms >= ?4 OR (?5 AND status <> 0))
                 ORDER BY duration_ms DESC, time, server, client, resource, trace_id
                 LIMIT ?6",
            )
            .map_err(self.error(table))?;
        let arguments: [&dyn ToSql; 6] = [
            &query.range.start.secs(),
            &query.range.end.secs(),
            &server_row,
            &query.min_duration_ms,
            &query.include_errors,
            &limit,
        ];
        let mut rows = select.query(&arguments[..]).map_err(self.error(table))?;
        let mut samples = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            samples.push(self.sample_of(row).map_err(self.error(table))??);
        }
        Ok(samples)
    }

    fn sample_of(&self, row: &Row<'_>) -> rusqlite::Result<Result<RequestSample, StoreError>> {
        let table = "request_sample";
        let client: i64 = row.get(1)?;
        let client = if client == 0 {
            None
        } else {
            match self.entity(client, table) {
                Ok(id) => Some(id.clone()),
                Err(error) => return Ok(Err(error)),
            }
        };
        let server = match self.entity(row.get(2)?, table) {
            Ok(id) => id.clone(),
            Err(error) => return Ok(Err(error)),
        };
        let status: i64 = row.get(7)?;
        let trace_id: String = row.get(9)?;
        Ok(Ok(RequestSample {
            time: Timestamp(row.get(0)?),
            client,
            server,
            protocol: protocol_of(row.get(3)?),
            request_type: row.get(4)?,
            resource: row.get(5)?,
            duration_ms: row.get(6)?,
            status: ResponseStatus::from_deepflow_code(u8::try_from(status).unwrap_or(u8::MAX)),
            code: row.get(8)?,
            trace_id: (!trace_id.is_empty()).then_some(trace_id),
        }))
    }

    /// See [`vigil_model::TelemetrySource::profile`].
    ///
    /// Merges every profile of the entity overlapping the range. Should profiles
    /// in different units overlap, the unit of the latest one is kept and the
    /// others are left out rather than added to incomparable numbers.
    pub fn profile(&self, entity: &EntityId, range: TimeRange) -> Result<Profile, StoreError> {
        let table = "profile";
        let mut profile = Profile {
            entity: entity.clone(),
            range,
            unit: "samples".to_owned(),
            stacks: Vec::new(),
        };
        let Some(&row) = self.entity_rows.get(entity) else {
            return Ok(profile);
        };
        let unit: Option<String> = {
            let mut select = self
                .connection
                .prepare_cached(
                    "SELECT unit FROM profile WHERE entity = ?1 AND range_start < ?3 AND range_end > ?2
                     ORDER BY range_end DESC LIMIT 1",
                )
                .map_err(self.error(table))?;
            let mut rows = select
                .query(params![row, range.start.secs(), range.end.secs()])
                .map_err(self.error(table))?;
            match rows.next().map_err(self.error(table))? {
                Some(found) => Some(found.get(0).map_err(self.error(table))?),
                None => None,
            }
        };
        let Some(unit) = unit else {
            return Ok(profile);
        };
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT s.frames, sum(s.value) AS total FROM profile p
                 JOIN profile_stack s ON s.profile = p.id
                 WHERE p.entity = ?1 AND p.range_start < ?3 AND p.range_end > ?2 AND p.unit = ?4
                 GROUP BY s.frames ORDER BY total DESC, s.frames",
            )
            .map_err(self.error("profile_stack"))?;
        let stacks = select
            .query_map(
                params![row, range.start.secs(), range.end.secs(), unit],
                |found| {
                    let value: i64 = found.get(1)?;
                    Ok(FoldedStack {
                        frames: found.get(0)?,
                        value: u64::try_from(value).unwrap_or(0),
                    })
                },
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.error("profile_stack"))?;
        profile.unit = unit;
        profile.stacks = stacks;
        Ok(profile)
    }

    /// See [`vigil_model::TelemetrySource::events`].
    pub fn events(&self, range: TimeRange) -> Result<Vec<Event>, StoreError> {
        let table = "event";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT time, entity, kind, detail FROM event WHERE time >= ?1 AND time < ?2
                 ORDER BY time",
            )
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![range.start.secs(), range.end.secs()])
            .map_err(self.error(table))?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let kind: String = row.get(2).map_err(self.error(table))?;
            let kind = EventKind::parse(&kind).ok_or_else(|| StoreError::Damaged {
                path: self.path.clone(),
                table,
                detail: format!("unknown event kind {kind:?}"),
            })?;
            events.push(Event {
                time: Timestamp(row.get(0).map_err(self.error(table))?),
                entity: self
                    .entity(row.get(1).map_err(self.error(table))?, table)?
                    .clone(),
                kind,
                detail: row.get(3).map_err(self.error(table))?,
            });
        }
        // Same-second events in a stable order, whatever the insertion order.
        events.sort_by(|a, b| {
            (a.time, &a.entity, a.kind, &a.detail).cmp(&(b.time, &b.entity, b.kind, &b.detail))
        });
        Ok(events)
    }

    /// See [`vigil_model::TelemetrySource::topology`].
    pub fn topology(&self, range: TimeRange) -> Result<Topology, StoreError> {
        let (start, end) = (range.start.secs(), range.end.secs());
        let mut topology = Topology::default();
        {
            let table = "entity";
            let mut select = self
                .connection
                .prepare_cached(
                    "SELECT id, attributes FROM entity WHERE first_seen < ?2 AND last_seen > ?1",
                )
                .map_err(self.error(table))?;
            let mut rows = select
                .query(params![start, end])
                .map_err(self.error(table))?;
            while let Some(row) = rows.next().map_err(self.error(table))? {
                let id = self
                    .entity(row.get(0).map_err(self.error(table))?, table)?
                    .clone();
                let attributes: String = row.get(1).map_err(self.error(table))?;
                let attributes =
                    serde_json::from_str(&attributes).map_err(|error| StoreError::Damaged {
                        path: self.path.clone(),
                        table,
                        detail: format!("attributes of {id}: {error}"),
                    })?;
                topology.entities.push(Entity { id, attributes });
            }
        }
        let table = "relation";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT from_entity, to_entity, kind FROM relation WHERE first_seen < ?2 AND last_seen > ?1",
            )
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![start, end])
            .map_err(self.error(table))?;
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let kind: String = row.get(2).map_err(self.error(table))?;
            let kind: RelationKind = kind.parse().map_err(|error| StoreError::Damaged {
                path: self.path.clone(),
                table,
                detail: format!("{error}"),
            })?;
            topology.relations.push(Relation {
                from: self
                    .entity(row.get(0).map_err(self.error(table))?, table)?
                    .clone(),
                to: self
                    .entity(row.get(1).map_err(self.error(table))?, table)?
                    .clone(),
                kind,
            });
        }
        topology.normalise();
        Ok(topology)
    }
}
