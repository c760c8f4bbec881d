//! How the agent reports membership changes: one line per event with an RFC 3339 timestamp, as
//! text for people or JSON for machines.
//!
//! Events are named as everywhere else in Shoal ([`Event::name`]): the npm package's event `type`s
//! are the JSON lines' `event`s and the first word of the text lines: `join`, `update`, `suspect`,
//! `alive`, `fail` and `leave` about other members; `joined` and `join-failed` about our own join;
//! `health`, `conflict`, `refuted`, `send-failed`, `broadcasts-missed` and `broadcast-dropped`, with
//! the npm package's fields. The agent adds `started` (its own record, first, with the bound
//! `--http` address if any) and `note`.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde_json::{json, Value};
use shoal::Addr;
use shoal::{Cluster, ClusterEvent, EventStream};
use shoal_core::{Event, Member};

#[derive(Clone, Copy, Debug)]
pub struct Printer {
    json: bool,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn meta_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line before its timestamp: the event's name and, for JSON, its fields; for text, what
/// follows the name.
struct Line {
    name: &'static str,
    fields: Value,
    text: String,
}

impl Line {
    /// A line about a member: JSON `member`, `addr`, `incarnation`, `meta` (and `by` for `suspect`
    /// and `fail`); text `NAME ADDR inc=N META` or `NAME inc=N by=WHO`.
    fn member(
        name: &'static str,
        member: &str,
        addr: Option<&Addr>,
        incarnation: u32,
        meta: &str,
        by: Option<&str>,
    ) -> Line {
        let mut fields = json!({
            "member": member, "addr": addr.map(|a| a.to_string()), "incarnation": incarnation, "meta": meta,
        });
        let text = match by {
            Some(by) => {
                fields["by"] = by.into();
                format!("{member} inc={incarnation} by={by}")
            }
            None => {
                let addr = addr.map(|a| a.to_string()).unwrap_or_default();
                format!("{member} {addr} inc={incarnation} {meta}")
            }
        };
        Line { name, fields, text }
    }

    fn record(name: &'static str, m: &Member<Addr>) -> Line {
        Line::member(name, m.id.as_str(), Some(&m.addr), m.incarnation, &meta_text(m.meta.as_bytes()), None)
    }

    /// The agent's own record, first: a member line, plus the address of its HTTP endpoint when it
    /// serves one (JSON `http`, text `http=ADDR` at the end), with the port the OS picked for
    /// `--http IP:0`.
    fn started(m: &Member<Addr>, http: Option<SocketAddr>) -> Line {
        let mut line = Line::record("started", m);
        if let Some(http) = http {
            line.fields["http"] = http.to_string().into();
            line.text = format!("{} http={http}", line.text.trim_end());
        }
        line
    }

    /// Any other event: its fields as JSON, a sentence as text.
    fn other(name: &'static str, fields: Value, text: String) -> Line {
        Line { name, fields, text }
    }

