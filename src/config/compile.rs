//! Policy files → one validated [`Snapshot`].
//!
//! Every check reports a [`Problem`] with its file, line and column and compiling goes on, so
//! `warden check` shows all problems at once. Any error refuses the whole policy.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use jiff::Timestamp;
use pingora::protocols::tls::CaType;
use serde_saphyr::Spanned;

use sha2::{Digest, Sha256};

use super::file::{
    AgentSpec, AuditSpec, AuthSpec, PolicyFile, ProviderKindSpec, ProviderSpec, RevocationsSpec,
    RevokedSpec, ServerSpec, SinkSpec, StatusSpec,
};
use super::problem::{Problem, Problems};
use super::resolve::ResolvedAddr;
use super::snapshot::{
    Agent, AgentStatus, HttpUpstream, Provider, ReferencedFile, ServerSettings, Snapshot, Upstream,
    UpstreamAuth,
};
use super::source::Sources;
use crate::audit::{self, AuditSettings};
use crate::identity::api_key::{parse_hash, KeyIndex};
use crate::limits::LiveState;
use crate::policy::globs::{is_literal, Globs};
use crate::policy::revocations::{Revocations, RevokedKind};

/// Defaults for `server:` when a policy leaves a field out.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9464";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: f64 = 10.0;
pub const DEFAULT_READ_TIMEOUT_SECS: f64 = 600.0;

/// What compiling may touch outside the policy text.
pub struct Environment<'a> {
    /// Live limit state to bind agents to (shared across reloads).
    pub live: &'a LiveState,
    /// Resolve provider hosts (serve) or leave them unresolved (check, tests).
    pub resolve_hosts: bool,
    /// Read provider keys from the environment and files (serve) or skip them (check: CI has
    /// no production secrets).
    pub read_secrets: bool,
}

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

/// Parses one policy file (the slow step: about 14 MB/s; a reload reuses the result for files
/// whose text did not change).
pub fn parse(path: &Path, text: &str) -> Result<PolicyFile, Problem> {
    serde_saphyr::from_str_with_options::<PolicyFile>(text, yaml_options())
        .map_err(|e| parse_problem(path, &e))
}

/// Merges, validates and compiles parsed policy files (in load order) into a snapshot of
/// `version`.
pub fn compile_parsed(
    version: &str,
    files: &[(&Path, &PolicyFile)],
    env: &Environment<'_>,
) -> Result<Compiled, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut builder = Builder {
        env,
        problems: &mut problems,
        server: None,
        audit: None,
        providers: Vec::new(),
        provider_names: HashMap::new(),
        agents: Vec::new(),
        agent_ids: HashMap::new(),
        key_ids: HashMap::new(),
        keys: KeyIndex::default(),
        revocations: Revocations::default(),
        referenced_files: Vec::new(),
        globs: HashMap::new(),
        served: HashMap::new(),
    };
    for (path, policy) in files {
        builder.file(path, policy);
    }
    for (path, policy) in files {
        builder.agents(path, policy);
    }
    for (path, policy) in files {
        if let Some(revocations) = &policy.revocations {
            builder.warn_unmatched_revocations(path, revocations);
        }
    }
    let server = builder.server.take().map(|(_, s)| s);
    let audit = builder.audit.take().map(|(_, a)| a);
    let Builder {
        providers,
        agents,
        keys,
        revocations,
        referenced_files,
        ..
    } = builder;

    if problems.iter().any(Problem::is_error) {
        return Err(problems);
    }
    let snapshot = Snapshot {
        version: version.to_string(),
        server: server.unwrap_or_else(default_server),
        providers,
        agents,
        keys,
        revocations,
        referenced_files,
        audit,
    };
    Ok(Compiled {
        snapshot,
        warnings: problems,
    })
}

