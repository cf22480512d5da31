//! JSON endpoints: webhooks, incidents and feedback, chat, reports, patrols,
//! health and metrics.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vigil_assistant::{ask_with_llm, AskOptions};
use vigil_model::{EntityId, Timestamp};
use vigil_scheduler::TriggerError;
use vigil_store::embedded::{IncidentFeedback, IncidentStatus, ReportContent};

use crate::alerts::{self, parse_json, AlertSource};
use crate::error::ApiError;
use crate::security::{signature_valid, WriteToken};
use crate::state::{AlertResult, AppState};

type Shared = State<Arc<AppState>>;

/// Webhook answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookResponse {
    /// Alerts in the payload.
    pub received: usize,
    /// One result per alert handled synchronously.
    pub results: Vec<AlertResult>,
    /// Alerts beyond `max_alerts_per_request`, handled in the background.
    pub queued: usize,
}

async fn webhook(
    state: Arc<AppState>,
    source: AlertSource,
    write: WriteToken,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<WebhookResponse>, ApiError> {
    let secret = state.config.webhooks.secret();
    let signed = !secret.is_empty() && signature_valid(secret.as_bytes(), headers, body);
    if state.config.webhooks.require_signature && !signed {
        return Err(ApiError::Unauthorized(
            "a valid X-Vigil-Signature is required".to_owned(),
        ));
    }
    if !write.0 && !signed {
        return Err(ApiError::Unauthorized(
            "a write token or a valid X-Vigil-Signature is required".to_owned(),
        ));
    }
    let alerts = alerts::parse(source, body)?;
    let received = alerts.len();
    let limit = state.config.webhooks.max_alerts_per_request;
    let mut results = Vec::new();
    let mut rest = Vec::new();
    for (index, alert) in alerts.into_iter().enumerate() {
        if index < limit {
            results.push(state.handle_alert(alert).await?);
        } else {
            rest.push(alert);
        }
    }
    let queued = rest.len();
    if !rest.is_empty() {
        let background = Arc::clone(&state);
        state.tasks.spawn(async move {
            for alert in rest {
                if let Err(error) = background.handle_alert(alert).await {
                    tracing::warn!(%error, "queued alert failed");
                }
            }
        });
    }
    Ok(Json(WebhookResponse {
        received,
        results,
        queued,
    }))
}

/// `POST /api/v1/alerts/alertmanager`
pub async fn alertmanager(
    State(state): Shared,
    Extension(write): Extension<WriteToken>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookResponse>, ApiError> {
    webhook(state, AlertSource::Alertmanager, write, &headers, &body).await
}

/// `POST /api/v1/alerts/grafana`
pub async fn grafana(
    State(state): Shared,
    Extension(write): Extension<WriteToken>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookResponse>, ApiError> {
    webhook(state, AlertSource::Grafana, write, &headers, &body).await
}

/// `POST /api/v1/alerts/deepflow`
pub async fn deepflow(
    State(state): Shared,
    Extension(write): Extension<WriteToken>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookResponse>, ApiError> {
    webhook(state, AlertSource::Deepflow, write, &headers, &body).await
}

/// `POST /api/v1/alerts/generic`
pub async fn generic(
    State(state): Shared,
    Extension(write): Extension<WriteToken>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookResponse>, ApiError> {
    webhook(state, AlertSource::Generic, write, &headers, &body).await
}

/// Query of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
    /// `open` or `resolved` (incidents).
    pub status: Option<String>,
    /// A playbook id (reports).
    pub playbook: Option<String>,
}

fn limit_of(query: &ListQuery) -> usize {
    query.limit.unwrap_or(50).clamp(1, 500)
}

/// `GET /api/v1/incidents`
pub async fn list_incidents(
    State(state): Shared,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") | Some("any") => None,
        Some("open") => Some(IncidentStatus::Open),
        Some("resolved") => Some(IncidentStatus::Resolved),
        Some(other) => {
            return Err(ApiError::Invalid {
                field: "status".to_owned(),
                message: format!("{other:?}: expected open, resolved or any"),
            })
        }
    };
    let incidents = state.store.list_incidents(status, limit_of(&query)).await?;
    Ok(Json(json!({"incidents": incidents})))
}

/// `GET /api/v1/incidents/{id}`
pub async fn get_incident(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let incident = state
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    Ok(Json(json!(incident)))
}

/// Feedback on an incident's suggestions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// Whether the top suggestion was the cause.
    pub correct: bool,
    /// The actual cause (an entity id), when another.
    #[serde(default)]
    pub actual_cause: Option<String>,
    /// Free text.
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/incidents/{id}/feedback`
pub async fn feedback(
    State(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: FeedbackRequest = parse_json(&body)?;
    if let Some(cause) = &request.actual_cause {
        cause.parse::<EntityId>().map_err(|e| ApiError::BadBody {
            field: "actual_cause".to_owned(),
            message: e.to_string(),
        })?;
    }
    if request.comment.chars().count() > 2000 {
        return Err(ApiError::BadBody {
            field: "comment".to_owned(),
            message: "at most 2000 characters".to_owned(),
        });
    }
    let feedback = IncidentFeedback {
        correct: request.correct,
        actual_cause: request.actual_cause,
        comment: request.comment,
        given: state.now(),
    };
    if !state.store.set_incident_feedback(&id, &feedback).await? {
        return Err(ApiError::NotFound(format!("incident {id}")));
    }
    Ok(Json(json!({"incident_id": id, "feedback": feedback})))
}

/// A chat question.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The question, English or Chinese (1 to 2000 characters).
    pub question: String,
    /// The time asked about, unix seconds; now when absent.
    #[serde(default)]
    pub at: Option<i64>,
    /// Whether the LLM may be used (when enabled); default true.
    #[serde(default)]
    pub llm: Option<bool>,
}

/// Parses and checks a chat request body (pure; used by the handler and fuzzed).
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let request: ChatRequest = parse_json(body)?;
    let length = request.question.trim().chars().count();
    if length == 0 || length > 2000 {
        return Err(ApiError::BadBody {
            field: "question".to_owned(),
            message: "must have 1 to 2000 characters".to_owned(),
        });
    }
    if let Some(at) = request.at {
        if !(0..=i64::from(u32::MAX) * 10).contains(&at) {
            return Err(ApiError::BadBody {
                field: "at".to_owned(),
                message: "unix seconds out of range".to_owned(),
            });
        }
    }
    Ok(request)
}

/// `POST /api/v1/chat`
pub async fn chat(State(state): Shared, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request = parse_chat(&body)?;
    let now = request.at.map_or_else(|| state.now(), Timestamp);
    let options = AskOptions {
        investigate: state.config.investigate.clone(),
        aliases: state.config.aliases.clone(),
        link_base: Some(state.link("")).filter(|l| !l.is_empty()),
    };
    let llm = if request.llm.unwrap_or(true) {
        state.llm.as_ref()
    } else {
        None
    };
    let answer = ask_with_llm(&request.question, &state.tools, now, &options, llm).await;
    state.metrics.chat.inc();
    if llm.is_some() && !answer.llm {
        state.metrics.llm_fallbacks.inc();
    }
    Ok(Json(json!(answer)))
}

fn format_of(content: &ReportContent) -> &'static str {
    match content {
        ReportContent::Markdown(_) => "markdown",
        ReportContent::Html(_) => "html",
        ReportContent::Text(_) => "text",
        ReportContent::Json(_) => "json",
    }
}

/// `GET /api/v1/reports`
pub async fn list_reports(
    State(state): Shared,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let reports = state
        .store
        .list_reports(query.playbook.as_deref(), limit_of(&query))
        .await?;
    let items: Vec<Value> = reports
        .iter()
        .map(|r| {
            json!({"id": r.id, "playbook_id": r.playbook_id, "patrol_run_id": r.patrol_run_id,
                   "created": r.created, "language": r.language, "title": r.title,
                   "format": format_of(&r.content), "url": format!("/api/v1/reports/{}", r.id)})
        })
        .collect();
    Ok(Json(json!({"reports": items})))
}

/// `GET /api/v1/reports/{id}`: JSON reports as JSON, HTML as a page.
pub async fn get_report(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let report = state
        .store
        .report(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("report {id}")))?;
    Ok(match report.content {
        ReportContent::Json(value) => Json(value).into_response(),
        ReportContent::Html(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            html,
        )
            .into_response(),
        ReportContent::Markdown(text) => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            text,
        )
            .into_response(),
        ReportContent::Text(text) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
    })
}

/// `GET /api/v1/patrols`
pub async fn list_patrols(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let jobs: Vec<Value> = state
        .scheduler
        .as_ref()
        .map(|scheduler| {
            scheduler
                .status()
                .into_iter()
                .map(|job| {
                    json!({"id": job.job_id, "schedule": job.schedule, "utc_offset": job.utc_offset,
                           "next_fire": job.next_fire,
                           "running": job.running.map(|r| json!({"run_id": r.run_id, "started": r.started}))})
                })
                .collect()
        })
        .unwrap_or_default();
    let runs = state.store.list_patrol_runs(None, 50).await?;
    Ok(Json(
        json!({"scheduler": state.scheduler.is_some(), "jobs": jobs, "runs": runs}),
    ))
}

/// `POST /api/v1/patrols/{id}/run`
pub async fn run_patrol(
    State(state): Shared,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let scheduler = state.scheduler.as_ref().ok_or_else(|| {
        ApiError::Unavailable("the scheduler does not run in this process".to_owned())
    })?;
    match scheduler.trigger(&id).await {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(json!({"run": run})))),
        Err(error @ TriggerError::UnknownJob { .. }) => Err(ApiError::NotFound(error.to_string())),
        Err(error @ TriggerError::AlreadyRunning { .. }) => {
            Err(ApiError::Conflict(error.to_string()))
        }
        Err(error @ TriggerError::ShuttingDown { .. }) => {
            Err(ApiError::Unavailable(error.to_string()))
        }
    }
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the state store and telemetry answer.
pub async fn readyz(State(state): Shared) -> Response {
    let store = state.store.list_incidents(None, 1).await.is_ok();
    let now = state.now();
    let range = vigil_model::TimeRange {
        start: now.plus_secs(-60),
        end: now.plus_secs(1),
    };
    let telemetry = state.source.events(range).await.is_ok();
    let status = if store && telemetry {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"store": store, "telemetry": telemetry, "backend": state.source.backend()})),
    )
        .into_response()
}

/// `GET /metrics`
pub async fn metrics(State(state): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /api/openapi.json`
pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}
