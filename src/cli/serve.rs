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
use pingora::server::ShutdownWatch;
use pingora::services::background::{BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::audit::service::ShipperService;
use crate::audit::shipper::Shipper;
use crate::audit::{self, AuditSettings, Auditor};
use crate::clock::{Clock, SystemClock};
use crate::config::reload::{self, Pinned, Publisher, Reloader};
use crate::config::resolver::Resolver;
use crate::config::source::{self, Sources};
use crate::config::watch::ConfigSource;
use crate::config::{self, Environment, Snapshot};
use crate::environment::SystemLookup;
use crate::fleet::runtime::{load_pushed, FleetService};
use crate::fleet::{FleetSettings, FleetState};
use crate::limits::LiveState;
use crate::metrics::Metrics;
use crate::mock::MockProvider;
use crate::proxy::WardenProxy;
use crate::telemetry::{SpanCounters, Tracing};
use crate::tunnel::Front;

/// Default policy path when neither `--config` nor `$WARDEN_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "config/warden.yaml";

/// Seconds Pingora keeps serving in-flight requests after SIGTERM before stopping its runtimes.
/// Pingora sleeps this long unconditionally, so it is kept short; Kubernetes allows 30 s.
const GRACE_PERIOD_SECS: u64 = 3;
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;
/// How long start-up waits for the fleet's pushed revocations.
const STARTUP_FLEET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How Warden is started, beyond the policy itself.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Replaces the policy's `server.listen` (used by `demo`).
    pub listen: Option<SocketAddr>,
    /// Replaces the policy's `server.admin` (used by `demo`).
    pub admin: Option<SocketAddr>,
    /// Reload the policy from this path when it changes (`None`: the policy is fixed).
    pub reload_from: Option<PathBuf>,
    /// Notice changes by file-system events as well as by polling.
    pub watch: bool,
}

/// Runs `warden serve` on the policy at `config` (or the default path).
pub fn run(config: Option<PathBuf>, watch: bool) -> ExitCode {
    let path = super::config_path(config);
    match source::read(&path) {
        Ok(sources) => {
            let options = Options {
                reload_from: Some(path),
                watch,
                ..Options::default()
            };
            start(sources, options, |_| {})
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::from(1)
        }
    }
}

