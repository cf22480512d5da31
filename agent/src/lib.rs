//! `vigil-agent`: the per-host eBPF collector.
//!
//! Owns loading the kernel programs (C with CO-RE, under `ebpf/`), turning their
//! events into requests, profiles, CPU and TCP figures, naming Docker containers,
//! and exporting to ClickHouse or to `vigil serve`.
//! Does not own analysis or storage schemas: it writes the rows the store defines.
//! It is not a default workspace member: building it needs clang, running it root.

pub mod bpf;
pub mod capture;
pub mod collector;
pub mod config;
pub mod container;
pub mod error;
pub mod export;
pub mod l7;
pub mod limits;
pub mod listeners;
pub mod profile;
pub mod resources;
mod sys;
pub mod wire;

pub use error::AgentError;
