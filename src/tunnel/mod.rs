//! HTTPS_PROXY mode: the front of the proxy listener, where `CONNECT` is handled (Pingora's
//! `ProxyHttp` refuses it).
//!
//! Every connection is peeked: anything but `CONNECT ` goes to the proxy pipeline unchanged. A
//! `CONNECT host:port` is identified by its `Proxy-Authorization` (Bearer, or Basic with the key
//! as the password; 407 without a valid one), then:
//! - a host in `server.intercept_hosts` (the LLM APIs) is **intercepted**: Warden answers 200,
//!   terminates the agent's TLS with a leaf certificate from the interception CA (or reads plain
//!   HTTP for port 80) and feeds the decrypted requests to the same pipeline as base-URL
//!   requests, identified by the CONNECT's credential ([`TunnelCredential`]);
//! - any other `host:port` must match the agent's `destinations` (else 403
//!   `destination_not_allowed`) and becomes a **plain tunnel**, audited and counted with its
//!   bytes each way, closed when idle or too long, and within [`RECHECK`] of the agent losing
//!   the right to open it (revoked, suspended, outside its schedule, its credential revoked or
//!   expired, the destination no longer listed).
//!
//! Warden never tunnels an unidentified agent or an unlisted destination, and never passes an
//! intercepted host through unread.

pub mod authority;
pub mod intercept;
mod pipe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use opentelemetry::{KeyValue, Value};
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::audit::{AuditEvent, Auditor};
use crate::clock::Clock;
use crate::code::Code;
use crate::config::Snapshot;
use crate::identity::{Checks, NonceCache, Target};
use crate::metrics::Metrics;
use crate::policy::revocations::RevokedKind;
use crate::proxy::error::shown;
use crate::proxy::record::Decision;
use crate::proxy::{Refusal, TunnelCredential, WardenProxy};
use crate::telemetry::{Ending, RequestSpan};
use authority::Authority;

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// Why an intercepted host is refused without an interception CA.
/// The refusal for a host Warden must intercept on 443 without an interception CA.
fn no_ca(host: &str) -> Refusal {
    Refusal::DestinationNotAllowed(format!(
        "{} is intercepted, and no interception CA is configured",
        shown(host)
    ))
}

/// How long a new connection may take to send its first bytes.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// How often an open plain tunnel's right to stay open is judged again, on the live policy.
pub const RECHECK: Duration = Duration::from_millis(500);

