//! Entities of an estate, their stable ids, and the relations between them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What an entity is. The order is the order reports list kinds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntityKind {
    /// A logical service (OpenTelemetry `service.name`, a container name, or process@ip:port).
    Service,
    /// One running copy of a service.
    Instance,
    /// An operating-system process.
    Process,
    /// A Docker container.
    Container,
    /// A machine (physical or virtual) by its address or name.
    Host,
    /// An API path, a SQL statement shape or a Redis command served by a service.
    Endpoint,
    /// A database server (MySQL / MariaDB, PostgreSQL).
    Database,
    /// A cache server (Redis, Memcached).
    Cache,
}

impl EntityKind {
    /// Every kind, in report order.
    pub const ALL: [EntityKind; 8] = [
        Self::Service,
        Self::Instance,
        Self::Process,
        Self::Container,
        Self::Host,
        Self::Endpoint,
        Self::Database,
        Self::Cache,
    ];

    /// The kind's name as used in ids and config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Instance => "instance",
            Self::Process => "process",
            Self::Container => "container",
            Self::Host => "host",
            Self::Endpoint => "endpoint",
            Self::Database => "database",
            Self::Cache => "cache",
        }
    }

    /// Whether requests are served by entities of this kind (they have request metrics).
    pub const fn serves_requests(self) -> bool {
        matches!(
            self,
            Self::Service | Self::Instance | Self::Endpoint | Self::Database | Self::Cache
        )
    }
}

impl FromStr for EntityKind {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ModelError::UnknownName {
                what: "entity kind",
                given: text.to_owned(),
                expected: Self::ALL.map(Self::as_str).join(", "),
            })
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stable entity id, `<kind>:<name>`, e.g. `service:checkout` or `database:mysqld@10.0.0.5:3306`.
///
/// The same entity gets the same id from every store and every run, so findings,
/// incidents and graph snapshots can refer to it across time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityId {
    text: String,
    kind: EntityKind,
}

impl EntityId {
    /// The id of the entity of `kind` called `name`.
    ///
    /// Telemetry sometimes lacks a name; an empty one becomes `unknown` so an id
    /// built from data is never malformed (parsing text still refuses it).
    pub fn new(kind: EntityKind, name: &str) -> Self {
        let name = if name.is_empty() { "unknown" } else { name };
        Self {
            text: format!("{}:{}", kind.as_str(), name),
            kind,
        }
    }

    /// The entity's kind.
    pub fn kind(&self) -> EntityKind {
        self.kind
    }

    /// The name part, after `<kind>:`.
    pub fn name(&self) -> &str {
        &self.text[self.kind.as_str().len() + 1..]
    }

    /// The whole id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for EntityId {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((kind, name)) = text.split_once(':') else {
            return Err(ModelError::InvalidEntityId {
                id: text.to_owned(),
                reason: "expected <kind>:<name>",
            });
        };
        let kind: EntityKind = kind.parse().map_err(|_| ModelError::InvalidEntityId {
            id: text.to_owned(),
            reason: "unknown kind (service, instance, process, container, host, endpoint, database, cache)",
        })?;
        if name.trim().is_empty() {
            return Err(ModelError::InvalidEntityId {
                id: text.to_owned(),
                reason: "empty name",
            });
        }
        Ok(Self::new(kind, name))
    }
}

impl TryFrom<String> for EntityId {
    type Error = ModelError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<EntityId> for String {
    fn from(id: EntityId) -> Self {
        id.text
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An entity with what is known about it beyond its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Stable id.
    pub id: EntityId,
    /// Free-form facts: `ip`, `port`, `process_name`, `container_id`, `image`,
    /// `cpu_limit_cores`, `alias.zh`… Sorted so output is deterministic.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Entity {
    /// An entity with no attributes.
    pub fn new(id: EntityId) -> Self {
        Self {
            id,
            attributes: BTreeMap::new(),
        }
    }

    /// This entity with one more attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }
}

/// How two entities are related. Every relation reads "from <kind> to".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationKind {
    /// `from` sends requests to `to`: a fault in `to` shows up in `from`.
    Calls,
    /// `from` (an instance) is one copy of `to` (a service).
    InstanceOf,
    /// `from` (instance, process, container) runs on `to` (container or host).
    RunsOn,
    /// `from` (a service or server) serves the endpoint `to`.
    Exposes,
}

impl RelationKind {
    /// The relation's name as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::InstanceOf => "instance-of",
            Self::RunsOn => "runs-on",
            Self::Exposes => "exposes",
        }
    }
}

impl FromStr for RelationKind {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Calls, Self::InstanceOf, Self::RunsOn, Self::Exposes]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ModelError::UnknownName {
                what: "relation kind",
                given: text.to_owned(),
                expected: "calls, instance-of, runs-on, exposes".to_owned(),
            })
    }
}

