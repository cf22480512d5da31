//! Subcommands of the `vigil` binary, one module each.

pub mod ask;
pub mod bench;
pub mod bench_detect;
pub mod bench_patrol;
pub mod bench_rca;
pub mod chaos;
pub mod db;
pub mod demo;
pub mod patrol;
pub mod rca;
pub mod serve;
pub mod simulate;
