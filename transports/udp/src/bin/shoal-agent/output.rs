//! How the agent reports membership changes: one line per event with an RFC 3339 timestamp, as
//! text for people or JSON for machines.

use std::time::SystemTime;

use shoal_core::driver::Addr;
use shoal_core::driver::{Cluster, ClusterEvent, EventStream};
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

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    pub fn started(&self, cluster: &Cluster) {
        let me = cluster.local_member();
        self.line("started", me.id.as_str(), Some(&me.addr), me.incarnation, &meta_text(me.meta.as_bytes()), None);
    }

    pub fn note(&self, text: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "ts": now(), "event": "note", "text": text }));
        } else {
            println!("{} note     {text}", now());
        }
    }

    /// One membership line. `by` names the member that raised a suspicion or declared a failure;
    /// JSON lines carry it as `"by"` (suspect and failed only), text lines as `by=NAME`.
    fn line(&self, what: &str, member: &str, addr: Option<&Addr>, incarnation: u32, meta: &str, by: Option<&str>) {
        if self.json {
            let mut v = serde_json::json!({
                "ts": now(), "event": what, "member": member,
                "addr": addr.map(|a| a.to_string()), "incarnation": incarnation, "meta": meta,
            });
            if let Some(by) = by {
                v["by"] = by.into();
            }
            println!("{v}");
        } else if let Some(by) = by {
            println!("{} {what:<8} {member} inc={incarnation} by={by}", now());
        } else {
            let addr = addr.map(|a| a.to_string()).unwrap_or_default();
            println!("{} {what:<8} {member} {addr} inc={incarnation} {meta}", now());
        }
    }

    fn member(&self, what: &str, m: &Member<Addr>) {
        self.line(what, m.id.as_str(), Some(&m.addr), m.incarnation, &meta_text(m.meta.as_bytes()), None);
    }

    pub fn event(&self, e: &ClusterEvent) {
        match e {
            Event::Joined(m) => self.member("joined", m),
            Event::Updated(m) => self.member("updated", m),
            Event::Suspected { id, incarnation, by } => {
                self.line("suspect", id.as_str(), None, *incarnation, "", Some(by.as_str()))
            }
            Event::Alive { id, incarnation } => self.line("alive", id.as_str(), None, *incarnation, "", None),
            Event::Failed { id, incarnation, by } => {
                self.line("failed", id.as_str(), None, *incarnation, "", Some(by.as_str()))
            }
            Event::Left { id, incarnation } => self.line("left", id.as_str(), None, *incarnation, "", None),
            Event::AddressConflict { id, known, claimed } => {
                self.note(&format!("address conflict: {id} is live at {known}, {claimed} claims the name"))
            }
            Event::Refuted { incarnation } => {
                self.note(&format!("refuted a suspicion of us (incarnation {incarnation})"))
            }
            Event::HealthChanged { score, .. } => self.note(&format!("local health score {score}")),
            Event::SendFailed { id, to, topic } => {
                self.note(&format!("reliable message {id} ({topic}) to {to} was not acknowledged: lost"))
            }
            Event::BroadcastsMissed { origin, count, .. } => {
                self.note(&format!("missed {count} broadcasts from {origin} that can no longer be repaired"))
            }
            Event::BroadcastDropped { id, topic } => {
                self.note(&format!("our broadcast {} ({topic}) was dropped from the full queue", id.seq))
            }
            _ => {}
        }
    }
}

/// Prints every event until the member shuts down.
pub async fn print_events(mut events: EventStream, printer: Printer) {
    while let Some(e) = events.next().await {
        printer.event(&e);
    }
}
