//! Export into the real ClickHouse (root; services from scripts/services.sh):
//! captured requests arrive and the analyzer's reader sees them through
//! `TelemetrySource`; an outage spools them and loses none.

mod common;

use common::{redis_commands, unique_letters, wait_until};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use vigil_agent::export::{check_schema, Exporter, Spool};
use vigil_model::{L7Protocol, SampleQuery, TelemetrySource, TimeRange, Timestamp};
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore, RequestLog};

fn config(url: &str, suffix: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: url.to_owned(),
        request_log: RequestLog::Agent,
        timeout_secs: 5,
        ..ClickHouseConfig::default()
    }
    .with_database_suffix(suffix)
}

/// A TCP proxy in front of ClickHouse that can be taken down (refusing and
/// cutting every connection) and brought back.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().expect("lock").push(task);
                }
            })
        };
        Self {
            port,
            up,
            conns,
            accept,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

async fn rows_with(reader: &ClickHouseStore, resource: &str) -> usize {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let query = SampleQuery {
        server: None,
        range: TimeRange::new(
            Timestamp::from_secs(now - 3600),
            Timestamp::from_secs(now + 120),
        )
        .expect("range"),
        min_duration_ms: 0.0,
        include_errors: true,
        limit: 100_000,
    };
    let samples = reader.slow_requests(&query).await.expect("slow_requests");
    samples
        .iter()
        .filter(|s| s.resource == resource && s.protocol == L7Protocol::Redis)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_requests_survive_a_clickhouse_outage_and_are_read_back() {
    let redis_port: u16 = common::env("VIGIL_TEST_REDIS_PORT").parse().expect("port");
    let ch_url = common::env("VIGIL_TEST_CLICKHOUSE_URL");
    let target = ch_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let tok = unique_letters();
    let suffix = format!("agent_{tok}");

    // The reader the analyzer uses, straight to ClickHouse.
    let reader = ClickHouseStore::connect(config(&ch_url, &suffix))
        .await
        .expect("connect");
    reader.migrate().await.expect("migrate");
    check_schema(&reader.applied_versions().await.expect("versions")).expect("schema matches");

    // The agent writes through a proxy that the test can take down.
    let proxy = Proxy::start(target).await;
    let writer =
        ClickHouseStore::connect(config(&format!("http://127.0.0.1:{}", proxy.port), &suffix))
            .await
            .expect("connect through proxy");
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let exporter = Exporter::new(
        writer,
        Spool::open(spool_dir.path(), 64 << 20).expect("spool"),
        1000,
    );
    let counters = exporter.counters.clone();
    let (capture, receiver) = {
        let (capture, records) = common::capture(&[redis_port], true);
        (capture, records)
    };
    let receiver = common::Records::into_receiver(receiver);
    let stop = Arc::new(AtomicBool::new(false));
    let export = tokio::spawn(exporter.run(receiver, Duration::from_millis(200), stop.clone()));

    // ClickHouse up: rows arrive directly.
    let before: String = (0..20)
        .map(|i| format!("SET before:{tok}:{i} v\n"))
        .collect();
    redis_commands(redis_port, &before);
    wait_until(Duration::from_secs(20), "direct writes", || {
        counters.written.load(Ordering::Relaxed) >= 20
    })
    .await;

    // ClickHouse unreachable: requests go to the spool.
    proxy.down();
    let during: String = (0..30)
        .map(|i| format!("SET during:{tok}:{i} v\n"))
        .collect();
    redis_commands(redis_port, &during);
    wait_until(Duration::from_secs(20), "spooling", || {
        counters.spooled.load(Ordering::Relaxed) >= 30
    })
    .await;
    assert!(counters.spool_batches.load(Ordering::Relaxed) > 0);

    // Back up: the spool is replayed, nothing is lost.
    proxy.up();
    wait_until(Duration::from_secs(30), "replay", || {
        counters.spool_batches.load(Ordering::Relaxed) == 0
            && counters.replayed.load(Ordering::Relaxed) >= 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    export.await.expect("join").expect("exporter");
    capture.stop();

    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(rows_with(&reader, &format!("SET before:{tok}:*")).await, 20);
    assert_eq!(rows_with(&reader, &format!("SET during:{tok}:*")).await, 30);
}
