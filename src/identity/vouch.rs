//! Warden vouches for the agent downstream: `X-Agent-Identity`, a short-lived EdDSA JWT signed
//! with Warden's own key (`server.identity_key_file`), for providers that opt in
//! (`identity_header: true`). Any service can check it against the admin port's JWKS.
//!
//! A token names the agent (`sub`, `owner`), Warden (`iss`) and the provider (`aud`), and lives
//! [`LIFETIME`]. One is minted per agent and provider and reused until [`REFRESH_BEFORE`] its
//! expiry, so a request pays a cache probe, not a signature.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use http::HeaderValue;
use serde_json::json;
use sha2::{Digest, Sha256};

/// How long a vouching token is valid.
pub const LIFETIME_SECS: i64 = 60;
/// A cached token is replaced when it has less than this left.
pub const REFRESH_BEFORE_SECS: i64 = 15;
/// Tokens kept (agent × provider pairs).
const CACHE_CAPACITY: usize = 20_000;

/// Warden's identity key and the tokens minted with it.
pub struct Voucher {
    key: SigningKey,
    /// RFC 7638 thumbprint of the public key: the JWT `kid` and the JWKS entry's.
    kid: String,
    issuer: String,
    minted: quick_cache::sync::Cache<(usize, usize), Arc<(HeaderValue, i64)>>,
}

impl std::fmt::Debug for Voucher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voucher")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Who a token vouches for, to whom.
pub struct Subject<'a> {
    pub agent: usize,
    pub agent_id: &'a str,
    pub owner: Option<&'a str>,
    pub provider: usize,
    pub provider_name: &'a str,
}

impl Voucher {
    /// Vouches with `key`, as `issuer` (this Warden instance).
    pub fn new(key: SigningKey, issuer: String) -> Self {
        let kid = thumbprint(&key);
        Voucher {
            key,
            kid,
            issuer,
            minted: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }

    /// The `X-Agent-Identity` value for `subject` at `now` (Unix seconds).
    pub fn header(&self, subject: &Subject<'_>, now: i64) -> Option<HeaderValue> {
        let slot = (subject.agent, subject.provider);
        if let Some(cached) = self.minted.get(&slot) {
            if cached.1 - now > REFRESH_BEFORE_SECS {
                return Some(cached.0.clone());
            }
        }
        let expires = now + LIFETIME_SECS;
        let claims = json!({
            "sub": subject.agent_id,
            "owner": subject.owner,
            "iss": self.issuer,
            "aud": subject.provider_name,
            "iat": now,
            "exp": expires,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = sign(&self.key, &header, &claims).ok()?;
        let mut value = HeaderValue::from_str(&token).ok()?;
        value.set_sensitive(true);
        self.minted.insert(slot, Arc::new((value.clone(), expires)));
        Some(value)
    }

    /// The signing key (delegated tokens are signed with it too).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key as a JWK Set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }]})
    }
}

fn sign(
    key: &SigningKey,
    header: &jsonwebtoken::Header,
    claims: &serde_json::Value,
) -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(header, claims, &key).map_err(|e| e.to_string())
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key (SHA-256, base64url).
pub(super) fn thumbprint(key: &SigningKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_until_near_expiry() {
        let voucher = Voucher::new(SigningKey::from_bytes(&[5; 32]), "warden/pod-a".into());
        let subject = Subject {
            agent: 0,
            agent_id: "bot",
            owner: Some("team-a"),
            provider: 1,
            provider_name: "openai",
        };
        let first = voucher.header(&subject, 1_000).unwrap();
        assert_eq!(voucher.header(&subject, 1_040).unwrap(), first);
        let renewed = voucher.header(&subject, 1_046).unwrap();
        assert_ne!(renewed, first);
        let token = renewed.to_str().unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_audience(&["openai"]);
        validation.validate_exp = false;
        let public = voucher.key.verifying_key().to_bytes();
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_ed_der(&public),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "bot");
        assert_eq!(claims["owner"], "team-a");
        assert_eq!(claims["iss"], "warden/pod-a");
        assert_eq!(claims["exp"], 1_046 + LIFETIME_SECS);
        assert_eq!(voucher.jwks()["keys"][0]["kid"], voucher.kid);
    }
}
