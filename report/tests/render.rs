//! Behaviour of the three renderings on hand-built reports: what a reader must
//! find in them, in which order, in which language, and what must never leak.

mod common;

use common::{empty_report, report, service};
use vigil_model::{FindingStatus, Language, PatrolReport};
use vigil_report::{render_html, render_json, render_markdown, RenderOptions, SCHEMA_VERSION};

fn html(report: &PatrolReport) -> String {
    render_html(report, &RenderOptions::default())
}

/// The text between `id="<id>"` and the end of its element (sections do not nest).
fn section<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).unwrap_or_else(|| panic!("page has {open}"));
    let end = page[start..].find(close).map_or(page.len(), |e| start + e);
    &page[start..end]
}

#[test]
fn untrusted_text_is_escaped() {
    let mut report = report(Language::En);
    report.slow_sql[0].shape = "SELECT '<script>alert(1)</script>' FROM t".to_owned();
    report.findings[0].finding.anomalies[0].evidence.summary =
        "<img src=x onerror=alert(2)>".to_owned();
    report.coverage.checks_failed[0].1 = "</td><script>alert(3)</script>".to_owned();
    report.summary = Some("<b>bold</b> & <script>alert(4)</script>".to_owned());
    report.findings[0].runbook.en = "<script>alert(5)</script>".to_owned();
    let page = html(&report);
    assert!(!page.contains("<script>alert"), "raw script leaked");
    assert!(!page.contains("<img src=x"), "raw img leaked");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(page.contains("&lt;b&gt;bold&lt;"));
    // The only scripts are inferno's, inside the escaped srcdoc of a flame graph.
    assert_eq!(
        page.matches("<script").count(),
        0,
        "no script in the page itself"
    );
}

#[test]
fn chinese_report_speaks_chinese() {
    let zh = html(&report(Language::Zh));
    let en = html(&report(Language::En));
    assert!(zh.contains("<html lang=\"zh-CN\">"));
    assert!(en.contains("<html lang=\"en\">"));
    for heading in [
        "新增问题",
        "持续问题",
        "根因候选",
        "处理建议",
        "慢 SQL",
        "覆盖率",
        "已屏蔽",
        "已恢复",
        "健康分",
        "每日巡检",
    ] {
        assert!(zh.contains(heading), "zh lacks {heading}");
        assert!(!en.contains(heading), "en has {heading}");
    }
    for heading in [
        "New findings",
        "Root-cause candidates",
        "What to do",
        "Slow SQL",
        "Coverage",
    ] {
        assert!(en.contains(heading), "en lacks {heading}");
        assert!(!zh.contains(heading), "zh has {heading}");
    }
    // Titles are derived in Chinese from the strongest anomaly, not the English title.
    assert!(zh.contains("web：P99 延迟升高"), "derived zh title");
    assert!(
        !zh.contains("p99 latency up (root cause"),
        "English title in zh"
    );
    assert!(zh.contains("在 mysqld 上查看慢查询"), "zh runbook");
    assert!(
        zh.contains(">新增<") && zh.contains(">持续<"),
        "zh status badges"
    );
}

#[test]
fn times_are_shown_in_the_readers_zone() {
    let page = html(&report(Language::En));
    // The window ends at 06:00 UTC, 14:00 in China.
    assert!(
        page.contains("2026-03-02 11:00 – 14:00 (UTC+08:00)"),
        "local window"
    );
    let utc = render_html(
        &report(Language::En),
        &RenderOptions {
            utc_offset_minutes: 0,
            ..RenderOptions::default()
        },
    );
    assert!(utc.contains("2026-03-02 03:00 – 06:00 (UTC+00:00)"));
}

#[test]
fn new_findings_come_first_with_their_evidence() {
    let page = html(&report(Language::En));
    let new_at = page.find("id=\"new-findings\"").expect("new section");
    let open_at = page.find("id=\"still-open\"").expect("still-open section");
    assert!(new_at < open_at, "new before still open");
    let first = section(&page, "id=\"finding-1\"", "</article>");
    assert!(first.contains("badge status new"));
    assert!(first.contains(">NEW<"));
    // Two of the three anomalies carry series: one chart each.
    assert_eq!(first.matches("<svg class=\"chart\"").count(), 2);
    assert_eq!(
        first.matches("class=\"band\"").count(),
        2,
        "one band per chart"
    );
    assert_eq!(
        first.matches("class=\"line\"").count(),
        4,
        "lines split by the gap"
    );
    assert_eq!(first.matches("class=\"anomaly-window\"").count(), 2);
    assert!(
        first.contains("p99 latency of web is 420 ms"),
        "summary sentence"
    );
    // Candidates table in rank order with confidences.
    let candidates = section(first, "class=\"candidates\"", "</table>");
    let db = candidates
        .find("database:mysqld@10.0.0.5:3306")
        .expect("db");
    let api = candidates.find("service:order-api").expect("order-api");
    assert!(db < api);
    assert!(candidates.contains("82%"));
    // Service graph: root cause and path highlighted, the whole neighbourhood drawn.
    let graph = section(first, "<svg class=\"service-graph\"", "</svg>");
    assert!(graph.contains("class=\"node root\" data-entity=\"database:mysqld@10.0.0.5:3306\""));
    assert_eq!(graph.matches("class=\"node path\"").count(), 2);
    assert_eq!(graph.matches("class=\"edge hot\"").count(), 2);
    assert_eq!(graph.matches("<g class=\"node").count(), 8);
    assert!(first.contains("Check slow queries on mysqld"));
}

