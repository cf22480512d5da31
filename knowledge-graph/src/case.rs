//! Offline root-cause cases in the RCAEval layout, and ranking from raw
//! per-entity metric series.
//!
//! A case is `data.csv` (`time,<entity>_<metric>,…`, unix seconds, one row per
//! step), `inject_time.txt` (when the problem was reported, possibly a few
//! steps late) and optionally `graph.json`
//! (`{"nodes":[…],"edges":[{"from":A,"to":B,"relation":"calls"|"causes"}]}`).
//! The caller reads the files; this module parses their text, so errors name a
//! line but the caller names the file.
//!
//! # How [`rank_case`] scores ([`CaseMethod::Vigil`])
//! 1. **Windows.** The baseline is everything before the reported time minus
//!    [`CaseRankConfig::lookback_steps`] (a late report must not hide the
//!    onset); the rest is the test window.
//! 2. **Own deviation.** Each column is fitted on the baseline: with a graph,
//!    a ridge regression on its causal parents' and grandparents' columns and
//!    its own previous value, so what a column inherits from upstream is
//!    explained away and only its own innovation remains; without a graph, its
//!    own median. The residual is turned into a robust z-score (median/MAD of
//!    the baseline residuals).
//! 3. **Onset.** The incident starts at the first test step whose total clear
//!    excess (z beyond [`CaseRankConfig::threshold`]) reaches half the peak; a
//!    column's strength is its largest |z| in the few steps from there, so
//!    noise later in the window does not compete with the fault's first steps.
//! 4. **Propagation.** With a graph, a personalised PageRank walks from every
//!    anomalous entity towards its causes, weighted by how anomalous each cause
//!    is; the walk's mass lifts candidates that explain many symptoms.
//! 5. An entity's score is its strongest column, lifted by the walk; ties break
//!    by name.
//!
//! [`CaseMethod::RobustZ`] and [`CaseMethod::NSigma`] are the baselines BARO's
//! package ships (max z of the test window against an IQR or σ scaler, no
//! graph), kept for comparison in the same run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stats::{ridge_fit, Baseline};
use crate::walk::personalised_pagerank;

/// Why a case file could not be read. Lines are 1-based, the header being line 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaseError {
    /// `data.csv` is malformed at a line.
    #[error("line {line}: {message}")]
    Data {
        /// The line (1-based; 1 is the header).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// `inject_time.txt` does not hold one integer of unix seconds.
    #[error("line {line}: expected unix seconds, found {found:?}")]
    InjectTime {
        /// The line (1-based).
        line: u64,
        /// The text found.
        found: String,
    },
    /// `graph.json` is not valid or names a relation that does not exist.
    #[error("line {line}, column {column}: {message}")]
    Graph {
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The case cannot be ranked (no rows, no baseline before the reported time…).
    #[error("{0}")]
    Unusable(String),
}

/// One metric column of one entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricColumn {
    /// The entity (the header up to its first `_`).
    pub entity: String,
    /// The metric (the rest of the header; may be empty).
    pub metric: String,
    /// One value per row; `NaN` where the cell was empty or not a number.
    pub values: Vec<f64>,
}

/// A case's series and when its problem was reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricCase {
    /// Unix seconds of each row, ascending.
    pub times: Vec<i64>,
    /// The metric columns, in file order.
    pub columns: Vec<MetricColumn>,
    /// When the problem was reported, unix seconds.
    pub inject_time: i64,
}

/// What an edge of `graph.json` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseRelation {
    /// `from` calls `to`: a fault in `to` shows up in `from`.
    Calls,
    /// `from` causes `to`.
    Causes,
}

/// One edge of `graph.json`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseEdge {
    /// Source entity.
    pub from: String,
    /// Target entity.
    pub to: String,
    /// What the edge means.
    pub relation: CaseRelation,
}

/// `graph.json`: the entities and how they relate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseGraph {
    /// Entities (may list some with no edges).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Edges.
    #[serde(default)]
    pub edges: Vec<CaseEdge>,
}

