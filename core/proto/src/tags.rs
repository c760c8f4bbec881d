//! Tags: a member's metadata as `key=value` pairs, and filters over members by name, state and tag.
//!
//! Metadata is opaque bytes to the protocol. Most clusters put a few labels in it (`role=web`,
//! `dc=eu`, `version=1.4`), as Serf's tags do, and select members by them. [`Tags`] is that view:
//! build tags, turn them into metadata with [`Tags::to_metadata`], and read any member's back with
//! [`Metadata::tags`] or [`Member::tags`]. [`MemberFilter`] selects members by name, state and tags,
//! with `*` and `?` wildcards.
//!
//! The encoding is text: UTF-8 pairs `key=value` joined by `,`, keys sorted and unique, with `%`,
//! `,` and `=` inside a key or value (and `%`, `,` inside a value) written as `%25`, `%2C`, `%3D`.
//! `role=web,dc=eu` is therefore valid tags, which is what `shoal-agent --meta role=web --meta
//! dc=eu` announced before tags existed; metadata that is not in this form (binary, JSON) simply
//! has no tags. Keys are 1 to [`MAX_TAG_KEY_LEN`] bytes; values may be empty. The whole must fit in
//! the metadata limit (`Config::max_meta_size`), which [`crate::Node::set_metadata`] checks.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::identity::NodeId;
use crate::member::{Member, MemberState, Metadata};

/// Longest tag key, in bytes.
pub const MAX_TAG_KEY_LEN: usize = 128;

/// Why tags were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagError {
    /// Keys are 1 to [`MAX_TAG_KEY_LEN`] bytes.
    BadKey(String),
    /// The metadata is not tags: not UTF-8, a pair without `=`, a bad `%` escape, or a key twice.
    NotTags,
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::BadKey(k) => write!(f, "tag key {k:?} is empty or longer than {MAX_TAG_KEY_LEN} bytes"),
            TagError::NotTags => f.write_str("metadata is not key=value tags"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TagError {}

/// A member's tags: keys mapped to values, in key order. See the [module docs](self) for the
/// encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Tags::default()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<Option<String>, TagError> {
        if key.is_empty() || key.len() > MAX_TAG_KEY_LEN {
            return Err(TagError::BadKey(key.into()));
        }
        Ok(self.0.insert(key.into(), value.into()))
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The metadata bytes that announce these tags: hand them to `set_metadata` (or a builder's
    /// `metadata`).
    pub fn to_metadata(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escape_into(&mut out, k, true);
            out.push('=');
            escape_into(&mut out, v, false);
        }
        out.into_bytes()
    }

    /// Reads tags from metadata bytes; [`TagError::NotTags`] when they are not in the tags form.
    /// Empty metadata is empty tags.
    pub fn from_metadata(bytes: &[u8]) -> Result<Tags, TagError> {
        let mut tags = Tags::new();
        for (k, v) in pairs(bytes)? {
            tags.0.insert(k, v);
        }
        Ok(tags)
    }
}

/// The pairs of tags metadata, in the order written: [`TagError::NotTags`] unless every pair is
/// `key=value` with valid escapes, keys of 1 to [`MAX_TAG_KEY_LEN`] bytes, none twice. (A plain
/// vector, not a map: a filter looks up a few keys, and the npm package's wasm stays smaller.)
fn pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, TagError> {
    let text = core::str::from_utf8(bytes).map_err(|_| TagError::NotTags)?;
    let mut out: Vec<(String, String)> = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    for pair in text.split(',') {
        let (k, v) = pair.split_once('=').ok_or(TagError::NotTags)?;
        let (k, v) = (unescape(k)?, unescape(v)?);
        if k.is_empty() || k.len() > MAX_TAG_KEY_LEN || out.iter().any(|(seen, _)| *seen == k) {
            return Err(TagError::NotTags);
        }
        out.push((k, v));
    }
    Ok(out)
}

impl Tags {
    /// Tags from pairs; a later pair replaces an earlier one with the same key.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Tags, TagError> {
        let mut tags = Tags::new();
        for (k, v) in pairs {
            tags.insert(k.as_ref(), v.as_ref())?;
        }
        Ok(tags)
    }
}

fn escape_into(out: &mut String, s: &str, is_key: bool) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            '=' if is_key => out.push_str("%3D"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> Result<String, TagError> {
    if !s.contains('%') {
        return Ok(s.into());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(TagError::NotTags)?;
            let hex = core::str::from_utf8(hex).map_err(|_| TagError::NotTags)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| TagError::NotTags)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TagError::NotTags)
}

