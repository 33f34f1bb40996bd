//! The YAML writer of the rules file: groups, recording rules and alerts
//! written as text in a fixed layout, so the output is stable byte for byte
//! (the shipped rules file is compared with it) and needs no YAML library.

use std::fmt::Write as _;
use std::time::Duration;

/// A Prometheus duration for `d`, in its largest exact unit ("1m", "90s", "1h").
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// A YAML double-quoted scalar (JSON string escaping is valid YAML).
pub(super) fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as PromQL writes it: shortest round-trip form.
pub(super) fn num(x: f64) -> String {
    // 12 significant decimals: 1 - 0.999 prints as 0.001, not 0.0010000000000000009.
    let r = (x * 1e12).round() / 1e12;
    format!("{}", if r == 0.0 { x } else { r })
}

pub(super) struct Yaml {
    pub(super) out: String,
    pub(super) base_url: String,
}

pub(super) struct Alert<'a> {
    pub(super) name: &'a str,
    pub(super) expr: &'a str,
    pub(super) for_: Option<Duration>,
    pub(super) keep_firing_for: Option<Duration>,
    pub(super) labels: &'a [(&'a str, &'a str)],
    pub(super) summary: &'a str,
    pub(super) description: &'a str,
    /// `dashboard_url`: the Grafana dashboard showing the decision that fired.
    pub(super) dashboard: Option<String>,
    /// The runbook page (`<base>/<page>.md`) when it is not the alert's
    /// own name: an operator signal's alerts share a generic one.
    pub(super) runbook: Option<&'a str>,
}

impl Yaml {
    pub(super) fn group(&mut self, name: &str, interval: Option<&str>, comment: &[&str]) {
        self.out.push('\n');
        for c in comment {
            let _ = writeln!(self.out, "  # {c}");
        }
        let _ = writeln!(self.out, "  - name: {}", q(name));
        if let Some(i) = interval {
            let _ = writeln!(self.out, "    interval: {i}");
        }
        self.out.push_str("    rules:\n");
    }

    fn expr(&mut self, expr: &str) {
        let expr = expr.trim();
        if expr.contains('\n') {
            self.out.push_str("        expr: |\n");
            for line in expr.lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    self.out.push('\n');
                } else {
                    let _ = writeln!(self.out, "          {line}");
                }
            }
        } else {
            let _ = writeln!(self.out, "        expr: {}", q(expr));
        }
    }

    pub(super) fn record(&mut self, name: &str, labels: &[(&str, &str)], expr: &str) {
        let _ = writeln!(self.out, "      - record: {name}");
        self.expr(expr);
        self.labels(labels);
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if !labels.is_empty() {
            self.out.push_str("        labels:\n");
            for (k, v) in labels {
                let _ = writeln!(self.out, "          {k}: {}", q(v));
            }
        }
    }

    pub(super) fn alert(&mut self, a: Alert<'_>) {
        let _ = writeln!(self.out, "      - alert: {}", a.name);
        self.expr(a.expr);
        if let Some(d) = a.for_.filter(|d| !d.is_zero()) {
            let _ = writeln!(self.out, "        for: {}", prom_duration(d));
        }
        if let Some(d) = a.keep_firing_for.filter(|d| !d.is_zero()) {
            let _ = writeln!(self.out, "        keep_firing_for: {}", prom_duration(d));
        }
        self.labels(a.labels);
        let url = format!("{}/{}.md", self.base_url, a.runbook.unwrap_or(a.name));
        self.out.push_str("        annotations:\n");
        let _ = writeln!(self.out, "          summary: {}", q(a.summary));
        let _ = writeln!(self.out, "          description: {}", q(a.description));
        if let Some(d) = &a.dashboard {
            let _ = writeln!(self.out, "          dashboard_url: {}", q(d));
        }
        let _ = writeln!(self.out, "          runbook_url: {}", q(&url));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_prometheus_units() {
        assert_eq!(prom_duration(Duration::from_secs(60)), "1m");
        assert_eq!(prom_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prom_duration(Duration::from_secs(86_400 * 3)), "3d");
    }
}
