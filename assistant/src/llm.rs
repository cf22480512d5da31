//! The optional LLM, off by default: any OpenAI-compatible endpoint (vLLM,
//! Ollama, DeepSeek, Qwen…) through `async-openai`, with one model for patrol
//! summaries and one for chat.
//!
//! The model never sees raw telemetry. It summarises findings the
//! deterministic analysis produced, and in chat it may call Vigil's own
//! [`Tools`]. Everything sent is redacted first ([`Redactor`]); prompts are
//! held to a character budget and completions to a token budget; every call
//! has a timeout; callers fall back to the deterministic answer on any error.

use std::sync::Arc;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vigil_model::{EntityKind, Finding, Language, PatrolReport, TimeRange, Timestamp};

use crate::chat::Answer;
use crate::redact::{RedactionConfig, Redactor};
use crate::tools::{report_summary, Tools};

/// LLM settings; `enabled: false` (the default) means no model is ever called.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Whether to use an LLM at all.
    pub enabled: bool,
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// API key; empty for local servers. Prefer `api_key_env`.
    pub api_key: String,
    /// Environment variable holding the API key (read when the client is built).
    pub api_key_env: Option<String>,
    /// Model for chat (tool calling).
    pub chat_model: String,
    /// Model for patrol summaries (may be a cheaper one).
    pub summary_model: String,
    /// Timeout of one whole exchange (all tool rounds), seconds.
    pub timeout_secs: u64,
    /// Maximum tokens of each completion.
    pub max_completion_tokens: u32,
    /// Budget of tokens across one exchange (prompt + completion, as reported
    /// by the server, or estimated at 4 characters per token).
    pub token_budget: u32,
    /// Tool-calling rounds in one chat exchange.
    pub max_tool_rounds: usize,
    /// Characters kept of one tool result.
    pub max_tool_result_chars: usize,
    /// What to redact besides SQL literals and Redis values (always redacted).
    pub redaction: RedactionConfig,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("enabled", &self.enabled)
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("chat_model", &self.chat_model)
            .field("summary_model", &self.summary_model)
            .finish_non_exhaustive()
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "http://127.0.0.1:11434/v1".to_owned(),
            api_key: String::new(),
            api_key_env: None,
            chat_model: "qwen2.5:7b-instruct".to_owned(),
            summary_model: "qwen2.5:3b-instruct".to_owned(),
            timeout_secs: 30,
            max_completion_tokens: 800,
            token_budget: 12_000,
            max_tool_rounds: 4,
            max_tool_result_chars: 6_000,
            redaction: RedactionConfig::default(),
        }
    }
}

