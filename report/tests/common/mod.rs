//! A realistic patrol report built by hand, shared by the render tests and the
//! headless-browser test: a database slowdown that propagated to two services
//! (180-minute latency series with band and window, three candidates, a
//! neighbourhood of eight calls), a CPU finding with a profile, a suppressed
//! and a resolved finding, slow SQL and Redis, SLOs and partial coverage.

// reason: each test binary uses a different subset of the fixture helpers.
#![allow(dead_code)]

use vigil_model::{
    Anomaly, Coverage, CpuConsumer, EntityId, EntityKind, Evidence, Finding, FindingMark,
    FindingStatus, FoldedStack, GraphLink, L7Protocol, Language, LocalizedText, MarkKind,
    PatrolReport, Profile, ReportedFinding, RequestMetric, ResolvedFinding, ResourceMetric,
    RootCauseCandidate, Series, Severity, SignalKind, SloStatus, StatementStats, TimeRange,
    Timestamp,
};

/// 2026-03-02 06:00 UTC (14:00 in China): the end of the patrolled window.
pub const END: i64 = 1_772_431_200;
/// Three hours before [`END`].
pub const START: i64 = END - 180 * 60;

pub fn service(name: &str) -> EntityId {
    EntityId::new(EntityKind::Service, name)
}

pub fn database() -> EntityId {
    EntityId::new(EntityKind::Database, "mysqld@10.0.0.5:3306")
}

pub fn cache() -> EntityId {
    EntityId::new(EntityKind::Cache, "redis@10.0.0.6:6379")
}

/// A 180-minute latency series around 40 ms with a rise to ~400 ms in the
/// last 40 minutes, a gap of five minutes, and a band of ±15 ms.
pub fn latency_evidence(base: f64, peak: f64) -> (Series, (Series, Series), TimeRange) {
    let start = Timestamp(START);
    let values: Vec<f64> = (0..180)
        .map(|i| {
            if (60..65).contains(&i) {
                return f64::NAN;
            }
            let wobble = ((i as f64) * 0.37).sin() * base * 0.08;
            if i >= 140 {
                peak + wobble * 3.0
            } else {
                base + wobble
            }
        })
        .collect();
    let lower = Series {
        start,
        step_secs: 60,
        values: (0..180).map(|_| base * 0.7).collect(),
    };
    let upper = Series {
        start,
        step_secs: 60,
        values: (0..180).map(|_| base * 1.35).collect(),
    };
    let window = TimeRange {
        start: Timestamp(START + 140 * 60),
        end: Timestamp(END),
    };
    (
        Series {
            start,
            step_secs: 60,
            values,
        },
        (lower, upper),
        window,
    )
}

fn latency_anomaly(entity: EntityId, base: f64, peak: f64, summary: &str) -> Anomaly {
    let (series, band, window) = latency_evidence(base, peak);
    Anomaly {
        entity,
        signal: SignalKind::Request(RequestMetric::LatencyP99),
        window,
        score: 6.5,
        severity: Severity::Critical,
        evidence: Evidence {
            baseline: base,
            observed: peak,
            series: Some(series),
            band: Some(band),
            summary: summary.to_owned(),
        },
    }
}

pub fn cpu_profile() -> Profile {
    let stacks = [
        (
            "java;Thread.run;OrderService.handle;JsonCodec.encode;StringBuilder.append",
            4200,
        ),
        (
            "java;Thread.run;OrderService.handle;PriceRules.evaluate;Regex.match",
            2600,
        ),
        (
            "java;Thread.run;OrderService.handle;OrderDao.query;MysqlIO.read",
            900,
        ),
        ("java;GC;G1YoungGen.collect", 700),
        ("java;Thread.run;HttpServer.accept;Socket.read", 300),
    ];
    Profile {
        entity: EntityId::new(EntityKind::Process, "java@10.0.0.7"),
        range: TimeRange {
            start: Timestamp(START),
            end: Timestamp(END),
        },
        unit: "samples".to_owned(),
        stacks: stacks
            .iter()
            .map(|(frames, value)| FoldedStack {
                frames: (*frames).to_owned(),
                value: *value,
            })
            .collect(),
    }
}

fn neighbourhood() -> Vec<GraphLink> {
    let link = |from: EntityId, to: EntityId| GraphLink { from, to };
    vec![
        link(service("gateway"), service("web")),
        link(service("web"), service("order-api")),
        link(service("web"), service("cart")),
        link(service("order-api"), database()),
        link(service("order-api"), service("pricing")),
        link(service("cart"), cache()),
        link(service("pricing"), cache()),
        link(service("payment"), database()),
    ]
}

