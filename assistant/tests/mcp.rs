//! MCP over a byte stream, as `vigil mcp` serves it on stdio: the handshake,
//! the tool list and a tool call.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use vigil_assistant::Tools;
use vigil_store::embedded::EmbeddedStore;

async fn line(reader: &mut BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>) -> Value {
    let mut text = String::new();
    reader.read_line(&mut text).await.expect("read");
    serde_json::from_str(&text).expect("json-rpc line")
}

#[tokio::test]
async fn stdio_transport_lists_and_calls_tools() {
    let store = EmbeddedStore::open_in_memory().expect("store");
    let tools = Arc::new(Tools::new(Arc::new(store), Default::default()));
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server);
    let task = tokio::spawn(vigil_assistant::mcp::serve_io(
        tools,
        server_read,
        server_write,
    ));
    let (client_read, mut client_write) = tokio::io::split(client);
    let mut reader = BufReader::new(client_read);
    let send = |value: Value| {
        let mut text = value.to_string();
        text.push('\n');
        text
    };
    let init = send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    client_write
        .write_all(init.as_bytes())
        .await
        .expect("write");
    let reply = line(&mut reader).await;
    assert_eq!(reply["result"]["serverInfo"]["name"], "vigil", "{reply}");
    let initialized = send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    client_write
        .write_all(initialized.as_bytes())
        .await
        .expect("write");
    let list = send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    client_write
        .write_all(list.as_bytes())
        .await
        .expect("write");
    let reply = line(&mut reader).await;
    let names: Vec<&str> = reply["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 6, "{reply}");
    assert!(names.contains(&"rank_root_causes"));
    let call = send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "latest_report", "arguments": {}}}));
    client_write
        .write_all(call.as_bytes())
        .await
        .expect("write");
    let reply = line(&mut reader).await;
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("no patrol report"), "{reply}");
    drop(client_write);
    drop(reader);
    task.await
        .expect("server task")
        .expect("server stops when the client leaves");
}