    /// The line an event prints, `None` for events the agent does not report.
    fn of(e: &ClusterEvent) -> Option<Line> {
        let name = e.name();
        Some(match e {
            Event::Joined(m) | Event::Updated(m) => Line::record(name, m),
            Event::Suspected { id, incarnation, by } | Event::Failed { id, incarnation, by } => {
                Line::member(name, id.as_str(), None, *incarnation, "", Some(by.as_str()))
            }
            Event::Alive { id, incarnation } | Event::Left { id, incarnation } => {
                Line::member(name, id.as_str(), None, *incarnation, "", None)
            }
            Event::JoinSucceeded { via } => {
                Line::other(name, json!({ "via": via.to_string() }), format!("the cluster through {via}"))
            }
            Event::JoinFailed { seeds } => {
                let seeds: Vec<String> = seeds.iter().map(Addr::to_string).collect();
                let text = format!("no seed answered ({}); re-announcing to them in the background", seeds.join(", "));
                Line::other(name, json!({ "seeds": seeds }), text)
            }
            Event::AddressConflict { id, known, claimed } => Line::other(
                name,
                json!({ "member": id.as_str(), "known": known.to_string(), "claimed": claimed.to_string() }),
                format!("{id} is live at {known}, {claimed} claims the name"),
            ),
            Event::Refuted { incarnation } => Line::other(
                name,
                json!({ "incarnation": incarnation }),
                format!("refuted a suspicion of us (incarnation {incarnation})"),
            ),
            Event::HealthChanged { score, multiplier } => Line::other(
                name,
                json!({ "score": score, "multiplier": multiplier }),
                format!("local health score {score} (timeouts x{multiplier})"),
            ),
            Event::SendFailed { id, to, topic } => Line::other(
                name,
                json!({ "id": id, "to": to.to_string(), "topic": topic }),
                format!("reliable message {id} ({topic}) to {to} was not acknowledged: lost"),
            ),
            Event::BroadcastsMissed { origin, count, .. } => Line::other(
                name,
                json!({ "origin": origin.as_str(), "count": count }),
                format!("missed {count} broadcasts from {origin} that can no longer be repaired"),
            ),
            Event::BroadcastDropped { id, topic } => Line::other(
                name,
                json!({ "topic": topic }),
                format!("our broadcast {} ({topic}) was dropped from the full queue", id.seq),
            ),
            Event::Message { from, topic, payload, kind } => {
                let kind = match kind {
                    shoal::MessageKind::Broadcast => "broadcast",
                    shoal::MessageKind::Direct => "direct",
                };
                let text = String::from_utf8_lossy(payload);
                Line::other(
                    name,
                    json!({ "from": from.as_str(), "topic": topic, "payload": text, "kind": kind }),
                    format!("{kind} {topic} from {from}: {text}"),
                )
            }
            _ => return None,
        })
    }

    /// The printed line: `{"ts":..,"event":NAME,..fields}` or `TS NAME     TEXT`.
    fn render(self, ts: &str, json: bool) -> String {
        if json {
            let mut v = json!({ "ts": ts, "event": self.name });
            if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), self.fields) {
                v.extend(fields);
            }
            v.to_string()
        } else {
            format!("{ts} {:<8} {}", self.name, self.text)
        }
    }
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    /// The `started` line; `http` is the bound `--http` address, if any.
    pub fn started(&self, cluster: &Cluster, http: Option<SocketAddr>) {
        println!("{}", Line::started(&cluster.local_member(), http).render(&now(), self.json));
    }

    pub fn note(&self, text: &str) {
        println!("{}", Line::other("note", json!({ "text": text }), text.to_string()).render(&now(), self.json));
    }

    pub fn event(&self, e: &ClusterEvent) {
        if let Some(line) = Line::of(e) {
            println!("{}", line.render(&now(), self.json));
        }
    }
}

/// The JSON line an event prints (what `--json` prints), or `None` for events the agent does not
/// report: what `GET /monitor` streams.
pub fn json_line(e: &ClusterEvent) -> Option<String> {
    Line::of(e).map(|line| line.render(&now(), true))
}

