//! What the index keeps of a message: the headers a `Row` shows, whether it
//! has attachments, its body text split into words for full-text search,
//! and whether it is malformed. Also the `MessageBody` of `get_content`.

use std::borrow::Cow;
use std::sync::OnceLock;

use mail_parser::{Address, HeaderName, Message, MessageParser, PartType};

/// At most this much body text is indexed for full-text search.
pub(crate) const MAX_INDEXED_TEXT: usize = 256 * 1024;

/// The headers and facts read from one message.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Extracted {
    pub to: Option<String>,
    pub from: Option<String>,
    pub cc: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub x_mailer: Option<String>,
    pub x_original_mailer: Option<String>,
    pub x_priority: Option<String>,
    pub received: Vec<String>,
    pub has_attachments: bool,
    /// The body text as lowercase words separated by single spaces.
    pub words: String,
    pub malformed: bool,
}

/// The MIME, address, date, id and `Received` headers parsed; the mailer
/// headers RFC 2047-decoded; the others kept raw.
fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .with_minimal_headers()
            .with_message_ids()
            .header_received(HeaderName::Received)
            .header_text(HeaderName::Other(Cow::Borrowed("X-Mailer")))
            .header_text(HeaderName::Other(Cow::Borrowed("X-Original-Mailer")))
    })
}

/// The parsed message, or `None` when it is malformed: it does not start
/// with a header field (a field name of printable ASCII, then a colon),
/// or mail-parser finds no header in it.
fn parse(raw: &[u8]) -> Option<Message<'_>> {
    let name_len = raw
        .iter()
        .take_while(|b| matches!(b, b'!'..=b'9' | b';'..=b'~'))
        .count();
    let after = raw[name_len..].iter().find(|b| !matches!(b, b' ' | b'\t'));
    if name_len == 0 || after != Some(&b':') {
        return None;
    }
    let message = parser().parse(raw)?;
    if message.headers().is_empty() {
        return None;
    }
    Some(message)
}

/// Reads what the index needs. Never fails: a message mail-parser cannot
/// read is `malformed`, with nothing else.
pub(crate) fn extract(raw: &[u8]) -> Extracted {
    let Some(message) = parse(raw) else {
        return Extracted {
            malformed: true,
            ..Extracted::default()
        };
    };
    // The text parts; failing those, the HTML parts as text.
    let mut words = String::new();
    let mut any_text = false;
    for part in message.text_bodies() {
        if words.len() >= MAX_INDEXED_TEXT {
            break;
        }
        if let PartType::Text(text) = &part.body {
            push_words(&mut words, text);
            any_text = true;
        }
    }
    if !any_text {
        for part in message.html_bodies() {
            if words.len() >= MAX_INDEXED_TEXT {
                break;
            }
            if let PartType::Html(html) = &part.body {
                push_words(&mut words, &html_words(html));
            }
        }
    }
    truncate_at_char(&mut words, MAX_INDEXED_TEXT);
    Extracted {
        to: address_header(&message, HeaderName::To, message.to()),
        from: address_header(&message, HeaderName::From, message.from()),
        cc: address_header(&message, HeaderName::Cc, message.cc()),
        subject: message
            .subject()
            .map(str::to_owned)
            .or_else(|| raw_header(&message, HeaderName::Subject)),
        date: raw_header(&message, HeaderName::Date),
        message_id: raw_header(&message, HeaderName::MessageId),
        in_reply_to: raw_header(&message, HeaderName::InReplyTo),
        x_mailer: text_header(&message, "X-Mailer"),
        x_original_mailer: text_header(&message, "X-Original-Mailer"),
        x_priority: raw_header(&message, HeaderName::Other("X-Priority".into())),
        received: raw_headers(&message, HeaderName::Received),
        has_attachments: message.attachment_count() > 0,
        words,
        malformed: false,
    }
}

/// `Text` and `Html` of `get_content`, and whether the message is
/// malformed.
pub(crate) fn content(raw: &[u8]) -> postern_model::MessageBody {
    let Some(message) = parse(raw) else {
        return postern_model::MessageBody {
            text: None,
            html: None,
            message_malformed: Some(true),
        };
    };
    let mut text: Option<String> = None;
    for part in message.text_bodies() {
        if let PartType::Text(t) = &part.body {
            text.get_or_insert_default().push_str(t);
        }
    }
    let mut html: Option<String> = None;
    for part in message.html_bodies() {
        if let PartType::Html(h) = &part.body {
            html.get_or_insert_default().push_str(h);
        }
    }
    postern_model::MessageBody {
        text,
        html,
        message_malformed: Some(false),
    }
}

/// Appends the lowercase words of `text` (maximal runs of letters and
/// digits) to `out`, separated by single spaces. The same function splits
/// indexed text and query text, for both databases.
pub(crate) fn push_words(out: &mut String, text: &str) {
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if !in_word && !out.is_empty() {
                out.push(' ');
            }
            in_word = true;
            for l in c.to_lowercase() {
                out.push(l);
            }
        } else {
            in_word = false;
        }
    }
}

