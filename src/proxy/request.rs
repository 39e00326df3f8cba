//! Reading the request as the provider will: its path and its JSON `model` / `stream`.
//!
//! Anything Warden cannot read exactly as a provider would is refused rather than guessed:
//! a path with dot segments, empty segments or percent-encoding (the allowlist would judge a
//! different path than the provider serves), and JSON with a duplicate `model` key, a trailing
//! value or invalid UTF-8 (the provider might act on a model Warden never checked).

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Error as _, MapAccess, Visitor};
use serde::Deserialize;

use super::error::Refusal;
use super::stream_usage::{present_or_null, StreamOptions, StreamOptionsProbe};
use crate::objects::scan::{Key, Member};
use crate::objects::ObjectRef;

/// What Warden needs from a JSON request body.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyFields<'a> {
    /// `None` when absent, `null` or empty.
    pub model: Option<Cow<'a, str>>,
    pub stream: bool,
    /// `stream_options` as far as usage goes.
    pub stream_options: StreamOptions,
    /// The request's cap on output tokens (`max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`, the first present), for token budgets.
    pub output_cap: Option<u64>,
    /// How many completions the provider generates, each up to the cap: `n` or `best_of`
    /// (the larger), at least 1.
    pub choices: u64,
    /// `store: true`: the provider keeps the answer as an object (chat completions).
    pub store: bool,
    /// The provider objects the body names (`previous_response_id`, a `file_id`, …).
    pub objects: Vec<ObjectRef<'a>>,
    /// The end user the request is made for: OpenAI's `user`, else Anthropic's
    /// `metadata.user_id` (`limits.per_user`).
    pub user: Option<Cow<'a, str>>,
}

impl BodyFields<'_> {
    /// The most output tokens the request can be billed: its cap (or `default_cap`) for each
    /// of its choices.
    pub fn output_bound(&self, default_cap: u64) -> u64 {
        self.output_cap
            .unwrap_or(default_cap)
            .saturating_mul(self.choices)
    }

    /// The model, which every request but one about provider objects must name.
    pub fn model(&self) -> Result<&str, Refusal> {
        self.model.as_deref().ok_or(Refusal::MissingModel)
    }
}

/// The members Warden reads, each at most once (a second `model` could be the one the
/// provider acts on).
#[derive(Default)]
struct Probe<'a> {
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    stream_options: Option<Option<StreamOptionsProbe>>,
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    n: Option<u64>,
    best_of: Option<u64>,
    store: Option<bool>,
    objects: Vec<ObjectRef<'a>>,
    user: Option<Cow<'a, str>>,
    metadata: Option<Metadata>,
}

/// `metadata`, for Anthropic's `user_id` (a second `user_id` is refused like any duplicate).
#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

impl<'de> Deserialize<'de> for Probe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = Probe<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe<'de>, A::Error> {
        let mut p = Probe::default();
        let mut seen = 0u16;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(bit) = PROBED.iter().position(|k| *k == key) else {
                map.next_value_seed(Member {
                    key: &key,
                    found: &mut p.objects,
                })?;
                continue;
            };
            if seen & (1 << bit) != 0 {
                return Err(A::Error::custom(format_args!("duplicate field `{key}`")));
            }
            seen |= 1 << bit;
            match bit {
                0 => p.model = map.next_value::<Option<Key<'de>>>()?.map(|k| k.0),
                1 => p.stream = map.next_value()?,
                2 => p.stream_options = present_or_null(MapValue(&mut map))?,
                3 => p.max_completion_tokens = map.next_value()?,
                4 => p.max_tokens = map.next_value()?,
                5 => p.max_output_tokens = map.next_value()?,
                6 => p.n = map.next_value()?,
                7 => p.best_of = map.next_value()?,
                8 => p.store = map.next_value()?,
                9 => p.user = map.next_value::<Option<Key<'de>>>()?.map(|k| k.0),
                _ => p.metadata = map.next_value::<Option<Metadata>>()?,
            }
        }
        Ok(p)
    }
}

