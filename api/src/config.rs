//! [`ApiConfig`]: the `api:` section of `vigil.yaml`. Every field has a
//! default; [`ApiConfig::validate`] names each bad key.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use vigil_assistant::AliasConfig;
use vigil_assistant::{InvestigateOptions, LlmConfig};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read reports, incidents, pages; ask the chat; use MCP.
    Read,
    /// Post alerts and feedback, run patrols (implies nothing else: give both).
    Write,
}

/// One bearer token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (for logs).
    pub name: String,
    /// The token itself; prefer `token_env`.
    #[serde(default)]
    pub token: String,
    /// Environment variable holding the token (read at start-up).
    #[serde(default)]
    pub token_env: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("token_env", &self.token_env)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl TokenConfig {
    /// The token's value (from the environment when `token_env` is set).
    pub fn value(&self) -> String {
        match &self.token_env {
            Some(var) => std::env::var(var).unwrap_or_default(),
            None => self.token.clone(),
        }
    }
}

/// Authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens; none means no authentication.
    pub tokens: Vec<TokenConfig>,
    /// Start on a non-loopback address without any token (not recommended).
    pub allow_unauthenticated: bool,
}

/// Webhook signatures: `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Shared secret; a valid signature authorises a webhook without a token.
    pub hmac_secret: String,
    /// Environment variable holding the secret.
    pub hmac_secret_env: Option<String>,
    /// Refuse unsigned webhooks even with a write token.
    pub require_signature: bool,
    /// Alerts investigated synchronously per payload; the rest are queued.
    pub max_alerts_per_request: usize,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field(
                "hmac_secret",
                &if self.hmac_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("hmac_secret_env", &self.hmac_secret_env)
            .field("require_signature", &self.require_signature)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// The secret (from the environment when `hmac_secret_env` is set); empty when none.
    pub fn secret(&self) -> String {
        match &self.hmac_secret_env {
            Some(var) => std::env::var(var).unwrap_or_default(),
            None => self.hmac_secret.clone(),
        }
    }
}

/// MCP over streamable HTTP at `/mcp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Mount `/mcp`.
    pub enabled: bool,
    /// Host headers accepted (DNS-rebinding protection); empty: any.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_hosts: Vec::new(),
        }
    }
}

/// The HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: String,
    /// The URL users reach Vigil at, for links in answers and notifications.
    pub public_url: Option<String>,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Largest body accepted by the agent ingest endpoint (`POST /api/v1/ingest`), bytes.
    pub ingest_max_body_bytes: usize,
    /// Bearer tokens.
    pub auth: AuthConfig,
    /// Webhook signatures and limits.
    pub webhooks: WebhookConfig,
    /// How alerts and questions are investigated.
    pub investigate: InvestigateOptions,
    /// Extra names of entities (any language), e.g. `service:order-api: [订单服务]`.
    pub aliases: AliasConfig,
    /// The optional LLM.
    pub llm: LlmConfig,
    /// MCP at `/mcp`.
    pub mcp: McpConfig,
    /// Seconds an entity index (names of the topology) is reused.
    pub index_ttl_secs: u64,
    /// Notify through the notifier when an incident opens or resolves.
    pub notify_incidents: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            ingest_max_body_bytes: 16 * 1024 * 1024,
            auth: AuthConfig::default(),
            webhooks: WebhookConfig {
                max_alerts_per_request: 20,
                ..WebhookConfig::default()
            },
            investigate: InvestigateOptions::default(),
            aliases: AliasConfig::default(),
            llm: LlmConfig::default(),
            mcp: McpConfig::default(),
            index_ttl_secs: 60,
            notify_incidents: true,
        }
    }
}

