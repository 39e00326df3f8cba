//! An agent's cumulative request and token counts: live state, exported as Prometheus counters.
//!
//! Why not a Prometheus `IntCounterVec`: every series of one clones the metric's description
//! and label pairs (about 1.5 KB), and an agent used three of them, so a 10 000-agent policy
//! held tens of MB of series once load had touched every agent, and each request hashed its
//! label values to find them. Here a series is one small entry in its agent's list, created on
//! first use; a request reaches the list through the snapshot it already holds, and the admin
//! port renders every list at scrape time.

use std::sync::{Mutex, PoisonError};

use crate::code::Code;

/// Most series one agent keeps; further (model, provider, code) combinations are counted under
/// [`OVERFLOW_MODEL`], so an agent allowed `*` cannot grow the metrics without bound.
pub const MAX_SERIES_PER_AGENT: usize = 128;
/// The `model` label of combinations past [`MAX_SERIES_PER_AGENT`].
pub const OVERFLOW_MODEL: &str = "_other";

/// Counts of one agent by (model, provider, outcome code).
///
/// The mutex is the agent's own and held for a short scan; requests of other agents never
/// touch it.
#[derive(Debug, Default)]
pub struct AgentCounters {
    series: Mutex<Vec<Series>>,
}

/// One (model, provider, code) combination's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub model: Box<str>,
    pub provider: Box<str>,
    pub code: Code,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl AgentCounters {
    /// Counts one request and the tokens its provider reported.
    pub fn record(&self, model: &str, provider: &str, code: Code, tokens: Option<(u64, u64)>) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let model = if series.len() >= MAX_SERIES_PER_AGENT
            && !series.iter().any(|s| s.matches(model, provider, code))
        {
            OVERFLOW_MODEL
        } else {
            model
        };
        let index = match series.iter().position(|s| s.matches(model, provider, code)) {
            Some(index) => index,
            None => {
                series.push(Series {
                    model: model.into(),
                    provider: provider.into(),
                    code,
                    requests: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                });
                series.len() - 1
            }
        };
        let entry = &mut series[index];
        entry.requests += 1;
        if let Some((input, output)) = tokens {
            entry.input_tokens += input;
            entry.output_tokens += output;
        }
    }

    /// Calls `f` with every series (a scrape).
    pub fn for_each(&self, mut f: impl FnMut(&Series)) {
        for series in self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            f(series);
        }
    }

    /// Calls `f` with each model's input and output tokens, summed over providers and codes,
    /// for the models that reported any (a scrape).
    pub fn for_each_model_tokens(&self, mut f: impl FnMut(&str, u64, u64)) {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_model: Vec<(&str, u64, u64)> = Vec::new();
        for s in series
            .iter()
            .filter(|s| s.input_tokens + s.output_tokens > 0)
        {
            match by_model.iter_mut().find(|(m, _, _)| *m == &*s.model) {
                Some((_, input, output)) => {
                    *input += s.input_tokens;
                    *output += s.output_tokens;
                }
                None => by_model.push((&s.model, s.input_tokens, s.output_tokens)),
            }
        }
        for (model, input, output) in by_model {
            f(model, input, output);
        }
    }

    #[cfg(test)]
    fn snapshot(&self) -> Vec<Series> {
        let mut all = Vec::new();
        self.for_each(|s| all.push(s.clone()));
        all
    }
}

impl Series {
    fn matches(&self, model: &str, provider: &str, code: Code) -> bool {
        self.code == code && *self.model == *model && *self.provider == *provider
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_combination_and_caps_the_series() {
        let counters = AgentCounters::default();
        counters.record("gpt-4o", "openai", Code::Ok, Some((10, 2)));
        counters.record("gpt-4o", "openai", Code::Ok, Some((5, 1)));
        counters.record("gpt-4o", "openai", Code::RateLimited, None);
        let series = counters.snapshot();
        assert_eq!(series.len(), 2);
        assert_eq!(
            (
                series[0].requests,
                series[0].input_tokens,
                series[0].output_tokens
            ),
            (2, 15, 3)
        );
        assert_eq!((series[1].code, series[1].requests), (Code::RateLimited, 1));

        for i in 0..MAX_SERIES_PER_AGENT + 10 {
            counters.record(&format!("m{i}"), "openai", Code::Ok, None);
        }
        let series = counters.snapshot();
        assert_eq!(series.len(), MAX_SERIES_PER_AGENT + 1);
        let other = series.iter().find(|s| &*s.model == OVERFLOW_MODEL).unwrap();
        assert_eq!(other.requests, 12);
    }
}
