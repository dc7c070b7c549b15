//! DNS block lists (RFC 5782) on hickory-resolver, and the domains a
//! message's bodies point at.
//!
//! - An IP is looked up as its reversed octets (IPv4) or reversed nibbles
//!   (IPv6) under the zone; an IPv4-mapped IPv6 address as its IPv4
//!   address. A domain is looked up as `domain.zone`.
//! - NXDOMAIN, and an answer without A records: not listed.
//! - A records in 127.0.0.0/8: listed, with those return codes.
//! - Spamhaus-style error codes (127.255.255.0/24: the query came through
//!   a public resolver, rate limited, a typo) and A records outside
//!   127.0.0.0/8 (a resolver rewriting NXDOMAIN, a zone that no longer
//!   exists and is wildcarded) are not listings but errors
//!   ([`AddonError::Protocol`]), so that a broken setup does not flag all
//!   mail.
//! - SERVFAIL, REFUSED: [`AddonError::Unavailable`]; no answer within the
//!   timeout: [`AddonError::Timeout`].
//! - Answers, listed or not, are cached for their TTL (a negative answer
//!   for the zone's SOA minimum) by hickory's cache.

use hickory_resolver::TokioResolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::AddonError;

/// A DNS block list client. Cheap to clone (clones share the resolver and
/// its cache).
#[derive(Clone)]
pub struct Dnsbl {
    resolver: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for Dnsbl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsbl")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Dnsbl {
    /// `nameservers` empty: the system's resolv.conf. Else exactly these
    /// (UDP, and TCP for truncated answers), e.g. a local caching resolver
    /// (block list operators refuse queries from public resolvers).
    /// `timeout` bounds each lookup.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Dnsbl, String> {
        let (config, opts) = postern_delivery::dns::resolver_config(nameservers, timeout)?;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Dnsbl { resolver, timeout })
    }

    /// The sender IP against an IP zone (e.g. `zen.spamhaus.org`).
    /// `Ok(None)`: not listed; `Ok(Some(codes))`: listed, with the
    /// 127.0.0.x return codes (sorted, deduplicated).
    pub async fn check_ip(
        &self,
        zone: &str,
        ip: IpAddr,
    ) -> Result<Option<Vec<Ipv4Addr>>, AddonError> {
        self.check(&reversed(ip), zone).await
    }

    /// A domain against a domain zone (e.g. `dbl.spamhaus.org`): the
    /// `domain.zone` A query; same results as [`Dnsbl::check_ip`].
    pub async fn check_domain(
        &self,
        zone: &str,
        domain: &str,
    ) -> Result<Option<Vec<Ipv4Addr>>, AddonError> {
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err(AddonError::Protocol(format!(
                "empty domain to look up in {zone}"
            )));
        }
        self.check(domain, zone).await
    }

    async fn check(&self, label: &str, zone: &str) -> Result<Option<Vec<Ipv4Addr>>, AddonError> {
        let zone = zone.trim_matches('.');
        let text = format!("{label}.{zone}.");
        let name = Name::from_utf8(&text)
            .map_err(|e| AddonError::Protocol(format!("{text}: invalid DNS name: {e}")))?;
        let shown = text.trim_end_matches('.');
        let lookup = tokio::time::timeout(self.timeout, self.resolver.lookup(name, RecordType::A))
            .await
            .map_err(|_| {
                AddonError::Timeout(format!("{shown} A: no answer within {:?}", self.timeout))
            })?;
        let records = match lookup {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect::<Vec<Ipv4Addr>>(),
            Err(e) => return classify(shown, e),
        };
        codes(shown, records)
    }
}

/// The return codes of an answer (see the module doc).
fn codes(name: &str, mut records: Vec<Ipv4Addr>) -> Result<Option<Vec<Ipv4Addr>>, AddonError> {
    if records.is_empty() {
        return Ok(None);
    }
    records.sort();
    records.dedup();
    if let Some(bad) = records
        .iter()
        .find(|a| a.octets()[0] != 127 || a.octets()[..3] == [127, 255, 255])
    {
        return Err(AddonError::Protocol(format!(
            "{name} A: {bad} is not a block list return code \
             (the list refused the query, or the resolver rewrote the answer)"
        )));
    }
    Ok(Some(records))
}

fn classify(name: &str, error: NetError) -> Result<Option<Vec<Ipv4Addr>>, AddonError> {
    match &error {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => match no.response_code {
            ResponseCode::NXDomain | ResponseCode::NoError => Ok(None),
            code => Err(AddonError::Unavailable(format!("{name} A: {code}"))),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            Err(AddonError::Unavailable(format!("{name} A: {code}")))
        }
        NetError::Timeout => Err(AddonError::Timeout(format!("{name} A: timeout"))),
        _ => Err(AddonError::Unavailable(format!("{name} A: {error}"))),
    }
}

/// `1.2.0.192` for 192.0.2.1; 32 nibbles for IPv6, least significant first.
fn reversed(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(64);
            for byte in v6.octets().iter().rev() {
                let _ = write!(out, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            out.pop();
            out
        }
    }
}

