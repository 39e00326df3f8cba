//! `Signature-Input`, `Signature` and `Content-Digest` parsing never panics, and no request is
//! accepted without an Ed25519 signature the fuzzer would have to forge.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use warden::identity::signature::{check_content_digest, verify, NonceCache, Target};
use warden::identity::{PublicKey, PublicKeys};

fuzz_target!(|input: (&[u8], &[u8], &[u8], &[u8])| {
    let (signature_input, signature, digest, body) = input;
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:4000"));
    for (name, value) in [
        ("signature-input", signature_input),
        ("signature", signature),
        ("content-digest", digest),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    let mut keys = PublicKeys::default();
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&[
        215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225, 114, 243,
        218, 166, 35, 37, 175, 2, 26, 104, 247, 7, 81, 26,
    ]) else {
        return;
    };
    keys.insert(PublicKey {
        id: "k".into(),
        agent: 0,
        key,
        revoked: false,
    });
    let uri = Uri::from_static("/v1/chat/completions");
    let target = Target {
        method: &Method::POST,
        uri: &uri,
        headers: &headers,
    };
    let nonces = NonceCache::default();
    assert!(verify(&keys, &target, 1_700_000_000, &nonces).is_err());
    let _ = check_content_digest(&headers, body);
});
