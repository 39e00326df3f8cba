//! Agents' `keys:` → one [`KeyIndex`] for the whole policy.

use std::collections::HashMap;
use std::path::Path;

use serde_saphyr::Spanned;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::api_key::{parse_hash, KeyIndex};
use super::jwt::{Issuer, Issuers, DEFAULT_CLOCK_SKEW_SECS};
use super::spec::{IssuerSpec, KeySpec, PublicKeySpec};
use super::vouch::Voucher;
use super::{Identities, PublicKey, PublicKeys};
use crate::environment::Secrets;
use crate::globs::GlobCache;
use crate::problem::{Origin, Problems};

/// Gathers every agent's API keys and public keys, checking that key ids (of both kinds) and
/// hashes are unique across the policy.
///
/// `'f` is the lifetime of the parsed policy files the ids are borrowed from.
#[derive(Default)]
pub struct Keys<'f> {
    ids: HashMap<&'f str, Origin<'f>>,
    index: KeyIndex,
    public: PublicKeys,
    agents: HashMap<Box<str>, usize>,
    /// Ids of the keys listed under `revocations.keys`.
    revoked: std::collections::HashSet<Box<str>>,
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
            if !self.claim(path, p, key_id) {
                continue;
            }
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
            if is_revoked {
                self.revoked.insert(key_id.value.as_str().into());
            }
            if !self
                .index
                .insert(hash, agent, key_id.value.clone(), expires_at, is_revoked)
            {
                p.error(sha, "this key hash is already used by another key");
            }
        }
    }

    /// Records `key_id` as used, or reports where it already was: API key and public key ids
    /// share one namespace (`revocations.keys` takes either).
    fn claim(&mut self, path: &'f Path, p: &mut Problems<'_>, key_id: &'f Spanned<String>) -> bool {
        if let Some(first) = self.ids.get(key_id.value.as_str()) {
            let message = format!("key id `{}` is already used at {first}", key_id.value);
            p.error(key_id, message);
            return false;
        }
        self.ids.insert(&key_id.value, Origin::of(path, key_id));
        true
    }

    /// Adds the public keys of agent number `agent` (`id`).
    pub fn add_public(
        &mut self,
        path: &'f Path,
        p: &mut Problems<'_>,
        agent: usize,
        keys: &'f [Spanned<PublicKeySpec>],
        revoked: &dyn Fn(&str) -> bool,
    ) {
        for key in keys {
            let key_id = &key.value.id;
            if !self.claim(path, p, key_id) {
                continue;
            }
            let Some(public) = ed25519_key(p, &key.value.ed25519) else {
                continue;
            };
            let is_revoked = revoked(&key_id.value);
            if is_revoked {
                self.revoked.insert(key_id.value.as_str().into());
            }
            self.public.insert(PublicKey {
                id: key_id.value.as_str().into(),
                agent,
                key: public,
                revoked: is_revoked,
            });
        }
    }

    /// Records that agent number `index` has id `id` (tokens name agents by id).
    pub fn agent(&mut self, id: &str, index: usize) {
        self.agents.insert(id.into(), index);
    }

    /// Whether some agent declares a key (API or public) with this id.
    pub fn defines(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Every credential of the policy, with the issuers it trusts and Warden's own key.
    pub fn finish(
        self,
        mut issuers: Vec<Issuer>,
        voucher: Option<Voucher>,
        delegation: super::delegation::Settings,
        fleet: std::sync::Arc<crate::fleet::FleetState>,
    ) -> Identities {
        if let Some(voucher) = &voucher {
            issuers.push(Issuer::delegating(voucher.key().verifying_key().as_bytes()));
        }
        Identities {
            keys: self.index,
            public_keys: self.public,
            issuers: Issuers::new(issuers),
            agents: self.agents,
            voucher,
            delegation,
            revoked_keys: self.revoked,
            fleet,
        }
    }
}

/// Warden's identity key from `server.identity_key_file`: `Ok(None)` where files are not read
/// (`warden check`), `Err(())` when it cannot be used (reported).
#[allow(clippy::result_unit_err)]
pub fn voucher(
    p: &mut Problems<'_>,
    file: &Spanned<String>,
    secrets: &dyn Secrets,
) -> Result<Option<Voucher>, ()> {
    let Ok(read) = secrets.file(file.value.as_ref()) else {
        return Ok(None);
    };
    let pem = read
        .map_err(|e| e.to_string())
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not text".to_string()))
        .and_then(|text| {
            SigningKey::from_pkcs8_pem(&text).map_err(|_| {
                "not a PKCS#8 PEM Ed25519 private key (`warden keygen` writes one)".to_string()
            })
        });
    match pem {
        Ok(key) => {
            let host = secrets
                .env_var("HOSTNAME")
                .ok()
                .flatten()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "warden".into());
            Ok(Some(Voucher::new(key, format!("warden/{host}"))))
        }
        Err(e) => {
            p.error(
                file,
                format!("cannot use `identity_key_file` {}: {e}", file.value),
            );
            Err(())
        }
    }
}

impl IssuerSpec {
    /// The issuer `name`, or `None` with the problems reported.
    pub fn compile(&self, name: &Spanned<String>, p: &mut Problems<'_>) -> Option<Issuer> {
        let key = ed25519_key(p, &self.ed25519);
        if self.audience.value.trim().is_empty() {
            p.error(&self.audience, "`audience` must not be empty");
            return None;
        }
        let skew = self
            .clock_skew_secs
            .as_ref()
            .map_or(DEFAULT_CLOCK_SKEW_SECS, |s| s.value);
        let agents = match &self.agents {
            Some(globs) => Some(GlobCache::default().compile(p, globs, "issuer agent")?),
            None => None,
        };
        Some(
            Issuer::new(
                name.value.clone(),
                &key?.to_bytes(),
                &self.audience.value,
                skew,
            )
            .for_agents(agents),
        )
    }
}

/// A raw Ed25519 public key in base64 (standard or URL-safe, padded or not), checked to be a
/// valid curve point.
fn ed25519_key(p: &mut Problems<'_>, text: &Spanned<String>) -> Option<VerifyingKey> {
    let value = text.value.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(value).ok());
    let Some(bytes) = bytes else {
        p.error(
            text,
            "`ed25519` must be base64 of a 32-byte Ed25519 public key",
        );
        return None;
    };
    let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        p.error(
            text,
            format!("`ed25519` must be 32 bytes, got {}", bytes.len()),
        );
        return None;
    };
    let key = VerifyingKey::from_bytes(&raw).ok();
    if key.is_none() {
        p.error(text, "`ed25519` is not a valid Ed25519 public key");
    }
    key
}