impl CaseGraph {
    /// `(cause, effect)` pairs: `calls` edges reversed, `causes` edges as given.
    pub fn causal_pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .edges
            .iter()
            .filter(|edge| edge.from != edge.to)
            .map(|edge| match edge.relation {
                CaseRelation::Calls => (edge.to.as_str(), edge.from.as_str()),
                CaseRelation::Causes => (edge.from.as_str(), edge.to.as_str()),
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }
}

/// Parses `data.csv` text: a `time` column then `<entity>_<metric>` columns.
/// Empty cells and `nan` read as gaps; anything else unparsable is an error
/// naming its line.
pub fn parse_data_csv(text: &str) -> Result<(Vec<i64>, Vec<MetricColumn>), CaseError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |err: csv::Error| CaseError::Data {
        line: err.position().map_or(0, csv::Position::line),
        message: err.to_string(),
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let time_column = headers
        .iter()
        .position(|h| h == "time" || h == "timestamp")
        .ok_or_else(|| CaseError::Data {
            line: 1,
            message: "the header has no `time` column".to_owned(),
        })?;
    let mut columns: Vec<MetricColumn> = Vec::new();
    let mut column_of_field = Vec::new();
    for (position, header) in headers.iter().enumerate() {
        if position == time_column {
            column_of_field.push(None);
            continue;
        }
        if header.is_empty() {
            return Err(CaseError::Data {
                line: 1,
                message: format!("column {} has an empty name", position + 1),
            });
        }
        let (entity, metric) = header.split_once('_').unwrap_or((header, ""));
        column_of_field.push(Some(columns.len()));
        columns.push(MetricColumn {
            entity: entity.to_owned(),
            metric: metric.to_owned(),
            values: Vec::new(),
        });
    }
    let mut times = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        let time_text = record.get(time_column).unwrap_or_default();
        let time = parse_time(time_text).ok_or_else(|| CaseError::Data {
            line,
            message: format!("time {time_text:?} is not unix seconds"),
        })?;
        if times.last().is_some_and(|&last| time <= last) {
            return Err(CaseError::Data {
                line,
                message: format!("time {time} is not after the previous row's"),
            });
        }
        times.push(time);
        for (field, cell) in record.iter().enumerate() {
            let Some(Some(column)) = column_of_field.get(field) else {
                continue;
            };
            let value = parse_cell(cell).ok_or_else(|| CaseError::Data {
                line,
                message: format!("{:?} in column {:?} is not a number", cell, &headers[field]),
            })?;
            columns[*column].values.push(value);
        }
    }
    if times.is_empty() {
        return Err(CaseError::Data {
            line: 1,
            message: "no data rows after the header".to_owned(),
        });
    }
    Ok((times, columns))
}

fn parse_time(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        // Some exports write times as floats (`1700000000.0`).
        let float = text.parse::<f64>().ok()?;
        (float.is_finite() && float.abs() < 9.0e15).then(|| float.floor() as i64)
    })
}

fn parse_cell(cell: &str) -> Option<f64> {
    if cell.is_empty() || cell.eq_ignore_ascii_case("nan") || cell.eq_ignore_ascii_case("null") {
        return Some(f64::NAN);
    }
    cell.parse::<f64>()
        .ok()
        .map(|v| if v.is_finite() { v } else { f64::NAN })
}

/// Parses `inject_time.txt`: one integer (or float) of unix seconds.
pub fn parse_inject_time(text: &str) -> Result<i64, CaseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((index, line)) = lines.next() else {
        return Err(CaseError::InjectTime {
            line: 1,
            found: String::new(),
        });
    };
    let value = parse_time(line.trim()).ok_or_else(|| CaseError::InjectTime {
        line: index as u64 + 1,
        found: line.trim().to_owned(),
    })?;
    if let Some((index, extra)) = lines.next() {
        return Err(CaseError::InjectTime {
            line: index as u64 + 1,
            found: extra.trim().to_owned(),
        });
    }
    Ok(value)
}

/// Parses `graph.json`.
pub fn parse_graph_json(text: &str) -> Result<CaseGraph, CaseError> {
    serde_json::from_str(text).map_err(|err| CaseError::Graph {
        line: err.line(),
        column: err.column(),
        message: err.to_string(),
    })
}

impl MetricCase {
    /// A case from parsed `data.csv` and `inject_time.txt`.
    pub fn new(times: Vec<i64>, columns: Vec<MetricColumn>, inject_time: i64) -> Self {
        Self {
            times,
            columns,
            inject_time,
        }
    }

    /// Entities with at least one column, sorted.
    pub fn entities(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.columns.iter().map(|c| c.entity.as_str()).collect();
        set.into_iter().collect()
    }
}

/// How to score a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseMethod {
    /// Vigil's ranking: own deviation after explaining away the graph's
    /// parents, onset alignment, and a personalised PageRank.
    Vigil,
    /// BARO's robust scorer with the reported time: max over the test window
    /// of the z-score against the baseline's median and IQR.
    RobustZ,
    /// The N-sigma rule: the same with mean and standard deviation.
    NSigma,
}

