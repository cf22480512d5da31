//! The assistant: Vigil's non-HTTP brains for alerts and questions.
//!
//! Owns the scoped, fast root-cause investigation of one symptom
//! ([`investigate()`]: read only the symptom's dependency closure through
//! `&dyn TelemetrySource`, detect, rank, gather evidence), the mapping of alert
//! labels to entities ([`EntityIndex`]), the chat assistant that answers
//! English and Chinese questions without any LLM ([`ask()`]), Vigil's own tools
//! ([`Tools`]) offered to an optional OpenAI-compatible LLM ([`llm`]) after
//! redaction ([`redact`]), and the same tools over MCP ([`mcp`]).
//!
//! Does not own HTTP routes, storage or scheduling: `vigil-api` and the binary
//! call into it. Depends on the model, analyzer and knowledge graph only;
//! never on a concrete store or an HTTP server.

pub mod chat;
pub mod investigate;
pub mod labels;
pub mod llm;
pub mod mcp;
pub mod redact;
pub mod tools;

pub use chat::{ask, ask_with_llm, Answer, AskOptions, Intent};
pub use investigate::{
    investigate, investigate_cached, EvidenceItem, InvestigateOptions, Investigation,
    InvestigationCache, StatementEvidence, Suggestion,
};
pub use labels::{EntityIndex, LabelMatch};
pub use llm::{LlmClient, LlmConfig, LlmError};
pub use redact::{RedactionConfig, Redactor};
pub use tools::{LatestReport, ToolCallError, ToolDefinition, Tools};
pub use vigil_knowledge_graph::AliasConfig;

use vigil_model::{EntityId, SourceError};

/// Why an investigation or a tool call could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssistantError {
    /// Telemetry could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The entity is not in the topology of the window (unknown or silent).
    #[error("entity {0} is not in the topology of the asked window; check the id or the time")]
    UnknownEntity(EntityId),
    /// No alert label names a known entity.
    #[error("no alert label names a known entity (tried: {tried})")]
    Unmapped {
        /// The labels tried, `key=value`, comma separated.
        tried: String,
    },
    /// The request is not valid (e.g. an empty range).
    #[error("invalid request: {0}")]
    Invalid(String),
}
