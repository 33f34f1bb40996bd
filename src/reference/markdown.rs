//! Comment and doc text as Markdown: prose lines joined into paragraphs,
//! indented lines (tables, formulas, examples) kept as preformatted blocks,
//! and the few characters Markdown would misread in prose escaped.

/// Comment lines (without their `# `) as Markdown paragraphs.
pub(super) fn paragraphs(lines: &[String]) -> String {
    let mut out = String::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut pre: Vec<&str> = Vec::new();
    let flush_prose = |prose: &mut Vec<&str>, out: &mut String| {
        if !prose.is_empty() {
            out.push_str(&escape(&prose.join(" ")));
            out.push_str("\n\n");
            prose.clear();
        }
    };
    let flush_pre = |pre: &mut Vec<&str>, out: &mut String| {
        if !pre.is_empty() {
            out.push_str("```text\n");
            for l in pre.iter() {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("```\n\n");
            pre.clear();
        }
    };
    for line in lines {
        if line.trim().is_empty() {
            flush_prose(&mut prose, &mut out);
            flush_pre(&mut pre, &mut out);
        } else if line.starts_with("  ") {
            flush_prose(&mut prose, &mut out);
            pre.push(line);
        } else {
            flush_pre(&mut pre, &mut out);
            prose.push(line.trim());
        }
    }
    flush_prose(&mut prose, &mut out);
    flush_pre(&mut pre, &mut out);
    out
}

/// Escape prose for Markdown outside code spans: `*` and `<` literally,
/// and reserved names such as `__other__` (which would turn bold) as code.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        let mut rest = part;
        while !rest.is_empty() {
            if let Some(len) = reserved_name_len(rest) {
                out.push('`');
                out.push_str(&rest[..len]);
                out.push('`');
                rest = &rest[len..];
                continue;
            }
            let c = rest.chars().next().unwrap_or_default();
            match c {
                '*' => out.push_str("\\*"),
                '<' => out.push_str("&lt;"),
                _ => out.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Length of a `__name__` at the start of `s`, if there is one.
fn reserved_name_len(s: &str) -> Option<usize> {
    let inner = s.strip_prefix("__")?;
    let end = inner.find("__")?;
    let name = &inner[..end];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase())).then_some(end + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_joined_and_tables_kept() {
        let lines: Vec<String> = [
            "Counts as \"__invalid__\", a * b <x>.",
            "More.",
            "",
            "  a   b",
            "  c   d",
            "After `__x__`.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            paragraphs(&lines),
            "Counts as \"`__invalid__`\", a \\* b &lt;x>. More.\n\n```text\n  a   b\n  c   d\n```\n\nAfter `__x__`.\n\n"
        );
    }
}
