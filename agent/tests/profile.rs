//! On-CPU profiling (root): a busy-loop process dominates its own profile,
//! with its named function symbolised.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vigil_agent::bpf::{ProbeOptions, Probes};
use vigil_agent::profile::Profiler;
use vigil_model::{TelemetrySource, TimeRange, Timestamp};
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore, RequestLog};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_dominates_its_profile_with_a_symbolised_frame() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("vigil-busy");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/busy.c");
    let built = Command::new("clang")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(source)
        .status()
        .expect("clang");
    assert!(built.success());
    let child = Killed(Command::new(&binary).spawn().expect("spawn busy loop"));
    let pid = child.0.id();

    let mut probes = Probes::load(&ProbeOptions {
        l7: false,
        profile_hz: Some(99),
        ..ProbeOptions::default()
    })
    .expect("eBPF programs load and attach");
    let mut profiler = Profiler::new("^vigil-busy$", "127.0.0.1").expect("profiler");
    let targets = profiler.refresh_targets(&mut probes).expect("targets");
    assert_eq!(targets.get(&pid).map(String::as_str), Some("vigil-busy"));

    // Collect until 150 samples (~1.5 s of one CPU at 99 Hz) of the busy loop are in.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut samples = 0;
    while samples < 150 {
        assert!(Instant::now() < deadline, "only {samples} samples");
        std::thread::sleep(Duration::from_millis(250));
        samples += profiler.collect(&mut probes).expect("collect");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let minute = Timestamp::from_secs(now).floor_to(60);
    let range = TimeRange::new(minute, minute.plus_secs(60)).expect("range");
    let profiles = profiler.flush(range);
    let profile = profiles
        .iter()
        .find(|p| p.entity.as_str().ends_with(&format!("#{pid}")))
        .expect("a profile of the busy loop");
    assert_eq!(profile.unit, "samples");
    let total = profile.total();
    let in_loop: u64 = profile
        .stacks
        .iter()
        .filter(|s| s.frames.split(';').any(|f| f == "vigil_busy_loop"))
        .map(|s| s.value)
        .sum();
    assert!(
        in_loop * 10 >= total * 9,
        "vigil_busy_loop in {in_loop} of {total} samples: {:#?}",
        &profile.stacks[..profile.stacks.len().min(5)]
    );
    assert!(
        profile.stacks[0].frames.starts_with("vigil-busy;"),
        "{}",
        profile.stacks[0].frames
    );

    // Stored in the real ClickHouse and read back through TelemetrySource.
    let config = ClickHouseConfig {
        url: common::env("VIGIL_TEST_CLICKHOUSE_URL"),
        request_log: RequestLog::Agent,
        ..ClickHouseConfig::default()
    }
    .with_database_suffix(&format!("agentprof_{pid}_{now}"));
    let store = ClickHouseStore::connect(config).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
        .write_profiles(std::slice::from_ref(profile))
        .await
        .expect("write profiles");
    let read = store
        .profile(&profile.entity, range)
        .await
        .expect("read profile");
    assert_eq!(read.total(), total);
    assert!(
        read.stacks[0].frames.contains("vigil_busy_loop"),
        "{}",
        read.stacks[0].frames
    );
}
