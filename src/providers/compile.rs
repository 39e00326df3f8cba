//! `providers.<name>:` → a [`Provider`]: its models, where it is reached, its key.
//!
//! Secrets (the key, a CA file) and the first DNS lookup come through the injected
//! [`Secrets`] and [`Lookup`], so `warden check` compiles the same policy without either.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Uri};
use pingora::protocols::tls::CaType;
use serde_saphyr::Spanned;

use super::resolve::ResolvedAddr;
use super::spec::{ApiSpec, AuthSpec, ProviderKindSpec, ProviderSpec};
use super::{HttpUpstream, Provider, Serves, Upstream, UpstreamAuth, WireApi};
use crate::environment::{Lookup, Secrets};
use crate::globs::GlobCache;
use crate::problem::Problems;

/// What compiling a provider reads from outside the policy text.
pub struct Outside<'a> {
    pub secrets: &'a dyn Secrets,
    pub lookup: &'a dyn Lookup,
}

impl ProviderSpec {
    /// The provider `name` this section describes, or `None` (with the problems reported).
    pub fn compile<'f>(
        &'f self,
        name: &Spanned<String>,
        p: &mut Problems<'_>,
        globs: &mut GlobCache<'f>,
        outside: &Outside<'_>,
    ) -> Option<Provider> {
        self.compile_as(name, p, globs, outside, Serves::Models)
    }

    /// Like [`Self::compile`], for an endpoint that `serves` models, a service's API or an MCP
    /// server (these two serve no models).
    pub fn compile_as<'f>(
        &'f self,
        name: &Spanned<String>,
        p: &mut Problems<'_>,
        globs: &mut GlobCache<'f>,
        outside: &Outside<'_>,
        serves: Serves,
    ) -> Option<Provider> {
        let noun = serves.noun();
        let models = globs.compile(p, &self.models, "model");
        if self.models.is_empty() && serves == Serves::Models {
            p.warning(name, format!("provider `{}` serves no models", name.value));
        }
        let kind = self
            .kind
            .as_ref()
            .map_or(ProviderKindSpec::Http, |k| k.value);
        let upstream = match kind {
            ProviderKindSpec::Mock => {
                if let Some(url) = &self.base_url {
                    p.error(url, format!("a `kind: mock` {noun} has no URL"));
                }
                if let Some(ca_file) = &self.ca_file {
                    p.error(ca_file, format!("a `kind: mock` {noun} has no `ca_file`"));
                }
                Upstream::Mock
            }
            ProviderKindSpec::Http => match &self.base_url {
                Some(url) => Upstream::Http(http_upstream(p, url, self.ca_file.as_ref(), outside)?),
                None => {
                    p.error(
                        name,
                        format!(
                            "{noun} `{}` needs a URL (`{}`)",
                            name.value,
                            serves.url_field()
                        ),
                    );
                    return None;
                }
            },
        };
        let auth = self.upstream_auth(p, name, noun, kind, outside.secrets);
        let headers = self.extra_headers(p);
        let api = match (self.api.as_ref().map(|a| a.value), kind, self.auth.as_ref()) {
            (Some(ApiSpec::Openai), ..) => WireApi::OpenAi,
            (Some(ApiSpec::Anthropic), ..) => WireApi::Anthropic,
            (None, ProviderKindSpec::Mock, _) => WireApi::AsSent,
            (None, _, Some(auth)) if auth.value == AuthSpec::XApiKey => WireApi::AsSent,
            (None, ..) => WireApi::OpenAi,
        };
        Some(Provider {
            name: name.value.clone(),
            models: models?,
            upstream,
            auth,
            headers,
            identity_header: self.identity_header.as_ref().is_some_and(|h| h.value),
            serves,
            api,
        })
    }

    /// `headers:`, each a valid header that Warden does not manage itself.
    fn extra_headers(&self, p: &mut Problems<'_>) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let Ok(header) = HeaderName::from_bytes(name.value.as_bytes()) else {
                p.error(name, format!("`{}` is not a valid header name", name.value));
                continue;
            };
            if MANAGED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("x-agent-")
            {
                p.error(
                    name,
                    format!(
                        "`{}` is set by Warden itself and cannot be configured",
                        name.value
                    ),
                );
                continue;
            }
            let Ok(mut value) = HeaderValue::from_str(&value.value) else {
                p.error(
                    value,
                    "this value has characters not allowed in an HTTP header",
                );
                continue;
            };
            value.set_sensitive(true);
            headers.push((header, value));
        }
        headers
    }

    fn upstream_auth(
        &self,
        p: &mut Problems<'_>,
        name: &Spanned<String>,
        noun: &str,
        kind: ProviderKindSpec,
        secrets: &dyn Secrets,
    ) -> UpstreamAuth {
        let default_auth = match kind {
            ProviderKindSpec::Mock => AuthSpec::None,
            ProviderKindSpec::Http => AuthSpec::Bearer,
        };
        let auth = self.auth.as_ref().map_or(default_auth, |a| a.value);
        match (&self.api_key_env, &self.api_key_file) {
            (Some(_), Some(file)) => {
                p.error(file, "give `api_key_env` or `api_key_file`, not both");
                return UpstreamAuth::Missing("conflicting key sources".into());
            }
            (None, None) if auth != AuthSpec::None => {
                p.error(
                    name,
                    format!(
                        "{noun} `{}` uses `auth: {}` but has no `api_key_env` or `api_key_file`",
                        name.value,
                        auth_name(auth)
                    ),
                );
                return UpstreamAuth::Missing("no key source".into());
            }
            (Some(key), None) | (None, Some(key)) if auth == AuthSpec::None => {
                p.warning(key, "`auth: none` sends no key; this key source is unused");
                return UpstreamAuth::None;
            }
            _ => {}
        }
        if auth == AuthSpec::None {
            return UpstreamAuth::None;
        }
        let (secret, origin, at) = if let Some(var) = &self.api_key_env {
            (
                secrets.env_var(&var.value),
                format!("environment variable {}", var.value),
                var,
            )
        } else if let Some(file) = &self.api_key_file {
            let text = secrets.file(file.value.as_ref()).map(|read| {
                read.ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|t| t.trim_end().to_string())
            });
            (text, format!("file {}", file.value), file)
        } else {
            return UpstreamAuth::Missing("no key source".into());
        };
        let Ok(secret) = secret else {
            // Not read here (`warden check`): neither present nor missing.
            return UpstreamAuth::Missing(origin);
        };
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            p.warning(
                at,
                format!(
                    "{noun} `{}` has no key yet ({origin} is unset or empty): its requests get 502",
                    name.value
                ),
            );
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
                p.error(
                    at,
                    format!("the key in {origin} has characters not allowed in an HTTP header"),
                );
                UpstreamAuth::Missing(origin)
            }
        }
    }
}

