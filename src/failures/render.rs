//! `/failures` as text (a line per failure, newest first) or JSON.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::{Entry, CAPACITY};

fn time(e: &Entry) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(e.unix_millis)).to_string()
}

fn seconds(e: &Entry) -> f64 {
    e.duration_nanos as f64 / 1e9
}

/// One line per failure: time, tenant, method, route, code, origin, upstream
/// error kind (`-` for none), duration, request id (`-` for none).
pub fn render_text(entries: &[Entry], filters: &str) -> String {
    let mut out = String::with_capacity(64 + entries.len() * 128);
    let _ = writeln!(
        out,
        "# statuswatch: the last failing requests, newest first: {} shown ({CAPACITY} kept at most){}{}",
        entries.len(),
        if filters.is_empty() { "" } else { "; " },
        filters
    );
    out.push_str("# time tenant method route code origin error_kind duration_seconds request_id\n");
    for e in entries {
        let _ = writeln!(
            out,
            "{} {} {} {} {} {} {} {:.6} {}",
            time(e),
            e.tenant.as_str(),
            e.method.as_str(),
            e.route.as_str(),
            e.code,
            e.origin.label(),
            e.error_kind.map_or("-", |k| k.label()),
            seconds(e),
            e.request_id.as_ref().map_or("-", |r| r.as_str()),
        );
    }
    out
}

#[derive(Serialize)]
struct Json<'a> {
    failures: Vec<JsonEntry<'a>>,
    shown: usize,
    capacity: usize,
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    time: String,
    tenant: &'a str,
    method: &'a str,
    route: &'a str,
    code: u16,
    origin: &'static str,
    error_kind: Option<&'static str>,
    duration_seconds: f64,
    request_id: Option<&'a str>,
}

/// `{"failures": [...], "shown": n, "capacity": 1536}`.
pub fn render_json(entries: &[Entry]) -> String {
    let doc = Json {
        failures: entries
            .iter()
            .map(|e| JsonEntry {
                time: time(e),
                tenant: e.tenant.as_str(),
                method: e.method.as_str(),
                route: e.route.as_str(),
                code: e.code,
                origin: e.origin.label(),
                error_kind: e.error_kind.map(|k| k.label()),
                duration_seconds: seconds(e),
                request_id: e.request_id.as_ref().map(|r| r.as_str()),
            })
            .collect(),
        shown: entries.len(),
        capacity: CAPACITY,
    };
    let mut s = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}
