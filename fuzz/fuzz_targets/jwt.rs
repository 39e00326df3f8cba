//! The JWT path never panics on any bearer value, and accepts nothing an attacker without the
//! issuer's key can make: every accepted token must verify under the issuer's key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::identity::jwt::{Issuer, Issuers};

fuzz_target!(|token: &[u8]| {
    let issuers = Issuers::new(vec![Issuer::new("corp".into(), &[42; 32], "warden", 60)]);
    // The key above is not a valid point with a known private key: nothing may verify.
    assert!(issuers.verify(token, 1_700_000_000).is_err());
});
