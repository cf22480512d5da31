//! The knowledge graph of an estate and root-cause ranking over it.
//!
//! Owns the typed graph of services, instances, processes, containers, hosts,
//! endpoints and servers, its queries (neighbours, paths, blast radius, lookup by
//! name) and the ranking of root-cause candidates for a symptom.
//! Does not own IO: the graph is built from values its caller read through
//! `TelemetrySource`, and snapshots are persisted by the caller.
//!
//! # Map
//! - [`graph`]: [`KnowledgeGraph`], a petgraph of typed nodes and edges built
//!   from a [`vigil_model::Topology`], call edges and anomalies, updated one
//!   window at a time, with serialisable [`GraphSnapshot`]s.
//! - [`lookup`]: fuzzy entity lookup by name or configured alias (English,
//!   Chinese or any other script).
//! - [`rank`]: root-cause ranking of a symptom from anomalies over the graph
//!   (own strength, earlier onset, anomalous path, saturation, personalised
//!   PageRank) into [`vigil_model::RootCauseCandidate`]s.
//! - [`case`]: offline cases in the RCAEval layout (`data.csv`,
//!   `inject_time.txt`, `graph.json`), parsed from text the caller read, and
//!   [`case::rank_case`], which ranks entities from raw metric series.
//! - [`telemetry`]: a metric case and its causal graph from what a
//!   `TelemetrySource` returns, and resolution of containers to services.
//!
//! # Determinism
//! Same input, same output: nodes are indexed in id order, every iteration
//! that reaches a result goes through sorted collections, and ties break by
//! entity id.

pub mod case;
pub mod graph;
pub mod lookup;
pub mod rank;
mod stats;
pub mod telemetry;
mod walk;

pub use case::{
    rank_case, CaseEdge, CaseError, CaseGraph, CaseMethod, CaseRankConfig, CaseRelation,
    MetricCase, MetricColumn, RankedEntity,
};
pub use graph::{EdgeKind, GraphEdge, GraphNode, GraphSnapshot, KnowledgeGraph, WindowUpdate};
pub use lookup::{AliasConfig, NameLookup, NameMatch};
pub use rank::{rank_root_causes, RankConfig, Symptom};
pub use telemetry::{case_from_telemetry, owning_services, resolve_to_services};

use vigil_model::EntityId;

/// Why a graph query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The entity is not in the graph (not seen in any window so far).
    #[error("entity {0} is not in the knowledge graph; check the id or widen the time range")]
    UnknownEntity(EntityId),
}