/// serde-saphyr's default budget (250 000 nodes) protects against hostile YAML but refuses a
/// policy of about 10 000 agents. Policy files come from the operator's git, so the node and
/// event caps are raised to fit ~200 000 agents; the alias, anchor and depth caps that stop
/// "billion laughs" documents stay at their defaults.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 5_000_000,
            max_events: 10_000_000,
        },
    }
}

fn parse_problem(path: &Path, e: &serde_saphyr::Error) -> Problem {
    let message = first_line(&e.to_string());
    match e.location() {
        Some(at) => Problem::error(path, at, message),
        None => Problem::file_error(path, message),
    }
}

/// serde-saphyr renders a source snippet after the message; `check` wants one line.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // The position is reported in front already; drop the parser's own "line N column M: ".
    match line.split_once(": ") {
        Some((position, rest))
            if position.starts_with("line ") && position.contains(" column ") =>
        {
            rest.to_string()
        }
        _ => line.to_string(),
    }
}

fn default_server() -> ServerSettings {
    ServerSettings {
        listen: DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000))),
        admin: DEFAULT_ADMIN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9464))),
        max_body_bytes: DEFAULT_MAX_BODY_BYTES as usize,
        connect_timeout: Duration::from_secs_f64(DEFAULT_CONNECT_TIMEOUT_SECS),
        read_timeout: Duration::from_secs_f64(DEFAULT_READ_TIMEOUT_SECS),
        resolve_interval: super::resolve::DEFAULT_RESOLVE_INTERVAL,
    }
}

/// Where something was first defined, for "already defined at" errors. Formatted only when
/// such an error is reported: a 10 000-agent policy should not format 20 000 strings.
#[derive(Clone, Copy)]
struct Origin<'f> {
    file: &'f Path,
    line: u64,
}

