//! Agent settings: flags (with `SHOAL_*` environment fallbacks via clap), an optional TOML file,
//! and defaults, merged in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use shoal::relay::valid_peer_id;
use shoal::{Addr, Seed};
use shoal_core::{Config, SecurityMode};

/// A Shoal cluster member.
#[derive(Clone, Debug, Parser)]
#[command(name = "shoal-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Unique member name.
    #[arg(long, env = "SHOAL_NAME")]
    pub name: Option<String>,
    /// UDP (and TCP) address to bind, e.g. 127.0.0.1:7946; port 0 picks a port free for both (the
    /// `started` line reports it).
    #[arg(long, env = "SHOAL_BIND")]
    pub bind: Option<SocketAddr>,
    /// Address to advertise to other members (default `udp://BIND`, or `tcp://BIND` with --tcp-only).
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<String>,
    /// Seed to join through (repeatable): ip:port, a DNS name:port (every address it lists,
    /// looked up again at every re-announce), or a scheme://address.
    #[arg(long, env = "SHOAL_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Metadata entry key=value (repeatable).
    #[arg(long, env = "SHOAL_META", value_delimiter = ',')]
    pub meta: Vec<String>,
    /// Protocol preset: lan, wan, local, or browser (for every agent of a cluster with browser
    /// members: a vanished tab is declared failed in about 1.3 s, against about 5 s with lan).
    #[arg(long, env = "SHOAL_PRESET")]
    pub preset: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print events as JSON lines.
    #[arg(long, env = "SHOAL_JSON")]
    pub json: bool,
    /// Keep network coordinates (Vivaldi), so `shoal-agent rtt` estimates the round trip to any
    /// member, not only the last one measured. Costs about 25 bytes per ack.
    #[arg(long, env = "SHOAL_COORDINATES")]
    pub coordinates: bool,
    /// Answer queries on a topic with a program (repeatable): `TOPIC=PROGRAM [ARG...]`, split on
    /// whitespace, run without a shell. The query's payload is its standard input, its standard
    /// output (at most 1 KiB) the response; `SHOAL_QUERY_TOPIC` and `SHOAL_QUERY_FROM` name the topic
    /// and the asker. Killed after 5 s. Serf's query event handlers.
    #[arg(long = "query-handler", env = "SHOAL_QUERY_HANDLERS", value_delimiter = ';')]
    pub query_handlers: Vec<String>,
    /// Serve /members, /metrics and /health (and /faults with --faults) on this address (port 0
    /// picks a free port; the `started` line reports the address bound). Reads need no token; a
    /// request whose Host is not this IP, localhost or an --http-allow-host name is refused (DNS
    /// rebinding). Loopback is the safe choice: the endpoint has no TLS.
    #[arg(long, env = "SHOAL_HTTP")]
    pub http: Option<SocketAddr>,
    /// Token state-changing HTTP requests (POST /faults) must carry as `Authorization: Bearer
    /// TOKEN`: 16 to 256 visible characters. Without one they are refused. Prefer SHOAL_HTTP_TOKEN
    /// or `http_token` in the config file: a flag is visible to every local user in `ps`.
    #[arg(long, env = "SHOAL_HTTP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// A host name the HTTP endpoint also answers to (repeatable), besides its IP and localhost:
    /// the name clients use to reach it, such as a DNS name or a NAT address.
    #[arg(long, env = "SHOAL_HTTP_ALLOW_HOST", value_delimiter = ',', value_name = "NAME")]
    pub http_allow_host: Vec<String>,
    /// Use TCP only (for networks that drop UDP).
    #[arg(long, env = "SHOAL_TCP_ONLY")]
    pub tcp_only: bool,
    /// Join through this relay over a WebSocket instead of binding UDP and TCP (`ws://host:port`;
    /// append `?token=...` if it wants one), as browsers do: for hosts that only get outbound
    /// HTTP. The peer id is the member name. While the connection is down the member accuses
    /// nobody and reconnects by itself. Several relays of one fleet, comma-separated: it joins
    /// through the first that answers and fails over to the others, keeping its name.
    #[arg(long, env = "SHOAL_WEBSOCKET", value_name = "RELAY_URL", conflicts_with_all = ["tcp_only", "advertise"])]
    pub websocket: Option<String>,
    /// AES-256-GCM key as 64 hex digits (repeatable: the first encrypts, all decrypt).
    #[arg(long, env = "SHOAL_KEY", value_delimiter = ',', hide_env_values = true)]
    pub key: Vec<String>,
    /// Cluster label bound into every encrypted packet.
    #[arg(long, env = "SHOAL_LABEL")]
    pub label: Option<String>,
    /// encrypted (default with a key), transition (accept both, send plaintext),
    /// transition-send (accept both, send encrypted), plaintext.
    #[arg(long, env = "SHOAL_SECURITY")]
    pub security: Option<String>,
    /// Broadcast a digest of our view of the cluster on topic `shoal/view` every SECS seconds.
    #[arg(long, env = "SHOAL_PUBLISH_VIEW", value_name = "SECS")]
    pub publish_view: Option<f64>,
    /// Enable fault injection (packet loss, blocked peers) through `POST /faults` on --http, which
    /// needs --http-token and refuses cross-origin requests.
    #[arg(long, env = "SHOAL_FAULTS")]
    pub faults: bool,
    /// Open direct WebRTC data channels to the browser members of this relay (`ws://host:port`;
    /// append `?token=...` if it wants one). Needs the `webrtc` feature.
    #[arg(long, env = "SHOAL_WEBRTC", value_name = "RELAY_URL")]
    pub webrtc: Option<String>,
    /// The IP browsers reach our WebRTC host candidate at (a public or NAT-mapped address in real
    /// deployments). Default: the interface holding the default route.
    #[arg(long, env = "SHOAL_WEBRTC_IP", value_name = "IP")]
    pub webrtc_ip: Option<std::net::IpAddr>,
}

