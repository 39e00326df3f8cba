//! `server:` — Warden's own listeners, body cap and provider timeouts: as written, and after
//! defaults and validation.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

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
}

/// `server:` after defaults are applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Period between two background lookups of every provider host.
    pub resolve_interval: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: DEFAULT_LISTEN,
            admin: DEFAULT_ADMIN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
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
}
