//! Who may ask what of the agent's HTTP endpoint.
//!
//! The endpoint is reachable by two kinds of client that must be told apart: the operator's own
//! tools (curl, Prometheus, `shoal-agent members`, the demo supervisor) and web pages open in a
//! browser on the same machine or network, which can send requests to it without the operator
//! knowing. Three checks, in this order:
//!
//! 1. **`Host`, on every request (DNS rebinding).** A page on `evil.example` can point its own
//!    name at 127.0.0.1 and then read the endpoint as if same-origin; its requests still carry
//!    `Host: evil.example`. Only the IP the connection reached, the IP the listener is bound to,
//!    `localhost`, and names the operator listed (`--http-allow-host`) are served; anything else is
//!    answered `421 Misdirected Request`. A request without `Host` is served: browsers always
//!    send one, so its absence means a non-browser client (the rebinding attack needs a browser).
//! 2. **Same origin, on state-changing requests (CSRF).** Any page can make the browser send a
//!    `POST` cross-site. A request whose `Origin` is not `http://<its Host>` or whose
//!    `Sec-Fetch-Site` is anything but `same-origin`/`none` (note: `same-site` includes another
//!    port of `localhost`) is refused `403`, and so is a body in one of the content types an HTML
//!    form can send (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`),
//!    `415`.
//! 3. **A bearer token, on state-changing requests.** `Authorization: Bearer <token>` must carry
//!    the token configured with `--http-token` / `SHOAL_HTTP_TOKEN` / `http_token` (compared in
//!    constant time), else `401`. Without a configured token, state-changing requests are refused
//!    entirely (`403`): loopback is no boundary here, since the browser running the hostile page
//!    and every other local user share it, and `Origin`/`Sec-Fetch-Site` are only sent by
//!    browsers that cooperate; a secret is the one check that singles out the operator. The
//!    header is also what makes the request unsendable cross-site: `Authorization` is not a
//!    CORS-safelisted header, so a browser asks first with a preflight `OPTIONS`, which this
//!    endpoint never approves (it sends no `Access-Control-Allow-*` header at all).
//!
//! Reads (`GET`/`HEAD`) need only the `Host` check: a cross-origin page cannot read their answers
//! (same-origin policy; responses also carry `X-Content-Type-Options: nosniff`), and they change
//! nothing, so dashboards, scrapers and tests on loopback keep working without a token.

use std::net::IpAddr;

use super::request::Request;

/// Why a request was refused. Each is counted under its [`label`](Refusal::label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` names something other than this endpoint (DNS rebinding), or is repeated.
    Host,
    /// `Origin` or `Sec-Fetch-Site` says the request comes from another site.
    CrossOrigin,
    /// A body type an HTML form can send.
    FormContentType,
    /// A state-changing request while no token is configured.
    TokenNotConfigured,
    /// No `Authorization: Bearer` header.
    TokenMissing,
    /// A bearer token other than the configured one.
    TokenWrong,
    /// A method the path does not support (including CORS preflights).
    Method,
}

impl Refusal {
    /// Every refusal, in the order exported.
    pub const ALL: [Refusal; 7] = [
        Refusal::Host,
        Refusal::CrossOrigin,
        Refusal::FormContentType,
        Refusal::TokenNotConfigured,
        Refusal::TokenMissing,
        Refusal::TokenWrong,
        Refusal::Method,
    ];

    /// The `reason` label of `shoal_agent_http_requests_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::CrossOrigin => "cross_origin",
            Refusal::FormContentType => "form_content_type",
            Refusal::TokenNotConfigured => "token_not_configured",
            Refusal::TokenMissing => "token_missing",
            Refusal::TokenWrong => "token_wrong",
            Refusal::Method => "method",
        }
    }

    /// Status line of the answer.
    pub fn status(self) -> &'static str {
        match self {
            Refusal::Host => "421 Misdirected Request",
            Refusal::CrossOrigin | Refusal::TokenNotConfigured => "403 Forbidden",
            Refusal::FormContentType => "415 Unsupported Media Type",
            Refusal::TokenMissing | Refusal::TokenWrong => "401 Unauthorized",
            Refusal::Method => "405 Method Not Allowed",
        }
    }

    /// Body of the answer: what was wrong, for the operator reading it.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => "unknown Host: use the address the agent is bound to, localhost, or a name given with --http-allow-host\n",
            Refusal::CrossOrigin => "cross-origin request refused\n",
            Refusal::FormContentType => "form content types are refused: send no body or a non-form content type\n",
            Refusal::TokenNotConfigured => "state-changing requests are disabled: start the agent with --http-token (or SHOAL_HTTP_TOKEN)\n",
            Refusal::TokenMissing => "send the agent's token as `Authorization: Bearer <token>`\n",
            Refusal::TokenWrong => "wrong token\n",
            Refusal::Method => "method not allowed\n",
        }
    }
}

