//! The agent's status endpoint (`/members` as JSON, `/metrics` as Prometheus text, `/health`, and
//! with `--faults` `GET|POST /faults?loss=F&block=A,B`, see [`crate::faults`]) and the `members`
//! subcommand that reads it. A deliberately small HTTP/1.1 responder: one request per
//! connection, request head capped at 8 KiB, 5 s to send it.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::driver::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::faults::Faults;

const MAX_HEAD: usize = 8 * 1024;

/// Serves status requests until the listener fails.
pub async fn serve(listener: TcpListener, cluster: Cluster, faults: Option<Faults>) {
    while let Ok((stream, _)) = listener.accept().await {
        let cluster = cluster.clone();
        let faults = faults.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), respond(stream, &cluster, faults.as_ref())).await;
        });
    }
}

async fn respond(mut stream: TcpStream, cluster: &Cluster, faults: Option<&Faults>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/members" => ("200 OK", "application/json", members_json(cluster)),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", cluster.metrics().to_prometheus()),
        "/health" => ("200 OK", "text/plain", "ok\n".to_string()),
        p if faults.is_some() && (p == "/faults" || p.starts_with("/faults?")) => {
            let faults = faults.expect("checked");
            let query = if line.starts_with("POST ") { p.split_once('?').map_or("", |(_, q)| q) } else { "" };
            match faults.apply_query(query) {
                Ok(_) => ("200 OK", "application/json", faults.to_json()),
                Err(e) => ("400 Bad Request", "text/plain", format!("{e}\n")),
            }
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn members_json(cluster: &Cluster) -> String {
    let me = cluster.local_member();
    let mut rows = vec![serde_json::json!({
        "name": me.id.as_str(), "addr": me.addr.to_string(), "state": "alive (self)",
        "incarnation": me.incarnation, "meta": String::from_utf8_lossy(me.meta.as_bytes()), "rtt_ms": null,
    })];
    for m in cluster.members() {
        rows.push(serde_json::json!({
            "name": m.id.as_str(), "addr": m.addr.to_string(), "state": format!("{:?}", m.state).to_lowercase(),
            "incarnation": m.incarnation, "meta": String::from_utf8_lossy(m.meta.as_bytes()),
            "rtt_ms": m.rtt().map(|d| d.as_millis() as u64),
        }));
    }
    serde_json::Value::Array(rows).to_string()
}

/// The `members` subcommand: fetches `/members` from a running agent and prints it.
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

async fn get(addr: &SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    Ok(body.to_string())
}
