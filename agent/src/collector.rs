//! Kernel events → [`RequestRecord`]s: parse the payloads, convert kernel
//! time to wall time, and name both sides (process, container).

use std::time::{SystemTime, UNIX_EPOCH};

use vigil_model::{Peer, RequestRecord};

use crate::container::Identities;
use crate::l7::{ParseOptions, Parser};
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
}

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
        }
    }

    /// Re-reads the wall-clock offset (after NTP steps).
    pub fn resync_clock(&mut self) {
        self.offset_us = clock_offset_us();
    }

    /// The records of one event (several for a Redis pipeline, none when unparsed).
    pub fn records(&mut self, event: &L7Event) -> Vec<RequestRecord> {
        let parsed = self.parser.parse(
            (event.pid, event.remote.0, event.remote.1),
            &event.req,
            &event.resp,
        );
        if parsed.is_empty() {
            self.unparsed += 1;
            return Vec::new();
        }
        let start_us =
            u64::try_from(i64::try_from(event.req_ts_ns / 1_000).unwrap_or(0) + self.offset_us)
                .unwrap_or(0);
        let duration_us = event.resp_ts_ns.saturating_sub(event.req_ts_ns) / 1_000;
        let container = self.identities.container(event.pid);
        let server = Peer {
            ip: event.local.0,
            port: event.local.1,
            pid: event.pid,
            process_name: event.comm.clone(),
            service: container
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            instance: container.map(|c| c.id).unwrap_or_default(),
        };
        let client = Peer {
            ip: event.remote.0,
            port: event.remote.1,
            pid: 0,
            process_name: String::new(),
            service: String::new(),
            instance: String::new(),
        };
        parsed
            .into_iter()
            .map(|p| RequestRecord {
                start_us,
                duration_us,
                protocol: p.protocol,
                request_type: p.request_type,
                resource: p.resource,
                endpoint: p.endpoint,
                status: p.status,
                code: p.code,
                client: client.clone(),
                server: server.clone(),
                trace_id: p.trace_id,
            })
            .collect()
    }
}