/// Where a running agent's `--http` endpoint is, and the token its commands need.
#[derive(Clone, Debug, clap::Args)]
pub struct Remote {
    /// The agent's --http address.
    #[arg(long, env = "SHOAL_HTTP", default_value = "127.0.0.1:8946")]
    pub http: SocketAddr,
    /// The agent's --http-token, for commands that change state (and `keys`).
    #[arg(long, env = "SHOAL_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Commands to a running agent, through its `--http` endpoint (Serf's agent commands).
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// List the members a running agent knows, with filters.
    Members {
        #[command(flatten)]
        remote: Remote,
        /// Only members in these states (repeatable or comma-separated): alive, suspect, failed, left.
        #[arg(long, value_delimiter = ',')]
        status: Vec<String>,
        /// Only members whose name matches (`*` and `?` wildcards).
        #[arg(long)]
        name: Option<String>,
        /// Only members with tag KEY whose value matches PATTERN (repeatable; `*` and `?`).
        #[arg(long, value_name = "KEY=PATTERN")]
        tag: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the agent's own member: name, address, incarnation, tags, member counts, health.
    Info {
        #[command(flatten)]
        remote: Remote,
    },
    /// Join a cluster through one or more seeds (ip:port, name:port or scheme://address).
    Join {
        #[command(flatten)]
        remote: Remote,
        #[arg(required = true)]
        seeds: Vec<String>,
    },
    /// Leave the cluster gracefully; the agent then exits.
    Leave {
        #[command(flatten)]
        remote: Remote,
    },
    /// Turn a failed member into one that left, so that nobody tries to reach it again.
    ForceLeave {
        #[command(flatten)]
        remote: Remote,
        /// The failed member's name.
        name: String,
    },
    /// Change the agent's tags (its metadata as key=value pairs) and announce them.
    Tags {
        #[command(flatten)]
        remote: Remote,
        /// Set KEY to VALUE (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove KEY (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Broadcast a user event to every member.
    Event {
        #[command(flatten)]
        remote: Remote,
        /// The event's topic.
        topic: String,
        /// The payload (text).
        #[arg(default_value = "")]
        payload: String,
        /// Coalesce: a newer event with the same topic and key replaces this one while it spreads.
        #[arg(long)]
        key: Option<String>,
    },
    /// List, install, use or remove the agent's encryption keys (64 hex digits each).
    Keys {
        #[command(flatten)]
        remote: Remote,
        /// Add a key that decrypts (step 1 of a rotation).
        #[arg(long, value_name = "KEY", group = "op")]
        install: Option<String>,
        /// Make an installed key the one that encrypts (step 2).
        #[arg(long = "use", value_name = "KEY", group = "op")]
        use_key: Option<String>,
        /// Remove a key that no longer encrypts (step 3).
        #[arg(long, value_name = "KEY", group = "op")]
        remove: Option<String>,
        /// Apply the change to every agent of the cluster (a query each agent answers), not only
        /// this one. The agents must run with encryption on.
        #[arg(long, requires = "op")]
        cluster: bool,
    },
    /// Ask the members selected (all by default) and print their acks and responses (Serf's query).
    Query {
        #[command(flatten)]
        remote: Remote,
        /// The query's topic.
        topic: String,
        /// The payload (text).
        #[arg(default_value = "")]
        payload: String,
        /// Only members whose name matches PATTERN (`*` and `?`).
        #[arg(long, value_name = "PATTERN")]
        name: Option<String>,
        /// Only members with tag KEY whose value matches PATTERN (repeatable).
        #[arg(long, value_name = "KEY=PATTERN")]
        tag: Vec<String>,
        /// How long members may answer (at most 8000; default: grows with the cluster).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Stream the agent's events (membership changes, user events) as JSON lines until stopped.
    Monitor {
        #[command(flatten)]
        remote: Remote,
    },
    /// The round-trip time of the agent's last probe of a member.
    Rtt {
        #[command(flatten)]
        remote: Remote,
        /// The member's name.
        name: String,
    },
}

/// The TOML file: every field optional, same meaning as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    name: Option<String>,
    bind: Option<SocketAddr>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    meta: Option<std::collections::BTreeMap<String, String>>,
    preset: Option<String>,
    json: Option<bool>,
    coordinates: Option<bool>,
    http: Option<SocketAddr>,
    http_token: Option<String>,
    http_allow_hosts: Option<Vec<String>>,
    tcp_only: Option<bool>,
    websocket: Option<String>,
    keys: Option<Vec<String>>,
    label: Option<String>,
    security: Option<String>,
    protocol: Option<ProtocolOverrides>,
    query_handlers: Option<Vec<HandlerSettings>>,
}

/// `[[query_handlers]]` in the file: `topic`, `command` (program and arguments, no shell) and an
/// optional `timeout_ms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerSettings {
    topic: String,
    command: Vec<String>,
    timeout_ms: Option<u64>,
}

/// Protocol knobs that may be overridden on top of the preset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolOverrides {
    probe_interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    gossip_interval_ms: Option<u64>,
    suspicion_mult: Option<u32>,
    suspicion_confirmations: Option<u32>,
    push_pull_interval_ms: Option<u64>,
    reannounce_interval_ms: Option<u64>,
    dead_member_reap_time_ms: Option<u64>,
}

