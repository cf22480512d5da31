//! Name patterns (`order-*`, `redis@10.0.0.?:6379`) that scope playbooks and
//! overrides, and the scope test itself.

use std::fmt;

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use vigil_model::{EntityId, EntityKind};

use crate::definition::Scope;

/// A shell-style pattern on entity names: `*` any run, `?` one character.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Compiles `text`; refuses malformed patterns (e.g. an unclosed `[`).
    pub fn new(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("a pattern must not be empty".to_owned());
        }
        let glob = Glob::new(text).map_err(|err| format!("bad pattern {text:?}: {err}"))?;
        Ok(Self {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    /// Whether `name` matches (the entity name, without its `kind:` prefix).
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether any of `patterns` matches `name`; an empty list matches everything.
pub fn any_matches(patterns: &[Pattern], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(name))
}

impl Scope {
    /// Whether findings about `entity` belong to this scope. Services and hosts
    /// are tested against their lists; other kinds (databases, caches,
    /// containers) are in scope unless excluded, because they are the usual
    /// root causes of in-scope services' problems.
    pub fn includes(&self, entity: &EntityId) -> bool {
        let name = entity.name();
        if self.exclude.iter().any(|p| p.matches(name)) {
            return false;
        }
        match entity.kind() {
            EntityKind::Service => any_matches(&self.services, name),
            EntityKind::Host => any_matches(&self.hosts, name),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_with_wildcards() {
        let pattern = Pattern::new("order-*").expect("valid");
        assert!(pattern.matches("order-api"));
        assert!(!pattern.matches("payment-api"));
        assert!(Pattern::new("[oops").is_err());
        assert!(Pattern::new(" ").is_err());
    }

    #[test]
    fn scope_filters_services_and_hosts_but_keeps_dependencies() {
        let scope = Scope {
            services: vec![Pattern::new("order-*").expect("valid")],
            hosts: vec![],
            exclude: vec![Pattern::new("order-batch").expect("valid")],
        };
        let service = |name| EntityId::new(EntityKind::Service, name);
        assert!(scope.includes(&service("order-api")));
        assert!(!scope.includes(&service("order-batch")));
        assert!(!scope.includes(&service("payment")));
        assert!(scope.includes(&EntityId::new(EntityKind::Host, "node-1")));
        assert!(scope.includes(&EntityId::new(EntityKind::Cache, "redis@10.0.0.1:6379")));
    }
}
