//! The prompt's tokens, estimated from the request body before it is forwarded.
//!
//! A budget reserves the prompt before the provider has counted it. One token per body byte
//! (an upper bound) refused requests that fit by a factor of four; so the text the provider
//! will read is counted with the model family's own vocabulary instead: o200k for current
//! OpenAI models, cl100k for the older ones, and cl100k scaled by [`OTHER_FAMILY_FACTOR`]
//! for every other family (Anthropic's, Google's, open models), whose vocabularies are not
//! public. What is counted: every string value in the body (message text, system prompts, tool
//! descriptions and schemas, roles), one token per object key (the structure chat formats add
//! around each message), and [`REPLY_PRIMING`]. An inline image or file (`data:` URL) counts
//! [`IMAGE_TOKENS`] or a third of its bytes, not its base64 text.
//!
//! Cost is bounded: the first [`EXACT_TEXT_BYTES`] of text are counted exactly; a longer string
//! is counted on four windows spread over it and scaled (a few long strings at most; beyond,
//! the measured rate extrapolates, never denser than [`MIN_BYTES_PER_TOKEN`] bytes a token). An
//! estimate that still falls short is settled to the provider's count afterwards, so it can
//! overrun a budget by at most one request's error.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Text counted token by token; a longer string is estimated from samples.
pub const EXACT_TEXT_BYTES: usize = 4 * 1024;
/// A long string is sampled in this many windows spread over it…
const SAMPLE_WINDOWS: usize = 4;
/// …of this many bytes each…
const SAMPLE_BYTES: usize = 512;
/// …for at most this many strings per request; any further text is extrapolated.
const MAX_SAMPLED_STRINGS: usize = 8;
/// The fewest bytes per token assumed when extrapolating (dense text: code, non-Latin scripts).
pub const MIN_BYTES_PER_TOKEN: f64 = 1.5;
/// Families without a public vocabulary: their counts run above cl100k's (Anthropic's
/// tokenizer yields 10–25 % more tokens on English), so the estimate errs high.
pub const OTHER_FAMILY_FACTOR: f64 = 1.25;
/// Tokens a chat format adds to prime the reply (OpenAI's `<|start|>assistant<|message|>`).
pub const REPLY_PRIMING: u64 = 3;
/// An inline image: the most a high-detail image costs on current models.
pub const IMAGE_TOKENS: u64 = 1_600;

/// Which vocabulary a model's prompt is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// GPT-4o, GPT-4.1, GPT-5, o-series and later OpenAI models.
    O200k,
    /// GPT-4, GPT-3.5 and the `text-embedding-*` models.
    Cl100k,
    /// Any other family: cl100k scaled up.
    Other,
}

impl Family {
    /// The family of `model` (a provider prefix such as `openai/` is ignored).
    pub fn of(model: &str) -> Family {
        let name = model.rsplit('/').next().unwrap_or(model);
        const O200K: &[&str] = &[
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "gpt-image",
            "gpt-realtime",
            "gpt-audio",
            "chatgpt-",
            "o1",
            "o3",
            "o4",
            "codex",
            "computer-use",
            "omni-moderation",
        ];
        const CL100K: &[&str] = &[
            "gpt-4",
            "gpt-3.5",
            "text-embedding-",
            "davinci-",
            "babbage-",
        ];
        if O200K.iter().any(|p| name.starts_with(p)) {
            Family::O200k
        } else if CL100K.iter().any(|p| name.starts_with(p)) {
            Family::Cl100k
        } else {
            Family::Other
        }
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Family::O200k => bpe_openai::o200k_base(),
            Family::Cl100k | Family::Other => bpe_openai::cl100k_base(),
        }
    }
}

/// Loads the vocabularies (tens of milliseconds each): done once at start-up, so no request
/// pays for it.
pub fn warm_up() {
    Family::O200k.tokenizer();
    Family::Cl100k.tokenizer();
}