/// Everything the agent runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub bind: SocketAddr,
    pub advertise: Option<Addr>,
    pub join: Vec<Seed>,
    pub meta: Vec<(String, String)>,
    pub config: Config,
    pub json: bool,
    pub coordinates: bool,
    pub query_handlers: Vec<crate::queries::Handler>,
    pub http: Option<SocketAddr>,
    pub http_token: Option<String>,
    pub http_allow_hosts: Vec<String>,
    pub tcp_only: bool,
    /// The relay URLs with `peer=<name>` (see `--websocket`), in the order given.
    pub websocket: Option<Vec<String>>,
    pub keyring: Option<shoal_core::Keyring>,
    pub publish_view: Option<Duration>,
    pub faults: bool,
    pub webrtc: Option<String>,
    pub webrtc_ip: Option<std::net::IpAddr>,
}

impl Settings {
    /// Merges flags and environment (already combined by clap) over the file over defaults.
    pub fn resolve(cli: &Cli) -> Result<Settings, String> {
        let mut file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
                toml::from_str::<FileSettings>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let tcp_only = cli.tcp_only || file.tcp_only.unwrap_or(false);
        let query_handlers = if cli.query_handlers.is_empty() {
            let listed = file.query_handlers.take().unwrap_or_default();
            let from_file = |h: HandlerSettings| {
                let timeout = h.timeout_ms.map_or(crate::queries::HANDLER_TIMEOUT, Duration::from_millis);
                crate::queries::Handler::new(h.topic, h.command, timeout)
            };
            listed.into_iter().map(from_file).collect::<Result<Vec<_>, _>>()?
        } else {
            cli.query_handlers.iter().map(|spec| crate::queries::Handler::parse(spec)).collect::<Result<Vec<_>, _>>()?
        };
        let name =
            cli.name.clone().or(file.name).ok_or("a member needs --name (or SHOAL_NAME, or name in the file)")?;
        let bind = cli.bind.or(file.bind).unwrap_or_else(|| "127.0.0.1:7946".parse().expect("valid default"));
        let advertise = cli.advertise.clone().or(file.advertise).map(|a| parse_addr(&a, tcp_only)).transpose()?;
        let join_text = if cli.join.is_empty() { file.join.unwrap_or_default() } else { cli.join.clone() };
        let join = join_text.iter().map(|j| parse_seed(j, tcp_only)).collect::<Result<Vec<_>, _>>()?;
        let meta = if cli.meta.is_empty() {
            file.meta.unwrap_or_default().into_iter().collect()
        } else {
            cli.meta.iter().map(|kv| split_meta(kv)).collect::<Result<Vec<_>, _>>()?
        };
        let preset = cli.preset.clone().or(file.preset).unwrap_or_else(|| "lan".into());
        let mut config = match preset.as_str() {
            "lan" => Config::lan(),
            "wan" => Config::wan(),
            "local" => Config::local(),
            "browser" => Config::browser(),
            other => return Err(format!("unknown preset {other} (lan, wan, local or browser)")),
        };
        if let Some(p) = file.protocol {
            let ms = Duration::from_millis;
            if let Some(v) = p.probe_interval_ms {
                config.probe_interval = ms(v);
            }
            if let Some(v) = p.probe_timeout_ms {
                config.probe_timeout = ms(v);
            }
            if let Some(v) = p.gossip_interval_ms {
                config.gossip_interval = ms(v);
            }
            if let Some(v) = p.suspicion_mult {
                config.suspicion_mult = v;
            }
            if let Some(v) = p.suspicion_confirmations {
                config.suspicion_confirmations = v;
            }
            if let Some(v) = p.push_pull_interval_ms {
                config.push_pull_interval = ms(v);
            }
            if let Some(v) = p.reannounce_interval_ms {
                config.reannounce_interval = ms(v);
            }
            if let Some(v) = p.dead_member_reap_time_ms {
                config.dead_member_reap_time = ms(v);
            }
        }
        let key_text = if cli.key.is_empty() { file.keys.unwrap_or_default() } else { cli.key.clone() };
        let keys = key_text.iter().map(|k| parse_key(k)).collect::<Result<Vec<_>, _>>()?;
        let keyring = keys.split_first().map(|(primary, rest)| {
            let mut ring = shoal_core::Keyring::new(*primary);
            for k in rest {
                ring.install(*k);
            }
            ring
        });
        let default_mode = if keyring.is_some() { "encrypted" } else { "plaintext" };
        config.security = match cli.security.clone().or(file.security).as_deref().unwrap_or(default_mode) {
            "plaintext" => SecurityMode::Plaintext,
            "transition" => SecurityMode::Transition { send_encrypted: false },
            "transition-send" => SecurityMode::Transition { send_encrypted: true },
            "encrypted" => SecurityMode::Encrypted,
            other => return Err(format!("unknown security mode {other}")),
        };
        if config.security != SecurityMode::Plaintext && keyring.is_none() {
            return Err("this security mode needs --key".into());
        }
        let http_token = cli.http_token.clone().or(file.http_token);
        if let Some(token) = &http_token {
            crate::http::validate_token(token)?;
        }
        let http_allow_hosts = if cli.http_allow_host.is_empty() {
            file.http_allow_hosts.unwrap_or_default()
        } else {
            cli.http_allow_host.clone()
        };
        let websocket = match cli.websocket.clone().or(file.websocket) {
            Some(_) if tcp_only => return Err("--websocket and --tcp-only exclude each other".into()),
            Some(_) if advertise.is_some() => {
                return Err("--websocket members are advertised at the address the relay gives them".into())
            }
            Some(_) if !valid_peer_id(&name) => {
                return Err(format!(
                    "--websocket: the name {name:?} is not a relay peer id (1-64 of A-Z a-z 0-9 . _ -)"
                ))
            }
            Some(relays) => Some(
                relays
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|r| shoal_websocket::member_url(r, &name))
                    .collect(),
            ),
            None => None,
        };
        config.label = cli.label.clone().or(file.label).unwrap_or_default();
        config.validate().map_err(|e| e.to_string())?;
        Ok(Settings {
            name,
            bind,
            advertise,
            join,
            meta,
            config,
            json: cli.json || file.json.unwrap_or(false),
            coordinates: cli.coordinates || file.coordinates.unwrap_or(false),
            query_handlers,
            http: cli.http.or(file.http),
            http_token,
            http_allow_hosts,
            tcp_only,
            websocket,
            keyring,
            publish_view: match cli.publish_view {
                Some(secs) if secs.is_finite() && secs >= 0.05 => Some(Duration::from_secs_f64(secs)),
                Some(secs) => return Err(format!("--publish-view {secs}: give a period of at least 0.05 s")),
                None => None,
            },
            faults: cli.faults,
            webrtc: cli.webrtc.clone(),
            webrtc_ip: cli.webrtc_ip,
        })
    }

    /// Metadata as sent on the wire: `key=value` pairs joined by commas.
    pub fn meta_bytes(&self) -> Vec<u8> {
        // Validated when read (`split_meta`): a key is never empty.
        shoal::Tags::from_pairs(self.meta.iter().map(|(k, v)| (k, v))).map(|t| t.to_metadata()).unwrap_or_default()
    }
}

