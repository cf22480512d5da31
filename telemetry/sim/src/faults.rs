//! Turning fault specs into ground truth ([`PlantedFault`]) and into the effects
//! the per-minute engine applies.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigil_model::{EntityKind, FaultKind, PlantedFault, TimeRange, Timestamp};

use crate::config::{FaultSpec, SimConfig, SimError};
use crate::layout::{server_profile, Layout, Ref, Role};
use crate::noise::mix;

/// What a fault does while it is active.
#[derive(Clone, Debug)]
pub(crate) enum Effect {
    /// A server's shapes slow down: its latency profile is swapped.
    ServerProfile { node: usize, profile: usize },
    /// A node fails a share of its requests itself.
    Errors { node: usize, ratio: f64 },
    /// An instance burns extra CPU regardless of its traffic.
    CpuBurn { instance: usize, extra_cores: f64 },
    /// An instance's memory grows until it is killed, then grows again.
    MemoryLeak {
        instance: usize,
        bytes_per_minute: f64,
        minutes_to_oom: u32,
    },
    /// Calls between two hosts are delayed; both hosts retransmit more.
    NetworkDelay {
        hosts: (usize, usize),
        delay_ms: f64,
        retransmits: (f64, f64),
        /// Affected edges with the share of their calls that cross the pair.
        edges: Vec<(usize, f64)>,
    },
}

/// A fault's effect and its window in minutes from the span's start.
#[derive(Clone, Debug)]
pub(crate) struct ActiveFault {
    pub start: u32,
    pub end: u32,
    pub effect: Effect,
}

impl ActiveFault {
    pub fn active_at(&self, minute: u32) -> bool {
        self.start <= minute && minute < self.end
    }
}

/// Share of an edge's calls that cross the host pair `(a, b)`, with calls spread
/// evenly over client and server instances.
pub(crate) fn crossing_share(layout: &Layout, edge: usize, a: usize, b: usize) -> f64 {
    let edge = &layout.edges[edge];
    let client_hosts: Vec<usize> = layout.nodes[edge.client]
        .instances
        .clone()
        .map(|i| layout.instances[i].host)
        .collect();
    let server = &layout.nodes[edge.server];
    let server_hosts: Vec<usize> = if server.role.is_server() {
        vec![server.host]
    } else {
        server
            .instances
            .clone()
            .map(|i| layout.instances[i].host)
            .collect()
    };
    if client_hosts.is_empty() || server_hosts.is_empty() {
        return 0.0;
    }
    let crossing = client_hosts
        .iter()
        .flat_map(|&c| server_hosts.iter().map(move |&s| (c, s)))
        .filter(|&(c, s)| (c == a && s == b) || (c == b && s == a))
        .count();
    crossing as f64 / (client_hosts.len() * server_hosts.len()) as f64
}

fn target_error(index: usize, reason: String) -> SimError {
    SimError::FaultTarget { index, reason }
}

/// Compiles every fault of `config`; adds slowed server profiles to `layout`.
pub(crate) fn compile(
    config: &SimConfig,
    layout: &mut Layout,
) -> Result<(Vec<PlantedFault>, Vec<ActiveFault>), SimError> {
    let mut planted = Vec::new();
    let mut active = Vec::new();
    for (index, spec) in config.faults.iter().enumerate() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix(config.seed ^ mix(index as u64 ^ 0x0066_6175_6c74)));
        let (root_cause, detail, effect) = compile_one(index, spec, layout, &mut rng)?;
        let start = config.start.plus_secs(i64::from(spec.start_minute) * 60);
        let end = start.plus_secs(i64::from(spec.duration_minutes) * 60);
        planted.push(PlantedFault {
            kind: spec.kind,
            root_cause,
            window: TimeRange {
                start,
                end: Timestamp(end.secs().max(start.secs() + 60)),
            },
            detail,
        });
        active.push(ActiveFault {
            start: spec.start_minute,
            end: spec.start_minute + spec.duration_minutes,
            effect,
        });
    }
    Ok((planted, active))
}

type Compiled = (vigil_model::EntityId, String, Effect);

