//! The shipped config's tables, keys and the comment blocks that document
//! them, parsed for `docs/reference/configuration.md` ([`super::config_page`]).
//! A key's meaning is the comment block right above it; see the page module
//! for the rules.

/// One documented key.
#[derive(Debug)]
pub(super) struct Key {
    /// Full dotted name: `proxy.listen`, `signals.NAME.floor`,
    /// `route_tally.routes[].path`.
    pub(super) name: String,
    /// The value as written in the file (the default, or an example).
    pub(super) value: String,
    /// From a commented-out table: not in the defaults, `value` is an example.
    pub(super) example: bool,
    pub(super) meaning: Vec<String>,
    /// The key above whose comment this one shares.
    pub(super) shares: Option<String>,
}

/// A table: a section of the file or a documented commented-out one.
#[derive(Debug)]
pub(super) struct Table {
    /// Dotted name; `NAME` stands for any one segment.
    pub(super) name: String,
    /// `[[name]]`: each entry is a table of its own.
    pub(super) array: bool,
    /// From a commented-out table.
    pub(super) example: bool,
    /// The comment above the table's header.
    pub(super) intro: Vec<String>,
    pub(super) keys: Vec<Key>,
    /// Shipped tables of this shape: their header and `key = value` lines.
    pub(super) instances: Vec<(String, Vec<(String, String)>)>,
}

impl Table {
    pub(super) fn header(&self) -> String {
        if self.array {
            format!("[[{}]]", self.name)
        } else {
            format!("[{}]", self.name)
        }
    }

    pub(super) fn key_prefix(&self) -> String {
        if self.array {
            format!("{}[]", self.name)
        } else {
            self.name.clone()
        }
    }

    /// Whether the header `segments` is a shipped instance of this table.
    fn matches(&self, segments: &[String], array: bool) -> bool {
        let mine: Vec<&str> = self.name.split('.').collect();
        self.example
            && self.array == array
            && mine.len() == segments.len()
            && mine
                .iter()
                .zip(segments)
                .all(|(m, s)| *m == "NAME" || m == s)
    }
}

enum Line<'a> {
    Blank,
    Comment(String),
    Header(Vec<String>, bool),
    Key(&'a str, &'a str),
}

fn classify(line: &str) -> Result<Line<'_>, String> {
    let t = line.trim();
    if t.is_empty() {
        return Ok(Line::Blank);
    }
    if let Some(c) = t.strip_prefix('#') {
        return Ok(Line::Comment(c.strip_prefix(' ').unwrap_or(c).to_string()));
    }
    if let Some(h) = t.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
        return Ok(Line::Header(segments(h)?, true));
    }
    if let Some(h) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Ok(Line::Header(segments(h)?, false));
    }
    match t.split_once('=') {
        Some((k, v))
            if !k.trim().is_empty()
                && k.trim()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            let v = v.trim();
            if v.starts_with('[') && !v.ends_with(']') {
                return Err(format!("{t:?}: a value over several lines"));
            }
            Ok(Line::Key(k.trim(), v))
        }
        _ => Err(format!("{t:?}: neither a comment, a table nor a key")),
    }
}

/// `signals."5xx"` as `["signals", "5xx"]`.
fn segments(header: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in header.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("one segment").push(c),
        }
    }
    if quoted || out.iter().any(String::is_empty) {
        return Err(format!("[{header}]: not a table name"));
    }
    Ok(out)
}

/// Split a comment block at its first commented-out table header: the prose
/// above it, and the commented-out TOML from it on.
fn split_example(block: &[String]) -> (Vec<String>, Vec<String>) {
    let at = block
        .iter()
        .position(|l| matches!(classify(l), Ok(Line::Header(..))));
    match at {
        Some(i) => (block[..i].to_vec(), block[i..].to_vec()),
        None => (block.to_vec(), Vec::new()),
    }
}