#[test]
fn cpu_finding_has_a_flame_graph_with_the_heaviest_frame() {
    let page = html(&report(Language::En));
    let cpu = section(&page, "id=\"finding-2\"", "</article>");
    assert!(cpu.contains("badge status still-open"));
    assert!(cpu.contains("ACKNOWLEDGED") && cpu.contains("export job being fixed"));
    let frame = section(cpu, "<iframe class=\"flamegraph\"", "</iframe>");
    assert!(frame.contains("data-heaviest-frame=\"StringBuilder.append\""));
    assert!(
        frame.contains("StringBuilder.append"),
        "frame drawn in the graph"
    );
    assert!(
        frame.contains("srcdoc=\"&lt;!DOCTYPE html&gt;"),
        "svg escaped into srcdoc"
    );
    // The DB finding has no profile: no flame graph there.
    let db = section(&page, "id=\"finding-1\"", "</article>");
    assert!(!db.contains("flamegraph"));
    // Top CPU consumers carry one too.
    let consumers = section(&page, "id=\"cpu-consumers\"", "</section>");
    assert!(consumers.contains("class=\"flamegraph\""));
    assert!(consumers.contains("container:order-api-1"));
}

#[test]
fn suppressed_resolved_and_estate_tables_are_listed() {
    let page = html(&report(Language::En));
    let suppressed = section(&page, "id=\"suppressed\"", "</section>");
    assert!(suppressed.contains("nightly batch retries are expected"));
    assert!(suppressed.contains("SUPPRESSED"));
    assert!(suppressed.contains("bob"));
    let resolved = section(&page, "id=\"resolved\"", "</section>");
    assert!(resolved.contains("search: error ratio up"));
    let sql = section(&page, "id=\"slow-sql\"", "</section>");
    assert!(sql.contains("SELECT * FROM orders WHERE user_id = ?"));
    assert!(sql.contains("123,456") && sql.contains("350 ms"));
    let redis = section(&page, "id=\"slow-redis\"", "</section>");
    assert!(redis.contains("HGETALL") && redis.contains("12.5 ms"));
    let slos = section(&page, "id=\"slos\"", "</section>");
    assert!(slos.contains("class=\"breached\""), "overspent SLO flagged");
    assert!(slos.contains("99.90%") && slos.contains("14.4×") && slos.contains("-90%"));
    assert!(slos.contains("latency ≤ 300 ms"));
    let counts = section(&page, "id=\"counts\"", "</nav>");
    for n in [">1<", ">1<", ">1<", ">1<"] {
        assert!(counts.contains(n));
    }
}

#[test]
fn coverage_says_plainly_when_the_patrol_is_blind() {
    let page = html(&report(Language::En));
    let coverage = section(&page, "id=\"coverage\"", "</section>");
    assert!(coverage.contains("8 / 9 (89%)"));
    assert!(coverage.contains("service:legacy-reports"));
    assert!(coverage.contains("redis-slowlog") && coverage.contains("timeout after 10 s"));
    assert!(coverage.contains("partly blind"));

    let mut blind = empty_report(Language::En);
    blind.coverage.services_with_data = 0;
    let page = html(&blind);
    assert!(page.contains("id=\"coverage-warning\""));
    assert!(page.contains("The patrol is blind"));
    let page = html(&empty_report(Language::Zh));
    assert!(page.contains("所有服务和主机均有数据"));
    assert!(!page.contains("coverage-warning"));
}

#[test]
fn empty_report_says_no_findings() {
    let page = html(&empty_report(Language::En));
    assert!(page.contains("id=\"no-findings\""));
    assert!(page.contains("No findings"));
    assert!(!page.contains("id=\"finding-1\""));
    assert!(page.contains(">100<"), "perfect score shown");
    let zh = html(&empty_report(Language::Zh));
    assert!(zh.contains("未发现问题"));
    let md = render_markdown(&empty_report(Language::En), &RenderOptions::default());
    assert!(md.contains("No findings"), "{md}");
}