/// A directed relation between two entities.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Relation {
    /// Source entity.
    pub from: EntityId,
    /// Target entity.
    pub to: EntityId,
    /// What the relation means.
    pub kind: RelationKind,
}

/// Entities and relations seen in a time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Every entity, sorted by id.
    pub entities: Vec<Entity>,
    /// Every relation, sorted.
    pub relations: Vec<Relation>,
}

impl Topology {
    /// Sorts and deduplicates so equal topologies compare equal whatever their source.
    pub fn normalise(&mut self) {
        self.entities.sort_by(|a, b| a.id.cmp(&b.id));
        self.entities.dedup_by(|later, earlier| {
            if later.id == earlier.id {
                earlier.attributes.append(&mut later.attributes);
                true
            } else {
                false
            }
        });
        self.relations.sort();
        self.relations.dedup();
    }
}

/// Application protocols, with DeepFlow's `l7_protocol` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum L7Protocol {
    /// HTTP/1.x.
    Http,
    /// HTTP/2.
    Http2,
    /// gRPC.
    Grpc,
    /// MySQL / MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// Kafka.
    Kafka,
    /// DNS.
    Dns,
    /// Anything else DeepFlow names by code.
    Other(u8),
}

impl L7Protocol {
    /// From DeepFlow's `l7_protocol` column.
    pub const fn from_deepflow_code(code: u8) -> Self {
        match code {
            20 => Self::Http,
            21 => Self::Http2,
            41 => Self::Grpc,
            60 => Self::Mysql,
            61 => Self::Postgres,
            80 => Self::Redis,
            100 => Self::Kafka,
            120 => Self::Dns,
            other => Self::Other(other),
        }
    }

    /// DeepFlow's `l7_protocol` code.
    pub const fn deepflow_code(self) -> u8 {
        match self {
            Self::Http => 20,
            Self::Http2 => 21,
            Self::Grpc => 41,
            Self::Mysql => 60,
            Self::Postgres => 61,
            Self::Redis => 80,
            Self::Kafka => 100,
            Self::Dns => 120,
            Self::Other(code) => code,
        }
    }

    /// A short human name.
    pub fn name(self) -> String {
        match self {
            Self::Http => "HTTP".into(),
            Self::Http2 => "HTTP2".into(),
            Self::Grpc => "gRPC".into(),
            Self::Mysql => "MySQL".into(),
            Self::Postgres => "PostgreSQL".into(),
            Self::Redis => "Redis".into(),
            Self::Kafka => "Kafka".into(),
            Self::Dns => "DNS".into(),
            Self::Other(code) => format!("L7#{code}"),
        }
    }

    /// The entity kind of a server that speaks this protocol.
    pub const fn server_kind(self) -> EntityKind {
        match self {
            Self::Mysql | Self::Postgres => EntityKind::Database,
            Self::Redis => EntityKind::Cache,
            _ => EntityKind::Service,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_id_round_trips_through_text() {
        let id = EntityId::new(EntityKind::Database, "mysqld@10.0.0.5:3306");
        assert_eq!(id.as_str(), "database:mysqld@10.0.0.5:3306");
        assert_eq!(id.name(), "mysqld@10.0.0.5:3306");
        let parsed: EntityId = id.as_str().parse().expect("valid id");
        assert_eq!(parsed, id);
        assert_eq!(parsed.kind(), EntityKind::Database);
    }

    #[test]
    fn entity_id_rejects_bad_text_with_reason() {
        let err = "nonsense".parse::<EntityId>().expect_err("no kind");
        assert!(err.to_string().contains("<kind>:<name>"), "{err}");
        let err = "planet:earth".parse::<EntityId>().expect_err("bad kind");
        assert!(err.to_string().contains("unknown kind"), "{err}");
        assert!("service:".parse::<EntityId>().is_err());
    }

    #[test]
    fn entity_id_deserialises_from_json_string() {
        let id: EntityId = serde_json::from_str("\"cache:redis@h1:6379\"").expect("valid");
        assert_eq!(id.kind(), EntityKind::Cache);
        assert!(serde_json::from_str::<EntityId>("\"x\"").is_err());
    }

    #[test]
    fn deepflow_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(L7Protocol::from_deepflow_code(code).deepflow_code(), code);
        }
        assert_eq!(L7Protocol::from_deepflow_code(80), L7Protocol::Redis);
    }

    #[test]
    fn normalise_merges_duplicate_entities() {
        let id = EntityId::new(EntityKind::Host, "h1");
        let mut topology = Topology {
            entities: vec![
                Entity::new(id.clone()).with("ip", "10.0.0.1"),
                Entity::new(id.clone()).with("os", "linux"),
            ],
            relations: vec![],
        };
        topology.normalise();
        assert_eq!(topology.entities.len(), 1);
        assert_eq!(topology.entities[0].attributes.len(), 2);
    }
}
