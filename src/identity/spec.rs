//! Agent credentials as written in policy files.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// One API key, stored only as the SHA-256 of the whole secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub id: Spanned<String>,
    pub sha256: Spanned<String>,
    pub expires_at: Option<Spanned<String>>,
}
