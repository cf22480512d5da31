//! Shared helpers of the agent's root tests.
#![allow(dead_code)] // reason: each test binary uses a different subset of the helpers.

use std::time::{Duration, Instant};

use vigil_agent::bpf::CaptureTrigger;
use vigil_agent::capture::{Capture, CaptureSettings, RecordBatches};
use vigil_agent::container::Identities;
use vigil_model::RequestRecord;

/// A child process killed (and reaped) when the test ends, passed or not.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails (never skips) unless running as root: CI runs these as root.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        })
        .expect("Uid line");
    assert_eq!(
        uid, "0",
        "the agent's eBPF tests must run as root (CI runs them as root)"
    );
}

/// An env var the test harness (`scripts/services.sh`) exports.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run under scripts/test.sh or source scripts/services.sh's env")
    })
}

/// Starts capture of `ports` with the kernel's best trigger.
pub fn capture(ports: &[u16], exclude_self: bool) -> (Capture, Records) {
    capture_with(ports, exclude_self, None)
}

/// Every L7 trigger this kernel can run: the best, and the `sys_exit`
/// fallback of older kernels (tests run both where both exist).
pub fn triggers() -> Vec<CaptureTrigger> {
    require_root();
    let best = CaptureTrigger::for_this_kernel().expect("kernel BTF");
    let mut all = vec![best];
    if best != CaptureTrigger::SyscallExit {
        all.push(CaptureTrigger::SyscallExit);
    }
    all
}

/// Starts capture of `ports` fired by `trigger` (`None`: the kernel's best).
pub fn capture_with(
    ports: &[u16],
    exclude_self: bool,
    trigger: Option<CaptureTrigger>,
) -> (Capture, Records) {
    require_root();
    let mut settings = CaptureSettings::for_ports(ports);
    settings.probes.exclude_self = exclude_self;
    settings.probes.trigger = trigger;
    settings.drain_interval = Duration::from_millis(50);
    Capture::start(settings, Identities::default())
        .map(|(capture, receiver)| (capture, Records::new(receiver)))
        .expect("eBPF programs load and attach")
}

/// Captured records, with those not yet matched kept for later waits.
pub struct Records {
    receiver: RecordBatches,
    backlog: Vec<RequestRecord>,
}

impl Records {
    /// Wraps a capture's receiver.
    pub fn new(receiver: RecordBatches) -> Self {
        Self {
            receiver,
            backlog: Vec::new(),
        }
    }

    /// Everything received so far that no wait matched.
    pub fn take_seen(&mut self) -> Vec<RequestRecord> {
        while let Ok(batch) = self.receiver.try_recv() {
            self.backlog.extend(batch);
        }
        std::mem::take(&mut self.backlog)
    }

    /// The batches back (for a consumer such as the exporter).
    pub fn into_receiver(self) -> RecordBatches {
        self.receiver
    }

    /// The first record matching `want`, waiting up to `limit` for it (then panics with what was seen).
    pub fn wait_for(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&RequestRecord) -> bool,
    ) -> RequestRecord {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.backlog.iter().position(&mut want) {
                return self.backlog.remove(at);
            }
            if Instant::now() >= deadline {
                panic!(
                    "no matching record within {limit:?}; saw {:#?}",
                    self.backlog
                );
            }
            if let Ok(batch) = self.receiver.recv_timeout(Duration::from_millis(100)) {
                self.backlog.extend(batch);
            }
        }
    }
}

/// Sends `commands` (one per line) to the Redis on `port` through `redis-cli`.
pub fn redis_commands(port: u16, commands: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(commands.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

/// Polls `done` every 100 ms; fails the test after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A letters-only marker (survives key-pattern grouping), unique per run.
pub fn unique_letters() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut out = String::new();
    for _ in 0..10 {
        out.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    out
}
