//! Micro-benchmarks of statuswatch's own per-request and background work.
//!
//! * `hot_path/*`: what the proxy does per request besides forwarding it:
//!   in-flight start, tenant resolution of a known tenant from a pingora
//!   `RequestHeader` (`X-Tenant-Name`), then the proxy's own `Shared::record`
//!   (tally, per-tenant latency, histogram, suspension flag) and in-flight
//!   finish. Single-threaded, and with two threads (each pinned to a CPU of
//!   its own) hammering the same tenant or two different tenants;
//!   `two_threads_separate_state` is the control (two threads sharing
//!   nothing); `tenant_latency_observe` is the per-tenant latency
//!   observation alone. `bench/run.sh` adds a second control: the
//!   single-thread case while another process runs it on the other CPU.
//! * `metrics_render/*`: `/metrics` rendering with 2k, 10k and 20k tenants
//!   (each with five response series and its latency histogram).
//! * `detector_step/*`: one detector tick with 10k tenants.
//! * `route/*`: the single-thread request above with `[route_tally]` off,
//!   on with 30 templates the path matches, and on without templates (the
//!   path normalized and looked up); `bench/routes.sh` prints the
//!   differences against the proxy's CPU per request.
//!
//! Run with `cargo bench --bench hot_path` (release profile). Targets are
//! listed in bench/RESULTS.md.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pingora::http::RequestHeader;

use statuswatch::config::Config;
use statuswatch::detect::{Detector, Timing};
use statuswatch::metrics;
use statuswatch::record::{Asked, Finished};
use statuswatch::state::{Live, Shared};
use statuswatch::status::{self, Origin};

fn shared_with(max_tenants: usize) -> Arc<Shared> {
    let mut cfg = Config::defaults().expect("default config");
    cfg.tenant.max_tenants = max_tenants;
    Shared::new(Live::build(cfg).expect("valid config"))
}

fn request(tenant: &str) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/api/v2/customers", None).expect("request");
    r.insert_header("Host", "api.example").expect("host");
    r.insert_header("Accept", "application/json")
        .expect("accept");
    r.insert_header("X-Tenant-Name", tenant.to_string())
        .expect("tenant header");
    r.insert_header("X-Api-Key", "k-0123456789abcdef")
        .expect("api key");
    r
}

/// The statuswatch work of one request, as `proxy.rs` does it (`new_ctx`,
/// `request_filter`, `logging` through the real [`Shared::record`], `Drop
/// for Ctx`) minus the clock reads: `at` stands for the request's end.
#[inline]
fn one_request(shared: &Shared, req: &RequestHeader, code: u16, at: Instant) {
    let global = &shared.global;
    let registry = &shared.registry;
    global.request_started();
    let now = registry.now_secs(at);
    // request_filter
    let tenant = shared.with_live(|live| registry.resolve(&live.resolver, req, now));
    // logging
    shared.with_live(|live| {
        let tenant = if registry.is_current(tenant) {
            tenant
        } else {
            registry.resolve(&live.resolver, req, now)
        };
        let finished = Finished {
            tenant,
            code,
            origin: Origin::Upstream,
            elapsed: Duration::from_micros(350),
            error_kind: None,
            request: Some(Asked {
                method: &req.method,
                path: req.uri.path(),
                headers: &req.headers,
            }),
        };
        shared.record(live, &finished, now);
    });
    // Drop for Ctx
    global.request_finished();
}

fn warm(shared: &Shared, names: &[&str], at: Instant) {
    for n in names {
        one_request(shared, &request(n), 200, at);
    }
}

fn bench_hot_path(c: &mut Criterion) {
    let shared = shared_with(10_000);
    let at = Instant::now();
    // Fill the registry so the lookup runs against a realistic map.
    for i in 0..10_000 - 2 {
        one_request(&shared, &request(&format!("tenant-{i}")), 200, at);
    }
    warm(&shared, &["acme", "globex"], at);
    let acme = request("acme");
    let globex = request("globex");

    let mut g = c.benchmark_group("hot_path");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("single_thread", |b| {
        b.iter(|| one_request(&shared, black_box(&acme), black_box(200), at))
    });
    g.bench_function("single_thread_with_clock", |b| {
        // The proxy also reads the clock twice per request (start, end).
        b.iter(|| {
            let t0 = Instant::now();
            one_request(&shared, black_box(&acme), black_box(200), at);
            black_box(t0.elapsed());
        })
    });
    let live = shared.live.load();
    let acme_slot = shared.registry.lookup(&live.resolver, b"acme", 1);
    drop(live);
    g.bench_function("tenant_latency_observe", |b| {
        let counters = &shared.registry.slot(acme_slot).counters;
        b.iter(|| counters.observe(black_box(Duration::from_micros(350)), 500_000_000))
    });
    // The control: each thread with a process state of its own, so the two
    // share no memory at all. What two threads cost beyond one here is the
    // machine's (two vCPUs competing for one host core's resources), not
    // statuswatch's; the pair above should match it.
    let other = shared_with(10_000);
    for i in 0..10_000 - 2 {
        one_request(&other, &request(&format!("tenant-{i}")), 200, at);
    }
    warm(&other, &["globex"], at);
    let (a, b): (&Shared, &Shared) = (&shared, &other);
    for (name, reqs) in [
        ("two_threads_same_tenant", [(a, &acme), (a, &acme)]),
        ("two_threads_different_tenants", [(a, &acme), (a, &globex)]),
        ("two_threads_separate_state", [(a, &acme), (b, &globex)]),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Per-operation latency while the other thread runs the same
                // loop at the same time: max of both threads' wall time / iters.
                let barrier = Barrier::new(2);
                std::thread::scope(|s| {
                    let hs: Vec<_> = reqs
                        .iter()
                        .enumerate()
                        .map(|(cpu, &(shared, req))| {
                            let barrier = &barrier;
                            s.spawn(move || {
                                pin_to_cpu(cpu);
                                barrier.wait();
                                let t0 = Instant::now();
                                for _ in 0..iters {
                                    one_request(shared, black_box(req), black_box(200), at);
                                }
                                t0.elapsed()
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().expect("bench thread"))
                        .max()
                        .unwrap_or_default()
                })
            })
        });
    }
    g.finish();
}

