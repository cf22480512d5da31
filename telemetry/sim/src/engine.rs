//! One minute of the estate: traffic flows down the call graph, latency and
//! errors flow back up. Everything here is a pure function of (estate, minute).

use std::f64::consts::TAU;

use crate::estate::Estate;
use crate::faults::Effect;
use crate::layout::Role;
use crate::noise::{gauss, hash, mixture_quantiles, poisson, stream, Component, LogNormal};

/// How likely a failed call fails the caller's request too (the rest are retried
/// or handled with a fallback).
pub(crate) const ERROR_PROPAGATION: f64 = 0.6;

/// A delay on the calls of an edge that cross a delayed host pair.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct EdgeDelay {
    /// Share of the edge's calls that cross the pair.
    pub share: f64,
    pub delay_ms: f64,
    pub hosts: (usize, usize),
}

/// Scratch and results of one minute, reused from minute to minute.
#[derive(Clone, Debug)]
pub(crate) struct MinuteState {
    pub minute: u32,
    /// Requests served in the minute.
    pub node_requests: Vec<f64>,
    /// Failed requests in the minute.
    pub node_errors: Vec<f64>,
    /// Expected share of failed requests (what callers and records see).
    pub node_error_ratio: Vec<f64>,
    pub node_mean: Vec<f64>,
    pub node_variance: Vec<f64>,
    /// Services: their latency distribution this minute.
    pub node_latency: Vec<LogNormal>,
    /// Servers: the scale of their profile this minute.
    pub node_scale: Vec<f64>,
    pub node_quantiles: Vec<[f64; 3]>,
    pub edge_requests: Vec<f64>,
    pub edge_errors: Vec<f64>,
    pub edge_mean: Vec<f64>,
    pub edge_quantiles: Vec<[f64; 3]>,
    // Fault overlays, set for the faults active this minute.
    pub profile: Vec<usize>,
    pub extra_error_ratio: Vec<f64>,
    pub latency_factor: Vec<f64>,
    pub edge_delay: Vec<EdgeDelay>,
    applied: Vec<usize>,
}

impl MinuteState {
    pub fn new(estate: &Estate) -> Self {
        let nodes = estate.layout.nodes.len();
        let edges = estate.layout.edges.len();
        Self {
            minute: u32::MAX,
            node_requests: vec![0.0; nodes],
            node_errors: vec![0.0; nodes],
            node_error_ratio: vec![0.0; nodes],
            node_mean: vec![0.0; nodes],
            node_variance: vec![0.0; nodes],
            node_latency: vec![
                LogNormal {
                    mu: 0.0,
                    sigma: 0.0
                };
                nodes
            ],
            node_scale: vec![1.0; nodes],
            node_quantiles: vec![[f64::NAN; 3]; nodes],
            edge_requests: vec![0.0; edges],
            edge_errors: vec![0.0; edges],
            edge_mean: vec![0.0; edges],
            edge_quantiles: vec![[f64::NAN; 3]; edges],
            profile: estate.layout.nodes.iter().map(|n| n.profile).collect(),
            extra_error_ratio: vec![0.0; nodes],
            latency_factor: vec![1.0; nodes],
            edge_delay: vec![EdgeDelay::default(); edges],
            applied: Vec::new(),
        }
    }
}

/// Daily and weekly traffic shape at unix time `secs` (local offset applied):
/// low at night, peaking in the afternoon, quieter at weekends; mean about 1.
pub(crate) fn seasonality(local_secs: i64) -> f64 {
    let hour = local_secs.rem_euclid(86_400) as f64 / 3600.0;
    let daily = 1.0
        + 0.55 * (TAU * (hour - 15.0) / 24.0).cos()
        + 0.12 * (2.0 * TAU * (hour - 11.0) / 24.0).cos();
    // 1970-01-01 was a Thursday: day 0 → weekday 4 (0 = Sunday).
    let weekday = (local_secs.div_euclid(86_400) + 4).rem_euclid(7);
    let weekly = if weekday == 0 || weekday == 6 {
        0.8
    } else {
        1.08
    };
    daily * weekly
}

