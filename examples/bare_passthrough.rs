//! Bare Pingora passthrough: the floor any Pingora proxy can reach, for `benches/load.sh`.
//!
//! Built from the same Pingora version and features as Warden, one worker thread like Warden,
//! forwarding every request unchanged to one HTTP upstream. Whatever Warden costs above this is
//! Warden's own work.
//!
//! Usage: `bare_passthrough LISTEN_ADDR UPSTREAM_ADDR` (e.g. `127.0.0.1:7000 127.0.0.1:8080`).

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(Ok(upstream))) = (args.get(1), args.get(2).map(|a| a.parse())) else {
        eprintln!("usage: bare_passthrough LISTEN_ADDR UPSTREAM_ADDR");
        return ExitCode::from(2);
    };
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