/// The words of a query.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut joined = String::new();
    push_words(&mut joined, text);
    joined
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The text of HTML for word splitting: tags (and the content of
/// `script` and `style`) become spaces, character references are decoded.
/// (mail-parser's `html_to_text` joins block elements without a space:
/// `<h1>Big sale</h1><p>Everything` would index `saleeverything`.)
fn html_words(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            let from = ["<script", "<style"]
                .iter()
                .find(|open| lower[i..].starts_with(**open))
                .and_then(|open| lower[i..].find(&format!("</{}", &open[1..])))
                .map_or(i, |end| i + end);
            i = match html[from..].find('>') {
                Some(end) => from + end + 1,
                None => html.len(),
            };
            out.push(' ');
        } else if let Some(reference) = rest.strip_prefix('&') {
            let name_len = reference
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
                .unwrap_or(reference.len());
            let name = &reference[..name_len];
            let decoded = match name {
                "nbsp" => Some(' '),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    i += 1 + name_len + usize::from(reference[name_len..].starts_with(';'));
                }
                None => {
                    out.push('&');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The raw values of every `name` header, lossily decoded and unfolded.
fn raw_headers(message: &Message<'_>, name: HeaderName<'_>) -> Vec<String> {
    let raw = message.raw_message();
    message
        .headers()
        .iter()
        .filter(|h| h.name == name)
        .map(|h| {
            let bytes = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            unfold(&String::from_utf8_lossy(bytes))
        })
        .collect()
}

fn raw_header(message: &Message<'_>, name: HeaderName<'_>) -> Option<String> {
    raw_headers(message, name).into_iter().next()
}

/// Removes line breaks (CRLF or LF followed by white space becomes that
/// white space) and surrounding white space.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    // The folding white space itself is kept (RFC 5322 2.2.3).
    for line in value.split('\n') {
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    out.trim().to_owned()
}

/// An unstructured header, RFC 2047-decoded by mail-parser; raw otherwise.
fn text_header(message: &Message<'_>, name: &str) -> Option<String> {
    let name = HeaderName::Other(Cow::Borrowed(name));
    match message.header(name.clone()) {
        Some(value) => match value.as_text() {
            Some(text) => Some(text.trim().to_owned()),
            None => raw_header(message, name),
        },
        None => None,
    }
}

/// `Name <address>, ...`; the raw value when mail-parser found no address.
fn address_header(
    message: &Message<'_>,
    name: HeaderName<'_>,
    parsed: Option<&Address<'_>>,
) -> Option<String> {
    let rendered = parsed.map(render_addresses).filter(|s| !s.is_empty());
    rendered.or_else(|| raw_header(message, name))
}

fn render_addresses(address: &Address<'_>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: Option<&str>, addr: Option<&str>| {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let addr = addr.map(str::trim).filter(|a| !a.is_empty());
        match (name, addr) {
            (Some(n), Some(a)) => out.push(format!("{n} <{a}>")),
            (None, Some(a)) => out.push(a.to_owned()),
            (Some(n), None) => out.push(n.to_owned()),
            (None, None) => {}
        }
    };
    match address {
        Address::List(list) => {
            for a in list {
                push(a.name.as_deref(), a.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for g in groups {
                for a in &g.addresses {
                    push(a.name.as_deref(), a.address.as_deref());
                }
            }
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            words("Hello, WORLD! naïve café_au-lait 42x"),
            ["hello", "world", "naïve", "café", "au", "lait", "42x"]
        );
        assert!(words(" -- ").is_empty());
    }

    #[test]
    fn html_text() {
        assert_eq!(
            words(&html_words(
                "<html><head><STYLE>p { color: red }</style></head><body><h1>Big sale</h1>\
                 <p>Caf&eacute; &amp; cr&#232;me&#x21;<script>var x = 1;</script>end</p>"
            )),
            ["big", "sale", "caf", "eacute", "crème", "end"]
        );
        assert_eq!(words(&html_words("a<b")), ["a"]);
        assert_eq!(words(&html_words("x &unknown y &")), ["x", "unknown", "y"]);
        let raw =
            b"Subject: x\r\nContent-Type: text/html\r\n\r\n<h1>Big sale</h1><p>Everything</p>";
        assert_eq!(extract(raw).words, "big sale everything");
    }

    #[test]
    fn unfolding() {
        assert_eq!(unfold(" a\r\n\tb\r\n c\r\n"), "a\tb c");
    }

    #[test]
    fn headers() {
        let raw = b"From: =?UTF-8?B?w4lsw6lvbm9yZQ==?= <eleonore@example.org>\r\n\
To: a@x.test, \"B, Bee\" <b@y.test>\r\n\
Subject: =?ISO-8859-1?Q?Caf=E9?= menu\r\n\
Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: from c by d\r\n\
Message-ID: <m1@x.test>\r\n\
X-Priority: 1 (Highest)\r\n\
X-Mailer: =?UTF-8?Q?M=C3=A4iler?= 1.0\r\n\
\r\n\
Body words here.\r\n";
        let e = extract(raw);
        assert!(!e.malformed);
        assert_eq!(e.from.as_deref(), Some("Éléonore <eleonore@example.org>"));
        assert_eq!(e.to.as_deref(), Some("a@x.test, B, Bee <b@y.test>"));
        assert_eq!(e.subject.as_deref(), Some("Café menu"));
        assert_eq!(
            e.received,
            [
                "from a\tby b; Mon, 1 Jan 2024 00:00:00 +0000",
                "from c by d"
            ]
        );
        assert_eq!(e.message_id.as_deref(), Some("<m1@x.test>"));
        assert_eq!(e.x_priority.as_deref(), Some("1 (Highest)"));
        assert_eq!(e.x_mailer.as_deref(), Some("Mäiler 1.0"));
        assert_eq!(e.cc, None);
        assert_eq!(e.words, "body words here");
    }

    #[test]
    fn malformed() {
        assert!(extract(b"").malformed);
        assert!(content(b"").message_malformed.unwrap());
        assert!(extract(&[0u8, 159, 146, 150, 255, 0, 1, 2]).malformed);
        assert!(extract(b"just a line of text\r\n\r\nbody").malformed);
        assert!(extract(b"\r\nbody after an empty header").malformed);
        assert!(!extract(b"X-A: b\r\n\r\nbody").malformed);
    }
}