impl LlmConfig {
    /// Checks the values, naming each bad key.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors = Vec::new();
        if !self.enabled {
            return Ok(());
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            errors.push((
                "base_url".to_owned(),
                "must start with http:// or https://".to_owned(),
            ));
        }
        for (key, model) in [
            ("chat_model", &self.chat_model),
            ("summary_model", &self.summary_model),
        ] {
            if model.trim().is_empty() {
                errors.push((key.to_owned(), "must not be empty".to_owned()));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > 600 {
            errors.push((
                "timeout_secs".to_owned(),
                "must be between 1 and 600".to_owned(),
            ));
        }
        if self.token_budget < 500 {
            errors.push(("token_budget".to_owned(), "must be at least 500".to_owned()));
        }
        if self.max_completion_tokens == 0 {
            errors.push((
                "max_completion_tokens".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Why an LLM exchange failed (callers fall back to the deterministic answer).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The configuration is not usable.
    #[error("LLM configuration: {0}")]
    Config(String),
    /// The exchange took longer than `timeout_secs`.
    #[error("the LLM did not answer within {0} s")]
    Timeout(u64),
    /// The exchange would exceed the token budget.
    #[error("the LLM exchange would exceed its token budget ({used} of {limit} tokens)")]
    Budget {
        /// Tokens used or estimated.
        used: u64,
        /// The budget.
        limit: u32,
    },
    /// The server answered with an error or could not be reached.
    #[error("LLM request failed: {0}")]
    Api(String),
    /// The answer is not what the protocol promises.
    #[error("unexpected LLM answer: {0}")]
    Protocol(String),
}

/// A client for one OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct LlmClient {
    config: Arc<LlmConfig>,
    client: Client<OpenAIConfig>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Budget accounting of one exchange.
struct Budget {
    used: u64,
    limit: u32,
}

impl Budget {
    fn charge_estimate(&mut self, body: &Value) -> Result<(), LlmError> {
        let chars = body.to_string().chars().count() as u64;
        let estimate = chars / 4 + 1;
        if self.used + estimate > u64::from(self.limit) {
            return Err(LlmError::Budget {
                used: self.used + estimate,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn charge_response(&mut self, response: &Value, body: &Value) {
        let reported = response["usage"]["total_tokens"].as_u64();
        self.used += reported.unwrap_or_else(|| body.to_string().chars().count() as u64 / 4 + 1);
    }
}

impl LlmClient {
    /// A client for `config`; refuses a disabled or invalid configuration.
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        if !config.enabled {
            return Err(LlmError::Config(
                "the LLM is disabled (llm.enabled: false)".to_owned(),
            ));
        }
        if let Err(errors) = config.validate() {
            let text: Vec<String> = errors
                .iter()
                .map(|(k, m)| format!("llm.{k}: {m}"))
                .collect();
            return Err(LlmError::Config(text.join("; ")));
        }
        // One process-wide rustls provider (ring); already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = match &config.api_key_env {
            Some(var) => std::env::var(var).unwrap_or_default(),
            None => config.api_key.clone(),
        };
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(key);
        Ok(Self {
            client: Client::with_config(openai),
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    async fn complete(&self, body: &Value, budget: &mut Budget) -> Result<Value, LlmError> {
        budget.charge_estimate(body)?;
        let response: Value = self
            .client
            .chat()
            .create_byot(body)
            .await
            .map_err(|e| LlmError::Api(e.to_string()))?;
        budget.charge_response(&response, body);
        if budget.used > u64::from(budget.limit) {
            return Err(LlmError::Budget {
                used: budget.used,
                limit: budget.limit,
            });
        }
        Ok(response)
    }

    /// A short summary of a patrol's findings in `language`, from their
    /// titles, severities, top causes and evidence sentences (redacted).
    /// `Ok(None)` without calling the model when there is nothing to summarise.
    pub async fn summarise_findings(
        &self,
        findings: &[Finding],
        window: TimeRange,
        language: Language,
    ) -> Result<Option<String>, LlmError> {
        if findings.is_empty() {
            return Ok(None);
        }
        let items: Vec<Value> = findings
            .iter()
            .take(20)
            .map(|f| {
                let evidence: Vec<&str> = f
                    .anomalies
                    .iter()
                    .take(3)
                    .map(|a| a.evidence.summary.as_str())
                    .collect();
                json!({"title": f.title, "entity": f.entity, "severity": f.severity,
                       "top_causes": f.candidates.iter().take(3).map(|c| json!({"entity": c.entity, "confidence": c.confidence})).collect::<Vec<_>>(),
                       "evidence": evidence})
            })
            .collect();
        self.summarise_facts(&json!({"window": window, "findings": items}), language)
            .await
            .map(Some)
    }

    /// A short summary of facts Vigil already established (findings, an
    /// incident's suggestions), in `language`; the facts are redacted first.
    pub async fn summarise_facts(
        &self,
        facts: &Value,
        language: Language,
    ) -> Result<String, LlmError> {
        let redactor = Redactor::new(self.config.redaction.clone(), Vec::new());
        let facts = redactor.json(facts);
        let system = match language {
            Language::En => "You write the summary of an operations patrol report or incident. Use only the facts given; do not invent numbers or causes. 3 to 6 sentences: what is wrong, the most likely root cause for each problem, and what to check first. Plain text.",
            Language::Zh => "你为运维巡检报告或故障撰写摘要。只使用给出的事实，不要编造数字或原因。3 到 6 句话：哪里有问题、每个问题最可能的根因、首先应该检查什么。使用中文纯文本。",
        };
        let body = json!({
            "model": self.config.summary_model,
            "stream": false,
            "max_tokens": self.config.max_completion_tokens,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": facts.to_string()},
            ],
        });
        let mut budget = Budget {
            used: 0,
            limit: self.config.token_budget,
        };
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let response = tokio::time::timeout(timeout, self.complete(&body, &mut budget))
            .await
            .map_err(|_| LlmError::Timeout(self.config.timeout_secs))??;
        let text = response["choices"][0]["message"]["content"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| LlmError::Protocol("no message content".to_owned()))?;
        Ok(redactor.restore(text.trim()))
    }

    /// A summary of a stored patrol report (its findings), in the report's language.
    pub async fn summarise_report(
        &self,
        report: &PatrolReport,
    ) -> Result<Option<String>, LlmError> {
        let findings: Vec<Finding> = report.findings.iter().map(|f| f.finding.clone()).collect();
        self.summarise_findings(&findings, report.window, report.language)
            .await
    }

    /// A chat exchange: the model may call `tools` (results redacted) and
    /// writes the answer; `deterministic` is given as context. Pseudonyms in
    /// the answer are restored to real names.
    pub async fn chat(
        &self,
        question: &str,
        tools: &Tools,
        now: Timestamp,
        deterministic: &Answer,
    ) -> Result<String, LlmError> {
        let timeout = Duration::from_secs(self.config.timeout_secs);
        tokio::time::timeout(
            timeout,
            self.chat_inner(question, tools, now, deterministic),
        )
        .await
        .map_err(|_| LlmError::Timeout(self.config.timeout_secs))?
    }

    async fn chat_inner(
        &self,
        question: &str,
        tools: &Tools,
        now: Timestamp,
        deterministic: &Answer,
    ) -> Result<String, LlmError> {
        let tools = tools.clone().with_clock(Arc::new(move || now));
        let hosts: Vec<String> = if self.config.redaction.hostnames {
            let range = TimeRange {
                start: now.plus_secs(-3600),
                end: now.plus_secs(60),
            };
            tools
                .source()
                .topology(range)
                .await
                .map(|t| {
                    t.entities
                        .iter()
                        .filter(|e| e.id.kind() == EntityKind::Host)
                        .map(|e| e.id.name().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let redactor = Redactor::new(self.config.redaction.clone(), hosts);
        let language = match deterministic.language {
            Language::En => "English",
            Language::Zh => "Simplified Chinese",
        };
        let system = format!(
            "You are Vigil, an operations assistant. Answer in {language}, in Markdown, briefly. \
             Use the tools to get facts; never invent numbers, entities or causes; say plainly when \
             data is missing. The current time is {now} (unix seconds). Vigil's deterministic \
             analysis already answered:\n{}",
            redactor.text(&deterministic.text)
        );
        let offered: Vec<Value> = Tools::definitions()
            .into_iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        let mut messages = vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": redactor.text(question)}),
        ];
        let mut budget = Budget {
            used: 0,
            limit: self.config.token_budget,
        };
        for round in 0..=self.config.max_tool_rounds {
            let mut body = json!({
                "model": self.config.chat_model,
                "stream": false,
                "max_tokens": self.config.max_completion_tokens,
                "messages": messages,
            });
            if round < self.config.max_tool_rounds {
                body["tools"] = Value::Array(offered.clone());
                body["tool_choice"] = json!("auto");
            }
            let response = self.complete(&body, &mut budget).await?;
            let message = response["choices"][0]["message"].clone();
            if message.is_null() {
                return Err(LlmError::Protocol("no choices[0].message".to_owned()));
            }
            let calls = message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if calls.is_empty() {
                let text = message["content"]
                    .as_str()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| LlmError::Protocol("empty answer".to_owned()))?;
                return Ok(redactor.restore(text.trim()));
            }
            messages.push(json!({"role": "assistant", "content": message["content"].clone(), "tool_calls": calls}));
            for call in &calls {
                let id = call["id"].as_str().unwrap_or_default().to_owned();
                let name = call["function"]["name"].as_str().unwrap_or_default();
                let arguments: Value = call["function"]["arguments"]
                    .as_str()
                    .and_then(|text| serde_json::from_str(&redactor.restore(text)).ok())
                    .unwrap_or(Value::Null);
                let result = match tools.call(name, arguments).await {
                    Ok(value) => redactor.json(&value),
                    Err(error) => json!({"error": redactor.text(&error.to_string())}),
                };
                let mut content = result.to_string();
                if content.chars().count() > self.config.max_tool_result_chars {
                    content = content
                        .chars()
                        .take(self.config.max_tool_result_chars)
                        .collect::<String>();
                    content.push_str("… [truncated: the result was longer; say so if it matters]");
                }
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        }
        Err(LlmError::Protocol(format!(
            "no final answer after {} tool rounds",
            self.config.max_tool_rounds
        )))
    }
}

/// A summary of a report for the overview, without an LLM.
pub fn report_facts(report: &PatrolReport) -> Value {
    report_summary(report)
}
