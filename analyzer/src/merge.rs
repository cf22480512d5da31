//! Merging one incident's symptoms into one [`Finding`] per root entity.
//!
//! Anomalies are first grouped per owner (containers and instances belong to
//! their service, endpoints to their server) and per stretch of time. A group of
//! pure symptoms (request metrics, SLO burn) then joins an overlapping group
//! further down the call graph (its callee, or the callee's callee…), or, when
//! none is anomalous, a host it or its callees run on whose network is
//! anomalous. Hosts anomalous together join the strongest. What is left are
//! roots; each becomes one finding with a fingerprint from its entity and signal
//! family, not from times, so the same problem keeps its identity across runs.

use std::collections::{BTreeMap, VecDeque};

use vigil_model::{
    Anomaly, EntityId, EntityKind, Finding, RequestMetric, ResourceMetric, Severity, SignalKind,
    Timestamp,
};

use crate::config::GuardConfig;
use crate::input::Context;

/// How far down the call graph a symptom looks for its cause.
const MAX_DEPTH: usize = 6;

/// The family a signal belongs to, for titles and fingerprints.
pub fn family(signal: &SignalKind) -> &'static str {
    match signal {
        SignalKind::Request(RequestMetric::Requests) => "traffic",
        SignalKind::Request(RequestMetric::Errors | RequestMetric::ErrorRatio) => "errors",
        SignalKind::Request(_) => "latency",
        SignalKind::Resource(ResourceMetric::CpuCores) => "cpu",
        SignalKind::Resource(ResourceMetric::MemoryBytes) => "memory",
        SignalKind::Resource(_) => "network",
        SignalKind::Statement(_) => "statement",
        SignalKind::SloBurn(_) => "slo",
        SignalKind::Silence => "silence",
        SignalKind::Check(_) => "check",
    }
}

fn is_symptom(signal: &SignalKind) -> bool {
    matches!(signal, SignalKind::Request(_) | SignalKind::SloBurn(_))
}

struct Group {
    owner: EntityId,
    start: Timestamp,
    end: Timestamp,
    anomalies: Vec<Anomaly>,
    symptoms_only: bool,
    score: f64,
    /// Hosts: largest excess of retransmits or resets over baseline, per step.
    /// Hosts anomalous together are ranked on it: a count is comparable across
    /// hosts, a z-score depends on each host's own noise.
    excess: f64,
}

