//! The simulated estate: a deterministic, seeded microservice estate with
//! injected faults and their ground truth.
//!
//! Owns generating topology, per-minute telemetry and raw request records, and
//! the fault catalogue's effects and propagation.
//! Does not own storage: it produces model values that the stores write.
//!
//! # The estate
//! [`SimConfig::services`] application services form a call DAG: gateways route
//! each request to one API; APIs call workers; APIs and workers call MySQL and
//! Redis servers (each on a dedicated host). Every service runs
//! [`SimConfig::instances_per_service`] instances, each in its own container on
//! an application host. Ids follow what the stores derive from DeepFlow rows:
//! `service:order-api`, `instance:order-api-1`, `container:order-api-1`,
//! `host:host-3` (attribute `ip` 10.0.x.y), `database:mysqld@10.0.0.9:3306`,
//! `cache:redis-server@10.0.0.10:6379`, and endpoints
//! `endpoint:<server name> <shape>` (e.g. `endpoint:order-api GET /api/v1/orders/{id}`,
//! `endpoint:mysqld@10.0.0.9:3306 SELECT * FROM orders WHERE id = ?`).
//!
//! # Normal behaviour
//! Gateway traffic follows a daily curve (trough at night about a quarter of the
//! afternoon peak, in [`SimConfig::utc_offset_hours`] local time), quieter
//! weekends, two slow benign waves of a few percent, and Poisson noise. Traffic
//! flows down the graph (`calls per request` per edge). Each service's latency is
//! its own lognormal processing time plus, per call, the callee's latency and a
//! small network round trip; the sum is summarised as a lognormal with the same
//! mean and variance (so quantiles are analytic). Servers' latency is a mixture of
//! their statement shapes' lognormals. Latency rises mildly with load.
//!
//! # Faults and propagation
//! Ground truth is one [`vigil_model::PlantedFault`] per [`FaultSpec`]:
//! - `cpu-not-released`: a container burns 55–70 % of its CPU limit on top of
//!   its normal usage, whatever its traffic; a dominant stack
//!   `<process>;main;worker::run;crypto::hash_loop` appears in its profile; its
//!   service slows slightly. Root cause: the **service** (the container and
//!   instance are named in `detail`), as for `memory-leak`.
//! - `memory-leak`: a container's memory grows linearly to its limit, is
//!   OOM-killed (events `oom-kill`, `restart`) and grows again until the fault ends.
//! - `slow-mysql`: the busiest statement shape of a database becomes 6–10× slower
//!   (lock contention) and the others 1.3×; root cause the `database:` entity.
//! - `slow-redis`: the busiest command becomes 15–25× slower (big key) and the
//!   others 2× (single-threaded queueing); root cause the `cache:` entity.
//! - `error-burst`: a service or server fails 8–25 % of its requests.
//! - `network-delay`: calls between two hosts gain 15–40 ms and both hosts'
//!   TCP retransmits jump; root cause the first host of the pair. Servers' own
//!   latency is unchanged; only the crossing edges and their callers slow down.
//!
//! Latency propagates exactly through the model: a caller's mean rises by
//! `calls per request × added mean latency` of the callee, its variance likewise,
//! so callers and their callers slow down in turn. A failed call fails the
//! caller's request with probability 0.6 (`ERROR_PROPAGATION`), so error ratios
//! rise upstream, decaying with distance.
//!
//! # Determinism and scale
//! Structure comes from a seeded ChaCha8 generator; per-minute noise from a hash
//! of (seed, quantity, entity, minute), so a minute's values are identical
//! whatever the chunking; raw records use a ChaCha8 generator seeded per (edge,
//! minute). Batches are generated chunk by chunk, keeping only one minute's state.

mod config;
mod engine;
mod estate;
mod faults;
mod layout;
mod noise;
mod records;

pub use config::{
    FaultSpec, SimConfig, SimError, DEFAULT_START, MAX_HOSTS, MAX_INSTANCES_PER_SERVICE,
    MAX_MINUTES, MAX_SERVICES,
};
pub use estate::Estate;

use vigil_model::{RequestRecord, TimeRange};

impl Estate {
    /// Raw request records for ClickHouse in DeepFlow's `l7_flow_log` shape: for
    /// every call edge and every minute starting inside `range`, up to
    /// `per_edge_minute` records (never more than the edge's calls that minute),
    /// drawn from that minute's latency distribution and error ratio, so that
    /// quantiles computed over them approximate the planted ones.
    ///
    /// Records are client-side observations: durations include the network round
    /// trip (0.1–0.25 ms) and any planted network delay. Deterministic: each
    /// (edge, minute) has its own ChaCha8 generator.
    pub fn request_records(
        &self,
        range: TimeRange,
        per_edge_minute: u32,
    ) -> impl Iterator<Item = RequestRecord> + '_ {
        records::RequestRecords::new(self, range, per_edge_minute)
    }
}

#[cfg(test)]
mod tests;
