//! The generated reference pages, `docs/reference/configuration.md` and
//! `docs/reference/metrics.md`, and the check that the committed pages are
//! what the code generates (test code only: nothing here ships).
//!
//! `config_page` reads the shipped `config/statuswatch.toml` (the built-in
//! defaults): every key with its comment. `metrics_page` renders the real
//! exposition in every mode that changes which families are written and
//! takes each family's doc comment from `metrics::names`. Both pages are
//! compared with the committed files by `cargo test`; with
//! `STATUSWATCH_BLESS=1` the test rewrites them instead.

mod config_page;
mod config_toml;
mod markdown;
mod metrics_page;

use std::path::Path;

/// How to regenerate the pages, quoted in their intros and in the failure.
const REGENERATE: &str = "STATUSWATCH_BLESS=1 cargo test --release --locked --lib reference::";

/// Where the pages live, relative to the repository root.
const CONFIGURATION_MD: &str = "docs/reference/configuration.md";
const METRICS_MD: &str = "docs/reference/metrics.md";

/// `None` when `committed` is `fresh`, else the failure message: which file,
/// how to regenerate it, and the first line that differs.
fn stale(rel: &str, committed: &str, fresh: &str) -> Option<String> {
    if committed == fresh {
        return None;
    }
    let (mut old, mut new) = (committed.lines(), fresh.lines());
    let mut line = 1;
    let diff = loop {
        match (old.next(), new.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (a, b) => {
                break format!(
                    "line {line}:\n  committed: {}\n  generated: {}",
                    a.unwrap_or("(end of file)"),
                    b.unwrap_or("(end of file)")
                )
            }
        }
    };
    Some(format!("{rel} is stale: run `{REGENERATE}`\n{diff}"))
}

/// Compare the committed page with `fresh`, or rewrite it when blessing.
fn check_or_bless(rel: &str, fresh: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("STATUSWATCH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a docs directory")).expect("mkdir");
        std::fs::write(&path, fresh).unwrap_or_else(|e| panic!("{rel}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(msg) = stale(rel, &committed, fresh) {
        panic!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_TOML;
    use crate::metrics::names;

    #[test]
    fn configuration_md_is_fresh() {
        let page = config_page::render(DEFAULT_TOML).unwrap_or_else(|e| panic!("{e}"));
        check_or_bless(CONFIGURATION_MD, &page);
    }

    #[test]
    fn metrics_md_is_fresh() {
        let page = metrics_page::render(&names::FAMILIES).unwrap_or_else(|e| panic!("{e}"));
        check_or_bless(METRICS_MD, &page);
    }

    #[test]
    fn shipped_keys_are_the_keys_the_builder_accepts() {
        config_page::check_keys_match_builder(DEFAULT_TOML).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn documented_environment_overrides_load() {
        config_page::check_environment_overrides(DEFAULT_TOML).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_changed_comment_makes_the_page_stale() {
        let page = config_page::render(DEFAULT_TOML).unwrap();
        assert_eq!(stale(CONFIGURATION_MD, &page, &page), None);
        let edited = DEFAULT_TOML.replacen("# Where clients connect.", "# Where clients dial.", 1);
        assert_ne!(edited, DEFAULT_TOML);
        let fresh = config_page::render(&edited).unwrap();
        let msg = stale(CONFIGURATION_MD, &page, &fresh).expect("stale");
        assert!(
            msg.starts_with(&format!(
                "docs/reference/configuration.md is stale: run `{REGENERATE}`"
            )),
            "{msg}"
        );
        assert!(msg.contains("Where clients dial."), "{msg}");
    }

    #[test]
    fn a_key_without_a_comment_fails() {
        let edited = DEFAULT_TOML.replacen("# Where clients connect.\nlisten", "listen", 1);
        assert_ne!(edited, DEFAULT_TOML);
        let e = config_page::render(&edited).unwrap_err();
        assert!(e.starts_with("proxy.listen: "), "{e}");
        // sharing the comment above is fine only when it names the key
        let e = config_page::render(&DEFAULT_TOML.replacen(
            "handshake), read_timeout and write_timeout for each",
            "handshake), the others for each",
            1,
        ))
        .unwrap_err();
        assert!(e.starts_with("proxy.read_timeout: "), "{e}");
        // a shipped signal's key must be one of the documented signal keys
        let e = config_page::render(&DEFAULT_TOML.replacen(
            "codes = [451]",
            "codes = [451]\nlimit = 3",
            1,
        ))
        .unwrap_err();
        assert!(e.contains("signals.suspended.limit"), "{e}");
    }

    #[test]
    fn a_removed_or_unwritten_family_is_caught() {
        let all = metrics_page::render(&names::FAMILIES).unwrap();
        let fewer: Vec<&str> = names::FAMILIES
            .iter()
            .copied()
            .filter(|f| *f != names::TENANT_SUSPENDED)
            .collect();
        // the exposition still writes it: named as missing from the list
        let e = metrics_page::render(&fewer).unwrap_err();
        assert!(e.contains(names::TENANT_SUSPENDED), "{e}");
        // a listed family that no mode writes is named
        let mut more = names::FAMILIES.to_vec();
        more.push("statuswatch_nowhere_total");
        let e = metrics_page::render(&more).unwrap_err();
        assert!(e.contains("statuswatch_nowhere_total"), "{e}");
        // and a page without a family is stale
        let without: String = all.replace("### statuswatch_tenant_suspended\n", "");
        assert!(stale(METRICS_MD, &without, &all).is_some());
    }
}
