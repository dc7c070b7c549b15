//! Addresses compared as addresses: `local@domain`, without display name,
//! angle brackets or quoting, in lower case, with an internationalized
//! domain in its Unicode form so that `bücher.example` and
//! `xn--bcher-kva.example` are the same domain.

/// Normalizes an address (or a fragment of one, as a rule value may be).
pub fn normalize(text: &str) -> String {
    let text = text.trim();
    let text = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text);
    let mut lowered = text.to_lowercase();
    if lowered.starts_with('"') {
        lowered = unquote_local(&lowered);
    }
    if !lowered.contains("xn--") {
        return lowered;
    }
    match lowered.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", unicode_domain(domain)),
        None => unicode_domain(&lowered),
    }
}

/// `"john doe"@example.com` as `john doe@example.com`: the quotes (and the
/// backslash escapes inside them) are syntax, not part of the local part.
/// Text that is not a quoted string followed by `@` is returned as it is.
fn unquote_local(text: &str) -> String {
    let mut local = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => local.push(escaped),
                None => break,
            },
            '"' => {
                let rest = &text[1 + i + 1..];
                if rest.starts_with('@') {
                    return local + rest;
                }
                break;
            }
            c => local.push(c),
        }
    }
    text.to_string()
}

/// Decodes each `xn--` label; other labels are left as they are, so a
/// fragment such as `.xn--bcher-kva.example` decodes too.
fn unicode_domain(domain: &str) -> String {
    domain
        .split('.')
        .map(|label| {
            if label.starts_with("xn--") {
                let (decoded, result) = idna::domain_to_unicode(label);
                if result.is_ok() {
                    return decoded;
                }
            }
            label.to_string()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The domain of a normalized address, if it has one.
pub fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_brackets_and_idn() {
        assert_eq!(normalize("<Bob@Example.COM>"), "bob@example.com");
        assert_eq!(
            normalize("user@XN--BCHER-KVA.example"),
            "user@bücher.example"
        );
        assert_eq!(normalize("user@bücher.example"), "user@bücher.example");
        assert_eq!(normalize(".xn--bcher-kva.example"), ".bücher.example");
        assert_eq!(normalize("bob+tag@example.com"), "bob+tag@example.com");
        assert_eq!(
            normalize("\"John Doe\"@Example.com"),
            "john doe@example.com"
        );
        assert_eq!(normalize("<\"a\\\"b\"@example.com>"), "a\"b@example.com");
        assert_eq!(normalize("\"a b\"@"), "a b@");
        assert_eq!(normalize("\"unterminated@x"), "\"unterminated@x");
        assert_eq!(normalize("\"no at\""), "\"no at\"");
        assert_eq!(domain_of("bob@example.com"), Some("example.com"));
        assert_eq!(domain_of("bob"), None);
    }
}
