//! Families about the process rather than the traffic: the catalog, build
//! information, reloads, connections per listener and the standard
//! `process_*` metrics (the only ones taken from the prometheus crate).

use std::fmt::Write as _;

use prometheus::Encoder;

use super::names::{self, label};
use super::text::{escape_into, header, push_int};
use crate::catalog::Catalog;
use crate::limit::ConnLimit;
use crate::state::{ReloadResult, Shared};

/// The catalog, build information and reload counters.
pub(super) fn render_info(shared: &Shared, catalog: &Catalog, out: &mut String) {
    header(
        out,
        names::STATUS_CODE_INFO,
        "gauge",
        "The catalog of documented status codes, for legends via joins.",
    );
    for e in catalog.entries() {
        out.push_str(names::STATUS_CODE_INFO);
        out.push('{');
        out.push_str(label::CODE);
        out.push_str("=\"");
        push_int(out, e.code as u64);
        out.push_str("\",");
        out.push_str(label::REASON);
        out.push_str("=\"");
        escape_into(out, &e.reason);
        out.push_str("\",");
        out.push_str(label::MEANING);
        out.push_str("=\"");
        escape_into(out, &e.meaning);
        out.push_str("\"} 1\n");
    }

    header(out, names::BUILD_INFO, "gauge", "Build information.");
    let _ = writeln!(
        out,
        "{}{{{}=\"{}\"}} 1",
        names::BUILD_INFO,
        label::VERSION,
        crate::VERSION
    );

    header(
        out,
        names::CONFIG_RELOADS_TOTAL,
        "counter",
        "Configuration reloads (SIGHUP) by result.",
    );
    for (value, r) in [
        ("success", ReloadResult::Success),
        ("failure", ReloadResult::Failure),
    ] {
        let _ = writeln!(
            out,
            "{}{{{}=\"{value}\"}} {}",
            names::CONFIG_RELOADS_TOTAL,
            label::RESULT,
            shared.reloads(r)
        );
    }
}

/// Connections per listener: open, their cap, refused past it, and closed
/// because a request head did not arrive in time.
pub(super) fn render_connections(shared: &Shared, out: &mut String) {
    let live = shared.live.load();
    let listeners = [
        (
            &shared.proxy_conns,
            "proxy",
            live.config.proxy.max_connections,
        ),
        (
            &shared.admin_conns,
            "admin",
            live.config.admin.max_connections,
        ),
    ];
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ConnLimit, usize) -> u64,
    );
    let families: [Family; 4] = [
        (
            names::CONNECTIONS_OPEN,
            "gauge",
            "Client connections open, per listener.",
            |c, _| c.open() as u64,
        ),
        (
            names::CONNECTIONS_LIMIT,
            "gauge",
            "Most client connections open at once (proxy.max_connections, admin.max_connections).",
            |_, max| max as u64,
        ),
        (
            names::CONNECTIONS_REFUSED_TOTAL,
            "counter",
            "Client connections closed at once because the listener was at its limit.",
            |c, _| c.refused(),
        ),
        (
            names::CONNECTIONS_HEAD_TIMEOUTS_TOTAL,
            "counter",
            "Client connections closed because a request head did not arrive within proxy.client_header_timeout.",
            |c, _| c.head_timeouts(),
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help);
        for (conns, listener, max) in listeners {
            let _ = writeln!(
                out,
                "{name}{{{}=\"{listener}\"}} {}",
                label::LISTENER,
                value(conns, max)
            );
        }
    }
}

/// Series of the standard process_* families on this machine.
pub(super) fn process_series() -> usize {
    #[cfg(target_os = "linux")]
    {
        use prometheus::core::Collector;
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        collector
            .collect()
            .iter()
            .map(|f| f.get_metric().len())
            .sum()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// The standard process_* metrics (CPU, RSS, fds, start time).
pub(super) fn render_process(out: &mut String) {
    #[cfg(target_os = "linux")]
    {
        use prometheus::core::Collector;
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        let families = collector.collect();
        let mut buf = Vec::new();
        if prometheus::TextEncoder::new()
            .encode(&families, &mut buf)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
    }
}
