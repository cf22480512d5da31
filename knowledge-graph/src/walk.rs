//! Personalised PageRank over a small weighted digraph given as adjacency lists.
//!
//! Shared by the graph ranking and the offline case ranking so both walk the
//! same way. Indices are dense `usize`s assigned in a sorted order by the
//! caller, which keeps the result deterministic.

/// Personalised PageRank: a walker at node `i` follows an out-edge `(j, w)`
/// with probability proportional to `w`, or jumps back to the personalisation
/// distribution with probability `1 - damping` (and always from a node without
/// out-edges). Returns the stationary mass per node, summing to 1.
pub(crate) fn personalised_pagerank(
    out_edges: &[Vec<(usize, f64)>],
    personalisation: &[f64],
    damping: f64,
    iterations: usize,
) -> Vec<f64> {
    let n = out_edges.len();
    let total: f64 = personalisation.iter().filter(|p| **p > 0.0).sum();
    let teleport: Vec<f64> = if total > 0.0 {
        personalisation
            .iter()
            .map(|p| if *p > 0.0 { p / total } else { 0.0 })
            .collect()
    } else {
        vec![1.0 / n.max(1) as f64; n]
    };
    let out_weight: Vec<f64> = out_edges
        .iter()
        .map(|edges| edges.iter().map(|(_, w)| w.max(0.0)).sum())
        .collect();
    let mut rank = teleport.clone();
    let mut next = vec![0.0; n];
    for _ in 0..iterations {
        let mut dangling = 0.0;
        next.iter_mut().for_each(|v| *v = 0.0);
        for (i, edges) in out_edges.iter().enumerate() {
            if out_weight[i] <= 0.0 {
                dangling += rank[i];
                continue;
            }
            let share = damping * rank[i] / out_weight[i];
            for &(j, w) in edges {
                next[j] += share * w.max(0.0);
            }
            dangling += (1.0 - damping) * rank[i];
        }
        let mut delta = 0.0;
        for j in 0..n {
            let value = next[j] + dangling * teleport[j];
            delta += (value - rank[j]).abs();
            rank[j] = value;
        }
        if delta < 1e-10 {
            break;
        }
    }
    rank
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_gathers_where_walks_from_several_symptoms_meet() {
        // 0 → 2 and 1 → 2, personalised on 0 and 1: their common cause collects
        // d / (1 + d) of the mass, more than either symptom.
        let edges = vec![vec![(2, 1.0)], vec![(2, 1.0)], vec![]];
        let rank = personalised_pagerank(&edges, &[1.0, 1.0, 0.0], 0.85, 200);
        assert!((rank.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((rank[2] - 0.85 / 1.85).abs() < 1e-6, "{rank:?}");
        assert!(rank[2] > rank[0] && rank[0] == rank[1], "{rank:?}");
    }
}
