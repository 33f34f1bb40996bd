//! The bundled demo: an upstream that speaks the REV23 API's status codes for
//! a handful of studios, with scripted incidents, and a traffic generator.
//!
//! `statuswatch demo` runs both next to the real proxy so a newcomer sees
//! real tallies within seconds; `statuswatch demo-upstream` runs the upstream
//! alone, as a controllable backend for tests (`GET /status/{code}` answers
//! that code, `?delay_ms=N` delays it); `statuswatch demo-traffic` runs the
//! generator alone against a proxy given by address (the compose demo).
//!
//! The incident script is the upstream's, timed from its start, so the
//! generator only sends the request mix. It repeats every 3 minutes:
//! `inkhouse` has a 5xx burst
//! from 0:30 to 1:15, `shadyink` is suspended (451) from 1:00 to 2:30, and
//! `blackcat` is always past due (402). One API answer in [`SLOW_ONE_IN`]
//! takes [`SLOW_DELAY`], a slow tail above the default latency objective
//! (500 ms), so the per-tenant latency panels have something to show.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::state::Shared;
use crate::status::{self, Origin, CELLS};

mod traffic;
pub use traffic::{BadTarget, Target, Traffic, CONNECTIONS, RPS};

/// Studios of the demo and their share of traffic (weights).
pub const STUDIOS: [(&str, u32); 7] = [
    ("inkhouse", 20),
    ("rosegarden", 18),
    ("ironneedle", 15),
    ("linework", 12),
    ("bluelotus", 10),
    ("blackcat", 8),
    ("shadyink", 7),
];

/// Length of the incident script.
pub const CYCLE: Duration = Duration::from_secs(180);

/// One API answer (not `/status/{code}`, whose timing tests control) in
/// this many is slow...
pub const SLOW_ONE_IN: u32 = 100;
/// ...by this much.
pub const SLOW_DELAY: Duration = Duration::from_millis(700);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    (SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos) | 1
}

/// A cheap xorshift64* draw in 0..n (demo traffic only; not for anything secret).
pub fn rand_below(n: u32) -> u32 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n.max(1) as u64) as u32
    })
}

/// What the demo API answers, given the script's clock.
pub fn rev23_status(
    tenant: Option<&str>,
    method: &http::Method,
    has_key: bool,
    t: Duration,
) -> u16 {
    let phase = t.as_secs() % CYCLE.as_secs();
    let roll = rand_below(1000);
    if !has_key {
        return 401;
    }
    if roll < 5 {
        return 429; // rate limited: undocumented in the catalog
    }
    match tenant {
        Some("shadyink") if (60..150).contains(&phase) => return 451,
        Some("blackcat") if roll < 700 => return 402,
        Some("inkhouse") if (30..75).contains(&phase) => {
            if roll < 400 {
                return 500;
            }
            if roll < 600 {
                return 503;
            }
        }
        _ => {}
    }
    if roll >= 995 {
        return 500; // the rare background error
    }
    if *method == http::Method::POST {
        match roll {
            r if r < 80 => 400,
            r if r < 130 => 409,
            _ => 201,
        }
    } else {
        match roll {
            r if r < 50 => 404,
            r if r < 60 => 403,
            r if r < 70 => 400,
            _ => 200,
        }
    }
}

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

/// The demo upstream.
#[derive(Debug)]
pub struct DemoUpstream {
    start: Instant,
}

impl Default for DemoUpstream {
    fn default() -> Self {
        DemoUpstream {
            start: Instant::now(),
        }
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[async_trait]
impl ServeHttp for DemoUpstream {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Drain any request body so the connection can be reused.
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
        }
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let tenant = req
            .headers
            .get("x-tenant-name")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let code = if let Some(code) = path.strip_prefix("/status/") {
            code.parse::<u16>()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .unwrap_or(400)
        } else {
            if rand_below(SLOW_ONE_IN) == 0 {
                tokio::time::sleep(SLOW_DELAY).await;
            }
            rev23_status(
                tenant.as_deref(),
                &req.method,
                req.headers.contains_key("x-api-key"),
                self.start.elapsed(),
            )
        };
        if let Some(ms) =
            query_param(query.as_deref(), "delay_ms").and_then(|v| v.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
        }
        let body = format!(
            "{{\"status\":{code},\"reason\":\"{}\",\"tenant\":\"{}\",\"path\":{:?},\"received_bytes\":{body_len}}}\n",
            reason(code),
            tenant.as_deref().unwrap_or(""),
            path
        )
        .into_bytes();
        Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Prints a one-line summary of the tallies every few seconds.
pub struct Summary {
    pub shared: &'static Shared,
    pub every: Duration,
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Totals by documented code (and "undocumented") across tenants and origins.
pub fn totals(shared: &Shared) -> Vec<(String, u64)> {
    let live = shared.live.load();
    let mut by_cell = [0u64; CELLS];
    shared.registry.for_each(|_, _, slot| {
        for (cell, n) in by_cell.iter_mut().enumerate() {
            *n +=
                slot.counters.get(Origin::Upstream, cell) + slot.counters.get(Origin::Proxy, cell);
        }
    });
    let mut out: Vec<(String, u64)> = live
        .catalog
        .entries()
        .iter()
        .map(|e| (e.code.to_string(), by_cell[status::cell_of(e.code)]))
        .collect();
    let undocumented: u64 = (0..CELLS)
        .filter(|c| live.catalog.documented(*c).is_none())
        .map(|c| by_cell[c])
        .sum();
    out.push(("undocumented".into(), undocumented));
    out
}

#[async_trait]
impl BackgroundService for Summary {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let line: Vec<String> = totals(self.shared)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let snap = self.shared.detector.load();
            let spiking: Vec<String> = snap
                .signals
                .iter()
                .flat_map(|s| {
                    let overall = s.overall.active.then(|| format!("{}:__all__", s.name));
                    overall
                        .into_iter()
                        .chain(s.active.iter().map(move |(t, _)| format!("{}:{t}", s.name)))
                })
                .collect();
            println!(
                "tallies {} | spiking [{}] | tenants {}",
                line.join(" "),
                spiking.join(", "),
                self.shared.registry.tracked()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_produces_the_advertised_codes() {
        let get = http::Method::GET;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..20_000u64 {
            let t = Duration::from_secs(i % 180);
            let studio = STUDIOS[(i % 7) as usize].0;
            seen.insert(rev23_status(Some(studio), &get, i % 97 != 0, t));
            seen.insert(rev23_status(Some(studio), &http::Method::POST, true, t));
        }
        for code in [200, 201, 400, 401, 402, 403, 404, 409, 451, 500, 503, 429] {
            assert!(seen.contains(&code), "demo never answers {code}");
        }
    }

    #[test]
    fn suspension_and_burst_follow_the_script() {
        let get = http::Method::GET;
        let suspended = (0..1000)
            .filter(|_| rev23_status(Some("shadyink"), &get, true, Duration::from_secs(100)) == 451)
            .count();
        assert!(suspended > 950, "{suspended}");
        let calm = (0..1000)
            .filter(|_| rev23_status(Some("inkhouse"), &get, true, Duration::from_secs(10)) >= 500)
            .count();
        let burst = (0..1000)
            .filter(|_| rev23_status(Some("inkhouse"), &get, true, Duration::from_secs(40)) >= 500)
            .count();
        assert!(burst > 400 && calm < 50, "burst {burst} calm {calm}");
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&delay_ms=20"), "delay_ms"), Some("20"));
        assert_eq!(query_param(None, "delay_ms"), None);
    }
}
