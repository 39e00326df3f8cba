//! An agent's `actions:` — what `POST /v1/verify` may confirm: allowed and denied action globs
//! (deny wins), a monetary cap per action and per day, daily counts per action, and the
//! currencies amounts may be given in. The day's counts live in `limits::actions`.

use std::collections::HashMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::code::Code;
use crate::globs::{GlobCache, Globs};
use crate::problem::Problems;

/// `actions:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionsSpec {
    /// Action globs the agent may have verified (none listed: none).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
    /// Action globs always refused, even when allowed (deny wins).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<Spanned<String>>,
    /// Largest `parameters.amount` of one action, in USD.
    #[schemars(with = "Option<f64>")]
    pub usd_per_action: Option<Spanned<f64>>,
    /// Largest sum of verified amounts per day, in USD (the day of the policy's `timezone`).
    #[schemars(with = "Option<f64>")]
    pub usd_per_day: Option<Spanned<f64>>,
    /// Most verifications per day, by action name or glob: a glob's count is shared by every
    /// action it matches, and an action counts against every key that matches it.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, u32>")]
    pub per_day: IndexMap<Spanned<String>, Spanned<u32>>,
    /// Currencies besides USD that amounts may be given in, with the USD value of one unit
    /// (`{EUR: 1.08}`); limits are counted in USD.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, f64>")]
    pub currencies: IndexMap<Spanned<String>, Spanned<f64>>,
}

/// An agent's compiled `actions:`.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    allow: Globs,
    deny: Globs,
    micro_usd_per_action: Option<u64>,
    /// Largest sum of amounts per day, micro-dollars.
    pub micro_usd_per_day: Option<u64>,
    /// Daily counts: the key as written (the counter's name), what it matches, its limit.
    per_day: Vec<(String, Globs, u32)>,
    /// USD per unit, by upper-case currency code (USD included).
    currencies: HashMap<String, f64>,
}

/// One action to verify, as the agent describes it.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    pub action: &'a str,
    pub amount: Option<f64>,
    /// Currency code as sent (`None`: USD).
    pub currency: Option<&'a str>,
}

/// What the policy says of an intent, before the day's counts are consulted.
#[derive(Debug, Default)]
pub struct Judgement<'a> {
    /// Every reason the action is refused, in check order.
    pub errors: Vec<(Code, String)>,
    /// The amount in micro-dollars (0 without one).
    pub micro_usd: u64,
    /// The daily counters the action counts against (every `per_day` key matching it), with
    /// their limits.
    pub per_day: Vec<(&'a str, u32)>,
}

impl Actions {
    /// Judges `intent` against the policy (allow, deny, currency, per-action cap).
    pub fn judge(&self, intent: Intent<'_>) -> Judgement<'_> {
        let mut judgement = Judgement {
            per_day: self
                .per_day
                .iter()
                .filter(|(_, globs, _)| globs.matches(intent.action))
                .map(|(key, _, max)| (key.as_str(), *max))
                .collect(),
            ..Judgement::default()
        };
        if self.deny.matches(intent.action) {
            judgement.errors.push((
                Code::ActionDenied,
                format!("`{}` is denied to this agent", intent.action),
            ));
        } else if !self.allow.matches(intent.action) {
            judgement.errors.push((
                Code::ActionNotAllowed,
                format!(
                    "`{}` is not among this agent's allowed actions",
                    intent.action
                ),
            ));
        }
        if let Some(amount) = intent.amount {
            let currency = intent.currency.unwrap_or("USD").to_ascii_uppercase();
            match self.currencies.get(&currency) {
                Some(rate) => {
                    let usd = amount * rate;
                    judgement.micro_usd = (usd * 1_000_000.0).round().min(u64::MAX as f64) as u64;
                    if self
                        .micro_usd_per_action
                        .is_some_and(|max| judgement.micro_usd > max)
                    {
                        judgement.errors.push((
                            Code::MonetaryLimit,
                            format!("{usd:.2} USD is over this agent's limit per action"),
                        ));
                    }
                }
                None => judgement.errors.push((
                    Code::MonetaryLimit,
                    format!("currency `{currency}` is not accepted for this agent"),
                )),
            }
        }
        judgement
    }
}

impl ActionsSpec {
    /// The compiled section, or `None` with each problem reported.
    pub fn compile<'f>(
        &'f self,
        p: &mut Problems<'_>,
        globs: &mut GlobCache<'f>,
    ) -> Option<Actions> {
        let allow = globs.compile(p, &self.allow, "action");
        let deny = globs.compile(p, &self.deny, "action");
        let mut ok = true;
        let mut usd = |value: &Option<Spanned<f64>>, field: &str| match value {
            Some(v) if !(v.value.is_finite() && v.value >= 0.0) => {
                p.error(v, format!("`{field}` must be a non-negative number of USD"));
                ok = false;
                None
            }
            Some(v) => Some((v.value * 1_000_000.0).round() as u64),
            None => None,
        };
        let micro_usd_per_action = usd(&self.usd_per_action, "usd_per_action");
        let micro_usd_per_day = usd(&self.usd_per_day, "usd_per_day");
        let mut currencies = HashMap::from([("USD".to_string(), 1.0)]);
        for (code, rate) in &self.currencies {
            let valid = code.value.len() == 3 && code.value.bytes().all(|b| b.is_ascii_uppercase());
            if !valid {
                p.error(
                    code,
                    format!(
                        "`{}` is not an ISO 4217 currency code (three capital letters)",
                        code.value
                    ),
                );
                ok = false;
            } else if !(rate.value.is_finite() && rate.value > 0.0) {
                p.error(rate, "a currency's USD value must be a positive number");
                ok = false;
            } else {
                currencies.insert(code.value.clone(), rate.value);
            }
        }
        let mut per_day = Vec::with_capacity(self.per_day.len());
        for (action, count) in &self.per_day {
            match Globs::compile([action.value.as_str()]) {
                Ok(globs) => per_day.push((action.value.clone(), globs, count.value)),
                Err(e) => {
                    p.error(
                        action,
                        format!("bad action glob `{}`: {}", action.value, e.msg),
                    );
                    ok = false;
                }
            }
        }
        Some(Actions {
            allow: allow?,
            deny: deny?,
            micro_usd_per_action,
            micro_usd_per_day,
            per_day,
            currencies,
        })
        .filter(|_| ok)
    }
}
