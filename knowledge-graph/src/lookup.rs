//! Entity lookup by fuzzy name, with configurable aliases in any language.
//!
//! People ask about "订单服务" or "the order api", not `service:order-api`.
//! Names are the entity's name part, its `alias`/`alias.*` attributes (e.g.
//! `alias.zh`), and aliases from [`AliasConfig`]. Matching is on lowercased
//! text, by characters (not bytes), so Chinese names compare as well as Latin
//! ones: exact match first, then containment, then Jaro–Winkler similarity.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_model::EntityId;

use crate::graph::KnowledgeGraph;

/// Aliases per entity, as configured (`service:order-api: [订单服务, orders]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AliasConfig {
    /// Extra names per entity, in any language.
    pub aliases: BTreeMap<EntityId, Vec<String>>,
    /// Lowest similarity in `[0, 1]` that still counts as a match.
    pub min_score: Option<f64>,
}

/// One lookup result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NameMatch {
    /// The entity found.
    pub entity: EntityId,
    /// The name or alias that matched.
    pub matched: String,
    /// Similarity in `[0, 1]`; 1 for an exact match.
    pub score: f64,
}

/// A name index over a graph's entities and configured aliases.
#[derive(Clone, Debug, Default)]
pub struct NameLookup {
    /// (lowercased name, original name, entity), sorted.
    names: Vec<(String, String, EntityId)>,
    min_score: f64,
}

impl NameLookup {
    /// Indexes every entity of `graph` with its names and the configured aliases.
    pub fn new(graph: &KnowledgeGraph, config: &AliasConfig) -> Self {
        let mut names: BTreeSet<(String, String, EntityId)> = BTreeSet::new();
        let mut add = |name: &str, id: &EntityId| {
            let name = name.trim();
            if !name.is_empty() {
                names.insert((name.to_lowercase(), name.to_owned(), id.clone()));
            }
        };
        for node in graph.nodes() {
            let id = &node.entity.id;
            add(id.as_str(), id);
            add(id.name(), id);
            for (key, value) in &node.entity.attributes {
                if key == "alias" || key.starts_with("alias.") {
                    for alias in value.split(',') {
                        add(alias, id);
                    }
                }
            }
        }
        for (id, aliases) in &config.aliases {
            for alias in aliases {
                add(alias, id);
            }
        }
        Self {
            names: names.into_iter().collect(),
            min_score: config.min_score.unwrap_or(0.75),
        }
    }

    /// Entities whose names match `query`, best first (one result per entity,
    /// ties by id), at most `limit`.
    pub fn find(&self, query: &str, limit: usize) -> Vec<NameMatch> {
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            return Vec::new();
        }
        let mut best: BTreeMap<&EntityId, (f64, &str)> = BTreeMap::new();
        for (lower, original, id) in &self.names {
            let score = similarity(&query, lower);
            if score < self.min_score {
                continue;
            }
            let entry = best.entry(id).or_insert((score, original));
            if score > entry.0 {
                *entry = (score, original);
            }
        }
        let mut found: Vec<NameMatch> = best
            .into_iter()
            .map(|(id, (score, matched))| NameMatch {
                entity: id.clone(),
                matched: matched.to_owned(),
                score,
            })
            .collect();
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.entity.cmp(&b.entity))
        });
        found.truncate(limit);
        found
    }
}

/// Exact 1; a name containing the query (or contained in it) scores by how
/// much of the longer it covers, from 0.8; otherwise Jaro–Winkler.
fn similarity(query: &str, name: &str) -> f64 {
    if query == name {
        return 1.0;
    }
    let query_len = query.chars().count() as f64;
    let name_len = name.chars().count() as f64;
    if name.contains(query) || query.contains(name) {
        return 0.8 + 0.19 * query_len.min(name_len) / query_len.max(name_len);
    }
    strsim::jaro_winkler(query, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::EntityKind;

    fn lookup() -> NameLookup {
        let graph = KnowledgeGraph::from_topology(&crate::graph::tests::estate());
        let mut config = AliasConfig::default();
        config.aliases.insert(
            EntityId::new(EntityKind::Database, "mysql"),
            vec!["订单数据库".to_owned(), "orders db".to_owned()],
        );
        NameLookup::new(&graph, &config)
    }

    #[test]
    fn chinese_alias_from_config_and_attribute_is_found() {
        let lookup = lookup();
        let found = lookup.find("订单数据库", 3);
        assert_eq!(found[0].entity.as_str(), "database:mysql");
        assert_eq!(found[0].score, 1.0);
        // The attribute alias `alias.zh = 订单服务` names the api service.
        let found = lookup.find("订单服务", 3);
        assert_eq!(found[0].entity.as_str(), "service:api");
    }

    #[test]
    fn misspelt_english_name_still_matches() {
        let found = lookup().find("gatewy", 3);
        assert_eq!(found[0].entity.as_str(), "service:gateway");
        assert!(found[0].score < 1.0);
        assert!(lookup().find("zzzzzz", 3).is_empty());
    }
}
