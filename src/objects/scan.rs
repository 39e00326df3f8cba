//! The objects a JSON request body names, found in the same pass that reads its `model`.
//!
//! A body names an object by a member whose key says what it is (`previous_response_id`,
//! `conversation`, `file_id`, `vector_store_ids`, …), at any depth: a file is named inside a
//! message's content part, a vector store inside a tool. Keys are compared after JSON
//! unescaping (`"file\u005fid"` is `file_id` to the provider, so to Warden too). Members
//! that hold the agent's own free-form data or schemas (`metadata`, tool `parameters`, …)
//! and citations of files a search returned (`annotations`) are not searched.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Kind, ObjectRef};

/// The kind of object a member's string value (or array of strings) names.
fn named_by(key: &str) -> Option<Kind> {
    Some(match key {
        "previous_response_id" => Kind::Response,
        "conversation" => Kind::Conversation,
        "file_id" | "file_ids" | "input_file_id" | "training_file" | "validation_file" => {
            Kind::File
        }
        "vector_store_id" | "vector_store_ids" => Kind::VectorStore,
        "thread_id" => Kind::Thread,
        "assistant_id" => Kind::Assistant,
        "container" => Kind::Container,
        _ => return None,
    })
}

/// Members whose content is the agent's data or a schema, not references.
const OPAQUE: &[&str] = &[
    "metadata",
    "annotations",
    "parameters",
    "input_schema",
    "schema",
];

/// An object key, borrowed from the body unless it had escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

/// The value of the member `key`: searched for references into `found`.
pub struct Member<'k, 'r, 'de> {
    pub key: &'k str,
    pub found: &'r mut Vec<ObjectRef<'de>>,
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Some(kind) = named_by(self.key) {
            d.deserialize_any(Named {
                kind,
                found: self.found,
            })
        } else if OPAQUE.contains(&self.key) {
            <IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| ())
        } else {
            d.deserialize_any(Search { found: self.found })
        }
    }
}

/// Visitor methods for the scalars a search passes over (numbers, booleans, `null`).
macro_rules! skip_scalars {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

pub(crate) use skip_scalars;

/// Any value: its members are searched.
struct Search<'r, 'de> {
    found: &'r mut Vec<ObjectRef<'de>>,
}

impl<'de> Visitor<'de> for Search<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            map.next_value_seed(Member {
                key: &key,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Member {
                key: "",
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    skip_scalars!();
}

/// The value of a member that names objects of `kind`: a string id, an array of them, or an
/// object whose `id` is one (`"conversation": {"id": "conv_…"}`).
struct Named<'r, 'de> {
    kind: Kind,
    found: &'r mut Vec<ObjectRef<'de>>,
}

impl<'de> DeserializeSeed<'de> for Named<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Named<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object id")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.push(Cow::Borrowed(v));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.push(Cow::Owned(v.to_owned()));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.push(Cow::Owned(v));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Named {
                kind: self.kind,
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "id" {
                map.next_value_seed(Named {
                    kind: self.kind,
                    found: &mut *self.found,
                })?;
            } else {
                map.next_value_seed(Member {
                    key: &key,
                    found: &mut *self.found,
                })?;
            }
        }
        Ok(())
    }

    skip_scalars!();
}

impl<'de> Named<'_, 'de> {
    fn push(self, id: Cow<'de, str>) {
        if !id.is_empty() {
            self.found.push(ObjectRef {
                kind: self.kind,
                id,
            });
        }
    }
}

/// Every object `body` (JSON) names, for tests and tools; the proxy gets them from its one
/// body pass.
pub fn named_in(body: &[u8]) -> Result<Vec<ObjectRef<'_>>, serde_json::Error> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Member {
        key: "",
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(body: &str) -> Vec<(Kind, String)> {
        named_in(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.id.into_owned()))
            .collect()
    }

    #[test]
    fn finds_references_at_any_depth() {
        let body = r#"{"model":"m","previous_response_id":"resp_1","conversation":{"id":"conv_2"},
            "input":[{"role":"user","content":[{"type":"input_file","file_id":"file-3"}]}],
            "tools":[{"type":"file_search","vector_store_ids":["vs_4","vs_5"]},
                     {"type":"code_interpreter","container":{"type":"auto","file_ids":["file-6"]}}]}"#;
        assert_eq!(
            ids(body),
            vec![
                (Kind::Response, "resp_1".into()),
                (Kind::Conversation, "conv_2".into()),
                (Kind::File, "file-3".into()),
                (Kind::VectorStore, "vs_4".into()),
                (Kind::VectorStore, "vs_5".into()),
                (Kind::File, "file-6".into()),
            ]
        );
    }

    #[test]
    fn keys_are_read_unescaped_and_data_is_not_searched() {
        assert_eq!(
            ids(r#"{"file\u005fid":"file-1","conversation":"conv_\u0031"}"#),
            vec![
                (Kind::File, "file-1".into()),
                (Kind::Conversation, "conv_1".into())
            ]
        );
        let data = r#"{"metadata":{"file_id":"mine"},
            "tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"file_id":{"type":"string"}}}}}],
            "input":[{"content":[{"type":"output_text","annotations":[{"type":"file_citation","file_id":"file-x"}]}]}],
            "conversation":null,"file_id":7,"text":"\"file_id\":\"file-9\""}"#;
        assert_eq!(ids(data), vec![]);
    }
}