/// Groups `anomalies` into findings, strongest first.
pub fn merge(anomalies: Vec<Anomaly>, context: &Context, guards: &GuardConfig) -> Vec<Finding> {
    let gap = i64::from(guards.merge_gap_minutes) * 60;
    // 1. Per owner, per stretch of time.
    let mut by_owner: BTreeMap<EntityId, Vec<Anomaly>> = BTreeMap::new();
    for anomaly in anomalies {
        by_owner
            .entry(context.owner(&anomaly.entity))
            .or_default()
            .push(anomaly);
    }
    // Symptoms and causes of one owner are grouped apart: symptoms chain over a
    // short gap only (two incidents an hour apart are two incidents), causes
    // (a leak interrupted by OOM kills) over the merge gap.
    let symptom_gap = i64::from(guards.symptom_gap_minutes) * 60;
    let mut groups: Vec<Group> = Vec::new();
    for (owner, list) in by_owner {
        for symptoms in [true, false] {
            let mut part: Vec<Anomaly> = list
                .iter()
                .filter(|a| is_symptom(&a.signal) == symptoms)
                .cloned()
                .collect();
            part.sort_by(|a, b| {
                (a.window.start, &a.entity, &a.signal).cmp(&(b.window.start, &b.entity, &b.signal))
            });
            let gap = if symptoms { symptom_gap } else { gap };
            let first_new = groups.len();
            for anomaly in part {
                let joins = groups.len() > first_new
                    && groups
                        .last()
                        .is_some_and(|g| anomaly.window.start.secs() <= g.end.secs() + gap);
                if !joins {
                    groups.push(Group {
                        owner: owner.clone(),
                        start: anomaly.window.start,
                        end: anomaly.window.end,
                        anomalies: Vec::new(),
                        symptoms_only: symptoms,
                        score: 0.0,
                        excess: 0.0,
                    });
                }
                if let Some(group) = groups.last_mut() {
                    // Informational anomalies (coarse windows) do not stretch a group.
                    if anomaly.severity > Severity::Info {
                        group.end = group.end.max(anomaly.window.end);
                        group.score = group.score.max(anomaly.score);
                    }
                    if matches!(
                        anomaly.signal,
                        SignalKind::Resource(
                            ResourceMetric::TcpRetransmits | ResourceMetric::TcpResets
                        )
                    ) {
                        let excess = anomaly.evidence.observed - anomaly.evidence.baseline;
                        if excess.is_finite() {
                            group.excess = group.excess.max(excess);
                        }
                    }
                    group.anomalies.push(anomaly);
                }
            }
        }
    }
    // A cause must already be under way when its symptom starts (a few minutes
    // of slack for detectors' different delays), not merely close in time.
    let slack = 5 * 60;
    let overlaps = |symptom: &Group, cause: &Group| {
        cause.start.secs() <= symptom.start.secs() + slack
            && symptom.start.secs() <= cause.end.secs() + slack
    };
    let mut by_entity: BTreeMap<&EntityId, Vec<usize>> = BTreeMap::new();
    for (index, group) in groups.iter().enumerate() {
        by_entity.entry(&group.owner).or_default().push(index);
    }
    // 2. Parents: symptoms join a cause below them; hosts join the strongest host.
    let mut parent: Vec<Option<usize>> = vec![None; groups.len()];
    for (index, group) in groups.iter().enumerate() {
        if group.owner.kind() == EntityKind::Host {
            parent[index] = groups
                .iter()
                .enumerate()
                .filter(|(other, g)| {
                    *other != index
                        && g.owner.kind() == EntityKind::Host
                        && overlaps(group, g)
                        && g.excess
                            .total_cmp(&group.excess)
                            .then_with(|| group.owner.cmp(&g.owner))
                            .is_gt()
                })
                .max_by(|(_, a), (_, b)| a.excess.total_cmp(&b.excess))
                .map(|(other, _)| other);
            continue;
        }
        if !group.symptoms_only {
            continue;
        }
        // The owner's own causes first (a slow statement explains the server's latency).
        parent[index] = by_entity
            .get(&group.owner)
            .into_iter()
            .flatten()
            .copied()
            .find(|&other| !groups[other].symptoms_only && overlaps(group, &groups[other]));
        // Then breadth-first down the call graph: the nearest anomalous callee wins.
        let mut queue: VecDeque<(&EntityId, usize)> = VecDeque::from([(&group.owner, 0)]);
        let mut seen = vec![&group.owner];
        let mut reached = vec![&group.owner];
        while let Some((entity, depth)) = queue.pop_front() {
            if parent[index].is_some() || depth >= MAX_DEPTH {
                break;
            }
            for callee in context.callees(entity) {
                if seen.contains(&callee) {
                    continue;
                }
                seen.push(callee);
                reached.push(callee);
                let found = by_entity
                    .get(callee)
                    .into_iter()
                    .flatten()
                    .copied()
                    .find(|&other| overlaps(group, &groups[other]));
                if let Some(other) = found {
                    parent[index] = Some(other);
                    break;
                }
                queue.push_back((callee, depth + 1));
            }
        }
        if parent[index].is_none() {
            // No anomalous callee: a network problem on a host on the path?
            parent[index] = reached
                .iter()
                .flat_map(|entity| context.hosts_of(entity))
                .flat_map(|host| by_entity.get(host).into_iter().flatten().copied())
                .filter(|&other| overlaps(group, &groups[other]))
                .max_by(|&a, &b| groups[a].score.total_cmp(&groups[b].score));
        }
    }
    // 3. Roots: follow parents (bounded, in case of cycles).
    let root_of = |mut index: usize| {
        for _ in 0..groups.len() {
            match parent[index] {
                Some(next) if next != index => index = next,
                _ => break,
            }
        }
        index
    };
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for index in 0..groups.len() {
        members.entry(root_of(index)).or_default().push(index);
    }
    let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
    let mut findings = Vec::new();
    for (root, list) in members {
        let Some(root_group) = slots[root].take() else {
            continue;
        };
        let entity = root_group.owner.clone();
        let mut anomalies = root_group.anomalies;
        for other in list {
            if let Some(group) = slots[other].take() {
                anomalies.extend(group.anomalies);
            }
        }
        let severity = anomalies
            .iter()
            .map(|a| a.severity)
            .max()
            .unwrap_or(Severity::Info);
        if severity < guards.min_finding_severity {
            continue;
        }
        anomalies.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| (a.window.start, &a.entity).cmp(&(b.window.start, &b.entity)))
        });
        // The root's own strongest anomaly names the finding.
        let lead = anomalies
            .iter()
            .filter(|a| context.owner(&a.entity) == entity)
            .max_by(|a, b| {
                (a.severity, !is_symptom(&a.signal))
                    .cmp(&(b.severity, !is_symptom(&b.signal)))
                    .then_with(|| a.score.total_cmp(&b.score))
            })
            .or_else(|| anomalies.first());
        let (family_name, lead_summary) = lead
            .map(|a| (family(&a.signal), a.evidence.summary.clone()))
            .unwrap_or(("unknown", String::new()));
        let symptoms = anomalies.len();
        findings.push(Finding {
            fingerprint: fingerprint(&entity, family_name),
            title: format!(
                "{family_name} problem on {entity} ({symptoms} symptoms): {lead_summary}"
            ),
            entity,
            severity,
            anomalies,
            candidates: Vec::new(),
        });
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| first_start(a).cmp(&first_start(b)))
            .then_with(|| a.entity.cmp(&b.entity))
    });
    findings
}

