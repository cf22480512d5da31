//! One observed request, as an eBPF agent or a tracer sees it on the wire.
//!
//! Text fields are [`SmolStr`]s: names, commands and most key patterns fit
//! inline (23 bytes) and longer text is shared, so building or cloning a
//! record allocates little; the agent builds one per request on the wire.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::entity::L7Protocol;
use crate::signal::ResponseStatus;

/// One side of a request: the process on an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// IP address.
    pub ip: IpAddr,
    /// TCP port (the ephemeral one on a client).
    pub port: u16,
    /// Process id; 0 when not known (seen from the network only).
    pub pid: u32,
    /// Kernel process name (`comm`).
    pub process_name: SmolStr,
    /// Service name when the peer declared one (OpenTelemetry `service.name`) or
    /// the agent resolved one (the container name); empty when unknown.
    pub service: SmolStr,
    /// Instance name (OpenTelemetry `service.instance.id`, container id); empty when unknown.
    pub instance: SmolStr,
}

/// One request and its response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// When the request started, microseconds since the epoch.
    pub start_us: u64,
    /// Time to the first byte of the response, microseconds.
    pub duration_us: u64,
    /// Protocol.
    pub protocol: L7Protocol,
    /// HTTP method, SQL verb or Redis command.
    pub request_type: SmolStr,
    /// Normalised resource (URL path grouped, SQL with literals as `?`, Redis key pattern).
    pub resource: SmolStr,
    /// Endpoint the request belongs to (grouped path, statement shape, command).
    pub endpoint: SmolStr,
    /// Outcome.
    pub status: ResponseStatus,
    /// Protocol-level code (HTTP status, MySQL error number).
    pub code: Option<i32>,
    /// Caller.
    pub client: Peer,
    /// Callee.
    pub server: Peer,
    /// Distributed trace id; empty when none.
    pub trace_id: SmolStr,
}
