//! What a config costs in series, before it is paid.
//!
//! Every series a sidecar exports is multiplied by the pods, and each costs
//! Prometheus memory (about 2 KiB in the head) and, on hosted backends,
//! money against a per-tenant limit. `statuswatch check` prints this
//! estimate for the config at `tenant.max_tenants`, so the price of
//! `max_tenants`, the catalog, the signals and `tenant.latency` is seen
//! before a fleet pays it; `statuswatch_series` reports the live count.
//!
//! Two numbers per family:
//!
//! `statuswatch_route_responses_total` (with `route_tally.enabled`) has no
//! tenant label: at worst every template, `route_tally.max_routes`
//! normalized paths and `__other__`, each in 6 classes from 2 origins;
//! expected, [`EXPECTED_ROUTE_SERIES`] series for each template and for
//! [`EXPECTED_UNMATCHED_ROUTES`] unmatched paths. (A reload that brings
//! new templates adds their labels; the old ones stay until a restart.)
//!
//! * **worst case**: a bound no scrape can exceed. Every slot in use
//!   (`max_tenants` plus the three reserved tenants), each having received
//!   every documented code and every undocumented class from both origins,
//!   each with a slow response, spiking on every signal and suspended; every
//!   undocumented code in 100..=599 seen.
//! * **expected**: a steady busy pod. Every slot in use by a tenant with
//!   traffic, none spiking or suspended, reserved tenants not counted; per
//!   tenant [`EXPECTED_RESPONSE_SERIES`] series of
//!   `statuswatch_responses_total` and the latency mode's series (for
//!   `"slow"` counted for every tenant, so an upper bound: a tenant without a
//!   slow response has none); families without a tenant label at their full
//!   count, except the duration histogram at [`EXPECTED_DURATION_PAIRS`]
//!   class/origin pairs and [`EXPECTED_UNDOCUMENTED_CODES`] undocumented codes.
//!
//! The model is checked against the exposition itself (tests below): a
//! state filled to the worst case renders exactly the bound for every family
//! it saturates, and a state filled as the model assumes renders exactly the
//! expected count, in every latency mode.

use std::fmt;

use super::names;
use crate::config::LatencyMode;
use crate::state::Live;
use crate::status::{self, CLASS_LABELS};
use crate::tally::{UpstreamErrorKind, DURATION_BUCKETS};
use crate::tenant;

/// Expected `statuswatch_responses_total` series per tenant: its codes and
/// origins seen within `tenant.idle_ttl`. 3 = mostly 2xx plus two other
/// codes; 10,000 tenants of ~8 REV23-like requests each measured 3.06
/// (`bench/series.py`; 2.7 in issue 24's fill), and a busy tenant over a
/// whole hour can reach 5–10 (docs/scaling.md).
pub const EXPECTED_RESPONSE_SERIES: u64 = 3;
/// Expected class/origin pairs of `statuswatch_request_duration_seconds`:
/// 2xx, 4xx and 5xx from the upstream, 5xx from the proxy.
pub const EXPECTED_DURATION_PAIRS: u64 = 4;
/// Expected distinct undocumented codes (e.g. 429, 499, 502).
pub const EXPECTED_UNDOCUMENTED_CODES: u64 = 3;
/// Expected `statuswatch_route_responses_total` series per route label
/// (2xx and 4xx from the upstream, and one 5xx).
pub const EXPECTED_ROUTE_SERIES: u64 = 3;
/// Expected labels of paths no template matches (endpoints not listed, or
/// an API's few dozen endpoints without templates), at most
/// `route_tally.max_routes`.
pub const EXPECTED_UNMATCHED_ROUTES: u64 = 20;
/// Prometheus head memory per series, for the printed estimate: about
/// 2 GiB per million active series.
pub const BYTES_PER_SERIES: u64 = 2 * 1024;

/// Tenants with a slot of their own beside the tracked ones:
/// `__none__`, `__invalid__`, `__overflow__`.
const RESERVED_TENANTS: u64 = [tenant::NONE, tenant::INVALID, tenant::OVERFLOW].len() as u64;

