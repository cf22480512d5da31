//! `vigil bench rca`: accuracy and speed of root-cause ranking on offline cases.
//!
//! Accuracy: every case directory under each `--cases` folder (RCAEval layout
//! plus `root_causes.txt`, as `bench/rca/generate_circa.py` writes them) and
//! `--simulated` cases built from Vigil's own simulator, one fault each. Vigil
//! is scored beside two in-process baselines (BARO's robust scorer and N-Sigma,
//! re-implemented in `vigil-knowledge-graph`) and beside any peer rankings that
//! `bench/rca/run_peers.py` left in the case directories (`peer-<name>.json`,
//! from PyPI's `fse-baro`). Metrics: AC@1, AC@3 and Avg@5, where AC@k is the
//! hits among the top k over min(k, number of true causes), and Avg@5 the mean
//! of AC@1..AC@5.
//!
//! Speed: synthetic linear-Gaussian DAG cases of `--speed-nodes` entities (two
//! edges per node, 1,440 baseline steps, 10 test steps) ranked in memory; the
//! N-Sigma baseline is timed in the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use vigil_knowledge_graph::{
    owning_services, rank_case, resolve_to_services, CaseEdge, CaseGraph, CaseMethod,
    CaseRankConfig, CaseRelation, MetricCase, MetricColumn,
};
use vigil_model::{EntityKind, FaultKind, RelationKind, ResourceMetric};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};

use crate::cli::rca::load_case;

/// `vigil bench rca` arguments.
#[derive(Debug, Args)]
pub struct RcaBenchArgs {
    /// Folders of case directories (repeatable), e.g. from `bench/rca/generate_circa.py`.
    #[arg(long)]
    pub cases: Vec<PathBuf>,
    /// Cases to build from Vigil's simulator (one fault each, kinds in turn).
    #[arg(long, default_value_t = 0)]
    pub simulated: usize,
    /// Entity counts of the synthetic speed cases.
    #[arg(long, value_delimiter = ',', default_value = "50,5000")]
    pub speed_nodes: Vec<usize>,
    /// Times each speed case is ranked; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// One case with its truth.
struct TruthCase {
    case: MetricCase,
    graph: Option<CaseGraph>,
    truth: BTreeSet<String>,
    peers: BTreeMap<String, (Vec<String>, f64)>,
    /// Service owning each container, instance or process (simulator cases):
    /// rankings are resolved through it before scoring, so a fault found at a
    /// service's container counts once, for the service.
    owners: BTreeMap<String, String>,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    ac: [f64; 5],
    seconds: Vec<f64>,
}

impl Tally {
    fn add(&mut self, ranking: &[String], truth: &BTreeSet<String>, seconds: f64) {
        self.cases += 1;
        for k in 1..=5 {
            let hits = ranking
                .iter()
                .take(k)
                .filter(|e| truth.contains(*e))
                .count();
            self.ac[k - 1] += hits as f64 / k.min(truth.len()).max(1) as f64;
        }
        self.seconds.push(seconds);
    }

    fn row(&self, name: &str) -> String {
        let n = self.cases.max(1) as f64;
        let ac: Vec<f64> = self.ac.iter().map(|a| a / n).collect();
        let avg5 = ac.iter().sum::<f64>() / 5.0;
        let mut seconds = self.seconds.clone();
        seconds.sort_by(f64::total_cmp);
        let median_ms = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0) * 1e3;
        format!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.2} |",
            self.cases, ac[0], ac[2], avg5, median_ms
        )
    }
}