/// Prints every event until the member shuts down.
pub async fn print_events(mut events: EventStream, printer: Printer) {
    while let Some(e) = events.next().await {
        printer.event(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::NodeId;

    fn json_line(e: &ClusterEvent) -> Value {
        serde_json::from_str(&Line::of(e).expect("printed").render("T", true)).unwrap()
    }

    #[test]
    fn json_lines_name_membership_events_as_the_npm_package_does() {
        let c = NodeId::new("c").unwrap();
        let a = NodeId::new("a").unwrap();
        let cases: [(ClusterEvent, &str); 4] = [
            (Event::Suspected { id: c.clone(), incarnation: 1, by: a.clone() }, "suspect"),
            (Event::Alive { id: c.clone(), incarnation: 2 }, "alive"),
            (Event::Failed { id: c.clone(), incarnation: 2, by: a.clone() }, "fail"),
            (Event::Left { id: c.clone(), incarnation: 3 }, "leave"),
        ];
        for (e, name) in &cases {
            let v = json_line(e);
            assert_eq!(v["event"], *name, "{v}");
            assert_eq!(v["member"], "c", "{v}");
            assert_eq!(v["ts"], "T");
        }
        let failed = json_line(&cases[2].0);
        assert_eq!(failed["by"], "a");
        assert_eq!(failed["incarnation"], 2);
    }

    #[test]
    fn our_own_join_is_joined_and_another_members_join_is_join_in_both_formats() {
        let via = Addr::parse("udp://127.0.0.1:7946").unwrap();
        let ours: ClusterEvent = Event::JoinSucceeded { via: via.clone() };
        let v = json_line(&ours);
        assert_eq!((v["event"].as_str(), v["via"].as_str()), (Some("joined"), Some("udp://127.0.0.1:7946")), "{v}");
        let text = Line::of(&ours).unwrap().render("T", false);
        assert_eq!(text, "T joined   the cluster through udp://127.0.0.1:7946");
        let failed: ClusterEvent = Event::JoinFailed { seeds: vec![via] };
        assert_eq!(json_line(&failed)["seeds"][0], "udp://127.0.0.1:7946");
        assert_eq!(json_line(&failed)["event"], "join-failed");
        let fail: ClusterEvent =
            Event::Failed { id: NodeId::new("c").unwrap(), incarnation: 4, by: NodeId::new("a").unwrap() };
        assert_eq!(Line::of(&fail).unwrap().render("T", false), "T fail     c inc=4 by=a");
    }

    #[test]
    fn events_the_agent_used_to_print_as_notes_carry_their_npm_name_and_fields() {
        let b = NodeId::new("b").unwrap();
        let x = Addr::parse("udp://10.0.0.1:1").unwrap();
        let y = Addr::parse("udp://10.0.0.2:1").unwrap();
        let cases: [(ClusterEvent, Value); 6] = [
            (
                Event::HealthChanged { score: 2, multiplier: 3 },
                json!({ "event": "health", "score": 2, "multiplier": 3 }),
            ),
            (
                Event::AddressConflict { id: b.clone(), known: x.clone(), claimed: y },
                json!({ "event": "conflict", "member": "b", "known": "udp://10.0.0.1:1", "claimed": "udp://10.0.0.2:1" }),
            ),
            (Event::Refuted { incarnation: 9 }, json!({ "event": "refuted", "incarnation": 9 })),
            (
                Event::SendFailed { id: 5, to: x, topic: "t".into() },
                json!({ "event": "send-failed", "id": 5, "to": "udp://10.0.0.1:1", "topic": "t" }),
            ),
            (
                Event::BroadcastsMissed { origin: b, epoch: 1, count: 4 },
                json!({ "event": "broadcasts-missed", "origin": "b", "count": 4 }),
            ),
            (
                Event::BroadcastDropped {
                    id: shoal_core::BroadcastId { epoch: 1, seq: 2, keyed: false },
                    topic: "t".into(),
                },
                json!({ "event": "broadcast-dropped", "topic": "t" }),
            ),
        ];
        for (e, want) in cases {
            let mut v = json_line(&e);
            v.as_object_mut().unwrap().remove("ts");
            assert_eq!(v, want);
            assert_eq!(e.name(), want["event"]);
        }
    }

    #[test]
    fn the_started_line_reports_the_bound_http_address_only_when_there_is_one() {
        let us = Member {
            id: NodeId::new("n1").unwrap(),
            addr: Addr::parse("udp://127.0.0.1:7946").unwrap(),
            incarnation: 1,
            state: shoal_core::MemberState::Alive,
            meta_complete: true,
            versions: (1, 1),
            state_since: shoal_core::Instant::ZERO,
            meta: shoal_core::Metadata::new(b"role=web"),
        };
        let http: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let v: Value = serde_json::from_str(&Line::started(&us, Some(http)).render("T", true)).unwrap();
        assert_eq!(v["event"], "started", "{v}");
        assert_eq!(v["addr"], "udp://127.0.0.1:7946", "{v}");
        assert_eq!(v["http"], "127.0.0.1:41234", "{v}");
        let text = Line::started(&us, Some(http)).render("T", false);
        assert_eq!(text, "T started  n1 udp://127.0.0.1:7946 inc=1 role=web http=127.0.0.1:41234");

        let v: Value = serde_json::from_str(&Line::started(&us, None).render("T", true)).unwrap();
        assert!(v.get("http").is_none(), "no --http, no field: {v}");
        assert!(!Line::started(&us, None).render("T", false).contains("http="));
        let bare = Member { meta: shoal_core::Metadata::default(), ..us };
        let text = Line::started(&bare, Some(http)).render("T", false);
        assert_eq!(text, "T started  n1 udp://127.0.0.1:7946 inc=1 http=127.0.0.1:41234");
    }
}
