//! `fleet:` as written in policy files, and what it compiles to.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::problem::Problems;

/// `fleet:` — share limits and push revocations across every Warden of a fleet through Redis.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    pub redis: RedisSpec,
    /// While Redis is unreachable: `local` enforces each limit in full on every replica
    /// (default), `deny` refuses requests that draw on a shared limit, `allow` lets them through
    /// unlimited.
    #[serde(default)]
    #[schemars(with = "Option<OnUnavailable>")]
    pub on_unavailable: Option<Spanned<OnUnavailable>>,
}

/// `fleet.redis:` — where the shared counters and pushed revocations live.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://host:port/db` (or `rediss://` for TLS). No password here: see `password_env`.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// Connect with TLS (the same as a `rediss://` URL).
    #[serde(default)]
    pub tls: Option<bool>,
    /// Environment variable holding the Redis password (`AUTH`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Spanned<String>>,
}

/// What happens to shared limits while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Each Warden enforces every limit in full on its own: at most replicas × limit.
    #[default]
    Local,
    /// Requests that draw on a shared limit are refused (503 `fleet_unavailable`).
    Deny,
    /// Shared limits are not enforced until Redis is back.
    Allow,
}

/// An [`OnUnavailable`] that the policy sets and every request reads, without a lock.
#[derive(Debug, Default)]
pub struct AtomicOnUnavailable(std::sync::atomic::AtomicU8);

impl AtomicOnUnavailable {
    const MODES: [OnUnavailable; 3] = [
        OnUnavailable::Local,
        OnUnavailable::Deny,
        OnUnavailable::Allow,
    ];

    /// The mode in force.
    pub fn load(&self) -> OnUnavailable {
        let index = usize::from(self.0.load(std::sync::atomic::Ordering::Relaxed));
        Self::MODES.get(index).copied().unwrap_or_default()
    }

    /// Sets the mode (the published policy's `on_unavailable`).
    pub fn store(&self, mode: OnUnavailable) {
        let index = Self::MODES.iter().position(|m| *m == mode).unwrap_or(0);
        self.0
            .store(index as u8, std::sync::atomic::Ordering::Relaxed);
    }
}

impl OnUnavailable {
    /// The name policy files and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Local => "local",
            OnUnavailable::Deny => "deny",
            OnUnavailable::Allow => "allow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atomic_mode_reads_back_what_was_stored() {
        let mode = AtomicOnUnavailable::default();
        assert_eq!(mode.load(), OnUnavailable::Local);
        for m in AtomicOnUnavailable::MODES {
            mode.store(m);
            assert_eq!(mode.load(), m);
        }
    }
}

/// A validated `fleet:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// The Redis URL, `rediss://` when TLS was asked for; never holds a password.
    pub url: String,
    /// The variable the password is read from when connecting (the secret itself is never
    /// part of the policy snapshot).
    pub password_env: Option<String>,
    pub on_unavailable: OnUnavailable,
}

impl FleetSpec {
    /// Validates the section; `None` when it has errors (reported to `p`).
    pub fn compile(&self, p: &mut Problems<'_>) -> Option<FleetSettings> {
        let url = &self.redis.url;
        let Some((scheme, rest)) = url.value.split_once("://") else {
            p.error(url, "`fleet.redis.url` must look like redis://host:6379/0");
            return None;
        };
        let tls = match scheme {
            "redis" => self.redis.tls.unwrap_or(false),
            "rediss" => true,
            _ => {
                p.error(
                    url,
                    "`fleet.redis.url` must start with redis:// or rediss://",
                );
                return None;
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            p.error(
                url,
                "`fleet.redis.url` must not carry credentials: put the password in an environment variable named by `password_env`",
            );
            return None;
        }
        if authority.is_empty() {
            p.error(url, "`fleet.redis.url` names no host");
            return None;
        }
        if redis::Client::open(url.value.as_str()).is_err() {
            p.error(url, "`fleet.redis.url` is not a valid Redis URL");
            return None;
        }
        let url = if tls {
            format!("rediss://{rest}")
        } else {
            url.value.clone()
        };
        Some(FleetSettings {
            url,
            password_env: self.redis.password_env.as_ref().map(|v| v.value.clone()),
            on_unavailable: self
                .on_unavailable
                .as_ref()
                .map_or_else(Default::default, |m| m.value),
        })
    }
}