/// The members [`Probe`] reads, in the order of its `match`.
const PROBED: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "n",
    "best_of",
    "store",
    "user",
    "metadata",
];

/// The next map value as a deserializer (for [`present_or_null`]).
struct MapValue<'m, A>(&'m mut A);

impl<'de, A: MapAccess<'de>> serde::Deserializer<'de> for MapValue<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(Forward(visitor))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(ForwardOption(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Hands a value's deserializer to a visitor with `deserialize_any`.
struct Forward<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Forward<V> {
    type Value = V::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_any(self.0)
    }
}

/// Hands a value's deserializer to a visitor with `deserialize_option` (`null` is `None`).
struct ForwardOption<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for ForwardOption<V> {
    type Value = V::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_option(self.0)
    }
}

/// Reads `model`, `stream`, the output caps and the objects named from a JSON body (an
/// object; every other member is validated as JSON and searched for object references).
pub fn body_fields(body: &[u8]) -> Result<BodyFields<'_>, Refusal> {
    // A map visitor also reads a JSON array as nothing; providers want an object.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Refusal::InvalidJson("expected a JSON object".into()));
    }
    let probe: Probe<'_> =
        serde_json::from_slice(body).map_err(|e| Refusal::InvalidJson(e.to_string()))?;
    // serde_json checks UTF-8 and escapes only in the values it decodes; the fields it skips
    // are checked here, so the provider never reads text Warden could not.
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        return Err(Refusal::InvalidJson(format!("invalid UTF-8 at byte {at}")));
    }
    check_escapes(body)?;
    check_numbers(body)?;
    Ok(BodyFields {
        model: probe.model.filter(|m| !m.is_empty()),
        stream: probe.stream.unwrap_or(false),
        stream_options: probe.stream_options.into(),
        output_cap: probe
            .max_completion_tokens
            .or(probe.max_tokens)
            .or(probe.max_output_tokens),
        choices: probe.n.max(probe.best_of).unwrap_or(1).max(1),
        store: probe.store.unwrap_or(false),
        objects: probe.objects,
        user: (probe.user)
            .or_else(|| probe.metadata.and_then(|m| m.user_id).map(Cow::Owned))
            .filter(|u| !u.is_empty()),
    })
}

/// Whether a body on an object endpoint is JSON to read (a file upload is multipart, a `GET`
/// has none): it is when it is not empty and says so, or looks so. (SDKs send
/// `Content-Type: application/json` on every request, bodiless ones too.)
pub fn reads_as_json(content_type: Option<&http::HeaderValue>, body: &[u8]) -> bool {
    if body.trim_ascii().is_empty() {
        return false;
    }
    let declared = content_type.is_some_and(|ct| {
        let ct = ct.as_bytes();
        let essence = ct.split(|b| *b == b';').next().unwrap_or(ct).trim_ascii();
        essence.eq_ignore_ascii_case(b"application/json")
            || essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
    });
    declared || body.trim_ascii_start().first() == Some(&b'{')
}

