//! Root-cause ranking of a symptom over the [`KnowledgeGraph`] from anomalies.
//!
//! 1. **Candidates**: the symptom, everything it depends on (calls, hosts,
//!    containers, instances) within [`RankConfig::max_hops`], and what is
//!    co-located with any of those (same container or host).
//! 2. **Evidence** per candidate, each in `[0, 1]`: its own anomaly strength;
//!    onset no later than the symptom's; the share of anomalous entities on its
//!    propagation path to the symptom; resource saturation (CPU or memory
//!    anomalies); and a personalised PageRank that walks from anomalous
//!    entities towards what they depend on, weighted by how anomalous each
//!    dependency is, so mass gathers at the deepest anomalous dependency.
//! 3. **Score**: a weighted sum; the list is sorted by score, ties by id.
//!    Entities without any anomaly are dropped: without evidence they are
//!    not candidates.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};
use vigil_model::{Anomaly, EntityId, ResourceMetric, RootCauseCandidate, SignalKind, Timestamp};

use crate::graph::{Flow, KnowledgeGraph};
use crate::walk::personalised_pagerank;
use crate::GraphError;

/// What to explain: an alert on an entity at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symptom {
    /// The alerting entity.
    pub entity: EntityId,
    /// When the alert fired (or the symptom's onset).
    pub at: Timestamp,
}

impl Symptom {
    /// The symptom of a set of anomalies: the entity with the strongest
    /// anomaly among those with the most dependants affected… kept simple: the
    /// strongest anomaly, ties by id, at its onset. `None` without anomalies.
    pub fn from_anomalies(anomalies: &[Anomaly]) -> Option<Self> {
        anomalies
            .iter()
            .max_by(|a, b| {
                a.score
                    .total_cmp(&b.score)
                    .then_with(|| b.entity.cmp(&a.entity))
            })
            .map(|a| Self {
                entity: a.entity.clone(),
                at: a.window.start,
            })
    }
}

/// Weights and limits of the ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankConfig {
    /// How far down the dependency graph candidates are sought.
    pub max_hops: usize,
    /// Weight of the candidate's own anomaly strength.
    pub weight_strength: f64,
    /// Weight of an onset no later than the symptom's.
    pub weight_onset: f64,
    /// Weight of the share of anomalous entities on the path to the symptom.
    pub weight_path: f64,
    /// Weight of resource saturation on the candidate.
    pub weight_saturation: f64,
    /// Weight of the personalised PageRank.
    pub weight_walk: f64,
    /// PageRank damping.
    pub damping: f64,
    /// Candidates returned (0 = all).
    pub limit: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            max_hops: 8,
            weight_strength: 0.25,
            weight_onset: 0.15,
            weight_path: 0.15,
            weight_saturation: 0.1,
            weight_walk: 0.35,
            damping: 0.85,
            limit: 10,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Evidence {
    strength: f64,
    onset: Option<Timestamp>,
    saturation: f64,
    signals: BTreeSet<SignalKind>,
}

