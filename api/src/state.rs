//! Shared state of the server and the alert → incident flow: map labels to an
//! entity, investigate, deduplicate by fingerprint, store the incident with its
//! suggestions and similar past incidents, then enrich and notify in the
//! background.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::task::TaskTracker;
use vigil_assistant::tools::Clock;
use vigil_assistant::{
    investigate_cached, EntityIndex, EvidenceItem, InvestigationCache, LabelMatch, LatestReport,
    LlmClient, Suggestion, Tools,
};
use vigil_model::{
    DeliveryRecord, EntityId, Language, PatrolReport, Severity, TelemetryIngest, TelemetrySource,
    TimeRange, Timestamp,
};
use vigil_notify::{Message, MessageKind, Notifier};
use vigil_scheduler::SchedulerHandle;
use vigil_store::embedded::{EmbeddedStore, Incident, IncidentStatus, ReportContent};

use crate::alerts::{Alert, AlertSource, AlertStatus};
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::metrics::{AlertLabels, Metrics};
use crate::security::Tokens;

/// What the API needs from the rest of Vigil; the binary builds it.
#[derive(Clone)]
pub struct ApiDeps {
    /// Telemetry, read only through the trait.
    pub source: Arc<dyn TelemetrySource>,
    /// Vigil's state: reports, patrol runs, incidents.
    pub store: Arc<EmbeddedStore>,
    /// Manual patrol runs and their status, when the scheduler runs in-process.
    pub scheduler: Option<SchedulerHandle>,
    /// Notifications for incidents, when configured.
    pub notifier: Option<Arc<Notifier>>,
    /// The present; the system clock when `None` (tests pin it to simulated time).
    pub clock: Option<Clock>,
    /// Where agents' batches (`POST /api/v1/ingest`) are written; the
    /// endpoint answers 503 when `None`.
    pub ingest: Option<Arc<dyn TelemetryIngest>>,
}

impl std::fmt::Debug for ApiDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDeps")
            .field("backend", &self.source.backend())
            .field("store", &self.store.path())
            .field("scheduler", &self.scheduler.is_some())
            .field("notifier", &self.notifier.is_some())
            .field("ingest", &self.ingest.as_ref().map(|i| i.backend()))
            .finish_non_exhaustive()
    }
}

/// A past incident like a new one, with what its cause turned out to be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarIncident {
    /// Its id.
    pub id: String,
    /// When it opened.
    pub opened: Timestamp,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// Its symptom.
    pub symptom: Option<EntityId>,
    /// Its top suggestion.
    pub top_cause: Option<EntityId>,
    /// The cause an operator confirmed (the top suggestion when confirmed
    /// correct, or the actual cause they named).
    pub confirmed_cause: Option<String>,
    /// `same-symptom` or `same-top-cause`.
    pub reason: String,
}

/// What an incident keeps (its `payload`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentPayload {
    /// The alert's title.
    pub title: String,
    /// Where the alert came from.
    pub source: AlertSource,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// The entity investigated.
    pub symptom: Option<EntityId>,
    /// How the labels mapped to it.
    pub mapped_by: Option<LabelMatch>,
    /// Alert time.
    pub at: Timestamp,
    /// Ranked root causes with evidence.
    pub suggestions: Vec<Suggestion>,
    /// The symptom's own anomalies.
    pub symptom_evidence: Vec<EvidenceItem>,
    /// What was missing.
    pub missing: Vec<String>,
    /// Similar past incidents.
    pub similar: Vec<SimilarIncident>,
    /// Times the alert was received while open.
    pub occurrences: u32,
    /// The last time it was received.
    pub last_seen: Timestamp,
    /// LLM or deterministic summary, added by enrichment.
    #[serde(default)]
    pub summary: Option<String>,
    /// Notifications sent.
    #[serde(default)]
    pub deliveries: Vec<DeliveryRecord>,
    /// Investigation wall time, ms.
    pub investigation_ms: f64,
}

