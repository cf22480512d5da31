//! Raw request records in the shape of DeepFlow's `l7_flow_log`, drawn from the
//! same per-minute distributions the aggregates report.

use std::net::IpAddr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use vigil_model::{
    format_smolstr, L7Protocol, Peer, RequestRecord, ResponseStatus, SmolStr, TimeRange,
};

use crate::engine::MinuteState;
use crate::estate::Estate;
use crate::layout::Role;
use crate::noise::{hash, stream};

/// Address of the load balancer in front of the estate: the client of every
/// gateway request (TEST-NET-2, never a real host).
const INGRESS_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 1);

/// Streams the records of a range: one minute's state at a time, one edge's
/// generator at a time, so memory stays flat however large the range.
pub(crate) struct RequestRecords<'a> {
    estate: &'a Estate,
    state: MinuteState,
    per_edge_minute: u32,
    /// Next minute to compute.
    next_minute: u32,
    end_minute: u32,
    /// Gateway nodes: after the call edges, each minute also yields the
    /// external requests entering every gateway, as DeepFlow sees them server side.
    gateways: Vec<usize>,
    /// Next edge to start in the current minute; indices past the call edges
    /// stand for the gateways' ingress.
    next_edge: usize,
    edge: usize,
    remaining: u32,
    rng: ChaCha8Rng,
}

impl<'a> RequestRecords<'a> {
    pub(crate) fn new(estate: &'a Estate, range: TimeRange, per_edge_minute: u32) -> Self {
        let span = estate.range();
        let clamp = |secs: i64| -> u32 {
            let offset = (secs - span.start.secs()).clamp(0, span.duration_secs());
            u32::try_from(offset.div_euclid(60) + i64::from(offset.rem_euclid(60) != 0))
                .unwrap_or(0)
        };
        // Minutes whose start lies in the range (partial minutes at the start are skipped).
        let first = clamp(range.start.secs());
        let end = clamp(range.end.secs()).max(first);
        let edges = estate.layout.edges.len();
        let gateways: Vec<usize> = estate
            .layout
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.role == Role::Gateway)
            .map(|(index, _)| index)
            .collect();
        Self {
            estate,
            state: MinuteState::new(estate),
            per_edge_minute,
            next_minute: first,
            end_minute: end,
            next_edge: edges + gateways.len(),
            gateways,
            edge: 0,
            remaining: 0,
            rng: ChaCha8Rng::seed_from_u64(0),
        }
    }

    /// One external request entering a gateway, from the estate's load balancer.
    fn draw_ingress(&mut self, node_index: usize) -> RequestRecord {
        let layout = &self.estate.layout;
        let state = &self.state;
        let rng = &mut self.rng;
        let node = &layout.nodes[node_index];
        let instance = &layout.instances[rng.gen_range(node.instances.clone())];
        let latency = state.node_latency[node_index];
        let z: f64 = rng.sample(StandardNormal);
        let duration_ms = (latency.mu + latency.sigma * z).exp();
        let failed = rng.gen::<f64>() < state.node_error_ratio[node_index];
        let (status, code) = if failed {
            (ResponseStatus::ServerError, Some(502))
        } else {
            (ResponseStatus::Ok, Some(200))
        };
        let operation = &layout.ops[node.ops.start + rng.gen_range(0..node.ops.len())];
        let minute_start_us =
            u64::try_from(self.estate.minute_time(state.minute).secs()).unwrap_or(0) * 1_000_000;
        RequestRecord {
            start_us: minute_start_us + rng.gen_range(0..60_000_000u64),
            duration_us: (duration_ms * 1000.0).round().max(1.0) as u64,
            protocol: L7Protocol::Http,
            request_type: operation.request_type.as_str().into(),
            resource: operation.resource.as_str().into(),
            endpoint: format_smolstr!("{} {}", operation.request_type, operation.resource),
            status,
            code,
            client: Peer {
                ip: IpAddr::V4(INGRESS_IP),
                port: rng.gen_range(32_768..61_000),
                pid: 0,
                process_name: "ingress".into(),
                service: SmolStr::default(),
                instance: SmolStr::default(),
            },
            server: Peer {
                ip: IpAddr::V4(layout.hosts[instance.host].ip),
                port: node.port,
                pid: instance.pid,
                process_name: node.process_name.as_str().into(),
                service: node.name.as_str().into(),
                instance: instance.name.as_str().into(),
            },
            trace_id: format_smolstr!("{:032x}", rng.gen::<u128>()),
        }
    }

    fn draw(&mut self) -> RequestRecord {
        let estate = self.estate;
        let layout = &estate.layout;
        let state = &self.state;
        let rng = &mut self.rng;
        let edge = &layout.edges[self.edge];
        let client = &layout.nodes[edge.client];
        let server = &layout.nodes[edge.server];
        let client_instance = &layout.instances[rng.gen_range(client.instances.clone())];
        let (server_ip, server_host, server_service, server_instance, server_pid) =
            if server.role.is_server() {
                (
                    layout.hosts[server.host].ip,
                    server.host,
                    String::new(),
                    String::new(),
                    0,
                )
            } else {
                let instance = &layout.instances[rng.gen_range(server.instances.clone())];
                (
                    layout.hosts[instance.host].ip,
                    instance.host,
                    server.name.clone(),
                    instance.name.clone(),
                    instance.pid,
                )
            };
        let z: f64 = rng.sample(StandardNormal);
        let (op, mut duration_ms) = if server.role.is_server() {
            let profile = &layout.profiles[state.profile[edge.server]];
            let ops = &layout.ops[server.ops.clone()];
            let pick: f64 = rng.gen();
            let mut cumulative = 0.0;
            let mut chosen = ops.len() - 1;
            for (index, op) in ops.iter().enumerate() {
                cumulative += op.share;
                if pick < cumulative {
                    chosen = index;
                    break;
                }
            }
            let median =
                ops[chosen].median_ms * profile.factors[chosen] * state.node_scale[edge.server];
            (server.ops.start + chosen, median * (server.sigma * z).exp())
        } else {
            let latency = state.node_latency[edge.server];
            (edge.op, (latency.mu + latency.sigma * z).exp())
        };
        duration_ms += edge.rtt_ms;
        let delay = state.edge_delay[self.edge];
        if delay.share > 0.0 {
            let pair = (client_instance.host, server_host);
            let (a, b) = delay.hosts;
            if pair == (a, b) || pair == (b, a) {
                duration_ms += delay.delay_ms;
            }
        }
        let failed = rng.gen::<f64>() < state.node_error_ratio[edge.server];
        let protocol = server.protocol();
        let (status, code) = match (failed, server.role) {
            (false, Role::Mysql | Role::Redis) => (ResponseStatus::Ok, None),
            (false, _) => (ResponseStatus::Ok, Some(200)),
            (true, Role::Mysql) => (
                ResponseStatus::ServerError,
                Some(if rng.gen_bool(0.8) { 1205 } else { 1213 }),
            ),
            (true, Role::Redis) => (ResponseStatus::ServerError, None),
            (true, _) => (
                ResponseStatus::ServerError,
                Some(if rng.gen_bool(0.8) { 500 } else { 503 }),
            ),
        };
        let operation = &layout.ops[op];
        let endpoint = if server.role.is_server() {
            operation.resource.clone()
        } else {
            format!("{} {}", operation.request_type, operation.resource)
        };
        let minute_start_us =
            u64::try_from(estate.minute_time(state.minute).secs()).unwrap_or(0) * 1_000_000;
        let trace_id = if protocol == L7Protocol::Http {
            format!("{:032x}", rng.gen::<u128>())
        } else {
            String::new()
        };
        RequestRecord {
            start_us: minute_start_us + rng.gen_range(0..60_000_000u64),
            duration_us: (duration_ms * 1000.0).round().max(1.0) as u64,
            protocol,
            request_type: operation.request_type.as_str().into(),
            resource: operation.resource.as_str().into(),
            endpoint: endpoint.into(),
            status,
            code,
            client: Peer {
                ip: IpAddr::V4(layout.hosts[client_instance.host].ip),
                port: rng.gen_range(32_768..61_000),
                pid: client_instance.pid,
                process_name: client.process_name.as_str().into(),
                service: client.name.as_str().into(),
                instance: client_instance.name.as_str().into(),
            },
            server: Peer {
                ip: IpAddr::V4(server_ip),
                port: server.port,
                pid: server_pid,
                process_name: server.process_name.as_str().into(),
                service: server_service.into(),
                instance: server_instance.into(),
            },
            trace_id: trace_id.into(),
        }
    }
}

