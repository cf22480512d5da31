//! Anomaly detection end to end through ClickHouse: an estate with two
//! fault-free days and a third day holding one fault of every kind (as `vigil
//! bench detect` builds them) is written into a real ClickHouse in DeepFlow's
//! shape, read back through `&dyn TelemetrySource` only, and analysed. Every
//! planted fault must be found on its true root entity, overlapping its window,
//! with at most one finding no planted fault explains.
//!
//! ClickHouse holds a sample of the requests (at most `ROWS_PER_EDGE_MINUTE`
//! rows per call edge and minute), so its request counts are that cap rather
//! than the true rate; the cap is set above the analyzer's minimum traffic per
//! step so that every busy edge is scored.
//!
//! Needs `VIGIL_TEST_CLICKHOUSE_URL` (`./scripts/test.sh` starts ClickHouse).

mod common;

use std::time::Instant;

use vigil_analyzer::{analyze, AnalysisInput, AnalyzerConfig};
use vigil_model::{
    EntityFilter, Finding, PlantedFault, ResourceMetric, SeriesQuery, Severity, StatementStepQuery,
    TelemetrySource, TimeRange, Timestamp,
};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};

/// Raw request rows per call edge and minute: above the analyzer's
/// `min_requests_per_step` (10). Not lower: at 12 or 16 the error burst is
/// missed, because a sampled minute then rarely holds the 4+ errors the
/// error-ratio test (z ≥ 6, binomial sd floored at 0.5) needs, 5 minutes running.
const ROWS_PER_EDGE_MINUTE: u32 = 24;
const HISTORY_DAYS: u32 = 2;
const SEED: u64 = 3;

/// Two fault-free days, then one day with the catalogue's faults; the window is that day.
fn estate() -> (Estate, TimeRange) {
    let history = HISTORY_DAYS * 1440;
    let faults = FaultSpec::random_catalogue(SEED, 1440)
        .into_iter()
        .map(|mut spec| {
            spec.start_minute += history;
            spec
        })
        .collect();
    let config = SimConfig {
        seed: SEED,
        services: 8,
        instances_per_service: 3,
        start: DEFAULT_START.plus_secs(i64::try_from(SEED % 7).unwrap_or(0) * 86_400),
        minutes: history + 1440,
        faults,
        ..SimConfig::default()
    };
    let estate = Estate::new(config).expect("valid estate");
    let range = estate.range();
    let window = TimeRange {
        start: range.start.plus_secs(i64::from(history) * 60),
        end: range.end,
    };
    (estate, window)
}

/// Everything the analyzer needs, read through the trait only, per minute over the whole range.
async fn read_input(
    source: &dyn TelemetrySource,
    range: TimeRange,
    window: TimeRange,
) -> AnalysisInput {
    let query = SeriesQuery {
        filter: EntityFilter::all(),
        range,
        step_secs: 60,
    };
    let mut resources = Vec::new();
    for metric in [
        ResourceMetric::CpuCores,
        ResourceMetric::MemoryBytes,
        ResourceMetric::TcpRetransmits,
    ] {
        resources.extend(
            source
                .resource_series(&query, metric)
                .await
                .expect("resource series"),
        );
    }
    AnalysisInput {
        window,
        topology: source.topology(range).await.expect("topology"),
        requests: source.request_series(&query).await.expect("request series"),
        edges: source.edge_series(&query).await.expect("edge series"),
        resources,
        statements: source
            .statement_steps(&StatementStepQuery {
                server: None,
                protocol: None,
                range,
                step_secs: 60,
            })
            .await
            .expect("statement steps"),
        events: source.events(range).await.expect("events"),
    }
}

/// The finding's anomalies' extent; informational ones do not date its start.
fn span(finding: &Finding) -> (Timestamp, Timestamp) {
    let start = finding
        .anomalies
        .iter()
        .filter(|a| a.severity > Severity::Info)
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

fn overlaps(fault: &PlantedFault, (start, end): (Timestamp, Timestamp)) -> bool {
    start < fault.window.end && end > fault.window.start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planted_fault_is_found_through_clickhouse() {
    let clock = Instant::now();
    let (estate, window) = estate();
    let store = common::scratch_clickhouse("ana").await;
    common::write_estate(&store, &estate, ROWS_PER_EDGE_MINUTE).await;
    let written = clock.elapsed();
    let input = read_input(&store, estate.range(), window).await;
    let read = clock.elapsed() - written;
    let findings = analyze(&input, &AnalyzerConfig::default());
    eprintln!(
        "written in {written:.1?}, read in {read:.1?}: {} request series, {} edges, {} statement steps, {} findings",
        input.requests.len(),
        input.edges.len(),
        input.statements.len(),
        findings.len()
    );

    let faults = estate.faults();
    let mut found = vec![false; faults.len()];
    let mut unexplained = Vec::new();
    for finding in &findings {
        let when = span(finding);
        let hit = faults
            .iter()
            .position(|f| f.root_cause == finding.entity && overlaps(f, when));
        eprintln!(
            "{} {} {}..{}: {}",
            if hit.is_some() { "TP" } else { "--" },
            finding.entity,
            when.0,
            when.1,
            finding.title
        );
        match hit {
            Some(index) => found[index] = true,
            None => unexplained.push(format!("{}: {}", finding.entity, finding.title)),
        }
    }
    let missed: Vec<String> = faults
        .iter()
        .zip(&found)
        .filter(|(_, found)| !**found)
        .map(|(f, _)| format!("{} on {} ({})", f.kind, f.root_cause, f.detail))
        .collect();
    assert!(missed.is_empty(), "missed faults: {missed:#?}");
    assert!(
        unexplained.len() <= 1,
        "findings no planted fault explains: {unexplained:#?}"
    );
}
