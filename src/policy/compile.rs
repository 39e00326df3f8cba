//! `agents.<id>:` → an [`Agent`], and `revocations:` → [`Revocations`].
//!
//! An agent's section holds parts other domains own: its `keys` go to `identity`, its `limits`
//! to `limits` (bound to live state that survives reloads). This step calls them and puts the
//! agent together.

use std::collections::HashSet;
use std::path::Path;

use http::HeaderValue;
use serde_saphyr::Spanned;

use super::agent::{Agent, AgentStatus};
use super::endpoints::{EndpointCache, Endpoints};
use super::revocations::{Revocations, RevokedKind};
use super::spec::{AgentSpec, RevocationsSpec, RevokedSpec, StatusSpec};
use crate::globs::{GlobCache, Globs};
use crate::identity::compile::Keys;
use crate::limits::LiveState;
use crate::problem::Problems;

/// What compiling an agent draws on besides its own section.
pub struct AgentContext<'a, 'f> {
    pub globs: &'a mut GlobCache<'f>,
    pub endpoints: &'a mut EndpointCache<'f>,
    pub keys: &'a mut Keys<'f>,
    pub revocations: &'a Revocations,
    pub live: &'a LiveState,
    /// The policy has `fleet:`: limits are shared by the fleet.
    pub shared: bool,
    /// Whether some provider serves a model allowlist entry (cross-checked by the caller, who
    /// knows the providers).
    pub served: &'a mut dyn FnMut(&'f str) -> bool,
}

impl AgentSpec {
    /// Agent `id` (declared in `path`, to be number `index` of the snapshot), or `None` with
    /// the problems reported.
    pub fn compile<'f>(
        &'f self,
        path: &'f Path,
        id: &Spanned<String>,
        index: usize,
        p: &mut Problems<'_>,
        cx: &mut AgentContext<'_, 'f>,
    ) -> Option<Agent> {
        let valid_id = !id.value.is_empty()
            && id.value.len() <= 64
            && id
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_id {
            p.error(id, "agent ids are 1-64 characters of A-Z a-z 0-9 - _ .");
        }
        let revocations = cx.revocations;
        let key_revoked = |key: &str| revocations.get(RevokedKind::Credential, key).is_some();
        cx.keys.add(path, p, index, &self.keys, &key_revoked);
        cx.keys
            .add_public(path, p, index, &self.public_keys, &key_revoked);
        let models = cx.globs.compile(p, &self.models, "model");
        if models.is_some() {
            self.warn_unserved(p, id, cx.served);
        }
        let endpoints = match &self.endpoints {
            Some(endpoints) => cx.endpoints.compile(p, &id.value, endpoints)?,
            None => Endpoints::default_list(),
        };
        let services = super::services::compile(&self.services, p, cx.globs)?;
        let mcp = crate::mcp::grant::compile(&self.mcp, p, cx.globs)?;
        let actions = match &self.actions {
            Some(spec) => Some(spec.compile(p, cx.globs)?),
            None => None,
        };
        let schedule = match &self.schedule {
            Some(spec) => Some(super::schedule::ScheduleSpec::compile(spec, p)?),
            None => None,
        };
        let destinations = self.destinations(p, cx)?;
        let shared_objects = cx.globs.compile(p, &self.shared_objects, "shared object")?;
        let limits = self.limits.compile(p);
        let status = self.status(p, id, cx.revocations);
        let id_header = HeaderValue::from_str(&id.value).ok()?;
        if !valid_id {
            return None;
        }
        cx.keys.agent(&id.value, index);
        Some(Agent {
            id: id.value.clone(),
            owner: self.owner.clone(),
            id_header,
            models: models?,
            endpoints,
            services,
            mcp,
            actions,
            schedule,
            destinations,
            shared_objects,
            status,
            limits: cx.live.bind(&id.value, &limits, cx.shared),
            fleet: std::sync::Arc::clone(&cx.live.fleet),
        })
    }

    /// `destinations`: `host:port` globs, hosts in lower case (CONNECT targets are compared so).
    fn destinations<'f>(
        &'f self,
        p: &mut Problems<'_>,
        cx: &mut AgentContext<'_, 'f>,
    ) -> Option<Globs> {
        let mut ok = true;
        for destination in &self.destinations {
            let value = &destination.value;
            let port_ok = value.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && (port == "*" || port.parse::<u16>().is_ok())
            });
            if !port_ok {
                p.error(
                    destination,
                    format!("a destination is `host:port` (a port or `*`), got `{value}`"),
                );
                ok = false;
            } else if value.bytes().any(|b| b.is_ascii_uppercase()) {
                p.error(
                    destination,
                    format!("write destination hosts in lower case: `{value}`"),
                );
                ok = false;
            }
        }
        let globs = cx.globs.compile(p, &self.destinations, "destination")?;
        ok.then_some(globs)
    }

    /// `status` and `suspended_until`, overridden by `revocations.agents`.
    fn status(
        &self,
        p: &mut Problems<'_>,
        id: &Spanned<String>,
        revocations: &Revocations,
    ) -> AgentStatus {
        let status = self.status.as_ref().map(|s| s.value);
        let until = match (&self.suspended_until, status) {
            (Some(until), Some(StatusSpec::Suspended)) => p.timestamp(until, "suspended_until"),
            (Some(until), _) => {
                p.error(until, "`suspended_until` needs `status: suspended`");
                None
            }
            (None, _) => None,
        };
        if revocations.get(RevokedKind::Agent, &id.value).is_some() {
            return AgentStatus::Revoked;
        }
        let team = self.owner.as_deref();
        if team.is_some_and(|team| revocations.get(RevokedKind::Team, team).is_some()) {
            return AgentStatus::TeamRevoked;
        }
        match status {
            Some(StatusSpec::Suspended) => AgentStatus::Suspended { until },
            Some(StatusSpec::Active) | None => AgentStatus::Active,
        }
    }

    /// Warns about allowlist entries that no provider serves (likely a typo or a missing
    /// provider).
    fn warn_unserved<'f>(
        &'f self,
        p: &mut Problems<'_>,
        id: &Spanned<String>,
        served: &mut dyn FnMut(&'f str) -> bool,
    ) {
        let mut seen = HashSet::new();
        for model in &self.models {
            if model.value.contains('[') || !seen.insert(model.value.as_str()) {
                continue;
            }
            if !served(&model.value) {
                let message = format!(
                    "agent `{}` allows model `{}`, which no provider serves",
                    id.value, model.value
                );
                p.warning(model, message);
            }
        }
    }
}