/// The access policy of one endpoint.
#[derive(Clone, Debug)]
pub struct Access {
    token: Option<String>,
    allowed_hosts: Vec<String>,
    bound: IpAddr,
}

/// Host names compare lowercase and without a trailing dot; IP literals by value.
fn normalize_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => host,
    }
}

/// The host part of a `Host` value (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`), normalized;
/// `None` when it is not of that shape.
fn host_part(value: &str) -> Option<String> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            match after {
                "" => (inner, ""),
                _ => (inner, after.strip_prefix(':')?),
            }
        }
        None => match value.split_once(':') {
            Some((host, port)) => (host, port),
            None => (value, ""),
        },
    };
    let plausible = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if host.is_empty() || !host.bytes().all(plausible) || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(normalize_host(host))
}

/// Equal contents, compared without stopping at the first difference.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differences = given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == expected.len() && std::hint::black_box(differences) == 0
}

impl Access {
    /// The policy for a listener bound to `bound`, with an optional token and extra host names.
    pub fn new(bound: IpAddr, token: Option<String>, allowed_hosts: &[String]) -> Access {
        Access { token, allowed_hosts: allowed_hosts.iter().map(|h| normalize_host(h)).collect(), bound }
    }

    /// Check 1: `Host` names this endpoint (`local`: the IP the connection reached).
    pub fn check_host(&self, request: &Request, local: IpAddr) -> Result<(), Refusal> {
        let Some(value) = request.single_header("host").map_err(|()| Refusal::Host)? else { return Ok(()) };
        let host = host_part(value).ok_or(Refusal::Host)?;
        let ours = |ip: IpAddr| ip.to_canonical().to_string() == host;
        if host == "localhost" || ours(local) || ours(self.bound) || self.allowed_hosts.contains(&host) {
            Ok(())
        } else {
            Err(Refusal::Host)
        }
    }

    /// Checks 2 and 3, for a request that changes state.
    pub fn check_state_change(&self, request: &Request) -> Result<(), Refusal> {
        let fetch_site = request.single_header("sec-fetch-site").map_err(|()| Refusal::CrossOrigin)?;
        if fetch_site.is_some_and(|site| !matches!(site.to_ascii_lowercase().as_str(), "same-origin" | "none")) {
            return Err(Refusal::CrossOrigin);
        }
        if let Some(origin) = request.single_header("origin").map_err(|()| Refusal::CrossOrigin)? {
            let host = request.single_header("host").ok().flatten().ok_or(Refusal::CrossOrigin)?;
            if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
                return Err(Refusal::CrossOrigin);
            }
        }
        for content_type in request.headers("content-type") {
            let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if matches!(media.as_str(), "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain") {
                return Err(Refusal::FormContentType);
            }
        }
        let expected = self.token.as_deref().ok_or(Refusal::TokenNotConfigured)?;
        let given = request.single_header("authorization").map_err(|()| Refusal::TokenWrong)?;
        let given = given.ok_or(Refusal::TokenMissing)?;
        let (scheme, token) = given.split_once(' ').ok_or(Refusal::TokenMissing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::TokenMissing);
        }
        if same_secret(token.trim().as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::TokenWrong)
        }
    }
}

