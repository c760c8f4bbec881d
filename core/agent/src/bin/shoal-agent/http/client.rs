//! The `members` subcommand: fetches `/members` from a running agent and prints it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Prints the members a running agent knows, as a table or as its JSON.
pub async fn print_members(addr: &SocketAddr, json: bool) -> Result<(), String> {
    let body = get(addr, "/members").await.map_err(|e| format!("cannot reach the agent at {addr}: {e}"))?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| format!("bad answer: {e}"))?;
    println!("{:<20} {:<28} {:<14} {:>5} {:>7}  META", "NAME", "ADDRESS", "STATE", "INC", "RTT");
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let rtt = r["rtt_ms"].as_u64().map(|v| format!("{v}ms")).unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<28} {:<14} {:>5} {:>7}  {}",
            s("name"),
            s("addr"),
            s("state"),
            r["incarnation"].as_u64().unwrap_or(0),
            rtt,
            s("meta")
        );
    }
    Ok(())
}

/// The body of `GET path`, or an error naming the status if it is not 200.
async fn get(addr: &SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let status = head.lines().next().unwrap_or("no answer");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("{status}: {}", body.trim())));
    }
    Ok(body.to_string())
}
