//! Golden tests of compiled policy: the bundled policies, compiled as `serve` would, rendered
//! as an outline (providers, agents and what each may do, their limits) and compared with the
//! reviewed copy in `src/config/snapshots/`. A change to how policy compiles shows up as a
//! diff to review (`cargo insta review`), not as a surprise on the request path.

use std::fmt::Write;
use std::path::Path;

use super::{compile, source, Environment, Snapshot};
use crate::limits::LiveState;
use crate::providers::Upstream;

fn compiled(path: &str) -> Snapshot {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = source::read(&root.join(path)).unwrap();
    let live = LiveState::default();
    let compiled = compile(&sources, &Environment::offline(&live));
    match compiled {
        Ok(compiled) => compiled.snapshot,
        Err(problems) => panic!("{path} does not compile: {problems:?}"),
    }
}

fn globs(globs: &crate::globs::Globs) -> String {
    globs.patterns().collect::<Vec<_>>().join(", ")
}

/// The compiled policy as a reviewer reads it (never a secret: auth is named by kind only).
fn outline(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let server = &snapshot.server;
    let _ = writeln!(
        out,
        "server: listen {:?}, admin {:?}, max_body_bytes {}, connect {:?}, read {:?}",
        server.listen,
        server.admin,
        server.max_body_bytes,
        server.connect_timeout,
        server.read_timeout
    );
    for provider in &snapshot.providers {
        let upstream = match &provider.upstream {
            Upstream::Mock => "mock".to_string(),
            Upstream::Http(up) => format!(
                "{}://{}:{}{}",
                if up.tls { "https" } else { "http" },
                up.host,
                up.port,
                up.base_path
            ),
        };
        let auth = match &provider.auth {
            crate::providers::UpstreamAuth::None => "none",
            crate::providers::UpstreamAuth::Bearer(_) => "bearer",
            crate::providers::UpstreamAuth::XApiKey(_) => "x-api-key",
            crate::providers::UpstreamAuth::Missing(_) => "missing",
        };
        let kind = provider.serves.noun();
        let _ = writeln!(
            out,
            "{kind} {}: {upstream}, auth {auth}, models [{}], identity_header {}",
            provider.name,
            globs(&provider.models),
            provider.identity_header
        );
    }
    for agent in &snapshot.agents {
        let limits = &agent.limits;
        let budget = |budget: &Option<std::sync::Arc<crate::limits::TokenBudget>>| {
            budget
                .as_ref()
                .and_then(|b| b.never_fits(u64::MAX))
                .map_or("-".to_string(), |(window, limit)| {
                    format!("{window:?} {limit}")
                })
        };
        let mut services: Vec<_> = agent.services.keys().map(String::as_str).collect();
        services.sort_unstable();
        let _ = writeln!(
            out,
            "agent {} (owner {:?}, {:?}): models [{}], destinations [{}], services {services:?}\n  endpoints {:?}\n  limits: rpm {:?}, concurrent {:?}, tokens {}/{}, spend {}/{}, default_output {}",
            agent.id,
            agent.owner,
            agent.status,
            globs(&agent.models),
            globs(&agent.destinations),
            agent.endpoints,
            limits.requests_per_minute.as_ref().map(|r| r.limit()),
            limits.max_concurrent.as_ref().map(|(max, _)| *max),
            budget(&limits.budgets.tokens.agent),
            budget(&limits.budgets.tokens.team),
            budget(&limits.budgets.spend.agent),
            budget(&limits.budgets.spend.team),
            limits.default_output_tokens,
        );
        let mut servers: Vec<_> = agent.mcp.iter().collect();
        servers.sort_unstable_by_key(|(name, _)| *name);
        for (server, grant) in servers {
            let _ = writeln!(out, "  mcp {server}: {}", grant.outline());
        }
    }
    out
}

#[test]
fn the_default_policy_compiles_as_reviewed() {
    insta::assert_snapshot!(outline(&compiled("config/warden.yaml")));
}

#[test]
fn the_openai_anthropic_example_compiles_as_reviewed() {
    insta::assert_snapshot!(outline(&compiled("config/examples/openai-anthropic.yaml")));
}
