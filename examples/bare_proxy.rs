//! A bare pingora reverse proxy: the baseline statuswatch is compared against
//! in `bench/run.sh`. It forwards every request to one upstream with the same
//! server settings statuswatch uses (worker threads, work stealing, upstream
//! keep-alive pool, peer timeouts, mimalloc as the global allocator) but keeps
//! no tallies, so the difference between the two is the cost of tallying.
//!
//! ```text
//! cargo build --release --example bare_proxy
//! target/release/examples/bare_proxy --listen 127.0.0.1:8081 --upstream 127.0.0.1:3000 --threads 1
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "bare_proxy", about = "Bare pingora proxy (benchmark baseline)")]
struct Args {
    /// Where clients connect.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The upstream (host:port, plain HTTP).
    #[arg(long, default_value = "127.0.0.1:3000")]
    upstream: SocketAddr,
    /// Worker threads (statuswatch's `proxy.threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Idle upstream connections kept (statuswatch's `proxy.keepalive_pool_size`).
    #[arg(long, default_value_t = 128)]
    keepalive_pool_size: usize,
}

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Same peer options as statuswatch's defaults.
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(2));
        peer.options.total_connection_timeout = Some(Duration::from_secs(2));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        peer.options.write_timeout = Some(Duration::from_secs(30));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: true,
        upstream_keepalive_pool_size: args.keepalive_pool_size,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: format!("/tmp/bare-proxy-upgrade-{}.sock", args.listen.port()),
        pid_file: format!("/tmp/bare-proxy-{}.pid", args.listen.port()),
        max_retries: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
