//! DDL: Vigil's own tables and their versioned migrations, the cluster variants
//! (`<name>_local` ReplicatedMergeTree + Distributed `<name>`), and the DeepFlow
//! mirror used by tests and demos.
//!
//! Every type used exists in ClickHouse 18.16 and 23.8+: `DateTime`, `UInt*`,
//! `Float64`, `String`, `FixedString(16)`, `Array(String)`. Times are `DateTime`
//! seconds (finer timings are `UInt64` microseconds); maps are parallel arrays.

/// A MergeTree table: its columns and keys. Partitioned by day on `time`.
#[derive(Clone, Copy, Debug)]
pub struct TableSpec {
    /// Table name (without database).
    pub name: &'static str,
    /// `(column, type)` pairs, in order.
    pub columns: &'static [(&'static str, &'static str)],
    /// The sorting key, e.g. `(entity, time)`.
    pub order_by: &'static str,
}

/// One schema version of Vigil's tables.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version number; migrations apply in increasing order, each once.
    pub version: u32,
    /// What the migration does, for `vigil db migrate` output.
    pub description: &'static str,
    /// Tables it creates (with `IF NOT EXISTS`, so a half-applied migration can be re-run).
    pub tables: &'static [TableSpec],
}

/// What [`super::ClickHouseStore::migrate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call, with their descriptions, in order.
    pub applied: Vec<(u32, &'static str)>,
    /// Versions that were already applied before this call.
    pub already_applied: Vec<u32>,
    /// The schema version after the call.
    pub current_version: u32,
}

/// The table that records applied migrations.
pub const SCHEMA_MIGRATIONS: TableSpec = TableSpec {
    name: "schema_migrations",
    columns: &[
        ("time", "DateTime"),
        ("version", "UInt32"),
        ("description", "String"),
    ],
    order_by: "(version)",
};

/// The agent's L7 request log: one row per request as seen on the server
/// side, with DeepFlow's `l7_flow_log` column names (so the same SQL reads
/// both) plus what only the agent knows: container names and ids.
pub const AGENT_REQUESTS: TableSpec = TableSpec {
    name: "agent_requests",
    columns: &[
        ("time", "DateTime"),
        ("start_time", "UInt64"),
        ("response_duration", "UInt64"),
        ("is_ipv4", "UInt8"),
        ("ip4_0", "UInt32"),
        ("ip4_1", "UInt32"),
        ("ip6_0", "FixedString(16)"),
        ("ip6_1", "FixedString(16)"),
        ("client_port", "UInt16"),
        ("server_port", "UInt16"),
        ("l7_protocol", "UInt8"),
        ("request_type", "String"),
        ("request_resource", "String"),
        ("endpoint", "String"),
        ("response_status", "UInt8"),
        ("response_code", "Nullable(Int32)"),
        ("signal_source", "UInt16"),
        ("observation_point", "String"),
        ("process_id_0", "Int32"),
        ("process_id_1", "Int32"),
        ("gprocess_id_0", "UInt32"),
        ("gprocess_id_1", "UInt32"),
        ("process_kname_0", "String"),
        ("process_kname_1", "String"),
        ("container_name_0", "String"),
        ("container_name_1", "String"),
        ("container_id_0", "String"),
        ("container_id_1", "String"),
        ("app_service", "String"),
        ("app_instance", "String"),
        ("trace_id", "String"),
    ],
    order_by: "(l7_protocol, server_port, ip4_1, time)",
};

/// Resource metrics per entity (container, process, host) per minute; a
/// metric not measured in a row is NaN.
pub const RESOURCE_METRICS: TableSpec = TableSpec {
    name: "resource_metrics",
    columns: &[
        ("time", "DateTime"),
        ("entity", "String"),
        ("cpu_cores", "Float64"),
        ("memory_bytes", "Float64"),
        ("tcp_retransmits", "Float64"),
        ("tcp_resets", "Float64"),
    ],
    order_by: "(entity, time)",
};

