//! API errors as JSON: `{"error": {"code", "message", "field"}}` with the
//! right status. Internal details are logged, not returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::alerts::ParseError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body does not parse; names the field.
    #[error("invalid request body at {field}: {message}")]
    BadBody {
        /// JSON path of the field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter is out of range.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The parameter.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Missing or wrong credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The token lacks the scope.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such thing.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. a patrol already running).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The peer speaks another protocol version; the message names both and the side to upgrade.
    #[error("protocol version mismatch: {0}")]
    Version(String),
    /// A needed part is not configured or is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Something failed inside.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> Self {
        Self::BadBody {
            field: error.field,
            message: error.message,
        }
    }
}

impl From<vigil_store::embedded::StoreError> for ApiError {
    fn from(error: vigil_store::embedded::StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadBody { .. } => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Version(_) => (StatusCode::CONFLICT, "protocol_version"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let field = match &self {
            Self::BadBody { field, .. } | Self::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error answering a request");
                "internal error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message, "field": field}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"vigil\""),
            );
        }
        response
    }
}
