//! Who is calling: one [`authenticate`] step over every credential kind Warden accepts.
//!
//! Requests enter as header values; they leave as a [`Principal`] (the agent, the credential
//! kind and id, what the credential narrows) or a [`Rejection`]. Secrets are hashed or verified
//! at once and never stored, logged or echoed.

pub mod api_key;
pub mod compile;
pub mod delegation;
pub mod exchange;
pub mod jwt;
pub mod principal;
pub mod signature;
pub mod spec;
pub mod vouch;

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use http::HeaderMap;
use jiff::Timestamp;

use api_key::{KeyIndex, KeyRejection};
use jwt::{Issuers, TokenError};
pub use principal::{Credential, Principal, Rejection};
pub use signature::{NonceCache, Target};

/// Every credential a snapshot accepts.
#[derive(Debug, Default)]
pub struct Identities {
    pub keys: KeyIndex,
    pub public_keys: PublicKeys,
    pub issuers: Issuers,
    /// Agent index by id (a token's `sub`).
    pub agents: HashMap<Box<str>, usize>,
    /// Warden's own key, when `server.identity_key_file` is set (and read).
    pub voucher: Option<vouch::Voucher>,
    /// How far token exchange lets agents delegate (`delegation:`).
    pub delegation: delegation::Settings,
    /// API key and public key ids under `revocations.keys` (a delegated token dies with the
    /// key its chain started from).
    pub revoked_keys: std::collections::HashSet<Box<str>>,
    /// Key and token revocations pushed through the fleet's Redis, on top of the policy's.
    pub fleet: std::sync::Arc<crate::fleet::FleetState>,
}

impl Identities {
    /// Whether a key id (API key or public key) is revoked through the fleet.
    fn pushed_key_revoked(&self, id: &str) -> bool {
        let pushed = self.fleet.pushed();
        !pushed.is_empty() && pushed.key_revoked(id)
    }

    /// Whether a token id is revoked through the fleet.
    fn pushed_token_revoked(&self, jti: &str) -> bool {
        let pushed = self.fleet.pushed();
        !pushed.is_empty() && pushed.token_revoked(jti)
    }
}

/// An agent's Ed25519 public key (HTTP message signatures).
#[derive(Debug)]
pub struct PublicKey {
    pub id: Box<str>,
    pub agent: usize,
    pub key: VerifyingKey,
    /// Listed under `revocations.keys`.
    pub revoked: bool,
}

/// Every public key of a snapshot, by index and by key id.
#[derive(Debug, Default)]
pub struct PublicKeys {
    list: Vec<PublicKey>,
    by_id: HashMap<Box<str>, usize>,
}

impl PublicKeys {
    pub fn insert(&mut self, key: PublicKey) {
        self.by_id.insert(key.id.clone(), self.list.len());
        self.list.push(key);
    }

    /// The key with id `id`, with its index.
    pub fn find(&self, id: &str) -> Option<(usize, &PublicKey)> {
        let index = *self.by_id.get(id)?;
        Some((index, &self.list[index]))
    }

    pub fn get(&self, index: usize) -> Option<&PublicKey> {
        self.list.get(index)
    }

