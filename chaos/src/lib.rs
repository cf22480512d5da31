//! Chaos experiments: inject a real fault, watch whether the patrols see it,
//! and write down what they saw.
//!
//! An [`Experiment`] (YAML under `playbooks/chaos/`) names a fault, a quiet
//! baseline, how long to hold the fault and what the true root cause is.
//! [`run`] drives baseline → inject → watch the patrol → recover and returns a
//! [`ValidationReport`]: was the fault visible in the telemetry, was it found,
//! at which rank was the true root cause, how long each took, and what the
//! patrol reported during the quiet baseline (false findings).
//!
//! Injectors act on real systems (processes, MySQL/MariaDB, Redis, HTTP, the
//! kernel's traffic control), so every one of them is undone: on success, on
//! error, on Ctrl-C/SIGTERM (the runner's shutdown future), and when dropped
//! (the last line of defence for panics). What the patrol found is read
//! through [`PatrolObserver`]; the binary implements it over the state store,
//! so this crate knows no store and no HTTP server of Vigil's.

mod experiment;
mod inject;
mod report;
mod run;

pub use experiment::{load, load_dir, parse, Expectation, Experiment, Injection, RedisSlowMode};
pub use inject::{burn, network_delay_available, Injector, InjectorContext};
pub use report::{render_html, SeenFinding, SignalChange, ValidationReport, REPORT_VERSION};
pub use run::{run, ObservedFinding, PatrolObserver, RunOptions};

/// What can go wrong with an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The YAML does not parse into an experiment.
    #[error("{origin}:{line}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
    Definition {
        /// File.
        origin: String,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// Key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// It parses but a value cannot work.
    #[error("{origin}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// File.
        origin: String,
        /// 1-based line of the key, when found.
        line: Option<usize>,
        /// Key.
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
    /// An injector could not act on the system it targets.
    #[error("{injector}: {message}")]
    Inject {
        /// The injection kind.
        injector: &'static str,
        /// What failed.
        message: String,
    },
    /// The fault cannot be made on this machine (e.g. no `tc netem`).
    #[error("{injector} is unavailable here: {reason}")]
    Unavailable {
        /// The injection kind.
        injector: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading what the patrol found failed.
    #[error("reading patrol findings: {0}")]
    Observe(String),
    /// The experiment was interrupted (Ctrl-C, SIGTERM) after undoing the fault.
    #[error("interrupted; the fault was undone")]
    Interrupted,
}
