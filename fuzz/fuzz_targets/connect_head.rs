//! A CONNECT's target and `Proxy-Authorization` come from the agent: reading them never panics,
//! an accepted target is a `host:port` that reads back the same, and an accepted credential is
//! never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::tunnel::authority::{proxy_secret, Authority};

fuzz_target!(|input: (&[u8], &[u8])| {
    let (target, credential) = input;
    if let Some(authority) = Authority::parse(target) {
        assert!(authority.port != 0 && !authority.host.is_empty());
        assert_eq!(authority.host, authority.host.to_ascii_lowercase());
        let again = Authority::parse(authority.to_string().as_bytes());
        assert_eq!(again.as_ref(), Some(&authority));
    }
    if let Ok(value) = http::HeaderValue::from_bytes(credential) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::PROXY_AUTHORIZATION, value);
        if let Ok(Some(secret)) = proxy_secret(&headers) {
            assert!(!secret.is_empty());
        }
    }
});
