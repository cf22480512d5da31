//! The OpenAPI 3.1 document at `/api/openapi.json`, maintained by hand next to
//! [`ROUTES`], the list the router is built from; a test checks both agree.

use serde_json::{json, Map, Value};

/// Every API route as (method, path template, summary, request schema, needs write).
pub const ROUTES: [(&str, &str, &str, Option<&str>); 18] = [
    (
        "post",
        "/api/v1/alerts/alertmanager",
        "Alertmanager v4 webhook: answers with ranked root causes",
        Some("AlertmanagerWebhook"),
    ),
    (
        "post",
        "/api/v1/alerts/grafana",
        "Grafana unified alerting webhook",
        Some("AlertmanagerWebhook"),
    ),
    (
        "post",
        "/api/v1/alerts/deepflow",
        "DeepFlow alert event(s)",
        Some("DeepflowEvent"),
    ),
    (
        "post",
        "/api/v1/alerts/generic",
        "Generic alert: {entity, labels, at, status}",
        Some("GenericAlert"),
    ),
    (
        "get",
        "/api/v1/incidents",
        "Incidents, newest first (?status=open|resolved&limit=)",
        None,
    ),
    (
        "get",
        "/api/v1/incidents/{id}",
        "One incident with its suggestions",
        None,
    ),
    (
        "post",
        "/api/v1/incidents/{id}/feedback",
        "Confirm or reject the root cause",
        Some("Feedback"),
    ),
    (
        "post",
        "/api/v1/chat",
        "Ask a question in English or Chinese",
        Some("ChatRequest"),
    ),
    (
        "get",
        "/api/v1/reports",
        "Stored reports (?playbook=&limit=)",
        None,
    ),
    (
        "get",
        "/api/v1/reports/{id}",
        "One report: JSON or HTML as stored",
        None,
    ),
    (
        "get",
        "/api/v1/patrols",
        "Patrol jobs and recent runs",
        None,
    ),
    ("post", "/api/v1/patrols/{id}/run", "Run a patrol now", None),
    (
        "post",
        "/api/v1/ingest",
        "vigil-agent batch (write scope): raw requests, profiles, resources; 409 on a protocol version mismatch, 413 above api.ingest_max_body_bytes",
        Some("IngestBatch"),
    ),
    ("get", "/api/openapi.json", "This document", None),
    ("get", "/metrics", "Prometheus metrics", None),
    ("get", "/healthz", "Liveness", None),
    (
        "get",
        "/readyz",
        "Readiness: state store and telemetry answer",
        None,
    ),
    (
        "post",
        "/mcp",
        "Model Context Protocol (streamable HTTP)",
        None,
    ),
];

fn schemas() -> Value {
    let labels = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "AlertmanagerWebhook": {
            "type": "object", "required": ["alerts"],
            "properties": {
                "version": {"type": "string", "const": "4"}, "status": {"type": "string"},
                "commonLabels": labels, "commonAnnotations": labels,
                "alerts": {"type": "array", "items": {"type": "object", "required": ["status", "startsAt"],
                    "properties": {"status": {"type": "string", "enum": ["firing", "resolved"]},
                        "labels": labels, "annotations": labels,
                        "startsAt": {"type": "string", "format": "date-time"},
                        "endsAt": {"type": "string", "format": "date-time"},
                        "generatorURL": {"type": "string"}, "fingerprint": {"type": "string"}}}}
            }
        },
        "DeepflowEvent": {
            "type": "object",
            "properties": {"alarm_id": {}, "policy_name": {"type": "string"},
                "event_level": {"type": "string", "enum": ["fatal", "error", "warning", "recovery", "info", "no-data"]},
                "alarm_target": {"type": "string"}, "tags": labels,
                "timestamp": {"type": "integer"}, "start_time": {"type": "string"}, "message": {"type": "string"}}
        },
        "GenericAlert": {
            "type": "object", "additionalProperties": false,
            "properties": {"fingerprint": {"type": "string"}, "status": {"type": "string"},
                "entity": {"type": "string"}, "labels": labels, "annotations": labels,
                "title": {"type": "string"}, "at": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}
        },
        "Feedback": {
            "type": "object", "required": ["correct"], "additionalProperties": false,
            "properties": {"correct": {"type": "boolean"}, "actual_cause": {"type": "string"}, "comment": {"type": "string"}}
        },
        "ChatRequest": {
            "type": "object", "required": ["question"], "additionalProperties": false,
            "properties": {"question": {"type": "string", "minLength": 1, "maxLength": 2000},
                "at": {"type": "integer"}, "llm": {"type": "boolean"}}
        },
        "IngestBatch": {
            "type": "object", "required": ["protocol"], "additionalProperties": false,
            "description": "What vigil-agent sends with no ClickHouse. `protocol` is the agent's ingest protocol version; another version than the server's is answered 409 with code protocol_version, naming both versions and the side to upgrade.",
            "properties": {
                "protocol": {"type": "integer", "const": vigil_model::INGEST_PROTOCOL_VERSION},
                "records": {"type": "array", "description": "Raw requests (vigil_model::RequestRecord)",
                    "items": {"type": "object", "required": ["start_us", "duration_us", "protocol", "status", "client", "server"]}},
                "profiles": {"type": "array", "description": "On-CPU profiles, one minute each (vigil_model::Profile)", "items": {"type": "object"}},
                "resources": {"type": "array", "description": "Resource series with 60 s steps (vigil_model::ResourceSeries)", "items": {"type": "object"}}
            }
        },
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}}}}
        }
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, body) in ROUTES {
        let mut operation = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Invalid input; the error names the field",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "A token (or webhook signature) is required"},
                "403": {"description": "The token lacks the scope"}
            }
        });
        if let Some(schema) = body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if path == crate::ingest::PATH {
            let error =
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
            operation["responses"]["409"] = json!({"description": "Agent and server speak different ingest protocol versions; the message names both and the side to upgrade", "content": error});
            operation["responses"]["413"] =
                json!({"description": "Body larger than api.ingest_max_body_bytes"});
            operation["responses"]["503"] = json!({"description": "No ingest target, or the store failed; the agent spools and retries", "content": error});
        }
        let entry = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Vigil API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Alert webhooks answered with root causes, chat, reports, patrols."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-Vigil-Signature",
                              "description": "sha256=<hex HMAC-SHA256 of the body>, webhooks only"}
            }
        },
        "security": [{"bearer": []}]
    })
}
