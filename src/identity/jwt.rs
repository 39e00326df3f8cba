//! EdDSA JWTs (RFC 8037) from trusted issuers, and the cache that makes a repeated token cost a
//! hash and a map probe instead of a signature check.
//!
//! A token is accepted when: its header says `EdDSA`; its `iss` names a configured issuer (a
//! token without `iss` is tried against each issuer's key); the signature verifies with that
//! issuer's key; `aud` is the issuer's configured audience; `exp` is present and not passed,
//! `nbf` and `iat` are not in the future (each with the issuer's clock-skew allowance); `sub` is
//! an agent of the policy. Time is the request's arrival, not the library's clock.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::delegation::{self, Actor, Delegation, Lineage, Scope};
use crate::globs::Globs;

/// Default allowance for issuer and Warden clocks that disagree.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;
/// Verified tokens kept per policy snapshot.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// A configured issuer.
pub struct Issuer {
    pub name: String,
    key: DecodingKey,
    validation: Validation,
    clock_skew: i64,
    /// The agents it may mint for (`None`: all).
    agents: Option<crate::globs::Globs>,
    /// Warden itself, for delegated tokens: its tokens must carry `act`, `scope` and their
    /// lineage, and they narrow what the agent may use to their scope.
    delegates: bool,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("name", &self.name).finish()
    }
}

impl Issuer {
    /// An issuer of tokens for `audience`, verified with the raw Ed25519 public key `key`.
    pub fn new(name: String, key: &[u8; 32], audience: &str, clock_skew_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Times are checked against the request's arrival (an injected clock), below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.set_audience(&[audience]);
        Issuer {
            name,
            // For Ed25519, jsonwebtoken's "DER" key is the raw 32-byte public key.
            key: DecodingKey::from_ed_der(key),
            validation,
            clock_skew: i64::try_from(clock_skew_secs).unwrap_or(i64::MAX),
            agents: None,
            delegates: false,
        }
    }

    /// Warden as the issuer of delegated tokens (token exchange), verified with the public
    /// half of its identity key.
    pub fn delegating(key: &[u8; 32]) -> Self {
        let issuer = delegation::ISSUER;
        let mut issuer = Issuer::new(issuer.into(), key, issuer, DEFAULT_CLOCK_SKEW_SECS);
        issuer
            .validation
            .set_required_spec_claims(&["exp", "aud", "sub", "jti"]);
        Issuer {
            delegates: true,
            ..issuer
        }
    }

    /// The same issuer, trusted only for agents matching `agents` (`None`: every agent).
    pub fn for_agents(self, agents: Option<crate::globs::Globs>) -> Self {
        Issuer { agents, ..self }
    }

    /// Whether this issuer may mint tokens for agent `id`.
    pub fn may_mint_for(&self, id: &str) -> bool {
        self.agents.as_ref().is_none_or(|globs| globs.matches(id))
    }
}