/// On-CPU profile stacks: folded frames (root first, `;`-joined) and their value.
pub const PROFILE_STACKS: TableSpec = TableSpec {
    name: "profile_stacks",
    columns: &[
        ("time", "DateTime"),
        ("entity", "String"),
        ("container_name", "String"),
        ("pid", "UInt32"),
        ("process_name", "String"),
        ("frames", "String"),
        ("value", "UInt64"),
        ("unit", "String"),
    ],
    order_by: "(entity, time)",
};

/// Events on entities (deploys, restarts, config changes, OOM kills).
pub const EVENTS: TableSpec = TableSpec {
    name: "events",
    columns: &[
        ("time", "DateTime"),
        ("entity", "String"),
        ("kind", "String"),
        ("detail", "String"),
    ],
    order_by: "(time, entity)",
};

/// Entity placement and identity snapshots: an entity id, its kind and its
/// attributes as parallel arrays (e.g. a container's `ip`, `pid`, `ports`,
/// `process_name`). The latest snapshot of each entity wins.
pub const ENTITIES: TableSpec = TableSpec {
    name: "entities",
    columns: &[
        ("time", "DateTime"),
        ("entity", "String"),
        ("kind", "String"),
        ("attribute_names", "Array(String)"),
        ("attribute_values", "Array(String)"),
    ],
    order_by: "(kind, entity, time)",
};

/// Relations between entities (runs-on, instance-of, calls, exposes).
pub const RELATIONS: TableSpec = TableSpec {
    name: "relations",
    columns: &[
        ("time", "DateTime"),
        ("from_entity", "String"),
        ("to_entity", "String"),
        ("kind", "String"),
    ],
    order_by: "(from_entity, to_entity, kind, time)",
};

/// Every migration, in order. Append new versions; never edit released ones.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "agent request log and per-minute resource metrics",
        tables: &[AGENT_REQUESTS, RESOURCE_METRICS],
    },
    Migration {
        version: 2,
        description: "profile stacks and events",
        tables: &[PROFILE_STACKS, EVENTS],
    },
    Migration {
        version: 3,
        description: "entity placement/identity and relations",
        tables: &[ENTITIES, RELATIONS],
    },
];

/// `CREATE DATABASE` for `database`, on every node of `cluster` when given.
pub fn create_database_sql(database: &str, cluster: Option<&str>) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {database}{}",
        on_cluster(cluster)
    )
}

/// The DDL creating `table` in `database`.
///
/// Without a cluster: one MergeTree table. With one: `<name>_local` as
/// ReplicatedMergeTree on every node and a Distributed `<name>` over it, both
/// `ON CLUSTER`, so reads and writes of `<name>` reach every shard.
pub fn create_table_sql(database: &str, table: &TableSpec, cluster: Option<&str>) -> Vec<String> {
    let columns = table
        .columns
        .iter()
        .map(|(name, kind)| format!("    {name} {kind}"))
        .collect::<Vec<_>>()
        .join(",\n");
    let keys = format!("PARTITION BY toYYYYMMDD(time)\nORDER BY {}", table.order_by);
    match cluster {
        None => vec![format!(
            "CREATE TABLE IF NOT EXISTS {database}.{name}\n(\n{columns}\n)\nENGINE = MergeTree()\n{keys}",
            name = table.name
        )],
        Some(cluster) => {
            let local = format!("{}_local", table.name);
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n(\n{columns}\n)\n\
                     ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')\n{keys}"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS {database}.{local}\n\
                     ENGINE = Distributed({cluster}, {database}, {local}, rand())",
                    name = table.name
                ),
            ]
        }
    }
}

fn on_cluster(cluster: Option<&str>) -> String {
    cluster
        .map(|name| format!(" ON CLUSTER {name}"))
        .unwrap_or_default()
}

