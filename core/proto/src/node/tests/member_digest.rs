//! Periodic push-pulls with member digests (`node::member_digest`): the asker sends a digest of its
//! view, and gets back the records that differ.

use super::*;

/// What a view says that anti-entropy must agree on: each member's incarnation and whether it is
/// live, dead or left (suspicion is gossip's business, see `member_digest`).
fn agreed_view(node: &Node<u32>) -> Vec<(String, u32, &'static str)> {
    let mut v: Vec<(String, u32, &'static str)> = node
        .members()
        .map(|m| {
            let class = match m.state {
                MemberState::Alive | MemberState::Suspect => "live",
                MemberState::Dead => "dead",
                MemberState::Left => "left",
            };
            (String::from(m.id.as_str()), m.incarnation, class)
        })
        .collect();
    v.sort();
    v
}

/// A node named `name` at `addr` that knows `known` (all alive at incarnation 0), then heard the
/// random updates `rng` draws about members `m0`..`m39`: new members, refutations, suspicions,
/// deaths and leaves.
fn random_view(name: &str, addr: u32, known: &[(NodeId, u32)], rng: &mut SmallRng) -> Node<u32> {
    let config = Config { push_pull_digests: true, ..Config::local() };
    let mut node = Node::new(Instant::from_millis(0), config, id(name), addr, 7).unwrap();
    node.assume_alive(Instant::from_millis(0), known.iter().cloned());
    let mut msgs = Vec::new();
    for _ in 0..rng.random_range(0..30) {
        let m = rng.random_range(0..40u32);
        let who = id(&format!("m{m}"));
        let incarnation = rng.random_range(0..4);
        msgs.push(match rng.random_range(0..5) {
            0 | 1 => Message::Alive(Alive {
                id: who,
                addr: 100 + m,
                incarnation,
                meta: MetaField::Included(Vec::new()),
                min_version: 1,
                max_version: 1,
            }),
            2 => Message::Suspect { id: who, incarnation, from: id("zz") },
            3 => Message::Dead { id: who, incarnation, from: id("zz"), left: false },
            _ => Message::Dead { id: who, incarnation, from: who_left(m), left: true },
        });
    }
    for chunk in msgs.chunks(4) {
        node.handle_packet(Instant::from_millis(1), 999, &packet_of(chunk)).unwrap();
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    node
}

/// A leave is announced by the member itself.
fn who_left(m: u32) -> NodeId {
    id(&format!("m{m}"))
}

/// Runs one push-pull from `asker` to `asked` (digest or full, as `digest` says) and returns the
/// frames, request first.
fn exchange(asker: &mut Node<u32>, asked: &mut Node<u32>, digest: bool) -> Vec<Vec<u8>> {
    let now = Instant::from_millis(2);
    let to = *asked.local_addr();
    if digest {
        asker.send_push_pull_digest(to);
    } else {
        asker.send_push_pull_answering(to, false, None);
    }
    let mut frames = Vec::new();
    let request = asker.poll_transmit().expect("a push-pull request");
    assert_eq!(request.kind, TransmitKind::PushPull);
    asked.handle_packet(now, *asker.local_addr(), &request.bytes).unwrap();
    frames.push(request.bytes);
    let answer = core::iter::from_fn(|| asked.poll_transmit())
        .find(|t| t.kind == TransmitKind::PushPull && t.to == *asker.local_addr())
        .expect("a push-pull answer");
    asker.handle_packet(now, *asked.local_addr(), &answer.bytes).unwrap();
    frames.push(answer.bytes);
    frames
}

fn records_in(frame: &[u8]) -> usize {
    decode(frame)
        .iter()
        .find_map(|m| match m {
            Message::PushPull { members, .. } => Some(members.len()),
            _ => None,
        })
        .unwrap_or(0)
}

#[test]
fn a_digest_push_pull_brings_the_asker_what_a_full_push_pull_would_over_random_views() {
    // The oracle is the full push-pull: from the same two views, the asker must end up agreeing
    // with what a full exchange gives it, record for record (up to suspicion, which is not
    // compared). Views differ by random refutations, suspicions, deaths, leaves and members one
    // side never heard of.
    let mut differing_exchanges = 0;
    for seed in 0..400u64 {
        let known: Vec<(NodeId, u32)> = (0..12).map(|m| (id(&format!("m{m}")), 100 + m)).collect();
        let build = || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let a = random_view("a", 1, &known, &mut rng);
            let b = random_view("b", 2, &known, &mut rng);
            (a, b)
        };
        let (mut a_full, mut b_full) = build();
        let (mut a_digest, mut b_digest) = build();
        assert_eq!(agreed_view(&a_full), agreed_view(&a_digest), "seed {seed}: the same views are built twice");
        let before = agreed_view(&a_digest);
        let full = exchange(&mut a_full, &mut b_full, false);
        let frames = exchange(&mut a_digest, &mut b_digest, true);
        assert_eq!(agreed_view(&a_digest), agreed_view(&a_full), "seed {seed}: the digest exchange missed a record");
        assert_eq!(records_in(&frames[0]), 1, "seed {seed}: a digest request carries our own record only");
        if agreed_view(&a_digest) != before {
            differing_exchanges += 1;
        }
        // The answer carried no more records than the full one.
        assert!(records_in(&frames[1]) <= records_in(&full[1]), "seed {seed}");
    }
    assert!(differing_exchanges > 200, "the views differed in only {differing_exchanges} seeds");
}

#[test]
fn members_that_agree_send_one_record_each_way_in_their_periodic_push_pulls() {
    let config = Config::local();
    let mut c = Cluster::formed(20, config.clone());
    let start = c.log.len();
    let totals = |c: &Cluster| -> (u64, u64, u64) {
        c.nodes.iter().map(|n| n.stats()).fold((0, 0, 0), |t, s| {
            (t.0 + s.member_digests_sent, t.1 + s.member_digests_answered, t.2 + s.member_digest_buckets_differing)
        })
    };
    let before = totals(&c);
    // Three push-pull periods at 20 members.
    c.advance(3 * config.push_pull_period(20).as_millis() as u64);
    let frames: Vec<&Sent> = c.log[start..].iter().filter(|s| s.kind == TransmitKind::PushPull).collect();
    let requests: Vec<&&Sent> =
        frames.iter().filter(|s| decode(&s.bytes).iter().any(|m| matches!(m, Message::MemberDigest { .. }))).collect();
    assert!(requests.len() >= 20, "every member asked at least once: {} requests", requests.len());
    for s in &frames {
        assert_eq!(records_in(&s.bytes), 1, "{} -> {}: only the sender's record", s.from, s.to);
    }
    let after = totals(&c);
    let n = requests.len() as u64;
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (n, n, 0));
    // A full exchange between two of these members carries all 20 records each way.
    let full = c.log.iter().filter(|s| s.kind == TransmitKind::PushPull).map(|s| records_in(&s.bytes)).max();
    assert_eq!(full, Some(20), "the joins sent whole views");
}