impl ApiConfig {
    /// Checks every value; each error names its key (relative to `api:`).
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        match self.listen.parse::<SocketAddr>() {
            Err(_) => errors.push((
                "listen".to_owned(),
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            )),
            Ok(address) => {
                if !address.ip().is_loopback()
                    && self.auth.tokens.is_empty()
                    && !self.auth.allow_unauthenticated
                {
                    errors.push((
                        "listen".to_owned(),
                        format!(
                            "{address} is not a loopback address and no token is configured; add auth.tokens or set auth.allow_unauthenticated: true"
                        ),
                    ));
                }
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push((
                    "public_url".to_owned(),
                    "must start with http:// or https://".to_owned(),
                ));
            }
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            errors.push((
                "max_body_bytes".to_owned(),
                "must be between 1024 and 67108864".to_owned(),
            ));
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.ingest_max_body_bytes) {
            errors.push((
                "ingest_max_body_bytes".to_owned(),
                "must be between 1024 and 268435456".to_owned(),
            ));
        }
        for (index, token) in self.auth.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{index}]");
            if token.name.trim().is_empty() {
                errors.push((format!("{key}.name"), "must not be empty".to_owned()));
            }
            match &token.token_env {
                Some(var) if std::env::var(var).map_or(true, |v| v.len() < 16) => errors.push((
                    format!("{key}.token_env"),
                    format!(
                        "environment variable {var} must hold a token of at least 16 characters"
                    ),
                )),
                None if token.token.len() < 16 => errors.push((
                    format!("{key}.token"),
                    "must be at least 16 characters".to_owned(),
                )),
                _ => {}
            }
            if token.scopes.is_empty() {
                errors.push((
                    format!("{key}.scopes"),
                    "must name read, write or both".to_owned(),
                ));
            }
        }
        if self.webhooks.require_signature && self.webhooks.secret().is_empty() {
            errors.push((
                "webhooks.require_signature".to_owned(),
                "needs webhooks.hmac_secret or webhooks.hmac_secret_env".to_owned(),
            ));
        }
        if self.webhooks.max_alerts_per_request == 0 {
            errors.push((
                "webhooks.max_alerts_per_request".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if let Err(found) = self.investigate.validate() {
            errors.extend(
                found
                    .into_iter()
                    .map(|(k, m)| (format!("investigate.{k}"), m)),
            );
        }
        if let Err(found) = self.llm.validate() {
            errors.extend(found.into_iter().map(|(k, m)| (format!("llm.{k}"), m)));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_yaml_fills_them() {
        assert_eq!(ApiConfig::default().validate(), Ok(()));
        let config: ApiConfig =
            serde_json::from_str(r#"{"listen": "127.0.0.1:9000", "llm": {"enabled": false}}"#)
                .expect("parses");
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn open_non_loopback_bind_is_refused_with_its_key() {
        let config = ApiConfig {
            listen: "0.0.0.0:8080".to_owned(),
            ..ApiConfig::default()
        };
        let errors = config.validate().expect_err("refused");
        assert_eq!(errors[0].0, "listen");
        let allowed = ApiConfig {
            listen: "0.0.0.0:8080".to_owned(),
            auth: AuthConfig {
                tokens: Vec::new(),
                allow_unauthenticated: true,
            },
            ..ApiConfig::default()
        };
        assert_eq!(allowed.validate(), Ok(()));
    }

    #[test]
    fn short_tokens_and_unknown_keys_are_named() {
        let config = ApiConfig {
            auth: AuthConfig {
                tokens: vec![TokenConfig {
                    name: "ci".to_owned(),
                    token: "short".to_owned(),
                    token_env: None,
                    scopes: vec![],
                }],
                allow_unauthenticated: false,
            },
            ..ApiConfig::default()
        };
        let keys: Vec<String> = config
            .validate()
            .expect_err("bad")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["auth.tokens[0].token", "auth.tokens[0].scopes"]);
        let unknown =
            serde_json::from_str::<ApiConfig>(r#"{"listne": "x"}"#).expect_err("unknown key");
        assert!(unknown.to_string().contains("listne"), "{unknown}");
    }
}
