//! An agent's `services:` grants: which non-LLM APIs it may call through `/svc/<name>/…`, with
//! which methods, on which paths, how many times a day.

use std::collections::HashMap;

use http::Method;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::globs::{GlobCache, Globs};
use crate::problem::Problems;

/// `agents.<id>.services.<name>:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceGrantSpec {
    /// HTTP methods allowed (upper case), or `["*"]` for any.
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    /// Path globs on the service (the part after `/svc/<name>`), e.g. `/v1/payment_intents*`:
    /// `*` stays within one segment, `**` (a whole segment) crosses `/`; `["*"]` alone is
    /// every path.
    #[schemars(with = "Vec<String>")]
    pub paths: Vec<Spanned<String>>,
    /// Most calls per day (the day of the policy's `timezone`).
    #[schemars(with = "Option<u32>")]
    pub requests_per_day: Option<Spanned<u32>>,
}

/// A compiled grant.
#[derive(Debug, Clone)]
pub struct ServiceGrant {
    /// `None`: any method.
    methods: Option<Vec<Method>>,
    paths: Globs,
    /// `paths: ["*"]`: every path of the service.
    any_path: bool,
    pub requests_per_day: Option<u32>,
}

impl ServiceGrant {
    /// Whether `method` on `path` (the service's own path) is granted.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && (self.any_path || self.paths.matches(path))
    }
}

/// Compiles an agent's grants, reporting each problem; `None` if any.
pub fn compile<'f>(
    grants: &'f IndexMap<Spanned<String>, ServiceGrantSpec>,
    p: &mut Problems<'_>,
    globs: &mut GlobCache<'f>,
) -> Option<HashMap<String, ServiceGrant>> {
    let mut compiled = HashMap::with_capacity(grants.len());
    let mut ok = true;
    for (name, grant) in grants {
        let any = grant.methods.iter().any(|m| m.value == "*");
        let mut methods = Vec::with_capacity(grant.methods.len());
        for method in &grant.methods {
            let valid = method.value != "*"
                && !method.value.is_empty()
                && method.value.bytes().all(|b| b.is_ascii_uppercase());
            match (method.value.as_str(), valid) {
                ("*", _) => {}
                (_, true) => methods.extend(Method::from_bytes(method.value.as_bytes()).ok()),
                (_, false) => {
                    p.error(
                        method,
                        format!(
                            "`{}` is not an HTTP method in upper case (or `*`)",
                            method.value
                        ),
                    );
                    ok = false;
                }
            }
        }
        if grant.methods.is_empty() {
            p.error(
                name,
                format!("service grant `{}` lists no methods", name.value),
            );
            ok = false;
        }
        let paths = globs.compile_paths(p, &grant.paths, "service path");
        for path in &grant.paths {
            if !path.value.starts_with('/') && path.value != "*" {
                p.error(
                    path,
                    format!("service paths start with `/`: `{}`", path.value),
                );
                ok = false;
            }
        }
        if let Some(paths) = paths {
            compiled.insert(
                name.value.clone(),
                ServiceGrant {
                    methods: (!any).then_some(methods),
                    paths,
                    any_path: grant.paths.iter().any(|p| p.value == "*"),
                    requests_per_day: grant.requests_per_day.as_ref().map(|n| n.value),
                },
            );
        } else {
            ok = false;
        }
    }
    ok.then_some(compiled)
}