impl RevocationsSpec {
    /// Adds this section's ids to `revocations` (sections of several files merge).
    pub fn compile_into(&self, p: &mut Problems<'_>, revocations: &mut Revocations) {
        for (kind, list) in self.lists() {
            for revoked in list {
                let id = revoked.value.id();
                if id.trim().is_empty() {
                    p.error(revoked, "a revoked id must not be empty");
                    continue;
                }
                revocations.insert(kind, id, revoked.value.reason());
            }
        }
    }

    /// Warns about revoked agent or key ids that the policy does not define: harmless (the id
    /// cannot be used anyway), but often a typo that leaves the intended one working.
    pub fn warn_unmatched(
        &self,
        p: &mut Problems<'_>,
        agent_defined: &dyn Fn(&str) -> bool,
        key_defined: &dyn Fn(&str) -> bool,
    ) {
        for (kind, list) in self.lists() {
            for revoked in list {
                let id = revoked.value.id();
                let (known, what) = match kind {
                    RevokedKind::Agent => (agent_defined(id), "agent"),
                    RevokedKind::Credential => (key_defined(id), "key"),
                    RevokedKind::Token | RevokedKind::Team => continue,
                };
                if !known && !id.trim().is_empty() {
                    let message = format!("revoked {what} `{id}` is not defined in this policy");
                    p.warning(revoked, message);
                }
            }
        }
    }

    /// The three lists with the kind each revokes.
    fn lists(&self) -> [(RevokedKind, &[Spanned<RevokedSpec>]); 4] {
        [
            (RevokedKind::Team, self.teams.as_slice()),
            (RevokedKind::Agent, self.agents.as_slice()),
            (RevokedKind::Credential, self.keys.as_slice()),
            (RevokedKind::Token, self.tokens.as_slice()),
        ]
    }
}
