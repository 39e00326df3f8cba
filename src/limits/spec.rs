//! An agent's `limits:` as written in policy files.

use std::num::NonZeroU32;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::problem::Problems;
use schemars::JsonSchema;

/// `limits:` — every limit is optional; absent means unlimited.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[schemars(with = "Option<u32>")]
    pub requests_per_minute: Option<Spanned<u32>>,
    #[schemars(with = "Option<u32>")]
    pub max_concurrent: Option<Spanned<u32>>,
    /// LLM tokens (input + output) per minute, reserved before forwarding.
    #[schemars(with = "Option<u64>")]
    pub tokens_per_minute: Option<Spanned<u64>>,
    /// LLM tokens per calendar day (UTC).
    #[schemars(with = "Option<u64>")]
    pub tokens_per_day: Option<Spanned<u64>>,
    /// USD per calendar day (UTC), priced by `pricing:`.
    #[schemars(with = "Option<f64>")]
    pub usd_per_day: Option<Spanned<f64>>,
    /// Output tokens a budget reserves for a request that sets no cap (`max_tokens` and the
    /// like); 1024 when unset. Settled to what the provider reports.
    #[schemars(with = "Option<u64>")]
    pub default_output_tokens: Option<Spanned<u64>>,
    /// Limits of each end user the agent acts for, keyed by the request's `user` (OpenAI),
    /// `metadata.user_id` (Anthropic) or `X-Warden-User`.
    #[schemars(with = "Option<PerUserSpec>")]
    pub per_user: Option<Spanned<PerUserSpec>>,
}

/// `limits.per_user:` as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerUserSpec {
    #[schemars(with = "Option<u32>")]
    pub requests_per_minute: Option<Spanned<u32>>,
    #[schemars(with = "Option<u64>")]
    pub tokens_per_day: Option<Spanned<u64>>,
    #[schemars(with = "Option<f64>")]
    pub usd_per_day: Option<Spanned<f64>>,
}

/// An agent's limits after validation: what [`super::LiveState::bind`] is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<NonZeroU32>,
    pub max_concurrent: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    /// `usd_per_day` in micro-dollars.
    pub micro_usd_per_day: Option<u64>,
    pub default_output_tokens: Option<u64>,
    pub per_user: Option<super::per_user::PerUser>,
}

impl LimitsSpec {
    /// The limits this section sets; a zero limit is an error (suspending is how to stop an
    /// agent) and is left unset.
    pub fn compile(&self, p: &mut Problems<'_>) -> Limits {
        let requests_per_minute = self.requests_per_minute.as_ref().and_then(|rpm| {
            let n = NonZeroU32::new(rpm.value);
            if n.is_none() {
                p.error(rpm, "`requests_per_minute` must be at least 1 (use `status: suspended` to stop an agent)");
            }
            n
        });
        let max_concurrent = self.max_concurrent.as_ref().and_then(|max| {
            if max.value == 0 {
                p.error(max, "`max_concurrent` must be at least 1 (use `status: suspended` to stop an agent)");
                return None;
            }
            Some(max.value)
        });
        let tokens_per_minute = at_least_one(p, &self.tokens_per_minute, "tokens_per_minute");
        let tokens_per_day = at_least_one(p, &self.tokens_per_day, "tokens_per_day");
        let default_output_tokens =
            at_least_one(p, &self.default_output_tokens, "default_output_tokens");
        let micro_usd_per_day = micro_usd(p, &self.usd_per_day);
        let per_user = self.per_user.as_ref().map(|spec| {
            let spec = &spec.value;
            let rpm = spec.requests_per_minute.as_ref().and_then(|rpm| {
                let n = NonZeroU32::new(rpm.value);
                if n.is_none() {
                    p.error(rpm, "`requests_per_minute` must be at least 1");
                }
                n
            });
            super::per_user::PerUser {
                requests_per_minute: rpm,
                tokens_per_day: at_least_one(p, &spec.tokens_per_day, "tokens_per_day"),
                micro_usd_per_day: micro_usd(p, &spec.usd_per_day),
            }
        });
        Limits {
            requests_per_minute,
            max_concurrent,
            tokens_per_minute,
            tokens_per_day,
            micro_usd_per_day,
            default_output_tokens,
            per_user,
        }
    }
}

/// A token count that must be at least 1.
fn at_least_one(p: &mut Problems<'_>, value: &Option<Spanned<u64>>, field: &str) -> Option<u64> {
    value.as_ref().and_then(|n| {
        if n.value == 0 {
            p.error(
                n,
                format!("`{field}` must be at least 1 (use `status: suspended` to stop an agent)"),
            );
            return None;
        }
        Some(n.value)
    })
}

/// `usd_per_day` in micro-dollars; 0 or less is an error.
fn micro_usd(p: &mut Problems<'_>, usd: &Option<Spanned<f64>>) -> Option<u64> {
    usd.as_ref().and_then(|usd| {
        if !(usd.value.is_finite() && usd.value > 0.0) {
            p.error(
                usd,
                "`usd_per_day` must be more than 0 (use `status: suspended` to stop an agent)",
            );
            return None;
        }
        Some((usd.value * 1_000_000.0).round() as u64)
    })
}

/// `teams.<owner>:` — budgets shared by every agent whose `owner` is this team.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    #[schemars(with = "LimitsSpec")]
    pub limits: Spanned<LimitsSpec>,
}

impl TeamSpec {
    /// The team's limits: token and spend budgets only (rate and concurrency are per agent).
    pub fn compile(&self, p: &mut Problems<'_>) -> Limits {
        let spec = &self.limits.value;
        if spec.requests_per_minute.is_some()
            || spec.max_concurrent.is_some()
            || spec.default_output_tokens.is_some()
            || spec.per_user.is_some()
        {
            p.error(
                &self.limits,
                "team limits take tokens_per_minute, tokens_per_day and usd_per_day (rate, concurrency, default_output_tokens and per_user are per agent)",
            );
        }
        Limits {
            requests_per_minute: None,
            max_concurrent: None,
            default_output_tokens: None,
            per_user: None,
            ..spec.compile(p)
        }
    }
}