    /// The keys of agent number `agent`, in policy order.
    pub fn of_agent(&self, agent: usize) -> impl Iterator<Item = &PublicKey> {
        self.list.iter().filter(move |k| k.agent == agent)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// What identity reads besides the request: the time, revoked token ids, seen nonces.
pub struct Checks<'a> {
    pub now: Timestamp,
    /// Whether a JWT id is listed under `revocations.tokens`.
    pub token_revoked: &'a dyn Fn(&str) -> bool,
    pub nonces: &'a NonceCache,
}

/// Identifies the caller from its request: an HTTP message signature, else the bearer
/// credential (a JWT or an API key).
///
/// A refused credential that still names an agent (revoked, expired, replayed) comes back with
/// that principal, so metrics and audit can say whose credential it was. A signed request that
/// also carries a bearer credential is ambiguous.
pub fn authenticate(
    ids: &Identities,
    request: &Target<'_>,
    checks: &Checks<'_>,
) -> Result<Principal, (Rejection, Option<Principal>)> {
    let headers = request.headers;
    let now = checks.now;
    let token_revoked = checks.token_revoked;
    let presented = presented(headers).map_err(|_| (Rejection::Ambiguous, None))?;
    if signature::is_signed(headers) {
        if presented.is_some() {
            return Err((Rejection::Ambiguous, None));
        }
        let principal =
            signature::verify(&ids.public_keys, request, now.as_second(), checks.nonces)?;
        let revoked = match principal.credential {
            Credential::Signature(index) => ids
                .public_keys
                .get(index)
                .is_some_and(|key| ids.pushed_key_revoked(&key.id)),
            _ => false,
        };
        if revoked {
            return Err((Rejection::Revoked, Some(principal)));
        }
        return Ok(principal);
    }
    let presented = presented.ok_or((Rejection::Missing, None))?;
    if jwt::looks_like_jwt(presented.secret) {
        return from_token(ids, presented.secret, now, token_revoked);
    }
    let key = ids
        .keys
        .find(presented.secret)
        .ok_or((Rejection::Invalid("the API key is not valid"), None))?;
    let principal = Principal {
        agent: key.agent,
        credential: Credential::ApiKey(key.hash),
    };
    if ids.pushed_key_revoked(&key.key_id) {
        return Err((Rejection::Revoked, Some(principal)));
    }
    match key.check(now) {
        Ok(()) => Ok(principal),
        Err(KeyRejection::Revoked) => Err((Rejection::Revoked, Some(principal))),
        Err(KeyRejection::Expired) => Err((Rejection::Expired, Some(principal))),
    }
}

fn from_token(
    ids: &Identities,
    token: &[u8],
    now: Timestamp,
    token_revoked: &dyn Fn(&str) -> bool,
) -> Result<Principal, (Rejection, Option<Principal>)> {
    let verified = ids.issuers.verify(token, now.as_second()).map_err(|e| {
        let rejection = match e {
            TokenError::Invalid(why) => Rejection::Invalid(why),
            TokenError::BadSignature => {
                Rejection::BadSignature("the token's signature does not verify")
            }
            TokenError::Expired => Rejection::Expired,
        };
        (rejection, None)
    })?;
    let agent = *ids.agents.get(&verified.subject).ok_or((
        Rejection::Invalid("the token's subject is not an agent"),
        None,
    ))?;
    let scoped = ids
        .issuers
        .get(verified.issuer)
        .is_some_and(|issuer| issuer.may_mint_for(&verified.subject));
    if !scoped {
        return Err((
            Rejection::Invalid("the token's issuer may not mint tokens for this agent"),
            None,
        ));
    }
    let jti_revoked = |jti: &str| token_revoked(jti) || ids.pushed_token_revoked(jti);
    let key_revoked = |key: &str| ids.revoked_keys.contains(key) || ids.pushed_key_revoked(key);
    // A delegated token dies with any token up its chain and with the key it started from.
    let lineage_revoked = verified.delegation.as_ref().is_some_and(|d| {
        d.ancestors.iter().any(|jti| jti_revoked(jti))
            || d.root_key.as_deref().is_some_and(key_revoked)
    });
    let revoked = lineage_revoked || verified.token_id.as_deref().is_some_and(jti_revoked);
    let principal = Principal {
        agent,
        credential: Credential::Jwt(verified),
    };
    if revoked {
        return Err((Rejection::Revoked, Some(principal)));
    }
    Ok(principal)
}

/// Where the credential was found; later kinds (JWT, HTTP signatures) add variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    Authorization,
    XApiKey,
    ProxyAuthorization,
}

/// The credential an agent presented, borrowed from the request headers.
pub struct Presented<'a> {
    pub secret: &'a [u8],
    pub source: CredentialSource,
}

