//! A patrol run notifies through the configured routes: the digest reaches a
//! real local HTTP receiver (standing in for a chat bot), and the delivery is
//! recorded; a suppressed finding is not notified again.

use std::process::Command;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn vigil(dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(dir)
        .env_remove("VIGIL_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("vigil runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{args:?}: {stdout}{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_digest_reaches_the_webhook_and_is_recorded() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "store:\n  embedded:\n    path: state.db\npatrol:\n  report_dir: reports\n  base_url: http://vigil.example:8080\nnotify:\n  channels:\n    ops:\n      type: webhook\n      url: {}/hook\n      secret: s3cret\n  routes:\n    - {{name: all, min_severity: warning, channels: [ops]}}\n",
        receiver.uri()
    );
    std::fs::write(dir.path().join("vigil.yaml"), config).expect("config");
    let start = 1_704_067_200_i64;
    let dir_path = dir.path().to_owned();
    let end = (start + 36 * 3600).to_string();
    let stdout = tokio::task::spawn_blocking(move || {
        vigil(
            &dir_path,
            &[
                "-c",
                "vigil.yaml",
                "demo",
                "--services",
                "10",
                "--hours",
                "12",
                "--start",
                &start.to_string(),
            ],
        );
        vigil(
            &dir_path,
            &[
                "-c",
                "vigil.yaml",
                "patrol",
                "run",
                "daily-report",
                "--at",
                &end,
            ],
        )
    })
    .await
    .expect("runs");
    assert!(
        stdout.contains("Notifications: 1 of 1 delivered"),
        "{stdout}"
    );

    let received = receiver.received_requests().await.expect("recorded");
    // The demo's own run and the manual one each sent one digest.
    assert_eq!(received.len(), 2, "one digest per run");
    let last = received.last().expect("a request");
    assert!(
        last.headers.contains_key("x-vigil-signature"),
        "signed with the channel secret"
    );
    let body: serde_json::Value = serde_json::from_slice(&last.body).expect("JSON body");
    let text = body.to_string();
    assert!(text.contains("Daily patrol report"), "{text}");
    assert!(
        text.contains("http://vigil.example:8080/reports/"),
        "links to the full report: {text}"
    );
}
