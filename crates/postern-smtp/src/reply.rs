//! SMTP replies: code, enhanced status code (RFC 3463) and text. Every reply
//! the server sends is built here, so the wording stays consistent and no
//! internal detail reaches the network.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code, sent when the client may expect it.
    pub status: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code (greeting, 354, 334).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines: vec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form (CRLF line endings; multi-line with `-`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = write!(text, "{}{sep}", self.code);
            if let Some((a, b, c)) = self.status {
                let _ = write!(text, "{a}.{b}.{c} ");
            }
            // A reply line never carries a bare CR or LF from its text.
            text.extend(
                line.chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
            );
            text.push_str("\r\n");
        }
        out.extend_from_slice(text.as_bytes());
    }
}

pub fn ok(text: impl Into<String>) -> Reply {
    Reply::new(250, (2, 0, 0), text)
}

pub fn syntax(text: impl Into<String>) -> Reply {
    Reply::new(501, (5, 5, 4), text)
}

pub fn bad_sequence(text: impl Into<String>) -> Reply {
    Reply::new(503, (5, 5, 1), text)
}

/// A local problem: the client should retry later. The queue id or session
/// id lets an operator find the log line; the cause stays in the log.
pub fn temporary_failure(reference: &str) -> Reply {
    Reply::new(
        451,
        (4, 3, 0),
        format!("Temporary local problem, please try again later (ref {reference})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let mut out = Vec::new();
        Reply::new(250, (2, 1, 0), "Sender ok").write_to(&mut out);
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>").write_to(&mut out);
        let multi = Reply {
            code: 250,
            status: None,
            lines: vec!["mx.example".into(), "PIPELINING".into()],
        };
        multi.write_to(&mut out);
        Reply::new(550, (5, 7, 1), "evil\r\n250 injected").write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "250 2.1.0 Sender ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250-mx.example\r\n250 PIPELINING\r\n550 5.7.1 evil  250 injected\r\n"
        );
    }
}
