//! [`KnowledgeGraph`]: the estate as a petgraph of typed nodes and edges.
//!
//! Built from values the caller read (topology, call edges, anomalies) one
//! window at a time; nothing is ever removed, so a node that stopped reporting
//! keeps its place and says when it was last seen. A [`GraphSnapshot`] is the
//! sorted, serialisable form a report keeps to show the graph as it was.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use vigil_model::{
    Anomaly, CallEdge, Entity, EntityId, L7Protocol, RelationKind, SignalKind, TimeRange,
    Timestamp, Topology,
};

use crate::GraphError;

/// An entity in the graph, with what the latest window said about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// The entity and its attributes.
    pub entity: Entity,
    /// End of the last window the entity appeared in.
    pub last_seen: Option<Timestamp>,
    /// Strongest anomaly score in the latest window (0 when normal).
    pub anomaly_score: f64,
    /// Earliest onset among the latest window's anomalies.
    pub anomaly_onset: Option<Timestamp>,
    /// Signals that were anomalous in the latest window, sorted.
    pub anomalous_signals: Vec<SignalKind>,
}

/// What an edge means. Every edge reads "from … to", as [`RelationKind`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EdgeKind {
    /// `from` sends requests to `to`, with the latest window's traffic when known.
    Calls {
        /// Protocol, when a call edge was seen.
        protocol: Option<L7Protocol>,
        /// Requests in the latest window.
        requests: u64,
        /// Errors in the latest window.
        errors: u64,
        /// Mean latency in the latest window, ms (absent when not measured).
        latency_mean_ms: Option<f64>,
        /// p99 latency in the latest window, ms.
        latency_p99_ms: Option<f64>,
    },
    /// `from` (an instance) is one copy of `to` (a service).
    InstanceOf,
    /// `from` runs on `to` (a container or host).
    RunsOn,
    /// `from` serves the endpoint `to`.
    Exposes,
    /// `from` causes `to` (a causal link given directly, as in offline cases).
    Causes,
}

impl EdgeKind {
    fn from_relation(kind: RelationKind) -> Self {
        match kind {
            RelationKind::Calls => Self::calls_without_traffic(),
            RelationKind::InstanceOf => Self::InstanceOf,
            RelationKind::RunsOn => Self::RunsOn,
            RelationKind::Exposes => Self::Exposes,
        }
    }

    fn calls_without_traffic() -> Self {
        Self::Calls {
            protocol: None,
            requests: 0,
            errors: 0,
            latency_mean_ms: None,
            latency_p99_ms: None,
        }
    }

    /// The edge's name, as in snapshots.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Calls { .. } => "calls",
            Self::InstanceOf => "instance-of",
            Self::RunsOn => "runs-on",
            Self::Exposes => "exposes",
            Self::Causes => "causes",
        }
    }

    /// Whether a problem at the edge's `to` end shows up at its `from` end
    /// (`true`), or the other way round (`false`).
    ///
    /// A slow callee slows its callers, a saturated host its containers; but an
    /// instance's trouble shows in its service, a server's in its endpoints, and
    /// a cause in its effects.
    pub fn impact_flows_backwards(&self) -> bool {
        matches!(self, Self::Calls { .. } | Self::RunsOn)
    }
}

/// One edge of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// Source entity.
    pub from: EntityId,
    /// Target entity.
    pub to: EntityId,
    /// What the edge means, with its traffic.
    #[serde(flatten)]
    pub kind: EdgeKind,
}

/// The graph as it was at the end of a window: sorted, so equal graphs give
/// equal snapshots and equal JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    /// The last window applied, if any.
    pub window: Option<TimeRange>,
    /// Nodes sorted by entity id.
    pub nodes: Vec<GraphNode>,
    /// Edges sorted by (from, to, kind).
    pub edges: Vec<GraphEdge>,
}

/// What one window changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowUpdate {
    /// Entities seen for the first time.
    pub new_entities: Vec<EntityId>,
    /// Number of edges added.
    pub new_edges: usize,
    /// Entities anomalous in this window.
    pub anomalous: Vec<EntityId>,
}