/// DeepFlow 6.6's `flow_log.l7_flow_log`, only the columns Vigil reads plus a
/// few realistic extras, with 18.16 substitutions (`IPv4`→`UInt32`,
/// `IPv6`→`FixedString(16)`, `DateTime64(6)`→`UInt64` µs, `LowCardinality(String)`→`String`).
pub const DEEPFLOW_L7_FLOW_LOG: TableSpec = TableSpec {
    name: "l7_flow_log",
    columns: &[
        ("time", "DateTime"),
        ("start_time", "UInt64"),
        ("end_time", "UInt64"),
        ("response_duration", "UInt64"),
        ("is_ipv4", "UInt8"),
        ("ip4_0", "UInt32"),
        ("ip4_1", "UInt32"),
        ("ip6_0", "FixedString(16)"),
        ("ip6_1", "FixedString(16)"),
        ("protocol", "UInt8"),
        ("client_port", "UInt16"),
        ("server_port", "UInt16"),
        ("l7_protocol", "UInt8"),
        ("l7_protocol_str", "String"),
        ("type", "UInt8"),
        ("request_type", "String"),
        ("request_domain", "String"),
        ("request_resource", "String"),
        ("endpoint", "String"),
        ("response_status", "UInt8"),
        ("response_code", "Nullable(Int32)"),
        ("response_exception", "String"),
        ("signal_source", "UInt16"),
        ("observation_point", "String"),
        ("process_id_0", "Int32"),
        ("process_id_1", "Int32"),
        ("process_kname_0", "String"),
        ("process_kname_1", "String"),
        ("gprocess_id_0", "UInt32"),
        ("gprocess_id_1", "UInt32"),
        ("trace_id", "String"),
        ("span_id", "String"),
        ("app_service", "String"),
        ("app_instance", "String"),
        ("agent_id", "UInt16"),
    ],
    order_by: "(l7_protocol, server_port, ip4_1, time)",
};

/// DeepFlow 6.6's `flow_metrics.application.1m` (per-service minute metrics).
pub const DEEPFLOW_APPLICATION_1M: TableSpec = TableSpec {
    name: "`application.1m`",
    columns: &[
        ("time", "DateTime"),
        ("is_ipv4", "UInt8"),
        ("ip4", "UInt32"),
        ("ip6", "FixedString(16)"),
        ("server_port", "UInt16"),
        ("protocol", "UInt8"),
        ("l7_protocol", "UInt8"),
        ("role", "UInt8"),
        ("observation_point", "String"),
        ("signal_source", "UInt16"),
        ("app_service", "String"),
        ("app_instance", "String"),
        ("endpoint", "String"),
        ("gprocess_id", "UInt32"),
        ("agent_id", "UInt16"),
        ("request", "UInt32"),
        ("response", "UInt32"),
        ("rrt_sum", "Float64"),
        ("rrt_count", "UInt64"),
        ("rrt_max", "UInt32"),
        ("client_error", "UInt32"),
        ("server_error", "UInt32"),
        ("timeout", "UInt32"),
    ],
    order_by: "(l7_protocol, server_port, ip4, time)",
};

/// DeepFlow 6.6's `flow_metrics.application_map.1m` (per client→server edge minute metrics).
pub const DEEPFLOW_APPLICATION_MAP_1M: TableSpec = TableSpec {
    name: "`application_map.1m`",
    columns: &[
        ("time", "DateTime"),
        ("is_ipv4", "UInt8"),
        ("ip4_0", "UInt32"),
        ("ip4_1", "UInt32"),
        ("ip6_0", "FixedString(16)"),
        ("ip6_1", "FixedString(16)"),
        ("server_port", "UInt16"),
        ("protocol", "UInt8"),
        ("l7_protocol", "UInt8"),
        ("observation_point", "String"),
        ("signal_source", "UInt16"),
        ("app_service", "String"),
        ("app_instance", "String"),
        ("endpoint", "String"),
        ("gprocess_id_0", "UInt32"),
        ("gprocess_id_1", "UInt32"),
        ("agent_id", "UInt16"),
        ("request", "UInt32"),
        ("response", "UInt32"),
        ("rrt_sum", "Float64"),
        ("rrt_count", "UInt64"),
        ("rrt_max", "UInt32"),
        ("client_error", "UInt32"),
        ("server_error", "UInt32"),
        ("timeout", "UInt32"),
    ],
    order_by: "(l7_protocol, server_port, ip4_1, time)",
};

