//! Identity on the request path: an EdDSA JWT verified cold (signature check) and from the
//! verified-token cache, through the same `authenticate` call a request makes; and a delegated
//! token (a chain of three actors, from token exchange) beside an ordinary JWT, cold and cached,
//! through the issuers' verification.

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

fn delegation(c: &mut Criterion) {
    use warden::identity::delegation::{Scope, Settings};
    use warden::identity::exchange::{exchange, Ask, Parent};
    use warden::identity::jwt::{Issuer, Issuers};
    let corp = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let warden_key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let now = Timestamp::now().as_second();
    let ordinary = NewToken {
        sub: "bot".into(),
        aud: "warden".into(),
        iss: Some("corp".into()),
        iat: now,
        exp: now + 3600,
        jti: Some("bench-1".into()),
        models: Some(vec!["m-*".into()]),
    };
    let ordinary = mint(&corp, &ordinary).unwrap_or_else(|e| panic!("{e}"));
    let scope = |text: &str| Scope::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let parent = Parent {
        agent: "bot",
        policy: scope("models:m-* mcp:crm/lookup_* services:stripe"),
        credential: None,
        expires: None,
        actors: vec!["planner".into(), "researcher".into()],
        ancestors: vec!["a-1".into(), "a-2".into()],
        root_key: Some("bot-1".into()),
    };
    let ask = Ask {
        actor: "summarizer",
        scope: Some(scope("models:m-1 mcp:crm/lookup_customer")),
        ttl_secs: Some(600),
    };
    let delegated = exchange(&warden_key, Settings::default(), &parent, &ask, now)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .access_token;
    let issuers = || {
        Issuers::new(vec![
            Issuer::new("corp".into(), corp.verifying_key().as_bytes(), "warden", 60),
            Issuer::delegating(warden_key.verifying_key().as_bytes()),
        ])
    };
    for (name, token) in [("jwt", &ordinary), ("delegated (3 actors)", &delegated)] {
        let warm = issuers();
        c.bench_function(&format!("{name}: issuers, cached"), |b| {
            b.iter(|| warm.verify(black_box(token.as_bytes()), now).is_ok())
        });
        c.bench_function(&format!("{name}: issuers, cold"), |b| {
            b.iter_batched(
                issuers,
                |fresh| fresh.verify(black_box(token.as_bytes()), now).is_ok(),
                BatchSize::PerIteration,
            )
        });
    }
}

criterion_group!(benches, identity, delegation);
criterion_main!(benches);