/// The typed graph of an estate.
#[derive(Clone, Debug, Default)]
pub struct KnowledgeGraph {
    graph: DiGraph<GraphNode, EdgeKind>,
    index: BTreeMap<EntityId, NodeIndex>,
    window: Option<TimeRange>,
}

impl KnowledgeGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// A graph of one topology, without traffic or anomalies.
    pub fn from_topology(topology: &Topology) -> Self {
        let mut graph = Self::new();
        graph.add_topology(topology, None);
        graph
    }

    /// Rebuilds a graph from a snapshot.
    pub fn from_snapshot(snapshot: &GraphSnapshot) -> Self {
        let mut graph = Self::new();
        for node in &snapshot.nodes {
            let index = graph.graph.add_node(node.clone());
            graph.index.insert(node.entity.id.clone(), index);
        }
        for edge in &snapshot.edges {
            graph.upsert_edge(&edge.from, &edge.to, edge.kind.clone());
        }
        graph.window = snapshot.window;
        graph
    }

    /// Applies one window: new entities and relations are added, call edges
    /// take this window's traffic, and anomaly state is replaced by this
    /// window's anomalies (a node not anomalous now reads normal).
    pub fn apply_window(
        &mut self,
        window: TimeRange,
        topology: &Topology,
        calls: &[CallEdge],
        anomalies: &[Anomaly],
    ) -> WindowUpdate {
        let edges_before = self.graph.edge_count();
        let mut update = WindowUpdate {
            new_entities: self.add_topology(topology, Some(window.end)),
            ..WindowUpdate::default()
        };
        for call in calls {
            for id in [&call.client, &call.server] {
                if self.ensure_node(id, Some(window.end)) {
                    update.new_entities.push(id.clone());
                }
            }
            let finite = |v: f64| v.is_finite().then_some(v);
            self.upsert_edge(
                &call.client,
                &call.server,
                EdgeKind::Calls {
                    protocol: Some(call.protocol),
                    requests: call.requests,
                    errors: call.errors,
                    latency_mean_ms: finite(call.latency_mean_ms),
                    latency_p99_ms: finite(call.latency_p99_ms),
                },
            );
        }
        for node in self.graph.node_weights_mut() {
            node.anomaly_score = 0.0;
            node.anomaly_onset = None;
            node.anomalous_signals.clear();
        }
        let mut anomalous = BTreeSet::new();
        for anomaly in anomalies {
            if self.ensure_node(&anomaly.entity, Some(window.end)) {
                update.new_entities.push(anomaly.entity.clone());
            }
            let Some(&index) = self.index.get(&anomaly.entity) else {
                continue;
            };
            let node = &mut self.graph[index];
            node.anomaly_score = node.anomaly_score.max(anomaly.score);
            node.anomaly_onset = Some(match node.anomaly_onset {
                Some(onset) => onset.min(anomaly.window.start),
                None => anomaly.window.start,
            });
            if !node.anomalous_signals.contains(&anomaly.signal) {
                node.anomalous_signals.push(anomaly.signal.clone());
                node.anomalous_signals.sort();
            }
            anomalous.insert(anomaly.entity.clone());
        }
        update.new_entities.sort();
        update.new_entities.dedup();
        update.new_edges = self.graph.edge_count() - edges_before;
        update.anomalous = anomalous.into_iter().collect();
        self.window = Some(window);
        update
    }

    /// Adds an entity (or merges its attributes); returns whether it was new.
    pub fn add_entity(&mut self, entity: &Entity) -> bool {
        let new = self.ensure_node(&entity.id, None);
        if let Some(&index) = self.index.get(&entity.id) {
            let attributes = &mut self.graph[index].entity.attributes;
            for (key, value) in &entity.attributes {
                attributes.insert(key.clone(), value.clone());
            }
        }
        new
    }

    /// Adds an edge, adding missing endpoints; an edge of the same kind
    /// between the same entities is replaced rather than duplicated.
    pub fn add_edge(&mut self, from: &EntityId, to: &EntityId, kind: EdgeKind) {
        self.ensure_node(from, None);
        self.ensure_node(to, None);
        self.upsert_edge(from, to, kind);
    }

    /// Number of entities.
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The last window applied.
    pub fn window(&self) -> Option<TimeRange> {
        self.window
    }

    /// The node of an entity.
    pub fn node(&self, id: &EntityId) -> Option<&GraphNode> {
        self.index.get(id).map(|&index| &self.graph[index])
    }

    /// Every node, in entity id order.
    pub fn nodes(&self) -> impl Iterator<Item = &GraphNode> + '_ {
        self.index.values().map(|&index| &self.graph[index])
    }

    /// Direct neighbours of an entity with the edge between them: `Outgoing`
    /// for edges from it, `Incoming` for edges to it. Sorted by id, then edge name.
    pub fn neighbours(
        &self,
        id: &EntityId,
        direction: Direction,
    ) -> Result<Vec<(EntityId, EdgeKind)>, GraphError> {
        let index = self.require(id)?;
        let mut out: Vec<(EntityId, EdgeKind)> = self
            .graph
            .edges_directed(index, direction)
            .map(|edge| {
                let other = match direction {
                    Direction::Outgoing => edge.target(),
                    Direction::Incoming => edge.source(),
                };
                (self.graph[other].entity.id.clone(), edge.weight().clone())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name().cmp(b.1.name())));
        Ok(out)
    }

    /// What `id` depends on, transitively: everything whose problems can show
    /// up at `id`, nearest first, with the hop count. Excludes `id` itself.
    pub fn dependencies(&self, id: &EntityId) -> Result<Vec<(EntityId, usize)>, GraphError> {
        let start = self.require(id)?;
        Ok(self.reach(start, Flow::TowardsCauses, usize::MAX))
    }

    /// The blast radius of `id`: every entity a problem at `id` can reach,
    /// nearest first, with the hop count (who is affected if `id` is slow).
    pub fn blast_radius(&self, id: &EntityId) -> Result<Vec<(EntityId, usize)>, GraphError> {
        let start = self.require(id)?;
        Ok(self.reach(start, Flow::TowardsEffects, usize::MAX))
    }

    /// The shortest dependency path from `symptom` down to `dependency`
    /// (`[symptom, …, dependency]`), or `None` when `symptom` does not depend on
    /// it. Among equally short paths, the one through the smallest ids wins.
    pub fn dependency_path(
        &self,
        symptom: &EntityId,
        dependency: &EntityId,
    ) -> Result<Option<Vec<EntityId>>, GraphError> {
        let from = self.require(symptom)?;
        let to = self.require(dependency)?;
        Ok(self.shortest_path(from, to, Flow::TowardsCauses))
    }

    /// The shortest path a problem at `cause` takes to reach `symptom`
    /// (`[cause, …, symptom]`), or `None` when it cannot reach it.
    pub fn propagation_path(
        &self,
        cause: &EntityId,
        symptom: &EntityId,
    ) -> Result<Option<Vec<EntityId>>, GraphError> {
        let from = self.require(cause)?;
        let to = self.require(symptom)?;
        Ok(self.shortest_path(from, to, Flow::TowardsEffects))
    }

    /// Entities sharing a container or host with `id` (directly or through its
    /// instances), and those containers and hosts: where resource contention
    /// can come from. Sorted by id, `id` excluded.
    pub fn co_located(&self, id: &EntityId) -> Result<Vec<EntityId>, GraphError> {
        let start = self.require(id)?;
        // The entity and its instances, then what they run on, then everything
        // else on those, then services of those instances.
        let mut members = vec![start];
        members.extend(self.edge_neighbours(start, Direction::Incoming, |k| {
            matches!(k, EdgeKind::InstanceOf)
        }));
        let mut placements = BTreeSet::new();
        let mut frontier = members.clone();
        while let Some(node) = frontier.pop() {
            for target in
                self.edge_neighbours(node, Direction::Outgoing, |k| matches!(k, EdgeKind::RunsOn))
            {
                if placements.insert(target) {
                    frontier.push(target);
                }
            }
        }
        // Everything running on those placements, however deep (host →
        // container → instance), and the services of those instances.
        let mut found = BTreeSet::new();
        let mut frontier: Vec<NodeIndex> = placements.iter().copied().collect();
        found.extend(placements.iter().copied());
        while let Some(placement) = frontier.pop() {
            for tenant in self.edge_neighbours(placement, Direction::Incoming, |k| {
                matches!(k, EdgeKind::RunsOn)
            }) {
                if found.insert(tenant) {
                    frontier.push(tenant);
                }
                found.extend(self.edge_neighbours(tenant, Direction::Outgoing, |k| {
                    matches!(k, EdgeKind::InstanceOf)
                }));
            }
        }
        for member in members {
            found.remove(&member);
        }
        let mut ids: Vec<EntityId> = found
            .into_iter()
            .map(|index| self.graph[index].entity.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The sorted, serialisable form of the graph.
    pub fn snapshot(&self) -> GraphSnapshot {
        let nodes = self.nodes().cloned().collect();
        let mut edges: Vec<GraphEdge> = self
            .graph
            .edge_references()
            .map(|edge| GraphEdge {
                from: self.graph[edge.source()].entity.id.clone(),
                to: self.graph[edge.target()].entity.id.clone(),
                kind: edge.weight().clone(),
            })
            .collect();
        edges.sort_by(|a, b| (&a.from, &a.to, a.kind.name()).cmp(&(&b.from, &b.to, b.kind.name())));
        GraphSnapshot {
            window: self.window,
            nodes,
            edges,
        }
    }

    pub(crate) fn index_of(&self, id: &EntityId) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    pub(crate) fn inner(&self) -> &DiGraph<GraphNode, EdgeKind> {
        &self.graph
    }

    /// Neighbours one hop along the flow of impact, sorted by id.
    pub(crate) fn flow_neighbours(&self, node: NodeIndex, flow: Flow) -> Vec<NodeIndex> {
        let mut out: Vec<NodeIndex> = Vec::new();
        for edge in self.graph.edges_directed(node, Direction::Outgoing) {
            // A problem at `target` reaches `node` when impact flows backwards.
            let towards_causes = edge.weight().impact_flows_backwards();
            if towards_causes == matches!(flow, Flow::TowardsCauses) {
                out.push(edge.target());
            }
        }
        for edge in self.graph.edges_directed(node, Direction::Incoming) {
            let towards_effects = edge.weight().impact_flows_backwards();
            if towards_effects == matches!(flow, Flow::TowardsEffects) {
                out.push(edge.source());
            }
        }
        out.sort_by(|a, b| self.graph[*a].entity.id.cmp(&self.graph[*b].entity.id));
        out.dedup();
        out
    }

    /// Breadth-first reach along a flow, nearest first, ties by id.
    pub(crate) fn reach(
        &self,
        start: NodeIndex,
        flow: Flow,
        max_hops: usize,
    ) -> Vec<(EntityId, usize)> {
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::from([(start, 0usize)]);
        let mut out = Vec::new();
        while let Some((node, hops)) = queue.pop_front() {
            if hops >= max_hops {
                continue;
            }
            for next in self.flow_neighbours(node, flow) {
                if seen.insert(next) {
                    out.push((self.graph[next].entity.id.clone(), hops + 1));
                    queue.push_back((next, hops + 1));
                }
            }
        }
        out
    }

    pub(crate) fn shortest_path(
        &self,
        from: NodeIndex,
        to: NodeIndex,
        flow: Flow,
    ) -> Option<Vec<EntityId>> {
        let mut previous: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut seen = BTreeSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = vec![to];
                let mut cursor = to;
                while let Some(&before) = previous.get(&cursor) {
                    path.push(before);
                    cursor = before;
                }
                path.reverse();
                return Some(
                    path.into_iter()
                        .map(|n| self.graph[n].entity.id.clone())
                        .collect(),
                );
            }
            for next in self.flow_neighbours(node, flow) {
                if seen.insert(next) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn edge_neighbours(
        &self,
        node: NodeIndex,
        direction: Direction,
        keep: impl Fn(&EdgeKind) -> bool,
    ) -> Vec<NodeIndex> {
        self.graph
            .edges_directed(node, direction)
            .filter(|edge| keep(edge.weight()))
            .map(|edge| match direction {
                Direction::Outgoing => edge.target(),
                Direction::Incoming => edge.source(),
            })
            .collect()
    }

    fn require(&self, id: &EntityId) -> Result<NodeIndex, GraphError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| GraphError::UnknownEntity(id.clone()))
    }

    fn add_topology(&mut self, topology: &Topology, seen: Option<Timestamp>) -> Vec<EntityId> {
        let mut new = Vec::new();
        for entity in &topology.entities {
            if self.add_entity(entity) {
                new.push(entity.id.clone());
            }
            self.touch(&entity.id, seen);
        }
        for relation in &topology.relations {
            for id in [&relation.from, &relation.to] {
                if self.ensure_node(id, seen) {
                    new.push(id.clone());
                }
            }
            let kind = EdgeKind::from_relation(relation.kind);
            // A topology relation must not wipe the traffic a call edge carries.
            let exists = self
                .index_pair(&relation.from, &relation.to)
                .is_some_and(|(a, b)| {
                    self.graph
                        .edges_connecting(a, b)
                        .any(|edge| edge.weight().name() == kind.name())
                });
            if !exists {
                self.upsert_edge(&relation.from, &relation.to, kind);
            }
        }
        new
    }

    fn index_pair(&self, a: &EntityId, b: &EntityId) -> Option<(NodeIndex, NodeIndex)> {
        Some((*self.index.get(a)?, *self.index.get(b)?))
    }

    fn touch(&mut self, id: &EntityId, seen: Option<Timestamp>) {
        if let (Some(seen), Some(&index)) = (seen, self.index.get(id)) {
            let node = &mut self.graph[index];
            node.last_seen = Some(node.last_seen.map_or(seen, |last| last.max(seen)));
        }
    }

    /// Adds a bare node when missing; returns whether it was added.
    fn ensure_node(&mut self, id: &EntityId, seen: Option<Timestamp>) -> bool {
        let new = if self.index.contains_key(id) {
            false
        } else {
            let index = self.graph.add_node(GraphNode {
                entity: Entity::new(id.clone()),
                last_seen: None,
                anomaly_score: 0.0,
                anomaly_onset: None,
                anomalous_signals: Vec::new(),
            });
            self.index.insert(id.clone(), index);
            true
        };
        self.touch(id, seen);
        new
    }

    fn upsert_edge(&mut self, from: &EntityId, to: &EntityId, kind: EdgeKind) {
        let Some((a, b)) = self.index_pair(from, to) else {
            return;
        };
        let existing = self
            .graph
            .edges_connecting(a, b)
            .find(|edge| edge.weight().name() == kind.name())
            .map(|edge| edge.id());
        match existing {
            Some(edge) => self.graph[edge] = kind,
            None => {
                self.graph.add_edge(a, b, kind);
            }
        }
    }
}

