//! `docs/reference/configuration.md` from the shipped `config/statuswatch.toml`.
//!
//! A key's meaning is the comment block right above it. A key right below
//! another shares that block only when the block names it (`sni` under
//! `upstream_tls`), so a key added without a comment fails instead of
//! inheriting its neighbour's. Keys that are not in the defaults are
//! documented as commented-out tables inside a comment block, one level of
//! `# ` deeper and with the same rules (`# [signals.NAME]`, then
//! `# # meaning`, then `# floor = 0.05`); a real table of that shape
//! (`[signals."5xx"]`, `[[catalog.codes]]`) is a shipped instance, whose
//! keys must be documented ones.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::markdown::paragraphs;
use super::REGENERATE;
use crate::config::{Config, ENV_LIST_KEYS, ENV_PREFIX};

use super::config_toml::{tables_of, Key, Table};

/// The environment variable that overrides `key`, if one can.
fn env_var(key: &Key) -> Option<String> {
    let plain = key.name.trim_end_matches("[]");
    let list = ENV_LIST_KEYS.contains(&plain);
    if key.name.contains("[]") || (key.value.starts_with('[') && !list) {
        return None;
    }
    let var = std::iter::once(ENV_PREFIX.to_string())
        .chain(key.name.split('.').map(|s| match s {
            "NAME" => "<NAME>".to_string(),
            s => s.to_ascii_uppercase(),
        }))
        .collect::<Vec<_>>()
        .join("__");
    Some(var)
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// The page.
pub(super) fn render(toml: &str) -> Result<String, String> {
    let tables = tables_of(toml)?;
    let mut out = String::new();
    let _ = write!(
        out,
        "# Configuration reference\n\n\
<!-- GENERATED from config/statuswatch.toml by src/reference: do not edit. -->\n\n\
Every key of [`config/statuswatch.toml`](../../config/statuswatch.toml), the \
built-in defaults (running `statuswatch` without a file uses exactly these \
values), with the comment above it in that file. This page is generated from the \
file and checked by `cargo test`; edit the file's comments, then regenerate it with\n\n\
```sh\n{REGENERATE}\n```\n\n\
A file given with `--config` is layered over the defaults, then the environment \
over both: `STATUSWATCH__<SECTION>__<KEY>` (the dotted name upper-cased, `__` for \
each dot; `{}` take comma-separated lists). The keys of {} are documented in the \
file as commented-out example tables: their values here are examples.\n\n",
        ENV_LIST_KEYS.join("` and `"),
        tables
            .iter()
            .filter(|t| t.example)
            .map(|t| format!("`{}`", t.header()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("Sections:");
    for (i, t) in tables.iter().enumerate() {
        let h = t.header();
        let _ = write!(
            out,
            "{} [`{h}`](#{})",
            if i == 0 { "" } else { "," },
            anchor(&h)
        );
    }
    out.push_str(".\n");
    for t in &tables {
        let _ = write!(out, "\n## {}\n\n", t.header());
        if t.example {
            let _ = writeln!(
                out,
                "{}; {}.\n",
                if t.array {
                    "A list of tables, one per entry"
                } else {
                    "Any number of tables, `NAME` being each one's name"
                },
                if t.instances.is_empty() {
                    "none in the defaults"
                } else {
                    "the defaults have those below"
                }
            );
        }
        out.push_str(&paragraphs(&t.intro));
        if !t.instances.is_empty() {
            render_instances(t, &mut out);
        }
        for k in &t.keys {
            let _ = write!(out, "### `{}`\n\n", k.name);
            if k.example {
                let _ = writeln!(out, "- Default: none (example: `{}`)", k.value);
            } else {
                let _ = writeln!(out, "- Default: `{}`", k.value);
            }
            match env_var(k) {
                Some(var) if ENV_LIST_KEYS.contains(&k.name.as_str()) => {
                    let _ = writeln!(out, "- Environment: `{var}` (comma-separated)");
                }
                Some(var) => {
                    let _ = writeln!(out, "- Environment: `{var}`");
                }
                None => out.push_str("- Environment: none (a list: set it in a file)\n"),
            }
            out.push('\n');
            match &k.shares {
                Some(first) => {
                    let _ = write!(
                        out,
                        "Described with [`{first}`](#{}) above.\n\n",
                        anchor(first)
                    );
                }
                None => out.push_str(&paragraphs(&k.meaning)),
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok(out)
}

/// The shipped tables of a documented shape, as a table of their values.
fn render_instances(t: &Table, out: &mut String) {
    let mut columns: Vec<&str> = Vec::new();
    for k in &t.keys {
        let short = k.name.rsplit('.').next().unwrap_or(&k.name);
        if t.instances
            .iter()
            .any(|(_, vals)| vals.iter().any(|(n, _)| n == short))
        {
            columns.push(short);
        }
    }
    out.push_str("In the defaults:\n\n|");
    if !t.array {
        out.push_str(" table |");
    }
    for c in &columns {
        let _ = write!(out, " `{c}` |");
    }
    out.push_str("\n|");
    for _ in 0..columns.len() + usize::from(!t.array) {
        out.push_str("---|");
    }
    out.push('\n');
    for (shown, vals) in &t.instances {
        out.push('|');
        if !t.array {
            let _ = write!(out, " `{shown}` |");
        }
        for c in &columns {
            match vals.iter().find(|(n, _)| n == c) {
                Some((_, v)) => {
                    let _ = write!(out, " `{}` |", v.replace('|', "\\|"));
                }
                None => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
}

/// Every key the config builder knows (serialized from a config that has
/// every optional part) is documented, and every documented key is known.
pub(super) fn check_keys_match_builder(toml: &str) -> Result<(), String> {
    let tables = tables_of(toml)?;
    let mut documented: BTreeSet<String> = BTreeSet::new();
    for t in &tables {
        if t.array {
            documented.insert(t.name.clone());
        }
        documented.extend(
            t.keys
                .iter()
                .map(|k| k.name.trim_end_matches("[]").to_string()),
        );
    }
    let mut cfg = Config::defaults().map_err(|e| e.to_string())?;
    let every_option = crate::config::SignalConfig {
        floor: Some(0.1),
        factor: Some(2.0),
        min_requests: Some(1),
        min_events: Some(1),
        significance: Some(0.1),
        severity: Some("info".into()),
        clear_after: Some(std::time::Duration::from_secs(1)),
        cold_min_requests: Some(1),
        relearn_after: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    };
    cfg.signals.insert("NAME".into(), every_option);
    cfg.route_tally.routes.push(crate::config::RouteTemplate {
        method: "GET".into(),
        path: "/".into(),
    });
    let value = serde_json::to_value(&cfg).map_err(|e| e.to_string())?;
    let mut known = BTreeSet::new();
    flatten("", &value, &mut known);
    let undocumented: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    if !undocumented.is_empty() || !unknown.is_empty() {
        return Err(format!(
            "config/statuswatch.toml vs the config builder: keys the builder accepts that the file does not document: {undocumented:?}; keys the file documents that the builder does not accept: {unknown:?}"
        ));
    }
    Ok(())
}

/// Dotted keys of a serialized config: `signals.NAME.floor`,
/// `catalog.codes` and `catalog.codes[].code` for a list of tables.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let seg = if prefix == "signals" { "NAME" } else { k };
                let key = if prefix.is_empty() {
                    seg.to_string()
                } else {
                    format!("{prefix}.{seg}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            out.insert(prefix.to_string());
            flatten(&format!("{prefix}[]"), &items[0], out);
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Every environment variable the page names loads (set to its default).
pub(super) fn check_environment_overrides(toml: &str) -> Result<(), String> {
    for t in tables_of(toml)? {
        // An empty list has no spelling in the environment.
        for k in t.keys.iter().filter(|k| !k.example && k.value != "[]") {
            let Some(var) = env_var(k) else { continue };
            let value = if k.value.starts_with('[') {
                k.value
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|s| s.trim().trim_matches('"'))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                k.value.trim_matches('"').to_string()
            };
            let loaded = Config::load_explicit(&crate::config::Sources {
                file: None,
                env: Some([(var.clone(), value.clone())].into_iter().collect()),
            })
            .map_err(|e| format!("{var}={value}: {e}"))?;
            if !loaded.is_explicit(&k.name) {
                return Err(format!("{var} is not taken for {}", k.name));
            }
            if loaded.config != Config::defaults().map_err(|e| e.to_string())? {
                return Err(format!("{var}={value} (the default) changed the config"));
            }
        }
    }
    Ok(())
}
