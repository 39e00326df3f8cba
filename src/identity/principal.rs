//! Who is calling, as identity hands it to the rest of the request: the agent, the credential
//! that proved it (kind and id, never the secret) and what that credential narrows.

use std::sync::Arc;

use super::api_key::KeyHash;
use super::jwt::VerifiedToken;
use crate::globs::Globs;

/// The identified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Index of the agent in the snapshot.
    pub agent: usize,
    pub credential: Credential,
}

/// The credential a request was identified by.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API key, by the hash the snapshot stores it under.
    ApiKey(KeyHash),
    /// A JWT from a trusted issuer.
    Jwt(Arc<VerifiedToken>),
    /// An HTTP message signature by one of the agent's public keys (index into the snapshot's
    /// public keys).
    Signature(usize),
}

impl Credential {
    /// The audit record's `credential.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey(_) => "api_key",
            Credential::Jwt(_) => "jwt",
            Credential::Signature(_) => "http_signature",
        }
    }

    /// A delegated token's actors, scope and lineage (`None`: not delegated).
    pub fn delegation(&self) -> Option<&super::delegation::Delegation> {
        match self {
            Credential::Jwt(token) => token.delegation.as_ref(),
            Credential::ApiKey(_) | Credential::Signature(_) => None,
        }
    }

    /// Models the credential allows, beside the agent's allowlist (a token's `models`, a
    /// delegated token's scope).
    pub fn narrowing(&self) -> Option<&Globs> {
        match self {
            Credential::Jwt(token) => token.models.as_ref(),
            Credential::ApiKey(_) | Credential::Signature(_) => None,
        }
    }
}

/// Why identity refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    /// Credential headers that disagree, or one sent twice.
    Ambiguous,
    /// Unknown key, malformed or untrusted token, unknown agent: the text says which.
    Invalid(&'static str),
    Expired,
    /// A signature that does not verify, or does not cover what it must: the text says which.
    BadSignature(&'static str),
    /// A signature nonce seen before.
    Replayed,
    /// The key or token is listed under `revocations`.
    Revoked,
}
