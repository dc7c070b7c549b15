//! The values conditions look at, taken from the message once, normalized
//! once (lower case, addresses as addresses, headers decoded and unfolded).

use crate::address::normalize;
use crate::envelope::Envelope;
use mail_parser::{Addr, Address, Header, HeaderName, HeaderValue, Message, MessageParser};

/// The parser configuration the engine expects: address headers parsed as
/// addresses, every other header decoded (RFC 2047) and unfolded.
pub fn message_parser() -> MessageParser {
    MessageParser::new()
        .with_address_headers()
        .with_mime_headers()
        .with_date_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .default_header_text()
}

/// A string attribute a condition can evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Attr {
    MailFrom,
    Helo,
    Recipient,
    Sender,
    From,
    Subject,
    To,
    Cc,
    /// An X- header, by index into the compiled set's header names.
    Header(u32),
    /// An add-on result, by index into the compiled set's analysis keys.
    Analysis(u32),
    ClientCertificate(postern_model::RuleClientCertificateAttribute),
}

impl Attr {
    pub(crate) fn of(a: postern_model::RuleStringEmailAttribute) -> Attr {
        use postern_model::RuleStringEmailAttribute as A;
        match a {
            A::MailFrom => Attr::MailFrom,
            A::Helo => Attr::Helo,
            A::Recipient => Attr::Recipient,
            A::Sender => Attr::Sender,
            A::From => Attr::From,
            A::Subject => Attr::Subject,
            A::To => Attr::To,
            A::Cc => Attr::Cc,
        }
    }
}

/// What a compiled set of conditions needs from a message.
#[derive(Debug, Clone, Default)]
pub(crate) struct Needs {
    /// X- headers read by conditions, by lower-case name.
    pub headers: ahash::AHashMap<String, u32>,
    pub addresses: bool,
    pub subject: bool,
    pub read_receipt: bool,
}

impl Needs {
    /// The index of a header, registering it on first use.
    pub(crate) fn header(&mut self, name: &str) -> u32 {
        let next = self.headers.len() as u32;
        *self
            .headers
            .entry(name.to_ascii_lowercase())
            .or_insert(next)
    }
}

#[derive(Debug, Default)]
pub struct Facts {
    pub(crate) mail_from: Vec<String>,
    pub(crate) helo: Vec<String>,
    pub(crate) sender: Vec<String>,
    pub(crate) from: Vec<String>,
    pub(crate) subject: Vec<String>,
    pub(crate) to: Vec<String>,
    pub(crate) cc: Vec<String>,
    pub(crate) headers: Vec<Vec<String>>,
    pub(crate) read_receipt: bool,
    pub(crate) size: u64,
}

impl Facts {
    pub(crate) fn extract(
        envelope: &Envelope,
        message: &Message,
        size: u64,
        needs: &Needs,
    ) -> Facts {
        let mut facts = Facts {
            size,
            headers: vec![Vec::new(); needs.headers.len()],
            ..Facts::default()
        };
        if !envelope.mail_from.is_empty() {
            facts.mail_from.push(normalize(&envelope.mail_from));
        }
        if let Some(helo) = &envelope.helo {
            // A domain (or an address literal): compared as an address's domain is.
            facts.helo.push(normalize(helo));
        }
        // A message mail-parser could make nothing of has no parts at all.
        let headers = message
            .parts
            .first()
            .map(|p| p.headers.as_slice())
            .unwrap_or_default();
        for header in headers {
            match &header.name {
                HeaderName::From if needs.addresses => addresses(message, header, &mut facts.from),
                HeaderName::Sender if needs.addresses => {
                    addresses(message, header, &mut facts.sender)
                }
                HeaderName::To if needs.addresses => addresses(message, header, &mut facts.to),
                HeaderName::Cc if needs.addresses => addresses(message, header, &mut facts.cc),
                HeaderName::Subject if needs.subject => text(&header.value, &mut facts.subject),
                HeaderName::DispositionNotificationTo => facts.read_receipt = true,
                name => {
                    let name = name.as_str();
                    if needs.read_receipt && name.eq_ignore_ascii_case("Return-Receipt-To") {
                        facts.read_receipt = true;
                    }
                    if !needs.headers.is_empty()
                        && let Some(&i) = needs.headers.get(&name.to_ascii_lowercase())
                    {
                        text(&header.value, &mut facts.headers[i as usize]);
                    }
                }
            }
        }
        facts
    }

    pub(crate) fn candidates(&self, attr: Attr) -> &[String] {
        match attr {
            Attr::MailFrom => &self.mail_from,
            Attr::Helo => &self.helo,
            Attr::Sender => &self.sender,
            Attr::From => &self.from,
            Attr::Subject => &self.subject,
            Attr::To => &self.to,
            Attr::Cc => &self.cc,
            Attr::Header(i) => &self.headers[i as usize],
            // Per recipient, per add-on and per certificate values live elsewhere.
            Attr::Recipient | Attr::Analysis(_) | Attr::ClientCertificate(_) => &[],
        }
    }
}

/// The normalized address of one parsed address. mail-parser reads a quoted
/// local part outside angle brackets (`"john doe"@example.com`) as a display
/// name `john doe` and an address `@example.com`; the header's raw text tells
/// that apart from `John <@example.com>`.
fn address_of(addr: &Addr, raw: &str) -> Option<String> {
    let address = addr.address.as_deref()?;
    if let (true, Some(name)) = (address.starts_with('@'), addr.name.as_deref())
        && !raw.contains(&format!("<{address}>"))
    {
        return Some(normalize(&format!("{name}{address}")));
    }
    Some(normalize(address))
}

fn addresses(message: &Message, header: &Header, out: &mut Vec<String>) {
    let value = &header.value;
    let raw = message
        .raw_message()
        .get(header.offset_start as usize..header.offset_end as usize)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let before = out.len();
    match value {
        HeaderValue::Address(Address::List(list)) => {
            out.extend(list.iter().filter_map(|a| address_of(a, &raw)));
        }
        HeaderValue::Address(Address::Group(groups)) => {
            for group in groups {
                out.extend(group.addresses.iter().filter_map(|a| address_of(a, &raw)));
            }
        }
        _ => {}
    }
    // A header with no address in it is matched by its text, so that a
    // malformed From cannot slip past a rule.
    if out.len() == before {
        let mut raw = Vec::new();
        text(value, &mut raw);
        out.extend(raw.into_iter().filter(|t| !t.is_empty()));
    }
}

fn text(value: &HeaderValue, out: &mut Vec<String>) {
    match value {
        HeaderValue::Text(t) => out.push(t.trim().to_lowercase()),
        HeaderValue::TextList(list) => out.push(list.join(", ").trim().to_lowercase()),
        HeaderValue::Address(Address::List(list)) => {
            let parts: Vec<String> = list
                .iter()
                .map(|a| match (&a.name, &a.address) {
                    (Some(n), Some(addr)) => format!("{n} <{addr}>"),
                    (None, Some(addr)) => addr.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect();
            out.push(parts.join(", ").to_lowercase());
        }
        HeaderValue::Empty => out.push(String::new()),
        _ => {}
    }
}
