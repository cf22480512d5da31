//! Alert labels and free text to entities.
//!
//! Alerts name things the way their exporters do: `service="checkout"`,
//! `instance="10.0.0.9:3306"`, `container="order-api-1"`, `job="redis"`,
//! `process="mysqld"`. [`EntityIndex`] resolves them against the topology:
//! explicit ids, exact names, `ip:port` and IPs, then fuzzy names and aliases
//! (English or Chinese) through [`NameLookup`]. Instances, containers and
//! endpoints resolve to the service or server they belong to, since that is
//! what carries request metrics.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_knowledge_graph::{AliasConfig, KnowledgeGraph, NameLookup, NameMatch};
use vigil_model::{EntityId, EntityKind, Topology};

use crate::investigate::owner_of;

/// Labels tried, in order: the most specific names first.
pub const LABEL_ORDER: [&str; 22] = [
    "vigil_entity",
    "entity",
    "service",
    "service_name",
    "service.name",
    "app",
    "app_kubernetes_io_name",
    "application",
    "container",
    "container_name",
    "name",
    "instance",
    "pod",
    "process",
    "process_name",
    "exe",
    "server",
    "addr",
    "ip",
    "host",
    "hostname",
    "job",
];

/// How an alert was mapped to an entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelMatch {
    /// The entity the alert is about (service or server level).
    pub entity: EntityId,
    /// The label that named it.
    pub label: String,
    /// The label's value.
    pub value: String,
    /// How sure: 1 for exact names, ids and addresses, less for fuzzy ones.
    pub score: f64,
}

/// A name index over one topology, for alerts and questions.
#[derive(Clone, Debug)]
pub struct EntityIndex {
    topology: Topology,
    lookup: NameLookup,
    exact: BTreeMap<String, EntityId>,
    by_address: BTreeMap<String, EntityId>,
    by_ip: BTreeMap<String, BTreeSet<EntityId>>,
}

/// Lowest fuzzy score accepted from an alert label (labels are machine text:
/// a loose match is more likely wrong than helpful).
const LABEL_MIN_SCORE: f64 = 0.86;

impl EntityIndex {
    /// Indexes `topology`'s entities, their `alias*` attributes and configured aliases.
    pub fn new(topology: &Topology, aliases: &AliasConfig) -> Self {
        let graph = KnowledgeGraph::from_topology(topology);
        let lookup = NameLookup::new(&graph, aliases);
        let mut exact = BTreeMap::new();
        let mut by_address = BTreeMap::new();
        let mut by_ip: BTreeMap<String, BTreeSet<EntityId>> = BTreeMap::new();
        for entity in &topology.entities {
            let id = &entity.id;
            exact.insert(id.as_str().to_lowercase(), id.clone());
            exact
                .entry(id.name().to_lowercase())
                .or_insert_with(|| id.clone());
            // `mysqld@10.0.0.9:3306` names its address.
            if let Some((_, address)) = id.name().split_once('@') {
                by_address.insert(address.to_owned(), id.clone());
            }
            if let Some(ip) = entity.attributes.get("ip") {
                if let Some(port) = entity.attributes.get("port") {
                    by_address
                        .entry(format!("{ip}:{port}"))
                        .or_insert_with(|| id.clone());
                }
                by_ip.entry(ip.clone()).or_default().insert(id.clone());
            }
        }
        for (id, names) in &aliases.aliases {
            for name in names {
                exact
                    .entry(name.trim().to_lowercase())
                    .or_insert_with(|| id.clone());
            }
        }
        Self {
            topology: topology.clone(),
            lookup,
            exact,
            by_address,
            by_ip,
        }
    }

    /// The topology indexed.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Whether `id` is in the topology.
    pub fn contains(&self, id: &EntityId) -> bool {
        self.exact.get(&id.as_str().to_lowercase()) == Some(id)
    }

    /// The service or server an entity's symptoms belong to.
    pub fn owner(&self, id: &EntityId) -> EntityId {
        owner_of(&self.topology, id)
    }

    /// Fuzzy lookup by name or alias, best first.
    pub fn find(&self, text: &str, limit: usize) -> Vec<NameMatch> {
        self.lookup.find(text, limit)
    }

