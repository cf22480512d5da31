//! Vigil's stores.
//!
//! Owns the two [`vigil_model::TelemetrySource`] implementations — the ClickHouse
//! reader over DeepFlow 6.6's tables and the agent's own, and the embedded SQLite
//! store that is the default — plus their DDL and migrations, and Vigil's own
//! state (patrol runs, reports, incidents).
//! Does not own analysis, scheduling or any HTTP shape.

pub mod clickhouse;
pub mod embedded;
