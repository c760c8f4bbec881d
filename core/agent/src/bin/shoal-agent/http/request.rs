//! Reading and parsing one request head, with hostile clients in mind.
//!
//! The head (request line and headers, up to the blank line) must arrive whole within a deadline
//! counted from the accept: a client that sends nothing (idle) or trickles bytes (slowloris) is cut
//! off at the deadline however it paces itself. It may be at most [`MAX_HEAD`] bytes with at most
//! [`MAX_HEADERS`] header lines. Parsing is strict where leniency would open ambiguities an
//! attacker can use (obsolete line folding, absolute-form targets whose host would compete with
//! `Host`), and nothing in it can panic: every malformed head is an error, answered 400.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Largest request head accepted, in bytes (431 beyond).
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header lines accepted in one head.
pub const MAX_HEADERS: usize = 64;

/// Why no head was read.
#[derive(Debug)]
pub enum HeadError {
    /// The client closed (or reset) the connection first: nothing to answer.
    Closed,
    /// The head grew past [`MAX_HEAD`].
    TooLarge,
    /// The deadline passed before the blank line ending the head: idle or too slow.
    TimedOut,
}

/// Reads up to and including the blank line ending a request head; anything after it (a body) is
/// left unread. Fails at `deadline`, however the bytes are paced.
pub async fn read_head<R: AsyncRead + Unpin>(reader: &mut R, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) => return Err(HeadError::TimedOut),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(HeadError::Closed),
            Ok(Ok(n)) => n,
        };
        // The terminator may straddle two reads: look from three bytes before the new ones.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(from + end + 4);
            return Ok(head);
        }
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// A parsed request head. Header names are kept lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The origin-form target: path and optional `?query`.
    pub target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The target's query string (empty without one).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }

    /// Every value of header `name` (lowercase), in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The value of header `name` (lowercase) when it appears exactly once; `Err(())` when it is
    /// repeated (ambiguous, so never trusted).
    pub fn single_header(&self, name: &str) -> Result<Option<&str>, ()> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        match values.next() {
            Some(_) => Err(()),
            None => Ok(first),
        }
    }
}

/// Characters of an HTTP token (method and header names).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a head as returned by [`read_head`]. The error names the problem for the 400 answer.
pub fn parse(head: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "the request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the request line is not `METHOD /path HTTP/1.x`");
    };
    if !is_token(method) || !version.starts_with("HTTP/1.") {
        return Err("the request line is not `METHOD /path HTTP/1.x`");
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the request target must be a path (origin form)");
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not accepted");
        }
        let (name, value) = line.split_once(':').ok_or("a header line has no colon")?;
        if !is_token(name) {
            return Err("a header name is not a token");
        }
        if headers.len() == MAX_HEADERS {
            return Err("too many header lines");
        }
        headers.push((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_string()));
    }
    Ok(Request { method: method.to_string(), target: target.to_string(), headers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// Bound on each step of a test; only a failing test waits that long.
    const STEP: Duration = Duration::from_secs(5);

    #[test]
    fn a_request_is_split_into_method_path_query_and_lowercase_headers() {
        let r = parse(b"POST /faults?loss=1 HTTP/1.1\r\nHost: 127.0.0.1:8946\r\nX-Thing:  a b \r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path(), r.query()), ("POST", "/faults", "loss=1"));
        assert_eq!(r.single_header("host"), Ok(Some("127.0.0.1:8946")));
        assert_eq!(r.single_header("x-thing"), Ok(Some("a b")));
        assert_eq!(r.single_header("origin"), Ok(None));
    }

    #[test]
    fn a_repeated_header_is_reported_as_ambiguous() {
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n").unwrap();
        assert_eq!(r.single_header("host"), Err(()));
        assert_eq!(r.headers("host").collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn malformed_heads_are_errors_never_panics() {
        let bad: [&[u8]; 10] = [
            b"",
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /x\r\n\r\n",
            b"GET http://evil.example/ HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1 extra\r\n\r\n",
            b"G(T /x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ];
        for head in bad {
            assert!(parse(head).is_err(), "{:?}", String::from_utf8_lossy(head));
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(MAX_HEADERS + 1));
        assert!(parse(many.as_bytes()).is_err());
    }

    #[tokio::test]
    async fn the_head_ends_at_the_blank_line_even_across_reads() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_head(&mut server, Instant::now() + STEP).await });
        client.write_all(b"GET /health HTTP/1.1\r\nhost: x\r").await.unwrap();
        client.write_all(b"\n\r\nbody").await.unwrap();
        let head = reader.await.unwrap().unwrap();
        assert_eq!(head, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn a_client_trickling_its_head_is_cut_off_at_the_deadline() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let deadline = Instant::now() + Duration::from_millis(300);
        let reader = tokio::spawn(async move { read_head(&mut server, deadline).await });
        // One byte every 20 ms keeps each read short, but the head never completes in time.
        let trickle = tokio::spawn(async move {
            for b in b"GET /health HTTP/1.1\r\nx-slow: ".iter().cycle() {
                if client.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let result = tokio::time::timeout(STEP, reader).await.expect("cut off in time").unwrap();
        assert!(matches!(result, Err(HeadError::TimedOut)), "{result:?}");
        assert!(Instant::now() >= deadline);
        trickle.abort();
    }

    #[tokio::test]
    async fn a_head_larger_than_the_cap_is_refused() {
        let (mut client, mut server) = tokio::io::duplex(MAX_HEAD * 2);
        client.write_all(&vec![b'a'; MAX_HEAD + 10]).await.unwrap();
        let result = read_head(&mut server, Instant::now() + STEP).await;
        assert!(matches!(result, Err(HeadError::TooLarge)), "{result:?}");
    }
}
