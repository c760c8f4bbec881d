//! The subcommands (`shoal-agent members`, `info`, `join`, ...): each one request to a running
//! agent's `--http` endpoint ([`super::api`]), its answer printed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::settings::{Command, Remote};

/// Runs one subcommand against the agent it names.
pub async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Members { remote, status, name, tag, json } => {
            let mut query = Vec::new();
            if !status.is_empty() {
                query.push(("status", status.join(",")));
            }
            if let Some(name) = name {
                query.push(("name", name));
            }
            query.extend(tag.into_iter().map(|t| ("tag", t)));
            let body = call(&remote, "GET", "/members", &query).await?;
            if json {
                println!("{body}");
            } else {
                print_members_table(&body)?;
            }
        }
        Command::Info { remote } => print_json(&call(&remote, "GET", "/info", &[]).await?)?,
        Command::Join { remote, seeds } => {
            let query: Vec<_> = seeds.into_iter().map(|s| ("seed", s)).collect();
            print_json(&call(&remote, "POST", "/join", &query).await?)?;
        }
        Command::Leave { remote } => print_json(&call(&remote, "POST", "/leave", &[]).await?)?,
        Command::ForceLeave { remote, name } => {
            print_json(&call(&remote, "POST", "/force-leave", &[("name", name)]).await?)?;
        }
        Command::Tags { remote, set, delete } => {
            let mut query: Vec<_> = set.into_iter().map(|kv| ("set", kv)).collect();
            query.extend(delete.into_iter().map(|k| ("delete", k)));
            print_json(&call(&remote, "POST", "/tags", &query).await?)?;
        }
        Command::Event { remote, topic, payload, key } => {
            let mut query = vec![("topic", topic), ("payload", payload)];
            query.extend(key.map(|k| ("key", k)));
            print_json(&call(&remote, "POST", "/event", &query).await?)?;
        }
        Command::Keys { remote, install, use_key, remove, cluster } => {
            let op = install.map(|k| ("install", k)).or(use_key.map(|k| ("use", k))).or(remove.map(|k| ("remove", k)));
            let body = match op {
                Some(op) if cluster => call(&remote, "POST", "/keys", &[op, ("cluster", "1".into())]).await?,
                Some(op) => call(&remote, "POST", "/keys", &[op]).await?,
                None => call(&remote, "GET", "/keys", &[]).await?,
            };
            print_json(&body)?;
        }
        Command::Query { remote, topic, payload, name, tag, timeout_ms } => {
            let mut query = vec![("topic", topic), ("payload", payload)];
            query.extend(name.map(|n| ("name", n)));
            query.extend(tag.into_iter().map(|t| ("tag", t)));
            query.extend(timeout_ms.map(|ms| ("timeout_ms", ms.to_string())));
            print_json(&call(&remote, "POST", "/query", &query).await?)?;
        }
        Command::Monitor { remote } => monitor(&remote).await?,
        Command::Rtt { remote, name } => print_json(&call(&remote, "GET", "/rtt", &[("name", name)]).await?)?,
    }
    Ok(())
}

/// Prints the agent's event lines as they come, until it closes the stream.
async fn monitor(remote: &Remote) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt;
    let addr = remote.http;
    let fail = |e: std::io::Error| format!("GET /monitor at {addr}: {e}");
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("GET /monitor at {addr}: connect timed out"))?
        .map_err(fail)?;
    let auth = remote.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!("GET /monitor HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.map_err(fail)?;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let status = lines.next_line().await.map_err(fail)?.unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        let mut body = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            body.push(line);
        }
        let text = body.iter().skip_while(|l| !l.is_empty()).skip(1).cloned().collect::<Vec<_>>().join(" ");
        return Err(format!("GET /monitor at {addr}: {status}: {}", text.trim()));
    }
    while let Some(line) = lines.next_line().await.map_err(fail)? {
        if line.is_empty() {
            break;
        }
    }
    while let Some(line) = lines.next_line().await.map_err(fail)? {
        println!("{line}");
    }
    Ok(())
}

fn print_json(body: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("bad answer: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_else(|_| body.to_string()));
    Ok(())
}

fn print_members_table(body: &str) -> Result<(), String> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(body).map_err(|e| format!("bad answer: {e}"))?;
    println!("{:<20} {:<28} {:<14} {:>5} {:>7}  TAGS", "NAME", "ADDRESS", "STATE", "INC", "RTT");
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let rtt = r["rtt_ms"].as_u64().map(|v| format!("{v}ms")).unwrap_or_else(|| "-".into());
        let state = s("state");
        println!(
            "{:<20} {:<28} {:<14} {:>5} {:>7}  {}",
            s("name"),
            s("addr"),
            state,
            r["incarnation"].as_u64().unwrap_or(0),
            rtt,
            s("meta")
        );
    }
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request to the agent: `method path?query`, with the token when one is given. The body
/// of a 200 answer, or an error naming the status and the agent's explanation.
pub async fn call(remote: &Remote, method: &str, path: &str, query: &[(&str, String)]) -> Result<String, String> {
    let addr = remote.http;
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) };
    let auth = remote.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head =
        format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n");
    exchange(&addr, head.as_bytes()).await.map_err(|e| format!("{method} {path} at {addr}: {e}"))
}

async fn exchange(addr: &SocketAddr, head: &[u8]) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    stream.write_all(head).await?;
    let mut response = Vec::new();
    // `POST /join` waits up to `api::JOIN_WAIT` for the cluster.
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let status = head.lines().next().unwrap_or("no answer");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("{status}: {}", body.trim())));
    }
    Ok(body.to_string())
}