/// Runs `vigil bench rca`.
pub fn run(args: RcaBenchArgs) -> anyhow::Result<()> {
    println!(
        "# vigil bench rca: {} cores, {}\n",
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    for folder in &args.cases {
        let cases = load_folder(folder)?;
        println!("## {} ({} cases)\n", folder.display(), cases.len());
        accuracy_table(&cases)?;
    }
    if args.simulated > 0 {
        let cases = simulated_cases(args.simulated)?;
        println!(
            "## Vigil simulator ({} cases, one fault each)\n",
            cases.len()
        );
        accuracy_table(&cases)?;
    }
    if !args.speed_nodes.is_empty() {
        speed_table(&args.speed_nodes, args.repeats.max(1))?;
    }
    Ok(())
}

fn accuracy_table(cases: &[TruthCase]) -> anyhow::Result<()> {
    let methods: [(&str, CaseMethod, bool); 4] = [
        ("vigil (graph)", CaseMethod::Vigil, true),
        ("vigil (data only)", CaseMethod::Vigil, false),
        ("baro robust-z (in-process)", CaseMethod::RobustZ, false),
        ("n-sigma (in-process)", CaseMethod::NSigma, false),
    ];
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for case in cases {
        for (name, method, use_graph) in methods {
            if use_graph && case.graph.is_none() {
                continue;
            }
            let config = CaseRankConfig {
                method,
                ..CaseRankConfig::default()
            };
            let graph = if use_graph { case.graph.as_ref() } else { None };
            let started = Instant::now();
            let ranked = rank_case(&case.case, graph, &config)?;
            let seconds = started.elapsed().as_secs_f64();
            let ranking: Vec<String> = ranked.into_iter().map(|r| r.entity).collect();
            let ranking = resolve_to_services(&ranking, &case.owners);
            if !order.iter().any(|o| o == name) {
                order.push(name.to_owned());
            }
            tallies
                .entry(name.to_owned())
                .or_default()
                .add(&ranking, &case.truth, seconds);
        }
        for (peer, (ranking, seconds)) in &case.peers {
            let name = format!("{peer} (fse-baro, Python)");
            if !order.contains(&name) {
                order.push(name.clone());
            }
            let ranking = resolve_to_services(ranking, &case.owners);
            tallies
                .entry(name)
                .or_default()
                .add(&ranking, &case.truth, *seconds);
        }
    }
    println!("| method | cases | AC@1 | AC@3 | Avg@5 | median ms/case |");
    println!("|---|---|---|---|---|---|");
    for name in order {
        if let Some(tally) = tallies.get(&name) {
            println!("{}", tally.row(&name));
        }
    }
    println!();
    Ok(())
}

fn load_folder(folder: &Path) -> anyhow::Result<Vec<TruthCase>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("data.csv").is_file())
        .collect();
    dirs.sort();
    let mut cases = Vec::new();
    for dir in dirs {
        let loaded = load_case(&dir)?;
        let truth_path = dir.join("root_causes.txt");
        let truth: BTreeSet<String> = std::fs::read_to_string(&truth_path)
            .with_context(|| format!("cannot read {}", truth_path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let mut peers = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(peer) = name
                .strip_prefix("peer-")
                .and_then(|n| n.strip_suffix(".json"))
            {
                let text = std::fs::read_to_string(entry.path())?;
                let value: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}", entry.path().display()))?;
                let ranking = value["ranking"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                peers.insert(
                    peer.to_owned(),
                    (ranking, value["seconds"].as_f64().unwrap_or(0.0)),
                );
            }
        }
        cases.push(TruthCase {
            case: loaded.case,
            graph: loaded.graph,
            truth,
            peers,
            owners: BTreeMap::new(),
        });
    }
    Ok(cases)
}

