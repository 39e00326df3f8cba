//! Identity on the request path: an EdDSA JWT verified cold (signature check) and from the
//! verified-token cache, through the same `authenticate` call a request makes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jiff::Timestamp;
use warden::config::{self, source, Environment};
use warden::identity::jwt::{mint, NewToken};
use warden::identity::{Checks, NonceCache, Target};
use warden::limits::LiveState;

fn identity(c: &mut Criterion) {
    let issuer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        issuer.verifying_key().as_bytes(),
    );
    let policy = format!(
        "version: 1\nissuers:\n  corp: {{ed25519: '{public}', audience: warden}}\nproviders:\n  m: {{kind: mock, models: ['m-*']}}\nagents:\n  bot: {{models: ['m-1']}}\n"
    );
    let live = LiveState::default();
    let compile = || match config::compile(
        &source::from_text("bench.yaml", &policy),
        &Environment::offline(&live),
    ) {
        Ok(compiled) => compiled.snapshot,
        Err(problems) => panic!("bench policy invalid: {problems:?}"),
    };
    let now = Timestamp::now();
    let token = NewToken {
        sub: "bot".into(),
        aud: "warden".into(),
        iss: Some("corp".into()),
        iat: now.as_second(),
        exp: now.as_second() + 3600,
        jti: Some("bench-1".into()),
        models: Some(vec!["m-*".into()]),
    };
    let jwt = match mint(&issuer, &token) {
        Ok(jwt) => jwt,
        Err(e) => panic!("{e}"),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        match http::HeaderValue::from_str(&format!("Bearer {jwt}")) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        },
    );

    let nonces = NonceCache::default();
    let uri = http::Uri::from_static("/v1/chat/completions");
    let target = Target {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
    };
    let checks = Checks {
        now,
        token_revoked: &|_| false,
        nonces: &nonces,
    };
    let snapshot = compile();
    c.bench_function("jwt: cached", |b| {
        b.iter(|| {
            warden::identity::authenticate(&snapshot.identity, black_box(&target), &checks).is_ok()
        })
    });
    c.bench_function("jwt: cold (signature verified)", |b| {
        b.iter_batched(
            compile,
            |fresh| {
                warden::identity::authenticate(&fresh.identity, black_box(&target), &checks).is_ok()
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, identity);
criterion_main!(benches);
