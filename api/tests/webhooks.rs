//! End to end: alert webhooks about a simulated symptom answered with the
//! planted root cause; deduplication, resolution, feedback and similar
//! incidents; chat questions in English and Chinese answered with the cause.

mod common;

use common::{at_minute, fixture, get, post_json, router, send, state, MYSQL_START, REDIS_START};
use serde_json::{json, Value};
use vigil_api::alerts::format_rfc3339;
use vigil_api::bench::alertmanager_payload;
use vigil_api::ApiConfig;

fn top3(result: &Value) -> Vec<String> {
    result["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .take(3)
        .map(|s| s["entity"].as_str().expect("entity").to_owned())
        .collect()
}

#[tokio::test]
async fn alertmanager_alert_on_the_gateway_names_the_slow_mysql() {
    let fixture = fixture().await;
    let at = at_minute(MYSQL_START + 10);
    let app = router(state(ApiConfig::default(), at).await);
    let body = alertmanager_payload("am-mysql", fixture.gateway.name(), at);
    let (status, text) = send(&app, post_json("/api/v1/alerts/alertmanager", body.clone())).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let result = &answer["results"][0];
    assert_eq!(result["outcome"], "opened", "{text}");
    assert_eq!(result["symptom"], fixture.gateway.as_str());
    let top = top3(result);
    assert!(
        top.contains(&fixture.mysql.root_cause.to_string()),
        "planted {} not in top 3 {top:?}",
        fixture.mysql.root_cause
    );
    // Evidence: the slowed statement of the database, with numbers.
    let cause = result["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .find(|s| s["entity"] == fixture.mysql.root_cause.as_str())
        .expect("cause");
    assert!(!cause["evidence"].as_array().expect("evidence").is_empty());
    assert!(!cause["slow_statements"]
        .as_array()
        .expect("statements")
        .is_empty());
    let link = result["link"].as_str().expect("link");
    assert!(link.starts_with("/incidents/inc-"), "{link}");

    // The same alert again refreshes the incident instead of opening another.
    let (_, again) = send(&app, post_json("/api/v1/alerts/alertmanager", body)).await;
    let again: Value = serde_json::from_str(&again).expect("json");
    assert_eq!(again["results"][0]["outcome"], "refreshed");
    assert_eq!(again["results"][0]["incident_id"], result["incident_id"]);

    // Feedback, then resolution.
    let id = result["incident_id"].as_str().expect("id");
    let (status, text) = send(
        &app,
        post_json(
            &format!("/api/v1/incidents/{id}/feedback"),
            json!({"correct": false, "actual_cause": fixture.mysql.root_cause, "comment": "lock contention"}).to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let resolved = json!({"version": "4", "status": "resolved", "alerts": [{
        "status": "resolved", "labels": {"alertname": "HighLatency", "service": "gateway"},
        "startsAt": format_rfc3339(at), "endsAt": format_rfc3339(at.plus_secs(1800)),
        "fingerprint": "am-mysql"}]});
    let (_, text) = send(
        &app,
        post_json("/api/v1/alerts/alertmanager", resolved.to_string()),
    )
    .await;
    let text: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(text["results"][0]["outcome"], "resolved");
    let (_, incident) = send(&app, get(&format!("/api/v1/incidents/{id}"))).await;
    let incident: Value = serde_json::from_str(&incident).expect("json");
    assert_eq!(incident["status"], "resolved");
    assert_eq!(
        incident["feedback"]["actual_cause"],
        fixture.mysql.root_cause.as_str()
    );

    // A new incident on the same symptom lists the past one and its confirmed cause.
    let (_, text) = send(
        &app,
        post_json(
            "/api/v1/alerts/alertmanager",
            alertmanager_payload("am-mysql-2", fixture.gateway.name(), at),
        ),
    )
    .await;
    let text: Value = serde_json::from_str(&text).expect("json");
    let similar = &text["results"][0]["similar"][0];
    assert_eq!(similar["id"], id);
    assert_eq!(
        similar["confirmed_cause"],
        fixture.mysql.root_cause.as_str()
    );
}

#[tokio::test]
async fn grafana_alert_on_the_gateway_names_the_slow_redis() {
    let fixture = fixture().await;
    let at = at_minute(REDIS_START + 10);
    let app = router(state(ApiConfig::default(), at).await);
    let body = json!({
        "receiver": "vigil", "status": "firing", "orgId": 1, "title": "[FIRING:1] gateway latency",
        "state": "alerting", "message": "p99 above 500 ms",
        "groupLabels": {}, "commonLabels": {"alertname": "GatewayLatency"}, "commonAnnotations": {},
        "externalURL": "http://grafana:3000/", "version": "1", "groupKey": "g", "truncatedAlerts": 0,
        "alerts": [{"status": "firing",
            "labels": {"alertname": "GatewayLatency", "service_name": fixture.gateway.name(), "grafana_folder": "ops"},
            "annotations": {"summary": "gateway is slow"},
            "startsAt": format_rfc3339(at), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana:3000/alerting/1", "fingerprint": "gf-redis",
            "silenceURL": "http://grafana:3000/silence", "dashboardURL": "", "panelURL": "",
            "values": {"B": 612.5}}]
    });
    let (status, text) = send(&app, post_json("/api/v1/alerts/grafana", body.to_string())).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let top = top3(&answer["results"][0]);
    assert!(
        top.contains(&fixture.redis.root_cause.to_string()),
        "planted {} not in top 3 {top:?}",
        fixture.redis.root_cause
    );
}

#[tokio::test]
async fn generic_and_deepflow_alerts_map_addresses_and_unknown_labels_say_so() {
    let fixture = fixture().await;
    let at = at_minute(MYSQL_START + 10);
    let app = router(state(ApiConfig::default(), at).await);
    // The database by its address, as an exporter names it.
    let address = fixture
        .mysql
        .root_cause
        .name()
        .split_once('@')
        .map(|(_, a)| a.to_owned())
        .expect("address");
    let body =
        json!({"alerts": [{"labels": {"instance": address, "job": "mysqld"}, "at": at.secs()}]});
    let (status, text) = send(&app, post_json("/api/v1/alerts/generic", body.to_string())).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        answer["results"][0]["symptom"],
        fixture.mysql.root_cause.as_str()
    );
    assert_eq!(
        top3(&answer["results"][0])[0],
        fixture.mysql.root_cause.as_str()
    );

    let body = json!({"alarm_id": "df-1", "policy_name": "slow", "event_level": "error",
                      "tags": {"app": "no-such-thing-anywhere"}, "timestamp": at.secs()});
    let (status, text) = send(&app, post_json("/api/v1/alerts/deepflow", body.to_string())).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["results"][0]["outcome"], "unmapped");
    assert!(answer["results"][0]["notes"][0]
        .as_str()
        .expect("note")
        .contains("no label names a known entity"));
}

async fn chat(at: vigil_model::Timestamp, question: &str) -> Value {
    let app = router(state(ApiConfig::default(), at).await);
    let (status, text) = send(
        &app,
        post_json("/api/v1/chat", json!({"question": question}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test]
async fn chat_why_is_redis_slow_in_english_and_chinese() {
    let fixture = fixture().await;
    let at = at_minute(REDIS_START + 10);
    let cause = fixture.redis.root_cause.as_str();
    for question in ["why is Redis slow", "Redis 为什么慢"] {
        let answer = chat(at, question).await;
        assert_eq!(answer["intent"], "why-slow", "{question}");
        assert_eq!(answer["entity"], cause, "{question}: {answer}");
        let text = answer["text"].as_str().expect("text");
        eprintln!("{question}\n{text}\n");
        assert!(text.contains(cause), "{question}: {text}");
        assert!(
            top3(&answer).contains(&cause.to_owned()),
            "{question}: {answer}"
        );
        let chinese = text.contains("最可能的原因");
        assert_eq!(chinese, question.contains("为什么"), "{question}: {text}");
    }
}

#[tokio::test]
async fn chat_order_service_latency_in_chinese_names_its_database() {
    let fixture = fixture().await;
    let at = at_minute(MYSQL_START + 10);
    let answer = chat(at, "订单服务延迟高的原因").await;
    assert_eq!(answer["language"], "zh");
    assert_eq!(answer["entity"], "service:order-api", "{answer}");
    let cause = fixture.mysql.root_cause.as_str();
    assert!(top3(&answer).contains(&cause.to_owned()), "{answer}");
    assert!(answer["text"].as_str().expect("text").contains(cause));
}

#[tokio::test]
async fn chat_says_plainly_what_it_does_not_know() {
    let at = at_minute(MYSQL_START + 10);
    let answer = chat(at, "why is the flux capacitor slow").await;
    assert_eq!(answer["answered"], false);
    assert!(
        answer["text"]
            .as_str()
            .expect("text")
            .contains("do not know"),
        "{answer}"
    );
    let answer = chat(at, "你好").await;
    assert_eq!(answer["intent"], "unknown");
    assert!(answer["text"].as_str().expect("text").contains("没有理解"));
}
