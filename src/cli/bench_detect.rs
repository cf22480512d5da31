//! `vigil bench detect`: accuracy of the analyzer on the simulator's fault
//! catalogue, and the throughput of its baseline detector.
//!
//! Accuracy: for each seed, an estate with `--history-days` fault-free days and
//! one analysed day holding one fault of every kind (`FaultSpec::random_catalogue`
//! over that day); batches go straight from the simulator to
//! `vigil_analyzer::analyze` in memory. A finding is a true positive when its
//! entity is the fault's root cause and its anomalies overlap the fault's window
//! (−10/+30 min); a finding overlapping a fault with another entity is a false
//! positive of that fault's kind; others are stray. Fault-free seeds give false
//! findings per 100 service-days. Delay: earliest anomaly onset of the matching
//! findings minus the fault's start (the alert itself needs `hold_points` more).
//!
//! Throughput: `--series` synthetic daily series (`--history-days` of history
//! plus one scored day each, 1 % with a planted shift) scored one by one on one
//! core; a plain pass summing the same points is timed in the same run.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Args;
use vigil_analyzer::baseline::{BaselineScorer, Rule};
use vigil_analyzer::{analyze, AnalysisInput, AnalyzerConfig};
use vigil_model::{
    EntityId, EntityKind, FaultKind, Finding, PlantedFault, RequestMetric, Series, SignalKind,
    TelemetryBatch, TimeRange, Timestamp,
};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};

/// `vigil bench detect` arguments.
#[derive(Debug, Args)]
pub struct DetectBenchArgs {
    /// Seeds with one fault of every kind in the analysed day.
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// Seeds with no fault (false-finding rate).
    #[arg(long, default_value_t = 10)]
    pub fault_free_seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Application services per estate.
    #[arg(long, default_value_t = 24)]
    pub services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 3)]
    pub instances: u32,
    /// Fault-free days of history before the analysed day.
    #[arg(long, default_value_t = 2)]
    pub history_days: u32,
    /// Measure throughput instead of accuracy.
    #[arg(long)]
    pub throughput: bool,
    /// Series scored by the throughput benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Print every finding of every run.
    #[arg(long)]
    pub verbose: bool,
}

/// Runs the benchmark and prints Markdown tables.
pub fn run(args: DetectBenchArgs) -> anyhow::Result<()> {
    if args.throughput {
        throughput(&args);
        return Ok(());
    }
    accuracy(&args)
}

/// One estate's telemetry, concatenated over its batches.
fn collect(estate: &Estate, window: TimeRange) -> AnalysisInput {
    let mut input = AnalysisInput {
        window,
        topology: estate.topology().clone(),
        requests: Vec::new(),
        edges: Vec::new(),
        resources: Vec::new(),
        statements: Vec::new(),
        events: Vec::new(),
    };
    for (index, batch) in estate.batches(1440).enumerate() {
        let TelemetryBatch {
            requests,
            edges,
            resources,
            statements,
            events,
            ..
        } = batch;
        if index == 0 {
            input.requests = requests;
            input.edges = edges;
            input.resources = resources;
        } else {
            for (all, part) in input.requests.iter_mut().zip(requests) {
                let (a, p) = (&mut all.metrics, part.metrics);
                a.requests.extend(p.requests);
                a.errors.extend(p.errors);
                a.latency_mean_ms.extend(p.latency_mean_ms);
                a.latency_p50_ms.extend(p.latency_p50_ms);
                a.latency_p90_ms.extend(p.latency_p90_ms);
                a.latency_p99_ms.extend(p.latency_p99_ms);
            }
            for (all, part) in input.edges.iter_mut().zip(edges) {
                let (a, p) = (&mut all.metrics, part.metrics);
                a.requests.extend(p.requests);
                a.errors.extend(p.errors);
                a.latency_mean_ms.extend(p.latency_mean_ms);
                a.latency_p50_ms.extend(p.latency_p50_ms);
                a.latency_p90_ms.extend(p.latency_p90_ms);
                a.latency_p99_ms.extend(p.latency_p99_ms);
            }
            for (all, part) in input.resources.iter_mut().zip(resources) {
                all.series.values.extend(part.series.values);
            }
        }
        input.statements.extend(statements);
        input.events.extend(events);
    }
    input
}

fn build(
    args: &DetectBenchArgs,
    seed: u64,
    with_faults: bool,
) -> anyhow::Result<(Estate, TimeRange)> {
    let history = args.history_days * 1440;
    let faults = if with_faults {
        FaultSpec::random_catalogue(seed, 1440)
            .into_iter()
            .map(|mut spec| {
                spec.start_minute += history;
                spec
            })
            .collect()
    } else {
        Vec::new()
    };
    // Vary the weekday of the analysed day with the seed.
    let start = DEFAULT_START.plus_secs(i64::try_from(seed % 7).unwrap_or(0) * 86_400);
    let config = SimConfig {
        seed,
        services: args.services,
        instances_per_service: args.instances,
        start,
        minutes: history + 1440,
        faults,
        ..SimConfig::default()
    };
    let estate = Estate::new(config)?;
    let range = estate.range();
    let window = TimeRange {
        start: range.start.plus_secs(i64::from(history) * 60),
        end: range.end,
    };
    Ok((estate, window))
}

