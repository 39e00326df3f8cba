//! `GET /v1/models` and `GET /v1/models/{id}`, answered by Warden from policy, and the one
//! writer of the answers Warden makes itself.

use bytes::Bytes;
use serde_json::json;

use super::error::Refusal;
use crate::config::Snapshot;
use crate::globs::Globs;
use crate::policy::Agent;

/// Answers a GET: the model list (or one model) this agent may use; any other GET has no model
/// to route by.
pub fn answer(
    snapshot: &Snapshot,
    agent: &Agent,
    narrowing: Option<&Globs>,
    path: &str,
) -> Result<Bytes, Refusal> {
    if path == "/v1/models" {
        let data: Vec<_> = snapshot
            .listable_models(agent)
            .into_iter()
            .filter(|id| narrowing.is_none_or(|n| n.matches(id)))
            .map(|id| model_object(snapshot, id))
            .collect();
        return Ok(Bytes::from(
            json!({"object": "list", "data": data}).to_string(),
        ));
    }
    let Some(id) = path.strip_prefix("/v1/models/") else {
        return Err(Refusal::MissingModel);
    };
    crate::policy::check_model(agent, narrowing, id)?;
    if snapshot.route(id).is_none() {
        return Err(Refusal::no_provider_for(id));
    }
    Ok(Bytes::from(model_object(snapshot, id).to_string()))
}

fn model_object(snapshot: &Snapshot, id: &str) -> serde_json::Value {
    let owner = snapshot.route(id).map_or("", |(_, p)| p.name.as_str());
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

/// Writes an answer Warden makes itself (a model list, a `/v1/verify` verdict) as JSON.
pub async fn write_answer(
    session: &mut pingora::proxy::Session,
    ctx: &super::RequestCtx,
    body: Bytes,
) -> pingora::Result<()> {
    let mut header = pingora::http::ResponseHeader::build(http::StatusCode::OK, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    // Warden's own answers are per agent (and a token exchange's are secrets): never cached.
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(id) = &ctx.request_id {
        header.insert_header(super::headers::REQUEST_ID, id.clone())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
