//! The per-request decision path without I/O: API-key lookup, agent and endpoint checks, JSON
//! model extraction, model allowlist, routing, request-rate bucket and concurrency slot.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jiff::Timestamp;
use warden::config::{self, source, Environment};
use warden::limits::LiveState;
use warden::{identity, policy, proxy};

const AGENTS: usize = 1000;

fn policy_text() -> String {
    let mut text = String::from(
        "version: 1\nproviders:\n  openai: {base_url: 'http://127.0.0.1:9/v1', models: ['gpt-*'], auth: none}\n  anthropic: {base_url: 'http://127.0.0.1:9/v1', models: ['claude-*'], auth: none}\nagents:\n",
    );
    for i in 0..AGENTS {
        let hash = hex::encode(warden::identity::api_key::hash_secret(
            format!("key-{i}").as_bytes(),
        ));
        text.push_str(&format!(
            "  agent-{i}:\n    keys: [{{id: k{i}, sha256: {hash}}}]\n    models: ['gpt-4o-mini', 'claude-sonnet-*']\n    endpoints: ['/v1/chat/completions']\n    limits: {{requests_per_minute: 1000000000, max_concurrent: 1000}}\n"
        ));
    }
    text
}

fn decision(c: &mut Criterion) {
    let live = LiveState::default();
    let env = Environment::offline(&live);
    let sources = source::from_text("bench.yaml", &policy_text());
    let snapshot = match config::compile(&sources, &env) {
        Ok(compiled) => compiled.snapshot,
        Err(problems) => panic!("bench policy invalid: {problems:?}"),
    };
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Summarise the incident report in three bullet points, please."}]}"#;
    let nonces = identity::NonceCache::default();
    let uri = http::Uri::from_static("/v1/chat/completions");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer key-500"),
    );

    c.bench_function(
        "decision: key + allowlists + body model + route + limits",
        |b| {
            b.iter(|| {
                let now = Timestamp::now();
                let target = identity::Target {
                    method: &http::Method::POST,
                    uri: &uri,
                    headers: black_box(&headers),
                };
                let checks = identity::Checks {
                    now,
                    token_revoked: &|_| false,
                    nonces: &nonces,
                };
                let principal =
                    identity::authenticate(&snapshot.identity, &target, &checks).ok()?;
                let agent = &snapshot.agents[principal.agent];
                policy::check_agent(agent, now).ok()?;
                proxy::request::check_path(black_box("/v1/chat/completions")).ok()?;
                policy::check_endpoint(agent, &http::Method::POST, "/v1/chat/completions").ok()?;
                let fields = proxy::request::body_fields(black_box(body)).ok()?;
                let model = fields.model().ok()?;
                policy::check_model(agent, principal.credential.narrowing(), model).ok()?;
                let (_, provider) = snapshot.route(model)?;
                let rate = agent.limits.requests_per_minute.as_ref()?.check();
                let (max, in_flight) = agent.limits.max_concurrent.as_ref()?;
                let slot = in_flight.try_acquire(*max)?;
                black_box((provider.name.len(), rate, &slot));
                Some(())
            })
        },
    );

    let budget = warden::limits::TokenBudget::new(Some(u64::MAX / 4), Some(u64::MAX / 4));
    // Days in a real time zone: the per-request offset lookup is part of the cost.
    let days = warden::limits::budget::Days::new(jiff::tz::TimeZone::get("Europe/Paris").ok());
    c.bench_function("token budget: reserve + settle", |b| {
        b.iter(|| {
            let now = Timestamp::now().as_second();
            let estimate = warden::limits::budget::estimate(black_box(256), black_box(900));
            if let Ok(reservation) = budget.reserve(estimate, now, &days) {
                budget.settle(reservation, black_box(300));
            }
        })
    });

    let mut long_prompt =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#.to_vec();
    long_prompt.extend(std::iter::repeat_n(b'a', 100_000));
    long_prompt.extend_from_slice(br#""}],"max_tokens":256}"#);
    c.bench_function("body fields: 100 KB prompt", |b| {
        b.iter(|| proxy::request::body_fields(black_box(&long_prompt)).is_ok())
    });

    // The prompt estimate budgets reserve: English-like text, per body size (µs per KB is
    // the time divided by the size). Beyond 4 KiB of text the rest is extrapolated.
    warden::limits::prompt::warm_up();
    let sentence = "Summarise the quarterly report and list three risks for the board. ";
    for kb in [1usize, 30, 100, 1000] {
        let text = sentence.repeat(kb * 1024 / sentence.len());
        let body = serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 256,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})
        .to_string();
        c.bench_function(&format!("prompt estimate: {kb} KB chat"), |b| {
            b.iter(|| warden::limits::prompt::estimate(black_box(body.as_bytes()), "gpt-4o-mini"))
        });
    }

    c.bench_function("compile: 1000-agent policy", |b| {
        b.iter(|| config::compile(black_box(&sources), &env).is_ok())
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