/// The proxy listener's application: CONNECT here, everything else to the pipeline.
pub struct Front {
    pub proxy: Arc<HttpProxy<WardenProxy>>,
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    /// TLS termination for intercepted hosts; `None` without an interception CA.
    pub interceptor: Option<Acceptor>,
    pub metrics: Arc<Metrics>,
    pub audit: Option<Arc<Auditor>>,
    pub clock: Arc<dyn Clock>,
    pub nonces: NonceCache,
    /// The span exporter (`None` without `tracing:` at start-up).
    pub tracing: Option<Arc<crate::telemetry::Tracing>>,
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut head = [0u8; 8];
        let peeked = tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.try_peek(&mut head)).await;
        match peeked {
            Ok(Ok(true)) if head.eq_ignore_ascii_case(b"CONNECT ") => {
                self.connect(stream, shutdown).await;
                None
            }
            Ok(Ok(_)) => self.proxy.process_new(stream, shutdown).await,
            // Closed, failed or silent before sending a request: nothing to answer.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// What a CONNECT was allowed to become.
enum Admitted {
    Intercept,
    Plain,
}

/// One CONNECT's facts, for its metrics and audit event.
struct Connect {
    started: Instant,
    arrived: jiff::Timestamp,
    snapshot: Option<Arc<Snapshot>>,
    agent: Option<usize>,
    /// The credential the CONNECT was identified by (kind and id, for the audit record).
    credential: Option<crate::identity::Credential>,
    destination: String,
    /// The CONNECT's span, when the policy traces.
    span: Option<RequestSpan>,
}

impl Front {
    async fn connect(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) {
        let mut session = HttpSession::new(stream);
        match session.read_request().await {
            Ok(Some(_)) => {}
            _ => return,
        }
        let snapshot = self.policy.load_full();
        let request = session.req_header();
        let traced = snapshot.as_ref().is_some_and(|s| s.tracing.is_some());
        let span = self.tracing.as_ref().filter(|_| traced);
        let mut facts = Connect {
            started: Instant::now(),
            arrived: self.clock.now(),
            snapshot,
            agent: None,
            credential: None,
            destination: String::new(),
            span: span.map(|t| t.start(&request.headers)),
        };
        let Some(authority) = Authority::parse(session.req_header().raw_path()) else {
            let stream = session.into_inner();
            let refusal = Refusal::DestinationNotAllowed("CONNECT needs host:port".into());
            self.refuse(stream, &mut facts, refusal).await;
            return;
        };
        facts.destination = authority.to_string();
        let secret = authority::proxy_secret(&request.headers);
        let mut stream = session.into_inner();
        let admitted = match secret {
            Ok(Some(secret)) => self.admit(&mut facts, &authority, secret),
            Ok(None) => Err(Refusal::MissingCredentials),
            Err(why) => Err(Refusal::InvalidCredentials(why)),
        };
        let (admitted, credential) = match admitted {
            Ok(ok) => ok,
            Err(refusal) => {
                self.refuse(stream, &mut facts, refusal).await;
                return;
            }
        };
        match admitted {
            Admitted::Intercept => {
                let Ok(answer) = ResponseHeader::build(200, None) else {
                    return;
                };
                let user_data = credential;
                // Every request on this connection finds the tunnel's credential here.
                stream.set_proxy_digest(ProxyDigest::new(
                    Box::new(answer),
                    Some(Box::new(user_data)),
                ));
                if established(&mut stream).await.is_err() {
                    return;
                }
                self.intercept(stream, shutdown).await;
            }
            Admitted::Plain => self.plain(stream, facts, &authority, &credential).await,
        }
    }

    /// Identifies the agent from the CONNECT's secret and decides what the tunnel becomes.
    fn admit(
        &self,
        facts: &mut Connect,
        authority: &Authority,
        secret: String,
    ) -> Result<(Admitted, TunnelCredential), Refusal> {
        let snapshot = facts
            .snapshot
            .clone()
            .ok_or_else(|| Refusal::UpstreamUnavailable("no valid policy is loaded".into()))?;
        let credential = TunnelCredential::new(&secret).ok_or(Refusal::InvalidCredentials(
            "the proxy credential is not valid",
        ))?;
        let identified = self.identify(&snapshot, &credential, facts.arrived);
        let principal = identified.map_err(|(rejection, known)| {
            if let Some(known) = known {
                facts.agent = Some(known.agent);
                facts.credential = Some(known.credential);
            }
            Refusal::from(rejection)
        })?;
        let delegated = principal.credential.delegation().is_some();
        facts.agent = Some(principal.agent);
        facts.credential = Some(principal.credential);
        let agent = &snapshot.agents[principal.agent];
        crate::policy::check_agent(agent, facts.arrived).map_err(|denial| match denial {
            crate::policy::Denial::AgentRevoked if delegated => Refusal::CredentialRevoked,
            denial => denial.into(),
        })?;
        // A service's host, for an agent granted that service: its requests are service calls.
        let granted = snapshot.providers.iter().find(|s| {
            s.serves == crate::providers::Serves::Service
                && s.is_at(&authority.host, authority.port)
                && agent.services.contains_key(&s.name)
        });
        if let Some(service) = granted {
            let credential = credential.to_service(&service.name);
            return match (authority.port, &self.interceptor) {
                (443, None) => Err(no_ca(&authority.host)),
                _ => Ok((Admitted::Intercept, credential)),
            };
        }
        if snapshot.server.intercept_hosts.matches(&authority.host) {
            return match (authority.port, &self.interceptor) {
                (443, None) => Err(no_ca(&authority.host)),
                _ => Ok((Admitted::Intercept, credential)),
            };
        }
        if delegated {
            // A delegated scope names models, services and MCP tools: no destinations.
            return Err(Refusal::DestinationNotAllowed(format!(
                "a delegated token opens no tunnel to `{}` (its scope has no destinations)",
                facts.destination
            )));
        }
        crate::policy::check_destination(agent, &facts.destination)?;
        Ok((Admitted::Plain, credential))
    }

    /// Identifies the agent behind a CONNECT's credential on `snapshot` at `now`.
    fn identify(
        &self,
        snapshot: &Snapshot,
        credential: &TunnelCredential,
        now: jiff::Timestamp,
    ) -> Result<
        crate::identity::Principal,
        (
            crate::identity::Rejection,
            Option<crate::identity::Principal>,
        ),
    > {
        let revocations = &snapshot.revocations;
        let token_revoked = |jti: &str| revocations.get(RevokedKind::Token, jti).is_some();
        crate::identity::authenticate(
            &snapshot.identity,
            &Target {
                method: &http::Method::CONNECT,
                uri: &http::Uri::from_static("/"),
                headers: credential.headers(),
            },
            &Checks {
                now,
                token_revoked: &token_revoked,
                nonces: &self.nonces,
            },
        )
    }

    /// Whether the agent of an open plain tunnel may still hold it open, judged on the live
    /// policy (and pushed revocations) as the CONNECT was: identified by the same credential,
    /// as the same agent, allowed now, the destination still listed.
    fn may_keep(&self, agent_id: &str, credential: &TunnelCredential, destination: &str) -> bool {
        let Some(snapshot) = self.policy.load_full() else {
            return false;
        };
        let now = self.clock.now();
        let identified = self.identify(&snapshot, credential, now);
        let Ok(principal) = identified else {
            return false;
        };
        let agent = &snapshot.agents[principal.agent];
        agent.id == agent_id
            && crate::policy::check_agent(agent, now).is_ok()
            && crate::policy::check_destination(agent, destination).is_ok()
    }

    /// Serves the decrypted (or port-80 plain) requests of an intercepted tunnel through the
    /// pipeline, request after request on the one connection.
    async fn intercept(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) {
        // What the client sends first says whether the tunnel carries TLS (a handshake record)
        // or plain HTTP (`CONNECT host:80`, or an `http://` target through a proxy agent).
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.try_peek(&mut first)).await;
        if !matches!(peeked, Ok(Ok(true))) {
            return;
        }
        let tls = first[0] == TLS_HANDSHAKE;
        let mut stream = if tls {
            let Some(acceptor) = &self.interceptor else {
                log::warn!("a tunnel to an intercepted host started TLS, and no interception CA is configured");
                return;
            };
            // The listener's streams are TCP streams; TLS wraps the concrete type.
            let Ok(tcp) = stream
                .into_any()
                .downcast::<pingora::protocols::l4::stream::Stream>()
            else {
                return;
            };
            match acceptor.tls_handshake(*tcp).await {
                Ok(tls) => Box::new(tls) as Stream,
                Err(e) => {
                    log::debug!("intercepted TLS handshake failed: {e}");
                    return;
                }
            }
        } else {
            stream
        };
        loop {
            match self.proxy.process_new(stream, shutdown).await {
                Some(reused) => stream = reused,
                None => return,
            }
        }
    }

    /// Connects to the destination, answers 200 and pipes bytes both ways while the agent may
    /// keep the tunnel.
    async fn plain(
        &self,
        mut stream: Stream,
        mut facts: Connect,
        authority: &Authority,
        credential: &TunnelCredential,
    ) {
        let settings = facts
            .snapshot
            .as_ref()
            .map(|s| s.server.clone())
            .unwrap_or_default();
        let connected = tokio::time::timeout(
            settings.connect_timeout,
            tokio::net::TcpStream::connect((authority.host.as_str(), authority.port)),
        )
        .await;
        let upstream = match connected {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(e)) => {
                let why = format!("cannot connect to {}: {e}", facts.destination);
                self.refuse(stream, &mut facts, Refusal::UpstreamUnavailable(why))
                    .await;
                return;
            }
            Err(_) => {
                self.refuse(stream, &mut facts, Refusal::UpstreamTimeout)
                    .await;
                return;
            }
        };
        if established(&mut stream).await.is_err() {
            return;
        }
        let agent_id = facts
            .snapshot
            .as_deref()
            .zip(facts.agent)
            .map(|(s, a)| s.agents[a].id.clone())
            .unwrap_or_default();
        let limits = pipe::Limits {
            idle: settings.tunnel_idle_timeout,
            max: settings.tunnel_max_duration,
            recheck: RECHECK,
        };
        let keep = || self.may_keep(&agent_id, credential, &facts.destination);
        let piped = pipe::run(stream, upstream, limits, keep).await;
        self.record(&mut facts, Code::Ok, 200, Some(&piped));
    }

    /// Answers a refused CONNECT (and closes), and records it.
    async fn refuse(&self, mut stream: Stream, facts: &mut Connect, refusal: Refusal) {
        let (status, answer) = refusal.connect_answer();
        let _ = stream.write_all(&answer).await;
        let _ = stream.flush().await;
        self.record(facts, refusal.code(), status.as_u16(), None);
    }

    fn record(&self, facts: &mut Connect, code: Code, status: u16, piped: Option<&pipe::Piped>) {
        let agent = facts
            .snapshot
            .as_deref()
            .zip(facts.agent)
            .map_or("", |(s, a)| s.agents[a].id.as_str());
        self.metrics
            .tunnel(agent, code, piped.map(|p| (p.up, p.down)));
        log::info!(
            target: crate::proxy::ACCESS_LOG_TARGET,
            agent = agent,
            method = "CONNECT",
            destination = facts.destination.as_str(),
            code = code.as_str(),
            status = status,
            bytes_up = piped.map_or(0, |p| p.up),
            bytes_down = piped.map_or(0, |p| p.down),
            latency_ms = facts.started.elapsed().as_secs_f64() * 1000.0;
            "tunnel"
        );
        let span = facts.span.take();
        let trace = span.as_ref().map(RequestSpan::ids);
        if let Some(span) = span {
            end_span(span, facts, code, status, piped);
        }
        if let Some(audit) = &self.audit {
            let decision = Decision {
                arrived: facts.arrived,
                snapshot: facts.snapshot.as_ref(),
                agent: facts.agent,
                credential: facts.credential.clone(),
                method: http::Method::CONNECT,
                path: facts.destination.clone(),
                code,
                status,
                latency_ms: facts.started.elapsed().as_secs_f64() * 1000.0,
            };
            audit.emit(AuditEvent {
                tunnel: Some(crate::audit::event::Tunnel {
                    destination: facts.destination.clone(),
                    bytes_up: piped.map_or(0, |p| p.up),
                    bytes_down: piped.map_or(0, |p| p.down),
                    end: piped.map(|p| p.end.as_str()),
                }),
                trace,
                ..decision.event()
            });
        }
    }
}

