//! Architecture invariants, checked from `cargo metadata` and the source tree:
//! dependencies point one way, and every crate says what it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Normal (non-dev, non-build) dependencies of every workspace package.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_owned();
        let dependencies = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|dep| dep["kind"].is_null())
            .map(|dep| dep["name"].as_str().expect("dependency name").to_owned())
            .collect();
        packages.insert(name, dependencies);
    }
    packages
}

const WORKSPACE_CRATES: &[&str] = &[
    "vigil",
    "vigil-model",
    "vigil-store",
    "vigil-sim",
    "vigil-analyzer",
    "vigil-knowledge-graph",
    "vigil-playbooks",
    "vigil-report",
    "vigil-notify",
    "vigil-scheduler",
    "vigil-api",
    "vigil-assistant",
    "vigil-chaos",
    "vigil-test-estate",
    "vigil-agent",
];

/// Crates that do IO (runtimes, database clients, HTTP): never in the pure crates.
const IO_CRATES: &[&str] = &[
    "tokio",
    "clickhouse",
    "rusqlite",
    "axum",
    "hyper",
    "reqwest",
    "async-openai",
    "aya",
    "lettre",
];

fn internal(deps: &BTreeSet<String>) -> BTreeSet<&str> {
    deps.iter()
        .map(String::as_str)
        .filter(|d| WORKSPACE_CRATES.contains(d))
        .collect()
}

fn assert_internal_subset(
    packages: &BTreeMap<String, BTreeSet<String>>,
    name: &str,
    allowed: &[&str],
) {
    let deps = packages
        .get(name)
        .unwrap_or_else(|| panic!("{name} is a workspace member"));
    let extra: Vec<&str> = internal(deps)
        .into_iter()
        .filter(|d| !allowed.contains(d))
        .collect();
    assert!(
        extra.is_empty(),
        "{name} must not depend on {extra:?} (allowed: {allowed:?})"
    );
}

fn assert_no_io(packages: &BTreeMap<String, BTreeSet<String>>, name: &str) {
    let deps = &packages[name];
    let io: Vec<&&str> = IO_CRATES.iter().filter(|c| deps.contains(**c)).collect();
    assert!(io.is_empty(), "{name} must stay pure but depends on {io:?}");
}

#[test]
fn every_workspace_crate_is_present() {
    let packages = workspace_dependencies();
    for name in WORKSPACE_CRATES {
        assert!(packages.contains_key(*name), "workspace lacks {name}");
    }
}

#[test]
fn model_is_pure_and_at_the_bottom() {
    let packages = workspace_dependencies();
    assert_internal_subset(&packages, "vigil-model", &[]);
    assert_no_io(&packages, "vigil-model");
}

#[test]
fn analysis_crates_see_only_the_model() {
    let packages = workspace_dependencies();
    for name in ["vigil-analyzer", "vigil-knowledge-graph"] {
        assert_internal_subset(&packages, name, &["vigil-model"]);
        assert_no_io(&packages, name);
    }
}

#[test]
fn telemetry_crates_point_down_only() {
    let packages = workspace_dependencies();
    assert_internal_subset(&packages, "vigil-store", &["vigil-model"]);
    assert_internal_subset(&packages, "vigil-sim", &["vigil-model"]);
    assert_no_io(&packages, "vigil-sim");
}

#[test]
fn playbooks_evaluate_through_the_model_only() {
    let packages = workspace_dependencies();
    // Playbooks reach telemetry through `&dyn TelemetrySource`, never a concrete store.
    assert_internal_subset(
        &packages,
        "vigil-playbooks",
        &["vigil-model", "vigil-analyzer", "vigil-knowledge-graph"],
    );
    for forbidden in ["clickhouse", "rusqlite", "axum", "hyper"] {
        assert!(
            !packages["vigil-playbooks"].contains(forbidden),
            "playbooks use {forbidden}"
        );
    }
}

#[test]
fn reports_render_the_model_without_io() {
    let packages = workspace_dependencies();
    assert_internal_subset(&packages, "vigil-report", &["vigil-model"]);
    assert_no_io(&packages, "vigil-report");
}

#[test]
fn notifications_know_messages_not_analysis() {
    let packages = workspace_dependencies();
    assert_internal_subset(&packages, "vigil-notify", &["vigil-model"]);
}

#[test]
fn scheduler_knows_jobs_and_time_only() {
    let packages = workspace_dependencies();
    assert_internal_subset(&packages, "vigil-scheduler", &["vigil-model"]);
}

#[test]
fn only_the_api_speaks_http_server_side() {
    let packages = workspace_dependencies();
    // Besides Vigil's API: the chaos error-burst proxy and the test estate's
    // services are HTTP servers by nature, and neither serves Vigil's data.
    for (name, deps) in &packages {
        if !["vigil-api", "vigil-chaos", "vigil-test-estate"].contains(&name.as_str()) {
            assert!(
                !deps.contains("axum"),
                "{name} depends on axum; HTTP belongs to vigil-api"
            );
        }
    }
}

#[test]
fn assistant_reasons_over_the_analysis_crates_only() {
    let packages = workspace_dependencies();
    // The assistant reads telemetry through `&dyn TelemetrySource`: no store, no
    // HTTP server; the API and the binary call it.
    assert_internal_subset(
        &packages,
        "vigil-assistant",
        &[
            "vigil-model",
            "vigil-analyzer",
            "vigil-knowledge-graph",
            "vigil-playbooks",
        ],
    );
    for forbidden in ["axum", "rusqlite", "clickhouse"] {
        assert!(
            !packages["vigil-assistant"].contains(forbidden),
            "vigil-assistant uses {forbidden}"
        );
    }
}

#[test]
fn chaos_injects_and_reads_through_the_model_only() {
    let packages = workspace_dependencies();
    // Findings come through `PatrolObserver` and telemetry through
    // `&dyn TelemetrySource`, both implemented by the binary.
    assert_internal_subset(&packages, "vigil-chaos", &["vigil-model"]);
    for forbidden in ["rusqlite", "clickhouse", "vigil-store", "vigil-playbooks"] {
        assert!(
            !packages["vigil-chaos"].contains(forbidden),
            "vigil-chaos uses {forbidden}"
        );
    }
    // The lab's services are a stand-in for a customer's, not part of Vigil.
    assert_internal_subset(&packages, "vigil-test-estate", &[]);
}

#[test]
fn only_the_binary_wires_concrete_parts() {
    let packages = workspace_dependencies();
    for (name, deps) in &packages {
        if name == "vigil" {
            continue;
        }
        assert!(!deps.contains("vigil"), "{name} depends on the binary");
        if name != "vigil-agent" {
            assert!(!deps.contains("vigil-api"), "{name} depends on vigil-api");
        }
    }
}

#[test]
fn every_crate_root_opens_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let roots = [
        "src/main.rs",
        "telemetry/model/src/lib.rs",
        "telemetry/store/src/lib.rs",
        "telemetry/sim/src/lib.rs",
        "analyzer/src/lib.rs",
        "knowledge-graph/src/lib.rs",
        "playbooks/src/lib.rs",
        "report/src/lib.rs",
        "notify/src/lib.rs",
        "scheduler/src/lib.rs",
        "api/src/lib.rs",
        "assistant/src/lib.rs",
        "agent/src/lib.rs",
    ];
    for file in roots {
        let text =
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.starts_with("//!"),
            "{file} must open with a //! doc saying what the crate owns"
        );
    }
}