impl Iterator for RequestRecords<'_> {
    type Item = RequestRecord;

    fn next(&mut self) -> Option<RequestRecord> {
        loop {
            let edges = self.estate.layout.edges.len();
            if self.remaining > 0 {
                self.remaining -= 1;
                return Some(match self.edge.checked_sub(edges) {
                    Some(gateway) => self.draw_ingress(self.gateways[gateway]),
                    None => self.draw(),
                });
            }
            if self.next_edge < edges + self.gateways.len() {
                let edge = self.next_edge;
                self.next_edge += 1;
                let calls = match edge.checked_sub(edges) {
                    Some(gateway) => self.state.node_requests[self.gateways[gateway]],
                    None => self.state.edge_requests[edge],
                };
                self.remaining = self
                    .per_edge_minute
                    .min(calls.min(f64::from(u32::MAX)) as u32);
                if self.remaining > 0 {
                    self.edge = edge;
                    let bits = hash(
                        self.estate.config.seed,
                        stream::RECORDS,
                        edge as u64,
                        u64::from(self.state.minute),
                    );
                    self.rng = ChaCha8Rng::seed_from_u64(bits);
                }
                continue;
            }
            if self.next_minute >= self.end_minute || edges + self.gateways.len() == 0 {
                return None;
            }
            self.estate
                .compute_minute(&mut self.state, self.next_minute);
            self.next_minute += 1;
            self.next_edge = 0;
        }
    }
}