fn http_upstream(
    p: &mut Problems<'_>,
    url: &Spanned<String>,
    ca_file: Option<&Spanned<String>>,
    outside: &Outside<'_>,
) -> Option<HttpUpstream> {
    let ca = match ca_file {
        Some(file) => trust_list(p, file, outside.secrets)?,
        None => None,
    };
    let uri: Uri = match url.value.parse() {
        Ok(uri) => uri,
        Err(e) => {
            p.error(url, format!("this is not a URL: {e}"));
            return None;
        }
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            p.error(url, "the URL must start with http:// or https://");
            return None;
        }
    };
    let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']']).to_string()) else {
        p.error(url, "the URL has no host");
        return None;
    };
    if uri.query().is_some() {
        p.error(url, "the URL must not have a query string");
        return None;
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host);
    let Ok(authority) = HeaderValue::from_str(authority) else {
        p.error(url, "the URL's host is not a valid Host header");
        return None;
    };
    if !tls {
        if let Some(file) = ca_file {
            p.warning(
                file,
                "`ca_file` is unused: the URL is http://, not https://",
            );
        }
    }
    let addr = match outside.lookup.lookup(&host, port) {
        Ok(None) => {
            p.warning(url, format!("cannot resolve `{host}`: requests to it will get 502 until a lookup succeeds (retried in the background)"));
            None
        }
        Ok(addr) => addr,
        Err(_) => None,
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

/// Reads a provider's `ca_file`. `None` on error (reported); `Some(None)` where files are not
/// read (`warden check` runs where mounted files are absent).
fn trust_list(
    p: &mut Problems<'_>,
    file: &Spanned<String>,
    secrets: &dyn Secrets,
) -> Option<Option<Arc<CaType>>> {
    let Ok(bytes) = secrets.file(file.value.as_ref()) else {
        return Some(None);
    };
    let list = bytes
        .map_err(|e| e.to_string())
        .and_then(|b| super::trust::trust_list(&b));
    match list {
        Ok(list) => Some(Some(list)),
        Err(e) => {
            p.error(file, format!("cannot use `ca_file` {}: {e}", file.value));
            None
        }
    }
}

/// Headers Warden sets or strips on every upstream request.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-request-id",
];

fn auth_name(auth: AuthSpec) -> &'static str {
    match auth {
        AuthSpec::Bearer => "bearer",
        AuthSpec::XApiKey => "x-api-key",
        AuthSpec::None => "none",
    }
}
