//! Prometheus text exposition of the tallies, the detector state and
//! process/build information.
//!
//! Tally series are written straight from our own atomics (no label hashing,
//! no intermediate registry), which keeps a scrape of many thousands of
//! tenant series cheap and keeps free-form tenant values away from the
//! prometheus crate's label hashing. The prometheus crate supplies only the
//! standard `process_*` collector.
//!
//! * `tenants`: the tenants of one scrape, read from the registry once;
//! * `tallies`: the per-tenant and process-wide counters;
//! * `routes`: the responses by route (no tenant);
//! * `detector`: the detector's snapshot;
//! * `process`: catalog, build, reloads, connections, `process_*`;
//! * `text`: the text-format primitives they share;
//! * [`names`]: every family and label name, the one spelling of each;
//! * [`budget`]: what a config costs in series, before it is paid.
//!
//! The last family, `statuswatch_series`, counts the series of the very
//! response it ends, so the live cost of a pod is one query away and can be
//! compared with what `statuswatch check` estimated.

pub mod budget;
mod detector;
pub mod names;
mod process;
mod routes;
mod tallies;
mod tenants;
mod text;

use crate::state::Shared;

pub use text::escape_into;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render every metric. `out` is cleared first; pass a reused buffer to
/// avoid growing a new one per scrape.
pub fn render(shared: &Shared, out: &mut String) {
    out.clear();
    let live = shared.live.load();
    let tenants = tenants::Tenants::collect(&shared.registry);
    tallies::render(shared, &tenants, &live, out);
    routes::render(shared, &live, out);
    detector::render(shared, &tenants, out);
    tallies::render_suspensions(shared, &tenants, out);
    process::render_info(shared, &live.catalog, out);
    process::render_connections(shared, out);
    process::render_process(out);
    // Counted over what was written, so it cannot disagree with the text.
    let series = count_series(out) + 1;
    text::gauge(
        out,
        names::SERIES,
        "Series in this /metrics response, this one included: what one pod costs Prometheus (about 2 KiB of memory each, times the pods). statuswatch check estimates it per config.",
        series as f64,
    );
}

/// Sample lines of an exposition (every line that is not a comment).
pub fn count_series(text: &str) -> usize {
    text.split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// The `/metrics` body, as the admin listener serves it. `size_hint` is
/// the previous body's length, so the buffer is allocated once at its
/// final size instead of doubling through the render.
pub fn body(shared: &Shared, size_hint: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size_hint + 1024);
    render(shared, &mut out);
    out.into_bytes()
}

