//! The operator's API (Serf's agent commands), served on the `--http` endpoint and used by the
//! `shoal-agent <command>` subcommands ([`super::client`]).
//!
//! | request | what it does | token |
//! |---|---|---|
//! | `GET /members?status=alive,suspect&name=web-*&tag=role=web` | members passing every filter | no |
//! | `GET /info` | this member: name, address, incarnation, tags, counts, health, stats | no |
//! | `GET /rtt?name=N` | the round trip of our last probe of `N`, and the estimate from coordinates | no |
//! | `POST /join?seed=A&seed=B` | joins through the seeds (waits up to [`JOIN_WAIT`]) | yes |
//! | `POST /leave` | leaves gracefully, then the agent exits | yes |
//! | `POST /force-leave?name=N` | turns the failed member `N` into one that left | yes |
//! | `POST /tags?set=k=v&delete=k` | changes our tags and announces them | yes |
//! | `POST /event?topic=T&payload=P&key=K` | broadcasts a user event (`key`: latest wins) | yes |
//! | `GET /keys`, `POST /keys?install=K`, `use=K`, `remove=K` | this member's keyring | yes |
//! | `POST /keys?install=K&cluster=1` (or `use`, `remove`) | every agent's keyring, by query | yes |
//! | `POST /query?topic=T&payload=P&name=N&tag=k=p&timeout_ms=M` | asks the members selected, collects answers | yes |
//! | `GET /monitor` | the member's events as JSON lines, streamed until the client leaves | yes |
//!
//! Everything that changes state, the key list and the event stream (user events carry
//! application data) need the `--http-token` (see [`super::access`]).
//! Parameters are in the query string, percent-encoded; the answer is JSON, or a short text with
//! an error status saying what was wrong.

use std::time::Duration;

use serde_json::{json, Value};
use shoal::{Cluster, ClusterError, MemberFilter, MemberState, NodeId, Seed, Tags};

use super::Answer;

/// How long `POST /join` waits for the join before answering that it goes on in the background.
pub const JOIN_WAIT: Duration = Duration::from_secs(4);

/// The pairs of a query string, percent-decoded, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (crate::faults::percent_decode(k), crate::faults::percent_decode(v))
        })
        .collect()
}

fn bad(why: impl Into<String>) -> Answer {
    let mut text = why.into();
    text.push('\n');
    Answer::text("400 Bad Request", text)
}

fn json_ok(value: Value) -> Answer {
    Answer::ok("application/json", value.to_string())
}

/// A state as `/members` has always named it (scripts and the test labs read these).
fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Dead => "dead",
        MemberState::Left => "left",
    }
}

fn parse_state(text: &str) -> Option<MemberState> {
    Some(match text {
        "alive" => MemberState::Alive,
        "suspect" => MemberState::Suspect,
        "failed" | "dead" => MemberState::Dead,
        "left" => MemberState::Left,
        _ => return None,
    })
}