impl Origin<'_> {
    fn of<'f, T>(file: &'f Path, at: &Spanned<T>) -> Origin<'f> {
        Origin {
            file,
            line: at.referenced.line(),
        }
    }
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Compiling state; `'f` is the lifetime of the parsed files, which ids and origins borrow.
struct Builder<'a, 'e, 'f> {
    env: &'a Environment<'e>,
    problems: &'a mut Vec<Problem>,
    server: Option<(Origin<'f>, ServerSettings)>,
    audit: Option<(Origin<'f>, AuditSettings)>,
    providers: Vec<Provider>,
    provider_names: HashMap<&'f str, Origin<'f>>,
    agents: Vec<Agent>,
    agent_ids: HashMap<&'f str, Origin<'f>>,
    key_ids: HashMap<&'f str, Origin<'f>>,
    keys: KeyIndex,
    revocations: Revocations,
    referenced_files: Vec<ReferencedFile>,
    /// Compiled glob lists by their patterns: agents mostly share a few allowlists.
    globs: HashMap<Vec<&'f str>, Globs>,
    /// Whether some provider serves a model allowlist entry, by entry.
    served: HashMap<&'f str, bool>,
}

impl<'f> Builder<'_, '_, 'f> {
    fn at<'p>(&'p mut self, file: &'p Path) -> Problems<'p> {
        Problems {
            file,
            found: self.problems,
        }
    }

    /// Everything but agents: agents are checked against the providers of every file.
    fn file(&mut self, path: &'f Path, policy: &'f PolicyFile) {
        if policy.version.value != 1 {
            let message = format!(
                "unsupported policy version {} (expected 1)",
                policy.version.value
            );
            self.at(path).error(&policy.version, message);
        }
        if let Some(server) = &policy.server {
            let settings = self.server_settings(path, &server.value);
            let here = Origin::of(path, server);
            match &self.server {
                Some((first, _)) => {
                    let message = format!("`server` is already defined at {first}");
                    self.at(path).error(server, message);
                }
                None => self.server = Some((here, settings)),
            }
        }
        for (name, spec) in &policy.providers {
            let here = Origin::of(path, name);
            if let Some(first) = self.provider_names.get(name.value.as_str()) {
                let message = format!("provider `{}` is already defined at {first}", name.value);
                self.at(path).error(name, message);
                continue;
            }
            self.provider_names.insert(&name.value, here);
            if let Some(provider) = self.provider(path, name, spec) {
                self.providers.push(provider);
            }
        }
        if let Some(revocations) = &policy.revocations {
            self.revocations_list(path, revocations);
        }
        if let Some(audit) = &policy.audit {
            let here = Origin::of(path, audit);
            match &self.audit {
                Some((first, _)) => {
                    let message = format!("`audit` is already defined at {first}");
                    self.at(path).error(audit, message);
                }
                None => {
                    if let Some(settings) = self.audit_settings(path, &audit.value) {
                        self.audit = Some((here, settings));
                    }
                }
            }
        }
    }

    fn audit_settings(&mut self, path: &Path, spec: &AuditSpec) -> Option<AuditSettings> {
        let mut p = self.at(path);
        let mut ok = true;
        match &spec.sink.value {
            SinkSpec::File(file) if file.path.trim().is_empty() => {
                p.error(&spec.sink, "the file sink needs a `path`");
                ok = false;
            }
            SinkSpec::Http(http) if !is_http_url(&http.url) => {
                p.error(
                    &spec.sink,
                    format!(
                        "`url` must be an http:// or https:// URL, got `{}`",
                        http.url
                    ),
                );
                ok = false;
            }
            SinkSpec::Otlp(otlp) if !is_http_url(&otlp.endpoint) => {
                p.error(
                    &spec.sink,
                    format!(
                        "`endpoint` must be an http:// or https:// URL, got `{}`",
                        otlp.endpoint
                    ),
                );
                ok = false;
            }
            _ => {}
        }
        if spec.spool_dir.value.trim().is_empty() {
            p.error(&spec.spool_dir, "`spool_dir` must name a directory");
            ok = false;
        }
        let positive = |v: &Option<Spanned<u64>>, field: &str, p: &mut Problems<'_>| match v {
            Some(n) if n.value == 0 => {
                p.error(n, format!("`{field}` must be at least 1"));
                None
            }
            Some(n) => Some(n.value),
            None => None,
        };
        let spool_max_bytes = positive(&spec.spool_max_bytes, "spool_max_bytes", &mut p);
        let checkpoint_every = positive(&spec.checkpoint_every, "checkpoint_every", &mut p);
        let checkpoint_interval = match &spec.checkpoint_interval_secs {
            Some(secs) => match Duration::try_from_secs_f64(secs.value) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    p.error(
                        secs,
                        "`checkpoint_interval_secs` must be a positive number of seconds",
                    );
                    None
                }
            },
            None => None,
        };
        if spec.signing_key_file.is_none() {
            p.warning(&spec.sink, "no `signing_key_file`: audit checkpoints will not be signed (make a key with `warden keygen`)");
        }
        if let Some(instance) = &spec.instance {
            if instance.value.trim().is_empty() {
                p.error(instance, "`instance` must not be empty");
                ok = false;
            }
        }
        ok.then(|| AuditSettings {
            sink: spec.sink.value.clone(),
            spool_dir: spec.spool_dir.value.clone().into(),
            spool_max_bytes: spool_max_bytes.unwrap_or(audit::DEFAULT_SPOOL_MAX_BYTES),
            signing_key_file: spec
                .signing_key_file
                .as_ref()
                .map(|f| f.value.clone().into()),
            instance: spec.instance.as_ref().map(|i| i.value.clone()),
            checkpoint_every: checkpoint_every.unwrap_or(audit::DEFAULT_CHECKPOINT_EVERY),
            checkpoint_interval: checkpoint_interval.unwrap_or(audit::DEFAULT_CHECKPOINT_INTERVAL),
        })
    }

    /// Gathers `revocations:`; they apply to agents and keys of every file.
    fn revocations_list(&mut self, path: &Path, spec: &RevocationsSpec) {
        for (kind, list) in revocation_lists(spec) {
            for revoked in list {
                let id = revoked.value.id();
                if id.trim().is_empty() {
                    self.at(path)
                        .error(revoked, "a revoked id must not be empty");
                    continue;
                }
                self.revocations.insert(kind, id, revoked.value.reason());
            }
        }
    }

    /// Warns about revoked agent or key ids that this policy does not define: harmless (the id
    /// cannot be used anyway), but often a typo that leaves the intended one working.
    fn warn_unmatched_revocations(&mut self, path: &Path, spec: &RevocationsSpec) {
        for (kind, list) in revocation_lists(spec) {
            for revoked in list {
                let id = revoked.value.id();
                let (known, what) = match kind {
                    RevokedKind::Agent => (self.agent_ids.contains_key(id), "agent"),
                    RevokedKind::Credential => (self.key_ids.contains_key(id), "key"),
                    RevokedKind::Token => continue,
                };
                if !known && !id.trim().is_empty() {
                    let message = format!("revoked {what} `{id}` is not defined in this policy");
                    self.at(path).warning(revoked, message);
                }
            }
        }
    }

    fn server_settings(&mut self, path: &Path, spec: &ServerSpec) -> ServerSettings {
        let mut settings = default_server();
        let mut p = self.at(path);
        if let Some(listen) = &spec.listen {
            match listen.value.parse() {
                Ok(addr) => settings.listen = addr,
                Err(_) => p.error(
                    listen,
                    format!("`listen` must be IP:port, got `{}`", listen.value),
                ),
            }
        }
        if let Some(admin) = &spec.admin {
            match admin.value.parse() {
                Ok(addr) => settings.admin = addr,
                Err(_) => p.error(
                    admin,
                    format!("`admin` must be IP:port, got `{}`", admin.value),
                ),
            }
        }
        if let Some(max) = &spec.max_body_bytes {
            match usize::try_from(max.value) {
                Ok(n) if n > 0 => settings.max_body_bytes = n,
                _ => p.error(max, "`max_body_bytes` must be a positive number of bytes"),
            }
        }
        for (field, value, slot) in [
            (
                "connect_timeout_secs",
                &spec.connect_timeout_secs,
                &mut settings.connect_timeout,
            ),
            (
                "read_timeout_secs",
                &spec.read_timeout_secs,
                &mut settings.read_timeout,
            ),
            (
                "resolve_interval_secs",
                &spec.resolve_interval_secs,
                &mut settings.resolve_interval,
            ),
        ] {
            if let Some(secs) = value {
                match Duration::try_from_secs_f64(secs.value) {
                    Ok(d) if !d.is_zero() => *slot = d,
                    _ => p.error(
                        secs,
                        format!("`{field}` must be a positive number of seconds"),
                    ),
                }
            }
        }
        settings
    }

    fn provider(
        &mut self,
        path: &'f Path,
        name: &Spanned<String>,
        spec: &'f ProviderSpec,
    ) -> Option<Provider> {
        let models = self.globs(path, &spec.models, "model");
        if spec.models.is_empty() {
            let message = format!("provider `{}` serves no models", name.value);
            self.at(path).warning(name, message);
        }
        let kind = spec
            .kind
            .as_ref()
            .map_or(ProviderKindSpec::Http, |k| k.value);
        let upstream = match kind {
            ProviderKindSpec::Mock => {
                if let Some(url) = &spec.base_url {
                    self.at(path)
                        .error(url, "a `kind: mock` provider has no `base_url`");
                }
                if let Some(ca_file) = &spec.ca_file {
                    self.at(path)
                        .error(ca_file, "a `kind: mock` provider has no `ca_file`");
                }
                Upstream::Mock
            }
            ProviderKindSpec::Http => match &spec.base_url {
                Some(url) => {
                    Upstream::Http(self.http_upstream(path, url, spec.ca_file.as_ref())?)
                }
                None => {
                    let message = format!("provider `{}` needs a `base_url`", name.value);
                    self.at(path).error(name, message);
                    return None;
                }
            },
        };
        let auth = self.upstream_auth(path, name, spec, kind);
        Some(Provider {
            name: name.value.clone(),
            models: models?,
            upstream,
            auth,
        })
    }

    fn http_upstream(
        &mut self,
        path: &Path,
        url: &Spanned<String>,
        ca_file: Option<&Spanned<String>>,
    ) -> Option<HttpUpstream> {
        let env = self.env;
        let ca = match ca_file {
            Some(file) => self.trust_list(path, file)?,
            None => None,
        };
        let mut p = self.at(path);
        let uri: Uri = match url.value.parse() {
            Ok(uri) => uri,
            Err(e) => {
                p.error(url, format!("`base_url` is not a URL: {e}"));
                return None;
            }
        };
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                p.error(url, "`base_url` must start with http:// or https://");
                return None;
            }
        };
        let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']']).to_string()) else {
            p.error(url, "`base_url` has no host");
            return None;
        };
        if uri.query().is_some() {
            p.error(url, "`base_url` must not have a query string");
            return None;
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host);
        let Ok(authority) = HeaderValue::from_str(authority) else {
            p.error(url, "`base_url` host is not a valid Host header");
            return None;
        };
        if !tls {
            if let Some(file) = ca_file {
                p.warning(
                    file,
                    "`ca_file` is unused: `base_url` is http://, not https://",
                );
            }
        }
        let addr = if env.resolve_hosts {
            let addr = super::resolve::lookup(&host, port);
            if addr.is_none() {
                p.warning(url, format!("cannot resolve `{host}`: requests to it will get 502 until a lookup succeeds (retried in the background)"));
            }
            addr
        } else {
            None
        };
        Some(HttpUpstream {
            addr: Arc::new(ResolvedAddr::new(addr)),
            tls,
            host,
            port,
            ca,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// Reads a provider's `ca_file` (serve only; `check` runs where mounted files are absent).
    /// `None` on error (reported); `Some(None)` when files are not read.
    fn trust_list(&mut self, path: &Path, file: &Spanned<String>) -> Option<Option<Arc<CaType>>> {
        if !self.env.read_secrets {
            return Some(None);
        }
        let bytes = std::fs::read(&file.value);
        self.referenced_files.push(ReferencedFile {
            path: file.value.clone().into(),
            digest: bytes.as_deref().ok().map(|b| Sha256::digest(b).into()),
        });
        let list = bytes
            .map_err(|e| e.to_string())
            .and_then(|b| super::trust::trust_list(&b));
        match list {
            Ok(list) => Some(Some(list)),
            Err(e) => {
                self.at(path)
                    .error(file, format!("cannot use `ca_file` {}: {e}", file.value));
                None
            }
        }
    }

    fn upstream_auth(
        &mut self,
        path: &Path,
        name: &Spanned<String>,
        spec: &ProviderSpec,
        kind: ProviderKindSpec,
    ) -> UpstreamAuth {
        let default_auth = match kind {
            ProviderKindSpec::Mock => AuthSpec::None,
            ProviderKindSpec::Http => AuthSpec::Bearer,
        };
        let auth = spec.auth.as_ref().map_or(default_auth, |a| a.value);
        let env = self.env;
        match (&spec.api_key_env, &spec.api_key_file) {
            (Some(_), Some(file)) => {
                self.at(path)
                    .error(file, "give `api_key_env` or `api_key_file`, not both");
                return UpstreamAuth::Missing("conflicting key sources".into());
            }
            (None, None) if auth != AuthSpec::None => {
                self.at(path).error(
                    name,
                    format!(
                        "provider `{}` uses `auth: {}` but has no `api_key_env` or `api_key_file`",
                        name.value,
                        auth_name(auth)
                    ),
                );
                return UpstreamAuth::Missing("no key source".into());
            }
            (Some(key), None) | (None, Some(key)) if auth == AuthSpec::None => {
                self.at(path)
                    .warning(key, "`auth: none` sends no key; this key source is unused");
                return UpstreamAuth::None;
            }
            _ => {}
        }
        if auth == AuthSpec::None {
            return UpstreamAuth::None;
        }
        let (secret, origin, at) = if let Some(var) = &spec.api_key_env {
            (
                env.read_secrets
                    .then(|| std::env::var(&var.value).ok())
                    .flatten(),
                format!("environment variable {}", var.value),
                var,
            )
        } else if let Some(file) = &spec.api_key_file {
            let text = if env.read_secrets {
                let bytes = std::fs::read(&file.value).ok();
                self.referenced_files.push(ReferencedFile {
                    path: file.value.clone().into(),
                    digest: bytes.as_deref().map(|b| Sha256::digest(b).into()),
                });
                bytes.and_then(|b| String::from_utf8(b).ok())
            } else {
                None
            };
            (
                text.map(|t| t.trim_end().to_string()),
                format!("file {}", file.value),
                file,
            )
        } else {
            return UpstreamAuth::Missing("no key source".into());
        };
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            if env.read_secrets {
                self.at(path).warning(at, format!("provider `{}` has no key yet ({origin} is unset or empty): its requests get 502", name.value));
            }
            return UpstreamAuth::Missing(origin);
        };
        let value = match auth {
            AuthSpec::Bearer => HeaderValue::from_str(&format!("Bearer {secret}")),
            _ => HeaderValue::from_str(&secret),
        };
        match value {
            Ok(mut value) => {
                value.set_sensitive(true);
                match auth {
                    AuthSpec::Bearer => UpstreamAuth::Bearer(value),
                    _ => UpstreamAuth::XApiKey(value),
                }
            }
            Err(_) => {
                self.at(path).error(
                    at,
                    format!("the key in {origin} has characters not allowed in an HTTP header"),
                );
                UpstreamAuth::Missing(origin)
            }
        }
    }

    fn agents(&mut self, path: &'f Path, policy: &'f PolicyFile) {
        for (id, spec) in &policy.agents {
            let here = Origin::of(path, id);
            if let Some(first) = self.agent_ids.get(id.value.as_str()) {
                let message = format!("agent `{}` is already defined at {first}", id.value);
                self.at(path).error(id, message);
                continue;
            }
            self.agent_ids.insert(&id.value, here);
            if let Some(agent) = self.agent(path, id, spec) {
                self.agents.push(agent);
            }
        }
    }

    fn agent(
        &mut self,
        path: &'f Path,
        id: &Spanned<String>,
        spec: &'f AgentSpec,
    ) -> Option<Agent> {
        let valid_id = !id.value.is_empty()
            && id.value.len() <= 64
            && id
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_id {
            self.at(path)
                .error(id, "agent ids are 1-64 characters of A-Z a-z 0-9 - _ .");
        }
        let index = self.agents.len();
        self.agent_keys(path, index, spec);
        let models = self.globs(path, &spec.models, "model");
        if models.is_some() {
            self.warn_unserved(path, id, spec);
        }
        let endpoints = match &spec.endpoints {
            Some(endpoints) => {
                for e in endpoints.iter().filter(|e| !e.value.starts_with('/')) {
                    self.at(path)
                        .error(e, format!("endpoint `{}` must start with /", e.value));
                }
                Some(self.globs(path, endpoints, "endpoint")?)
            }
            None => None,
        };
        let rpm = spec.limits.requests_per_minute.as_ref().and_then(|rpm| {
            let n = NonZeroU32::new(rpm.value);
            if n.is_none() {
                self.at(path).error(rpm, "`requests_per_minute` must be at least 1 (use `status: suspended` to stop an agent)");
            }
            n
        });
        let max_concurrent = spec.limits.max_concurrent.as_ref().and_then(|max| {
            if max.value == 0 {
                self.at(path).error(max, "`max_concurrent` must be at least 1 (use `status: suspended` to stop an agent)");
                return None;
            }
            Some(max.value)
        });
        let status = self.agent_status(path, id, spec);
        let id_header = HeaderValue::from_str(&id.value).ok()?;
        if !valid_id {
            return None;
        }
        Some(Agent {
            id: id.value.clone(),
            id_header,
            models: models?,
            endpoints,
            status,
            limits: self.env.live.bind(&id.value, rpm, max_concurrent),
        })
    }

    /// `status` and `suspended_until`, overridden by `revocations.agents`.
    fn agent_status(&mut self, path: &Path, id: &Spanned<String>, spec: &AgentSpec) -> AgentStatus {
        let status = spec.status.as_ref().map(|s| s.value);
        let until = match (&spec.suspended_until, status) {
            (Some(until), Some(StatusSpec::Suspended)) => {
                self.timestamp(path, until, "suspended_until")
            }
            (Some(until), _) => {
                self.at(path)
                    .error(until, "`suspended_until` needs `status: suspended`");
                None
            }
            (None, _) => None,
        };
        if self
            .revocations
            .get(RevokedKind::Agent, &id.value)
            .is_some()
        {
            return AgentStatus::Revoked;
        }
        match status {
            Some(StatusSpec::Suspended) => AgentStatus::Suspended { until },
            Some(StatusSpec::Active) | None => AgentStatus::Active,
        }
    }

    /// An RFC 3339 time, or an error naming `field`.
    fn timestamp(&mut self, path: &Path, at: &Spanned<String>, field: &str) -> Option<Timestamp> {
        let parsed = at.value.parse::<Timestamp>().ok();
        if parsed.is_none() {
            let message = format!(
                "`{field}` must be an RFC 3339 time like 2027-01-31T00:00:00Z, got `{}`",
                at.value
            );
            self.at(path).error(at, message);
        }
        parsed
    }

    fn agent_keys(&mut self, path: &'f Path, agent: usize, spec: &'f AgentSpec) {
        for key in &spec.keys {
            let key_id = &key.value.id;
            let here = Origin::of(path, key_id);
            if let Some(first) = self.key_ids.get(key_id.value.as_str()) {
                let message = format!("key id `{}` is already used at {first}", key_id.value);
                self.at(path).error(key_id, message);
                continue;
            }
            self.key_ids.insert(&key_id.value, here);
            let sha = &key.value.sha256;
            let Some(hash) = parse_hash(&sha.value) else {
                self.at(path).error(sha, "`sha256` must be 64 hex digits (the SHA-256 of the whole key; `warden keys new` prints it)");
                continue;
            };
            let expires_at = match &key.value.expires_at {
                Some(at) => match self.timestamp(path, at, "expires_at") {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            let revoked = self
                .revocations
                .get(RevokedKind::Credential, &key_id.value)
                .is_some();
            if !self
                .keys
                .insert(hash, agent, key_id.value.clone(), expires_at, revoked)
            {
                self.at(path)
                    .error(sha, "this key hash is already used by another key");
            }
        }
    }

    fn globs(&mut self, path: &Path, globs: &'f [Spanned<String>], what: &str) -> Option<Globs> {
        let patterns: Vec<&'f str> = globs.iter().map(|g| g.value.as_str()).collect();
        if let Some(compiled) = self.globs.get(&patterns) {
            return Some(compiled.clone());
        }
        let mut ok = true;
        for g in globs {
            if let Err(e) = Globs::compile([g.value.as_str()]) {
                self.at(path)
                    .error(g, format!("bad {what} glob `{}`: {}", g.value, e.msg));
                ok = false;
            }
        }
        let compiled = ok
            .then(|| Globs::compile(patterns.iter().copied()).ok())
            .flatten()?;
        self.globs.insert(patterns, compiled.clone());
        Some(compiled)
    }

    /// Warns about allowlist entries that no provider serves (likely a typo or a missing provider).
    ///
    /// A wildcard entry counts as served when a sample name it matches is routed (`claude-*`
    /// by a provider of `claude-*`) or when it matches one of a provider's globs.
    fn warn_unserved(&mut self, path: &Path, id: &Spanned<String>, spec: &'f AgentSpec) {
        let mut seen = HashSet::new();
        for model in &spec.models {
            if model.value.contains('[') || !seen.insert(model.value.as_str()) {
                continue;
            }
            let served = match self.served.get(model.value.as_str()) {
                Some(served) => *served,
                None => {
                    let served = self.is_served(&model.value);
                    self.served.insert(&model.value, served);
                    served
                }
            };
            if !served {
                let message = format!(
                    "agent `{}` allows model `{}`, which no provider serves",
                    id.value, model.value
                );
                self.at(path).warning(model, message);
            }
        }
    }

    fn is_served(&self, model: &str) -> bool {
        let sample = model.replace(['*', '?'], "x");
        let entry = Globs::compile([model]).unwrap_or_default();
        self.providers.iter().any(|p| {
            p.models.matches(&sample)
                || (!is_literal(model) && p.models.patterns().any(|pm| entry.matches(pm)))
        })
    }
}

fn is_http_url(url: &str) -> bool {
    url.parse::<Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

/// The three lists of `revocations:` with the kind each revokes.
fn revocation_lists(spec: &RevocationsSpec) -> [(RevokedKind, &[Spanned<RevokedSpec>]); 3] {
    [
        (RevokedKind::Agent, spec.agents.as_slice()),
        (RevokedKind::Credential, spec.keys.as_slice()),
        (RevokedKind::Token, spec.tokens.as_slice()),
    ]
}

fn auth_name(auth: AuthSpec) -> &'static str {
    match auth {
        AuthSpec::Bearer => "bearer",
        AuthSpec::XApiKey => "x-api-key",
        AuthSpec::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source;

    fn compile_text(text: &str) -> Result<Compiled, Vec<Problem>> {
        let live = LiveState::default();
        let env = Environment {
            live: &live,
            resolve_hosts: false,
            read_secrets: false,
        };
        compile(&source::from_text("p.yaml", text), &env)
    }

    #[test]
    fn a_policy_beyond_the_default_yaml_budget_loads() {
        // 36 000 agents of 8 YAML nodes each: past serde-saphyr's default of 250 000 nodes.
        let mut text =
            String::from("version: 1\nproviders:\n  m: {kind: mock, models: ['m-*']}\nagents:\n");
        for i in 0..36_000 {
            text.push_str(&format!("  a{i}: {{models: [m-1, m-2, m-3, m-4]}}\n"));
        }
        match compile_text(&text) {
            Ok(compiled) => assert_eq!(compiled.snapshot.agents.len(), 36_000),
            Err(problems) => panic!("{}", problems[0]),
        }
    }

    #[test]
    fn revocations_fold_into_agents_and_keys() {
        let text = "version: 1
providers:
  m: {kind: mock, models: ['m-*']}
agents:
  a:
    keys: [{id: a-1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
    models: [m-1]
  b:
    models: [m-1]
    status: suspended
    suspended_until: 2030-01-01T00:00:00Z
revocations:
  agents: [{id: b, reason: compromised}]
  keys: [a-1]
  tokens: [jti-9]
";
        let compiled = compile_text(text).unwrap_or_else(|p| panic!("{}", p[0]));
        let s = compiled.snapshot;
        assert_eq!(s.agents[0].status, AgentStatus::Active);
        assert_eq!(
            s.agents[1].status,
            AgentStatus::Revoked,
            "revocation wins over suspension"
        );
        assert!(s.keys.find(b"test").is_some_and(|k| k.revoked));
        let reason = s.revocations.get(RevokedKind::Agent, "b");
        assert_eq!(reason.map(|r| r.reason.as_str()), Some("compromised"));
        assert!(s.revocations.get(RevokedKind::Token, "jti-9").is_some());
    }
}
