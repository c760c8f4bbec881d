//! The wire format: length-prefixed frames and the connection handshake.
//!
//! ```text
//! frame     = length:u32 (big-endian) body:[u8; length]
//! handshake = frame whose body is MAGIC followed by the sender's advertised address (UTF-8)
//! ```
//!
//! The connecting side sends the handshake first, then any number of frames; the accepting side
//! only reads. A zero-length frame is a keep-alive and is not delivered.
//!
//! Decoding never panics on input and never allocates more than the bytes that actually arrived:
//! a length is checked against the limit before anything is read or allocated, and a body buffer
//! starts small and grows as data comes in. A peer that breaks the format is disconnected; these
//! functions say why with a [`ReadEnd`], and the caller counts it.

use std::io;
use std::time::Duration;

use shoal_transport::{Addr, MAX_ADDR_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// Start of every handshake: protocol name and version, then a space.
pub(crate) const MAGIC: &[u8] = b"SHOAL-TCP/1 ";

/// Bytes of the length prefix in front of every frame body.
pub(crate) const HEADER_LEN: usize = 4;

/// Longest acceptable handshake body.
pub(crate) const MAX_HANDSHAKE: usize = MAGIC.len() + MAX_ADDR_LEN;

/// Bodies up to this size are copied behind their header and written with one call.
const COALESCE: usize = 64 << 10;

/// First allocation for a frame body; it grows as bytes arrive.
const INITIAL_BODY: usize = 64 << 10;

/// `now + d`, saturating at a year from now (a huge timeout means "never", not a clock overflow).
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Why a connection's reader stopped.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The peer closed the connection between frames.
    Eof,
    /// No progress from the peer for `idle_timeout`.
    Idle,
    /// The transport is closing.
    Closed,
    /// The peer broke the protocol (counted in `dropped_in`).
    Protocol(&'static str),
    /// The socket failed.
    Io(io::Error),
}

/// The handshake body announcing `advertise`.
pub(crate) fn handshake(advertise: &Addr) -> Vec<u8> {
    let mut body = Vec::with_capacity(MAGIC.len() + advertise.as_str().len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(advertise.as_str().as_bytes());
    body
}

/// The advertised address in a handshake body, or why the handshake is unacceptable.
pub(crate) fn parse_handshake(body: &[u8]) -> Result<Addr, &'static str> {
    if body.len() > MAX_HANDSHAKE {
        return Err("handshake too long");
    }
    let rest = body.strip_prefix(MAGIC).ok_or("not a shoal-tcp/1 handshake")?;
    let text = std::str::from_utf8(rest).map_err(|_| "handshake address is not UTF-8")?;
    Addr::parse(text).map_err(|_| "handshake address is invalid")
}

/// Writes one frame. The caller bounds it with a timeout and, if it fails or times out, drops the
/// connection: a partly written frame leaves the stream unusable.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    body: &[u8],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let header = len.to_be_bytes();
    if body.len() <= COALESCE {
        scratch.clear();
        scratch.extend_from_slice(&header);
        scratch.extend_from_slice(body);
        wr.write_all(scratch).await
    } else {
        wr.write_all(&header).await?;
        wr.write_all(body).await
    }
}

/// Reads a frame header. The first byte may take until `idle_at()` (asked again whenever that
/// moment passes, since progress may have pushed it back); once a frame has started, the rest of
/// the header must arrive within `io_timeout`.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    rd: &mut R,
    io_timeout: Duration,
    idle_at: impl Fn() -> Instant,
) -> Result<u32, ReadEnd> {
    let mut header = [0u8; HEADER_LEN];
    let n = loop {
        let deadline = idle_at();
        tokio::select! {
            // `read` is cancel-safe: if the deadline wins, no byte was consumed.
            r = rd.read(&mut header) => break r.map_err(ReadEnd::Io)?,
            () = tokio::time::sleep_until(deadline) => {
                if idle_at() <= Instant::now() {
                    return Err(ReadEnd::Idle);
                }
            }
        }
    };
    if n == 0 {
        return Err(ReadEnd::Eof);
    }
    if n < header.len() {
        match timeout(io_timeout, rd.read_exact(&mut header[n..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ReadEnd::Protocol("truncated header"))
            }
            Ok(Err(e)) => return Err(ReadEnd::Io(e)),
            Err(_) => return Err(ReadEnd::Protocol("header timed out")),
        }
    }
    Ok(u32::from_be_bytes(header))
}