/// Two credentials that disagree (or one header sent twice): Warden refuses to pick one,
/// because a provider or a later proxy might read the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;

/// Finds the agent credential: `Authorization: Bearer` or `x-api-key`, else
/// `Proxy-Authorization` (HTTP_PROXY mode).
///
/// Never "the first one wins": a header sent twice, or `Authorization` and `x-api-key` that
/// carry different secrets, is [`Ambiguous`]. A present but malformed `Authorization` is not
/// skipped in favour of another header, so Warden never judges a different credential than the
/// one the request leads with.
pub fn presented(headers: &HeaderMap) -> Result<Option<Presented<'_>>, Ambiguous> {
    let authorization = single(headers, http::header::AUTHORIZATION.as_str())?;
    let x_api_key = single(headers, "x-api-key")?;
    let proxy = single(headers, http::header::PROXY_AUTHORIZATION.as_str())?;
    let from_authorization = authorization.map(|v| {
        bearer(v).map(|secret| Presented {
            secret,
            source: CredentialSource::Authorization,
        })
    });
    let from_x_api_key = x_api_key.map(|v| {
        let secret = v.trim_ascii();
        (!secret.is_empty()).then_some(Presented {
            secret,
            source: CredentialSource::XApiKey,
        })
    });
    match (from_authorization, from_x_api_key) {
        (Some(Some(a)), Some(Some(x))) if a.secret != x.secret => Err(Ambiguous),
        (Some(a), Some(Some(_))) if a.is_none() => Err(Ambiguous),
        (Some(found), _) => Ok(found),
        (None, Some(found)) => Ok(found),
        (None, None) => Ok(proxy.and_then(bearer).map(|secret| Presented {
            secret,
            source: CredentialSource::ProxyAuthorization,
        })),
    }
}

/// The one value of header `name`, if present; sent twice is ambiguous.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, Ambiguous> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Ambiguous);
    }
    Ok(first.map(|v| v.as_bytes()))
}

fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme_len = b"bearer ".len();
    if value.len() <= scheme_len || !value[..scheme_len].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[scheme_len..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    fn found(h: &HeaderMap) -> Option<Presented<'_>> {
        presented(h).unwrap()
    }

    #[test]
    fn bearer_is_case_insensitive_and_trimmed() {
        let h = headers(&[("authorization", "bEaReR   sk-1 ")]);
        let p = found(&h).unwrap();
        assert_eq!(p.secret, b"sk-1");
        assert_eq!(p.source, CredentialSource::Authorization);
    }

    #[test]
    fn x_api_key_and_proxy_authorization() {
        let h = headers(&[("x-api-key", "sk-2")]);
        assert_eq!(found(&h).unwrap().source, CredentialSource::XApiKey);
        let h = headers(&[("proxy-authorization", "Bearer sk-3")]);
        assert_eq!(found(&h).unwrap().secret, b"sk-3");
    }

    #[test]
    fn malformed_authorization_is_not_skipped() {
        let h = headers(&[("authorization", "Basic abc"), ("x-api-key", "sk-2")]);
        assert_eq!(presented(&h).err(), Some(Ambiguous));
        assert!(found(&headers(&[("authorization", "Bearer ")])).is_none());
        let h = headers(&[("authorization", "Basic abc")]);
        assert!(found(&h).is_none());
    }

    #[test]
    fn credentials_that_disagree_or_repeat_are_ambiguous() {
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(presented(&twice).err(), Some(Ambiguous));
        let same_twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]);
        assert_eq!(presented(&same_twice).err(), Some(Ambiguous));
        let disagree = headers(&[("authorization", "Bearer a"), ("x-api-key", "b")]);
        assert_eq!(presented(&disagree).err(), Some(Ambiguous));
        let keys = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(presented(&keys).err(), Some(Ambiguous));
        let agree = headers(&[("authorization", "Bearer a"), ("x-api-key", "a")]);
        assert_eq!(found(&agree).unwrap().secret, b"a");
    }
}
