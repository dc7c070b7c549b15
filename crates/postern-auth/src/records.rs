//! DNS records for offline authentication: zone-file text (RFC 1035 §5,
//! as BIND reads it) and records added one by one.
//!
//! Zone text: `name [TTL] [IN] TYPE data`, `@` for the origin, a line
//! starting with blanks reuses the previous owner, `;` comments,
//! parentheses across lines, `$ORIGIN` and `$TTL` (default 3600).
//! `$INCLUDE` and `$GENERATE` are refused: the text is all there is. SOA
//! and NS records are accepted and ignored (offline, one server answers for
//! every name, so there are no zone cuts). Without an origin, relative
//! names are taken as absolute (`sender.test` is `sender.test.`). The
//! RDATA of each record is parsed by hickory-proto's zone parser, so each
//! type's syntax is BIND's.

use hickory_server::proto::rr::{Name, Record, RecordType};
use hickory_server::proto::serialize::txt::Parser;

/// DNS records for offline use (see the module doc for the syntax).
#[derive(Debug, Clone, Default)]
pub struct DnsRecords {
    records: Vec<Record>,
}

const DEFAULT_TTL: u32 = 3600;

impl DnsRecords {
    pub fn new() -> DnsRecords {
        DnsRecords::default()
    }

    /// Parses zone-file text. `origin` is the initial `$ORIGIN`. Errors
    /// name the line: `line 4: ...`.
    pub fn parse_zone(text: &str, origin: Option<&str>) -> Result<DnsRecords, String> {
        let mut records = DnsRecords::new();
        records.add_zone(text, origin)?;
        Ok(records)
    }

    /// Adds the records of zone-file text (as [`DnsRecords::parse_zone`]).
    pub fn add_zone(&mut self, text: &str, origin: Option<&str>) -> Result<(), String> {
        let mut origin = match origin {
            Some(o) => Name::parse(o, Some(&Name::root()))
                .map_err(|e| format!("invalid origin {o:?}: {e}"))?,
            None => Name::root(),
        };
        let mut ttl = DEFAULT_TTL;
        let mut owner: Option<Name> = None;
        let mut added = Vec::new();
        for entry in logical_lines(text)? {
            let at = |message: String| format!("line {}: {message}", entry.line);
            let mut words = entry.text.split_whitespace();
            let Some(first) = words.next() else { continue };
            if let Some(directive) = first.strip_prefix('$') {
                let argument = words.next();
                match (directive.to_ascii_uppercase().as_str(), argument) {
                    ("ORIGIN", Some(name)) => {
                        origin = Name::parse(name, Some(&origin))
                            .map_err(|e| at(format!("invalid $ORIGIN {name:?}: {e}")))?;
                    }
                    ("TTL", Some(value)) => {
                        ttl = parse_ttl(value)
                            .ok_or_else(|| at(format!("invalid $TTL {value:?}")))?;
                    }
                    ("ORIGIN" | "TTL", None) => {
                        return Err(at(format!("${directive} needs a value")));
                    }
                    _ => {
                        return Err(at(format!(
                            "${directive} is not supported (only $ORIGIN and $TTL)"
                        )));
                    }
                }
                continue;
            }
            let rest = if entry.blank_owner {
                entry.text.trim_start()
            } else {
                let name = if first == "@" {
                    origin.clone()
                } else {
                    Name::parse(first, Some(&origin))
                        .map_err(|e| at(format!("invalid name {first:?}: {e}")))?
                };
                owner = Some(name);
                entry.text.trim_start()[first.len()..].trim_start()
            };
            let Some(name) = &owner else {
                return Err(at(
                    "a record with no owner name (the line starts with a blank)".into(),
                ));
            };
            added.extend(parse_one(name, &origin, ttl, rest).map_err(at)?);
        }
        self.records.extend(added);
        Ok(())
    }

