//! Every exported metric family and label name, in one place.
//!
//! The names are a public contract: the dashboards, the generated rules and
//! everything users build on `/metrics` match them by string. Written once
//! here, the exposition, `statuswatch rules` and `statuswatch check` cannot
//! spell one differently, and a rename is one edit that the compiler carries
//! to every user (reachable as `statuswatch::metrics::names::*`). The full
//! literal is kept in each constant, so a grep for a metric finds its
//! definition.
//!
//! Histogram and summary families are named without their `_bucket`,
//! `_sum` and `_count` series suffixes; the `*_BUCKET`/`*_SUM`/`*_COUNT`
//! constants name those series where a query needs them.

// ---- families: tallies --------------------------------------------------

/// Counter `{tenant, code, class, origin}`: every response sent to a client.
pub const RESPONSES_TOTAL: &str = "statuswatch_responses_total";
/// Counter `{route, class, origin}`: every response, by route (no tenant).
pub const ROUTE_RESPONSES_TOTAL: &str = "statuswatch_route_responses_total";
/// Counter `{code}`: real code of every undocumented response.
pub const UNDOCUMENTED_RESPONSES_TOTAL: &str = "statuswatch_undocumented_responses_total";
/// Histogram `{class, origin}`: client-observed duration.
pub const REQUEST_DURATION_SECONDS: &str = "statuswatch_request_duration_seconds";
pub const REQUEST_DURATION_SECONDS_BUCKET: &str = "statuswatch_request_duration_seconds_bucket";
pub const REQUEST_DURATION_SECONDS_SUM: &str = "statuswatch_request_duration_seconds_sum";
pub const REQUEST_DURATION_SECONDS_COUNT: &str = "statuswatch_request_duration_seconds_count";
/// Per-tenant duration `{tenant}`: a histogram with `tenant.latency =
/// "histogram"`, `_sum`/`_count` only (a summary without quantiles) with
/// `"summary"`, absent otherwise.
pub const TENANT_REQUEST_DURATION_SECONDS: &str = "statuswatch_tenant_request_duration_seconds";
pub const TENANT_REQUEST_DURATION_SECONDS_BUCKET: &str =
    "statuswatch_tenant_request_duration_seconds_bucket";
pub const TENANT_REQUEST_DURATION_SECONDS_SUM: &str =
    "statuswatch_tenant_request_duration_seconds_sum";
pub const TENANT_REQUEST_DURATION_SECONDS_COUNT: &str =
    "statuswatch_tenant_request_duration_seconds_count";
/// Counter `{tenant}` (`tenant.latency = "slow"`): responses that took longer
/// than `tenant.latency_objective`.
pub const TENANT_SLOW_REQUESTS_TOTAL: &str = "statuswatch_tenant_slow_requests_total";
/// Gauge (`tenant.latency = "slow"`): `tenant.latency_objective` in seconds.
pub const TENANT_LATENCY_OBJECTIVE_SECONDS: &str = "statuswatch_tenant_latency_objective_seconds";
/// Counter `{kind}`: why the proxy answered itself.
pub const UPSTREAM_ERRORS_TOTAL: &str = "statuswatch_upstream_errors_total";
/// Gauge: requests received and not yet answered.
pub const REQUESTS_IN_FLIGHT: &str = "statuswatch_requests_in_flight";
/// Gauge: tenant slots in use.
pub const TENANTS_TRACKED: &str = "statuswatch_tenants_tracked";
/// Gauge: `tenant.max_tenants`.
pub const TENANTS_LIMIT: &str = "statuswatch_tenants_limit";
/// Counter: requests folded into `__overflow__`.
pub const TENANT_OVERFLOW_TOTAL: &str = "statuswatch_tenant_overflow_total";
/// Gauge `{tenant}`: 1 while the tenant's latest answer was 451.
pub const TENANT_SUSPENDED: &str = "statuswatch_tenant_suspended";
/// Counter: tenant transitions into the suspended state.
pub const SUSPENSIONS_TOTAL: &str = "statuswatch_suspensions_total";

