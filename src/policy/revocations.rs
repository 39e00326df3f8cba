//! The compiled revocation list: ids that must stop working now, with the reason policy gives.
//!
//! Agent and API-key revocations are also folded into the agents and keys themselves while
//! compiling, so the hot path pays nothing for them; this list keeps the reasons (for logs and
//! audit) and answers for credentials that are not in the key index (token ids, later public
//! key ids).

use std::collections::HashMap;

/// Every revoked id of a snapshot, by kind.
#[derive(Debug, Default)]
pub struct Revocations {
    agents: HashMap<String, Revoked>,
    credentials: HashMap<String, Revoked>,
    tokens: HashMap<String, Revoked>,
    teams: HashMap<String, Revoked>,
}

/// One revocation's reason; empty when policy gives none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    pub reason: String,
}

/// Which list an id is revoked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedKind {
    Agent,
    /// An API key id or a public key id.
    Credential,
    /// A token id (JWT `jti`).
    Token,
    /// A team: an `owner` of agents.
    Team,
}

impl Revocations {
    /// Adds a revocation; an id listed twice keeps its first reason (files merge in name order).
    pub fn insert(&mut self, kind: RevokedKind, id: &str, reason: Option<&str>) {
        let revoked = Revoked {
            reason: reason.unwrap_or_default().to_string(),
        };
        self.list_mut(kind).entry(id.to_string()).or_insert(revoked);
    }

    /// Whether `id` is revoked as `kind`, and why.
    pub fn get(&self, kind: RevokedKind, id: &str) -> Option<&Revoked> {
        self.list(kind).get(id)
    }

    /// How many ids are revoked as `kind`.
    pub fn count(&self, kind: RevokedKind) -> usize {
        self.list(kind).len()
    }

    fn list(&self, kind: RevokedKind) -> &HashMap<String, Revoked> {
        match kind {
            RevokedKind::Agent => &self.agents,
            RevokedKind::Credential => &self.credentials,
            RevokedKind::Token => &self.tokens,
            RevokedKind::Team => &self.teams,
        }
    }

    fn list_mut(&mut self, kind: RevokedKind) -> &mut HashMap<String, Revoked> {
        match kind {
            RevokedKind::Agent => &mut self.agents,
            RevokedKind::Credential => &mut self.credentials,
            RevokedKind::Token => &mut self.tokens,
            RevokedKind::Team => &mut self.teams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_separate_and_the_first_reason_wins() {
        let mut r = Revocations::default();
        r.insert(RevokedKind::Token, "jti-1", Some("leaked"));
        r.insert(RevokedKind::Token, "jti-1", Some("again"));
        r.insert(RevokedKind::Agent, "bot", None);
        assert_eq!(r.get(RevokedKind::Token, "jti-1").unwrap().reason, "leaked");
        assert_eq!(r.get(RevokedKind::Agent, "bot").unwrap().reason, "");
        assert!(r.get(RevokedKind::Credential, "bot").is_none());
        assert!(r.get(RevokedKind::Agent, "jti-1").is_none());
        assert_eq!(r.count(RevokedKind::Token), 1);
    }
}
