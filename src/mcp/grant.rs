//! An agent's `mcp:` grants compiled: per server, the tools (with their argument rules and
//! quotas), resources and prompts that exist for the agent.

use std::collections::HashMap;

use glob::Pattern;
use indexmap::IndexMap;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::spec::{ArgumentSpec, McpGrantSpec, ToolSpec};
use crate::globs::{is_literal, GlobCache, Globs};
use crate::problem::Problems;

/// What of one MCP server exists for an agent.
#[derive(Debug, Clone)]
pub struct McpGrant {
    /// In policy order; a name listed exactly is found before any glob.
    tools: std::sync::Arc<[ToolRule]>,
    resources: Globs,
    prompts: Globs,
    /// A delegated credential's tool globs: only the tools they match exist.
    within: Option<Globs>,
}

/// The rules of one `tools:` entry.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// The entry as written (a name or a glob): what its quotas are counted under, and the
    /// tool label of metrics (bounded by policy).
    pub key: String,
    glob: Option<Pattern>,
    pub arguments: Vec<(String, ArgumentRule)>,
    pub per_day: Option<u32>,
    /// `sum_per_day`: argument, and the day's limit in millionths of its unit.
    pub sum_per_day: Vec<(String, u64)>,
}

/// What a string argument's `pattern` allows besides ordinary characters.
pub const SEPARATORS: &[char] = &[' ', ',', ';'];

/// One argument's compiled rule.
#[derive(Debug, Clone, Default)]
pub struct ArgumentRule {
    pub pattern: Option<Pattern>,
    pub one_of: Option<Vec<Value>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<u64>,
}

impl ArgumentRule {
    /// The JSON type the argument must have, by the rule's keys (`None`: `one_of` alone, whose
    /// values say).
    pub fn kind(&self) -> Option<Kind> {
        if self.pattern.is_some() || self.max_length.is_some() {
            Some(Kind::String)
        } else if self.min.is_some() || self.max.is_some() {
            Some(Kind::Number)
        } else {
            None
        }
    }
}

/// A JSON type a rule requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
}

impl McpGrant {
    /// The rules for tool `name`: its exact entry, else the first glob that matches it.
    pub fn tool(&self, name: &str) -> Option<&ToolRule> {
        if self.within.as_ref().is_some_and(|w| !w.matches(name)) {
            return None;
        }
        self.tools
            .iter()
            .find(|t| t.glob.is_none() && t.key == name)
            .or_else(|| {
                self.tools
                    .iter()
                    .find(|t| t.glob.as_ref().is_some_and(|g| g.matches(name)))
            })
    }

    /// The grant as a delegated credential sees it: the tools `tools` match (their rules and
    /// quotas the agent's), no resources, no prompts (a delegated scope names none).
    pub fn narrowed(&self, tools: Globs) -> McpGrant {
        McpGrant {
            tools: std::sync::Arc::clone(&self.tools),
            resources: Globs::default(),
            prompts: Globs::default(),
            within: Some(tools),
        }
    }

    /// The `tools:` entries as written (names and globs), in policy order.
    pub fn tool_keys(&self) -> impl Iterator<Item = &str> {
        self.tools.iter().map(|t| t.key.as_str())
    }

    /// Whether the resource at `uri` (or a resource template, by its URI template) exists for
    /// the agent.
    pub fn allows_resource(&self, uri: &str) -> bool {
        self.resources.matches(uri)
    }

    /// The grant in one line, rules included (for the reviewed outline of compiled policy).
    pub fn outline(&self) -> String {
        let tools: Vec<String> = self
            .tools
            .iter()
            .map(|t| {
                let arguments: Vec<String> = t
                    .arguments
                    .iter()
                    .map(|(name, r)| {
                        format!(
                            "{name}: pattern {:?} one_of {:?} min {:?} max {:?} max_length {:?}",
                            r.pattern.as_ref().map(Pattern::as_str),
                            r.one_of,
                            r.min,
                            r.max,
                            r.max_length
                        )
                    })
                    .collect();
                format!(
                    "{} (glob {}) {{{}}} per_day {:?} sum_per_day {:?}",
                    t.key,
                    t.glob.is_some(),
                    arguments.join("; "),
                    t.per_day,
                    t.sum_per_day
                )
            })
            .collect();
        let globs = |g: &Globs| g.patterns().collect::<Vec<_>>().join(", ");
        format!(
            "tools [{}], resources [{}], prompts [{}]",
            tools.join(", "),
            globs(&self.resources),
            globs(&self.prompts)
        )
    }

    /// Whether prompt `name` exists for the agent.
    pub fn allows_prompt(&self, name: &str) -> bool {
        self.prompts.matches(name)
    }
}

