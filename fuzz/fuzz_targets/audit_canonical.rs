//! The shipper's bytes and the verifier's reading agree on any record: the hash the shipper
//! writes is the hash the verifier recomputes from the parsed line, whatever the strings hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::audit::chain::{canonical_hash, to_json, ChainState};
use warden::audit::verify::parse_strict;
use warden::audit::{AuditEvent, Tokens};
use warden::code::Code;

fuzz_target!(|input: (&str, &str, &str, u64, f64, Option<(u64, u64)>)| {
    let (path, model, instance, seq, latency, tokens) = input;
    let event = AuditEvent {
        arrived: jiff::Timestamp::UNIX_EPOCH,
        request_id: http::HeaderValue::from_str(model).ok(),
        client_request_id: http::HeaderValue::from_str(path).ok(),
        provider_request_id: None,
        snapshot: None,
        agent: None,
        provider: None,
        credential: None,
        method: http::Method::POST,
        path: path.to_string(),
        model: Some(model.to_string()),
        denied: seq % 2 == 0,
        code: Code::ALL[(seq % Code::ALL.len() as u64) as usize],
        status: 200,
        latency_ms: latency,
        upstream_ms: None,
        ttfb_ms: Some(latency / 2.0),
        tokens: tokens.map(|(input, output)| Tokens {
            cached: (input % 3 == 0).then_some(input / 2),
            input,
            output,
        }),
        tokens_source: tokens.map(|_| warden::audit::event::TokensSource::Estimated),
        cost_usd: Some(latency),
        // Tunnel and action records carry more fields, which must sit in canonical order too.
        tunnel: (seq % 3 == 1).then(|| warden::audit::event::Tunnel {
            destination: path.to_string(),
            bytes_up: seq,
            bytes_down: seq / 2,
            end: (seq % 2 == 0).then_some("idle_timeout"),
        }),
        action: (seq % 3 == 2).then(|| warden::audit::event::Action {
            name: model.to_string(),
            target: (seq % 2 == 0).then(|| instance.to_string()),
            amount_usd: Some(latency),
            verified: seq % 4 == 0,
            errors: vec![Code::ALL[(seq % Code::ALL.len() as u64) as usize]],
        }),
        revocation: (seq % 5 == 4).then(|| warden::audit::event::Revocation {
            source: "fleet",
            reason: path.to_string(),
        }),
    };
    let mut chain = ChainState::new(instance.to_string());
    chain.seq = seq % (1 << 53);
    let line = chain.seal(|link| to_json(&event.record(link)));
    let Ok(record) = parse_strict(&line) else {
        // Only a record serde_json could not write (a non-finite float is written as null and
        // still parses), so a refusal here is a real disagreement.
        panic!("the verifier cannot read the shipper's line: {line}");
    };
    let written = record["hash"].as_str().unwrap_or_default();
    assert_eq!(canonical_hash(&record), written, "{line}");
});
