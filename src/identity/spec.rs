//! Agent credentials as written in policy files.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One API key, stored only as the SHA-256 of the whole secret.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[schemars(with = "String")]
    pub sha256: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<Spanned<String>>,
}

/// One Ed25519 public key an agent signs requests with (RFC 9421), by key id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicKeySpec {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The raw 32-byte public key, base64 (standard or URL-safe, padding optional).
    #[schemars(with = "String")]
    pub ed25519: Spanned<String>,
}

/// `issuers.<name>:` — a trusted issuer of EdDSA JWTs; `iss` names it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The issuer's raw 32-byte Ed25519 public key, base64.
    #[schemars(with = "String")]
    pub ed25519: Spanned<String>,
    /// The `aud` its tokens must carry for this Warden.
    #[schemars(with = "String")]
    pub audience: Spanned<String>,
    /// Allowance for clocks that disagree, on `exp`, `nbf` and `iat` (default 60 s).
    #[schemars(with = "Option<u64>")]
    pub clock_skew_secs: Option<Spanned<u64>>,
    /// Agent id globs this issuer may mint tokens for (default: every agent). A token whose
    /// `sub` is outside them is refused.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub agents: Option<Vec<Spanned<String>>>,
}
