//! `POST /v1/token`: token exchange (RFC 8693). An agent trades its credential (the
//! `subject_token`: an API key, an issuer's JWT or a delegated token) for a delegated token an
//! `actor` (a sub-agent) uses in its name, no wider than itself. The form is read strictly
//! (RFC 6749 §3.2: no parameter twice); the subject token is authenticated exactly as a request
//! credential is; the decision is `identity::exchange`.

use bytes::Bytes;
use pingora::proxy::Session;

use super::{body, Refusal, RequestCtx};
use crate::config::Snapshot;
use crate::identity::delegation::Scope;
use crate::identity::exchange::{self, Ask, Parent, Refused};
use crate::identity::{Checks, Credential, NonceCache, Principal, Target};
use crate::policy::revocations::RevokedKind;
use crate::policy::Agent;

/// Where token exchange is served.
pub const PATH: &str = "/v1/token";

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SUBJECT_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
];

/// The form's parameters Warden reads.
#[derive(Default)]
struct Form {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    scope: Option<String>,
    actor: Option<String>,
    ttl: Option<String>,
}

/// Answers a token exchange: the issued token as JSON, or the refusal.
pub async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    nonces: &NonceCache,
) -> Result<Bytes, Refusal> {
    let refuse = |r: Refused| Refusal::TokenExchange(Box::new(r));
    if session.req_header().method != http::Method::POST {
        return Err(refuse(Refused::InvalidRequest(
            "token exchange is a POST".into(),
        )));
    }
    let bytes = body::read(session, snapshot.server.max_body_bytes).await?;
    let form = parse(&bytes).map_err(refuse)?;
    let grant_type = form.grant_type.as_deref().unwrap_or_default();
    if grant_type != GRANT_TYPE {
        return Err(refuse(Refused::UnsupportedGrantType(format!(
            "`grant_type` must be `{GRANT_TYPE}`"
        ))));
    }
    let missing = |name: &str| refuse(Refused::InvalidRequest(format!("`{name}` is required")));
    let subject = form
        .subject_token
        .as_deref()
        .ok_or_else(|| missing("subject_token"))?;
    let subject_type = form
        .subject_token_type
        .as_deref()
        .ok_or_else(|| missing("subject_token_type"))?;
    if !SUBJECT_TYPES.contains(&subject_type) {
        return Err(refuse(Refused::InvalidRequest(format!(
            "`subject_token_type` must be one of {}",
            SUBJECT_TYPES.join(", ")
        ))));
    }
    let actor = form.actor.as_deref().ok_or_else(|| missing("actor"))?;
    let scope = match form.scope.as_deref() {
        Some(text) => Some(Scope::parse(text).map_err(|e| refuse(Refused::InvalidScope(e)))?),
        None => None,
    };
    let ttl_secs = match form.ttl.as_deref() {
        Some(text) => Some(text.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| {
            refuse(Refused::InvalidRequest(
                "`ttl` is a positive number of seconds".into(),
            ))
        })?),
        None => None,
    };
    let principal = subject_principal(ctx, snapshot, subject, nonces).map_err(refuse)?;
    let agent = &snapshot.agents[principal.agent];
    crate::policy::check_agent(agent, ctx.arrived).map_err(|denial| {
        refuse(Refused::InvalidGrant(format!(
            "the subject's agent may not act: {}",
            Refusal::from(denial).message()
        )))
    })?;
    ctx.admission.take_request_limits(agent)?;
    let Some(voucher) = &snapshot.identity.voucher else {
        return Err(refuse(Refused::UnsupportedGrantType(
            "this Warden has no identity key (`server.identity_key_file`) to sign tokens with"
                .into(),
        )));
    };
    let parent = parent(snapshot, agent, &principal.credential);
    let ask = Ask {
        actor,
        scope,
        ttl_secs,
    };
    let now = ctx.arrived.as_second();
    let issued = exchange::exchange(
        voucher.key(),
        snapshot.identity.delegation,
        &parent,
        &ask,
        now,
    )
    .map_err(refuse)?;
    let answer = serde_json::json!({
        "access_token": issued.access_token,
        "issued_token_type": exchange::ISSUED_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    });
    Ok(Bytes::from(answer.to_string()))
}

/// The form, each parameter at most once (a repeated one could be read either way).
fn parse(body: &[u8]) -> Result<Form, Refused> {
    let mut form = Form::default();
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match &*name {
            "grant_type" => &mut form.grant_type,
            "subject_token" => &mut form.subject_token,
            "subject_token_type" => &mut form.subject_token_type,
            "scope" => &mut form.scope,
            "actor" => &mut form.actor,
            "ttl" => &mut form.ttl,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(Refused::InvalidRequest(format!(
                "`{name}` is sent more than once"
            )));
        }
    }
    Ok(form)
}