/// Ends a CONNECT's span: the destination, the agent, the outcome and the bytes piped.
fn end_span(
    span: RequestSpan,
    facts: &Connect,
    code: Code,
    status: u16,
    piped: Option<&pipe::Piped>,
) {
    if !span.is_recording() {
        return;
    }
    let mut attributes = Vec::with_capacity(12);
    let mut add = |key: &'static str, value: Value| attributes.push(KeyValue::new(key, value));
    add("http.request.method", "CONNECT".into());
    add("http.response.status_code", i64::from(status).into());
    add("warden.destination", facts.destination.clone().into());
    add("warden.code", code.as_str().into());
    let agent = facts.snapshot.as_deref().zip(facts.agent);
    let agent = agent.map(|(s, a)| &s.agents[a]);
    crate::proxy::trace::identity(&mut add, agent, facts.credential.as_ref(), None);
    if let Some(piped) = piped {
        add(
            "warden.tunnel.bytes_up",
            i64::try_from(piped.up).unwrap_or(i64::MAX).into(),
        );
        add(
            "warden.tunnel.bytes_down",
            i64::try_from(piped.down).unwrap_or(i64::MAX).into(),
        );
        add("warden.tunnel.end", piped.end.as_str().into());
    }
    span.end(Ending {
        name: "CONNECT".into(),
        attributes,
        error: (code != Code::Ok).then(|| code.as_str()),
        first_chunk: None,
    });
}

/// `200 Connection Established`: from here on the connection carries the tunnel.
async fn established(stream: &mut Stream) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    stream.flush().await
}
