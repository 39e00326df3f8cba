//! `POST /v1/verify`: an identified agent asks whether it may take an action — "allowed →
//! execute, denied → block". Warden answers 200 with the verdict, every reason it refuses, and
//! what is left today. A verified action with an amount reserves it from the day's budget (and
//! counts against the action's daily count) at once: the verdict is a reservation, not a
//! forecast.

use bytes::Bytes;
use jiff::Timestamp;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{body, Refusal, RequestCtx};
use crate::audit::event::Action;
use crate::code::Code;
use crate::config::Snapshot;
use crate::limits::actions::{Charge, Day};
use crate::policy::actions::Intent;
use crate::policy::Agent;

/// The path Warden answers itself.
pub const PATH: &str = "/v1/verify";

/// Longest action name and target accepted.
const MAX_NAME: usize = 256;
const MAX_TARGET: usize = 2048;

#[derive(Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// `parameters`, refusing a key given twice: readers disagree on which copy counts (first or
/// last), and the executor of the action must see the amount Warden verified.
struct Parameters(Map<String, Value>);

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Parameters;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Parameters, A::Error> {
                let mut out = Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "`parameters.{key}` is given twice"
                        )));
                    }
                    out.insert(key, value);
                }
                Ok(Parameters(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// An action to judge, as the agent asked and checked readable exactly as its executor will
/// read it.
struct Asked {
    action: String,
    target: Option<String>,
    amount: Option<f64>,
    currency: Option<String>,
}

/// The verdict: every reason the action is refused, the amount judged, and the day's counts.
struct Verdict {
    errors: Vec<(Code, String)>,
    micro_usd: u64,
    day: Day,
}

/// Reads the request, judges it and builds the answer.
pub async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    now: Timestamp,
) -> Result<Bytes, Refusal> {
    if session.req_header().method != http::Method::POST {
        return Err(Refusal::EndpointNotAllowed("/v1/verify takes POST".into()));
    }
    let body = body::read(session, snapshot.server.max_body_bytes).await?;
    body::check_signed(ctx.credential.as_ref(), session.req_header(), &body)?;
    let asked = read_request(&body)?;
    let verdict = judge(snapshot, agent, &asked, now);
    let answer = answer_body(agent, &asked, &verdict);
    let verified = verdict.errors.is_empty();
    ctx.action = Some(Action {
        name: asked.action,
        target: asked.target,
        amount_usd: asked.amount.map(|_| verdict.micro_usd as f64 / 1_000_000.0),
        verified,
        errors: verdict.errors.into_iter().map(|(code, _)| code).collect(),
    });
    Ok(answer)
}

/// The request body as an [`Asked`], refusing what an executor could read differently: an
/// action name with surrounding whitespace or control characters (` transfer_x` must not slip
/// past `deny: [transfer_*]` and then run as `transfer_x`), over-long names, an amount or
/// currency of the wrong type.
fn read_request(body: &[u8]) -> Result<Asked, Refusal> {
    let invalid = |why: &str| Refusal::InvalidJson(why.to_owned());
    let request: Request = serde_json::from_slice(body)
        .map_err(|e| Refusal::InvalidJson(format!("not a verify request: {e}")))?;
    if request.action.is_empty() || request.action.len() > MAX_NAME {
        return Err(invalid(&format!("`action` must be 1-{MAX_NAME} bytes")));
    }
    if request.action.trim() != request.action || request.action.chars().any(char::is_control) {
        return Err(invalid(
            "`action` must not start or end with whitespace or hold control characters",
        ));
    }
    if request
        .target
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TARGET)
    {
        return Err(invalid(&format!(
            "`target` is longer than {MAX_TARGET} bytes"
        )));
    }
    let mut parameters = request.parameters.map(|p| p.0).unwrap_or_default();
    let amount = match parameters.get("amount") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(a) if a.is_finite() && a >= 0.0 => Some(a),
            _ => return Err(invalid("`parameters.amount` must be a non-negative number")),
        },
        Some(_) => return Err(invalid("`parameters.amount` must be a number")),
    };
    let currency = match parameters.remove("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c),
        Some(_) => return Err(invalid("`parameters.currency` must be a string")),
    };
    Ok(Asked {
        action: request.action,
        target: request.target,
        amount,
        currency,
    })
}

