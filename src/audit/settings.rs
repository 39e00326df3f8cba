//! `audit:` after validation: what the shipper is started with.

use std::path::PathBuf;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::spec::{AuditSpec, SinkSpec};
use crate::problem::{is_http_url, Problems};

/// `audit:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    pub sink: SinkSpec,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub signing_key_file: Option<PathBuf>,
    pub instance: Option<String>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
}

impl AuditSpec {
    /// The settings this section gives, or `None` (with the problems reported).
    pub fn compile(&self, p: &mut Problems<'_>) -> Option<AuditSettings> {
        let spec = self;
        let mut ok = true;
        match &spec.sink.value {
            SinkSpec::File(file) if file.path.trim().is_empty() => {
                p.error(&spec.sink, "the file sink needs a `path`");
                ok = false;
            }
            SinkSpec::Http(http) if !is_http_url(&http.url) => {
                p.error(
                    &spec.sink,
                    format!(
                        "`url` must be an http:// or https:// URL, got `{}`",
                        http.url
                    ),
                );
                ok = false;
            }
            SinkSpec::Otlp(otlp) if !is_http_url(&otlp.endpoint) => {
                p.error(
                    &spec.sink,
                    format!(
                        "`endpoint` must be an http:// or https:// URL, got `{}`",
                        otlp.endpoint
                    ),
                );
                ok = false;
            }
            _ => {}
        }
        if spec.spool_dir.value.trim().is_empty() {
            p.error(&spec.spool_dir, "`spool_dir` must name a directory");
            ok = false;
        }
        let positive = |v: &Option<Spanned<u64>>, field: &str, p: &mut Problems<'_>| match v {
            Some(n) if n.value == 0 => {
                p.error(n, format!("`{field}` must be at least 1"));
                None
            }
            Some(n) => Some(n.value),
            None => None,
        };
        let spool_max_bytes = positive(&spec.spool_max_bytes, "spool_max_bytes", p);
        let checkpoint_every = positive(&spec.checkpoint_every, "checkpoint_every", p);
        let checkpoint_interval = match &spec.checkpoint_interval_secs {
            Some(secs) => match Duration::try_from_secs_f64(secs.value) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    p.error(
                        secs,
                        "`checkpoint_interval_secs` must be a positive number of seconds",
                    );
                    None
                }
            },
            None => None,
        };
        if spec.signing_key_file.is_none() {
            p.warning(&spec.sink, "no `signing_key_file`: audit checkpoints will not be signed (make a key with `warden keygen`)");
        }
        if let Some(instance) = &spec.instance {
            if instance.value.trim().is_empty() {
                p.error(instance, "`instance` must not be empty");
                ok = false;
            }
        }
        ok.then(|| AuditSettings {
            sink: spec.sink.value.clone(),
            spool_dir: spec.spool_dir.value.clone().into(),
            spool_max_bytes: spool_max_bytes.unwrap_or(super::DEFAULT_SPOOL_MAX_BYTES),
            signing_key_file: spec
                .signing_key_file
                .as_ref()
                .map(|f| f.value.clone().into()),
            instance: spec.instance.as_ref().map(|i| i.value.clone()),
            checkpoint_every: checkpoint_every.unwrap_or(super::DEFAULT_CHECKPOINT_EVERY),
            checkpoint_interval: checkpoint_interval.unwrap_or(super::DEFAULT_CHECKPOINT_INTERVAL),
        })
    }
}