impl Metadata {
    /// These bytes read as [`Tags`], or [`TagError::NotTags`] when they are not in that form.
    pub fn tags(&self) -> Result<Tags, TagError> {
        Tags::from_metadata(self.as_bytes())
    }
}

impl<A> Member<A> {
    /// The member's metadata read as [`Tags`]; empty when its metadata is not tags (or has not
    /// been fetched yet, see `meta_complete`).
    pub fn tags(&self) -> Tags {
        self.meta.tags().unwrap_or_default()
    }
}

/// Selects members by name, state and tags, as Serf's `members -name -status -tag` do. Every
/// condition given must hold; a filter with none matches every member. Names and tag values are
/// matched against patterns where `*` stands for any run of characters and `?` for one.
///
/// ```
/// use shoal_core::tags::MemberFilter;
/// use shoal_core::MemberState;
///
/// // Live web servers in any European data centre.
/// let filter = MemberFilter::new()
///     .states(&[MemberState::Alive, MemberState::Suspect])
///     .tag("role", "web")
///     .tag("dc", "eu-*");
/// # let _ = filter;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFilter {
    name: Option<String>,
    states: Option<Vec<MemberState>>,
    tags: Vec<(String, String)>,
}

impl MemberFilter {
    /// A filter that matches every member.
    pub fn new() -> Self {
        MemberFilter::default()
    }

    /// Only members whose name matches `pattern` (`*`, `?` wildcards).
    pub fn name(mut self, pattern: &str) -> Self {
        self.name = Some(pattern.into());
        self
    }

    /// Only members in one of `states`.
    pub fn states(mut self, states: &[MemberState]) -> Self {
        self.states = Some(states.to_vec());
        self
    }

    /// Only members that have tag `key`, with a value matching `pattern` (`*` for any value).
    /// Several calls must all hold.
    pub fn tag(mut self, key: &str, pattern: &str) -> Self {
        self.tags.push((key.into(), pattern.into()));
        self
    }

    /// The name pattern and the tag conditions, as a query carries them (queries leave states out:
    /// a member answers for itself, and to itself it is alive).
    #[cfg(any(feature = "queries", test))]
    pub(crate) fn name_and_tags(&self) -> (Option<&str>, &[(String, String)]) {
        (self.name.as_deref(), &self.tags)
    }

    /// Whether `member` passes every condition.
    pub fn matches<A>(&self, member: &Member<A>) -> bool {
        self.matches_parts(&member.id, member.state, &member.meta)
    }