/// One family's (or group of families') share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub family: &'static str,
    pub worst: u64,
    pub expected: u64,
}

/// The series estimate of one config at a number of tenants.
#[derive(Debug, Clone)]
pub struct Budget {
    pub tenants: u64,
    pub latency: LatencyMode,
    pub rows: Vec<Row>,
}

/// Label of the row that sums the families without a tenant label.
pub const OTHER_FAMILIES: &str = "families without a tenant label";

impl Budget {
    /// The estimate at `tenant.max_tenants`.
    pub fn of(live: &Live) -> Budget {
        Budget::at(live, live.config.tenant.max_tenants as u64)
    }

    /// The estimate at `tenants` tracked tenants.
    pub fn at(live: &Live, tenants: u64) -> Budget {
        let t = tenants;
        let slots = t + RESERVED_TENANTS;
        let documented = live.config.catalog.codes.len() as u64;
        let signals = live.signals.len() as u64;
        // Per origin: each documented code, and "undocumented" per class
        // (1xx..5xx and "other", the out-of-range codes).
        let undocumented_classes = status::OUT_OF_RANGE_CLASS as u64 + 1;
        let cells = 2 * (documented + undocumented_classes);
        let per_tenant_latency = live.latency.series_per_tenant();

        let mut rows = vec![Row {
            family: names::RESPONSES_TOTAL,
            worst: slots * cells,
            expected: t * EXPECTED_RESPONSE_SERIES.min(cells),
        }];
        match live.latency {
            LatencyMode::Off => {}
            LatencyMode::Slow => rows.push(Row {
                family: names::TENANT_SLOW_REQUESTS_TOTAL,
                worst: slots * per_tenant_latency,
                expected: t * per_tenant_latency,
            }),
            LatencyMode::Summary | LatencyMode::Histogram => rows.push(Row {
                family: names::TENANT_REQUEST_DURATION_SECONDS,
                worst: slots * per_tenant_latency,
                expected: t * per_tenant_latency,
            }),
        }
        // `__all__` always, each tenant while spiking (onsets: from its first).
        rows.push(Row {
            family: names::SPIKE_ACTIVE,
            worst: signals * (slots + 1),
            expected: signals,
        });
        rows.push(Row {
            family: names::SIGNAL_RATIO,
            worst: 2 * signals * (slots + 1),
            expected: 2 * signals,
        });
        rows.push(Row {
            family: names::SPIKES_TOTAL,
            worst: signals * (slots + 1),
            expected: signals,
        });
        rows.push(Row {
            family: names::TENANT_SUSPENDED,
            worst: t,
            expected: 0,
        });

        // Routes: no tenant label; each label at most 6 classes x 2 origins.
        let rt = &live.config.route_tally;
        if rt.enabled {
            let per_route = (crate::route::CLASSES * 2) as u64;
            let templates = rt.routes.len() as u64;
            let normalized = rt.max_routes as u64;
            rows.push(Row {
                family: names::ROUTE_RESPONSES_TOTAL,
                worst: (templates + normalized + 1) * per_route,
                expected: (templates + EXPECTED_UNMATCHED_ROUTES.min(normalized))
                    * EXPECTED_ROUTE_SERIES,
            });
        }

        // Families without a tenant label: bounded whatever the traffic.
        let codes_in_range = (status::MAX_CODE - status::MIN_CODE + 1) as u64;
        let documented_in_range = live
            .config
            .catalog
            .codes
            .iter()
            .filter(|e| status::in_range(e.code))
            .count() as u64;
        let undocumented_worst = codes_in_range - documented_in_range + 1;
        let per_pair = DURATION_BUCKETS.len() as u64 + 3; // + "+Inf", _sum, _count
        let pairs = CLASS_LABELS.len() as u64 * 2;
        let fixed = UpstreamErrorKind::ALL.len() as u64 // upstream errors
            + 4 // in flight, tenants tracked and limit, overflow
            + 1 // suspensions
            + documented // status_code_info
            + 1 // build_info
            + 2 // config reloads by result
            + 4 * 2 // connection families by listener
            + 1 // statuswatch_series
            + u64::from(live.latency == LatencyMode::Slow) // the objective
            + super::process::process_series() as u64;
        rows.push(Row {
            family: OTHER_FAMILIES,
            worst: fixed + undocumented_worst + pairs * per_pair,
            expected: fixed
                + EXPECTED_UNDOCUMENTED_CODES.min(undocumented_worst)
                + EXPECTED_DURATION_PAIRS.min(pairs) * per_pair,
        });
        Budget {
            tenants,
            latency: live.latency,
            rows,
        }
    }