#[test]
fn periodic_push_pulls_go_as_plain_packets_while_joins_send_whole_views_reliably() {
    let config = Config::local();
    let mut c = Cluster::formed(20, config.clone());
    let is_join = |s: &&Sent| decode(&s.bytes).iter().any(|m| matches!(m, Message::PushPull { join: true, .. }));
    let joins: Vec<&Sent> = c.log.iter().filter(|s| s.kind == TransmitKind::PushPull).filter(is_join).collect();
    assert!(joins.len() >= 19 && joins.iter().all(|s| s.reliable), "the joins' push-pulls are reliable");
    let start = c.log.len();
    let counted = |c: &Cluster| -> u64 { c.nodes.iter().map(|n| n.stats().push_pulls_as_packets).sum() };
    let before = counted(&c);
    c.advance(3 * config.push_pull_period(20).as_millis() as u64);
    let periodic: Vec<&Sent> = c.log[start..].iter().filter(|s| s.kind == TransmitKind::PushPull).collect();
    assert!(periodic.len() >= 40, "every member asked and was answered: {} frames", periodic.len());
    for s in &periodic {
        assert!(!s.reliable, "{} -> {}: a {}-byte digest exchange goes as a packet", s.from, s.to, s.bytes.len());
    }
    assert_eq!(counted(&c) - before, periodic.len() as u64, "and is counted");
}

