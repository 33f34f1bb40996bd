//! The floor for forwarding on pingora-core: a minimal HTTP/1 loop on its
//! session and connector APIs, with no pingora-proxy and no statuswatch.
//! It is the measurement behind statuswatch's direct path (`src/forward.rs`):
//! the gap between `bare_proxy` and this is what pingora-proxy's generic
//! machinery costs per request, and the gap between this and statuswatch is
//! what our own work (tenant, tally, forwarded headers, fallback copy) costs.
//!
//! A benchmark peer, not a proxy to deploy: no error pages, no retries, no
//! upgrades, no h2. `bash bench/profile.sh lean statuswatch bare` profiles it
//! beside the others in one run.
//!
//! ```text
//! cargo build --release --example lean_proxy
//! target/release/examples/lean_proxy --listen 127.0.0.1:8082 --upstream 127.0.0.1:3000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::prelude::*;
use pingora::protocols::http::v1::server::HttpSession as ServerSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lean_proxy",
    about = "Lean HTTP/1 forwarder on pingora-core (benchmark peer)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:3000")]
    upstream: SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Lean {
    connector: Connector,
    peer: HttpPeer,
}

impl Lean {
    /// One request: header and body up, response header and body down.
    async fn forward(&self, down: &mut ServerSession) -> Result<()> {
        let (mut up, _) = self.connector.get_http_session(&self.peer).await?;
        up.write_request_header(Box::new(down.req_header().clone()))
            .await?;
        while let Some(chunk) = down.read_body_bytes().await? {
            up.write_body(&chunk).await?;
        }
        up.finish_body().await?;
        up.read_response().await?;
        let resp = match up.resp_header() {
            Some(r) => r.clone(),
            None => return Error::e_explain(InvalidHTTPHeader, "no response header"),
        };
        down.write_response_header(Box::new(resp)).await?;
        while let Some(chunk) = up.read_body_ref().await? {
            if !chunk.is_empty() {
                down.write_body(chunk).await?;
            }
        }
        down.finish_body().await?;
        self.connector
            .release_http_session(up, &self.peer, Some(Duration::from_secs(60)))
            .await;
        Ok(())
    }
}

#[async_trait]
impl ServerApp for Lean {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut stream = stream;
        let mut prefix = None;
        loop {
            let mut down = ServerSession::new(stream);
            down.set_pipelining_enabled(true);
            if let Some(p) = prefix.take() {
                down.set_pipelined_prefix(p);
            }
            match down.read_request().await {
                Ok(Some(_)) => {}
                _ => return None,
            }
            if self.forward(&mut down).await.is_err() {
                return None;
            }
            match down.reuse().await {
                Ok(Some(r)) => {
                    let (s, p) = r.into_parts();
                    stream = s;
                    prefix = p;
                }
                _ => return None,
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: true,
        upstream_keepalive_pool_size: 128,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: format!("/tmp/lean-proxy-upgrade-{}.sock", args.listen.port()),
        pid_file: format!("/tmp/lean-proxy-{}.pid", args.listen.port()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(args.upstream, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(2));
    peer.options.read_timeout = Some(Duration::from_secs(30));
    peer.options.write_timeout = Some(Duration::from_secs(30));
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    let app = Lean {
        connector: Connector::new(None),
        peer,
    };
    let mut svc = Service::new("lean".to_string(), app);
    svc.add_tcp(&args.listen.to_string());
    server.add_service(svc);
    server.run_forever();
}