impl Estate {
    /// Local unix seconds of the start of `minute`.
    pub(crate) fn local_secs(&self, minute: u32) -> i64 {
        self.config.start.secs()
            + i64::from(minute) * 60
            + i64::from(self.config.utc_offset_hours) * 3600
    }

    fn apply_faults(&self, state: &mut MinuteState, minute: u32) {
        for fault in std::mem::take(&mut state.applied) {
            match &self.active[fault].effect {
                Effect::ServerProfile { node, .. } => {
                    state.profile[*node] = self.layout.nodes[*node].profile
                }
                Effect::Errors { node, .. } => state.extra_error_ratio[*node] = 0.0,
                Effect::CpuBurn { instance, .. } => {
                    state.latency_factor[self.layout.instances[*instance].service] = 1.0;
                }
                Effect::NetworkDelay { edges, .. } => {
                    for &(edge, _) in edges {
                        state.edge_delay[edge] = EdgeDelay::default();
                    }
                }
                Effect::MemoryLeak { .. } => {}
            }
        }
        for (index, fault) in self.active.iter().enumerate() {
            if !fault.active_at(minute) {
                continue;
            }
            state.applied.push(index);
            match &fault.effect {
                Effect::ServerProfile { node, profile } => state.profile[*node] = *profile,
                Effect::Errors { node, ratio } => state.extra_error_ratio[*node] += ratio,
                Effect::CpuBurn { instance, .. } => {
                    // A core lost to a stuck thread slows the instance's requests a little.
                    let service = self.layout.instances[*instance].service;
                    let count = self.layout.nodes[service].instances.len().max(1) as f64;
                    state.latency_factor[service] = 1.0 + 0.3 / count;
                }
                Effect::NetworkDelay {
                    edges,
                    delay_ms,
                    hosts,
                    ..
                } => {
                    for &(edge, share) in edges {
                        state.edge_delay[edge] = EdgeDelay {
                            share,
                            delay_ms: *delay_ms,
                            hosts: *hosts,
                        };
                    }
                }
                Effect::MemoryLeak { .. } => {}
            }
        }
    }

