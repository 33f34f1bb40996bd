//! `docs/reference/metrics.md` from the real exposition and `metrics::names`.
//!
//! The exposition of a known state (`metrics::exposition_tests`) is rendered
//! in every mode that changes which families are written (each
//! `tenant.latency`, `route_tally.enabled` on and off); each family's
//! `# HELP`/`# TYPE` lines, its label names and the modes it appears in come
//! from those renders, its description from its doc comment in `names.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::markdown::escape;
use super::REGENERATE;
use crate::config::LatencyMode;
use crate::metrics::exposition_tests::known_state_with;
use crate::metrics::{names, render as render_exposition};

/// The source of `names.rs`, for the doc comments of its constants.
const NAMES_RS: &str = include_str!("../metrics/names.rs");

/// Route tally settings the page renders with.
const ROUTE_TALLY: [bool; 2] = [true, false];

/// One rendering mode: `tenant.latency` and `route_tally.enabled`.
type Mode = (&'static str, bool);

#[derive(Default)]
struct Family {
    /// Each distinct `# HELP` + `# TYPE` pair, with the modes that serve it.
    variants: Vec<(String, String, Vec<Mode>)>,
    labels: Vec<String>,
    modes: Vec<Mode>,
    /// Series written, all modes together.
    series: usize,
}

/// Doc comments of the `pub const X: &str = "value";` of `names.rs`, by value.
fn docs() -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut lines = NAMES_RS.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim());
            continue;
        }
        if t.starts_with("pub const ") && t.contains(": &str =") {
            // rustfmt moves a long literal to the next line
            let lit_line = if t.contains('"') {
                t
            } else {
                lines.next().unwrap_or_default().trim()
            };
            if let Some(value) = lit_line.split('"').nth(1) {
                if !doc.is_empty() {
                    out.insert(value, doc.join(" "));
                }
            }
        }
        doc.clear();
    }
    out
}

/// Rustdoc as page Markdown: intra-doc links as plain code.
fn doc_markdown(doc: &str) -> String {
    escape(&doc.replace("[`", "`").replace("`]", "`"))
}

