//! Block list lookups against a local zone served by hickory-server, and
//! the URL domains of a message.

#[path = "../../postern-delivery/tests/support/dns_server.rs"]
mod dns_server;

use postern_addons::{AddonError, Dnsbl, body_url_domains};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Both an IP zone and a domain zone under one origin.
const ZONE: &str = "\
@ 3600 IN SOA ns.bl.test. hostmaster.bl.test. 1 3600 600 86400 300
@ 3600 IN NS ns.bl.test.
ns 3600 IN A 127.0.0.1
; 192.0.2.99 listed with two codes
99.2.0.192.ip 300 IN A 127.0.0.2
99.2.0.192.ip 300 IN A 127.0.0.4
; 2001:db8::1 listed
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip 300 IN A 127.0.0.3
; the list refuses queries from this one (Spamhaus-style error code)
98.2.0.192.ip 300 IN A 127.255.255.254
; a listed domain, and an entry that is not a block list answer
spam.example.dom 300 IN A 127.0.1.2
hijacked.example.dom 300 IN A 198.51.100.7
";

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[tokio::test]
async fn lookups() {
    let server = dns_server::serve("bl.test.", ZONE).await;
    let dnsbl = Dnsbl::new(&[server.addr], Duration::from_secs(5)).unwrap();
    let ip_zone = "ip.bl.test";
    let domain_zone = "dom.bl.test";

    assert_eq!(
        dnsbl.check_ip(ip_zone, "192.0.2.99".parse().unwrap()).await,
        Ok(Some(vec![a("127.0.0.2"), a("127.0.0.4")]))
    );
    // An IPv4-mapped address is looked up as IPv4.
    assert_eq!(
        dnsbl
            .check_ip(ip_zone, "::ffff:192.0.2.99".parse().unwrap())
            .await,
        Ok(Some(vec![a("127.0.0.2"), a("127.0.0.4")]))
    );
    assert_eq!(
        dnsbl
            .check_ip(ip_zone, "2001:db8::1".parse().unwrap())
            .await,
        Ok(Some(vec![a("127.0.0.3")]))
    );
    assert_eq!(
        dnsbl.check_ip(ip_zone, "192.0.2.1".parse().unwrap()).await,
        Ok(None)
    );
    assert_eq!(
        dnsbl
            .check_ip(ip_zone, "2001:db8::2".parse().unwrap())
            .await,
        Ok(None)
    );
    // Again: served from the cache, same answer.
    assert_eq!(
        dnsbl.check_ip(ip_zone, "192.0.2.1".parse().unwrap()).await,
        Ok(None)
    );
    let refused = dnsbl.check_ip(ip_zone, "192.0.2.98".parse().unwrap()).await;
    assert!(
        matches!(&refused, Err(AddonError::Protocol(m)) if m.contains("127.255.255.254")),
        "{refused:?}"
    );

    assert_eq!(
        dnsbl.check_domain(domain_zone, "Spam.Example.").await,
        Ok(Some(vec![a("127.0.1.2")]))
    );
    assert_eq!(
        dnsbl.check_domain(domain_zone, "clean.example").await,
        Ok(None)
    );
    let hijacked = dnsbl.check_domain(domain_zone, "hijacked.example").await;
    assert!(
        matches!(hijacked, Err(AddonError::Protocol(_))),
        "{hijacked:?}"
    );
    assert!(matches!(
        dnsbl.check_domain(domain_zone, "").await,
        Err(AddonError::Protocol(_))
    ));
    // A zone the server is not authoritative for: REFUSED.
    let other = dnsbl
        .check_ip("other.test", "192.0.2.1".parse().unwrap())
        .await;
    assert!(
        matches!(other, Err(AddonError::Unavailable(_))),
        "{other:?}"
    );
}

#[tokio::test]
async fn dns_down_is_a_timeout() {
    let (addr, _task) = dns_server::silent().await;
    let dnsbl = Dnsbl::new(&[addr], Duration::from_millis(300)).unwrap();
    let result = dnsbl
        .check_ip("ip.bl.test", "192.0.2.99".parse().unwrap())
        .await;
    assert!(matches!(result, Err(AddonError::Timeout(_))), "{result:?}");
    let result = dnsbl.check_domain("dom.bl.test", "spam.example").await;
    assert!(matches!(result, Err(AddonError::Timeout(_))), "{result:?}");
}

#[test]
fn url_domains_of_a_multipart_message() {
    let message = "\
From: a@example.net\r
To: b@example.org\r
Subject: links\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary=\"outer\"\r
\r
--outer\r
Content-Type: multipart/alternative; boundary=\"alt\"\r
\r
--alt\r
Content-Type: text/plain; charset=utf-8\r
Content-Transfer-Encoding: quoted-printable\r
\r
Visit https://Shop.Example.com/deal?id=3D1 or http://user@tracker.example.net:8080/x=\r
 now, or http://192.0.2.7/raw.\r
--alt\r
Content-Type: text/html; charset=utf-8\r
Content-Transfer-Encoding: base64\r
\r
PGEgaHJlZj0iaHR0cHM6Ly9zaG9wLmV4YW1wbGUuY29tL2RlYWwiPmRlYWw8L2E+IDxhIGhyZWY9\r
J0hUVFA6Ly9DRE4uZXhhbXBsZS5vcmcvaW1nLnBuZyc+aW1nPC9hPg==\r
--alt--\r
--outer\r
Content-Type: application/octet-stream; name=\"x.bin\"\r
Content-Disposition: attachment; filename=\"x.bin\"\r
\r
http://attachment.example.invalid/\r
--outer\r
Content-Type: text/csv; name=\"x.csv\"\r
Content-Disposition: attachment; filename=\"x.csv\"\r
\r
http://csv.example.invalid/\r
--outer--\r
";
    assert_eq!(
        body_url_domains(message.as_bytes(), 10),
        ["shop.example.com", "tracker.example.net", "cdn.example.org"]
    );
    assert_eq!(
        body_url_domains(message.as_bytes(), 2),
        ["shop.example.com", "tracker.example.net"]
    );
    assert!(body_url_domains(message.as_bytes(), 0).is_empty());
    assert!(body_url_domains(b"", 10).is_empty());
}
