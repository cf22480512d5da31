//! Per-process and per-container CPU and memory (from `/proc`), and TCP
//! retransmits, resets and failed connections per peer (from the kernel's
//! `tcp`/`sock` tracepoints), as per-minute [`ResourceSeries`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use regex::Regex;
use vigil_model::{EntityId, EntityKind, ResourceMetric, ResourceSeries, Series, Timestamp};

use crate::container::Identities;
use crate::error::AgentError;
use crate::profile::{matching_pids, process_entity};
use crate::wire::{TcpKey, TcpTrouble};

/// This host's primary address (the source of its default route), or loopback.
/// No packet is sent: connecting a UDP socket only picks a route.
pub fn host_ip() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Clock ticks per second of `/proc/PID/stat` CPU times.
pub fn clock_ticks() -> u64 {
    crate::sys::clock_ticks()
}

/// CPU time of this whole process (every thread), ns: precise, unlike the
/// clock ticks of `/proc/PID/stat`.
pub fn process_cpu_ns() -> u64 {
    crate::sys::process_cpu_ns()
}

/// CPU time (user + system) of this process's waited-for children, µs.
pub fn children_cpu_us() -> u64 {
    crate::sys::children_cpu_us()
}

/// CPU ticks (user + system) and resident bytes of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcUsage {
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// VmRSS, bytes.
    pub rss_bytes: u64,
}

/// Parses `/proc/PID/stat` (CPU ticks) and `/proc/PID/status` (VmRSS) texts.
pub fn parse_usage(stat: &str, status: &str) -> Option<ProcUsage> {
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcUsage {
        cpu_ticks: utime + stime,
        rss_bytes: rss_kib * 1024,
    })
}

/// Reads one process's usage under `proc_root`.
pub fn read_usage(proc_root: &Path, pid: u32) -> Option<ProcUsage> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    parse_usage(&stat, &status)
}

/// Samples CPU and memory of matching processes and their containers.
#[derive(Debug)]
pub struct ProcSampler {
    matcher: Regex,
    host: String,
    proc_root: PathBuf,
    ticks_per_sec: u64,
    last: HashMap<u32, (u64, ProcUsage)>,
}

/// One sample: entity → (cpu cores, memory bytes).
pub type UsageSample = BTreeMap<EntityId, (f64, f64)>;

impl ProcSampler {
    /// A sampler of processes whose `comm` matches `matcher`.
    pub fn new(matcher: &str, host: &str) -> Result<Self, AgentError> {
        Ok(Self {
            matcher: Regex::new(matcher)
                .map_err(|e| AgentError::Config(format!("resources.process_matcher: {e}")))?,
            host: host.to_owned(),
            proc_root: PathBuf::from("/proc"),
            ticks_per_sec: crate::sys::clock_ticks(),
            last: HashMap::new(),
        })
    }

    /// The same, reading `proc_root` instead of `/proc`.
    pub fn with_proc_root(mut self, proc_root: impl Into<PathBuf>) -> Self {
        self.proc_root = proc_root.into();
        self
    }

    /// CPU (cores, averaged since the previous call) and memory per process
    /// and per container, at monotonic time `now_ns`. A process's first
    /// sample has memory only (CPU needs two readings).
    pub fn sample(&mut self, now_ns: u64, identities: &Identities) -> UsageSample {
        let mut out: UsageSample = BTreeMap::new();
        let pids = matching_pids(&self.proc_root, &self.matcher);
        let mut seen = HashMap::new();
        for (pid, comm) in pids {
            let Some(usage) = read_usage(&self.proc_root, pid) else {
                continue;
            };
            let cores = self.last.get(&pid).and_then(|(then, before)| {
                let secs = now_ns.checked_sub(*then)? as f64 / 1e9;
                (secs > 0.0).then(|| {
                    usage.cpu_ticks.saturating_sub(before.cpu_ticks) as f64
                        / self.ticks_per_sec as f64
                        / secs
                })
            });
            seen.insert(pid, (now_ns, usage));
            let value = (cores.unwrap_or(f64::NAN), usage.rss_bytes as f64);
            out.insert(process_entity(&comm, &self.host, pid), value);
            if let Some(container) = identities.container(pid) {
                let name = if container.name.is_empty() {
                    container.id.clone()
                } else {
                    container.name.clone()
                };
                let entry = out
                    .entry(EntityId::new(EntityKind::Container, &name))
                    .or_insert((0.0, 0.0));
                entry.0 += value.0;
                entry.1 += value.1;
            }
        }
        self.last = seen;
        out
    }
}