/// The estimated prompt tokens of a JSON request `body` for `model`; at least 1. A body that
/// is not JSON (it was validated before) counts as text.
pub fn estimate(body: &[u8], model: &str) -> u64 {
    let family = Family::of(model);
    let mut count = Count {
        tokenizer: family.tokenizer(),
        exact_bytes: 0,
        exact_tokens: 0,
        sampled: 0,
        rest_bytes: 0,
        fixed: REPLY_PRIMING,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    if Walk(&mut count).deserialize(&mut de).is_err() {
        count.text(&String::from_utf8_lossy(body));
    }
    let tokens = count.total();
    let tokens = match family {
        Family::Other => (tokens as f64 * OTHER_FAMILY_FACTOR).ceil() as u64,
        Family::O200k | Family::Cl100k => tokens,
    };
    tokens.max(1)
}

struct Count {
    tokenizer: &'static bpe_openai::Tokenizer,
    exact_bytes: usize,
    exact_tokens: u64,
    /// Long strings estimated from samples so far.
    sampled: usize,
    /// Text beyond every budget, extrapolated at the exact part's rate.
    rest_bytes: usize,
    /// Structure, images and priming.
    fixed: u64,
}

impl Count {
    fn text(&mut self, s: &str) {
        if let Some(data) = s.strip_prefix("data:") {
            self.fixed += if data.starts_with("image/") {
                IMAGE_TOKENS
            } else {
                (s.len() / 3) as u64
            };
            return;
        }
        let room = EXACT_TEXT_BYTES.saturating_sub(self.exact_bytes);
        if s.len() <= room {
            self.exact_bytes += s.len();
            self.exact_tokens += self.tokenizer.count(s) as u64;
        } else if self.sampled < MAX_SAMPLED_STRINGS {
            // Windows spread over the whole string: a prompt that turns from prose to code
            // is measured on both.
            self.sampled += 1;
            let step = s.len() / SAMPLE_WINDOWS;
            let (mut bytes, mut tokens) = (0usize, 0u64);
            for i in 0..SAMPLE_WINDOWS {
                let window = char_window(s, i * step, SAMPLE_BYTES);
                bytes += window.len();
                tokens += self.tokenizer.count(window) as u64;
            }
            let rate = (bytes as f64 / tokens.max(1) as f64).max(MIN_BYTES_PER_TOKEN);
            self.fixed += (s.len() as f64 / rate).ceil() as u64;
        } else {
            self.rest_bytes += s.len();
        }
    }

    fn total(&self) -> u64 {
        let rate = if self.exact_tokens == 0 {
            MIN_BYTES_PER_TOKEN
        } else {
            (self.exact_bytes as f64 / self.exact_tokens as f64).max(MIN_BYTES_PER_TOKEN)
        };
        let rest = (self.rest_bytes as f64 / rate).ceil() as u64;
        self.exact_tokens + rest + self.fixed
    }
}

/// About `len` bytes of `s` from `start`, cut at character boundaries.
fn char_window(s: &str, start: usize, len: usize) -> &str {
    let mut from = start.min(s.len());
    while !s.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (from + len).min(s.len());
    while !s.is_char_boundary(to) {
        to += 1;
    }
    &s[from..to]
}

/// Visits every value, counting its strings and keys.
struct Walk<'c>(&'c mut Count);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.text(v);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            self.0.fixed += 1;
            map.next_value_seed(Walk(&mut *self.0))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(&mut *self.0))?.is_some() {}
        Ok(())
    }

    crate::objects::scan::skip_scalars!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> Vec<u8> {
        serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 7,
            "messages": [{"role": "user", "content": text}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn families_follow_the_model_name() {
        assert_eq!(Family::of("gpt-4o-mini"), Family::O200k);
        assert_eq!(Family::of("openai/gpt-5"), Family::O200k);
        assert_eq!(Family::of("o3-mini"), Family::O200k);
        assert_eq!(Family::of("gpt-4-turbo"), Family::Cl100k);
        assert_eq!(Family::of("text-embedding-3-small"), Family::Cl100k);
        assert_eq!(Family::of("claude-sonnet-4"), Family::Other);
    }

    #[test]
    fn a_short_chat_is_counted_close_to_what_openai_bills() {
        // OpenAI bills this at 8 prompt tokens; the body is 89 bytes.
        let tokens = estimate(&chat("Say hello"), "gpt-4o-mini");
        assert!((8..=20).contains(&tokens), "{tokens}");
    }

    #[test]
    fn long_text_is_estimated_from_samples() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(4_000);
        let exact = bpe_openai::o200k_base().count(text.as_str()) as f64;
        let tokens = estimate(&chat(&text), "gpt-4o") as f64;
        assert!(
            tokens >= exact && tokens < exact * 1.05,
            "{tokens} vs {exact}"
        );
        let other = estimate(&chat(&text), "claude-sonnet-4") as f64;
        assert!(other > tokens, "{other} vs {tokens}");
    }

    /// What OpenAI bills for a chat prompt (its cookbook's count): per message 3 tokens plus
    /// its role and content, then 3 to prime the reply.
    fn billed(messages: &[(&str, &str)]) -> u64 {
        let t = bpe_openai::o200k_base();
        messages
            .iter()
            .map(|(role, content)| 3 + t.count(*role) as u64 + t.count(*content) as u64)
            .sum::<u64>()
            + 3
    }

    #[test]
    fn the_estimate_errs_high_and_close_on_a_varied_corpus() {
        let code = "fn main() {\n    let xs: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{xs:?}\");\n}\n";
        let json = r#"{"orders":[{"id":1042,"sku":"A-17","qty":3,"price":19.99}]}"#;
        let chinese = "今天天气很好，我们去公园散步吧。请总结这篇文章的要点。";
        let prose = "Summarise the quarterly report and list three risks for the board. ";
        let corpus: Vec<Vec<(&str, String)>> = vec![
            vec![("user", "Say hello".into())],
            vec![
                ("system", "You are terse.".into()),
                ("user", "What is 2+2?".into()),
            ],
            vec![("user", prose.repeat(40))],
            vec![("user", prose.repeat(2000))],
            vec![("system", prose.repeat(5)), ("user", code.repeat(300))],
            vec![("user", json.repeat(500))],
            vec![("user", chinese.repeat(300))],
            vec![("user", format!("{}{}", prose.repeat(100), code.repeat(400)))],
            vec![
                ("system", "Be brief.".into()),
                ("user", "hi".into()),
                ("assistant", "Hello! How can I help?".into()),
                ("user", "Tell me a joke about cats.".into()),
            ],
        ];
        let mut ratios: Vec<f64> = corpus
            .iter()
            .map(|messages| {
                let msgs: Vec<_> = messages
                    .iter()
                    .map(|(r, c)| serde_json::json!({"role": r, "content": c}))
                    .collect();
                let body = serde_json::json!({"model": "gpt-4o", "messages": msgs}).to_string();
                let pairs: Vec<(&str, &str)> =
                    messages.iter().map(|(r, c)| (*r, c.as_str())).collect();
                estimate(body.as_bytes(), "gpt-4o") as f64 / billed(&pairs) as f64
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!("estimate / billed: {ratios:.3?}");
        assert!(ratios[0] >= 0.75, "{ratios:?}");
        assert!(ratios[ratios.len() / 2] <= 1.3, "{ratios:?}");
        assert!(ratios[ratios.len() - 1] <= 2.5, "{ratios:?}");
    }

    #[test]
    fn inline_images_count_as_images_not_as_base64() {
        let url = format!("data:image/png;base64,{}", "A".repeat(300_000));
        let body = serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
        .to_string();
        let tokens = estimate(body.as_bytes(), "gpt-4o");
        assert!(
            (IMAGE_TOKENS..IMAGE_TOKENS + 50).contains(&tokens),
            "{tokens}"
        );
    }
}
