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

/// `delegation:` — how far token exchange (`POST /v1/token`) lets agents delegate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationSpec {
    /// Most actors in a chain (default 3).
    #[schemars(with = "Option<u32>")]
    pub max_depth: Option<Spanned<u32>>,
    /// Longest lifetime of a delegated token, like `15m` or `1h` (default 1h).
    #[schemars(with = "Option<String>")]
    pub max_ttl: Option<Spanned<String>>,
}

impl DelegationSpec {
    /// The settings, or the defaults with each problem reported.
    pub fn compile(&self, p: &mut crate::problem::Problems<'_>) -> super::delegation::Settings {
        let mut settings = super::delegation::Settings::default();
        if let Some(depth) = &self.max_depth {
            match usize::try_from(depth.value) {
                Ok(n @ 1..=16) => settings.max_depth = n,
                _ => p.error(depth, "`max_depth` is between 1 and 16"),
            }
        }
        if let Some(ttl) = &self.max_ttl {
            let parsed = ttl
                .value
                .parse::<jiff::Span>()
                .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()));
            match parsed {
                Ok(d) if d.is_positive() => settings.max_ttl_secs = d.as_secs(),
                _ => p.error(
                    ttl,
                    format!(
                        "`max_ttl` is a positive duration like 15m or 1h, got `{}`",
                        ttl.value
                    ),
                ),
            }
        }
        settings
    }
}