fn first_start(finding: &Finding) -> Timestamp {
    finding
        .anomalies
        .iter()
        .map(|a| a.window.start)
        .min()
        .unwrap_or(Timestamp(0))
}

/// Stable id of a problem: FNV-1a of root entity and signal family.
pub fn fingerprint(entity: &EntityId, family: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity.as_str().bytes().chain([b'|']).chain(family.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{Evidence, Relation, RelationKind, TimeRange, Topology};

    fn anomaly(entity: &EntityId, signal: SignalKind, start: i64) -> Anomaly {
        Anomaly {
            entity: entity.clone(),
            signal,
            window: TimeRange {
                start: Timestamp(start * 60),
                end: Timestamp((start + 20) * 60),
            },
            score: 2.0,
            severity: Severity::Warning,
            evidence: Evidence {
                baseline: 1.0,
                observed: 3.0,
                series: None,
                band: None,
                summary: "x".into(),
            },
        }
    }

    #[test]
    fn callers_symptoms_merge_into_the_anomalous_server() {
        let gateway = EntityId::new(EntityKind::Service, "gateway");
        let api = EntityId::new(EntityKind::Service, "order-api");
        let db = EntityId::new(EntityKind::Database, "mysqld@10.0.0.9:3306");
        let topology = Topology {
            entities: vec![],
            relations: vec![
                Relation {
                    from: gateway.clone(),
                    to: api.clone(),
                    kind: RelationKind::Calls,
                },
                Relation {
                    from: api.clone(),
                    to: db.clone(),
                    kind: RelationKind::Calls,
                },
            ],
        };
        let context = Context::new(&topology, &[]);
        let latency = SignalKind::Request(RequestMetric::LatencyP99);
        let findings = merge(
            vec![
                anomaly(&gateway, latency.clone(), 102),
                anomaly(&db, SignalKind::Statement("SELECT ?".into()), 100),
                anomaly(&db, latency.clone(), 100),
            ],
            &context,
            &GuardConfig::default(),
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].entity, db);
        assert_eq!(findings[0].anomalies.len(), 3);
        // The fingerprint does not depend on times.
        let later = merge(
            vec![anomaly(&db, SignalKind::Statement("SELECT ?".into()), 900)],
            &context,
            &GuardConfig::default(),
        );
        assert_eq!(later[0].fingerprint, findings[0].fingerprint);
    }
}
