//! The `vigil` binary: the one place that picks concrete parts (stores,
//! simulator, detectors, notifiers) and wires them together.

mod cli;
mod config;
mod patrol;
mod progress;
mod wiring;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Vigil: AIOps patrols and root-cause analysis for DeepFlow + Docker estates.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
struct Cli {
    /// Config file (YAML); defaults apply when omitted. `VIGIL_*` variables override keys.
    #[arg(short, long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate an estate with faults into the embedded store and show what it holds.
    Demo(cli::demo::DemoArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Database schema tools.
    #[command(subcommand)]
    Db(cli::db::DbCommand),
    /// Write a simulated estate into the configured store (embedded or ClickHouse).
    Simulate(cli::simulate::SimulateArgs),
    /// Rank root causes of an offline case (RCAEval layout: data.csv, inject_time.txt, graph.json).
    Rca(cli::rca::RcaArgs),
    /// Playbooks: list, validate, run now, history.
    #[command(subcommand)]
    Patrol(cli::patrol::PatrolCommand),
    /// Acknowledge or suppress findings.
    #[command(subcommand)]
    Finding(cli::patrol::FindingCommand),
    /// Stored patrol reports.
    #[command(subcommand)]
    Report(cli::patrol::ReportCommand),
    /// Run every enabled playbook on its schedule and the HTTP API, 24×7.
    Serve(cli::serve::ServeArgs),
    /// Ask the assistant a question, in English or Chinese.
    Ask(cli::ask::AskArgs),
    /// Serve Vigil's tools over the Model Context Protocol on stdin/stdout.
    Mcp,
    /// Benchmarks whose figures go into docs/benchmarks.md.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Chaos experiments: inject a real fault, check the patrols catch it.
    #[command(subcommand)]
    Chaos(cli::chaos::ChaosCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file (with `VIGIL_*` overrides) and print the effective config.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match run(cli, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    if let Command::Config(ConfigCommand::Check { file }) = &cli.command {
        let config = Config::load(file, env)?;
        println!("{} is valid. Effective configuration:\n", file.display());
        print!("{}", serde_norway::to_string(&config::redacted(&config)?)?);
        return Ok(());
    }
    if let Command::Chaos(cli::chaos::ChaosCommand::Burn { threads }) = &cli.command {
        return cli::chaos::burn(*threads);
    }
    let config = match &cli.config {
        Some(path) => Config::load(path, env)?,
        None => Config::from_env(env)?,
    };
    wiring::init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => cli::demo::run(&config, args).await,
            Command::Db(command) => cli::db::run(&config, command).await,
            Command::Simulate(args) => cli::simulate::run(&config, args).await,
            Command::Bench(command) => cli::bench::run(&config, command).await,
            Command::Rca(args) => cli::rca::run(args),
            Command::Patrol(command) => cli::patrol::run(&config, command).await,
            Command::Finding(command) => cli::patrol::run_finding(&config, command).await,
            Command::Report(command) => cli::patrol::run_report(&config, command).await,
            Command::Serve(args) => cli::serve::run(&config, args).await,
            Command::Ask(args) => cli::ask::run(&config, args).await,
            Command::Mcp => cli::ask::mcp(&config).await,
            Command::Chaos(command) => cli::chaos::run(&config, command).await,
            Command::Config(_) => Ok(()),
        }
    })
}
