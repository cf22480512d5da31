//! The `vigil` binary end to end: the README's main command, config errors and
//! an unreachable ClickHouse, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

fn vigil(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .env_remove("VIGIL_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("vigil runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_panic(output: &Output) {
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "vigil panicked:\n{stderr}");
}

#[test]
fn demo_stores_an_estate_and_shows_every_planted_fault() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = vigil(
        &[
            "demo",
            "--services",
            "10",
            "--hours",
            "12",
            "--db",
            "demo.db",
            "--start",
            "1704067200",
        ],
        dir.path(),
    );
    assert_no_panic(&output);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        dir.path().join("demo.db").exists(),
        "the store file was not written"
    );
    for kind in vigil_model::FaultKind::ALL {
        assert!(
            stdout.contains(kind.as_str()),
            "{kind} missing from the demo output:\n{stdout}"
        );
    }
    let report = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Open the report: "))
        .unwrap_or_else(|| panic!("no report path printed:\n{stdout}"));
    let html = std::fs::read_to_string(dir.path().join(report)).expect("the report was written");
    assert!(html.contains("<svg"), "the report draws its evidence");
    assert!(
        stdout.contains("of 6 planted faults have their root cause"),
        "{stdout}"
    );
}

/// The fingerprints `vigil patrol run` printed.
fn fingerprints(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("fingerprint "))
        .filter_map(|rest| rest.split(';').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn patrols_run_by_hand_keep_identity_and_honour_suppressions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let start = 1_704_067_200_i64;
    let demo = vigil(
        &[
            "demo",
            "--services",
            "10",
            "--hours",
            "12",
            "--db",
            "state.db",
            "--start",
            &start.to_string(),
        ],
        dir.path(),
    );
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    let end = (start + 36 * 3600).to_string();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("VIGIL_CONFIG")
            .env("VIGIL_STORE__EMBEDDED__PATH", "state.db")
            .env("RUST_LOG", "warn")
            .output()
            .expect("vigil runs");
        assert_no_panic(&output);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {stdout}{}",
            text(&output.stderr)
        );
        stdout
    };
    let first = run(&["patrol", "run", "daily-report", "--at", &end]);
    let found = fingerprints(&first);
    assert!(!found.is_empty(), "{first}");
    let second = run(&["patrol", "run", "daily-report", "--at", &end]);
    assert_eq!(fingerprints(&second), found, "same findings, same identity");
    assert!(
        second.contains(&format!("0 new, {} still open", found.len())),
        "{second}"
    );

    run(&[
        "finding",
        "suppress",
        &found[0],
        "--reason",
        "known, ticket OPS-1",
        "--for",
        "3d",
    ]);
    let marks = run(&["finding", "marks"]);
    assert!(
        marks.contains("OPS-1") && marks.contains(&found[0]),
        "{marks}"
    );
    let third = run(&["patrol", "run", "daily-report", "--at", &end]);
    assert!(third.contains("1 suppressed"), "{third}");

    let history = run(&["patrol", "history", "daily-report"]);
    assert!(
        history
            .lines()
            .filter(|l| l.contains("daily-report"))
            .count()
            >= 4,
        "{history}"
    );
    let reports = run(&["report", "list", "daily-report"]);
    let zh = reports
        .split_whitespace()
        .find(|word| word.ends_with("-zh"))
        .unwrap_or_else(|| panic!("no Chinese report listed:\n{reports}"))
        .to_owned();
    run(&["report", "show", &zh, "--out", "zh.html"]);
    let html = std::fs::read_to_string(dir.path().join("zh.html")).expect("report written");
    assert!(
        html.contains("lang=\"zh-CN\"") && html.contains("根因"),
        "a Chinese report"
    );
}

#[test]
fn a_broken_user_playbook_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let books = dir.path().join("playbooks");
    std::fs::create_dir_all(&books).expect("dir");
    std::fs::write(
        books.join("mine.yaml"),
        "id: mine\nname: {en: Mine}\nschedule: \"*/5 * * * *\"\nchecks:\n  - id: cpu\n    detector: cpu\n    params:\n      min_ratio: 3\n",
    )
    .expect("write");
    let output = vigil(&["patrol", "check", "playbooks"], dir.path());
    assert_no_panic(&output);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("mine.yaml:8"), "{stderr}");
    assert!(stderr.contains("checks[0].params.min_ratio"), "{stderr}");
    std::fs::write(
        books.join("mine.yaml"),
        "id: mine\nname: {en: Mine}\nschedule: \"0 61 * * *\"\nchecks:\n  - id: cpu\n    detector: cpu\n",
    )
    .expect("write");
    let output = vigil(&["patrol", "check", "playbooks"], dir.path());
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("mine") && stderr.contains("schedule"),
        "{stderr}"
    );
}

