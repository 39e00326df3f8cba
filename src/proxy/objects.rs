//! Provider objects on the request path: a request may name only objects its agent created
//! (or that policy shares with it), and a request without a model goes to the provider that
//! holds the object it names.

use std::sync::Arc;

use super::error::Refusal;
use crate::config::Snapshot;
use crate::fleet::OnUnavailable;
use crate::objects::owners::Lookup;
use crate::objects::{ObjectRef, Owner, Owners};
use crate::policy::Agent;

/// Ids longer than this are cut in messages (an id is the agent's input).
const SHOWN_ID: usize = 80;

/// Checks that `agent` may name the object in the request's path and every one its body names;
/// returns the owner record of the first one that has one (where a request without a model
/// goes).
pub(super) async fn check_owned(
    owners: &Owners,
    agent: &Agent,
    in_path: Option<&ObjectRef<'_>>,
    in_body: &[ObjectRef<'_>],
) -> Result<Option<Arc<Owner>>, Refusal> {
    let mut holder = None;
    for object in in_path.into_iter().chain(in_body) {
        match owners.lookup(&object.id).await {
            Lookup::Found(owner) if *owner.agent == *agent.id => {
                holder.get_or_insert(owner);
            }
            _ if agent.shared_objects.matches(&object.id) => {}
            Lookup::Found(_) | Lookup::Unknown => {
                return Err(Refusal::ObjectNotOwned(format!(
                    "{} `{}` was not created by this agent: provider objects belong to the agent whose request created them",
                    object.kind.noun(),
                    shown(&object.id)
                )));
            }
            Lookup::Unavailable => match agent.fleet.link.on_unavailable() {
                OnUnavailable::Allow => {}
                OnUnavailable::Deny => return Err(Refusal::FleetUnavailable),
                OnUnavailable::Local => {
                    return Err(Refusal::ObjectNotOwned(format!(
                        "who created {} `{}` cannot be confirmed: this replica did not see it created and the fleet's Redis cannot be reached",
                        object.kind.noun(),
                        shown(&object.id)
                    )))
                }
            },
        }
    }
    Ok(holder)
}

/// The provider a request without a model goes to: the one holding the object it names, else
/// the policy's first provider; refused when that provider cannot be used.
pub(super) fn provider_for(snapshot: &Snapshot, holder: Option<&Owner>) -> Result<usize, Refusal> {
    let index = match holder {
        Some(owner) => snapshot
            .providers
            .iter()
            .position(|p| *p.name == *owner.provider)
            .ok_or_else(|| {
                Refusal::UpstreamUnavailable(format!(
                    "the object is held by provider `{}`, which the policy no longer has",
                    owner.provider
                ))
            }),
        None if snapshot.providers.is_empty() => Err(Refusal::ModelNotFound(
            "the policy has no provider to send this request to".into(),
        )),
        None => Ok(0),
    }?;
    match snapshot.providers[index].unusable() {
        Some(why) => Err(Refusal::UpstreamUnavailable(why)),
        None => Ok(index),
    }
}

fn shown(id: &str) -> &str {
    match id.char_indices().nth(SHOWN_ID) {
        Some((at, _)) => &id[..at],
        None => id,
    }
}

impl super::WardenProxy {
    /// Records the object a creating request's answer describes as its agent's, as soon as
    /// its id is known: before the client has the whole answer, so its next request can name it.
    pub(super) fn record_created(&self, ctx: &mut super::RequestCtx, end_of_stream: bool) {
        let id = ctx.upstream.meter.object_id(end_of_stream);
        if id.is_none() && !end_of_stream {
            return;
        }
        ctx.upstream.creates = false;
        let (Some(id), Some(snapshot), Some(agent), Some(provider)) =
            (id, ctx.snapshot.as_deref(), ctx.agent, ctx.provider)
        else {
            return;
        };
        let (Some(agent), Some(provider)) =
            (snapshot.agents.get(agent), snapshot.providers.get(provider))
        else {
            return;
        };
        self.owners.record(
            &id,
            Owner {
                agent: agent.id.as_str().into(),
                provider: provider.name.as_str().into(),
            },
        );
    }
}
