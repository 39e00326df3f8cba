//! The compiled policy that requests read: immutable, indexed, replaced whole on reload.

use std::path::PathBuf;

use super::server::ServerSettings;
use crate::audit::event::Revocation;
use crate::audit::{AuditSettings, Directory};
use crate::code::Code;
use crate::fleet::pushed::Kind;
use crate::globs::is_literal;
use crate::identity::{Credential, Identities};
use crate::limits::budget::Days;
use crate::limits::pricing::Prices;
use crate::limits::AgentLimits;
use crate::policy::revocations::{Revocations, RevokedKind};
use crate::policy::Agent;
use crate::providers::Provider;

/// Everything one request needs to decide, loaded once at its start.
#[derive(Debug)]
pub struct Snapshot {
    /// SHA-256 of the policy sources; reported in metrics, logs and audit events.
    pub version: String,
    pub server: ServerSettings,
    /// In policy order: the first provider whose globs match a model serves it.
    pub providers: Vec<Provider>,
    pub agents: Vec<Agent>,
    /// API keys, public keys, trusted issuers.
    pub identity: Identities,
    pub revocations: Revocations,
    /// How budget days are counted (`timezone:`; UTC by default).
    pub days: Days,
    /// `pricing:`, first match in policy order.
    pub prices: Prices,
    /// `teams:`: each team's budgets by live-state key (`team:<name>`), published with the
    /// agents' state.
    pub teams: Vec<(String, AgentLimits)>,
    /// Files the policy points at (provider key files, CA files) and what they held when
    /// compiled: a change to one of them is a policy change too.
    pub referenced_files: Vec<ReferencedFile>,
    /// `audit:`; read once at start-up (the shipper is not rebuilt on reload).
    pub audit: Option<AuditSettings>,
    /// `tracing:`; its exporter is set up once at start-up, its sample ratio followed on
    /// reload.
    pub tracing: Option<crate::telemetry::TracingSettings>,
    /// `fleet:`: limits and revocations shared through Redis (followed on reload).
    pub fleet: Option<crate::fleet::FleetSettings>,
}

/// A file read while compiling, other than the policy sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencedFile {
    pub path: PathBuf,
    /// SHA-256 of the contents; `None` when the file could not be read.
    pub digest: Option<[u8; 32]>,
}

impl Snapshot {
    /// The provider that serves `model`, with its index.
    pub fn route(&self, model: &str) -> Option<(usize, &Provider)> {
        crate::providers::route(&self.providers, model)
    }

    /// Whether the policy names `model` exactly (in the agent's allowlist or a provider's model
    /// list): only such models get their own metrics label, so an agent allowed a wildcard
    /// cannot mint a series per invented name.
    pub fn names_model(&self, agent: &Agent, model: &str) -> bool {
        agent.models.matches_literally(model)
            || self
                .providers
                .iter()
                .any(|p| p.models.matches_literally(model))
    }

    /// Models an agent may use that some provider serves, for `GET /v1/models`.
    ///
    /// Wildcards cannot be listed, so the candidates are the exact names in the agent's
    /// allowlist and in the providers' model lists; each is listed once, if the agent may use it
    /// and a provider routes it.
    pub fn listable_models<'a>(&'a self, agent: &'a Agent) -> Vec<&'a str> {
        let candidates = agent
            .models
            .patterns()
            .chain(self.providers.iter().flat_map(|p| p.models.patterns()))
            .filter(|m| is_literal(m));
        let mut listed: Vec<&str> = Vec::new();
        for model in candidates {
            if !listed.contains(&model)
                && agent.models.matches(model)
                && self.route(model).is_some()
            {
                listed.push(model);
            }
        }
        listed
    }
}

/// Audit events name agents, providers and keys through the snapshot they were decided under.
impl Snapshot {
    /// For a request refused as revoked or suspended (`code`): which list said so — a pushed
    /// entry first (the fleet's, checked first), else the policy's — and its reason. Runs on
    /// refusals only, for the audit record; `now` (Unix seconds, the request's arrival) is
    /// when a suspension must still have been in force.
    pub fn revocation(
        &self,
        code: Code,
        agent: Option<usize>,
        credential: Option<&Credential>,
        now: i64,
    ) -> Option<Revocation> {
        let kinds = match code {
            Code::AgentRevoked => (Kind::Agent, RevokedKind::Agent),
            Code::AgentSuspended => (Kind::Suspend, RevokedKind::Agent),
            Code::PrincipalRevoked => (Kind::Team, RevokedKind::Team),
            Code::CredentialRevoked => match credential? {
                Credential::Jwt(_) => (Kind::Token, RevokedKind::Token),
                _ => (Kind::Key, RevokedKind::Credential),
            },
            _ => return None,
        };
        let id = match (kinds.0, credential) {
            (Kind::Agent | Kind::Suspend, _) => self.agents.get(agent?)?.id.as_str(),
            (Kind::Team, _) => self.agents.get(agent?)?.owner.as_deref()?,
            (Kind::Token, Some(Credential::Jwt(token))) => token.token_id.as_deref()?,
            (_, Some(credential)) => self.credential_id(credential)?,
            (_, None) => return None,
        };
        let pushed = self.identity.fleet.pushed();
        let in_force = |entry: &&crate::fleet::pushed::Entry| entry.until.is_none_or(|u| now < u);
        if let Some(entry) = pushed.get(kinds.0, id).filter(in_force) {
            return Some(Revocation {
                source: "fleet",
                reason: entry.reason.clone(),
            });
        }
        let reason = match code {
            Code::AgentSuspended => String::new(),
            _ => self
                .revocations
                .get(kinds.1, id)
                .map(|r| r.reason.clone())
                .unwrap_or_default(),
        };
        Some(Revocation {
            source: "policy",
            reason,
        })
    }
}

impl Directory for Snapshot {
    fn version(&self) -> &str {
        &self.version
    }

    fn agent_id(&self, agent: usize) -> Option<&str> {
        self.agents.get(agent).map(|a| a.id.as_str())
    }

    fn provider_name(&self, provider: usize) -> Option<&str> {
        self.providers.get(provider).map(|p| p.name.as_str())
    }

    fn credential_id(&self, credential: &Credential) -> Option<&str> {
        match credential {
            Credential::ApiKey(hash) => self.identity.keys.by_hash(hash).map(|k| k.key_id.as_str()),
            Credential::Jwt(token) => self
                .identity
                .issuers
                .get(token.issuer)
                .map(|i| i.name.as_str()),
            Credential::Signature(key) => self.identity.public_keys.get(*key).map(|k| &*k.id),
        }
    }
}
