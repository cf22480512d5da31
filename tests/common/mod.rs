//! Shared by the root package's ClickHouse tests: a scratch ClickHouse store
//! with databases of its own, and writing a simulated estate into it the way
//! DeepFlow and `vigil-agent` would.

use std::sync::atomic::{AtomicU32, Ordering};

use vigil_model::TimeRange;
use vigil_sim::Estate;
use vigil_store::clickhouse::{ClickHouseConfig, ClickHouseStore};

/// A migrated store with a DeepFlow-shaped mirror, in databases no other test uses.
pub async fn scratch_clickhouse(prefix: &str) -> ClickHouseStore {
    let url = std::env::var("VIGIL_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "VIGIL_TEST_CLICKHOUSE_URL is not set: run ./scripts/test.sh, which starts ClickHouse"
        )
    });
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "{prefix}{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let config = ClickHouseConfig {
        url,
        // Bulk writes of a whole estate on a loaded 2-core CI machine: a
        // generous timeout, so the test fails on wrong answers, not on load.
        timeout_secs: 180,
        ..ClickHouseConfig::default()
    }
    .with_database_suffix(&tag);
    let store = ClickHouseStore::connect(config).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
        .create_deepflow_mirror()
        .await
        .expect("DeepFlow mirror");
    store
}

/// Writes `estate` into `store`: its topology, at most `rows_per_edge_minute`
/// request rows per call edge and minute, resources and events — a day at a
/// time, so the raw rows never all sit in memory.
pub async fn write_estate(store: &ClickHouseStore, estate: &Estate, rows_per_edge_minute: u32) {
    store
        .write_topology(estate.topology())
        .await
        .expect("topology");
    let range = estate.range();
    for (index, batch) in (0_i64..).zip(estate.batches(1440)) {
        let start = range.start.plus_secs(index * 86_400);
        let day = TimeRange {
            start,
            end: start.plus_secs(86_400).min(range.end),
        };
        let records: Vec<_> = estate.request_records(day, rows_per_edge_minute).collect();
        store
            .write_deepflow_records(&records)
            .await
            .expect("request rows");
        store
            .write_resources(&batch.resources)
            .await
            .expect("resources");
        store.write_events(&batch.events).await.expect("events");
    }
}
