//! Which agent created each provider object Warden has seen created: in memory, and in the
//! fleet's Redis when the policy has `fleet:` (an agent's replicas share their objects).
//!
//! Recording never waits: the local map is written at once (before the client has the id),
//! the fleet's copy by a task of its own. A lookup is answered from memory; only an id this
//! Warden has not seen asks Redis, once, and remembers the answer.

use std::sync::Arc;

use crate::fleet::redis as store;
use crate::fleet::FleetState;

/// Object ids remembered per process; the oldest are forgotten first (the fleet, when there
/// is one, still knows them).
const CAPACITY: usize = 200_000;

/// Who created an object, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The agent's id (not its index: owners outlive policy reloads).
    pub agent: Box<str>,
    /// The provider that holds the object, by name: requests about it go there.
    pub provider: Box<str>,
}

impl Owner {
    fn encode(&self) -> String {
        serde_json::json!([&*self.agent, &*self.provider]).to_string()
    }

    fn decode(text: &str) -> Option<Owner> {
        let (agent, provider): (String, String) = serde_json::from_str(text).ok()?;
        Some(Owner {
            agent: agent.into(),
            provider: provider.into(),
        })
    }
}

/// What is known of an object's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Arc<Owner>),
    /// No Warden recorded it (or the record expired).
    Unknown,
    /// This Warden has no record and the fleet's Redis cannot be asked.
    Unavailable,
}

/// The ownership records: live state, kept across policy reloads.
pub struct Owners {
    local: quick_cache::sync::Cache<Box<str>, Arc<Owner>>,
    fleet: Arc<FleetState>,
}

impl Owners {
    /// An empty record, sharing through `fleet` when the policy has `fleet:`.
    pub fn new(fleet: Arc<FleetState>) -> Self {
        Owners {
            local: quick_cache::sync::Cache::new(CAPACITY),
            fleet,
        }
    }

    /// Records that `owner` created object `id`. An id already recorded keeps its first owner.
    pub fn record(&self, id: &str, owner: Owner) {
        if self.local.get(id).is_some() {
            return;
        }
        let owner = Arc::new(owner);
        self.local.insert(id.into(), Arc::clone(&owner));
        if self.fleet.settings().is_none() {
            return;
        }
        let (Some(mut con), Ok(runtime)) = (
            self.fleet.connection(),
            tokio::runtime::Handle::try_current(),
        ) else {
            // Redis is down (the fleet task says so): the object is known to this replica only.
            return;
        };
        let fleet = Arc::clone(&self.fleet);
        let id = id.to_owned();
        runtime.spawn(async move {
            let encoded = owner.encode();
            if let Err(e) = store::set_object_owner(&mut con, &id, &encoded, &fleet.metrics).await {
                log::warn!("objects: cannot share the owner of `{id}` with the fleet: {e}");
            }
        });
    }

    /// Who created object `id`.
    pub async fn lookup(&self, id: &str) -> Lookup {
        if let Some(owner) = self.local.get(id) {
            return Lookup::Found(owner);
        }
        if self.fleet.settings().is_none() {
            return Lookup::Unknown;
        }
        let Some(mut con) = self.fleet.connection() else {
            return Lookup::Unavailable;
        };
        match store::object_owner(&mut con, id, &self.fleet.metrics).await {
            Ok(Some(text)) => match Owner::decode(&text) {
                Some(owner) => {
                    let owner = Arc::new(owner);
                    self.local.insert(id.into(), Arc::clone(&owner));
                    Lookup::Found(owner)
                }
                None => Lookup::Unknown,
            },
            Ok(None) => Lookup::Unknown,
            Err(e) => {
                log::warn!("objects: cannot ask the fleet who owns `{id}`: {e}");
                Lookup::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(agent: &str) -> Owner {
        Owner {
            agent: agent.into(),
            provider: "openai".into(),
        }
    }

    #[tokio::test]
    async fn the_first_creator_keeps_an_object() {
        let owners = Owners::new(Arc::default());
        assert_eq!(owners.lookup("resp_1").await, Lookup::Unknown);
        owners.record("resp_1", owner("a"));
        owners.record("resp_1", owner("b"));
        assert_eq!(
            owners.lookup("resp_1").await,
            Lookup::Found(Arc::new(owner("a")))
        );
    }

    #[test]
    fn owners_survive_the_fleet_encoding() {
        let o = Owner {
            agent: "bot \"x\"\n".into(),
            provider: "p".into(),
        };
        assert_eq!(Owner::decode(&o.encode()), Some(o));
        assert_eq!(Owner::decode("garbage"), None);
    }
}