/// The rule over random views: a digest request goes as a packet when it fits one; the answer goes
/// as a packet only when it fits one and is no larger than the request (a request forged from a
/// member's address must not reflect more bytes to it than it cost); otherwise reliably. Both
/// ways occur.
#[test]
fn a_push_pull_answer_larger_than_its_request_goes_reliably_and_a_smaller_one_as_a_packet() {
    let (mut as_packets, mut reliable) = (0, 0);
    for seed in 0..200u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let known: Vec<(NodeId, u32)> = (0..12).map(|m| (id(&format!("m{m}")), 100 + m)).collect();
        // Half the pairs heard the same news (views that agree), half different news.
        let mut rng_b = if seed % 2 == 0 { rng.clone() } else { SmallRng::seed_from_u64(seed + 1_000) };
        let mut a = random_view("a", 1, &known, &mut rng);
        let mut b = random_view("b", 2, &known, &mut rng_b);
        a.send_push_pull_digest(2);
        let request = a.poll_transmit().expect("a request");
        assert!(!request.reliable, "seed {seed}: a {}-byte digest request fits a packet", request.bytes.len());
        b.handle_packet(Instant::from_millis(2), 1, &request.bytes).unwrap();
        let answer =
            core::iter::from_fn(|| b.poll_transmit()).find(|t| t.kind == TransmitKind::PushPull).expect("an answer");
        let fits = answer.bytes.len() <= request.bytes.len() && answer.bytes.len() <= Config::local().max_packet_size;
        assert_eq!(
            !answer.reliable,
            fits,
            "seed {seed}: a {}-byte answer to a {}-byte request",
            answer.bytes.len(),
            request.bytes.len()
        );
        if answer.reliable {
            reliable += 1;
        } else {
            as_packets += 1;
        }
        // Either way the asker takes it.
        a.handle_packet(Instant::from_millis(3), 2, &answer.bytes).unwrap();
    }
    assert!(as_packets > 20 && reliable > 20, "both ways occur: {as_packets} as packets, {reliable} reliable");
}

#[test]
fn a_digest_request_too_large_for_a_packet_goes_reliably() {
    let config = Config { push_pull_digests: true, max_packet_size: 256, max_gossip_meta: 128, ..Config::local() };
    let mut a: Node<u32> = Node::new(Instant::from_millis(0), config, id("a"), 1, 7).unwrap();
    a.assume_alive(Instant::from_millis(0), (0..2_000).map(|m| (id(&format!("m{m}")), 100 + m)));
    a.send_push_pull_digest(100);
    let request = a.poll_transmit().expect("a request");
    assert!(request.bytes.len() > 256, "{} bytes", request.bytes.len());
    assert!(request.reliable);
    assert_eq!(a.stats().push_pulls_as_packets, 0);
}