fn db_finding(status: FindingStatus) -> ReportedFinding {
    let web = latency_anomaly(
        service("web"),
        45.0,
        420.0,
        "p99 latency of web is 420 ms against a baseline of 45 ms since 13:20.",
    );
    let order = latency_anomaly(
        service("order-api"),
        30.0,
        380.0,
        "p99 latency of order-api is 380 ms against a baseline of 30 ms since 13:20.",
    );
    let db_stmt = Anomaly {
        entity: database(),
        signal: SignalKind::Statement("SELECT * FROM orders WHERE user_id = ?".to_owned()),
        window: web.window,
        score: 9.0,
        severity: Severity::Critical,
        evidence: Evidence {
            baseline: 4.0,
            observed: 350.0,
            series: None,
            band: None,
            summary: "SELECT * FROM orders WHERE user_id = ? p99 350 ms (baseline 4 ms)."
                .to_owned(),
        },
    };
    let path = vec![database(), service("order-api"), service("web")];
    ReportedFinding {
        finding: Finding {
            fingerprint: "fp-db-slow".to_owned(),
            entity: service("web"),
            title: "web: p99 latency up (root cause: mysqld)".to_owned(),
            severity: Severity::Critical,
            anomalies: vec![web, order, db_stmt],
            candidates: vec![
                RootCauseCandidate {
                    entity: database(),
                    score: 3.2,
                    confidence: 0.82,
                    signals: vec![SignalKind::Statement(
                        "SELECT * FROM orders WHERE user_id = ?".to_owned(),
                    )],
                    path: path.clone(),
                    started_at: Some(Timestamp(START + 138 * 60)),
                },
                RootCauseCandidate {
                    entity: service("order-api"),
                    score: 1.4,
                    confidence: 0.41,
                    signals: vec![SignalKind::Request(RequestMetric::LatencyP99)],
                    path: vec![service("order-api"), service("web")],
                    started_at: Some(Timestamp(START + 140 * 60)),
                },
                RootCauseCandidate {
                    entity: service("pricing"),
                    score: 0.3,
                    confidence: 0.12,
                    signals: vec![],
                    path: vec![service("pricing"), service("order-api"), service("web")],
                    started_at: None,
                },
            ],
        },
        status,
        first_seen: Timestamp(START + 140 * 60),
        check_id: "latency".to_owned(),
        check_name: LocalizedText {
            en: "Service latency".to_owned(),
            zh: "服务延迟".to_owned(),
        },
        runbook: LocalizedText {
            en: "1. Check slow queries on mysqld (SHOW PROCESSLIST).\n2. Look for a missing index on orders.user_id.".to_owned(),
            zh: "1. 在 mysqld 上查看慢查询（SHOW PROCESSLIST）。\n2. 检查 orders.user_id 是否缺少索引。".to_owned(),
        },
        mark: None,
        neighbourhood: neighbourhood(),
        profile: None,
    }
}

fn cpu_finding() -> ReportedFinding {
    let entity = EntityId::new(EntityKind::Container, "order-api-1");
    let (mut series, _, window) = latency_evidence(0.6, 1.9);
    series.values.iter_mut().for_each(|v| *v /= 1.0);
    ReportedFinding {
        finding: Finding {
            fingerprint: "fp-cpu".to_owned(),
            entity: entity.clone(),
            title: "order-api-1: CPU not released".to_owned(),
            severity: Severity::Warning,
            anomalies: vec![Anomaly {
                entity: entity.clone(),
                signal: SignalKind::Resource(ResourceMetric::CpuCores),
                window,
                score: 3.0,
                severity: Severity::Warning,
                evidence: Evidence {
                    baseline: 0.6,
                    observed: 1.9,
                    series: Some(series),
                    band: None,
                    summary: "CPU 1.9 cores while traffic is flat (0.6 expected).".to_owned(),
                },
            }],
            candidates: vec![RootCauseCandidate {
                entity: entity.clone(),
                score: 2.0,
                confidence: 0.7,
                signals: vec![SignalKind::Resource(ResourceMetric::CpuCores)],
                path: vec![entity.clone()],
                started_at: Some(window.start),
            }],
        },
        status: FindingStatus::StillOpen,
        first_seen: Timestamp(START - 86_400),
        check_id: "cpu".to_owned(),
        check_name: LocalizedText {
            en: "CPU".to_owned(),
            zh: "CPU".to_owned(),
        },
        runbook: LocalizedText {
            en: "Profile shows JSON encoding; check the order export job.".to_owned(),
            zh: "火焰图显示 JSON 编码占用最多；检查订单导出任务。".to_owned(),
        },
        mark: Some(FindingMark {
            fingerprint: "fp-cpu".to_owned(),
            kind: MarkKind::Acknowledged,
            reason: "export job being fixed".to_owned(),
            by: "alice".to_owned(),
            created: Timestamp(START),
            expires: Timestamp(END + 86_400),
        }),
        neighbourhood: vec![],
        profile: Some(cpu_profile()),
    }
}

