//! Prometheus metrics of the API at `/metrics`: requests by route and status,
//! their latency, webhook alerts by outcome, chat answers, LLM fallbacks,
//! agent ingest batches by outcome and what they carried.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, e.g. `/api/v1/incidents/{id}`.
    pub route: String,
    /// GET, POST…
    pub method: String,
    /// HTTP status.
    pub status: u16,
}

/// Labels of a route alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

/// Labels of an alert outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// alertmanager, grafana, deepflow, generic.
    pub source: String,
    /// opened, refreshed, resolved, unmapped, failed.
    pub outcome: String,
}

/// Labels of an ingest batch's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// stored, invalid, version_mismatch, unavailable, failed.
    pub outcome: String,
}

/// Labels of what an ingest batch carried.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestKindLabels {
    /// records, profiles, resources.
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, seconds.
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Alerts received, by outcome.
    pub alerts: Family<AlertLabels, Counter>,
    /// Chat questions answered.
    pub chat: Counter,
    /// LLM exchanges that failed and fell back to the deterministic answer.
    pub llm_fallbacks: Counter,
    /// Agent ingest batches, by outcome.
    pub ingest_batches: Family<IngestLabels, Counter>,
    /// Items stored through agent ingest, by kind.
    pub ingested: Family<IngestKindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with Vigil's API metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil_api");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let alerts = Family::<AlertLabels, Counter>::default();
        let chat = Counter::default();
        let llm_fallbacks = Counter::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register("alerts", "Alerts received, by outcome", alerts.clone());
        registry.register("chat_questions", "Chat questions answered", chat.clone());
        registry.register(
            "llm_fallbacks",
            "LLM exchanges that failed and fell back to the deterministic answer",
            llm_fallbacks.clone(),
        );
        let ingest_batches = Family::<IngestLabels, Counter>::default();
        let ingested = Family::<IngestKindLabels, Counter>::default();
        registry.register(
            "ingest_batches",
            "Agent ingest batches, by outcome",
            ingest_batches.clone(),
        );
        registry.register(
            "ingested_items",
            "Requests, profiles and resource series stored through agent ingest",
            ingested.clone(),
        );
        Self {
            registry,
            ingest_batches,
            ingested,
            requests,
            latency,
            alerts,
            chat,
            llm_fallbacks,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics");
        }
        out
    }
}
