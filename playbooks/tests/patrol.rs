//! Playbooks over simulated estates in the embedded store: the daily report
//! finds every planted fault with its true root cause in the top three and
//! little else; overrides and scope change what is reported; statuses follow
//! findings from one report to the next.

use std::time::Duration;

use vigil_model::{FindingMark, FindingStatus, Language, MarkKind, Timestamp};
use vigil_playbooks::{
    assemble, builtin, evaluate, parse, score, EvaluationOptions, Playbook, PreviousState,
    ReportIdentity,
};
use vigil_sim::{Estate, FaultSpec, SimConfig, DEFAULT_START};
use vigil_store::embedded::EmbeddedStore;

const HISTORY_DAYS: u32 = 1;

/// An estate of `services` with one fault of every kind in its last day.
async fn estate(seed: u64, services: usize) -> (Estate, EmbeddedStore) {
    let history = HISTORY_DAYS * 1440;
    let faults = FaultSpec::random_catalogue(seed, 1440)
        .into_iter()
        .map(|mut spec| {
            spec.start_minute += history;
            spec
        })
        .collect();
    let estate = Estate::new(SimConfig {
        seed,
        services,
        start: DEFAULT_START.plus_secs(i64::try_from(seed % 7).expect("small") * 86_400),
        minutes: history + 1440,
        faults,
        ..SimConfig::default()
    })
    .expect("valid estate");
    let store = EmbeddedStore::open_in_memory().expect("in-memory store");
    for batch in estate.batches(60) {
        store.write(&batch).await.expect("write batch");
    }
    (estate, store)
}