    /// [`MemberFilter::matches`] for a member given by its parts (our own record, say).
    pub fn matches_parts(&self, id: &NodeId, state: MemberState, meta: &Metadata) -> bool {
        if self.name.as_deref().is_some_and(|p| !wildcard_match(p, id.as_str())) {
            return false;
        }
        if self.states.as_ref().is_some_and(|s| !s.contains(&state)) {
            return false;
        }
        if self.tags.is_empty() {
            return true;
        }
        let Ok(tags) = pairs(meta.as_bytes()) else {
            return false;
        };
        self.tags.iter().all(|(k, p)| tags.iter().any(|(key, v)| key == k && wildcard_match(p, v)))
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` any one.
/// Linear in practice: the classic backtracking to the last `*` only.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn random_text(rng: &mut SmallRng, max: usize) -> String {
        const ALPHABET: &[char] = &['a', 'b', '%', ',', '=', ' ', 'é', '2', 'C', '*'];
        let n = rng.random_range(0..=max);
        (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
    }

    #[test]
    fn any_tags_read_back_from_their_metadata_as_they_were() {
        let mut rng = SmallRng::seed_from_u64(17);
        for _ in 0..5_000 {
            let mut tags = Tags::new();
            for _ in 0..rng.random_range(0..5) {
                let mut key = random_text(&mut rng, 8);
                if key.is_empty() {
                    key.push('k');
                }
                tags.insert(&key, &random_text(&mut rng, 8)).unwrap();
            }
            let meta = tags.to_metadata();
            assert_eq!(Tags::from_metadata(&meta), Ok(tags.clone()), "{:?}", String::from_utf8_lossy(&meta));
        }
    }

    #[test]
    fn what_the_agent_announced_before_tags_existed_reads_as_tags() {
        let tags = Tags::from_metadata(b"role=web,dc=eu,expr=a=b").unwrap();
        assert_eq!(tags.get("role"), Some("web"));
        assert_eq!(tags.get("dc"), Some("eu"));
        assert_eq!(tags.get("expr"), Some("a=b"), "a value may hold `=`");
        assert_eq!(Tags::from_metadata(b""), Ok(Tags::new()));
    }

    #[test]
    fn metadata_that_is_not_tags_has_none_and_never_panics() {
        for bad in [&b"\xff\xfe"[..], b"{\"role\":\"web\"}", b"a=1,a=2", b"=v", b"k=%4", b"k=%zz", b"k=%ff"] {
            assert_eq!(Tags::from_metadata(bad), Err(TagError::NotTags), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..20_000 {
            let n = rng.random_range(0..24);
            const PIECES: &[u8] = b"a=,%2Cf\xc3\xa9";
            let bytes: Vec<u8> = (0..n).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect();
            if let Ok(tags) = Tags::from_metadata(&bytes) {
                assert_eq!(Tags::from_metadata(&tags.to_metadata()), Ok(tags));
            }
        }
    }

    #[test]
    fn keys_must_be_non_empty_and_short() {
        assert_eq!(Tags::new().insert("", "v"), Err(TagError::BadKey(String::new())));
        let long = "k".repeat(MAX_TAG_KEY_LEN + 1);
        assert_eq!(Tags::new().insert(&long, "v"), Err(TagError::BadKey(long.clone())));
        assert!(Tags::new().insert(&long[1..], "").is_ok());
    }

    /// A slow but obviously right matcher to hold the fast one to.
    fn reference_match(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some('*'), _) => reference_match(&p[1..], t) || (!t.is_empty() && reference_match(p, &t[1..])),
            (Some('?'), Some(_)) => reference_match(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference_match(&p[1..], &t[1..]),
            _ => false,
        }
    }

    #[test]
    fn wildcards_match_as_the_reference_matcher_does() {
        let mut rng = SmallRng::seed_from_u64(9);
        for _ in 0..50_000 {
            let gen = |rng: &mut SmallRng, alphabet: &[char], max: usize| -> String {
                let n = rng.random_range(0..=max);
                (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
            };
            let pattern = gen(&mut rng, &['a', 'b', '*', '?'], 6);
            let text = gen(&mut rng, &['a', 'b', 'é'], 7);
            let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
            assert_eq!(wildcard_match(&pattern, &text), reference_match(&p, &t), "{pattern:?} on {text:?}");
        }
        assert!(wildcard_match("web-*", "web-1"));
        assert!(!wildcard_match("web-?", "web-10"));
    }

    #[test]
    fn a_filter_holds_a_member_to_every_condition_given() {
        let member = |name: &str, state, tags: &[(&str, &str)]| Member {
            id: NodeId::new(name).unwrap(),
            addr: 0u32,
            incarnation: 0,
            state,
            meta_complete: true,
            versions: (1, 1),
            state_since: crate::Instant::from_millis(0),
            meta: Metadata::new(&Tags::from_pairs(tags.iter().copied()).unwrap().to_metadata()),
        };
        let web_eu = member("web-1", MemberState::Alive, &[("role", "web"), ("dc", "eu-west")]);
        let web_us = member("web-2", MemberState::Alive, &[("role", "web"), ("dc", "us-east")]);
        let db_dead = member("db-1", MemberState::Dead, &[("role", "db"), ("dc", "eu-west")]);
        let untagged = Member { meta: Metadata::new(b"\x00binary"), ..member("x", MemberState::Alive, &[]) };
        let all = [&web_eu, &web_us, &db_dead, &untagged];
        let names = |f: &MemberFilter| -> Vec<String> {
            all.iter().filter(|m| f.matches(m)).map(|m| m.id.as_str().to_string()).collect()
        };
        assert_eq!(names(&MemberFilter::new()), ["web-1", "web-2", "db-1", "x"]);
        assert_eq!(names(&MemberFilter::new().tag("role", "web")), ["web-1", "web-2"]);
        assert_eq!(names(&MemberFilter::new().tag("dc", "eu-*")), ["web-1", "db-1"]);
        assert_eq!(names(&MemberFilter::new().tag("dc", "eu-*").states(&[MemberState::Alive])), ["web-1"]);
        assert_eq!(names(&MemberFilter::new().name("*-2")), ["web-2"]);
        assert_eq!(names(&MemberFilter::new().tag("role", "*")), ["web-1", "web-2", "db-1"], "`*` needs the key");
        assert_eq!(untagged.tags(), Tags::new());
    }
}
