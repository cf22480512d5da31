//! Writing a [`TelemetryBatch`]: validation, splitting into hour chunks, and one
//! transaction that upserts everything.
//!
//! The async side validates the whole batch first (so a bad batch is refused
//! before anything is written), then streams it in parts over a bounded
//! channel to a blocking thread that holds the transaction. Encoding and SQLite
//! work overlap, memory stays bounded, and dropping the write future (or any
//! error) drops the transaction, which rolls it back.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension, ToSql, Transaction, TransactionBehavior};
use tokio::sync::mpsc;
use vigil_model::{
    Entity, EntityId, Event, L7Protocol, Profile, Relation, RequestMetrics, RequestSample,
    ResourceMetric, StatementStep, TelemetryBatch, MINUTE_SECS,
};

use super::chunk::{self, ChunkWrite, ALL_MINUTES, REQUEST_COLUMNS, RESOURCE_COLUMNS};
use super::database::Database;
use super::error::StoreError;

/// What one [`super::EmbeddedStore::write`] did, for logs and throughput figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Data points in the batch ([`TelemetryBatch::point_count`]).
    pub points: usize,
    /// Hour chunks written without reading (new, or fully covered by the batch).
    pub chunks_written: usize,
    /// Hour chunks merged into what was stored (read, updated, written back).
    pub chunks_merged: usize,
    /// Entities stored for the first time.
    pub entities_added: usize,
}

/// Series sent to the writer per message: small enough to keep memory bounded,
/// large enough that channel overhead does not show.
const SERIES_PER_PART: usize = 256;

/// One message from the encoding side to the transaction.
pub(crate) enum BatchPart {
    Topology {
        entities: Vec<Entity>,
        relations: Vec<Relation>,
    },
    Requests(Vec<(EntityId, Vec<ChunkWrite>)>),
    Edges(Vec<(EntityId, EntityId, L7Protocol, Vec<ChunkWrite>)>),
    Resources(Vec<(EntityId, ResourceMetric, Vec<ChunkWrite>)>),
    Statements(Vec<StatementStep>),
    Samples(Vec<RequestSample>),
    Profiles(Vec<Profile>),
    Events(Vec<Event>),
    /// Everything was sent: commit.
    Commit,
}

/// The span of time a batch covers, `[start, end)`: what its entities count as "seen".
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeenSpan {
    pub start: i64,
    pub end: i64,
}

impl SeenSpan {
    fn widen(&mut self, start: i64, end: i64) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
    }
}

/// Checks everything that could make a batch unwritable and returns the span it covers.
///
/// A batch with only topology has no time of its own; its entities count as
/// seen in the current minute.
pub(crate) fn validate(batch: &TelemetryBatch) -> Result<SeenSpan, StoreError> {
    let mut span: Option<SeenSpan> = None;
    let mut widen = |start: i64, end: i64| match span.as_mut() {
        Some(span) => span.widen(start, end),
        None => span = Some(SeenSpan { start, end }),
    };
    for series in &batch.requests {
        let end = check_metrics(
            &series.metrics,
            &format!("request series of {}", series.entity),
        )?;
        widen(series.metrics.start.secs(), end);
    }
    for edge in &batch.edges {
        let what = format!("edge series {} -> {}", edge.client, edge.server);
        let end = check_metrics(&edge.metrics, &what)?;
        widen(edge.metrics.start.secs(), end);
    }
    for resource in &batch.resources {
        let what = format!("{} series of {}", resource.metric.as_str(), resource.entity);
        check_minutes(
            resource.series.start.secs(),
            resource.series.step_secs,
            &what,
        )?;
        let end = resource.series.start.secs() + 60 * resource.series.values.len() as i64;
        widen(resource.series.start.secs(), end);
    }
    for step in &batch.statements {
        let minute = step.time.floor_to(MINUTE_SECS).secs();
        widen(minute, minute + 60);
    }
    for sample in &batch.samples {
        widen(sample.time.secs(), sample.time.secs() + 1);
    }
    for profile in &batch.profiles {
        if profile.range.end <= profile.range.start {
            return Err(StoreError::InvalidBatch(format!(
                "profile of {} has an empty range {}..{}",
                profile.entity, profile.range.start, profile.range.end
            )));
        }
        widen(profile.range.start.secs(), profile.range.end.secs());
    }
    for event in &batch.events {
        widen(event.time.secs(), event.time.secs() + 1);
    }
    Ok(span.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX / 2)
            });
        let minute = now.div_euclid(60) * 60;
        SeenSpan {
            start: minute,
            end: minute + 60,
        }
    }))
}