#[cfg(test)]
pub(crate) mod exposition_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::Live;
    use crate::status::{self, Origin};
    use crate::tally::UpstreamErrorKind;

    fn shared() -> std::sync::Arc<Shared> {
        Shared::new(Live::build(Config::defaults().unwrap()).unwrap())
    }

    #[test]
    fn exposition_has_contract_series() {
        let s = shared();
        let live = s.live.load();
        let r = s.registry.lookup(&live.resolver, b"inkhouse", 0);
        let slot = s.registry.slot(r);
        slot.counters.add(Origin::Upstream, status::cell_of(200));
        slot.counters.add(Origin::Upstream, status::cell_of(200));
        slot.counters.add(Origin::Upstream, status::cell_of(429));
        slot.counters.add(Origin::Upstream, status::cell_of(418));
        slot.counters.add(Origin::Proxy, status::cell_of(502));
        s.global.undocumented(429);
        s.global.upstream_error(UpstreamErrorKind::ConnectRefused);
        slot.set_suspended(true);
        let mut out = String::new();
        render(&s, &mut out);
        for want in [
            "statuswatch_responses_total{tenant=\"inkhouse\",code=\"200\",class=\"2xx\",origin=\"upstream\"} 2\n",
            "statuswatch_responses_total{tenant=\"inkhouse\",code=\"undocumented\",class=\"4xx\",origin=\"upstream\"} 2\n",
            "statuswatch_responses_total{tenant=\"inkhouse\",code=\"undocumented\",class=\"5xx\",origin=\"proxy\"} 1\n",
            "statuswatch_undocumented_responses_total{code=\"429\"} 1\n",
            "statuswatch_upstream_errors_total{kind=\"connect_refused\"} 1\n",
            "statuswatch_upstream_errors_total{kind=\"tls\"} 0\n",
            "statuswatch_tenants_tracked 1\n",
            "statuswatch_tenants_limit 10000\n",
            "statuswatch_spike_active{signal=\"5xx\",tenant=\"__all__\"} 0\n",
            "statuswatch_spike_active{signal=\"suspended\",tenant=\"__all__\"} 0\n",
            "statuswatch_signal_ratio{signal=\"5xx\",tenant=\"__all__\",window=\"short\"} 0\n",
            "statuswatch_tenant_suspended{tenant=\"inkhouse\"} 1\n",
            "statuswatch_status_code_info{code=\"451\",reason=\"Unavailable For Legal Reasons\",",
            "statuswatch_config_reloads_total{result=\"failure\"} 0\n",
            "# TYPE statuswatch_request_duration_seconds histogram\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn tenant_latency_series_follow_the_slot() {
        let mut cfg = Config::defaults().unwrap();
        cfg.tenant.latency = "histogram".into();
        let s = Shared::new(Live::build(cfg).unwrap());
        let live = s.live.load();
        let r = s.registry.lookup(&live.resolver, b"inkhouse", 0);
        s.registry.lookup(&live.resolver, b"idle", 0);
        let slot = s.registry.slot(r);
        slot.counters
            .observe(std::time::Duration::from_millis(3), u64::MAX);
        slot.counters
            .observe(std::time::Duration::from_millis(300), u64::MAX);
        let mut out = String::new();
        render(&s, &mut out);
        let m = "statuswatch_tenant_request_duration_seconds";
        for want in [
            format!("# TYPE {m} histogram\n"),
            format!("{m}_bucket{{tenant=\"inkhouse\",le=\"0.005\"}} 1\n"),
            format!("{m}_bucket{{tenant=\"inkhouse\",le=\"0.1\"}} 1\n"),
            format!("{m}_bucket{{tenant=\"inkhouse\",le=\"0.5\"}} 2\n"),
            format!("{m}_bucket{{tenant=\"inkhouse\",le=\"+Inf\"}} 2\n"),
            format!("{m}_sum{{tenant=\"inkhouse\"}} 0.303\n"),
            format!("{m}_count{{tenant=\"inkhouse\"}} 2\n"),
        ] {
            assert!(out.contains(&want), "missing {want:?} in\n{out}");
        }
        // 8 series per tenant with a response; a tracked tenant without a
        // finished request yet and reserved tenants without traffic have none
        assert_eq!(out.lines().filter(|l| l.starts_with(m)).count(), 8);
        assert!(!out.contains("tenant=\"idle\""), "{out}");
        assert!(!out.contains(&format!("{m}_count{{tenant=\"__none__\"}}")));

        // reclaiming the slot removes the tenant's series with its other series
        let mut cfg = Config::defaults().unwrap();
        cfg.tenant.idle_ttl = std::time::Duration::from_secs(1);
        let spec = crate::tenant::ResolverSpec::from_config(&cfg.tenant).unwrap();
        assert_eq!(s.registry.sweep(&spec, 10), 2);
        render(&s, &mut out);
        assert!(
            !out.contains(&format!("{m}_bucket{{tenant=\"inkhouse\"")),
            "{out}"
        );
        // two new tenants reuse both freed slots (one held inkhouse's two
        // observations): each starts from zero
        for t in ["inkhouse", "other"] {
            let r = s.registry.lookup(&live.resolver, t.as_bytes(), 11);
            s.registry
                .slot(r)
                .counters
                .observe(std::time::Duration::from_millis(1), u64::MAX);
        }
        render(&s, &mut out);
        for t in ["inkhouse", "other"] {
            assert!(
                out.contains(&format!("{m}_count{{tenant=\"{t}\"}} 1\n")),
                "{out}"
            );
        }
        assert!(!out.contains(&format!("{m}_sum{{tenant=\"inkhouse\"}} 0.303")));
    }

    #[test]
    fn a_tenant_spike_counter_starts_at_its_first_onset() {
        use crate::detect::{Detector, Timing};
        let s = shared();
        let live = s.live.load_full();
        let mut det = Detector::new(Timing::from_config(&live.config), live.signals.clone());
        let send = |tenant: &str, n: u64, bad: u64| {
            let r = s.registry.lookup(&live.resolver, tenant.as_bytes(), 0);
            for i in 0..n {
                let code = if i < bad { 500 } else { 200 };
                s.registry
                    .slot(r)
                    .counters
                    .add(Origin::Upstream, status::cell_of(code));
            }
        };
        let m = "statuswatch_spikes_total";
        let mut out = String::new();
        for _ in 0..600 {
            send("inkhouse", 10, 0);
            send("blackcat", 10, 0);
            s.detector.store(std::sync::Arc::new(det.step(&s.registry)));
        }
        render(&s, &mut out);
        // two tracked tenants, three reserved ones, no onset: __all__ only
        assert_eq!(out.lines().filter(|l| l.starts_with(m)).count(), 2, "{out}");
        assert!(out.contains(&format!("{m}{{signal=\"5xx\",tenant=\"__all__\"}} 0\n")));
        for _ in 0..60 {
            send("inkhouse", 10, 6);
            send("blackcat", 10, 0);
            s.detector.store(std::sync::Arc::new(det.step(&s.registry)));
        }
        render(&s, &mut out);
        assert!(
            out.contains(&format!("{m}{{signal=\"5xx\",tenant=\"inkhouse\"}} 1\n")),
            "{out}"
        );
        assert!(out.contains("statuswatch_spike_active{signal=\"5xx\",tenant=\"inkhouse\"} 1\n"));
        assert!(!out.contains(&format!("{m}{{signal=\"5xx\",tenant=\"blackcat\"}}")));
        assert!(!out.contains(&format!("{m}{{signal=\"suspended\",tenant=\"inkhouse\"}}")));
    }

    #[test]
    fn out_of_range_codes_are_class_other() {
        let s = shared();
        let live = s.live.load();
        let r = s.registry.lookup(&live.resolver, b"inkhouse", 0);
        let slot = s.registry.slot(r);
        for code in [700, 999, 42] {
            slot.counters.add(Origin::Upstream, status::cell_of(code));
            s.global.undocumented(code);
        }
        slot.counters.add(Origin::Upstream, status::cell_of(599));
        s.global.undocumented(599);
        let mut out = String::new();
        render(&s, &mut out);
        for want in [
            "statuswatch_responses_total{tenant=\"inkhouse\",code=\"undocumented\",class=\"other\",origin=\"upstream\"} 3\n",
            "statuswatch_responses_total{tenant=\"inkhouse\",code=\"undocumented\",class=\"5xx\",origin=\"upstream\"} 1\n",
            "statuswatch_undocumented_responses_total{code=\"other\"} 3\n",
            "statuswatch_undocumented_responses_total{code=\"599\"} 1\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("code=\"700\""), "{out}");
    }

    #[test]
    fn escaping() {
        for (raw, want) in [
            ("a\"b\\c\nd", "a\\\"b\\\\c\\nd"),
            ("", ""),
            ("plain-tenant", "plain-tenant"),
            ("\"\"", "\\\"\\\""),
            ("\\", "\\\\"),
            ("end\n", "end\\n"),
            ("é\"ü", "é\\\"ü"),
            ("\r\t", "\r\t"),
        ] {
            let mut s = String::from(">");
            escape_into(&mut s, raw);
            assert_eq!(s, format!(">{want}"), "{raw:?}");
        }
    }
}