fn span(finding: &Finding) -> (Timestamp, Timestamp) {
    // Informational anomalies (coarse windows) do not date a finding.
    let start = finding
        .anomalies
        .iter()
        .filter(|a| a.severity > vigil_model::Severity::Info)
        .map(|a| a.window.start)
        .min()
        .unwrap_or(Timestamp(0));
    let end = finding
        .anomalies
        .iter()
        .map(|a| a.window.end)
        .max()
        .unwrap_or(Timestamp(0));
    (start, end)
}

fn near(fault: &PlantedFault, (start, end): (Timestamp, Timestamp)) -> bool {
    start.secs() < fault.window.end.secs() + 30 * 60
        && end.secs() > fault.window.start.secs() - 10 * 60
}

#[derive(Default)]
struct KindStats {
    faults: usize,
    detected: usize,
    true_findings: usize,
    duplicates: usize,
    false_findings: usize,
    delays: Vec<f64>,
}

fn accuracy(args: &DetectBenchArgs) -> anyhow::Result<()> {
    let config = AnalyzerConfig::default();
    config.validate()?;
    println!(
        "# vigil bench detect: {} catalogue seeds + {} fault-free seeds, {} services × {} instances, {} history days + 1 analysed day, {}\n",
        args.seeds,
        args.fault_free_seeds,
        args.services,
        args.instances,
        args.history_days,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    let mut stats: BTreeMap<FaultKind, KindStats> = BTreeMap::new();
    let mut stray = 0usize;
    let mut analysed_points = 0usize;
    let mut analyse_secs = 0.0;
    for seed in args.first_seed..args.first_seed + args.seeds {
        let (estate, window) = build(args, seed, true)?;
        let input = collect(&estate, window);
        analysed_points += points(&input);
        let clock = Instant::now();
        let findings = analyze(&input, &config);
        analyse_secs += clock.elapsed().as_secs_f64();
        let faults = estate.faults();
        let mut matched = vec![0usize; faults.len()];
        for finding in &findings {
            let when = span(finding);
            let hit = faults
                .iter()
                .position(|f| f.root_cause == finding.entity && near(f, when));
            if args.verbose {
                println!(
                    "seed {seed}: {} {} — {}",
                    finding.entity,
                    if hit.is_some() { "TP" } else { "FP" },
                    finding.title
                );
                for anomaly in &finding.anomalies {
                    let offset = hit.map_or(0, |i| {
                        (anomaly.window.start.secs() - faults[i].window.start.secs()) / 60
                    });
                    println!(
                        "    {:?} {} {:?} {}..{} ({offset:+} min) {}",
                        anomaly.severity,
                        anomaly.entity,
                        anomaly.signal,
                        anomaly.window.start,
                        anomaly.window.end,
                        anomaly.evidence.summary
                    );
                }
            }
            match hit {
                Some(index) => {
                    let fault = &faults[index];
                    let entry = stats.entry(fault.kind).or_default();
                    matched[index] += 1;
                    if matched[index] == 1 {
                        entry.true_findings += 1;
                        entry
                            .delays
                            .push((when.0.secs() - fault.window.start.secs()) as f64 / 60.0);
                    } else {
                        entry.duplicates += 1;
                    }
                }
                None => match faults.iter().find(|f| near(f, when)) {
                    Some(fault) => stats.entry(fault.kind).or_default().false_findings += 1,
                    None => stray += 1,
                },
            }
        }
        for (fault, &count) in faults.iter().zip(&matched) {
            let entry = stats.entry(fault.kind).or_default();
            entry.faults += 1;
            if count > 0 {
                entry.detected += 1;
            } else if args.verbose {
                let traffic = input
                    .requests
                    .iter()
                    .find(|r| r.entity == fault.root_cause)
                    .and_then(|r| vigil_analyzer::stats::median(&r.metrics.requests));
                println!(
                    "seed {seed}: MISSED {} on {} ({}; median requests/min {traffic:?})",
                    fault.kind, fault.root_cause, fault.detail
                );
            }
        }
    }
    println!("| fault kind | faults | recall | precision | F1 | delay median (min) | delay max (min) | wrong-root findings | duplicate findings |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in FaultKind::ALL {
        let s = stats.remove(&kind).unwrap_or_default();
        let recall = ratio(s.detected, s.faults);
        let precision = ratio(
            s.true_findings + s.duplicates,
            s.true_findings + s.duplicates + s.false_findings,
        );
        let f1 = if recall + precision > 0.0 {
            2.0 * recall * precision / (recall + precision)
        } else {
            0.0
        };
        let mut delays = s.delays.clone();
        delays.sort_by(f64::total_cmp);
        let median = delays.get(delays.len() / 2).copied().unwrap_or(f64::NAN);
        let max = delays.last().copied().unwrap_or(f64::NAN);
        println!(
            "| {kind} | {} | {recall:.2} | {precision:.2} | {f1:.2} | {median:.0} | {max:.0} | {} | {} |",
            s.faults, s.false_findings, s.duplicates
        );
    }
    println!("\nFindings overlapping no fault in catalogue runs: {stray}");

    let mut false_findings = 0usize;
    let mut service_days = 0.0;
    for seed in args.first_seed + 10_000..args.first_seed + 10_000 + args.fault_free_seeds {
        let (estate, window) = build(args, seed, false)?;
        let input = collect(&estate, window);
        let findings = analyze(&input, &config);
        for finding in &findings {
            if args.verbose {
                println!("fault-free seed {seed}: {}", finding.title);
            }
        }
        false_findings += findings.len();
        service_days += estate.serving_entities().count() as f64;
    }
    println!(
        "False findings on fault-free days: {false_findings} over {service_days:.0} service-days = {:.2} per 100 service-days",
        if service_days > 0.0 { 100.0 * false_findings as f64 / service_days } else { f64::NAN }
    );
    println!(
        "Whole analysis (every detector, merging): {:.2} M points/s on one core ({analysed_points} points incl. history in {analyse_secs:.2} s)",
        analysed_points as f64 / analyse_secs.max(1e-9) / 1e6
    );
    Ok(())
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

fn points(input: &AnalysisInput) -> usize {
    input
        .requests
        .iter()
        .map(|r| r.metrics.len() * 6)
        .sum::<usize>()
        + input
            .resources
            .iter()
            .map(|r| r.series.values.len())
            .sum::<usize>()
        + input.statements.len()
}

/// A day-shaped series with multiplicative noise from a counter hash.
fn synthetic(index: usize, days: usize) -> Vec<f64> {
    let level = 5.0 + (index % 50) as f64;
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values: Vec<f64> = (0..days * 1440)
        .map(|t| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let hour = (t % 1440) as f64 / 60.0;
            level
                * (1.0 + 0.5 * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos())
                * (1.0 + 0.08 * noise)
        })
        .collect();
    if index.is_multiple_of(100) {
        let onset = (days - 1) * 1440 + 600;
        for v in &mut values[onset..onset + 60] {
            *v *= 3.0;
        }
    }
    values
}

fn throughput(args: &DetectBenchArgs) {
    let days = args.history_days.max(1) as usize + 1;
    let pool_size = 1000.min(args.series.max(1));
    let pool: Vec<Series> = (0..pool_size)
        .map(|i| Series {
            start: DEFAULT_START,
            step_secs: 60,
            values: synthetic(i, days),
        })
        .collect();
    let config = AnalyzerConfig::default();
    let entity = EntityId::new(EntityKind::Service, "bench");
    let signal = SignalKind::Request(RequestMetric::LatencyP99);
    let from = (days - 1) * 1440;
    let rule = Rule::Up {
        min_ratio: config.baseline.latency_min_ratio,
        min_delta: config.baseline.latency_min_delta_ms,
    };

    // Reference: one plain pass over the same points.
    let clock = Instant::now();
    let mut sum = 0.0;
    for i in 0..args.series {
        sum += pool[i % pool_size].values.iter().sum::<f64>();
    }
    let reference = clock.elapsed().as_secs_f64();

    let mut scorer = BaselineScorer::new();
    let mut found = 0usize;
    let clock = Instant::now();
    for i in 0..args.series {
        found += scorer
            .detect(
                &entity,
                &signal,
                &pool[i % pool_size],
                from,
                &[],
                rule,
                &config.baseline,
                &config.guards,
            )
            .len();
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let scored = args.series * 1440;
    let read = args.series * days * 1440;
    println!(
        "# vigil bench detect --throughput: {} series × 1,440 scored points ({} days of history each), one core, {}\n",
        args.series,
        days - 1,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!("| pass | seconds | scored points/s | points read/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| plain sum over the same points (reference; checksum {:.3e}) | {reference:.2} | {:.1} M | {:.1} M |",
        sum,
        scored as f64 / reference / 1e6,
        read as f64 / reference / 1e6
    );
    println!(
        "| baseline detector ({found} anomalies; {} planted) | {elapsed:.2} | {:.1} M | {:.1} M |",
        args.series.div_ceil(100),
        scored as f64 / elapsed / 1e6,
        read as f64 / elapsed / 1e6
    );
}
