//! CPU/memory from /proc and TCP trouble from the tcp/sock tracepoints (root).

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use vigil_agent::bpf::{ProbeOptions, Probes};
use vigil_agent::container::Identities;
use vigil_agent::resources::{tcp_series, usage_series, ProcSampler};
use vigil_agent::wire::TcpTrouble;
use vigil_model::{ResourceMetric, Timestamp};

#[test]
fn failed_connections_are_counted_per_peer() {
    common::require_root();
    let mut probes = Probes::load(&ProbeOptions {
        l7: false,
        tcp: true,
        ..ProbeOptions::default()
    })
    .expect("eBPF programs load and attach");
    // A port nobody listens on: the SYN is answered with a reset.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    for _ in 0..3 {
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
    let counts = probes.take_tcp_counts().expect("counts");
    let failed: u64 = counts
        .iter()
        .filter(|(k, _)| {
            k.peer == ("127.0.0.1".parse().expect("ip"), port) && k.kind == TcpTrouble::ConnectFail
        })
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(failed, 3, "{counts:?}");
    let series = tcp_series(&counts, Timestamp::from_secs(0));
    assert!(series.iter().any(|s| s.metric == ResourceMetric::TcpResets
        && s.entity.as_str().ends_with(&format!("127.0.0.1:{port}"))));
}

#[test]
fn process_cpu_and_memory_from_proc() {
    // A real busy process is found and measured.
    let child = common::Killed(
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn"),
    );
    let pid = child.0.id();
    let comm = format!("/proc/{pid}/comm");
    while std::fs::read_to_string(&comm)
        .map(|c| c.trim_end() != "sh")
        .unwrap_or(true)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut sampler = ProcSampler::new("^sh$", "127.0.0.1").expect("sampler");
    let identities = Identities::default();
    let _ = sampler.sample(0, &identities);
    std::thread::sleep(Duration::from_millis(200));
    let sample = sampler.sample(200_000_000, &identities);
    let (cores, bytes) = sample
        .iter()
        .find(|(e, _)| e.as_str().ends_with(&format!("#{pid}")))
        .map(|(_, v)| *v)
        .expect("the busy shell is sampled");
    assert!(cores.is_finite() && cores >= 0.0, "{cores} {sample:?}");
    assert!(bytes > 0.0);

    // The arithmetic, on a /proc tree with known figures: 50 ticks in 1 s.
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_dir = dir.path().join("4242");
    std::fs::create_dir_all(&proc_dir).expect("mkdir");
    std::fs::write(proc_dir.join("comm"), "mysqld\n").expect("comm");
    std::fs::write(proc_dir.join("status"), "VmRSS:\t  1024 kB\n").expect("status");
    let stat =
        |ticks: u64| format!("4242 (mysqld) S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 1 1 1");
    std::fs::write(proc_dir.join("stat"), stat(100)).expect("stat");
    let mut sampler = ProcSampler::new("^mysqld$", "10.0.0.5")
        .expect("sampler")
        .with_proc_root(dir.path());
    let first = sampler.sample(1_000_000_000, &identities);
    assert!(
        first.values().all(|(cores, _)| cores.is_nan()),
        "one reading gives no CPU figure"
    );
    let ticks = vigil_agent::resources::clock_ticks();
    std::fs::write(proc_dir.join("stat"), stat(100 + ticks / 2)).expect("stat");
    let second = sampler.sample(2_000_000_000, &identities);
    let (cores, bytes) = second.values().next().copied().expect("sampled");
    assert!((cores - 0.5).abs() < 1e-9, "{cores}");
    assert_eq!(bytes, 1024.0 * 1024.0);
    let series = usage_series(&second, Timestamp::from_secs(0));
    assert_eq!(series.len(), 2);
    assert!(series.iter().any(|s| s.metric == ResourceMetric::CpuCores
        && s.entity.as_str().contains("mysqld@10.0.0.5#4242")));
}