/// Which way to walk: from a symptom towards what can cause it, or from a
/// cause towards what it affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    TowardsCauses,
    TowardsEffects,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vigil_model::{EntityKind, Relation};

    fn id(kind: EntityKind, name: &str) -> EntityId {
        EntityId::new(kind, name)
    }

    /// gateway → api → mysql; api's instance runs in a container on host-1,
    /// which also runs worker's container.
    pub(crate) fn estate() -> Topology {
        let s = |n| id(EntityKind::Service, n);
        let rel = |from: EntityId, to: EntityId, kind| Relation { from, to, kind };
        let mut topology = Topology {
            entities: vec![Entity::new(s("api")).with("alias.zh", "订单服务")],
            relations: vec![
                rel(s("gateway"), s("api"), RelationKind::Calls),
                rel(
                    s("api"),
                    id(EntityKind::Database, "mysql"),
                    RelationKind::Calls,
                ),
                rel(
                    id(EntityKind::Instance, "api-1"),
                    s("api"),
                    RelationKind::InstanceOf,
                ),
                rel(
                    id(EntityKind::Instance, "api-1"),
                    id(EntityKind::Container, "api-1"),
                    RelationKind::RunsOn,
                ),
                rel(
                    id(EntityKind::Container, "api-1"),
                    id(EntityKind::Host, "host-1"),
                    RelationKind::RunsOn,
                ),
                rel(
                    id(EntityKind::Instance, "worker-1"),
                    s("worker"),
                    RelationKind::InstanceOf,
                ),
                rel(
                    id(EntityKind::Instance, "worker-1"),
                    id(EntityKind::Container, "worker-1"),
                    RelationKind::RunsOn,
                ),
                rel(
                    id(EntityKind::Container, "worker-1"),
                    id(EntityKind::Host, "host-1"),
                    RelationKind::RunsOn,
                ),
            ],
        };
        topology.normalise();
        topology
    }

    #[test]
    fn dependency_and_propagation_paths_follow_calls() {
        let graph = KnowledgeGraph::from_topology(&estate());
        let gateway = id(EntityKind::Service, "gateway");
        let mysql = id(EntityKind::Database, "mysql");
        let api = id(EntityKind::Service, "api");
        assert_eq!(
            graph.dependency_path(&gateway, &mysql).expect("known"),
            Some(vec![gateway.clone(), api.clone(), mysql.clone()])
        );
        assert_eq!(
            graph.propagation_path(&mysql, &gateway).expect("known"),
            Some(vec![mysql.clone(), api, gateway.clone()])
        );
        // A callee does not depend on its caller.
        assert_eq!(
            graph.dependency_path(&mysql, &gateway).expect("known"),
            None
        );
    }

    #[test]
    fn blast_radius_of_a_host_reaches_callers_of_its_tenants() {
        let graph = KnowledgeGraph::from_topology(&estate());
        let radius = graph
            .blast_radius(&id(EntityKind::Host, "host-1"))
            .expect("known");
        let names: Vec<&str> = radius.iter().map(|(e, _)| e.as_str()).collect();
        assert!(names.contains(&"service:gateway"), "{names:?}");
        assert!(names.contains(&"service:worker"), "{names:?}");
        assert!(!names.contains(&"database:mysql"), "{names:?}");
        let hops: Vec<usize> = radius.iter().map(|(_, h)| *h).collect();
        assert!(
            hops.windows(2).all(|w| w[0] <= w[1]),
            "nearest first: {hops:?}"
        );
    }

    #[test]
    fn co_located_finds_the_neighbour_on_the_same_host() {
        let graph = KnowledgeGraph::from_topology(&estate());
        let near = graph
            .co_located(&id(EntityKind::Service, "api"))
            .expect("known");
        assert!(
            near.contains(&id(EntityKind::Service, "worker")),
            "{near:?}"
        );
        assert!(near.contains(&id(EntityKind::Host, "host-1")), "{near:?}");
    }

    #[test]
    fn windows_update_traffic_and_anomalies_and_snapshots_round_trip() {
        let mut graph = KnowledgeGraph::from_topology(&estate());
        let edges_before = graph.edge_count();
        let window = TimeRange::new(Timestamp(0), Timestamp(60)).expect("range");
        let call = CallEdge {
            client: id(EntityKind::Service, "gateway"),
            server: id(EntityKind::Service, "api"),
            protocol: L7Protocol::Http,
            requests: 100,
            errors: 3,
            latency_mean_ms: f64::NAN,
            latency_p99_ms: 80.0,
        };
        let update = graph.apply_window(window, &Topology::default(), &[call], &[]);
        assert_eq!(update.new_edges, 0, "the call edge replaces the topology's");
        assert_eq!(graph.edge_count(), edges_before);
        let snapshot = graph.snapshot();
        let json = serde_json::to_string(&snapshot).expect("serialise");
        let back: GraphSnapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, snapshot);
        assert_eq!(KnowledgeGraph::from_snapshot(&back).snapshot(), snapshot);
        assert!(json.contains("\"requests\":100"), "{json}");
    }

    #[test]
    fn unknown_entity_is_an_error_naming_it() {
        let graph = KnowledgeGraph::new();
        let err = graph
            .blast_radius(&id(EntityKind::Service, "ghost"))
            .expect_err("unknown");
        assert!(err.to_string().contains("service:ghost"), "{err}");
    }
}
