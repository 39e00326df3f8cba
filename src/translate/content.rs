//! A content field both APIs write either as a plain string or as a list of typed parts.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// `"hello"` or `[{"type": "text", "text": "hello"}, …]`, read with the parts' own errors (an
/// unknown part type is named as such, not as "no variant matched").
#[derive(Debug, Clone, PartialEq)]
pub enum TextOrParts<P> {
    Text(String),
    Parts(Vec<P>),
}

impl<P> Default for TextOrParts<P> {
    fn default() -> Self {
        TextOrParts::Text(String::new())
    }
}

impl<P: Serialize> Serialize for TextOrParts<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TextOrParts::Text(text) => s.serialize_str(text),
            TextOrParts::Parts(parts) => parts.serialize(s),
        }
    }
}

impl<'de, P: Deserialize<'de>> Deserialize<'de> for TextOrParts<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextOrPartsVisitor(PhantomData))
    }
}

struct TextOrPartsVisitor<P>(PhantomData<P>);

impl<'de, P: Deserialize<'de>> Visitor<'de> for TextOrPartsVisitor<P> {
    type Value = TextOrParts<P>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of content parts")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(TextOrParts::Text(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(TextOrParts::Text(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(part) = seq.next_element()? {
            parts.push(part);
        }
        Ok(TextOrParts::Parts(parts))
    }
}

/// A `"type"` member that admits one value (`"function"`): the APIs name the only kind of tool
/// call there is, and a request naming another kind is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    #[default]
    Function,
}