/// The answer for one alert of a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertResult {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// `opened`, `refreshed`, `resolved`, `unmapped`, `queued` or `ignored`.
    pub outcome: String,
    /// The incident, when one exists.
    pub incident_id: Option<String>,
    /// Where to see it.
    pub link: Option<String>,
    /// The entity investigated.
    pub symptom: Option<EntityId>,
    /// Ranked suggestions, best first.
    pub suggestions: Vec<Suggestion>,
    /// Similar past incidents and their causes.
    pub similar: Vec<SimilarIncident>,
    /// What was missing, or why nothing was done.
    pub notes: Vec<String>,
}

struct CachedIndex {
    built: Instant,
    hour: Timestamp,
    index: Arc<EntityIndex>,
}

/// Shared server state.
pub struct AppState {
    /// Configuration.
    pub config: ApiConfig,
    /// Telemetry.
    pub source: Arc<dyn TelemetrySource>,
    /// Vigil's state.
    pub store: Arc<EmbeddedStore>,
    /// Patrol control.
    pub scheduler: Option<SchedulerHandle>,
    /// Notifications.
    pub notifier: Option<Arc<Notifier>>,
    /// Where agents' batches are written.
    pub ingest: Option<Arc<dyn TelemetryIngest>>,
    /// Tools (chat, LLM, MCP).
    pub tools: Arc<Tools>,
    /// The LLM, when enabled.
    pub llm: Option<LlmClient>,
    /// Tokens.
    pub tokens: Tokens,
    /// Metrics.
    pub metrics: Metrics,
    /// The clock.
    pub clock: Clock,
    /// Background enrichment tasks.
    pub tasks: TaskTracker,
    index: tokio::sync::Mutex<Option<CachedIndex>>,
    /// Reads and analysis shared by alerts about the same window.
    investigations: InvestigationCache,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// The latest patrol report from the state store (for the assistant's tools).
pub struct StoreReports(pub Arc<EmbeddedStore>);

#[async_trait]
impl LatestReport for StoreReports {
    async fn latest(&self) -> Option<PatrolReport> {
        latest_report(&self.0).await
    }
}

/// The newest stored patrol report (JSON content), if any.
pub async fn latest_report(store: &EmbeddedStore) -> Option<PatrolReport> {
    let reports = store.list_reports(None, 30).await.ok()?;
    reports.into_iter().find_map(|r| match r.content {
        ReportContent::Json(value) => serde_json::from_value::<PatrolReport>(value).ok(),
        _ => None,
    })
}

impl AppState {
    /// State for `config` and `deps`; builds the LLM client when enabled.
    pub fn new(config: ApiConfig, deps: ApiDeps) -> Self {
        let clock = deps
            .clock
            .unwrap_or_else(vigil_assistant::tools::system_clock);
        let tools = Tools::new(Arc::clone(&deps.source), config.investigate.clone())
            .with_aliases(config.aliases.clone())
            .with_reports(Arc::new(StoreReports(Arc::clone(&deps.store))))
            .with_clock(Arc::clone(&clock));
        let llm = if config.llm.enabled {
            match LlmClient::new(config.llm.clone()) {
                Ok(client) => Some(client),
                Err(error) => {
                    tracing::warn!(%error, "LLM disabled");
                    None
                }
            }
        } else {
            None
        };
        Self {
            tokens: Tokens::new(&config.auth),
            config,
            source: deps.source,
            store: deps.store,
            scheduler: deps.scheduler,
            notifier: deps.notifier,
            ingest: deps.ingest,
            tools: Arc::new(tools),
            llm,
            metrics: Metrics::new(),
            clock,
            tasks: TaskTracker::new(),
            index: tokio::sync::Mutex::new(None),
            investigations: InvestigationCache::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The present.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// A link to a page, absolute when `public_url` is set.
    pub fn link(&self, path: &str) -> String {
        match &self.config.public_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path.to_owned(),
        }
    }

    /// The entity index of the topology around `at`, cached per hour for `index_ttl_secs`.
    pub async fn index(&self, at: Timestamp) -> Result<Arc<EntityIndex>, ApiError> {
        let hour = at.floor_to(3600);
        let mut cached = self.index.lock().await;
        if let Some(found) = cached.as_ref() {
            if found.hour == hour
                && found.built.elapsed() < Duration::from_secs(self.config.index_ttl_secs)
            {
                return Ok(Arc::clone(&found.index));
            }
        }
        let range = TimeRange {
            start: hour.plus_secs(-3600),
            end: hour.plus_secs(7200),
        };
        let topology = self
            .source
            .topology(range)
            .await
            .map_err(|e| ApiError::Unavailable(format!("telemetry: {e}")))?;
        let index = Arc::new(EntityIndex::new(&topology, &self.config.aliases));
        *cached = Some(CachedIndex {
            built: Instant::now(),
            hour,
            index: Arc::clone(&index),
        });
        Ok(index)
    }

    fn lock_for(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.len() > 10_000 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Arc::clone(locks.entry(fingerprint.to_owned()).or_default())
    }

    fn count(&self, source: AlertSource, outcome: &str) {
        self.metrics
            .alerts
            .get_or_create(&AlertLabels {
                source: source.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Handles one alert: resolve, refresh or open (investigating) its incident.
    pub async fn handle_alert(self: &Arc<Self>, mut alert: Alert) -> Result<AlertResult, ApiError> {
        if alert.starts_at == Timestamp(0) {
            alert.starts_at = self.now();
        }
        let lock = self.lock_for(&alert.fingerprint);
        let _guard = lock.lock().await;
        let open = self.store.open_incident(&alert.fingerprint).await?;
        let mut result = AlertResult {
            fingerprint: alert.fingerprint.clone(),
            outcome: String::new(),
            incident_id: None,
            link: None,
            symptom: None,
            suggestions: Vec::new(),
            similar: Vec::new(),
            notes: Vec::new(),
        };
        if alert.status == AlertStatus::Resolved {
            let Some(incident) = open else {
                result.outcome = "ignored".to_owned();
                result
                    .notes
                    .push("no open incident has this fingerprint".to_owned());
                self.count(alert.source, "ignored");
                return Ok(result);
            };
            let at = alert.ends_at.unwrap_or_else(|| self.now());
            self.store.resolve_incident(&incident.id, at).await?;
            result.outcome = "resolved".to_owned();
            result.link = Some(self.link(&format!("/incidents/{}", incident.id)));
            result.incident_id = Some(incident.id.clone());
            self.count(alert.source, "resolved");
            self.notify_later(incident, MessageKind::Resolved);
            return Ok(result);
        }
        if let Some(mut incident) = open {
            let mut payload: IncidentPayload = serde_json::from_value(incident.payload.clone())
                .map_err(|e| ApiError::Internal(format!("incident {}: {e}", incident.id)))?;
            payload.occurrences += 1;
            payload.last_seen = self.now();
            incident.payload =
                serde_json::to_value(&payload).map_err(|e| ApiError::Internal(e.to_string()))?;
            self.store.save_incident(&incident).await?;
            result.outcome = "refreshed".to_owned();
            result.link = Some(self.link(&format!("/incidents/{}", incident.id)));
            result.incident_id = Some(incident.id);
            result.symptom = payload.symptom;
            result.suggestions = payload.suggestions;
            result.similar = payload.similar;
            result.notes.push(format!(
                "already open; received {} times",
                payload.occurrences
            ));
            self.count(alert.source, "refreshed");
            return Ok(result);
        }
        // A new incident: map, investigate, remember.
        let index = self.index(alert.starts_at).await?;
        let mapped = index.resolve_labels(&alert.labels);
        let mut payload = IncidentPayload {
            title: alert.title.clone(),
            source: alert.source,
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            symptom: mapped.as_ref().map(|m| m.entity.clone()),
            mapped_by: mapped.clone(),
            at: alert.starts_at,
            suggestions: Vec::new(),
            symptom_evidence: Vec::new(),
            missing: Vec::new(),
            similar: Vec::new(),
            occurrences: 1,
            last_seen: self.now(),
            summary: None,
            deliveries: Vec::new(),
            investigation_ms: 0.0,
        };
        match &mapped {
            None => {
                let tried: Vec<String> = alert
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                payload.missing.push(format!(
                    "no label names a known entity (tried {}); add a service, instance or entity label, or an alias",
                    tried.join(", ")
                ));
                self.count(alert.source, "unmapped");
                result.outcome = "unmapped".to_owned();
            }
            Some(found) => {
                match investigate_cached(
                    self.source.as_ref(),
                    &self.investigations,
                    &found.entity,
                    alert.starts_at,
                    &self.config.investigate,
                )
                .await
                {
                    Ok(investigation) => {
                        payload.suggestions = investigation.suggestions;
                        payload.symptom_evidence = investigation.symptom_evidence;
                        payload.missing = investigation.missing;
                        payload.investigation_ms = investigation.elapsed_ms;
                        result.outcome = "opened".to_owned();
                        self.count(alert.source, "opened");
                    }
                    Err(error) => {
                        payload
                            .missing
                            .push(format!("investigation failed: {error}"));
                        result.outcome = "opened".to_owned();
                        self.count(alert.source, "failed");
                    }
                }
            }
        }
        payload.similar = self.similar(&payload).await?;
        let opened = self.now();
        let id = incident_id(&alert.fingerprint, opened);
        let incident = Incident {
            id: id.clone(),
            fingerprint: alert.fingerprint.clone(),
            status: IncidentStatus::Open,
            opened,
            resolved: None,
            payload: serde_json::to_value(&payload)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            feedback: None,
        };
        self.store.save_incident(&incident).await?;
        result.link = Some(self.link(&format!("/incidents/{id}")));
        result.incident_id = Some(id);
        result.symptom = payload.symptom.clone();
        result.suggestions = payload.suggestions.clone();
        result.similar = payload.similar.clone();
        result.notes = payload.missing.clone();
        self.notify_later(incident, MessageKind::Alert);
        Ok(result)
    }

    /// Past incidents with the same symptom or the same top cause, newest first.
    async fn similar(&self, payload: &IncidentPayload) -> Result<Vec<SimilarIncident>, ApiError> {
        let top = payload.suggestions.first().map(|s| s.entity.clone());
        if payload.symptom.is_none() && top.is_none() {
            return Ok(Vec::new());
        }
        let past = self.store.list_incidents(None, 500).await?;
        let mut out = Vec::new();
        for incident in past {
            let Ok(other) = serde_json::from_value::<IncidentPayload>(incident.payload.clone())
            else {
                continue;
            };
            let other_top = other.suggestions.first().map(|s| s.entity.clone());
            let reason = if payload.symptom.is_some() && other.symptom == payload.symptom {
                "same-symptom"
            } else if top.is_some() && other_top == top {
                "same-top-cause"
            } else {
                continue;
            };
            let confirmed_cause = incident.feedback.as_ref().and_then(|f| {
                f.actual_cause.clone().or_else(|| {
                    f.correct
                        .then(|| other_top.as_ref().map(ToString::to_string))
                        .flatten()
                })
            });
            out.push(SimilarIncident {
                id: incident.id,
                opened: incident.opened,
                status: incident.status,
                symptom: other.symptom,
                top_cause: other_top,
                confirmed_cause,
                reason: reason.to_owned(),
            });
            if out.len() >= 5 {
                break;
            }
        }
        Ok(out)
    }

    /// Enrichment and notification in the background (never delays the answer).
    fn notify_later(self: &Arc<Self>, incident: Incident, kind: MessageKind) {
        let notify = self.notifier.is_some() && self.config.notify_incidents;
        if !notify && self.llm.is_none() {
            return;
        }
        let state = Arc::clone(self);
        self.tasks.spawn(async move {
            if let Err(error) = state.enrich(incident, kind, notify).await {
                tracing::warn!(%error, "incident enrichment failed");
            }
        });
    }

    async fn enrich(
        &self,
        incident: Incident,
        kind: MessageKind,
        notify: bool,
    ) -> Result<(), ApiError> {
        let Ok(mut payload) = serde_json::from_value::<IncidentPayload>(incident.payload.clone())
        else {
            return Ok(());
        };
        let mut markdown = incident_markdown(&incident.id, &payload, kind);
        if kind == MessageKind::Alert {
            if let Some(llm) = &self.llm {
                let facts = serde_json::json!({
                    "alert": payload.title, "symptom": payload.symptom,
                    "suggestions": payload.suggestions.iter().take(3).collect::<Vec<_>>(),
                    "similar": payload.similar});
                match llm.summarise_facts(&facts, Language::En).await {
                    Ok(summary) => {
                        markdown = format!("{summary}\n\n{markdown}");
                        payload.summary = Some(summary);
                    }
                    Err(error) => {
                        self.metrics.llm_fallbacks.inc();
                        tracing::warn!(%error, "LLM summary failed; the deterministic text is sent");
                    }
                }
            }
        }
        if notify {
            if let Some(notifier) = &self.notifier {
                let message = Message {
                    id: format!("{}-{}", incident.id, kind.as_str()),
                    kind,
                    title: format!(
                        "{}{}",
                        payload.title,
                        payload
                            .symptom
                            .as_ref()
                            .map(|s| format!(" on {s}"))
                            .unwrap_or_default()
                    ),
                    severity: Severity::Warning,
                    services: payload.symptom.iter().cloned().collect(),
                    text: markdown.clone(),
                    markdown,
                    html: None,
                    link: Some(self.link(&format!("/incidents/{}", incident.id))),
                    created: self.now(),
                    extra: serde_json::json!({"suggestions": payload.suggestions.iter().take(3).collect::<Vec<_>>()}),
                };
                payload.deliveries.extend(notifier.send(&message).await);
            }
        }
        // Save back onto the latest version of the incident (status may have changed).
        if let Some(mut latest) = self.store.incident(&incident.id).await? {
            if let Ok(mut stored) =
                serde_json::from_value::<IncidentPayload>(latest.payload.clone())
            {
                stored.summary = payload.summary.or(stored.summary);
                stored.deliveries.extend(payload.deliveries);
                latest.payload =
                    serde_json::to_value(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
                self.store.save_incident(&latest).await?;
            }
        }
        Ok(())
    }
}

/// `inc-<time>-<hash>`: unique per fingerprint and opening.
fn incident_id(fingerprint: &str, opened: Timestamp) -> String {
    let digest = Sha256::digest(format!("{fingerprint}|{opened}|{:?}", Instant::now()).as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("inc-{}-{hash}", opened.secs())
}

/// An incident as Markdown, for notifications.
pub fn incident_markdown(id: &str, payload: &IncidentPayload, kind: MessageKind) -> String {
    let mut text = String::new();
    if kind == MessageKind::Resolved {
        let _ = write!(text, "Resolved: **{}** ({id})", payload.title);
        return text;
    }
    let _ = writeln!(
        text,
        "**{}** on {}",
        payload.title,
        payload
            .symptom
            .as_ref()
            .map_or_else(|| "an unknown entity".to_owned(), ToString::to_string)
    );
    for s in payload.suggestions.iter().take(3) {
        let _ = writeln!(
            text,
            "{}. {} ({:.0}%){}",
            s.rank,
            s.entity,
            s.confidence * 100.0,
            s.evidence
                .first()
                .map(|e| format!(" — {}", e.summary))
                .unwrap_or_default()
        );
    }
    for similar in payload.similar.iter().take(2) {
        let _ = writeln!(
            text,
            "Similar: {} ({}), cause {}",
            similar.id,
            similar.reason,
            similar.confirmed_cause.as_deref().unwrap_or("unconfirmed")
        );
    }
    for note in &payload.missing {
        let _ = writeln!(text, "_Note: {note}_");
    }
    text
}
