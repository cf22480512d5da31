//! [`Estate`]: the built simulation and its outputs (topology, ground truth,
//! per-minute batches, truth lookups).

use vigil_model::{
    EdgeMetrics, EntityId, Event, EventKind, FoldedStack, PlantedFault, Profile, RequestMetrics,
    RequestPoint, RequestSample, RequestSeries, ResourceMetric, ResourceSeries, ResponseStatus,
    Series, StatementStats, StatementStep, TelemetryBatch, TimeRange, Timestamp, Topology,
};

use crate::config::{SimConfig, SimError};
use crate::engine::MinuteState;
use crate::faults::{compile, ActiveFault, Effect};
use crate::layout::{build, Layout, Ref, Role};
use crate::noise::{gauss, hash, poisson, stream, unit, Z99};

/// A simulated estate: structure, planted faults and everything needed to
/// generate its telemetry for any minute of the span, deterministically.
///
/// Generation is lazy and chunked: nothing per minute is kept, so a 10,000-service
/// day streams through in bounded memory.
#[derive(Clone, Debug)]
pub struct Estate {
    pub(crate) config: SimConfig,
    pub(crate) layout: Layout,
    pub(crate) planted: Vec<PlantedFault>,
    pub(crate) active: Vec<ActiveFault>,
}

impl Estate {
    /// Builds the estate described by `config`; fails naming the first bad field.
    pub fn new(config: SimConfig) -> Result<Estate, SimError> {
        config.validate()?;
        let mut layout = build(&config);
        let (planted, active) = compile(&config, &mut layout)?;
        Ok(Estate {
            config,
            layout,
            planted,
            active,
        })
    }

    /// The config the estate was built from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Entities and relations, with the ids a real store derives from DeepFlow rows.
    pub fn topology(&self) -> &Topology {
        &self.layout.topology
    }

    /// Ground truth: the planted faults, in config order.
    pub fn faults(&self) -> &[PlantedFault] {
        &self.planted
    }

