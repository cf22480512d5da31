//! Raw requests from `vigil-agent` (through `vigil serve`'s ingest endpoint):
//! kept as rows so every minute they touch can be re-aggregated from all of
//! its requests ([`vigil_model::aggregate_records`]) and rewritten whole.
//!
//! A minute's aggregates are replaced on each write, so they must always be
//! computed from every request of the minute, not only the newest batch's.
//! The raw rows are keyed by their full text: a batch sent twice (an agent
//! retrying after a lost answer) stores nothing new.

use std::collections::BTreeSet;

use rusqlite::params;
use vigil_model::ingest::record_minute;
use vigil_model::RequestRecord;

use super::database::Database;
use super::error::StoreError;

const TABLE: &str = "agent_request";

impl Database {
    /// Stores `records` (duplicates ignored) in one transaction and returns
    /// every stored record of the minutes they fall in.
    pub(crate) fn store_agent_records(
        &mut self,
        records: &[RequestRecord],
    ) -> Result<(Vec<RequestRecord>, usize), StoreError> {
        let path = self.path.clone();
        let sqlite = |source| StoreError::sqlite(&path, TABLE, source);
        let mut minutes = BTreeSet::new();
        let transaction = self.connection.transaction().map_err(sqlite)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO agent_request (minute, record) VALUES (?1, ?2)",
                )
                .map_err(sqlite)?;
            for record in records {
                let text = serde_json::to_string(record).map_err(|source| StoreError::Encode {
                    what: "an agent request",
                    source,
                })?;
                let minute = record_minute(record);
                minutes.insert(minute);
                insert.execute(params![minute, text]).map_err(sqlite)?;
            }
        }
        transaction.commit().map_err(sqlite)?;
        let mut select = self
            .connection
            .prepare_cached("SELECT record FROM agent_request WHERE minute = ?1")
            .map_err(sqlite)?;
        let mut all = Vec::new();
        for minute in &minutes {
            let rows = select
                .query_map(params![minute], |row| row.get::<_, String>(0))
                .map_err(sqlite)?;
            for text in rows {
                let text = text.map_err(sqlite)?;
                all.push(
                    serde_json::from_str(&text).map_err(|error| StoreError::Damaged {
                        path: path.clone(),
                        table: TABLE,
                        detail: error.to_string(),
                    })?,
                );
            }
        }
        Ok((all, minutes.len()))
    }
}
