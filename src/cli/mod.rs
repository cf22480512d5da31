//! Subcommands of the `vigil` binary, one module each.

pub mod bench;
pub mod bench_detect;
pub mod bench_rca;
pub mod db;
pub mod demo;
pub mod rca;
pub mod simulate;