/// Per-minute series of a usage sample at `minute`.
pub fn usage_series(sample: &UsageSample, minute: Timestamp) -> Vec<ResourceSeries> {
    let mut out = Vec::new();
    for (entity, (cores, bytes)) in sample {
        for (metric, value) in [
            (ResourceMetric::CpuCores, *cores),
            (ResourceMetric::MemoryBytes, *bytes),
        ] {
            if value.is_nan() {
                continue;
            }
            out.push(ResourceSeries {
                entity: entity.clone(),
                metric,
                series: Series {
                    start: minute,
                    step_secs: 60,
                    values: vec![value],
                },
            });
        }
    }
    out
}

/// The peer entity of TCP counters: `ip:port` as a host.
pub fn peer_entity(peer: (IpAddr, u16)) -> EntityId {
    let ip = match peer.0 {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    EntityId::new(EntityKind::Host, &format!("{ip}:{}", peer.1))
}

/// Per-minute TCP series: retransmits, and resets plus failed connections, per peer.
pub fn tcp_series(counts: &BTreeMap<TcpKey, u64>, minute: Timestamp) -> Vec<ResourceSeries> {
    let mut per: BTreeMap<(EntityId, &'static str), f64> = BTreeMap::new();
    for (key, count) in counts {
        let metric = match key.kind {
            TcpTrouble::Retransmit => ResourceMetric::TcpRetransmits.as_str(),
            TcpTrouble::SendReset | TcpTrouble::ReceiveReset | TcpTrouble::ConnectFail => {
                ResourceMetric::TcpResets.as_str()
            }
        };
        *per.entry((peer_entity(key.peer), metric)).or_insert(0.0) += *count as f64;
    }
    per.into_iter()
        .map(|((entity, metric), value)| ResourceSeries {
            entity,
            metric: if metric == ResourceMetric::TcpRetransmits.as_str() {
                ResourceMetric::TcpRetransmits
            } else {
                ResourceMetric::TcpResets
            },
            series: Series {
                start: minute,
                step_secs: 60,
                values: vec![value],
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000000 200";
        let status = "Name:\tx\nVmRSS:\t    2048 kB\n";
        let usage = parse_usage(stat, status).expect("usage");
        assert_eq!(usage.cpu_ticks, 300);
        assert_eq!(usage.rss_bytes, 2048 * 1024);
    }

    #[test]
    fn tcp_counters_become_series_per_peer() {
        let peer = ("10.0.0.5".parse().expect("ip"), 3306);
        let mut counts = BTreeMap::new();
        counts.insert(
            TcpKey {
                peer,
                kind: TcpTrouble::Retransmit,
            },
            3,
        );
        counts.insert(
            TcpKey {
                peer,
                kind: TcpTrouble::ReceiveReset,
            },
            1,
        );
        counts.insert(
            TcpKey {
                peer,
                kind: TcpTrouble::ConnectFail,
            },
            2,
        );
        let series = tcp_series(&counts, Timestamp::from_secs(60));
        assert_eq!(series.len(), 2);
        let resets = series
            .iter()
            .find(|s| s.metric == ResourceMetric::TcpResets)
            .expect("resets");
        assert_eq!(resets.series.values, [3.0]);
        assert_eq!(resets.entity.as_str(), peer_entity(peer).as_str());
    }
}