/// Cases from Vigil's simulator: per-minute request metrics of services and
/// servers, CPU and memory of containers, retransmits of hosts; the graph from
/// the topology (calls; a container causes its service; a host causes its
/// containers). One fault per case, kinds in catalogue order, seeds in turn.
fn simulated_cases(count: usize) -> anyhow::Result<Vec<TruthCase>> {
    const MINUTES: u32 = 240;
    const FAULT_START: u32 = 180;
    let mut cases = Vec::new();
    for index in 0..count {
        let kind = FaultKind::ALL[index % FaultKind::ALL.len()];
        let config = SimConfig {
            seed: 1000 + index as u64,
            services: 20,
            start: DEFAULT_START,
            minutes: MINUTES,
            faults: vec![FaultSpec {
                kind,
                target: None,
                start_minute: FAULT_START,
                duration_minutes: MINUTES - FAULT_START,
            }],
            ..SimConfig::default()
        };
        let estate = Estate::new(config).context("simulated estate")?;
        let topology = estate.topology().clone();
        // Containers and instances resolve to their service, so a fault that
        // shows in a container's CPU counts for the service it serves.
        let mut service_of: BTreeMap<String, String> = BTreeMap::new();
        let mut container_of: BTreeMap<String, String> = BTreeMap::new();
        let mut host_of: BTreeMap<String, String> = BTreeMap::new();
        for relation in &topology.relations {
            match relation.kind {
                RelationKind::InstanceOf => {
                    service_of.insert(relation.from.to_string(), relation.to.to_string());
                }
                RelationKind::RunsOn if relation.from.kind() == EntityKind::Instance => {
                    container_of.insert(relation.from.to_string(), relation.to.to_string());
                }
                RelationKind::RunsOn if relation.from.kind() == EntityKind::Container => {
                    host_of.insert(relation.from.to_string(), relation.to.to_string());
                }
                _ => {}
            }
        }
        let mut edges: BTreeSet<(String, String, CaseRelation)> = BTreeSet::new();
        for relation in &topology.relations {
            if relation.kind == RelationKind::Calls {
                edges.insert((
                    relation.from.to_string(),
                    relation.to.to_string(),
                    CaseRelation::Calls,
                ));
            }
        }
        for (instance, container) in &container_of {
            if let Some(service) = service_of.get(instance) {
                edges.insert((container.clone(), service.clone(), CaseRelation::Causes));
            }
            if let Some(host) = host_of.get(container) {
                edges.insert((host.clone(), container.clone(), CaseRelation::Causes));
            }
        }
        let mut series: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        let mut times: Vec<i64> = Vec::new();
        for batch in estate.batches(60) {
            let steps = batch.requests.first().map_or(0, |r| r.metrics.len());
            for step in 0..steps {
                if let Some(first) = batch.requests.first() {
                    times.push(first.metrics.time_at(step).secs());
                }
            }
            for request in &batch.requests {
                let entity = request.entity.to_string();
                let m = &request.metrics;
                let ratio: Vec<f64> = m
                    .requests
                    .iter()
                    .zip(&m.errors)
                    .map(|(r, e)| if *r > 0.0 { e / r } else { 0.0 })
                    .collect();
                for (metric, values) in [
                    ("latency", m.latency_mean_ms.clone()),
                    ("latency-p99", m.latency_p99_ms.clone()),
                    ("error-ratio", ratio),
                ] {
                    series
                        .entry((entity.clone(), metric.to_owned()))
                        .or_default()
                        .extend(values);
                }
            }
            for resource in &batch.resources {
                let metric = match resource.metric {
                    ResourceMetric::CpuCores => "cpu",
                    ResourceMetric::MemoryBytes => "memory",
                    ResourceMetric::TcpRetransmits => "retransmits",
                    ResourceMetric::TcpResets => "resets",
                };
                series
                    .entry((resource.entity.to_string(), metric.to_owned()))
                    .or_default()
                    .extend(resource.series.values.iter().copied());
            }
        }
        let columns: Vec<MetricColumn> = series
            .into_iter()
            .filter(|(_, values)| values.len() == times.len())
            .map(|((entity, metric), values)| MetricColumn {
                entity,
                metric,
                values,
            })
            .collect();
        let fault = estate
            .faults()
            .first()
            .context("the simulator planted no fault")?;
        // One true cause: the planted entity. Rankings are resolved to
        // services before scoring, so its containers do not count separately.
        let truth = BTreeSet::from([fault.root_cause.to_string()]);
        let graph = CaseGraph {
            nodes: Vec::new(),
            edges: edges
                .into_iter()
                .map(|(from, to, relation)| CaseEdge { from, to, relation })
                .collect(),
        };
        let inject_time = fault.window.start.secs();
        cases.push(TruthCase {
            case: MetricCase::new(times, columns, inject_time),
            graph: Some(graph),
            truth,
            peers: BTreeMap::new(),
            owners: owning_services(&topology),
        });
    }
    Ok(cases)
}

/// SplitMix64 with Box–Muller: a tiny deterministic source of Gaussian noise
/// for synthetic speed cases (no RNG crate needed in the binary).
struct Noise(u64);