    /// Adds one record: `("sender.test", "TXT", "v=spf1 -all")`. The name
    /// is absolute (a trailing dot is optional). A TXT value is the text
    /// itself, unquoted (it is split into 255-byte strings); other types
    /// take their zone-file syntax (`MX` "10 mx.sender.test.").
    pub fn add(&mut self, name: &str, rtype: &str, value: &str) -> Result<(), String> {
        let context = || format!("{name} {rtype} {value:?}");
        if value.contains(['\n', '\r']) {
            return Err(format!("{}: a record value is one line", context()));
        }
        let owner = Name::parse(name, Some(&Name::root()))
            .map_err(|e| format!("{}: invalid name: {e}", context()))?;
        let rtype_upper = rtype.trim().to_ascii_uppercase();
        let data = if rtype_upper == "TXT" {
            quote_txt(value)
        } else {
            value.to_string()
        };
        let records = parse_one(
            &owner,
            &Name::root(),
            DEFAULT_TTL,
            &format!("{rtype_upper} {data}"),
        )
        .map_err(|e| format!("{}: {e}", context()))?;
        if records.is_empty() {
            return Err(format!(
                "{}: {rtype_upper} records are ignored offline",
                context()
            ));
        }
        self.records.extend(records);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }
}

/// `rest` is `[TTL] [class] TYPE data` of a record owned by `name`.
fn parse_one(name: &Name, origin: &Name, ttl: u32, rest: &str) -> Result<Vec<Record>, String> {
    let text = format!("$ORIGIN {origin}\n$TTL {ttl}\n{name} {rest}\n");
    let (_, sets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    let records: Vec<Record> = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .filter(|r| !matches!(r.record_type(), RecordType::SOA | RecordType::NS))
        .collect();
    if records.is_empty()
        && !rest
            .to_ascii_uppercase()
            .split_whitespace()
            .any(|w| w == "SOA" || w == "NS")
    {
        return Err(format!("no record in {rest:?}"));
    }
    Ok(records)
}

/// TXT data in zone syntax: quoted strings of at most 255 bytes.
fn quote_txt(value: &str) -> String {
    let mut out = String::new();
    let mut current = 0;
    out.push('"');
    for c in value.chars() {
        if current + c.len_utf8() > 255 {
            out.push_str("\" \"");
            current = 0;
        }
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
        current += c.len_utf8();
    }
    out.push('"');
    out
}

/// Seconds, or BIND units (`1h30m`, `2d`, `1w`).
fn parse_ttl(value: &str) -> Option<u32> {
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(seconds);
    }
    let mut total: u32 = 0;
    let mut number: Option<u32> = None;
    for c in value.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(d)?);
        } else {
            let unit = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 604800,
                _ => return None,
            };
            total = total.checked_add(number.take()?.checked_mul(unit)?)?;
        }
    }
    if number.is_some() {
        return None;
    }
    Some(total)
}

/// One record or directive of zone text, with the line it starts on.
struct Entry {
    line: usize,
    blank_owner: bool,
    text: String,
}