/// Settings of [`rank_case`]. Defaults are what the benchmark reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaseRankConfig {
    /// Scoring method.
    pub method: CaseMethod,
    /// Steps before the reported time that still belong to the test window,
    /// because reports come late.
    pub lookback_steps: usize,
    /// Most recent baseline rows used to fit regressions and scales (older
    /// rows add little and cost time).
    pub max_baseline_rows: usize,
    /// Steps from the onset over which a column's strength is taken.
    pub focus_steps: usize,
    /// |z| below this is noise when locating the onset.
    pub threshold: f64,
    /// Most regressors per column (parents first, then grandparents).
    pub max_regressors: usize,
    /// Ridge penalty, relative to each regressor's variance.
    pub ridge: f64,
    /// Weight of the PageRank lift (0 disables the walk).
    pub walk_weight: f64,
    /// Factor on the score of an anomalous entity with an anomalous ancestor
    /// in the graph whose onset is no later: its anomaly is probably inherited
    /// along an edge the regression could not model (a relation invisible in
    /// normal times, such as a host's retransmits and its services' latency).
    /// 1 disables it.
    pub inherited_discount: f64,
    /// Candidates returned (0 = all).
    pub limit: usize,
}

impl Default for CaseRankConfig {
    fn default() -> Self {
        Self {
            method: CaseMethod::Vigil,
            lookback_steps: 5,
            max_baseline_rows: 720,
            focus_steps: 3,
            threshold: 3.0,
            max_regressors: 8,
            ridge: 1e-3,
            walk_weight: 0.2,
            inherited_discount: 0.5,
            limit: 0,
        }
    }
}

/// One ranked entity of a case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedEntity {
    /// The entity.
    pub entity: String,
    /// Ranking score (higher first).
    pub score: f64,
    /// Share of the top five's scores, in `[0, 1]`.
    pub confidence: f64,
    /// The column that convinced most.
    pub metric: String,
    /// Its strongest |z| of its own deviation (after explaining parents away).
    pub own_z: f64,
    /// Its strongest |z| against its own baseline, before explaining anything.
    pub raw_z: f64,
    /// Personalised PageRank mass (0 without a graph).
    pub walk: f64,
    /// First test step where the column crossed the threshold, unix seconds.
    pub started_at: Option<i64>,
    /// From the entity to the most anomalous entity it can reach (the symptom),
    /// along the graph; just the entity without a graph.
    pub path: Vec<String>,
}

/// Columns' z-scores over the test window, per method.
struct Scored {
    /// Per column: z over the test rows.
    own: Vec<Vec<f64>>,
    raw: Vec<Vec<f64>>,
}

