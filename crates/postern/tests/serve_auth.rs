//! SPF, DKIM and DMARC in `postern serve`: records on a DNS server on
//! loopback (hickory-server, `Server.Dns`), messages DKIM-signed in the
//! test; rules read the verdicts, the gateway adds its
//! Authentication-Results header and removes forged ones.

mod support;

#[path = "../../postern-delivery/tests/support/dns_server.rs"]
mod dns_server;

use support::*;

const RSA_KEY: &str = include_str!("../../postern-delivery/tests/keys/rsa-pkcs8.pem");
const RSA_PUBLIC: &str = include_str!("../../postern-delivery/tests/keys/rsa.pub.b64");

fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", std::str::from_utf8(c).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sign(domain: &str, message: &str) -> String {
    let key = postern_delivery::DkimKey::from_pem(domain, "sel", RSA_KEY).unwrap();
    let header = postern_delivery::sign(&[key], message.as_bytes())
        .unwrap()
        .expect("the key signs for the From domain");
    format!("{header}{message}")
}

fn message(from: &str, subject: &str, extra: &str) -> String {
    format!(
        "{extra}From: {from}\r\nTo: bob@dest.test\r\nSubject: {subject}\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@postern.test>\r\n\r\nHello.\r\n"
    )
}

/// The header section of a message, unfolded into one string per field.
fn header_of(eml: &[u8]) -> String {
    let text = String::from_utf8_lossy(eml);
    let end = text.find("\r\n\r\n").unwrap_or(text.len());
    text[..end].replace("\r\n\t", " ").replace("\r\n ", " ")
}

#[test]
fn verdicts_reach_rules_and_the_gateway_adds_its_authentication_results() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zone = format!(
        "@ 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60\n\
good 3600 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
sel._domainkey.good 3600 IN TXT {key}\n\
_dmarc.good 3600 IN TXT \"v=DMARC1; p=reject\"\n\
evil 3600 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
_dmarc.evil 3600 IN TXT \"v=DMARC1; p=reject\"\n\
shady 3600 IN TXT \"v=spf1 ip4:192.0.2.1 ~all\"\n\
_dmarc.shady 3600 IN TXT \"v=DMARC1; p=quarantine\"\n",
        key = txt(&format!("v=DKIM1; k=rsa; p={}", RSA_PUBLIC.trim()))
    );
    let dns = rt.block_on(dns_server::serve("test.", &zone));
    let dir = TempDir::new("auth");
    let ports = free_ports(2);
    let verdict = |name: &str, attribute: &str, value: &str, header: &str| {
        format!(
            "      - Name: {name}\n        Conditions:\n          - VerdictExpression: {{Evaluate: {{Attribute: {attribute}}}, Operator: EQUALS, Values: [{value}]}}\n        Actions:\n          - AddHeader: {{HeaderName: {header}, HeaderValue: \"yes\"}}\n"
        )
    };
    let rules = format!(
        "{}{}{}{}      - Name: quarantine\n        Conditions:\n          - DmarcExpression: {{Operator: EQUALS, Values: [QUARANTINE]}}\n        Actions:\n          - AddHeader: {{HeaderName: X-Quarantine, HeaderValue: \"yes\"}}\n      - Name: reject\n        Conditions:\n          - DmarcExpression: {{Operator: EQUALS, Values: [REJECT]}}\n        Actions:\n          - Drop: {{}}\n      - Name: keep\n        Actions:\n          - Archive: {{TargetArchive: kept}}\n",
        verdict("dkim-pass", "DKIM", "PASS", "X-Dkim-Pass"),
        verdict("dkim-fail", "DKIM", "FAIL", "X-Dkim-Fail"),
        verdict("spf-pass", "SPF", "PASS", "X-Spf-Pass"),
        verdict("spf-gray", "SPF", "GRAY", "X-Spf-Gray"),
    );
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Hostname: gw.postern.test\n  Dns:\n    Nameservers: [\"{dns}\"]\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n{rules}\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: kept\n",
        data = dir.path().join("data").display(),
        http = ports[1],
        dns = dns.addr,
        smtp = ports[0],
    );
    let gw = Server::start(dir.path(), ports[0], &config);
    let kept = |subject: &str| {
        wait_for(&format!("{subject} archived"), || {
            gw.archived()
                .into_iter()
                .map(|(_, eml)| eml)
                .find(|eml| contains(eml, &format!("\nSubject: {subject}\r\n")))
        })
    };

    // Signed, from an address SPF permits, aligned: everything passes. A
    // forged Authentication-Results naming this gateway is removed; one
    // from another host stays.
    let forged = "Authentication-Results: gw.postern.test; dkim=pass header.d=bank.test; spf=pass\r\nAuthentication-Results: other.example; spf=fail\r\n";
    let signed = sign(
        "good.test",
        &message("Alice <alice@good.test>", "all-pass", ""),
    );
    let signed = format!("{forged}{signed}");
    gw.send("alice@good.test", &["bob@dest.test"], &signed);
    let eml = kept("all-pass");
    let header = header_of(&eml);
    assert!(header.contains("X-Dkim-Pass: yes"), "{header}");
    assert!(header.contains("X-Spf-Pass: yes"), "{header}");
    let ours: Vec<&str> = header
        .lines()
        .filter(|l| l.starts_with("Authentication-Results: gw.postern.test"))
        .collect();
    assert_eq!(ours.len(), 1, "one, and it is Postern's: {header}");
    assert!(
        ours[0].contains("dkim=pass") && ours[0].contains("header.d=good.test"),
        "{}",
        ours[0]
    );
    assert!(
        ours[0].contains("spf=pass") && ours[0].contains("smtp.mailfrom=alice@good.test"),
        "{}",
        ours[0]
    );
    assert!(ours[0].contains("dmarc=pass"), "{}", ours[0]);
    assert!(
        !header.contains("bank.test"),
        "the forged header is gone: {header}"
    );
    assert!(
        header.contains("Authentication-Results: other.example; spf=fail"),
        "{header}"
    );

    // The body altered after signing: DKIM fails; SPF still passes and is
    // aligned, so DMARC passes and nothing is dropped.
    let tampered = sign(
        "good.test",
        &message("Alice <alice@good.test>", "tampered", ""),
    )
    .replace("Hello.", "Hello!");
    gw.send("alice@good.test", &["bob@dest.test"], &tampered);
    let header = header_of(&kept("tampered"));
    assert!(
        header.contains("X-Dkim-Fail: yes") && !header.contains("X-Dkim-Pass"),
        "{header}"
    );
    assert!(header.contains("X-Spf-Pass: yes"), "{header}");

    // Unsigned, from an address SPF refuses, under p=reject: dropped.
    let id = gw.send(
        "mallory@evil.test",
        &["bob@dest.test"],
        &message("Mallory <mallory@evil.test>", "rejected", ""),
    );
    let record = gw.wait_trace("Message", "QueueId", &id);
    let rules: Vec<&str> = record["Recipients"][0]["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"reject"), "{record}");
    assert!(
        record["Recipients"][0]["Dropped"].as_bool().unwrap(),
        "{record}"
    );
    assert!(
        record["Authentication"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().starts_with("spf=fail")),
        "{record}"
    );
    assert!(
        gw.archived()
            .iter()
            .all(|(_, eml)| !contains(eml, "\nSubject: rejected\r\n"))
    );

    // Soft fail under p=quarantine: GRAY, and the rule sees QUARANTINE.
    gw.send(
        "eve@shady.test",
        &["bob@dest.test"],
        &message("Eve <eve@shady.test>", "softfail", ""),
    );
    let header = header_of(&kept("softfail"));
    assert!(header.contains("X-Spf-Gray: yes"), "{header}");
    assert!(header.contains("X-Quarantine: yes"), "{header}");
}

