//! Scoring patrol findings against planted faults (simulator or chaos ground
//! truth): was each fault found with its true root cause among the top
//! candidates, and which findings no fault explains.

use std::collections::BTreeMap;

use vigil_model::{EntityId, Finding, PlantedFault, Severity, Timestamp, Topology};

/// How one evaluation fares against the ground truth.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TruthScore {
    /// Per planted fault (in order): the best rank (1-based) of its true root
    /// cause among the candidates of a finding overlapping it, if any.
    pub root_rank: Vec<Option<usize>>,
    /// Findings overlapping no planted fault, or overlapping one but neither
    /// about its root nor naming it among their top candidates.
    pub unexplained: Vec<String>,
}

impl TruthScore {
    /// Faults whose root cause is within the top `k` candidates of some finding.
    pub fn found_within(&self, k: usize) -> usize {
        self.root_rank
            .iter()
            .filter(|rank| rank.is_some_and(|r| r <= k))
            .count()
    }
}

/// Start (first warning-or-worse anomaly) and end of a finding.
fn span(finding: &Finding) -> (Timestamp, Timestamp) {
    let start = finding
        .anomalies
        .iter()
        .filter(|a| a.severity > Severity::Info)
        .map(|a| a.window.start)
        .min()
        .or_else(|| finding.anomalies.iter().map(|a| a.window.start).min())
        .unwrap_or(Timestamp(0));
    let end = finding
        .anomalies
        .iter()
        .map(|a| a.window.end)
        .max()
        .unwrap_or(start);
    (start, end)
}

/// Whether a finding is close enough in time to a fault to be about it:
/// onset within the fault (or up to 30 min after, for slow burns like leaks),
/// not ending more than 10 min before it started.
fn overlaps(fault: &PlantedFault, (start, end): (Timestamp, Timestamp)) -> bool {
    start.secs() < fault.window.end.secs() + 30 * 60
        && end.secs() > fault.window.start.secs() - 10 * 60
}

/// Scores `findings` against `faults`; entities are resolved to their owning
/// services through `topology`, so a container's candidate counts for its service.
pub fn score(findings: &[Finding], faults: &[PlantedFault], topology: &Topology) -> TruthScore {
    let owners: BTreeMap<String, String> = vigil_knowledge_graph::owning_services(topology);
    let resolve = |id: &EntityId| {
        owners
            .get(id.as_str())
            .cloned()
            .unwrap_or_else(|| id.to_string())
    };
    let mut score = TruthScore {
        root_rank: vec![None; faults.len()],
        unexplained: Vec::new(),
    };
    for finding in findings {
        let when = span(finding);
        let mut ranking: Vec<String> = Vec::new();
        for candidate in &finding.candidates {
            let service = resolve(&candidate.entity);
            if !ranking.contains(&service) {
                ranking.push(service);
            }
        }
        let subject = resolve(&finding.entity);
        let mut explained = false;
        for (index, fault) in faults.iter().enumerate() {
            if !overlaps(fault, when) {
                continue;
            }
            let root = fault.root_cause.to_string();
            let rank = ranking.iter().position(|e| *e == root).map(|p| p + 1);
            if let Some(rank) = rank {
                let best = score.root_rank[index].map_or(rank, |r: usize| r.min(rank));
                score.root_rank[index] = Some(best);
            }
            if subject == root || rank.is_some_and(|r| r <= 5) {
                explained = true;
            }
        }
        if !explained {
            score
                .unexplained
                .push(format!("{}: {}", finding.entity, finding.title));
        }
    }
    score
}