/// Ranks a case's entities as root-cause candidates, best first.
pub fn rank_case(
    case: &MetricCase,
    graph: Option<&CaseGraph>,
    config: &CaseRankConfig,
) -> Result<Vec<RankedEntity>, CaseError> {
    let rows = case.times.len();
    if let Some(column) = case.columns.iter().find(|c| c.values.len() != rows) {
        return Err(CaseError::Unusable(format!(
            "column {}_{} has {} values for {rows} rows",
            column.entity,
            column.metric,
            column.values.len()
        )));
    }
    let reported = case.times.partition_point(|&t| t < case.inject_time);
    let lookback = match config.method {
        CaseMethod::Vigil => config.lookback_steps,
        // The baselines take the reported time as it is, like their package.
        CaseMethod::RobustZ | CaseMethod::NSigma => 0,
    };
    let test_start = reported.saturating_sub(lookback);
    if test_start < 3 {
        return Err(CaseError::Unusable(format!(
            "only {test_start} rows before the reported time {}: need a baseline",
            case.inject_time
        )));
    }
    if test_start >= rows {
        return Err(CaseError::Unusable(format!(
            "no rows at or after the reported time {}",
            case.inject_time
        )));
    }
    let fit_start = test_start.saturating_sub(config.max_baseline_rows.max(8));
    let entities = case.entities();
    let entity_index: BTreeMap<&str, usize> =
        entities.iter().enumerate().map(|(i, e)| (*e, i)).collect();
    let mut columns_of: Vec<Vec<usize>> = vec![Vec::new(); entities.len()];
    for (c, column) in case.columns.iter().enumerate() {
        if let Some(&e) = entity_index.get(column.entity.as_str()) {
            columns_of[e].push(c);
        }
    }
    // Causal parents per entity, from the graph, restricted to entities with data.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); entities.len()];
    if let Some(graph) = graph {
        for (cause, effect) in graph.causal_pairs() {
            if let (Some(&c), Some(&e)) = (entity_index.get(cause), entity_index.get(effect)) {
                parents[e].push(c);
            }
        }
        for list in &mut parents {
            list.sort_unstable();
            list.dedup();
        }
    }

    let scored = match config.method {
        CaseMethod::Vigil => score_vigil(
            case,
            &columns_of,
            &parents,
            graph.is_some(),
            fit_start,
            test_start,
            config,
        ),
        CaseMethod::RobustZ | CaseMethod::NSigma => {
            let raw: Vec<Vec<f64>> = case
                .columns
                .iter()
                .map(|column| {
                    let baseline = if config.method == CaseMethod::RobustZ {
                        Baseline::interquartile(&column.values[..test_start])
                    } else {
                        Baseline::gaussian(&column.values[..test_start])
                    };
                    column.values[test_start..]
                        .iter()
                        .map(|&v| baseline.map_or(0.0, |b| b.z(v)))
                        .collect()
                })
                .collect();
            Scored {
                own: raw.clone(),
                raw,
            }
        }
    };

    // Column strength: for the baselines, max z (signed, as their package does);
    // for Vigil, max |z| over the focus steps from the onset.
    let test_rows = rows - test_start;
    let (focus_start, focus_end) = match config.method {
        CaseMethod::Vigil => {
            let onset = locate_onset(&scored.own, test_rows, config.threshold);
            (onset, (onset + config.focus_steps.max(1)).min(test_rows))
        }
        _ => (0, test_rows),
    };
    let strength = |z: &[f64]| -> f64 {
        let window = &z[focus_start..focus_end];
        match config.method {
            CaseMethod::Vigil => window.iter().fold(0.0, |m, v| m.max(v.abs())),
            _ => window.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    };

    struct EntityScore {
        own: f64,
        raw: f64,
        best_column: Option<usize>,
    }
    let per_entity: Vec<EntityScore> = columns_of
        .iter()
        .map(|columns| {
            let mut best = EntityScore {
                own: f64::NEG_INFINITY,
                raw: 0.0,
                best_column: None,
            };
            for &c in columns {
                let own = strength(&scored.own[c]);
                let raw = strength(&scored.raw[c]);
                best.raw = best.raw.max(raw);
                if own > best.own {
                    best.own = own;
                    best.best_column = Some(c);
                }
            }
            if best.own == f64::NEG_INFINITY {
                best.own = 0.0;
            }
            best
        })
        .collect();

    // Personalised PageRank from anomalous entities towards their causes.
    let use_walk =
        config.method == CaseMethod::Vigil && graph.is_some() && config.walk_weight > 0.0;
    let walk: Vec<f64> = if use_walk {
        let anomaly: Vec<f64> = per_entity
            .iter()
            .map(|s| (s.own - config.threshold).max(0.0))
            .collect();
        let out_edges: Vec<Vec<(usize, f64)>> = parents
            .iter()
            .map(|ps| ps.iter().map(|&p| (p, anomaly[p] + 1e-3)).collect())
            .collect();
        let rank = personalised_pagerank(&out_edges, &anomaly, 0.85, 50);
        let top = rank.iter().copied().fold(0.0, f64::max);
        rank.iter()
            .map(|r| if top > 0.0 { r / top } else { 0.0 })
            .collect()
    } else {
        vec![0.0; entities.len()]
    };

    // Onset of each anomalous entity (first test step its best column is
    // beyond the threshold), for the inherited-anomaly discount.
    let onset_of: Vec<Option<usize>> = per_entity
        .iter()
        .map(|s| {
            if s.own < config.threshold {
                return None;
            }
            s.best_column.and_then(|c| {
                scored.own[c]
                    .iter()
                    .position(|z| z.abs() >= config.threshold)
            })
        })
        .collect();
    let inherited: Vec<bool> = if use_walk && config.inherited_discount < 1.0 {
        onset_of
            .iter()
            .enumerate()
            .map(|(e, onset)| {
                onset.is_some_and(|onset| {
                    reachable(&parents, e)
                        .into_iter()
                        .any(|a| a != e && onset_of[a].is_some_and(|o| o <= onset))
                })
            })
            .collect()
    } else {
        vec![false; entities.len()]
    };
    let mut ranked: Vec<(usize, f64)> = per_entity
        .iter()
        .enumerate()
        .map(|(e, s)| {
            let mut score = if use_walk {
                s.own * (1.0 + config.walk_weight * walk[e])
            } else {
                s.own
            };
            if inherited[e] {
                score *= config.inherited_discount;
            }
            (e, if score.is_finite() { score } else { 0.0 })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| entities[a.0].cmp(entities[b.0]))
    });

    // The symptom: the entity whose raw deviation is largest.
    let symptom = per_entity
        .iter()
        .enumerate()
        .max_by(|a, b| {
            a.1.raw
                .total_cmp(&b.1.raw)
                .then_with(|| entities[b.0].cmp(entities[a.0]))
        })
        .map(|(e, _)| e);
    // One breadth-first search back from the symptom gives every entity its
    // next hop on a shortest path to it.
    let towards_symptom = symptom.map(|symptom| next_hops_to(&parents, symptom));
    let top_total: f64 = ranked.iter().take(5).map(|(_, s)| s.max(0.0)).sum();
    let limit = if config.limit == 0 {
        ranked.len()
    } else {
        config.limit
    };
    Ok(ranked
        .into_iter()
        .take(limit)
        .map(|(e, score)| {
            let s = &per_entity[e];
            let started_at = s.best_column.and_then(|c| {
                scored.own[c]
                    .iter()
                    .position(|z| z.abs() >= config.threshold)
                    .map(|i| case.times[test_start + i])
            });
            let path: Vec<String> = match &towards_symptom {
                Some(next) if graph.is_some() => {
                    let mut path = vec![e];
                    let mut cursor = e;
                    while let Some(hop) = next[cursor] {
                        path.push(hop);
                        cursor = hop;
                    }
                    path.into_iter().map(|i| entities[i].to_owned()).collect()
                }
                _ => vec![entities[e].to_owned()],
            };
            RankedEntity {
                entity: entities[e].to_owned(),
                score,
                confidence: if top_total > 0.0 {
                    (score.max(0.0) / top_total).min(1.0)
                } else {
                    0.0
                },
                metric: s
                    .best_column
                    .map(|c| case.columns[c].metric.clone())
                    .unwrap_or_default(),
                own_z: s.own,
                raw_z: s.raw,
                walk: walk[e],
                started_at,
                path,
            }
        })
        .collect())
}