/// Label names of a series line, in order.
fn label_names(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(start) = line.find('{') else {
        return out;
    };
    let mut rest = &line[start + 1..];
    while let Some(eq) = rest.find("=\"") {
        out.push(rest[..eq].to_string());
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        rest = &rest[end..];
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// Every family of every mode, by name.
fn families() -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for latency in LatencyMode::NAMES {
        for routes in ROUTE_TALLY {
            let mode = (latency, routes);
            let shared = known_state_with(|c| {
                c.tenant.latency = latency.into();
                c.route_tally.enabled = routes;
            });
            let mut text = String::new();
            render_exposition(&shared, &mut text);
            let mut help = String::new();
            let mut current: Option<String> = None;
            for line in text.lines() {
                if let Some(h) = line.strip_prefix("# HELP ") {
                    help = line.to_string();
                    let name = h.split(' ').next().unwrap_or_default();
                    current = (!name.starts_with("process_")).then(|| name.to_string());
                } else if line.starts_with("# TYPE ") {
                    let Some(name) = &current else { continue };
                    let f = out.entry(name.clone()).or_default();
                    f.modes.push(mode);
                    match f
                        .variants
                        .iter_mut()
                        .find(|(h, t, _)| *h == help && t == line)
                    {
                        Some((_, _, modes)) => modes.push(mode),
                        None => f
                            .variants
                            .push((help.clone(), line.to_string(), vec![mode])),
                    }
                } else if let Some(name) = &current {
                    let f = out.get_mut(name).expect("TYPE before series");
                    f.series += 1;
                    for l in label_names(line) {
                        if !f.labels.contains(&l) {
                            f.labels.push(l);
                        }
                    }
                }
            }
        }
    }
    out
}

/// When a family served in `modes` is present, or an error when the modes
/// are not "these latency modes" times "these route tally settings".
fn condition(name: &str, modes: &[Mode]) -> Result<String, String> {
    let latencies: Vec<&str> = LatencyMode::NAMES
        .into_iter()
        .filter(|l| modes.iter().any(|m| m.0 == *l))
        .collect();
    let routes: Vec<bool> = ROUTE_TALLY
        .into_iter()
        .filter(|r| modes.iter().any(|m| m.1 == *r))
        .collect();
    if latencies.len() * routes.len() != modes.len() {
        return Err(format!(
            "{name}: present in {modes:?}, which the page cannot describe"
        ));
    }
    let mut parts = Vec::new();
    if latencies.len() < LatencyMode::NAMES.len() {
        parts.push(latency_condition(&latencies));
    }
    if routes.len() < ROUTE_TALLY.len() {
        parts.push(format!("`route_tally.enabled = {}`", routes[0]));
    }
    Ok(if parts.is_empty() {
        "always".to_string()
    } else {
        format!("only with {}", parts.join(" and "))
    })
}

fn latency_condition(latencies: &[&str]) -> String {
    latencies
        .iter()
        .map(|l| format!("`tenant.latency = \"{l}\"`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The page, for the families `listed` (normally [`names::FAMILIES`]).
pub(super) fn render(listed: &[&str]) -> Result<String, String> {
    let docs = docs();
    let seen = families();
    for name in seen.keys() {
        if !listed.contains(&name.as_str()) {
            return Err(format!(
                "{name} is in the exposition but not in metrics::names::FAMILIES"
            ));
        }
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "# Metrics reference\n\n\
<!-- GENERATED from src/metrics by src/reference: do not edit. -->\n\n\
Every metric family statuswatch writes on `/metrics` (on `admin.listen`), besides \
the standard `process_*` families. A family's description is its doc comment in \
[`src/metrics/names.rs`](../../src/metrics/names.rs); its `# HELP` and `# TYPE` \
lines, labels and presence are taken from the exposition itself, rendered in every \
`tenant.latency` mode with `route_tally.enabled` on and off. This page is generated \
and checked by `cargo test`; regenerate it with\n\n\
```sh\n{REGENERATE}\n```\n\n\
| Family | Type | Labels | Present |\n|---|---|---|---|\n"
    );
    let mut sections = String::new();
    for name in listed {
        let f = seen.get(*name).ok_or_else(|| {
            format!("{name} is in metrics::names::FAMILIES but no mode of the exposition writes it")
        })?;
        if f.series == 0 {
            // its labels would be unknown
            return Err(format!(
                "{name}: no series in any mode of the reference state"
            ));
        }
        let doc = docs
            .get(name)
            .ok_or_else(|| format!("{name}: no doc comment in src/metrics/names.rs"))?;
        let present = condition(name, &f.modes)?;
        let kinds: Vec<&str> = f
            .variants
            .iter()
            .map(|(_, t, _)| t.rsplit(' ').next().unwrap_or_default())
            .collect();
        let labels = f
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| [`{name}`](#{name}) | {} | {} | {present} |",
            kinds.join(" or "),
            if labels.is_empty() { "none" } else { &labels }
        );
        let _ = write!(
            sections,
            "### {name}\n\n- Type: {}\n- Labels: {}\n- Present: {present}\n\n{}\n\n",
            kinds.join(" or "),
            if labels.is_empty() { "none" } else { &labels },
            doc_markdown(doc)
        );
        for (help, kind, modes) in &f.variants {
            if f.variants.len() > 1 {
                let latencies: Vec<&str> = modes.iter().map(|m| m.0).collect::<Vec<_>>();
                let mut latencies = latencies;
                latencies.dedup();
                let _ = writeln!(sections, "With {}:\n", latency_condition(&latencies));
            }
            let _ = write!(sections, "```text\n{help}\n{kind}\n```\n\n");
        }
    }
    out.push_str("\n## Families\n\n");
    out.push_str(&sections);
    render_labels(&docs, &seen, &mut out)?;
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok(out)
}

/// Every label name with its meaning and families, then the reserved values.
fn render_labels(
    docs: &BTreeMap<&str, String>,
    seen: &BTreeMap<String, Family>,
    out: &mut String,
) -> Result<(), String> {
    out.push_str("## Labels\n\n| Label | Meaning | Families |\n|---|---|---|\n");
    for label in names::label::ALL {
        let doc = docs.get(label).ok_or_else(|| {
            format!("label {label}: no doc comment in src/metrics/names.rs (module label)")
        })?;
        let users: Vec<String> = names::FAMILIES
            .iter()
            .filter(|f| {
                seen.get(**f)
                    .is_some_and(|f| f.labels.iter().any(|l| l == label))
            })
            .map(|f| format!("[`{f}`](#{f})"))
            .collect();
        if users.is_empty() {
            return Err(format!("label {label}: no family uses it"));
        }
        let _ = writeln!(
            out,
            "| `{label}` | {} | {} |",
            doc_markdown(doc),
            users.join(", ")
        );
    }
    out.push_str(
        "\n## Reserved label values\n\nValues with a fixed meaning, as the code spells them.\n\n| Label | Values |\n|---|---|\n",
    );
    let reserved: [(&str, Vec<&str>); 5] = [
        (
            names::label::TENANT,
            vec![
                crate::tenant::NONE,
                crate::tenant::INVALID,
                crate::tenant::OVERFLOW,
                crate::tenant::ALL,
            ],
        ),
        (names::label::ROUTE, vec![crate::route::OTHER]),
        (
            names::label::CODE,
            vec![names::CODE_UNDOCUMENTED, crate::status::OUT_OF_RANGE_LABEL],
        ),
        (
            names::label::CLASS,
            crate::status::CLASS_LABELS
                .into_iter()
                .chain([crate::status::OUT_OF_RANGE_LABEL])
                .collect(),
        ),
        (
            names::label::WINDOW,
            vec![names::WINDOW_SHORT, names::WINDOW_BASELINE],
        ),
    ];
    for (label, values) in reserved {
        let values: Vec<String> = values
            .iter()
            .map(|v| match docs.get(v) {
                Some(d) if *v != crate::status::OUT_OF_RANGE_LABEL => {
                    format!("`{v}` ({})", doc_markdown(d.trim_end_matches('.')))
                }
                _ => format!("`{v}`"),
            })
            .collect();
        let _ = writeln!(out, "| `{label}` | {} |", values.join(", "));
    }
    Ok(())
}
