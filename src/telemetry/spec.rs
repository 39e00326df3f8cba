//! `tracing:` as written in policy files, and its validation.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::problem::{is_http_url, Problems};

/// `tracing:` — OpenTelemetry traces: one server span per request, exported over OTLP/HTTP.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingSpec {
    #[schemars(with = "OtlpSpec")]
    pub otlp: Spanned<OtlpSpec>,
    /// Share of new traces recorded, 0 to 1 (default 1). A request that continues a client's
    /// trace follows the client's sampling decision instead.
    #[schemars(with = "Option<f64>")]
    pub sample_ratio: Option<Spanned<f64>>,
    /// The `service.name` of Warden's spans (default `warden`).
    #[schemars(with = "Option<String>")]
    pub service_name: Option<Spanned<String>>,
}

/// Where spans go: an OpenTelemetry Collector (or any OTLP/HTTP receiver).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSpec {
    /// The receiver's base URL, e.g. `http://otel-collector:4318`; spans are POSTed as
    /// protobuf to `<endpoint>/v1/traces` (a URL ending in `/v1/traces` is used as it is).
    pub endpoint: String,
    /// Seconds to wait for the receiver's answer to one batch (default 10).
    pub timeout_secs: Option<f64>,
}

/// `tracing:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where export requests go: the full `/v1/traces` URL.
    pub traces_url: String,
    pub timeout: Duration,
    pub service_name: String,
    /// Share of new traces recorded.
    pub sample_ratio: f64,
}

impl TracingSettings {
    /// Whether `other` exports the same way (what a reload cannot change without a restart;
    /// the sample ratio it can).
    pub fn same_exporter(&self, other: &TracingSettings) -> bool {
        self.traces_url == other.traces_url
            && self.timeout == other.timeout
            && self.service_name == other.service_name
    }
}

/// The path of the OTLP/HTTP traces endpoint.
const TRACES_PATH: &str = "/v1/traces";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl TracingSpec {
    /// The settings this section gives, or `None` (with the problems reported).
    pub fn compile(&self, p: &mut Problems<'_>) -> Option<TracingSettings> {
        let otlp = &self.otlp.value;
        let mut ok = true;
        if !is_http_url(&otlp.endpoint) {
            let message = format!(
                "`endpoint` must be an http:// or https:// URL, got `{}`",
                otlp.endpoint
            );
            p.error(&self.otlp, message);
            ok = false;
        }
        let timeout = match otlp.timeout_secs {
            None => Some(DEFAULT_TIMEOUT),
            Some(secs) => Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero()),
        };
        if timeout.is_none() {
            p.error(
                &self.otlp,
                "`timeout_secs` must be a positive number of seconds",
            );
        }
        let sample_ratio = self.sample_ratio.as_ref().map_or(1.0, |r| r.value);
        if !(0.0..=1.0).contains(&sample_ratio) {
            if let Some(at) = &self.sample_ratio {
                p.error(
                    at,
                    format!("`sample_ratio` must be from 0 to 1, got {sample_ratio}"),
                );
            }
            ok = false;
        }
        let service_name = self
            .service_name
            .as_ref()
            .map_or("warden", |s| s.value.as_str());
        if service_name.trim().is_empty() {
            if let Some(at) = &self.service_name {
                p.error(at, "`service_name` must not be empty");
            }
            ok = false;
        }
        let endpoint = otlp.endpoint.trim_end_matches('/');
        let traces_url = if endpoint.ends_with(TRACES_PATH) {
            endpoint.to_owned()
        } else {
            format!("{endpoint}{TRACES_PATH}")
        };
        Some(TracingSettings {
            traces_url,
            timeout: timeout?,
            service_name: service_name.to_owned(),
            sample_ratio,
        })
        .filter(|_| ok)
    }
}