/// For every entity that can reach `target` along cause → effect edges, the
/// next entity on a shortest path to it (`None` for `target` and for entities
/// that cannot reach it). Parents are visited in index (= name) order, so paths
/// are deterministic.
fn next_hops_to(parents: &[Vec<usize>], target: usize) -> Vec<Option<usize>> {
    let mut next = vec![None; parents.len()];
    let mut seen = vec![false; parents.len()];
    let mut queue = std::collections::VecDeque::from([target]);
    seen[target] = true;
    while let Some(node) = queue.pop_front() {
        for &cause in &parents[node] {
            if !seen[cause] {
                seen[cause] = true;
                next[cause] = Some(node);
                queue.push_back(cause);
            }
        }
    }
    next
}

/// The first test step whose total excess over the threshold reaches half the
/// peak total; 0 when nothing stands out.
fn locate_onset(z: &[Vec<f64>], test_rows: usize, threshold: f64) -> usize {
    let energy: Vec<f64> = (0..test_rows)
        .map(|t| {
            z.iter()
                .map(|column| {
                    let excess = (column[t].abs() - threshold).max(0.0);
                    excess * excess
                })
                .sum()
        })
        .collect();
    let peak = energy.iter().copied().fold(0.0, f64::max);
    if peak <= 0.0 {
        return 0;
    }
    energy.iter().position(|&e| e >= 0.5 * peak).unwrap_or(0)
}

