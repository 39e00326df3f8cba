//! Agents' `keys:` → one [`KeyIndex`] for the whole policy.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::Spanned;

use super::api_key::{parse_hash, KeyIndex};
use super::spec::KeySpec;
use crate::problem::{Origin, Problems};

/// Gathers every agent's API keys, checking that ids and hashes are unique across the policy.
///
/// `'f` is the lifetime of the parsed policy files the ids are borrowed from.
#[derive(Default)]
pub struct Keys<'f> {
    ids: HashMap<&'f str, Origin<'f>>,
    index: KeyIndex,
}

impl<'f> Keys<'f> {
    /// Adds the keys of agent number `agent`, declared in `path`; `revoked` says whether a key
    /// id is listed under `revocations.keys` (folded in, so a request pays nothing for it).
    pub fn add(
        &mut self,
        path: &'f Path,
        p: &mut Problems<'_>,
        agent: usize,
        keys: &'f [Spanned<KeySpec>],
        revoked: &dyn Fn(&str) -> bool,
    ) {
        for key in keys {
            let key_id = &key.value.id;
            if let Some(first) = self.ids.get(key_id.value.as_str()) {
                let message = format!("key id `{}` is already used at {first}", key_id.value);
                p.error(key_id, message);
                continue;
            }
            self.ids.insert(&key_id.value, Origin::of(path, key_id));
            let sha = &key.value.sha256;
            let Some(hash) = parse_hash(&sha.value) else {
                p.error(sha, "`sha256` must be 64 hex digits (the SHA-256 of the whole key; `warden keys new` prints it)");
                continue;
            };
            let expires_at = match &key.value.expires_at {
                Some(at) => match p.timestamp(at, "expires_at") {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            let is_revoked = revoked(&key_id.value);
            if !self
                .index
                .insert(hash, agent, key_id.value.clone(), expires_at, is_revoked)
            {
                p.error(sha, "this key hash is already used by another key");
            }
        }
    }

    /// Whether some agent declares a key with this id.
    pub fn defines(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// The index of every key added.
    pub fn finish(self) -> KeyIndex {
        self.index
    }
}