/// Keep this thread on one CPU (the i-th this process may use), so the two
/// threads of a pair run on two CPUs for the whole measurement instead of
/// wherever the scheduler puts them (both on one, at times), as the proxy's
/// workers and the bench's load generator are pinned. A no-op with one CPU.
fn pin_to_cpu(i: usize) {
    // SAFETY: plain libc calls on a zeroed, stack-owned cpu_set_t.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.len() < 2 {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[i % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// Codes each populated tenant has (upstream), plus one proxy-generated 502:
/// five series per tenant.
const CODES: [u16; 4] = [200, 201, 404, 500];

fn populated(tenants: usize) -> (Arc<Shared>, usize) {
    let shared = shared_with(tenants + 10);
    let live = shared.live.load();
    for i in 0..tenants {
        let r = shared
            .registry
            .lookup(&live.resolver, format!("tenant-{i:06}").as_bytes(), 0);
        let slot = shared.registry.slot(r);
        for (k, code) in CODES.iter().enumerate() {
            for _ in 0..=k {
                slot.counters.add(Origin::Upstream, status::cell_of(*code));
            }
        }
        slot.counters.add(Origin::Proxy, status::cell_of(502));
        slot.counters
            .observe(Duration::from_millis(1 + (i % 300) as u64), 500_000_000);
    }
    drop(live);
    let mut out = String::new();
    metrics::render(&shared, &mut out);
    let series = out
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    (shared, series)
}

/// `[route_tally]` off, matched (30 REV23-like templates) and unmatched.
fn bench_routes(c: &mut Criterion) {
    use statuswatch::config::RouteTemplate;
    let at = Instant::now();
    let mut g = c.benchmark_group("route");
    g.measurement_time(Duration::from_secs(4));
    for name in ["off", "matched", "unmatched"] {
        let mut cfg = Config::defaults().expect("default config");
        cfg.route_tally.enabled = name != "off";
        if name == "matched" {
            for res in [
                "customers",
                "appointments",
                "payments",
                "webhooks",
                "invoices",
                "services",
            ] {
                for (m, p) in [
                    ("GET", format!("/api/v2/{res}")),
                    ("POST", format!("/api/v2/{res}")),
                    ("GET", format!("/api/v2/{res}/{{id}}")),
                    ("PUT", format!("/api/v2/{res}/{{id}}")),
                    ("", format!("/api/v2/{res}/{{id}}/notes/{{note}}")),
                ] {
                    cfg.route_tally.routes.push(RouteTemplate {
                        method: m.into(),
                        path: p,
                    });
                }
            }
        }
        let shared = Shared::new(Live::build(cfg).expect("valid config"));
        let mut req = request("acme");
        req.set_uri(http::Uri::from_static("/api/v2/payments/48151623?page=2"));
        warm(&shared, &["acme"], at);
        one_request(&shared, &req, 200, at);
        g.bench_function(name, |b| {
            b.iter(|| one_request(&shared, black_box(&req), black_box(200), at))
        });
    }
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_render");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for tenants in [2_000usize, 10_000, 20_000] {
        let (shared, series) = populated(tenants);
        let name = format!("{tenants}_tenants_{series}_series");
        let mut out = String::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                metrics::render(&shared, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_detector(c: &mut Criterion) {
    let tenants = 10_000;
    let (shared, _) = populated(tenants);
    let live = shared.live.load_full();
    let mut det = Detector::new(Timing::from_config(&live.config), live.signals.clone());
    // The first step sizes the per-tenant state; measure steady-state ticks.
    det.step(&shared.registry);
    let mut round = 0u64;
    let mut g = c.benchmark_group("detector_step");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(format!("{tenants}_tenants"), |b| {
        b.iter_batched(
            || {
                // Some traffic between ticks, as in production.
                round += 1;
                shared.registry.for_each(|_, _, slot| {
                    slot.counters.add(Origin::Upstream, status::cell_of(200));
                    if round.is_multiple_of(7) {
                        slot.counters.add(Origin::Upstream, status::cell_of(503));
                    }
                });
            },
            |()| black_box(det.step(&shared.registry)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_hot_path,
    bench_routes,
    bench_render,
    bench_detector
);
criterion_main!(benches);