// ---- families: detector ---------------------------------------------------

/// Gauge `{signal, tenant}`: 1 while a spike is active.
pub const SPIKE_ACTIVE: &str = "statuswatch_spike_active";
/// Gauge `{signal, tenant, window}`: the detector's inputs.
pub const SIGNAL_RATIO: &str = "statuswatch_signal_ratio";
/// Counter `{signal, tenant}`: spike onsets (per tenant from its first onset).
pub const SPIKES_TOTAL: &str = "statuswatch_spikes_total";

// ---- families: process ------------------------------------------------------

/// Gauge `{code, reason, meaning}` (= 1): the catalog.
pub const STATUS_CODE_INFO: &str = "statuswatch_status_code_info";
/// Gauge `{version}` (= 1).
pub const BUILD_INFO: &str = "statuswatch_build_info";
/// Counter `{result}`: config reloads.
pub const CONFIG_RELOADS_TOTAL: &str = "statuswatch_config_reloads_total";
/// Gauge `{listener}`: client connections open.
pub const CONNECTIONS_OPEN: &str = "statuswatch_connections_open";
/// Gauge `{listener}`: the listener's connection cap.
pub const CONNECTIONS_LIMIT: &str = "statuswatch_connections_limit";
/// Counter `{listener}`: connections refused at the cap.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "statuswatch_connections_refused_total";
/// Counter `{listener}`: connections closed for a late request head.
pub const CONNECTIONS_HEAD_TIMEOUTS_TOTAL: &str = "statuswatch_connections_head_timeouts_total";
/// Gauge: series in this `/metrics` response, itself included.
pub const SERIES: &str = "statuswatch_series";

/// Every family statuswatch exports itself (the prometheus crate adds the
/// standard `process_*` families), in exposition order. Which of the
/// per-tenant latency families are present depends on `tenant.latency`.
pub const FAMILIES: [&str; 25] = [
    RESPONSES_TOTAL,
    UNDOCUMENTED_RESPONSES_TOTAL,
    REQUEST_DURATION_SECONDS,
    TENANT_REQUEST_DURATION_SECONDS,
    TENANT_SLOW_REQUESTS_TOTAL,
    TENANT_LATENCY_OBJECTIVE_SECONDS,
    UPSTREAM_ERRORS_TOTAL,
    REQUESTS_IN_FLIGHT,
    TENANTS_TRACKED,
    TENANTS_LIMIT,
    TENANT_OVERFLOW_TOTAL,
    ROUTE_RESPONSES_TOTAL,
    SPIKE_ACTIVE,
    SIGNAL_RATIO,
    SPIKES_TOTAL,
    TENANT_SUSPENDED,
    SUSPENSIONS_TOTAL,
    STATUS_CODE_INFO,
    BUILD_INFO,
    CONFIG_RELOADS_TOTAL,
    CONNECTIONS_OPEN,
    CONNECTIONS_LIMIT,
    CONNECTIONS_REFUSED_TOTAL,
    CONNECTIONS_HEAD_TIMEOUTS_TOTAL,
    SERIES,
];

// ---- labels -------------------------------------------------------------

