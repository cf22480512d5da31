//! `POST /api/v1/ingest`: batches from `vigil-agent` when there is no
//! ClickHouse. The body is an [`IngestBatch`] in JSON; its `protocol` is
//! checked first, so an agent of another release gets a message naming both
//! versions and the side to upgrade instead of a parse error. The batch is
//! written through [`vigil_model::TelemetryIngest`]: this crate never knows
//! which store it lands in.
//!
//! Answers: 200 with an [`IngestReceipt`]; 400 naming the field; 401/403
//! without a write token; 409 `protocol_version` on a version mismatch; 413
//! above `api.ingest_max_body_bytes`; 503 when no ingest target is configured
//! or the store failed (the agent keeps the batch in its spool and retries).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use vigil_model::{IngestBatch, IngestReceipt, SourceError, INGEST_PROTOCOL_VERSION};

use crate::alerts::parse_json;
use crate::error::ApiError;
use crate::metrics::IngestLabels;
use crate::state::AppState;

/// The route.
pub const PATH: &str = "/api/v1/ingest";

/// Only the version, read before the rest so that a newer batch shape is
/// reported as a version mismatch rather than an unknown field.
#[derive(Deserialize)]
struct Version {
    protocol: Option<u32>,
}

fn count(state: &AppState, outcome: &str) {
    state
        .metrics
        .ingest_batches
        .get_or_create(&IngestLabels {
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// Checks the version, parses and stores one batch.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<IngestReceipt>, ApiError> {
    let version: Version = parse_json(&body).inspect_err(|_| count(&state, "invalid"))?;
    let Some(protocol) = version.protocol else {
        count(&state, "invalid");
        return Err(ApiError::BadBody {
            field: "protocol".to_owned(),
            message: format!(
                "missing: an ingest batch carries the sender's protocol version (this server speaks {INGEST_PROTOCOL_VERSION})"
            ),
        });
    };
    if let Some(message) = vigil_model::ingest::protocol_mismatch(protocol) {
        count(&state, "version_mismatch");
        tracing::warn!(
            agent = protocol,
            server = INGEST_PROTOCOL_VERSION,
            "ingest refused: {message}"
        );
        return Err(ApiError::Version(message));
    }
    let batch: IngestBatch = parse_json(&body).inspect_err(|_| count(&state, "invalid"))?;
    let Some(target) = &state.ingest else {
        count(&state, "unavailable");
        return Err(ApiError::Unavailable(
            "this server has no telemetry ingest target; run `vigil serve` with the embedded store or store.clickhouse".to_owned(),
        ));
    };
    match target.ingest(&batch).await {
        Ok(receipt) => {
            count(&state, "stored");
            for (kind, n) in [
                ("records", receipt.records),
                ("profiles", receipt.profiles),
                ("resources", receipt.resources),
            ] {
                state
                    .metrics
                    .ingested
                    .get_or_create(&crate::metrics::IngestKindLabels {
                        kind: kind.to_owned(),
                    })
                    .inc_by(n as u64);
            }
            Ok(Json(receipt))
        }
        Err(SourceError::InvalidRequest(message)) => {
            count(&state, "invalid");
            Err(ApiError::BadBody {
                field: ".".to_owned(),
                message,
            })
        }
        Err(error) => {
            count(&state, "failed");
            tracing::warn!(backend = target.backend(), %error, "ingest failed");
            Err(ApiError::Unavailable(format!(
                "the {} store did not take the batch: {error}",
                target.backend()
            )))
        }
    }
}