/// The filter of `GET /members`: `status` (comma-separated states), `name` and `tag=key=pattern`
/// (repeatable), with `*` and `?` wildcards.
pub fn member_filter(query: &str) -> Result<(MemberFilter, bool), String> {
    let mut filter = MemberFilter::new();
    let mut filtered = false;
    for (k, v) in query_pairs(query) {
        filtered = true;
        filter = match k.as_str() {
            "status" => {
                let states = v
                    .split(',')
                    .map(|s| {
                        parse_state(s.trim())
                            .ok_or_else(|| format!("unknown status {s:?} (alive, suspect, failed, left)"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                filter.states(&states)
            }
            "name" => filter.name(&v),
            "tag" => {
                let (key, pattern) = v.split_once('=').ok_or_else(|| format!("tag {v:?}: expected key=pattern"))?;
                filter.tag(key, pattern)
            }
            other => return Err(format!("unknown filter {other:?} (status, name, tag)")),
        };
    }
    Ok((filter, filtered))
}

/// `GET /members`: ourselves (when we pass the filter) and every member that passes it.
pub fn members(cluster: &Cluster, query: &str) -> Answer {
    let (filter, _) = match member_filter(query) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let me = cluster.local_member();
    let mut rows = Vec::new();
    if filter.matches(&me) {
        rows.push(json!({
            "name": me.id.as_str(), "addr": me.addr.to_string(), "state": "alive (self)", "self": true,
            "incarnation": me.incarnation, "meta": String::from_utf8_lossy(me.meta.as_bytes()),
            "tags": tags_json(&me.tags()), "rtt_ms": null,
        }));
    }
    for m in cluster.members_matching(&filter) {
        rows.push(json!({
            "name": m.id.as_str(), "addr": m.addr.to_string(), "state": state_name(m.state), "self": false,
            "incarnation": m.incarnation, "meta": String::from_utf8_lossy(m.meta.as_bytes()),
            "tags": tags_json(&m.tags()), "rtt_ms": cluster.rtt(&m.id).map(|d| d.as_millis() as u64),
        }));
    }
    json_ok(Value::Array(rows))
}

fn tags_json(tags: &Tags) -> Value {
    Value::Object(tags.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
}

/// `GET /info`.
pub fn info(cluster: &Cluster) -> Answer {
    let me = cluster.local_member();
    let members = cluster.members();
    let count = |s: MemberState| members.iter().filter(|m| m.state == s).count();
    let metrics = cluster.metrics();
    json_ok(json!({
        "name": me.id.as_str(),
        "addr": me.addr.to_string(),
        "incarnation": me.incarnation,
        "tags": tags_json(&me.tags()),
        "meta": String::from_utf8_lossy(me.meta.as_bytes()),
        "members": { "alive": count(MemberState::Alive) + 1, "suspect": count(MemberState::Suspect),
                     "failed": count(MemberState::Dead), "left": count(MemberState::Left) },
        "health_score": metrics.health_score,
        "encrypted": cluster.keys().is_ok(),
        "protocol_version": shoal::proto::wire::PROTOCOL_VERSION,
        "stats": {
            "packets_sent": metrics.stats.packets_sent, "packets_received": metrics.stats.packets_received,
            "bytes_sent": metrics.stats.bytes_sent, "bytes_received": metrics.stats.bytes_received,
            "forced_leaves": metrics.stats.forced_leaves,
        },
    }))
}

/// `GET /rtt?name=N`.
pub fn rtt(cluster: &Cluster, query: &str) -> Answer {
    let Some((_, name)) = query_pairs(query).into_iter().find(|(k, _)| k == "name") else {
        return bad("rtt needs name=N");
    };
    match cluster.members().into_iter().find(|m| m.id.as_str() == name) {
        None => Answer::text("404 Not Found", format!("no member {name:?}\n")),
        Some(m) => json_ok(json!({
            "name": name, "state": state_name(m.state), "rtt_ms": cluster.rtt(&m.id).map(|d| d.as_secs_f64() * 1000.0),
            "estimated_rtt_ms": cluster.estimate_rtt(&m.id).map(|d| d.as_secs_f64() * 1000.0),
        })),
    }
}

/// `POST /join?seed=A&seed=B`.
pub async fn join(cluster: &Cluster, query: &str) -> Answer {
    let mut seeds = Vec::new();
    for (k, v) in query_pairs(query) {
        if k != "seed" {
            return bad(format!("unknown parameter {k:?} (seed)"));
        }
        match Seed::parse(&v) {
            Ok(seed) => seeds.push(seed),
            Err(e) => return bad(format!("seed {v:?}: {e}")),
        }
    }
    if seeds.is_empty() {
        return bad("join needs at least one seed=ADDRESS");
    }
    match tokio::time::timeout(JOIN_WAIT, cluster.join(seeds)).await {
        Ok(Ok(via)) => {
            json_ok(json!({ "joined": true, "via": via.to_string(), "members": cluster.alive_members().len() + 1 }))
        }
        Ok(Err(e)) => Answer::text("502 Bad Gateway", format!("join failed: {e}\n")),
        Err(_) => json_ok(json!({ "joined": false, "note": "no answer yet; re-announcing in the background" })),
    }
}

/// `POST /force-leave?name=N`.
pub fn force_leave(cluster: &Cluster, query: &str) -> Answer {
    let Some((_, name)) = query_pairs(query).into_iter().find(|(k, _)| k == "name") else {
        return bad("force-leave needs name=N");
    };
    let id = match NodeId::new(&name) {
        Ok(id) => id,
        Err(e) => return bad(format!("{name:?}: {e}")),
    };
    match cluster.force_leave(&id) {
        Ok(()) => json_ok(json!({ "name": name, "state": "left" })),
        Err(ClusterError::Command(e)) => Answer::text("409 Conflict", format!("{e}\n")),
        Err(e) => Answer::text("503 Service Unavailable", format!("{e}\n")),
    }
}

/// `POST /tags?set=k=v&delete=k`: changes apply in order, then the tags are announced once.
pub fn tags(cluster: &Cluster, query: &str) -> Answer {
    let mut tags = cluster.tags();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "set" => {
                let Some((key, value)) = v.split_once('=') else {
                    return bad(format!("set {v:?}: expected key=value"));
                };
                if let Err(e) = tags.insert(key, value) {
                    return bad(e.to_string());
                }
            }
            "delete" => {
                tags.remove(&v);
            }
            other => return bad(format!("unknown parameter {other:?} (set, delete)")),
        }
    }
    match cluster.set_tags(&tags) {
        Ok(()) => json_ok(tags_json(&tags)),
        Err(e) => bad(e.to_string()),
    }
}

/// `POST /event?topic=T&payload=P&key=K`.
pub fn event(cluster: &Cluster, query: &str) -> Answer {
    let (mut topic, mut payload, mut key) = (None, String::new(), None);
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "topic" => topic = Some(v),
            "payload" => payload = v,
            "key" => key = Some(v),
            other => return bad(format!("unknown parameter {other:?} (topic, payload, key)")),
        }
    }
    let Some(topic) = topic else {
        return bad("event needs topic=T");
    };
    let sent = match &key {
        Some(key) => cluster.broadcast_keyed(&topic, key.as_bytes(), payload.as_bytes()),
        None => cluster.broadcast(&topic, payload.as_bytes()),
    };
    match sent {
        Ok(id) => json_ok(json!({ "topic": topic, "bytes": payload.len(), "seq": id.seq, "keyed": id.keyed })),
        Err(e) => bad(e.to_string()),
    }
}

fn hex(key: &shoal::Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest a `POST /query` waits for answers (the client gives up on an answer after 10 s).
pub const QUERY_WAIT_MAX: Duration = Duration::from_secs(8);

/// `POST /query?topic=T&payload=P&name=N&tag=k=p&timeout_ms=M`: runs a query to its deadline and
/// answers with every ack and response.
pub async fn query(cluster: &Cluster, query: &str) -> Answer {
    let (mut topic, mut payload, mut filter, mut timeout) = (None, String::new(), MemberFilter::new(), None);
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "topic" => topic = Some(v),
            "payload" => payload = v,
            "name" => filter = filter.name(&v),
            "tag" => match v.split_once('=') {
                Some((key, pattern)) => filter = filter.tag(key, pattern),
                None => return bad(format!("tag {v:?}: expected key=pattern")),
            },
            "timeout_ms" => match v.parse::<u64>() {
                Ok(ms) => timeout = Some(Duration::from_millis(ms)),
                Err(_) => return bad(format!("timeout_ms {v:?}: expected milliseconds")),
            },
            other => return bad(format!("unknown parameter {other:?} (topic, payload, name, tag, timeout_ms)")),
        }
    }
    let Some(topic) = topic else {
        return bad("query needs topic=T");
    };
    if topic.starts_with(crate::queries::RESERVED) {
        return bad(format!("topics starting with {:?} are the agents' own", crate::queries::RESERVED));
    }
    run_query(cluster, &topic, payload.as_bytes(), filter, timeout).await
}

