//! Fuzz the layered config loader on arbitrary TOML text.
//!
//! Input: TOML text, optionally followed by a NUL byte and environment
//! overrides as `KEY=VALUE` lines (e.g. `STATUSWATCH__PROXY__THREADS=3`), so
//! both sources and their interaction are exercised. The process environment
//! is never read (`Sources::env` is always `Some`).
//!
//! Properties: never panics; a loaded config validates again, and its tenant
//! rules build or fail naming a `tenant.` key; every error is one line (the
//! design promises one-line, key-named errors). Loading resolves no names
//! (`proxy.upstream` is resolved by `state::Live::build`).
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use statuswatch::config::{Config, Sources};

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(toml) = std::str::from_utf8(toml) else {
        return;
    };
    let mut vars = BTreeMap::new();
    for line in String::from_utf8_lossy(env).lines() {
        if let Some((k, v)) = line.split_once('=') {
            // Only our own prefix: anything else is ignored by the loader anyway.
            if k.starts_with("STATUSWATCH__") {
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(toml.as_bytes()).expect("write temp file");
    f.flush().expect("flush");
    let sources = Sources {
        file: Some(f.path().to_path_buf()),
        env: Some(vars),
    };
    match Config::load(&sources) {
        Ok(cfg) => {
            cfg.validate().expect("a loaded config validates again");
            // Tenant rules are checked when built (state::Live::build), not at
            // load: either they build, or the error names a tenant key.
            if let Err(e) = statuswatch::tenant::ResolverSpec::from_config(&cfg.tenant) {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("tenant."),
                    "tenant rules error without its key: {msg:?}"
                );
                assert!(!msg.contains('\n'), "multi-line config error: {msg:?}");
            }
            let _ = cfg.worker_threads();
            let _ = cfg.sni();
            assert!(cfg.restart_required_changes(&cfg).is_empty());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line config error: {msg:?}");
        }
    }
});