/// Whether `text` names `key` as a word (`_` is part of a word).
fn names(text: &[String], key: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    text.iter().any(|l| {
        l.match_indices(key).any(|(i, _)| {
            let before = l.as_bytes().get(i.wrapping_sub(1)).copied();
            let after = l.as_bytes().get(i + key.len()).copied();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
    })
}

/// Every table of `text` (a file, or a commented-out example one level down).
fn parse(text: &[String], example: bool, tables: &mut Vec<Table>) -> Result<(), String> {
    let mut pending: Vec<String> = Vec::new();
    // The block above the current run of keys, for keys it names.
    let mut shared: Option<Vec<String>> = None;
    // Index in `tables` of the table keys go to, and whether it is a shipped instance.
    let mut current: Option<(usize, bool)> = None;
    let mut after_comment = false;
    for line in text {
        let kind = classify(line)?;
        let is_comment = matches!(kind, Line::Comment(_));
        match kind {
            Line::Blank => {
                pending.clear();
                shared = None;
            }
            Line::Comment(c) => {
                if !after_comment {
                    pending.clear();
                }
                pending.push(c);
            }
            Line::Header(segs, array) => {
                let (prose, nested) = split_example(&pending);
                if !nested.is_empty() {
                    parse(&nested, true, tables)?;
                }
                pending.clear();
                shared = None;
                if let Some(i) = tables.iter().position(|t| t.matches(&segs, array)) {
                    if !prose.is_empty() {
                        if !tables[i].intro.is_empty() {
                            return Err(format!(
                                "{}: a second comment above a {} table",
                                segs.join("."),
                                tables[i].header()
                            ));
                        }
                        tables[i].intro = prose;
                    }
                    let shown = match array {
                        true => String::new(),
                        false => format!("[{}]", header_text(&segs)),
                    };
                    tables[i].instances.push((shown, Vec::new()));
                    current = Some((i, true));
                } else {
                    let name = segs.join(".");
                    if tables.iter().any(|t| t.name == name) {
                        return Err(format!("[{name}]: twice"));
                    }
                    tables.push(Table {
                        name,
                        array,
                        example,
                        intro: prose,
                        keys: Vec::new(),
                        instances: Vec::new(),
                    });
                    current = Some((tables.len() - 1, false));
                }
            }
            Line::Key(k, v) => {
                let Some((i, instance)) = current else {
                    return Err(format!("{k}: a key before any table"));
                };
                let t = &mut tables[i];
                if instance {
                    if !t
                        .keys
                        .iter()
                        .any(|key| key.name.ends_with(&format!(".{k}")))
                    {
                        let (shown, _) = t.instances.last().expect("an instance");
                        let at = if shown.is_empty() {
                            t.header()
                        } else {
                            shown.clone()
                        };
                        return Err(format!(
                            "{}.{k}: not a documented key of {} (in {at})",
                            at.trim_matches(['[', ']']).replace('"', ""),
                            t.header()
                        ));
                    }
                    let (_, values) = t.instances.last_mut().expect("an instance");
                    values.push((k.to_string(), v.to_string()));
                    continue;
                }
                let name = format!("{}.{k}", t.key_prefix());
                let mut shares = None;
                let meaning = if !pending.is_empty() {
                    let (prose, nested) = split_example(&pending);
                    pending.clear();
                    if !nested.is_empty() {
                        parse(&nested, true, tables)?;
                    }
                    shared = Some(prose.clone());
                    prose
                } else {
                    match &shared {
                        Some(block) if names(block, k) => {
                            shares = t.keys.last().map(|k| k.shares.clone().unwrap_or(k.name.clone()));
                            block.clone()
                        }
                        _ => {
                            return Err(format!(
                                "{name}: no comment says what it means; add one above it in config/statuswatch.toml (a key may share the comment above only when that comment names it)"
                            ))
                        }
                    }
                };
                if meaning.iter().all(|l| l.trim().is_empty()) {
                    return Err(format!("{name}: its comment is empty"));
                }
                let t = &mut tables[i];
                if t.keys.iter().any(|key| key.name == name) {
                    return Err(format!("{name}: twice"));
                }
                t.keys.push(Key {
                    name,
                    value: v.to_string(),
                    example,
                    meaning,
                    shares,
                });
            }
        }
        after_comment = is_comment;
    }
    Ok(())
}

/// `["signals", "5xx"]` as written in a header: `signals."5xx"`.
fn header_text(segs: &[String]) -> String {
    segs.iter()
        .map(|s| {
            if s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && !s.as_bytes()[0].is_ascii_digit()
            {
                s.clone()
            } else {
                format!("\"{s}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn tables_of(toml: &str) -> Result<Vec<Table>, String> {
    let lines: Vec<String> = toml.lines().map(str::to_string).collect();
    let mut tables = Vec::new();
    parse(&lines, false, &mut tables)?;
    for t in &tables {
        if t.keys.is_empty() {
            return Err(format!("{}: a table without documented keys", t.header()));
        }
    }
    Ok(tables)
}
