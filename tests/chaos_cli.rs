//! `vigil chaos` as a user runs it, without an estate: experiments are
//! validated with errors naming the line, and an interrupted experiment undoes
//! its fault (the hog process dies, the proxy port closes) and still writes a
//! report saying it was interrupted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_chaos::ValidationReport;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("vigil.yaml");
    std::fs::write(
        &path,
        format!(
            "store:\n  embedded:\n    path: {}\nlog:\n  level: warn\n",
            dir.join("vigil.db").display()
        ),
    )
    .expect("config");
    path
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {within:?}");
}

fn terminate(child: &mut Child) -> (bool, String) {
    let sent = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("stderr");
            return (status.success(), stderr);
        }
        assert!(
            Instant::now() < deadline,
            "vigil chaos did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn only_report(dir: &Path) -> ValidationReport {
    let reports: Vec<_> = std::fs::read_dir(dir)
        .expect("report dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    serde_json::from_str(&std::fs::read_to_string(&reports[0]).expect("read")).expect("parse")
}

fn pids_named(name: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-x", name])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A cpu-hog experiment with a one-second baseline; the hog gets a name of
/// its own, so no other test's hog is counted.
fn hog_experiment(dir: &Path, name: &str) -> std::path::PathBuf {
    let experiment = dir.join("hog.yaml");
    std::fs::write(
        &experiment,
        format!(
            "id: hog\nname: {{en: Hog, zh: 占用}}\nbaseline: 1s\nhold: 10m\ninjection:\n  kind: cpu-hog\n  process_name: {name}\nexpect:\n  root_cause: \"process:{name}@*\"\n"
        ),
    )
    .expect("experiment");
    experiment
}

#[test]
fn a_broken_experiment_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "id: broken\nname: {en: Broken, zh: 坏}\nbaseline: 1m\nhold: 0s\ninjection:\n  kind: cpu-hog\nexpect:\n  root_cause: \"process:x@*\"\n",
    )
    .expect("write");
    let out = vigil()
        .args(["chaos", "check", &file.display().to_string()])
        .output()
        .expect("vigil chaos check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4: hold: must be longer than zero",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn an_interrupted_cpu_hog_is_killed_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let name = format!("hog{}", std::process::id() % 1_000_000);
    let experiment = hog_experiment(dir.path(), &name);
    // The runner injects only while the patrol it watches is running: one
    // run of it now stands in for `vigil serve`'s schedule.
    let patrol = vigil()
        .args([
            "-c",
            &config.display().to_string(),
            "patrol",
            "run",
            "continuous",
        ])
        .output()
        .expect("vigil patrol run");
    assert!(patrol.status.success(), "{patrol:?}");
    let out = dir.path().join("out");
    let mut child = vigil()
        .args([
            "-c",
            &config.display().to_string(),
            "chaos",
            "run",
            &experiment.display().to_string(),
            "--out",
            &out.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil chaos run");
    wait_until("the hog starts", Duration::from_secs(20), || {
        !pids_named(&name).is_empty()
    });
    let pid = pids_named(&name);
    // It burns once injected: its CPU time grows.
    let cpu_ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    wait_until("the hog burns", Duration::from_secs(20), || {
        cpu_ticks() > 50
    });

    let (ok, stderr) = terminate(&mut child);
    assert!(!ok, "an interrupted experiment is no success");
    assert!(
        stderr.contains("interrupted; the fault was undone"),
        "{stderr}"
    );
    assert!(pids_named(&name).is_empty(), "the hog survived");
    let report = only_report(&out);
    assert!(report.interrupted && !report.passed);
    assert!(report.injected_at.is_some());
    assert!(
        report
            .undone
            .iter()
            .any(|u| u.starts_with(&format!("killed {name}"))),
        "{:?}",
        report.undone
    );
}

#[test]
fn without_a_running_patrol_nothing_is_injected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let name = format!("idle{}", std::process::id() % 1_000_000);
    let experiment = hog_experiment(dir.path(), &name);
    let out = vigil()
        .args([
            "-c",
            &config.display().to_string(),
            "chaos",
            "run",
            &experiment.display().to_string(),
            "--out",
            &dir.path().join("out").display().to_string(),
        ])
        .output()
        .expect("vigil chaos run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("playbook `continuous` has not run during the baseline"),
        "{stderr}"
    );
    assert!(pids_named(&name).is_empty(), "the idle hog was left behind");
}

#[test]
fn an_interrupted_error_burst_closes_its_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let port = free_port();
    let out = dir.path().join("out");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = vigil()
        .args([
            "-c",
            &config.display().to_string(),
            "chaos",
            "run",
            "error-burst",
            "--dir",
            &root.join("playbooks/chaos").display().to_string(),
            "--out",
            &out.display().to_string(),
        ])
        .env("VIGIL_CHAOS_PROXY_PORT", port.to_string())
        // Nothing listens there: the proxy answers 502 for it.
        .env(
            "VIGIL_CHAOS_UPSTREAM_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil chaos run");
    let get = || -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .write_all(b"GET /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    wait_until("the proxy listens", Duration::from_secs(20), || {
        get().is_some()
    });
    let answer = get().expect("proxy answers");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");

    let (ok, stderr) = terminate(&mut child);
    assert!(!ok);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        get().is_none(),
        "the proxy still listens after the experiment"
    );
    let report = only_report(&out);
    assert!(report.interrupted);
    assert_eq!(report.injected_at, None, "interrupted during the baseline");
    assert!(
        report
            .undone
            .iter()
            .any(|u| u.contains("stopped the proxy")),
        "{:?}",
        report.undone
    );
}
