//! `server:` — Warden's own listeners, body cap and provider timeouts: as written, and after
//! defaults and validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::globs::Globs;
use crate::problem::Problems;
use schemars::JsonSchema;

/// Defaults for `server:` when a policy leaves a field out.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    4000,
));
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(600);
/// Hosts whose CONNECT tunnels Warden terminates and governs like base-URL requests (HTTPS_PROXY
/// mode), unless `server.intercept_hosts` lists others: the well-known LLM API hosts.
pub const DEFAULT_INTERCEPT_HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "*.openai.azure.com",
    "api.mistral.ai",
    "api.cohere.com",
    "api.cohere.ai",
    "api.groq.com",
    "api.together.xyz",
    "api.deepseek.com",
    "api.x.ai",
    "api.perplexity.ai",
    "api.fireworks.ai",
    "openrouter.ai",
];
/// A plain tunnel with no byte either way for this long is closed.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A plain tunnel is closed after this long whatever it carries.
pub const DEFAULT_TUNNEL_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Default period between two lookups of every provider host.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// `server:` — listening addresses and request limits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub admin: Option<Spanned<String>>,
    /// A file holding the bearer token `/v1/agents/*` on the admin port requires (`/metrics`,
    /// `/healthz`, `/readyz` stay open). Needed when `admin` is not a loopback address.
    #[schemars(with = "Option<String>")]
    pub admin_token_file: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Seconds to wait for a TCP/TLS connection to a provider.
    #[schemars(with = "Option<f64>")]
    pub connect_timeout_secs: Option<Spanned<f64>>,
    /// Seconds to wait between two reads from a provider (not the total: streams can run long).
    #[schemars(with = "Option<f64>")]
    pub read_timeout_secs: Option<Spanned<f64>>,
    /// Seconds between two background lookups of the providers' host names (default 30).
    #[schemars(with = "Option<f64>")]
    pub resolve_interval_secs: Option<Spanned<f64>>,
    /// Warden's own Ed25519 key (PKCS#8 PEM), for `X-Agent-Identity` tokens.
    #[schemars(with = "Option<String>")]
    pub identity_key_file: Option<Spanned<String>>,
    /// Host globs whose CONNECT tunnels Warden terminates and governs like base-URL requests
    /// (default: the well-known LLM API hosts).
    #[schemars(with = "Option<Vec<String>>")]
    pub intercept_hosts: Option<Vec<Spanned<String>>>,
    /// The CA (PEM certificate) that signs the leaf certificates Warden presents for
    /// intercepted hosts; agents trust it through `SSL_CERT_FILE` / `NODE_EXTRA_CA_CERTS`.
    #[schemars(with = "Option<String>")]
    pub intercept_ca_cert_file: Option<Spanned<String>>,
    /// The CA's private key (PEM).
    #[schemars(with = "Option<String>")]
    pub intercept_ca_key_file: Option<Spanned<String>>,
    /// Seconds a plain tunnel may carry nothing before it is closed (default 300).
    #[schemars(with = "Option<f64>")]
    pub tunnel_idle_timeout_secs: Option<Spanned<f64>>,
    /// Seconds a plain tunnel may stay open in all (default 3600).
    #[schemars(with = "Option<f64>")]
    pub tunnel_max_duration_secs: Option<Spanned<f64>>,
}

/// `server:` after defaults are applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// SHA-256 of the admin token (`admin_token_file`), compared against a presented token's.
    pub admin_token: Option<[u8; 32]>,
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Period between two background lookups of every provider host.
    pub resolve_interval: Duration,
    /// Host globs whose tunnels are intercepted.
    pub intercept_hosts: Globs,
    /// The interception CA's certificate and key files (PEM), when interception is set up.
    pub intercept_ca: Option<(PathBuf, PathBuf)>,
    pub tunnel_idle_timeout: Duration,
    pub tunnel_max_duration: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: DEFAULT_LISTEN,
            admin: DEFAULT_ADMIN,
            admin_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            intercept_hosts: Globs::compile(DEFAULT_INTERCEPT_HOSTS.iter().copied())
                .unwrap_or_default(),
            intercept_ca: None,
            tunnel_idle_timeout: DEFAULT_TUNNEL_IDLE_TIMEOUT,
            tunnel_max_duration: DEFAULT_TUNNEL_MAX_DURATION,
        }
    }
}

