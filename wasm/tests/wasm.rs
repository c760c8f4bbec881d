//! wasm-bindgen tests of the exported [`Protocol`], run in Node.js: `cargo test -p shoal-wasm
//! --target wasm32-unknown-unknown` (the runner is configured in the workspace's
//! .cargo/config.toml), and the same tests in headless Chromium: `CHROMEDRIVER=/usr/bin/chromedriver
//! WASM_BINDGEN_USE_BROWSER=1 cargo test -p shoal-wasm --target wasm32-unknown-unknown`
//! (`runs_where_the_runner_was_asked_to_run` fails if they did not). The JS driver around it is
//! tested in wasm/test/relay-link.test.mjs.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Object, Reflect, Uint8Array};
use shoal_core::relay::{decode_ws_frame, encode_ws_frame};
use shoal_wasm::Protocol;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

fn global_has(name: &str) -> bool {
    Reflect::has(&js_sys::global(), &name.into()).unwrap_or(false)
}

/// A property path of the global object as a string (`""` when missing).
fn global_str(path: &[&str]) -> String {
    let mut v: JsValue = js_sys::global().into();
    for key in path {
        v = Reflect::get(&v, &(*key).into()).unwrap_or(JsValue::UNDEFINED);
    }
    v.as_string().unwrap_or_default()
}

/// Whether the runner was asked for a browser: `WASM_BINDGEN_USE_BROWSER` is read when this crate
/// is compiled (rustc records it, so cargo rebuilds the tests when it changes).
const IN_BROWSER: bool = option_env!("WASM_BINDGEN_USE_BROWSER").is_some();

#[wasm_bindgen_test]
fn runs_where_the_runner_was_asked_to_run() {
    if IN_BROWSER {
        assert!(
            global_has("document") && global_has("navigator"),
            "WASM_BINDGEN_USE_BROWSER is set, but this is no page"
        );
        let agent = global_str(&["navigator", "userAgent"]);
        assert!(agent.contains("Chrome"), "expected (headless) Chromium, found {agent:?}");
    } else {
        let node = global_str(&["process", "versions", "node"]);
        assert!(!node.is_empty() && !global_has("document"), "expected Node.js");
    }
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &key.into()).unwrap()
}

/// Options as the JS driver passes them.
fn options(name: &str, seed: u8, extra: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&o, &k.into(), &v).unwrap();
    set("name", name.into());
    set("addr", format!("relay://relay.test:9/{name}").into());
    set("preset", "local".into());
    set("seed", Uint8Array::from(&[seed; 8][..]).into());
    set("now", 0.into());
    for (k, v) in extra {
        set(k, v.clone());
    }
    o.into()
}

fn member(name: &str, seed: u8) -> Protocol {
    Protocol::new(options(name, seed, &[])).unwrap()
}

/// The transmits `p` has now, as (destination, frame, reliable).
fn transmits(p: &mut Protocol) -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    loop {
        let t = p.poll_transmit();
        if t.is_undefined() {
            return out;
        }
        let t = Array::from(&t);
        let frame = Uint8Array::new(&t.get(1)).to_vec();
        out.push((t.get(0).as_string().unwrap(), frame, t.get(2).as_bool().unwrap()));
    }
}

fn events(p: &mut Protocol) -> Vec<JsValue> {
    std::iter::from_fn(|| Some(p.poll_event()).filter(|e| !e.is_undefined())).collect()
}

fn types(events: &[JsValue]) -> Vec<String> {
    events.iter().map(|e| get(e, "type").as_string().unwrap()).collect()
}

/// What the relay does with a frame: the destination replaced by the stamped source.
fn relayed(from: &str, frame: &[u8]) -> Vec<u8> {
    let (_, packet) = decode_ws_frame(frame).unwrap();
    encode_ws_frame(from, packet).unwrap()
}

#[wasm_bindgen_test]
fn a_join_produces_a_relay_frame_addressed_to_the_seed() {
    let mut p = member("tab-1", 1);
    p.join(0.0, vec!["udp://10.0.0.1:7946".into()]).unwrap();
    let sent = transmits(&mut p);
    let (to, frame, _) = sent.first().expect("joining sends to the seed");
    assert_eq!(to, "udp://10.0.0.1:7946");
    let (addr, packet) = decode_ws_frame(frame).unwrap();
    assert_eq!(addr, to);
    assert!(!packet.is_empty());
    assert!(p.poll_timeout().is_some(), "the protocol has a deadline");
}

#[wasm_bindgen_test]
fn two_members_join_through_frames_and_report_it_as_event_objects() {
    let (mut a, mut b) = (member("a", 1), member("b", 2));
    b.join(0.0, vec![a.local_addr()]).unwrap();
    let mut now = 0.0;
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..20 {
        now += 10.0;
        for (_, frame, _) in transmits(&mut b) {
            assert!(a.handle_frame(now, &relayed(&b.local_addr(), &frame)).unwrap());
        }
        for (_, frame, _) in transmits(&mut a) {
            assert!(b.handle_frame(now, &relayed(&a.local_addr(), &frame)).unwrap());
        }
        seen_a.extend(events(&mut a));
        seen_b.extend(events(&mut b));
    }
    assert!(types(&seen_b).contains(&"joined".to_owned()), "{:?}", types(&seen_b));
    let join = seen_a.iter().find(|e| get(e, "type") == "join").expect("a sees b join");
    assert_eq!(get(join, "member"), "b");
    assert_eq!(get(&get(join, "info"), "addr"), "relay://relay.test:9/b");
    assert_eq!(get(&get(join, "info"), "state"), "alive");
    let members = a.members();
    assert_eq!(members.length(), 1);
    assert_eq!(get(&members.get(0), "name"), "b");
}

