//! `vigil rca --case DIR [--json]`: root-cause ranking of an offline case in the
//! RCAEval layout (`data.csv`, `inject_time.txt`, optional `graph.json`).
//!
//! The files are read here; parsing and ranking live in
//! `vigil-knowledge-graph`, whose errors carry the line, to which this adds the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use vigil_knowledge_graph::case::{parse_data_csv, parse_graph_json, parse_inject_time};
use vigil_knowledge_graph::{rank_case, CaseGraph, CaseRankConfig, MetricCase, RankedEntity};

/// `vigil rca` arguments.
#[derive(Debug, Args)]
pub struct RcaArgs {
    /// Case directory holding `data.csv`, `inject_time.txt` and optionally `graph.json`.
    #[arg(long)]
    pub case: PathBuf,
    /// Print `{"candidates":[…]}` as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Candidates to print (0 = all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Ignore `graph.json` even when present (rank from data alone).
    #[arg(long)]
    pub no_graph: bool,
}

/// A case read from disk.
pub struct LoadedCase {
    /// Series and reported time.
    pub case: MetricCase,
    /// The graph, when `graph.json` exists.
    pub graph: Option<CaseGraph>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads and parses a case directory; errors name the file and line.
pub fn load_case(dir: &Path) -> anyhow::Result<LoadedCase> {
    let data_path = dir.join("data.csv");
    let (times, columns) =
        parse_data_csv(&read(&data_path)?).with_context(|| format!("{}", data_path.display()))?;
    let inject_path = dir.join("inject_time.txt");
    let inject_time = parse_inject_time(&read(&inject_path)?)
        .with_context(|| format!("{}", inject_path.display()))?;
    let graph_path = dir.join("graph.json");
    let graph = if graph_path.exists() {
        Some(
            parse_graph_json(&read(&graph_path)?)
                .with_context(|| format!("{}", graph_path.display()))?,
        )
    } else {
        None
    };
    Ok(LoadedCase {
        case: MetricCase::new(times, columns, inject_time),
        graph,
    })
}

#[derive(Serialize)]
struct Output<'a> {
    candidates: &'a [RankedEntity],
}

/// Runs `vigil rca`.
pub fn run(args: RcaArgs) -> anyhow::Result<()> {
    let loaded = load_case(&args.case)?;
    let config = CaseRankConfig {
        limit: args.top,
        ..CaseRankConfig::default()
    };
    let graph = if args.no_graph {
        None
    } else {
        loaded.graph.as_ref()
    };
    let candidates = rank_case(&loaded.case, graph, &config)
        .with_context(|| format!("case {}", args.case.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&Output {
                candidates: &candidates
            })?
        );
        return Ok(());
    }
    println!(
        "{:<4} {:<24} {:>9} {:>6} {:>8} {:>8}  path",
        "rank", "entity", "score", "conf", "own z", "raw z"
    );
    for (rank, c) in candidates.iter().enumerate() {
        println!(
            "{:<4} {:<24} {:>9.3} {:>6.2} {:>8.2} {:>8.2}  {}",
            rank + 1,
            c.entity,
            c.score,
            c.confidence,
            c.own_z,
            c.raw_z,
            c.path.join(" → ")
        );
    }
    Ok(())
}