    /// The simulated span.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            start: self.config.start,
            end: self.minute_time(self.config.minutes),
        }
    }

    /// Serving entities with request series (services, databases, caches), in output order.
    pub fn serving_entities(&self) -> impl Iterator<Item = &EntityId> + '_ {
        self.layout.nodes.iter().map(|node| &node.id)
    }

    pub(crate) fn minute_time(&self, minute: u32) -> Timestamp {
        self.config.start.plus_secs(i64::from(minute) * 60)
    }

    /// Aggregated per-minute telemetry in chunks of `chunk_minutes` (0 counts as 1).
    ///
    /// Each batch carries, for its minutes: request series of every service,
    /// database and cache; edge series of every call edge; CPU and memory of
    /// every container and TCP retransmits of every host; per-minute statistics of
    /// every statement shape and Redis command; one slow example per serving
    /// entity and one failed example where there were errors; one on-CPU profile
    /// per container; deploy, restart and OOM events. The first batch also carries
    /// the topology. Values do not depend on the chunk size.
    pub fn batches(&self, chunk_minutes: u32) -> impl Iterator<Item = TelemetryBatch> + '_ {
        let chunk = chunk_minutes.max(1);
        let total = self.config.minutes;
        let mut state = MinuteState::new(self);
        (0..total.div_ceil(chunk)).map(move |index| {
            let first = index * chunk;
            let mut batch = self.batch(&mut state, first, (first + chunk).min(total));
            if index == 0 {
                batch.topology = self.layout.topology.clone();
            }
            batch
        })
    }

    /// The planted request metrics of a service, database or cache at the minute
    /// holding `minute`; `None` for other entities or outside the span.
    ///
    /// Computes the whole estate for that minute: meant for tests, not loops.
    pub fn truth(&self, entity: &EntityId, minute: Timestamp) -> Option<RequestPoint> {
        let Some(&Ref::Node(node)) = self.layout.index.get(entity) else {
            return None;
        };
        let index = self.minute_index(minute)?;
        let mut state = MinuteState::new(self);
        self.compute_minute(&mut state, index);
        Some(node_point(&state, node))
    }

    /// The minute index holding `time`, if inside the span.
    pub(crate) fn minute_index(&self, time: Timestamp) -> Option<u32> {
        let offset = time.secs() - self.config.start.secs();
        if offset < 0 {
            return None;
        }
        u32::try_from(offset / 60)
            .ok()
            .filter(|&m| m < self.config.minutes)
    }

    fn batch(&self, state: &mut MinuteState, first: u32, end: u32) -> TelemetryBatch {
        let layout = &self.layout;
        let seed = self.config.seed;
        let len = (end - first) as usize;
        let start = self.minute_time(first);
        let mut requests: Vec<RequestSeries> = layout
            .nodes
            .iter()
            .map(|node| RequestSeries {
                entity: node.id.clone(),
                metrics: RequestMetrics::empty(start, 60, len),
            })
            .collect();
        let mut edges: Vec<EdgeMetrics> = layout
            .edges
            .iter()
            .map(|edge| EdgeMetrics {
                client: layout.nodes[edge.client].id.clone(),
                server: layout.nodes[edge.server].id.clone(),
                protocol: layout.nodes[edge.server].protocol(),
                metrics: RequestMetrics::empty(start, 60, len),
            })
            .collect();
        let mut cpu: Vec<Vec<f64>> = vec![Vec::with_capacity(len); layout.instances.len()];
        let mut memory: Vec<Vec<f64>> = vec![Vec::with_capacity(len); layout.instances.len()];
        let mut burn_core_minutes = vec![0.0; layout.instances.len()];
        let mut retransmits: Vec<Vec<f64>> = vec![Vec::with_capacity(len); layout.hosts.len()];
        let mut statements = Vec::new();
        let mut events = Vec::new();
        // Per node: (p99, minute, profile) of the slowest minute, (errors, minute) of the worst.
        let mut slowest = vec![(f64::NEG_INFINITY, 0u32, 0usize); layout.nodes.len()];
        let mut most_errors = vec![(0.0, 0u32); layout.nodes.len()];
        let mut host_extra = vec![0.0; layout.hosts.len()];
        let mut instance_burn = vec![0.0; layout.instances.len()];
        let mut instance_leak = vec![0.0; layout.instances.len()];

        for minute in first..end {
            let at = (minute - first) as usize;
            let step = u64::from(minute);
            let time = self.minute_time(minute);
            self.compute_minute(state, minute);
            for (index, series) in requests.iter_mut().enumerate() {
                let point = node_point(state, index);
                series.metrics.set(at, point);
                if point.latency_p99_ms > slowest[index].0 {
                    slowest[index] = (point.latency_p99_ms, minute, state.profile[index]);
                }
                if point.errors > most_errors[index].0 {
                    most_errors[index] = (point.errors, minute);
                }
            }
            for (index, series) in edges.iter_mut().enumerate() {
                let calls = state.edge_requests[index];
                let [p50, p90, p99] = state.edge_quantiles[index];
                let present = calls > 0.0;
                series.metrics.set(
                    at,
                    RequestPoint {
                        requests: calls,
                        errors: state.edge_errors[index],
                        latency_mean_ms: if present {
                            state.edge_mean[index]
                        } else {
                            f64::NAN
                        },
                        latency_p50_ms: if present { p50 } else { f64::NAN },
                        latency_p90_ms: if present { p90 } else { f64::NAN },
                        latency_p99_ms: if present { p99 } else { f64::NAN },
                    },
                );
            }

            // Fault effects on resources this minute.
            host_extra.iter_mut().for_each(|v| *v = 0.0);
            instance_burn.iter_mut().for_each(|v| *v = 0.0);
            instance_leak.iter_mut().for_each(|v| *v = 0.0);
            for fault in self.active.iter().filter(|f| f.active_at(minute)) {
                match &fault.effect {
                    Effect::CpuBurn {
                        instance,
                        extra_cores,
                    } => instance_burn[*instance] += extra_cores,
                    Effect::NetworkDelay {
                        hosts, retransmits, ..
                    } => {
                        host_extra[hosts.0] += retransmits.0;
                        host_extra[hosts.1] += retransmits.1;
                    }
                    Effect::MemoryLeak {
                        instance,
                        bytes_per_minute,
                        minutes_to_oom,
                    } => {
                        let phase = (minute - fault.start) % (minutes_to_oom + 1);
                        if phase == *minutes_to_oom {
                            let record = &layout.instances[*instance];
                            events.push(Event {
                                time,
                                entity: record.container_id.clone(),
                                kind: EventKind::OomKill,
                                detail: format!(
                                    "{} exceeded its memory limit of {} bytes; killed by the kernel OOM killer",
                                    layout.nodes[record.service].process_name, record.memory_limit as u64
                                ),
                            });
                            events.push(Event {
                                time: time.plus_secs(5),
                                entity: record.container_id.clone(),
                                kind: EventKind::Restart,
                                detail:
                                    "restarted by docker (restart policy always), exit code 137"
                                        .to_owned(),
                            });
                        } else {
                            instance_leak[*instance] += bytes_per_minute * f64::from(phase);
                        }
                    }
                    _ => {}
                }
            }

            for (index, instance) in layout.instances.iter().enumerate() {
                let node = &layout.nodes[instance.service];
                let served_per_second =
                    state.node_requests[instance.service] * instance.share / 60.0;
                let busy =
                    instance.idle_cores + served_per_second * instance.core_seconds_per_request;
                let noisy =
                    busy * (1.0 + 0.04 * gauss(hash(seed, stream::CPU, index as u64, step)));
                // Throttling keeps a container just under its limit, never exactly at it.
                let ceiling = instance.cpu_limit
                    * (0.95 + 0.03 * unit(hash(seed, stream::CPU, !(index as u64), step)));
                let cores = (noisy + instance_burn[index]).clamp(0.002, ceiling);
                burn_core_minutes[index] += (cores - noisy.max(0.002)).max(0.0);
                cpu[index].push(cores);
                let load = if node.expected_requests > 0.0 {
                    state.node_requests[instance.service] / node.expected_requests
                } else {
                    1.0
                };
                let resident = instance.base_memory * (1.0 + 0.04 * (load - 1.0).clamp(-1.0, 2.0))
                    + instance.base_memory
                        * 0.004
                        * gauss(hash(seed, stream::MEMORY, index as u64, step))
                    + instance_leak[index];
                memory[index].push(resident.min(instance.memory_limit).round());
            }
            let season = crate::engine::seasonality(self.local_secs(minute));
            for (index, host) in layout.hosts.iter().enumerate() {
                let lambda = host.base_retransmits * season + host_extra[index];
                retransmits[index].push(poisson(
                    lambda,
                    hash(seed, stream::RETRANSMITS, index as u64, step),
                ));
            }

            for (index, node) in layout
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.role.is_server())
            {
                let profile = &layout.profiles[state.profile[index]];
                let served = state.node_requests[index];
                let scale = state.node_scale[index];
                for (offset, (op, factor)) in layout.ops[node.ops.clone()]
                    .iter()
                    .zip(&profile.factors)
                    .enumerate()
                {
                    let bits = hash(
                        seed,
                        stream::STATEMENTS,
                        (node.ops.start + offset) as u64,
                        step,
                    );
                    let count = (served * op.share).round();
                    if count < 1.0 {
                        continue;
                    }
                    let errors = poisson(count * state.node_error_ratio[index], bits).min(count);
                    let median = op.median_ms * factor * scale;
                    let sigma = node.sigma;
                    let tail = (2.0 * (count + 1.0).ln()).sqrt().max(Z99);
                    statements.push(StatementStep {
                        time,
                        stats: StatementStats {
                            server: node.id.clone(),
                            protocol: node.protocol(),
                            request_type: op.request_type.clone(),
                            shape: op.resource.clone(),
                            count: count as u64,
                            errors: errors as u64,
                            latency_mean_ms: median * (sigma * sigma / 2.0).exp(),
                            latency_p99_ms: median * (Z99 * sigma).exp(),
                            latency_max_ms: median
                                * (tail * sigma).exp()
                                * (1.0 + 0.2 * unit(bits >> 3)),
                        },
                    });
                }
            }
        }

        let chunk_range = TimeRange {
            start,
            end: self.minute_time(end),
        };
        let mut resources = Vec::with_capacity(layout.instances.len() * 2 + layout.hosts.len());
        for (index, instance) in layout.instances.iter().enumerate() {
            resources.push(ResourceSeries {
                entity: instance.container_id.clone(),
                metric: ResourceMetric::CpuCores,
                series: Series {
                    start,
                    step_secs: 60,
                    values: std::mem::take(&mut cpu[index]),
                },
            });
            resources.push(ResourceSeries {
                entity: instance.container_id.clone(),
                metric: ResourceMetric::MemoryBytes,
                series: Series {
                    start,
                    step_secs: 60,
                    values: std::mem::take(&mut memory[index]),
                },
            });
        }
        for (index, host) in layout.hosts.iter().enumerate() {
            resources.push(ResourceSeries {
                entity: host.id.clone(),
                metric: ResourceMetric::TcpRetransmits,
                series: Series {
                    start,
                    step_secs: 60,
                    values: std::mem::take(&mut retransmits[index]),
                },
            });
        }

        let profiles = self.profiles(&resources, &burn_core_minutes, chunk_range);
        let samples = self.samples(&slowest, &most_errors);
        events.extend(self.deploys(chunk_range));
        events.sort_by(|a, b| (a.time, &a.entity).cmp(&(b.time, &b.entity)));
        TelemetryBatch {
            topology: Topology::default(),
            requests,
            edges,
            resources,
            statements,
            samples,
            profiles,
            events,
        }
    }

    /// One on-CPU profile per container over the chunk, in CPU microseconds. A
    /// container burning CPU for a fault shows the burn as one dominant stack.
    fn profiles(
        &self,
        resources: &[ResourceSeries],
        burn: &[f64],
        range: TimeRange,
    ) -> Vec<Profile> {
        let layout = &self.layout;
        layout
            .instances
            .iter()
            .enumerate()
            .map(|(index, instance)| {
                let node = &layout.nodes[instance.service];
                let core_minutes: f64 = resources[index * 2].series.values.iter().sum();
                let normal_us = (core_minutes - burn[index]).max(0.0) * 60e6;
                let mut stacks: Vec<FoldedStack> = node
                    .stacks
                    .iter()
                    .map(|(frames, weight)| FoldedStack {
                        frames: frames.clone(),
                        value: (normal_us * weight).round() as u64,
                    })
                    .collect();
                if burn[index] > 0.0 {
                    stacks.push(FoldedStack {
                        frames: format!("{};main;worker::run;crypto::hash_loop", node.process_name),
                        value: (burn[index] * 60e6).round() as u64,
                    });
                }
                stacks.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
                Profile {
                    entity: instance.container_id.clone(),
                    range,
                    unit: "cpu-us".to_owned(),
                    stacks,
                }
            })
            .collect()
    }

    /// The slowest request of each serving entity in the chunk, and a failed one
    /// where there were errors.
    fn samples(
        &self,
        slowest: &[(f64, u32, usize)],
        most_errors: &[(f64, u32)],
    ) -> Vec<RequestSample> {
        let layout = &self.layout;
        let seed = self.config.seed;
        let mut samples = Vec::new();
        for (index, node) in layout.nodes.iter().enumerate() {
            let ops = &layout.ops[node.ops.clone()];
            let client = node.a_caller.map(|caller| layout.nodes[caller].id.clone());
            let is_http = !node.role.is_server();
            let trace = |bits: u64| {
                is_http.then(|| format!("{:016x}{:016x}", bits, bits.rotate_left(17) ^ 0x5bd1_e995))
            };
            let (p99, minute, profile) = slowest[index];
            if p99.is_finite() && !ops.is_empty() {
                let bits = hash(seed, stream::SAMPLES, index as u64, u64::from(minute));
                // The slow example belongs to the shape whose latency weighs most.
                let factors = &layout.profiles[profile].factors;
                let op = if node.role.is_server() {
                    (0..ops.len())
                        .max_by(|&a, &b| {
                            (ops[a].median_ms * factors[a])
                                .total_cmp(&(ops[b].median_ms * factors[b]))
                        })
                        .unwrap_or(0)
                } else {
                    (bits % ops.len() as u64) as usize
                };
                samples.push(RequestSample {
                    time: self.minute_time(minute).plus_secs((bits >> 40) as i64 % 60),
                    client: client.clone(),
                    server: node.id.clone(),
                    protocol: node.protocol(),
                    request_type: ops[op].request_type.clone(),
                    resource: ops[op].resource.clone(),
                    duration_ms: p99 * (1.0 + 0.3 * unit(bits)),
                    status: ResponseStatus::Ok,
                    code: is_http.then_some(200),
                    trace_id: trace(bits),
                });
            }
            let (errors, minute) = most_errors[index];
            if errors > 0.0 && !ops.is_empty() {
                let bits = hash(
                    seed,
                    stream::SAMPLES,
                    index as u64 ^ (1 << 40),
                    u64::from(minute),
                );
                let op = (bits % ops.len() as u64) as usize;
                let (code, duration) = match node.role {
                    Role::Mysql => (Some(1205), 50_000.0),
                    Role::Redis => (None, 1.0 + unit(bits) * 5.0),
                    _ => (Some(500), 5.0 + unit(bits) * 50.0),
                };
                samples.push(RequestSample {
                    time: self.minute_time(minute).plus_secs((bits >> 40) as i64 % 60),
                    client,
                    server: node.id.clone(),
                    protocol: node.protocol(),
                    request_type: ops[op].request_type.clone(),
                    resource: ops[op].resource.clone(),
                    duration_ms: duration,
                    status: ResponseStatus::ServerError,
                    code,
                    trace_id: trace(bits),
                });
            }
        }
        samples
    }

    /// Benign deploys: about one service in eight deploys on a given day, during
    /// local working hours, followed by a rolling restart of its instances.
    fn deploys(&self, range: TimeRange) -> Vec<Event> {
        let layout = &self.layout;
        let offset = i64::from(self.config.utc_offset_hours) * 3600;
        let first_day = (range.start.secs() + offset).div_euclid(86_400);
        let last_day = (range.end.secs() - 1 + offset).div_euclid(86_400);
        let mut events = Vec::new();
        for day in first_day..=last_day {
            for (index, node) in layout
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.role.is_server())
            {
                let bits = hash(self.config.seed, stream::DEPLOY, index as u64, day as u64);
                if unit(bits) >= 0.125 {
                    continue;
                }
                let minute_of_day = 9 * 60 + (bits >> 32) % (9 * 60);
                let time = Timestamp(day * 86_400 - offset + minute_of_day as i64 * 60);
                let version = format!("1.{}.{}", (bits >> 8) % 20, (bits >> 16) % 30);
                for (position, instance) in node.instances.clone().enumerate() {
                    let restart = time.plus_secs(30 + 20 * position as i64);
                    if range.contains(restart) {
                        events.push(Event {
                            time: restart,
                            entity: layout.instances[instance].container_id.clone(),
                            kind: EventKind::Restart,
                            detail: format!(
                                "rolling restart for deploy of {} {version}",
                                node.name
                            ),
                        });
                    }
                }
                if range.contains(time) {
                    events.push(Event {
                        time,
                        entity: node.id.clone(),
                        kind: EventKind::Deploy,
                        detail: format!("deployed {} version {version}", node.name),
                    });
                }
            }
        }
        events
    }
}

/// The request point of node `index` in the computed minute.
pub(crate) fn node_point(state: &MinuteState, index: usize) -> RequestPoint {
    let requests = state.node_requests[index];
    let present = requests > 0.0;
    let [p50, p90, p99] = state.node_quantiles[index];
    let pick = |value: f64| if present { value } else { f64::NAN };
    RequestPoint {
        requests,
        errors: state.node_errors[index],
        latency_mean_ms: pick(state.node_mean[index]),
        latency_p50_ms: pick(p50),
        latency_p90_ms: pick(p90),
        latency_p99_ms: pick(p99),
    }
}