#[wasm_bindgen_test]
fn frames_that_are_not_frames_are_refused_and_bad_packets_are_counted() {
    let mut p = member("a", 1);
    assert!(p.handle_frame(0.0, &[]).is_err(), "empty");
    assert!(p.handle_frame(0.0, &[9, b'x']).is_err(), "address longer than the frame");
    assert!(p.handle_frame(0.0, &encode_ws_frame("no scheme", &[1]).unwrap()).is_err(), "not an address");
    let before = p.metric_values()[8];
    assert_eq!(p.handle_frame(0.0, &encode_ws_frame("relay://relay.test:9/b", &[0xff]).unwrap()), Ok(false));
    assert_eq!(p.metric_values()[8], before + 1.0, "a decode error is counted");
    assert!(!p.handle_packet(0.0, "not an address", &[1]));
}

#[wasm_bindgen_test]
fn options_the_protocol_cannot_work_with_fail_the_constructor() {
    for (extra, what) in [
        (vec![("relayMaxFrame", JsValue::from(600))], "relayMaxFrame"),
        (vec![("name", JsValue::from(""))], "invalid node name"),
        (vec![("addr", JsValue::from("nowhere"))], "invalid address"),
    ] {
        let err = Protocol::new(options("a", 1, &extra)).err().expect(what);
        let message = js_sys::Error::from(JsValue::from(err)).message();
        assert!(String::from(message).contains(what), "{what}");
    }
    assert_eq!(shoal_wasm::check_address("udp://10.0.0.1:7946"), None);
    assert!(shoal_wasm::check_address("10.0.0.1").is_some());
}

#[wasm_bindgen_test]
fn commands_name_what_is_wrong() {
    let mut p = member("a", 1);
    let err = p.send(0.0, "nobody", "t", b"x", false).err().unwrap();
    let message = String::from(js_sys::Error::from(JsValue::from(err)).message());
    assert!(message.contains("unknown or dead member"), "{message}");
    let err = p.broadcast(&"t".repeat(300), b"x", None, None).err().unwrap();
    let message = String::from(js_sys::Error::from(JsValue::from(err)).message());
    assert!(message.contains("topic"), "{message}");
}

#[wasm_bindgen_test]
fn an_encrypted_member_seals_what_it_sends() {
    let key = Uint8Array::from(&[7u8; 32][..]);
    let entropy = Uint8Array::from(&[3u8; 32][..]);
    let mut sealed = Protocol::new(options("a", 1, &[("key", key.into()), ("entropy", entropy.into())])).unwrap();
    let mut plain = member("a", 1);
    for p in [&mut sealed, &mut plain] {
        p.send_to(0.0, "relay://relay.test:9/b", "t", b"hello hello hello", false).unwrap();
    }
    let (s, p) = (transmits(&mut sealed), transmits(&mut plain));
    assert!(s[0].1.len() > p[0].1.len(), "sealing adds its overhead");
    let needle = b"hello hello";
    assert!(p[0].1.windows(needle.len()).any(|w| w == needle));
    assert!(!s[0].1.windows(needle.len()).any(|w| w == needle), "the payload is not readable");
    assert_eq!(sealed.metric_values()[28], 1.0, "encrypted_sent");
}

#[wasm_bindgen_test]
fn metric_values_have_the_documented_length() {
    assert_eq!(member("a", 1).metric_values().len(), 33);
}

/// The npm package's wasm is built without shoal-core's `app-state` feature: for a native member
/// that sends its application state in push-pulls, this member is an older one. The fixture is a
/// native member's answer to this tab's join, state included (`tests/wire_properties.rs` keeps it
/// what a native member sends): the tab must take the answer and skip the state.
#[wasm_bindgen_test]
fn a_join_answer_carrying_a_native_members_application_state_is_taken_with_the_state_skipped() {
    let hex = include_str!("push-pull-with-app-state.hex").trim();
    let answer: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let mut p = member("tab-1", 1);
    let seed = "udp://10.0.0.1:7946";
    p.join(0.0, vec![seed.into()]).unwrap();
    transmits(&mut p);
    assert!(p.handle_packet(10.0, seed, &answer), "the answer is taken");
    let seen = types(&events(&mut p));
    assert!(seen.contains(&"joined".to_owned()) && seen.contains(&"join".to_owned()), "{seen:?}");
    assert!(p.members().iter().any(|m| get(&m, "name") == "native-1"), "the native member is a member");
    assert_eq!(p.metric_values()[8], 0.0, "no decode error");
}