fn daily(window_hours: u64) -> Playbook {
    let mut playbook = builtin()
        .expect("catalogue")
        .into_iter()
        .find(|p| p.id == "daily-report")
        .expect("daily-report");
    playbook.window = Duration::from_secs(window_hours * 3600);
    playbook.history_days = HISTORY_DAYS;
    playbook
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_names_every_planted_root_cause_in_its_top_three() {
    let services = 40;
    let seeds = [3_u64, 11, 29];
    let mut unexplained = Vec::new();
    let mut failures = Vec::new();
    for seed in seeds {
        let (estate, store) = estate(seed, services).await;
        let evaluation = evaluate(
            &daily(24),
            &store,
            estate.range().end,
            &EvaluationOptions::default(),
        )
        .await
        .expect("evaluation");
        let findings: Vec<_> = evaluation
            .findings
            .iter()
            .map(|f| f.finding.clone())
            .collect();
        let truth = score(&findings, estate.faults(), estate.topology());
        for (fault, rank) in estate.faults().iter().zip(&truth.root_rank) {
            if !rank.is_some_and(|r| r <= 3) {
                failures.push(format!(
                    "seed {seed}: {} on {} ranked {rank:?}",
                    fault.kind, fault.root_cause
                ));
            }
        }
        unexplained.extend(
            truth
                .unexplained
                .iter()
                .map(|u| format!("seed {seed}: {u}")),
        );
        // Every finding claimed by a check carries a runbook and candidates.
        for finding in &evaluation.findings {
            assert!(!finding.runbook.en.is_empty() && !finding.runbook.zh.is_empty());
            assert!(
                !finding.finding.candidates.is_empty(),
                "{}",
                finding.finding.title
            );
        }
        // The report tables are filled from the same store.
        assert!(!evaluation.slow_sql.is_empty() && !evaluation.slow_redis.is_empty());
        assert!(!evaluation.slos.is_empty());
        assert!(evaluation.cpu_consumers.iter().any(|c| c.profile.is_some()));
        // Every simulated service sends data: the patrol is not blind.
        let coverage = &evaluation.coverage;
        assert!(coverage.services as usize >= services, "{coverage:?}");
        assert_eq!(
            coverage.services_with_data, coverage.services,
            "{coverage:?}"
        );
        assert!(coverage.silent.is_empty() && coverage.without_data.is_empty());
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let allowed = seeds.len() * services / 100;
    assert!(
        unexplained.len() <= allowed,
        "{} findings no planted fault explains (allowed {allowed}): {unexplained:#?}",
        unexplained.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_and_scope_change_what_is_reported() {
    let (estate, store) = estate(5, 30).await;
    let burst = estate
        .faults()
        .iter()
        .find(|f| f.kind == vigil_model::FaultKind::ErrorBurst)
        .expect("an error burst")
        .clone();
    let service = burst.root_cause.name().to_owned();
    let base = "id: errs\nname: {en: Errors}\nschedule: \"*/5 * * * *\"\nwindow: 24h\nhistory_days: 1\nchecks:\n  - id: errors\n    detector: errors\n";
    let run = |text: String| {
        let store = store.clone();
        let end = estate.range().end;
        async move {
            let playbook = parse(&text, "test.yaml").expect("valid playbook");
            evaluate(&playbook, &store, end, &EvaluationOptions::default())
                .await
                .expect("evaluation")
        }
    };
    let about = |evaluation: &vigil_playbooks::Evaluation| {
        evaluation
            .findings
            .iter()
            .any(|f| f.finding.entity == burst.root_cause)
    };
    assert!(
        about(&run(base.to_owned()).await),
        "the burst is found without overrides"
    );
    let relaxed = format!(
        "{base}overrides:\n  - services: [\"{service}\"]\n    checks:\n      errors: {{error_min_delta: 0.9}}\n"
    );
    assert!(
        !about(&run(relaxed).await),
        "a 90-point threshold for {service} silences its burst"
    );
    let excluded = format!("{base}scope:\n  exclude: [\"{service}\"]\n");
    assert!(
        !about(&run(excluded).await),
        "excluded services are not reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_follow_findings_from_one_report_to_the_next() {
    let (estate, store) = estate(7, 30).await;
    let playbook = daily(24);
    let end = estate.range().end;
    let evaluation = evaluate(&playbook, &store, end, &EvaluationOptions::default())
        .await
        .expect("first evaluation");
    assert!(
        evaluation.findings.len() >= 3,
        "the estate has planted faults"
    );
    let identity = |id: &str, at: Timestamp| ReportIdentity {
        report_id: id.to_owned(),
        run_id: id.to_owned(),
        language: Language::Zh,
        generated: at,
    };
    let first = assemble(
        &playbook,
        &evaluation,
        &PreviousState::default(),
        &[],
        &identity("r1", end),
    );
    assert!(first
        .findings
        .iter()
        .all(|f| f.status == FindingStatus::New));
    assert_eq!(first.language, Language::Zh);

    // The next report sees the same findings but one, which is suppressed,
    // and one acknowledged; the one that disappeared is resolved.
    let mut second_eval = evaluation.clone();
    let gone = second_eval.findings.remove(0);
    let suppressed = second_eval.findings[0].finding.fingerprint.clone();
    let acknowledged = second_eval.findings[1].finding.fingerprint.clone();
    let later = end.plus_secs(86_400);
    let mark = |fingerprint: &str, kind| FindingMark {
        fingerprint: fingerprint.to_owned(),
        kind,
        reason: "known".to_owned(),
        by: "test".to_owned(),
        created: end,
        expires: later.plus_secs(3600),
    };
    let second = assemble(
        &playbook,
        &second_eval,
        &PreviousState::from_report(&first),
        &[
            mark(&suppressed, MarkKind::Suppressed),
            mark(&acknowledged, MarkKind::Acknowledged),
        ],
        &identity("r2", later),
    );
    assert_eq!(second.previous_report_id.as_deref(), Some("r1"));
    assert!(second
        .findings
        .iter()
        .all(|f| f.status == FindingStatus::StillOpen && f.first_seen == end));
    assert_eq!(second.resolved.len(), 1);
    assert_eq!(second.resolved[0].fingerprint, gone.finding.fingerprint);
    assert_eq!(second.suppressed.len(), 1);
    assert_eq!(second.suppressed[0].finding.fingerprint, suppressed);
    assert!(!second
        .findings
        .iter()
        .any(|f| f.finding.fingerprint == suppressed));
    let acked = second
        .findings
        .iter()
        .find(|f| f.finding.fingerprint == acknowledged)
        .expect("acknowledged findings stay listed");
    assert_eq!(
        acked.mark.as_ref().map(|m| m.kind),
        Some(MarkKind::Acknowledged)
    );
    assert!(second.health_score >= first.health_score);

    // A fresh evaluation of the same window keeps every fingerprint: identity
    // is stable across runs.
    let again = evaluate(&playbook, &store, end, &EvaluationOptions::default())
        .await
        .expect("second evaluation");
    let before: Vec<&str> = evaluation
        .findings
        .iter()
        .map(|f| f.finding.fingerprint.as_str())
        .collect();
    let after: Vec<&str> = again
        .findings
        .iter()
        .map(|f| f.finding.fingerprint.as_str())
        .collect();
    assert_eq!(before, after);
}

#[tokio::test]
async fn query_checks_fail_plainly_on_a_store_without_queries() {
    let store = EmbeddedStore::open_in_memory().expect("store");
    let playbook = parse(
        "id: q\nname: {en: Q}\nschedule: \"* * * * *\"\nchecks:\n  - id: backlog\n    detector: query\n    params: {query: \"SELECT 1 AS value\", above: 0}\n",
        "q.yaml",
    )
    .expect("valid");
    let evaluation = evaluate(
        &playbook,
        &store,
        Timestamp(1_800_000_000),
        &EvaluationOptions::default(),
    )
    .await
    .expect("the rest of the patrol still runs");
    assert_eq!(evaluation.coverage.checks_failed.len(), 1);
    assert!(
        evaluation.coverage.checks_failed[0]
            .1
            .contains("ClickHouse"),
        "{:?}",
        evaluation.coverage.checks_failed
    );
}
