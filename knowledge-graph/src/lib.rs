//! The knowledge graph of an estate and root-cause ranking over it.
//!
//! Owns the typed graph of services, instances, processes, containers, hosts,
//! endpoints and servers, its queries (neighbours, paths, blast radius, lookup by
//! name) and the ranking of root-cause candidates for a symptom.
//! Does not own IO: the graph is built from values its caller read through
//! `TelemetrySource`, and snapshots are persisted by the caller.