/// Judges `asked` for `agent`: its standing, its `actions` rules, and the day's counts and
/// amounts (taken at once when everything else allows).
fn judge(snapshot: &Snapshot, agent: &Agent, asked: &Asked, now: Timestamp) -> Verdict {
    let mut errors: Vec<(Code, String)> = Vec::new();
    if let Err(denial) = crate::policy::check_agent(agent, now) {
        let refusal = Refusal::from(denial);
        errors.push((refusal.code(), refusal.message()));
    }
    let intent = Intent {
        action: &asked.action,
        amount: asked.amount,
        currency: asked.currency.as_deref(),
    };
    let judgement = match &agent.actions {
        Some(actions) => actions.judge(intent),
        None => crate::policy::actions::Judgement {
            errors: vec![(
                Code::ActionNotAllowed,
                "this agent has no allowed actions".into(),
            )],
            ..Default::default()
        },
    };
    errors.extend(judgement.errors);
    let charge = Charge {
        sums: &[],
        counts: &judgement.per_day,
        micro_usd: judgement.micro_usd,
        micro_usd_per_day: agent.actions.as_ref().and_then(|a| a.micro_usd_per_day),
    };
    let day =
        agent
            .limits
            .actions
            .charge(charge, errors.is_empty(), now.as_second(), &snapshot.days);
    if day.fleet_unavailable {
        errors.push((Code::FleetUnavailable, Refusal::FleetUnavailable.message()));
    }
    if day.over_count {
        errors.push((
            Code::ActionLimit,
            format!("`{}` has reached its daily count", asked.action),
        ));
    }
    // One monetary reason is enough: an amount over the per-action cap is over the day too.
    if day.over_amount && !errors.iter().any(|(code, _)| *code == Code::MonetaryLimit) {
        errors.push((
            Code::MonetaryLimit,
            "the amount is over what is left of today's limit".into(),
        ));
    }
    Verdict {
        errors,
        micro_usd: judgement.micro_usd,
        day,
    }
}

/// The JSON answer: the verdict, its reasons, what is left today.
fn answer_body(agent: &Agent, asked: &Asked, verdict: &Verdict) -> Bytes {
    let day = &verdict.day;
    let mut remaining = Map::new();
    if let Some(left) = day.micro_usd_left {
        remaining.insert("usd_today".into(), json!(left as f64 / 1_000_000.0));
    }
    if let Some(left) = day.count_left {
        remaining.insert("action_today".into(), json!(left));
    }
    remaining.insert("resets_in_secs".into(), json!(day.resets_in));
    let errors: Vec<_> = verdict
        .errors
        .iter()
        .map(|(code, message)| json!({"code": code.as_str(), "message": message}))
        .collect();
    let answer = json!({
        "verified": verdict.errors.is_empty(),
        "agent": agent.id,
        "action": asked.action,
        "target": asked.target,
        "errors": errors,
        "remaining": remaining,
    });
    Bytes::from(answer.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_an_executor_could_read_differently_are_refused() {
        for body in [
            r#"{"action": " transfer_x"}"#,
            r#"{"action": "transfer\u0000x"}"#,
            r#"{"action": ""}"#,
            r#"{"action": "pay", "parameters": {"amount": 1, "amount": 500}}"#,
            r#"{"action": "pay", "parameters": {"amount": -1}}"#,
            r#"{"action": "pay", "parameters": {"amount": "5"}}"#,
            r#"{"action": "pay", "parameters": {"currency": 5}}"#,
        ] {
            assert!(
                matches!(read_request(body.as_bytes()), Err(Refusal::InvalidJson(_))),
                "{body}"
            );
        }
        let asked = read_request(
            br#"{"action": "pay", "target": "acct", "parameters": {"amount": 12.5, "currency": "EUR"}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                asked.amount,
                asked.currency.as_deref(),
                asked.target.as_deref()
            ),
            (Some(12.5), Some("EUR"), Some("acct"))
        );
    }
}
