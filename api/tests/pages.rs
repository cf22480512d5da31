//! The web pages in headless Chromium (Debian's `chromium`): the server runs on
//! a loopback port over a simulated estate with an open incident; each page's
//! final DOM holds the expected content, the console stays clean, and a
//! screenshot is a real picture. Chromium missing is a failure, never a skip.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{at_minute, fixture, post_json, send, MYSQL_START};
use tokio_util::sync::CancellationToken;
use vigil_api::bench::alertmanager_payload;
use vigil_api::{ApiConfig, ApiDeps, AppState};
use vigil_model::TelemetrySource;
use vigil_store::embedded::EmbeddedStore;

const TIMEOUT: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let full = dir.join(name);
            if full.is_file() {
                return full;
            }
        }
    }
    panic!("chromium is not installed: apt-get install chromium");
}

/// Runs headless Chromium on `url`; returns (stdout, stderr).
fn browse(url: &str, extra: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stderr = err.join().expect("stderr reader");
    assert!(status.success(), "chromium failed: {stderr}");
    (out.join().expect("stdout reader"), stderr)
}

fn console_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| {
            line.contains(":CONSOLE")
                || line.contains("Uncaught")
                || line.contains("Failed to load resource")
                || line.contains("net::ERR_")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_headless_chromium() {
    let fixture = fixture().await;
    let at = at_minute(MYSQL_START + 10);
    let store = Arc::new(EmbeddedStore::open_in_memory().expect("state store"));
    let source: Arc<dyn TelemetrySource> = fixture.telemetry.clone();
    let deps = ApiDeps {
        source,
        store,
        scheduler: None,
        notifier: None,
        clock: Some(Arc::new(move || at)),
        ingest: None,
    };
    // Open an incident through the API.
    let seeding = common::router(Arc::new(AppState::new(ApiConfig::default(), deps.clone())));
    let (status, text) = send(
        &seeding,
        post_json(
            "/api/v1/alerts/alertmanager",
            alertmanager_payload("page-1", fixture.gateway.name(), at),
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    let id = answer["results"][0]["incident_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(vigil_api::serve_on(
        listener,
        ApiConfig::default(),
        deps,
        shutdown.clone(),
    ));
    let cause = fixture.mysql.root_cause.to_string();
    let checks: Vec<(String, Vec<String>)> = vec![
        (
            format!("{base}/"),
            vec!["Open incidents (1)".to_owned(), "HighLatency".to_owned()],
        ),
        (
            format!("{base}/incidents/{id}"),
            vec![
                cause.clone(),
                "Confirm top cause".to_owned(),
                "Suggested root causes".to_owned(),
            ],
        ),
        (format!("{base}/incidents"), vec![id.clone()]),
        (
            format!("{base}/reports"),
            vec!["No report stored yet".to_owned()],
        ),
        (
            format!("{base}/graph?at={}", at.secs()),
            vec![
                "id=\"service-graph\"".to_owned(),
                "node cause".to_owned(),
                "node symptom".to_owned(),
            ],
        ),
        (
            format!("{base}/chat?at={}&q=why%20is%20order-api%20slow", at.secs()),
            vec!["data-done=\"1\"".to_owned(), cause.clone()],
        ),
    ];
    for (url, expected) in checks {
        let (dom, stderr) = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                browse(
                    &url,
                    &[
                        "--dump-dom".to_owned(),
                        "--virtual-time-budget=15000".to_owned(),
                    ],
                )
            }
        })
        .await
        .expect("browser thread");
        let problems = console_problems(&stderr);
        assert!(
            problems.is_empty(),
            "{url}: console problems:\n{}",
            problems.join("\n")
        );
        for text in expected {
            assert!(dom.contains(&text), "{url}: {text:?} missing from\n{dom}");
        }
    }
    // A screenshot of the incident page is a real picture.
    let shot = tempfile::tempdir().expect("dir");
    let png = shot.path().join("incident.png");
    let url = format!("{base}/incidents/{id}");
    let args = vec![
        format!("--screenshot={}", png.display()),
        "--window-size=1200,900".to_owned(),
    ];
    tokio::task::spawn_blocking(move || browse(&url, &args))
        .await
        .expect("browser thread");
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        bytes.len()
    );
    shutdown.cancel();
    server
        .await
        .expect("server task")
        .expect("server stopped cleanly");
}
