//! The DMARC policy to apply to this message (RFC 7489 §6.6): mail-auth
//! evaluates DMARC (alignment, the record by a DNS tree walk, `sp=`/`np=`
//! for subdomains, `t=y`); this file adds `pct=` sampling, which mail-auth
//! 0.13 (DMARCbis) no longer parses, and maps the result.
//!
//! `pct=N` (N < 100) is applied deterministically, so that a message gets
//! the same verdict on every evaluation (retries, replays, rule tests):
//! the 64-bit FNV-1a hash of the Message-ID field value (trimmed; the
//! whole message when there is none) modulo 100; below N, the policy
//! applies, else the next policy down (reject → quarantine → none,
//! RFC 7489 §6.6.4). A record with `t=y` is already one level down
//! (mail-auth) and its `pct=` is not applied again.

use crate::verdict::DmarcPolicy;
use mail_auth::MessageAuthenticator;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::hickory_resolver::proto::rr::RData;

pub(crate) fn policy(policy: Policy) -> DmarcPolicy {
    match policy {
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::Reject => DmarcPolicy::Reject,
    }
}

/// The `pct=` of the record mail-auth applied: the first `_dmarc` TXT
/// record, from the From domain up to its top-level domain (the names
/// mail-auth's tree walk reads), that parses to the same record. 100 when
/// absent, invalid, or when the lookup fails (the policy applies).
pub(crate) async fn pct(dns: &MessageAuthenticator, from_domain: &str, applied: &Dmarc) -> u8 {
    let mut name = from_domain.trim_end_matches('.');
    loop {
        if let Ok(lookup) = dns.resolver().txt_lookup(format!("_dmarc.{name}.")).await {
            for record in lookup.answers() {
                let RData::TXT(txt) = &record.data else {
                    continue;
                };
                let text: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                if Dmarc::parse(&text).is_ok_and(|parsed| &parsed == applied) {
                    return pct_tag(&String::from_utf8_lossy(&text));
                }
            }
        }
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => name = parent,
            _ => return 100,
        }
    }
}

/// `pct=` of a DMARC record's text; 100 when absent or invalid.
pub(crate) fn pct_tag(record: &str) -> u8 {
    record
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, value)| value.trim().parse::<u8>().ok())
        .filter(|pct| *pct <= 100)
        .unwrap_or(100)
}

/// Whether this message is in the `pct` sample (see the module doc).
pub(crate) fn sampled(pct: u8, message_id: Option<&[u8]>, message: &[u8]) -> bool {
    pct >= 100 || fnv1a(message_id.unwrap_or(message)) % 100 < u64::from(pct)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_tags() {
        assert_eq!(pct_tag("v=DMARC1; p=reject; pct=25"), 25);
        assert_eq!(pct_tag("v=DMARC1; p=reject; PCT = 0 ;"), 0);
        assert_eq!(pct_tag("v=DMARC1; p=reject"), 100);
        assert_eq!(pct_tag("v=DMARC1; p=reject; pct=101"), 100);
        assert_eq!(pct_tag("v=DMARC1; p=reject; pct=x"), 100);
    }

    #[test]
    fn sampling_is_deterministic() {
        assert!(sampled(100, None, b""));
        assert!(!sampled(0, Some(b"<a@b>"), b""));
        // Known FNV-1a value: "a" -> 0xaf63dc4c8601ec8c.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let h = fnv1a(b"<1@sender.test>") % 100;
        assert!(sampled(h as u8 + 1, Some(b"<1@sender.test>"), b""));
        assert!(!sampled(h as u8, Some(b"<1@sender.test>"), b""));
        // Roughly pct out of 100 ids are sampled.
        let n = (0..1000)
            .filter(|i| sampled(30, Some(format!("<{i}@x>").as_bytes()), b""))
            .count();
        assert!((200..400).contains(&n), "{n}");
    }
}