/// Every configured issuer of a snapshot, with its verified-token cache.
pub struct Issuers {
    list: Vec<Issuer>,
    cache: quick_cache::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

impl Default for Issuers {
    fn default() -> Self {
        Issuers::new(Vec::new())
    }
}

/// What a verified token says, kept in the cache until the token expires (or the policy is
/// reloaded: the cache belongs to the snapshot).
#[derive(Debug)]
pub struct VerifiedToken {
    pub issuer: usize,
    pub subject: Box<str>,
    /// `exp` (Unix seconds) and the issuer's clock skew.
    pub expires: i64,
    pub not_before: Option<i64>,
    pub clock_skew: i64,
    /// `jti`, checked against `revocations.tokens` on every request.
    pub token_id: Option<Box<str>>,
    /// The `models` claim: the agent's allowlist is narrowed to it (never widened).
    pub models: Option<Globs>,
    /// A delegated token's actors, scope and lineage (tokens Warden issued by exchange).
    pub delegation: Option<Delegation>,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, not EdDSA, no such issuer, wrong audience, missing claims: the text says which.
    Invalid(&'static str),
    /// The signature does not verify with the issuer's key.
    BadSignature,
    Expired,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: f64,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
    models: Option<Vec<String>>,
    act: Option<Actor>,
    scope: Option<String>,
    warden: Option<Lineage>,
}

#[derive(Deserialize)]
struct IssuerClaim {
    iss: Option<String>,
}

/// Whether a bearer secret is shaped like a JWT (API keys never contain dots).
pub fn looks_like_jwt(secret: &[u8]) -> bool {
    secret.starts_with(b"eyJ") && secret.iter().filter(|&&b| b == b'.').count() == 2
}

impl Issuers {
    pub fn new(list: Vec<Issuer>) -> Self {
        Issuers {
            list,
            cache: quick_cache::sync::Cache::new(TOKEN_CACHE_CAPACITY),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The issuer at `index`.
    pub fn get(&self, index: usize) -> Option<&Issuer> {
        self.list.get(index)
    }

    /// The verified claims of `token` at `now` (Unix seconds): from the cache when this exact
    /// token was verified before, else checked in full and cached.
    pub fn verify(&self, token: &[u8], now: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let verified = match self.cache.get(&digest) {
            Some(hit) => hit,
            None => {
                let fresh = Arc::new(self.verify_uncached(token)?);
                self.cache.insert(digest, Arc::clone(&fresh));
                fresh
            }
        };
        if now >= verified.expires.saturating_add(verified.clock_skew) {
            self.cache.remove(&digest);
            return Err(TokenError::Expired);
        }
        if verified
            .not_before
            .is_some_and(|nbf| now.saturating_add(verified.clock_skew) < nbf)
        {
            return Err(TokenError::Invalid("the token is not valid yet (nbf)"));
        }
        Ok(verified)
    }

    fn verify_uncached(&self, token: &[u8]) -> Result<VerifiedToken, TokenError> {
        let text = std::str::from_utf8(token).map_err(|_| TokenError::Invalid("not a JWT"))?;
        let issuer_claim = unverified_issuer(text)?;
        let candidates: Vec<usize> = match &issuer_claim {
            Some(name) => {
                let index = self
                    .list
                    .iter()
                    .position(|i| i.name == *name)
                    .ok_or(TokenError::Invalid("unknown issuer (iss)"))?;
                vec![index]
            }
            None => (0..self.list.len()).collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::Invalid("no issuer is trusted"));
        }
        let mut last = TokenError::BadSignature;
        for index in candidates {
            let issuer = &self.list[index];
            match jsonwebtoken::decode::<Claims>(text, &issuer.key, &issuer.validation) {
                Ok(data) => return verified(index, issuer, data.claims),
                Err(e) => last = classify(&e),
            }
            if last != TokenError::BadSignature {
                break;
            }
        }
        Err(last)
    }
}

fn verified(index: usize, issuer: &Issuer, claims: Claims) -> Result<VerifiedToken, TokenError> {
    let delegation = if issuer.delegates {
        let (Some(act), Some(scope), Some(lineage)) = (&claims.act, &claims.scope, &claims.warden)
        else {
            return Err(TokenError::Invalid(
                "a delegated token carries `act`, `scope` and its lineage",
            ));
        };
        let scope = Scope::parse(scope).map_err(|_| TokenError::Invalid("bad delegated scope"))?;
        let models = Globs::compile(scope.models.iter().map(String::as_str))
            .map_err(|_| TokenError::Invalid("bad delegated scope"))?;
        Some(Delegation {
            actors: act.chain(),
            scope,
            models,
            ancestors: lineage
                .ancestors
                .iter()
                .map(|a| a.as_str().into())
                .collect(),
            root_key: lineage.key.as_deref().map(Into::into),
        })
    } else {
        None
    };
    let models = match claims.models {
        Some(models) => Some(
            Globs::compile(models.iter().map(String::as_str))
                .map_err(|_| TokenError::Invalid("bad glob in the models claim"))?,
        ),
        None => None,
    };
    let iat = claims.iat.map(seconds);
    Ok(VerifiedToken {
        issuer: index,
        subject: claims.sub.into(),
        expires: seconds(claims.exp),
        not_before: claims.nbf.map(seconds).max(iat),
        clock_skew: issuer.clock_skew,
        token_id: claims.jti.map(Into::into),
        models: delegation
            .as_ref()
            .map_or(models, |d| Some(d.models.clone())),
        delegation,
    })
}

/// A NumericDate (may be fractional) as whole seconds, rounded down.
fn seconds(date: f64) -> i64 {
    date.floor() as i64
}

/// `iss` from the payload, before verification (only to pick the key).
fn unverified_issuer(token: &str) -> Result<Option<String>, TokenError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or(TokenError::Invalid("not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid("the payload is not base64url"))?;
    let claim: IssuerClaim = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Invalid("the payload is not a JSON object"))?;
    Ok(claim.iss)
}

fn classify(e: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience (aud)"),
        ErrorKind::MissingRequiredClaim(_) => {
            TokenError::Invalid("missing a required claim (exp, aud, sub)")
        }
        ErrorKind::InvalidAlgorithm => TokenError::Invalid("the algorithm must be EdDSA"),
        _ => TokenError::Invalid("malformed token"),
    }
}

/// A token to mint (`warden token mint`, tests, benchmarks).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    pub sub: String,
    pub aud: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// Signs `token` with an issuer's Ed25519 key: a compact EdDSA JWT.
pub fn mint(key: &ed25519_dalek::SigningKey, token: &NewToken) -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::EdDSA), token, &key)
        .map_err(|e| format!("cannot sign the token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[9; 32])
    }

    fn token(iss: Option<&str>, exp: i64) -> NewToken {
        NewToken {
            sub: "bot".into(),
            aud: "warden".into(),
            iss: iss.map(Into::into),
            iat: 1_000,
            exp,
            jti: Some("t-1".into()),
            models: Some(vec!["gpt-4o-mini".into()]),
        }
    }

    fn issuers() -> Issuers {
        let public = key().verifying_key().to_bytes();
        Issuers::new(vec![
            Issuer::new("other".into(), &[1; 32], "warden", 60),
            Issuer::new("corp".into(), &public, "warden", 60),
        ])
    }

    #[test]
    fn a_minted_token_verifies_and_is_cached() {
        let jwt = mint(&key(), &token(Some("corp"), 2_000)).unwrap();
        let issuers = issuers();
        let verified = issuers.verify(jwt.as_bytes(), 1_500).unwrap();
        assert_eq!((verified.issuer, &*verified.subject), (1, "bot"));
        assert_eq!(verified.token_id.as_deref(), Some("t-1"));
        assert!(verified.models.as_ref().unwrap().matches("gpt-4o-mini"));
        let again = issuers.verify(jwt.as_bytes(), 1_500).unwrap();
        assert!(
            Arc::ptr_eq(&verified, &again),
            "the second verification is a cache hit"
        );
        // Without `iss`, the issuer whose key verifies is found.
        let anonymous = mint(&key(), &token(None, 2_000)).unwrap();
        assert_eq!(
            issuers.verify(anonymous.as_bytes(), 1_500).unwrap().issuer,
            1
        );
    }

    #[test]
    fn time_audience_issuer_and_signature_are_checked() {
        let issuers = issuers();
        let jwt = mint(&key(), &token(Some("corp"), 2_000)).unwrap();
        assert!(
            issuers.verify(jwt.as_bytes(), 2_059).is_ok(),
            "within the skew"
        );
        assert_eq!(
            issuers.verify(jwt.as_bytes(), 2_060).err(),
            Some(TokenError::Expired)
        );
        let early = NewToken {
            iat: 5_000,
            ..token(Some("corp"), 9_000)
        };
        let early = mint(&key(), &early).unwrap();
        assert!(matches!(
            issuers.verify(early.as_bytes(), 1_000),
            Err(TokenError::Invalid(_))
        ));
        let wrong_aud = NewToken {
            aud: "elsewhere".into(),
            ..token(Some("corp"), 2_000)
        };
        let wrong_aud = mint(&key(), &wrong_aud).unwrap();
        assert!(matches!(
            issuers.verify(wrong_aud.as_bytes(), 1_500),
            Err(TokenError::Invalid(_))
        ));
        let unknown = mint(&key(), &token(Some("nobody"), 2_000)).unwrap();
        assert!(matches!(
            issuers.verify(unknown.as_bytes(), 1_500),
            Err(TokenError::Invalid(_))
        ));
        let forged = mint(
            &ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
            &token(Some("corp"), 2_000),
        )
        .unwrap();
        assert_eq!(
            issuers.verify(forged.as_bytes(), 1_500).err(),
            Some(TokenError::BadSignature)
        );
        let mut tampered = jwt.clone();
        tampered.insert(tampered.rfind('.').unwrap() - 2, 'A');
        assert!(issuers.verify(tampered.as_bytes(), 1_500).is_err());
        assert!(issuers.verify(b"eyJ.not.ajwt", 1_500).is_err());
    }
}
