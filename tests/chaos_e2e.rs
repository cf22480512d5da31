//! Chaos end to end, on one machine and all real: MariaDB, Redis and
//! ClickHouse (started by scripts/test.sh), three HTTP services of our own
//! (`vigil-estate`: frontend → orders → MariaDB, frontend → cart → Redis) under
//! steady load, `vigil-agent` capturing them with eBPF into ClickHouse, and
//! `vigil serve` running the continuous patrol every minute. Then `vigil chaos
//! run` injects cpu-hog, mysql-slow and redis-slow side by side (they hit
//! separate branches of the estate, and running them together keeps the test
//! under ten minutes): each must be detected with its true root cause in the
//! top 3, and the shared baseline must produce no finding.
//!
//! Needs root (eBPF). scripts/test.sh runs it with `--ignored` after building
//! the agent and the estate, and sets VIGIL_TEST_AGENT_BIN and
//! VIGIL_TEST_ESTATE_BIN; a plain `cargo test` skips it by name, never silently
//! inside (a missing variable fails the test).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_chaos::ValidationReport;

/// Child processes killed when the test ends, however it ends.
struct Processes(Vec<(String, Child)>);

impl Processes {
    fn spawn(&mut self, name: &str, command: &mut Command, log: &Path) {
        let file = std::fs::File::create(log).expect("log file");
        let child = command
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.to_owned(), child));
    }

    /// Panics (with the log) if a process has already exited.
    fn check_alive(&mut self, logs: &Path) {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
                panic!("{name} exited early ({status}):\n{log}");
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            // SIGTERM first so `vigil chaos` and the agent clean up.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn required_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run ./scripts/test.sh, which sets it"))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

fn wait_http(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not answer within {within:?}");
}

#[test]
#[ignore = "needs root, vigil-agent and the test estate: scripts/test.sh runs it with --ignored"]
fn chaos_experiments_are_detected_with_their_root_cause_in_the_top_3() {
    let agent_bin = required_env("VIGIL_TEST_AGENT_BIN");
    let estate_bin = required_env("VIGIL_TEST_ESTATE_BIN");
    let clickhouse = required_env("VIGIL_TEST_CLICKHOUSE_URL");
    let mysql = required_env("VIGIL_TEST_MYSQL_URL");
    let redis = required_env("VIGIL_TEST_REDIS_URL");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    // Keep the reports when asked (docs/chaos/ holds a committed example).
    let out: PathBuf =
        std::env::var_os("VIGIL_TEST_CHAOS_OUT").map_or_else(|| work.join("chaos"), PathBuf::from);
    let database = format!("vigil_chaos_{}", std::process::id());
    let (frontend, orders, cart, api) = (free_port(), free_port(), free_port(), free_port());

    std::fs::create_dir_all(work.join("playbooks")).expect("playbooks dir");
    std::fs::copy(
        root.join("tests/chaos/continuous.yaml"),
        work.join("playbooks/continuous.yaml"),
    )
    .expect("lab playbook");
    let config = work.join("vigil.yaml");
    std::fs::write(
        &config,
        format!(
            "store:\n  embedded:\n    path: {state}\n  clickhouse:\n    url: {clickhouse}\n    database: {database}\n    request_log: agent\n\
             patrol:\n  playbooks_dir: {playbooks}\n  report_dir: {reports}\n  disabled: [daily-report, slo, services, mysql, redis, resources, network, risks, coverage]\n\
             analyzer:\n  guards:\n    hold_points: 2\n\
             api:\n  listen: 127.0.0.1:{api}\n\
             log:\n  level: info\n",
            state = work.join("vigil.db").display(),
            playbooks = work.join("playbooks").display(),
            reports = work.join("reports").display(),
        ),
    )
    .expect("config");
    // Profiles only the servers: symbolising the debug builds of the hog (the
    // whole vigil binary) and the estate would cost the agent hundreds of MiB.
    // No circuit breaker: CI machines run at a high load on purpose.
    let agent_config = work.join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "capture:\n  server_ports: [{mysql_port}, {redis_port}, {frontend}, {orders}, {cart}]\n\
             profile:\n  process_matcher: \"^(mariadbd|mysqld|redis-server)$\"\n\
             resources:\n  process_matcher: \"^(mariadbd|mysqld|redis-server|vigil-estate|cpu-hog)$\"\n\
             circuit_breaker:\n  enabled: false\n\
             limits:\n  max_memory: 1024\n\
             export:\n  clickhouse:\n    url: {clickhouse}\n    database: {database}\n  spool_dir: {spool}\n\
             docker:\n  enabled: false\n",
            mysql_port = port_of(&mysql),
            redis_port = port_of(&redis),
            spool = work.join("spool").display(),
        ),
    )
    .expect("agent config");

    let migrated = Command::new(vigil)
        .args(["-c", &config.display().to_string(), "db", "migrate"])
        .output()
        .expect("vigil db migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    let seeded = Command::new(&estate_bin)
        .args(["seed", "--mysql", &mysql])
        .output()
        .expect("seed");
    assert!(seeded.status.success(), "seeding MariaDB: {seeded:?}");

    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let log = |name: &str| logs.join(format!("{name}.log"));
    let mut processes = Processes(Vec::new());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    processes.spawn(
        "orders",
        Command::new(&estate_bin).args(["serve", "--listen", &listen(orders), "--mysql", &mysql]),
        &log("orders"),
    );
    processes.spawn(
        "cart",
        Command::new(&estate_bin).args(["serve", "--listen", &listen(cart), "--redis", &redis]),
        &log("cart"),
    );
    processes.spawn(
        "frontend",
        Command::new(&estate_bin).args([
            "serve",
            "--listen",
            &listen(frontend),
            "--call",
            &format!("http://127.0.0.1:{orders}/"),
            "--call",
            &format!("http://127.0.0.1:{cart}/"),
        ]),
        &log("frontend"),
    );
    wait_http(
        &format!("http://127.0.0.1:{frontend}/"),
        Duration::from_secs(20),
    );
    processes.spawn(
        "agent",
        Command::new(&agent_bin).args(["run", "-c", &agent_config.display().to_string()]),
        &log("agent"),
    );
    // The agent attaches in a few seconds; traffic before that is not needed.
    std::thread::sleep(Duration::from_secs(5));
    processes.check_alive(&logs);
    processes.spawn(
        "load",
        Command::new(&estate_bin).args([
            "load",
            "--url",
            &format!("http://127.0.0.1:{frontend}/"),
            "--rate",
            "20",
        ]),
        &log("load"),
    );
    processes.spawn(
        "serve",
        Command::new(vigil).args(["-c", &config.display().to_string(), "serve"]),
        &log("serve"),
    );
    wait_http(
        &format!("http://127.0.0.1:{api}/healthz"),
        Duration::from_secs(30),
    );

    let experiments = ["cpu-hog", "mysql-slow", "redis-slow"];
    let mut runs = Vec::new();
    for experiment in experiments {
        let child = Command::new(vigil)
            .args([
                "-c",
                &config.display().to_string(),
                "chaos",
                "run",
                experiment,
                "--dir",
                &root.join("playbooks/chaos").display().to_string(),
                "--out",
                &out.display().to_string(),
                "--baseline",
                "3m",
                "--hold",
                "5m",
                "--recovery",
                "30s",
                "--poll",
                "5s",
            ])
            .env("VIGIL_CHAOS_MYSQL_URL", &mysql)
            .env("VIGIL_CHAOS_REDIS_URL", &redis)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigil chaos run");
        runs.push((experiment, child));
    }
    let mut outputs = Vec::new();
    for (experiment, child) in runs {
        let output = child.wait_with_output().expect("chaos run output");
        outputs.push((experiment, output));
    }
    processes.check_alive(&logs);

    let mut summary = Vec::new();
    for (experiment, output) in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report_path = std::fs::read_dir(&out)
            .expect("chaos out dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{experiment}-")))
            })
            .max()
            .unwrap_or_else(|| panic!("{experiment}: no report\n{stdout}\n{stderr}"));
        let report: ValidationReport =
            serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
                .expect("report parses");
        summary.push(format!(
            "{experiment}: passed {} visible {} rank {:?} ttd {:?} s ttrc {:?} s false {}\n{stdout}{stderr}",
            report.passed,
            report.visible,
            report.root_cause_rank,
            report.time_to_detection_secs(),
            report.time_to_root_cause_secs(),
            report.baseline_findings.len()
        ));
        let html = report_path.with_extension("en.html");
        assert!(html.is_file(), "{} missing", html.display());
    }
    let summary = summary.join("\n");
    eprintln!("{summary}");
    for (experiment, output) in &outputs {
        assert!(
            output.status.success(),
            "{experiment} did not pass:\n{summary}\nserve log:\n{}",
            std::fs::read_to_string(log("serve"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("finished"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The hog is gone: the injector undid itself.
    let hogs = Command::new("pgrep")
        .args(["-x", "cpu-hog"])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&hogs.stdout).trim().is_empty(),
        "a cpu-hog survived its experiment"
    );
}
