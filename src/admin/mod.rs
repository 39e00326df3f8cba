//! The admin port: `/healthz`, `/readyz`, `/metrics`, and the public identity endpoints:
//! `/.well-known/jwks.json` (Warden's key for `X-Agent-Identity`) and `/v1/agents/{id}` (an
//! agent's id, owner, status and public keys — never secrets or key hashes).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::Snapshot;
use crate::metrics::Metrics;
use crate::policy::AgentStatus;

/// Serves the admin endpoints from the live policy and the metrics registry.
pub struct AdminApp {
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// The time usage windows are reported at.
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/healthz" => text(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.policy.load().as_ref() {
                Some(snapshot) => text(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready: policy {}\n", snapshot.version).into_bytes(),
                ),
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    b"no valid policy loaded\n".to_vec(),
                ),
            },
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/.well-known/jwks.json" => {
                let jwks = self
                    .policy
                    .load()
                    .as_ref()
                    .and_then(|s| s.identity.voucher.as_ref().map(|v| v.jwks()))
                    .unwrap_or_else(|| json!({"keys": []}));
                text(
                    StatusCode::OK,
                    "application/json",
                    jwks.to_string().into_bytes(),
                )
            }
            _ => match path.strip_prefix("/v1/agents/") {
                Some(_) if !self.authorized(session) => {
                    let mut refused = text(
                        StatusCode::UNAUTHORIZED,
                        "application/json",
                        br#"{"error":{"message":"the admin port's agent endpoints need `Authorization: Bearer <token>` (server.admin_token_file); off loopback they are closed without one","type":"authentication_error","code":"invalid_credentials"}}"#.to_vec(),
                    );
                    refused.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"warden-admin\""),
                    );
                    refused
                }
                Some(rest) => match rest.strip_suffix("/usage") {
                    Some(id) => self.usage(id),
                    None => self.agent(rest),
                },
                None => text(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
            },
        }
    }
}

impl AdminApp {
    /// Whether a request may read `/v1/agents/*`: with `server.admin_token_file`, only with that
    /// bearer token; without one, only on a loopback admin address (what an agent in the pod
    /// could reach anyway, but not the rest of the cluster).
    fn authorized(&self, session: &ServerSession) -> bool {
        let snapshot = self.policy.load();
        let Some(snapshot) = snapshot.as_ref() else {
            return false;
        };
        let server = &snapshot.server;
        let Some(expected) = &server.admin_token else {
            return server.admin.ip().is_loopback();
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())));
        presented.is_some_and(|hash| hash == *expected)
    }

    /// `GET /v1/agents/{id}/usage`: the agent's requests and tokens, with its limits, what is
    /// left and when each window resets.
    fn usage(&self, id: &str) -> Response<Vec<u8>> {
        let policy = self.policy.load();
        let now = self.clock.now().as_second();
        let found = policy.as_ref().and_then(|snapshot| {
            let agent = snapshot.agents.get(*snapshot.identity.agents.get(id)?)?;
            let limits = &agent.limits;
            let (mut requests, mut input, mut output) = (0u64, 0u64, 0u64);
            limits.counters.for_each(|series| {
                requests += series.requests;
                input += series.input_tokens;
                output += series.output_tokens;
            });
            let [minute, day] = limits
                .budgets
                .tokens
                .agent
                .as_ref()
                .map_or([None, None], |budget| budget.status(now, &snapshot.days));
            let spend = limits
                .budgets
                .spend
                .agent
                .as_ref()
                .and_then(|budget| budget.status(now, &snapshot.days)[1])
                .map(|day| {
                    let usd = |micro: u64| micro as f64 / 1_000_000.0;
                    json!({
                        "used": usd(day.used),
                        "limit": usd(day.limit),
                        "remaining": usd(day.remaining),
                        "reset_secs": day.reset_secs,
                    })
                });
            Some(json!({
                "agent": agent.id,
                "requests": {
                    "total": requests,
                    "limit_per_minute": limits.requests_per_minute.as_ref().map(|r| r.limit()),
                    "max_concurrent": limits.max_concurrent.as_ref().map(|(max, _)| max),
                },
                "tokens": {"input": input, "output": output, "minute": minute, "day": day},
                "spend": {"day": spend},
            }))
        });
        match found {
            Some(body) => text(
                StatusCode::OK,
                "application/json",
                body.to_string().into_bytes(),
            ),
            None => not_found_agent(),
        }
    }

    /// `GET /v1/agents/{id}`: the agent's public identity.
    fn agent(&self, id: &str) -> Response<Vec<u8>> {
        let policy = self.policy.load();
        let found = policy.as_ref().and_then(|snapshot| {
            let index = *snapshot.identity.agents.get(id)?;
            let agent = snapshot.agents.get(index)?;
            let status = match agent.status {
                AgentStatus::Active => "active",
                AgentStatus::Suspended { .. } => "suspended",
                AgentStatus::Revoked => "revoked",
                AgentStatus::TeamRevoked => "team_revoked",
            };
            let keys: Vec<_> = snapshot
                .identity
                .public_keys
                .of_agent(index)
                .map(|k| {
                    json!({
                        "id": &*k.id,
                        "ed25519": STANDARD.encode(k.key.as_bytes()),
                        "algorithm": "ed25519",
                        "revoked": k.revoked,
                    })
                })
                .collect();
            Some(json!({
                "id": agent.id,
                "owner": agent.owner,
                "status": status,
                "algorithm": "ed25519",
                "public_keys": keys,
            }))
        });
        match found {
            Some(body) => text(
                StatusCode::OK,
                "application/json",
                body.to_string().into_bytes(),
            ),
            None => not_found_agent(),
        }
    }
}

fn not_found_agent() -> Response<Vec<u8>> {
    text(
        StatusCode::NOT_FOUND,
        "application/json",
        json!({"error": {"message": "no such agent", "type": "not_found_error", "code": "agent_not_found"}})
            .to_string()
            .into_bytes(),
    )
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}