#[test]
fn a_member_that_missed_a_leave_learns_it_from_a_periodic_digest_push_pull() {
    // Every announcement of the leave is cut out of what `deaf` receives, except in push-pull
    // frames: on its own it only ever declares the leaver dead (it stops answering), and the
    // member digest it sends differs in the leaver's bucket, whose records the answer brings.
    let config = Config { push_pull_interval: Duration::from_secs(1), ..Config::local() };
    let mut c = Cluster::formed(6, config);
    let (deaf, leaver) = (5u32, 4u32);
    let leaver_id = id(&name_of(leaver as usize));
    let announces = move |m: &Message<u32>, who: &NodeId| matches!(m, Message::Dead { id, .. } if id == who);
    let cut = leaver_id.clone();
    // A packet that carries nothing but the leave is dropped; others lose the leave.
    c.drop_rule = Some(Box::new(move |_, t| t.to == deaf && decode(&t.bytes).iter().all(|m| announces(m, &cut))));
    let cut = leaver_id.clone();
    c.rewrite = Some(Box::new(move |_, to, bytes| {
        let msgs = decode(bytes);
        if to != deaf || msgs.iter().any(|m| matches!(m, Message::PushPull { .. })) {
            return bytes.to_vec();
        }
        frame_without(bytes, |m| announces(m, &cut))
    }));
    let now = c.now;
    c.nodes[leaver as usize].leave(now);
    let left = |c: &Cluster, i: u32| c.node(i).members().any(|m| m.id == leaver_id && m.state == MemberState::Left);
    assert!(c.advance_until(5_000, |c| (0..4).all(|i| left(c, i))), "the others hear the leave");
    c.crash(leaver);
    assert!(!left(&c, deaf), "the deaf member heard no announcement");
    let before: u64 = c.nodes.iter().map(|n| n.stats().member_digest_buckets_differing).sum();
    assert!(c.advance_until(20_000, |c| left(c, deaf)), "a digest push-pull told the deaf member");
    let differing: u64 = c.nodes.iter().map(|n| n.stats().member_digest_buckets_differing).sum();
    assert!(differing > before, "through a digest answer: {before} -> {differing} differing buckets");
}

#[test]
fn an_older_member_that_skips_the_digest_answers_with_its_whole_view_and_both_converge() {
    // A member of the first release skips the digest as a message of an unknown type: it sees a
    // request carrying the asker's record alone, and answers with its whole view. Emulated by
    // handing node `old` every frame without the digest, as its decoder reads it.
    let config = Config { push_pull_interval: Duration::from_secs(1), ..Config::local() };
    let mut c = Cluster::formed(5, config.clone());
    let old = 4u32;
    c.rewrite = Some(Box::new(move |_, to, bytes| {
        if to == old {
            frame_without(bytes, |m| matches!(m, Message::MemberDigest { .. }))
        } else {
            bytes.to_vec()
        }
    }));
    let start = c.log.len();
    let answered_before = c.node(old).stats().member_digests_answered;
    c.advance(10_000);
    let answers_of_old: Vec<usize> = c.log[start..]
        .iter()
        .filter(|s| s.from == old)
        .filter_map(|s| {
            decode(&s.bytes).into_iter().find_map(|m| match m {
                Message::PushPull { reply: true, members, .. } => Some(members.len()),
                _ => None,
            })
        })
        .collect();
    assert!(!answers_of_old.is_empty());
    assert!(answers_of_old.iter().all(|&n| n == 5), "the old member answers whole views: {answers_of_old:?}");
    assert_eq!(c.node(old).stats().member_digests_answered, answered_before, "it never saw a digest");
    assert!(c.nodes.iter().all(|n| n.cluster_size() == 5));
    assert!(c.nodes.iter().all(|n| n.stats().decode_errors == 0));
}

#[test]
fn a_member_digest_without_a_push_pull_request_is_dropped_and_counted() {
    let mut c = Cluster::formed(2, Config::local());
    let mut w = Writer::default();
    begin_packet(&mut w, PROTOCOL_VERSION);
    Message::<u32>::MemberDigest { salt: 1, hashes: vec![0; 4] }.encode(&mut w);
    let now = c.now;
    let before = c.log.len();
    let answered = c.node(0).stats().member_digests_answered;
    c.nodes[0].handle_packet(now, 1, &w.into_vec()).unwrap();
    c.deliver_all();
    assert_eq!(c.node(0).stats().member_digests_unused, 1);
    assert_eq!(c.node(0).stats().member_digests_answered, answered);
    assert!(c.log[before..].iter().all(|s| s.kind != TransmitKind::PushPull), "nothing answered");
}
