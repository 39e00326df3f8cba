//! Who is calling: credential extraction and API-key lookup.
//!
//! Requests enter as header values; they leave as an [`Identity`] (agent index and key id) or a
//! refusal. Secrets are hashed immediately and never stored, logged or echoed.

pub mod api_key;
pub mod compile;
pub mod spec;

use http::HeaderMap;

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

/// Finds the agent credential: `Authorization: Bearer`, `x-api-key`, then `Proxy-Authorization`
/// (HTTP_PROXY mode). The first header present wins; a present but malformed header is not
/// skipped in favour of a later one, so Warden never judges a different credential than the
/// one the request leads with.
pub fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        return bearer(value.as_bytes()).map(|secret| Presented {
            secret,
            source: CredentialSource::Authorization,
        });
    }
    if let Some(value) = headers.get("x-api-key") {
        let secret = value.as_bytes().trim_ascii();
        return (!secret.is_empty()).then_some(Presented {
            secret,
            source: CredentialSource::XApiKey,
        });
    }
    if let Some(value) = headers.get(http::header::PROXY_AUTHORIZATION) {
        return bearer(value.as_bytes()).map(|secret| Presented {
            secret,
            source: CredentialSource::ProxyAuthorization,
        });
    }
    None
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
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_is_case_insensitive_and_trimmed() {
        let h = headers(&[("authorization", "bEaReR   sk-1 ")]);
        let p = presented(&h).unwrap();
        assert_eq!(p.secret, b"sk-1");
        assert_eq!(p.source, CredentialSource::Authorization);
    }

    #[test]
    fn x_api_key_and_proxy_authorization() {
        let h = headers(&[("x-api-key", "sk-2")]);
        assert_eq!(presented(&h).unwrap().source, CredentialSource::XApiKey);
        let h = headers(&[("proxy-authorization", "Bearer sk-3")]);
        assert_eq!(presented(&h).unwrap().secret, b"sk-3");
    }

    #[test]
    fn malformed_authorization_is_not_skipped() {
        let h = headers(&[("authorization", "Basic abc"), ("x-api-key", "sk-2")]);
        assert!(presented(&h).is_none());
        assert!(presented(&headers(&[("authorization", "Bearer ")])).is_none());
    }
}