fn check_minutes(start: i64, step_secs: u32, what: &str) -> Result<(), StoreError> {
    if step_secs != MINUTE_SECS {
        return Err(StoreError::InvalidBatch(format!(
            "{what} has a step of {step_secs} s; the store keeps minutes, so batches must carry 60 s steps"
        )));
    }
    if start.rem_euclid(60) != 0 {
        return Err(StoreError::InvalidBatch(format!(
            "{what} starts at {start}, which is not on a minute boundary"
        )));
    }
    Ok(())
}

/// Checks one [`RequestMetrics`] and returns the end of the time it covers.
fn check_metrics(metrics: &RequestMetrics, what: &str) -> Result<i64, StoreError> {
    check_minutes(metrics.start.secs(), metrics.step_secs, what)?;
    let len = metrics.requests.len();
    let lengths = [
        metrics.errors.len(),
        metrics.latency_mean_ms.len(),
        metrics.latency_p50_ms.len(),
        metrics.latency_p90_ms.len(),
        metrics.latency_p99_ms.len(),
    ];
    if lengths.iter().any(|&other| other != len) {
        return Err(StoreError::InvalidBatch(format!(
            "{what} has columns of different lengths ({len} requests vs {lengths:?})"
        )));
    }
    Ok(metrics.start.secs() + 60 * len as i64)
}

fn request_chunks(metrics: &RequestMetrics) -> Vec<ChunkWrite> {
    chunk::split_into_chunks(
        metrics.start.secs(),
        &[
            &metrics.requests,
            &metrics.errors,
            &metrics.latency_mean_ms,
            &metrics.latency_p50_ms,
            &metrics.latency_p90_ms,
            &metrics.latency_p99_ms,
        ],
    )
}

