//! `pricing:` — what a model's tokens cost, for spend budgets and the audit's `cost_usd`.
//!
//! Prices are USD per million tokens, by model glob, first match in policy order. Costs are
//! kept in micro-dollars (a token at $1 per million costs exactly one), so budgets count
//! integers.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::globs::Globs;
use crate::problem::Problems;
use schemars::JsonSchema;

/// One model glob's prices, as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// USD per million input (prompt) tokens.
    #[schemars(with = "f64")]
    pub input: Spanned<f64>,
    /// USD per million output (completion) tokens, reasoning included.
    #[schemars(with = "f64")]
    pub output: Spanned<f64>,
    /// USD per million prompt tokens read from the provider's cache (default: `input`).
    #[schemars(with = "Option<f64>")]
    pub cached_input: Option<Spanned<f64>>,
    /// USD per million prompt tokens written to Anthropic's cache (default: `input`).
    #[schemars(with = "Option<f64>")]
    pub cache_write: Option<Spanned<f64>>,
}

/// A model's prices in micro-dollars per token (= USD per million tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    pub cache_write: f64,
}

/// Billed tokens: `cached` and `cache_write` are parts of `input`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub cache_write: u64,
}

impl Price {
    /// Micro-dollars for `input` and `output` tokens (none cached), rounded up.
    pub fn micro_usd(&self, input: u64, output: u64) -> u64 {
        self.cost(&Billed {
            input,
            output,
            ..Billed::default()
        })
    }

    /// Micro-dollars for `billed`, each part at its price, rounded up.
    pub fn cost(&self, billed: &Billed) -> u64 {
        let special = billed.cached.saturating_add(billed.cache_write);
        let plain = billed.input.saturating_sub(special);
        let cost = plain as f64 * self.input
            + billed.cached as f64 * self.cached_input
            + billed.cache_write as f64 * self.cache_write
            + billed.output as f64 * self.output;
        cost.ceil().clamp(0.0, u64::MAX as f64) as u64
    }
}

/// Every price of a policy, in policy order.
#[derive(Debug, Default)]
pub struct Prices {
    list: Vec<(Globs, Price)>,
}

impl Prices {
    /// The price of `model`: the first glob that matches.
    pub fn find(&self, model: &str) -> Option<Price> {
        self.list
            .iter()
            .find(|(globs, _)| globs.matches(model))
            .map(|(_, price)| *price)
    }

    /// Adds a file's `pricing:` (files merge in load order), reporting bad entries.
    pub fn add(&mut self, p: &mut Problems<'_>, pricing: &IndexMap<Spanned<String>, PriceSpec>) {
        for (model, spec) in pricing {
            let Ok(globs) = Globs::compile([model.value.as_str()]) else {
                p.error(model, format!("bad model glob `{}`", model.value));
                continue;
            };
            let mut valid = true;
            let optional = [
                ("cached_input", spec.cached_input.as_ref()),
                ("cache_write", spec.cache_write.as_ref()),
            ];
            let given = [("input", Some(&spec.input)), ("output", Some(&spec.output))];
            for (field, price) in given
                .into_iter()
                .chain(optional)
                .filter_map(|(f, p)| p.map(|p| (f, p)))
            {
                if !(price.value.is_finite() && price.value >= 0.0) {
                    p.error(
                        price,
                        format!("`{field}` must be a price in USD per million tokens, 0 or more"),
                    );
                    valid = false;
                }
            }
            if valid {
                self.list.push((
                    globs,
                    Price {
                        input: spec.input.value,
                        output: spec.output.value,
                        cached_input: spec
                            .cached_input
                            .as_ref()
                            .map_or(spec.input.value, |p| p.value),
                        cache_write: spec
                            .cache_write
                            .as_ref()
                            .map_or(spec.input.value, |p| p.value),
                    },
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_micro_dollars_rounded_up() {
        let price = Price {
            input: 0.15,
            output: 0.60,
            cached_input: 0.075,
            cache_write: 0.1875,
        };
        assert_eq!(price.micro_usd(1_000_000, 0), 150_000);
        assert_eq!(price.micro_usd(13, 5), 5);
        assert_eq!(price.micro_usd(0, 0), 0);
        let billed = Billed {
            input: 1_000_000,
            output: 0,
            cached: 600_000,
            cache_write: 0,
        };
        assert_eq!(
            price.cost(&billed),
            60_000 + 45_000,
            "cached tokens at the cached price"
        );
    }
}
