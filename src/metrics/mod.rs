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
//! * `detector`: the detector's snapshot;
//! * `process`: catalog, build, reloads, connections, `process_*`;
//! * `text`: the text-format primitives they share.

mod detector;
mod process;
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
    tallies::render(shared, &tenants, &live.catalog, out);
    detector::render(shared, &tenants, out);
    tallies::render_suspensions(shared, &tenants, out);
    process::render_info(shared, &live.catalog, out);
    process::render_connections(shared, out);
    process::render_process(out);
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
mod exposition_tests;

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
        let s = shared();
        let live = s.live.load();
        let r = s.registry.lookup(&live.resolver, b"inkhouse", 0);
        s.registry.lookup(&live.resolver, b"idle", 0);
        let slot = s.registry.slot(r);
        slot.counters.observe(std::time::Duration::from_millis(3));
        slot.counters.observe(std::time::Duration::from_millis(300));
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
            // a tracked tenant with no finished request yet starts at 0
            format!("{m}_count{{tenant=\"idle\"}} 0\n"),
        ] {
            assert!(out.contains(&want), "missing {want:?} in\n{out}");
        }
        // 8 series per tracked tenant; reserved tenants without traffic have none
        assert_eq!(out.lines().filter(|l| l.starts_with(m)).count(), 16);
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
        s.registry.lookup(&live.resolver, b"inkhouse", 11);
        s.registry.lookup(&live.resolver, b"other", 11);
        render(&s, &mut out);
        for t in ["inkhouse", "other"] {
            assert!(
                out.contains(&format!("{m}_count{{tenant=\"{t}\"}} 0\n")),
                "{out}"
            );
        }
        assert!(!out.contains(&format!("{m}_sum{{tenant=\"inkhouse\"}} 0.303")));
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