/// Joins lines inside parentheses, drops comments; quotes are kept as is.
fn logical_lines(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    let mut blank_owner = false;
    let mut depth = 0usize;
    let mut paren_line = 0;
    let mut in_quotes = false;
    let mut in_comment = false;
    let mut escaped = false;
    let mut line = 1;
    let mut at_line_start = true;
    for c in text.chars() {
        if at_line_start && depth == 0 && !in_quotes {
            start_line = line;
            blank_owner = c == ' ' || c == '\t';
        }
        at_line_start = false;
        if c == '\n' {
            in_comment = false;
            line += 1;
            if depth == 0 && !in_quotes {
                push_entry(&mut entries, &mut current, start_line, blank_owner);
                at_line_start = true;
            } else {
                current.push(if in_quotes { '\n' } else { ' ' });
            }
            continue;
        }
        if in_comment || c == '\r' {
            continue;
        }
        if in_quotes {
            current.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            ';' => in_comment = true,
            '"' => {
                in_quotes = true;
                current.push(c);
            }
            '(' => {
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
                current.push(' ');
            }
            ')' => {
                if depth == 0 {
                    return Err(format!("line {line}: ')' without '('"));
                }
                depth -= 1;
                current.push(' ');
            }
            _ => current.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {start_line}: unterminated quoted string"));
    }
    if depth > 0 {
        return Err(format!("line {paren_line}: '(' is never closed"));
    }
    push_entry(&mut entries, &mut current, start_line, blank_owner);
    Ok(entries)
}

fn push_entry(entries: &mut Vec<Entry>, current: &mut String, line: usize, blank_owner: bool) {
    if !current.trim().is_empty() {
        entries.push(Entry {
            line,
            blank_owner,
            text: std::mem::take(current),
        });
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::RData;

    fn txt_of(records: &DnsRecords, name: &str) -> Vec<String> {
        records
            .records()
            .iter()
            .filter(|r| r.name.to_ascii() == name)
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn zone_text() {
        let zone = r#"$TTL 300
; a comment
@            IN SOA ns.sender.test. admin.sender.test. 1 3600 600 86400 60
@            IN NS  ns.sender.test.
@        600 IN TXT "v=spf1 ip4:203.0.113.0/24 -all" ; trailing comment
             IN MX  10 mx
mx           IN A   203.0.113.25
sel._domainkey IN TXT ( "v=DKIM1; k=rsa; "
                        "p=ABC" )
$ORIGIN other.test.
_dmarc       TXT "v=DMARC1; p=reject"
"#;
        let records = DnsRecords::parse_zone(zone, Some("sender.test")).unwrap();
        // SOA and NS are dropped.
        assert_eq!(records.len(), 5, "{records:?}");
        assert_eq!(
            txt_of(&records, "sender.test."),
            vec!["v=spf1 ip4:203.0.113.0/24 -all"]
        );
        assert_eq!(
            txt_of(&records, "sel._domainkey.sender.test."),
            vec!["v=DKIM1; k=rsa; p=ABC"]
        );
        assert_eq!(
            txt_of(&records, "_dmarc.other.test."),
            vec!["v=DMARC1; p=reject"]
        );
        let mx = records
            .records()
            .iter()
            .find(|r| r.record_type() == RecordType::MX)
            .unwrap();
        assert_eq!(mx.name.to_ascii(), "sender.test.");
        // The owner and TTL of the line above.
        assert_eq!(mx.ttl, 300);
        match &mx.data {
            RData::MX(mx) => assert_eq!(mx.exchange.to_ascii(), "mx.sender.test."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_origin_means_absolute() {
        let records =
            DnsRecords::parse_zone("sender.test 60 IN TXT \"v=spf1 -all\"\n", None).unwrap();
        assert_eq!(txt_of(&records, "sender.test."), vec!["v=spf1 -all"]);
    }

    #[test]
    fn errors_name_the_line() {
        for (zone, expected) in [
            (
                "a.test. IN TXT \"x\"\n\nb.test. IN A 300.1.1.1\n",
                "line 3:",
            ),
            (
                "a.test. IN TXT \"x\"\n$INCLUDE /etc/passwd\n",
                "line 2: $INCLUDE is not supported",
            ),
            ("a.test. IN TXT ( \"x\"\n", "line 1: '(' is never closed"),
            ("a.test. IN TXT \"x\"\nb.test. IN BOGUS x\n", "line 2:"),
            ("  IN TXT \"x\"\n", "line 1: a record with no owner"),
            (
                "a.test. IN TXT \"x\"\n\n\nb.test. IN TXT \"oops\n",
                "line 4: unterminated",
            ),
        ] {
            let error = DnsRecords::parse_zone(zone, None).unwrap_err();
            assert!(error.starts_with(expected), "{zone:?}: {error}");
        }
    }

    #[test]
    fn add_one_by_one() {
        let mut records = DnsRecords::new();
        records
            .add("sender.test", "TXT", "v=spf1 ip4:203.0.113.0/24 -all")
            .unwrap();
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        records
            .add("s._domainkey.sender.test.", "txt", &long)
            .unwrap();
        records.add("mx.sender.test", "A", "203.0.113.25").unwrap();
        records
            .add("sender.test", "MX", "10 mx.sender.test.")
            .unwrap();
        records
            .add("5.113.0.203.in-addr.arpa", "PTR", "mx.sender.test.")
            .unwrap();
        records.add("q.test", "TXT", "say \"hi\" \\o/").unwrap();
        assert_eq!(records.len(), 6);
        assert_eq!(
            txt_of(&records, "sender.test."),
            vec!["v=spf1 ip4:203.0.113.0/24 -all"]
        );
        assert_eq!(txt_of(&records, "s._domainkey.sender.test."), vec![long]);
        assert_eq!(txt_of(&records, "q.test."), vec!["say \"hi\" \\o/"]);
        assert!(records.add("x.test", "A", "not-an-address").is_err());
        assert!(records.add("x.test", "TXT", "two\nlines").is_err());
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("300"), Some(300));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("1w"), Some(604800));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("1h5"), None);
    }
}