/// Label names. Values with a fixed meaning: `tenant` may be one of the
/// reserved names in [`crate::tenant`] (`__none__`, `__invalid__`,
/// `__overflow__`, `__all__`); `route` may be [`crate::route::OTHER`];
/// `window` is [`WINDOW_SHORT`] or [`WINDOW_BASELINE`]; `origin` is
/// `upstream` or `proxy`.
pub mod label {
    /// The tenant (see `[tenant]`), or a reserved name: `__none__` (no
    /// source yielded one), `__invalid__` (not a valid tenant name),
    /// `__overflow__` (past `tenant.max_tenants`, or not on the allowlist),
    /// `__all__` (the detector's overall series).
    pub const TENANT: &str = "tenant";
    /// A documented status code (one of `catalog.codes`), or `undocumented`;
    /// in `statuswatch_undocumented_responses_total` the real code, or
    /// `other` for codes outside 100..599.
    pub const CODE: &str = "code";
    /// Class of the real code: `1xx`..`5xx`, or `other` outside 100..599.
    pub const CLASS: &str = "class";
    /// Who answered: `upstream` (the API) or `proxy` (statuswatch itself,
    /// after an upstream failure or at a limit).
    pub const ORIGIN: &str = "origin";
    /// Why the proxy answered itself: `connect_refused`, `connect_timeout`,
    /// `read_timeout`, `reset`, `tls` or `other`.
    pub const KIND: &str = "kind";
    /// A signal's name (`signals.NAME`).
    pub const SIGNAL: &str = "signal";
    /// Which share the detector sees: `short` (the short window) or
    /// `baseline` (the long-run baseline).
    pub const WINDOW: &str = "window";
    /// A histogram bucket's upper bound in seconds.
    pub const LE: &str = "le";
    /// A documented code's reason phrase (`catalog.codes[].reason`).
    pub const REASON: &str = "reason";
    /// A documented code's meaning for the API (`catalog.codes[].meaning`).
    pub const MEANING: &str = "meaning";
    /// The statuswatch version.
    pub const VERSION: &str = "version";
    /// A reload's outcome: `success` or `failure`.
    pub const RESULT: &str = "result";
    /// The listener: `proxy` (`proxy.listen` and `tls.listen`) or `admin`.
    pub const LISTENER: &str = "listener";
    /// A request's route: `METHOD /template` of the matching
    /// `route_tally.routes` template, else `METHOD /path` normalized, or
    /// `__other__` (past `route_tally.max_routes`).
    pub const ROUTE: &str = "route";

    /// Every label name above.
    pub const ALL: [&str; 14] = [
        TENANT, CODE, CLASS, ORIGIN, KIND, SIGNAL, WINDOW, LE, REASON, MEANING, VERSION, RESULT,
        LISTENER, ROUTE,
    ];
}

/// `window` of `statuswatch_signal_ratio`: the short window's share.
pub const WINDOW_SHORT: &str = "short";
/// `window` of `statuswatch_signal_ratio`: the long-run baseline share.
pub const WINDOW_BASELINE: &str = "baseline";
/// `code` of a response whose code is not in the catalog.
pub const CODE_UNDOCUMENTED: &str = "undocumented";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        let valid = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let mut seen = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(f.starts_with("statuswatch_") && valid(f), "{f}");
            assert!(seen.insert(f), "{f} twice");
        }
        for l in label::ALL {
            assert!(valid(l) && !l.starts_with("__"), "{l}");
            assert!(seen.insert(l), "{l} twice");
        }
        for (series, family, suffix) in [
            (
                REQUEST_DURATION_SECONDS_BUCKET,
                REQUEST_DURATION_SECONDS,
                "_bucket",
            ),
            (
                REQUEST_DURATION_SECONDS_SUM,
                REQUEST_DURATION_SECONDS,
                "_sum",
            ),
            (
                REQUEST_DURATION_SECONDS_COUNT,
                REQUEST_DURATION_SECONDS,
                "_count",
            ),
            (
                TENANT_REQUEST_DURATION_SECONDS_BUCKET,
                TENANT_REQUEST_DURATION_SECONDS,
                "_bucket",
            ),
            (
                TENANT_REQUEST_DURATION_SECONDS_SUM,
                TENANT_REQUEST_DURATION_SECONDS,
                "_sum",
            ),
            (
                TENANT_REQUEST_DURATION_SECONDS_COUNT,
                TENANT_REQUEST_DURATION_SECONDS,
                "_count",
            ),
        ] {
            assert_eq!(series.strip_suffix(suffix), Some(family));
        }
    }
}
