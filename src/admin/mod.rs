//! The admin port: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::Snapshot;
use crate::metrics::Metrics;

/// Serves the admin endpoints from the live policy and the metrics registry.
pub struct AdminApp {
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/healthz" => text(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.policy.load().as_ref() {
                Some(snapshot) => text(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready: policy {}\n", snapshot.version).into_bytes(),
                ),
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    b"no valid policy loaded\n".to_vec(),
                ),
            },
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            _ => text(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}
