//! `warden webhook`: the mutating admission webhook server (TLS from mounted files, reloaded
//! when they rotate). Runs until SIGTERM/SIGINT, like `serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use pingora::services::listening::Service;

use super::inject::SidecarArgs;
use crate::k8s::webhook::{CertFiles, CertReloader, WebhookApp};

/// How often the certificate files are read again: a Secret update reaches the pod's files
/// within the kubelet's sync period (about a minute), so seconds are plenty.
const CERT_POLL: Duration = Duration::from_secs(2);

/// Serves `POST /mutate` on `listen` until stopped.
pub fn run(listen: &str, cert: PathBuf, key: PathBuf, sidecar: &SidecarArgs) -> ExitCode {
    let certs = match CertFiles::load(cert, key, CERT_POLL) {
        Ok(certs) => Arc::new(certs),
        Err(e) => {
            eprintln!("warden webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new(
        "warden webhook".to_string(),
        HttpServer::new_app(WebhookApp {
            sidecar: sidecar.sidecar(),
        }),
    );
    let Ok(mut tls) = TlsSettings::intermediate("", "") else {
        eprintln!("warden webhook: cannot set up TLS");
        return ExitCode::FAILURE;
    };
    tls.set_cert_resolver(certs.clone());
    service.add_tls_with_settings(listen, None, tls);
    server.add_service(service);
    server.add_service(GenBackgroundService::new(
        "warden webhook certificate".to_string(),
        Arc::new(CertReloader(certs)),
    ));
    log::info!("warden webhook listening on {listen} (TLS)");
    server.run_forever()
}