/// Authenticates the subject token as a request's bearer credential would be.
fn subject_principal(
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    subject: &str,
    nonces: &NonceCache,
) -> Result<Principal, Refused> {
    let invalid = || Refused::InvalidGrant("`subject_token` is not a usable credential".into());
    let value = http::HeaderValue::from_str(&format!("Bearer {subject}")).map_err(|_| invalid())?;
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let revocations = &snapshot.revocations;
    let token_revoked = |jti: &str| revocations.get(RevokedKind::Token, jti).is_some();
    let uri = http::Uri::from_static(PATH);
    let target = Target {
        method: &http::Method::POST,
        uri: &uri,
        headers: &headers,
    };
    let checks = Checks {
        now: ctx.arrived,
        token_revoked: &token_revoked,
        nonces,
    };
    match crate::identity::authenticate(&snapshot.identity, &target, &checks) {
        Ok(principal) => {
            ctx.agent = Some(principal.agent);
            ctx.credential = Some(principal.credential.clone());
            Ok(principal)
        }
        Err((rejection, _)) => Err(Refused::InvalidGrant(format!(
            "`subject_token` is refused: {}",
            Refusal::from(rejection).message()
        ))),
    }
}

/// The parent as exchange judges it: the agent's policy, what its credential narrows, its
/// expiry and its chain.
fn parent<'s>(snapshot: &'s Snapshot, agent: &'s Agent, credential: &Credential) -> Parent<'s> {
    let mut mcp = Vec::new();
    for (server, grant) in &agent.mcp {
        mcp.extend(
            grant
                .tool_keys()
                .map(|tool| (server.clone(), tool.to_owned())),
        );
    }
    mcp.sort_unstable();
    let mut services: Vec<String> = agent.services.keys().cloned().collect();
    services.sort_unstable();
    let policy = Scope {
        models: agent.models.patterns().map(str::to_owned).collect(),
        mcp,
        services,
    };
    let identity = &snapshot.identity;
    let (narrowed, expires, actors, mut ancestors, root_key) = match credential {
        Credential::ApiKey(hash) => {
            let key = identity.keys.by_hash(hash);
            let expires = key.and_then(|k| k.expires_at).map(|t| t.as_second());
            (
                None,
                expires,
                Vec::new(),
                Vec::new(),
                key.map(|k| k.key_id.as_str().into()),
            )
        }
        Credential::Signature(index) => {
            let key = identity.public_keys.get(*index).map(|k| k.id.clone());
            (None, None, Vec::new(), Vec::new(), key)
        }
        Credential::Jwt(token) => match &token.delegation {
            Some(d) => (
                Some(d.scope.clone()),
                Some(token.expires),
                d.actors.clone(),
                d.ancestors.clone(),
                d.root_key.clone(),
            ),
            None => {
                let models = token.models.as_ref().map(|m| Scope {
                    models: m.patterns().map(str::to_owned).collect(),
                    ..policy.clone()
                });
                (models, Some(token.expires), Vec::new(), Vec::new(), None)
            }
        },
    };
    if let Credential::Jwt(token) = credential {
        ancestors.extend(token.token_id.clone());
    }
    Parent {
        agent: &agent.id,
        policy,
        credential: narrowed,
        expires,
        actors,
        ancestors,
        root_key,
    }
}

/// The OAuth `error` of a refusal on this endpoint: RFC 6749's for the exchange's own, the
/// SPEC code otherwise (a rate limit, a body too large).
pub fn error_code(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::TokenExchange(refused) => match **refused {
            Refused::Delegation(_) => "delegation_invalid",
            Refused::InvalidRequest(_) => "invalid_request",
            Refused::InvalidScope(_) => "invalid_scope",
            Refused::InvalidGrant(_) => "invalid_grant",
            Refused::UnsupportedGrantType(_) => "unsupported_grant_type",
        },
        other => other.code().as_str(),
    }
}

/// The refusal's `error_description`.
pub fn description(refused: &Refused) -> String {
    match refused {
        Refused::Delegation(why)
        | Refused::InvalidRequest(why)
        | Refused::InvalidScope(why)
        | Refused::InvalidGrant(why)
        | Refused::UnsupportedGrantType(why) => why.clone(),
    }
}
