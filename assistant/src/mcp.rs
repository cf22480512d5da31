//! Vigil's tools over the Model Context Protocol (`rmcp`): the same
//! [`Tools`] as the LLM gets, for any MCP client, over stdio (`vigil mcp`) or
//! streamable HTTP (mounted by the API at `/mcp`).

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::tools::Tools;

/// Why the MCP server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The client did not complete the MCP handshake.
    #[error("MCP initialisation failed: {0}")]
    Initialize(String),
    /// The server task failed.
    #[error("MCP server failed: {0}")]
    Serve(String),
}

/// The MCP server: Vigil's tools.
#[derive(Clone, Debug)]
pub struct VigilMcp {
    tools: Arc<Tools>,
}

impl VigilMcp {
    /// A server offering `tools`.
    pub fn new(tools: Arc<Tools>) -> Self {
        Self { tools }
    }

    /// The tools as MCP describes them.
    pub fn tool_list() -> Vec<Tool> {
        Tools::definitions()
            .into_iter()
            .map(|definition| {
                let schema = match definition.parameters {
                    Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                Tool::new(definition.name, definition.description, Arc::new(schema))
            })
            .collect()
    }
}

impl ServerHandler for VigilMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("vigil", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Vigil's root-cause tools: list anomalies, rank root causes of a symptom, slow \
                 statements, process profiles, metric summaries and the latest patrol report. \
                 Entities are ids like service:order-api or names like redis.",
            )
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + Send + '_ {
        std::future::ready(Ok(ListToolsResult::with_all_items(Self::tool_list())))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.map_or(Value::Null, Value::Object);
        let result = match self.tools.call(&request.name, arguments).await {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
        };
        Ok(result.into())
    }
}

/// Serves the tools over stdin/stdout until the client disconnects (`vigil mcp`).
pub async fn serve_stdio(tools: Arc<Tools>) -> Result<(), McpError> {
    let (stdin, stdout) = rmcp::transport::stdio();
    serve_io(tools, stdin, stdout).await
}

/// Serves the tools over any byte stream pair (newline-delimited JSON-RPC)
/// until the client disconnects.
pub async fn serve_io<R, W>(tools: Arc<Tools>, reader: R, writer: W) -> Result<(), McpError>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let running = VigilMcp::new(tools)
        .serve((reader, writer))
        .await
        .map_err(|e| McpError::Initialize(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Serve(e.to_string()))?;
    Ok(())
}

/// The streamable-HTTP MCP service (a tower service) for the API to mount at
/// `/mcp`. `allowed_hosts` are the Host headers accepted (DNS-rebinding
/// protection); empty disables the check (the API's own auth still applies).
pub fn http_service(
    tools: Arc<Tools>,
    allowed_hosts: Vec<String>,
    shutdown: CancellationToken,
) -> StreamableHttpService<VigilMcp, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_json_response(true)
        .with_legacy_session_mode(false);
    config = if allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(allowed_hosts)
    };
    StreamableHttpService::new(
        move || Ok(VigilMcp::new(Arc::clone(&tools))),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
