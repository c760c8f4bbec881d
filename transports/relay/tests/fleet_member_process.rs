//! `shoal-relay --join` as a process beside a native member on loopback: its cluster member is
//! seen alive with the relay's tags, leaves on SIGTERM (seen `left`, the process exits 0), and is
//! declared failed when the process is killed. Member options without a member are refused.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bounded, eventually, native_member, state_of};
use shoal::{Cluster, MemberState};
use shoal_relay::{RELAY_TAG, RELAY_URL_TAG};

const LIMIT: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(10);

/// A `shoal-relay` process, killed when dropped (a failed test leaves nothing running).
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {sig}");
    }

    /// The exit status, once the process has exited (polled, bounded).
    async fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let mut status = None;
        eventually(CONVERGE, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        })
        .await;
        status
    }
}

/// Starts a relay whose member joins `native`; returns it with the relay's address and the
/// member's name, read from its first two lines of output.
async fn relay_joining(native: &Cluster) -> (Process, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-relay"))
        .args(["--bind", "127.0.0.1:0", "--member-bind", "127.0.0.1:0", "--preset", "local"])
        .args(["--join", native.local_addr().as_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run shoal-relay");
    let stdout = child.stdout.take().expect("stdout");
    let process = Process { child };
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        [lines.next(), lines.next()].map(|l| l.and_then(Result::ok).unwrap_or_default())
    });
    let [listening, member] = tokio::time::timeout(CONVERGE, lines).await.expect("two lines in time").unwrap();
    let addr = listening.strip_prefix("listening on ").expect("the listening line").to_string();
    let rest = member.strip_prefix("member ").unwrap_or_else(|| panic!("the member line, got {member:?}"));
    let name = rest.split(" at ").next().unwrap().to_string();
    (process, addr, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_stopped_with_sigterm_has_its_member_leave_and_exits_cleanly() {
    bounded(LIMIT, async {
        let native = native_member("native", 1).await;
        let (mut relay, addr, name) = relay_joining(&native).await;
        assert_eq!(name, format!("relay-{}", addr.replace(':', "-")));
        let alive = eventually(CONVERGE, || state_of(&native, &name) == Some(MemberState::Alive)).await;
        assert!(alive, "native sees {name}: {:?}", state_of(&native, &name));
        let tags = native.members().into_iter().find(|m| m.id.as_str() == name).unwrap().tags();
        assert_eq!((tags.get("role"), tags.get(RELAY_TAG)), (Some("relay"), Some(addr.as_str())));
        assert_eq!(tags.get(RELAY_URL_TAG), Some(format!("ws://{addr}").as_str()));

        relay.signal("-TERM");
        let status = relay.exited().await.expect("the relay exits after SIGTERM");
        assert!(status.success(), "SIGTERM leads to a clean exit, got {status}");
        let left = eventually(CONVERGE, || state_of(&native, &name) == Some(MemberState::Left)).await;
        assert!(left, "native sees {name}: {:?}", state_of(&native, &name));
        assert_eq!(native.metrics().stats.failures_declared, 0);
        native.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_with_sigkill_is_declared_failed_like_any_member() {
    bounded(LIMIT, async {
        let native = native_member("native", 2).await;
        let (mut relay, _, name) = relay_joining(&native).await;
        assert!(eventually(CONVERGE, || state_of(&native, &name) == Some(MemberState::Alive)).await);
        relay.signal("-KILL");
        relay.exited().await.expect("the relay dies");
        let failed = eventually(CONVERGE, || state_of(&native, &name) == Some(MemberState::Dead)).await;
        assert!(failed, "native sees {name}: {:?}", state_of(&native, &name));
        native.shutdown().await;
    })
    .await;
}

#[test]
fn member_options_without_join_or_member_bind_are_refused_at_startup() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-relay"))
        .args(["--bind", "127.0.0.1:0", "--preset", "browser"])
        .stdin(Stdio::null())
        .output()
        .expect("run shoal-relay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "shoal-relay started with a member option and no member: {stderr}");
    assert!(stderr.contains("--preset is for the relay's cluster member: give --join or --member-bind"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "nothing was bound");
}
