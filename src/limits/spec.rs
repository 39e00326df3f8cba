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
        let mut tokens = |value: &Option<Spanned<u64>>, field: &str| {
            value.as_ref().and_then(|n| {
                if n.value == 0 {
                    p.error(n, format!("`{field}` must be at least 1 (use `status: suspended` to stop an agent)"));
                    return None;
                }
                Some(n.value)
            })
        };
        let tokens_per_minute = tokens(&self.tokens_per_minute, "tokens_per_minute");
        let tokens_per_day = tokens(&self.tokens_per_day, "tokens_per_day");
        let default_output_tokens = tokens(&self.default_output_tokens, "default_output_tokens");
        let micro_usd_per_day = self.usd_per_day.as_ref().and_then(|usd| {
            if !(usd.value.is_finite() && usd.value > 0.0) {
                p.error(
                    usd,
                    "`usd_per_day` must be more than 0 (use `status: suspended` to stop an agent)",
                );
                return None;
            }
            Some((usd.value * 1_000_000.0).round() as u64)
        });
        Limits {
            requests_per_minute,
            max_concurrent,
            tokens_per_minute,
            tokens_per_day,
            micro_usd_per_day,
            default_output_tokens,
        }
    }
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
        {
            p.error(
                &self.limits,
                "team limits take tokens_per_minute, tokens_per_day and usd_per_day (rate, concurrency and default_output_tokens are per agent)",
            );
        }
        Limits {
            requests_per_minute: None,
            max_concurrent: None,
            default_output_tokens: None,
            ..spec.compile(p)
        }
    }
}
