//! The optional LLM against a local chat-completions server: the tools offered,
//! redaction of what leaves (SQL literals, IPs), pseudonyms restored in the
//! answer, and fallback to the deterministic answer on failure.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Value};
use vigil_assistant::{ask_with_llm, AskOptions, LlmClient, LlmConfig, RedactionConfig, Tools};
use vigil_model::{
    CallEdge, EdgeMetrics, Entity, EntityId, EntityKind, Event, L7Protocol, Profile, RequestSample,
    RequestSeries, ResourceMetric, ResourceSeries, SampleQuery, SeriesQuery, SourceError,
    StatementQuery, StatementStats, StatementStep, StatementStepQuery, TelemetrySource, TimeRange,
    Timestamp, Topology,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "alice@example.com";
const IP: &str = "10.1.2.3";

/// A source with one MySQL server whose slowest statement carries a literal.
struct Fake;

fn mysql() -> EntityId {
    EntityId::new(EntityKind::Database, &format!("mysqld@{IP}:3306"))
}

#[async_trait]
impl TelemetrySource for Fake {
    fn backend(&self) -> &'static str {
        "fake"
    }
    async fn topology(&self, _: TimeRange) -> Result<Topology, SourceError> {
        Ok(Topology {
            entities: vec![Entity::new(mysql()).with("ip", IP)],
            relations: vec![],
        })
    }
    async fn request_series(&self, _: &SeriesQuery) -> Result<Vec<RequestSeries>, SourceError> {
        Ok(vec![])
    }
    async fn edge_series(&self, _: &SeriesQuery) -> Result<Vec<EdgeMetrics>, SourceError> {
        Ok(vec![])
    }
    async fn call_edges(&self, _: TimeRange) -> Result<Vec<CallEdge>, SourceError> {
        Ok(vec![])
    }
    async fn resource_series(
        &self,
        _: &SeriesQuery,
        _: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, SourceError> {
        Ok(vec![])
    }
    async fn top_statements(&self, _: &StatementQuery) -> Result<Vec<StatementStats>, SourceError> {
        Ok(vec![StatementStats {
            server: mysql(),
            protocol: L7Protocol::Mysql,
            request_type: "SELECT".to_owned(),
            shape: format!("SELECT * FROM users WHERE email = '{SECRET}' AND id = 42"),
            count: 120,
            errors: 0,
            latency_mean_ms: 40.0,
            latency_p99_ms: 310.0,
            latency_max_ms: 900.0,
        }])
    }
    async fn statement_steps(
        &self,
        _: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, SourceError> {
        Ok(vec![])
    }
    async fn slow_requests(&self, _: &SampleQuery) -> Result<Vec<RequestSample>, SourceError> {
        Ok(vec![])
    }
    async fn profile(&self, entity: &EntityId, range: TimeRange) -> Result<Profile, SourceError> {
        Ok(Profile {
            entity: entity.clone(),
            range,
            unit: "samples".to_owned(),
            stacks: vec![],
        })
    }
    async fn events(&self, _: TimeRange) -> Result<Vec<Event>, SourceError> {
        Ok(vec![])
    }
}

/// Answers with a tool call first, then (once a tool result came back) with text.
struct Model {
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).expect("json body");
        self.bodies.lock().expect("lock").push(body.clone());
        let has_tool_result = body["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["role"] == "tool");
        let message = if has_tool_result {
            json!({"role": "assistant", "content": "The slowest statement runs on database:mysqld@ip_1:3306 (p99 310 ms)."})
        } else {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call-1", "type": "function",
                   "function": {"name": "slow_statements", "arguments": "{\"protocol\": \"mysql\"}"}}]})
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }))
    }
}

fn config(server: &MockServer) -> LlmConfig {
    LlmConfig {
        enabled: true,
        base_url: format!("{}/v1", server.uri()),
        chat_model: "chat-model".to_owned(),
        summary_model: "summary-model".to_owned(),
        timeout_secs: 5,
        redaction: RedactionConfig {
            ips: true,
            hostnames: false,
        },
        ..LlmConfig::default()
    }
}

