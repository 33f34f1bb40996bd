//! Redaction of secrets (API keys) for log lines: enough of the key to tell
//! two clients apart, never enough to use it.

/// At most the first 8 characters of a secret, for logs: `abcd1234…`.
pub fn redact(secret: &[u8]) -> String {
    let shown: String = secret
        .iter()
        .take(8)
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if secret.len() > 8 {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_shows_at_most_8_chars() {
        assert_eq!(redact(b"sk_live_1234567890abcdef"), "sk?live?…");
        assert_eq!(redact(b"short"), "short");
    }
}