/// Reads a body of `len` bytes (already checked against the limit) within `io_timeout`. The
/// buffer starts at [`INITIAL_BODY`] and doubles as bytes arrive, never past `len`, so a peer
/// announcing a large frame and sending little costs little.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    len: u32,
    io_timeout: Duration,
) -> Result<Vec<u8>, ReadEnd> {
    let len = len as usize;
    let read = async {
        let mut body = Vec::with_capacity(len.min(INITIAL_BODY));
        while body.len() < len {
            let remaining = len - body.len();
            if body.len() == body.capacity() {
                body.reserve_exact(remaining.min(body.capacity()));
            }
            // `take` keeps the read inside this frame whatever the capacity turned out to be.
            if (&mut *rd).take(remaining as u64).read_buf(&mut body).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(body)
    };
    match timeout(io_timeout, read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadEnd::Protocol("truncated frame")),
        Ok(Err(e)) => Err(ReadEnd::Io(e)),
        Err(_) => Err(ReadEnd::Protocol("frame body timed out")),
    }
}

/// Reads the handshake a connecting peer must send first, within `io_timeout`.
pub(crate) async fn read_handshake<R: AsyncRead + Unpin>(rd: &mut R, io_timeout: Duration) -> Result<Addr, ReadEnd> {
    let deadline = deadline_after(io_timeout);
    let len = match read_header(rd, io_timeout, || deadline).await {
        Ok(len) => len,
        Err(ReadEnd::Idle) => return Err(ReadEnd::Protocol("no handshake")),
        Err(ReadEnd::Eof) => return Err(ReadEnd::Protocol("closed before the handshake")),
        Err(end) => return Err(end),
    };
    if len as usize > MAX_HANDSHAKE {
        return Err(ReadEnd::Protocol("handshake too long"));
    }
    let body = read_body(rd, len, deadline.saturating_duration_since(Instant::now())).await?;
    parse_handshake(&body).map_err(ReadEnd::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn a_handshake_round_trips_its_address() {
        let a = Addr::parse("tcp://10.0.0.7:7946").unwrap();
        assert_eq!(parse_handshake(&handshake(&a)), Ok(a));
    }

    #[test]
    fn malformed_handshakes_are_rejected_with_a_reason() {
        assert!(parse_handshake(b"GET / HTTP/1.1\r\n").is_err());
        assert!(parse_handshake(b"SHOAL-TCP/2 tcp://1.2.3.4:5").is_err());
        assert!(parse_handshake(b"SHOAL-TCP/1 ").is_err());
        assert!(parse_handshake(b"SHOAL-TCP/1 udp://nope").is_err());
        assert!(parse_handshake(b"SHOAL-TCP/1 \xff\xfe").is_err());
        let long = [MAGIC, "rtc://".as_bytes(), &[b'x'; MAX_ADDR_LEN]].concat();
        assert!(parse_handshake(&long).is_err());
    }

    #[tokio::test]
    async fn frames_written_are_read_back_whole_at_any_size() {
        for size in [0usize, 1, 1_000, COALESCE, COALESCE + 1, 300_000] {
            let body: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut wire = Vec::new();
            write_frame(&mut wire, &body, &mut Vec::new()).await.unwrap();
            let mut rd = wire.as_slice();
            let len = read_header(&mut rd, T, || Instant::now() + T).await.unwrap();
            assert_eq!(read_body(&mut rd, len, T).await.unwrap(), body);
            assert!(rd.is_empty());
        }
    }

    #[tokio::test]
    async fn a_truncated_frame_is_a_protocol_error_not_a_panic() {
        let wire = frame(b"hello");
        for cut in 1..wire.len() {
            let mut rd = &wire[..cut];
            let r = match read_header(&mut rd, T, || Instant::now() + T).await {
                Ok(len) => read_body(&mut rd, len, T).await.map(drop),
                Err(end) => Err(end),
            };
            assert!(matches!(r, Err(ReadEnd::Protocol(_))), "cut at {cut}: {r:?}");
        }
    }

    #[tokio::test]
    async fn an_empty_stream_ends_cleanly() {
        let mut rd: &[u8] = &[];
        assert!(matches!(read_header(&mut rd, T, || Instant::now() + T).await, Err(ReadEnd::Eof)));
    }

    #[tokio::test]
    async fn a_handshake_announcing_a_huge_length_is_refused_before_reading_it() {
        let mut wire = u32::MAX.to_be_bytes().to_vec();
        wire.extend_from_slice(MAGIC);
        let r = read_handshake(&mut wire.as_slice(), T).await;
        assert!(matches!(r, Err(ReadEnd::Protocol("handshake too long"))), "{r:?}");
    }

    #[tokio::test]
    async fn a_silent_connection_fails_the_handshake_in_time() {
        let (_keep, mut rd) = tokio::io::duplex(64);
        let r = read_handshake(&mut rd, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(ReadEnd::Protocol("no handshake"))), "{r:?}");
    }
}
