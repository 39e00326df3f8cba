//! What a CONNECT names: its `host:port`, and the agent's credential in `Proxy-Authorization`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::uri::Authority as Authority_;
use http::HeaderMap;

/// A CONNECT target: host (lower case; IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// The authority-form target as sent (`host:port`); `None` for any other form, or without
    /// a port.
    pub fn parse(target: &[u8]) -> Option<Self> {
        let authority: Authority_ = std::str::from_utf8(target).ok()?.parse().ok()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let port = authority.port_u16()?;
        let host = authority.host();
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok().map(|_| v6)?,
            None if is_host_name(host) => host,
            None => return None,
        };
        if port == 0 {
            return None;
        }
        Some(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A DNS name or IPv4 address: letters, digits, `-`, `_` and non-empty dot-separated labels
/// (anything else, percent-encoding included, is refused: it could be read two ways).
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The secret in `Proxy-Authorization`: `Bearer <secret>`, or `Basic` with the secret as the
/// password (what `http://user:secret@host` proxy URLs send) or, with no password, as the user.
/// `Ok(None)` when the header is absent; `Err` with the reason when it cannot be read.
pub fn proxy_secret(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(http::header::PROXY_AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("Proxy-Authorization is sent more than once");
    }
    let value = value
        .to_str()
        .map_err(|_| "Proxy-Authorization is not readable text")?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or("Proxy-Authorization needs a scheme: Bearer or Basic")?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Some(rest.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("Proxy-Authorization scheme must be Bearer or Basic");
    }
    let decoded = STANDARD
        .decode(rest)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or("Proxy-Authorization Basic is not base64 of user:password")?;
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let secret = if password.is_empty() { user } else { password };
    if secret.is_empty() {
        return Err("Proxy-Authorization carries no key");
    }
    Ok(Some(secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::PROXY_AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn authority_form_only() {
        let parse = |s: &str| Authority::parse(s.as_bytes());
        assert_eq!(
            parse("API.OpenAI.com:443"),
            Some(Authority {
                host: "api.openai.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse("[::1]:8443").map(|a| a.to_string()),
            Some("[::1]:8443".into())
        );
        for bad in [
            "api.openai.com",
            "http://api.openai.com:443/",
            "/path",
            "user@host:443",
            "host:0",
            "h:443/x",
            "%rr:5",
            "[zz]:443",
            "a..b:443",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bearer_and_basic() {
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert_eq!(
            proxy_secret(&header("Bearer sk-1")),
            Ok(Some("sk-1".into()))
        );
        assert_eq!(
            proxy_secret(&header(&basic("agent:sk-2"))),
            Ok(Some("sk-2".into()))
        );
        assert_eq!(
            proxy_secret(&header(&basic("sk-3:"))),
            Ok(Some("sk-3".into()))
        );
        assert_eq!(proxy_secret(&HeaderMap::new()), Ok(None));
        for bad in ["Digest x", "Basic !!!", "Bearer", &basic(":")] {
            assert!(proxy_secret(&header(bad)).is_err(), "{bad}");
        }
        let mut twice = header("Bearer a");
        twice.append(
            http::header::PROXY_AUTHORIZATION,
            "Bearer a".parse().unwrap(),
        );
        assert!(proxy_secret(&twice).is_err());
    }
}
