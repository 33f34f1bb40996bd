//! `/metrics` render time at 1,000 and 10,000 tenants (issue 14).
//!
//! The state is built the way the proxy builds it: the real `Shared`/`Live`
//! from the default config, tenants registered through the registry's
//! lookup, every response counted through the real [`Shared::record`] and
//! the detector ticked over the result and published, so the exposition has
//! every family a production scrape has: several documented codes per
//! tenant, undocumented ones, both origins, the per-tenant latency
//! histogram, suspensions and per-tenant spike counters.
//!
//! * `scrape/render_{N}_tenants`: [`metrics::body`], the function the admin
//!   listener calls for a `/metrics` body, sized from the previous scrape as
//!   admin does;
//! * `scrape/render_reused_{N}_tenants`: [`metrics::render`] into one reused
//!   buffer (the render alone, no allocation of the body).
//!
//! Run with `cargo bench --bench scrape`; bytes and series per scrape are
//! printed before the measurements. `SCRAPE_DUMP=DIR` also writes each body
//! to `DIR/scrape-{N}.txt`, to compare the text of two builds.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use statuswatch::config::Config;
use statuswatch::detect::{Detector, Timing};
use statuswatch::metrics;
use statuswatch::record::Finished;
use statuswatch::state::{Live, Shared};
use statuswatch::status::Origin;
use statuswatch::tally::UpstreamErrorKind;
use statuswatch::tenant::SlotRef;

/// Code → weight (percent), bench/traffic.lua's mixed workload: documented
/// codes, 429 (undocumented in the default catalog) and 451 (a suspension).
const MIXED: [(u16, u32); 12] = [
    (200, 70),
    (201, 8),
    (404, 6),
    (400, 3),
    (401, 3),
    (403, 2),
    (409, 2),
    (429, 2),
    (402, 1),
    (451, 1),
    (500, 1),
    (503, 1),
];

/// Deterministic xorshift, so every run renders the same state.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mixed_code(rng: &mut Rng) -> u16 {
    let mut u = rng.below(100) as u32;
    for (code, w) in MIXED {
        if u < w {
            return code;
        }
        u -= w;
    }
    200
}

/// `tenants` tenants named like bench/run.sh's (`t1`..), each with traffic:
/// tenant `i` gets about 400/i + 20 requests (a Zipf-like head and a long
/// tail), codes drawn from [`MIXED`], ~2 % answered by the proxy (502/504,
/// with an upstream error kind), latencies from 0.3 ms to ~3 s.
fn filled(tenants: usize) -> Arc<Shared> {
    let mut cfg = Config::defaults().expect("default config");
    cfg.tenant.max_tenants = tenants;
    let shared = Shared::new(Live::build(cfg).expect("valid config"));
    let mut det = {
        let live = shared.live.load();
        Detector::new(Timing::from_config(&live.config), live.signals.clone())
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let live = shared.live.load_full();
    // Three ticks: the detector sizes its state on the first and then sees
    // deltas, as it does in a running proxy.
    for _ in 0..3 {
        for i in 1..=tenants {
            let name = format!("t{i}");
            let tenant = shared.registry.lookup(&live.resolver, name.as_bytes(), 0);
            for _ in 0..(400 / i + 20) / 3 {
                let (code, origin, error_kind) = if rng.below(50) == 0 {
                    let kind = if rng.below(2) == 0 {
                        UpstreamErrorKind::ConnectRefused
                    } else {
                        UpstreamErrorKind::ReadTimeout
                    };
                    (502 + 2 * rng.below(2) as u16, Origin::Proxy, Some(kind))
                } else {
                    (mixed_code(&mut rng), Origin::Upstream, None)
                };
                // Log-uniform-ish: most requests fast, a tail up to seconds.
                let micros = 300 << rng.below(14);
                let finished = Finished {
                    tenant,
                    code,
                    origin,
                    elapsed: Duration::from_micros(micros + rng.below(micros)),
                    error_kind,
                    request: None,
                };
                shared.record(&live, &finished, 0);
            }
        }
        // Requests without a tenant header land on a reserved slot.
        for _ in 0..100 {
            let finished = Finished {
                tenant: SlotRef::NONE,
                code: 200,
                origin: Origin::Upstream,
                elapsed: Duration::from_millis(2),
                error_kind: None,
                request: None,
            };
            shared.record(&live, &finished, 0);
        }
        shared.detector.store(Arc::new(det.step(&shared.registry)));
    }
    shared
}

fn bench_scrape(c: &mut Criterion) {
    let mut g = c.benchmark_group("scrape");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(8));
    for tenants in [1_000usize, 10_000] {
        let shared = filled(tenants);
        let body = metrics::body(&shared, 0);
        let text = String::from_utf8_lossy(&body);
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        println!(
            "scrape: {tenants} tenants: {} bytes, {series} series per scrape",
            body.len()
        );
        if let Some(dir) = std::env::var_os("SCRAPE_DUMP") {
            let path = std::path::Path::new(&dir).join(format!("scrape-{tenants}.txt"));
            std::fs::write(&path, &body).expect("write SCRAPE_DUMP");
        }
        g.bench_function(format!("render_{tenants}_tenants"), |b| {
            let mut hint = body.len();
            b.iter(|| {
                let body = metrics::body(&shared, hint);
                hint = body.len();
                black_box(body)
            })
        });
        let mut out = String::new();
        g.bench_function(format!("render_reused_{tenants}_tenants"), |b| {
            b.iter(|| {
                metrics::render(&shared, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_scrape);
criterion_main!(benches);