#[test]
fn authentication_can_be_turned_off() {
    let dir = TempDir::new("auth-off");
    let ports = free_ports(2);
    let config = format!(
        "Server:\n  DataDir: {data}\n  HttpListen: 127.0.0.1:{http}\n  Authentication: {{Enabled: false}}\n\
TrafficPolicies:\n  - TrafficPolicyName: all\n    DefaultAction: ALLOW\n    PolicyStatements: []\n\
RuleSets:\n  - RuleSetName: main\n    Rules:\n      - Name: unprocessed\n        Conditions:\n          - VerdictExpression: {{Evaluate: {{Attribute: SPF}}, Operator: EQUALS, Values: [PROCESSING_FAILED]}}\n        Actions:\n          - Archive: {{TargetArchive: kept}}\n\
IngressPoints:\n  - IngressPointName: gateway\n    Type: OPEN\n    TrafficPolicyId: all\n    RuleSetId: main\n    Listen: [\"127.0.0.1:{smtp}\"]\n\
Archives:\n  - ArchiveName: kept\n",
        data = dir.path().join("data").display(),
        http = ports[1],
        smtp = ports[0],
    );
    let gw = Server::start(dir.path(), ports[0], &config);
    gw.send(
        "a@x.test",
        &["b@y.test"],
        &message("A <a@x.test>", "off", ""),
    );
    let eml = wait_for("the message archived", || {
        gw.archived()
            .into_iter()
            .map(|(_, e)| e)
            .find(|e| contains(e, "\nSubject: off\r\n"))
    });
    assert!(
        !contains(&eml, "Authentication-Results:"),
        "{}",
        String::from_utf8_lossy(&eml)
    );
}
