//! MX lookups against a real DNS server on loopback (hickory-server with
//! a test zone), and against one that never answers.

#[path = "support/dns_server.rs"]
mod dns_server;

use postern_delivery::{Dns, DnsError, Exchanger};
use std::net::IpAddr;
use std::time::Duration;

const ZONE: &str = "
@            3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60
@            3600 IN NS  ns.test.
ns           3600 IN A   127.0.0.1
two          3600 IN MX  20 mx2.two.test.
two          3600 IN MX  10 mx1.two.test.
two          3600 IN MX  10 mx1b.two.test.
mx1.two      3600 IN A   192.0.2.1
mx1.two      3600 IN AAAA 2001:db8::1
mx1b.two     3600 IN A   192.0.2.11
mx2.two      3600 IN A   192.0.2.2
aonly        3600 IN A   192.0.2.3
aonly        3600 IN AAAA 2001:db8::3
nullmx       3600 IN MX  0 .
dangling     3600 IN MX  10 nowhere.test.
txtonly      3600 IN TXT \"v=spf1 -all\"
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn dns() -> (dns_server::DnsServer, Dns) {
    let server = dns_server::serve("test.", ZONE).await;
    let dns = Dns::new(&[server.addr], Duration::from_secs(2)).unwrap();
    (server, dns)
}

#[tokio::test]
async fn mx_records_sorted_by_preference_with_addresses() {
    let (_server, dns) = dns().await;
    let mx = dns.mail_exchangers("two.test").await.unwrap();
    assert_eq!(mx.len(), 3, "{mx:?}");
    // The two preference-10 hosts come first, in either order.
    let mut first: Vec<&str> = mx[..2].iter().map(|e| e.host.as_str()).collect();
    first.sort();
    assert_eq!(first, ["mx1.two.test", "mx1b.two.test"]);
    assert!(mx[..2].iter().all(|e| e.preference == 10));
    assert_eq!(
        mx[2],
        Exchanger {
            host: "mx2.two.test".into(),
            preference: 20,
            addrs: vec![ip("192.0.2.2")],
        }
    );
    let mx1 = mx.iter().find(|e| e.host == "mx1.two.test").unwrap();
    assert_eq!(mx1.addrs, vec![ip("192.0.2.1"), ip("2001:db8::1")]);
    // A trailing dot and upper case change nothing.
    let again = dns.mail_exchangers("TWO.test.").await.unwrap();
    assert_eq!(again.len(), 3);
}

#[tokio::test]
async fn no_mx_means_the_domain_itself() {
    let (_server, dns) = dns().await;
    let mx = dns.mail_exchangers("aonly.test").await.unwrap();
    assert_eq!(
        mx,
        vec![Exchanger {
            host: "aonly.test".into(),
            preference: 0,
            addrs: vec![ip("192.0.2.3"), ip("2001:db8::3")],
        }]
    );
}

#[tokio::test]
async fn no_mx_and_no_address_is_permanent() {
    let (_server, dns) = dns().await;
    let error = dns.mail_exchangers("txtonly.test").await.unwrap_err();
    assert!(matches!(error, DnsError::Permanent(_)), "{error:?}");
}

#[tokio::test]
async fn null_mx_is_permanent() {
    let (_server, dns) = dns().await;
    let error = dns.mail_exchangers("nullmx.test").await.unwrap_err();
    assert_eq!(
        error,
        DnsError::Permanent(
            "nullmx.test: the domain does not accept mail (null MX, RFC 7505)".into()
        )
    );
}

#[tokio::test]
async fn nxdomain_is_permanent() {
    let (_server, dns) = dns().await;
    let error = dns.mail_exchangers("nosuch.test").await.unwrap_err();
    assert_eq!(
        error,
        DnsError::Permanent("nosuch.test: domain not found (NXDOMAIN)".into())
    );
}

#[tokio::test]
async fn an_exchanger_without_addresses_is_temporary() {
    let (_server, dns) = dns().await;
    let error = dns.mail_exchangers("dangling.test").await.unwrap_err();
    match error {
        DnsError::Temporary(reason) => {
            assert!(reason.contains("nowhere.test"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_refused_query_is_temporary() {
    // The server is authoritative for test. only; it refuses the rest.
    let (_server, dns) = dns().await;
    let error = dns.mail_exchangers("example.org").await.unwrap_err();
    assert!(matches!(error, DnsError::Temporary(_)), "{error:?}");
}

#[tokio::test]
async fn address_literals_need_no_dns() {
    let (_server, dns) = dns().await;
    let mx = dns.mail_exchangers("[192.0.2.9]").await.unwrap();
    assert_eq!(mx[0].addrs, vec![ip("192.0.2.9")]);
    let mx = dns.mail_exchangers("[IPv6:2001:db8::9]").await.unwrap();
    assert_eq!(mx[0].addrs, vec![ip("2001:db8::9")]);
    assert!(matches!(
        dns.mail_exchangers("[999.1.1.1]").await,
        Err(DnsError::Permanent(_))
    ));
}

#[tokio::test]
async fn a_server_that_never_answers_is_temporary() {
    let (addr, task) = dns_server::silent().await;
    let dns = Dns::new(&[addr], Duration::from_secs(1)).unwrap();
    let error = dns.mail_exchangers("two.test").await.unwrap_err();
    match error {
        DnsError::Temporary(reason) => assert!(reason.starts_with("two.test MX"), "{reason}"),
        other => panic!("{other:?}"),
    }
    task.abort();
}