/// Runs a query (waiting at most [`QUERY_WAIT_MAX`]) and answers with what came back.
async fn run_query(
    cluster: &Cluster,
    topic: &str,
    payload: &[u8],
    filter: MemberFilter,
    timeout: Option<Duration>,
) -> Answer {
    let timeout = timeout.unwrap_or_else(|| cluster.default_query_timeout()).min(QUERY_WAIT_MAX);
    let params = shoal::QueryParams::new().filter(filter).timeout(timeout);
    let answers = match cluster.query(topic, payload, params) {
        Ok(a) => a,
        Err(e) => return bad(e.to_string()),
    };
    let outcome = answers.collect().await;
    let responses: Vec<Value> = outcome
        .responses
        .iter()
        .map(|(from, p)| json!({ "from": from.as_str(), "payload": String::from_utf8_lossy(p) }))
        .collect();
    json_ok(json!({
        "topic": topic,
        "timeout_ms": timeout.as_millis() as u64,
        "acks": outcome.acks.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        "responses": responses,
    }))
}

/// `GET /keys` and `POST /keys?install=K` (or `use`, `remove`): one change per request, to this
/// agent's keyring, or with `cluster=1` to every agent's (a `_shoal/keys` query).
pub async fn keys(cluster: &Cluster, query: &str, change: bool) -> Answer {
    if change {
        let mut pairs = query_pairs(query);
        let everywhere = pairs.iter().any(|(k, v)| k == "cluster" && v == "1");
        pairs.retain(|(k, _)| k != "cluster");
        let [(op, key)] = pairs.as_slice() else {
            return bad("one of install=KEY, use=KEY, remove=KEY");
        };
        if everywhere {
            if !matches!(op.as_str(), "install" | "use" | "remove") {
                return bad(format!("unknown key operation {op:?} (install, use, remove)"));
            }
            let operation = format!("{op} {key}");
            return run_query(cluster, crate::queries::KEYS, operation.as_bytes(), MemberFilter::new(), None).await;
        }
        let key = match crate::settings::parse_key(key) {
            Ok(k) => k,
            Err(e) => return bad(e),
        };
        let done = match op.as_str() {
            "install" => cluster.install_key(key),
            "use" => cluster.use_key(key),
            "remove" => cluster.remove_key(key),
            other => return bad(format!("unknown key operation {other:?} (install, use, remove)")),
        };
        if let Err(e) = done {
            return Answer::text("409 Conflict", format!("{e}\n"));
        }
    }
    match cluster.keys() {
        Ok(keys) => json_ok(json!({
            "primary": hex(&keys[0]),
            "keys": keys.iter().map(hex).collect::<Vec<_>>(),
        })),
        Err(e) => Answer::text("409 Conflict", format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_from_the_query_string_select_as_given() {
        let (filter, filtered) = member_filter("status=alive,suspect&tag=role%3Dweb&name=web-*").unwrap();
        assert!(filtered);
        let expected =
            MemberFilter::new().states(&[MemberState::Alive, MemberState::Suspect]).tag("role", "web").name("web-*");
        assert_eq!(filter, expected);
        assert!(member_filter("status=sleeping").is_err());
        assert!(member_filter("tag=novalue").is_err());
        assert!(member_filter("colour=red").is_err());
        assert_eq!(member_filter("").unwrap(), (MemberFilter::new(), false));
    }
}
