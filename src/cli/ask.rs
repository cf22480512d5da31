//! `vigil ask "…"` and `vigil mcp`: the assistant from the command line, and
//! Vigil's tools over the Model Context Protocol on stdio.

use std::sync::Arc;

use clap::Args;
use vigil_assistant::{ask, AskOptions, Tools};

use crate::cli::patrol::{now, parse_at, telemetry};
use crate::config::Config;
use crate::wiring;

/// `vigil ask` arguments.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, in English or Chinese ("why is Redis slow", "订单服务延迟高的原因").
    pub question: String,
    /// The present the question is asked at (RFC 3339 or unix seconds); default: now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `vigil ask`.
pub async fn run(config: &Config, args: AskArgs) -> anyhow::Result<()> {
    let at = args
        .at
        .as_deref()
        .map(parse_at)
        .transpose()?
        .unwrap_or_else(now);
    let state = wiring::open_embedded(&config.store.embedded).await?;
    let source = telemetry(config, &state).await?;
    let options = AskOptions {
        investigate: config.api.investigate.clone(),
        aliases: config.api.aliases.clone(),
        link_base: config.api.public_url.clone(),
    };
    let answer = ask(&args.question, source.as_ref(), at, &options).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", answer.text);
    }
    Ok(())
}

/// Runs `vigil mcp`: serves the assistant's tools on stdin/stdout until EOF.
pub async fn mcp(config: &Config) -> anyhow::Result<()> {
    let state = wiring::open_embedded(&config.store.embedded).await?;
    let source = telemetry(config, &state).await?;
    let tools = Tools::new(source, config.api.investigate.clone())
        .with_aliases(config.api.aliases.clone())
        .with_reports(Arc::new(vigil_api::StoreReports(Arc::new(state))));
    vigil_assistant::mcp::serve_stdio(Arc::new(tools)).await?;
    Ok(())
}