    /// Fills `state` with `minute` (counted from the span's start).
    pub(crate) fn compute_minute(&self, state: &mut MinuteState, minute: u32) {
        let layout = &self.layout;
        let seed = self.config.seed;
        let step = u64::from(minute);
        self.apply_faults(state, minute);
        state.minute = minute;
        let season = seasonality(self.local_secs(minute));
        let t = f64::from(minute);

        // Traffic, down the graph.
        state.node_requests.iter_mut().for_each(|r| *r = 0.0);
        for (index, node) in layout.nodes.iter().enumerate() {
            if node.role == Role::Gateway {
                let wave = 1.0
                    + 0.05 * (TAU * t / node.waves[0].0 + node.waves[0].1).sin()
                    + 0.07 * (TAU * t / node.waves[1].0 + node.waves[1].1).sin();
                let lambda = node.external_requests * season * wave;
                state.node_requests[index] =
                    poisson(lambda, hash(seed, stream::TRAFFIC, index as u64, step));
            }
            let requests = state.node_requests[index];
            for edge in node.out_edges.clone() {
                let e = &layout.edges[edge];
                let calls = poisson(
                    requests * e.calls,
                    hash(seed, stream::EDGE_TRAFFIC, edge as u64, step),
                );
                state.edge_requests[edge] = calls;
                state.node_requests[e.server] += calls;
            }
        }

        // Latency and errors, up the graph (callees have higher indices).
        let mut buffer = [Component::default(); 16];
        for index in (0..layout.nodes.len()).rev() {
            let node = &layout.nodes[index];
            let requests = state.node_requests[index];
            let load = if node.expected_requests > 0.0 {
                (requests / node.expected_requests).clamp(0.2, 4.0)
            } else {
                1.0
            };
            let jitter = 1.0 + 0.03 * gauss(hash(seed, stream::LATENCY, index as u64, step));
            let own_error = (node.base_error_ratio + state.extra_error_ratio[index]).min(1.0);
            if node.role.is_server() {
                let profile = &layout.profiles[state.profile[index]];
                let scale = (1.0 + 0.12 * (load - 1.0)).clamp(0.8, 1.5) * jitter;
                state.node_scale[index] = scale;
                state.node_mean[index] = profile.mean * scale;
                state.node_variance[index] = profile.variance * scale * scale;
                state.node_quantiles[index] = profile.quantiles.map(|q| q * scale);
                state.node_error_ratio[index] = own_error;
            } else {
                let median = node.self_median_ms
                    * (1.0 + 0.1 * (load - 1.0)).clamp(0.85, 1.4)
                    * jitter
                    * state.latency_factor[index];
                let own = LogNormal {
                    mu: median.ln(),
                    sigma: node.sigma,
                };
                let (mut mean, mut variance) = (own.mean(), own.variance());
                let mut success = 1.0 - own_error;
                for edge in node.out_edges.clone() {
                    let e = &layout.edges[edge];
                    let server = e.server;
                    let delay = state.edge_delay[edge];
                    let edge_mean =
                        state.node_mean[server] + e.rtt_ms + delay.share * delay.delay_ms;
                    let edge_variance = state.node_variance[server]
                        + delay.share * (1.0 - delay.share) * delay.delay_ms * delay.delay_ms;
                    state.edge_mean[edge] = edge_mean;
                    state.edge_quantiles[edge] = if delay.share > 0.0 {
                        let used =
                            self.callee_components(state, server, e.rtt_ms, delay, &mut buffer);
                        mixture_quantiles(&buffer[..used])
                    } else {
                        state.node_quantiles[server].map(|q| q + e.rtt_ms)
                    };
                    mean += e.calls * edge_mean;
                    variance += e.calls * edge_variance;
                    success *=
                        (1.0 - ERROR_PROPAGATION * state.node_error_ratio[server]).powf(e.calls);
                }
                let latency = LogNormal::from_moments(mean, variance);
                state.node_latency[index] = latency;
                state.node_mean[index] = mean;
                state.node_variance[index] = variance;
                state.node_quantiles[index] = latency.quantiles();
                state.node_error_ratio[index] = (1.0 - success).clamp(0.0, 1.0);
            }
            state.node_errors[index] = poisson(
                requests * state.node_error_ratio[index],
                hash(seed, stream::ERRORS, index as u64, step),
            )
            .min(requests);
        }
        for (edge, e) in layout.edges.iter().enumerate() {
            let requests = state.edge_requests[edge];
            state.edge_errors[edge] = poisson(
                requests * state.node_error_ratio[e.server],
                hash(seed, stream::EDGE_ERRORS, edge as u64, step),
            )
            .min(requests);
        }
    }

    /// Writes into `buffer` the mixture components of calls to `server` through a
    /// delayed edge; returns how many were written.
    fn callee_components(
        &self,
        state: &MinuteState,
        server: usize,
        rtt_ms: f64,
        delay: EdgeDelay,
        buffer: &mut [Component; 16],
    ) -> usize {
        let node = &self.layout.nodes[server];
        let mut used = 0;
        let mut push = |weight: f64, mu: f64, sigma: f64| {
            for (share, shift) in [
                (1.0 - delay.share, rtt_ms),
                (delay.share, rtt_ms + delay.delay_ms),
            ] {
                if used < buffer.len() && share > 0.0 {
                    buffer[used] = Component {
                        weight: weight * share,
                        mu,
                        sigma,
                        shift_ms: shift,
                    };
                    used += 1;
                }
            }
        };
        if node.role.is_server() {
            let profile = &self.layout.profiles[state.profile[server]];
            let scale = state.node_scale[server];
            for (op, factor) in self.layout.ops[node.ops.clone()]
                .iter()
                .zip(&profile.factors)
            {
                push(op.share, (op.median_ms * factor * scale).ln(), node.sigma);
            }
        } else {
            let latency = state.node_latency[server];
            push(1.0, latency.mu, latency.sigma);
        }
        used
    }
}