/// DeepFlow 6.6's `profile.in_process` (continuous profiles, eBPF on-CPU among them).
pub const DEEPFLOW_IN_PROCESS: TableSpec = TableSpec {
    name: "in_process",
    columns: &[
        ("time", "DateTime"),
        ("app_service", "String"),
        ("profile_location_str", "String"),
        ("compression_algo", "String"),
        ("profile_value", "Int64"),
        ("profile_value_unit", "String"),
        ("profile_event_type", "String"),
        ("profile_language_type", "String"),
        ("process_id", "UInt32"),
        ("gprocess_id", "UInt32"),
        ("process_start_time", "UInt64"),
        ("is_ipv4", "UInt8"),
        ("ip4", "UInt32"),
        ("ip6", "FixedString(16)"),
        ("trace_id", "String"),
        ("span_name", "String"),
        ("tag_names", "Array(String)"),
        ("tag_values", "Array(String)"),
    ],
    order_by: "(app_service, profile_language_type, time, ip4, ip6)",
};

#[cfg(test)]
mod tests {
    use super::*;

    const DEEPFLOW_METER_COLUMNS: &[(&str, &str)] = &[
        ("request", "UInt32"),
        ("response", "UInt32"),
        ("rrt_sum", "Float64"),
        ("rrt_count", "UInt64"),
        ("rrt_max", "UInt32"),
        ("client_error", "UInt32"),
        ("server_error", "UInt32"),
        ("timeout", "UInt32"),
    ];

    #[test]
    fn migrations_are_in_strictly_increasing_order() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.first(), Some(&1));
    }

    #[test]
    fn single_node_ddl_is_one_mergetree_table() {
        let ddl = create_table_sql("vigil", &EVENTS, None);
        assert_eq!(ddl.len(), 1);
        assert_eq!(
            ddl[0],
            "CREATE TABLE IF NOT EXISTS vigil.events\n(\n    time DateTime,\n    entity String,\n    \
             kind String,\n    detail String\n)\nENGINE = MergeTree()\nPARTITION BY toYYYYMMDD(time)\n\
             ORDER BY (time, entity)"
        );
    }

    #[test]
    fn cluster_ddl_is_replicated_local_plus_distributed() {
        let ddl = create_table_sql("vigil", &EVENTS, Some("deepflow"));
        assert_eq!(ddl.len(), 2);
        assert!(
            ddl[0].starts_with(
                "CREATE TABLE IF NOT EXISTS vigil.events_local ON CLUSTER deepflow\n(\n"
            ),
            "{}",
            ddl[0]
        );
        assert!(ddl[0].contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/vigil/events_local', '{replica}')\n\
             PARTITION BY toYYYYMMDD(time)\nORDER BY (time, entity)"
        ));
        assert_eq!(
            ddl[1],
            "CREATE TABLE IF NOT EXISTS vigil.events ON CLUSTER deepflow AS vigil.events_local\n\
             ENGINE = Distributed(deepflow, vigil, events_local, rand())"
        );
        assert_eq!(
            create_database_sql("vigil", Some("deepflow")),
            "CREATE DATABASE IF NOT EXISTS vigil ON CLUSTER deepflow"
        );
    }

    #[test]
    fn no_type_missing_from_clickhouse_18_16() {
        let all = MIGRATIONS.iter().flat_map(|m| m.tables.iter()).chain([
            &SCHEMA_MIGRATIONS,
            &DEEPFLOW_L7_FLOW_LOG,
            &DEEPFLOW_APPLICATION_1M,
            &DEEPFLOW_APPLICATION_MAP_1M,
            &DEEPFLOW_IN_PROCESS,
        ]);
        for table in all {
            for (column, kind) in table.columns {
                for banned in [
                    "DateTime64",
                    "LowCardinality",
                    "Map(",
                    "IPv4",
                    "IPv6",
                    "Bool",
                ] {
                    assert!(!kind.contains(banned), "{}.{column}: {kind}", table.name);
                }
            }
        }
        for (column, kind) in DEEPFLOW_METER_COLUMNS {
            assert!(DEEPFLOW_APPLICATION_1M.columns.contains(&(column, kind)));
            assert!(DEEPFLOW_APPLICATION_MAP_1M
                .columns
                .contains(&(column, kind)));
        }
    }
}