/// Compiles an agent's `mcp:` section, reporting each problem; `None` if any. Whether each
/// server is defined is checked by the caller, who sees every file's `mcp_servers`.
pub fn compile<'f>(
    grants: &'f IndexMap<Spanned<String>, McpGrantSpec>,
    p: &mut Problems<'_>,
    globs: &mut GlobCache<'f>,
) -> Option<HashMap<String, McpGrant>> {
    let mut compiled = HashMap::with_capacity(grants.len());
    let mut ok = true;
    for (server, grant) in grants {
        let mut tools = Vec::with_capacity(grant.tools.len());
        for (name, spec) in &grant.tools {
            match tool(name, spec, p) {
                Some(rule) => tools.push(rule),
                None => ok = false,
            }
        }
        let resources = globs.compile_paths(p, &grant.resources, "MCP resource");
        let prompts = globs.compile(p, &grant.prompts, "MCP prompt");
        let (Some(resources), Some(prompts)) = (resources, prompts) else {
            ok = false;
            continue;
        };
        let grant = McpGrant {
            tools: tools.into(),
            resources,
            prompts,
            within: None,
        };
        compiled.insert(server.value.clone(), grant);
    }
    ok.then_some(compiled)
}

/// One `tools:` entry.
fn tool(name: &Spanned<String>, spec: &ToolSpec, p: &mut Problems<'_>) -> Option<ToolRule> {
    let mut ok = true;
    let glob = if is_literal(&name.value) {
        None
    } else {
        match Pattern::new(&name.value) {
            Ok(glob) => Some(glob),
            Err(e) => {
                p.error(name, format!("bad tool glob `{}`: {}", name.value, e.msg));
                ok = false;
                None
            }
        }
    };
    let mut arguments = Vec::with_capacity(spec.arguments.len());
    for (argument, rule) in &spec.arguments {
        match argument_rule(argument, rule, p) {
            Some(rule) => arguments.push((argument.value.clone(), rule)),
            None => ok = false,
        }
    }
    let mut sum_per_day = Vec::with_capacity(spec.sum_per_day.len());
    for (argument, max) in &spec.sum_per_day {
        if !(max.value.is_finite() && max.value >= 0.0) {
            p.error(max, "a `sum_per_day` limit is a number of 0 or more");
            ok = false;
            continue;
        }
        let numeric = arguments
            .iter()
            .find(|(a, _)| *a == argument.value)
            .is_none_or(|(_, r)| r.kind() != Some(Kind::String));
        if !numeric {
            p.error(
                argument,
                format!(
                    "`{}` is summed but its rule makes it a string",
                    argument.value
                ),
            );
            ok = false;
            continue;
        }
        sum_per_day.push((argument.value.clone(), millionths(max.value)));
    }
    ok.then(|| ToolRule {
        key: name.value.clone(),
        glob,
        arguments,
        per_day: spec.per_day.as_ref().map(|n| n.value),
        sum_per_day,
    })
}

/// One argument's rule: keys of one JSON type, bounds that can be met, a valid glob.
fn argument_rule(
    argument: &Spanned<String>,
    spec: &ArgumentSpec,
    p: &mut Problems<'_>,
) -> Option<ArgumentRule> {
    let textual = spec.pattern.is_some() || spec.max_length.is_some();
    let numeric = spec.min.is_some() || spec.max.is_some();
    if textual && numeric {
        p.error(
            argument,
            format!(
                "argument `{}` mixes string rules (`pattern`, `max_length`) with number rules (`min`, `max`)",
                argument.value
            ),
        );
        return None;
    }
    let pattern = match &spec.pattern {
        Some(glob) => match Pattern::new(&glob.value) {
            Ok(pattern) => Some(pattern),
            Err(e) => {
                p.error(
                    glob,
                    format!("bad argument pattern `{}`: {}", glob.value, e.msg),
                );
                return None;
            }
        },
        None => None,
    };
    let finite = |n: &Option<Spanned<f64>>, p: &mut Problems<'_>| match n {
        Some(n) if !n.value.is_finite() => {
            p.error(n, "a bound is a finite number");
            Err(())
        }
        _ => Ok(n.as_ref().map(|n| n.value)),
    };
    let (min, max) = (finite(&spec.min, p).ok()?, finite(&spec.max, p).ok()?);
    if let (Some(lo), Some(hi), Some(at)) = (min, max, spec.max.as_ref()) {
        if lo > hi {
            p.error(at, format!("`max` ({hi}) is below `min` ({lo})"));
            return None;
        }
    }
    let one_of = match &spec.one_of {
        Some(values) => Some(one_of(values, textual, numeric, p)?),
        None => None,
    };
    Some(ArgumentRule {
        pattern,
        one_of,
        min,
        max,
        max_length: spec.max_length.as_ref().map(|n| n.value),
    })
}

/// `one_of`: scalars, of the type the argument's other rules give it.
fn one_of(
    values: &Spanned<Vec<Value>>,
    textual: bool,
    numeric: bool,
    p: &mut Problems<'_>,
) -> Option<Vec<Value>> {
    let fits = |v: &Value| match v {
        Value::String(_) => !numeric,
        Value::Number(_) => !textual,
        Value::Bool(_) => !textual && !numeric,
        _ => false,
    };
    if values.value.is_empty() || !values.value.iter().all(fits) {
        p.error(
            values,
            "`one_of` lists strings, numbers or booleans, of the type the argument's other rules give it",
        );
        return None;
    }
    Some(values.value.clone())
}

/// `value` in millionths, rounded up: what sums are counted in.
pub fn millionths(value: f64) -> u64 {
    // A float-to-int `as` saturates; sums are bounded to what u64 holds.
    (value * 1_000_000.0).ceil() as u64
}