/// How deep [`body_url_domains`] follows attached messages.
const MAX_NESTING: usize = 4;

/// The domains a message points at: the host names of the `http` and
/// `https` URLs in its text/plain and text/html bodies (attached messages
/// included), lowercased, IDNs in their ASCII form, without a trailing
/// dot, deduplicated in order of appearance, at most `max`. IP-address
/// hosts are left out (they are not domains). A message mail-parser cannot
/// parse has none.
pub fn body_url_domains(message: &[u8], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    if let Some(parsed) = MessageParser::default().parse(message) {
        collect_message(&parsed, max, 0, &mut out);
    }
    out
}

fn collect_message(message: &Message<'_>, max: usize, depth: usize, out: &mut Vec<String>) {
    for part in &message.parts {
        if out.len() >= max {
            return;
        }
        match &part.body {
            PartType::Text(text) => {
                let plain = part.content_type().is_none_or(|ct| {
                    ct.c_type.eq_ignore_ascii_case("text")
                        && ct
                            .subtype()
                            .is_none_or(|sub| sub.eq_ignore_ascii_case("plain"))
                });
                if plain {
                    collect_text(text, max, out);
                }
            }
            PartType::Html(html) => collect_text(html, max, out),
            PartType::Message(inner) if depth < MAX_NESTING => {
                collect_message(inner, max, depth + 1, out)
            }
            _ => {}
        }
    }
}

/// Scans text for `http://` and `https://` (any case) and adds each host.
fn collect_text(text: &str, max: usize, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while out.len() < max {
        let Some(found) = find_scheme(&bytes[i..]) else {
            return;
        };
        let start = i + found.0 + found.1;
        let end = bytes[start..]
            .iter()
            .position(|&b| {
                matches!(
                    b,
                    b'/' | b'?'
                        | b'#'
                        | b'"'
                        | b'\''
                        | b'<'
                        | b'>'
                        | b'('
                        | b')'
                        | b'['
                        | b']'
                        | b'{'
                        | b'}'
                        | b'\\'
                        | b','
                        | b';'
                ) || b.is_ascii_whitespace()
                    || b.is_ascii_control()
            })
            .map_or(bytes.len(), |n| start + n);
        if let Some(host) = host_of(&text[start..end])
            && !out.contains(&host)
        {
            out.push(host);
        }
        i = end;
    }
}

/// The offset of the next `http://` or `https://` and the scheme's length.
fn find_scheme(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(n) = bytes[from..]
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"http"))
    {
        let at = from + n;
        let rest = &bytes[at + 4..];
        if rest.starts_with(b"://") {
            return Some((at, 7));
        }
        if rest.len() >= 4 && rest[0].eq_ignore_ascii_case(&b's') && rest[1..].starts_with(b"://") {
            return Some((at, 8));
        }
        from = at + 4;
    }
    None
}

/// The domain of a URL's authority (`user@host:port`), or None when it is
/// an IP address or not a valid host name.
fn host_of(authority: &str) -> Option<String> {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    let ascii = idna::domain_to_ascii(host).ok()?;
    let valid = ascii.contains('.')
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // A numeric top-level label is an IP address in some other notation.
        && !ascii
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    valid.then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_names() {
        assert_eq!(reversed("192.0.2.1".parse().unwrap()), "1.2.0.192");
        assert_eq!(reversed("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192");
        assert_eq!(
            reversed("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn return_codes() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(codes("x", vec![]), Ok(None));
        assert_eq!(
            codes("x", vec![a("127.0.0.4"), a("127.0.0.2"), a("127.0.0.4")]),
            Ok(Some(vec![a("127.0.0.2"), a("127.0.0.4")]))
        );
        assert!(matches!(
            codes("x", vec![a("127.255.255.254")]),
            Err(AddonError::Protocol(_))
        ));
        assert!(matches!(
            codes("x", vec![a("198.51.100.7")]),
            Err(AddonError::Protocol(_))
        ));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("Example.COM"), Some("example.com".into()));
        assert_eq!(
            host_of("user:pw@www.example.com.:8080"),
            Some("www.example.com".into())
        );
        assert_eq!(
            host_of("bücher.example"),
            Some("xn--bcher-kva.example".into())
        );
        assert_eq!(host_of("192.0.2.1"), None);
        assert_eq!(host_of("0x7f.1"), None);
        assert_eq!(host_of("localhost"), None);
        assert_eq!(host_of(""), None);
        assert_eq!(host_of("a..b"), None);
    }

    #[test]
    fn urls_in_text() {
        let mut out = Vec::new();
        collect_text(
            "see HTTPS://A.example/x?y, <a href=\"http://b.example:81\">b</a> \
             http://[2001:db8::1]/ https://a.example http:// httpx://c.example \
             (https://c.example)",
            10,
            &mut out,
        );
        assert_eq!(out, ["a.example", "b.example", "c.example"]);
        let mut out = Vec::new();
        collect_text("http://a.example http://b.example", 1, &mut out);
        assert_eq!(out, ["a.example"]);
    }
}
