//! Webhook latency, measured in-process through the router (no socket): what
//! `vigil bench api` calls. Each request carries a new fingerprint, so every
//! one opens an incident and runs a full investigation (the slow path).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde::Serialize;
use tower::ServiceExt as _;
use vigil_model::{EntityId, Timestamp};

use crate::alerts::format_rfc3339;
use crate::state::AppState;

/// Latency figures of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyFigures {
    /// Requests sent.
    pub requests: usize,
    /// Requests answered 200.
    pub ok: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Requests per second, sequentially.
    pub per_second: f64,
}

/// An Alertmanager v4 payload with one firing alert on `service`.
pub fn alertmanager_payload(fingerprint: &str, service: &str, starts_at: Timestamp) -> Vec<u8> {
    serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "status": "firing",
        "receiver": "vigil", "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing",
            "labels": {"alertname": "HighLatency", "service": service, "severity": "critical"},
            "annotations": {"summary": format!("p99 latency of {service} is high")},
            "startsAt": format_rfc3339(starts_at), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint}]
    })
    .to_string()
    .into_bytes()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Sends `requests` Alertmanager webhooks, cycling over `targets` (symptom
/// service and alert time), each with a fresh fingerprint, and measures them.
pub async fn webhook_latency(
    state: Arc<AppState>,
    targets: &[(EntityId, Timestamp)],
    requests: usize,
) -> LatencyFigures {
    let router = crate::router_with_state(state, tokio_util::sync::CancellationToken::new());
    let mut times = Vec::with_capacity(requests);
    let mut ok = 0;
    let started = Instant::now();
    for index in 0..requests {
        let Some((service, at)) = targets.get(index % targets.len().max(1)) else {
            break;
        };
        let body = alertmanager_payload(&format!("bench-{index}"), service.name(), *at);
        let request = Request::post("/api/v1/alerts/alertmanager")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body));
        let Ok(request) = request else {
            continue;
        };
        let clock = Instant::now();
        let Ok(response) = router.clone().oneshot(request).await;
        if response.status() == StatusCode::OK {
            ok += 1;
        }
        times.push(clock.elapsed().as_secs_f64() * 1000.0);
    }
    let total = started.elapsed().as_secs_f64();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    LatencyFigures {
        requests: times.len(),
        ok,
        p50_ms: percentile(&sorted, 0.5),
        p99_ms: percentile(&sorted, 0.99),
        max_ms: sorted.last().copied().unwrap_or(f64::NAN),
        mean_ms: times.iter().sum::<f64>() / times.len().max(1) as f64,
        per_second: times.len() as f64 / total.max(1e-9),
    }
}
