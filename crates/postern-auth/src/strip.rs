//! Removing forged Authentication-Results fields (RFC 8601 §5): a field
//! that claims this gateway's authserv-id and arrived with the message
//! was not written by this gateway, since it adds its own after
//! receiving. ARC-Authentication-Results fields are left alone: they
//! belong to ARC sets, are sealed, and carry an instance tag first.

use std::borrow::Cow;

const FIELD: &[u8] = b"authentication-results";

/// Removes every `Authentication-Results` field whose authserv-id is
/// `authserv_id` (compared case-insensitively) from the header section,
/// folded lines included, and returns the message without them; borrowed
/// when there was none. The body is never touched.
pub fn strip_forged_results<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let mut remove: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = field_end(message, pos);
        let field = &message[pos..end];
        if field == b"\r\n" || field == b"\n" {
            break; // the blank line: the body follows
        }
        if let Some(value) = field_value(field, FIELD)
            && authserv_id_of(value)
                .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.as_bytes()))
        {
            remove.push((pos, end));
        }
        pos = end;
    }
    if remove.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut last = 0;
    for (start, end) in remove {
        out.extend_from_slice(&message[last..start]);
        last = end;
    }
    out.extend_from_slice(&message[last..]);
    Cow::Owned(out)
}

/// The end of the field starting at `start`: after its last line's LF,
/// continuation lines (starting with SP or HTAB) included.
fn field_end(message: &[u8], start: usize) -> usize {
    let mut pos = start;
    loop {
        match memchr(b'\n', &message[pos..]) {
            Some(i) => pos += i + 1,
            None => return message.len(),
        }
        if !matches!(message.get(pos), Some(b' ' | b'\t')) {
            return pos;
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// The value of `field` if its name is `name` (case-insensitive; blanks
/// before the colon are tolerated, RFC 5322 §4.5.3 obsolete syntax).
fn field_value<'a>(field: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = field.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = &field[name.len()..];
    let colon = rest.iter().position(|b| !matches!(b, b' ' | b'\t'))?;
    (rest[colon] == b':').then(|| &rest[colon + 1..])
}

/// The authserv-id: the first `value` after optional CFWS (RFC 8601
/// §2.2): a token, or a quoted-string (returned without its quotes;
/// escapes are rare enough in host names to be compared as written).
fn authserv_id_of(value: &[u8]) -> Option<&[u8]> {
    let mut pos = skip_cfws(value, 0);
    if value.get(pos) == Some(&b'"') {
        pos += 1;
        let start = pos;
        while pos < value.len() && value[pos] != b'"' {
            pos += if value[pos] == b'\\' { 2 } else { 1 };
        }
        return value.get(start..pos.min(value.len()));
    }
    let start = pos;
    while pos < value.len() && !matches!(value[pos], b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(') {
        pos += 1;
    }
    (pos > start).then(|| &value[start..pos])
}

/// Skips folding white space and (nested) comments.
fn skip_cfws(value: &[u8], mut pos: usize) -> usize {
    let mut depth = 0usize;
    while pos < value.len() {
        match value[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => pos += 1,
            _ if depth > 0 => {}
            _ => break,
        }
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_ours_keeps_others() {
        let message = b"Received: from x\r\n\
Authentication-Results: MX.Postern.Test;\r\n\tspf=pass smtp.mailfrom=a@b.test\r\n\
Authentication-Results: other.test; dkim=pass\r\n\
authentication-results : (comment (nested)) \"mx.postern.test\" 1; none\r\n\
ARC-Authentication-Results: i=1; mx.postern.test; spf=pass\r\n\
Authentication-Results: mx.postern.test.evil; none\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.postern.test; body text stays\r\n";
        let stripped = strip_forged_results(message, "mx.postern.test");
        assert!(matches!(stripped, Cow::Owned(_)));
        assert_eq!(
            std::str::from_utf8(&stripped).unwrap(),
            "Received: from x\r\n\
Authentication-Results: other.test; dkim=pass\r\n\
ARC-Authentication-Results: i=1; mx.postern.test; spf=pass\r\n\
Authentication-Results: mx.postern.test.evil; none\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.postern.test; body text stays\r\n"
        );
    }

    #[test]
    fn borrowed_when_nothing_to_remove() {
        let message = b"Authentication-Results: other.test; none\r\n\r\nbody\r\n";
        assert!(matches!(
            strip_forged_results(message, "mx.postern.test"),
            Cow::Borrowed(_)
        ));
        // A header section without a body, last field unterminated.
        let message = b"Subject: x\r\nAuthentication-Results: mx.postern.test; none";
        assert_eq!(
            &*strip_forged_results(message, "mx.postern.test"),
            b"Subject: x\r\n"
        );
        // LF line endings.
        let message = b"Authentication-Results: mx.postern.test;\n spf=pass\nTo: b\n\nx";
        assert_eq!(
            &*strip_forged_results(message, "mx.postern.test"),
            b"To: b\n\nx"
        );
    }
}
