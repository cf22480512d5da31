//! Bearer tokens with read / write scopes, and webhook HMAC signatures.
//!
//! With no token configured everything is open (the server then refuses a
//! non-loopback address unless told otherwise). Tokens come in
//! `Authorization: Bearer …` or, for browsers on the pages, the `vigil_token`
//! cookie. Webhooks accept a write token or a valid
//! `X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::Scope;
use crate::error::ApiError;
use crate::state::AppState;

/// Tokens resolved at start-up: (name, sha256 of token, scopes).
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32], Vec<Scope>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn digest(text: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(text));
    out
}

/// Equality that takes the same time whatever the bytes.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Tokens {
    /// Tokens of the configuration (values read from the environment where configured).
    pub fn new(config: &crate::config::AuthConfig) -> Self {
        Self {
            entries: config
                .tokens
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        digest(t.value().as_bytes()),
                        t.scopes.clone(),
                    )
                })
                .filter(|(_, d, _)| *d != digest(b""))
                .collect(),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The scopes of a presented token; `None` when unknown.
    fn scopes_of(&self, presented: &str) -> Option<(&str, &[Scope])> {
        let presented = digest(presented.as_bytes());
        self.entries
            .iter()
            .find(|(_, d, _)| constant_time_eq(d, &presented))
            .map(|(name, _, scopes)| (name.as_str(), scopes.as_slice()))
    }
}

/// The token a request presents, from the header or the cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == "vigil_token")
        .map(|(_, v)| v.to_owned())
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing (health probes).
    Nothing,
    /// A read token.
    Read,
    /// A write token.
    Write,
    /// A write token or a valid signature (checked by the handler, which has the body).
    WriteOrSignature,
}

/// The need of a request by method and path.
pub fn need_of(method: &Method, path: &str) -> Need {
    if path == "/healthz" || path == "/readyz" {
        return Need::Nothing;
    }
    if path.starts_with("/api/v1/alerts/") {
        return Need::WriteOrSignature;
    }
    if *method == Method::POST && path != "/api/v1/chat" && !path.starts_with("/mcp") {
        return Need::Write;
    }
    Need::Read
}

/// Whether the request was authorised with a write token (for webhooks).
#[derive(Clone, Copy, Debug)]
pub struct WriteToken(pub bool);

/// The authentication middleware.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let need = need_of(request.method(), request.uri().path());
    let tokens = &state.tokens;
    if !tokens.enabled() || need == Need::Nothing {
        request
            .extensions_mut()
            .insert(WriteToken(!tokens.enabled()));
        return next.run(request).await;
    }
    let scopes = presented(request.headers()).and_then(|t| {
        tokens
            .scopes_of(&t)
            .map(|(name, scopes)| (name.to_owned(), scopes.to_vec()))
    });
    let has = |scope: Scope| scopes.as_ref().is_some_and(|(_, s)| s.contains(&scope));
    match need {
        Need::Nothing => {}
        Need::Read => {
            if scopes.is_none() {
                return ApiError::Unauthorized("a bearer token is required".to_owned())
                    .into_response();
            }
            if !has(Scope::Read) {
                return ApiError::Forbidden("this token lacks the read scope".to_owned())
                    .into_response();
            }
        }
        Need::Write => {
            if scopes.is_none() {
                return ApiError::Unauthorized("a bearer token is required".to_owned())
                    .into_response();
            }
            if !has(Scope::Write) {
                return ApiError::Forbidden("this token lacks the write scope".to_owned())
                    .into_response();
            }
        }
        Need::WriteOrSignature => {
            if scopes.is_some() && !has(Scope::Write) {
                return ApiError::Forbidden("this token lacks the write scope".to_owned())
                    .into_response();
            }
        }
    }
    if let Some((name, _)) = &scopes {
        tracing::debug!(token = %name, path = %request.uri().path(), "authenticated");
    }
    request
        .extensions_mut()
        .insert(WriteToken(has(Scope::Write)));
    next.run(request).await
}

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let hex: String = hmac_of(secret, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn hmac_of(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // reason: HMAC accepts keys of any length; new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `headers` carry a valid signature of `body` under `secret`.
pub fn signature_valid(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(value) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(hex) = value.trim().strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 {
        return false;
    }
    let mut given = Vec::with_capacity(32);
    for pair in hex.as_bytes().chunks(2) {
        let Ok(text) = std::str::from_utf8(pair) else {
            return false;
        };
        let Ok(byte) = u8::from_str_radix(text, 16) else {
            return false;
        };
        given.push(byte);
    }
    // reason: HMAC accepts keys of any length; new_from_slice cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"alerts":[]}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            sign(b"secret", body).parse().expect("header value"),
        );
        assert!(signature_valid(b"secret", &headers, body));
        assert!(!signature_valid(b"other", &headers, body));
        assert!(!signature_valid(b"secret", &headers, b"{}"));
        headers.insert(SIGNATURE_HEADER, "sha256=zz".parse().expect("header value"));
        assert!(!signature_valid(b"secret", &headers, body));
    }

    #[test]
    fn needs_by_route() {
        assert_eq!(need_of(&Method::GET, "/healthz"), Need::Nothing);
        assert_eq!(need_of(&Method::GET, "/api/v1/reports"), Need::Read);
        assert_eq!(need_of(&Method::POST, "/api/v1/chat"), Need::Read);
        assert_eq!(
            need_of(&Method::POST, "/api/v1/incidents/x/feedback"),
            Need::Write
        );
        assert_eq!(
            need_of(&Method::POST, "/api/v1/alerts/alertmanager"),
            Need::WriteOrSignature
        );
    }
}
