//! Revocations pushed through Redis (`warden revoke`, `suspend`, `reinstate`): the list every
//! Warden of a fleet applies on top of the GitOps revocations of its policy.
//!
//! Redis keeps them in one hash, [`HASH`]: field `<kind>:<id>`, value a small JSON object
//! (`reason`, `at`, and `until` for a suspension). Writers bump [`VERSION`] and publish on
//! [`CHANNEL`] in the same transaction; a Warden re-reads the whole hash when the message
//! arrives, and polls the version every second for a message it missed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The Redis hash holding every pushed revocation.
pub const HASH: &str = "warden:revocations";
/// Incremented by every change, so a Warden notices one it was not told about.
pub const VERSION: &str = "warden:revocations:version";
/// Where changes are announced.
pub const CHANNEL: &str = "warden:revocations";

/// What a pushed entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The agent is refused with `agent_revoked`.
    Agent,
    /// The agent is refused with `agent_suspended` until the entry's `until`.
    Suspend,
    /// An API key id or public key id is refused with `credential_revoked`.
    Key,
    /// A JWT id is refused with `credential_revoked`.
    Token,
    /// Every agent of a team (`owner`) is refused with `principal_revoked`.
    Team,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Suspend => "suspend",
            Kind::Key => "key",
            Kind::Token => "token",
            Kind::Team => "team",
        }
    }

    /// The hash field of `id` under this kind.
    pub fn field(self, id: &str) -> String {
        format!("{}:{id}", self.prefix())
    }
}

/// One pushed entry as stored in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub reason: String,
    /// When it was written (Unix seconds).
    #[serde(default)]
    pub at: i64,
    /// When a suspension ends (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// Every pushed revocation, by kind and id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    agents: HashMap<String, Entry>,
    suspended: HashMap<String, Entry>,
    keys: HashMap<String, Entry>,
    tokens: HashMap<String, Entry>,
    teams: HashMap<String, Entry>,
}

/// Why a pushed entry refuses an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRefusal {
    Revoked,
    /// Its team is revoked.
    TeamRevoked,
    Suspended,
}

impl Pushed {
    /// Builds the list from the hash's fields and values; entries that cannot be read are
    /// skipped and counted in the second value.
    pub fn from_fields(fields: impl IntoIterator<Item = (String, String)>) -> (Self, usize) {
        let mut pushed = Pushed::default();
        let mut unreadable = 0;
        for (field, value) in fields {
            let entry = serde_json::from_str::<Entry>(&value);
            let (Some((kind, id)), Ok(entry)) = (field.split_once(':'), entry) else {
                unreadable += 1;
                continue;
            };
            let list = match kind {
                "agent" => &mut pushed.agents,
                "suspend" => &mut pushed.suspended,
                "key" => &mut pushed.keys,
                "token" => &mut pushed.tokens,
                "team" => &mut pushed.teams,
                _ => {
                    unreadable += 1;
                    continue;
                }
            };
            list.insert(id.to_string(), entry);
        }
        (pushed, unreadable)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the list holds (suspensions that have ended included).
    pub fn len(&self) -> usize {
        self.agents.len()
            + self.suspended.len()
            + self.keys.len()
            + self.tokens.len()
            + self.teams.len()
    }

    /// Whether agent `id` of team `team` is refused at `now` (Unix seconds): its revocation,
    /// its team's, then its suspension.
    pub fn agent(&self, id: &str, team: Option<&str>, now: i64) -> Option<AgentRefusal> {
        if self.agents.contains_key(id) {
            return Some(AgentRefusal::Revoked);
        }
        if team.is_some_and(|team| self.teams.contains_key(team)) {
            return Some(AgentRefusal::TeamRevoked);
        }
        let suspension = self.suspended.get(id)?;
        suspension
            .until
            .is_none_or(|until| now < until)
            .then_some(AgentRefusal::Suspended)
    }

    /// Whether an API key id or public key id is revoked.
    pub fn key_revoked(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Whether a JWT id is revoked.
    pub fn token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    /// The entry of `kind` for `id`, for its reason.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Entry> {
        match kind {
            Kind::Agent => &self.agents,
            Kind::Suspend => &self.suspended,
            Kind::Key => &self.keys,
            Kind::Token => &self.tokens,
            Kind::Team => &self.teams,
        }
        .get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: Kind, id: &str, entry: &Entry) -> (String, String) {
        (kind.field(id), serde_json::to_string(entry).unwrap())
    }

    #[test]
    fn kinds_are_read_back_and_garbage_is_counted() {
        let reason = Entry {
            reason: "leaked".into(),
            at: 10,
            until: None,
        };
        let until = Entry {
            until: Some(100),
            ..Entry::default()
        };
        let (pushed, unreadable) = Pushed::from_fields([
            field(Kind::Agent, "rogue", &reason),
            field(Kind::Suspend, "sleepy", &until),
            field(Kind::Key, "k:1", &reason),
            field(Kind::Token, "jti-1", &reason),
            ("nonsense".into(), "{}".into()),
            ("agent:x".into(), "not json".into()),
        ]);
        assert_eq!(unreadable, 2);
        assert_eq!(pushed.len(), 4);
        assert_eq!(pushed.agent("rogue", None, 0), Some(AgentRefusal::Revoked));
        assert_eq!(
            pushed.agent("sleepy", None, 99),
            Some(AgentRefusal::Suspended)
        );
        assert_eq!(
            pushed.agent("sleepy", None, 100),
            None,
            "the suspension ended"
        );
        assert_eq!(pushed.agent("other", None, 0), None);
        assert!(pushed.key_revoked("k:1") && !pushed.key_revoked("rogue"));
        assert!(pushed.token_revoked("jti-1") && !pushed.token_revoked("k:1"));
        assert_eq!(pushed.get(Kind::Agent, "rogue").unwrap().reason, "leaked");
    }
}
