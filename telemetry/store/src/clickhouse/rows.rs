//! Row structs of every table Vigil writes, one field per column, in the
//! column types of [`super::schema`] (`DateTime` as `u32` seconds, IPv4 as
//! `u32`, IPv6 as `[u8; 16]`).

use serde::{Deserialize, Serialize};

/// A row of `schema_migrations`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct MigrationRow {
    pub time: u32,
    pub version: u32,
    pub description: String,
}

/// A row of DeepFlow's `flow_log.l7_flow_log` (mirror).
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct L7FlowLogRow {
    pub time: u32,
    pub start_time: u64,
    pub end_time: u64,
    pub response_duration: u64,
    pub is_ipv4: u8,
    pub ip4_0: u32,
    pub ip4_1: u32,
    pub ip6_0: [u8; 16],
    pub ip6_1: [u8; 16],
    pub protocol: u8,
    pub client_port: u16,
    pub server_port: u16,
    pub l7_protocol: u8,
    pub l7_protocol_str: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub request_type: String,
    pub request_domain: String,
    pub request_resource: String,
    pub endpoint: String,
    pub response_status: u8,
    pub response_code: Option<i32>,
    pub response_exception: String,
    pub signal_source: u16,
    pub observation_point: String,
    pub process_id_0: i32,
    pub process_id_1: i32,
    pub process_kname_0: String,
    pub process_kname_1: String,
    pub gprocess_id_0: u32,
    pub gprocess_id_1: u32,
    pub trace_id: String,
    pub span_id: String,
    pub app_service: String,
    pub app_instance: String,
    pub agent_id: u16,
}

/// A row of DeepFlow's `flow_metrics.application.1m` (mirror).
#[derive(Clone, Debug, Default, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct ApplicationRow {
    pub time: u32,
    pub is_ipv4: u8,
    pub ip4: u32,
    pub ip6: [u8; 16],
    pub server_port: u16,
    pub protocol: u8,
    pub l7_protocol: u8,
    pub role: u8,
    pub observation_point: String,
    pub signal_source: u16,
    pub app_service: String,
    pub app_instance: String,
    pub endpoint: String,
    pub gprocess_id: u32,
    pub agent_id: u16,
    pub request: u32,
    pub response: u32,
    pub rrt_sum: f64,
    pub rrt_count: u64,
    pub rrt_max: u32,
    pub client_error: u32,
    pub server_error: u32,
    pub timeout: u32,
}

/// A row of DeepFlow's `flow_metrics.application_map.1m` (mirror).
#[derive(Clone, Debug, Default, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct ApplicationMapRow {
    pub time: u32,
    pub is_ipv4: u8,
    pub ip4_0: u32,
    pub ip4_1: u32,
    pub ip6_0: [u8; 16],
    pub ip6_1: [u8; 16],
    pub server_port: u16,
    pub protocol: u8,
    pub l7_protocol: u8,
    pub observation_point: String,
    pub signal_source: u16,
    pub app_service: String,
    pub app_instance: String,
    pub endpoint: String,
    pub gprocess_id_0: u32,
    pub gprocess_id_1: u32,
    pub agent_id: u16,
    pub request: u32,
    pub response: u32,
    pub rrt_sum: f64,
    pub rrt_count: u64,
    pub rrt_max: u32,
    pub client_error: u32,
    pub server_error: u32,
    pub timeout: u32,
}

/// A row of DeepFlow's `profile.in_process` (mirror).
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct InProcessRow {
    pub time: u32,
    pub app_service: String,
    pub profile_location_str: Vec<u8>,
    pub compression_algo: String,
    pub profile_value: i64,
    pub profile_value_unit: String,
    pub profile_event_type: String,
    pub profile_language_type: String,
    pub process_id: u32,
    pub gprocess_id: u32,
    pub process_start_time: u64,
    pub is_ipv4: u8,
    pub ip4: u32,
    pub ip6: [u8; 16],
    pub trace_id: String,
    pub span_name: String,
    pub tag_names: Vec<String>,
    pub tag_values: Vec<String>,
}

/// A row of Vigil's `agent_requests`, borrowing its text from the record it
/// is written from (the agent writes ~100k a second; nothing is copied).
#[derive(Clone, Debug, clickhouse::Row, Serialize)]
pub(crate) struct AgentRequestRow<'a> {
    pub time: u32,
    pub start_time: u64,
    pub response_duration: u64,
    pub is_ipv4: u8,
    pub ip4_0: u32,
    pub ip4_1: u32,
    pub ip6_0: [u8; 16],
    pub ip6_1: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub l7_protocol: u8,
    pub request_type: &'a str,
    pub request_resource: &'a str,
    pub endpoint: &'a str,
    pub response_status: u8,
    pub response_code: Option<i32>,
    pub signal_source: u16,
    pub observation_point: &'a str,
    pub process_id_0: i32,
    pub process_id_1: i32,
    pub gprocess_id_0: u32,
    pub gprocess_id_1: u32,
    pub process_kname_0: &'a str,
    pub process_kname_1: &'a str,
    pub container_name_0: &'a str,
    pub container_name_1: &'a str,
    pub container_id_0: &'a str,
    pub container_id_1: &'a str,
    pub app_service: &'a str,
    pub app_instance: &'a str,
    pub trace_id: &'a str,
}

/// A row of Vigil's `resource_metrics`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct ResourceRow {
    pub time: u32,
    pub entity: String,
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    pub tcp_retransmits: f64,
    pub tcp_resets: f64,
}

/// A row of Vigil's `profile_stacks`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct ProfileStackRow {
    pub time: u32,
    pub entity: String,
    pub container_name: String,
    pub pid: u32,
    pub process_name: String,
    pub frames: String,
    pub value: u64,
    pub unit: String,
}

/// A row of Vigil's `events`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct EventRow {
    pub time: u32,
    pub entity: String,
    pub kind: String,
    pub detail: String,
}

/// A row of Vigil's `entities`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct EntityRow {
    pub time: u32,
    pub entity: String,
    pub kind: String,
    pub attribute_names: Vec<String>,
    pub attribute_values: Vec<String>,
}

/// A row of Vigil's `relations`.
#[derive(Clone, Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct RelationRow {
    pub time: u32,
    pub from_entity: String,
    pub to_entity: String,
    pub kind: String,
}
