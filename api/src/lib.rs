//! The HTTP API and web pages.
//!
//! Owns every HTTP and JSON wire shape Vigil speaks: alert webhooks
//! (Alertmanager, Grafana, DeepFlow, generic) answered synchronously with
//! ranked root causes, incidents and feedback, the chat endpoint, reports and
//! patrols, server-rendered pages, MCP over streamable HTTP, OpenAPI, metrics
//! and health; and their security (bearer tokens with scopes, webhook HMAC
//! signatures, body limits, strict JSON errors naming the field), and the
//! versioned agent ingest endpoint, which writes through
//! `vigil_model::TelemetryIngest`.
//! Does not own analysis or storage: it calls `vigil-assistant` and reads and
//! writes Vigil's state through `vigil-store`'s embedded store.

pub mod alerts;
pub mod bench;
pub mod config;
pub mod error;
pub mod handlers;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod security;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

pub use config::{ApiConfig, AuthConfig, McpConfig, Scope, TokenConfig, WebhookConfig};
pub use state::{ApiDeps, AppState, StoreReports};

/// Why the server did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid; each entry names a key under `api:`.
    #[error("invalid api configuration: {}", .0.iter().map(|(k, m)| format!("api.{k}: {m}")).collect::<Vec<_>>().join("; "))]
    Config(Vec<(String, String)>),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The router over prepared state (for tests and benchmarks).
pub fn router_with_state(state: Arc<AppState>, shutdown: CancellationToken) -> Router {
    let limit = state.config.max_body_bytes;
    let mut router = Router::new()
        .route("/api/v1/alerts/alertmanager", post(handlers::alertmanager))
        .route("/api/v1/alerts/grafana", post(handlers::grafana))
        .route("/api/v1/alerts/deepflow", post(handlers::deepflow))
        .route("/api/v1/alerts/generic", post(handlers::generic))
        .route("/api/v1/incidents", get(handlers::list_incidents))
        .route("/api/v1/incidents/{id}", get(handlers::get_incident))
        .route("/api/v1/incidents/{id}/feedback", post(handlers::feedback))
        .route("/api/v1/chat", post(handlers::chat))
        .route("/api/v1/reports", get(handlers::list_reports))
        .route("/api/v1/reports/{id}", get(handlers::get_report))
        .route("/api/v1/patrols", get(handlers::list_patrols))
        .route("/api/v1/patrols/{id}/run", post(handlers::run_patrol))
        .route("/api/openapi.json", get(handlers::openapi))
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/", get(pages::overview))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route("/reports", get(pages::reports))
        .route("/graph", get(pages::graph))
        .route("/chat", get(pages::chat));
    if state.config.mcp.enabled {
        let service = vigil_assistant::mcp::http_service(
            Arc::clone(&state.tools),
            state.config.mcp.allowed_hosts.clone(),
            shutdown,
        );
        router = router.nest_service("/mcp", service);
    }
    router = router
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit));
    // Agent batches are larger than anything else: their own limit, outside the general one.
    let ingest_limit = state.config.ingest_max_body_bytes;
    router = router.merge(
        Router::new()
            .route(ingest::PATH, post(ingest::ingest))
            .layer(DefaultBodyLimit::max(ingest_limit))
            .layer(RequestBodyLimitLayer::new(ingest_limit)),
    );
    router
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            security::authenticate,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// The router for `config` and `deps` (tests drive it without a socket).
pub fn router(config: ApiConfig, deps: ApiDeps, shutdown: CancellationToken) -> Router {
    router_with_state(Arc::new(AppState::new(config, deps)), shutdown)
}

/// Serves the API until `shutdown` is cancelled, then waits (up to 10 s) for
/// background enrichment. Refuses an invalid configuration, including a
/// non-loopback address without tokens unless `auth.allow_unauthenticated`.
pub async fn serve(
    config: ApiConfig,
    deps: ApiDeps,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let address: SocketAddr = config.listen.parse().map_err(|_| {
        ServeError::Config(vec![("listen".to_owned(), "not an address".to_owned())])
    })?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen.clone(),
            source,
        })?;
    serve_on(listener, config, deps, shutdown).await
}

/// Serves on an already bound listener (tests and benchmarks bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    deps: ApiDeps,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let state = Arc::new(AppState::new(config, deps));
    let app = router_with_state(Arc::clone(&state), shutdown.child_token());
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "API listening");
    }
    let stopping = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .await
        .map_err(ServeError::Serve)?;
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background enrichment still running at shutdown; abandoned");
    }
    Ok(())
}