/// Compiles `sources` and runs Warden until it is told to stop; `on_ready` sees the policy once
/// it is loaded, before the listeners start (the demo prints its instructions there).
///
/// An invalid policy at start-up exits with every problem printed (nothing is serving yet, so
/// there is no last good policy to keep); later changes are reloaded by the config source.
pub fn start(sources: Sources, options: Options, on_ready: impl FnOnce(&Snapshot)) -> ExitCode {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let live = Arc::new(LiveState::with_clock(Arc::clone(&clock)));
    let compiled = match config::compile(&sources, &Environment::system(&live)) {
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
    if let Some(listen) = options.listen {
        snapshot.server.listen = listen;
    }
    if let Some(admin) = options.admin {
        snapshot.server.admin = admin;
    }
    let metrics = match Metrics::new(Arc::clone(&live)) {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => {
            eprintln!("warden: cannot create metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let snapshot_intercept_ca = snapshot.server.intercept_ca.clone();
    let pinned = Pinned {
        listen: snapshot.server.listen,
        admin: snapshot.server.admin,
        audit: snapshot.audit.clone(),
        tracing: snapshot.tracing.clone(),
    };
    let listen = pinned.listen.to_string();
    let admin = pinned.admin.to_string();
    let (auditor, shipper) = match &snapshot.audit {
        Some(settings) => match start_audit(settings, &metrics, &clock) {
            Ok((auditor, shipper)) => (Some(auditor), Some(shipper)),
            Err(e) => {
                eprintln!("warden: {e}; not starting");
                return ExitCode::from(1);
            }
        },
        None => (None, None),
    };
    let tracing = match &snapshot.tracing {
        Some(settings) => match Tracing::new(settings, span_counters(&metrics)) {
            Ok(tracing) => {
                log::info!("tracing: spans to {}", settings.traces_url);
                Some(Arc::new(tracing))
            }
            Err(e) => {
                eprintln!("warden: {e}; not starting");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    log::info!(
        "policy {} loaded ({})",
        snapshot.version,
        reload::summary(&snapshot)
    );
    if let Some(settings) = &snapshot.fleet {
        start_fleet(&live.fleet, settings);
    }
    on_ready(&snapshot);
    let publisher = Publisher {
        policy: Arc::new(ArcSwapOption::empty()),
        live,
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock),
        tracing: tracing.clone(),
    };
    publisher.publish(snapshot);
    let policy = Arc::clone(&publisher.policy);

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

    let interceptor = match crate::tunnel::intercept::acceptor(snapshot_intercept_ca.as_ref()) {
        Ok(interceptor) => interceptor,
        Err(e) => {
            eprintln!("warden: interception CA: {e}; not starting");
            return ExitCode::from(1);
        }
    };
    // Budgets count prompts with these vocabularies: loaded before traffic, not by a request.
    crate::limits::prompt::warm_up();
    let proxy = WardenProxy {
        policy: Arc::clone(&policy),
        metrics: Arc::clone(&metrics),
        mock_socket: mock_socket.clone(),
        audit: auditor.clone(),
        connector: pingora::connectors::http::Connector::new(None),
        clock: Arc::clone(&clock),
        nonces: crate::identity::NonceCache::default(),
        mcp_sessions: Arc::default(),
        owners: Arc::new(crate::objects::Owners::new(Arc::clone(
            &publisher.live.fleet,
        ))),
        tracing: tracing.clone(),
    };
    // The listener's front takes CONNECT (HTTPS_PROXY mode); everything else goes to the proxy.
    let front = Front {
        proxy: Arc::new(pingora::proxy::http_proxy(&server.configuration, proxy)),
        policy: Arc::clone(&policy),
        interceptor,
        metrics: Arc::clone(&metrics),
        audit: auditor,
        clock: Arc::clone(&clock),
        nonces: crate::identity::NonceCache::default(),
        tracing: tracing.clone(),
    };
    let mut proxy_service = Service::new("warden proxy".to_string(), front);
    proxy_service.add_tcp(&listen);

    let mut admin_service = Service::new(
        "warden admin".to_string(),
        HttpServer::new_app(AdminApp {
            policy,
            metrics,
            clock,
        }),
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
    if let Some(shipper) = shipper {
        server.add_service(GenBackgroundService::new(
            "warden audit shipper".to_string(),
            Arc::new(ShipperService::new(shipper)),
        ));
    }
    if let Some(tracing) = tracing {
        server.add_service(GenBackgroundService::new(
            "warden span exporter".to_string(),
            Arc::new(FlushAtShutdown(tracing)),
        ));
    }
    server.add_service(GenBackgroundService::new(
        "warden fleet".to_string(),
        Arc::new(FleetService {
            fleet: Arc::clone(&publisher.live.fleet),
        }),
    ));
    server.add_service(GenBackgroundService::new(
        "warden provider resolver".to_string(),
        Arc::new(Resolver::new(
            Arc::clone(&publisher.policy),
            Arc::new(SystemLookup),
        )),
    ));
    if let Some(path) = options.reload_from {
        let reloader = Arc::new(Reloader::new(path, publisher, pinned));
        server.add_service(GenBackgroundService::new(
            "warden config source".to_string(),
            Arc::new(ConfigSource::new(reloader, options.watch)),
        ));
    }
    log::info!("warden listening on {listen} (admin {admin})");
    server.run_forever()
}

/// The spans' counters in the metrics.
fn span_counters(metrics: &Metrics) -> SpanCounters {
    let dropped = |reason: &str| metrics.trace_spans_dropped.with_label_values(&[reason]);
    SpanCounters {
        exported: metrics.trace_spans_exported.clone(),
        queue_full: dropped("queue_full"),
        export_failed: dropped("export_failed"),
    }
}

/// Sends the spans still waiting when Warden is told to stop, and again once the requests
/// finishing in the grace period have ended theirs.
struct FlushAtShutdown(Arc<Tracing>);

#[async_trait::async_trait]
impl BackgroundService for FlushAtShutdown {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        for wait in [0, GRACE_PERIOD_SECS] {
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            let tracing = Arc::clone(&self.0);
            if tokio::task::spawn_blocking(move || tracing.flush())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Reads the revocations pushed through the fleet's Redis before any traffic is accepted, so
/// a Warden started after `warden revoke` refuses from its first request. Redis being
/// unreachable is not fatal (a sidecar must start without it): limits then follow
/// `on_unavailable` until the fleet task connects.
fn start_fleet(fleet: &FleetState, settings: &FleetSettings) {
    let loaded = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(STARTUP_FLEET_WAIT, load_pushed(fleet, settings))
                    .await
                    .unwrap_or_else(|_| Err("Redis did not answer in time".into()))
            })
        });
    match loaded {
        Ok(count) => {
            fleet.link.set_healthy(true);
            log::info!("fleet: {count} pushed revocations loaded from Redis");
        }
        Err(e) => log::warn!(
            "fleet: {e}; starting without Redis (limits follow `on_unavailable: {}`)",
            settings.on_unavailable.as_str()
        ),
    }
}

/// Opens the audit spool, restores the chain and reads the signing key: an audit trail that
/// cannot start is a start-up error, never a silent gap.
fn start_audit(
    settings: &AuditSettings,
    metrics: &Arc<Metrics>,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<Auditor>, Shipper), String> {
    let key = match &settings.signing_key_file {
        Some(path) => Some(audit::keys::read_signing_key(path)?),
        None => None,
    };
    let (queue, events) = std::sync::mpsc::sync_channel(audit::QUEUE_CAPACITY);
    let sink = |instance: &str| audit::sink::build(&settings.sink, instance);
    let shipper = Shipper::new(
        settings,
        events,
        sink,
        key,
        Arc::clone(metrics),
        Arc::clone(clock),
    )?;
    log::info!("audit trail: instance {}", shipper.instance());
    Ok((Arc::new(Auditor::new(queue, Arc::clone(metrics))), shipper))
}
