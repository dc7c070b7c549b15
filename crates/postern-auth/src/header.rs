//! The Authentication-Results header field (RFC 8601 §2.2):
//!
//! ```text
//! Authentication-Results: mx.example.net;
//!     spf=pass (ip 203.0.113.5 permitted by sender.test) smtp.mailfrom=a@sender.test;
//!     dkim=pass header.d=sender.test header.s=sel header.b=AbCdEfGh;
//!     dmarc=pass (p=reject dis=none) header.from=sender.test;
//!     arc=none smtp.remote-ip=203.0.113.5
//! ```
//!
//! One `resinfo` per line, folded with CRLF TAB (shown as spaces above);
//! comments in parentheses with `(`, `)` and `\` escaped; values as RFC
//! 2045 tokens, or as `local-part@domain` when that is a dot-atom, else
//! quoted strings.

/// One method's result: `method=result (comment) ptype.property=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResInfo {
    pub(crate) method: &'static str,
    pub(crate) result: &'static str,
    pub(crate) comment: Option<String>,
    pub(crate) properties: Vec<(&'static str, String)>,
}

impl ResInfo {
    pub(crate) fn new(method: &'static str, result: &'static str) -> ResInfo {
        ResInfo {
            method,
            result,
            comment: None,
            properties: Vec::new(),
        }
    }

    pub(crate) fn comment(mut self, comment: impl Into<String>) -> ResInfo {
        let comment = comment.into();
        if !comment.is_empty() {
            self.comment = Some(comment);
        }
        self
    }

    pub(crate) fn property(mut self, name: &'static str, value: impl Into<String>) -> ResInfo {
        let value = value.into();
        if !value.is_empty() {
            self.properties.push((name, value));
        }
        self
    }

    /// The resinfo as it appears in the header (also a trace detail).
    pub(crate) fn render(&self) -> String {
        let mut out = format!("{}={}", self.method, self.result);
        if let Some(comment) = &self.comment {
            out.push_str(" (");
            push_ctext(&mut out, comment);
            out.push(')');
        }
        for (name, value) in &self.properties {
            out.push(' ');
            out.push_str(name);
            out.push('=');
            push_pvalue(&mut out, value);
        }
        out
    }
}

/// The whole header field, CRLF-terminated.
pub(crate) fn render(authserv_id: &str, resinfos: &[ResInfo]) -> String {
    let mut out = String::from("Authentication-Results: ");
    push_value(&mut out, authserv_id);
    if resinfos.is_empty() {
        out.push_str("; none");
    }
    for resinfo in resinfos {
        out.push_str(";\r\n\t");
        out.push_str(&resinfo.render());
    }
    out.push_str("\r\n");
    out
}

/// RFC 2045 token characters (no tspecials, no space, no controls).
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// RFC 5322 atext.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.chars().all(is_atext))
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `value` (RFC 2045: token / quoted-string).
fn push_value(out: &mut String, value: &str) {
    if is_token(value) {
        out.push_str(value);
    } else {
        push_quoted(out, value);
    }
}

/// `pvalue` (RFC 8601 §2.2): a value, or `[local-part] "@" domain-name`.
fn push_pvalue(out: &mut String, value: &str) {
    if let Some((local, domain)) = value.rsplit_once('@')
        && (local.is_empty() || is_dot_atom(local))
        && is_domain(domain)
    {
        out.push_str(value);
    } else {
        push_value(out, value);
    }
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn push_ctext(out: &mut String, comment: &str) {
    for c in comment.chars() {
        if c.is_control() {
            out.push(' ');
            continue;
        }
        if matches!(c, '(' | ')' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        let header = render(
            "mx.postern.test",
            &[
                ResInfo::new("spf", "softfail")
                    .comment("ip 203.0.113.5 not permitted by sender.test")
                    .property("smtp.mailfrom", "alice@sender.test"),
                ResInfo::new("dkim", "fail")
                    .comment("body hash mismatch")
                    .property("header.d", "sender.test")
                    .property("header.s", "sel")
                    .property("header.b", "AbC+/dEf"),
                ResInfo::new("dmarc", "fail")
                    .comment("p=reject dis=reject")
                    .property("header.from", "sender.test"),
                ResInfo::new("arc", "none")
                    .comment("a (nested) \\ comment\r\n")
                    .property("smtp.remote-ip", "2001:db8::5"),
                ResInfo::new("spf", "none")
                    .property("smtp.mailfrom", "\"odd local\"@sender.test")
                    .property("smtp.helo", ""),
            ],
        );
        assert_eq!(
            header,
            "Authentication-Results: mx.postern.test;\r\n\
             \tspf=softfail (ip 203.0.113.5 not permitted by sender.test) smtp.mailfrom=alice@sender.test;\r\n\
             \tdkim=fail (body hash mismatch) header.d=sender.test header.s=sel header.b=\"AbC+/dEf\";\r\n\
             \tdmarc=fail (p=reject dis=reject) header.from=sender.test;\r\n\
             \tarc=none (a \\(nested\\) \\\\ comment  ) smtp.remote-ip=\"2001:db8::5\";\r\n\
             \tspf=none smtp.mailfrom=\"\\\"odd local\\\"@sender.test\"\r\n"
        );
        // Every line but the first is a continuation, none is longer than 998.
        for (i, line) in header.trim_end_matches("\r\n").split("\r\n").enumerate() {
            assert_eq!(i > 0, line.starts_with('\t'), "{line}");
            assert!(line.len() <= 998);
        }
    }

    #[test]
    fn none_and_quoted_authserv_id() {
        assert_eq!(
            render("mx.postern.test", &[]),
            "Authentication-Results: mx.postern.test; none\r\n"
        );
        assert!(render("odd id", &[]).starts_with("Authentication-Results: \"odd id\"; none"));
    }

    #[test]
    fn tokens() {
        assert!(is_token("mx.postern.test"));
        assert!(!is_token("a b"));
        assert!(!is_token("a;b"));
        assert!(!is_token(""));
    }
}
