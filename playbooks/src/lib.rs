//! Playbooks: declarative patrols (YAML), their validation and their evaluation.
//!
//! Owns the playbook format ([`Playbook`]), the built-in catalogue of checks
//! (`catalogue/*.yaml`, embedded), evaluating a playbook through
//! `&dyn TelemetrySource` into findings with ranked root causes
//! ([`evaluate()`]), and assembling a [`vigil_model::PatrolReport`] that says
//! what is new, still open and resolved since the previous one ([`assemble`]).
//! Does not own when playbooks run (the scheduler), how findings are delivered
//! (notifications), how reports look (the report crate) or how they are stored.

pub mod assemble;
pub mod definition;
pub mod evaluate;
pub mod load;
pub mod scope;
pub mod truth;

pub use assemble::{assemble, PreviousFinding, PreviousState, ReportIdentity};
pub use definition::{Check, CheckParams, Detector, Override, Playbook, ReportSpec, Scope};
pub use evaluate::{evaluate, CheckedFinding, Evaluation, EvaluationOptions, Timings};
pub use load::{builtin, builtin_sources, load_all, parse, parse_utc_offset};
pub use scope::Pattern;
pub use truth::{score, TruthScore};

use vigil_model::SourceError;

/// Why a playbook could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// The YAML does not parse into a playbook.
    #[error("{origin}:{line}:{column}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
    Parse {
        /// File (or `built-in NAME`).
        origin: String,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        column: usize,
        /// Key path, e.g. `checks[2].params`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// It parses but a value cannot work.
    #[error("{origin}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// File (or `built-in NAME`).
        origin: String,
        /// 1-based line of the key, when found.
        line: Option<usize>,
        /// Key path.
        key: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read {origin}: {message}")]
    Read {
        /// The path.
        origin: String,
        /// The OS error.
        message: String,
    },
    /// Two user playbooks share an id.
    #[error("playbook id {id:?} is defined twice: {first} and {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The first file.
        first: String,
        /// The second file.
        second: String,
    },
    /// No playbook has this id.
    #[error("no playbook {id:?}; known: {known}")]
    Unknown {
        /// The id asked for.
        id: String,
        /// The ids there are, comma separated.
        known: String,
    },
    /// Telemetry could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
}