fn suppressed_finding() -> ReportedFinding {
    let mut f = db_finding(FindingStatus::StillOpen);
    f.finding.fingerprint = "fp-batch".to_owned();
    f.finding.entity = service("batch");
    f.finding.title = "batch: error ratio up".to_owned();
    f.finding.severity = Severity::Info;
    f.finding.anomalies.truncate(1);
    f.finding.anomalies[0].entity = service("batch");
    f.finding.anomalies[0].signal = SignalKind::Request(RequestMetric::ErrorRatio);
    f.neighbourhood = vec![];
    f.mark = Some(FindingMark {
        fingerprint: "fp-batch".to_owned(),
        kind: MarkKind::Suppressed,
        reason: "nightly batch retries are expected".to_owned(),
        by: "bob".to_owned(),
        created: Timestamp(START),
        expires: Timestamp(END + 7 * 86_400),
    });
    f
}

fn stmt(
    server: EntityId,
    protocol: L7Protocol,
    verb: &str,
    shape: &str,
    p99: f64,
) -> StatementStats {
    StatementStats {
        server,
        protocol,
        request_type: verb.to_owned(),
        shape: shape.to_owned(),
        count: 123_456,
        errors: 12,
        latency_mean_ms: p99 / 5.0,
        latency_p99_ms: p99,
        latency_max_ms: p99 * 3.0,
    }
}

/// The full fixture in `language`.
pub fn report(language: Language) -> PatrolReport {
    let findings = vec![db_finding(FindingStatus::New), cpu_finding()];
    PatrolReport {
        id: "rep-20260302-1400".to_owned(),
        playbook_id: "daily".to_owned(),
        playbook_name: LocalizedText {
            en: "Daily patrol".to_owned(),
            zh: "每日巡检".to_owned(),
        },
        run_id: "run-1".to_owned(),
        language,
        generated: Timestamp(END + 30),
        window: TimeRange {
            start: Timestamp(START),
            end: Timestamp(END),
        },
        previous_report_id: Some("rep-20260301-1400".to_owned()),
        health_score: PatrolReport::score(&findings),
        findings,
        suppressed: vec![suppressed_finding()],
        resolved: vec![ResolvedFinding {
            fingerprint: "fp-old".to_owned(),
            entity: service("search"),
            title: "search: error ratio up".to_owned(),
            severity: Severity::Warning,
            first_seen: Timestamp(START - 2 * 86_400),
            last_seen: Timestamp(START - 86_400),
        }],
        slow_sql: vec![
            stmt(
                database(),
                L7Protocol::Mysql,
                "SELECT",
                "SELECT * FROM orders WHERE user_id = ?",
                350.0,
            ),
            stmt(
                database(),
                L7Protocol::Mysql,
                "UPDATE",
                "UPDATE stock SET qty = qty - ? WHERE sku = ?",
                48.0,
            ),
        ],
        slow_redis: vec![stmt(cache(), L7Protocol::Redis, "HGETALL", "cart:*", 12.5)],
        slos: vec![
            SloStatus {
                service: service("web"),
                objective: "availability".to_owned(),
                target: 0.999,
                threshold_ms: None,
                achieved: 0.9981,
                budget_remaining: -0.9,
                worst_burn_rate: 14.4,
            },
            SloStatus {
                service: service("web"),
                objective: "latency".to_owned(),
                target: 0.99,
                threshold_ms: Some(300.0),
                achieved: 0.995,
                budget_remaining: 0.5,
                worst_burn_rate: 0.8,
            },
        ],
        cpu_consumers: vec![CpuConsumer {
            entity: EntityId::new(EntityKind::Container, "order-api-1"),
            service: Some(service("order-api")),
            mean_cores: 1.62,
            peak_cores: 1.98,
            limit_cores: Some(2.0),
            profile: Some(cpu_profile()),
        }],
        coverage: Coverage {
            services: 9,
            services_with_data: 8,
            silent: vec![service("legacy-reports")],
            without_data: vec![],
            hosts: 3,
            hosts_with_data: 3,
            checks_run: 6,
            checks_failed: vec![("redis-slowlog".to_owned(), "timeout after 10 s".to_owned())],
        },
        summary: Some(
            "mysqld slowed down at 13:18; web and order-api latency followed.".to_owned(),
        ),
    }
}

/// A report with nothing found and full coverage.
pub fn empty_report(language: Language) -> PatrolReport {
    let mut report = report(language);
    report.findings.clear();
    report.suppressed.clear();
    report.resolved.clear();
    report.health_score = 100;
    report.summary = None;
    report.coverage = Coverage {
        services: 9,
        services_with_data: 9,
        hosts: 3,
        hosts_with_data: 3,
        checks_run: 6,
        ..Coverage::default()
    };
    report
}