/// Sends a validated batch to the writer in parts, then asks it to commit.
///
/// Returns `false` when the writer stopped listening (it failed; its own error
/// is the one to report).
pub(crate) async fn send_parts(batch: &TelemetryBatch, parts: &mpsc::Sender<BatchPart>) -> bool {
    let topology = BatchPart::Topology {
        entities: batch.topology.entities.clone(),
        relations: batch.topology.relations.clone(),
    };
    if parts.send(topology).await.is_err() {
        return false;
    }
    for group in batch.requests.chunks(SERIES_PER_PART) {
        let encoded = group
            .iter()
            .map(|series| (series.entity.clone(), request_chunks(&series.metrics)))
            .collect();
        if parts.send(BatchPart::Requests(encoded)).await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
    for group in batch.edges.chunks(SERIES_PER_PART) {
        let encoded = group
            .iter()
            .map(|edge| {
                let chunks = request_chunks(&edge.metrics);
                (
                    edge.client.clone(),
                    edge.server.clone(),
                    edge.protocol,
                    chunks,
                )
            })
            .collect();
        if parts.send(BatchPart::Edges(encoded)).await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
    for group in batch.resources.chunks(SERIES_PER_PART) {
        let encoded = group
            .iter()
            .map(|resource| {
                let chunks = chunk::split_into_chunks(
                    resource.series.start.secs(),
                    &[&resource.series.values],
                );
                (resource.entity.clone(), resource.metric, chunks)
            })
            .collect();
        if parts.send(BatchPart::Resources(encoded)).await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
    let rest = [
        BatchPart::Statements(batch.statements.clone()),
        BatchPart::Samples(batch.samples.clone()),
        BatchPart::Profiles(batch.profiles.clone()),
        BatchPart::Events(batch.events.clone()),
        BatchPart::Commit,
    ];
    for part in rest {
        if parts.send(part).await.is_err() {
            return false;
        }
    }
    true
}

impl Database {
    /// Receives a batch's parts and writes them in one transaction, committed
    /// only when [`BatchPart::Commit`] arrives.
    pub fn write_batch(
        &mut self,
        span: SeenSpan,
        points: usize,
        mut parts: mpsc::Receiver<BatchPart>,
    ) -> Result<WriteStats, StoreError> {
        let Database {
            connection,
            path,
            entity_rows,
            entity_ids,
        } = self;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::sqlite(path, "entity", source))?;
        let mut writer = BatchWriter {
            transaction,
            path,
            known: entity_rows,
            added: HashMap::new(),
            touched: HashSet::new(),
            span,
            stats: WriteStats {
                points,
                ..WriteStats::default()
            },
        };
        loop {
            match parts.blocking_recv() {
                Some(BatchPart::Commit) => break,
                Some(part) => writer.write(part)?,
                None => {
                    return Err(StoreError::InvalidBatch(
                        "the write was cancelled before it finished".to_owned(),
                    ))
                }
            }
        }
        writer.mark_seen()?;
        let BatchWriter {
            transaction,
            added,
            mut stats,
            ..
        } = writer;
        transaction
            .commit()
            .map_err(|source| StoreError::sqlite(path, "entity", source))?;
        stats.entities_added = added.len();
        for (id, row) in added {
            entity_ids.insert(row, id.clone());
            entity_rows.insert(id, row);
        }
        Ok(stats)
    }
}

/// The state of one batch's transaction.
struct BatchWriter<'a, 'k> {
    transaction: Transaction<'a>,
    path: &'a str,
    /// Committed entities.
    known: &'k HashMap<EntityId, i64>,
    /// Entities this batch added (not committed yet).
    added: HashMap<EntityId, i64>,
    /// Rows of every entity the batch mentions, to extend their seen span.
    touched: HashSet<i64>,
    span: SeenSpan,
    stats: WriteStats,
}

/// Table names and statements of one chunked series family.
struct ChunkTable {
    table: &'static str,
    columns: usize,
    select: &'static str,
    upsert: &'static str,
}

const REQUEST_TABLE: ChunkTable = ChunkTable {
    table: "request_chunk",
    columns: REQUEST_COLUMNS,
    select: "SELECT data FROM request_chunk WHERE chunk_start = ?1 AND entity = ?2",
    upsert: "INSERT INTO request_chunk (chunk_start, entity, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (chunk_start, entity) DO UPDATE SET data = excluded.data",
};

const EDGE_TABLE: ChunkTable = ChunkTable {
    table: "edge_chunk",
    columns: REQUEST_COLUMNS,
    select: "SELECT data FROM edge_chunk
             WHERE chunk_start = ?1 AND client = ?2 AND server = ?3 AND protocol = ?4",
    upsert:
        "INSERT INTO edge_chunk (chunk_start, client, server, protocol, data)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (chunk_start, client, server, protocol) DO UPDATE SET data = excluded.data",
};

const RESOURCE_TABLE: ChunkTable = ChunkTable {
    table: "resource_chunk",
    columns: RESOURCE_COLUMNS,
    select:
        "SELECT data FROM resource_chunk WHERE chunk_start = ?1 AND metric = ?2 AND entity = ?3",
    upsert: "INSERT INTO resource_chunk (chunk_start, metric, entity, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (chunk_start, metric, entity) DO UPDATE SET data = excluded.data",
};

impl BatchWriter<'_, '_> {
    fn error(&self, table: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::sqlite(self.path, table, source)
    }

    fn write(&mut self, part: BatchPart) -> Result<(), StoreError> {
        match part {
            BatchPart::Topology {
                entities,
                relations,
            } => self.write_topology(&entities, &relations),
            BatchPart::Requests(series) => {
                for (entity, chunks) in series {
                    let row = self.entity_row(&entity)?;
                    for chunk in &chunks {
                        self.write_chunk(&REQUEST_TABLE, &[&row], chunk)?;
                    }
                }
                Ok(())
            }
            BatchPart::Edges(edges) => {
                for (client, server, protocol, chunks) in edges {
                    let client = self.entity_row(&client)?;
                    let server = self.entity_row(&server)?;
                    let protocol = i64::from(protocol.deepflow_code());
                    for chunk in &chunks {
                        self.write_chunk(&EDGE_TABLE, &[&client, &server, &protocol], chunk)?;
                    }
                }
                Ok(())
            }
            BatchPart::Resources(series) => {
                for (entity, metric, chunks) in series {
                    let row = self.entity_row(&entity)?;
                    for chunk in &chunks {
                        self.write_chunk(&RESOURCE_TABLE, &[&metric.as_str(), &row], chunk)?;
                    }
                }
                Ok(())
            }
            BatchPart::Statements(steps) => self.write_statements(&steps),
            BatchPart::Samples(samples) => self.write_samples(&samples),
            BatchPart::Profiles(profiles) => self.write_profiles(&profiles),
            BatchPart::Events(events) => self.write_events(&events),
            BatchPart::Commit => Ok(()),
        }
    }

    /// The row of `id`, adding the entity when it is new.
    fn entity_row(&mut self, id: &EntityId) -> Result<i64, StoreError> {
        let row = match self.known.get(id).or_else(|| self.added.get(id)) {
            Some(&row) => row,
            None => {
                self.transaction
                    .prepare_cached(
                        "INSERT INTO entity (name, kind, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut insert| {
                        insert.execute(params![
                            id.as_str(),
                            id.kind().as_str(),
                            self.span.start,
                            self.span.end
                        ])
                    })
                    .map_err(self.error("entity"))?;
                let row = self.transaction.last_insert_rowid();
                self.added.insert(id.clone(), row);
                row
            }
        };
        self.touched.insert(row);
        Ok(row)
    }

    /// Writes one hour chunk, merging with the stored one unless the batch sets every minute.
    fn write_chunk(
        &mut self,
        table: &ChunkTable,
        key: &[&dyn ToSql],
        chunk: &ChunkWrite,
    ) -> Result<(), StoreError> {
        let mut arguments: Vec<&dyn ToSql> = Vec::with_capacity(key.len() + 2);
        arguments.push(&chunk.chunk_start);
        arguments.extend_from_slice(key);
        let values = if chunk.present == ALL_MINUTES {
            self.stats.chunks_written += 1;
            chunk::encode(&chunk.values)
        } else {
            let stored: Option<Vec<u8>> = self
                .transaction
                .prepare_cached(table.select)
                .and_then(|mut select| {
                    select
                        .query_row(arguments.as_slice(), |row| row.get(0))
                        .optional()
                })
                .map_err(self.error(table.table))?;
            match stored {
                Some(bytes) => {
                    let mut merged = chunk::decode(&bytes, table.columns).ok_or_else(|| {
                        StoreError::Damaged {
                            path: self.path.to_owned(),
                            table: table.table,
                            detail: format!(
                                "chunk at {} is {} bytes, expected {}",
                                chunk.chunk_start,
                                bytes.len(),
                                table.columns * chunk::CHUNK_MINUTES * 8
                            ),
                        }
                    })?;
                    chunk.merge_into(&mut merged);
                    self.stats.chunks_merged += 1;
                    chunk::encode(&merged)
                }
                None => {
                    self.stats.chunks_written += 1;
                    chunk::encode(&chunk.values)
                }
            }
        };
        arguments.push(&values);
        self.transaction
            .prepare_cached(table.upsert)
            .and_then(|mut upsert| upsert.execute(arguments.as_slice()))
            .map_err(self.error(table.table))?;
        Ok(())
    }

    fn write_topology(
        &mut self,
        entities: &[Entity],
        relations: &[Relation],
    ) -> Result<(), StoreError> {
        for entity in entities {
            let row = self.entity_row(&entity.id)?;
            if entity.attributes.is_empty() {
                continue;
            }
            let attributes =
                serde_json::to_string(&entity.attributes).map_err(|source| StoreError::Encode {
                    what: "entity attributes",
                    source,
                })?;
            // Later batches win per attribute; attributes they do not mention stay.
            self.transaction
                .prepare_cached(
                    "UPDATE entity SET attributes = json_patch(attributes, ?1) WHERE id = ?2",
                )
                .and_then(|mut update| update.execute(params![attributes, row]))
                .map_err(self.error("entity"))?;
        }
        for relation in relations {
            let from = self.entity_row(&relation.from)?;
            let to = self.entity_row(&relation.to)?;
            self.transaction
                .prepare_cached(
                    "INSERT INTO relation (from_entity, to_entity, kind, first_seen, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (from_entity, to_entity, kind) DO UPDATE SET
                        first_seen = min(first_seen, excluded.first_seen),
                        last_seen = max(last_seen, excluded.last_seen)",
                )
                .and_then(|mut upsert| {
                    upsert.execute(params![
                        from,
                        to,
                        relation.kind.as_str(),
                        self.span.start,
                        self.span.end
                    ])
                })
                .map_err(self.error("relation"))?;
        }
        Ok(())
    }

    fn write_statements(&mut self, steps: &[StatementStep]) -> Result<(), StoreError> {
        let mut shapes: HashMap<(i64, i64, &str, &str), i64> = HashMap::new();
        for step in steps {
            let stats = &step.stats;
            let server = self.entity_row(&stats.server)?;
            let protocol = i64::from(stats.protocol.deepflow_code());
            let key = (
                server,
                protocol,
                stats.request_type.as_str(),
                stats.shape.as_str(),
            );
            let shape = match shapes.get(&key) {
                Some(&shape) => shape,
                None => {
                    let shape: i64 = self
                        .transaction
                        .prepare_cached(
                            "INSERT INTO statement_shape (server, protocol, request_type, shape)
                             VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (server, protocol, request_type, shape)
                             DO UPDATE SET shape = excluded.shape
                             RETURNING id",
                        )
                        .and_then(|mut upsert| {
                            upsert.query_row(
                                params![server, protocol, stats.request_type, stats.shape],
                                |row| row.get(0),
                            )
                        })
                        .map_err(self.error("statement_shape"))?;
                    shapes.insert(key, shape);
                    shape
                }
            };
            let count = i64::try_from(stats.count).unwrap_or(i64::MAX);
            let errors = i64::try_from(stats.errors).unwrap_or(i64::MAX);
            self.transaction
                .prepare_cached(
                    "INSERT INTO statement_minute
                        (minute, shape, count, errors, latency_mean_ms, latency_p99_ms, latency_max_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (minute, shape) DO UPDATE SET
                        count = excluded.count, errors = excluded.errors,
                        latency_mean_ms = excluded.latency_mean_ms,
                        latency_p99_ms = excluded.latency_p99_ms,
                        latency_max_ms = excluded.latency_max_ms",
                )
                .and_then(|mut upsert| {
                    upsert.execute(params![
                        step.time.floor_to(MINUTE_SECS).secs(),
                        shape,
                        count,
                        errors,
                        stats.latency_mean_ms,
                        stats.latency_p99_ms,
                        stats.latency_max_ms
                    ])
                })
                .map_err(self.error("statement_minute"))?;
        }
        Ok(())
    }

    fn write_samples(&mut self, samples: &[RequestSample]) -> Result<(), StoreError> {
        for sample in samples {
            let server = self.entity_row(&sample.server)?;
            let client = match &sample.client {
                Some(client) => self.entity_row(client)?,
                None => 0,
            };
            self.transaction
                .prepare_cached(
                    "INSERT INTO request_sample (time, server, client, protocol, request_type,
                        resource, duration_ms, status, code, trace_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (time, server, client, request_type, resource, duration_ms, trace_id)
                     DO UPDATE SET protocol = excluded.protocol, status = excluded.status,
                        code = excluded.code",
                )
                .and_then(|mut upsert| {
                    upsert.execute(params![
                        sample.time.secs(),
                        server,
                        client,
                        i64::from(sample.protocol.deepflow_code()),
                        sample.request_type,
                        sample.resource,
                        sample.duration_ms,
                        i64::from(sample.status.deepflow_code()),
                        sample.code,
                        sample.trace_id.as_deref().unwrap_or(""),
                    ])
                })
                .map_err(self.error("request_sample"))?;
        }
        Ok(())
    }

    fn write_profiles(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        for profile in profiles {
            let entity = self.entity_row(&profile.entity)?;
            let id: i64 = self
                .transaction
                .prepare_cached(
                    "INSERT INTO profile (entity, range_start, range_end, unit) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (entity, range_start, range_end, unit) DO UPDATE SET unit = excluded.unit
                     RETURNING id",
                )
                .and_then(|mut upsert| {
                    upsert.query_row(
                        params![
                            entity,
                            profile.range.start.secs(),
                            profile.range.end.secs(),
                            profile.unit
                        ],
                        |row| row.get(0),
                    )
                })
                .map_err(self.error("profile"))?;
            // A rewritten profile replaces the stored one whole.
            self.transaction
                .prepare_cached("DELETE FROM profile_stack WHERE profile = ?1")
                .and_then(|mut delete| delete.execute([id]))
                .map_err(self.error("profile_stack"))?;
            for stack in &profile.stacks {
                let value = i64::try_from(stack.value).unwrap_or(i64::MAX);
                self.transaction
                    .prepare_cached(
                        "INSERT INTO profile_stack (profile, frames, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (profile, frames) DO UPDATE SET value = value + excluded.value",
                    )
                    .and_then(|mut insert| insert.execute(params![id, stack.frames, value]))
                    .map_err(self.error("profile_stack"))?;
            }
        }
        Ok(())
    }

    fn write_events(&mut self, events: &[Event]) -> Result<(), StoreError> {
        for event in events {
            let entity = self.entity_row(&event.entity)?;
            self.transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO event (time, entity, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        event.time.secs(),
                        entity,
                        event.kind.as_str(),
                        event.detail
                    ])
                })
                .map_err(self.error("event"))?;
        }
        Ok(())
    }

    /// Extends the seen span of every entity the batch mentioned to cover the batch.
    fn mark_seen(&mut self) -> Result<(), StoreError> {
        let mut rows: Vec<i64> = self.touched.iter().copied().collect();
        rows.sort_unstable();
        for row in rows {
            self.transaction
                .prepare_cached(
                    "UPDATE entity SET first_seen = min(first_seen, ?1), last_seen = max(last_seen, ?2)
                     WHERE id = ?3",
                )
                .and_then(|mut update| update.execute(params![self.span.start, self.span.end, row]))
                .map_err(self.error("entity"))?;
        }
        Ok(())
    }
}