/// Ranks root-cause candidates for `symptom`, best first.
///
/// `anomalies` are this window's anomalies (any entity); the graph gives
/// structure only, so one graph serves many symptoms.
pub fn rank_root_causes(
    graph: &KnowledgeGraph,
    symptom: &Symptom,
    anomalies: &[Anomaly],
    config: &RankConfig,
) -> Result<Vec<RootCauseCandidate>, GraphError> {
    let start = graph
        .index_of(&symptom.entity)
        .ok_or_else(|| GraphError::UnknownEntity(symptom.entity.clone()))?;

    let mut evidence: BTreeMap<EntityId, Evidence> = BTreeMap::new();
    for anomaly in anomalies {
        let entry = evidence.entry(anomaly.entity.clone()).or_default();
        // Scores are ≥ 1 when anomalous; squash so one huge score cannot dominate.
        let strength = 1.0 - (-anomaly.score.max(0.0) / 3.0).exp();
        entry.strength = entry.strength.max(strength);
        entry.onset = Some(
            entry
                .onset
                .map_or(anomaly.window.start, |o| o.min(anomaly.window.start)),
        );
        if matches!(
            anomaly.signal,
            SignalKind::Resource(ResourceMetric::CpuCores | ResourceMetric::MemoryBytes)
        ) {
            entry.saturation = entry.saturation.max(strength);
        }
        entry.signals.insert(anomaly.signal.clone());
    }

    // Candidate set: dependencies within reach, plus co-located entities.
    let inner = graph.inner();
    let mut candidates: BTreeSet<NodeIndex> = BTreeSet::from([start]);
    for (id, _) in graph.reach(start, Flow::TowardsCauses, config.max_hops) {
        if let Some(index) = graph.index_of(&id) {
            candidates.insert(index);
        }
    }
    let reached: Vec<NodeIndex> = candidates.iter().copied().collect();
    for node in reached {
        if let Ok(neighbours) = graph.co_located(&inner[node].entity.id) {
            candidates.extend(neighbours.iter().filter_map(|id| graph.index_of(id)));
        }
    }
    // Dense, id-ordered indices for the walk.
    let mut ordered: Vec<NodeIndex> = candidates.into_iter().collect();
    ordered.sort_by(|a, b| inner[*a].entity.id.cmp(&inner[*b].entity.id));
    let position: BTreeMap<NodeIndex, usize> =
        ordered.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let strength_of = |node: NodeIndex| {
        evidence
            .get(&inner[node].entity.id)
            .map_or(0.0, |e| e.strength.max(e.saturation))
    };
    let out_edges: Vec<Vec<(usize, f64)>> = ordered
        .iter()
        .map(|&node| {
            graph
                .flow_neighbours(node, Flow::TowardsCauses)
                .into_iter()
                .filter_map(|next| position.get(&next).map(|&j| (j, strength_of(next) + 0.01)))
                .collect()
        })
        .collect();
    let personalisation: Vec<f64> = ordered.iter().map(|&n| strength_of(n)).collect();
    let walk = personalised_pagerank(&out_edges, &personalisation, config.damping, 100);
    let walk_top = walk.iter().copied().fold(0.0, f64::max);

    let symptom_onset = evidence
        .get(&symptom.entity)
        .and_then(|e| e.onset)
        .unwrap_or(symptom.at)
        .min(symptom.at);

    let mut ranked: Vec<RootCauseCandidate> = Vec::new();
    for (i, &node) in ordered.iter().enumerate() {
        let id = &inner[node].entity.id;
        let Some(found) = evidence.get(id) else {
            continue;
        };
        let path = graph
            .shortest_path(node, start, Flow::TowardsEffects)
            .unwrap_or_else(|| vec![id.clone()]);
        let path_share = if path.len() <= 1 {
            1.0
        } else {
            let anomalous = path.iter().filter(|p| evidence.contains_key(*p)).count();
            anomalous as f64 / path.len() as f64
        };
        let onset_score = match found.onset {
            Some(onset) if onset <= symptom_onset => 1.0,
            Some(_) => 0.0,
            None => 0.0,
        };
        let walk_score = if walk_top > 0.0 {
            walk[i] / walk_top
        } else {
            0.0
        };
        let score = config.weight_strength * found.strength
            + config.weight_onset * onset_score
            + config.weight_path * path_share
            + config.weight_saturation * found.saturation
            + config.weight_walk * walk_score;
        ranked.push(RootCauseCandidate {
            entity: id.clone(),
            score,
            confidence: 0.0,
            signals: found.signals.iter().cloned().collect(),
            path,
            started_at: found.onset,
        });
    }
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.entity.cmp(&b.entity))
    });
    let total: f64 = ranked.iter().take(5).map(|c| c.score).sum();
    for candidate in &mut ranked {
        candidate.confidence = if total > 0.0 {
            (candidate.score / total).min(1.0)
        } else {
            0.0
        };
    }
    if config.limit > 0 {
        ranked.truncate(config.limit);
    }
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{EntityKind, Evidence, RequestMetric, Severity, TimeRange, Topology};

    fn anomaly(entity: &EntityId, signal: SignalKind, start: i64, score: f64) -> Anomaly {
        Anomaly {
            entity: entity.clone(),
            signal,
            window: TimeRange::new(Timestamp(start), Timestamp(start + 600)).expect("range"),
            score,
            severity: Severity::Warning,
            evidence: Evidence {
                baseline: 0.0,
                observed: 0.0,
                series: None,
                band: None,
                summary: String::new(),
            },
        }
    }

    fn setup() -> (KnowledgeGraph, Vec<Anomaly>, EntityId, EntityId) {
        let topology: Topology = crate::graph::tests::estate();
        let graph = KnowledgeGraph::from_topology(&topology);
        let gateway = EntityId::new(EntityKind::Service, "gateway");
        let api = EntityId::new(EntityKind::Service, "api");
        let mysql = EntityId::new(EntityKind::Database, "mysql");
        let latency = SignalKind::Request(RequestMetric::LatencyP99);
        // The symptom (gateway) is the loudest; mysql started first.
        let anomalies = vec![
            anomaly(&gateway, latency.clone(), 120, 9.0),
            anomaly(&api, latency.clone(), 60, 6.0),
            anomaly(&mysql, latency, 0, 5.0),
        ];
        (graph, anomalies, gateway, mysql)
    }

    #[test]
    fn the_deepest_earliest_anomalous_dependency_ranks_first() {
        let (graph, anomalies, gateway, mysql) = setup();
        let symptom = Symptom {
            entity: gateway.clone(),
            at: Timestamp(120),
        };
        let ranked = rank_root_causes(&graph, &symptom, &anomalies, &RankConfig::default())
            .expect("known symptom");
        assert_eq!(ranked[0].entity, mysql, "{ranked:#?}");
        assert_eq!(ranked[0].path.first(), Some(&mysql));
        assert_eq!(ranked[0].path.last(), Some(&gateway));
        assert_eq!(ranked[0].started_at, Some(Timestamp(0)));
        assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(ranked.iter().all(|c| (0.0..=1.0).contains(&c.confidence)));
    }

    #[test]
    fn ranking_is_deterministic_whatever_the_anomaly_order() {
        let (graph, mut anomalies, gateway, _) = setup();
        let symptom = Symptom::from_anomalies(&anomalies).expect("anomalies");
        assert_eq!(symptom.entity, gateway);
        let first =
            rank_root_causes(&graph, &symptom, &anomalies, &RankConfig::default()).expect("ok");
        anomalies.reverse();
        let second =
            rank_root_causes(&graph, &symptom, &anomalies, &RankConfig::default()).expect("ok");
        assert_eq!(first, second);
    }

    #[test]
    fn a_saturated_co_located_neighbour_is_a_candidate() {
        let (graph, mut anomalies, _, _) = setup();
        let worker = EntityId::new(EntityKind::Container, "worker-1");
        anomalies.push(anomaly(
            &worker,
            SignalKind::Resource(ResourceMetric::CpuCores),
            0,
            8.0,
        ));
        let api = EntityId::new(EntityKind::Service, "api");
        let symptom = Symptom {
            entity: api,
            at: Timestamp(60),
        };
        let ranked =
            rank_root_causes(&graph, &symptom, &anomalies, &RankConfig::default()).expect("ok");
        assert!(ranked.iter().any(|c| c.entity == worker), "{ranked:#?}");
    }
}
