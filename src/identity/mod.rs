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
