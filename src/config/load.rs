//! Reading the layered sources: built-in defaults, then the file (bounded,
//! regular files only, refused when empty), then the environment; and
//! turning the config crate's errors into one line that names the key.

use super::*;

/// Most bytes read from a config or allowlist file. Real files are a few KiB;
/// the bound keeps `--config /dev/zero` or a runaway file from eating memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Read a small regular text file. The error is a one-line reason, without the
/// path (callers put the path or the key in front).
pub(crate) fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    // `metadata` follows symlinks, so Kubernetes' `..data` links are fine.
    let meta = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if meta.is_dir() {
        return Err("is a directory, not a file".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let too_big = || format!("larger than {} KiB", MAX_FILE_BYTES >> 10);
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io_reason(&e))?;
    // It may have grown between the stat and the read.
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".into())
}

/// An I/O error as a short reason, without the "(os error N)" noise.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let msg = e.to_string();
            match msg.split_once(" (os error") {
                Some((m, _)) => m.to_string(),
                None => msg,
            }
        }
    }
}

/// A loaded config plus the keys that were set explicitly (in the file or the
/// environment) rather than inherited from the built-in defaults. Reload uses
/// them to tell a deliberate change from a half-written file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub explicit: BTreeSet<String>,
}

impl Loaded {
    /// Whether `key` ("section.key") was set by the file or the environment.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }
}

/// Flatten a `config` crate table into dotted keys.
fn collect_keys(prefix: &str, map: config::Map<String, config::Value>, out: &mut BTreeSet<String>) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v.clone().into_table() {
            Ok(t) if !t.is_empty() => collect_keys(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

impl Config {
    /// Load defaults + file + environment and check the plain settings.
    /// What needs building (tenant rules, catalog, signals, the upstream's
    /// address, the admin allowlist) is validated by building it, once, in
    /// [`crate::state::Live::build`].
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::load_explicit(sources).map(|l| l.config)
    }

    /// [`Config::load`], also reporting which keys were set explicitly.
    pub fn load_explicit(sources: &Sources) -> Result<Loaded, ConfigError> {
        let mut explicit = BTreeSet::new();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = &sources.file {
            // Read it ourselves: bounded, regular files only, and errors that
            // name the file once.
            let text = read_small_file(path).map_err(|reason| ConfigError::Read {
                path: path.clone(),
                reason,
            })?;
            let parsed = config::Config::builder()
                .add_source(config::File::from_str(&text, config::FileFormat::Toml))
                .build()
                .map_err(|e| {
                    ConfigError::Parse(format!("{}: {}", path.display(), one_line(&e.to_string())))
                })?;
            let table = parsed
                .clone()
                .try_deserialize::<config::Map<String, config::Value>>()
                .map_err(|e| {
                    ConfigError::Parse(format!("{}: {}", path.display(), one_line(&e.to_string())))
                })?;
            collect_keys("", table, &mut explicit);
            if explicit.is_empty() {
                // A file being rewritten (truncate, then write) is empty for a
                // moment; applying it would silently bring back every default.
                return Err(ConfigError::Read {
                    path: path.clone(),
                    reason: "has no settings (empty, or only comments); refusing it".into(),
                });
            }
            // Arrays of tables replace the defaults wholesale (a catalog is a
            // list, not a patch), so drop the default catalog when the file has one.
            if parsed
                .get_table("catalog")
                .is_ok_and(|t| t.contains_key("codes"))
            {
                builder = config::Config::builder().add_source(config::File::from_str(
                    &strip_default_catalog(),
                    config::FileFormat::Toml,
                ));
            }
            builder = builder.add_source(parsed);
        }
        let mut env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        let env_prefix = format!("{ENV_PREFIX}__");
        let env_keys: Vec<String> = match &sources.env {
            Some(map) => map.keys().cloned().collect(),
            None => std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect(),
        };
        explicit.extend(env_keys.iter().filter_map(|k| {
            k.strip_prefix(&env_prefix)
                .map(|rest| rest.to_ascii_lowercase().replace("__", "."))
        }));
        if let Some(map) = &sources.env {
            env = env.source(Some(map.clone().into_iter().collect()));
        }
        builder = builder.add_source(env);
        let cfg: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse(describe_parse_error(e, sources.file.as_deref())))?;
        cfg.validate()?;
        Ok(Loaded {
            config: cfg,
            explicit,
        })
    }

    /// Built-in defaults (the shipped file), validated.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(&Sources {
            file: None,
            env: Some(BTreeMap::new()),
        })
    }
}

/// The shipped defaults without the catalog list, used when a file brings its own.
fn strip_default_catalog() -> String {
    DEFAULT_TOML
        .split("[[catalog.codes]]")
        .next()
        .unwrap_or(DEFAULT_TOML)
        .to_string()
        + "\n[catalog]\ncodes = []\n"
}

/// Fold a multi-line parser message (source excerpts, carets) into one line.
pub(super) fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| {
            let excerpt = l.starts_with('|')
                || l.split_once('|')
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
            !l.is_empty() && !excerpt && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Make the config crate's message say where it came from, on one line.
fn describe_parse_error(e: config::ConfigError, file: Option<&Path>) -> String {
    let msg = one_line(&e.to_string());
    match file {
        Some(path) if !msg.contains(&*path.to_string_lossy()) => {
            format!(
                "{msg} (config file {} or STATUSWATCH__* environment)",
                path.display()
            )
        }
        _ => msg,
    }
}