#[test]
fn config_check_names_the_bad_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "store:\n  embedded:\n    retention_dayz: 3\n",
    )
    .expect("write config");
    let output = vigil(&["config", "check", "bad.yaml"], dir.path());
    assert_no_panic(&output);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");
    assert!(stderr.contains("retention_dayz"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn config_check_accepts_the_shipped_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in [
        "deploy/vigil.yaml",
        "deploy/vigil-clickhouse.yaml",
        "deploy/vigil-notify.yaml",
    ] {
        let output = vigil(&["config", "check", example], root);
        assert!(
            output.status.success(),
            "{example}: {}",
            text(&output.stderr)
        );
        let printed = text(&output.stdout);
        assert!(
            !printed.contains("REPLACE_ME"),
            "{example}: secrets printed:\n{printed}"
        );
    }
}

#[test]
fn unreachable_clickhouse_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("vigil.yaml"),
        "store:\n  embedded:\n    path: state.db\n  clickhouse:\n    url: http://127.0.0.1:1\n",
    )
    .expect("write config");
    let output = vigil(&["-c", "vigil.yaml", "db", "migrate"], dir.path());
    assert_no_panic(&output);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:1"),
        "the error should name the address:\n{stderr}"
    );
    assert!(
        stderr.lines().filter(|l| l.starts_with("error")).count() == 1,
        "{stderr}"
    );
}

#[test]
fn prune_deletes_telemetry_older_than_the_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 2024-01-01: far older than the default 14 days of retention.
    let demo = vigil(
        &[
            "demo",
            "--services",
            "4",
            "--hours",
            "2",
            "--no-faults",
            "--db",
            "old.db",
            "--start",
            "1704067200",
        ],
        dir.path(),
    );
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["db", "prune"])
        .current_dir(dir.path())
        .env_remove("VIGIL_CONFIG")
        .env("VIGIL_STORE__EMBEDDED__PATH", "old.db")
        .output()
        .expect("vigil runs");
    assert_no_panic(&output);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let chunks: usize = stdout
        .split("deleted ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk count in {stdout:?}"));
    assert!(chunks > 0, "nothing was pruned: {stdout}");
}

/// A three-service chain `front → middle → db` where `db` slows down at the
/// reported time and the slowdown shows upstream.
fn write_chain_case(dir: &Path) {
    let mut csv = String::from("time,front_latency,middle_latency,db_latency\n");
    for step in 0..300u32 {
        // Deterministic, independent wiggles so every series has its own noise.
        let wiggle = |prime: u32, modulus: u32| {
            f64::from((step * prime) % modulus) / f64::from(modulus) - 0.5
        };
        let fault = if step >= 250 { 40.0 } else { 0.0 };
        let db = 5.0 + wiggle(7919, 13) + fault;
        let middle = 10.0 + wiggle(104_729, 17) + db;
        let front = 20.0 + wiggle(1_299_709, 19) + middle;
        csv.push_str(&format!(
            "{},{front:.3},{middle:.3},{db:.3}\n",
            1_700_000_000 + step * 60
        ));
    }
    std::fs::write(dir.join("data.csv"), csv).expect("data.csv");
    std::fs::write(
        dir.join("inject_time.txt"),
        format!("{}\n", 1_700_000_000 + 250 * 60),
    )
    .expect("inject_time.txt");
    std::fs::write(
        dir.join("graph.json"),
        r#"{"nodes":["front","middle","db"],"edges":[{"from":"front","to":"middle","relation":"calls"},{"from":"middle","to":"db","relation":"calls"}]}"#,
    )
    .expect("graph.json");
}

#[test]
fn rca_ranks_the_slowed_dependency_first_as_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_chain_case(dir.path());
    let output = vigil(&["rca", "--case", ".", "--json"], dir.path());
    assert_no_panic(&output);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let candidates = answer["candidates"].as_array().expect("candidates array");
    assert_eq!(candidates[0]["entity"], "db", "{answer:#}");
    assert!(candidates[0]["score"].as_f64().is_some(), "{answer:#}");
}

#[test]
fn rca_names_the_file_and_line_of_bad_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_chain_case(dir.path());
    let mut csv = std::fs::read_to_string(dir.path().join("data.csv")).expect("read");
    csv.push_str("1700018000,1.0,not-a-number,2.0\n");
    std::fs::write(dir.path().join("data.csv"), csv).expect("write");
    let output = vigil(&["rca", "--case", "."], dir.path());
    assert_no_panic(&output);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("data.csv"), "{stderr}");
    assert!(
        stderr.contains("302"),
        "the error should name line 302:\n{stderr}"
    );
}