/// Vigil's per-column z-scores: residuals of a regression on causal parents
/// (and grandparents) and the column's own previous value, against the
/// baseline residuals' median and MAD.
fn score_vigil(
    case: &MetricCase,
    columns_of: &[Vec<usize>],
    parents: &[Vec<usize>],
    with_graph: bool,
    fit_start: usize,
    test_start: usize,
    config: &CaseRankConfig,
) -> Scored {
    let rows = case.times.len();
    let mut own = Vec::with_capacity(case.columns.len());
    let mut raw = Vec::with_capacity(case.columns.len());
    let mut column_entity = vec![0usize; case.columns.len()];
    for (e, columns) in columns_of.iter().enumerate() {
        for &c in columns {
            column_entity[c] = e;
        }
    }
    // Each column is fitted on its own, so columns are scored in parallel
    // chunks; the result does not depend on how they are split.
    let score_column = |c: usize| -> (Vec<f64>, Vec<f64>, Vec<usize>) {
        let column = &case.columns[c];
        let values = &column.values;
        let raw_baseline = Baseline::robust(&values[fit_start..test_start]);
        let raw_z: Vec<f64> = values[test_start..]
            .iter()
            .map(|&v| raw_baseline.map_or(0.0, |b| b.z(v)))
            .collect();
        if !with_graph {
            return (raw_z.clone(), raw_z, Vec::new());
        }
        // Regressors: own lag, then parents' columns (same metric first), then
        // grandparents', up to the cap.
        let mut lagged = vec![f64::NAN; rows];
        lagged[1..].copy_from_slice(&values[..rows - 1]);
        let e = column_entity[c];
        let mut candidates: Vec<usize> = Vec::new();
        let push_entity_columns = |entity: usize, candidates: &mut Vec<usize>| {
            let cols = &columns_of[entity];
            let same: Vec<usize> = cols
                .iter()
                .copied()
                .filter(|&p| case.columns[p].metric == column.metric)
                .collect();
            candidates.extend(same.iter().copied());
            candidates.extend(cols.iter().copied().filter(|p| !same.contains(p)));
        };
        for &p in &parents[e] {
            push_entity_columns(p, &mut candidates);
        }
        let mut grandparents: Vec<usize> = parents[e]
            .iter()
            .flat_map(|&p| parents[p].iter().copied())
            .filter(|g| *g != e && !parents[e].contains(g))
            .collect();
        grandparents.sort_unstable();
        grandparents.dedup();
        for g in grandparents {
            push_entity_columns(g, &mut candidates);
        }
        candidates.retain(|&p| p != c);
        candidates.dedup();
        candidates.truncate(config.max_regressors);
        let mut regressors: Vec<&[f64]> = vec![&lagged];
        regressors.extend(
            candidates
                .iter()
                .map(|&p| case.columns[p].values.as_slice()),
        );
        let own_z = residual_z(
            values,
            &regressors,
            fit_start,
            test_start,
            config.ridge,
            residual_floor(raw_baseline),
        )
        .unwrap_or_else(|| raw_z.clone());
        (own_z, raw_z, candidates)
    };
    let columns = case.columns.len();
    let threads = if columns >= 512 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        1
    };
    let results: Vec<(Vec<f64>, Vec<f64>, Vec<usize>)> = if threads > 1 {
        let chunk = columns.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..columns)
                .step_by(chunk)
                .map(|from| {
                    let score_column = &score_column;
                    scope.spawn(move || {
                        (from..(from + chunk).min(columns))
                            .map(score_column)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| match handle.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    } else {
        (0..columns).map(score_column).collect()
    };
    let mut regressors_of: Vec<Vec<usize>> = Vec::with_capacity(columns);
    for (own_z, raw_z, candidates) in results {
        own.push(own_z);
        raw.push(raw_z);
        regressors_of.push(candidates);
    }
    if with_graph {
        explain_away(
            case,
            columns_of,
            parents,
            &regressors_of,
            &mut own,
            fit_start,
            test_start,
            config,
        );
    }
    Scored { own, raw }
}

/// Robust z-scores of the test rows' residuals after fitting `values` on
/// `regressors` over the baseline rows.
///
/// The residuals' scale is floored at `scale_floor` (see [`residual_floor`]):
/// when the baseline is explained (almost) exactly, as with noise-free
/// collinear series, the residuals are rounding error and would otherwise turn
/// any change into an enormous z-score.
fn residual_z(
    values: &[f64],
    regressors: &[&[f64]],
    fit_start: usize,
    test_start: usize,
    ridge: f64,
    scale_floor: f64,
) -> Option<Vec<f64>> {
    let first = fit_start.max(1);
    let fit_rows = first..test_start;
    let (intercept, coefficients) = ridge_fit(values, regressors, fit_rows.clone(), ridge)?;
    // Residuals of every row from the first fitted one, a column at a time so
    // the loops vectorise; a gap anywhere makes that row's residual `NaN`.
    let mut residuals: Vec<f64> = values[first..].iter().map(|v| v - intercept).collect();
    for (coefficient, regressor) in coefficients.iter().zip(regressors) {
        for (residual, x) in residuals.iter_mut().zip(&regressor[first..]) {
            *residual -= coefficient * x;
        }
    }
    let (baseline_residuals, test_residuals) = residuals.split_at(fit_rows.len());
    let mut baseline = Baseline::robust(baseline_residuals)?;
    baseline.scale = baseline.scale.max(scale_floor);
    Some(test_residuals.iter().map(|&r| baseline.z(r)).collect())
}

/// Smallest residual scale a column's own deviation is measured against: a
/// fraction of the column's own spread on the baseline (its MAD, or its
/// standard deviation, or 1 when flat: [`Baseline::robust`]), plus rounding
/// error at the column's level, and never below a tiny absolute value. Being
/// relative to the column's spread keeps z-scores unchanged when a column is
/// an exact affine function of another, so an explained-away symptom cannot
/// outscore its cause merely because its residuals are rounding error.
fn residual_floor(raw: Option<Baseline>) -> f64 {
    const OF_SPREAD: f64 = 1e-2;
    const OF_LEVEL: f64 = 1e-9;
    const ABSOLUTE: f64 = 1e-12;
    raw.map_or(ABSOLUTE, |b| {
        (OF_SPREAD * b.scale + OF_LEVEL * b.center.abs()).max(ABSOLUTE)
    })
}

/// Second pass for graphs with missing edges: an anomalous entity whose
/// deviation is explained by another anomalous entity it has no graph path to
/// or from was most likely fed by it through an edge the graph lacks. Each of
/// the strongest anomalous entities is refitted with the others' columns
/// (unrelated ones only, so a true cause is never regressed on its own
/// effects) and keeps the smaller deviation.
#[allow(clippy::too_many_arguments)] // reason: one private step of score_vigil, sharing its state
fn explain_away(
    case: &MetricCase,
    columns_of: &[Vec<usize>],
    parents: &[Vec<usize>],
    regressors_of: &[Vec<usize>],
    own: &mut [Vec<f64>],
    fit_start: usize,
    test_start: usize,
    config: &CaseRankConfig,
) {
    const SUSPECTS: usize = 12;
    let rows = case.times.len();
    let test_rows = rows - test_start;
    let onset = locate_onset(own, test_rows, config.threshold);
    let focus = onset..(onset + config.focus_steps.max(1)).min(test_rows);
    let column_strength = |z: &[f64]| z[focus.clone()].iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let mut suspects: Vec<(usize, f64, usize)> = columns_of
        .iter()
        .enumerate()
        .filter_map(|(e, columns)| {
            columns
                .iter()
                .map(|&c| (c, column_strength(&own[c])))
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(c, strength)| (e, strength, c))
        })
        .filter(|(_, strength, _)| *strength >= config.threshold)
        .collect();
    suspects.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    suspects.truncate(SUSPECTS);
    if suspects.len() < 2 {
        return;
    }
    let ancestors: Vec<BTreeSet<usize>> = suspects
        .iter()
        .map(|&(e, _, _)| reachable(parents, e))
        .collect();
    let mut lagged = vec![f64::NAN; rows];
    for (i, &(e, _, _)) in suspects.iter().enumerate() {
        let others: Vec<usize> = suspects
            .iter()
            .enumerate()
            .filter(|&(j, &(u, _, _))| {
                j != i && !ancestors[i].contains(&u) && !ancestors[j].contains(&e)
            })
            .map(|(_, &(_, _, column))| column)
            .collect();
        if others.is_empty() {
            continue;
        }
        for &c in &columns_of[e] {
            let values = &case.columns[c].values;
            lagged[1..].copy_from_slice(&values[..rows - 1]);
            let mut regressors: Vec<&[f64]> = vec![&lagged];
            regressors.extend(
                regressors_of[c]
                    .iter()
                    .map(|&p| case.columns[p].values.as_slice()),
            );
            regressors.extend(others.iter().map(|&p| case.columns[p].values.as_slice()));
            let floor = residual_floor(Baseline::robust(&values[fit_start..test_start]));
            if let Some(z) = residual_z(
                values,
                &regressors,
                fit_start,
                test_start,
                config.ridge,
                floor,
            ) {
                if column_strength(&z) < column_strength(&own[c]) {
                    own[c] = z;
                }
            }
        }
    }
}

/// Every entity `start` can be reached from along `parents` (its ancestors).
fn reachable(parents: &[Vec<usize>], start: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for &p in &parents[node] {
            if seen.insert(p) {
                stack.push(p);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain c → b → a (c causes b causes a) plus an unrelated d; the fault
    /// is planted at c from row 200, and every downstream entity moves more
    /// than c does, so only explaining parents away finds c.
    fn chain_case() -> (MetricCase, CaseGraph) {
        let rows = 220;
        let mut state = 12345u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let mut c = Vec::new();
        let mut b = Vec::new();
        let mut a = Vec::new();
        let mut d = Vec::new();
        for row in 0..rows {
            let fault = if row >= 200 { 2.0 } else { 0.0 };
            let cv = noise() + fault;
            let bv = 3.0 * cv + noise();
            let av = 2.0 * bv + noise();
            c.push(cv);
            b.push(bv);
            a.push(av);
            d.push(noise());
        }
        let column = |entity: &str, values: Vec<f64>| MetricColumn {
            entity: entity.to_owned(),
            metric: "latency".to_owned(),
            values,
        };
        let times = (0..rows as i64).map(|i| 1000 + 60 * i).collect();
        let case = MetricCase::new(
            times,
            vec![
                column("a", a),
                column("b", b),
                column("c", c),
                column("d", d),
            ],
            1000 + 60 * 200,
        );
        let graph = parse_graph_json(
            r#"{"nodes":["a","b","c","d"],"edges":[
                {"from":"a","to":"b","relation":"calls"},
                {"from":"c","to":"b","relation":"causes"}]}"#,
        )
        .expect("valid graph");
        (case, graph)
    }

    #[test]
    fn the_planted_cause_ranks_first_with_its_path() {
        let (case, graph) = chain_case();
        let ranked = rank_case(&case, Some(&graph), &CaseRankConfig::default()).expect("rankable");
        assert_eq!(ranked[0].entity, "c", "{ranked:#?}");
        assert_eq!(ranked[0].path, vec!["c", "b", "a"]);
        assert!(ranked[0].raw_z < ranked.iter().find(|r| r.entity == "a").expect("a").raw_z);
        // Without the graph the loudest downstream entity wins: the graph matters.
        let data_only = rank_case(&case, None, &CaseRankConfig::default()).expect("rankable");
        assert_ne!(data_only[0].entity, "d");
    }

    /// front → middle → db (calls), with a noise-free baseline in which db is
    /// a straight line and every other series an exact linear function of it:
    /// the fits explain the baseline almost exactly, and without a floor on
    /// the residual scale the z-scores explode (over 10,000).
    #[test]
    fn noise_free_collinear_baseline_still_finds_the_cause() {
        let rows = 240;
        let inject_row = 220;
        let mut db = Vec::new();
        let mut middle = Vec::new();
        let mut front = Vec::new();
        for row in 0..rows {
            let wave = 0.05 * row as f64;
            let shift = if row >= inject_row { 40.0 } else { 0.0 };
            let d = 20.0 + wave + shift;
            let m = 6.0 + 1.8 * d;
            db.push(d);
            middle.push(m);
            front.push(3.0 + 0.5 * m);
        }
        let column = |entity: &str, values: Vec<f64>| MetricColumn {
            entity: entity.to_owned(),
            metric: "latency".to_owned(),
            values,
        };
        let times = (0..rows as i64).map(|i| 1000 + 60 * i).collect();
        let case = MetricCase::new(
            times,
            vec![
                column("front", front),
                column("middle", middle),
                column("db", db),
            ],
            1000 + 60 * inject_row as i64,
        );
        let graph = parse_graph_json(
            r#"{"nodes":["front","middle","db"],"edges":[
                {"from":"front","to":"middle","relation":"calls"},
                {"from":"middle","to":"db","relation":"calls"}]}"#,
        )
        .expect("valid graph");
        let ranked = rank_case(&case, Some(&graph), &CaseRankConfig::default()).expect("rankable");
        assert_eq!(ranked[0].entity, "db", "{ranked:#?}");
        assert!(
            ranked.iter().all(|r| r.own_z.is_finite() && r.own_z < 1e4),
            "{ranked:#?}"
        );
    }

    #[test]
    fn a_report_three_steps_late_still_finds_the_cause() {
        let (mut case, graph) = chain_case();
        case.inject_time += 3 * 60;
        let ranked = rank_case(&case, Some(&graph), &CaseRankConfig::default()).expect("rankable");
        assert_eq!(ranked[0].entity, "c", "{ranked:#?}");
    }

    #[test]
    fn ranking_is_deterministic() {
        let (case, graph) = chain_case();
        let config = CaseRankConfig::default();
        let first = rank_case(&case, Some(&graph), &config).expect("rankable");
        let second = rank_case(&case, Some(&graph), &config).expect("rankable");
        assert_eq!(first, second);
    }

    #[test]
    fn csv_parses_entities_metrics_and_gaps() {
        let (times, columns) =
            parse_data_csv("time,api_latency_p99,db_cpu\n60,1.5,\n120,2,0.5\n").expect("valid");
        assert_eq!(times, vec![60, 120]);
        assert_eq!(columns[0].entity, "api");
        assert_eq!(columns[0].metric, "latency_p99");
        assert!(columns[1].values[0].is_nan());
    }

    #[test]
    fn bad_csv_line_is_named() {
        let err = parse_data_csv("time,api_latency\n60,1.0\n120,oops\n").expect_err("bad cell");
        assert!(err.to_string().starts_with("line 3:"), "{err}");
        assert!(err.to_string().contains("oops"), "{err}");
        let err = parse_data_csv("time,api_latency\n60,1.0\n120,1.0,9\n").expect_err("ragged");
        assert!(err.to_string().starts_with("line 3:"), "{err}");
        let err = parse_data_csv("time,api_latency\n60,1\n60,2\n").expect_err("time goes back");
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn bad_inject_time_and_graph_are_named() {
        assert_eq!(parse_inject_time("\n1700000000\n"), Ok(1_700_000_000));
        let err = parse_inject_time("soon").expect_err("not a number");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err =
            parse_graph_json("{\"edges\":[\n{\"from\":\"a\",\"to\":\"b\",\"relation\":\"eats\"}]}")
                .expect_err("unknown relation");
        assert!(err.to_string().starts_with("line 2"), "{err}");
    }
}
