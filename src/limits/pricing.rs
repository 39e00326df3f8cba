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

/// One model glob's prices, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// USD per million input (prompt) tokens.
    pub input: Spanned<f64>,
    /// USD per million output (completion) tokens.
    pub output: Spanned<f64>,
}

/// A model's prices in micro-dollars per token (= USD per million tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// Micro-dollars for `input` and `output` tokens, rounded up.
    pub fn micro_usd(&self, input: u64, output: u64) -> u64 {
        let cost = input as f64 * self.input + output as f64 * self.output;
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
            for (field, price) in [("input", &spec.input), ("output", &spec.output)] {
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
        };
        assert_eq!(price.micro_usd(1_000_000, 0), 150_000);
        assert_eq!(price.micro_usd(13, 5), 5);
        assert_eq!(price.micro_usd(0, 0), 0);
    }
}
