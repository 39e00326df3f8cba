//! Policy files → one validated [`Snapshot`].
//!
//! This step only reads and assembles: each section is compiled by the domain that owns it
//! (`server` by [`super::server`], `providers` by `providers`, `agents` and `revocations` by
//! `policy` with `identity` and `limits`, `audit` by `audit`). What stays here is what spans
//! sections and files: a section defined twice, agents checked against every file's providers,
//! revocations against every file's agents and keys.
//!
//! Every check reports a [`Problem`] with its file, line and column and compiling goes on, so
//! `warden check` shows all problems at once. Any error refuses the whole policy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use super::env::Environment;
use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::env::RecordingSecrets;
use super::file::{parse, PolicyFile};
use super::server::ServerSettings;
use super::snapshot::Snapshot;
use super::source::Sources;
use crate::audit::AuditSettings;
use crate::fleet::FleetSettings;
use crate::globs::{is_literal, GlobCache, Globs};
use crate::identity::compile::{voucher, Keys};
use crate::identity::jwt::Issuer;
use crate::identity::vouch::Voucher;
use crate::limits::budget::Days;
use crate::limits::pricing::Prices;
use crate::limits::{AgentLimits, LiveState};
use crate::policy::compile::AgentContext;
use crate::policy::endpoints::EndpointCache;
use crate::policy::revocations::Revocations;
use crate::policy::Agent;
use crate::problem::{Origin, Problem, Problems};
use crate::providers::compile::Outside;
use crate::providers::spec::ProviderSpec;
use crate::providers::{Provider, Serves};

/// A compiled snapshot with the warnings found on the way.
pub struct Compiled {
    pub snapshot: Snapshot,
    pub warnings: Vec<Problem>,
}