    pub fn worst(&self) -> u64 {
        self.rows.iter().map(|r| r.worst).sum()
    }

    pub fn expected(&self) -> u64 {
        self.rows.iter().map(|r| r.expected).sum()
    }
}

/// `12345678` as `12,345,678`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Memory at [`BYTES_PER_SERIES`], in MiB (GiB from 1 GiB on).
fn memory(series: u64) -> String {
    let mib = series * BYTES_PER_SERIES / (1024 * 1024);
    if mib >= 1024 {
        format!("{:.1} GiB", mib as f64 / 1024.0)
    } else {
        format!("{mib} MiB")
    }
}

impl fmt::Display for Budget {
    /// The table `statuswatch check` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "series per pod at {} tenants (tenant.max_tenants), tenant.latency = {:?}:",
            thousands(self.tenants),
            self.latency.name()
        )?;
        writeln!(
            f,
            "  {:<46} {:>12} {:>12}",
            "family", "worst case", "expected"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<46} {:>12} {:>12}",
                r.family,
                thousands(r.worst),
                thousands(r.expected)
            )?;
        }
        let (worst, expected) = (self.worst(), self.expected());
        writeln!(
            f,
            "  {:<46} {:>12} {:>12}",
            "total per pod",
            thousands(worst),
            thousands(expected)
        )?;
        writeln!(
            f,
            "  {:<46} {:>12} {:>12}",
            "Prometheus memory per pod (~2 KiB a series)",
            memory(worst),
            memory(expected)
        )?;
        writeln!(
            f,
            "  {:<46} {:>12} {:>12}",
            "per 10 pods",
            memory(10 * worst),
            memory(10 * expected)
        )?;
        write!(
            f,
            "  expected: every slot in use, {EXPECTED_RESPONSE_SERIES} response series and the latency series per tenant, \
             nothing spiking or suspended (docs/scaling.md); /metrics reports the live count as {}",
            names::SERIES
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::detect::{Detector, Timing};
    use crate::metrics::{count_series, render};
    use crate::record::Finished;
    use crate::state::Shared;
    use crate::status::Origin;
    use crate::tenant::SlotRef;

    fn shared(mode: &str, max_tenants: usize) -> std::sync::Arc<Shared> {
        let mut cfg = Config::defaults().unwrap();
        cfg.tenant.latency = mode.into();
        cfg.tenant.max_tenants = max_tenants;
        // Priced on its own (below).
        cfg.route_tally.enabled = false;
        Shared::new(Live::build(cfg).unwrap())
    }

    /// Series per row of [`Budget`], counted in a rendered exposition.
    fn counted(text: &str) -> BTreeMap<&'static str, u64> {
        let mut by = BTreeMap::new();
        for l in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let name = &l[..l.find(['{', ' ']).unwrap_or(l.len())];
            let family = [
                names::RESPONSES_TOTAL,
                names::ROUTE_RESPONSES_TOTAL,
                names::TENANT_SLOW_REQUESTS_TOTAL,
                names::TENANT_REQUEST_DURATION_SECONDS,
                names::SPIKE_ACTIVE,
                names::SIGNAL_RATIO,
                names::SPIKES_TOTAL,
                names::TENANT_SUSPENDED,
            ]
            .into_iter()
            .find(|f| {
                name == *f
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f))
            })
            .unwrap_or(OTHER_FAMILIES);
            *by.entry(family).or_insert(0) += 1;
        }
        by
    }

    fn record(s: &Shared, tenant: SlotRef, code: u16, origin: Origin, elapsed: Duration) {
        let live = s.live.load_full();
        let f = Finished {
            tenant,
            code,
            origin,
            elapsed,
            error_kind: None,
            request: None,
        };
        s.record(&live, &f, 0);
    }

    #[test]
    fn a_state_filled_to_the_worst_case_renders_the_bound() {
        for mode in LatencyMode::NAMES {
            let s = shared(mode, 4);
            let live = s.live.load_full();
            let mut slots = vec![SlotRef::NONE, SlotRef::INVALID, SlotRef::OVERFLOW];
            for name in ["a", "b", "c", "d"] {
                slots.push(s.registry.lookup(&live.resolver, name.as_bytes(), 0));
            }
            let slow = Duration::from_secs(1);
            for &t in &slots {
                for origin in Origin::ALL {
                    for e in &live.config.catalog.codes {
                        record(&s, t, e.code, origin, slow);
                    }
                    // one undocumented code of each class, and an out-of-range one
                    for code in [102, 226, 308, 418, 511, 999] {
                        record(&s, t, code, origin, slow);
                    }
                }
                // the latest answer 451: suspended (tracked tenants only)
                record(&s, t, 451, Origin::Upstream, slow);
            }
            // every undocumented code in range
            for code in status::MIN_CODE..=status::MAX_CODE {
                if !live.catalog.is_documented(code) {
                    record(&s, SlotRef::NONE, code, Origin::Upstream, slow);
                }
            }
            let mut out = String::new();
            render(&s, &mut out);
            let got = counted(&out);
            let b = Budget::at(&live, 4);
            for r in &b.rows {
                let n = got.get(r.family).copied().unwrap_or(0);
                if [
                    names::SPIKE_ACTIVE,
                    names::SIGNAL_RATIO,
                    names::SPIKES_TOTAL,
                ]
                .contains(&r.family)
                {
                    // nobody spikes here: only the __all__ series
                    assert!(n <= r.worst, "{mode} {}: {n} > {}", r.family, r.worst);
                } else {
                    assert_eq!(n, r.worst, "{mode} {}:\n{out}", r.family);
                }
            }
            assert!(count_series(&out) as u64 <= b.worst());
        }
    }

    #[test]
    fn a_state_filled_as_the_model_assumes_renders_the_expected_count() {
        for mode in LatencyMode::NAMES {
            let tenants = 50;
            let s = shared(mode, tenants);
            let live = s.live.load_full();
            let ms = Duration::from_millis;
            // Three response series per tenant, one slow response (600 ms >
            // the default 500 ms objective); together the four class/origin
            // pairs of the duration histogram and three undocumented codes.
            for i in 0..tenants {
                let t = s
                    .registry
                    .lookup(&live.resolver, format!("t{i}").as_bytes(), 0);
                if i == 0 {
                    record(&s, t, 200, Origin::Upstream, ms(3));
                    record(&s, t, 500, Origin::Upstream, ms(3)); // 5xx upstream
                    record(&s, t, 429, Origin::Upstream, ms(600)); // undocumented 4xx
                    record(&s, t, 418, Origin::Upstream, ms(3)); // the same series
                } else {
                    record(&s, t, 200, Origin::Upstream, ms(3));
                    record(&s, t, 200, Origin::Upstream, ms(4));
                    record(&s, t, 404, Origin::Upstream, ms(600));
                    record(&s, t, 502, Origin::Proxy, ms(30)); // undocumented 5xx
                }
            }
            let mut det = Detector::new(Timing::from_config(&live.config), live.signals.clone());
            s.detector.store(std::sync::Arc::new(det.step(&s.registry)));
            let mut out = String::new();
            render(&s, &mut out);
            let b = Budget::of(&live);
            let got = counted(&out);
            for r in &b.rows {
                assert_eq!(
                    got.get(r.family).copied().unwrap_or(0),
                    r.expected,
                    "{mode} {}:\n{out}",
                    r.family
                );
            }
            assert_eq!(count_series(&out) as u64, b.expected(), "{mode}");
        }
    }

    /// The route row against the exposition: filled to the worst case
    /// (every template, normalized label and `__other__` in every class and
    /// origin), and as the model expects.
    #[test]
    fn the_route_row_is_what_the_exposition_renders() {
        use crate::config::RouteTemplate;
        let mut cfg = Config::defaults().unwrap();
        cfg.route_tally.max_routes = 7;
        cfg.route_tally.routes = ["/a/{id}", "/b"]
            .iter()
            .map(|p| RouteTemplate {
                method: String::new(),
                path: p.to_string(),
            })
            .collect();
        let row = |live: &Live| {
            Budget::at(live, 1)
                .rows
                .into_iter()
                .find(|r| r.family == names::ROUTE_RESPONSES_TOTAL)
                .unwrap()
        };
        let rendered = |s: &Shared| {
            let mut out = String::new();
            render(s, &mut out);
            counted(&out)[names::ROUTE_RESPONSES_TOTAL]
        };
        let s = Shared::new(Live::build(cfg.clone()).unwrap());
        let live = s.live.load_full();
        let r = row(&live);
        let mut paths = vec!["/a/1".to_string(), "/b".to_string()];
        paths.extend((0..20).map(|i| format!("/unmatched/{i}/x{i}")));
        let headers = http::HeaderMap::new();
        for p in &paths {
            for origin in Origin::ALL {
                for code in [101, 200, 302, 404, 503, 999] {
                    let f = Finished {
                        tenant: SlotRef::NONE,
                        code,
                        origin,
                        elapsed: Duration::from_millis(1),
                        error_kind: None,
                        request: Some(crate::record::Asked {
                            method: &http::Method::GET,
                            path: p,
                            headers: &headers,
                        }),
                    };
                    s.record(&live, &f, 0);
                }
            }
        }
        assert_eq!(rendered(&s), r.worst);
        assert_eq!(r.worst, (2 + 7 + 1) * 12);

        cfg.route_tally.max_routes = 500;
        let s = Shared::new(Live::build(cfg).unwrap());
        let live = s.live.load_full();
        let r = row(&live);
        for i in 0..(2 + EXPECTED_UNMATCHED_ROUTES) {
            let label = format!("GET /unmatched{i}");
            let slot = match i {
                0 => s.routes.template("/a/{id}"),
                1 => s.routes.template("/b"),
                _ => s.routes.normalized(&label),
            };
            s.routes.add(slot, 1, Origin::Upstream);
            s.routes.add(slot, 3, Origin::Upstream);
            s.routes.add(slot, 4, Origin::Proxy);
        }
        assert_eq!(rendered(&s), r.expected);
    }

    #[test]
    fn the_defaults_fit_four_series_per_tenant() {
        let s = shared("slow", 10_000);
        let b = Budget::of(&s.live.load());
        let per_tenant = b.expected() as f64 / 10_000.0;
        assert!((4.0..4.1).contains(&per_tenant), "{per_tenant}");
        // histogram mode is the old cost, 3 + 8 per tenant
        let s = shared("histogram", 10_000);
        let h = Budget::of(&s.live.load());
        assert_eq!(h.expected() - b.expected(), 7 * 10_000 - 1);
        let text = b.to_string();
        assert!(text.contains("tenant.latency = \"slow\""), "{text}");
        assert!(
            text.contains("statuswatch_tenant_slow_requests_total"),
            "{text}"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(memory(1_000_000), "1.9 GiB");
        assert_eq!(memory(40_121), "78 MiB");
    }
}