/// Whether `token` can be configured: 16 to 256 visible ASCII characters (it travels in a header,
/// and a short one could be guessed by a local process trying them).
pub fn validate_token(token: &str) -> Result<(), String> {
    if !(16..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the HTTP token must be 16 to 256 visible ASCII characters (no spaces)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse;

    const TOKEN: &str = "0123456789abcdef-token";

    fn request(lines: &[&str]) -> Request {
        let head = format!(
            "POST /faults?loss=1 HTTP/1.1\r\n{}\r\n",
            lines.iter().map(|l| format!("{l}\r\n")).collect::<String>()
        );
        parse(head.as_bytes()).unwrap()
    }

    fn access() -> Access {
        Access::new("127.0.0.1".parse().unwrap(), Some(TOKEN.into()), &["agent.internal".into()])
    }

    const LOCAL: &str = "127.0.0.1";

    #[test]
    fn loopback_and_configured_hosts_pass_and_rebinding_names_are_refused() {
        let a = access();
        let local = LOCAL.parse().unwrap();
        for ok in ["127.0.0.1:8946", "127.0.0.1", "localhost:8946", "LOCALHOST.", "agent.internal:80"] {
            assert_eq!(a.check_host(&request(&[&format!("Host: {ok}")]), local), Ok(()), "{ok}");
        }
        assert_eq!(a.check_host(&request(&[]), local), Ok(()), "no Host: not a browser");
        for bad in
            ["evil.example:8946", "evil.example", "127.0.0.2:8946", "localhost.evil.example", "[::1]:8946", "a b", ""]
        {
            assert_eq!(a.check_host(&request(&[&format!("Host: {bad}")]), local), Err(Refusal::Host), "{bad}");
        }
        let twice = request(&["Host: 127.0.0.1", "Host: evil.example"]);
        assert_eq!(a.check_host(&twice, local), Err(Refusal::Host));
    }

    #[test]
    fn on_a_wildcard_bind_the_ip_the_connection_reached_is_the_endpoint_s() {
        let a = Access::new("0.0.0.0".parse().unwrap(), None, &[]);
        let local: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(a.check_host(&request(&["Host: 10.1.2.3:8946"]), local), Ok(()));
        assert_eq!(a.check_host(&request(&["Host: 0.0.0.0:8946"]), local), Ok(()));
        assert_eq!(a.check_host(&request(&["Host: 10.1.2.4:8946"]), local), Err(Refusal::Host));
        let v6 = Access::new("::1".parse().unwrap(), None, &[]);
        assert_eq!(v6.check_host(&request(&["Host: [::1]:8946"]), "::1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn a_same_origin_request_with_the_token_is_allowed() {
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let a = access();
        assert_eq!(a.check_state_change(&request(&["Host: 127.0.0.1:8946", &bearer])), Ok(()));
        let browser = request(&[
            "Host: 127.0.0.1:8946",
            "Origin: http://127.0.0.1:8946",
            "Sec-Fetch-Site: same-origin",
            "Content-Type: application/json",
            &bearer,
        ]);
        assert_eq!(a.check_state_change(&browser), Ok(()));
    }

    #[test]
    fn cross_site_form_and_tokenless_requests_are_refused_each_for_its_reason() {
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let host = "Host: 127.0.0.1:8946";
        let a = access();
        let cases: [(&[&str], Refusal); 9] = [
            (&[host, "Origin: https://evil.example", &bearer], Refusal::CrossOrigin),
            (&[host, "Origin: null", &bearer], Refusal::CrossOrigin),
            (&[host, "Origin: http://localhost:3000", &bearer], Refusal::CrossOrigin),
            (&[host, "Sec-Fetch-Site: same-site", &bearer], Refusal::CrossOrigin),
            (&[host, "Sec-Fetch-Site: cross-site", &bearer], Refusal::CrossOrigin),
            (&[host, "Content-Type: application/x-www-form-urlencoded", &bearer], Refusal::FormContentType),
            (&[host, "Content-Type: text/plain; charset=utf-8", &bearer], Refusal::FormContentType),
            (&[host], Refusal::TokenMissing),
            (&[host, "Authorization: Bearer 0123456789abcdef-tokeN"], Refusal::TokenWrong),
        ];
        for (lines, refusal) in cases {
            assert_eq!(a.check_state_change(&request(lines)), Err(refusal), "{lines:?}");
        }
        let no_token = Access::new("127.0.0.1".parse().unwrap(), None, &[]);
        assert_eq!(no_token.check_state_change(&request(&[host, &bearer])), Err(Refusal::TokenNotConfigured));
    }

    #[test]
    fn only_long_visible_tokens_can_be_configured() {
        assert!(validate_token(TOKEN).is_ok());
        assert!(validate_token("short").is_err());
        assert!(validate_token("sixteen chars ok").is_err(), "spaces");
        assert!(validate_token(&"x".repeat(257)).is_err());
    }
}