/// `host:port` (UDP, or TCP with --tcp-only) or a full `scheme://address`.
fn parse_addr(text: &str, tcp_only: bool) -> Result<Addr, String> {
    if text.contains("://") {
        return Addr::parse(text).map_err(|e| format!("{text}: {e}"));
    }
    let sa: SocketAddr = text.parse().map_err(|_| format!("{text}: expected host:port or scheme://address"))?;
    Ok(if tcp_only { Addr::tcp(sa) } else { Addr::udp(sa) })
}

/// A seed: `scheme://address`, or `ip:port` / `name:port` (a DNS name, every address it lists, looked
/// up again at every re-announce) over UDP, or TCP for a TCP-only agent.
fn parse_seed(text: &str, tcp_only: bool) -> Result<Seed, String> {
    let full = if text.contains("://") || !tcp_only { text.to_string() } else { format!("tcp://{text}") };
    Seed::parse(&full).map_err(|e| format!("--join {e}"))
}

pub fn parse_key(hex: &str) -> Result<shoal_core::Key, String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a key is 64 hex digits (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

fn split_meta(kv: &str) -> Result<(String, String), String> {
    let (k, v) = kv.split_once('=').ok_or_else(|| format!("--meta {kv}: expected key=value"))?;
    if k.is_empty() || k.len() > shoal::proto::tags::MAX_TAG_KEY_LEN || k.contains(',') || v.contains(',') {
        return Err(format!("--meta {kv}: keys must be 1 to 128 bytes, and neither may contain ','"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("shoal-agent").chain(args.iter().copied()))
    }

    #[test]
    fn the_agent_file_in_the_readme_parses_and_its_protocol_overrides_are_known_keys() {
        let readme = include_str!("../../../../../README.md");
        let start = readme.find("```toml\n").expect("a toml block in the README") + "```toml\n".len();
        let block = &readme[start..start + readme[start..].find("```").expect("the block ends")];
        let file: FileSettings = toml::from_str(block).expect("the README's agent file parses");
        // Keys written after `[meta]` belong to it: `http_token` there was a tag, not the token.
        assert_eq!(file.http_token.as_deref(), Some("..."));
        assert_eq!(file.meta.map(|m| m.len()), Some(1), "one tag");
        let protocol = file.protocol.expect("it sets protocol overrides");
        assert_eq!(protocol.suspicion_mult, Some(4));
        assert_eq!(protocol.probe_interval_ms, Some(1_000));
    }

    #[test]
    fn flags_resolve_into_settings() {
        let s = Settings::resolve(&cli(&[
            "--name",
            "n1",
            "--bind",
            "127.0.0.1:7000",
            "--join",
            "127.0.0.1:7001",
            "--meta",
            "role=web",
            "--meta",
            "dc=eu",
        ]))
        .unwrap();
        assert_eq!(s.name, "n1");
        assert_eq!(s.join, vec![Seed::Addr(Addr::parse("udp://127.0.0.1:7001").unwrap())]);
        assert_eq!(s.meta_bytes(), b"dc=eu,role=web", "tags, in key order");
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("shoal-agent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\nbind = \"127.0.0.1:7100\"\npreset = \"local\"\n[meta]\nrole = \"db\"\n[protocol]\nprobe_interval_ms = 300\n",
        )
        .unwrap();
        let s = Settings::resolve(&cli(&["--config", path.to_str().unwrap(), "--name", "from-flag"])).unwrap();
        assert_eq!(s.name, "from-flag");
        assert_eq!(s.bind, "127.0.0.1:7100".parse().unwrap());
        assert_eq!(s.meta, vec![("role".to_string(), "db".to_string())]);
        assert_eq!(s.config.probe_interval, Duration::from_millis(300));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_turns_encryption_on_and_a_bad_key_is_refused() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let s = Settings::resolve(&cli(&["--name", "x", "--key", key, "--label", "prod"])).unwrap();
        assert_eq!(s.config.security, SecurityMode::Encrypted);
        assert_eq!(s.config.label, "prod");
        assert_eq!(s.keyring.unwrap().primary()[1], 0x11);
        assert!(Settings::resolve(&cli(&["--name", "x", "--key", "abc"])).is_err());
        assert!(Settings::resolve(&cli(&["--name", "x", "--security", "encrypted"])).is_err());
    }

    #[test]
    fn the_http_token_comes_from_the_flag_or_the_file_and_a_short_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("shoal-agent-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(
            &path,
            "name = \"n\"\nhttp_token = \"from-the-file-0123456789\"\nhttp_allow_hosts = [\"agent.lan\"]\n",
        )
        .unwrap();
        let from_file = Settings::resolve(&cli(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(from_file.http_token.as_deref(), Some("from-the-file-0123456789"));
        assert_eq!(from_file.http_allow_hosts, ["agent.lan"]);
        let from_flag =
            Settings::resolve(&cli(&["--config", path.to_str().unwrap(), "--http-token", "from-the-flag-0123456789"]))
                .unwrap();
        assert_eq!(from_flag.http_token.as_deref(), Some("from-the-flag-0123456789"));
        assert!(Settings::resolve(&cli(&["--name", "x", "--http-token", "short"])).unwrap_err().contains("16"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn websocket_takes_the_relay_url_and_the_name_as_peer_id() {
        let s = Settings::resolve(&cli(&["--name", "edge-1", "--websocket", "ws://127.0.0.1:8080?token=t"])).unwrap();
        assert_eq!(s.websocket, Some(vec!["ws://127.0.0.1:8080/ws?token=t&peer=edge-1".to_string()]));
        let fleet =
            Settings::resolve(&cli(&["--name", "edge-1", "--websocket", "ws://r1:8080, ws://r2:8080"])).unwrap();
        assert_eq!(
            fleet.websocket,
            Some(vec!["ws://r1:8080/ws?peer=edge-1".to_string(), "ws://r2:8080/ws?peer=edge-1".to_string()]),
            "a relay fleet, comma-separated"
        );
        assert!(Settings::resolve(&cli(&["--name", "a/b", "--websocket", "ws://r:1"]))
            .unwrap_err()
            .contains("peer id"));
        assert!(Cli::try_parse_from(["shoal-agent", "--name", "x", "--websocket", "ws://r:1", "--tcp-only"]).is_err());
    }

    #[test]
    fn a_missing_name_and_bad_values_are_reported() {
        assert!(Settings::resolve(&cli(&[])).unwrap_err().contains("--name"));
        assert!(Settings::resolve(&cli(&["--name", "x", "--meta", "novalue"])).is_err());
        assert!(Settings::resolve(&cli(&["--name", "x", "--preset", "mars"])).is_err());
        let browser = Settings::resolve(&cli(&["--name", "x", "--preset", "browser"])).unwrap();
        assert_eq!(browser.config.probe_interval, Config::browser().probe_interval);
        assert!(Settings::resolve(&cli(&["--name", "x", "--join", "nowhere"])).is_err());
        let named = Settings::resolve(&cli(&["--name", "x", "--join", "seeds.internal:7946"])).unwrap();
        assert_eq!(named.join, vec![Seed::parse("seeds.internal:7946").unwrap()]);
        let tcp = Settings::resolve(&cli(&["--name", "x", "--tcp-only", "--join", "seeds.internal:7946"])).unwrap();
        assert_eq!(tcp.join, vec![Seed::parse("tcp://seeds.internal:7946").unwrap()]);
    }
}