/// Refuses `\\u` escapes that encode a lone UTF-16 surrogate (`"\\ud800"`): JSON parsers disagree
/// on them (some refuse, some keep them, some substitute U+FFFD), so Warden cannot know what a
/// provider reads. Called on a body that already parsed as JSON, where every backslash is the
/// start of an escape inside a string.
fn check_escapes(body: &[u8]) -> Result<(), Refusal> {
    let lone = || Refusal::InvalidJson("a \\u escape encodes a lone UTF-16 surrogate".into());
    let mut at = 0;
    while let Some(found) = body.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let escape = at + found;
        if body.get(escape + 1) != Some(&b'u') {
            at = escape + 2;
            continue;
        }
        let unit = hex4(body, escape + 2);
        at = escape + 6;
        match unit {
            Some(0xD800..=0xDBFF) => {
                let low = (body.get(at..at + 2) == Some(b"\\u"))
                    .then(|| hex4(body, at + 2))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Err(lone());
                }
                at += 6;
            }
            Some(0xDC00..=0xDFFF) => return Err(lone()),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a number beyond the range of a double (`1e999`, 400 digits) anywhere in the body:
/// serde_json skips it in fields Warden ignores, but readers disagree on it (Python reads
/// `inf`, Go and serde_json refuse), so Warden cannot know what the provider acts on. Called on
/// a body that already parsed as JSON: outside strings, a digit or `-` starts a number.
fn check_numbers(body: &[u8]) -> Result<(), Refusal> {
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => at = string_end(body, at + 1),
            b'-' | b'0'..=b'9' => {
                let len = body[at..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(body.len() - at);
                let number = std::str::from_utf8(&body[at..at + len]).ok();
                if !number
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
                {
                    return Err(Refusal::InvalidJson(format!(
                        "a number at byte {at} is beyond the range of a double"
                    )));
                }
                at += len;
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// Where the string whose content starts at `at` ends (just past its closing quote).
fn string_end(body: &[u8], mut at: usize) -> usize {
    while let Some(found) = body
        .get(at..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        at += found;
        if body[at] == b'\\' {
            at += 2;
        } else {
            return at + 1;
        }
    }
    body.len()
}

/// The four hex digits at `at`, as a number.
fn hex4(body: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// Checks that a request path is in the one form Warden and the provider read the same way.
pub fn check_path(path: &str) -> Result<(), Refusal> {
    const WHY: &str = "the request path must be plain: no '.', '..' or empty segments, no percent-encoding, ';' or '\\'";
    // `;` starts path parameters and `\` is a separator on some servers (servlet containers,
    // IIS): `/public/..;/private` would be judged here as one path and served as another.
    let plain = path.starts_with('/')
        && !path.contains(['%', ';', '\\'])
        && path[1..]
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if plain || path == "/" {
        Ok(())
    } else {
        Err(Refusal::EndpointNotAllowed(WHY.into()))
    }
}

/// The provider path for a request: the provider's base path followed by the request path
/// after its `/v1` (agents use base URLs ending in `/v1`, as providers' `base_url`s do).
pub fn upstream_path(base_path: &str, path: &str, query: Option<&str>) -> String {
    let rest = path
        .strip_prefix("/v1")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(path);
    join_path(base_path, rest, query)
}

/// `base_path` + `rest` (+ `?query`): a service's base path followed by the agent's path on it.
pub fn join_path(base_path: &str, rest: &str, query: Option<&str>) -> String {
    let mut out =
        String::with_capacity(base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(base_path);
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream() {
        let f = body_fields(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(f.model(), Ok("gpt-4o"));
        assert!(f.stream);
        let f = body_fields(br#"{"model":"gpt\u002d4o","x":"\\ud800 \ud83d\ude00"}"#).unwrap();
        assert_eq!(f.model(), Ok("gpt-4o"));
        assert!(!f.stream);
    }

    #[test]
    fn every_choice_counts_towards_the_output_bound() {
        let f = body_fields(br#"{"model":"m","n":50,"max_tokens":1000}"#).unwrap();
        assert_eq!(f.output_bound(1024), 50_000);
        let f = body_fields(br#"{"model":"m","best_of":3,"n":2,"max_tokens":10}"#).unwrap();
        assert_eq!(f.output_bound(1024), 30);
        let f = body_fields(br#"{"model":"m","n":4}"#).unwrap();
        assert_eq!(f.output_bound(100), 400);
        let f = body_fields(br#"{"model":"m","n":0,"max_tokens":7}"#).unwrap();
        assert_eq!(f.output_bound(1024), 7);
        let f = body_fields(br#"{"model":"m","n":18446744073709551615,"max_tokens":9}"#).unwrap();
        assert_eq!(f.output_bound(1), u64::MAX);
    }

    #[test]
    fn refuses_what_it_cannot_read_like_the_provider() {
        let code = |b: &[u8]| {
            body_fields(b)
                .and_then(|f| f.model().map(drop))
                .unwrap_err()
                .code()
                .as_str()
        };
        assert_eq!(code(br#"{"model":"a","model":"b"}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a"} {"x":1}"#), "invalid_json");
        assert_eq!(code(b"{\"model\":\"a\xff\"}"), "invalid_json");
        assert_eq!(code(br#"["model"]"#), "invalid_json");
        assert_eq!(code(br#"{"model":7}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a","stream":"yes"}"#), "invalid_json");
        assert_eq!(code(br#"{"messages":[]}"#), "missing_model");
        assert_eq!(code(br#"{"model":""}"#), "missing_model");
        assert_eq!(code(br#"{"model":null}"#), "missing_model");
        assert_eq!(code(b"{\"model\":\"a\",\"x\":\"\xff\"}"), "invalid_json");
        assert_eq!(code(br#"{"model":"a","x":"\ud800"}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a","x":"\udc00\ud800"}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a","x":"\ud800\u0041"}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a","x":7e3333335}"#), "invalid_json");
        assert_eq!(code(br#"{"model":"a","x":[1,-1e400]}"#), "invalid_json");
        let digits = format!(r#"{{"model":"a","x":{}}}"#, "9".repeat(400));
        assert_eq!(code(digits.as_bytes()), "invalid_json");
        assert!(
            body_fields(br#"{"model":"a","x":"1e999 \" 1e999","y":[1.5e300,-0,2E-9]}"#).is_ok()
        );
        assert_eq!(
            code(br#"{"model":"a","store":true,"store":false}"#),
            "invalid_json"
        );
        assert_eq!(code(br#"{"model":"a","stream_options":1}"#), "invalid_json");
    }

    #[test]
    fn reads_what_a_body_says_about_objects() {
        let f = body_fields(
            br#"{"model":"m","store":true,"stream_options":null,"previous_response_id":"resp_1","input":[{"file_id":"file-2"}]}"#,
        )
        .unwrap();
        assert!(f.store);
        assert!(f.stream_options.present);
        let ids: Vec<&str> = f.objects.iter().map(|o| &*o.id).collect();
        assert_eq!(ids, ["resp_1", "file-2"]);
        let f = body_fields(br#"{"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(f.stream_options.include_usage);
        assert_eq!(f.model, None);
    }

    #[test]
    fn object_endpoints_read_json_bodies_only() {
        let json = http::HeaderValue::from_static("application/json; charset=utf-8");
        let multipart = http::HeaderValue::from_static("multipart/form-data; boundary=x");
        assert!(!reads_as_json(Some(&json), b""));
        assert!(reads_as_json(Some(&json), b"[1]"));
        assert!(reads_as_json(None, b" {}"));
        assert!(!reads_as_json(Some(&multipart), b"--x\r\n"));
        assert!(!reads_as_json(None, b""));
    }

    #[test]
    fn only_plain_paths_pass() {
        assert!(check_path("/v1/chat/completions").is_ok());
        for bad in [
            "/v1//chat",
            "/v1/./chat",
            "/v1/../v2",
            "/v1/chat%2Fcompletions",
            "/v1/chat/",
            "/svc/docs/public/..;/private/admin",
            "/svc/docs/public/x\\..\\..\\private\\admin",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_base_path_and_request_path() {
        assert_eq!(
            upstream_path("/v1", "/v1/chat/completions", None),
            "/v1/chat/completions"
        );
        assert_eq!(
            upstream_path("/openai/v1", "/v1/embeddings", Some("a=1")),
            "/openai/v1/embeddings?a=1"
        );
        assert_eq!(upstream_path("", "/v1/messages", None), "/messages");
        assert_eq!(upstream_path("/v1", "/v1beta/x", None), "/v1/v1beta/x");
    }
}
