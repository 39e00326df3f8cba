//! `warden serve`: assemble the Pingora server (proxy, admin, mock provider) and run it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::{AdminApp, Metrics};
use crate::config::source::{self, Sources};
use crate::config::{self, Environment, Snapshot};
use crate::limits::LiveState;
use crate::mock::MockProvider;
use crate::proxy::WardenProxy;

/// Default policy path when neither `--config` nor `$WARDEN_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "config/warden.yaml";

/// Seconds Pingora keeps serving in-flight requests after SIGTERM before stopping its runtimes.
/// Pingora sleeps this long unconditionally, so it is kept short; Kubernetes allows 30 s.
const GRACE_PERIOD_SECS: u64 = 3;
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;

/// Addresses that replace the policy's `server.listen` / `server.admin` (used by `demo`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Runs `warden serve` on the policy at `config` (or the default path).
pub fn run(config: Option<PathBuf>) -> ExitCode {
    let path = config
        .or_else(|| std::env::var_os("WARDEN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match source::read(&path) {
        Ok(sources) => start(sources, Overrides::default(), |_| {}),
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::from(1)
        }
    }
}

/// Compiles `sources` and runs Warden until it is told to stop; `on_ready` sees the policy once
/// it is loaded, before the listeners start (the demo prints its instructions there).
pub fn start(sources: Sources, overrides: Overrides, on_ready: impl FnOnce(&Snapshot)) -> ExitCode {
    let live = Arc::new(LiveState::default());
    let env = Environment {
        live: &live,
        resolve_hosts: true,
        read_secrets: true,
    };
    let compiled = match config::compile(&sources, &env) {
        Ok(compiled) => compiled,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("warden: policy is invalid; not starting");
            return ExitCode::from(1);
        }
    };
    for warning in &compiled.warnings {
        log::warn!("{warning}");
    }
    let mut snapshot = compiled.snapshot;
    if let Some(listen) = overrides.listen {
        snapshot.server.listen = listen;
    }
    if let Some(admin) = overrides.admin {
        snapshot.server.admin = admin;
    }
    let metrics = match Metrics::new() {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => {
            eprintln!("warden: cannot create metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let listen = snapshot.server.listen.to_string();
    let admin = snapshot.server.admin.to_string();
    log::info!(
        "policy {} loaded: {} agents, {} providers",
        snapshot.version,
        snapshot.agents.len(),
        snapshot.providers.len()
    );
    on_ready(&snapshot);
    let policy = Arc::new(ArcSwapOption::from_pointee(snapshot));

    let mock_socket = std::env::temp_dir().join(format!("warden-mock-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&mock_socket);
    let mock_socket = mock_socket.to_string_lossy().into_owned();

    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let proxy = WardenProxy {
        policy: Arc::clone(&policy),
        metrics: Arc::clone(&metrics),
        mock_socket: mock_socket.clone(),
    };
    let mut proxy_service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, proxy, "warden proxy");
    proxy_service.add_tcp(&listen);

    let mut admin_service = Service::new(
        "warden admin".to_string(),
        HttpServer::new_app(AdminApp { policy, metrics }),
    );
    admin_service.add_tcp(&admin);

    let mut mock_service = Service::new(
        "warden mock provider".to_string(),
        HttpServer::new_app(MockProvider),
    );
    mock_service.add_uds(&mock_socket, Some(std::fs::Permissions::from_mode(0o600)));

    server.add_service(proxy_service);
    server.add_service(admin_service);
    server.add_service(mock_service);
    log::info!("warden listening on {listen} (admin {admin})");
    server.run_forever()
}