impl Noise {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// A linear-Gaussian DAG case like CIRCA's: node `i` has causes among nodes
/// `> i`, two edges per node on average, weights ±[0.5, 2]; one root cause
/// gets a 10σ fault for 2 steps at step 1,440 of 1,450 (at 5,000 entities a
/// weaker one is lost among the noise's own extremes).
// reason: rows and nodes index several parallel arrays at once.
#[allow(clippy::needless_range_loop)]
fn synthetic_case(nodes: usize, seed: u64) -> (MetricCase, CaseGraph, String) {
    const NORMAL: usize = 1440;
    const ROWS: usize = 1450;
    let mut noise = Noise(seed);
    let mut causes: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nodes];
    let mut edges = Vec::new();
    for effect in 0..nodes.saturating_sub(1) {
        for _ in 0..2 {
            let span = (nodes - effect - 1) as u64;
            let cause = effect + 1 + (noise.next_u64() % span.max(1)) as usize;
            if causes[effect].iter().any(|(c, _)| *c == cause) {
                continue;
            }
            let magnitude = 0.5 + 1.5 * noise.unit();
            let weight = if noise.unit() < 0.5 {
                -magnitude
            } else {
                magnitude
            };
            causes[effect].push((cause, weight / 2.0));
            edges.push(CaseEdge {
                from: format!("n{cause}"),
                to: format!("n{effect}"),
                relation: CaseRelation::Causes,
            });
        }
    }
    let root = (noise.next_u64() % nodes as u64) as usize;
    let mut values = vec![vec![0.0; ROWS]; nodes];
    for row in 0..ROWS {
        // Causes have larger indices: fill from the last node down.
        for node in (0..nodes).rev() {
            let mut v = noise.gauss();
            if node == root && (NORMAL..NORMAL + 2).contains(&row) {
                v += 10.0;
            }
            for &(cause, weight) in &causes[node] {
                v += weight * values[cause][row];
            }
            values[node][row] = v;
        }
    }
    let columns = values
        .into_iter()
        .enumerate()
        .map(|(i, values)| MetricColumn {
            entity: format!("n{i}"),
            metric: "value".to_owned(),
            values,
        })
        .collect();
    let times = (0..ROWS as i64).map(|i| 1_700_000_000 + 60 * i).collect();
    (
        MetricCase::new(times, columns, 1_700_000_000 + 60 * NORMAL as i64),
        CaseGraph {
            nodes: Vec::new(),
            edges,
        },
        format!("n{root}"),
    )
}

fn speed_table(sizes: &[usize], repeats: usize) -> anyhow::Result<()> {
    println!(
        "## Speed (synthetic linear-Gaussian DAG, 2 edges/node, 1,450 steps, data in memory)\n"
    );
    println!("| entities | vigil (graph) ms | vigil (data only) ms | n-sigma baseline ms | vigil / n-sigma | planted cause rank |");
    println!("|---|---|---|---|---|---|");
    for &nodes in sizes {
        let (case, graph, root) = synthetic_case(nodes.max(2), 42 + nodes as u64);
        let time =
            |method: CaseMethod, graph: Option<&CaseGraph>| -> anyhow::Result<(f64, usize)> {
                let config = CaseRankConfig {
                    method,
                    ..CaseRankConfig::default()
                };
                let mut samples = Vec::new();
                let mut rank = 0;
                for _ in 0..repeats {
                    let started = Instant::now();
                    let ranked = rank_case(&case, graph, &config)?;
                    samples.push(started.elapsed().as_secs_f64() * 1e3);
                    rank = ranked
                        .iter()
                        .position(|r| r.entity == root)
                        .map_or(0, |p| p + 1);
                }
                samples.sort_by(f64::total_cmp);
                Ok((samples[samples.len() / 2], rank))
            };
        let (vigil_ms, rank) = time(CaseMethod::Vigil, Some(&graph))?;
        let (data_ms, _) = time(CaseMethod::Vigil, None)?;
        let (nsigma_ms, _) = time(CaseMethod::NSigma, None)?;
        println!(
            "| {nodes} | {vigil_ms:.2} | {data_ms:.2} | {nsigma_ms:.2} | {:.1}× | {rank} |",
            vigil_ms / nsigma_ms.max(1e-9)
        );
    }
    println!();
    Ok(())
}
