//! Kernel events → [`RequestRecord`]s: parse the payloads, convert kernel
//! time to wall time, and name both sides (process, container).

use std::time::{SystemTime, UNIX_EPOCH};

use vigil_model::{Peer, RequestRecord, SmolStr};

use crate::container::Identities;
use crate::l7::{text, ParseOptions, Parsed, Parser};
use crate::wire::L7Event;

/// Turns L7 events into request records.
#[derive(Debug)]
pub struct Collector {
    parser: Parser,
    identities: Identities,
    /// Wall-clock µs minus monotonic µs.
    offset_us: i64,
    /// Events whose payload no parser recognised.
    pub unparsed: u64,
    /// The parser's output for the event at hand, reused across events.
    parsed: Vec<Parsed>,
    /// Server processes named during this drain: a drain's events come from
    /// a few servers, and naming one takes a lock and a map lookup. Cleared
    /// by [`Collector::forget_names`], so container names stay fresh.
    servers: Vec<Peer>,
}

/// Servers remembered per drain before the list starts over.
const SERVERS_PER_DRAIN: usize = 64;

/// Wall-clock µs minus CLOCK_MONOTONIC µs, now.
pub fn clock_offset_us() -> i64 {
    let mono = crate::sys::monotonic_ns() / 1_000;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    i64::try_from(wall).unwrap_or(i64::MAX) - i64::try_from(mono).unwrap_or(0)
}

impl Collector {
    /// A collector parsing with `options` and naming containers with `identities`.
    pub fn new(options: ParseOptions, identities: Identities) -> Self {
        Self {
            parser: Parser::new(options),
            identities,
            offset_us: clock_offset_us(),
            unparsed: 0,
            parsed: Vec::new(),
            servers: Vec::new(),
        }
    }

    /// Names processes afresh from the next event on (call once per drain:
    /// container names arrive from Docker in the background).
    pub fn forget_names(&mut self) {
        self.servers.clear();
    }

    /// The server side of `event`, named by process and container.
    fn server(&mut self, event: &L7Event) -> Peer {
        let known = self.servers.iter().find(|server| {
            server.pid == event.pid
                && server.port == event.local.1
                && server.ip == event.local.0
                && server.process_name.as_bytes() == event.comm
        });
        if let Some(server) = known {
            return server.clone();
        }
        let container = self.identities.container(event.pid);
        let server = Peer {
            ip: event.local.0,
            port: event.local.1,
            pid: event.pid,
            process_name: SmolStr::new(text(event.comm)),
            service: container
                .as_ref()
                .map(|c| SmolStr::new(&c.name))
                .unwrap_or_default(),
            instance: container.map(|c| c.id.into()).unwrap_or_default(),
        };
        if self.servers.len() >= SERVERS_PER_DRAIN {
            self.servers.clear();
        }
        self.servers.push(server.clone());
        server
    }

    /// Re-reads the wall-clock offset (after NTP steps).
    pub fn resync_clock(&mut self) {
        self.offset_us = clock_offset_us();
    }

    /// Appends the records of one event to `out` (several for a Redis
    /// pipeline, none when unparsed).
    pub fn records_into(&mut self, event: &L7Event, out: &mut Vec<RequestRecord>) {
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        self.parser.parse_into(
            (event.pid, event.remote.0, event.remote.1),
            event.req,
            event.resp,
            &mut parsed,
        );
        if parsed.is_empty() {
            self.unparsed += 1;
            self.parsed = parsed;
            return;
        }
        let start_us =
            u64::try_from(i64::try_from(event.req_ts_ns / 1_000).unwrap_or(0) + self.offset_us)
                .unwrap_or(0);
        let duration_us = event.resp_ts_ns.saturating_sub(event.req_ts_ns) / 1_000;
        let server = self.server(event);
        let client = Peer {
            ip: event.remote.0,
            port: event.remote.1,
            pid: 0,
            process_name: SmolStr::default(),
            service: SmolStr::default(),
            instance: SmolStr::default(),
        };
        // Every record but the last gets copies of the peers; the last takes them.
        let last = parsed.len() - 1;
        let mut peers = Some((client, server));
        for (i, p) in parsed.drain(..).enumerate() {
            let Some((client, server)) = (if i == last {
                peers.take()
            } else {
                peers.clone()
            }) else {
                break;
            };
            out.push(RequestRecord {
                start_us,
                duration_us,
                protocol: p.protocol,
                request_type: p.request_type,
                resource: p.resource,
                endpoint: p.endpoint,
                status: p.status,
                code: p.code,
                client,
                server,
                trace_id: p.trace_id,
            });
        }
        self.parsed = parsed;
    }
}
