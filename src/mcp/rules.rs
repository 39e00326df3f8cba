//! The decision on one MCP request: may this agent call this tool with these arguments, read
//! this resource, get this prompt? Pure functions over the compiled grant; the quota step takes
//! from the agent's day ledger, all or nothing.

use serde_json::{Map, Value};

use super::grant::{millionths, ArgumentRule, Kind, McpGrant, ToolRule, SEPARATORS};
use crate::limits::actions::{ActionLedger, Charge};
use crate::limits::budget::Days;

/// Why an MCP request is refused inside the protocol, naming what it refused and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpDenial {
    /// No `tools:` entry of the agent's grant names the tool.
    ToolNotAllowed {
        tool: String,
    },
    /// An argument is missing, of the wrong type, or outside its rule (`rule` says which).
    ArgumentNotAllowed {
        tool: String,
        argument: String,
        rule: String,
    },
    /// A `per_day` or `sum_per_day` of the tool is used up; the day resets in `retry_after`
    /// seconds.
    ToolLimitExhausted {
        tool: String,
        limit: String,
        retry_after: u64,
    },
    ResourceNotAllowed {
        uri: String,
    },
    PromptNotAllowed {
        name: String,
    },
    /// The quotas are shared by the fleet, whose Redis is unreachable, and policy says
    /// `on_unavailable: deny`.
    FleetUnavailable,
}

/// The rules of tool `tool` for the agent, or why it does not exist for it.
pub fn tool_rule<'g>(grant: &'g McpGrant, tool: &str) -> Result<&'g ToolRule, McpDenial> {
    grant.tool(tool).ok_or_else(|| McpDenial::ToolNotAllowed {
        tool: tool.to_owned(),
    })
}

/// Checks every constrained argument of a call of `tool` (the `arguments` object as the server
/// will read it: `None` when the call has none).
pub fn check_arguments(
    rule: &ToolRule,
    tool: &str,
    arguments: Option<&Map<String, Value>>,
) -> Result<(), McpDenial> {
    let refuse = |argument: &str, why: String| McpDenial::ArgumentNotAllowed {
        tool: tool.to_owned(),
        argument: argument.to_owned(),
        rule: why,
    };
    for (name, argument) in &rule.arguments {
        let value = arguments
            .and_then(|a| a.get(name))
            .ok_or_else(|| refuse(name, "it is required by policy and missing".into()))?;
        check_value(argument, value).map_err(|why| refuse(name, why))?;
    }
    for (name, _) in &rule.sum_per_day {
        match arguments.and_then(|a| a.get(name)).and_then(Value::as_f64) {
            Some(n) if n >= 0.0 => {}
            Some(_) => return Err(refuse(name, "a summed argument cannot be negative".into())),
            None => {
                return Err(refuse(
                    name,
                    "it is summed per day, so it must be present and a number".into(),
                ))
            }
        }
    }
    Ok(())
}

/// Why `value` breaks `rule`, in words for the model to read.
fn check_value(rule: &ArgumentRule, value: &Value) -> Result<(), String> {
    match (rule.kind(), value) {
        (Some(Kind::String), Value::String(text)) => check_text(rule, text)?,
        (Some(Kind::String), _) => return Err("it must be a string".into()),
        (Some(Kind::Number), Value::Number(n)) => {
            let n = n.as_f64().ok_or("it is not a number Warden can compare")?;
            if let Some(min) = rule.min.filter(|min| n < *min) {
                return Err(format!("it must be at least {min}"));
            }
            if let Some(max) = rule.max.filter(|max| n > *max) {
                return Err(format!("it must be at most {max}"));
            }
        }
        (Some(Kind::Number), _) => return Err("it must be a number".into()),
        (None, _) => {}
    }
    if let Some(allowed) = &rule.one_of {
        if !allowed.iter().any(|a| same(a, value)) {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("it must be one of {}", listed.join(", ")));
        }
    }
    Ok(())
}

/// `max_length` and `pattern` on a string.
fn check_text(rule: &ArgumentRule, text: &str) -> Result<(), String> {
    if let Some(max) = rule.max_length {
        let length = text.chars().count();
        if u64::try_from(length).unwrap_or(u64::MAX) > max {
            return Err(format!(
                "it is {length} characters long, over the {max} allowed"
            ));
        }
    }
    if let Some(pattern) = &rule.pattern {
        let written = pattern.as_str();
        let smuggled = text
            .chars()
            .find(|c| (SEPARATORS.contains(c) || c.is_control()) && !written.contains(*c));
        if let Some(c) = smuggled {
            return Err(format!(
                "it must match `{written}`, which admits no {:?}",
                c
            ));
        }
        if !pattern.matches(text) {
            return Err(format!("it must match `{written}`"));
        }
    }
    Ok(())
}

/// JSON equality, numbers by value (`100` is `100.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Takes a call of `tool` from the day's `per_day` count and its arguments from the
/// `sum_per_day` sums, all or nothing, under counters named `<server>/<tool entry>`. Arguments
/// were checked first ([`check_arguments`]): every summed one is a number of 0 or more.
pub fn reserve(
    rule: &ToolRule,
    server: &str,
    tool: &str,
    arguments: Option<&Map<String, Value>>,
    ledger: &ActionLedger,
    now: i64,
    days: &Days,
) -> Result<(), McpDenial> {
    if rule.per_day.is_none() && rule.sum_per_day.is_empty() {
        return Ok(());
    }
    let calls = format!("{server}/{}", rule.key);
    let counts: Vec<(&str, u32)> = rule
        .per_day
        .map(|n| (calls.as_str(), n))
        .into_iter()
        .collect();
    let sum_keys: Vec<String> = (rule.sum_per_day.iter())
        .map(|(argument, _)| format!("{calls}:{argument}"))
        .collect();
    let sums: Vec<(&str, u64, u64)> = (rule.sum_per_day.iter().zip(&sum_keys))
        .map(|((argument, max), key)| {
            let value = arguments
                .and_then(|a| a.get(argument))
                .and_then(Value::as_f64);
            (key.as_str(), millionths(value.unwrap_or(0.0)), *max)
        })
        .collect();
    let charge = Charge {
        counts: &counts,
        sums: &sums,
        micro_usd: 0,
        micro_usd_per_day: None,
    };
    let day = ledger.charge(charge, true, now, days);
    if day.fleet_unavailable {
        return Err(McpDenial::FleetUnavailable);
    }
    let limit = if day.over_count {
        rule.per_day.map(|n| format!("`per_day` ({n})"))
    } else if day.over_sum {
        let over = rule
            .sum_per_day
            .iter()
            .zip(&sums)
            .find(|(_, (key, units, max))| {
                ledger
                    .charge(
                        Charge {
                            counts: &[],
                            sums: &[(key, *units, *max)],
                            micro_usd: 0,
                            micro_usd_per_day: None,
                        },
                        false,
                        now,
                        days,
                    )
                    .over_sum
            });
        let (argument, max) = over.map_or(("", 0), |((a, m), _)| (a.as_str(), *m));
        Some(format!(
            "`sum_per_day` of `{argument}` ({})",
            max as f64 / 1_000_000.0
        ))
    } else {
        None
    };
    match limit {
        Some(limit) => Err(McpDenial::ToolLimitExhausted {
            tool: tool.to_owned(),
            limit,
            retry_after: u64::try_from(day.resets_in).unwrap_or(1).max(1),
        }),
        None => Ok(()),
    }
}
