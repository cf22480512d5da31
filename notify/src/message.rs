//! The message every channel formats: already rendered by its producer, so
//! channels only choose between its markdown, text and HTML forms.

use serde::{Deserialize, Serialize};
use vigil_model::{EntityId, Severity, Timestamp};

/// What a message is about; routes can select on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A scheduled patrol report.
    Patrol,
    /// An alert answer (an incoming alert, analysed).
    Alert,
    /// Something reported earlier is over.
    Resolved,
}

impl MessageKind {
    /// The configuration and template name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patrol => "patrol",
            Self::Alert => "alert",
            Self::Resolved => "resolved",
        }
    }
}

/// One notification, in every form a channel may want.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable id: receivers and stores use it to drop duplicates
    /// (sent as `X-Vigil-Message-Id` and as the email's `Message-ID`).
    pub id: String,
    /// Patrol, alert or resolved.
    pub kind: MessageKind,
    /// One line, used as subject and card title.
    pub title: String,
    /// How urgent; routes filter on it and cards are coloured by it.
    pub severity: Severity,
    /// The services concerned; routes match their names against globs.
    pub services: Vec<EntityId>,
    /// The digest in Markdown, for chat tools.
    pub markdown: String,
    /// The digest in plain text, for email's text part.
    pub text: String,
    /// The full HTML report, for email's HTML part.
    pub html: Option<String>,
    /// Where the full report or incident lives.
    pub link: Option<String>,
    /// When the producer created it.
    pub created: Timestamp,
    /// More template context for the generic webhook (e.g. `findings`).
    pub extra: serde_json::Value,
}

impl Message {
    /// `firing` or `resolved`, as Alertmanager-style receivers expect.
    pub fn status(&self) -> &'static str {
        match self.kind {
            MessageKind::Resolved => "resolved",
            MessageKind::Patrol | MessageKind::Alert => "firing",
        }
    }

    /// A short tag for titles: `CRITICAL`, `WARNING`, `INFO` or `RESOLVED`.
    pub fn label(&self) -> &'static str {
        match (self.kind, self.severity) {
            (MessageKind::Resolved, _) => "RESOLVED",
            (_, Severity::Critical) => "CRITICAL",
            (_, Severity::Warning) => "WARNING",
            (_, Severity::Info) => "INFO",
        }
    }
}

/// The severity's configuration name (`critical`, `warning`, `info`).
pub(crate) fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}