fn compile_one(
    index: usize,
    spec: &FaultSpec,
    layout: &mut Layout,
    rng: &mut ChaCha8Rng,
) -> Result<Compiled, SimError> {
    let resolved = match &spec.target {
        None => None,
        Some(id) => match layout.index.get(id) {
            Some(found) => Some(*found),
            None => {
                return Err(target_error(
                    index,
                    format!("{id} is not in the simulated estate"),
                ))
            }
        },
    };
    let services: Vec<usize> = (0..layout.nodes.len())
        .filter(|&n| !layout.nodes[n].role.is_server())
        .collect();
    let pick_of_role = |rng: &mut ChaCha8Rng, roles: &[Role]| -> Option<usize> {
        let matching: Vec<usize> = (0..layout.nodes.len())
            .filter(|&n| roles.contains(&layout.nodes[n].role))
            .collect();
        matching.choose(rng).copied()
    };
    match spec.kind {
        FaultKind::CpuNotReleased | FaultKind::MemoryLeak => {
            let instance = match resolved {
                Some(Ref::Instance(instance)) => instance,
                Some(Ref::Node(node)) if !layout.nodes[node].role.is_server() => {
                    let range = layout.nodes[node].instances.clone();
                    rng.gen_range(range)
                }
                Some(_) => {
                    return Err(target_error(
                        index,
                        format!("{} needs a service, instance or container", spec.kind),
                    ))
                }
                None => {
                    let node = pick_of_role(rng, &[Role::Api, Role::Worker])
                        .or_else(|| services.choose(rng).copied())
                        .ok_or_else(|| {
                            target_error(index, "the estate has no services".to_owned())
                        })?;
                    let range = layout.nodes[node].instances.clone();
                    rng.gen_range(range)
                }
            };
            let record = &layout.instances[instance];
            let service = &layout.nodes[record.service];
            if spec.kind == FaultKind::CpuNotReleased {
                let extra_cores = record.cpu_limit * rng.gen_range(0.55..0.7);
                let detail = format!(
                    "{} (instance {}) keeps burning {extra_cores:.2} extra cores of its {}-core limit whatever its traffic; hot stack {};main;worker::run;crypto::hash_loop",
                    record.container_id, record.instance_id, record.cpu_limit, service.process_name
                );
                Ok((
                    service.id.clone(),
                    detail,
                    Effect::CpuBurn {
                        instance,
                        extra_cores,
                    },
                ))
            } else {
                let room = record.memory_limit - record.base_memory;
                let minutes_to_oom = ((f64::from(spec.duration_minutes) * rng.gen_range(0.5..0.7))
                    .round() as u32)
                    .max(2);
                let bytes_per_minute = room / f64::from(minutes_to_oom);
                let detail = format!(
                    "{} (instance {}) leaks {:.1} MiB/min from {:.0} MiB towards its {:.0} MiB limit; OOM-killed and restarted every {minutes_to_oom} min while the leak lasts",
                    record.container_id,
                    record.instance_id,
                    bytes_per_minute / 1_048_576.0,
                    record.base_memory / 1_048_576.0,
                    record.memory_limit / 1_048_576.0
                );
                Ok((
                    service.id.clone(),
                    detail,
                    Effect::MemoryLeak {
                        instance,
                        bytes_per_minute,
                        minutes_to_oom,
                    },
                ))
            }
        }
        FaultKind::SlowMysql | FaultKind::SlowRedis => {
            let role = if spec.kind == FaultKind::SlowMysql {
                Role::Mysql
            } else {
                Role::Redis
            };
            let node = match resolved {
                Some(Ref::Node(node)) if layout.nodes[node].role == role => node,
                Some(_) => {
                    let kind = if role == Role::Mysql {
                        EntityKind::Database
                    } else {
                        EntityKind::Cache
                    };
                    return Err(target_error(
                        index,
                        format!("{} needs a {kind} entity of the estate", spec.kind),
                    ));
                }
                None => pick_of_role(rng, &[role]).ok_or_else(|| {
                    target_error(
                        index,
                        format!("the estate has no {} servers to slow down", role_name(role)),
                    )
                })?,
            };
            let server = &layout.nodes[node];
            let ops = &layout.ops[server.ops.clone()];
            // The busiest shape: lock contention on the hottest statement, or a big
            // value behind the hottest key pattern.
            let slow = (0..ops.len())
                .max_by(|&a, &b| ops[a].share.total_cmp(&ops[b].share))
                .unwrap_or(0);
            let (factor, others) = if role == Role::Mysql {
                // The other statements wait on the same locks a little.
                (rng.gen_range(6.0..10.0), 1.3)
            } else {
                // Redis is single threaded: everything else queues behind the big key.
                (rng.gen_range(15.0..25.0), 2.0)
            };
            // A slowdown that leaves the server's p99 under ×2.5 would be lost in
            // its normal spread: strengthen it until it shows.
            let normal_p99 = layout.profiles[server.profile].quantiles[2];
            let mut factor = factor;
            let mut factors: Vec<f64> = (0..ops.len())
                .map(|s| if s == slow { factor } else { others })
                .collect();
            while server_profile(ops, server.sigma, factors.clone()).quantiles[2] < 2.5 * normal_p99
                && factor < 60.0
            {
                factor *= 1.25;
                factors[slow] = factor;
            }
            let detail = if role == Role::Mysql {
                format!(
                    "lock contention on `{}` ({} of executions) makes it {factor:.1}× slower on {}; other statements {others}× slower",
                    ops[slow].resource,
                    percent(ops[slow].share),
                    server.name
                )
            } else {
                format!(
                    "big key: `{}` ({} of commands) {factor:.1}× slower on {}; other commands queue behind it ({others}×)",
                    ops[slow].resource,
                    percent(ops[slow].share),
                    server.name
                )
            };
            let profile = server_profile(ops, server.sigma, factors);
            let id = server.id.clone();
            layout.profiles.push(profile);
            Ok((
                id,
                detail,
                Effect::ServerProfile {
                    node,
                    profile: layout.profiles.len() - 1,
                },
            ))
        }
        FaultKind::ErrorBurst => {
            let node = match resolved {
                Some(Ref::Node(node)) => node,
                Some(_) => {
                    return Err(target_error(
                        index,
                        "error-burst needs a service, database or cache".to_owned(),
                    ))
                }
                None => pick_of_role(rng, &[Role::Worker])
                    .or_else(|| pick_of_role(rng, &[Role::Api]))
                    .or_else(|| services.choose(rng).copied())
                    .ok_or_else(|| target_error(index, "the estate has no services".to_owned()))?,
            };
            let ratio = rng.gen_range(0.08..0.25);
            let node_ref = &layout.nodes[node];
            let code = match node_ref.role {
                Role::Mysql => "MySQL error 1205 (lock wait timeout)",
                Role::Redis => "Redis error replies",
                _ => "HTTP 500/503",
            };
            let detail = format!(
                "{} fails {} of its requests ({code}); callers fail part of theirs",
                node_ref.name,
                percent(ratio)
            );
            Ok((node_ref.id.clone(), detail, Effect::Errors { node, ratio }))
        }
        FaultKind::NetworkDelay => {
            let host_pairs = |layout: &Layout, edge: usize| -> Vec<(usize, usize)> {
                let e = &layout.edges[edge];
                let server = &layout.nodes[e.server];
                let server_hosts: Vec<usize> = if server.role.is_server() {
                    vec![server.host]
                } else {
                    server
                        .instances
                        .clone()
                        .map(|i| layout.instances[i].host)
                        .collect()
                };
                layout.nodes[e.client]
                    .instances
                    .clone()
                    .map(|i| layout.instances[i].host)
                    .flat_map(|c| server_hosts.iter().map(move |&s| (c, s)))
                    .filter(|&(c, s)| c != s)
                    .collect()
            };
            let pair = match resolved {
                Some(Ref::Host(host)) => {
                    let mut partners: Vec<usize> = (0..layout.edges.len())
                        .flat_map(|e| host_pairs(layout, e))
                        .filter_map(|(c, s)| {
                            if c == host {
                                Some(s)
                            } else if s == host {
                                Some(c)
                            } else {
                                None
                            }
                        })
                        .collect();
                    partners.sort_unstable();
                    let partner = partners
                        .chunk_by(|a, b| a == b)
                        .max_by_key(|run| run.len())
                        .and_then(|run| run.first().copied())
                        .ok_or_else(|| {
                            target_error(
                                index,
                                format!(
                                    "no call crosses from {} to another host",
                                    layout.hosts[host].id
                                ),
                            )
                        })?;
                    (host, partner)
                }
                Some(_) => {
                    return Err(target_error(
                        index,
                        "network-delay needs a host entity".to_owned(),
                    ))
                }
                None => {
                    let mut order: Vec<usize> = (0..layout.edges.len()).collect();
                    order.shuffle(rng);
                    order
                        .into_iter()
                        .find_map(|e| host_pairs(layout, e).first().copied())
                        .ok_or_else(|| {
                            target_error(
                                index,
                                "no call crosses two hosts in this estate".to_owned(),
                            )
                        })?
                }
            };
            let (a, b) = pair;
            let edges: Vec<(usize, f64)> = (0..layout.edges.len())
                .map(|e| (e, crossing_share(layout, e, a, b)))
                .filter(|&(_, share)| share > 0.0)
                .collect();
            let delay_ms = rng.gen_range(15.0..40.0);
            let retransmits = rng.gen_range(250.0..600.0);
            let detail = format!(
                "packet loss between {} ({}) and {} ({}): +{delay_ms:.0} ms on {} call edges, TCP retransmits up",
                layout.hosts[a].id, layout.hosts[a].ip, layout.hosts[b].id, layout.hosts[b].ip, edges.len()
            );
            Ok((
                layout.hosts[a].id.clone(),
                detail,
                Effect::NetworkDelay {
                    hosts: (a, b),
                    delay_ms,
                    retransmits: (retransmits, retransmits * 0.6),
                    edges,
                },
            ))
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Mysql => "MySQL",
        Role::Redis => "Redis",
        _ => "application",
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}
