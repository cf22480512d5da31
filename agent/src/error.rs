//! The library's error type.

use std::path::PathBuf;

/// Everything the agent library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The kernel programs could not be loaded or attached.
    #[error("eBPF: {0}")]
    Ebpf(String),
    /// The configuration is invalid; the message names the key.
    #[error("config: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// ClickHouse refused or could not be reached.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] vigil_store::clickhouse::ClickHouseError),
    /// The agent and the server (or a spool written by another version) disagree on versions.
    #[error("version mismatch: {0}")]
    Version(String),
    /// `vigil serve`'s ingest endpoint refused or could not be reached.
    #[error("vigil serve: {0}")]
    Ingest(String),
    /// The Docker Engine API failed.
    #[error("docker: {0}")]
    Docker(String),
}

impl AgentError {
    /// An [`AgentError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