impl ServerSpec {
    /// The settings this section gives, reporting each bad field (left at its default).
    pub fn compile(&self, p: &mut Problems<'_>) -> ServerSettings {
        let mut settings = ServerSettings::default();
        if let Some(listen) = &self.listen {
            match listen.value.parse() {
                Ok(addr) => settings.listen = addr,
                Err(_) => p.error(
                    listen,
                    format!("`listen` must be IP:port, got `{}`", listen.value),
                ),
            }
        }
        if let Some(admin) = &self.admin {
            match admin.value.parse() {
                Ok(addr) => settings.admin = addr,
                Err(_) => p.error(
                    admin,
                    format!("`admin` must be IP:port, got `{}`", admin.value),
                ),
            }
        }
        self.compile_admin_token(p, &mut settings);
        if let Some(max) = &self.max_body_bytes {
            match usize::try_from(max.value) {
                Ok(n) if n > 0 => settings.max_body_bytes = n,
                _ => p.error(max, "`max_body_bytes` must be a positive number of bytes"),
            }
        }
        for (field, value, slot) in [
            (
                "connect_timeout_secs",
                &self.connect_timeout_secs,
                &mut settings.connect_timeout,
            ),
            (
                "read_timeout_secs",
                &self.read_timeout_secs,
                &mut settings.read_timeout,
            ),
            (
                "resolve_interval_secs",
                &self.resolve_interval_secs,
                &mut settings.resolve_interval,
            ),
            (
                "tunnel_idle_timeout_secs",
                &self.tunnel_idle_timeout_secs,
                &mut settings.tunnel_idle_timeout,
            ),
            (
                "tunnel_max_duration_secs",
                &self.tunnel_max_duration_secs,
                &mut settings.tunnel_max_duration,
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
        if let Some(hosts) = &self.intercept_hosts {
            let mut ok = true;
            for host in hosts {
                if host.value.is_empty()
                    || host
                        .value
                        .bytes()
                        .any(|b| b.is_ascii_uppercase() || b == b':')
                {
                    p.error(
                        host,
                        format!(
                            "`intercept_hosts` are host names in lower case, without a port: `{}`",
                            host.value
                        ),
                    );
                    ok = false;
                } else if let Err(e) = Globs::compile([host.value.as_str()]) {
                    p.error(
                        host,
                        format!("bad intercept host glob `{}`: {}", host.value, e.msg),
                    );
                    ok = false;
                }
            }
            if ok {
                settings.intercept_hosts =
                    Globs::compile(hosts.iter().map(|h| h.value.as_str())).unwrap_or_default();
            }
        }
        match (&self.intercept_ca_cert_file, &self.intercept_ca_key_file) {
            (Some(cert), Some(key)) => {
                settings.intercept_ca =
                    Some((PathBuf::from(&cert.value), PathBuf::from(&key.value)));
            }
            (Some(file), None) | (None, Some(file)) => p.error(
                file,
                "`intercept_ca_cert_file` and `intercept_ca_key_file` go together",
            ),
            (None, None) => {}
        }
        settings
    }
}

impl ServerSpec {
    /// Reads `admin_token_file` (its content, trimmed, is the token; kept only as a hash), and
    /// warns when the admin port is reachable off the host without one.
    fn compile_admin_token(&self, p: &mut Problems<'_>, settings: &mut ServerSettings) {
        if let Some(file) = &self.admin_token_file {
            match std::fs::read_to_string(&file.value) {
                Ok(token) if !token.trim().is_empty() => {
                    settings.admin_token = Some(Sha256::digest(token.trim().as_bytes()).into());
                }
                Ok(_) => p.error(file, format!("`admin_token_file` {} is empty", file.value)),
                Err(e) => p.error(
                    file,
                    format!("cannot read `admin_token_file` {}: {e}", file.value),
                ),
            }
        } else if let Some(admin) = &self.admin {
            let off_host = admin
                .value
                .parse::<SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback());
            if off_host {
                p.warning(
                    admin,
                    "the admin port is not on loopback and `admin_token_file` is not set: `/v1/agents/*` is refused (403) until it is",
                );
            }
        }
    }
}