/// Parses, merges, validates and compiles policy sources.
pub fn compile(sources: &Sources, env: &Environment<'_>) -> Result<Compiled, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut parsed = Vec::with_capacity(sources.files.len());
    for file in &sources.files {
        match parse(&file.path, &file.text) {
            Ok(policy) => parsed.push(policy),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let files: Vec<(&Path, &PolicyFile)> = sources
        .files
        .iter()
        .map(|f| f.path.as_path())
        .zip(&parsed)
        .collect();
    compile_parsed(&sources.version, &files, env)
}

/// Merges, validates and compiles parsed policy files (in load order) into a snapshot of
/// `version`.
pub fn compile_parsed(
    version: &str,
    files: &[(&Path, &PolicyFile)],
    env: &Environment<'_>,
) -> Result<Compiled, Vec<Problem>> {
    let secrets = RecordingSecrets {
        inner: env.secrets,
        read: RefCell::default(),
    };
    let mut problems = Vec::new();
    let mut builder = Builder {
        live: env.live,
        outside: Outside {
            secrets: &secrets,
            lookup: env.lookup,
        },
        problems: &mut problems,
        server: None,
        audit: None,
        tracing: None,
        shared: files.iter().any(|(_, policy)| policy.fleet.is_some()),
        fleet: None,
        providers: Vec::new(),
        provider_names: HashMap::new(),
        agents: Vec::new(),
        agent_ids: HashMap::new(),
        keys: Keys::default(),
        issuers: Vec::new(),
        issuer_names: HashMap::new(),
        identity_key_file: false,
        voucher: None,
        delegation: None,
        vouching: Vec::new(),
        revocations: Revocations::default(),
        prices: Prices::default(),
        teams: IndexMap::new(),
        timezone: None,
        globs: GlobCache::default(),
        endpoints: EndpointCache::default(),
        served: HashMap::new(),
    };
    for (path, policy) in files {
        builder.file(path, policy);
    }
    for (path, policy) in files {
        builder.agents(path, policy);
    }
    for (path, policy) in files {
        builder.warn_unmatched_revocations(path, policy);
    }
    builder.check_vouching();
    let Builder {
        server,
        audit,
        tracing,
        fleet,
        providers,
        agents,
        keys,
        issuers,
        voucher,
        delegation,
        revocations,
        prices,
        teams,
        timezone,
        ..
    } = builder;

    if problems.iter().any(Problem::is_error) {
        return Err(problems);
    }
    let snapshot = Snapshot {
        version: version.to_string(),
        server: server.map(|(_, s)| s).unwrap_or_default(),
        providers,
        agents,
        identity: keys.finish(
            issuers,
            voucher,
            delegation.map(|(_, d)| d).unwrap_or_default(),
            Arc::clone(&env.live.fleet),
        ),
        revocations,
        prices,
        days: Days::new(timezone.map(|(_, zone)| zone)),
        teams: teams
            .into_iter()
            .map(|(name, (_, limits))| (team_state_key(name), limits))
            .collect(),
        referenced_files: secrets.read.into_inner(),
        audit: audit.map(|(_, a)| a),
        tracing: tracing.map(|(_, t)| t),
        fleet: fleet.map(|(_, f)| f),
    };
    Ok(Compiled {
        snapshot,
        warnings: problems,
    })
}

/// Compiling state; `'f` is the lifetime of the parsed files, which ids and origins borrow.
/// A service or MCP server section: its name, its section as a provider's, and where it asks
/// for `identity_header`.
type Endpoint<'f> = (&'f Spanned<String>, ProviderSpec, Option<&'f Spanned<bool>>);

struct Builder<'a, 'f> {
    live: &'a LiveState,
    outside: Outside<'a>,
    problems: &'a mut Vec<Problem>,
    server: Option<(Origin<'f>, ServerSettings)>,
    audit: Option<(Origin<'f>, AuditSettings)>,
    tracing: Option<(Origin<'f>, crate::telemetry::TracingSettings)>,
    /// Some file has `fleet:`: limits are bound to the fleet's leases.
    shared: bool,
    fleet: Option<(Origin<'f>, FleetSettings)>,
    providers: Vec<Provider>,
    provider_names: HashMap<&'f str, Origin<'f>>,
    agents: Vec<Agent>,
    agent_ids: HashMap<&'f str, Origin<'f>>,
    keys: Keys<'f>,
    issuers: Vec<Issuer>,
    issuer_names: HashMap<&'f str, Origin<'f>>,
    /// `server.identity_key_file` is set (whether or not it was read here).
    identity_key_file: bool,
    voucher: Option<Voucher>,
    delegation: Option<(Origin<'f>, crate::identity::delegation::Settings)>,
    /// Providers with `identity_header: true`, which need the identity key.
    vouching: Vec<(&'f Path, &'f Spanned<bool>)>,
    revocations: Revocations,
    prices: Prices,
    /// `teams:` by name, with where each was defined.
    teams: IndexMap<&'f str, (Origin<'f>, AgentLimits)>,
    timezone: Option<(Origin<'f>, jiff::tz::TimeZone)>,
    globs: GlobCache<'f>,
    endpoints: EndpointCache<'f>,
    /// Whether some provider serves a model allowlist entry, by entry.
    served: HashMap<&'f str, bool>,
}

impl<'f> Builder<'_, 'f> {
    fn at<'p>(problems: &'p mut Vec<Problem>, file: &'p Path) -> Problems<'p> {
        Problems {
            file,
            found: problems,
        }
    }

    /// Everything but agents: agents are checked against the providers of every file.
    fn file(&mut self, path: &'f Path, policy: &'f PolicyFile) {
        let mut p = Self::at(self.problems, path);
        if policy.version.value != 1 {
            let message = format!(
                "unsupported policy version {} (expected 1)",
                policy.version.value
            );
            p.error(&policy.version, message);
        }
        if let Some(server) = &policy.server {
            let settings = server.value.compile(&mut p);
            let first = self.server.as_ref().map(|(first, _)| first);
            if p.first_definition(first, server, "`server`") {
                self.server = Some((Origin::of(path, server), settings));
                if let Some(file) = &server.value.identity_key_file {
                    self.identity_key_file = true;
                    let secrets = self.outside.secrets;
                    self.voucher = voucher(&mut p, file, secrets).ok().flatten();
                }
            }
        }
        for (name, spec) in &policy.providers {
            let first = self.provider_names.get(name.value.as_str());
            if !p.first_definition(first, name, format_args!("provider `{}`", name.value)) {
                continue;
            }
            self.provider_names
                .insert(&name.value, Origin::of(path, name));
            if let Some(provider) = spec.compile(name, &mut p, &mut self.globs, &self.outside) {
                self.providers.push(provider);
            }
            if let Some(wanted) = spec.identity_header.as_ref().filter(|h| h.value) {
                self.vouching.push((path, wanted));
            }
        }
        let services = policy.services.iter();
        let services = services.map(|(n, s)| (n, s.as_provider(), None));
        self.endpoints(path, services, Serves::Service);
        let servers = policy.mcp_servers.iter();
        let servers = servers.map(|(n, s)| (n, s.as_provider(), s.identity_header.as_ref()));
        self.endpoints(path, servers, Serves::Mcp);
        let mut p = Self::at(self.problems, path);
        self.prices.add(&mut p, &policy.pricing);
        if let Some(zone) = &policy.timezone {
            let first = self.timezone.as_ref().map(|(first, _)| first);
            match jiff::tz::TimeZone::get(&zone.value) {
                _ if !p.first_definition(first, zone, "`timezone`") => {}
                Ok(parsed) => self.timezone = Some((Origin::of(path, zone), parsed)),
                Err(_) => p.error(
                    zone,
                    format!(
                        "`timezone` must be an IANA time zone like Europe/Paris, got `{}`",
                        zone.value
                    ),
                ),
            }
        }
        for (name, spec) in &policy.teams {
            let first = self.teams.get(name.value.as_str()).map(|(first, _)| first);
            if !p.first_definition(first, name, format_args!("team `{}`", name.value)) {
                continue;
            }
            let limits = spec.compile(&mut p);
            let bound = self
                .live
                .bind(&team_state_key(&name.value), &limits, self.shared);
            self.teams
                .insert(&name.value, (Origin::of(path, name), bound));
        }
        if let Some(spec) = &policy.delegation {
            let settings = spec.value.compile(&mut p);
            let first = self.delegation.as_ref().map(|(first, _)| first);
            if p.first_definition(first, spec, "`delegation`") {
                self.delegation = Some((Origin::of(path, spec), settings));
            }
        }
        for (name, spec) in &policy.issuers {
            if name.value == crate::identity::delegation::ISSUER {
                p.error(
                    name,
                    "`warden` is the issuer name of Warden's own delegated tokens",
                );
                continue;
            }
            let first = self.issuer_names.get(name.value.as_str());
            if !p.first_definition(first, name, format_args!("issuer `{}`", name.value)) {
                continue;
            }
            self.issuer_names
                .insert(&name.value, Origin::of(path, name));
            if let Some(issuer) = spec.compile(name, &mut p) {
                self.issuers.push(issuer);
            }
            if policy.issuers.len() > 1 && spec.agents.is_none() {
                let message = format!("issuer `{}` may mint tokens for every agent, beside other trusted issuers: scope it with `agents: [globs]`", name.value);
                p.warning(name, message);
            }
        }
        if let Some(revocations) = &policy.revocations {
            revocations.compile_into(&mut p, &mut self.revocations);
        }
        if let Some(fleet) = &policy.fleet {
            let first = self.fleet.as_ref().map(|(first, _)| first);
            if p.first_definition(first, fleet, "`fleet`") {
                if let Some(settings) = fleet.value.compile(&mut p) {
                    self.fleet = Some((Origin::of(path, fleet), settings));
                }
            }
        }
        if let Some(audit) = &policy.audit {
            let first = self.audit.as_ref().map(|(first, _)| first);
            if p.first_definition(first, audit, "`audit`") {
                if let Some(settings) = audit.value.compile(&mut p) {
                    self.audit = Some((Origin::of(path, audit), settings));
                }
            }
        }
        if let Some(tracing) = &policy.tracing {
            let first = self.tracing.as_ref().map(|(first, _)| first);
            if p.first_definition(first, tracing, "`tracing`") {
                if let Some(settings) = tracing.value.compile(&mut p) {
                    self.tracing = Some((Origin::of(path, tracing), settings));
                }
            }
        }
    }

    fn agents(&mut self, path: &'f Path, policy: &'f PolicyFile) {
        let mut p = Self::at(self.problems, path);
        let providers = &self.providers;
        let served_cache = &mut self.served;
        let mut served = |model: &'f str| {
            *served_cache
                .entry(model)
                .or_insert_with(|| is_served(providers, model))
        };
        let mut cx = AgentContext {
            globs: &mut self.globs,
            endpoints: &mut self.endpoints,
            keys: &mut self.keys,
            revocations: &self.revocations,
            live: self.live,
            shared: self.shared,
            served: &mut served,
        };
        for (id, spec) in &policy.agents {
            let first = self.agent_ids.get(id.value.as_str());
            if !p.first_definition(first, id, format_args!("agent `{}`", id.value)) {
                continue;
            }
            self.agent_ids.insert(&id.value, Origin::of(path, id));
            if let Some(mut agent) = spec.compile(path, id, self.agents.len(), &mut p, &mut cx) {
                let team = agent.owner.as_deref().and_then(|o| self.teams.get(o));
                if let Some((_, team)) = team {
                    agent.limits.budgets.share_with(&team.budgets);
                }
                self.agents.push(agent);
            }
            let granted = (spec.services.keys().map(|n| (n, Serves::Service)))
                .chain(spec.mcp.keys().map(|n| (n, Serves::Mcp)));
            for (name, serves) in granted {
                let defined = self
                    .providers
                    .iter()
                    .any(|s| s.serves == serves && s.name == name.value);
                if !defined {
                    let (noun, section) = (serves.noun(), serves.section());
                    let message = format!(
                        "agent `{}` is granted {noun} `{}`, which no `{section}:` entry defines",
                        id.value, name.value
                    );
                    p.error(name, message);
                }
            }
            if spec.limits.usd_per_day.is_some() {
                for model in &spec.models {
                    let sample = model.value.replace(['*', '?'], "x");
                    if self.prices.find(&sample).is_none() {
                        let message = format!("agent `{}` has `usd_per_day` but model `{}` has no price in `pricing`: its requests will be refused", id.value, model.value);
                        p.warning(model, message);
                    }
                }
            }
        }
    }

    /// Services and MCP servers: endpoints compiled as providers that serve no model, named
    /// in the providers' name space.
    fn endpoints(
        &mut self,
        path: &'f Path,
        endpoints: impl Iterator<Item = Endpoint<'f>>,
        serves: Serves,
    ) {
        let p = &mut Self::at(self.problems, path);
        for (name, spec, vouching) in endpoints {
            let first = self.provider_names.get(name.value.as_str());
            let what = format_args!("`{}` (a provider, service or MCP server name)", name.value);
            if !p.first_definition(first, name, what) {
                continue;
            }
            self.provider_names
                .insert(&name.value, Origin::of(path, name));
            let mut globs = GlobCache::default();
            if let Some(compiled) = spec.compile_as(name, p, &mut globs, &self.outside, serves) {
                self.providers.push(compiled);
            }
            if let Some(wanted) = vouching.filter(|h| h.value) {
                self.vouching.push((path, wanted));
            }
        }
    }

    /// `identity_header: true` needs Warden's identity key to sign with.
    fn check_vouching(&mut self) {
        if self.identity_key_file {
            return;
        }
        for (path, at) in &self.vouching {
            Self::at(self.problems, path).error(
                *at,
                "`identity_header: true` needs `server.identity_key_file` (Warden's key to sign X-Agent-Identity with)",
            );
        }
    }

    fn warn_unmatched_revocations(&mut self, path: &Path, policy: &PolicyFile) {
        if let Some(revocations) = &policy.revocations {
            let mut p = Self::at(self.problems, path);
            let agent_ids = &self.agent_ids;
            let keys = &self.keys;
            revocations.warn_unmatched(&mut p, &|id| agent_ids.contains_key(id), &|id| {
                keys.defines(id)
            });
        }
    }
}

/// The live-state key of team `name`'s budgets: `:` never occurs in an agent id, so a team
/// cannot share an agent's state.
fn team_state_key(name: &str) -> String {
    format!("team:{name}")
}

/// Whether some provider serves an allowlist entry: a wildcard entry counts as served when a
/// sample name it matches is routed (`claude-*` by a provider of `claude-*`) or when it matches
/// one of a provider's globs.
fn is_served(providers: &[Provider], model: &str) -> bool {
    let sample = model.replace(['*', '?'], "x");
    let entry = Globs::compile([model]).unwrap_or_default();
    providers.iter().any(|p| {
        p.models.matches(&sample)
            || (!is_literal(model) && p.models.patterns().any(|pm| entry.matches(pm)))
    })
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
