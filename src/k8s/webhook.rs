//! The mutating admission webhook server: `POST /mutate` answers an `AdmissionReview`
//! ([`super::admission::review`]); `GET /healthz` answers `ok`. It serves TLS from mounted
//! certificate files and takes a rotated certificate (cert-manager renewing the Secret) without a
//! restart: [`CertFiles`] polls the files and swaps the certificate new handshakes get.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::CryptoProvider;
use pingora::tls::{ClientHello, ResolvesServerCert};
use serde_json::json;

use super::admission;
use super::sidecar::Sidecar;

/// Largest `AdmissionReview` body read: a pod with its whole spec is a few tens of KB; the API
/// server's own request limit is 3 MiB.
const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;

/// Serves admission reviews with one sidecar definition.
pub struct WebhookApp {
    pub sidecar: Sidecar,
}

#[async_trait]
impl ServeHttp for WebhookApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        let path = request.uri.path().to_string();
        let is_post = request.method == http::Method::POST;
        match (path.as_str(), is_post) {
            ("/healthz", false) => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            ("/mutate", true) => {
                let body = match read_body(session).await {
                    Ok(body) => body,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                match admission::review(&body, &self.sidecar) {
                    Ok(answer) => respond(
                        StatusCode::OK,
                        "application/json",
                        answer.to_string().into(),
                    ),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "POST /mutate or GET /healthz"),
        }
    }
}

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_REVIEW_BYTES {
                    return Err(format!("review body larger than {MAX_REVIEW_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("cannot read the review body: {e}")),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    let body = json!({"error": {"message": message, "code": "invalid_review"}});
    respond(status, "application/json", body.to_string().into())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// The webhook's certificate and key, read from PEM files and read again when they change.
pub struct CertFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<Loaded>,
    poll: Duration,
}

struct Loaded {
    pem: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl CertFiles {
    /// Reads the pair now: a webhook that cannot serve TLS must not start.
    pub fn load(cert_path: PathBuf, key_path: PathBuf, poll: Duration) -> Result<Self, String> {
        let pem = read_pair(&cert_path, &key_path)?;
        let key = certified_key(&pem)?;
        Ok(CertFiles {
            cert_path,
            key_path,
            current: ArcSwap::from_pointee(Loaded { pem, key }),
            poll,
        })
    }

    /// Reads the files again; swaps in a changed, valid pair. A half-written or mismatched pair
    /// is logged and the serving one kept (a rotation writes both files; the next poll sees both).
    fn refresh(&self) {
        let pem = match read_pair(&self.cert_path, &self.key_path) {
            Ok(pem) => pem,
            Err(e) => {
                log::warn!("webhook certificate not reloaded: {e}");
                return;
            }
        };
        if pem == self.current.load().pem {
            return;
        }
        match certified_key(&pem) {
            Ok(key) => {
                self.current.store(Arc::new(Loaded { pem, key }));
                log::info!(
                    "webhook certificate reloaded from {}",
                    self.cert_path.display()
                );
            }
            Err(e) => log::warn!("webhook certificate not reloaded: {e}"),
        }
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// Polls the certificate files for the life of the server.
pub struct CertReloader(pub Arc<CertFiles>);

#[async_trait]
impl BackgroundService for CertReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.0.poll);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let files = self.0.clone();
                    // File reads stay off the server's async threads.
                    let _ = tokio::task::spawn_blocking(move || files.refresh()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn read_pair(cert: &PathBuf, key: &PathBuf) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    Ok((read(cert)?, read(key)?))
}

fn certified_key((cert, key): &(Vec<u8>, Vec<u8>)) -> Result<Arc<CertifiedKey>, String> {
    let chain = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no certificate".into());
    }
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| format!("key file is not PEM: {e}"))?
        .ok_or("key file holds no private key")?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("certificate and key do not make a pair: {e}"))
}