    /// One value resolved: id, exact name, address, IP, then fuzzy name.
    pub fn resolve(&self, value: &str) -> Option<(EntityId, f64)> {
        let value = value.trim();
        if value.is_empty() || value.len() > 512 {
            return None;
        }
        let lower = value.to_lowercase();
        if let Some(id) = self.exact.get(&lower) {
            return Some((self.owner(id), 1.0));
        }
        // URLs and `host:port` as exporters write them.
        let bare = lower
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_start_matches("tcp://")
            .trim_end_matches('/');
        if let Some(id) = self.by_address.get(bare) {
            return Some((self.owner(id), 1.0));
        }
        let host = bare.rsplit_once(':').map_or(bare, |(host, _)| host);
        if let Some(id) = self.exact.get(host) {
            return Some((self.owner(id), 0.95));
        }
        if let Some(ids) = self.by_ip.get(host) {
            // Prefer what serves requests on that address, then the host itself.
            let best = ids
                .iter()
                .min_by_key(|id| match id.kind() {
                    EntityKind::Database | EntityKind::Cache => 0,
                    EntityKind::Host => 1,
                    _ => 2,
                })
                .cloned()?;
            return Some((self.owner(&best), 0.9));
        }
        let found = self.lookup.find(value, 1).into_iter().next()?;
        Some((self.owner(&found.entity), found.score))
    }

    /// The entity an alert's labels name, trying [`LABEL_ORDER`] then any other
    /// label; `None` when no label names a known entity.
    pub fn resolve_labels(&self, labels: &BTreeMap<String, String>) -> Option<LabelMatch> {
        let ordered =
            LABEL_ORDER
                .iter()
                .filter_map(|key| labels.get_key_value(*key))
                .chain(labels.iter().filter(|(key, _)| {
                    !LABEL_ORDER.contains(&key.as_str()) && *key != "alertname"
                }));
        let mut fuzzy: Option<LabelMatch> = None;
        for (key, value) in ordered {
            if let Ok(id) = value.parse::<EntityId>() {
                if self.contains(&id) {
                    return Some(LabelMatch {
                        entity: self.owner(&id),
                        label: key.clone(),
                        value: value.clone(),
                        score: 1.0,
                    });
                }
            }
            let Some((entity, score)) = self.resolve(value) else {
                continue;
            };
            if score >= 0.9 {
                return Some(LabelMatch {
                    entity,
                    label: key.clone(),
                    value: value.clone(),
                    score,
                });
            }
            if score >= LABEL_MIN_SCORE && fuzzy.as_ref().is_none_or(|f| score > f.score) {
                fuzzy = Some(LabelMatch {
                    entity,
                    label: key.clone(),
                    value: value.clone(),
                    score,
                });
            }
        }
        fuzzy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{Entity, Relation, RelationKind};

    fn index() -> EntityIndex {
        let service = EntityId::new(EntityKind::Service, "order-api");
        let instance = EntityId::new(EntityKind::Instance, "order-api-1");
        let container = EntityId::new(EntityKind::Container, "order-api-1");
        let mysql = EntityId::new(EntityKind::Database, "mysqld@10.0.0.9:3306");
        let host = EntityId::new(EntityKind::Host, "host-9");
        let topology = Topology {
            entities: vec![
                Entity::new(service.clone()).with("alias.zh", "订单服务"),
                Entity::new(instance.clone())
                    .with("ip", "10.0.0.1")
                    .with("port", "8080"),
                Entity::new(container.clone()),
                Entity::new(mysql.clone()).with("ip", "10.0.0.9"),
                Entity::new(host.clone()).with("ip", "10.0.0.9"),
            ],
            relations: vec![
                Relation {
                    from: instance.clone(),
                    to: service.clone(),
                    kind: RelationKind::InstanceOf,
                },
                Relation {
                    from: instance,
                    to: container,
                    kind: RelationKind::RunsOn,
                },
                Relation {
                    from: mysql,
                    to: host,
                    kind: RelationKind::RunsOn,
                },
            ],
        };
        EntityIndex::new(&topology, &AliasConfig::default())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn instance_address_maps_to_its_server_or_service() {
        let index = index();
        let found = index
            .resolve_labels(&labels(&[("instance", "10.0.0.9:3306"), ("job", "mysql")]))
            .expect("mapped");
        assert_eq!(found.entity.as_str(), "database:mysqld@10.0.0.9:3306");
        let found = index
            .resolve_labels(&labels(&[("instance", "10.0.0.1:8080")]))
            .expect("mapped");
        assert_eq!(found.entity.as_str(), "service:order-api");
    }

    #[test]
    fn container_and_alias_map_to_the_service() {
        let index = index();
        let found = index
            .resolve_labels(&labels(&[("container", "order-api-1")]))
            .expect("mapped");
        assert_eq!(found.entity.as_str(), "service:order-api");
        let found = index
            .resolve_labels(&labels(&[("service_name", "订单服务")]))
            .expect("alias");
        assert_eq!(found.entity.as_str(), "service:order-api");
    }

    #[test]
    fn unknown_labels_map_to_nothing() {
        let index = index();
        assert!(index
            .resolve_labels(&labels(&[("job", "node-exporter"), ("severity", "page")]))
            .is_none());
    }
}