#[test]
fn llm_summary_is_labelled_as_machine_written() {
    let page = html(&report(Language::En));
    let summary = section(&page, "id=\"llm-summary\"", "</section>");
    assert!(summary.contains("machine-written"));
    assert!(summary.contains("mysqld slowed down at 13:18"));
    assert!(!html(&empty_report(Language::En)).contains("llm-summary"));
    assert!(html(&report(Language::Zh)).contains("摘要（机器生成）"));
}

#[test]
fn page_is_self_contained() {
    let page = html(&report(Language::En));
    for external in [
        "<link",
        "src=\"http",
        "href=\"http",
        "@import",
        "url(http",
        "<img",
    ] {
        assert!(!page.contains(external), "page loads {external}");
    }
}

#[test]
fn markdown_digest_puts_new_findings_first_with_root_cause() {
    let options = RenderOptions {
        report_url: Some("https://vigil.example/reports/rep-1".to_owned()),
        ..RenderOptions::default()
    };
    let md = render_markdown(&report(Language::En), &options);
    assert!(md.contains("Health score 65/100"), "{md}");
    assert!(
        md.contains("New findings 1 · Still open 1 · Resolved 1 · Suppressed 1"),
        "{md}"
    );
    let new_at = md.find("### New findings").expect("new heading");
    let open_at = md.find("### Still open").expect("open heading");
    assert!(new_at < open_at);
    assert!(
        md.contains("likely root cause: `database:mysqld@10.0.0.5:3306` 82%"),
        "{md}"
    );
    assert!(md.contains("p99 latency of web is 420 ms"), "{md}");
    assert!(
        md.ends_with("[Full report](https://vigil.example/reports/rep-1)"),
        "{md}"
    );
    let zh = render_markdown(&report(Language::Zh), &options);
    assert!(
        zh.contains("### 新增问题") && zh.contains("最可能根因"),
        "{zh}"
    );
    assert!(zh.contains("[完整报告]("), "{zh}");
}

#[test]
fn markdown_stays_under_the_byte_limit_with_many_findings() {
    let mut big = report(Language::Zh);
    let template = big.findings[0].clone();
    big.findings = (0..200)
        .map(|i| {
            let mut f = template.clone();
            f.finding.entity = service(&format!("服务-{i}"));
            f.status = if i % 3 == 0 {
                FindingStatus::StillOpen
            } else {
                FindingStatus::New
            };
            f
        })
        .collect();
    let options = RenderOptions {
        report_url: Some("https://vigil.example/r/1".to_owned()),
        ..RenderOptions::default()
    };
    let md = render_markdown(&big, &options);
    assert!(md.len() <= options.max_markdown_bytes, "{} bytes", md.len());
    assert!(md.contains("… 另有"), "{md}");
    assert!(
        md.contains("[完整报告](https://vigil.example/r/1)"),
        "link kept"
    );
    let more: usize = md
        .lines()
        .find_map(|l| l.strip_prefix("… 另有 "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of the rest");
    let shown = md.lines().filter(|l| l.starts_with("- ")).count();
    assert_eq!(shown + more, 200);
    // A tiny limit still yields valid UTF-8 under the limit.
    let tiny = render_markdown(
        &big,
        &RenderOptions {
            max_markdown_bytes: 101,
            ..RenderOptions::default()
        },
    );
    assert!(tiny.len() <= 101);
}

#[test]
fn markdown_neutralises_markup_in_untrusted_text() {
    let mut report = report(Language::En);
    report.findings[0].finding.anomalies[0].evidence.summary =
        "line one\n# heading <https://evil|click> *bold*".to_owned();
    let md = render_markdown(&report, &RenderOptions::default());
    assert!(!md.contains("\n# heading"), "{md}");
    assert!(!md.contains("<https://evil"), "{md}");
    assert!(md.contains("\\*bold\\*"), "{md}");
}

#[test]
fn json_is_versioned_and_keeps_gaps_as_null() {
    let value = render_json(&report(Language::En));
    assert_eq!(value["schema_version"], SCHEMA_VERSION);
    assert_eq!(value["kind"], "vigil.patrol-report");
    assert_eq!(value["counts"]["new"], 1);
    assert_eq!(value["counts"]["still_open"], 1);
    assert_eq!(value["counts"]["suppressed"], 1);
    assert_eq!(value["health_score"], 65);
    let series = &value["findings"][0]["finding"]["anomalies"][0]["evidence"]["series"]["values"];
    assert!(series[60].is_null(), "gap as null");
    assert!(series[0].is_number());
    let back: PatrolReport =
        serde_json::from_value(value).expect("the JSON reads back as a report");
    assert_eq!(back.findings.len(), 2);
}