fn tools() -> Tools {
    Tools::new(Arc::new(Fake), Default::default())
}

#[tokio::test]
async fn chat_offers_vigils_tools_and_redacts_what_leaves() {
    let server = MockServer::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Model {
            bodies: Arc::clone(&bodies),
        })
        .mount(&server)
        .await;
    let llm = LlmClient::new(config(&server)).expect("client");
    let now = Timestamp(1_704_164_645);
    let question = format!("why is mysql on {IP} slow?");
    let answer = ask_with_llm(&question, &tools(), now, &AskOptions::default(), Some(&llm)).await;
    assert!(answer.llm, "{answer:?}");
    // Pseudonyms are restored in what the user reads.
    assert!(
        answer.text.contains(&format!("database:mysqld@{IP}:3306")),
        "{}",
        answer.text
    );

    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["model"], "chat-model");
    let offered: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        offered,
        [
            "list_anomalies",
            "rank_root_causes",
            "slow_statements",
            "process_profile",
            "metric_query",
            "latest_report"
        ]
    );
    for body in &bodies {
        let sent = body.to_string();
        assert!(!sent.contains(IP), "an IP left: {sent}");
        assert!(!sent.contains(SECRET), "a SQL literal left: {sent}");
    }
    let tool_result = bodies[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool message");
    let content = tool_result["content"].as_str().expect("content");
    assert!(
        content.contains("SELECT * FROM users WHERE email = ? AND id = ?"),
        "{content}"
    );
    assert_eq!(tool_result["tool_call_id"], "call-1");
}

#[tokio::test]
async fn a_failing_llm_falls_back_to_the_deterministic_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_string("overloaded"))
        .mount(&server)
        .await;
    let llm = LlmClient::new(config(&server)).expect("client");
    let now = Timestamp(1_704_164_645);
    let with = ask_with_llm(
        "is mysql healthy",
        &tools(),
        now,
        &AskOptions::default(),
        Some(&llm),
    )
    .await;
    let without = ask_with_llm(
        "is mysql healthy",
        &tools(),
        now,
        &AskOptions::default(),
        None,
    )
    .await;
    assert!(!with.llm);
    assert_eq!(with.text, without.text);
    assert!(with.text.contains("mysqld"), "{}", with.text);
}

#[tokio::test]
async fn summaries_use_the_summary_model_and_only_when_something_was_found() {
    let server = MockServer::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Model {
            bodies: Arc::clone(&bodies),
        })
        .mount(&server)
        .await;
    let llm = LlmClient::new(config(&server)).expect("client");
    let window = TimeRange::new(Timestamp(0), Timestamp(3600)).expect("range");
    let none = llm
        .summarise_findings(&[], window, vigil_model::Language::En)
        .await
        .expect("no call");
    assert_eq!(none, None);
    assert!(
        bodies.lock().expect("lock").is_empty(),
        "nothing found, no call"
    );
    let facts =
        json!({"finding": format!("slow statement on {IP}: SELECT 1 FROM t WHERE a = 'x'")});
    let _ = llm.summarise_facts(&facts, vigil_model::Language::Zh).await;
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies[0]["model"], "summary-model");
    let sent = bodies[0].to_string();
    assert!(!sent.contains(IP) && !sent.contains("'x'"), "{sent}");
    assert!(sent.contains("中文"), "asks for Chinese: {sent}");
}

#[test]
fn a_disabled_or_invalid_config_builds_no_client() {
    assert!(LlmClient::new(LlmConfig::default()).is_err());
    let bad = LlmConfig {
        enabled: true,
        base_url: "ftp://x".to_owned(),
        ..LlmConfig::default()
    };
    let errors = bad.validate().expect_err("invalid");
    assert_eq!(errors[0].0, "base_url");
}
